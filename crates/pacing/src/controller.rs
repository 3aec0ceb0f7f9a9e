//! The lane controller. Fed with every classified reply of a lane and with clock ticks; decides
//! connections and message rate. Pure: no clock, no I/O — the server and the simulator run the
//! very same code.
//!
//! Policy (the deliverability guidance on "rate limit exceeded" replies):
//! - temporary throttling (421, TS/TSS, "try again later", low reputation): multiplicative
//!   decrease of rate and connections, remembering the rate that was refused as a ceiling;
//!   recovery is stepwise (25 % of normal per clean interval) up to just under that ceiling,
//!   then slow probing above it — never a snap back;
//! - a lock-out of the sending IP (Gmail 4.7.28, Yahoo TS/TSS, a block): one incident, however
//!   many refusals it produces. The lane waits it out, then one connection probes; a refused
//!   probe doubles the wait (no new cut, no parallel knocking); an accepted probe resumes the lane
//!   at a fraction of the rate that triggered it, which climbs back geometrically towards the
//!   last rate known to pass;
//! - replies that blame the number of connections are trusted once: if fewer connections do not
//!   stop them, the rate is lowered instead (learn from what happens, not from the wording);
//! - authentication/TLS/PTR (4.7.23–4.7.40): a configuration incident; bulk mail is held, the
//!   rate is not the problem and is left alone;
//! - HTTP 429 / Retry-After: pause for exactly that long;
//! - recipient-scoped limits (4.2.1): nothing at lane level;
//! - warm-up: a new source starts low and grows by a factor per clean interval, falling back a
//!   step when an interval was not clean.

use serde::{Deserialize, Serialize};
use weir_classify::classify::Category;

use crate::Millis;

/// Tuning of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingConfig {
    /// The lane's normal (maximum) rate, messages per minute.
    pub max_rate_per_min: f64,
    /// The lane's normal (maximum) connections.
    pub max_connections: u32,
    /// Start rate of a new source (warm-up); `None` starts at the normal rate.
    pub warmup_start_per_min: Option<f64>,
    /// Warm-up growth per clean warm-up interval.
    pub warmup_factor: f64,
    /// Clean time needed before a warm-up step, ms (receivers grow their trust in a new source
    /// slowly; real deployments use hours or days, the simulator compresses it to minutes).
    pub warmup_step_interval_ms: Millis,
    /// Multiplicative decrease on throttling.
    pub decrease: f64,
    /// Additive recovery per clean interval, as a fraction of the normal rate.
    pub recover_step: f64,
    /// Headroom kept under a learned ceiling.
    pub ceiling_margin: f64,
    /// Probing above the ceiling per clean interval (fraction of the rate).
    pub probe_step: f64,
    /// Clean time needed before a step up, ms.
    pub step_interval_ms: Millis,
    /// Ignore further throttling signals this long after a decrease (they are replies to mail
    /// already sent at the old rate), ms.
    pub decrease_cooldown_ms: Millis,
    /// Minimum pause after 4.7.28, ms.
    pub pause_ms: Millis,
    /// A configuration incident clears after this long without a new one, ms.
    pub incident_clear_ms: Millis,
    /// Lowest rate ever used, messages per minute.
    pub min_rate_per_min: f64,
    /// Growth per clean interval while climbing back under a known ceiling (geometric).
    pub climb_factor: f64,
    /// What the receiver accepts is measured over this window, ms: long enough that the burst
    /// a receiver lets through before it starts counting does not pass for its rate.
    pub measure_window_ms: Millis,
    /// Longest wait between probes of a lock-out, ms.
    pub max_lockout_ms: Millis,
    /// Wait after a block of the sending IP (Yahoo TSS09/TSS11, Microsoft S3140) before one
    /// connection tries again, ms.
    pub block_pause_ms: Millis,
    /// Adapt to the replies. Off, the lane keeps its normal rate and connections whatever the
    /// receivers say (the simulator's fixed-rate and Postfix-like baselines run this way).
    pub adaptive: bool,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            max_rate_per_min: 1200.0,
            max_connections: 10,
            warmup_start_per_min: None,
            warmup_factor: 1.5,
            warmup_step_interval_ms: 600_000,
            decrease: 0.7,
            recover_step: 0.25,
            ceiling_margin: 0.95,
            probe_step: 0.02,
            step_interval_ms: 60_000,
            decrease_cooldown_ms: 5_000,
            pause_ms: 600_000,
            incident_clear_ms: 600_000,
            min_rate_per_min: 1.0,
            climb_factor: 1.5,
            measure_window_ms: 30_000,
            max_lockout_ms: 4 * 3_600_000,
            block_pause_ms: 3_600_000,
            adaptive: true,
        }
    }
}

