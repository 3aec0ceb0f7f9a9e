//! The SMTP submission session, verb by verb, in memory: bytes in, replies out, over a real
//! store and submission service (no socket; the external suite covers the listener).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_smtp::session::Session;
use weir_smtp::{SmtpConfig, SmtpContext};
use weir_store::Spool;

struct World {
    ctx: SmtpContext,
    spool: Spool,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

/// A service with one production account ("acme", `a.test` verified) trusted from loopback,
/// plaintext AUTH allowed.
async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let (svc, store) = weir_testkit::service::open(dir.path(), "smtp.test");
    weir_testkit::service::sender(&svc, "acme", "a.test", true).await;
    let (tx, shutdown) = tokio::sync::watch::channel(false);
    let smtp = SmtpConfig {
        allow_plaintext_auth: true,
        auth_failure_delay: Duration::ZERO,
        trusted_networks: vec!["127.0.0.0/8".parse().expect("net")],
        trusted_account: Some("acme".into()),
        max_message_bytes: 64 * 1024,
        ..SmtpConfig::default()
    };
    let ctx = SmtpContext {
        svc,
        cfg: Arc::new(smtp),
        tls: None,
        guard: Arc::new(weir_smtp::guard::Guard::default()),
        conns: weir_listen::ConnLimiter::new(weir_listen::Caps { total: 1000, per_ip: 50 }),
        shutdown,
        metrics: Arc::new(weir_metrics::Metrics::new()),
    };
    World { ctx, spool: Spool::new(store), _dir: dir, _shutdown: tx }
}

fn session(w: &World, peer: &str) -> Session {
    let peer: SocketAddr = peer.parse().expect("addr");
    Session::new(w.ctx.clone(), peer, false)
}

/// Feed `input`; the replies as text, and whether the session ended.
async fn say(s: &mut Session, input: &str) -> (String, bool) {
    let (out, done) = s.feed(input.as_bytes()).await;
    (String::from_utf8_lossy(&out).into_owned(), done)
}

/// EHLO then a transaction's commands, each answered.
async fn open(w: &World) -> Session {
    let mut s = session(w, "127.0.0.1:40000");
    let (r, _) = say(&mut s, "EHLO c.test\r\n").await;
    assert!(r.starts_with("250"), "{r}");
    s
}

const MESSAGE: &str = "Subject: hi\r\nFrom: a@a.test\r\nTo: b@a.test\r\n\r\nbody\r\n.\r\n";

#[tokio::test]
async fn ehlo_announces_pipelining_8bitmime_size_and_auth() {
    let w = world().await;
    let mut s = session(&w, "127.0.0.1:40000");
    let (r, done) = say(&mut s, "EHLO c.test\r\n").await;
    assert!(!done);
    for ext in ["250-PIPELINING", "250-8BITMIME", "250-SIZE 65536", "250-AUTH PLAIN LOGIN"] {
        assert!(r.contains(ext), "{ext} missing: {r}");
    }
}

#[tokio::test]
async fn mail_before_ehlo_is_refused() {
    let w = world().await;
    let mut s = session(&w, "127.0.0.1:40000");
    let (r, done) = say(&mut s, "MAIL FROM:<a@a.test>\r\n").await;
    assert_eq!((r.as_str(), done), ("503 Send EHLO first\r\n", false));
}

#[tokio::test]
async fn rcpt_and_data_before_mail_are_refused() {
    let w = world().await;
    let mut s = open(&w).await;
    assert!(say(&mut s, "RCPT TO:<b@a.test>\r\n").await.0.starts_with("503 "));
    assert!(say(&mut s, "DATA\r\n").await.0.starts_with("503 "));
}

#[tokio::test]
async fn a_transaction_is_spooled_and_answered_with_its_message_id() {
    let w = world().await;
    let mut s = open(&w).await;
    assert!(say(&mut s, "MAIL FROM:<a@a.test>\r\n").await.0.starts_with("250"));
    assert!(say(&mut s, "RCPT TO:<b@a.test>\r\n").await.0.starts_with("250"));
    assert!(say(&mut s, "DATA\r\n").await.0.starts_with("354"));
    let (r, _) = say(&mut s, MESSAGE).await;
    let id = r.strip_prefix("250 Ok ").map(str::trim_end).expect("250 Ok <MessageId>");
    let spooled = w.spool.list().expect("list");
    assert_eq!(spooled.len(), 1);
    assert_eq!(spooled[0].id, id);
    assert_eq!(spooled[0].recipients.len(), 1);
}

#[tokio::test]
async fn rset_forgets_the_transaction() {
    let w = world().await;
    let mut s = open(&w).await;
    say(&mut s, "MAIL FROM:<a@a.test>\r\n").await;
    say(&mut s, "RCPT TO:<b@a.test>\r\n").await;
    assert!(say(&mut s, "RSET\r\n").await.0.starts_with("250"));
    assert!(say(&mut s, "DATA\r\n").await.0.starts_with("503 "), "DATA after RSET needs a new MAIL");
    assert!(w.spool.list().expect("list").is_empty());
}

#[tokio::test]
async fn an_unknown_command_is_refused_and_the_session_goes_on() {
    let w = world().await;
    let mut s = open(&w).await;
    assert_eq!(say(&mut s, "FOO\r\n").await, ("500 Unrecognized command\r\n".to_string(), false));
    assert!(say(&mut s, "NOOP\r\n").await.0.starts_with("250"));
}

#[tokio::test]
async fn auth_with_credentials_no_account_has_is_refused_with_535() {
    let w = world().await;
    let mut s = open(&w).await;
    // AUTH PLAIN of "\0foo\0bar".
    let (r, done) = say(&mut s, "AUTH PLAIN AGZvbwBiYXI=\r\n").await;
    assert!(r.starts_with("535 "), "{r}");
    assert!(!done);
}

#[tokio::test]
async fn quit_says_goodbye_and_ends_the_session() {
    let w = world().await;
    let mut s = open(&w).await;
    assert_eq!(say(&mut s, "QUIT\r\n").await, ("221 Bye\r\n".to_string(), true));
}

#[tokio::test]
async fn a_peer_outside_the_trusted_networks_must_authenticate_before_mail() {
    let w = world().await;
    let mut s = session(&w, "192.0.2.9:40000");
    say(&mut s, "EHLO c.test\r\n").await;
    let (r, _) = say(&mut s, "MAIL FROM:<a@a.test>\r\n").await;
    assert!(r.starts_with("530 "), "{r}");
    assert!(w.spool.list().expect("list").is_empty());
}
