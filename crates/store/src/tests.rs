use std::sync::Arc;

use super::*;
use crate::model::*;

fn entry(id: &str, account_id: i64, second: u64, n: usize) -> SpoolEntry {
    SpoolEntry {
        id: id.into(),
        account_id,
        region: "us-east-1".into(),
        created_ms: (second * 1000) as i64,
        mail_from: "a@acme.test".into(),
        configuration_set: None,
        tags_json: "[]".into(),
        source: "test".into(),
        body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        recipients: (0..n).map(|i| (format!("r{i}@acme.test"), RecipientState::Queued)).collect(),
        quota_second: second,
        quota_count: n as u32,
        quota_tat: second * 1_000_000_000,
        priority: Priority::Transactional,
    }
}

/// Recipients by state.
fn recipient_states(c: &rusqlite::Connection) -> Result<Vec<(RecipientState, i64)>> {
    let mut st = c.prepare("SELECT state, count(*) FROM recipients GROUP BY state ORDER BY state")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Recipient 0 of `id` delivered, as the engine records it.
fn delivered(id: &str) -> ops::AttemptResult {
    ops::AttemptResult {
        message_id: id.into(),
        idx: 0,
        state: RecipientState::Delivered,
        next_attempt_ms: 0,
        reply: "250 ok".into(),
        deferral: false,
        lane: "other".into(),
        provider: "other",
        class: "accepted",
        first: true,
    }
}

#[tokio::test]
async fn concurrent_writes_are_grouped_and_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("open"));
    let acct = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |c| ops::enqueue(c, &entry(&format!("m{i}"), acct.id, 1000 + i, 2))).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("enqueue");
    }
    let stats = store.writer_stats();
    assert!(stats.commits < stats.jobs, "expected group commits, got {stats:?}");
    store.shutdown();
    drop(store);

    let reopened = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let list = reopened.read(ops::spool_list).expect("list");
    assert_eq!(list.len(), 200);
    assert!(list.iter().all(|m| m.recipients.len() == 2));
    let quotas = reopened.read(|c| ops::load_quotas(c, 1300)).expect("quotas");
    let total: u64 = quotas[0].1.seconds.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 400);
}

#[tokio::test]
async fn failed_job_does_not_undo_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let dup = store.write(|c| ops::insert_account(c, "acme", "AKIA2", "s", 0)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    store.write(move |c| ops::enqueue(c, &entry("m1", a.id, 10, 1))).await.expect("enqueue");
    // Same MessageId twice: the second fails alone.
    let again = store.write(move |c| ops::enqueue(c, &entry("m1", a.id, 10, 1))).await;
    assert!(again.is_err());
    assert_eq!(store.read(ops::spool_list).expect("list").len(), 1);
    assert_eq!(store.read(ops::list_accounts).expect("accounts").len(), 1);
}

#[tokio::test]
async fn inline_writes_are_read_before_their_group_commits_and_a_failed_one_is_undone_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions { max_batch: 8, fsync: false, inline_writes: true };
    let store = Store::open(dir.path(), opts).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    for i in 0..20 {
        store.write(move |c| ops::enqueue(c, &entry(&format!("m{i}"), a.id, 10 + i, 1))).await.expect("enqueue");
    }
    let again = store.write(move |c| ops::enqueue(c, &entry("m3", a.id, 10, 1))).await;
    assert!(again.is_err(), "a duplicate MessageId fails");
    // Read on the writing connection: all twenty, though the last writes are not committed.
    assert_eq!(store.read(ops::spool_list).expect("list").len(), 20);
    let stats = store.writer_stats();
    assert_eq!((stats.jobs, stats.commits), (22, 2), "{stats:?}");
    store.shutdown();
    drop(store);
    let reopened = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    assert_eq!(reopened.read(ops::spool_list).expect("list").len(), 20, "the open group committed at shutdown");
}

#[tokio::test]
async fn due_count_counts_queued_due_recipients_up_to_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    for i in 0..5 {
        store.write(move |c| ops::enqueue(c, &entry(&format!("m{i}"), a.id, 10 + i, 3))).await.expect("enqueue");
    }
    store.write(|c| ops::pick(c, &[("m0".to_string(), 0)])).await.expect("pick");
    let count = |now, cap| store.read(|c| ops::due_count(c, now, cap)).expect("count");
    assert_eq!(count(1_000_000, 100), 14, "fifteen recipients, one picked");
    assert_eq!(count(1_000_000, 4), 4);
    assert_eq!(count(0, 100), 0, "none due yet");
}

