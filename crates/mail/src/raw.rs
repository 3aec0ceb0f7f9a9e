//! Raw MIME from SendRawEmail, v2 Raw content or SMTP DATA: checked, then rewritten the way SES
//! rewrites it (its own Message-ID, a Date if missing, Bcc and `X-SES-*` headers removed,
//! CRLF line ends).

use mail_parser::{MessageParser, MimeHeaders};

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

/// Append `data` with every line end made CRLF.
fn push_crlf(out: &mut Vec<u8>, data: &[u8]) {
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
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
    let (header, body) = split_header(raw);
    let fields = parse_fields(header)?;
    let parsed = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| InvalidMessage::new("Message could not be parsed as MIME."))?;
    let Some(from_field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case("from")) else {
        return Err(InvalidMessage::new("Missing required header 'From'."));
    };
    let from_addr = parsed.from().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string);
    let from = match from_addr {
        Some(a) => {
            validate_addr(&a)?;
            let name = parsed.from().and_then(|a| a.first()).and_then(|a| a.name()).map(str::to_string);
            Mailbox { name, addr: a }
        }
        None => {
            let rawv = String::from_utf8_lossy(from_field.lines[0]).into_owned();
            let v = rawv.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default();
            parse_mailbox(&v)?
        }
    };
    let mut header_recipients = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()].into_iter().flatten() {
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
    if let Some(body) = body {
        push_crlf(&mut out, body);
    }
    Ok(Prepared { bytes: out, from, header_recipients, configuration_set, tags })
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
}
