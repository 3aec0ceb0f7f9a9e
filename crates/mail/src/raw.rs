//! Raw MIME from SendRawEmail, v2 Raw content or SMTP DATA: checked, then rewritten the way SES
//! rewrites it (its own Message-ID, a Date if missing, Bcc and `X-SES-*` headers removed,
//! CRLF line ends, see [`crate::crlf`]).
//!
//! Every mailbox a receiver could show as the author (each one in From, Sender, Return-Path,
//! Resent-From and Resent-Sender)
//! is returned in [`Prepared::senders`], so that the submission pipeline verifies all of them;
//! fields that may occur once are refused when repeated, with SES's `Duplicate header` text.

use mail_parser::MimeHeaders;

use crate::InvalidMessage;
use crate::address::{Mailbox, parse_mailbox, validate_addr};
use crate::compose::check_header_name;

/// A raw message ready for the spool.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rewritten message.
    pub bytes: Vec<u8>,
    /// First mailbox of the From header.
    pub from: Mailbox,
    /// Every address in From, Sender, Return-Path, Resent-From and Resent-Sender (each must be a
    /// verified identity).
    pub senders: Vec<Mailbox>,
    /// Addresses in To, Cc and Bcc (the recipients when the caller gives none).
    pub header_recipients: Vec<String>,
    /// Value of `X-SES-CONFIGURATION-SET`, if present.
    pub configuration_set: Option<String>,
    /// Tags from `X-SES-MESSAGE-TAGS: name1=value1, name2=value2`.
    pub tags: Vec<(String, String)>,
}

/// One header field: name and its raw lines (continuations included, without line ends).
struct Field<'a> {
    name: &'a str,
    lines: Vec<&'a [u8]>,
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Find where the header block ends: (header bytes, body bytes or None if no blank line).
fn split_header(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut pos = 0;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed.is_empty() {
            return (&raw[..pos], Some(&raw[pos + line.len()..]));
        }
        pos += line.len();
    }
    (raw, None)
}

fn parse_fields(header: &[u8]) -> Result<Vec<Field<'_>>, InvalidMessage> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    for line in lines(header) {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let Some(last) = fields.last_mut() else {
                return Err(InvalidMessage::new("Message starts with a header continuation line."));
            };
            last.lines.push(line);
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
            return Err(InvalidMessage::new(format!(
                "Header line is not of the form 'Name: value' (a blank line must separate headers from the body): {shown}"
            )));
        };
        let name = std::str::from_utf8(&line[..colon])
            .map_err(|_| InvalidMessage::new("Header name contains illegal characters."))?
            .trim_end();
        check_header_name(name)?;
        fields.push(Field { name, lines: vec![line] });
    }
    Ok(fields)
}

/// Fields a message may carry at most once (RFC 5322 §3.6 and the MIME fields), refused when
/// repeated as SES refuses them. A second From or Sender would let a receiver show an author
/// that was never checked.
const SINGLE_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "return-path",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

fn refuse_duplicates(fields: &[Field<'_>]) -> Result<(), InvalidMessage> {
    for (i, f) in fields.iter().enumerate() {
        let lower = f.name.to_ascii_lowercase();
        if SINGLE_FIELDS.contains(&lower.as_str()) && fields[..i].iter().any(|g| g.name.eq_ignore_ascii_case(f.name)) {
            return Err(InvalidMessage::new(format!("Duplicate header '{}'.", f.name)));
        }
    }
    Ok(())
}

/// The unfolded value of a field (after the colon).
fn field_value(f: &Field<'_>) -> String {
    let mut v = String::new();
    for (i, l) in f.lines.iter().enumerate() {
        let text = String::from_utf8_lossy(l);
        let part = if i == 0 {
            text.split_once(':').map(|(_, v)| v.to_string()).unwrap_or_default()
        } else {
            text.into_owned()
        };
        v.push_str(&part);
    }
    v
}

/// Every `local@domain` token of a header value outside quoted strings: what some receiver's
/// parser could take for an address, whatever a MIME parser made of the field.
fn address_tokens(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut unquoted = String::with_capacity(value.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            unquoted.push(' ');
            continue;
        }
        if c == '"' {
            quoted = true;
            unquoted.push(' ');
        } else {
            unquoted.push(c);
        }
    }
    for token in unquoted.split(|c: char| c.is_whitespace() || "<>(),;:[]".contains(c)) {
        if let Some((l, d)) = token.rsplit_once('@')
            && !l.is_empty()
            && !d.is_empty()
        {
            out.push(token.to_string());
        }
    }
    out
}

