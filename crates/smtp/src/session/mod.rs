//! One ESMTP submission session.
//!
//! Bytes are fed to `smtp-proto`'s receivers (commands, DATA, SASL lines); replies for every
//! complete command in a read are written together, which is what PIPELINING needs. A
//! transaction ends at the DATA dot: the message goes through the same
//! [`weir_submit::Service::send`] as the API (identity and sandbox rules, quota charged once,
//! durable spool), and `250 Ok <MessageId>` is sent only after the spool commit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::Request;
use smtp_proto::request::receiver::{
    DataReceiver, DummyDataReceiver, DummyLineReceiver, LineReceiver, RequestReceiver,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_listen::ConnPermit;
use weir_mail::address::Mailbox;
use weir_store::model::Account;

use crate::SmtpContext;

mod auth;
mod data;
mod envelope;
mod hello;
mod ingest;

use auth::decode;
use hello::valid_helo;

/// A client connection, plain or TLS.
pub type Conn = weir_listen::stream::MaybeTls<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// Longest command line accepted, CRLF included (RFC 5321 asks for at least 512; Postfix allows 2048).
pub const MAX_COMMAND_LINE: usize = 2048;

/// What the receive loop should do after a batch of input.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Continue,
    StartTls,
    Quit,
}

/// Why a DATA upload is being discarded.
enum Skip {
    TooLarge,
    Bdat,
}

enum State {
    Request(RequestReceiver),
    Data(DataReceiver),
    SkipData(DummyDataReceiver, Skip),
    SkipLine(DummyLineReceiver),
    AuthPlain(LineReceiver<()>),
    AuthLoginUser(LineReceiver<()>),
    AuthLoginPass(LineReceiver<()>, String),
}

/// One session's state.
pub struct Session {
    ctx: SmtpContext,
    peer: SocketAddr,
    tls: bool,
    state: State,
    out: Vec<u8>,
    helo: Option<String>,
    account: Option<Arc<Account>>,
    mail_from: Option<Mailbox>,
    rcpts: Vec<String>,
    data: Vec<u8>,
    errors: u32,
}

impl Session {
    /// A new session for a connection from `peer`.
    pub fn new(ctx: SmtpContext, peer: SocketAddr, tls: bool) -> Self {
        Session {
            ctx,
            peer,
            tls,
            state: State::Request(RequestReceiver::default()),
            out: Vec::with_capacity(512),
            helo: None,
            account: None,
            mail_from: None,
            rcpts: Vec::new(),
            data: Vec::new(),
            errors: 0,
        }
    }

    fn reply(&mut self, code: u16, esc: &str, text: &str) {
        use std::io::Write;
        if self.ctx.cfg.enhanced_status_codes && !esc.is_empty() {
            let _ = write!(self.out, "{code} {esc} {text}\r\n");
        } else {
            let _ = write!(self.out, "{code} {text}\r\n");
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.data = Vec::new();
    }

    fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::SkipData(..))
    }

    /// Whether the session has started any work: a full listener may close it to admit another.
    fn idle(&self) -> bool {
        self.account.is_none() && self.mail_from.is_none() && !self.in_data()
    }

    /// Serve the connection until QUIT, EOF, timeout, shutdown or eviction from its slot.
    pub async fn run(mut self, mut conn: Conn, permit: Option<&ConnPermit>) {
        let evicted = async {
            match permit {
                Some(p) => p.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(evicted);
        let greeting = format!("220 {} ESMTP weir\r\n", self.ctx.cfg.hostname);
        if conn.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let wait = if self.in_data() { self.ctx.cfg.data_timeout } else { self.ctx.cfg.idle_timeout };
            let read = tokio::select! {
                r = tokio::time::timeout(wait, conn.read(&mut buf)) => r,
                _ = shutdown.changed(), if !self.in_data() => {
                    self.reply(421, "4.3.2", "Service shutting down, closing transmission channel");
                    let _ = conn.write_all(&self.out).await;
                    break;
                }
                _ = &mut evicted => {
                    self.reply(421, "4.7.0", "Too many connections; closing an idle one");
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.write_all(&self.out)).await;
                    break;
                }
            };
            let n = match read {
                Err(_) => {
                    self.reply(451, "4.4.2", "Timeout waiting for data from client");
                    let _ = conn.write_all(&self.out).await;
                    break;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    // A client gone mid-DATA leaves nothing behind: the message is only in memory.
                    break;
                }
                Ok(Ok(n)) => n,
            };
            let action = self.ingest(&buf[..n]).await;
            if let Some(p) = permit {
                p.set_idle(self.idle());
            }
            if !self.out.is_empty() {
                if conn.write_all(&self.out).await.is_err() || conn.flush().await.is_err() {
                    break;
                }
                self.out.clear();
            }
            match action {
                Action::Continue => {}
                Action::Quit => break,
                Action::StartTls => {
                    // The connection is consumed by the handshake; on failure there is nothing to close.
                    let (Conn::Plain(tcp), Some(acceptor)) = (conn, self.ctx.tls.clone()) else { return };
                    match tokio::time::timeout(self.ctx.cfg.idle_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => conn = Conn::Tls(Box::new(tls)),
                        _ => return,
                    }
                    // RFC 3207: forget everything learned before the handshake.
                    self.tls = true;
                    self.helo = None;
                    self.account = None;
                    self.reset_transaction();
                    self.state = State::Request(RequestReceiver::default());
                }
            }
        }
        let _ = conn.shutdown().await;
    }

    /// Feed bytes without a socket (tests and fuzzing): the replies they produced, and whether
    /// the session would now end. STARTTLS cannot complete here and ends the session.
    pub async fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, bool) {
        let action = self.ingest(bytes).await;
        (std::mem::take(&mut self.out), action != Action::Continue)
    }

    async fn command(&mut self, req: Request<String>) -> Action {
        match req {
            Request::Ehlo { host } | Request::Helo { host } if !valid_helo(&host) => {
                self.reply(501, "5.5.2", "Invalid EHLO/HELO name: a domain or address literal is expected");
            }
            Request::Ehlo { host } => {
                self.reset_transaction();
                self.helo = Some(host);
                self.ehlo_reply();
            }
            Request::Helo { host } => {
                self.reset_transaction();
                self.helo = Some(host);
                let h = self.ctx.cfg.hostname.clone();
                self.reply(250, "", &h);
            }
            Request::StartTls => {
                if self.tls {
                    self.reply(503, "5.5.1", "TLS already active");
                } else if self.ctx.tls.is_none() {
                    self.reply(454, "4.7.0", "TLS not available");
                } else {
                    self.reply(220, "2.0.0", "Ready to start TLS");
                    return Action::StartTls;
                }
            }
            Request::Auth { .. } if self.ctx.cfg.feedback => self.reply(503, "5.5.1", "AUTH not available here"),
            Request::Auth { mechanism, initial_response } => self.auth_start(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from.address, from.size).await,
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => self.data_start(),
            Request::Bdat { chunk_size, .. } => {
                self.state = State::SkipData(DummyDataReceiver::new_bdat(chunk_size), Skip::Bdat);
            }
            Request::Rset => {
                self.reset_transaction();
                self.reply(250, "2.0.0", "Ok");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "Ok"),
            Request::Quit => {
                self.reply(221, "2.0.0", "Bye");
                return Action::Quit;
            }
            Request::Vrfy { .. } => self.reply(252, "2.5.0", "Cannot VRFY user"),
            Request::Help { .. } => self.reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321"),
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Lhlo { .. } => self.reply(502, "5.5.1", "Command not implemented"),
        }
        Action::Continue
    }
}
