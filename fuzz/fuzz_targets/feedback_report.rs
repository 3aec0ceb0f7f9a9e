//! Arbitrary bytes as mail arriving at the feedback listener (a DSN, an ARF report, or anything
//! an outsider sends there), and arbitrary text as a return path: reading them never panics, a
//! DSN yields at most `MAX_DSN_GROUPS` recipients, and only a return path made with the key reads
//! back as one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_mail::feedback::{MAX_DSN_GROUPS, Report, parse_report, parse_return_path, return_path};

const KEY: &[u8] = b"fuzz-return-path-key";

fuzz_target!(|data: &[u8]| {
    if let Some(Report::Dsn(recipients)) = parse_report(data) {
        assert!(recipients.len() <= MAX_DSN_GROUPS, "{} DSN recipients read", recipients.len());
    }
    let text = String::from_utf8_lossy(data);
    let domains = vec!["bounces.test".to_string()];
    if let Some((message, idx)) = parse_return_path(&text, &domains, KEY) {
        // Only what the key made opens: the same message and index give the same address.
        assert_eq!(return_path(&message, idx, "bounces.test", KEY).to_ascii_lowercase(), text.to_ascii_lowercase());
    }
});
