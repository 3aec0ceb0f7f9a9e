//! SES email templates: a subject, a text part and an HTML part written in the Handlebars subset
//! SES renders (variables, nested objects, `{{#if}}`, `{{#each}}`, case-sensitive names), filled
//! from a JSON object. Pure: no storage, no clock.

use handlebars::{Handlebars, RenderErrorReason};
use serde::{Deserialize, Serialize};

/// SES's largest template (the three parts together), 500 KiB.
pub const MAX_TEMPLATE_BYTES: usize = 500 * 1024;
/// SES's largest template data (botocore: `TemplateData` max 262144).
pub const MAX_TEMPLATE_DATA: usize = 262_144;

/// A template's parts, as stored and as sent inline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParts {
    /// Subject line.
    pub subject: Option<String>,
    /// Text part.
    pub text: Option<String>,
    /// HTML part.
    pub html: Option<String>,
}

/// A rendered message's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line (empty when the template has none).
    pub subject: String,
    /// Text part.
    pub text: Option<String>,
    /// HTML part.
    pub html: Option<String>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template is not valid Handlebars.
    #[error("{0}")]
    InvalidTemplate(String),
    /// A variable the template uses is not in the data (SES: a Rendering Failure).
    #[error("Attribute '{0}' is not present in the rendering data.")]
    MissingAttribute(String),
    /// The data is not a JSON object.
    #[error("{0}")]
    InvalidData(String),
}

/// A template compiled once, rendered for many data objects (a bulk send).
pub struct Compiled {
    /// Subject and text: no escaping (they are not HTML).
    plain: Handlebars<'static>,
    /// HTML: `{{x}}` is HTML-escaped, `{{{x}}}` is not, as in Handlebars.
    html: Handlebars<'static>,
    has: (bool, bool, bool),
}

fn registry(escape: bool) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    if !escape {
        h.register_escape_fn(handlebars::no_escape);
    }
    h
}

impl Compiled {
    /// Compile `parts`; the error names the part that does not parse.
    pub fn new(parts: &TemplateParts) -> Result<Compiled, RenderError> {
        let size = [&parts.subject, &parts.text, &parts.html]
            .iter()
            .filter_map(|p| p.as_ref())
            .map(|p| p.len())
            .sum::<usize>();
        if size > MAX_TEMPLATE_BYTES {
            return Err(RenderError::InvalidTemplate(format!(
                "The template is {size} bytes; the most is {MAX_TEMPLATE_BYTES}."
            )));
        }
        let (mut plain, mut html) = (registry(false), registry(true));
        let compile = |h: &mut Handlebars<'static>, name: &str, part: &Option<String>| -> Result<bool, RenderError> {
            match part {
                Some(src) => h
                    .register_template_string(name, src)
                    .map(|_| true)
                    .map_err(|e| RenderError::InvalidTemplate(format!("{name} part: {}", e.reason()))),
                None => Ok(false),
            }
        };
        let has = (
            compile(&mut plain, "subject", &parts.subject)?,
            compile(&mut plain, "text", &parts.text)?,
            compile(&mut html, "html", &parts.html)?,
        );
        Ok(Compiled { plain, html, has })
    }

    /// Render with `data` (a JSON object, as a string).
    pub fn render(&self, data: &str) -> Result<Rendered, RenderError> {
        let value = parse_data(data)?;
        self.render_value(&value)
    }

    /// Render with parsed data.
    pub fn render_value(&self, data: &serde_json::Value) -> Result<Rendered, RenderError> {
        let run = |h: &Handlebars<'static>, name: &str, has: bool| -> Result<Option<String>, RenderError> {
            if !has {
                return Ok(None);
            }
            h.render(name, data).map(Some).map_err(|e| match e.reason() {
                RenderErrorReason::MissingVariable(Some(path)) => RenderError::MissingAttribute(path.clone()),
                RenderErrorReason::MissingVariable(None) => RenderError::MissingAttribute(String::new()),
                other => RenderError::InvalidTemplate(format!("{name} part: {other}")),
            })
        };
        Ok(Rendered {
            subject: run(&self.plain, "subject", self.has.0)?.unwrap_or_default(),
            text: run(&self.plain, "text", self.has.1)?,
            html: run(&self.html, "html", self.has.2)?,
        })
    }
}

