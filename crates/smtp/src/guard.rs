//! AUTH-failure lockout per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
struct Failures {
    count: u32,
    window_start: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Shared accounting of AUTH failures.
#[derive(Default)]
pub struct Guard {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Guard {
    /// Whether `ip` is locked out of AUTH at `now`.
    pub fn locked_out(&self, ip: IpAddr, now: Instant) -> bool {
        self.failures.lock().get(&ip).and_then(|f| f.locked_until).is_some_and(|t| t > now)
    }

    /// Record a failed AUTH from `ip`.
    pub fn auth_failed(&self, ip: IpAddr, now: Instant, max: u32, window: Duration) {
        let mut all = self.failures.lock();
        let f = all.entry(ip).or_default();
        if f.window_start.is_none_or(|s| now.duration_since(s) > window) {
            f.window_start = Some(now);
            f.count = 0;
        }
        f.count += 1;
        if f.count >= max {
            f.locked_until = Some(now + window);
            f.count = 0;
            f.window_start = None;
            tracing::warn!(%ip, "too many failed SMTP AUTH attempts: locked out");
        }
        if all.len() > 100_000 {
            // Forget stale entries rather than grow without bound.
            all.retain(|_, f| f.locked_until.is_some_and(|t| t > now));
        }
    }

    /// Forget failures of `ip` after a successful AUTH.
    pub fn auth_succeeded(&self, ip: IpAddr) {
        self.failures.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_after_repeated_failures() {
        let g = Guard::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..2 {
            g.auth_failed(a, t, 3, Duration::from_secs(60));
        }
        assert!(!g.locked_out(a, t));
        g.auth_failed(a, t, 3, Duration::from_secs(60));
        assert!(g.locked_out(a, t) && !g.locked_out(b, t));
        assert!(!g.locked_out(a, t + Duration::from_secs(61)));
    }
}
