//! The reply classifier: a rule table, read top to bottom, first match wins. Each rule matches on
//! the reply code, the enhanced status code, words in the text and the provider, and names a
//! [`Category`]; the category decides the [`Action`]. The table covers every clue of the deliverability guidance weir follows.

use crate::provider::Provider;
use crate::reply::Reply;

/// What a reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// 2xx.
    Accepted,
    /// Temporary throttling: 421, "rate limit exceeded", "try again later".
    RateLimited,
    /// Gmail 4.7.28: unusual rate of mail from this sender.
    UnusualRate,
    /// One recipient receives too quickly (450 4.2.1; Microsoft's per-recipient limit).
    RecipientRateLimited,
    /// Too many recipients in one transaction (452 4.5.3).
    TooManyRecipients,
    /// Too many connections from this sender at once (a cap at the greeting): fewer
    /// connections, not a slower rate.
    TooManyConnections,
    /// Authentication or transport problem (4.7.23–4.7.40: PTR, SPF, DKIM, DMARC, TLS):
    /// slowing down does not help; the configuration must be fixed.
    AuthOrTransport,
    /// Yahoo/AOL TS or TSS deferral.
    YahooDeferral,
    /// The receiver saw the same Message-ID again.
    DuplicateMessageId,
    /// The address does not exist (5.1.1).
    InvalidRecipient,
    /// Mailbox full or over quota.
    MailboxFull,
    /// Low reputation, unsolicited mail, blocked.
    Reputation,
    /// The receiver (or a relay) gave up: delivery time expired.
    Expired,
    /// HTTP 429 or Retry-After from an API-style lane.
    ApiThrottle,
    /// Any other 4xx.
    TemporaryOther,
    /// Any other 5xx.
    PermanentOther,
}

impl Category {
    /// Its name in metrics, events and the dashboard (`rate_limited`, `unusual_rate`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Accepted => "accepted",
            Category::RateLimited => "rate_limited",
            Category::UnusualRate => "unusual_rate",
            Category::RecipientRateLimited => "recipient_rate_limited",
            Category::TooManyRecipients => "too_many_recipients",
            Category::TooManyConnections => "too_many_connections",
            Category::AuthOrTransport => "auth_or_transport",
            Category::YahooDeferral => "yahoo_deferral",
            Category::DuplicateMessageId => "duplicate_message_id",
            Category::InvalidRecipient => "invalid_recipient",
            Category::MailboxFull => "mailbox_full",
            Category::Reputation => "reputation",
            Category::Expired => "expired",
            Category::ApiThrottle => "api_throttle",
            Category::TemporaryOther => "temporary_other",
            Category::PermanentOther => "permanent_other",
        }
    }
}

/// SES bounce type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceType {
    /// Hard bounce.
    Permanent,
    /// Soft bounce.
    Transient,
    /// Could not tell.
    Undetermined,
}

impl BounceType {
    /// SES spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceType::Permanent => "Permanent",
            BounceType::Transient => "Transient",
            BounceType::Undetermined => "Undetermined",
        }
    }
}

/// What the delivery engine does about a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivered.
    Delivered,
    /// Retry this recipient later (backoff); the lane goes on.
    RetryRecipient,
    /// Retry later and slow the whole lane down.
    SlowLane,
    /// Pause the whole lane for at least this many minutes, then resume gently.
    PauseLane {
        /// Minimum pause.
        minutes: u32,
    },
    /// Retry the refused recipients in smaller transactions, at once.
    SplitTransaction,
    /// Retry later over fewer connections; the rate stays.
    FewerConnections,
    /// Raise a configuration incident for the lane and retry later.
    ConfigIncident,
    /// Wait exactly the Retry-After the API gave.
    WaitRetryAfter,
    /// Give up on this recipient.
    Bounce {
        /// SES bounceType.
        bounce_type: BounceType,
        /// SES bounceSubType.
        subtype: &'static str,
        /// Add the address to the account's suppression list.
        suppress: bool,
    },
}

/// A classified reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The category.
    pub category: Category,
    /// What to do.
    pub action: Action,
    /// The rule that matched (for logs and incident timelines).
    pub rule: &'static str,
}

#[derive(Clone, Copy)]
enum Code {
    Any,
    Class(u16),
    Exact(u16),
}

