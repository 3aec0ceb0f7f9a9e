//! Accepting connections safely, for every listener weir runs (HTTP API, SMTP submission).
//!
//! - [`ConnLimiter`]: a cap on connections in all and per client IP; a connection over either cap
//!   is closed at once instead of holding a descriptor, except that a full listener closes an
//!   idle connection to make room.
//! - [`Acceptor`]: an accept loop that survives running out of descriptors (backs off, and says
//!   so once in a while instead of on every attempt).
//! - [`raise_nofile_limit`]: the soft descriptor limit raised to the hard one at start.
//! - [`stream::MaybeTls`]: a connection before and after STARTTLS, server or client side.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub mod stream;

/// Caps on concurrent connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections in all.
    pub total: usize,
    /// Connections from one IP address.
    pub per_ip: usize,
}

/// One admitted connection, as the limiter sees it.
struct Entry {
    ip: IpAddr,
    since: Instant,
    idle: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    conns: HashMap<u64, Entry>,
    next_id: u64,
}

/// Shared count of open connections of one listener (or several that share a budget).
///
/// When the total cap is full, a new connection takes the place of an idle one (one that has not
/// started any work: no request in progress, not authenticated), chosen from the IP address
/// holding the most connections, oldest first. So clients that open connections and sit on them
/// cannot lock out one that has something to do; only connections doing work fill the cap.
pub struct ConnLimiter {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// A connection slot; released when dropped.
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    id: u64,
    idle: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

impl ConnPermit {
    /// Say whether the connection is idle (may be closed to admit another) or doing work.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Resolves when the limiter has taken this slot for another connection: close at once.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock();
        // An evicted connection's slot was already handed over.
        if let Some(e) = c.conns.remove(&self.id) {
            c.release_ip(e.ip);
        }
    }
}

impl Counts {
    fn release_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// The idle connection to close for a newcomer: from the IP with the most connections,
    /// oldest first.
    fn victim(&self) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| e.idle.load(Ordering::Relaxed))
            .max_by(|(_, a), (_, b)| {
                let (na, nb) = (self.per_ip.get(&a.ip), self.per_ip.get(&b.ip));
                na.cmp(&nb).then(b.since.cmp(&a.since))
            })
            .map(|(id, _)| *id)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener has `total` connections open, all of them busy.
    Total,
    /// This IP has `per_ip` connections open.
    PerIp,
}

impl ConnLimiter {
    /// A limiter with these caps.
    pub fn new(caps: Caps) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter { caps, counts: Mutex::new(Counts::default()) })
    }

    /// A slot for a connection from `ip` (idle until told otherwise), or why there is none.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let mut c = self.counts.lock();
        if c.per_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
            return Err(Refused::PerIp);
        }
        if c.conns.len() >= self.caps.total {
            let victim = c.victim().ok_or(Refused::Total)?;
            if let Some(e) = c.conns.remove(&victim) {
                c.release_ip(e.ip);
                e.evict.notify_one();
            }
        }
        *c.per_ip.entry(ip).or_default() += 1;
        let id = c.next_id;
        c.next_id += 1;
        let idle = Arc::new(AtomicBool::new(true));
        let evict = Arc::new(Notify::new());
        c.conns.insert(id, Entry { ip, since: Instant::now(), idle: idle.clone(), evict: evict.clone() });
        Ok(ConnPermit { limiter: self.clone(), id, idle, evict })
    }

    /// Connections open now (evicted ones no longer count).
    pub fn active(&self) -> usize {
        self.counts.lock().conns.len()
    }

    /// The caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }
}

/// Whether an accept error means the process or system is out of descriptors or memory: the
/// listener is fine, the process must wait for connections to close.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// An accept loop that keeps going through transient failures.
pub struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    last_warning: Option<Instant>,
    suppressed: u64,
}