/// What the lane may do now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Allowance {
    /// No new messages before this instant.
    pub paused_until: Option<Millis>,
    /// Messages per minute.
    pub rate_per_min: f64,
    /// Connections.
    pub connections: u32,
    /// Bulk mail may go (false while paused or in an incident). Transactional mail always goes
    /// first within the allowed rate, so under throttling bulk is what waits.
    pub bulk_allowed: bool,
}

/// One entry of the incident timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: Millis,
    /// `pause` (a lock-out begins), `probe` (one connection tries), `probe_refused`, `resume`,
    /// `blocked`, `slow_down`, `fewer_connections`, `step_up`, `warmup_step`, `warmup_fallback`,
    /// `incident`, `incident_cleared`, `retry_after`, `drained`.
    pub kind: &'static str,
    /// The reply (or reason) that triggered it.
    pub reason: String,
    /// Rate after the change, per minute.
    pub rate_per_min: f64,
    /// Connections after the change.
    pub connections: u32,
}

/// A lock-out of the sending IP by the receiver, from its first refusal until a probe is
/// accepted: one incident, however many refusals arrive meanwhile.
#[derive(Debug, Clone, Copy, Serialize)]
struct Lockout {
    since: Millis,
    /// The wait before the next probe (doubles on each refused probe).
    wait_ms: Millis,
    /// The wait is over and one connection is trying.
    probing: bool,
    /// Its kind.
    lock: Lock,
    /// A probe of it was refused.
    probe_refused: bool,
}

/// What kind of lock-out a refusal starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Lock {
    /// Gmail's 4.7.28: a failed climb costs another pause of ten minutes or more.
    Cautious,
    /// Any other lock-out (TS/TSS, or refusals with nothing accepted).
    Out,
    /// A block of the sending IP: a long wait before one connection tries.
    Blocked,
}

/// The controller of one lane.
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    cfg: PacingConfig,
    rate: f64,
    conns: u32,
    ceiling: Option<f64>,
    paused_until: Option<Millis>,
    incident_since: Option<Millis>,
    incident_last: Millis,
    last_decrease: Option<Millis>,
    /// Cuts made one after the other, each within a clean interval of the last: the refusals
    /// went on after the rate came down to what was measured. Since the first of them, and
    /// the messages accepted (accepted only) since.
    cuts_in_row: u32,
    chain_since: Millis,
    chain_accepted: u32,
    interval_start: Millis,
    accepted: u64,
    deferred: u64,
    warming: bool,
    /// Warm-up level reached; the rate keeps `ceiling_margin` under it.
    warm_level: f64,
    /// Accepted replies per second over the last few seconds: what the provider really took.
    accepted_secs: std::collections::VecDeque<(Millis, u32)>,
    /// Clean time required before the next step up, as a multiple of `step_interval_ms`:
    /// doubled when a step up is refused soon after, shrunk slowly after each good one.
    probe_factor: f64,
    /// The next probe above a ceiling, as a fraction of the rate: `probe_step` after a refusal,
    /// doubled by each probe that holds.
    probe_gain: f64,
    /// When the last step up happened (a throttle soon after it means the step failed).
    last_step: Option<Millis>,
    /// Connections the receiver was seen to refuse above; step-ups stay under it and probe one
    /// more only after several clean intervals.
    conn_ceiling: Option<u32>,
    /// Clean intervals since the connection ceiling was set or last probed.
    clean_at_conn_ceiling: u32,
    /// When connections were last lowered for a refused connection (one change per window).
    last_conn_cut: Option<Millis>,
    /// The connections allowed right after that cut: complaints about connections that go on
    /// at or under it show that the number of connections was not the problem.
    conns_after_cut: Option<u32>,
    /// The lock-out in progress.
    lockout: Option<Lockout>,
    /// Throttling refusals since the last accepted message, and when that was.
    refusals_since_accept: u32,
    last_accept: Millis,
    /// Rate, ceiling and connections when the current run of refusals began.
    before_refusals: (f64, Option<f64>, u32),
    /// The highest rate held without a throttling reply for a whole proof window (`pause_ms`):
    /// known to be accepted. One clean step interval proves little when the receiver counts
    /// over a longer window than the interval.
    proven_rate: Option<f64>,
    /// Since when the lane has held its current rate without a throttling reply.
    level_since: Millis,

    /// The rate that met the last lock-out, and its kind: probing above the rate held since
    /// searches between the two (each failed probe costs a whole wait, so it halves the gap
    /// rather than creeping up by a few percent).
    lock_refused: Option<(f64, Lock, Millis)>,
    /// Probes above a rate held clean that met a lock-out since the search began: each one
    /// doubles the work that must be left before the next (the receiver's limit is likely
    /// nearer the rate held than the search assumed).
    failed_probes: u32,
    /// Messages waiting for this lane, as its owner last said: a probe above a rate that passes
    /// pays only when enough work is left to gain more than a failed probe's wait costs.
    backlog: u64,
    /// How long the last lock-out lasted, from its first refusal to the accepted probe: what a
    /// failed probe is likely to cost (a receiver whose attempts extend the lock-out makes it
    /// longer than the first wait).
    last_lockout_ms: Millis,
    /// Since when the lane has sent without a lock-out (its start, or the last accepted probe).
    sending_since: Millis,
    /// The first wait of this receiver's next lock-out (not Gmail's, not a block), learnt from
    /// the last one.
    learned_wait_ms: Option<Millis>,
    /// The longest first wait after which a probe was refused: a learnt wait stays above it.
    refused_wait_ms: Millis,
    timeline: Vec<TimelineEntry>,
}

