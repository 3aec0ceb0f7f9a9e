//! The sending-quota engine, exactly as SES defines it: a rolling 24-hour quota and a maximum
//! send rate, counted per recipient, per account and region.
//!
//! # Layout
//! - [`Limits`]: what an operator grants one (account, region).
//! - [`QuotaState`]: the counters of one (account, region) — a rolling 24-hour window with
//!   one-second buckets, and a GCRA token bucket that may go into debt.
//! - [`QuotaState::admit`]: one atomic decision per request, in the order paused → daily → rate.
//!
//! Pure: no clock, no I/O. Callers pass `now` in nanoseconds since the Unix epoch, and persist
//! what [`Charge`] tells them (the second that was charged and the new bucket state).

use std::collections::VecDeque;
use std::time::Duration;

/// Nanoseconds since the Unix epoch.
pub type Nanos = u64;

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Length of the rolling window, in seconds.
pub const WINDOW_SECS: u64 = 86_400;

/// Sending limits of one (account, region).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `Max24HourSend`; `None` means unlimited (SES reports -1).
    pub max_24h: Option<u64>,
    /// `MaxSendRate` in recipients per second; `None` means unlimited.
    pub max_rate: Option<f64>,
    /// Bucket capacity in seconds of refill: capacity = max(1, rate × burst_seconds).
    pub burst_seconds: f64,
    /// `false` when sending is paused for the account (UpdateAccountSendingEnabled).
    pub sending_enabled: bool,
}

impl Limits {
    /// The SES sandbox: 200 per 24 hours, 1 per second, bursts of one second.
    pub fn sandbox() -> Self {
        Limits { max_24h: Some(200), max_rate: Some(1.0), burst_seconds: 1.0, sending_enabled: true }
    }

    /// The GCRA parameters for this rate, or `None` when the rate is unlimited.
    pub fn rate_params(&self) -> Option<RateParams> {
        let rate = self.max_rate.filter(|r| r.is_finite() && *r > 0.0)?;
        RateParams::new(rate, self.burst_seconds)
    }
}

/// Token-bucket parameters in GCRA form, in whole nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateParams {
    /// Time to earn one token (emission interval `T`).
    pub emission_ns: u64,
    /// Tolerance `τ = (capacity − 1) × T`: how far ahead of `now` the bucket may be spent
    /// while still holding at least one token.
    pub tau_ns: u64,
}

impl RateParams {
    /// Parameters for `rate` tokens per second and a capacity of `max(1, rate × burst_seconds)`.
    pub fn new(rate: f64, burst_seconds: f64) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let emission = (NANOS_PER_SEC as f64 / rate).round().max(1.0);
        let burst = if burst_seconds.is_finite() { burst_seconds.max(0.0) } else { 1.0 };
        let capacity = (rate * burst).max(1.0);
        let tau = ((capacity - 1.0) * emission).round();
        Some(RateParams { emission_ns: emission as u64, tau_ns: tau as u64 })
    }
}

/// Why a request was refused. Refusals charge nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Sending is paused for the account.
    SendingPaused,
    /// `SentLast24Hours + n` would exceed `Max24HourSend`. `retry_after` is when enough of the
    /// window will have expired, or `None` if `n` alone exceeds the quota.
    DailyQuotaExceeded { retry_after: Option<Duration> },
    /// Not even one token is left in the bucket.
    MaxSendRateExceeded { retry_after: Duration },
}

/// What an accepted request charged; persist it, or hand it back to [`QuotaState::refund`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The one-second bucket (seconds since the epoch) the recipients were counted in.
    pub second: u64,
    /// Number of recipients charged.
    pub count: u32,
    /// Theoretical arrival time of the bucket before and after this charge.
    pub tat_before: Nanos,
    /// The bucket state to persist.
    pub tat_after: Nanos,
}

/// Counters of one (account, region).
#[derive(Debug, Clone, Default)]
pub struct QuotaState {
    /// (second, recipients) for each second with sends inside the window, oldest first.
    window: VecDeque<(u64, u64)>,
    /// Sum of the counts in `window`.
    total: u64,
    /// GCRA theoretical arrival time: the instant the bucket would be full again.
    tat: Nanos,
}

impl QuotaState {
    /// Empty counters (a new account or region).
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild counters from persisted per-second counts and bucket state.
    pub fn restore(seconds: impl IntoIterator<Item = (u64, u64)>, tat: Nanos) -> Self {
        let mut entries: Vec<(u64, u64)> = seconds.into_iter().filter(|(_, c)| *c > 0).collect();
        entries.sort_unstable();
        let mut window: VecDeque<(u64, u64)> = VecDeque::with_capacity(entries.len());
        for (s, c) in entries {
            match window.back_mut() {
                Some(back) if back.0 == s => back.1 += c,
                _ => window.push_back((s, c)),
            }
        }
        let total = window.iter().map(|(_, c)| c).sum();
        QuotaState { window, total, tat }
    }

