//! A thin SMTP client for delivery. Unlike submission libraries it keeps going when some
//! recipients are refused, and reports one reply per recipient.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_classify::reply::Reply;

mod tls;
mod wire;
pub use tls::opportunistic_tls;
use wire::complete_reply;
pub use wire::dot_stuff;

/// Client failures that are not SMTP replies.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or reading/writing failed.
    #[error("{0}")]
    Io(String),
    /// The server did not answer in time.
    #[error("timeout waiting for the reply to {0}")]
    Timeout(&'static str),
    /// The server sent something that is not an SMTP reply.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A byte stream to a receiving server.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection being opened.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send + 'a>>;

/// Opens connections to receiving servers: TCP in the server, in-memory pipes to modelled
/// receivers in the simulator. Everything above it (sessions, lanes, pacing) is the same code.
pub trait Connector: Send + Sync {
    /// A connection to `host:port` (`host` an IP address).
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> Connecting<'a>;
}

/// Connections over TCP.
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> Connecting<'a> {
        Box::pin(async move {
            let tcp = TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp) as Box<dyn Io>)
        })
    }
}

/// The session's connection, plain or after STARTTLS.
type Stream = weir_listen::stream::MaybeTls<Box<dyn Io>, tokio_rustls::client::TlsStream<Box<dyn Io>>>;

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// PIPELINING.
    pub pipelining: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// 8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// SIZE limit, if announced.
    pub size: Option<usize>,
}

/// Replies of one transaction. Every command has a reply: the server's, or, when the server
/// closed or went silent before giving one, a local `451 4.4.2` saying so.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Reply to MAIL FROM.
    pub mail: Reply,
    /// Reply to each RCPT TO, in order.
    pub rcpts: Vec<Reply>,
    /// The reply that applies to the accepted recipients: the refusal of DATA, or the reply
    /// after the message. None when no recipient was accepted (or MAIL was refused).
    pub data: Option<Reply>,
    /// The server ended the session (a `421`, a close, a reset or a timeout): the connection
    /// must not be used again.
    pub closed: bool,
}

/// Where a session stood when the server refused or was lost before any transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect.
    Connect,
    /// The 220 greeting.
    Greeting,
    /// EHLO/HELO.
    Ehlo,
    /// STARTTLS or the TLS handshake.
    StartTls,
}

impl Stage {
    /// As written in replies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
        }
    }
}

/// Replies to a pipelined batch, read in order. The first `421` (or loss of the connection)
/// becomes the reply to its command and to every command after it: the server has said it is
/// closing, so nothing later will be answered.
struct Replies<'a> {
    client: &'a mut Client,
    ended: Option<Reply>,
}

impl Replies<'_> {
    async fn next(&mut self, what: &'static str) -> Reply {
        if let Some(r) = &self.ended {
            return r.clone();
        }
        match self.client.read_reply(what).await {
            Ok(r) => {
                if r.code == 421 {
                    self.ended = Some(r.clone());
                }
                r
            }
            Err(e) => {
                let r = lost(&self.client.peer, &e);
                self.ended = Some(r.clone());
                r
            }
        }
    }
}

/// The local reply standing for a connection to `peer` lost before the server answered.
pub fn lost(peer: &str, e: &ClientError) -> Reply {
    Reply::new(451, Some((4, 4, 2)), format!("{peer}: {e}"))
}

/// How long a session waits for each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connection.
    pub connect: Duration,
    /// The 220 greeting (RFC 5321 suggests 5 minutes: some servers greet late on purpose).
    pub greeting: Duration,
    /// Each later reply.
    pub command: Duration,
}

impl Timeouts {
    /// The same timeout for every step (tests).
    pub fn all(t: Duration) -> Timeouts {
        Timeouts { connect: t, greeting: t, command: t }
    }
}

/// One connection to a receiving server.
pub struct Client {
    stream: Stream,
    /// `host:port`, for replies that stand for a lost connection.
    peer: String,
    buf: Vec<u8>,
    timeout: Duration,
    /// Capabilities from the last EHLO.
    pub caps: Caps,
    /// Whether STARTTLS succeeded.
    pub tls: bool,
}

fn io_err(e: io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}