#[derive(Clone, Copy)]
enum Enh {
    Any,
    /// subject.detail with any class.
    Is(u16, u16),
    /// subject with details in an inclusive range, any class.
    Range(u16, u16, u16),
}

struct Rule {
    name: &'static str,
    code: Code,
    enhanced: Enh,
    /// Any of these (lower-case) in the text; empty = no text condition.
    words: &'static [&'static str],
    /// Enhanced code and words are alternatives (either matches) rather than both required.
    either: bool,
    provider: Option<Provider>,
    category: Category,
}

const fn rule(
    name: &'static str,
    code: Code,
    enhanced: Enh,
    words: &'static [&'static str],
    either: bool,
    category: Category,
) -> Rule {
    Rule { name, code, enhanced, words, either, provider: None, category }
}

/// The table. Order matters: specific clues before generic ones.
const RULES: &[Rule] = &[
    rule(
        "yahoo-ts",
        Code::Class(4),
        Enh::Any,
        &["[ts0", "[tss0", " ts01", " ts02", " ts03", " ts04", "tss04"],
        false,
        Category::YahooDeferral,
    ),
    rule("gmail-4.7.28", Code::Any, Enh::Is(7, 28), &["unusual rate"], true, Category::UnusualRate),
    rule("auth-transport", Code::Any, Enh::Range(7, 23, 40), &[], false, Category::AuthOrTransport),
    rule(
        "auth-transport-text",
        Code::Any,
        Enh::Any,
        &[
            "ptr record",
            "reverse dns",
            "spf authentication",
            "dkim authentication",
            "dmarc",
            "tls is missing",
            "unauthenticated",
            "not authenticated",
        ],
        false,
        Category::AuthOrTransport,
    ),
    rule(
        "recipient-rate",
        Code::Any,
        Enh::Is(2, 1),
        &[
            "receiving email too quickly",
            "receiving mail too quickly",
            "receiving mail at a rate",
            "receive limit",
            "recipientthresholdexceeded",
        ],
        true,
        Category::RecipientRateLimited,
    ),
    rule("microsoft-recipient-limit", Code::Any, Enh::Range(2, 121, 122), &[], false, Category::RecipientRateLimited),
    rule("too-many-recipients", Code::Any, Enh::Is(5, 3), &["too many recipients"], true, Category::TooManyRecipients),
    rule(
        "duplicate-message-id",
        Code::Any,
        Enh::Any,
        &["repeated message-id", "duplicate message-id", "message-id is duplicated"],
        false,
        Category::DuplicateMessageId,
    ),
    rule(
        "mailbox-full",
        Code::Any,
        Enh::Is(2, 2),
        &["over quota", "mailbox full", "mailbox is full", "quota exceeded", "insufficient storage"],
        true,
        Category::MailboxFull,
    ),
    rule(
        "invalid-recipient",
        Code::Class(5),
        Enh::Range(1, 1, 1),
        &[
            "does not exist",
            "user unknown",
            "unknown user",
            "no such user",
            "recipient not found",
            "address rejected",
            "invalid recipient",
            "mailbox unavailable",
        ],
        true,
        Category::InvalidRecipient,
    ),
    rule("invalid-recipient-5.1.10", Code::Class(5), Enh::Is(1, 10), &[], false, Category::InvalidRecipient),
    rule(
        "reputation",
        Code::Any,
        Enh::Any,
        &["low reputation", "poor reputation", "unsolicited", "spam", "blocklist", "blacklist", "blocked"],
        false,
        Category::Reputation,
    ),
    rule("expired", Code::Any, Enh::Is(4, 7), &["time expired", "delivery time expired"], true, Category::Expired),
    rule(
        "connection-limit",
        Code::Class(4),
        Enh::Any,
        &[
            "too many connections",
            "too many concurrent",
            "too many simultaneous",
            "too many sessions",
            "connection limit",
            "connections from your ip",
            "concurrent connections",
        ],
        false,
        Category::TooManyConnections,
    ),
    rule(
        "rate-limited",
        Code::Class(4),
        Enh::Any,
        &["rate limit", "try again later", "throttl", "temporarily deferred", "too fast"],
        false,
        Category::RateLimited,
    ),
    rule("421", Code::Exact(421), Enh::Any, &[], false, Category::RateLimited),
];

