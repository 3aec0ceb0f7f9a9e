//! MIME found by fuzzing the feedback listener: it trips the MIME parser's internal checks in
//! builds that keep them. Reading it must give an answer, not a panic.

#[test]
fn a_message_that_trips_the_parsers_checks_is_read_without_a_panic() {
    let data = include_bytes!("data/parser-check-trips.eml");
    // Either answer is fine; reaching this line is the point.
    let _ = weir_mail::feedback::parse_report(data);
    let _ = weir_mail::raw::prepare(data, "ID", "fuzz.test", 1_795_460_337);
}