impl Client {
    /// Connect and read the greeting.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<(Client, Reply), ClientError> {
        let mut c = Client::tcp(host, port, timeout).await?;
        let greeting = c.read_reply("greeting").await?;
        Ok((c, greeting))
    }

    /// A TCP connection, before the greeting.
    async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_via(&TcpConnector, host, port, timeout).await
    }

    /// A connection through `connector`, before the greeting.
    async fn connect_via(
        connector: &dyn Connector,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let io = tokio::time::timeout(timeout, connector.connect(host, port))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
            .map_err(io_err)?;
        Ok(Client {
            stream: Stream::Plain(io),
            peer: format!("{host}:{port}"),
            buf: Vec::with_capacity(4096),
            timeout,
            caps: Caps::default(),
            tls: false,
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(data).await.map_err(io_err)?;
        self.stream.flush().await.map_err(io_err)
    }

    /// Connect, read the greeting, EHLO, and STARTTLS when offered and `tls` is given: a session
    /// ready for transactions, or the stage it ended at and the reply that stands for it (the
    /// server's own, such as a `421` greeting, or a local `451` for a lost connection).
    pub async fn open(
        connector: &dyn Connector,
        host: &str,
        port: u16,
        helo: &str,
        timeouts: Timeouts,
        tls: Option<(Arc<ClientConfig>, &str)>,
    ) -> Result<Client, (Stage, Reply)> {
        let peer = format!("{host}:{port}");
        let mut c = Client::connect_via(connector, host, port, timeouts.connect)
            .await
            .map_err(|e| (Stage::Connect, Reply::new(451, Some((4, 4, 1)), format!("{peer}: {e}"))))?;
        c.timeout_for_commands(timeouts.greeting);
        let command_timeout = timeouts.command;
        let greeting = c.read_reply("greeting").await.map_err(|e| (Stage::Greeting, lost(&peer, &e)))?;
        if !greeting.is_positive() {
            c.quit().await;
            return Err((Stage::Greeting, greeting));
        }
        c.timeout_for_commands(command_timeout);
        match c.ehlo(helo).await {
            Ok(r) if r.is_positive() => {}
            Ok(r) => {
                c.quit().await;
                return Err((Stage::Ehlo, r));
            }
            Err(e) => return Err((Stage::Ehlo, lost(&peer, &e))),
        }
        match tls {
            Some((config, server)) if c.caps.starttls => {
                c.starttls(config, server, helo).await.map_err(|r| (Stage::StartTls, r))
            }
            _ => Ok(c),
        }
    }

    /// Read one complete reply.
    pub async fn read_reply(&mut self, what: &'static str) -> Result<Reply, ClientError> {
        loop {
            if let Some(end) = complete_reply(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..end).collect();
                let text = String::from_utf8_lossy(&raw);
                return Reply::parse(&text)
                    .ok_or_else(|| ClientError::Protocol(format!("bad reply to {what}: {text}")));
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ClientError::Protocol(format!("reply to {what} longer than 64 KiB")));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout(what))?
                .map_err(io_err)?;
            if n == 0 {
                return Err(ClientError::Io(format!("connection closed while waiting for the reply to {what}")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Use `t` as the timeout for each reply from now on (the greeting used the connect timeout).
    pub fn timeout_for_commands(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// EHLO (HELO if EHLO is refused as unknown); records the capabilities. A `421` (or any
    /// refusal other than "command not recognised") is returned as is.
    pub async fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        self.write(format!("EHLO {name}\r\n").as_bytes()).await?;
        let r = self.read_reply("EHLO").await?;
        if !r.is_positive() {
            if !(500..=504).contains(&r.code) {
                return Ok(r);
            }
            self.write(format!("HELO {name}\r\n").as_bytes()).await?;
            self.caps = Caps::default();
            return self.read_reply("HELO").await;
        }
        let mut caps = Caps::default();
        for word in r.text.split(' ').map(|w| w.to_ascii_uppercase()) {
            match word.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                _ => {}
            }
        }
        // SIZE's argument follows the keyword.
        let words: Vec<&str> = r.text.split(' ').collect();
        if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("SIZE")) {
            caps.size = words.get(i + 1).and_then(|n| n.parse().ok()).filter(|n| *n > 0);
        }
        self.caps = caps;
        Ok(r)
    }

    /// STARTTLS and a new EHLO. A refused STARTTLS (other than `421`) leaves the plain
    /// connection usable (`Ok`); a `421`, a failed handshake or a refused EHLO afterwards is
    /// `Err` with the reply that stands for it.
    pub async fn starttls(mut self, tls: Arc<ClientConfig>, server: &str, helo: &str) -> Result<Client, Reply> {
        let peer = self.peer.clone();
        self.write(b"STARTTLS\r\n").await.map_err(|e| lost(&peer, &e))?;
        let r = self.read_reply("STARTTLS").await.map_err(|e| lost(&peer, &e))?;
        if r.code == 421 {
            return Err(r);
        }
        if r.code != 220 {
            return Ok(self);
        }
        let Stream::Plain(tcp) = self.stream else {
            return Err(Reply::new(451, Some((4, 7, 5)), "TLS already active"));
        };
        let name = ServerName::try_from(server.to_string())
            .unwrap_or_else(|_| ServerName::try_from("localhost".to_string()).expect("valid name"));
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Reply::new(451, Some((4, 7, 5)), format!("{peer}: TLS handshake failed: {e}"))),
            Err(_) => return Err(Reply::new(451, Some((4, 7, 5)), format!("{peer}: timeout in the TLS handshake"))),
        };
        let mut c = Client {
            stream: Stream::Tls(Box::new(stream)),
            peer: self.peer.clone(),
            buf: Vec::new(),
            timeout: self.timeout,
            caps: Caps::default(),
            tls: true,
        };
        let r = c.ehlo(helo).await.map_err(|e| lost(&peer, &e))?;
        if !r.is_positive() {
            return Err(r);
        }
        Ok(c)
    }

    /// One transaction: MAIL, every RCPT, DATA and the message (pipelined when offered). Every
    /// command gets a reply (see [`Transaction`]); the replies that arrived are kept even when
    /// the connection is lost or closed with a `421` later in the batch.
    pub async fn send(&mut self, from: &str, rcpts: &[String], message: &[u8]) -> Transaction {
        self.transaction(false, from, rcpts, message).await
    }

    /// RSET, then a transaction as [`Client::send`] does, the RSET in the same pipelined batch
    /// when the server offers PIPELINING (one round trip fewer per message on a reused
    /// connection). A refused RSET ends the session: every command gets its reply.
    pub async fn reset_and_send(&mut self, from: &str, rcpts: &[String], message: &[u8]) -> Transaction {
        if !self.caps.pipelining {
            let peer = self.peer.clone();
            let r = match self.rset().await {
                Ok(r) => r,
                Err(e) => lost(&peer, &e),
            };
            if !r.is_positive() {
                return Transaction { rcpts: vec![r.clone(); rcpts.len()], mail: r, data: None, closed: true };
            }
            return self.transaction(false, from, rcpts, message).await;
        }
        self.transaction(true, from, rcpts, message).await
    }

    async fn transaction(&mut self, reset: bool, from: &str, rcpts: &[String], message: &[u8]) -> Transaction {
        let mail_cmd = if self.caps.eight_bit {
            format!("MAIL FROM:<{from}> BODY=8BITMIME\r\n")
        } else {
            format!("MAIL FROM:<{from}>\r\n")
        };
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let pipelining = self.caps.pipelining;
        let mut replies = Replies { client: self, ended: None };
        let (mail, rcpt_replies, data_reply) = if pipelining {
            let mut batch = if reset { b"RSET\r\n".to_vec() } else { Vec::new() };
            batch.extend_from_slice(mail_cmd.as_bytes());
            for c in &rcpt_cmds {
                batch.extend_from_slice(c.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            // A failed write still leaves what the server said before it closed to be read.
            let _ = replies.client.write(&batch).await;
            if reset {
                let r = replies.next("RSET").await;
                if !r.is_positive() {
                    // The server refused to reset: its replies to the rest cannot be trusted
                    // to belong to a clean transaction. The session ends here.
                    return Transaction { rcpts: vec![r.clone(); rcpts.len()], mail: r, data: None, closed: true };
                }
            }
            let mail = replies.next("MAIL FROM").await;
            let mut rr = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rr.push(replies.next("RCPT TO").await);
            }
            let data = replies.next("DATA").await;
            (mail, rr, data)
        } else {
            let _ = replies.client.write(mail_cmd.as_bytes()).await;
            let mail = replies.next("MAIL FROM").await;
            if !mail.is_positive() {
                let closed = replies.ended.is_some();
                return Transaction { rcpts: vec![mail.clone(); rcpts.len()], mail, data: None, closed };
            }
            let mut rr = Vec::with_capacity(rcpts.len());
            for c in &rcpt_cmds {
                if replies.ended.is_none() {
                    let _ = replies.client.write(c.as_bytes()).await;
                }
                rr.push(replies.next("RCPT TO").await);
            }
            if !rr.iter().any(Reply::is_positive) {
                let closed = replies.ended.is_some();
                return Transaction { mail, rcpts: rr, data: None, closed };
            }
            let _ = replies.client.write(b"DATA\r\n").await;
            let data = replies.next("DATA").await;
            (mail, rr, data)
        };
        let closed = replies.ended.is_some();
        if !mail.is_positive() {
            // Every recipient shares the MAIL FROM refusal.
            return Transaction { rcpts: vec![mail.clone(); rcpts.len()], mail, data: None, closed };
        }
        if data_reply.code != 354 {
            let data = rcpt_replies.iter().any(Reply::is_positive).then_some(data_reply);
            return Transaction { mail, rcpts: rcpt_replies, data, closed };
        }
        let (done, closed) = match replies.client.write(&dot_stuff(message)).await {
            Ok(()) => {
                let r = replies.next("end of data").await;
                (r, replies.ended.is_some())
            }
            Err(e) => (lost(&replies.client.peer, &e), true),
        };
        Transaction { mail, rcpts: rcpt_replies, data: Some(done), closed }
    }

    /// RSET before the next transaction on this connection.
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        self.write(b"RSET\r\n").await?;
        self.read_reply("RSET").await
    }

    /// QUIT politely; errors do not matter any more.
    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply("QUIT").await;
        }
        let _ = self.stream.shutdown().await;
    }
}
