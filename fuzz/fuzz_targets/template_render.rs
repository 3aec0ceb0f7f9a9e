//! Arbitrary bytes as a template and its data (CreateTemplate, inline TemplateContent,
//! TemplateData): compiling answers with a template or a specific error, never panics or
//! overflows the stack; rendering stays within its budget's output cap, and a budget that runs
//! out is an error, never a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_submit::template::{Budget, Compiled, RenderError, TemplateParts};

/// Output allowed per message here: small, so that the run is bounded in memory.
const OUTPUT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The template, then (after the first line that is exactly "---") its data.
    let (template, json) = text.split_once("\n---\n").unwrap_or((&text, ""));
    let parts = TemplateParts { subject: None, text: Some(template.to_string()), html: Some(template.to_string()) };
    let Ok(compiled) = Compiled::new(&parts) else { return };
    let value = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .filter(|v| v.is_object())
        .unwrap_or_else(|| serde_json::json!({"a": [1, [2, 3], {"b": "<x>"}], "b": {"c": "d"}, "s": "t"}));
    let mut budget = Budget::new(200_000, OUTPUT, None);
    match compiled.render_value(&value, &mut budget) {
        Ok(r) => {
            let total = r.subject.len() + r.text.as_ref().map_or(0, String::len) + r.html.as_ref().map_or(0, String::len);
            assert!(total <= OUTPUT, "rendered {total} bytes past the cap");
        }
        Err(RenderError::InvalidData(_)) => panic!("parsed data reported invalid"),
        Err(_) => {}
    }
});
