//! Lock-outs: a receiver refusing the sending IP altogether (4.7.28, TSS04, a block) is one
//! incident, waited out with one probe at a time.

use super::*;

impl Controller {
    /// The receiver locks the sending IP out (4.7.28, TS/TSS deferrals) or blocks it. While the
    /// lock-out lasts every refusal belongs to the same incident: refusals during the wait are
    /// answers to attempts already made; a refused probe doubles the wait, and nothing else.
    pub(super) fn locked_out(&mut self, now: Millis, reply: &str, lock: Lock) {
        let blocked = lock == Lock::Blocked;
        self.deferred += 1;
        if self.paused_until.is_some_and(|u| u > now) {
            return;
        }
        if let Some(l) = self.lockout.as_mut() {
            let base = if blocked { self.cfg.block_pause_ms } else { self.cfg.pause_ms };
            if l.lock == Lock::Out {
                self.refused_wait_ms = self.refused_wait_ms.max(l.wait_ms);
            }
            l.wait_ms = l.wait_ms.saturating_mul(2).min(self.cfg.max_lockout_ms.max(base));
            l.probing = false;
            l.probe_refused = true;
            let wait = l.wait_ms;
            self.paused_until = Some(now + wait);
            self.conns = 1;
            let words = format!("{reply} — still locked out; one connection tries again in about {} s", wait / 1000);
            self.note(now, "probe_refused", &words);
            return;
        }
        {
            {
                let refused = self.rate;
                // Resume at a fraction of the refused rate, and not above what the receiver was
                // measured to take just before (a receiver counting over a window lets a burst
                // through before it locks the sender out).
                let measured = self.measured_rate(now);
                let mut resume = refused * self.cfg.decrease * self.cfg.decrease;
                if let Some(m) = measured {
                    resume = resume.min(m * RESUME_FRACTION);
                }
                self.rate = resume.max(self.cfg.min_rate_per_min);
                // Recovery climbs only to a rate known to be clean (the ceiling keeps the margin
                // above it). With none under the refused rate, nothing between the resumed rate
                // and the refused one is known to pass, and a step that fails costs another
                // pause of ten minutes or more: the lane stays at the resumed rate until probing
                // is allowed again.
                // The last rate known to pass: a proven one under the refused rate, else what the
                // receiver was measured to take before it refused (with the margin).
                let known = match (self.proven_rate, measured) {
                    (Some(clean), _) if clean < refused => clean.max(self.rate),
                    (_, measured) => {
                        let guess = match measured {
                            // The receiver took less than was sent: what it took is its limit,
                            // near enough.
                            Some(m) if m < refused * 0.95 => m * self.cfg.ceiling_margin,
                            Some(m) => (m * KNOWN_FRACTION).min(refused * self.cfg.decrease),
                            // Nothing measured: the step under the refused rate, unless a
                            // failed climb would cost another long pause.
                            None if lock == Lock::Out => refused * self.cfg.decrease,
                            None => self.rate,
                        };
                        // A guess never goes back to the edge that failed (a rate just under it
                        // passes a short proof and meets the next lock-out once the receiver's
                        // allowance runs out), and how soon the rate failed says how far over
                        // it was: a receiver lets a burst through, then counts; at a rate r over
                        // its limit L the burst lasts b / (r - L). Taking the burst as one clean
                        // interval's worth of the limit, L = r / (1 + interval / time held).
                        let held = now.saturating_sub(self.sending_since).max(1) as f64;
                        let fraction = (1.0 / (1.0 + self.cfg.step_interval_ms as f64 / held))
                            .clamp(MIN_LOCKED_FRACTION, LOCKED_KNOWN_FRACTION);
                        guess.min(refused * fraction).max(self.cfg.min_rate_per_min)
                    }
                };
                let ceiling = known / self.cfg.ceiling_margin;
                self.ceiling = Some(self.ceiling.map_or(ceiling, |c| c.min(ceiling)));
                if self.lock_refused.is_some() && self.proven_rate.is_some_and(|p| p < refused) {
                    self.failed_probes += 1;
                }
                self.lock_refused = Some((refused, lock, now));
                self.probe_gain = self.cfg.probe_step;
                // The climb back starts under the rate known to pass.
                if known < self.rate {
                    self.rate = (known * self.cfg.decrease).max(self.cfg.min_rate_per_min);
                }
                self.conns = 1;
                let wait = match lock {
                    Lock::Blocked => self.cfg.block_pause_ms,
                    Lock::Cautious => self.cfg.pause_ms,
                    Lock::Out => self.learned_wait_ms.unwrap_or(self.cfg.pause_ms),
                };
                self.paused_until = Some(now + wait);
                self.lockout = Some(Lockout { since: now, wait_ms: wait, probing: false, lock, probe_refused: false });
                self.last_decrease = Some(now);
                self.restart_interval(now);
                self.level_since = now;
                let (kind, what) =
                    if blocked { ("blocked", "the sending IP is blocked") } else { ("pause", "locked out") };
                let words = format!("{reply} — {what}; one connection tries again in about {} s", wait / 1000);
                self.note(now, kind, &words);
            }
        }
    }

    /// The first wait of a lock-out of this kind.
    pub(super) fn lockout_wait(&self, lock: Lock) -> Millis {
        if lock == Lock::Blocked { self.cfg.block_pause_ms } else { self.cfg.pause_ms }
    }
}
