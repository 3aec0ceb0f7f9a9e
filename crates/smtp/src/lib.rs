//! The SMTP submission front door (the SES "SMTP interface").
//!
//! # Layout
//! - [`SmtpConfig`]: listener settings (region, limits, timeouts, trusted networks).
//! - [`tls`]: the server certificate, from files or self-signed on first start.
//! - [`guard`]: AUTH-failure lockout per client IP, shared by all sessions (connection caps are
//!   `weir_listen`'s).
//! - [`session`]: one ESMTP session over any stream, on `smtp-proto`'s receivers; it ends a
//!   transaction by handing the message to the same [`weir_submit::Service`] as the HTTP API.
//! - [`serve`]: accept loops for the STARTTLS and implicit-TLS listeners.

pub mod guard;
pub mod session;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use weir_submit::Service;

use weir_listen::{Acceptor, ConnLimiter};

use crate::guard::Guard;
use crate::session::{Conn, Session};

/// Settings of the SMTP listeners.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// SES region of these listeners: the quota and identities they use, and the region the
    /// SMTP password is derived for.
    pub region: String,
    /// Largest message accepted (SES: 40 MB).
    pub max_message_bytes: usize,
    /// RCPT commands accepted per transaction before `452` (more than 50 then fail at DATA, as SES).
    pub max_rcpt_commands: usize,
    /// Idle time allowed between commands.
    pub idle_timeout: Duration,
    /// Idle time allowed inside DATA.
    pub data_timeout: Duration,
    /// Offer AUTH without TLS (loopback testing only).
    pub allow_plaintext_auth: bool,
    /// Put RFC 3463 enhanced codes in replies and advertise ENHANCEDSTATUSCODES. Off by default,
    /// because SES's replies (`454 Throttling failure: …`) carry none and clients match them.
    pub enhanced_status_codes: bool,
    /// Concurrent sessions, in all.
    pub max_connections: usize,
    /// Concurrent sessions from one IP address.
    pub max_connections_per_ip: usize,
    /// Delay before answering a failed AUTH.
    pub auth_failure_delay: Duration,
    /// Failed AUTH attempts from one IP within `auth_lockout` that lock it out for `auth_lockout`.
    pub auth_max_failures: u32,
    /// Length of the AUTH failure window and of the lockout.
    pub auth_lockout: Duration,
    /// Bad commands tolerated in one session before it is closed.
    pub max_errors: u32,
    /// Networks that may submit without AUTH, as `trusted_account` (like Postfix's mynetworks).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Account that trusted networks submit as.
    pub trusted_account: Option<String>,
    /// A feedback listener instead of submission: no AUTH; RCPT only to weir's return paths;
    /// what arrives is read as a bounce or complaint report, never relayed.
    pub feedback: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            region: "us-east-1".into(),
            max_message_bytes: 40 * 1024 * 1024,
            max_rcpt_commands: 1000,
            idle_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(60),
            allow_plaintext_auth: false,
            enhanced_status_codes: false,
            max_connections: 1000,
            max_connections_per_ip: 50,
            auth_failure_delay: Duration::from_secs(1),
            auth_max_failures: 10,
            auth_lockout: Duration::from_secs(300),
            max_errors: 20,
            trusted_networks: vec![],
            trusted_account: None,
            feedback: false,
        }
    }
}

impl SmtpConfig {
    /// Whether `ip` is in a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_account.is_some() && self.trusted_networks.iter().any(|n| n.contains(&ip))
    }
}

/// Everything a session needs, shared by all sessions of a listener.
#[derive(Clone)]
pub struct SmtpContext {
    /// The submission service.
    pub svc: Arc<Service>,
    /// Listener settings.
    pub cfg: Arc<SmtpConfig>,
    /// TLS, if configured.
    pub tls: Option<TlsAcceptor>,
    /// AUTH-failure accounting.
    pub guard: Arc<Guard>,
    /// Open sessions, in all and per client IP (capped by `max_connections[_per_ip]`).
    pub conns: Arc<ConnLimiter>,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Session and AUTH-failure counters.
    pub metrics: Arc<weir_metrics::Metrics>,
}

/// Accept connections until shutdown. With `implicit_tls`, the TLS handshake comes first (the
/// SES "TLS wrapper" ports 465/2465); otherwise clients upgrade with STARTTLS.
pub async fn serve(listener: TcpListener, ctx: SmtpContext, implicit_tls: bool) {
    let mut shutdown = ctx.shutdown.clone();
    let mut acceptor = Acceptor::new(listener, if implicit_tls { "smtps" } else { "smtp" });
    loop {
        let (stream, peer) = tokio::select! {
            c = acceptor.accept() => c,
            _ = shutdown.changed() => break,
        };
        let ctx = ctx.clone();
        ctx.metrics.smtp_session(implicit_tls);
        tokio::spawn(async move { handle(stream, peer, ctx, implicit_tls).await });
    }
}

async fn handle(mut stream: tokio::net::TcpStream, peer: SocketAddr, ctx: SmtpContext, implicit_tls: bool) {
    let _ = stream.set_nodelay(true);
    let permit = match ctx.conns.try_acquire(peer.ip()) {
        Ok(p) => p,
        Err(_) if implicit_tls => return,
        Err(_) => {
            // Bounded: a client that does not read gets no more than this one write's chance.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                stream.write_all(b"421 Too many concurrent SMTP connections\r\n"),
            )
            .await;
            return;
        }
    };
    let conn = if implicit_tls {
        let Some(acceptor) = ctx.tls.clone() else { return };
        let handshake = tokio::time::timeout(ctx.cfg.idle_timeout, acceptor.accept(stream));
        let done = tokio::select! {
            r = handshake => r,
            _ = permit.evicted() => return,
        };
        match done {
            Ok(Ok(tls)) => Conn::Tls(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        }
    } else {
        Conn::Plain(stream)
    };
    Session::new(ctx, peer, conn.is_tls()).run(conn, Some(&permit)).await;
}
