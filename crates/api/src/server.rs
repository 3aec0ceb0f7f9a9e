//! The HTTP listener: HTTP/1.1 (hyper) with a deadline on every stage a client controls, caps
//! on connections in all and per client IP, and a bounded graceful shutdown.
//!
//! - request head: `header_timeout` in all (slowloris), counted from the first wait for it, so it
//!   also ends idle keep-alive connections;
//! - any read or write that makes no progress for `stall_timeout` ends the connection (a client
//!   that stops sending a body, or stops reading responses);
//! - the body as a whole: `body_timeout` (see [`crate::body`]);
//! - at shutdown, connections finish the request in hand within `shutdown_grace`, then are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use weir_listen::{Acceptor, Caps, ConnLimiter, ConnPermit};

use crate::AppState;

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections in all and per client IP.
    pub caps: Caps,
    /// Time to receive a whole request head (and longest idle time between requests).
    pub header_timeout: Duration,
    /// Longest a read or a write may make no progress.
    pub stall_timeout: Duration,
    /// Time given to open connections at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            caps: Caps { total: 2048, per_ip: 256 },
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A stream whose reads and writes fail with `TimedOut` after `limit` without progress.
struct Stalling<S> {
    inner: S,
    limit: Duration,
    read_wait: Option<Pin<Box<Sleep>>>,
    write_wait: Option<Pin<Box<Sleep>>>,
}

impl<S> Stalling<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Stalling { inner, limit, read_wait: None, write_wait: None }
    }
}

/// After a `Pending`, start (or keep) the stall clock; fail once it has run out.
fn stalled(wait: &mut Option<Pin<Box<Sleep>>>, limit: Duration, cx: &mut Context<'_>) -> Poll<io::Error> {
    let sleep = wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    ready!(sleep.as_mut().poll(cx));
    Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection stalled"))
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalling<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_wait = None;
                Poll::Ready(r)
            }
            Poll::Pending => stalled(&mut this.read_wait, this.limit, cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalling<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_wait = None;
                Poll::Ready(r)
            }
            Poll::Pending => stalled(&mut this.write_wait, this.limit, cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_wait = None;
                Poll::Ready(r)
            }
            Poll::Pending => stalled(&mut this.write_wait, this.limit, cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve the API on `listener` until `shutdown` turns true, then give open connections
/// `shutdown_grace` to finish and return.
pub async fn serve(listener: TcpListener, state: AppState, limits: HttpLimits, mut shutdown: watch::Receiver<bool>) {
    let conns = ConnLimiter::new(limits.caps);
    let limits = Arc::new(limits);
    let mut acceptor = Acceptor::new(listener, "http");
    loop {
        let (stream, peer) = tokio::select! {
            c = acceptor.accept() => c,
            _ = shutdown.changed() => break,
        };
        let permit = match conns.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(%peer, ?why, "HTTP connection refused: over the connection cap");
                refuse(&stream);
                continue;
            }
        };
        let (state, limits, shutdown) = (state.clone(), limits.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(stream, peer.ip(), state, &limits, Arc::new(permit), shutdown).await;
        });
    }
    // Listeners are closed; wait (bounded) for the connections to finish what they are doing.
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace + Duration::from_secs(1);
    while conns.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if conns.active() > 0 {
        tracing::warn!(open = conns.active(), "HTTP connections still open after the shutdown grace; dropping them");
    }
}

/// Tell a client over the cap why, if its socket takes the bytes at once; never wait for it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
}

async fn connection(
    stream: TcpStream,
    peer: std::net::IpAddr,
    state: AppState,
    limits: &HttpLimits,
    permit: Arc<ConnPermit>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Stalling::new(stream, limits.stall_timeout));
    let in_request = permit.clone();
    let svc = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(crate::PeerIp(peer));
        let st = state.clone();
        let permit = in_request.clone();
        async move {
            // Busy from a request's head to its response: only then is the connection doing work
            // (an unread body that fails authentication is refused before it is read).
            permit.set_idle(false);
            let resp = crate::dispatch(st, req.map(axum::body::Body::new)).await;
            permit.set_idle(true);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
        }
        _ = permit.evicted() => {
            tracing::debug!("idle HTTP connection closed to admit another");
        }
    }
}
