//! The retry schedule: deliberate exponential backoff with jitter inside a retry window.

use std::time::Duration;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// First retry delay (15 minutes by default).
    pub first: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
    /// How long after acceptance a recipient may still be retried (48 hours by default).
    pub window: Duration,
    /// Jitter as a fraction of the delay, in per-mille (±100 = ±10 %).
    pub jitter_permille: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            first: Duration::from_secs(15 * 60),
            max: Duration::from_secs(8 * 3600),
            window: Duration::from_secs(48 * 3600),
            jitter_permille: 100,
        }
    }
}

impl Schedule {
    /// Delay before attempt `attempt + 1`, where `attempt` failed attempts have been made
    /// (1 → first, 2 → 2 × first, …, capped), with `unit` ∈ [0, 1) choosing the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self.first.saturating_mul(1u32 << exp).min(self.max);
        let spread = base.as_secs_f64() * f64::from(self.jitter_permille) / 1000.0;
        let jitter = (unit.clamp(0.0, 1.0) * 2.0 - 1.0) * spread;
        Duration::from_secs_f64((base.as_secs_f64() + jitter).max(0.0))
    }

    /// When to retry, or `None` if the next attempt would fall outside the window.
    /// Times are milliseconds since the epoch.
    pub fn next_attempt(&self, accepted_ms: i64, now_ms: i64, attempt: u32, unit: f64) -> Option<i64> {
        let at = now_ms + self.delay(attempt, unit).as_millis() as i64;
        (at <= accepted_ms + self.window.as_millis() as i64).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_thirty_sixty() {
        let s = Schedule { jitter_permille: 0, ..Default::default() };
        let mins: Vec<u64> = (1..=7).map(|a| s.delay(a, 0.5).as_secs() / 60).collect();
        assert_eq!(mins, vec![15, 30, 60, 120, 240, 480, 480]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_window_ends_retries() {
        let s = Schedule::default();
        for a in 1..10 {
            for u in [0.0, 0.3, 0.999] {
                let d = s.delay(a, u).as_secs_f64();
                let base = s.delay(a, 0.5).as_secs_f64();
                assert!((d - base).abs() <= base * 0.1 + 1e-6);
            }
        }
        let h = 3_600_000;
        assert!(s.next_attempt(0, 47 * h, 9, 0.5).is_none());
        assert!(s.next_attempt(0, 40 * h, 5, 0.0).is_some());
    }
}