/// Parse template data: a JSON object of at most [`MAX_TEMPLATE_DATA`] characters.
pub fn parse_data(data: &str) -> Result<serde_json::Value, RenderError> {
    if data.len() > MAX_TEMPLATE_DATA {
        return Err(RenderError::InvalidData(format!(
            "Template data is {} characters long; the most is {MAX_TEMPLATE_DATA}.",
            data.len()
        )));
    }
    let v: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| RenderError::InvalidData(format!("Template data is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(RenderError::InvalidData("Template data must be a JSON object.".into()));
    }
    Ok(v)
}

/// Merge per-destination data over the default data (top-level keys of the replacement win).
pub fn merge(default: &serde_json::Value, replacement: &serde_json::Value) -> serde_json::Value {
    let mut out = default.clone();
    if let (Some(o), Some(r)) = (out.as_object_mut(), replacement.as_object()) {
        for (k, v) in r {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(subject: &str, text: &str, html: &str) -> TemplateParts {
        TemplateParts { subject: Some(subject.into()), text: Some(text.into()), html: Some(html.into()) }
    }

    fn render(p: &TemplateParts, data: &str) -> Result<Rendered, RenderError> {
        Compiled::new(p)?.render(data)
    }

    #[test]
    fn variables_and_nested_objects_are_substituted() {
        let p = parts("Hi {{name}}", "{{name}} lives in {{address.city}}", "<p>{{name}}</p>");
        let r = render(&p, r#"{"name":"Ann","address":{"city":"Oslo"}}"#).expect("render");
        assert_eq!(r.subject, "Hi Ann");
        assert_eq!(r.text.as_deref(), Some("Ann lives in Oslo"));
        assert_eq!(r.html.as_deref(), Some("<p>Ann</p>"));
    }

    #[test]
    fn if_and_each_blocks_render() {
        let p = parts(
            "{{#if vip}}VIP{{else}}Hello{{/if}}",
            "{{#each items}}[{{this.sku}}]{{/each}}",
            "{{#if missing}}x{{/if}}",
        );
        let r = render(&p, r#"{"vip":true,"items":[{"sku":"a"},{"sku":"b"}]}"#).expect("render");
        assert_eq!(r.subject, "VIP");
        assert_eq!(r.text.as_deref(), Some("[a][b]"));
        assert_eq!(r.html.as_deref(), Some(""));
    }

    #[test]
    fn a_missing_variable_is_a_missing_attribute() {
        let p = parts("Hi {{name}}", "x", "y");
        assert_eq!(render(&p, "{}"), Err(RenderError::MissingAttribute("name".into())));
    }

    #[test]
    fn names_are_case_sensitive() {
        let p = parts("Hi {{Name}}", "x", "y");
        assert_eq!(render(&p, r#"{"name":"Ann"}"#), Err(RenderError::MissingAttribute("Name".into())));
    }

    #[test]
    fn html_part_escapes_double_braces_only() {
        let p = parts("{{v}}", "{{v}}", "{{v}} {{{v}}}");
        let r = render(&p, r#"{"v":"<b>&"}"#).expect("render");
        assert_eq!(r.subject, "<b>&");
        assert_eq!(r.text.as_deref(), Some("<b>&"));
        assert_eq!(r.html.as_deref(), Some("&lt;b&gt;&amp; <b>&"));
    }

    #[test]
    fn unbalanced_blocks_are_invalid_templates() {
        let p = parts("{{#if x}}", "", "");
        assert!(matches!(Compiled::new(&p), Err(RenderError::InvalidTemplate(m)) if m.starts_with("subject part")));
    }

    #[test]
    fn data_must_be_a_json_object() {
        let p = parts("x", "y", "z");
        assert!(matches!(render(&p, "[1]"), Err(RenderError::InvalidData(_))));
        assert!(matches!(render(&p, "{"), Err(RenderError::InvalidData(_))));
    }

    #[test]
    fn replacement_data_overrides_default_keys() {
        let d: serde_json::Value = serde_json::json!({"a": 1, "b": 2});
        let r: serde_json::Value = serde_json::json!({"b": 3});
        assert_eq!(merge(&d, &r), serde_json::json!({"a": 1, "b": 3}));
    }
}
