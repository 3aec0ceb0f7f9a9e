//! The delivery SMTP client against scripted receivers on loopback that refuse, throttle, close
//! or stall at each stage: every command gets the reply the server gave (or one that says the
//! connection was lost), and replies already received are kept.

use std::sync::Arc;
use std::time::Duration;

use weir_delivery::client::{Client, Stage, TcpConnector, Timeouts};
use weir_receivers::scripted::{Step::*, normal, receiver};

const SECOND: Duration = Duration::from_secs(1);

async fn session(port: u16) -> Result<Client, (Stage, weir_classify::reply::Reply)> {
    Client::open(&TcpConnector, "127.0.0.1", port, "weir.test", Timeouts::all(SECOND), None).await
}

fn rcpts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}@mx.test")).collect()
}

use weir_receivers::model::GMAIL_4_7_28;

#[tokio::test]
async fn pipelined_rcpt_421_then_close_is_the_reply_for_it_and_every_later_command() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "RCPT TO:<r2@mx.test>" => vec![Say(GMAIL_4_7_28), Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(5), b"Subject: x\r\n\r\nbody\r\n").await;
    assert!(t.closed);
    assert_eq!(t.mail.code, 250);
    let codes: Vec<u16> = t.rcpts.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 421, 421, 421]);
    assert_eq!(t.rcpts[2].enhanced, Some((4, 7, 28)));
    assert!(t.rcpts[4].text.contains("unusual rate"), "{}", t.rcpts[4]);
    // The accepted recipients share the fate of the transaction: the same 421.
    assert_eq!(t.data.as_ref().map(|r| r.enhanced), Some(Some((4, 7, 28))));
}

#[tokio::test]
async fn greeting_421_is_kept_as_the_reply() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "CONNECT" => vec![Say("421 4.7.0 Too many concurrent connections"), Close],
        c => normal(c),
    }))
    .await;
    let (stage, reply) = session(port).await.err().expect("refused");
    assert_eq!(stage, Stage::Greeting);
    assert_eq!((reply.code, reply.text.as_str()), (421, "Too many concurrent connections"));
}

#[tokio::test]
async fn ehlo_421_is_kept_as_the_reply() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        c if c.starts_with("EHLO") => {
            vec![Say("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"), Close]
        }
        c => normal(c),
    }))
    .await;
    let (stage, reply) = session(port).await.err().expect("refused");
    assert_eq!(stage, Stage::Ehlo);
    assert!(reply.text.contains("TSS04"), "{reply}");
}

#[tokio::test]
async fn connect_refused_is_a_connect_stage_failure() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let (stage, reply) = session(port).await.err().expect("refused");
    assert_eq!((stage, reply.code, reply.enhanced), (Stage::Connect, 451, Some((4, 4, 1))));
}

#[tokio::test]
async fn mail_421_is_the_reply_for_every_recipient() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        c if c.starts_with("MAIL") => vec![Say("421 4.7.0 Try again later, closing connection."), Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(3), b"x\r\n").await;
    assert!(t.closed);
    assert!(t.rcpts.iter().all(|r| r.code == 421 && r.text.contains("Try again later")));
}

#[tokio::test]
async fn close_mid_batch_keeps_the_replies_already_received() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "RCPT TO:<r1@mx.test>" => {
            vec![Say("450 4.2.1 The user you are trying to contact is receiving mail too quickly.")]
        }
        "RCPT TO:<r2@mx.test>" => vec![Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(4), b"x\r\n").await;
    assert!(t.closed);
    assert_eq!(t.rcpts[0].code, 250);
    assert_eq!(t.rcpts[1].enhanced, Some((4, 2, 1)));
    assert!(t.rcpts[2..].iter().all(|r| r.code == 451 && r.enhanced == Some((4, 4, 2))), "{:?}", t.rcpts);
    assert!(t.rcpts[2].text.contains("closed while waiting for the reply to RCPT TO"), "{}", t.rcpts[2]);
}

