//! A modelled mailbox provider: hidden limits, a reputation that worsens under pressure and
//! recovers with clean traffic, invalid recipients and per-recipient limits.

use std::collections::{HashMap, VecDeque};

use weir_classify::reply::Reply;

use super::ProviderSpec;

/// The provider's live state.
pub struct ProviderModel {
    spec: ProviderSpec,
    tokens: f64,
    last_ms: u64,
    reputation: f64,
    warm_limit: f64,
    clean_since: u64,
    recent_deferrals: VecDeque<u64>,
    escalated_until: u64,
    per_rcpt: HashMap<u64, VecDeque<u64>>,
}

fn reply(code: u16, enh: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, Some(enh), text)
}

impl ProviderModel {
    /// A provider at time 0.
    pub fn new(spec: &ProviderSpec) -> Self {
        let warm_limit = if spec.warmup_start_per_min > 0.0 { spec.warmup_start_per_min } else { spec.limit_per_min };
        ProviderModel {
            spec: spec.clone(),
            tokens: warm_limit / 60.0,
            last_ms: 0,
            reputation: 1.0,
            warm_limit,
            clean_since: 0,
            recent_deferrals: VecDeque::new(),
            escalated_until: 0,
            per_rcpt: HashMap::new(),
        }
    }

    /// Accepted messages per minute right now (hidden from senders).
    pub fn current_limit(&self) -> f64 {
        self.warm_limit.min(self.spec.limit_per_min) * self.reputation
    }

    fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last_ms) as f64 / 60_000.0;
        self.last_ms = now;
        let limit = self.current_limit();
        // A two-second burst allowance: providers count over short windows, not per message.
        self.tokens = (self.tokens + dt * limit).min((limit / 30.0).max(2.0));
        // Clean traffic heals reputation and grows a warming IP's limit.
        if now.saturating_sub(self.clean_since) >= 600_000 && self.escalated_until <= now {
            self.clean_since = now;
            self.reputation = (self.reputation + 0.05).min(1.0);
            if self.warm_limit < self.spec.limit_per_min {
                self.warm_limit = (self.warm_limit * self.spec.warmup_growth_per_10min).min(self.spec.limit_per_min);
            }
        }
    }

    fn deferral(&mut self, now: u64) {
        self.clean_since = now;
        self.recent_deferrals.push_back(now);
        while self.recent_deferrals.front().is_some_and(|t| now.saturating_sub(*t) > 300_000) {
            self.recent_deferrals.pop_front();
        }
        if self.spec.escalation != "none" && self.recent_deferrals.len() as u32 >= self.spec.escalation_deferrals {
            // Pushed too hard: escalate, and remember it in the reputation.
            self.escalated_until = now + (self.spec.escalation_minutes * 60_000.0) as u64;
            self.reputation = (self.reputation * 0.8).max(0.2);
            self.recent_deferrals.clear();
        }
    }

    /// One delivery attempt for recipient `rcpt` at `now`, over one of `conns` connections.
    pub fn attempt(&mut self, now: u64, rcpt: u64, invalid: bool, conns: u32) -> Reply {
        self.refill(now);
        if self.escalated_until > now {
            self.deferral_quiet(now);
            return match self.spec.escalation.as_str() {
                "ts04" => {
                    reply(421, (4, 7, 0), "[TS04] Messages from 192.0.2.1 temporarily deferred due to user complaints")
                }
                _ => reply(
                    421,
                    (4, 7, 28),
                    "Gmail has detected an unusual rate of unsolicited mail originating from your IP",
                ),
            };
        }
        if conns > self.spec.max_connections {
            self.deferral(now);
            return reply(421, (4, 7, 0), "Too many concurrent connections, try again later");
        }
        if self.tokens < 1.0 {
            self.deferral(now);
            return match self.spec.escalation.as_str() {
                "ts04" => reply(421, (4, 7, 0), "[TS03] Messages temporarily deferred, try again later"),
                _ => reply(421, (4, 7, 0), "Rate limit exceeded. Try again later."),
            };
        }
        if self.spec.per_recipient_per_hour > 0 {
            let q = self.per_rcpt.entry(rcpt).or_default();
            while q.front().is_some_and(|t| now.saturating_sub(*t) > 3_600_000) {
                q.pop_front();
            }
            if q.len() as u32 >= self.spec.per_recipient_per_hour {
                return reply(450, (4, 2, 1), "The user you are trying to contact is receiving mail too quickly");
            }
            q.push_back(now);
        }
        self.tokens -= 1.0;
        if invalid {
            return reply(550, (5, 1, 1), "The email account that you tried to reach does not exist.");
        }
        reply(250, (2, 0, 0), "OK")
    }

    fn deferral_quiet(&mut self, now: u64) {
        self.clean_since = now;
    }
}
