//! A provider's hidden behaviour. Times are milliseconds on the caller's clock.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Whose words and habits the receiver has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Over the rate, a RCPT gets the multi-line `421-4.7.28` and the connection is closed.
    Gmail,
    /// Over the rate, MAIL FROM gets `421 4.7.0 [TSS04] …` and the connection is closed; while
    /// escalated, the greeting is `421 4.7.0 [TS04] …`.
    Yahoo,
    /// Over the rate, a RCPT gets `451 4.7.500 Server busy`; the connection stays.
    Microsoft,
    /// Over the rate, a RCPT gets `450 4.7.1 … rate limit`; the connection stays.
    Generic,
}

/// The hidden parameters of a receiver (a scenario's `[[provider]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Replies and habits.
    #[serde(default = "default_style")]
    pub style: Style,
    /// Messages (recipients) accepted per minute at full reputation.
    pub limit_per_min: f64,
    /// Concurrent connections accepted; one more is refused at the greeting.
    pub max_connections: u32,
    /// Over-rate refusals within 5 minutes that make the receiver escalate (0 = never).
    #[serde(default)]
    pub escalation_deferrals: u32,
    /// Length of an escalation, minutes; each one also lowers the reputation.
    #[serde(default = "default_escalation_minutes")]
    pub escalation_minutes: f64,
    /// Messages per recipient per hour (0 = no limit).
    #[serde(default)]
    pub per_recipient_per_hour: u32,
    /// A new source starts at this many per minute (0 = trusted from the start) ...
    #[serde(default)]
    pub warmup_start_per_min: f64,
    /// ... and grows by this factor per 10 clean minutes.
    #[serde(default = "default_growth")]
    pub warmup_growth_per_10min: f64,
    /// Round-trip delay before each batch of replies, ms (sets how fast one connection goes).
    #[serde(default = "default_rtt")]
    pub reply_delay_ms: u64,
    /// Refuse over-rate mail after the message (at end of data) instead of at RCPT.
    #[serde(default)]
    pub throttle_at_data_end: bool,
    /// Recipients per transaction accepted; more get `452 4.5.3` (0 = no limit).
    #[serde(default)]
    pub max_recipients: u32,
    /// Over the rate, lock the sender out for this long, seconds (0 = no lock-out): every
    /// connection is then refused at the greeting, or at MAIL with `lockout_at_mail`, with
    /// Yahoo's TSS04 (or `rate_reply`), and closed.
    #[serde(default)]
    pub lockout_seconds: f64,
    /// Refuse at MAIL instead of at the greeting during a lock-out.
    #[serde(default)]
    pub lockout_at_mail: bool,
    /// Every attempt during a lock-out starts it again.
    #[serde(default)]
    pub lockout_extends: bool,
    /// Over-rate refusals worded this way instead of the style's (e.g. as a complaint about
    /// connections), with `rate_reply_closes` saying whether the connection is then closed.
    #[serde(default)]
    pub rate_reply: Option<String>,
    /// See `rate_reply`.
    #[serde(default)]
    pub rate_reply_closes: bool,
    /// Greylisting: the first attempt of each (sender, recipient) pair is deferred with
    /// `450 4.2.0 … Greylisted`; the same pair passes this many seconds later (0 = none).
    #[serde(default)]
    pub greylist_seconds: f64,
    /// Mailboxes named `hot…` take this many messages a minute; more get a multi-line
    /// `452 4.2.1` for that recipient only (0 = no limit).
    #[serde(default)]
    pub hot_mailbox_per_min: u32,
    /// How many seconds of the rate may arrive at once (the bucket's depth).
    #[serde(default = "default_burst")]
    pub burst_seconds: f64,
}

fn default_burst() -> f64 {
    2.0
}

fn default_style() -> Style {
    Style::Generic
}
fn default_escalation_minutes() -> f64 {
    15.0
}
fn default_growth() -> f64 {
    1.5
}
fn default_rtt() -> u64 {
    40
}

/// A reply, and whether the receiver closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Reply lines, CRLF-terminated.
    pub text: String,
    /// Close after writing it.
    pub close: bool,
}

impl Answer {
    fn ok(text: &str) -> Answer {
        Answer { text: format!("{text}\r\n"), close: false }
    }
    fn refuse(text: &str, close: bool) -> Answer {
        Answer { text: format!("{text}\r\n"), close }
    }
}

/// Gmail's over-rate refusal, as it words it.
pub const GMAIL_4_7_28: &str = "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating\r\n\
421-4.7.28 from your IP address. To protect our users from spam, mail sent from\r\n\
421 4.7.28 your IP address has been temporarily rate limited.";
const YAHOO_TSS04: &str = "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1";
const YAHOO_TS04: &str =
    "421 4.7.0 [TS04] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.56.1";