#[tokio::test]
async fn data_421_applies_to_the_accepted_recipients() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "DATA" => vec![Say("421 4.3.2 System not accepting network messages"), Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(2), b"x\r\n").await;
    assert!(t.closed);
    assert_eq!(t.data.map(|r| (r.code, r.enhanced)), Some((421, Some((4, 3, 2)))));
}

#[tokio::test]
async fn end_of_data_421_is_the_reply_and_ends_the_session() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "." => vec![Say("421 4.7.0 Message throttled, closing connection"), Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(1), b"x\r\n").await;
    assert!(t.closed);
    assert_eq!(t.data.map(|r| r.code), Some(421));
}

#[tokio::test]
async fn end_of_data_lost_is_a_local_451_and_ends_the_session() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "." => vec![Close],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(1), b"x\r\n").await;
    assert!(t.closed);
    let d = t.data.expect("data reply");
    assert_eq!((d.code, d.enhanced), (451, Some((4, 4, 2))));
    assert!(d.text.contains("end of data"), "{d}");
}

#[tokio::test]
async fn tarpitting_receiver_times_out_with_replies_kept() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "RCPT TO:<r1@mx.test>" => vec![Stall(Duration::from_secs(5))],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let started = std::time::Instant::now();
    let t = c.send("a@weir.test", &rcpts(3), b"x\r\n").await;
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the command timeout");
    assert!(t.closed);
    assert_eq!(t.rcpts[0].code, 250);
    assert!(t.rcpts[1].text.contains("timeout waiting for the reply to RCPT TO"), "{}", t.rcpts[1]);
}

#[tokio::test]
async fn multi_line_replies_are_read_whole() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        "RCPT TO:<r0@mx.test>" => vec![Say("550-5.1.1 The email account that you tried to reach does not exist.\n550-5.1.1 Please try double-checking the recipient's email\n550 5.1.1 address for typos.")],
        c => normal(c),
    }))
    .await;
    let mut c = session(port).await.expect("session");
    let t = c.send("a@weir.test", &rcpts(2), b"x\r\n").await;
    assert!(!t.closed);
    assert_eq!(t.rcpts[0].code, 550);
    assert!(t.rcpts[0].text.ends_with("address for typos."), "{}", t.rcpts[0]);
    assert_eq!(t.rcpts[1].code, 250);
    assert_eq!(t.data.map(|r| r.code), Some(250));
}

#[tokio::test]
async fn starttls_421_ends_the_session_with_that_reply() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        c if c.starts_with("EHLO") => vec![Say("250-mx.test\n250-STARTTLS\n250 PIPELINING")],
        "STARTTLS" => vec![Say("421 4.7.0 TLS not available now"), Close],
        c => normal(c),
    }))
    .await;
    let tls = weir_delivery::client::opportunistic_tls();
    let (stage, reply) =
        Client::open(&TcpConnector, "127.0.0.1", port, "weir.test", Timeouts::all(SECOND), Some((tls, "mx.test")))
            .await
            .err()
            .expect("refused");
    assert_eq!((stage, reply.code), (Stage::StartTls, 421));
}

#[tokio::test]
async fn failed_tls_handshake_is_a_starttls_stage_failure() {
    let port = receiver(Arc::new(|cmd: &str, _| match cmd {
        c if c.starts_with("EHLO") => vec![Say("250-mx.test\n250-STARTTLS\n250 PIPELINING")],
        "STARTTLS" => vec![Say("220 go ahead"), Say("this is not TLS")],
        c => normal(c),
    }))
    .await;
    let tls = weir_delivery::client::opportunistic_tls();
    let (stage, reply) =
        Client::open(&TcpConnector, "127.0.0.1", port, "weir.test", Timeouts::all(SECOND), Some((tls, "mx.test")))
            .await
            .err()
            .expect("refused");
    assert_eq!((stage, reply.code, reply.enhanced), (Stage::StartTls, 451, Some((4, 7, 5))));
}
