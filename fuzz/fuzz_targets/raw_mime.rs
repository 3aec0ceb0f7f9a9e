//! Arbitrary bytes as a raw message (SendRawEmail, v2 Raw, SMTP DATA): `prepare` answers with a
//! message or a specific error, never panics, and what it accepts keeps weir's invariants: CRLF
//! line ends only (no smuggling), and every From address among the senders to verify.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = weir_mail::raw::prepare(data, "ID", "fuzz.test", 1_795_460_337) else { return };
    assert!(weir_mail::crlf::is_canonical(&p.bytes), "non-CRLF line end in a prepared message");
    assert!(p.senders.iter().any(|s| s.addr == p.from.addr), "From missing from the senders to verify");
    // What was prepared is stable: preparing it again accepts it and reports the same senders.
    let again = weir_mail::raw::prepare(&p.bytes, "ID", "fuzz.test", 1_795_460_337).expect("a prepared message is valid");
    let addrs = |v: &[weir_mail::address::Mailbox]| v.iter().map(|m| m.addr.to_ascii_lowercase()).collect::<Vec<_>>();
    assert_eq!(addrs(&again.senders), addrs(&p.senders));
});
