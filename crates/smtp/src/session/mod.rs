//! One ESMTP submission session.
//!
//! Bytes are fed to `smtp-proto`'s receivers (commands, DATA, SASL lines); replies for every
//! complete command in a read are written together, which is what PIPELINING needs. A
//! transaction ends at the DATA dot: the message goes through the same
//! [`weir_submit::Service::send`] as the API (identity and sandbox rules, quota charged once,
//! durable spool), and `250 Ok <MessageId>` is sent only after the spool commit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use smtp_proto::request::receiver::{
    DataReceiver, DummyDataReceiver, DummyLineReceiver, LineReceiver, RequestReceiver,
};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use weir_listen::ConnPermit;
use weir_mail::address::{Mailbox, parse_mailbox};
use weir_store::model::Account;
use weir_submit::{Content, Outgoing, SubmitError};

use crate::SmtpContext;

/// A client connection, plain or TLS.
pub enum Conn {
    /// Plain TCP (before STARTTLS).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

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

    /// Feed received bytes; replies accumulate in `self.out`.
    async fn ingest(&mut self, bytes: &[u8]) -> Action {
        let mut iter = bytes.iter();
        loop {
            match &mut self.state {
                State::Request(r) => {
                    // Commands longer than MAX_COMMAND_LINE are refused whole, whether they came in
                    // one read or several.
                    let rest = iter.as_slice();
                    let end = rest.iter().position(|b| *b == b'\n');
                    let pending = r.buf().len();
                    if pending + end.map_or(rest.len(), |p| p + 1) > MAX_COMMAND_LINE {
                        r.buf().clear();
                        match end {
                            Some(p) => {
                                iter = rest[p + 1..].iter();
                                self.reply(500, "5.5.2", "Line too long");
                                self.errors += 1;
                                if self.errors > self.ctx.cfg.max_errors {
                                    self.reply(421, "4.7.0", "Too many errors, closing connection");
                                    return Action::Quit;
                                }
                                continue;
                            }
                            None => {
                                self.state = State::SkipLine(DummyLineReceiver::default());
                                return Action::Continue;
                            }
                        }
                    }
                    match r.ingest(&mut iter) {
                        Ok(req) => {
                            let req = req.into_owned();
                            match self.command(req).await {
                                Action::Continue => {}
                                // Bytes after STARTTLS are discarded (no command injection into TLS).
                                other => return other,
                            }
                        }
                        Err(ProtoError::NeedsMoreData { .. }) => return Action::Continue,
                        Err(e) => {
                            if self.protocol_error(e) {
                                return Action::Quit;
                            }
                        }
                    }
                }
                State::Data(d) => {
                    let done = d.ingest(&mut iter, &mut self.data);
                    if done {
                        self.state = State::Request(RequestReceiver::default());
                        self.finish_data().await;
                    } else {
                        if self.data.len() > self.ctx.cfg.max_message_bytes {
                            let skip = DummyDataReceiver::new_data(d);
                            self.data = Vec::new();
                            self.state = State::SkipData(skip, Skip::TooLarge);
                        }
                        if iter.len() == 0 {
                            return Action::Continue;
                        }
                    }
                }
                State::SkipData(d, why) => {
                    if d.ingest(&mut iter) {
                        match why {
                            Skip::TooLarge => self.reply(552, "5.3.4", "Message is too long."),
                            Skip::Bdat => self.reply(502, "5.5.1", "BDAT is not supported; use DATA."),
                        }
                        self.reset_transaction();
                        self.state = State::Request(RequestReceiver::default());
                    } else {
                        return Action::Continue;
                    }
                }
                State::SkipLine(l) => {
                    if l.ingest(&mut iter) {
                        self.reply(500, "5.5.2", "Line too long");
                        self.state = State::Request(RequestReceiver::default());
                    } else {
                        return Action::Continue;
                    }
                }
                State::AuthPlain(l) | State::AuthLoginUser(l) | State::AuthLoginPass(l, _) => {
                    if !l.ingest(&mut iter) {
                        return Action::Continue;
                    }
                    let line = String::from_utf8_lossy(&l.buf).trim().to_string();
                    let state = std::mem::replace(&mut self.state, State::Request(RequestReceiver::default()));
                    if line == "*" {
                        self.reply(501, "5.0.0", "Authentication cancelled");
                        continue;
                    }
                    match state {
                        State::AuthPlain(_) => self.auth_plain(&line).await,
                        State::AuthLoginUser(_) => match decode(&line) {
                            Some(user) => {
                                self.reply(334, "", "UGFzc3dvcmQ6");
                                self.state = State::AuthLoginPass(LineReceiver::new(()), user);
                            }
                            None => self.reply(501, "5.5.2", "Invalid base64 data"),
                        },
                        State::AuthLoginPass(_, user) => match decode(&line) {
                            Some(pass) => self.check_login(&user, &pass).await,
                            None => self.reply(501, "5.5.2", "Invalid base64 data"),
                        },
                        _ => {}
                    }
                }
            }
        }
    }

