//! Rendering a parsed template with JSON data, within a [`Budget`]: every node visited and every
//! loop turn costs a step, every byte written counts against the output cap, and the work stops
//! (with an error) the moment either runs out, or the deadline passes. Recursion follows the
//! template's own nesting, which the parser bounds.

use std::time::Instant;

use serde_json::Value;

use super::RenderError;
use super::parse::{DataVar, Node, Path};

/// What one request may spend on rendering.
#[derive(Debug, Clone)]
pub struct Budget {
    steps_left: u64,
    output_left: usize,
    deadline: Option<Instant>,
    max_output: usize,
    max_steps: u64,
}

impl Budget {
    /// At most `steps` steps and `output` bytes, until `deadline`.
    pub fn new(steps: u64, output: usize, deadline: Option<Instant>) -> Budget {
        Budget { steps_left: steps, output_left: output, deadline, max_output: output, max_steps: steps }
    }

    /// A fresh output allowance (each message of a bulk send has its own), the steps and the
    /// deadline still shared.
    pub fn next_message(&mut self) {
        self.output_left = self.max_output;
    }

    fn step(&mut self, n: u64) -> Result<(), RenderError> {
        if self.steps_left < n {
            return Err(RenderError::TooMuchWork(format!(
                "Rendering the template takes more than {} steps.",
                self.max_steps
            )));
        }
        self.steps_left -= n;
        // The clock is read once every 4,096 steps: cheap, and a step is well under a microsecond.
        if self.steps_left % 4096 < n
            && let Some(d) = self.deadline
            && Instant::now() > d
        {
            return Err(RenderError::TooMuchWork("Rendering the template takes too long.".into()));
        }
        Ok(())
    }

    fn write(&mut self, out: &mut String, s: &str) -> Result<(), RenderError> {
        if s.len() > self.output_left {
            return Err(RenderError::OutputTooLarge(self.max_output));
        }
        self.output_left -= s.len();
        out.push_str(s);
        Ok(())
    }
}

/// One level of `{{#each}}`: the item and its loop variables.
struct Frame<'a> {
    value: &'a Value,
    index: Option<usize>,
    key: Option<&'a str>,
    last: bool,
}

/// Render `nodes` with `data` (the data's top level is the first frame).
pub(crate) fn render(nodes: &[Node], data: &Value, escape: bool, budget: &mut Budget) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut frames = vec![Frame { value: data, index: None, key: None, last: false }];
    render_nodes(nodes, data, &mut frames, escape, budget, &mut out)?;
    Ok(out)
}

/// What a path resolves to.
enum Resolved<'a> {
    Json(&'a Value),
    Index(usize),
    Key(&'a str),
    Bool(bool),
    Missing,
}

fn resolve<'a>(
    path: &Path,
    root: &'a Value,
    frames: &[Frame<'a>],
    budget: &mut Budget,
) -> Result<Resolved<'a>, RenderError> {
    budget.step(1 + path.segments.len() as u64)?;
    let Some(frame) = frames.len().checked_sub(1 + path.up).and_then(|i| frames.get(i)) else {
        return Ok(Resolved::Missing);
    };
    if let Some(var) = path.data {
        return Ok(match (var, frame.index) {
            (DataVar::Index, Some(i)) => Resolved::Index(i),
            (DataVar::Key, _) => frame.key.map(Resolved::Key).unwrap_or(Resolved::Missing),
            (DataVar::First, Some(i)) => Resolved::Bool(i == 0),
            (DataVar::Last, Some(_)) => Resolved::Bool(frame.last),
            _ => Resolved::Missing,
        });
    }
    let mut v = if path.root { root } else { frame.value };
    for seg in &path.segments {
        let next = match v {
            Value::Object(m) => m.get(seg.as_str()),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return Ok(Resolved::Missing),
        }
    }
    Ok(Resolved::Json(v))
}

/// Handlebars' truth: false, null, missing, "", 0 and [] are false.
fn truthy(r: &Resolved) -> bool {
    match r {
        Resolved::Json(Value::Null) | Resolved::Missing => false,
        Resolved::Json(Value::Bool(b)) | Resolved::Bool(b) => *b,
        Resolved::Json(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Resolved::Json(Value::String(s)) => !s.is_empty(),
        Resolved::Json(Value::Array(a)) => !a.is_empty(),
        Resolved::Json(Value::Object(_)) => true,
        Resolved::Index(i) => *i != 0,
        Resolved::Key(k) => !k.is_empty(),
    }
}

/// A number as JavaScript prints it (3, not 3.0).
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

fn write_value(v: &Value, escape: bool, budget: &mut Budget, out: &mut String) -> Result<(), RenderError> {
    match v {
        Value::Null => Ok(()),
        Value::Bool(b) => budget.write(out, if *b { "true" } else { "false" }),
        Value::Number(n) => budget.write(out, &number_text(n)),
        Value::String(s) => write_text(s, escape, budget, out),
        // As Handlebars (JavaScript) prints them: an array's items joined by commas.
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                budget.step(1)?;
                if i > 0 {
                    budget.write(out, ",")?;
                }
                if !item.is_array() {
                    write_value(item, escape, budget, out)?;
                }
            }
            Ok(())
        }
        Value::Object(_) => budget.write(out, "[object Object]"),
    }
}