#[tokio::test]
async fn statistics_and_pruning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let base: u64 = 1_795_460_400; // a 15-minute boundary
    store.write(move |c| ops::enqueue(c, &entry("m1", a.id, base + 10, 3))).await.expect("enqueue");
    store.write(move |c| ops::enqueue(c, &entry("m2", a.id, base + 20, 1))).await.expect("enqueue");
    store.write(move |c| ops::enqueue(c, &entry("m3", a.id, base + 900, 2))).await.expect("enqueue");
    store.write(move |c| ops::record_reject(c, a.id, "us-east-1", ((base + 30) * 1000) as i64)).await.expect("reject");
    let pts = store.read(|c| ops::send_statistics(c, a.id, "us-east-1", base as i64 + 1000)).expect("stats");
    assert_eq!(pts.len(), 2);
    assert_eq!((pts[0].delivery_attempts, pts[0].rejects), (4, 1));
    assert_eq!(pts[1].delivery_attempts, 2);
    store.write(move |c| ops::prune(c, (base + 86_400 + 15) as i64)).await.expect("prune");
    let q = store.read(|c| ops::load_quotas(c, base + 86_400 + 15)).expect("quotas");
    assert_eq!(q[0].1.seconds, vec![(base + 20, 1), (base + 900, 2)]);
}

#[tokio::test]
async fn transactional_is_due_before_bulk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let mut bulk = entry("bulk-old", a.id, 100, 2);
    bulk.priority = Priority::Bulk;
    store.write(move |c| ops::enqueue(c, &bulk)).await.expect("bulk");
    store.write(move |c| ops::enqueue(c, &entry("tx-new", a.id, 200, 1))).await.expect("transactional");
    let due = store.read(|c| ops::due_recipients(c, 1_000_000, 10)).expect("due");
    let order: Vec<&str> = due.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(order, vec!["tx-new", "bulk-old", "bulk-old"]);
    assert_eq!(due[0].priority, Priority::Transactional);
    // After a restart the interrupted ones come back; a recorded outcome leaves the queue.
    let ids = vec![("tx-new".to_string(), 0)];
    store.write(move |c| ops::mark_sending(c, &ids, 1)).await.expect("sending");
    assert_eq!(store.read(|c| ops::due_recipients(c, 1_000_000, 10)).expect("due").len(), 2);
    assert_eq!(store.write(ops::requeue_interrupted).await.expect("requeue"), 1);
    let done = vec![delivered("tx-new")];
    store.write(move |c| ops::record_attempts(c, &done, 2)).await.expect("record");
    let states = store.read(recipient_states).expect("states");
    assert_eq!(states, vec![(RecipientState::Delivered, 1), (RecipientState::Queued, 2)]);
}

#[tokio::test]
async fn retention_removes_only_finished_mail_older_than_its_cutoffs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    for (id, second) in [("old-done", 10), ("old-waiting", 10), ("mid-done", 50), ("new-done", 90)] {
        store.write(move |c| ops::enqueue(c, &entry(id, a.id, second, 1))).await.expect("enqueue");
    }
    for (id, at) in [("old-done", 10_000), ("mid-done", 50_000), ("new-done", 90_000)] {
        store.write(move |c| ops::record_attempts(c, &[delivered(id)], at)).await.expect("record");
    }
    // Bodies before 60 s, rows before 30 s.
    let p = store
        .write(|c| retention::purge(c, &mut retention::Cursor::default(), 60_000, 30_000, 100))
        .await
        .expect("purge");
    assert_eq!(p, retention::Purged { bodies: 1, messages: 1, caught_up: true });
    let left: Vec<String> = store.read(ops::spool_list).expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(left, vec!["old-waiting", "mid-done", "new-done"]);
    assert_eq!(store.read(|c| ops::spool_body(c, "mid-done")).expect("body"), Some(vec![]));
    assert!(!store.read(|c| ops::spool_body(c, "new-done")).expect("body").expect("kept").is_empty());
    assert!(!store.read(|c| ops::spool_body(c, "old-waiting")).expect("body").expect("kept").is_empty());
}

