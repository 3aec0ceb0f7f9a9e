//! The pace of single mailboxes. A mailbox that answers "receiving mail too quickly" (4.2.1)
//! speaks for itself only: its messages then wait in line and go one at a time, while the lane
//! goes on at its own rate. The interval grows by half on each such refusal and shrinks a little
//! on each acceptance, so it settles near what the mailbox takes. Pure: times are milliseconds.

use std::collections::{HashMap, VecDeque};

/// The first interval after a refusal, ms.
const FIRST_MS: i64 = 1_000;
/// The longest interval, ms (a mailbox limit is usually per hour at most).
const MAX_MS: i64 = 3_600_000;
/// Mailboxes remembered at most; the idle ones go first.
const MAX_MAILBOXES: usize = 100_000;
/// A message first in line that has not come back this long after its turn lost its place
/// (it was deleted, expired, or delivered another way).
const GRACE_MS: i64 = 5_000;

/// A message's recipient: (MessageId, recipient index).
pub type Rcpt<'a> = (&'a str, i64);

#[derive(Debug, Clone)]
struct Pace {
    interval_ms: i64,
    /// The earliest time the next message may go.
    free_at_ms: i64,
    /// Messages waiting for their turn, first in line first.
    line: VecDeque<(String, i64)>,
    last_seen_ms: i64,
    /// When the interval last grew.
    grown_at_ms: i64,
    /// The interval when the current run of refusals began (none accepted since).
    run_base_ms: Option<i64>,
}

impl Pace {
    fn position(&self, r: Rcpt<'_>) -> Option<usize> {
        self.line.iter().position(|(m, i)| m == r.0 && *i == r.1)
    }

    /// When the message at `pos` in line may go.
    fn turn_at(&self, pos: usize, now: i64) -> i64 {
        self.free_at_ms.max(now) + pos as i64 * self.interval_ms
    }
}

/// Paced mailboxes, by lower-case address.
#[derive(Debug, Default)]
pub struct Paces {
    map: HashMap<String, Pace>,
}

impl Paces {
    /// No mailbox is paced.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `mailbox` is paced (its messages come back at their turns).
    pub fn paced(&self, mailbox: &str) -> bool {
        !self.map.is_empty() && self.map.contains_key(&mailbox.to_ascii_lowercase())
    }

    /// The mailbox refused `r` for its rate at `now`: the interval grows by half and `r` waits
    /// first in line. Returns when its turn comes.
    pub fn refused(&mut self, mailbox: &str, r: Rcpt<'_>, now: i64) -> i64 {
        if self.map.len() >= MAX_MAILBOXES {
            self.forget_idle(now);
        }
        let p = self.map.entry(mailbox.to_ascii_lowercase()).or_insert(Pace {
            interval_ms: 0,
            free_at_ms: now,
            line: VecDeque::new(),
            last_seen_ms: now,
            grown_at_ms: now,
            run_base_ms: None,
        });
        // A run of refusals with nothing accepted is mostly a mailbox whose window is full:
        // it grows the interval to wait it out, not to learn the pace (see `accepted`).
        if p.run_base_ms.is_none() {
            p.run_base_ms = Some(p.interval_ms.max(FIRST_MS));
        }
        // Refusals of messages sent before the last growth answer the old pace: one growth
        // per interval.
        if p.interval_ms == 0 || now >= p.grown_at_ms + p.interval_ms {
            p.interval_ms = (p.interval_ms * 3 / 2).clamp(FIRST_MS, MAX_MS);
            p.grown_at_ms = now;
        }
        p.last_seen_ms = now;
        p.free_at_ms = p.free_at_ms.max(now + p.interval_ms);
        if let Some(pos) = p.position(r) {
            p.line.remove(pos);
        }
        p.line.push_front((r.0.to_string(), r.1));
        p.turn_at(0, now)
    }

