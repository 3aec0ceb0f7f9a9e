//! The quota gate: SES's quotas (a rolling 24-hour count and a send rate per account and
//! region), decided by this node's counters, or in a cluster by the counters every node shares in
//! Redis (each node keeping a copy of its own charges); the refusals it counted; the sending
//! statistics; and the cluster-wide pace of a lane.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use weir_cluster::ClusterError;
use weir_quota::{Charge, Limits, QuotaState, Refusal};
use weir_store::model::SendDataPoint;
use weir_store::{StoreError, ledger};

use super::cluster::{RETRY_AFTER, Shared, unavailable};
use super::core::Core;
use super::directory::Directory;
use super::{QuotaView, SubmitError};
use crate::catalog::RegionKey;

/// Decides and charges sends against SES's quotas.
pub struct QuotaGate {
    core: Arc<Core>,
    directory: Arc<Directory>,
    states: Mutex<HashMap<RegionKey, Arc<Mutex<QuotaState>>>>,
    /// Quota refusals since start, by (account, region) and reason.
    refusals: Mutex<HashMap<(RegionKey, &'static str), u64>>,
}

impl QuotaGate {
    pub(crate) fn new(
        core: Arc<Core>,
        directory: Arc<Directory>,
        states: HashMap<RegionKey, Arc<Mutex<QuotaState>>>,
    ) -> Self {
        QuotaGate { core, directory, states: Mutex::new(states), refusals: Mutex::new(HashMap::new()) }
    }

    fn quota_state(&self, key: &RegionKey) -> Arc<Mutex<QuotaState>> {
        self.states.lock().entry(key.clone()).or_default().clone()
    }

    /// GetSendQuota for (account, region), from this node's counters.
    pub fn quota_view(&self, account_id: i64, region: &str) -> QuotaView {
        let sent = self.quota_state(&(account_id, region.to_string())).lock().sent_last_24h(self.core.now_ns());
        view(&self.directory.region_settings(account_id, region), sent)
    }

    /// GetSendQuota for (account, region), counting every node's sends in a cluster.
    pub async fn send_quota(&self, account_id: i64, region: &str) -> Result<QuotaView, SubmitError> {
        let sent = self.sent_last_24h(account_id, region).await?;
        Ok(view(&self.directory.region_settings(account_id, region), sent))
    }

    /// GetSendStatistics data points: in a cluster, every node's (this node's alone, logged, while
    /// Redis is away).
    pub async fn send_statistics(&self, account_id: i64, region: &str) -> Result<Vec<SendDataPoint>, StoreError> {
        let now_s = (self.core.now_ns() / 1_000_000_000) as i64;
        if let Some(points) = self.cluster_statistics(account_id, region, now_s - ledger::STATS_RETENTION_SECS).await? {
            return Ok(points);
        }
        self.core.ledger.send_statistics(account_id, region, now_s)
    }

    /// Count a quota refusal and turn it into the error the front doors answer with.
    pub(crate) fn refused(&self, key: &RegionKey, r: Refusal) -> SubmitError {
        let (reason, err) = match r {
            Refusal::SendingPaused => ("sending_paused", SubmitError::SendingPaused),
            Refusal::DailyQuotaExceeded { retry_after } => {
                ("daily_quota", SubmitError::DailyQuotaExceeded { retry_after })
            }
            Refusal::MaxSendRateExceeded { retry_after } => {
                ("max_send_rate", SubmitError::MaxSendRateExceeded { retry_after })
            }
        };
        *self.refusals.lock().entry((key.clone(), reason)).or_default() += 1;
        err
    }

    /// Count a send refused for want of Redis (reason `unavailable` in the quota refusals).
    fn refused_unavailable(&self, key: &RegionKey, e: SubmitError) -> SubmitError {
        *self.refusals.lock().entry((key.clone(), "unavailable")).or_default() += 1;
        e
    }

    /// Quota refusals since start: (account id, region, reason, count).
    pub fn quota_refusals(&self) -> Vec<(i64, String, &'static str, u64)> {
        self.refusals.lock().iter().map(|((k, reason), n)| (k.0, k.1.clone(), *reason, *n)).collect()
    }