fn write_text(s: &str, escape: bool, budget: &mut Budget, out: &mut String) -> Result<(), RenderError> {
    if !escape || !s.contains(['&', '<', '>', '"', '\'', '`', '=']) {
        return budget.write(out, s);
    }
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let rep = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#x27;",
            '`' => "&#x60;",
            '=' => "&#x3D;",
            _ => continue,
        };
        budget.write(out, &s[last..i])?;
        budget.write(out, rep)?;
        last = i + 1;
    }
    budget.write(out, &s[last..])
}

fn render_nodes<'a>(
    nodes: &[Node],
    root: &'a Value,
    frames: &mut Vec<Frame<'a>>,
    escape: bool,
    budget: &mut Budget,
    out: &mut String,
) -> Result<(), RenderError> {
    for node in nodes {
        budget.step(1)?;
        match node {
            Node::Text(t) => budget.write(out, t)?,
            Node::Value { path, escape: esc } => match resolve(path, root, frames, budget)? {
                Resolved::Missing => return Err(RenderError::MissingAttribute(path.text.clone())),
                Resolved::Json(v) => write_value(v, escape && *esc, budget, out)?,
                Resolved::Index(i) => budget.write(out, &i.to_string())?,
                Resolved::Key(k) => write_text(k, escape && *esc, budget, out)?,
                Resolved::Bool(b) => budget.write(out, if b { "true" } else { "false" })?,
            },
            Node::If { cond, negate, then, otherwise } => {
                let r = resolve(cond, root, frames, budget)?;
                let branch = if truthy(&r) != *negate { then } else { otherwise };
                render_nodes(branch, root, frames, escape, budget, out)?;
            }
            Node::Each { over, body, otherwise } => {
                let r = resolve(over, root, frames, budget)?;
                let mut any = false;
                match r {
                    Resolved::Json(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            any = true;
                            frames.push(Frame { value: item, index: Some(i), key: None, last: i + 1 == items.len() });
                            let r = render_nodes(body, root, frames, escape, budget, out);
                            frames.pop();
                            r?;
                        }
                    }
                    Resolved::Json(Value::Object(map)) => {
                        let n = map.len();
                        for (i, (k, item)) in map.iter().enumerate() {
                            any = true;
                            frames.push(Frame { value: item, index: Some(i), key: Some(k), last: i + 1 == n });
                            let r = render_nodes(body, root, frames, escape, budget, out);
                            frames.pop();
                            r?;
                        }
                    }
                    _ => {}
                }
                if !any {
                    render_nodes(otherwise, root, frames, escape, budget, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;
    use serde_json::json;

    fn run(src: &str, data: Value) -> Result<String, RenderError> {
        render(&parse(src)?, &data, true, &mut Budget::new(1_000_000, 1 << 20, None))
    }

    #[test]
    fn loop_variables_and_parent_paths_resolve() {
        let out = run(
            "{{#each items}}{{@index}}:{{name}}@{{../shop}}{{#if @last}}.{{else}},{{/if}}{{/each}}",
            json!({"shop": "S", "items": [{"name": "a"}, {"name": "b"}]}),
        );
        assert_eq!(out.expect("render"), "0:a@S,1:b@S.");
    }

    #[test]
    fn each_over_an_object_gives_keys() {
        assert_eq!(
            run("{{#each m}}{{@key}}={{this}};{{/each}}", json!({"m": {"a": 1, "b": 2}})).expect("r"),
            "a=1;b=2;"
        );
    }

    #[test]
    fn each_with_nothing_renders_its_else() {
        assert_eq!(run("{{#each xs}}x{{else}}none{{/each}}", json!({"xs": []})).expect("r"), "none");
        assert_eq!(run("{{#each xs}}x{{else}}none{{/each}}", json!({})).expect("r"), "none");
    }

    #[test]
    fn unless_and_else_if_choose_one_branch() {
        let t = "{{#unless a}}U{{/unless}}{{#if b}}B{{else if c}}C{{else}}D{{/if}}";
        assert_eq!(run(t, json!({"a": 0, "c": "y"})).expect("r"), "UC");
        assert_eq!(run(t, json!({"a": 1})).expect("r"), "D");
    }

    #[test]
    fn values_print_as_handlebars_prints_them() {
        let out = run(
            "{{n}} {{f}} {{t}} {{z}} {{a}} {{o}}",
            json!({"n": 3, "f": 2.5, "t": true, "z": null, "a": [1, "x"], "o": {}}),
        );
        assert_eq!(out.expect("r"), "3 2.5 true  1,x [object Object]");
    }

    #[test]
    fn output_over_the_cap_stops_rendering() {
        let nodes = parse("{{#each xs}}{{../big}}{{/each}}").expect("parse");
        let data = json!({"xs": vec![0; 1000], "big": "x".repeat(1000)});
        let r = render(&nodes, &data, true, &mut Budget::new(u64::MAX, 100_000, None));
        assert_eq!(r, Err(RenderError::OutputTooLarge(100_000)));
    }

    #[test]
    fn nested_loops_stop_at_the_step_budget() {
        let nodes = parse("{{#each a}}{{#each ../a}}{{#each ../../a}}{{/each}}{{/each}}{{/each}}").expect("parse");
        let data = json!({"a": vec![0; 1000]});
        let r = render(&nodes, &data, true, &mut Budget::new(100_000, usize::MAX, None));
        assert!(matches!(r, Err(RenderError::TooMuchWork(_))), "{r:?}");
    }

    #[test]
    fn a_missing_value_names_its_path() {
        assert_eq!(
            run("{{#each xs}}{{name}}{{/each}}", json!({"xs": [{}]})),
            Err(RenderError::MissingAttribute("name".into()))
        );
    }
}
