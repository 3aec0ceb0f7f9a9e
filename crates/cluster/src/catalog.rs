//! Catalog replication: every change to accounts, credentials, identities, region settings and
//! suppression is appended to one Redis stream; every node applies the entries of the others
//! in stream order. Account ids come from one shared sequence, and names are claimed in Redis,
//! so two nodes never give one id or one name to two accounts.
//!
//! Every entry is sealed with the cluster key ([`crate::seal`]) under its node's name and a time
//! that rises with each entry of that node: an entry that does not open is forged, one whose time
//! is not above the last of its node is a replay; both are skipped and logged.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::seal::ClusterKey;
use crate::{ClusterError, Redis};

/// The stream of catalog changes.
pub const STREAM_KEY: &str = "weir:catalog";
const SEQUENCE_KEY: &str = "weir:catalog:account-id";
const NAMES_KEY: &str = "weir:catalog:account-names";

/// The next id above both the shared sequence and `floor`.
const NEXT_ID: &str = "local c = tonumber(redis.call('GET', KEYS[1]) or '0') local f = tonumber(ARGV[1]) if c < f then c = f end c = c + 1 redis.call('SET', KEYS[1], c) return c";

/// One change, as appended by a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stream id (`ms-seq`).
    pub id: String,
    /// The node that made the change.
    pub node: String,
    /// The change, as the catalog serialises it; why it was refused if it was.
    pub change: Result<String, Refused>,
}

/// Why an entry of the stream is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not sealed with the cluster key.
    #[error("{0}")]
    Forged(#[from] crate::seal::SealError),
    /// An entry of its node no newer than one already read: a copy added again.
    #[error("a replay of an earlier entry of node {0}")]
    Replayed(String),
}

/// The catalog stream, as one node sees it.
#[derive(Clone)]
pub struct CatalogLog {
    redis: Redis,
    node: String,
    key: ClusterKey,
    /// The latest entry time read per node (reset when the stream is read from the start).
    latest: Arc<Mutex<HashMap<String, u64>>>,
    /// The time of this node's latest entry: the next one is above it.
    own: Arc<Mutex<u64>>,
    /// One append at a time: this node's entries reach the stream in the order of their times.
    publishing: Arc<tokio::sync::Mutex<()>>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl CatalogLog {
    /// The stream for node `node`, sealed with `key`.
    pub fn new(redis: Redis, node: &str, key: ClusterKey) -> CatalogLog {
        CatalogLog {
            redis,
            node: node.to_string(),
            key,
            latest: Default::default(),
            own: Default::default(),
            publishing: Default::default(),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Append `change`; returns its stream id.
    pub async fn publish(&self, change: &str) -> Result<String, ClusterError> {
        let _one = self.publishing.lock().await;
        let ts = {
            let read = self.latest.lock().get(&self.node).map_or(0, |t| t + 1);
            let mut own = self.own.lock();
            *own = now_us().max(*own + 1).max(read);
            *own
        };
        let sealed = self.key.seal(&self.node, ts, change);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(STREAM_KEY).arg("*").arg("node").arg(&self.node).arg("ts").arg(ts).arg("sealed").arg(sealed);
        self.redis.query(&cmd).await
    }

    /// Up to `count` entries after stream id `last` ("0" for all: the replay check starts over).
    pub async fn read_after(&self, last: &str, count: usize) -> Result<Vec<Entry>, ClusterError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(STREAM_KEY).arg(format!("({last}")).arg("+").arg("COUNT").arg(count);
        if last == "0" {
            cmd = redis::cmd("XRANGE");
            cmd.arg(STREAM_KEY).arg("-").arg("+").arg("COUNT").arg(count);
        }
        let rows: Vec<(String, Vec<String>)> = self.redis.query(&cmd).await?;
        let mut latest = self.latest.lock();
        if last == "0" {
            latest.clear();
        }
        Ok(rows
            .into_iter()
            .map(|(id, fields)| {
                let field = |name: &str| {
                    fields.chunks(2).find(|kv| kv[0] == name).and_then(|kv| kv.get(1)).cloned().unwrap_or_default()
                };
                let node = field("node");
                let ts: u64 = field("ts").parse().unwrap_or(0);
                let change = self.key.open(&node, ts, &field("sealed")).map_err(Refused::from).and_then(|c| {
                    // Each node's entries reach the stream in the order of their times.
                    let seen = latest.entry(node.clone()).or_insert(0);
                    if ts <= *seen {
                        return Err(Refused::Replayed(node.clone()));
                    }
                    *seen = ts;
                    Ok(c)
                });
                Entry { node, change, id }
            })
            .collect())
    }

    /// A new account id, above every id the cluster and this node (`floor`) have used.
    pub async fn next_account_id(&self, floor: i64) -> Result<i64, ClusterError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(NEXT_ID).arg(1).arg(SEQUENCE_KEY).arg(floor);
        self.redis.query(&cmd).await
    }

    /// Claim account name `name` for `id`; false if another id holds it.
    pub async fn claim_account_name(&self, name: &str, id: i64) -> Result<bool, ClusterError> {
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(NAMES_KEY).arg(name).arg(id);
        if self.redis.query::<i64>(&cmd).await? == 1 {
            return Ok(true);
        }
        let holder: Option<i64> = self.redis.query(redis::cmd("HGET").arg(NAMES_KEY).arg(name)).await?;
        Ok(holder == Some(id))
    }
}
