//! The SES mailbox simulator, answered without the network.

use weir_classify::reply::Reply;

/// The simulator's domain.
pub const DOMAIN: &str = "simulator.amazonses.com";

/// What a simulator address does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Delivered(Reply),
    /// Delivered, then a complaint arrives.
    Complaint(Reply),
    /// Hard bounce (not added to the suppression list, as in SES).
    Bounce(Reply),
    /// Bounced because the address is on the suppression list.
    Suppressed,
}

/// The outcome for `address` if it is a simulator address.
pub fn outcome(address: &str) -> Option<Outcome> {
    let lower = address.to_ascii_lowercase();
    let (local, domain) = lower.rsplit_once('@')?;
    if domain != DOMAIN {
        return None;
    }
    // SES ignores "+label" parts of simulator addresses.
    let local = local.split('+').next().unwrap_or(local);
    let ok = Reply::new(250, Some((2, 0, 0)), "Ok: mailbox simulator");
    Some(match local {
        "bounce" => Outcome::Bounce(Reply::new(550, Some((5, 1, 1)), "user unknown (mailbox simulator)")),
        "complaint" => Outcome::Complaint(ok),
        "suppressionlist" => Outcome::Suppressed,
        _ => Outcome::Delivered(ok),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(matches!(outcome("success@simulator.amazonses.com"), Some(Outcome::Delivered(_))));
        assert!(matches!(outcome("ooto@simulator.amazonses.com"), Some(Outcome::Delivered(_))));
        assert!(matches!(outcome("bounce+x@Simulator.AmazonSES.com"), Some(Outcome::Bounce(_))));
        assert!(matches!(outcome("complaint@simulator.amazonses.com"), Some(Outcome::Complaint(_))));
        assert_eq!(outcome("suppressionlist@simulator.amazonses.com"), Some(Outcome::Suppressed));
        assert_eq!(outcome("bounce@example.com"), None);
    }
}
