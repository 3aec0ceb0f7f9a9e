//! Refusals of a rate or of connections: a cut of the rate (to what the receiver was measured
//! to take, when that is known) or of the connections, and a lock-out read from refusals with
//! nothing accepted, whatever their words.

use super::*;

impl Controller {
    /// New rate after a throttling reply: down by the configured factor, or straight to just
    /// under what the provider was measured to accept, whichever is lower.
    pub(super) fn decreased_rate(&self, now: Millis) -> f64 {
        let mut r = self.rate * self.cfg.decrease;
        // Refusals that go on after a cut to the measured rate while the receiver keeps taking
        // mail show the measure overstated its rate (greylisted offers, or a burst it let
        // through, counted in it). What it accepted since the refusals began is the better
        // measure then; down by the usual decrease at least, unless so little passed that the
        // refusals are a lock-out's, which is no reason to cut further.
        if self.cuts_in_row > 1 {
            let span = now.saturating_sub(self.chain_since).max(1);
            let a = f64::from(self.chain_accepted) * 60_000.0 / span as f64 * self.cfg.ceiling_margin;
            if a >= self.rate * self.cfg.decrease * self.cfg.decrease {
                return a.min(r).max(self.cfg.min_rate_per_min);
            }
        }
        // Far under the rate (under two decreases of it), what was taken measures something
        // else than a rate limit: a receiver locking the sender out, or little mail to send.
        // The usual decrease then, not a fall to what little passed.
        if let Some(m) = self.measured_rate(now)
            && m * self.cfg.ceiling_margin >= self.rate * self.cfg.decrease * self.cfg.decrease
        {
            r = (m * self.cfg.ceiling_margin).min(self.rate * self.cfg.ceiling_margin);
        }
        r.max(self.cfg.min_rate_per_min)
    }

    /// A throttling reply: multiplicative decrease, remembering the refused rate as a ceiling.
    /// When nothing at all has been accepted for a while and the refusals go on whatever the
    /// rate, the receiver is not limiting a rate but locking the sender out, however it words
    /// it: that is handled as a lock-out (wait, one probe), not by cutting the rate further.
    pub(super) fn slow_down(&mut self, now: Millis, reply: &str) {
        {
            {
                self.deferred += 1;
                if self.paused_until.is_some_and(|u| u > now) {
                    return;
                }
                if self.lockout.is_some() {
                    // A refusal of the probe: the lock-out goes on, whatever its words.
                    self.deferred -= 1;
                    self.locked_out(now, reply, Lock::Out);
                    return;
                }
                self.refusals_since_accept += 1;
                if self.refusals_since_accept == 1 {
                    self.before_refusals = (self.rate, self.ceiling, self.conns);
                }
                if self.refusals_since_accept >= LOCKOUT_REFUSALS
                    && now.saturating_sub(self.last_accept) >= LOCKOUT_QUIET_COOLDOWNS * self.cfg.decrease_cooldown_ms
                {
                    // The cuts made since the refusals began answered a lock-out, not a rate:
                    // undone, and the lock-out handled from the rate that met it.
                    (self.rate, self.ceiling, self.conns) = self.before_refusals;
                    let words = format!("{reply} (nothing accepted since these refusals began: a lock-out)");
                    self.deferred -= 1;
                    self.locked_out(now, &words, Lock::Out);
                    return;
                }
                if self.last_decrease.is_some_and(|t| now.saturating_sub(t) < self.cfg.decrease_cooldown_ms) {
                    return;
                }
                // A step up refused soon after: probe less often (counted once per step).
                if self.last_step.is_some_and(|t| now.saturating_sub(t) < self.step_interval()) {
                    self.probe_factor = (self.probe_factor * 2.0).min(32.0);
                    self.last_step = None;
                }
                // The ceiling: the rate refused, or what the receiver was measured to take while
                // refusing the rest, if lower (a receiver that counts over a window lets a rate
                // somewhat above its limit pass for a while; the refused rate overstates it).
                let refused = match self.measured_rate(now) {
                    Some(m) => self.rate.min(m.max(self.rate * self.cfg.decrease)),
                    None => self.rate,
                };
                self.ceiling = Some(self.ceiling.map_or(refused, |c| c.min(refused)));
                self.probe_gain = self.cfg.probe_step;
                if self.last_decrease.is_some_and(|t| now.saturating_sub(t) < self.step_interval()) {
                    self.cuts_in_row += 1;
                } else {
                    self.cuts_in_row = 1;
                    self.chain_since = now;
                    self.chain_accepted = 0;
                }
                let new_rate = self.decreased_rate(now);
                if new_rate <= self.rate * self.cfg.decrease {
                    self.conns = ((f64::from(self.conns) * self.cfg.decrease).floor() as u32).max(1);
                }
                self.rate = new_rate;
                if self.warming {
                    self.warm_level = self.rate / self.cfg.ceiling_margin;
                }
                self.last_decrease = Some(now);
                self.restart_interval(now);
                self.level_since = now;
                if self.warming {
                    self.note(now, "warmup_fallback", reply);
                } else {
                    self.note(now, "slow_down", reply);
                }
            }
        }
    }

    /// A reply that blames the number of connections, at the greeting (`in_session` false, with
    /// the sessions open then) or inside a session. Fewer connections first; if the complaints
    /// go on while the lane keeps to that fewer (or, at the greeting, come with fewer sessions
    /// open than the cap they taught), the number was not the problem: slow the rate instead.
    pub(super) fn connection_complaint(
        &mut self,
        now: Millis,
        established: Option<u32>,
        in_session: bool,
        reason: &str,
    ) {
        if self.last_conn_cut.is_some_and(|t| now.saturating_sub(t) < self.cfg.decrease_cooldown_ms) {
            return;
        }
        let remedy_failed = match self.conns_after_cut {
            Some(after) if in_session => self.conns <= after,
            // At the greeting, refused with clearly fewer sessions open than the cap it taught
            // (a receiver may count a session that just closed for a moment longer).
            Some(after) => established.is_some_and(|e| e + 1 < after),
            None => false,
        };
        if remedy_failed {
            self.last_conn_cut = Some(now);
            let words = format!("{reason} (fewer connections did not stop these refusals: slowing down instead)");
            self.slow_down(now, &words);
            return;
        }
        let mut conns = self.conns.saturating_sub(1);
        if let Some(e) = established {
            conns = conns.min(e);
        }
        let conns = conns.max(1);
        self.conn_ceiling = Some(conns);
        self.clean_at_conn_ceiling = 0;
        self.last_conn_cut = Some(now);
        self.conns_after_cut = Some(conns);
        if conns != self.conns {
            self.conns = conns;
            self.note(now, "fewer_connections", reason);
        }
    }
}
