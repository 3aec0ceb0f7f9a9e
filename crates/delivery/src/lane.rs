//! Lanes: who is limiting us (a provider, or an MX group) and how fast we send to them. The
//! speed and the connections come from the lane's [`Controller`] (`weir-pacing`), the same code
//! the simulator runs, fed with every classified reply of the lane.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use weir_store::model::Priority;

use tokio::time::Instant;

use parking_lot::Mutex;
use serde::Deserialize;
use weir_classify::classify::Category;
use weir_classify::provider::Provider;
use weir_pacing::Millis;
use weir_pacing::controller::{Allowance, Controller, PacingConfig, TimelineEntry};
use weir_store::spool::DueRecipient;

use crate::route::Route;

/// Work for one connection: recipients of one message in one domain.
pub struct Job {
    /// The recipients.
    pub rcpts: Vec<DueRecipient>,
    /// Their domain.
    pub domain: String,
    /// Where they go.
    pub route: Route,
}

/// "Unlimited" messages per minute for a lane without a configured rate.
const UNLIMITED_PER_MIN: f64 = 600_000.0;

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
    /// Warm-up: a new source starts at this many messages per minute.
    pub warmup_start_per_minute: Option<f64>,
    /// Cluster mode: messages per minute of this lane across every node (0 = no shared cap;
    /// each node's own pacing applies either way). Not enforced while Redis is away.
    pub cluster_messages_per_minute: u32,
}

impl Default for LaneLimits {
    fn default() -> Self {
        LaneLimits {
            max_connections: 10,
            messages_per_minute: 0,
            messages_per_connection: 100,
            recipients_per_transaction: 50,
            warmup_start_per_minute: None,
            cluster_messages_per_minute: 0,
        }
    }
}

impl LaneLimits {
    /// Conservative built-in defaults per provider (from their published guidance and what
    /// KumoMTA ships; see reference/peer-mtas.md).
    pub fn for_provider(p: Provider) -> Self {
        let l = |c, m, pc, r| LaneLimits {
            max_connections: c,
            messages_per_minute: m,
            messages_per_connection: pc,
            recipients_per_transaction: r,
            warmup_start_per_minute: None,
            cluster_messages_per_minute: 0,
        };
        match p {
            Provider::Google => l(5, 1200, 50, 50),
            Provider::Microsoft => l(5, 1200, 50, 50),
            Provider::Yahoo => l(5, 600, 20, 10),
            Provider::Apple => l(10, 600, 5, 50),
            Provider::Other => LaneLimits::default(),
        }
    }