/// Every mailbox of an author field (From, Sender, Return-Path): the MIME parser's reading and
/// every address-looking token, so that no address a receiver might show escapes the check.
fn author_mailboxes(f: &Field<'_>, parsed: Option<&mail_parser::Address<'_>>) -> Result<Vec<Mailbox>, InvalidMessage> {
    let value = field_value(f);
    let mut out: Vec<Mailbox> = Vec::new();
    let push = |m: Mailbox, out: &mut Vec<Mailbox>| {
        if !out.iter().any(|o| o.addr.eq_ignore_ascii_case(&m.addr)) {
            out.push(m);
        }
    };
    if let Some(list) = parsed {
        for a in list.iter() {
            let Some(addr) = a.address() else {
                // The strict reading names the fault ("Missing final '@domain'") where it can.
                let fault = parse_mailbox(value.trim()).err();
                return Err(fault.unwrap_or_else(|| {
                    InvalidMessage::new(format!("Invalid address in header '{}': {}", f.name, value.trim()))
                }));
            };
            validate_addr(addr)?;
            push(Mailbox { name: a.name().map(str::to_string), addr: addr.to_string() }, &mut out);
        }
    }
    for token in address_tokens(&value) {
        let addr = token.trim_matches(|c: char| c == '.' || c == '\'');
        validate_addr(addr)
            .map_err(|e| InvalidMessage::new(format!("Invalid address in header '{}': {} ({})", f.name, addr, e.0)))?;
        push(Mailbox { name: None, addr: addr.to_string() }, &mut out);
    }
    if out.is_empty() {
        // Not an address list at all: the strict single-mailbox reading decides (and names the fault).
        push(parse_mailbox(value.trim())?, &mut out);
    }
    Ok(out)
}

fn check_multipart(msg: &mail_parser::Message<'_>, body: &[u8]) -> Result<(), InvalidMessage> {
    let Some(ct) = msg.content_type() else {
        return Ok(());
    };
    if !ct.ctype().eq_ignore_ascii_case("multipart") {
        return Ok(());
    }
    let Some(boundary) = ct.attribute("boundary") else {
        return Err(InvalidMessage::new("Multipart message has no boundary parameter in its Content-Type."));
    };
    let marker = format!("--{boundary}");
    if !body.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        return Err(InvalidMessage::new(format!(
            "Multipart boundary '{boundary}' does not occur in the message body."
        )));
    }
    Ok(())
}

