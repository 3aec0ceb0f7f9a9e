//! Mailboxes (`addr`, `<addr>`, `Name <addr>`) and the checks SES applies to them.

use crate::InvalidMessage;

/// A parsed mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, unquoted, if one was given.
    pub name: Option<String>,
    /// The address itself (`local@domain`), as given.
    pub addr: String,
}

impl Mailbox {
    /// The domain part, lower-cased.
    pub fn domain(&self) -> String {
        domain_of(&self.addr)
    }
}

/// Lower-cased domain of `local@domain` (empty if there is none).
pub fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
}

/// Canonical form used for identity and suppression look-ups: the domain lower-cased,
/// the local part kept (SES treats local parts case-sensitively for identities, but matching
/// is case-insensitive in practice, so we lower-case the whole address).
pub fn normalize(addr: &str) -> String {
    addr.trim().to_ascii_lowercase()
}

/// Parse and validate one mailbox as SES does for Source, To, Cc, Bcc and Reply-To.
pub fn parse_mailbox(input: &str) -> Result<Mailbox, InvalidMessage> {
    if input.contains(['\r', '\n']) {
        return Err(InvalidMessage::new(format!(
            "Address contains a line break (CR or LF), which is not allowed: {}",
            input.escape_debug()
        )));
    }
    let s = input.trim();
    let (name, addr) = match s.rfind('<') {
        Some(open) => {
            let Some(inner) = s[open + 1..].strip_suffix('>') else {
                return Err(InvalidMessage::new(format!("Missing '>' in address: {s}")));
            };
            let name = s[..open].trim().trim_matches('"').trim();
            (if name.is_empty() { None } else { Some(name.to_string()) }, inner.trim())
        }
        None => (None, s),
    };
    validate_addr(addr)?;
    Ok(Mailbox { name, addr: addr.to_string() })
}

/// Validate a bare `local@domain`.
pub fn validate_addr(addr: &str) -> Result<(), InvalidMessage> {
    let err = |m: &str| Err(InvalidMessage::new(m.to_string()));
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return err("Missing final '@domain'");
    };
    if addr.len() > 320 {
        return err("Address is longer than 320 characters");
    }
    if local.is_empty() {
        return err("Missing local name");
    }
    if domain.is_empty() {
        return err("Missing domain");
    }
    if local.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return err("Local address contains control or whitespace");
    }
    if domain.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return err("Domain contains control or whitespace");
    }
    if !local.is_ascii() {
        return err("Local address contains non-ASCII characters; addresses must be 7-bit ASCII");
    }
    if !domain.is_ascii() {
        return err("Domain contains non-ASCII characters; encode the domain with Punycode (xn--)");
    }
    if !local.starts_with('"') {
        if local.starts_with('.') {
            return err("Local address starts with dot");
        }
        if local.ends_with('.') {
            return err("Local address ends with dot");
        }
        if local.contains("..") {
            return err("Local address contains dot-dot");
        }
        if local.chars().any(|c| "()<>,;:\\\"[]@".contains(c)) {
            return err("Local address contains illegal character");
        }
    }
    if domain.starts_with('[') {
        // SES takes domain names only: an address literal would send to whatever host it names
        // (loopback, the internal network), past every route and suppression by domain.
        return err("Domain literals ([…]) are not accepted; use a domain name");
    }
    if domain.starts_with('.') {
        return err("Domain starts with dot");
    }
    if domain.ends_with('.') {
        return err("Domain ends with dot");
    }
    if domain.contains("..") {
        return err("Domain contains dot-dot");
    }
    if !domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return err("Domain contains illegal character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        assert_eq!(parse_mailbox("a@b.test").expect("ok").addr, "a@b.test");
        let m = parse_mailbox("\"Doe, Jane\" <jane@Example.COM>").expect("ok");
        assert_eq!(m.name.as_deref(), Some("Doe, Jane"));
        assert_eq!(m.domain(), "example.com");
        assert_eq!(parse_mailbox("<x+tag@sub.example.org>").expect("ok").addr, "x+tag@sub.example.org");
    }

    #[test]
    fn rejects_with_specific_texts() {
        let e = |s: &str| parse_mailbox(s).unwrap_err().0;
        assert_eq!(e("nobody"), "Missing final '@domain'");
        assert_eq!(e("@x.test"), "Missing local name");
        assert_eq!(e("a@"), "Missing domain");
        assert_eq!(e("a b@x.test"), "Local address contains control or whitespace");
        assert_eq!(e("a@x..test"), "Domain contains dot-dot");
        assert_eq!(e("a@x_y.test"), "Domain contains illegal character");
        assert!(e("a@x.test\r\nBcc: evil@x.test").contains("line break"));
        assert!(e("ü@x.test").contains("non-ASCII"));
        assert!(e("Name <a@x.test").contains("Missing '>'"));
    }
}
