//! Turning SES send requests (v1 or v2, Simple or Raw) into a [`Submission`].

use base64::Engine as _;
use weir_mail::address::{Mailbox, parse_mailbox};
use weir_mail::compose::{Simple, compose};
use weir_mail::message_id::new_message_id;
use weir_mail::raw::prepare;
use weir_submit::{MAX_RECIPIENTS, Service, Submission};

use crate::error::ApiError;

/// Largest message through SES v1 (10 MiB).
pub const V1_MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Largest message through SES v2 and SMTP (40 MiB).
pub const V2_MAX_MESSAGE: usize = 40 * 1024 * 1024;

/// Fields of a Simple send.
#[derive(Debug, Default)]
pub struct SimpleInput {
    /// Source / FromEmailAddress.
    pub source: String,
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Bcc addresses.
    pub bcc: Vec<String>,
    /// Reply-To addresses.
    pub reply_to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Extra headers (v2).
    pub headers: Vec<(String, String)>,
    /// Message tags.
    pub tags: Vec<(String, String)>,
    /// Configuration set.
    pub configuration_set: Option<String>,
    /// ReturnPath (v1) / FeedbackForwardingEmailAddress (v2): must be verified like the source.
    pub return_path: Option<String>,
}

/// Fields of a Raw send.
#[derive(Debug, Default)]
pub struct RawInput {
    /// Decoded MIME.
    pub data: Vec<u8>,
    /// Source / FromEmailAddress, if given.
    pub source: Option<String>,
    /// Explicit recipients; the To/Cc/Bcc headers otherwise.
    pub destinations: Vec<String>,
    /// Message tags.
    pub tags: Vec<(String, String)>,
    /// Configuration set.
    pub configuration_set: Option<String>,
    /// ReturnPath (v1) / FeedbackForwardingEmailAddress (v2): must be verified like the source.
    pub return_path: Option<String>,
}

fn mailbox(s: &str) -> Result<Mailbox, ApiError> {
    parse_mailbox(s).map_err(|e| ApiError::invalid(e.0))
}

fn mailboxes(list: &[String]) -> Result<Vec<Mailbox>, ApiError> {
    list.iter().map(|s| mailbox(s)).collect()
}

fn too_long(len: usize, max: usize) -> ApiError {
    ApiError::invalid(format!("Message length is more than {max} bytes long: '{len}'."))
}

/// Check SES tag names and values.
pub fn check_tags(tags: &[(String, String)]) -> Result<(), ApiError> {
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
    };
    for (n, v) in tags {
        if !ok(n) {
            return Err(ApiError::invalid(format!(
                "Invalid tag name '{n}': use 1-256 ASCII letters, digits, '_', '-', '.' or '@'."
            )));
        }
        if !ok(v) {
            return Err(ApiError::invalid(format!(
                "Invalid tag value '{v}' for tag '{n}': use 1-256 ASCII letters, digits, '_', '-', '.' or '@'."
            )));
        }
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n > MAX_RECIPIENTS {
        return Err(ApiError::invalid("Recipient count exceeds 50."));
    }
    Ok(())
}

/// Decode a base64 blob (botocore sends standard base64; tolerate line breaks).
pub fn decode_blob(data: &str, member: &str) -> Result<Vec<u8>, ApiError> {
    let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| ApiError::invalid(format!("{member} is not valid base64: {e}")))
}

/// Build a Simple submission.
pub fn simple(
    svc: &Service,
    region: &str,
    input: SimpleInput,
    max: usize,
    origin: &'static str,
) -> Result<Submission, ApiError> {
    let source = mailbox(&input.source)?;
    let (to, cc, bcc, reply_to) =
        (mailboxes(&input.to)?, mailboxes(&input.cc)?, mailboxes(&input.bcc)?, mailboxes(&input.reply_to)?);
    check_count(to.len() + cc.len() + bcc.len())?;
    check_tags(&input.tags)?;
    let now_ms = svc.now_ms();
    let id = new_message_id(now_ms as u64);
    let mime = compose(&Simple {
        from: Some(&source),
        to: &to,
        cc: &cc,
        reply_to: &reply_to,
        subject: &input.subject,
        text: input.text.as_deref(),
        html: input.html.as_deref(),
        headers: &input.headers,
        message_id: &id,
        id_domain: svc.id_domain(),
        date_secs: now_ms / 1000,
    })
    .map_err(|e| ApiError::invalid(e.0))?;
    if mime.len() > max {
        return Err(too_long(mime.len(), max));
    }
    let recipients = to.iter().chain(&cc).chain(&bcc).map(|m| m.addr.clone()).collect();
    Ok(Submission {
        region: region.to_string(),
        message_id: id,
        source,
        header_senders: input.return_path.as_deref().map(mailbox).transpose()?.into_iter().collect(),
        recipients,
        mime,
        configuration_set: input.configuration_set,
        tags: input.tags,
        origin,
    })
}

/// Build a Raw submission.
pub fn raw(
    svc: &Service,
    region: &str,
    input: RawInput,
    max: usize,
    origin: &'static str,
) -> Result<Submission, ApiError> {
    if input.data.len() > max {
        return Err(too_long(input.data.len(), max));
    }
    let destinations = mailboxes(&input.destinations)?;
    let now_ms = svc.now_ms();
    let id = new_message_id(now_ms as u64);
    let prepared = prepare(&input.data, &id, svc.id_domain(), now_ms / 1000).map_err(|e| ApiError::invalid(e.0))?;
    let source = match &input.source {
        Some(s) => mailbox(s)?,
        None => prepared.from.clone(),
    };
    let recipients: Vec<String> = if destinations.is_empty() {
        prepared.header_recipients.clone()
    } else {
        destinations.into_iter().map(|m| m.addr).collect()
    };
    check_count(recipients.len())?;
    let tags: Vec<(String, String)> = input.tags.into_iter().chain(prepared.tags).collect();
    check_tags(&tags)?;
    let mut header_senders = prepared.senders;
    if let Some(rp) = &input.return_path {
        header_senders.push(mailbox(rp)?);
    }
    Ok(Submission {
        region: region.to_string(),
        message_id: id,
        source,
        header_senders,
        recipients,
        mime: prepared.bytes,
        configuration_set: input.configuration_set.or(prepared.configuration_set),
        tags,
        origin,
    })
}
