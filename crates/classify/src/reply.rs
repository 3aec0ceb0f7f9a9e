//! An SMTP reply as the delivery engine sees it.

use std::fmt;

/// A complete (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// Enhanced status code (`class.subject.detail`), when the server sent one.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of all lines, joined with a space, without codes.
    pub text: String,
}

impl Reply {
    /// A reply from its parts.
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> Self {
        Reply { code, enhanced, text: text.into() }
    }

    /// Parse `"421 4.7.28 Gmail has detected …"` (one line, or lines joined by `\n`).
    pub fn parse(raw: &str) -> Option<Reply> {
        let mut code = None;
        let mut enhanced = None;
        let mut texts = Vec::new();
        for line in raw.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            let c: u16 = line.get(..3)?.parse().ok()?;
            if !(200..600).contains(&c) {
                return None;
            }
            code.get_or_insert(c);
            let mut rest = line.get(4..).unwrap_or("").trim_start();
            let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(e) = parse_enhanced(first) {
                enhanced.get_or_insert(e);
                rest = tail;
            }
            texts.push(rest.trim().to_string());
        }
        Some(Reply { code: code?, enhanced, text: texts.join(" ") })
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced code as `"4.7.28"`.
    pub fn enhanced_str(&self) -> Option<String> {
        self.enhanced.map(|(a, b, c)| format!("{a}.{b}.{c}"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enhanced_str() {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

/// `"4.7.28"` → (4, 7, 28).
pub fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut it = s.split('.');
    let a: u8 = it.next()?.parse().ok()?;
    let b: u16 = it.next()?.parse().ok()?;
    let c: u16 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(2..=5).contains(&a) {
        return None;
    }
    Some((a, b, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_multi_line() {
        let r = Reply::parse("421 4.7.28 Gmail has detected an unusual rate of email.").unwrap();
        assert_eq!((r.code, r.enhanced), (421, Some((4, 7, 28))));
        assert_eq!(r.text, "Gmail has detected an unusual rate of email.");
        let r = Reply::parse("550-5.1.1 The email account that you tried to reach does\n550 5.1.1 not exist.").unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(r.text, "The email account that you tried to reach does not exist.");
        let r = Reply::parse("421 [TS04] Messages temporarily deferred").unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.to_string(), "421 [TS04] Messages temporarily deferred");
        assert!(Reply::parse("hello").is_none());
    }
}
