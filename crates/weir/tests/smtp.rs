//! SMTP submission against the real server: lettre (an SMTP client we did not write) for the
//! happy paths, raw sockets for the protection paths (timeouts, limits, lockout, shutdown).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

fn mailer(addr: &str, keys: &Keys, mech: Mechanism, implicit: bool) -> AsyncSmtpTransport<Tokio1Executor> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let tls = TlsParameters::builder("localhost".into()).dangerous_accept_invalid_certs(true).build().unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port.parse().unwrap())
        .tls(if implicit { Tls::Wrapper(tls) } else { Tls::Required(tls) })
        .credentials(Credentials::new(keys.akid.clone(), keys.smtp_password.clone()))
        .authentication(vec![mech])
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

fn message(to: &str) -> Message {
    Message::builder()
        .from("Acme <a@acme.test>".parse::<Mailbox>().unwrap())
        .to(to.parse::<Mailbox>().unwrap())
        .subject("hello from lettre")
        .body(String::from("hello"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn lettre_sends_with_starttls_and_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);
    s.cli(&["account", "quota", "acme", "--region", "us-east-1", "--max-rate", "100"]);

    let r = mailer(&s.smtp, &k, Mechanism::Plain, false).send(message("b@acme.test")).await.unwrap();
    assert_eq!(r.code().to_string(), "250");
    let text: Vec<&str> = r.message().collect();
    assert!(text[0].starts_with("Ok 0100"), "{text:?}");
    let r = mailer(&s.smtps, &k, Mechanism::Login, true).send(message("c@acme.test")).await.unwrap();
    assert!(r.is_positive());

    let err = mailer(&s.smtp, &k, Mechanism::Plain, false).send(message("x@elsewhere.test")).await.unwrap_err();
    assert!(err.to_string().contains("Message rejected: Email address is not verified"), "{err}");

    let wrong = Keys { smtp_password: "B".repeat(44), ..k.clone() };
    let err = mailer(&s.smtp, &wrong, Mechanism::Plain, false).send(message("b@acme.test")).await.unwrap_err();
    assert!(err.to_string().contains("Authentication Credentials Invalid"), "{err}");

    let spool: serde_json::Value = serde_json::from_str(&s.cli(&["spool", "list", "--json"])).unwrap();
    assert_eq!(spool.as_array().unwrap().len(), 2);
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    /// The last line of the next (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return String::new();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

fn config(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("weir.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn trusted_network_submits_without_auth_within_quota() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\ntrusted_account = \"internal\"\n");
    let s = Server::start_with(dir.path(), &["--config", &cfg, "--no-delivery"]);
    s.account("internal");
    s.cli(&["identity", "add", "internal", "--region", "us-east-1", "acme.test", "--verified"]);
    let mut c = Client::connect(&s.smtp);
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO host.test").starts_with("250 "));
    assert_eq!(c.cmd("MAIL FROM:<a@acme.test>"), "250 Ok");
    assert_eq!(c.cmd("RCPT TO:<b@acme.test>"), "250 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    let r = c.cmd("From: a@acme.test\r\nSubject: t\r\n\r\nbody\r\n.");
    assert!(r.starts_with("250 Ok 0100"), "{r}");
    // Still the account's quota: the sandbox's 1/s.
    assert_eq!(c.cmd("MAIL FROM:<a@acme.test>"), "454 Throttling failure: Maximum sending rate exceeded");
}

#[test]
fn protections_timeouts_limits_lockout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[smtp]\nidle_timeout_seconds = 1\nmax_connections_per_ip = 2\nauth_max_failures = 2\nauth_failure_delay_ms = 0\nallow_plaintext_auth = true\nenhanced_status_codes = true\n",
    );
    let s = Server::start_with(dir.path(), &["--config", &cfg, "--no-delivery"]);
    let k = s.account("acme");

    let mut a = Client::connect(&s.smtp);
    let mut b = Client::connect(&s.smtp);
    assert!(a.reply().starts_with("220 ") && b.reply().starts_with("220 "));
    let mut c = Client::connect(&s.smtp);
    assert_eq!(c.reply(), "421 Too many concurrent SMTP connections");

    // With enhanced status codes switched on, they are advertised and used.
    let ehlo = {
        a.w.write_all(b"EHLO x\r\n").unwrap();
        let mut all = String::new();
        loop {
            let mut line = String::new();
            a.r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                break all;
            }
        }
    };
    assert!(ehlo.contains("250-ENHANCEDSTATUSCODES") && ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(a.cmd("MAIL FROM:<a@acme.test>"), "530 5.7.0 Authentication required");

    // Two failed AUTHs lock the address out; even the right password is then refused.
    let plain = |user: &str, pass: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
    };
    assert_eq!(
        a.cmd(&format!("AUTH PLAIN {}", plain(&k.akid, "nope"))),
        "535 5.7.8 Authentication Credentials Invalid"
    );
    assert_eq!(
        a.cmd(&format!("AUTH PLAIN {}", plain(&k.akid, "nope"))),
        "535 5.7.8 Authentication Credentials Invalid"
    );
    assert_eq!(
        a.cmd(&format!("AUTH PLAIN {}", plain(&k.akid, &k.smtp_password))),
        "454 4.7.0 Temporary authentication failure"
    );

    // Garbage gets 5xx, never a crash; an over-long line is refused and the session goes on.
    assert_eq!(b.cmd("FROBNICATE now"), "500 5.5.1 Unrecognized command");
    assert_eq!(b.cmd(&"X".repeat(10_000)), "500 5.5.2 Line too long");
    assert_eq!(b.cmd(&format!("NOOP {}", "y".repeat(10_000))), "500 5.5.2 Line too long");
    assert_eq!(b.cmd("NOOP"), "250 2.0.0 Ok");

    // Idle for longer than the timeout: SES's 451 text, then the connection closes.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.reply(), "451 4.4.2 Timeout waiting for data from client");
    assert_eq!(b.reply(), "");
}

#[test]
fn shutdown_says_421_to_idle_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut c = Client::connect(&s.smtp);
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO x").starts_with("250 "));
    s.stop();
    assert_eq!(c.reply(), "421 Service shutting down, closing transmission channel");
}
