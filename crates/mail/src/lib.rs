//! Messages as SES accepts them.
//!
//! # Layout
//! - [`address`]: mailbox parsing and validation with SES's error texts.
//! - [`compose`]: SendEmail "Simple" content (subject, text, HTML, headers) → MIME.
//! - [`crlf`]: line ends made CRLF everywhere (no bare CR or LF is ever relayed).
//! - [`raw`]: SendRawEmail / SMTP DATA → checked, header-rewritten MIME plus its recipients.
//! - [`message_id`]: SES-shaped MessageIds.

pub mod address;
pub mod compose;
pub mod crlf;
pub mod dkim;
pub mod feedback;
pub mod message_id;
pub mod raw;

/// Parse MIME that anyone may have sent. The parser is a dependency whose internal checks
/// (`debug_assert!`) fire on some malformed input in builds that keep them; a message that makes
/// it panic is a message that does not parse, never a dead connection or worker.
pub fn parse_mime(bytes: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mail_parser::MessageParser::default().parse(bytes)))
        .ok()
        .flatten()
}

/// A message input that SES would refuse, with the text SES (or weir, where SES is silent) gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMessage(pub String);

impl InvalidMessage {
    /// An error with this text.
    pub fn new(msg: impl Into<String>) -> Self {
        InvalidMessage(msg.into())
    }
}