/// Work left, in waits of a lock-out at the current rate, for a probe above the rate held
/// since a lock-out to pay: a refused probe costs one wait (and the climb back); an accepted
/// one gains a share of the rest. Gmail asks for a pause of ten minutes or more after a 4.7.28
/// and may lengthen it for a sender that pushes: there the horizon is longer.
const PROBE_HORIZON_WAITS: f64 = 3.0;
const CAUTIOUS_PROBE_HORIZON_WAITS: f64 = 16.0;

/// A gap to the refused rate under this fraction of the rate is not searched: the lane holds
/// (a receiver that lets a burst through fails a rate just over its limit only after a while,
/// so a close probe passes its proof window and costs a lock-out later).
const SEARCH_GAP: f64 = 0.15;
/// After a lock-out the lane climbs back to at most this fraction of the rate that met it, and
/// (when that rate failed at once) to no less than the other.
const LOCKED_KNOWN_FRACTION: f64 = 0.9;
const MIN_LOCKED_FRACTION: f64 = 0.49;
/// The largest probe above a ceiling, as a fraction of the rate.
const MAX_PROBE_GAIN: f64 = 0.16;
/// The rate that met a lock-out bounds the lane for this many waits of it; then small probes
/// above may find that the receiver takes more now.
const LOCK_MEMORY_WAITS: u64 = 12;

/// After a lock-out, the lane resumes at this fraction of what the receiver was measured to
/// take just before it (that measure includes the burst a receiver lets through before it
/// counts), ...
const RESUME_FRACTION: f64 = 0.5;
/// ... and climbs back to this fraction of it: the last rate taken to pass.
const KNOWN_FRACTION: f64 = 0.85;

/// Throttling refusals in a row, over this many decrease cool-downs without one message
/// accepted, make a lock-out.
const LOCKOUT_REFUSALS: u32 = 6;
const LOCKOUT_QUIET_COOLDOWNS: u64 = 4;

/// Clean intervals at the connection ceiling before one more connection is tried.
const CONN_PROBE_INTERVALS: u32 = 10;

impl Controller {
    /// A controller for a lane first seen at `now`.
    pub fn new(cfg: PacingConfig, now: Millis) -> Self {
        let (level, warming) = match cfg.warmup_start_per_min {
            Some(r) if r < cfg.max_rate_per_min => (r.max(cfg.min_rate_per_min), true),
            _ => (cfg.max_rate_per_min, false),
        };
        let rate = if warming { (level * cfg.ceiling_margin).max(cfg.min_rate_per_min) } else { level };
        let conns = if warming { 1 } else { cfg.max_connections.max(1) };
        Controller {
            cfg,
            rate,
            conns,
            ceiling: None,
            paused_until: None,
            incident_since: None,
            incident_last: 0,
            last_decrease: None,
            cuts_in_row: 0,
            chain_since: now,
            chain_accepted: 0,
            interval_start: now,
            accepted: 0,
            deferred: 0,
            warming,
            warm_level: level,
            accepted_secs: std::collections::VecDeque::new(),
            probe_factor: 1.0,
            probe_gain: cfg.probe_step,
            last_step: None,
            conn_ceiling: None,
            clean_at_conn_ceiling: 0,
            last_conn_cut: None,
            conns_after_cut: None,
            lockout: None,
            refusals_since_accept: 0,
            last_accept: now,
            before_refusals: (0.0, None, 0),
            proven_rate: None,
            level_since: now,
            lock_refused: None,
            failed_probes: 0,
            backlog: 0,
            last_lockout_ms: 0,
            sending_since: now,
            learned_wait_ms: None,
            refused_wait_ms: 0,
            timeline: Vec::new(),
        }
    }

