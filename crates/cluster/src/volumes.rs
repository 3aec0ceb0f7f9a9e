//! Sending volumes shared for reputation: each node publishes its own delivery attempts,
//! bounces and complaints per (account, region, time bucket), and judges on the sum of every
//! node's, so that all nodes reach the same verdict.

use crate::{ClusterError, Redis};

/// The (account, region)s that have volumes.
const KEYS: &str = "weir:rep:keys";

/// One bucket of one (account, region): (account id, region, bucket start (Unix s), delivery
/// attempts, bounces, complaints).
pub type Volume = (i64, String, i64, i64, i64, i64);

fn key(account_id: i64, region: &str) -> String {
    format!("weir:rep:{account_id}:{region}")
}

/// Publish `own` (node `node`'s volumes since `since`) and return every node's since `since`.
/// Entries live `ttl_s` seconds after their last publication.
pub async fn publish_and_sum(
    redis: &Redis,
    node: &str,
    own: &[Volume],
    since: i64,
    ttl_s: i64,
) -> Result<Vec<Volume>, ClusterError> {
    let mut by_key: std::collections::BTreeMap<(i64, &str), Vec<&Volume>> = Default::default();
    for v in own {
        by_key.entry((v.0, v.1.as_str())).or_default().push(v);
    }
    for ((account_id, region), vols) in &by_key {
        let k = key(*account_id, region);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&k);
        for v in vols {
            cmd.arg(format!("{node}|{}", v.2)).arg(format!("{},{},{}", v.3, v.4, v.5));
        }
        redis.query::<i64>(&cmd).await?;
        redis.query::<i64>(redis::cmd("EXPIRE").arg(&k).arg(ttl_s)).await?;
        redis.query::<i64>(redis::cmd("SADD").arg(KEYS).arg(format!("{account_id}:{region}"))).await?;
    }
    let keys: Vec<String> = redis.query(redis::cmd("SMEMBERS").arg(KEYS)).await?;
    let mut out = Vec::new();
    for ar in keys {
        let Some((id, region)) = ar.split_once(':') else { continue };
        let Ok(account_id) = id.parse::<i64>() else { continue };
        let fields: Vec<(String, String)> = redis.query(redis::cmd("HGETALL").arg(key(account_id, region))).await?;
        for (f, v) in fields {
            let Some(bucket) = f.rsplit_once('|').and_then(|(_, b)| b.parse::<i64>().ok()) else { continue };
            let n: Vec<i64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
            if bucket >= since && n.len() == 3 {
                out.push((account_id, region.to_string(), bucket, n[0], n[1], n[2]));
            }
        }
    }
    Ok(out)
}
