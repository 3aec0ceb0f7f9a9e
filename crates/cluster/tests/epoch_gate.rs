//! The epoch gate on a real redis-server: an emptied Redis decides nothing until the nodes have
//! put their ledgers back, and a charge is given back exactly.

mod common;

use std::time::Duration;

use common::server;
use weir_cluster::epoch::Epoch;
use weir_cluster::{ClusterError, LedgerEntry};
use weir_quota::Limits;

fn ledger(account_id: i64, counts: &[(u64, u64)], tat: u64) -> Vec<LedgerEntry> {
    vec![LedgerEntry { account_id, region: "us-east-1".into(), seconds: counts.to_vec(), tat }]
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[test]
fn an_emptied_redis_decides_nothing_until_every_known_node_reseeded() {
    let srv = server();
    let (rt, q) = (&srv.rt, &srv.quota);
    let wait = Duration::from_secs(3600);
    let (a, b) = (Epoch::new(q.clone(), "a", wait), Epoch::new(q.clone(), "b", wait));
    let t = now_s();
    let (la, lb) = (ledger(7, &[(t - 100, 3)], 0), ledger(7, &[(t - 50, 4)], 0));
    rt.block_on(async {
        // Redis is empty but for the test's own epoch; drop it so both nodes start from nothing.
        q.redis().query::<()>(&redis::cmd("FLUSHALL")).await.expect("flush");
        a.tick(&[], async |_| la.clone()).await.expect("a seeds");
        let step = a.tick(&[], async |_| la.clone()).await.expect("a opens");
        let epoch = step.open.expect("open with a as the only member");
        let step = b.tick(&[], async |_| lb.clone()).await.expect("b joins");
        assert_eq!(step.open.as_deref(), Some(epoch.as_str()));
        assert_eq!(step.members, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(q.sent_last_24h(&epoch, 7, "us-east-1", false).await.expect("sent"), 7, "both ledgers are in");

        // Redis loses everything: the old epoch decides nothing.
        q.redis().query::<()>(&redis::cmd("FLUSHALL")).await.expect("flush");
        let l = Limits { max_24h: Some(10), max_rate: None, burst_seconds: 1.0, sending_enabled: true };
        assert!(matches!(
            q.admit(&epoch, 7, "us-east-1", &l, 1, None, None, false).await,
            Err(ClusterError::NotSeeded)
        ));
        let known = vec!["a".to_string(), "b".to_string()];
        // a re-seeds but waits for b, a member it knows of.
        let step = a
            .tick(&known, async |lost| {
                assert!(lost, "a knows the data was lost");
                la.clone()
            })
            .await
            .expect("a re-seeds");
        assert_eq!(step.open, None);
        assert_eq!(a.tick(&known, async |_| la.clone()).await.expect("a waits").open, None, "b has not re-seeded");
        b.tick(&known, async |_| lb.clone()).await.expect("b re-seeds");
        let epoch = b.tick(&known, async |_| lb.clone()).await.expect("b opens").open.expect("open");
        assert_eq!(a.tick(&known, async |_| la.clone()).await.expect("a opens").open.as_deref(), Some(epoch.as_str()));
        assert_eq!(q.sent_last_24h(&epoch, 7, "us-east-1", false).await.expect("sent"), 7, "nobody's quota was reset");
        // 3 more pass, the 11th recipient does not.
        assert!(q.admit(&epoch, 7, "us-east-1", &l, 3, None, None, false).await.expect("redis").is_ok());
        assert!(q.admit(&epoch, 7, "us-east-1", &l, 1, None, None, false).await.expect("redis").is_err());
    });
}

#[test]
fn a_known_node_that_never_reseeds_is_waited_for_a_bounded_time() {
    let srv = server();
    let (rt, q) = (&srv.rt, &srv.quota);
    let a = Epoch::new(q.clone(), "a", Duration::from_millis(300));
    let known = vec!["a".to_string(), "gone".to_string()];
    rt.block_on(async {
        q.redis().query::<()>(&redis::cmd("FLUSHALL")).await.expect("flush");
        assert_eq!(a.tick(&known, async |_| Vec::new()).await.expect("tick").open, None);
        tokio::time::sleep(Duration::from_millis(350)).await;
        a.tick(&known, async |_| Vec::new()).await.expect("tick");
        assert!(a.tick(&known, async |_| Vec::new()).await.expect("tick").open.is_some(), "opened after the wait");
    });
}

#[test]
fn a_refunded_charge_leaves_the_counters_as_before() {
    let srv = server();
    let (rt, q) = (&srv.rt, &srv.quota);
    let l = Limits { max_24h: Some(5), max_rate: Some(1.0), burst_seconds: 1.0, sending_enabled: true };
    let now = None;
    rt.block_on(async {
        let c = q.admit("t", 9, "us-east-1", &l, 1, None, now, false).await.expect("redis").expect("accepted");
        q.refund("t", 9, "us-east-1", &c).await.expect("refund");
        // Had the refund not given back the bucket's time, the next send would wait a second.
        let again = q.admit("t", 9, "us-east-1", &l, 1, None, now, false).await.expect("redis").expect("accepted");
        assert_eq!(again.tat_before, c.tat_before);
        assert_eq!(q.sent_last_24h("t", 9, "us-east-1", false).await.expect("sent"), 1);
    });
}

#[test]
fn counters_this_node_charged_that_go_missing_are_lost_not_zero() {
    let srv = server();
    let (rt, q) = (&srv.rt, &srv.quota);
    let l = Limits { max_24h: Some(20), max_rate: None, burst_seconds: 1.0, sending_enabled: true };
    rt.block_on(async {
        q.admit("t", 11, "us-east-1", &l, 20, None, None, false).await.expect("redis").expect("accepted");
        // Someone deletes the quota keys, leaving the epoch.
        let keys: Vec<String> = q.redis().query(redis::cmd("KEYS").arg("{weir:q:11:*")).await.expect("keys");
        assert!(!keys.is_empty());
        q.redis().query::<i64>(redis::cmd("DEL").arg(&keys)).await.expect("del");
        // A node whose ledger holds those 20 finds them gone: nothing is decided.
        assert!(matches!(q.admit("t", 11, "us-east-1", &l, 1, None, None, true).await, Err(ClusterError::Lost)));
        assert!(matches!(q.sent_last_24h("t", 11, "us-east-1", true).await, Err(ClusterError::Lost)));
        // It ends the epoch, so that every node re-seeds a new one from its ledger.
        let a = Epoch::new(q.clone(), "a", Duration::from_secs(3600));
        a.end("t").await.expect("end");
        assert!(matches!(q.admit("t", 11, "us-east-1", &l, 1, None, None, false).await, Err(ClusterError::NotSeeded)));
        let t = now_s();
        let mine = ledger(11, &[(t - 10, 20)], 0);
        a.tick(&["a".to_string()], async |_| mine.clone()).await.expect("seed");
        let epoch = a.tick(&["a".to_string()], async |_| mine.clone()).await.expect("open").open.expect("open");
        assert_ne!(epoch, "t", "a new epoch");
        assert_eq!(q.sent_last_24h(&epoch, 11, "us-east-1", true).await.expect("sent"), 20, "re-seeded, not zero");
    });
}

#[test]
fn a_window_without_its_seconds_is_lost_whoever_asks() {
    let srv = server();
    let (rt, q) = (&srv.rt, &srv.quota);
    let l = Limits { max_24h: Some(20), max_rate: None, burst_seconds: 1.0, sending_enabled: true };
    rt.block_on(async {
        q.admit("t", 12, "us-east-1", &l, 5, None, None, false).await.expect("redis").expect("accepted");
        q.redis().query::<i64>(redis::cmd("DEL").arg("{weir:q:12:us-east-1}:t:s")).await.expect("del");
        assert!(matches!(q.admit("t", 12, "us-east-1", &l, 1, None, None, false).await, Err(ClusterError::Lost)));
    });
}

#[test]
fn a_url_without_a_password_is_refused_unless_allowed() {
    let mut t = common::target("redis://127.0.0.1:6379/");
    assert!(
        matches!(weir_cluster::Redis::new(&t, Duration::from_secs(1)), Err(ClusterError::Config(m)) if m.contains("no password"))
    );
    t.allow_no_password = true;
    assert!(weir_cluster::Redis::new(&t, Duration::from_secs(1)).is_ok());
}
