//! Mail coming back: the per-message return path (VERP) weir puts in MAIL FROM so that
//! asynchronous bounces and complaints find their message, and the reports themselves —
//! delivery status notifications (RFC 3464) and ARF complaint reports (RFC 5965).

use aws_lc_rs::hmac;
use mail_parser::MimeHeaders;

/// Prefix of every return-path local part.
const PREFIX: &str = "b+";

/// Most recipient groups of a DSN read (a message has at most 50 recipients).
pub const MAX_DSN_GROUPS: usize = 100;

/// The envelope sender for recipient `idx` of `message_id` at `domain`:
/// `b+<message id>+<index>+<tag>@<domain>`, the tag a keyed hash so that nobody can forge a
/// bounce for a message weir sent. One per recipient: a bounce or complaint that comes back to it
/// speaks for that recipient only, never for a co-recipient.
pub fn return_path(message_id: &str, idx: i64, domain: &str, secret: &[u8]) -> String {
    let idx = idx.to_string();
    format!("{PREFIX}{message_id}+{idx}+{}@{domain}", tag(message_id, &idx, secret))
}

/// The message and recipient index a return path stands for, when it is one of weir's at one of
/// `domains` with a valid tag.
pub fn parse_return_path(address: &str, domains: &[String], secret: &[u8]) -> Option<(String, i64)> {
    let (local, domain) = address.rsplit_once('@')?;
    if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return None;
    }
    let rest = local.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '+');
    let (given, idx, message_id) = (parts.next()?, parts.next()?, parts.next()?);
    let expected = tag(message_id, idx, secret);
    if !tags_equal(given, &expected) {
        return None;
    }
    Some((message_id.to_string(), idx.parse().ok()?))
}

fn tag(message_id: &str, idx: &str, secret: &[u8]) -> String {
    keyed_tag(secret, format!("{message_id}+{idx}").as_bytes(), 8)
}

/// The first `bytes` bytes of HMAC-SHA256(`secret`, `data`), in hex: a value only the holder of
/// the secret can make (return paths, verification links).
pub fn keyed_tag(secret: &[u8], data: &[u8], bytes: usize) -> String {
    let t = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), data);
    t.as_ref()[..bytes.min(32)].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `given` is `expected`, compared in constant time.
pub fn tags_equal(given: &str, expected: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes()).is_ok()
}