const MS_BUSY: &str = "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)";
const GENERIC_RATE: &str = "450 4.7.1 Rate limit exceeded, try again later";
const TOO_MANY_CONNECTIONS: &str = "421 4.7.0 Too many concurrent connections";

/// Counters a test or report reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Messages accepted (per recipient).
    pub accepted: u64,
    /// Recipients refused for the rate (or escalation).
    pub rate_refusals: u64,
    /// Connections refused at the greeting for the connection cap.
    pub connection_refusals: u64,
    /// Recipients refused as unknown.
    pub invalid: u64,
    /// Recipients refused for the per-recipient limit.
    pub per_recipient_refusals: u64,
    /// Recipients deferred by greylisting.
    pub greylisted: u64,
    /// Connections or transactions refused during a lock-out.
    pub lockout_refusals: u64,
    /// Lock-outs begun.
    pub lockouts: u32,
    /// Most connections open at once.
    pub peak_connections: u32,
    /// Escalations.
    pub escalations: u32,
}

/// A receiver's live state.
pub struct Model {
    spec: Spec,
    tokens: f64,
    last_ms: u64,
    reputation: f64,
    warm_limit: f64,
    clean_since: u64,
    recent_refusals: VecDeque<u64>,
    escalated_until: u64,
    per_rcpt: HashMap<String, VecDeque<u64>>,
    open: u32,
    locked_until: u64,
    /// Greylisting: when each (sender, recipient) pair was first seen.
    grey: HashMap<(String, String), u64>,
    /// The sender of the transaction in progress (greylisting keys on it).
    sender: String,
    /// Times each recipient was offered (RCPT sent), for checks that no attempt is counted
    /// for a recipient never offered.
    offers: HashMap<String, u32>,
    /// What happened so far.
    pub counters: Counters,
}

impl Model {
    /// A receiver first contacted at `now`.
    pub fn new(spec: Spec, now: u64) -> Model {
        let warm_limit = if spec.warmup_start_per_min > 0.0 { spec.warmup_start_per_min } else { spec.limit_per_min };
        Model {
            tokens: (warm_limit / 60.0).max(1.0),
            last_ms: now,
            reputation: 1.0,
            warm_limit,
            clean_since: now,
            recent_refusals: VecDeque::new(),
            escalated_until: 0,
            per_rcpt: HashMap::new(),
            open: 0,
            locked_until: 0,
            grey: HashMap::new(),
            sender: String::new(),
            offers: HashMap::new(),
            counters: Counters::default(),
            spec,
        }
    }

