//! Cluster mode in the service: quota decisions in Redis (shared by every node), and the
//! catalog (accounts, credentials, identities, region settings, suppression) replicated through
//! the catalog stream. Without `[cluster]` none of this runs and the service is the embedded
//! single node.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_cluster::catalog::CatalogLog;
use weir_cluster::epoch::Epoch;
use weir_cluster::seal::ClusterKey;
use weir_cluster::{ClusterError, LedgerEntry, Redis, RedisQuota, RedisTarget};
use weir_store::model::Put;
use weir_store::model::{Account, Identity, RegionSettings, Suppressed};
use weir_store::{Documents, StoreError, ledger};

use super::{AdminError, Service, SubmitError};

mod replica;

/// How often a node looks at the epoch and at the catalog stream: the bound on how late a
/// catalog change made on another node is seen here (plus one Redis round trip).
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// How long a refusal for want of Redis asks the client to wait.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Settings of cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How to reach Redis.
    pub redis: RedisTarget,
    /// The cluster key: seals the catalog stream.
    pub key: ClusterKey,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Bound on every Redis command; beyond it sends fail closed.
    pub timeout: Duration,
    /// How long an emptied Redis waits for known nodes that do not re-seed it.
    pub reseed_wait: Duration,
}

/// What a node shares with the others.
pub struct Shared {
    pub(super) quota: RedisQuota,
    pub(super) epoch: Epoch,
    pub(super) log: CatalogLog,
    /// The last catalog stream id applied here.
    pub(super) last: parking_lot::Mutex<String>,
    /// Nodes the operator said left for good, for the keeper to drop from its members.
    pub(super) to_forget: parking_lot::Mutex<Vec<String>>,
    /// Redis answered the last step of the keeper.
    pub(super) redis_up: std::sync::atomic::AtomicBool,
    /// Every node known to have joined.
    pub(super) members: parking_lot::Mutex<Vec<String>>,
    /// The stream id of this node's latest change of each thing (see [`Change::key`]): its
    /// older changes of that thing are not applied again from the stream (they would take the
    /// node back through an old value for a moment).
    pub(super) own_latest: parking_lot::Mutex<std::collections::HashMap<String, String>>,
    /// The catalog stream has been read to its end once (a new node knows the accounts).
    pub(super) caught_up: std::sync::atomic::AtomicBool,
    /// Document changes made here and not yet in the stream (Redis was unreachable), in order.
    pub(super) outbox: tokio::sync::Mutex<std::collections::VecDeque<Change>>,
}

impl Shared {
    /// The cluster as `config` describes it; nothing is dialled yet.
    pub fn new(config: &ClusterConfig) -> Result<Shared, ClusterError> {
        let redis = Redis::new(&config.redis, config.timeout)?;
        let quota = RedisQuota::new(redis.clone());
        Ok(Shared {
            epoch: Epoch::new(quota.clone(), &config.node, config.reseed_wait),
            log: CatalogLog::new(redis, &config.node, config.key.clone()),
            quota,
            last: parking_lot::Mutex::new("0".into()),
            outbox: Default::default(),
            caught_up: Default::default(),
            redis_up: Default::default(),
            members: Default::default(),
            to_forget: Default::default(),
            own_latest: Default::default(),
        })
    }
}

/// What a node knows of the cluster (`GET /admin/v1/cluster`, metrics).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// Redis answered the keeper's last step (every 100 ms).
    pub redis_up: bool,
    /// The epoch this node decides in; None while sends are refused (Redis away or re-seeding).
    pub epoch: Option<String>,
    /// Every node known to have joined.
    pub members: Vec<String>,
    /// The catalog stream has been read to its end since start.
    pub caught_up: bool,
    /// The last catalog stream id applied here.
    pub stream_id: String,
    /// Document changes made here waiting for Redis to be shared.
    pub outbox: usize,
}