#[tokio::test]
async fn retention_comes_back_for_old_mail_that_finishes_after_a_sweep_passed_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    for (id, second) in [("a", 10), ("waiting", 11), ("b", 12), ("young", 90)] {
        store.write(move |c| ops::enqueue(c, &entry(id, a.id, second, 1))).await.expect("enqueue");
    }
    for id in ["a", "b", "young"] {
        store.write(move |c| ops::record_attempts(c, &[delivered(id)], 20_000)).await.expect("record");
    }
    // One message per step: the sweep needs several steps, leaves "waiting" and stops at "young".
    let mut cursor = retention::Cursor::default();
    let mut removed = 0;
    for _ in 0..10 {
        let mut c = cursor;
        let (p, c) =
            store.write(move |conn| retention::purge(conn, &mut c, 0, 30_000, 1).map(|p| (p, c))).await.expect("purge");
        cursor = c;
        removed += p.messages;
        if p.caught_up {
            break;
        }
    }
    assert_eq!(removed, 2);
    let left: Vec<String> = store.read(ops::spool_list).expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(left, vec!["waiting", "young"]);
    // Once it is finished, the next sweep finds it although the cursor had passed it.
    store.write(move |c| ops::record_attempts(c, &[delivered("waiting")], 25_000)).await.expect("record");
    let mut c = cursor;
    let p = store.write(move |conn| retention::purge(conn, &mut c, 0, 30_000, 10)).await.expect("purge");
    assert_eq!((p.messages, p.caught_up), (1, true));
    let left: Vec<String> = store.read(ops::spool_list).expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(left, vec!["young"]);
}

#[tokio::test]
async fn a_report_counts_once_per_kind_and_only_for_a_delivered_recipient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let acct = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    store.write(move |c| ops::enqueue(c, &entry("m1", acct.id, 1000, 2))).await.expect("enqueue");
    store.write(|c| ops::record_attempts(c, &[delivered("m1")], 2000)).await.expect("delivered");
    let report = |idx: i64, kind: ops::Report| {
        store.write(move |c| ops::record_report(c, "m1", idx, kind, acct.id, "us-east-1", 3_000_000))
    };
    assert!(report(0, ops::Report::Bounce).await.expect("first bounce"));
    assert!(!report(0, ops::Report::Bounce).await.expect("replayed bounce"));
    assert!(report(0, ops::Report::Complaint).await.expect("first complaint"));
    assert!(!report(0, ops::Report::Complaint).await.expect("replayed complaint"));
    // Recipient 1 is still queued: nothing was delivered to it, nothing can come back about it.
    assert!(!report(1, ops::Report::Complaint).await.expect("queued recipient"));
    let (bounces, complaints): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row("SELECT sum(bounces), sum(complaints) FROM send_stats", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
        .expect("stats");
    assert_eq!((bounces, complaints), (1, 1));
}

#[tokio::test]
async fn a_postponed_recipient_waits_without_an_attempt_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    store.write(move |c| ops::enqueue(c, &entry("m", a.id, 100, 1))).await.expect("enqueue");
    let ids = vec![("m".to_string(), 0)];
    let (p, s) = (ids.clone(), ids.clone());
    store.write(move |c| ops::pick(c, &p)).await.expect("pick");
    store.write(move |c| ops::mark_sending(c, &s, 1)).await.expect("sending");
    store.write(move |c| ops::postpone(c, &ids, 5_000_000, "421 refused at the greeting")).await.expect("postpone");
    assert!(store.read(|c| ops::due_recipients(c, 4_999_999, 10)).expect("due").is_empty());
    let due = store.read(|c| ops::due_recipients(c, 5_000_000, 10)).expect("due");
    assert_eq!((due.len(), due[0].attempts, due[0].first_reply.clone()), (1, 0, None));
}

#[test]
fn every_recipient_state_reads_back_as_stored_and_an_unknown_one_is_an_error() {
    let c = rusqlite::Connection::open_in_memory().expect("db");
    for &st in RecipientState::ALL {
        let back: RecipientState = c.query_row("SELECT ?1", [st], |r| r.get(0)).expect("state");
        assert_eq!(back, st);
        assert_eq!(serde_json::to_value(st).expect("json"), serde_json::json!(st.as_str()));
    }
    let unknown = c.query_row("SELECT 'lost'", [], |r| r.get::<_, RecipientState>(0));
    assert!(unknown.is_err(), "{unknown:?}");
}

#[tokio::test]
async fn the_spool_gives_picked_recipients_back_unsent_or_postponed_to_their_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("open"));
    let acct = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let spool = Spool::new(store.clone());
    spool.enqueue(vec![entry("m1", acct.id, 1, 2)]).await.expect("enqueue");
    let due = spool.due(5_000, 10).expect("due");
    assert_eq!(due.len(), 2);
    let ids: Vec<spool::RcptId> = due.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
    spool.pick(ids.clone()).await.expect("pick");
    assert!(spool.due(5_000, 10).expect("due").is_empty(), "picked recipients are not due");
    spool.postpone(vec![(ids[0].clone(), 9_000)], "the host refused the connection".into()).await.expect("postpone");
    spool.unpick(vec![ids[1].clone()]).await.expect("unpick");
    let now: Vec<i64> = spool.due(5_000, 10).expect("due").iter().map(|r| r.idx).collect();
    assert_eq!(now, vec![1], "the one given back unsent is due at once");
    let later = spool.due(9_000, 10).expect("due");
    assert_eq!(later.len(), 2);
    assert!(later.iter().all(|r| r.attempts == 0), "{later:?}");
}

