//! Arbitrary bytes into an SMTP session (plaintext AUTH allowed, a real store underneath):
//! whatever arrives, the session answers and never panics.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_smtp::session::Session;
use weir_smtp::{SmtpConfig, SmtpContext};

struct World {
    rt: tokio::runtime::Runtime,
    ctx: SmtpContext,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, _) = weir_testkit::service::open(dir.path(), "fuzz.test");
        rt.block_on(weir_testkit::service::sender(&svc, "fuzz", "a.test", true));
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        std::mem::forget(_tx);
        let smtp = SmtpConfig {
            allow_plaintext_auth: true,
            auth_failure_delay: Duration::ZERO,
            trusted_networks: vec!["127.0.0.0/8".parse().expect("net")],
            trusted_account: Some("fuzz".into()),
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
        World { rt, ctx, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let peer: SocketAddr = "127.0.0.1:2525".parse().expect("addr");
    let mut session = Session::new(w.ctx.clone(), peer, false);
    w.rt.block_on(async {
        // Feed in two pieces so that commands split across reads are exercised too.
        let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
        for chunk in [&data[..cut], &data[cut..]] {
            let (_replies, done) = session.feed(chunk).await;
            if done {
                break;
            }
        }
    });
});