/// One recipient of a delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// Final-Recipient (or Original-Recipient), without the `rfc822;` type.
    pub recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`.
    pub action: String,
    /// The enhanced status code (`5.1.1`).
    pub status: String,
    /// Diagnostic-Code, if any (`smtp; 550 5.1.1 …`).
    pub diagnostic: Option<String>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A delivery status notification (RFC 3464).
    Dsn(Vec<DsnRecipient>),
    /// A complaint (ARF, RFC 5965), with its Feedback-Type (`abuse`, …).
    Complaint {
        /// Feedback-Type.
        feedback_type: String,
        /// What the report says about the message complained about.
        original: Original,
    },
}

/// The message a complaint is about, as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// Its Return-Path (weir's return path, when the receiver kept it).
    pub return_path: Option<String>,
    /// The local part of its Message-ID (weir puts the MessageId there).
    pub message_id: Option<String>,
    /// The report's Original-Rcpt-To: the recipient who complained.
    pub rcpt_to: Option<String>,
}

/// Read a returned message: a `multipart/report` of type `delivery-status` or
/// `feedback-report`; anything else is `None`.
pub fn parse_report(message: &[u8]) -> Option<Report> {
    let msg = crate::parse_mime(message)?;
    let ct = msg.content_type()?;
    if !ct.c_type.eq_ignore_ascii_case("multipart") || !ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")) {
        return None;
    }
    let report_type = ct.attribute("report-type")?.to_ascii_lowercase();
    let wanted = match report_type.as_str() {
        "delivery-status" => "delivery-status",
        "feedback-report" => "feedback-report",
        _ => return None,
    };
    let part = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.c_type.eq_ignore_ascii_case("message") && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case(wanted))
        })
    })?;
    let body = &message[part.offset_body as usize..part.offset_end as usize];
    let text = String::from_utf8_lossy(body);
    if wanted == "feedback-report" {
        let fields = field_groups(&text, 4).into_iter().flatten().collect::<Vec<_>>();
        let feedback_type = field(&fields, "feedback-type").unwrap_or("abuse").to_ascii_lowercase();
        let mut original = Original {
            rcpt_to: field(&fields, "original-rcpt-to").map(|r| r.trim_matches(['<', '>', ' ']).to_string()),
            ..Original::default()
        };
        // The third part: the message itself or its headers.
        if let Some(p) = msg.parts.iter().find(|p| {
            p.content_type().is_some_and(|c| {
                let sub = c.subtype().unwrap_or("").to_ascii_lowercase();
                (c.c_type.eq_ignore_ascii_case("message") && sub == "rfc822")
                    || (c.c_type.eq_ignore_ascii_case("text") && sub == "rfc822-headers")
            })
        }) {
            let enclosed =
                String::from_utf8_lossy(&message[p.offset_body as usize..p.offset_end as usize]).into_owned();
            let headers = field_groups(&enclosed, 1).into_iter().next().unwrap_or_default();
            original.return_path = field(&headers, "return-path").map(|r| r.trim_matches(['<', '>', ' ']).to_string());
            original.message_id = field(&headers, "message-id")
                .and_then(|m| m.trim_matches(['<', '>', ' ']).split_once('@').map(|(l, _)| l.to_string()));
        }
        return Some(Report::Complaint { feedback_type, original });
    }
    // The first group is about the message; each later one about a recipient.
    let recipients = field_groups(&text, 1 + MAX_DSN_GROUPS)
        .into_iter()
        .skip(1)
        .filter_map(|g| {
            let rcpt = field(&g, "final-recipient").or_else(|| field(&g, "original-recipient"))?;
            let rcpt = rcpt.split_once(';').map_or(rcpt, |(_, a)| a).trim().to_string();
            Some(DsnRecipient {
                recipient: rcpt,
                action: field(&g, "action")?.trim().to_ascii_lowercase(),
                status: field(&g, "status")?.split_whitespace().next()?.to_string(),
                diagnostic: field(&g, "diagnostic-code").map(|d| d.trim().to_string()),
            })
        })
        .collect();
    Some(Report::Dsn(recipients))
}

/// The first `max` groups of `Name: value` fields separated by blank lines (continuation lines
/// unfolded); the rest is not read.
fn field_groups(text: &str, max: usize) -> Vec<Vec<(String, String)>> {
    let mut groups = vec![];
    let mut cur: Vec<(String, String)> = vec![];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.is_empty() {
                groups.push(std::mem::take(&mut cur));
                if groups.len() == max {
                    return groups;
                }
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some(last) = cur.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            cur.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    #[test]
    fn a_return_path_reads_back_and_a_forged_one_does_not() {
        let domains = vec!["bounces.example.com".to_string()];
        let rp = return_path("0100-abc-000000", 3, "bounces.example.com", SECRET);
        assert_eq!(parse_return_path(&rp, &domains, SECRET), Some(("0100-abc-000000".into(), 3)));
        let other_recipient = rp.replace("+3+", "+4+");
        assert_eq!(parse_return_path(&other_recipient, &domains, SECRET), None);
        let forged = rp.replace("0100-abc", "0100-abd");
        assert_eq!(parse_return_path(&forged, &domains, SECRET), None);
        assert_eq!(parse_return_path(&rp, &domains, b"other"), None);
        assert_eq!(parse_return_path(&rp.replace("bounces.example.com", "x.test"), &domains, SECRET), None);
    }

    #[test]
    fn a_dsn_gives_each_recipient_s_action_and_status() {
        let dsn = "From: MAILER-DAEMON@mx.test\r\nTo: b+m+0+t@bounces.test\r\nSubject: Undelivered\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\nArrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n\
Final-Recipient: rfc822; nosuch@fake.test\r\nOriginal-Recipient: rfc822;nosuch@fake.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nosuch@fake.test>:\r\n    Recipient address rejected\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: a@acme.test\r\n\r\n--B--\r\n";
        let r = parse_report(dsn.as_bytes()).expect("a report");
        assert_eq!(
            r,
            Report::Dsn(vec![DsnRecipient {
                recipient: "nosuch@fake.test".into(),
                action: "failed".into(),
                status: "5.1.1".into(),
                diagnostic: Some("smtp; 550 5.1.1 <nosuch@fake.test>: Recipient address rejected".into()),
            }])
        );
        assert_eq!(parse_report(b"Subject: hi\r\n\r\nnot a report\r\n"), None);
    }

    #[test]
    fn an_arf_report_is_a_complaint_with_its_feedback_type() {
        let arf = "From: fbl@isp.test\r\nTo: b+m+0+t@bounces.test\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
--A\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\r\n\
--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\n\r\n\
--A\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@acme.test\r\nSubject: x\r\n\r\nbody\r\n--A--\r\n";
        let original = Original { return_path: None, message_id: None, rcpt_to: None };
        assert_eq!(parse_report(arf.as_bytes()), Some(Report::Complaint { feedback_type: "abuse".into(), original }));
        let with_headers =
            arf.replace("Version: 1\r\n", "Version: 1\r\nOriginal-Rcpt-To: <bob@fake.test>\r\n").replace(
                "From: a@acme.test\r\nSubject",
                "Return-Path: <b+m1+0+t@bounces.test>\r\nMessage-ID: <m1@weir.test>\r\nFrom: a@acme.test\r\nSubject",
            );
        let Some(Report::Complaint { original, .. }) = parse_report(with_headers.as_bytes()) else {
            panic!("a complaint")
        };
        assert_eq!(original.return_path.as_deref(), Some("b+m1+0+t@bounces.test"));
        assert_eq!(original.message_id.as_deref(), Some("m1"));
        assert_eq!(original.rcpt_to.as_deref(), Some("bob@fake.test"));
    }
}