    /// Reply to a line the parser rejected; true when the session should end.
    fn protocol_error(&mut self, e: ProtoError) -> bool {
        match e {
            ProtoError::UnknownCommand => self.reply(500, "5.5.1", "Unrecognized command"),
            ProtoError::InvalidSenderAddress => self.reply(501, "5.1.7", "Invalid sender address syntax"),
            ProtoError::InvalidRecipientAddress => self.reply(501, "5.1.3", "Invalid recipient address syntax"),
            ProtoError::SyntaxError { syntax } => {
                self.reply(501, "5.5.4", &format!("Syntax error, expected: {syntax}"))
            }
            ProtoError::InvalidParameter { param } => self.reply(501, "5.5.4", &format!("Invalid parameter {param}")),
            ProtoError::UnsupportedParameter { param } => {
                self.reply(504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            ProtoError::ResponseTooLong => {
                // The rest of the over-long line is discarded before the reply.
                self.state = State::SkipLine(DummyLineReceiver::default());
                self.errors += 1;
                return self.errors > self.ctx.cfg.max_errors;
            }
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.reply(500, "5.5.1", "Unrecognized command")
            }
        }
        self.errors += 1;
        if self.errors > self.ctx.cfg.max_errors {
            self.reply(421, "4.7.0", "Too many errors, closing connection");
            return true;
        }
        false
    }

    fn ehlo_reply(&mut self) {
        let cfg = &self.ctx.cfg;
        let mut lines = vec![cfg.hostname.clone(), "8BITMIME".into(), "PIPELINING".into()];
        // No SMTPUTF8: as SES, addresses are 7-bit ASCII (domains in Punycode).
        lines.push(format!("SIZE {}", cfg.max_message_bytes));
        if cfg.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        if !self.tls && self.ctx.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if (self.tls || cfg.allow_plaintext_auth) && !cfg.feedback {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("Ok".into());
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out.extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
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

    async fn auth_start(&mut self, mechanism: u64, initial: String) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "Send EHLO first");
        }
        if self.account.is_some() {
            return self.reply(503, "5.5.1", "Already authenticated");
        }
        if self.mail_from.is_some() {
            return self.reply(503, "5.5.1", "AUTH not allowed during a mail transaction");
        }
        if !self.tls && !self.ctx.cfg.allow_plaintext_auth {
            return self.reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
        }
        if self.ctx.guard.locked_out(self.peer.ip(), Instant::now()) {
            return self.reply(454, "4.7.0", "Temporary authentication failure");
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.reply(334, "", "");
                self.state = State::AuthPlain(LineReceiver::new(()));
            }
            AUTH_PLAIN => self.auth_plain(&initial).await,
            AUTH_LOGIN if initial.is_empty() => {
                self.reply(334, "", "VXNlcm5hbWU6");
                self.state = State::AuthLoginUser(LineReceiver::new(()));
            }
            AUTH_LOGIN => match decode(&initial) {
                Some(user) => {
                    self.reply(334, "", "UGFzc3dvcmQ6");
                    self.state = State::AuthLoginPass(LineReceiver::new(()), user);
                }
                None => self.reply(501, "5.5.2", "Invalid base64 data"),
            },
            _ => self.reply(504, "5.5.4", "Unrecognized authentication type"),
        }
    }

    async fn auth_plain(&mut self, b64: &str) {
        let Some(decoded) = decode(b64) else {
            return self.reply(501, "5.5.2", "Invalid base64 data");
        };
        let mut parts = decoded.split('\0');
        let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
        match (user, pass, parts.next()) {
            (Some(u), Some(p), None) => {
                let (u, p) = (u.to_string(), p.to_string());
                self.check_login(&u, &p).await
            }
            _ => self.reply(501, "5.5.2", "Malformed AUTH PLAIN response"),
        }
    }

    async fn check_login(&mut self, user: &str, pass: &str) {
        match self.ctx.svc.smtp_login(user, pass, &self.ctx.cfg.region) {
            Some(account) => {
                self.ctx.guard.auth_succeeded(self.peer.ip());
                tracing::debug!(peer = %self.peer, account = %account.name, "SMTP AUTH ok");
                self.account = Some(account);
                self.reply(235, "2.7.0", "Authentication successful");
            }
            None => {
                let cfg = &self.ctx.cfg;
                self.ctx.guard.auth_failed(self.peer.ip(), Instant::now(), cfg.auth_max_failures, cfg.auth_lockout);
                self.ctx.metrics.smtp_auth_failure();
                tokio::time::sleep(cfg.auth_failure_delay).await;
                // The name is the client's: escaped and cut, it cannot forge or flood log lines.
                let shown: String = user.chars().take(64).collect();
                tracing::info!(peer = %self.peer, user = %shown.escape_debug(), "SMTP AUTH failed");
                self.reply(535, "5.7.8", "Authentication Credentials Invalid");
            }
        }
    }

    /// The account this session sends as: its AUTH, or the trusted network's account.
    fn sender_account(&self) -> Option<Arc<Account>> {
        if let Some(a) = &self.account {
            return Some(a.clone());
        }
        if self.ctx.cfg.is_trusted(self.peer.ip()) {
            let name = self.ctx.cfg.trusted_account.as_deref()?;
            return self.ctx.svc.account_by_name(name).ok();
        }
        None
    }

    async fn mail(&mut self, address: String, size: usize) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "Send EHLO first");
        }
        if self.mail_from.is_some() {
            return self.reply(503, "5.5.1", "Sender already specified");
        }
        if self.ctx.cfg.feedback {
            // Reports come from anyone, usually with the null sender `<>`: who sent it does not
            // matter, only which return path it is for (checked at RCPT).
            if size > self.ctx.cfg.max_message_bytes {
                return self.reply(552, "5.3.4", "Message is too long.");
            }
            if !self.ctx.svc.feedback_admit(self.peer.ip()) {
                return self.reply(450, "4.7.1", "Too many reports from this address; try again later");
            }
            let addr = if address.is_empty() { "MAILER-DAEMON".to_string() } else { address };
            self.mail_from = Some(Mailbox { name: None, addr });
            return self.reply(250, "2.1.0", "Ok");
        }
        let Some(account) = self.sender_account() else {
            return self.reply(530, "5.7.0", "Authentication required");
        };
        let source = match parse_mailbox(&address) {
            Ok(m) if !address.is_empty() => m,
            _ => return self.reply(553, "5.1.7", &format!("<{address}> Invalid email address")),
        };
        if size > self.ctx.cfg.max_message_bytes {
            return self.reply(552, "5.3.4", "Message is too long.");
        }
        if let Err(e) = self.ctx.svc.precheck(&account, &self.ctx.cfg.region, &source).await {
            return self.submit_error(e);
        }
        self.mail_from = Some(source);
        self.reply(250, "2.1.0", "Ok");
    }

    fn rcpt(&mut self, address: String) {
        if self.mail_from.is_none() {
            return self.reply(503, "5.5.1", "Need MAIL command");
        }
        if parse_mailbox(&address).is_err() {
            return self.reply(553, "5.1.3", &format!("<{address}> address unknown"));
        }
        if self.ctx.cfg.feedback && self.ctx.svc.feedback_target(&address).is_none() {
            return self.reply(
                550,
                "5.1.1",
                &format!("<{address}> no such return path here (this server relays nothing)"),
            );
        }
        if self.rcpts.len() >= self.ctx.cfg.max_rcpt_commands {
            return self.reply(452, "4.5.3", "Too many recipients");
        }
        self.rcpts.push(address);
        self.reply(250, "2.1.5", "Ok");
    }

    fn data_start(&mut self) {
        if self.mail_from.is_none() {
            return self.reply(503, "5.5.1", "Need MAIL command");
        }
        if self.rcpts.is_empty() {
            return self.reply(503, "5.5.1", "Need RCPT command");
        }
        if self.rcpts.len() > weir_submit::MAX_RECIPIENTS {
            self.reset_transaction();
            return self.reply(554, "5.5.3", "Transaction failed: Recipient count exceeds 50.");
        }
        self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
        self.data = Vec::with_capacity(16 * 1024);
        self.state = State::Data(DataReceiver::new());
    }

    fn submit_error(&mut self, e: SubmitError) {
        match e {
            SubmitError::MaxSendRateExceeded { .. } => {
                self.reply(454, "4.7.0", "Throttling failure: Maximum sending rate exceeded")
            }
            SubmitError::DailyQuotaExceeded { .. } => {
                self.reply(454, "4.7.0", "Throttling failure: Daily message quota exceeded")
            }
            SubmitError::MessageRejected(m) => self.reply(554, "5.7.1", &format!("Message rejected: {m}")),
            SubmitError::SendingPaused => {
                self.reply(554, "5.7.1", "Message rejected: Email sending is disabled for your account.")
            }
            SubmitError::InvalidParameter(m) => self.reply(554, "5.6.0", &format!("Transaction failed: {m}")),
            e @ (SubmitError::ConfigurationSetDoesNotExist(_) | SubmitError::ConfigurationSetSendingPaused(_)) => {
                self.reply(554, "5.7.1", &format!("Transaction failed: {e}"))
            }
            e @ (SubmitError::TemplateDoesNotExist(_)
            | SubmitError::InvalidTemplate(..)
            | SubmitError::MissingRenderingAttribute(_)
            | SubmitError::InvalidRenderingParameter(_)) => {
                self.reply(554, "5.6.0", &format!("Transaction failed: {e}"))
            }
            SubmitError::Unavailable { .. } | SubmitError::Busy(_) => {
                self.reply(454, "4.3.0", "Temporary service failure: try again later")
            }
            SubmitError::Storage(e) => {
                tracing::error!(error = %e, "spool write failed");
                self.reply(451, "4.3.0", "Temporary service failure")
            }
        }
    }

    async fn finish_data(&mut self) {
        let data = std::mem::take(&mut self.data);
        if self.ctx.cfg.feedback {
            let rcpts = std::mem::take(&mut self.rcpts);
            self.reset_transaction();
            let targets: Vec<_> = rcpts.iter().filter_map(|r| self.ctx.svc.feedback_target(r)).collect();
            return match self.ctx.svc.ingest_feedback(&targets, &data, self.peer.ip()).await {
                Ok(_) => self.reply(250, "2.0.0", "Ok: report received"),
                Err(e) => {
                    tracing::error!(error = %e, "feedback report not recorded");
                    self.reply(451, "4.3.0", "Temporary service failure")
                }
            };
        }
        let (Some(source), Some(account)) = (self.mail_from.take(), self.sender_account()) else {
            self.reset_transaction();
            return self.reply(503, "5.5.1", "Need MAIL command");
        };
        let rcpts = std::mem::take(&mut self.rcpts);
        self.reset_transaction();
        let svc = &self.ctx.svc;
        let mut out = Outgoing::new(&self.ctx.cfg.region, "smtp", usize::MAX, Content::Raw(data));
        out.source = Some(source.addr.clone());
        out.to = rcpts;
        match svc.send(&account, out).await {
            Ok(id) => self.reply(250, "2.0.0", &format!("Ok {id}")),
            Err(e) => self.submit_error(e),
        }
    }
}

/// A plausible EHLO/HELO argument: printable, no spaces or control bytes (NUL included).
/// A domain or an address literal: printable ASCII, as RFC 5321 has it without SMTPUTF8.
fn valid_helo(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_graphic())
}

fn decode(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    String::from_utf8(bytes).ok()
}