    /// Accepted messages per minute measured over the measuring window, when there are enough.
    fn measured_rate(&self, now: Millis) -> Option<f64> {
        // Only over ten seconds of sending at least (or the whole window, if shorter): over less,
        // what was accepted says more about how fast sending started than about the receiver.
        let from = now.saturating_sub(self.cfg.measure_window_ms);
        let n: u32 = self.accepted_secs.iter().filter(|(s, _)| *s * 1000 >= from).map(|(_, c)| c).sum();
        let first = self.accepted_secs.front().map(|(s, _)| s * 1000)?;
        let span = now.saturating_sub(first.max(from));
        if span < self.cfg.measure_window_ms.min(10_000) {
            return None;
        }
        (n >= 10).then(|| f64::from(n) * 60_000.0 / span as f64)
    }

    /// Clean time needed before the next step up.
    fn step_interval(&self) -> Millis {
        let base = if self.warming { self.cfg.warmup_step_interval_ms } else { self.cfg.step_interval_ms };
        (base as f64 * self.probe_factor) as Millis
    }

    fn note(&mut self, at: Millis, kind: &'static str, reason: &str) {
        if self.timeline.len() >= 10_000 {
            self.timeline.remove(0);
        }
        self.timeline.push(TimelineEntry {
            at,
            kind,
            reason: reason.to_string(),
            rate_per_min: self.rate,
            connections: self.conns,
        });
    }

    /// An entry the caller observed (a host skipped, …), with the lane's current rate.
    pub fn note_event(&mut self, at: Millis, kind: &'static str, reason: &str) {
        self.note(at, kind, reason);
    }

    /// The incident timeline.
    pub fn timeline(&self) -> &[TimelineEntry] {
        &self.timeline
    }

    /// The rate the lane would keep if nothing changed (its current safe throughput).
    pub fn safe_rate_per_min(&self) -> f64 {
        self.rate
    }

    /// How many messages wait for this lane (its owner says so as it goes).
    pub fn set_backlog(&mut self, messages: u64) {
        self.backlog = messages;
    }

    /// What the lane may do at `now`.
    pub fn allowance(&self, now: Millis) -> Allowance {
        let paused = self.paused_until.filter(|u| *u > now);
        Allowance {
            paused_until: paused,
            rate_per_min: self.rate,
            connections: self.conns,
            bulk_allowed: paused.is_none() && self.incident_since.is_none(),
        }
    }

    /// A reply of this lane, classified.
    pub fn on_reply(&mut self, now: Millis, category: Category, reply: &str) {
        if !self.cfg.adaptive {
            return;
        }
        match category {
            // The receiver took these without a word about the rate: they count in what it
            // takes, as accepted mail does.
            Category::Greylisted
            | Category::InvalidRecipient
            | Category::MailboxFull
            | Category::RecipientRateLimited => self.taken(now),
            Category::Accepted => {
                self.accepted += 1;
                self.chain_accepted = self.chain_accepted.saturating_add(1);
                self.taken(now);
                self.refusals_since_accept = 0;
                self.last_accept = now;
                if let Some(l) = self.lockout.filter(|l| l.probing) {
                    // The clean interval runs from the probe's start: connections come back one
                    // per clean interval from there.
                    self.last_lockout_ms = now.saturating_sub(l.since);
                    self.sending_since = now;
                    // A lock-out that is not Gmail's or a block: the wait that worked is learnt
                    // (half of it when the first probe passed: the penalty may be shorter
                    // still), so a receiver with a short penalty does not cost a long wait
                    // each time, and one with a long penalty is not knocked on early again.
                    if l.lock == Lock::Out {
                        let learnt = if l.probe_refused {
                            l.wait_ms
                        } else {
                            (l.wait_ms / 2).max(self.refused_wait_ms.saturating_mul(5) / 4)
                        };
                        self.learned_wait_ms = Some(learnt.clamp(self.cfg.pause_ms / 8, self.cfg.max_lockout_ms));
                    }
                    self.lockout = None;
                    let words = format!("the receiver accepted mail again; resumed at {:.0}/min", self.rate);
                    self.note(now, "resume", &words);
                }
            }
            Category::RateLimited | Category::Reputation => self.slow_down(now, reply),
            // Gmail asks for a pause of ten minutes or more after a 4.7.28: no climb on a guess
            // into another one. Other lock-outs climb back to the step under the refused rate.
            Category::UnusualRate => self.locked_out(now, reply, Lock::Cautious),
            Category::YahooDeferral => self.locked_out(now, reply, Lock::Out),
            Category::IpBlocked => self.locked_out(now, reply, Lock::Blocked),
            Category::TooManyConnections => self.connection_complaint(now, None, true, reply),
            Category::AuthOrTransport => {
                self.incident_last = now;
                if self.incident_since.is_none() {
                    self.incident_since = Some(now);
                    self.note(now, "incident", reply);
                }
            }
            _ => {}
        }
    }

