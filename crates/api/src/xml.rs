//! SES v1 response shapes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The SES v1 XML namespace.
pub const NS: &str = "http://ses.amazonaws.com/doc/2010-12-01/";

/// Escape text for XML element content (quotes need no escaping there).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A parser would turn a bare CR into LF.
            '\r' => out.push_str("&#13;"),
            // XML 1.0 cannot carry these at all, not even as references: an answer with one
            // would not parse, so it carries U+FFFD instead.
            c if (c < ' ' && c != '\t' && c != '\n') || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `<{action}Response>` with an optional `<{action}Result>` (botocore requires the Result
/// element, even empty, for every operation that has an output shape).
pub fn ok(action: &str, result: Option<&str>, request_id: &str) -> Response {
    let result = match result {
        None => String::new(),
        Some("") => format!("<{action}Result/>"),
        Some(inner) => format!("<{action}Result>{inner}</{action}Result>"),
    };
    let body = format!(
        "<{action}Response xmlns=\"{NS}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    );
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

/// `<name>text</name>` with escaping.
pub fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

/// `<name><member>…</member>…</name>` (or `<name/>` when empty).
pub fn members<'a>(name: &str, items: impl IntoIterator<Item = &'a str>) -> String {
    let inner: String = items.into_iter().map(|i| el("member", i)).collect();
    if inner.is_empty() { format!("<{name}/>") } else { format!("<{name}>{inner}</{name}>") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_xml_cannot_carry_are_replaced() {
        assert_eq!(escape("a\0b\u{1}c\td\re<"), "a\u{FFFD}b\u{FFFD}c\td&#13;e&lt;");
    }
}
