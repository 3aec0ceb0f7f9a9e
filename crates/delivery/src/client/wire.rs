//! SMTP on the wire: where a reply ends, and a message dot-stuffed for DATA.

/// Index just past a complete reply in `buf`, if there is one.
pub(super) fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let line = &buf[start..start + nl + 1];
        start += nl + 1;
        if line.len() < 4 || line[3] != b'-' {
            return Some(start);
        }
    }
    None
}

/// Dot-stuff a message and append the terminating dot. Line ends are made CRLF first, so that
/// no bare CR or LF leaves weir even from a message spooled before that rule (RFC 5321 §2.3.8).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let normalized;
    let message = if weir_mail::crlf::is_canonical(message) {
        message
    } else {
        normalized = weir_mail::crlf::normalize(message);
        &normalized[..]
    };
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_dots() {
        assert_eq!(complete_reply(b"250-a\r\n250-b\r\n"), None);
        assert_eq!(complete_reply(b"250-a\r\n250 b\r\nextra"), Some(14));
        assert_eq!(complete_reply(b"220\r\n"), Some(5));
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n".to_vec());
    }

    #[test]
    fn bare_cr_cannot_end_the_data_early() {
        assert_eq!(dot_stuff(b"a\r.\rMAIL FROM:<x@y>"), b"a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b"a\r.\nb\n.\r\n"), b"a\r\n..\r\nb\r\n..\r\n.\r\n".to_vec());
    }
}
