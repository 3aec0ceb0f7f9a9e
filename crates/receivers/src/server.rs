//! A [`Model`] served as SMTP. Replies to a pipelined batch go out together after one modelled
//! round-trip delay; a refusal that closes the connection is written and the connection dropped
//! with the rest of the batch unanswered, as the providers do.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::model::{Counters, Model, Spec};

/// A modelled receiver shared by all its connections. Its clock is tokio's: real time on
/// loopback, virtual time when the runtime's clock is paused.
#[derive(Clone)]
pub struct Receiver {
    model: Arc<Mutex<Model>>,
    origin: Instant,
    delay: Duration,
}

impl Receiver {
    /// A receiver with these hidden parameters, first contacted now.
    pub fn new(spec: Spec) -> Receiver {
        let delay = Duration::from_millis(spec.reply_delay_ms);
        Receiver { model: Arc::new(Mutex::new(Model::new(spec, 0))), origin: Instant::now(), delay }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// What happened so far.
    pub fn counters(&self) -> Counters {
        self.model.lock().counters.clone()
    }

    /// Times `address` was offered in a RCPT.
    pub fn offers(&self, address: &str) -> u32 {
        self.model.lock().offers(address)
    }

    /// The hidden parameters.
    pub fn spec(&self) -> Spec {
        self.model.lock().spec().clone()
    }

    /// Serve on a TCP listener at `addr` (loopback) until the runtime ends; returns the address.
    pub async fn listen(self, addr: &str) -> io::Result<SocketAddr> {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve(sock, self.clone()));
            }
        });
        Ok(local)
    }
}

/// One SMTP session with `receiver` over `io`.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S, receiver: Receiver) {
    let (rd, mut wr) = tokio::io::split(io);
    let mut rd = BufReader::new(rd);
    let greeting = receiver.model.lock().connect(receiver.now());
    tokio::time::sleep(receiver.delay).await;
    if wr.write_all(greeting.text.as_bytes()).await.is_err() || greeting.close {
        let _ = wr.shutdown().await;
        return;
    }
    let _ = session(&mut rd, &mut wr, &receiver).await;
    receiver.model.lock().disconnect();
    let _ = wr.shutdown().await;
}

async fn session<R, W>(rd: &mut BufReader<R>, wr: &mut W, receiver: &Receiver) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = String::new();
    let mut line = String::new();
    let (mut nth, mut accepted) = (0u32, 0u32);
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let now = receiver.now();
        let mut close = false;
        if cmd.starts_with("EHLO") {
            out.push_str("250-mx.sim\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n");
        } else if cmd.starts_with("HELO") {
            out.push_str("250 mx.sim\r\n");
        } else if cmd.starts_with("MAIL") {
            (nth, accepted) = (0, 0);
            let from = line.trim_end().split_once(':').map_or("", |(_, a)| a.trim());
            let from = from.split_whitespace().next().unwrap_or("").trim_matches(['<', '>']);
            let a = receiver.model.lock().mail(now, from);
            out.push_str(&a.text);
            close = a.close;
        } else if cmd.starts_with("RCPT") {
            nth += 1;
            let addr = line.trim_end().split_once(':').map_or("", |(_, a)| a.trim().trim_matches(['<', '>']));
            let a = receiver.model.lock().rcpt(now, &addr.to_ascii_lowercase(), nth);
            if a.text.starts_with('2') {
                accepted += 1;
            }
            out.push_str(&a.text);
            close = a.close;
        } else if cmd == "DATA" {
            if accepted == 0 {
                out.push_str("554 5.5.1 No valid recipients\r\n");
            } else {
                out.push_str("354 Go ahead\r\n");
                tokio::time::sleep(receiver.delay).await;
                wr.write_all(out.as_bytes()).await?;
                wr.flush().await?;
                out.clear();
                loop {
                    line.clear();
                    if rd.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                let a = receiver.model.lock().data_end(receiver.now(), accepted);
                out.push_str(&a.text);
                close = a.close;
                (nth, accepted) = (0, 0);
            }
        } else if cmd == "RSET" {
            (nth, accepted) = (0, 0);
            out.push_str("250 2.0.0 OK\r\n");
        } else if cmd == "NOOP" {
            out.push_str("250 2.0.0 OK\r\n");
        } else if cmd == "QUIT" {
            out.push_str("221 2.0.0 Bye\r\n");
            close = true;
        } else {
            out.push_str("502 5.5.2 Command not recognized\r\n");
        }
        // Replies to a pipelined batch go out together, one round trip later.
        if close || rd.buffer().is_empty() {
            tokio::time::sleep(receiver.delay).await;
            wr.write_all(out.as_bytes()).await?;
            wr.flush().await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}
