//! Lanes: who is limiting us (a provider, or an MX group) and the limits we keep toward them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use weir_classify::provider::Provider;

/// Limits of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LaneLimits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Messages per minute (0 = unlimited).
    pub messages_per_minute: u32,
    /// Messages per connection before it is closed.
    pub messages_per_connection: usize,
    /// RCPT TO per transaction.
    pub recipients_per_transaction: usize,
}

impl Default for LaneLimits {
    fn default() -> Self {
        LaneLimits {
            max_connections: 10,
            messages_per_minute: 0,
            messages_per_connection: 100,
            recipients_per_transaction: 50,
        }
    }
}

impl LaneLimits {
    /// Conservative built-in defaults per provider (from their published guidance and what
    /// KumoMTA ships; see reference/peer-mtas.md).
    pub fn for_provider(p: Provider) -> Self {
        match p {
            Provider::Google => LaneLimits {
                max_connections: 5,
                messages_per_minute: 1200,
                messages_per_connection: 50,
                recipients_per_transaction: 50,
            },
            Provider::Microsoft => LaneLimits {
                max_connections: 5,
                messages_per_minute: 1200,
                messages_per_connection: 50,
                recipients_per_transaction: 50,
            },
            Provider::Yahoo => LaneLimits {
                max_connections: 5,
                messages_per_minute: 600,
                messages_per_connection: 20,
                recipients_per_transaction: 10,
            },
            Provider::Apple => LaneLimits {
                max_connections: 10,
                messages_per_minute: 600,
                messages_per_connection: 5,
                recipients_per_transaction: 50,
            },
            Provider::Other => LaneLimits::default(),
        }
    }
}

/// One lane's live state.
pub struct Lane {
    /// Lane key.
    pub key: String,
    /// Provider of the lane.
    pub provider: Provider,
    /// Its limits.
    pub limits: LaneLimits,
    /// Work waiting for a connection.
    pub queue: Mutex<VecDeque<crate::engine::Job>>,
    /// Connections open now.
    pub connections: Mutex<usize>,
    /// Next instant a message may start (pacing), and a pause deadline.
    pace: Mutex<(Instant, Option<Instant>)>,
    /// Current rate as a fraction of the limit (halved on throttling, recovers slowly).
    factor: Mutex<f64>,
}

impl Lane {
    /// A new lane.
    pub fn new(key: String, provider: Provider, limits: LaneLimits) -> Self {
        Lane {
            key,
            provider,
            limits,
            queue: Mutex::new(VecDeque::new()),
            connections: Mutex::new(0),
            pace: Mutex::new((Instant::now(), None)),
            factor: Mutex::new(1.0),
        }
    }

    /// How long to wait before the next message may start (and reserve that slot).
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut pace = self.pace.lock();
        if let Some(until) = pace.1 {
            if until > now {
                return until - now;
            }
            pace.1 = None;
        }
        if self.limits.messages_per_minute == 0 {
            return Duration::ZERO;
        }
        let rate = f64::from(self.limits.messages_per_minute) * *self.factor.lock() / 60.0;
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let start = pace.0.max(now);
        pace.0 = start + interval;
        start - now
    }

    /// A throttling reply: halve the rate (never below 1/20 of the limit).
    pub fn slow_down(&self) {
        let mut f = self.factor.lock();
        *f = (*f * 0.5).max(0.05);
    }

    /// A clean delivery: recover a little (additively), never above the limit.
    pub fn recover(&self) {
        let mut f = self.factor.lock();
        *f = (*f + 0.01).min(1.0);
    }

    /// Pause the lane until `until`.
    pub fn pause_until(&self, until: Instant) {
        let mut pace = self.pace.lock();
        pace.1 = Some(pace.1.map_or(until, |u| u.max(until)));
        *self.factor.lock() = 0.25;
    }

    /// Current rate factor.
    pub fn factor(&self) -> f64 {
        *self.factor.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_pause_and_slowdown() {
        let l = Lane::new("x".into(), Provider::Other, LaneLimits { messages_per_minute: 60, ..Default::default() });
        let t = Instant::now();
        assert_eq!(l.reserve(t), Duration::ZERO);
        let d = l.reserve(t);
        assert!(d > Duration::from_millis(990) && d <= Duration::from_millis(1000), "{d:?}");
        l.slow_down();
        assert_eq!(l.factor(), 0.5);
        l.pause_until(t + Duration::from_secs(600));
        assert!(l.reserve(t) >= Duration::from_secs(599));
        for _ in 0..200 {
            l.recover();
        }
        assert_eq!(l.factor(), 1.0);
    }
}
