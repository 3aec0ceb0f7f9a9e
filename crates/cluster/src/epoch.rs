//! The epoch gate: a Redis that lost its data (restarted without persistence, or a failover to
//! an empty replica) must not reset anyone's quota. Decisions carry the epoch the node believes
//! open and the quota script refuses to decide in any other; when `weir:epoch` is missing,
//! every node adds its own ledger to the counters, and the epoch opens once every node known to
//! have been a member has done so (or, for a member that never comes back, after a bounded
//! wait, logged).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{ClusterError, EPOCH_KEY, LedgerEntry, RedisQuota};

/// The set of nodes that ever joined (as Redis knows it).
pub const NODES_KEY: &str = "weir:nodes";
/// The epoch being seeded while none is open.
const SEEDING_KEY: &str = "weir:seeding";

fn seeded_key(epoch: &str) -> String {
    format!("weir:seeded:{epoch}")
}

/// Opens the seeded epoch only if it is still the one being seeded (the data may have been lost
/// again meanwhile).
const OPEN: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[2], ARGV[1], 'NX') end return false";

/// Ends an epoch only if it is still the open one (another node may have ended it and re-seeded
/// already), and the seeding of it, so that the next one is new and starts from empty counters.
const END: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end redis.call('DEL', KEYS[1]) if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end return 1";

/// This node's view of the epoch.
pub struct Epoch {
    quota: RedisQuota,
    node: String,
    reseed_wait: Duration,
    open: Mutex<Option<String>>,
    waiting_since: Mutex<Option<Instant>>,
}

/// What one step of the keeper saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Every node known to have joined (to be kept by the caller, who passes it back).
    pub members: Vec<String>,
    /// The epoch open for this node after the step.
    pub open: Option<String>,
    /// The epoch changed: whatever the node read from Redis under the old one is gone.
    pub changed: bool,
}

impl Epoch {
    /// The gate of node `node`; closed until the first [`Epoch::tick`].
    pub fn new(quota: RedisQuota, node: &str, reseed_wait: Duration) -> Epoch {
        Epoch { quota, node: node.to_string(), reseed_wait, open: Mutex::new(None), waiting_since: Mutex::new(None) }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The epoch decisions are made in, if open.
    pub fn current(&self) -> Option<String> {
        self.open.lock().clone()
    }

    /// Stop deciding until the next tick finds an epoch open (the script said the epoch is
    /// not ours).
    pub fn close(&self) {
        *self.open.lock() = None;
    }

    /// One step: join, and open, seed or wait. `known` are the members the caller kept from
    /// earlier steps; `ledger` gives this node's ledger when the node has to seed, told whether
    /// Redis lost its data (so that the caller re-publishes what else lived there).
    pub async fn tick(
        &self,
        known: &[String],
        ledger: impl AsyncFnOnce(bool) -> Vec<LedgerEntry>,
    ) -> Result<Step, ClusterError> {
        let r = self.quota.redis();
        r.query::<i64>(redis::cmd("SADD").arg(NODES_KEY).arg(&self.node)).await?;
        let mut members: Vec<String> = r.query(redis::cmd("SMEMBERS").arg(NODES_KEY)).await?;
        members.extend(known.iter().cloned());
        members.sort();
        members.dedup();
        let before = self.current();
        let epoch: Option<String> = r.query(redis::cmd("GET").arg(EPOCH_KEY)).await?;
        let open = match epoch {
            Some(e) if before.as_deref() == Some(e.as_str()) => Some(e),
            Some(e) => {
                // An epoch opened without us (or before we joined): add our ledger once.
                self.seed_once(&e, false, ledger).await?;
                *self.waiting_since.lock() = None;
                tracing::info!(epoch = %e, node = %self.node, "shared quota counters open");
                Some(e)
            }
            None => {
                if before.is_some() {
                    tracing::warn!(node = %self.node, "redis lost the shared quota counters; re-seeding before admitting again");
                }
                *self.open.lock() = None;
                let fresh = format!("{:016x}", rand::random::<u64>());
                r.query::<Option<String>>(redis::cmd("SET").arg(SEEDING_KEY).arg(&fresh).arg("NX")).await?;
                let seeding: Option<String> = r.query(redis::cmd("GET").arg(SEEDING_KEY)).await?;
                let Some(s) = seeding else { return Ok(Step { members, open: None, changed: before.is_some() }) };
                self.seed_once(&s, true, ledger).await?;
                let seeded: Vec<String> = r.query(redis::cmd("SMEMBERS").arg(seeded_key(&s))).await?;
                let missing: Vec<&String> = members.iter().filter(|m| !seeded.contains(m)).collect();
                let since = *self.waiting_since.lock().get_or_insert_with(Instant::now);
                if missing.is_empty() || since.elapsed() >= self.reseed_wait {
                    if !missing.is_empty() {
                        tracing::warn!(epoch = %s, ?missing, waited = ?since.elapsed(), "opening the shared quota counters without members that did not re-seed");
                    }
                    let mut open = redis::cmd("EVAL");
                    open.arg(OPEN).arg(2).arg(SEEDING_KEY).arg(EPOCH_KEY).arg(&s);
                    r.query::<Option<String>>(&open).await?;
                }
                // Opened (by us or another node) on the next step, once `weir:epoch` reads back.
                None
            }
        };
        let changed = before != open;
        *self.open.lock() = open.clone();
        Ok(Step { members, open, changed })
    }

    /// End `epoch` (counters of it were found lost): every node re-seeds a new epoch from its
    /// ledger, as after an emptied Redis.
    pub async fn end(&self, epoch: &str) -> Result<(), ClusterError> {
        self.close();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(END).arg(2).arg(EPOCH_KEY).arg(SEEDING_KEY).arg(epoch);
        self.quota.redis().query::<i64>(&cmd).await.map(|_| ())
    }

    /// Take `node` out of the set of nodes that ever joined (it left for good): an emptied
    /// Redis no longer waits for it. A node that is still alive joins again at its next step.
    pub async fn forget(&self, node: &str) -> Result<(), ClusterError> {
        self.quota.redis().query::<i64>(redis::cmd("SREM").arg(NODES_KEY).arg(node)).await.map(|_| ())
    }

    async fn seed_once(
        &self,
        epoch: &str,
        lost: bool,
        ledger: impl AsyncFnOnce(bool) -> Vec<LedgerEntry>,
    ) -> Result<(), ClusterError> {
        let r = self.quota.redis();
        let key = seeded_key(epoch);
        let done: bool = r.query(redis::cmd("SISMEMBER").arg(&key).arg(&self.node)).await?;
        if done {
            return Ok(());
        }
        let entries = ledger(lost).await;
        for e in &entries {
            self.quota.seed(epoch, e).await?;
        }
        r.query::<i64>(redis::cmd("SADD").arg(&key).arg(&self.node)).await?;
        tracing::info!(epoch, node = %self.node, entries = entries.len(), "seeded the shared quota counters from this node's ledger");
        Ok(())
    }
}
