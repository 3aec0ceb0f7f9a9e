//! Climbing after a clean interval: back towards the last rate known to pass, then probing
//! above it, and one more connection at a time.

use super::*;

impl Controller {
    pub(super) fn step_up(&mut self, now: Millis) {
        let max = self.cfg.max_rate_per_min;
        let before = (self.rate, self.conns);
        if self.warming {
            // Grow the level by the warm-up factor and keep the rate a margin under it.
            self.warm_level *= self.cfg.warmup_factor;
            self.rate = (self.warm_level * self.cfg.ceiling_margin).min(max);
            if self.warm_level >= max {
                self.warming = false;
                self.rate = max;
            }
        } else {
            match self.ceiling {
                Some(c) if self.rate < c * self.cfg.ceiling_margin => {
                    // Geometric towards the last rate known to pass: minutes, not hours, from a
                    // low resumed rate, and never above the ceiling's margin.
                    let up = (self.rate * self.cfg.climb_factor).max(self.rate + self.cfg.recover_step * max);
                    self.rate = up.min(c * self.cfg.ceiling_margin).min(max);
                }
                // Above a ceiling, one probe per proof window (a pause's length), each from a
                // rate held clean that long: a receiver counting over a window longer than a
                // step interval lets a small overshoot pass for a while.
                Some(_) if now.saturating_sub(self.level_since) < self.cfg.pause_ms => {}
                Some(c) => {
                    if self.lock_refused.is_some_and(|(_, lock, at)| {
                        now.saturating_sub(at) >= LOCK_MEMORY_WAITS * self.lockout_wait(lock)
                    }) {
                        self.lock_refused = None;
                        self.failed_probes = 0;
                    }
                    let next = match self.lock_refused {
                        // Under the rate that met a lock-out: only with work enough left to
                        // repay a failed probe's wait, and only half way to that rate while the
                        // gap is wide; close to it, the lane holds.
                        Some((refused, lock, _)) => {
                            let horizon =
                                if lock == Lock::Cautious { CAUTIOUS_PROBE_HORIZON_WAITS } else { PROBE_HORIZON_WAITS };
                            let wait = self.lockout_wait(lock).max(self.last_lockout_ms) as f64
                                * f64::from(1u32 << self.failed_probes.min(16));
                            let left_ms = self.backlog as f64 * 60_000.0 / self.rate.max(1e-3);
                            (left_ms >= horizon * wait && refused - self.rate > SEARCH_GAP * self.rate)
                                .then_some((self.rate + refused) / 2.0)
                        }
                        // Refusals of a rate (not a lock-out): a failed probe costs a few
                        // deferrals. The provider may now accept more, or the ceiling was
                        // learnt from a bad moment: each probe that holds doubles the next.
                        _ => {
                            let next = self.rate * (1.0 + self.probe_gain);
                            self.probe_gain = (self.probe_gain * 2.0).min(MAX_PROBE_GAIN);
                            Some(next)
                        }
                    };
                    if let Some(next) = next {
                        self.rate = next.min(max);
                        if self.rate > c {
                            self.ceiling = Some(self.rate);
                        }
                    }
                }
                None => self.rate = (self.rate + self.cfg.recover_step * max).min(max),
            }
        }
        // Connections one at a time, only after a clean interval; past a connection cap the
        // receiver showed, one more only after several clean intervals.
        if let Some(c) = self.conn_ceiling
            && self.conns >= c
        {
            self.clean_at_conn_ceiling += 1;
            if self.clean_at_conn_ceiling >= CONN_PROBE_INTERVALS {
                self.conn_ceiling = Some(c + 1);
                self.clean_at_conn_ceiling = 0;
            }
        }
        if self.conns < self.cfg.max_connections && self.conn_ceiling.is_none_or(|c| self.conns < c) {
            self.conns += 1;
        }
        if self.rate != before.0 {
            self.level_since = now;
        }
        if (self.rate, self.conns) != before {
            self.note(now, if self.warming { "warmup_step" } else { "step_up" }, "clean interval");
        }
    }
}
