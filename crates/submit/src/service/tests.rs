use std::sync::atomic::{AtomicU64, Ordering};

use weir_mail::address::parse_mailbox;
use weir_store::StoreOptions;

use super::*;

const T0: u64 = 1_795_460_400_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Service,
    store: Arc<Store>,
    now: Arc<AtomicU64>,
}

fn open_at(dir: &std::path::Path, now: Arc<AtomicU64>) -> (Service, Arc<Store>) {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("store"));
    let n2 = now.clone();
    let svc = Service::open(
        store.clone(),
        ServiceConfig::new(RegionSettings::sandbox(), "weir.test"),
        Arc::new(move || n2.load(Ordering::SeqCst)),
    )
    .expect("service");
    (svc, store)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicU64::new(T0));
    let (svc, store) = open_at(dir.path(), now.clone());
    Fixture { _dir: dir, svc, store, now }
}

fn sub(from: &str, to: &[&str]) -> Submission {
    Submission {
        region: "us-east-1".into(),
        message_id: weir_mail::message_id::new_message_id(1),
        source: parse_mailbox(from).expect("from"),
        header_senders: vec![],
        recipients: to.iter().map(|s| s.to_string()).collect(),
        mime: b"From: x\r\n\r\nhi\r\n".to_vec(),
        configuration_set: None,
        tags: vec![],
        unsubscribed: vec![],
        origin: "test",
    }
}

#[tokio::test]
async fn sandbox_requires_verified_sender_and_recipients() {
    let f = fixture();
    let a = f.svc.directory().create_account("acme").await.expect("account");
    let e = f.svc.sending().submit(&a, sub("Acme <a@acme.test>", &["b@other.test"])).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Email address is not verified. The following identities failed the check in region US-EAST-1: Acme <a@acme.test>, b@other.test"
    );
    f.svc.directory().put_identity(a.id, "us-east-1", "acme.test", IdentityKind::Domain, true).await.expect("identity");
    let e = f.svc.sending().submit(&a, sub("a@acme.test", &["b@other.test"])).await.unwrap_err();
    assert!(e.to_string().ends_with("US-EAST-1: b@other.test"), "{e}");
    // Simulator addresses and addresses in a verified domain (or its subdomains) pass.
    let id =
        f.svc.sending().submit(&a, sub("a@mail.acme.test", &["success@simulator.amazonses.com"])).await.expect("sent");
    assert!(weir_mail::message_id::is_message_id(&id));
    // A pending (API-created) identity is not verified.
    f.svc
        .directory()
        .put_identity(a.id, "us-east-1", "c@other.test", IdentityKind::EmailAddress, false)
        .await
        .expect("pending");
    f.now.fetch_add(2_000_000_000, Ordering::SeqCst);
    assert!(matches!(
        f.svc.sending().submit(&a, sub("a@acme.test", &["c@other.test"])).await,
        Err(SubmitError::MessageRejected(_))
    ));
    // Rejects were counted (a write barrier: the writer commits in order).
    weir_store::Spool::new(f.store.clone()).enqueue(vec![]).await.expect("barrier");
    let stats = f.svc.quotas().send_statistics(a.id, "us-east-1").await.expect("stats");
    assert_eq!(stats.iter().map(|p| p.rejects).sum::<i64>(), 3, "{stats:?}");
}