    /// The bucket state (for persistence).
    pub fn tat(&self) -> Nanos {
        self.tat
    }

    /// `SentLast24Hours`: recipients accepted in `(now − 24 h, now]`, at one-second granularity.
    pub fn sent_last_24h(&mut self, now: Nanos) -> u64 {
        self.evict(now / NANOS_PER_SEC);
        self.total
    }

    fn evict(&mut self, now_s: u64) {
        while let Some(&(s, c)) = self.window.front() {
            if s + WINDOW_SECS > now_s {
                break;
            }
            self.total -= c;
            self.window.pop_front();
        }
    }

    /// Would a request of `n` recipients at `now` pass? Charges nothing (SMTP asks this at
    /// MAIL FROM, so that a client does not upload a body that cannot be accepted).
    pub fn check(&mut self, limits: &Limits, now: Nanos, n: u32) -> Result<(), Refusal> {
        self.decide(limits, now, u64::from(n)).map(|_| ())
    }

    fn decide(&mut self, limits: &Limits, now: Nanos, want: u64) -> Result<Option<RateParams>, Refusal> {
        if !limits.sending_enabled {
            return Err(Refusal::SendingPaused);
        }
        self.evict(now / NANOS_PER_SEC);
        if let Some(max) = limits.max_24h
            && self.total + want > max
        {
            return Err(Refusal::DailyQuotaExceeded { retry_after: self.daily_retry(now, want, max) });
        }
        let params = limits.rate_params();
        if let Some(p) = params
            && self.tat > now.saturating_add(p.tau_ns)
        {
            let wait = self.tat - p.tau_ns - now;
            return Err(Refusal::MaxSendRateExceeded { retry_after: Duration::from_nanos(wait) });
        }
        Ok(params)
    }

    /// Decide one request of `n` recipients at `now`; on acceptance the charge is applied.
    pub fn admit(&mut self, limits: &Limits, now: Nanos, n: u32) -> Result<Charge, Refusal> {
        let now_s = now / NANOS_PER_SEC;
        let want = u64::from(n);
        let params = self.decide(limits, now, want)?;
        let tat_before = self.tat;
        if let Some(p) = params {
            self.tat = self.tat.max(now).saturating_add(want.saturating_mul(p.emission_ns));
        }
        // A clock that steps back must not reorder the window.
        let second = self.window.back().map_or(now_s, |&(s, _)| s.max(now_s));
        match self.window.back_mut() {
            Some(back) if back.0 == second => back.1 += want,
            _ => self.window.push_back((second, want)),
        }
        self.total += want;
        Ok(Charge { second, count: n, tat_before, tat_after: self.tat })
    }

    /// Record a charge decided elsewhere (cluster mode: the shared counters decided it, this
    /// node keeps a copy of its own sends).
    pub fn record(&mut self, charge: &Charge) {
        let want = u64::from(charge.count);
        match self.window.iter().position(|&(s, _)| s >= charge.second) {
            Some(i) if self.window[i].0 == charge.second => self.window[i].1 += want,
            Some(i) => self.window.insert(i, (charge.second, want)),
            None => self.window.push_back((charge.second, want)),
        }
        self.total += want;
        self.tat = self.tat.max(charge.tat_after);
    }

    /// Undo an accepted charge whose message could not be stored: refused costs nothing.
    pub fn refund(&mut self, charge: &Charge) {
        let want = u64::from(charge.count);
        if let Some(entry) = self.window.iter_mut().find(|(s, _)| *s == charge.second) {
            let take = entry.1.min(want);
            entry.1 -= take;
            self.total -= take;
        }
        self.window.retain(|(_, c)| *c > 0);
        let spent = charge.tat_after.saturating_sub(charge.tat_before);
        self.tat = self.tat.saturating_sub(spent);
    }

    fn daily_retry(&self, now: Nanos, want: u64, max: u64) -> Option<Duration> {
        if want > max {
            return None;
        }
        let need = self.total + want - max;
        let mut freed = 0;
        for &(s, c) in &self.window {
            freed += c;
            if freed >= need {
                let at = (s + WINDOW_SECS) * NANOS_PER_SEC;
                return Some(Duration::from_nanos(at.saturating_sub(now)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