/// One catalog change, as replicated between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change")]
pub(crate) enum Change {
    /// An account was created (or re-published).
    Account { account: Account },
    /// The settings of (account, region) were replaced.
    Region { account_id: i64, region: String, settings: RegionSettings },
    /// An identity was created or changed.
    Identity { account_id: i64, region: String, identity: Identity },
    /// An identity was deleted.
    IdentityDeleted { account_id: i64, region: String, identity: String },
    /// An address was put on the suppression list.
    Suppressed { account_id: i64, region: String, entry: Suppressed },
    /// An address was taken off the suppression list.
    Unsuppressed { account_id: i64, region: String, address: String },
    /// A named document (template, configuration set, contact list, contact, identity
    /// attributes) was written (`doc`) or deleted (None).
    Doc { account_id: i64, region: String, kind: String, name: String, doc: Option<String>, created_ms: i64 },
    /// Every document of a kind was deleted (the contacts of a deleted list).
    DocsCleared { account_id: i64, region: String, kind: String },
    /// The operator said node `node` left the cluster for good.
    NodeForgotten { node: String },
    /// A domain's DKIM keys and settings were saved (or deleted: None).
    Dkim { account_id: i64, region: String, domain: String, record: Option<weir_store::model::DkimRecord> },
    /// An identity's custom MAIL FROM domain was saved (or removed: None).
    MailFrom { account_id: i64, region: String, identity: String, record: Option<weir_store::model::MailFromRecord> },
}

pub(super) fn unavailable(e: &ClusterError) -> SubmitError {
    // Once per send: the keeper logs the outage itself, once.
    tracing::debug!(error = %e, "shared quota store unavailable; send refused");
    SubmitError::Unavailable { retry_after: RETRY_AFTER }
}