#[tokio::test]
async fn quota_is_charged_per_recipient_and_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicU64::new(T0));
    let (svc, store) = open_at(dir.path(), now.clone());
    let a = svc.directory().create_account("acme").await.expect("account");
    svc.directory().put_identity(a.id, "us-east-1", "acme.test", IdentityKind::Domain, true).await.expect("identity");
    svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test", "c@acme.test", "B@acme.test"])).await.expect("sent");
    assert_eq!(svc.quotas().quota_view(a.id, "us-east-1").sent_last_24h, 2.0, "duplicates count once");
    match svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test"])).await {
        Err(SubmitError::MaxSendRateExceeded { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(2))
        }
        other => panic!("expected throttling, got {other:?}"),
    }
    // Refused requests charged nothing.
    assert_eq!(svc.quotas().quota_view(a.id, "us-east-1").sent_last_24h, 2.0);
    // Another region has its own quota.
    svc.directory().put_identity(a.id, "eu-west-1", "acme.test", IdentityKind::Domain, true).await.expect("identity");
    let mut s = sub("a@acme.test", &["b@acme.test"]);
    s.region = "eu-west-1".into();
    svc.sending().submit(&a, s).await.expect("other region");
    store.shutdown();
    drop(svc);

    let (svc, store) = open_at(dir.path(), now.clone());
    assert_eq!(svc.quotas().quota_view(a.id, "us-east-1").sent_last_24h, 2.0);
    assert_eq!(svc.quotas().quota_view(a.id, "eu-west-1").sent_last_24h, 1.0);
    // The rate bucket's debt survived the restart too.
    assert!(matches!(
        svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test"])).await,
        Err(SubmitError::MaxSendRateExceeded { .. })
    ));
    now.fetch_add(2_000_000_000, Ordering::SeqCst);
    svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test"])).await.expect("after the debt is paid");
    assert_eq!(weir_store::Spool::new(store.clone()).list().expect("list").len(), 3);
}

#[tokio::test]
async fn daily_quota_and_paused_sending() {
    let f = fixture();
    let a = f.svc.directory().create_account("acme").await.expect("account");
    f.svc.directory().put_identity(a.id, "us-east-1", "acme.test", IdentityKind::Domain, true).await.expect("identity");
    f.svc
        .directory()
        .update_region_settings(a.id, "us-east-1", |s| {
            s.max_24h = 3;
            s.max_rate = 100.0;
        })
        .await
        .expect("settings");
    f.svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test", "c@acme.test"])).await.expect("sent");
    let e = f.svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test", "c@acme.test"])).await.unwrap_err();
    assert!(matches!(e, SubmitError::DailyQuotaExceeded { retry_after: Some(_) }), "{e:?}");
    f.svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test"])).await.expect("fits exactly");
    f.svc.directory().update_region_settings(a.id, "us-east-1", |s| s.sending_enabled = false).await.expect("pause");
    assert!(matches!(
        f.svc.sending().submit(&a, sub("a@acme.test", &["b@acme.test"])).await,
        Err(SubmitError::SendingPaused)
    ));
    let too_many: Vec<String> = (0..51).map(|i| format!("r{i}@acme.test")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_eq!(
        f.svc.sending().submit(&a, sub("a@acme.test", &refs)).await.unwrap_err().to_string(),
        "Recipient count exceeds 50."
    );
}

#[tokio::test]
async fn suppressed_recipients_are_accepted_but_not_queued() {
    let f = fixture();
    let a = f.svc.directory().create_account("acme").await.expect("account");
    f.svc.directory().put_identity(a.id, "us-east-1", "acme.test", IdentityKind::Domain, true).await.expect("identity");
    f.svc
        .directory()
        .put_suppressed(a.id, "us-east-1", "Bad@acme.test", SuppressionReason::Bounce, None)
        .await
        .expect("suppress");
    f.svc.sending().submit(&a, sub("a@acme.test", &["bad@acme.test"])).await.expect("accepted");
    let list = weir_store::Spool::new(f.store.clone()).list().expect("list");
    assert_eq!(list[0].recipients, vec![("bad@acme.test".to_string(), RecipientState::Suppressed)]);
    assert_eq!(f.svc.quotas().quota_view(a.id, "us-east-1").sent_last_24h, 1.0, "SES still charges suppressed sends");
    assert!(f.svc.directory().delete_suppressed(a.id, "us-east-1", "bad@acme.test").await.is_ok());
    assert!(matches!(
        f.svc.directory().delete_suppressed(a.id, "us-east-1", "bad@acme.test").await,
        Err(AdminError::NotFound(_))
    ));
}
