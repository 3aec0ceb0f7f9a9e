//! The pace of single mailboxes. A mailbox that answers "receiving mail too quickly" (4.2.1)
//! speaks for itself only: its messages then go one at a time, each at its turn, while the lane
//! goes on at its own rate. The interval doubles on each such refusal and shrinks a little on
//! each acceptance, so it settles near what the mailbox takes. Pure: times are milliseconds.

use std::collections::HashMap;

/// The first interval after a refusal, ms.
const FIRST_MS: i64 = 1_000;
/// The longest interval, ms (a mailbox limit is usually per hour at most).
const MAX_MS: i64 = 3_600_000;
/// Mailboxes remembered at most; the idle ones go first.
const MAX_MAILBOXES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Pace {
    interval_ms: i64,
    /// The next free turn.
    next_ms: i64,
    last_seen_ms: i64,
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

    /// The mailbox refused one message for its rate at `now`: the interval doubles and its
    /// turns start after it. Returns when the refused message's turn comes.
    pub fn refused(&mut self, mailbox: &str, now: i64) -> i64 {
        if self.map.len() >= MAX_MAILBOXES {
            self.forget_idle(now);
        }
        let p = self.map.entry(mailbox.to_ascii_lowercase()).or_insert(Pace {
            interval_ms: 0,
            next_ms: now,
            last_seen_ms: now,
        });
        // Turns already given out stay (those messages wait for them); this one comes the new,
        // longer interval after the last of them.
        let last_turn = p.next_ms - p.interval_ms;
        p.interval_ms = (p.interval_ms * 2).clamp(FIRST_MS, MAX_MS);
        p.last_seen_ms = now;
        p.next_ms = (last_turn + p.interval_ms).max(now + p.interval_ms);
        let at = p.next_ms;
        p.next_ms += p.interval_ms;
        at
    }

    /// The mailbox accepted a message: the interval shrinks by a tenth; a mailbox whose interval
    /// is back under the first one is paced no more.
    pub fn accepted(&mut self, mailbox: &str, now: i64) {
        let key = mailbox.to_ascii_lowercase();
        if let Some(p) = self.map.get_mut(&key) {
            p.interval_ms = p.interval_ms * 9 / 10;
            p.last_seen_ms = now;
            if p.interval_ms < FIRST_MS && p.next_ms <= now {
                self.map.remove(&key);
            }
        }
    }

    /// A message for `mailbox` is about to go at `now`: `None` if it may (its turn is now, and
    /// the next turn is booked after it), else when its turn comes (booked for it).
    pub fn turn(&mut self, mailbox: &str, now: i64) -> Option<i64> {
        let p = self.map.get_mut(&mailbox.to_ascii_lowercase())?;
        p.last_seen_ms = now;
        if p.next_ms <= now {
            p.next_ms = now + p.interval_ms;
            return None;
        }
        let at = p.next_ms;
        p.next_ms += p.interval_ms;
        Some(at)
    }

    fn forget_idle(&mut self, now: i64) {
        self.map.retain(|_, p| now - p.last_seen_ms < 10 * p.interval_ms.max(FIRST_MS) || p.next_ms > now);
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
    fn a_refused_mailbox_takes_its_messages_one_turn_at_a_time() {
        let mut p = Paces::default();
        assert_eq!(p.turn("a@x", 0), None, "unpaced mailboxes go at once");
        let first = p.refused("A@x", 0);
        assert_eq!(first, 1_000);
        // Messages queued behind it each get a later turn; other mailboxes are not touched.
        assert_eq!(p.turn("a@x", 10), Some(2_000));
        assert_eq!(p.turn("a@x", 20), Some(3_000));
        assert_eq!(p.turn("b@x", 20), None);
        // Refused again: the interval doubles for the turns after those already given.
        assert_eq!(p.refused("a@x", 1_000), 5_000);
        assert_eq!(p.turn("a@x", 1_000), Some(7_000));
    }

    #[test]
    fn acceptances_relax_the_pace_until_the_mailbox_is_free() {
        let mut p = Paces::default();
        p.refused("a@x", 0);
        let mut t = 2_000;
        for _ in 0..10 {
            p.accepted("a@x", t);
            t += 2_000;
        }
        assert!(p.is_empty());
    }

    proptest! {
        /// Whatever the refusals and acceptances, every turn given out lies after the moment it
        /// was asked for and after every turn given before it: one message at a time.
        #[test]
        fn turns_are_in_the_future_and_one_at_a_time(events in prop::collection::vec((0i64..5_000, 0u8..3), 1..200)) {
            let mut p = Paces::default();
            let mut now = 0;
            let mut last: Option<i64> = None;
            for (dt, kind) in events {
                now += dt;
                let at = match kind {
                    0 => Some(p.refused("m@x", now)),
                    1 => { p.accepted("m@x", now); None }
                    _ => p.turn("m@x", now),
                };
                if let Some(at) = at {
                    prop_assert!(at > now);
                    prop_assert!(last.is_none_or(|l| at > l), "{at} after {last:?}");
                    last = Some(at);
                }
            }
        }
    }
}
