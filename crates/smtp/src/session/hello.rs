//! EHLO and HELO: the greeting's name, and the extensions offered.

use super::Session;

impl Session {
    pub(super) fn ehlo_reply(&mut self) {
        let cfg = &self.ctx.cfg;
        let mut lines = vec![cfg.hostname.clone(), "8BITMIME".into(), "PIPELINING".into()];
        // No SMTPUTF8: as SES, addresses are 7-bit ASCII (domains in Punycode).
        lines.push(format!("SIZE {}", cfg.max_message_bytes));
        if cfg.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        if !self.tls && self.ctx.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if (self.tls || cfg.allow_plaintext_auth) && !cfg.feedback {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("Ok".into());
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out.extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
    }
}

/// A plausible EHLO/HELO argument: printable, no spaces or control bytes (NUL included).
/// A domain or an address literal: printable ASCII, as RFC 5321 has it without SMTPUTF8.
pub(super) fn valid_helo(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_graphic())
}
