//! Arbitrary header lists (`name: value` lines) and bodies into the SigV4 verifier: every input
//! gets an answer, never a panic, and nothing but the right signature is accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_sigv4::{RequestParts, check_headers, verify};

const NOW: u64 = 1_795_460_337;
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers: Vec<(&str, &str)> =
        head.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
    let _ = weir_sigv4::parse_authorization(head);
    let lookup = |k: &str| (k == "AKIDFUZZ").then(|| SECRET.to_string());
    let pre = check_headers(&headers, NOW, 300, lookup);
    let req = RequestParts { method: "POST", raw_path: "/", raw_query: "", headers: &headers, body: body.as_bytes() };
    let full = verify(&req, NOW, 300, lookup);
    // The full check never accepts what the header check refused.
    if let Err(e) = &pre {
        assert!(full.is_err(), "verify accepted what check_headers refused: {e}");
    }
    if let Ok(v) = full {
        // Only a key we know can sign.
        assert_eq!(v.access_key, "AKIDFUZZ");
    }
});