#[test]
fn priorities_and_enforcement_statuses_read_back_as_stored_and_unknown_ones_are_errors() {
    let c = rusqlite::Connection::open_in_memory().expect("db");
    for p in [Priority::Transactional, Priority::Bulk] {
        assert_eq!(c.query_row("SELECT ?1", [p], |r| r.get::<_, Priority>(0)).expect("priority"), p);
    }
    assert!(c.query_row("SELECT 7", [], |r| r.get::<_, Priority>(0)).is_err());
    for &e in Enforcement::ALL {
        assert_eq!(c.query_row("SELECT ?1", [e], |r| r.get::<_, Enforcement>(0)).expect("status"), e);
        // SES's names, in the API, the events and between the nodes of a cluster alike.
        assert_eq!(serde_json::to_value(e).expect("json"), serde_json::json!(e.as_str()));
    }
    assert!(c.query_row("SELECT 'PAUSED'", [], |r| r.get::<_, Enforcement>(0)).is_err());
}

#[tokio::test]
async fn suppression_reasons_read_back_as_stored_and_an_unknown_one_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let a = store.write(|c| ops::insert_account(c, "acme", "AKIA1", "s", 0)).await.expect("account");
    let settings =
        RegionSettings { suppressed_reasons: vec![SuppressionReason::Complaint], ..RegionSettings::sandbox() };
    let s2 = settings.clone();
    store.write(move |c| ops::upsert_region(c, a.id, "us-east-1", &s2)).await.expect("region");
    let entry =
        Suppressed { address: "x@y.test".into(), reason: SuppressionReason::Bounce, updated_ms: 1, message_id: None };
    let e2 = entry.clone();
    store.write(move |c| ops::put_suppressed(c, a.id, "us-east-1", &e2)).await.expect("suppressed");
    assert_eq!(store.read(ops::list_regions).expect("regions")[0].2, settings);
    assert_eq!(store.read(ops::list_suppressed).expect("list")[0].2, entry);
    // SES's names between the nodes of a cluster too.
    assert_eq!(serde_json::to_value(&entry).expect("json")["reason"], "BOUNCE");
    store
        .write(|c| {
            c.execute("UPDATE account_regions SET suppressed_reasons = 'BOUNCE,bounced'", [])?;
            Ok(())
        })
        .await
        .expect("update");
    let e = store.read(ops::list_regions).expect_err("an unknown reason is refused");
    assert!(e.to_string().contains("unknown suppression reason \"bounced\""), "{e}");
}

#[test]
fn dns_statuses_dkim_origins_and_mail_from_behaviours_read_back_as_stored_and_unknown_ones_are_errors() {
    let c = rusqlite::Connection::open_in_memory().expect("db");
    for &s in DnsStatus::ALL {
        assert_eq!(c.query_row("SELECT ?1", [s], |r| r.get::<_, DnsStatus>(0)).expect("status"), s);
        // SES's names, in the API and between the nodes of a cluster alike.
        assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
    }
    for &o in DkimOrigin::ALL {
        assert_eq!(c.query_row("SELECT ?1", [o], |r| r.get::<_, DkimOrigin>(0)).expect("origin"), o);
        assert_eq!(serde_json::to_value(o).expect("json"), serde_json::json!(o.as_str()));
    }
    for &b in MailFromBehavior::ALL {
        assert_eq!(c.query_row("SELECT ?1", [b], |r| r.get::<_, MailFromBehavior>(0)).expect("behaviour"), b);
        assert_eq!(serde_json::to_value(b).expect("json"), serde_json::json!(b.as_str()));
    }
    assert!(c.query_row("SELECT 'pending'", [], |r| r.get::<_, DnsStatus>(0)).is_err());
    assert!(c.query_row("SELECT 'AWS'", [], |r| r.get::<_, DkimOrigin>(0)).is_err());
    assert!(c.query_row("SELECT 'REJECT'", [], |r| r.get::<_, MailFromBehavior>(0)).is_err());
}