/// Check and rewrite a raw message for the spool.
pub fn prepare(raw: &[u8], message_id: &str, id_domain: &str, date_secs: i64) -> Result<Prepared, InvalidMessage> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(InvalidMessage::new("Message is empty."));
    }
    // Line ends first: a bare CR must mean the same to every parser here and to every receiver.
    let normalized;
    let raw = if crate::crlf::is_canonical(raw) {
        raw
    } else {
        normalized = crate::crlf::normalize(raw);
        &normalized[..]
    };
    let (header, body) = split_header(raw);
    let fields = parse_fields(header)?;
    refuse_duplicates(&fields)?;
    let parsed = crate::parse_mime(raw).ok_or_else(|| InvalidMessage::new("Message could not be parsed as MIME."))?;
    // The header as it will be stored. Authors and visible recipients are read from it, not
    // from the input: a parser may read a malformed input differently from its rewrite (a
    // header that ran to the end of the input, say), and what is accepted once must read the
    // same when it is read again (by a receiver, or by weir after a restart).
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.extend_from_slice(format!("Message-ID: <{message_id}@{id_domain}>\r\n").as_bytes());
    if !fields.iter().any(|f| f.name.eq_ignore_ascii_case("date")) {
        let date = chrono::DateTime::from_timestamp(date_secs, 0).unwrap_or_default();
        out.extend_from_slice(format!("Date: {}\r\n", date.format("%a, %d %b %Y %H:%M:%S +0000")).as_bytes());
    }
    for f in &fields {
        let lower = f.name.to_ascii_lowercase();
        if lower == "message-id" || lower == "bcc" || lower.starts_with("x-ses-") {
            continue;
        }
        for l in &f.lines {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    let stored = crate::parse_mime(&out).ok_or_else(|| InvalidMessage::new("Message could not be parsed as MIME."))?;
    let Some(from_field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case("from")) else {
        return Err(InvalidMessage::new("Missing required header 'From'."));
    };
    let mut senders = author_mailboxes(from_field, stored.from())?;
    let from = senders[0].clone();
    if let Some(f) = fields.iter().find(|f| f.name.eq_ignore_ascii_case("sender")) {
        for m in author_mailboxes(f, stored.sender())? {
            if !senders.iter().any(|s| s.addr.eq_ignore_ascii_case(&m.addr)) {
                senders.push(m);
            }
        }
    }
    // A receiver may show the author of a resent message (RFC 5322 §3.6.6): every Resent-From
    // and Resent-Sender, of every resent block, is an author to verify too.
    for f in fields.iter().filter(|f| ["resent-from", "resent-sender"].iter().any(|n| f.name.eq_ignore_ascii_case(n))) {
        for m in author_mailboxes(f, None)? {
            if !senders.iter().any(|s| s.addr.eq_ignore_ascii_case(&m.addr)) {
                senders.push(m);
            }
        }
    }
    if let Some(f) = fields.iter().find(|f| f.name.eq_ignore_ascii_case("return-path")) {
        // `Return-Path: <>` (a null sender) names nobody.
        if field_value(f).trim() != "<>" {
            for m in author_mailboxes(f, None)? {
                if !senders.iter().any(|s| s.addr.eq_ignore_ascii_case(&m.addr)) {
                    senders.push(m);
                }
            }
        }
    }
    let mut header_recipients = Vec::new();
    // Bcc is not stored: it is read from the input.
    for list in [stored.to(), stored.cc(), parsed.bcc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(addr) = a.address() {
                validate_addr(addr)?;
                header_recipients.push(addr.to_string());
            }
        }
    }
    check_multipart(&parsed, body.unwrap_or(&[]))?;
    let configuration_set = parsed.header_raw("X-SES-CONFIGURATION-SET").map(|v| v.trim().to_string());
    let tags = parsed
        .header_raw("X-SES-MESSAGE-TAGS")
        .map(|v| {
            v.split(',')
                .filter_map(|t| t.split_once('=').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
                .collect()
        })
        .unwrap_or_default();
    drop(stored);
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    Ok(Prepared { bytes: out, from, senders, header_recipients, configuration_set, tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(raw: &str) -> Result<Prepared, InvalidMessage> {
        prepare(raw.as_bytes(), "ID", "weir.test", 1_795_460_337)
    }

    #[test]
    fn rewrites_headers_like_ses() {
        let p = prep("From: A <a@acme.test>\nTo: b@acme.test, c@acme.test\nBcc: d@acme.test\nMessage-ID: <old@x>\nX-SES-CONFIGURATION-SET: cs1\nX-SES-MESSAGE-TAGS: a=1, b=2\nSubject: hi\n\nbody\nline2\n")
            .expect("valid");
        let text = String::from_utf8(p.bytes).expect("utf8");
        assert!(text.starts_with("Message-ID: <ID@weir.test>\r\nDate: "), "{text}");
        assert!(!text.contains("old@x") && !text.contains("Bcc") && !text.contains("X-SES"));
        assert!(text.ends_with("\r\n\r\nbody\r\nline2\r\n"), "{text:?}");
        assert_eq!(p.header_recipients, vec!["b@acme.test", "c@acme.test", "d@acme.test"]);
        assert_eq!(p.from.addr, "a@acme.test");
        assert_eq!(p.configuration_set.as_deref(), Some("cs1"));
        assert_eq!(p.tags, vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
    }

    #[test]
    fn refuses_malformed_messages_with_specific_errors() {
        assert_eq!(prep("").unwrap_err().0, "Message is empty.");
        assert_eq!(prep("To: b@acme.test\n\nx").unwrap_err().0, "Missing required header 'From'.");
        assert_eq!(prep("From: a@acme.test\n: v\n\nx").unwrap_err().0, "Empty header names are illegal.");
        assert!(prep("From: a@acme.test\nthis is body text\n").unwrap_err().0.contains("blank line"));
        assert!(prep("From: a@acme.test\nContent-Type: multipart/mixed\n\nx").unwrap_err().0.contains("boundary"));
        assert!(
            prep("From: a@acme.test\nContent-Type: multipart/mixed; boundary=zz\n\nno parts")
                .unwrap_err()
                .0
                .contains("'zz'")
        );
        assert_eq!(prep("From: nobody\n\nx").unwrap_err().0, "Missing final '@domain'");
    }

    #[test]
    fn repeated_single_fields_are_refused_with_ses_text() {
        let e = |s: &str| prep(s).unwrap_err().0;
        assert_eq!(e("From: a@acme.test\nFrom: ceo@other.test\n\nx"), "Duplicate header 'From'.");
        assert_eq!(e("From: a@acme.test\nSender: a@acme.test\nsender: b@acme.test\n\nx"), "Duplicate header 'sender'.");
        assert_eq!(
            e("From: a@acme.test\nMIME-Version: 1.0\nMIME-Version: 1.0\n\nx"),
            "Duplicate header 'MIME-Version'."
        );
        // Fields that may repeat stay accepted.
        assert!(prep("From: a@acme.test\nReceived: x\nReceived: y\nX-A: 1\nX-A: 2\n\nx").is_ok());
    }

    #[test]
    fn every_author_mailbox_is_reported() {
        let senders = |s: &str| prep(s).expect("valid").senders.into_iter().map(|m| m.addr).collect::<Vec<_>>();
        assert_eq!(senders("From: a@acme.test, ceo@other.test\n\nx"), ["a@acme.test", "ceo@other.test"]);
        assert_eq!(senders("From: A <a@acme.test>\nSender: ceo@other.test\n\nx"), ["a@acme.test", "ceo@other.test"]);
        assert_eq!(
            senders("From: a@acme.test\nResent-From: ceo@other.test\nResent-Sender: x@third.test\n\nx"),
            ["a@acme.test", "ceo@other.test", "x@third.test"]
        );
        assert_eq!(
            senders("From: a@acme.test\nReturn-Path: <bounce@other.test>\n\nx"),
            ["a@acme.test", "bounce@other.test"]
        );
        assert_eq!(senders("From: a@acme.test\nReturn-Path: <>\n\nx"), ["a@acme.test"]);
        assert_eq!(senders("From: Team: a@acme.test, ceo@other.test;\n\nx"), ["a@acme.test", "ceo@other.test"]);
        // An address hidden where a MIME parser would not look is still reported.
        assert!(senders("From: a@acme.test (ceo@other.test)\n\nx").contains(&"ceo@other.test".to_string()));
        // A display name in quotes is a name, not an address.
        assert_eq!(senders("From: \"Jane, a@x\" <a@acme.test>\n\nx"), ["a@acme.test"]);
    }

    #[test]
    fn bare_cr_becomes_a_line_end_everywhere() {
        let p = prep("From: a@acme.test\r\nSubject: s\r\n\r\nbody\r.\rMAIL FROM:<ceo@other.test>\r\n.\nend")
            .expect("valid");
        assert!(crate::crlf::is_canonical(&p.bytes), "{:?}", String::from_utf8_lossy(&p.bytes));
        assert!(p.bytes.ends_with(b"body\r\n.\r\nMAIL FROM:<ceo@other.test>\r\n.\r\nend"));
        // A bare CR in a header ends the field, so the rest is judged as a header line of its own.
        assert!(prep("From: a@acme.test\rFrom: ceo@other.test\n\nx").unwrap_err().0.contains("Duplicate header"));
    }
}
