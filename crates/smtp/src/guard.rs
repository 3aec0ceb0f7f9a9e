//! Connection limits and AUTH-failure lockout per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::SmtpConfig;

#[derive(Default)]
struct Failures {
    count: u32,
    window_start: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Shared accounting of sessions and AUTH failures.
#[derive(Default)]
pub struct Guard {
    conns: Mutex<(usize, HashMap<IpAddr, usize>)>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// Held by a session; releases its connection slot on drop.
pub struct Permit {
    guard: Arc<Guard>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.guard.conns.lock();
        c.0 = c.0.saturating_sub(1);
        if let Some(n) = c.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.ip);
            }
        }
    }
}

impl Guard {
    /// A connection slot for `ip`, or `None` when over the total or per-IP limit.
    pub fn connect(self: &Arc<Self>, ip: IpAddr, cfg: &SmtpConfig) -> Option<Permit> {
        let mut c = self.conns.lock();
        let per_ip = c.1.get(&ip).copied().unwrap_or(0);
        if c.0 >= cfg.max_connections || per_ip >= cfg.max_connections_per_ip {
            return None;
        }
        c.0 += 1;
        *c.1.entry(ip).or_default() += 1;
        Some(Permit { guard: self.clone(), ip })
    }

    /// Sessions open now.
    pub fn active(&self) -> usize {
        self.conns.lock().0
    }

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
    fn limits_and_lockout() {
        let g = Arc::new(Guard::default());
        let cfg = SmtpConfig { max_connections: 3, max_connections_per_ip: 2, ..Default::default() };
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = g.connect(a, &cfg).unwrap();
        let _p2 = g.connect(a, &cfg).unwrap();
        assert!(g.connect(a, &cfg).is_none(), "per-IP limit");
        let _p3 = g.connect(b, &cfg).unwrap();
        assert!(g.connect(b, &cfg).is_none(), "total limit");
        drop(p1);
        assert!(g.connect(a, &cfg).is_some());

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
