//! The server's background work beside the front doors and the delivery engine: judging
//! reputation, the retention sweeps, and `/metrics` read at scrape time.

use std::sync::Arc;
use std::time::Duration;

use weir_store::Store;
use weir_submit::Service;

/// Judge every account's reputation every `interval_seconds` (SES's enforcement).
pub(super) async fn reputation(
    svc: Arc<Service>,
    cfg: crate::config::ReputationConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let t = cfg.thresholds();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(cfg.interval_seconds.max(1))) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = svc.enforce_reputation(cfg.window_seconds, &t).await {
            tracing::error!(error = %e, "reputation check failed; tried again later");
        }
    }
}

/// `GET /metrics`: counters, plus the spool and the lanes read at scrape time.
pub(super) fn metrics_text(
    metrics: Arc<weir_metrics::Metrics>,
    svc: Arc<Service>,
    spool: weir_store::Spool,
    engine: Option<Arc<weir_delivery::Engine>>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    Arc::new(move || {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let spool: Vec<weir_metrics::SpoolSnapshot> = spool
            .summary()
            .unwrap_or_default()
            .into_iter()
            .map(|r| weir_metrics::SpoolSnapshot {
                state: r.state.as_str().into(),
                lane: r.lane,
                recipients: r.recipients,
                oldest_age_seconds: (now - r.oldest_created_ms).max(0) as f64 / 1000.0,
            })
            .collect();
        let lanes: Vec<weir_metrics::LaneSnapshot> = engine
            .as_ref()
            .map(|e| {
                let status = e.status();
                e.lane_stats()
                    .into_iter()
                    .map(|(key, s)| {
                        let v = &status["lanes"][&key];
                        weir_metrics::LaneSnapshot {
                            lane: key.clone(),
                            provider: s.provider.clone(),
                            connections_allowed: v["connections_allowed"].as_i64().unwrap_or(0),
                            safe_rate_per_minute: v["safe_rate_per_minute"].as_f64().unwrap_or(0.0),
                            paused: v["paused"].as_bool().unwrap_or(false),
                            first_deferral_ratio: v["first_deferral_rate"].as_f64().unwrap_or(0.0),
                            final_delivery_ratio: v["final_delivery_rate"].as_f64().unwrap_or(0.0),
                            first_attempts: s.first_attempts,
                            first_attempt_deferrals: s.first_attempt_deferrals,
                            replies: s
                                .replies
                                .iter()
                                .flat_map(|(outcome, classes)| {
                                    classes.iter().map(move |(class, n)| (outcome.clone(), class.clone(), *n))
                                })
                                .collect(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut quotas = Vec::new();
        let refusals = svc.quotas().quota_refusals();
        for a in svc.directory().accounts() {
            for region in svc.directory().regions_of(a.id) {
                let q = svc.quotas().quota_view(a.id, &region);
                let enforcement = match svc.directory().region_settings(a.id, &region).enforcement {
                    weir_store::model::Enforcement::Shutdown => 2,
                    weir_store::model::Enforcement::Probation => 1,
                    _ => 0,
                };
                quotas.push(weir_metrics::QuotaSnapshot {
                    account: a.name.clone(),
                    sent_last_24h: q.sent_last_24h,
                    max_24h: q.max_24h,
                    max_rate: q.max_rate,
                    enforcement,
                    refusals: refusals
                        .iter()
                        .filter(|r| r.0 == a.id && r.1 == region)
                        .map(|r| (r.2.to_string(), r.3))
                        .collect(),
                    region,
                });
            }
        }
        if let Some(c) = svc.cluster_status() {
            metrics.set_cluster(&c.node, c.redis_up, c.epoch.is_some(), c.outbox);
        }
        metrics.render(&spool, &lanes, &quotas)
    })
}

/// Remove what retention no longer keeps, every `interval_seconds`, in batches (each its own
/// short transaction, so sends are not held up), until both sweeps have caught up.
pub(super) async fn retention(
    store: Arc<Store>,
    cfg: crate::config::RetentionConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use weir_store::spool::RetentionCursor as Cursor;
    const BATCH: usize = 500;
    let spool = weir_store::Spool::new(store);
    let mut cursor = Cursor::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(cfg.interval_seconds.max(1))) => {}
            _ = stop.changed() => return,
        }
        let (mut bodies, mut messages) = (0, 0);
        loop {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let body = now - (cfg.body_seconds as i64).saturating_mul(1000);
            let meta = now - (cfg.metadata_seconds as i64).saturating_mul(1000);
            let step = spool.purge(cursor, body, meta, BATCH).await;
            match step {
                Ok((p, c)) => {
                    cursor = c;
                    bodies += p.bodies;
                    messages += p.messages;
                    if p.caught_up {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention purge failed; tried again later");
                    break;
                }
            }
            if *stop.borrow() {
                return;
            }
        }
        if bodies + messages > 0 {
            tracing::info!(bodies, messages, "retention: removed what is no longer kept");
        }
    }
}
