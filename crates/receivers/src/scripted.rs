//! A receiver that answers each command from a script, for tests of what a client does when a
//! server refuses, closes or stalls at a given stage: the greeting (`CONNECT`), `EHLO`, `MAIL`,
//! a pipelined `RCPT`, `DATA`, the end of the message (`.`), `STARTTLS`. The modelled providers
//! of [`crate::model`] say what a provider would; a script says exactly what a test needs.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the receiver does in answer to one command.
#[derive(Clone)]
pub enum Step {
    /// Write these reply lines (lines split at LF, each sent with CRLF).
    Say(&'static str),
    /// Close the connection.
    Close,
    /// Say nothing for this long.
    Stall(Duration),
}
use Step::*;

pub type Script = dyn Fn(&str, usize) -> Vec<Step> + Send + Sync;

/// A receiver whose answer to each command (`CONNECT` for the greeting, `.` for the end of the
/// message) comes from `script(command, connection number)`.
pub async fn receiver(script: Arc<Script>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((sock, _)) = l.accept().await {
            n += 1;
            let script = script.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let mut cmd = "CONNECT".to_string();
                let mut in_data = false;
                loop {
                    for step in script(&cmd, n) {
                        match step {
                            Say(s) => {
                                for line in s.split('\n').map(|l| l.trim_end_matches('\r')) {
                                    let _ = w.write_all(format!("{line}\r\n").as_bytes()).await;
                                }
                            }
                            Close => return,
                            Stall(d) => tokio::time::sleep(d).await,
                        }
                    }
                    if cmd == "DATA" && script("DATA", n).iter().any(|s| matches!(s, Say(x) if x.starts_with("354"))) {
                        in_data = true;
                    }
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if !in_data {
                            break;
                        }
                        if line == ".\r\n" {
                            in_data = false;
                            line = ".".into();
                            break;
                        }
                    }
                    cmd = line.trim_end().to_string();
                    if cmd.len() > 4 && !cmd.starts_with('.') {
                        cmd = cmd[..4].to_ascii_uppercase() + &cmd[4..];
                    }
                }
            });
        }
    });
    port
}

/// Ordinary answers, for the commands a script does not care about.
pub fn normal(cmd: &str) -> Vec<Step> {
    match cmd {
        "CONNECT" => vec![Say("220 mx.test ESMTP")],
        c if c.starts_with("EHLO") => vec![Say("250-mx.test\n250-PIPELINING\n250 8BITMIME")],
        "DATA" => vec![Say("354 go ahead")],
        "." => vec![Say("250 2.0.0 queued")],
        "QUIT" => vec![Say("221 bye"), Close],
        _ => vec![Say("250 2.1.0 ok")],
    }
}
