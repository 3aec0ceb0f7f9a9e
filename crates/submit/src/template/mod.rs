//! SES email templates: a subject, a text part and an HTML part written in the Handlebars subset
//! SES renders (variables, nested objects, `{{#if}}`, `{{#unless}}`, `{{else}}`, `{{#each}}`,
//! case-sensitive names), filled from a JSON object. Pure: no storage, no clock but the
//! deadline a caller puts in the [`Budget`].
//!
//! A tenant writes the template and the data, so both are hostile input: the parser refuses
//! anything outside the subset and nesting deeper than [`MAX_DEPTH`]; rendering stops at the
//! budget's steps, output bytes and deadline.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod parse;
mod render;

pub use parse::MAX_DEPTH;
pub use render::Budget;

use parse::Node;

/// SES's largest template (the three parts together), 500 KiB.
pub const MAX_TEMPLATE_BYTES: usize = 500 * 1024;
/// SES's largest template data (botocore: `TemplateData` max 262144).
pub const MAX_TEMPLATE_DATA: usize = 262_144;
/// The most a rendered message's parts may hold together: SES's largest message, 10 MiB.
pub const MAX_RENDERED_BYTES: usize = 10 * 1024 * 1024;
/// Steps one request may spend rendering (every destination of a bulk send together). A step is
/// one node or one loop turn; a large newsletter takes a few thousand.
pub const MAX_RENDER_STEPS: u64 = 2_000_000;
/// Time one request may spend rendering, whatever the steps.
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(2);

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
    /// The template is not valid, or uses what SES's templates do not have.
    #[error("{0}")]
    InvalidTemplate(String),
    /// A variable the template uses is not in the data (SES: a Rendering Failure).
    #[error("Attribute '{0}' is not present in the rendering data.")]
    MissingAttribute(String),
    /// The data is not a JSON object.
    #[error("{0}")]
    InvalidData(String),
    /// The rendered parts would be larger than the cap.
    #[error("The rendered message is larger than {0} bytes.")]
    OutputTooLarge(usize),
    /// Rendering took more steps or time than a request may spend.
    #[error("{0}")]
    TooMuchWork(String),
}

/// A request's budget: [`MAX_RENDER_STEPS`], [`MAX_RENDERED_BYTES`] per message and
/// [`MAX_RENDER_TIME`] from now.
pub fn request_budget() -> Budget {
    Budget::new(MAX_RENDER_STEPS, MAX_RENDERED_BYTES, Some(Instant::now() + MAX_RENDER_TIME))
}

/// A template parsed once, rendered for many data objects (a bulk send).
#[derive(Debug, Clone)]
pub struct Compiled {
    subject: Option<Vec<Node>>,
    text: Option<Vec<Node>>,
    html: Option<Vec<Node>>,
}

/// Check a template without keeping it (CreateTemplate, UpdateTemplate).
pub fn validate(parts: &TemplateParts) -> Result<(), RenderError> {
    Compiled::new(parts).map(|_| ())
}

impl Compiled {
    /// Parse `parts`; the error names the part that does not parse.
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
        let one = |name: &str, part: &Option<String>| -> Result<Option<Vec<Node>>, RenderError> {
            let Some(src) = part else { return Ok(None) };
            if src.contains('\0') {
                return Err(RenderError::InvalidTemplate(format!("{name} part: contains a NUL character")));
            }
            parse::parse(src).map(Some).map_err(|e| RenderError::InvalidTemplate(format!("{name} part: {e}")))
        };
        Ok(Compiled {
            subject: one("subject", &parts.subject)?,
            text: one("text", &parts.text)?,
            html: one("html", &parts.html)?,
        })
    }

    /// Render with `data` (a JSON object, as a string), within a fresh request budget.
    pub fn render(&self, data: &str) -> Result<Rendered, RenderError> {
        let value = parse_data(data)?;
        self.render_value(&value, &mut request_budget())
    }

    /// Render with parsed data, spending from `budget` (its output allowance is this message's).
    pub fn render_value(&self, data: &serde_json::Value, budget: &mut Budget) -> Result<Rendered, RenderError> {
        budget.next_message();
        let mut run = |nodes: &Option<Vec<Node>>, escape: bool| -> Result<Option<String>, RenderError> {
            nodes.as_ref().map(|n| render::render(n, data, escape, budget)).transpose()
        };
        // Subject and text are not HTML: nothing is escaped there.
        Ok(Rendered {
            subject: run(&self.subject, false)?.unwrap_or_default(),
            text: run(&self.text, false)?,
            html: run(&self.html, true)?,
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
    if has_nul(&v) {
        return Err(RenderError::InvalidData(
            "Template data contains a NUL character, which a message cannot carry.".into(),
        ));
    }
    Ok(v)
}

/// Whether any string or key in `v` holds a NUL (walked with a stack of its own: the data's
/// depth is the client's).
fn has_nul(v: &serde_json::Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => return true,
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(m) => {
                if m.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(m.values());
            }
            _ => {}
        }
    }
    false
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
    fn parts_that_include_each_other_are_refused_when_compiled() {
        let p = parts("{{> text}}", "{{> subject}}", "x");
        assert!(matches!(Compiled::new(&p), Err(RenderError::InvalidTemplate(m)) if m.contains("partials")));
    }

    #[test]
    fn a_nul_in_the_data_is_invalid_data() {
        let p = parts("x", "y", "z");
        assert!(
            matches!(render(&p, r#"{"a":{"b":["\u0000"]}}"#), Err(RenderError::InvalidData(m)) if m.contains("NUL"))
        );
    }

    #[test]
    fn deeply_nested_data_is_refused_by_the_json_parser() {
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        let p = parts("x", "y", "z");
        assert!(matches!(render(&p, &format!("{{\"a\":{deep}}}")), Err(RenderError::InvalidData(_))));
    }

    #[test]
    fn replacement_data_overrides_default_keys() {
        let d: serde_json::Value = serde_json::json!({"a": 1, "b": 2});
        let r: serde_json::Value = serde_json::json!({"b": 3});
        assert_eq!(merge(&d, &r), serde_json::json!({"a": 1, "b": 3}));
    }
}