    /// One message the receiver took (accepted, or refused for its mailbox only) at `now`.
    fn taken(&mut self, now: Millis) {
        let sec = now / 1000;
        match self.accepted_secs.back_mut() {
            Some((s, c)) if *s == sec => *c += 1,
            _ => self.accepted_secs.push_back((sec, 1)),
        }
        let keep = self.cfg.measure_window_ms / 1000;
        while self.accepted_secs.front().is_some_and(|(s, _)| sec.saturating_sub(*s) > keep) {
            self.accepted_secs.pop_front();
        }
    }

    /// A connection was refused (a connection cap at the greeting, a refused or failed connect)
    /// while `established` others were open: use fewer connections, at most one change per
    /// event window (the refusals that follow are answers to attempts already made), down to
    /// what the receiver did accept at once. The message rate is not the problem and stays.
    pub fn on_connection_refused(&mut self, now: Millis, established: Option<u32>, reason: &str) {
        if !self.cfg.adaptive {
            return;
        }
        self.connection_complaint(now, established, false, reason);
    }

    /// The lane's queue emptied: record it once after a change, so the timeline tells when the
    /// backlog of an incident was delivered.
    pub fn on_drained(&mut self, now: Millis) {
        if self.paused_until.is_some_and(|u| u > now) {
            return;
        }
        if self.timeline.last().is_some_and(|e| e.kind != "drained") {
            self.note(now, "drained", "queue empty");
        }
    }

    /// An API lane's HTTP 429 with Retry-After: pause exactly that long.
    pub fn on_retry_after(&mut self, now: Millis, retry_after_ms: Millis) {
        let until = now + retry_after_ms;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.restart_interval(until);
        self.level_since = until;
        self.note(now, "retry_after", &format!("HTTP 429, Retry-After {} s", retry_after_ms / 1000));
    }

    fn restart_interval(&mut self, at: Millis) {
        self.interval_start = at;
        self.accepted = 0;
        self.deferred = 0;
    }

    /// Advance time: resume after a pause, clear incidents, step up after a clean interval.
    pub fn on_tick(&mut self, now: Millis) {
        if !self.cfg.adaptive {
            return;
        }
        if let Some(u) = self.paused_until
            && now >= u
        {
            self.paused_until = None;
            self.restart_interval(now);
            self.level_since = now;
            match self.lockout.as_mut() {
                Some(l) => {
                    l.probing = true;
                    self.conns = 1;
                    self.note(now, "probe", "the wait is over; one connection tries");
                }
                None => self.note(now, "resume", "pause over"),
            }
        }
        if self.paused_until.is_some() {
            return;
        }
        if let Some(_since) = self.incident_since
            && now.saturating_sub(self.incident_last) >= self.cfg.incident_clear_ms
        {
            self.incident_since = None;
            self.note(now, "incident_cleared", "no authentication/transport refusal for a while");
        }
        if now.saturating_sub(self.interval_start) < self.step_interval() {
            return;
        }
        let clean = self.deferred == 0 && self.accepted > 0;
        if self.deferred > 0 {
            self.level_since = now;
        }
        if clean {
            self.cuts_in_row = 0;
            if now.saturating_sub(self.level_since) >= self.cfg.pause_ms {
                self.proven_rate = Some(self.proven_rate.map_or(self.rate, |p| p.max(self.rate)));
            }
            self.step_up(now);
            self.last_step = Some(now);
            let decay = if self.warming { 0.5 } else { 0.85 };
            self.probe_factor = (self.probe_factor * decay).max(1.0);
        }
        self.restart_interval(now);
    }
}

mod climb;
mod lockout;
mod refusals;

#[cfg(test)]
mod tests;