    /// The hidden parameters.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Messages per minute accepted right now (hidden from senders).
    pub fn current_limit(&self) -> f64 {
        self.warm_limit.min(self.spec.limit_per_min) * self.reputation
    }

    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last_ms) as f64 / 60_000.0;
        self.last_ms = now.max(self.last_ms);
        let limit = self.current_limit();
        // A burst allowance (`burst_seconds` of the rate): providers count over short windows.
        self.tokens = (self.tokens + dt * limit).min((limit / 60.0 * self.spec.burst_seconds).max(2.0));
        // Clean traffic heals the reputation and grows a new source's limit.
        if now.saturating_sub(self.clean_since) >= 600_000 && self.escalated_until <= now {
            self.clean_since = now;
            self.reputation = (self.reputation + 0.05).min(1.0);
            if self.warm_limit < self.spec.limit_per_min {
                self.warm_limit = (self.warm_limit * self.spec.warmup_growth_per_10min).min(self.spec.limit_per_min);
            }
        }
    }

    fn refused_for_rate(&mut self, now: u64) {
        self.counters.rate_refusals += 1;
        self.clean_since = now;
        if self.escalated_until > now {
            return;
        }
        self.recent_refusals.push_back(now);
        while self.recent_refusals.front().is_some_and(|t| now.saturating_sub(*t) > 300_000) {
            self.recent_refusals.pop_front();
        }
        if self.spec.escalation_deferrals > 0 && self.recent_refusals.len() as u32 >= self.spec.escalation_deferrals {
            // Pushed too hard: escalate, and remember it in the reputation.
            self.escalated_until = now + (self.spec.escalation_minutes * 60_000.0) as u64;
            self.reputation = (self.reputation * 0.8).max(0.2);
            self.recent_refusals.clear();
            self.counters.escalations += 1;
        }
    }

    fn escalated(&self, now: u64) -> bool {
        self.escalated_until > now
    }

    /// The escalation reply of this style (a sender that kept pushing).
    fn escalation_answer(&self) -> Answer {
        match self.spec.style {
            Style::Gmail => Answer::refuse(GMAIL_4_7_28, true),
            Style::Yahoo => Answer::refuse(YAHOO_TS04, true),
            Style::Microsoft => Answer::refuse(MS_BUSY, false),
            Style::Generic => Answer::refuse("421 4.7.0 Too much mail from your IP, try again later", true),
        }
    }

    /// Times `address` was offered in a RCPT.
    pub fn offers(&self, address: &str) -> u32 {
        self.offers.get(&address.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    fn lockout_answer(&self) -> Answer {
        match &self.spec.rate_reply {
            Some(text) => Answer::refuse(text, true),
            None => Answer::refuse(YAHOO_TSS04, true),
        }
    }

    /// During a lock-out: the refusal (the lock-out starts again when attempts extend it).
    fn locked(&mut self, now: u64) -> Option<Answer> {
        if self.locked_until <= now {
            return None;
        }
        if self.spec.lockout_extends {
            self.locked_until = now + (self.spec.lockout_seconds * 1000.0) as u64;
        }
        self.counters.lockout_refusals += 1;
        self.clean_since = now;
        Some(self.lockout_answer())
    }

    /// The over-rate reply of this style.
    fn rate_answer(&self) -> Answer {
        if let Some(text) = &self.spec.rate_reply {
            return Answer::refuse(text, self.spec.rate_reply_closes);
        }
        match self.spec.style {
            Style::Gmail => Answer::refuse(GMAIL_4_7_28, true),
            Style::Yahoo => Answer::refuse(YAHOO_TSS04, true),
            Style::Microsoft => Answer::refuse(MS_BUSY, false),
            Style::Generic => Answer::refuse(GENERIC_RATE, false),
        }
    }

    /// A connection arrives: the greeting, or a refusal (connection cap; Yahoo while escalated).
    /// An accepted connection counts as open until [`Model::disconnect`].
    pub fn connect(&mut self, now: u64) -> Answer {
        if self.open >= self.spec.max_connections {
            self.counters.connection_refusals += 1;
            return Answer::refuse(TOO_MANY_CONNECTIONS, true);
        }
        if self.spec.style == Style::Yahoo && self.escalated(now) {
            self.refused_for_rate(now);
            return Answer::refuse(YAHOO_TS04, true);
        }
        if !self.spec.lockout_at_mail
            && let Some(refusal) = self.locked(now)
        {
            return refusal;
        }
        self.open += 1;
        self.counters.peak_connections = self.counters.peak_connections.max(self.open);
        Answer::ok("220 mx.sim ESMTP")
    }

    /// An accepted connection ended.
    pub fn disconnect(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// The refusal for one more message now, if the sender is escalated or over the rate.
    fn over_rate(&mut self, now: u64) -> Option<Answer> {
        self.refill(now);
        let answer = if self.escalated(now) {
            self.escalation_answer()
        } else if self.tokens < 1.0 && self.spec.lockout_seconds > 0.0 {
            // Over the rate: locked out, this connection closed.
            self.locked_until = now + (self.spec.lockout_seconds * 1000.0) as u64;
            self.counters.lockouts += 1;
            self.lockout_answer()
        } else if self.tokens < 1.0 {
            self.rate_answer()
        } else {
            return None;
        };
        self.refused_for_rate(now);
        Some(answer)
    }

    /// MAIL FROM. Yahoo refuses here when over the rate.
    pub fn mail(&mut self, now: u64, sender: &str) -> Answer {
        self.sender = sender.to_ascii_lowercase();
        if self.spec.lockout_at_mail
            && let Some(refusal) = self.locked(now)
        {
            return refusal;
        }
        if self.spec.style == Style::Yahoo
            && let Some(refusal) = self.over_rate(now)
        {
            return refusal;
        }
        Answer::ok("250 2.1.0 OK")
    }

    /// RCPT TO number `nth` (1-based) of a transaction. Accepting spends one message of the rate
    /// unless it is refused later at end of data.
    pub fn rcpt(&mut self, now: u64, address: &str, nth: u32) -> Answer {
        *self.offers.entry(address.to_ascii_lowercase()).or_default() += 1;
        if self.spec.max_recipients > 0 && nth > self.spec.max_recipients {
            return Answer::ok("452 4.5.3 Too many recipients");
        }
        if self.spec.greylist_seconds > 0.0 && !address.starts_with("invalid") {
            let key = (self.sender.clone(), address.to_ascii_lowercase());
            let first = *self.grey.entry(key).or_insert(now);
            if now < first + (self.spec.greylist_seconds * 1000.0) as u64 {
                self.counters.greylisted += 1;
                return Answer::ok(&format!(
                    "450 4.2.0 <{address}>: Recipient address rejected: Greylisted, see http://postgrey.example/help"
                ));
            }
        }
        if self.spec.hot_mailbox_per_min > 0 && address.starts_with("hot") {
            let q = self.per_rcpt.entry(address.to_ascii_lowercase()).or_default();
            while q.front().is_some_and(|t| now.saturating_sub(*t) >= 60_000) {
                q.pop_front();
            }
            if q.len() as u32 >= self.spec.hot_mailbox_per_min {
                self.counters.per_recipient_refusals += 1;
                return Answer::ok(
                    "452-4.2.1 The user you are trying to contact is receiving mail at a rate that\r\n452 4.2.1 prevents additional messages from being delivered.",
                );
            }
            q.push_back(now);
        }
        if !self.spec.throttle_at_data_end
            && let Some(refusal) = self.over_rate(now)
        {
            return refusal;
        }
        self.refill(now);
        if self.spec.per_recipient_per_hour > 0 {
            let q = self.per_rcpt.entry(address.to_ascii_lowercase()).or_default();
            while q.front().is_some_and(|t| now.saturating_sub(*t) > 3_600_000) {
                q.pop_front();
            }
            if q.len() as u32 >= self.spec.per_recipient_per_hour {
                self.counters.per_recipient_refusals += 1;
                return match self.spec.style {
                    Style::Microsoft => {
                        Answer::ok("450 4.2.121 The recipient has exceeded their limit for messages per hour")
                    }
                    _ => Answer::ok(
                        "450-4.2.1 The user you are trying to contact is receiving mail too quickly.\r\n450 4.2.1 Please try again later.",
                    ),
                };
            }
            q.push_back(now);
        }
        if address.starts_with("invalid") {
            self.counters.invalid += 1;
            return Answer::ok(
                "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check the address.",
            );
        }
        if !self.spec.throttle_at_data_end {
            self.tokens -= 1.0;
        }
        Answer::ok("250 2.1.5 OK")
    }

    /// The end of a message for `accepted` recipients: accepted, or (with
    /// `throttle_at_data_end`) refused for the rate.
    pub fn data_end(&mut self, now: u64, accepted: u32) -> Answer {
        if self.spec.throttle_at_data_end {
            self.refill(now);
            if self.escalated(now) || self.tokens < f64::from(accepted) {
                for _ in 0..accepted {
                    self.refused_for_rate(now);
                }
                return if self.escalated(now) { self.escalation_answer() } else { self.rate_answer() };
            }
            self.tokens -= f64::from(accepted);
        }
        self.counters.accepted += u64::from(accepted);
        Answer::ok("250 2.0.0 OK queued")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(style: Style) -> Spec {
        toml::from_str::<Spec>(&format!(
            "style = '{}'\nlimit_per_min = 60.0\nmax_connections = 2\nescalation_deferrals = 3\n",
            match style {
                Style::Gmail => "gmail",
                Style::Yahoo => "yahoo",
                Style::Microsoft => "microsoft",
                Style::Generic => "generic",
            }
        ))
        .expect("spec")
    }

    #[test]
    fn gmail_refuses_over_rate_rcpts_with_4_7_28_and_closes() {
        let mut m = Model::new(spec(Style::Gmail), 0);
        let answers: Vec<Answer> = (1..=3).map(|n| m.rcpt(0, "a@x", n)).collect();
        assert!(answers[0].text.starts_with("250"));
        let last = &answers[2];
        assert!(last.text.starts_with("421-4.7.28") && last.close, "{last:?}");
    }

    #[test]
    fn a_third_connection_is_refused_at_the_greeting() {
        let mut m = Model::new(spec(Style::Generic), 0);
        assert!(m.connect(0).text.starts_with("220"));
        assert!(m.connect(0).text.starts_with("220"));
        let third = m.connect(0);
        assert!(third.text.contains("Too many concurrent connections") && third.close);
        m.disconnect();
        assert!(m.connect(0).text.starts_with("220"));
    }

    #[test]
    fn yahoo_escalates_when_pushed_and_then_refuses_at_the_greeting() {
        let mut m = Model::new(spec(Style::Yahoo), 0);
        let _ = m.connect(0);
        let mut refused = 0;
        for _ in 0..10 {
            let a = m.mail(0, "s@x");
            if !a.text.starts_with("250") {
                refused += 1;
            } else {
                let _ = m.rcpt(0, "a@x", 1);
            }
        }
        assert!(refused >= 3 && m.counters.escalations == 1);
        assert!(m.connect(1000).text.contains("[TS04]"));
    }
}