    /// The mailbox accepted a message: the interval shrinks by 15 % (not under the first
    /// one); a mailbox back at the first interval, with nobody in line, is paced no more. The
    /// first acceptance after a run of refusals ends the wait: the pace goes back to half again
    /// the interval that was refused (the pace learnt), not the one grown while waiting.
    pub fn accepted(&mut self, mailbox: &str, now: i64) {
        let key = mailbox.to_ascii_lowercase();
        if let Some(p) = self.map.get_mut(&key) {
            match p.run_base_ms.take() {
                Some(base) => p.interval_ms = p.interval_ms.min(base * 3 / 2),
                None => p.interval_ms = (p.interval_ms * 17 / 20).max(FIRST_MS),
            }
            if p.free_at_ms > now + p.interval_ms {
                p.free_at_ms = now + p.interval_ms;
            }
            p.last_seen_ms = now;
            if p.interval_ms <= FIRST_MS && p.line.is_empty() {
                self.map.remove(&key);
            }
        }
    }

    /// `r` for `mailbox` is about to go at `now`: `None` if it may (first in line, or nobody
    /// waiting, and the interval since the last one has passed), else when its turn comes (it
    /// keeps its place in line).
    pub fn turn(&mut self, mailbox: &str, r: Rcpt<'_>, now: i64) -> Option<i64> {
        let p = self.map.get_mut(&mailbox.to_ascii_lowercase())?;
        p.last_seen_ms = now;
        // Whoever is first in line and long overdue lost its place.
        while p.line.front().is_some_and(|(m, i)| (m.as_str(), *i) != r)
            && now > p.free_at_ms + p.interval_ms + GRACE_MS
        {
            p.line.pop_front();
            p.free_at_ms = now.min(p.free_at_ms + p.interval_ms);
        }
        let pos = p.position(r);
        if p.free_at_ms <= now && (pos == Some(0) || p.line.is_empty()) {
            if pos == Some(0) {
                p.line.pop_front();
            }
            p.free_at_ms = now + p.interval_ms;
            return None;
        }
        let pos = pos.unwrap_or_else(|| {
            p.line.push_back((r.0.to_string(), r.1));
            p.line.len() - 1
        });
        // Further back in line, it comes back to look again after two intervals: the pace
        // quickens as the mailbox accepts, and a turn booked at today's interval would be late.
        Some(p.turn_at(pos, now).min(p.turn_at(0, now) + 2 * p.interval_ms))
    }

