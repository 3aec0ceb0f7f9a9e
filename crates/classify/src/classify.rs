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
    /// The receiver saw the same Message-ID again (Gmail words it as a 4.7.28 about the
    /// Message-ID's quota): a problem of one message, not of the rate.
    DuplicateMessageId,
    /// Greylisting: the first attempt of an (IP, sender, recipient) triple is deferred; the same
    /// envelope is accepted after a window.
    Greylisted,
    /// The sending IP is blocked by this provider (Yahoo TSS09/TSS11, Microsoft S3140 and its
    /// banned-IP codes): retrying soon will not help, and it says nothing about the recipient.
    IpBlocked,
    /// The host could not be reached or did not answer (no route, timeout, DNS failure).
    Unreachable,
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
            Category::Greylisted => "greylisted",
            Category::IpBlocked => "ip_blocked",
            Category::Unreachable => "unreachable",
            Category::InvalidRecipient => "invalid_recipient",
            Category::MailboxFull => "mailbox_full",
            Category::Reputation => "reputation",
            Category::Expired => "expired",
            Category::ApiThrottle => "api_throttle",
            Category::TemporaryOther => "temporary_other",
            Category::PermanentOther => "permanent_other",
        }
    }

    /// The lane was throttled, not the recipient: a refusal of the sending IP's rate or
    /// connections, a lock-out or a block. Its recipients wait for the lane, not for their own
    /// backoff.
    pub fn throttles_lane(self) -> bool {
        matches!(
            self,
            Category::RateLimited
                | Category::YahooDeferral
                | Category::UnusualRate
                | Category::IpBlocked
                | Category::TooManyConnections
        )
    }

    /// The receiver takes fewer recipients per transaction: the recipient is offered again in
    /// the next transaction on the same connection, not deferred.
    pub fn retry_in_next_transaction(self) -> bool {
        self == Category::TooManyRecipients
    }

    /// What an operator changes for deferrals of this kind (the usual remedies), if anything.
    pub fn remedy(self) -> Option<&'static str> {
        Some(match self {
            Category::UnusualRate => {
                "Gmail 4.7.28: pause this provider for at least 10 minutes, resume on one connection, then lower the rate"
            }
            Category::RateLimited | Category::YahooDeferral | Category::ApiThrottle => {
                "lower the rate and concurrency for this provider; recover stepwise, not in one jump"
            }
            Category::TooManyConnections => "lower the number of concurrent connections to this provider",
            Category::RecipientRateLimited => "space out mail to the same recipients (a per-recipient limit)",
            Category::AuthOrTransport => {
                "fix authentication or transport: SPF, DKIM, DMARC alignment, TLS, reverse DNS"
            }
            Category::Reputation => {
                "slow down and look at list quality and complaints: the provider distrusts the source"
            }
            Category::InvalidRecipient => "clean the list: remove addresses that do not exist",
            Category::TooManyRecipients => "send fewer recipients per transaction",
            _ => return None,
        })
    }

    /// SES's DeliveryDelay `delayType` for a deferral of this kind.
    pub fn delay_type(self) -> &'static str {
        match self {
            Category::RateLimited
            | Category::UnusualRate
            | Category::YahooDeferral
            | Category::IpBlocked
            | Category::Greylisted
            | Category::RecipientRateLimited => "RecipientServerError",
            Category::MailboxFull => "MailboxFull",
            Category::AuthOrTransport => "TransientCommunicationFailure",
            Category::TooManyRecipients => "TooManyRequests",
            _ => "General",
        }
    }
}

/// What a reply speaks for: the state it changes lives at that scope, and nothing wider is
/// touched (a mailbox's limit does not slow the lane; a lock-out of the sending IP is not a
/// problem of each recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This connection only (a connection cap, a session that ended).
    Connection,
    /// The sending IP at this provider: its rate, a lock-out, a block, its reputation.
    SendingIp,
    /// One mailbox (recipient): it does not exist, is full, receives too fast, is greylisted.
    Mailbox,
    /// One message: its content, its Message-ID, its number of recipients.
    Message,
    /// The sending domain's authentication (SPF, DKIM, DMARC, Microsoft's 5.7.515).
    DomainAuth,
    /// The network between us and the host (no route, no answer, DNS).
    Network,
}

