//! Accepting connections safely, for every listener weir runs (HTTP API, SMTP submission).
//!
//! - [`ConnLimiter`]: a cap on connections in all and per client IP; a connection over either cap
//!   is closed at once instead of holding a descriptor.
//! - [`Acceptor`]: an accept loop that survives running out of descriptors (backs off, and says
//!   so once in a while instead of on every attempt).
//! - [`raise_nofile_limit`]: the soft descriptor limit raised to the hard one at start.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

/// Caps on concurrent connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections in all.
    pub total: usize,
    /// Connections from one IP address.
    pub per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Shared count of open connections of one listener (or several that share a budget).
pub struct ConnLimiter {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// A connection slot; released when dropped.
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener has `total` connections open.
    Total,
    /// This IP has `per_ip` connections open.
    PerIp,
}

impl ConnLimiter {
    /// A limiter with these caps.
    pub fn new(caps: Caps) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter { caps, counts: Mutex::new(Counts::default()) })
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let mut c = self.counts.lock();
        if c.total >= self.caps.total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(ip).or_default();
        if *n >= self.caps.per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnPermit { limiter: self.clone(), ip })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.counts.lock().total
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

    #[test]
    fn caps_in_all_and_per_ip() {
        let l = ConnLimiter::new(Caps { total: 3, per_ip: 2 });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let p1 = l.try_acquire(a).expect("first");
        let _p2 = l.try_acquire(a).expect("second");
        assert_eq!(l.try_acquire(a).err(), Some(Refused::PerIp));
        let _p3 = l.try_acquire(b).expect("other ip");
        assert_eq!(l.try_acquire(b).err(), Some(Refused::Total));
        drop(p1);
        assert_eq!(l.active(), 2);
        assert!(l.try_acquire(a).is_ok());
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
