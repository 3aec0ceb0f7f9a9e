//! MIME found by fuzzing the feedback listener: it trips the MIME parser's internal checks in
//! builds that keep them. Reading it must give an answer, not a panic.

#[test]
fn a_message_that_trips_the_parsers_checks_is_read_without_a_panic() {
    let data = include_bytes!("data/parser-check-trips.eml");
    // Either answer is fine; reaching this line is the point.
    let _ = weir_mail::feedback::parse_report(data);
    let _ = weir_mail::raw::prepare(data, "ID", "fuzz.test", 1_795_460_337);
}

/// Found by fuzzing SendRawEmail's input: a header that runs to the end of the input (bare CRs,
/// NULs, no blank line) whose From the MIME parser read one way in the input and another in its
/// rewrite. What is accepted once must be accepted again, with the same authors to verify.
#[test]
fn a_prepared_message_is_prepared_again_with_the_same_senders() {
    let data = include_bytes!("data/reprepare.eml");
    let Ok(p) = weir_mail::raw::prepare(data, "ID", "fuzz.test", 1_795_460_337) else { return };
    let again =
        weir_mail::raw::prepare(&p.bytes, "ID", "fuzz.test", 1_795_460_337).expect("a prepared message is valid");
    let addrs = |v: &[weir_mail::address::Mailbox]| v.iter().map(|m| m.addr.to_ascii_lowercase()).collect::<Vec<_>>();
    assert_eq!(addrs(&again.senders), addrs(&p.senders));
}