impl Scope {
    /// Its name in logs and the timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Connection => "connection",
            Scope::SendingIp => "sending_ip",
            Scope::Mailbox => "mailbox",
            Scope::Message => "message",
            Scope::DomainAuth => "domain_auth",
            Scope::Network => "network",
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
    /// Greylisted: retry this recipient with the same envelope after the window (the delay the
    /// reply states, when it states one).
    Greylisted {
        /// Seconds the reply asked for.
        retry_after_s: Option<u32>,
    },
    /// The sending IP is blocked at this provider: stop the lane for a long while, alert, and
    /// keep the recipients (they are not the problem) for a later attempt.
    BlockLane,
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
    /// What the reply speaks for.
    pub scope: Scope,
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
    // Gmail refuses a Message-ID sent too often with a 4.7.28: the message, not the rate.
    rule(
        "duplicate-message-id",
        Code::Any,
        Enh::Any,
        &[
            "same message-id",
            "repeated message-id",
            "duplicate message-id",
            "message-id is duplicated",
            "duplicate message id",
        ],
        false,
        Category::DuplicateMessageId,
    ),
    rule(
        "greylisted",
        Code::Class(4),
        Enh::Any,
        &["greylist", "graylist", "grey-list", "gray-list"],
        false,
        Category::Greylisted,
    ),
    // Blocks of the sending IP, before the TS/TSS deferrals they resemble.
    rule("yahoo-block", Code::Any, Enh::Any, &["[tss09]", "[tss11]", " tss09", " tss11"], false, Category::IpBlocked),
    rule(
        "microsoft-ip-block",
        Code::Class(5),
        Enh::Is(7, 511),
        &["(s3140)", "banned sending ip", "on our block list"],
        true,
        Category::IpBlocked,
    ),
    rule("microsoft-banned-ip", Code::Class(5), Enh::Range(7, 606, 649), &[], false, Category::IpBlocked),
    // Microsoft's consumer domains refuse a sending domain without SPF/DKIM/DMARC (5.7.515) or
    // failing DMARC (5.7.509): the domain's authentication, never the recipient.
    rule("microsoft-domain-auth", Code::Any, Enh::Range(7, 509, 515), &[], false, Category::AuthOrTransport),
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
    // x.4.1 no answer, x.4.2 bad connection, x.4.3 routing (DNS) failure, x.4.4 unable to route.
    rule("unreachable", Code::Class(4), Enh::Range(4, 1, 4), &[], false, Category::Unreachable),
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
        &[
            "rate limit",
            "try again later",
            "throttl",
            "temporarily deferred",
            "too fast",
            "too much mail",
            "too many messages",
        ],
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
        // The sending domain's authentication: an incident to fix, held and retried; a bad
        // recipient it is not (a bounce here would count against the sender's bounce rate).
        Category::AuthOrTransport => Action::ConfigIncident,
        Category::DuplicateMessageId if permanent => bounce(BounceType::Transient, "ContentRejected", false),
        Category::DuplicateMessageId => Action::RetryRecipient,
        Category::Greylisted => Action::Greylisted { retry_after_s: stated_delay(&r.text) },
        Category::IpBlocked => Action::BlockLane,
        Category::Unreachable => Action::RetryRecipient,
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
    Decision { category, action, scope: scope(category, r), rule }
}

/// What a reply of `category` speaks for.
pub fn scope(category: Category, r: &Reply) -> Scope {
    match category {
        Category::RateLimited
        | Category::UnusualRate
        | Category::YahooDeferral
        | Category::Reputation
        | Category::IpBlocked
        | Category::ApiThrottle => Scope::SendingIp,
        // A missing or mismatched PTR is the sending IP's; the rest is the domain's.
        Category::AuthOrTransport if matches!(r.enhanced, Some((_, 7, 23 | 25))) => Scope::SendingIp,
        Category::AuthOrTransport => Scope::DomainAuth,
        Category::TooManyConnections => Scope::Connection,
        Category::TooManyRecipients | Category::DuplicateMessageId => Scope::Message,
        Category::Unreachable => Scope::Network,
        Category::Accepted
        | Category::RecipientRateLimited
        | Category::Greylisted
        | Category::InvalidRecipient
        | Category::MailboxFull
        | Category::Expired
        | Category::TemporaryOther
        | Category::PermanentOther => Scope::Mailbox,
    }
}

/// A delay a reply asks for ("try again in 300 seconds", "retry in 5 minutes", "after 60s"),
/// bounded to a day. Only a number after words of waiting counts.
pub fn stated_delay(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    for (i, w) in words.iter().enumerate() {
        let (digits, unit_inline) = match w.find(|c: char| !c.is_ascii_digit()) {
            Some(0) => continue,
            Some(k) => (&w[..k], Some(&w[k..])),
            None => (*w, None),
        };
        let Ok(n) = digits.parse::<u32>() else { continue };
        let unit = unit_inline.or_else(|| words.get(i + 1).copied()).unwrap_or_default();
        let secs = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => n,
            "m" | "min" | "mins" | "minute" | "minutes" => n.saturating_mul(60),
            _ => continue,
        };
        let before = &words[i.saturating_sub(3)..i];
        if before.iter().any(|b| matches!(*b, "in" | "for" | "after" | "wait" | "retry" | "again" | "least")) {
            return Some(secs.min(86_400));
        }
    }
    None
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
    Decision { category, action, scope: Scope::SendingIp, rule: "http" }
}

#[cfg(test)]
mod tests;