    fn forget_idle(&mut self, now: i64) {
        self.map.retain(|_, p| now - p.last_seen_ms < 10 * p.interval_ms.max(FIRST_MS) || !p.line.is_empty());
        if self.map.len() >= MAX_MAILBOXES {
            // Still full of busy mailboxes: the least recently seen half goes.
            let mut seen: Vec<i64> = self.map.values().map(|p| p.last_seen_ms).collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 2];
            self.map.retain(|_, p| p.last_seen_ms > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_refused_mailbox_takes_its_messages_one_at_a_time_in_line() {
        let mut p = Paces::default();
        assert_eq!(p.turn("a@x", ("m0", 0), 0), None, "unpaced mailboxes go at once");
        assert_eq!(p.refused("A@x", ("m1", 0), 0), 1_000);
        // Messages behind it wait in line; other mailboxes are not touched.
        assert_eq!(p.turn("a@x", ("m2", 0), 10), Some(2_000));
        assert_eq!(p.turn("a@x", ("m3", 0), 20), Some(3_000));
        assert_eq!(p.turn("b@x", ("m4", 0), 20), None);
        // Back too early: the same place in line.
        assert_eq!(p.turn("a@x", ("m2", 0), 500), Some(2_000));
        // Their turns come in order; one out of turn waits.
        assert_eq!(p.turn("a@x", ("m2", 0), 1_000), Some(2_000), "m1 is first in line");
        assert_eq!(p.turn("a@x", ("m1", 0), 1_000), None);
        assert_eq!(p.turn("a@x", ("m3", 0), 2_000), Some(3_000));
        assert_eq!(p.turn("a@x", ("m2", 0), 2_000), None);
        // Refused again: the interval grows by half, and the refused one is first in line.
        assert_eq!(p.refused("a@x", ("m2", 0), 2_100), 3_600);
        assert_eq!(p.turn("a@x", ("m3", 0), 3_600), Some(5_100));
        assert_eq!(p.turn("a@x", ("m4", 0), 3_600), Some(6_600));
        assert_eq!(p.turn("a@x", ("m5", 0), 3_600), Some(6_600), "the third in line looks again then");
        // A refusal right after that answers the old pace: no second growth.
        assert_eq!(p.refused("a@x", ("m3", 0), 2_200), 3_700);
    }

    #[test]
    fn one_first_in_line_that_never_comes_back_loses_its_place() {
        let mut p = Paces::default();
        p.refused("a@x", ("gone", 0), 0);
        assert_eq!(p.turn("a@x", ("m", 0), 10), Some(2_000));
        assert_eq!(p.turn("a@x", ("m", 0), 1_000 + 1_000 + GRACE_MS + 1), None);
    }

    #[test]
    fn the_first_acceptance_after_a_run_of_refusals_returns_to_the_pace_learnt() {
        let mut p = Paces::default();
        // Refused at a 4 s pace, then again and again while the mailbox's window is full.
        p.refused("a@x", ("m0", 0), 0);
        let mut t = 0;
        for _ in 0..3 {
            p.accepted("a@x", t);
            t += 1_000;
        }
        let mut t = 10_000;
        for i in 1..8 {
            t = p.refused("a@x", (&format!("m{i}"), 0), t);
        }
        assert!(p.turn("a@x", ("late", 0), t).is_some_and(|at| at - t > 10_000), "waits the full window out");
        // The first in line goes at its turn and is accepted.
        assert_eq!(p.turn("a@x", ("m7", 0), t), None);
        p.accepted("a@x", t + 100);
        // Back to half again the 1 s pace that was refused, not the grown interval: the next in
        // line goes 1.5 s later.
        assert_eq!(p.turn("a@x", ("m6", 0), t + 1_500), Some(t + 1_600));
        assert_eq!(p.turn("a@x", ("m6", 0), t + 1_600), None);
    }

    #[test]
    fn acceptances_relax_the_pace_until_the_mailbox_is_free() {
        let mut p = Paces::default();
        p.refused("a@x", ("m", 0), 0);
        assert_eq!(p.turn("a@x", ("m", 0), 1_000), None);
        let mut t = 2_000;
        for _ in 0..10 {
            p.accepted("a@x", t);
            t += 2_000;
        }
        assert!(p.is_empty());
    }

    proptest! {
        /// Whatever the refusals, acceptances and returns, two messages of one mailbox never go
        /// closer together than the first interval, and a turn is never in the past.
        #[test]
        fn messages_of_a_paced_mailbox_go_one_at_a_time(events in prop::collection::vec((0i64..3_000, 0u8..3, 0u8..5), 1..300)) {
            let mut p = Paces::default();
            let mut now = 0;
            let mut last_go: Option<i64> = None;
            for (dt, kind, m) in events {
                now += dt;
                let id = format!("m{m}");
                match kind {
                    0 => { let at = p.refused("x@y", (&id, 0), now); prop_assert!(at > now); }
                    1 => p.accepted("x@y", now),
                    _ => {
                        let paced = !p.is_empty();
                        match p.turn("x@y", (&id, 0), now) {
                            Some(at) => prop_assert!(at > now),
                            None => {
                                if paced {
                                    prop_assert!(last_go.is_none_or(|l| now - l >= FIRST_MS), "{now} after {last_go:?}");
                                }
                                last_go = Some(now);
                            }
                        }
                    }
                }
            }
        }
    }
}
