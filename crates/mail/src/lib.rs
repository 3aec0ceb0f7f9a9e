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