    /// The controller settings of a lane with these limits, on top of `template`.
    pub fn pacing(&self, template: &PacingConfig) -> PacingConfig {
        PacingConfig {
            max_rate_per_min: if self.messages_per_minute == 0 {
                UNLIMITED_PER_MIN
            } else {
                f64::from(self.messages_per_minute)
            },
            max_connections: self.max_connections.max(1) as u32,
            warmup_start_per_min: self.warmup_start_per_minute,
            ..*template
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
    pub queue: Mutex<VecDeque<Job>>,
    /// Connection tasks running now (connecting, idle or in a transaction).
    pub connections: Mutex<usize>,
    /// Of those, sessions the receiver accepted (greeted and answered EHLO) and still open.
    established: AtomicUsize,
    /// After a refused connection, no new one before this instant; and how many were refused
    /// in a row (the wait doubles).
    reconnect: Mutex<(Option<Instant>, u32)>,
    /// A delayed dispatch is already waiting for the reconnect gate.
    pub dispatch_pending: AtomicBool,
    /// Recipients due in the spool and not yet picked when the engine last counted (all lanes'
    /// together: it cannot tell which lane they will go to without routing them).
    pub spool_waiting: std::sync::atomic::AtomicU64,
    controller: Mutex<Controller>,
    /// Next instant a message may start.
    next_slot: Mutex<Instant>,
    /// Recipients of this lane wait in the spool until this instant (set aside after a refusal,
    /// or deferred while the lane was throttled): the lane is not drained before.
    waiting_until: Mutex<Option<Instant>>,
    /// The controller's clean interval: the shortest wait after a throttling reply.
    step_interval: Duration,
    /// Sending domains whose authentication the receiver refused, and until when their mail waits.
    held_domains: Mutex<std::collections::HashMap<String, Instant>>,
    /// Wall-clock origin for the controller's milliseconds.
    epoch: Instant,
}

impl Lane {
    /// A new lane.
    pub fn new(key: String, provider: Provider, limits: LaneLimits, template: &PacingConfig) -> Self {
        Lane {
            key,
            provider,
            limits,
            queue: Mutex::new(VecDeque::new()),
            connections: Mutex::new(0),
            established: AtomicUsize::new(0),
            reconnect: Mutex::new((None, 0)),
            dispatch_pending: AtomicBool::new(false),
            spool_waiting: std::sync::atomic::AtomicU64::new(0),
            controller: Mutex::new(Controller::new(limits.pacing(template), 0)),
            next_slot: Mutex::new(Instant::now()),
            waiting_until: Mutex::new(None),
            step_interval: Duration::from_millis(template.step_interval_ms),
            held_domains: Mutex::new(std::collections::HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn ms(&self, at: Instant) -> Millis {
        at.saturating_duration_since(self.epoch).as_millis() as Millis
    }

    /// What the controller allows now.
    pub fn allowance(&self, now: Instant) -> Allowance {
        let t = self.ms(now);
        // One job is one message: what waits here, and what is due in the spool beyond what the
        // engine holds in flight, tells the controller whether a probe for a higher rate can pay.
        let backlog = self.queue.lock().len() as u64 + self.spool_waiting.load(std::sync::atomic::Ordering::Relaxed);
        let mut c = self.controller.lock();
        c.set_backlog(backlog);
        c.on_tick(t);
        c.allowance(t)
    }

    /// How long to wait before the next message may start (and reserve that slot).
    pub fn reserve(&self, now: Instant) -> Duration {
        let a = self.allowance(now);
        if let Some(until) = a.paused_until {
            return Duration::from_millis(until.saturating_sub(self.ms(now)).max(1));
        }
        let interval = Duration::from_secs_f64(60.0 / a.rate_per_min.max(1e-3));
        let mut slot = self.next_slot.lock();
        let start = (*slot).max(now);
        *slot = start + interval;
        start - now
    }

    /// A message the receiver did not take for reasons of its mailbox (greylisting, a mailbox
    /// limit, no such user) spent no part of the rate the receiver counts: its slot is given
    /// back, so a greylisting pass does not take the lane's rate from the mail it accepts.
    pub fn refund(&self, now: Instant) {
        let rate = self.allowance(now).rate_per_min.max(1e-3);
        let interval = Duration::from_secs_f64(60.0 / rate);
        let mut slot = self.next_slot.lock();
        *slot = slot.checked_sub(interval).unwrap_or(now).max(now);
    }

    /// Feed a classified reply of this lane to its controller; returns the timeline entries it
    /// caused (pause, slow-down, incident, …).
    pub fn on_reply(&self, now: Instant, category: Category, reply: &str) -> Vec<TimelineEntry> {
        self.changes(now, |c, t| {
            c.on_tick(t);
            c.on_reply(t, category, reply);
        })
    }

    /// Apply `f` to the controller at `now`; the timeline entries it added.
    fn changes(&self, now: Instant, f: impl FnOnce(&mut Controller, Millis)) -> Vec<TimelineEntry> {
        let mut c = self.controller.lock();
        let before = c.timeline().len();
        f(&mut c, self.ms(now));
        c.timeline().get(before..).map(<[TimelineEntry]>::to_vec).unwrap_or_default()
    }

    /// Leave if this lane runs more connection tasks than it is allowed now (the caller's task
    /// then ends, its count released). Checked between transactions, so none is cut short.
    pub fn leave_if_surplus(&self, now: Instant) -> bool {
        let allowed = self.allowance(now).connections as usize;
        let mut conns = self.connections.lock();
        if *conns > allowed {
            *conns -= 1;
            return true;
        }
        false
    }

    /// A session was established (or, with `false`, one ended).
    pub fn set_established(&self, up: bool) {
        if up {
            self.established.fetch_add(1, Ordering::Relaxed);
            self.reconnect.lock().1 = 0;
        } else {
            self.established.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sessions open now.
    pub fn established(&self) -> usize {
        self.established.load(Ordering::Relaxed)
    }

    /// A connection was refused or failed before a session: new connections wait, doubling
    /// from one second up to a minute while refusals go on. Refusals of connections opened
    /// together (before the current wait was set) are one event: they do not lengthen the wait.
    pub fn gate_after_refusal(&self, now: Instant) {
        let mut r = self.reconnect.lock();
        if r.0.is_none_or(|until| now >= until) {
            let wait = Duration::from_secs(1u64 << r.1.min(6)).min(Duration::from_secs(60));
            r.0 = Some(now + wait);
            r.1 += 1;
        }
    }

    /// The receiver refused a connection for their number: fewer connections (once per event
    /// window), and new connections wait (see [`Lane::gate_after_refusal`]). Returns the
    /// timeline entries it caused.
    pub fn on_connection_refused(&self, now: Instant, reason: &str) -> Vec<TimelineEntry> {
        self.gate_after_refusal(now);
        let established = self.established() as u32;
        self.changes(now, |c, t| {
            c.on_tick(t);
            c.on_connection_refused(t, Some(established), reason);
        })
    }

    /// When everything queued is bulk and bulk is held (a pause, an incident): how long until
    /// the hold may be over. A connection now would find nothing to send.
    pub fn bulk_hold(&self, now: Instant) -> Option<Duration> {
        let a = self.allowance(now);
        if a.bulk_allowed
            || self.queue.lock().iter().any(|j| j.rcpts.iter().all(|r| r.priority == Priority::Transactional))
        {
            return None;
        }
        Some(match a.paused_until {
            Some(until) => Duration::from_millis(until.saturating_sub(self.ms(now)).max(1)),
            None => Duration::from_secs(1),
        })
    }

    /// When to try again a recipient deferred because the lane was throttled: when its pause
    /// is over, and not sooner than one clean interval of the controller.
    pub fn retry_after_throttle(&self, now: Instant) -> Duration {
        self.retry_wait(now).max(self.step_interval)
    }

    /// How long until the lane may try the receiver again: the end of its pause or of the wait
    /// after refused connections, whichever is later.
    pub fn retry_wait(&self, now: Instant) -> Duration {
        let paused = self
            .allowance(now)
            .paused_until
            .map_or(Duration::ZERO, |until| Duration::from_millis(until.saturating_sub(self.ms(now))));
        paused.max(self.reconnect_wait(now))
    }

    /// The receiver refused `domain`'s authentication: its mail waits `hold` at this lane (the
    /// others' goes on). Returns the timeline entry when the hold is new.
    pub fn hold_domain(&self, now: Instant, domain: &str, hold: Duration, reply: &str) -> Vec<TimelineEntry> {
        let fresh = {
            let mut held = self.held_domains.lock();
            held.retain(|_, until| *until > now);
            held.insert(domain.to_string(), now + hold).is_none()
        };
        if !fresh {
            return Vec::new();
        }
        let words = format!(
            "{reply} — mail from {domain} waits {} s at this provider; fix the domain's authentication",
            hold.as_secs()
        );
        self.note(now, "incident", &words)
    }

    /// Until when mail from `domain` waits at this lane, if it does.
    pub fn domain_held(&self, now: Instant, domain: &str) -> Option<Instant> {
        let held = self.held_domains.lock();
        if held.is_empty() {
            return None;
        }
        held.get(domain).copied().filter(|until| *until > now)
    }

    /// Recipients of this lane wait in the spool until `until`.
    pub fn hold_until(&self, until: Instant) {
        let mut w = self.waiting_until.lock();
        *w = Some(w.map_or(until, |u| u.max(until)));
    }

    /// A timeline entry the engine writes (a host skipped, …); returns it as added.
    pub fn note(&self, now: Instant, kind: &'static str, reason: &str) -> Vec<TimelineEntry> {
        self.changes(now, |c, t| c.note_event(t, kind, reason))
    }

    /// How long a new connection must wait after refusals.
    pub fn reconnect_wait(&self, now: Instant) -> Duration {
        self.reconnect.lock().0.map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// The lane's queue is empty and its last connection is closing. Not drained while some of
    /// its recipients wait in the spool for the lane.
    pub fn drained(&self, now: Instant) -> Vec<TimelineEntry> {
        if self.waiting_until.lock().is_some_and(|u| u > now) {
            return Vec::new();
        }
        self.changes(now, |c, t| c.on_drained(t))
    }

    /// The incident timeline, times in milliseconds since the lane was created.
    pub fn raw_timeline(&self) -> Vec<TimelineEntry> {
        self.controller.lock().timeline().to_vec()
    }

    /// The incident timeline, with wall-clock times (Unix ms) given `now_unix_ms`.
    pub fn timeline(&self, now: Instant, now_unix_ms: i64) -> Vec<TimelineEntry> {
        let offset = now_unix_ms - self.ms(now) as i64;
        self.controller
            .lock()
            .timeline()
            .iter()
            .map(|e| TimelineEntry { at: (e.at as i64 + offset).max(0) as Millis, ..e.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_and_pause() {
        let l = Lane::new(
            "x".into(),
            Provider::Other,
            LaneLimits { messages_per_minute: 60, ..Default::default() },
            &PacingConfig::default(),
        );
        let t = Instant::now();
        assert_eq!(l.reserve(t), Duration::ZERO);
        let d = l.reserve(t);
        assert!(d > Duration::from_millis(990) && d <= Duration::from_millis(1000), "{d:?}");
        l.on_reply(t, Category::UnusualRate, "421 4.7.28 unusual rate");
        assert!(l.reserve(t) >= Duration::from_secs(599));
        assert_eq!(l.allowance(t).connections, 1);
        assert_eq!(l.timeline(t, 1_000_000)[0].kind, "pause");
    }

    #[test]
    fn refusals_of_connections_opened_together_set_one_wait_and_later_ones_double_it() {
        let l = Lane::new("x".into(), Provider::Other, LaneLimits::default(), &PacingConfig::default());
        let t = Instant::now();
        for i in 0..8 {
            l.on_connection_refused(t + Duration::from_millis(i), "421 4.7.0 Too many concurrent connections");
        }
        assert_eq!(l.reconnect_wait(t), Duration::from_secs(1));
        let later = t + Duration::from_secs(1);
        l.on_connection_refused(later, "421 4.7.0 Too many concurrent connections");
        assert_eq!(l.reconnect_wait(later), Duration::from_secs(2));
    }
}