/// How often a persisting accept failure is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Acceptor {
    /// Accept on `listener`; `name` labels its log lines.
    pub fn new(listener: TcpListener, name: &'static str) -> Acceptor {
        Acceptor { listener, name, last_warning: None, suppressed: 0 }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection. Failures are waited out: out of descriptors, the loop sleeps
    /// (connections closing will free some) and logs at most once every ten seconds.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.listener.accept().await {
                Ok(conn) => return conn,
                Err(e) => {
                    let exhausted = is_resource_exhaustion(&e);
                    let now = Instant::now();
                    if self.last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                        if exhausted {
                            tracing::warn!(listener = self.name, error = %e, repeated = self.suppressed,
                                "accept failed: out of descriptors; waiting for connections to close");
                        } else {
                            tracing::warn!(listener = self.name, error = %e, repeated = self.suppressed, "accept failed");
                        }
                        self.last_warning = Some(now);
                        self.suppressed = 0;
                    } else {
                        self.suppressed += 1;
                    }
                    if exhausted {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }
}

/// Raise the soft limit on open descriptors to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [127, 0, 0, last].into()
    }

    fn busy(p: ConnPermit) -> ConnPermit {
        p.set_idle(false);
        p
    }

    #[test]
    fn busy_connections_are_capped_in_all_and_per_ip() {
        let l = ConnLimiter::new(Caps { total: 3, per_ip: 2 });
        let p1 = busy(l.try_acquire(ip(1)).expect("first"));
        let _p2 = busy(l.try_acquire(ip(1)).expect("second"));
        assert_eq!(l.try_acquire(ip(1)).err(), Some(Refused::PerIp));
        let _p3 = busy(l.try_acquire(ip(2)).expect("other ip"));
        assert_eq!(l.try_acquire(ip(3)).err(), Some(Refused::Total));
        drop(p1);
        assert_eq!(l.active(), 2);
        assert!(l.try_acquire(ip(1)).is_ok());
    }

    #[tokio::test]
    async fn full_cap_evicts_an_idle_connection_of_the_busiest_ip_oldest_first() {
        let l = ConnLimiter::new(Caps { total: 4, per_ip: 3 });
        let a1 = l.try_acquire(ip(1)).expect("a1");
        let a2 = l.try_acquire(ip(1)).expect("a2");
        let b1 = l.try_acquire(ip(2)).expect("b1");
        let _a3_busy = busy(l.try_acquire(ip(1)).expect("a3"));
        // Full: the newcomer replaces ip 1's oldest idle connection, not ip 2's.
        let c1 = l.try_acquire(ip(3)).expect("admitted by eviction");
        tokio::time::timeout(Duration::from_secs(1), a1.evicted()).await.expect("a1 told to close");
        assert_eq!(l.active(), 4);
        // The evicted permit's drop does not free a second slot.
        drop(a1);
        assert_eq!(l.active(), 4);
        let d1 = l.try_acquire(ip(4)).expect("admitted by evicting a2");
        tokio::time::timeout(Duration::from_secs(1), a2.evicted()).await.expect("a2 told to close");
        drop((a2, b1, c1, d1));
        assert_eq!(l.active(), 1);
    }

    #[test]
    fn full_cap_of_busy_connections_refuses() {
        let l = ConnLimiter::new(Caps { total: 2, per_ip: 2 });
        let _a = busy(l.try_acquire(ip(1)).expect("a"));
        let b = l.try_acquire(ip(2)).expect("b");
        b.set_idle(false);
        assert_eq!(l.try_acquire(ip(3)).err(), Some(Refused::Total));
        b.set_idle(true);
        assert!(l.try_acquire(ip(3)).is_ok());
    }

    #[test]
    fn per_ip_cap_is_not_bypassed_by_eviction() {
        let l = ConnLimiter::new(Caps { total: 2, per_ip: 1 });
        let _a = l.try_acquire(ip(1)).expect("a");
        let _b = l.try_acquire(ip(2)).expect("b");
        assert_eq!(l.try_acquire(ip(1)).err(), Some(Refused::PerIp));
    }

    #[tokio::test]
    async fn accept_survives_descriptor_exhaustion() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut acceptor = Acceptor::new(listener, "test");
        let client = tokio::spawn(async move { TcpStream::connect(addr).await });
        let (_s, peer) = acceptor.accept().await;
        assert!(peer.ip().is_loopback());
        client.await.expect("join").expect("connect");
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
    }
}