fn code_matches(c: Code, r: &Reply) -> bool {
    match c {
        Code::Any => true,
        Code::Class(k) => r.code / 100 == k,
        Code::Exact(x) => r.code == x,
    }
}

fn enh_matches(e: Enh, r: &Reply) -> Option<bool> {
    match (e, r.enhanced) {
        (Enh::Any, _) => None,
        (_, None) => Some(false),
        (Enh::Is(s, d), Some((_, rs, rd))) => Some(rs == s && rd == d),
        (Enh::Range(s, lo, hi), Some((_, rs, rd))) => Some(rs == s && (lo..=hi).contains(&rd) && !(s == 7 && rd == 28)),
    }
}

fn words_match(words: &[&str], lower: &str) -> Option<bool> {
    if words.is_empty() { None } else { Some(words.iter().any(|w| lower.contains(w))) }
}

fn matches(rule: &Rule, r: &Reply, lower: &str, provider: Provider) -> bool {
    if !code_matches(rule.code, r) || rule.provider.is_some_and(|p| p != provider) {
        return false;
    }
    let (e, w) = (enh_matches(rule.enhanced, r), words_match(rule.words, lower));
    match (e, w) {
        (None, None) => true,
        (Some(x), None) | (None, Some(x)) => x,
        (Some(a), Some(b)) => {
            if rule.either {
                a || b
            } else {
                a && b
            }
        }
    }
}

/// The category of a reply from `provider`'s server.
pub fn category(r: &Reply, provider: Provider) -> (Category, &'static str) {
    if r.is_positive() {
        return (Category::Accepted, "2xx");
    }
    let lower = format!(" {}", r.text.to_ascii_lowercase());
    for rule in RULES {
        if matches(rule, r, &lower, provider) {
            return (rule.category, rule.name);
        }
    }
    if r.is_transient() { (Category::TemporaryOther, "4xx") } else { (Category::PermanentOther, "5xx") }
}

/// Classify a reply and decide the action.
pub fn classify(r: &Reply, provider: Provider) -> Decision {
    let (category, rule) = category(r, provider);
    let bounce = |bounce_type, subtype, suppress| Action::Bounce { bounce_type, subtype, suppress };
    let permanent = r.is_permanent();
    let action = match category {
        Category::Accepted => Action::Delivered,
        Category::RateLimited | Category::YahooDeferral => Action::SlowLane,
        Category::UnusualRate => Action::PauseLane { minutes: 10 },
        Category::RecipientRateLimited => Action::RetryRecipient,
        Category::TooManyRecipients => Action::SplitTransaction,
        Category::TooManyConnections => Action::FewerConnections,
        Category::AuthOrTransport if permanent => bounce(BounceType::Transient, "General", false),
        Category::AuthOrTransport => Action::ConfigIncident,
        Category::DuplicateMessageId if permanent => bounce(BounceType::Transient, "ContentRejected", false),
        Category::DuplicateMessageId => Action::ConfigIncident,
        Category::InvalidRecipient => bounce(BounceType::Permanent, "NoEmail", true),
        Category::MailboxFull if permanent => bounce(BounceType::Transient, "MailboxFull", false),
        Category::MailboxFull => Action::RetryRecipient,
        Category::Reputation if permanent => bounce(BounceType::Undetermined, "Undetermined", false),
        Category::Reputation => Action::SlowLane,
        Category::Expired if permanent => bounce(BounceType::Transient, "General", false),
        Category::Expired => Action::RetryRecipient,
        Category::ApiThrottle => Action::WaitRetryAfter,
        Category::TemporaryOther => Action::RetryRecipient,
        Category::PermanentOther => bounce(BounceType::Permanent, "General", false),
    };
    Decision { category, action, rule }
}

/// Classify an HTTP answer from an API-style lane (HTTP 429 with Retry-After, or 5xx).
pub fn classify_http(status: u16) -> Decision {
    let (category, action) = match status {
        200..=299 => (Category::Accepted, Action::Delivered),
        429 => (Category::ApiThrottle, Action::WaitRetryAfter),
        500..=599 => (Category::TemporaryOther, Action::RetryRecipient),
        _ => (
            Category::PermanentOther,
            Action::Bounce { bounce_type: BounceType::Permanent, subtype: "General", suppress: false },
        ),
    };
    Decision { category, action, rule: "http" }
}

#[cfg(test)]
mod tests;