impl Service {
    /// Whether this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        self.core.cluster.as_ref().is_some()
    }

    /// This node's name in the cluster, if any.
    pub fn cluster_node(&self) -> Option<&str> {
        self.core.cluster.as_ref().map(|c| c.epoch.node())
    }

    /// What this node knows of the cluster; None in embedded mode.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        let c = self.core.cluster.as_ref()?;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        Some(ClusterStatus {
            node: c.epoch.node().to_string(),
            redis_up: c.redis_up.load(relaxed),
            epoch: c.epoch.current(),
            members: c.members.lock().clone(),
            caught_up: c.caught_up.load(relaxed),
            stream_id: c.last.lock().clone(),
            outbox: c.outbox.try_lock().map_or(0, |o| o.len()),
        })
    }

    /// Whether the node is ready for sends (embedded: always; cluster: the shared counters are
    /// open and the catalog stream has been read to its end once).
    pub fn admitting(&self) -> bool {
        self.core
            .cluster
            .as_ref()
            .is_none_or(|c| c.epoch.current().is_some() && c.caught_up.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Keep this node in step with the cluster until the process ends: the epoch gate (re-seeding
    /// an emptied Redis from this node's ledger) and the catalog changes of the other nodes.
    pub async fn run_cluster(self: Arc<Self>) {
        let Some(shared) = self.core.cluster.as_ref().cloned() else { return };
        let mut members: Vec<String> = load_members(&self.core.documents);
        let mut ticker = tokio::time::interval(FOLLOW_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        let (mut round, mut stats_published): (u64, Option<i64>) = (0, None);
        let mut seen_epoch: Option<String> = None;
        loop {
            ticker.tick().await;
            let gone: Vec<String> = std::mem::take(&mut *shared.to_forget.lock());
            if !gone.is_empty() {
                members.retain(|m| !gone.contains(m));
                tracing::info!(nodes = ?gone, "forgot nodes that left the cluster");
                if let Err(e) = save_members(&self.core.documents, members.clone()).await {
                    tracing::error!(error = %e, "could not keep the cluster's members");
                }
            }
            let svc = self.clone();
            let step = shared.epoch.tick(&members, async move |lost| svc.seed_material(lost).await).await;
            match step {
                Ok(step) => {
                    shared.redis_up.store(true, std::sync::atomic::Ordering::Relaxed);
                    shared.members.lock().clone_from(&step.members);
                    if !healthy {
                        tracing::info!("redis answers again");
                        healthy = true;
                    }
                    // A new epoch means Redis lost its data: its stream starts again. The same
                    // epoch reopened after a failed step is no such thing (replaying the stream
                    // would take every node back through old values for a moment).
                    if let Some(e) = &step.open
                        && seen_epoch.as_ref() != Some(e)
                    {
                        if seen_epoch.is_some() {
                            *shared.last.lock() = "0".into();
                            stats_published = None;
                        }
                        seen_epoch = Some(e.clone());
                    }
                    if step.members != members {
                        members = step.members;
                        if let Err(e) = save_members(&self.core.documents, members.clone()).await {
                            tracing::error!(error = %e, "could not keep the cluster's members");
                        }
                    }
                }
                Err(e) => {
                    shared.redis_up.store(false, std::sync::atomic::Ordering::Relaxed);
                    if healthy {
                        tracing::warn!(error = %e, "redis unreachable: sends are refused, delivery goes on");
                        healthy = false;
                    }
                    shared.epoch.close();
                    continue;
                }
            }
            flush(&shared).await;
            // Statistics: everything after a start or an emptied Redis, then the current and
            // the previous bucket every second.
            round += 1;
            if stats_published.is_none() || round % 10 == 0 {
                let now_s = (self.core.now_ns() / 1_000_000_000) as i64;
                let since = match stats_published {
                    Some(_) => now_s - 2 * ledger::STATS_BUCKET_SECS,
                    None => now_s - ledger::STATS_RETENTION_SECS,
                };
                match self.quotas.publish_statistics(&shared, since).await {
                    Ok(()) => stats_published = Some(now_s),
                    Err(e) => tracing::debug!(error = %e, "statistics not shared this round"),
                }
            }
            match self.follow(&shared).await {
                Ok(()) => shared.caught_up.store(true, std::sync::atomic::Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "catalog stream unreadable"),
            }
        }
    }

    /// This node's ledger for the shared counters; when Redis lost its data (`lost`), the
    /// catalog is published again first so that nothing another node needs is gone with it.
    async fn seed_material(&self, lost: bool) -> Vec<LedgerEntry> {
        if lost && let Err(e) = self.republish().await {
            tracing::error!(error = %e, "could not re-publish the catalog to the emptied redis");
        }
        let now_s = self.core.now_ns() / 1_000_000_000;
        match self.core.ledger.load_quotas(now_s) {
            Ok(rows) => rows
                .into_iter()
                .map(|((account_id, region), rec)| LedgerEntry {
                    account_id,
                    region,
                    seconds: rec.seconds,
                    tat: rec.tat,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "could not read this node's quota ledger to re-seed redis");
                Vec::new()
            }
        }
    }

    async fn republish(&self) -> Result<(), ClusterError> {
        let Some(shared) = self.core.cluster.as_ref() else { return Ok(()) };
        let mut changes = self.directory.changes();
        changes.extend(self.dkim.changes());
        changes.extend(self.mail_from.changes());
        let docs = self.core.documents.list_accounts_docs().unwrap_or_default();
        let changes: Vec<Change> = changes
            .into_iter()
            .chain(docs.into_iter().map(|(account_id, region, kind, d)| Change::Doc {
                account_id,
                region,
                kind,
                name: d.name,
                doc: Some(d.doc),
                created_ms: d.created_ms,
            }))
            .collect();
        let floor = self.core.accounts.max_id().unwrap_or(0);
        shared.log.next_account_id(floor - 1).await?;
        for c in &changes {
            if let Change::Account { account } = c {
                shared.log.claim_account_name(&account.name, account.id).await?;
            }
            publish(shared, c).await?;
        }
        tracing::info!(changes = changes.len(), "re-published the catalog");
        Ok(())
    }

    /// Apply the catalog changes appended since the last look, in stream order.
    async fn follow(&self, shared: &Shared) -> Result<(), ClusterError> {
        loop {
            let last = shared.last.lock().clone();
            let entries = shared.log.read_after(&last, 500).await?;
            let Some(tail) = entries.last().map(|e| e.id.clone()) else { return Ok(()) };
            // This node's own changes too (its latest of each thing): applied again in stream
            // order, two nodes changing one thing at once end with the same (later) value.
            for e in &entries {
                let text = match &e.change {
                    Ok(t) => t,
                    Err(why) => {
                        tracing::warn!(id = %e.id, node = %e.node.escape_debug(), %why, "catalog entry ignored");
                        continue;
                    }
                };
                match serde_json::from_str::<Change>(text) {
                    Ok(change)
                        if e.node == shared.log.node()
                            && shared.own_latest.lock().get(&change.key()).is_some_and(|l| *l != e.id) => {}
                    Ok(change) => {
                        if let Err(err) = self.apply(change).await {
                            tracing::error!(error = %err, id = %e.id, node = %e.node, "could not apply a catalog change");
                        }
                    }
                    Err(err) => tracing::error!(error = %err, id = %e.id, "unreadable catalog change"),
                }
            }
            *shared.last.lock() = tail;
            if entries.len() < 500 {
                return Ok(());
            }
        }
    }

    /// Forget node `node` (it left the cluster for good), on every node: an emptied Redis no
    /// longer waits for it to re-seed.
    pub async fn forget_node(&self, node: &str) -> Result<(), AdminError> {
        let Some(shared) = self.core.cluster.as_ref() else {
            return Err(AdminError::Invalid("this node is not in a cluster ([cluster] redis is not set)".into()));
        };
        if node == shared.epoch.node() {
            return Err(AdminError::Invalid(format!("{node} is this node: ask another node to forget it")));
        }
        if !shared.members.lock().iter().any(|m| m == node) {
            return Err(AdminError::NotFound(format!("no node named '{node}' is known to the cluster")));
        }
        let down = |e: ClusterError| AdminError::Unavailable(format!("the cluster's shared store is unavailable: {e}"));
        shared.epoch.forget(node).await.map_err(down)?;
        let change = Change::NodeForgotten { node: node.to_string() };
        self.core.publish_first(&change).await?;
        Ok(self.apply(change).await?)
    }
}

fn shared_forget(svc: &Service, node: String) {
    if let Some(shared) = svc.core.cluster.as_ref() {
        shared.members.lock().retain(|m| *m != node);
        shared.to_forget.lock().push(node);
    }
}

impl Change {
    /// What the change is about: later changes of the same thing replace it.
    fn key(&self) -> String {
        match self {
            Change::Account { account } => format!("account:{}", account.id),
            Change::Region { account_id, region, .. } => format!("region:{account_id}:{region}"),
            Change::Identity { account_id, region, identity } => {
                format!("identity:{account_id}:{region}:{}", identity.identity)
            }
            Change::IdentityDeleted { account_id, region, identity } => {
                format!("identity:{account_id}:{region}:{identity}")
            }
            Change::Suppressed { account_id, region, entry } => {
                format!("suppressed:{account_id}:{region}:{}", entry.address)
            }
            Change::Unsuppressed { account_id, region, address } => {
                format!("suppressed:{account_id}:{region}:{address}")
            }
            Change::Doc { account_id, region, kind, name, .. } => format!("doc:{account_id}:{region}:{kind}:{name}"),
            Change::DocsCleared { account_id, region, kind } => format!("docs:{account_id}:{region}:{kind}"),
            Change::Dkim { account_id, region, domain, .. } => format!("dkim:{account_id}:{region}:{domain}"),
            Change::MailFrom { account_id, region, identity, .. } => {
                format!("mail-from:{account_id}:{region}:{identity}")
            }
            Change::NodeForgotten { node } => format!("node:{node}"),
        }
    }
}

/// Put `value` under `key`, or remove `key` for None (a mirrored map following its record).
pub(super) fn set_or_remove<K: Eq + std::hash::Hash, V>(
    map: &mut std::collections::HashMap<K, V>,
    key: K,
    value: Option<V>,
) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// Append `change` to the stream, remembering it as this node's latest change of its thing.
pub(super) async fn publish(shared: &Shared, change: &Change) -> Result<String, ClusterError> {
    let id = shared.log.publish(&to_json(change)).await?;
    shared.own_latest.lock().insert(change.key(), id.clone());
    Ok(id)
}

/// Publish what waits in the outbox, in order, up to the first failure.
pub(super) async fn flush(shared: &Shared) {
    let mut outbox = shared.outbox.lock().await;
    while let Some(change) = outbox.front() {
        match publish(shared, change).await {
            Ok(_) => {
                outbox.pop_front();
            }
            Err(e) => {
                tracing::warn!(error = %e, waiting = outbox.len(), "document changes wait for redis to be shared");
                return;
            }
        }
    }
}

fn to_json(c: &Change) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

const CLUSTER_KIND: &str = "cluster";

/// This node's name if the operator gave none: made once, kept in the store.
pub async fn stored_node_name(documents: &Documents) -> Result<String, StoreError> {
    let scope = (0, "", CLUSTER_KIND);
    if let Some(d) = documents.get(scope, "node")? {
        return Ok(d.doc);
    }
    let name = format!("node-{:08x}", rand::random::<u32>());
    documents.put(scope, "node", name.clone(), 0, Put::Create, "node name").await?;
    Ok(name)
}

fn load_members(documents: &Documents) -> Vec<String> {
    let doc = documents.get((0, "", CLUSTER_KIND), "members");
    doc.ok().flatten().and_then(|d| serde_json::from_str(&d.doc).ok()).unwrap_or_default()
}

async fn save_members(documents: &Documents, m: Vec<String>) -> Result<(), StoreError> {
    let doc = serde_json::to_string(&m).unwrap_or_default();
    documents.put((0, "", CLUSTER_KIND), "members", doc, 0, Put::Upsert, "cluster members").await
}