    /// Decide `n` recipients for `key` (and charge them if accepted): the local counters, or the
    /// shared ones in a cluster (this node keeping a copy of its own charges).
    pub(crate) async fn decide(
        &self,
        key: &RegionKey,
        limits: &Limits,
        n: u32,
        message_id: &str,
    ) -> Result<Charge, SubmitError> {
        let local = self.quota_state(key);
        let Some(shared) = self.core.cluster.as_ref() else {
            return local.lock().admit(limits, self.core.now_ns(), n).map_err(|r| self.refused(key, r));
        };
        let Some(epoch) = shared.epoch.current() else {
            return Err(self.refused_unavailable(key, SubmitError::Unavailable { retry_after: RETRY_AFTER }));
        };
        // This node's own charges in the window: the shared counters must hold at least those.
        let expect = local.lock().sent_last_24h(self.core.now_ns()) > 0;
        let mut answer = shared.quota.admit(&epoch, key.0, &key.1, limits, n, Some(message_id), None, expect).await;
        if matches!(answer, Err(ClusterError::Timeout(_))) {
            // The script may have run: the message id makes the retry return its first answer
            // instead of charging twice.
            answer = shared.quota.admit(&epoch, key.0, &key.1, limits, n, Some(message_id), None, expect).await;
        }
        match answer {
            Ok(Ok(charge)) => {
                local.lock().record(&charge);
                Ok(charge)
            }
            Ok(Err(r)) => Err(self.refused(key, r)),
            Err(e) => {
                self.on_counter_error(shared, &epoch, key, &e).await;
                Err(self.refused_unavailable(key, unavailable(&e)))
            }
        }
    }

    /// After the script refused to decide: stop deciding in this epoch; if counters were lost,
    /// end the epoch so that every node re-seeds it from its ledger.
    pub(crate) async fn on_counter_error(&self, shared: &Shared, epoch: &str, key: &RegionKey, e: &ClusterError) {
        match e {
            ClusterError::NotSeeded => shared.epoch.close(),
            ClusterError::Lost => {
                tracing::warn!(account = key.0, region = %key.1, %epoch, "shared quota counters were lost from redis; the cluster re-seeds them from every node's ledger");
                if let Err(e) = shared.epoch.end(epoch).await {
                    tracing::warn!(error = %e, "could not end the epoch of the lost counters; retried at the next send");
                }
            }
            _ => {}
        }
    }

    /// Would `n` recipients pass for `key` now? Charges nothing.
    pub(crate) async fn would_pass(&self, key: &RegionKey, limits: &Limits, n: u32) -> Result<(), SubmitError> {
        let Some(shared) = self.core.cluster.as_ref() else {
            return self.quota_state(key).lock().check(limits, self.core.now_ns(), n).map_err(|r| self.refused(key, r));
        };
        let Some(epoch) = shared.epoch.current() else {
            return Err(self.refused_unavailable(key, SubmitError::Unavailable { retry_after: RETRY_AFTER }));
        };
        let expect = self.quota_state(key).lock().sent_last_24h(self.core.now_ns()) > 0;
        match shared.quota.check(&epoch, key.0, &key.1, limits, n, None, expect).await {
            Ok(r) => r.map_err(|r: Refusal| self.refused(key, r)),
            Err(e) => {
                self.on_counter_error(shared, &epoch, key, &e).await;
                Err(self.refused_unavailable(key, unavailable(&e)))
            }
        }
    }

