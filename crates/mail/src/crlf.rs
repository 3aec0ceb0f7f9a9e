//! Line ends. RFC 5321 §2.3.8 forbids sending a bare CR or a bare LF, and receivers disagree on
//! what either means (some take `<CR>.<CR>` as the end of DATA: SMTP smuggling). Every message
//! weir spools or relays therefore has each bare CR, bare LF and CRLF turned into one CRLF, the
//! way SES itself treats a bare CR as a line break.

/// `data` with every line end (CRLF, bare CR, bare LF) written as CRLF.
pub fn normalize(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 2);
    push_normalized(&mut out, data);
    out
}

/// Append `data` to `out` with every line end written as CRLF.
pub fn push_normalized(out: &mut Vec<u8>, data: &[u8]) {
    let mut i = 0;
    while i < data.len() {
        // Copy the run up to the next CR or LF in one go.
        let run = data[i..].iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(data.len() - i);
        out.extend_from_slice(&data[i..i + run]);
        i += run;
        if i == data.len() {
            break;
        }
        out.extend_from_slice(b"\r\n");
        i += if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
    }
}

/// Whether every CR in `data` is followed by LF and every LF preceded by CR.
pub fn is_canonical(data: &[u8]) -> bool {
    data.iter().enumerate().all(|(i, b)| match b {
        b'\r' => data.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && data[i - 1] == b'\r',
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bare_cr_and_lf_become_crlf() {
        assert_eq!(normalize(b"a\rb\nc\r\nd"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(normalize(b"\r.\r"), b"\r\n.\r\n");
        assert_eq!(normalize(b"\r\r\n\n"), b"\r\n\r\n\r\n");
        assert_eq!(normalize(b""), b"");
    }

    proptest! {
        #[test]
        fn output_is_canonical_and_keeps_other_bytes(data in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200)) {
            let out = normalize(&data);
            prop_assert!(is_canonical(&out));
            let strip = |d: &[u8]| d.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect::<Vec<u8>>();
            prop_assert_eq!(strip(&out), strip(&data));
            // Canonical input is left as it is.
            prop_assert_eq!(normalize(&out), out);
        }
    }
}
