//! SES "Simple" content (SendEmail v1 and v2) composed into MIME with `mail-builder`.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;

use crate::InvalidMessage;
use crate::address::Mailbox;

/// Everything a Simple SendEmail carries.
#[derive(Debug, Default)]
pub struct Simple<'a> {
    /// The From header (the Source / FromEmailAddress).
    pub from: Option<&'a Mailbox>,
    /// To header.
    pub to: &'a [Mailbox],
    /// Cc header (Bcc recipients never appear in headers).
    pub cc: &'a [Mailbox],
    /// Reply-To header.
    pub reply_to: &'a [Mailbox],
    /// Subject text.
    pub subject: &'a str,
    /// Plain-text body.
    pub text: Option<&'a str>,
    /// HTML body.
    pub html: Option<&'a str>,
    /// Extra headers (v2 `Content.Simple.Headers`).
    pub headers: &'a [(String, String)],
    /// The MessageId (without angle brackets or domain).
    pub message_id: &'a str,
    /// Domain for the Message-ID header.
    pub id_domain: &'a str,
    /// Date header value, Unix seconds.
    pub date_secs: i64,
}

fn addresses(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(list.iter().map(|m| Address::new_address(m.name.clone(), m.addr.clone())).collect())
}

/// Reject CR or LF in a header field (header injection).
pub fn check_header_text(field: &str, value: &str) -> Result<(), InvalidMessage> {
    if value.contains(['\r', '\n']) {
        return Err(InvalidMessage::new(format!(
            "{field} contains a line break (CR or LF), which is not allowed in a header."
        )));
    }
    Ok(())
}

/// Reject header names that are not printable ASCII without ':' and spaces.
pub fn check_header_name(name: &str) -> Result<(), InvalidMessage> {
    if name.is_empty() {
        return Err(InvalidMessage::new("Empty header names are illegal."));
    }
    if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(InvalidMessage::new(format!("Header name contains illegal characters: {}", name.escape_debug())));
    }
    Ok(())
}

/// Headers a caller may not set through Simple content, because SES sets them.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "date",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Reject NUL, which no part of a message may carry (RFC 5322 and RFC 2045 exclude it).
fn check_no_nul(field: &str, value: &str) -> Result<(), InvalidMessage> {
    if value.contains('\0') {
        return Err(InvalidMessage::new(format!("{field} contains a NUL character, which a message cannot carry.")));
    }
    Ok(())
}

/// Build the MIME message.
pub fn compose(s: &Simple<'_>) -> Result<Vec<u8>, InvalidMessage> {
    check_header_text("Subject", s.subject)?;
    check_no_nul("Subject", s.subject)?;
    check_no_nul("The text part", s.text.unwrap_or_default())?;
    check_no_nul("The HTML part", s.html.unwrap_or_default())?;
    let mut b = MessageBuilder::new()
        .message_id(format!("{}@{}", s.message_id, s.id_domain))
        .date(s.date_secs)
        .subject(s.subject.to_string());
    if let Some(from) = s.from {
        b = b.from(Address::new_address(from.name.clone(), from.addr.clone()));
    }
    if !s.to.is_empty() {
        b = b.to(addresses(s.to));
    }
    if !s.cc.is_empty() {
        b = b.cc(addresses(s.cc));
    }
    if !s.reply_to.is_empty() {
        b = b.reply_to(addresses(s.reply_to));
    }
    for (name, value) in s.headers {
        check_header_name(name)?;
        check_header_text(name, value)?;
        check_no_nul(name, value)?;
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(InvalidMessage::new(format!(
                "Header '{name}' cannot be set in Headers; use the matching field."
            )));
        }
        b = b.header(name.clone(), Raw::new(value.clone()));
    }
    match (s.text, s.html) {
        (None, None) => b = b.text_body(""),
        (text, html) => {
            if let Some(t) = text {
                b = b.text_body(t.to_string());
            }
            if let Some(h) = html {
                b = b.html_body(h.to_string());
            }
        }
    }
    let out = b.write_to_vec().map_err(|e| InvalidMessage::new(format!("Message could not be composed: {e}")))?;
    // A body may carry bare CRs that the builder copies as they are; none may reach the spool.
    Ok(if crate::crlf::is_canonical(&out) { out } else { crate::crlf::normalize(&out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse_mailbox;

    #[test]
    fn composes_text_and_html() {
        let from = parse_mailbox("Acme <a@acme.test>").expect("ok");
        let to = vec![parse_mailbox("b@acme.test").expect("ok")];
        let headers = vec![("X-Campaign".to_string(), "fall".to_string())];
        let msg = compose(&Simple {
            from: Some(&from),
            to: &to,
            subject: "Grüße ☃",
            text: Some("hello"),
            html: Some("<b>hello</b>"),
            headers: &headers,
            message_id: "0100abc-1-000000",
            id_domain: "us-east-1.weir.test",
            date_secs: 1_795_460_337,
            ..Default::default()
        })
        .expect("composes");
        let text = String::from_utf8(msg).expect("ascii");
        assert!(text.contains("Message-ID: <0100abc-1-000000@us-east-1.weir.test>"), "{text}");
        assert!(text.contains("X-Campaign: fall"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("=?utf-8?"), "subject must be encoded: {text}");
        assert!(!text.contains("Bcc"));
    }

    #[test]
    fn bare_cr_in_a_body_never_reaches_the_message() {
        for body in ["one\r.\rMAIL FROM:<ceo@other.test>\r\n", "a\r.\nb", "a\n.\r\nb"] {
            let msg = compose(&Simple { subject: "s", text: Some(body), html: Some(body), ..Default::default() })
                .expect("composes");
            assert!(crate::crlf::is_canonical(&msg), "{:?}", String::from_utf8_lossy(&msg));
        }
    }

    #[test]
    fn a_nul_in_any_part_is_refused() {
        let to = [parse_mailbox("b@example.com").expect("mailbox")];
        for (subject, text, html) in [("a\0b", None, None), ("s", Some("x\0"), None), ("s", None, Some("\0"))] {
            let s = Simple { to: &to, subject, text, html, message_id: "m", id_domain: "d", ..Default::default() };
            let e = compose(&s).expect_err("a NUL is refused");
            assert!(e.0.contains("NUL"), "{}", e.0);
        }
    }

    #[test]
    fn header_injection_is_refused() {
        let e = compose(&Simple { subject: "hi\r\nBcc: x@y.test", ..Default::default() }).unwrap_err();
        assert!(e.0.contains("Subject contains a line break"));
        let headers = vec![("X-A".to_string(), "v\nBcc: x@y.test".to_string())];
        assert!(compose(&Simple { subject: "s", headers: &headers, ..Default::default() }).is_err());
        let headers = vec![("Bad Name".to_string(), "v".to_string())];
        assert!(compose(&Simple { subject: "s", headers: &headers, ..Default::default() }).is_err());
    }
}