    /// Every node's reputation volumes since `since` (this node's `own` published first); `own`
    /// itself in embedded mode; None while Redis is away (no verdict on a part of the sending).
    pub(crate) async fn cluster_volumes(&self, own: Vec<ledger::Volume>, since: i64) -> Option<Vec<ledger::Volume>> {
        let Some(shared) = self.core.cluster.as_ref() else { return Some(own) };
        let all = async {
            let mine = self.core.ledger.stats_rows(since)?;
            let redis = shared.quota.redis();
            let node = shared.epoch.node();
            let mut out = Vec::new();
            for (account_id, region) in weir_cluster::stats::keys(redis, &mine).await? {
                let rows = weir_cluster::stats::sum(redis, node, &mine, account_id, &region, since).await?;
                out.extend(rows.into_iter().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5)));
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out)
        };
        match all.await {
            Ok(all) => Some(all),
            Err(e) => {
                tracing::warn!(error = %e, "reputation not judged this round: redis unavailable");
                None
            }
        }
    }

    /// Cluster mode: GetSendStatistics of every node (None in embedded mode, or while Redis is
    /// away: the caller answers with this node's).
    pub(crate) async fn cluster_statistics(
        &self,
        account_id: i64,
        region: &str,
        since: i64,
    ) -> Result<Option<Vec<SendDataPoint>>, StoreError> {
        let Some(shared) = self.core.cluster.as_ref() else { return Ok(None) };
        // This node's own buckets of this (account, region), fresher than what it published.
        let mine: Vec<ledger::StatsRow> = self
            .core
            .ledger
            .send_statistics(account_id, region, since + ledger::STATS_RETENTION_SECS)?
            .into_iter()
            .map(|p| {
                (account_id, region.to_string(), p.bucket, p.delivery_attempts, p.bounces, p.complaints, p.rejects)
            })
            .collect();
        let node = shared.epoch.node();
        match weir_cluster::stats::sum(shared.quota.redis(), node, &mine, account_id, region, since).await {
            Ok(rows) => Ok(Some(
                rows.into_iter()
                    .map(|r| SendDataPoint {
                        bucket: r.2,
                        delivery_attempts: r.3,
                        bounces: r.4,
                        complaints: r.5,
                        rejects: r.6,
                    })
                    .collect(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "GetSendStatistics answered with this node's figures only: redis unavailable");
                Ok(None)
            }
        }
    }

    /// Publish this node's statistics buckets since `since` for the other nodes.
    pub(crate) async fn publish_statistics(&self, shared: &Shared, since: i64) -> Result<(), ClusterError> {
        let rows = match self.core.ledger.stats_rows(since) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not read this node's statistics to share them");
                return Ok(());
            }
        };
        let ttl = ledger::STATS_RETENTION_SECS + ledger::STATS_BUCKET_SECS;
        weir_cluster::stats::publish(shared.quota.redis(), shared.epoch.node(), &rows, ttl).await
    }

    /// Cluster mode: take one message of lane `lane`'s shared cap (`per_minute` across every
    /// node, one second of burst); the time to wait if none is left. Zero in embedded mode, and
    /// while Redis is away (delivery does not stop for Redis; each node's own pacing holds).
    pub async fn shared_lane_wait(&self, lane: &str, per_minute: u32) -> Duration {
        let Some(shared) = self.core.cluster.as_ref() else { return Duration::ZERO };
        let Some(epoch) = shared.epoch.current() else { return Duration::ZERO };
        let limits = Limits {
            max_24h: None,
            max_rate: Some(f64::from(per_minute) / 60.0),
            burst_seconds: 1.0,
            sending_enabled: true,
        };
        // Account 0 is no account: its "regions" are the lanes.
        match shared.quota.admit(&epoch, 0, &format!("lane:{lane}"), &limits, 1, None, None, false).await {
            Ok(Ok(_)) => Duration::ZERO,
            Ok(Err(Refusal::MaxSendRateExceeded { retry_after })) => retry_after.max(Duration::from_millis(1)),
            Ok(Err(_)) => Duration::ZERO,
            Err(e) => {
                tracing::debug!(error = %e, %lane, "shared lane cap not applied: redis unavailable");
                Duration::ZERO
            }
        }
    }

    /// Give back a charge whose message was not spooled.
    pub(crate) async fn give_back(&self, key: &RegionKey, charge: &Charge) {
        self.quota_state(key).lock().refund(charge);
        if let Some(shared) = self.core.cluster.as_ref()
            && let Some(epoch) = shared.epoch.current()
            && let Err(e) = shared.quota.refund(&epoch, key.0, &key.1, charge).await
        {
            // Over-counted, never over-sent.
            tracing::warn!(error = %e, "a charge of an unspooled message stays in the shared counters");
        }
    }

    /// `SentLast24Hours` of (account, region): every node's in a cluster.
    pub async fn sent_last_24h(&self, account_id: i64, region: &str) -> Result<u64, SubmitError> {
        let key: RegionKey = (account_id, region.to_string());
        let Some(shared) = self.core.cluster.as_ref() else {
            return Ok(self.quota_state(&key).lock().sent_last_24h(self.core.now_ns()));
        };
        let Some(epoch) = shared.epoch.current() else {
            return Err(SubmitError::Unavailable { retry_after: RETRY_AFTER });
        };
        let expect = self.quota_state(&key).lock().sent_last_24h(self.core.now_ns()) > 0;
        match shared.quota.sent_last_24h(&epoch, account_id, region, expect).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.on_counter_error(shared, &epoch, &key, &e).await;
                Err(unavailable(&e))
            }
        }
    }
}

fn view(s: &weir_store::model::RegionSettings, sent: u64) -> QuotaView {
    QuotaView {
        max_24h: if s.max_24h < 0 { -1.0 } else { s.max_24h as f64 },
        max_rate: if s.max_rate <= 0.0 { -1.0 } else { s.max_rate },
        sent_last_24h: sent as f64,
    }
}
