//! MessageIds shaped like SES's: `<16 hex>-<uuid>-000000`.

/// A new MessageId. The first 16 hex digits carry the acceptance time in milliseconds, so ids
/// sort roughly by time.
pub fn new_message_id(now_ms: u64) -> String {
    format!("0100{:012x}-{}-000000", now_ms & 0xffff_ffff_ffff, uuid::Uuid::new_v4())
}

/// Whether `s` has the shape of a weir/SES MessageId.
pub fn is_message_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 7
        && parts[0].len() == 16
        && parts[6] == "000000"
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let id = super::new_message_id(1_795_460_337_000);
        assert!(super::is_message_id(&id), "{id}");
        assert_eq!(id.len(), 16 + 1 + 36 + 1 + 6);
    }
}
