//! Catalog replication: every change to accounts, credentials, identities, region settings and
//! suppression is appended to one Redis stream; every node applies the entries of the others
//! in stream order. Account ids come from one shared sequence, and names are claimed in Redis,
//! so two nodes never give one id or one name to two accounts.

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
    /// The change, as the catalog serialises it.
    pub change: String,
}

/// The catalog stream, as one node sees it.
#[derive(Clone)]
pub struct CatalogLog {
    redis: Redis,
    node: String,
}

impl CatalogLog {
    /// The stream for node `node`.
    pub fn new(redis: Redis, node: &str) -> CatalogLog {
        CatalogLog { redis, node: node.to_string() }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Append `change`; returns its stream id.
    pub async fn publish(&self, change: &str) -> Result<String, ClusterError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(STREAM_KEY).arg("*").arg("node").arg(&self.node).arg("change").arg(change);
        self.redis.query(&cmd).await
    }

    /// Up to `count` entries after stream id `last` ("0" for all).
    pub async fn read_after(&self, last: &str, count: usize) -> Result<Vec<Entry>, ClusterError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(STREAM_KEY).arg(format!("({last}")).arg("+").arg("COUNT").arg(count);
        if last == "0" {
            cmd = redis::cmd("XRANGE");
            cmd.arg(STREAM_KEY).arg("-").arg("+").arg("COUNT").arg(count);
        }
        let rows: Vec<(String, Vec<String>)> = self.redis.query(&cmd).await?;
        Ok(rows
            .into_iter()
            .map(|(id, fields)| {
                let field = |name: &str| {
                    fields.chunks(2).find(|kv| kv[0] == name).and_then(|kv| kv.get(1)).cloned().unwrap_or_default()
                };
                Entry { node: field("node"), change: field("change"), id }
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
