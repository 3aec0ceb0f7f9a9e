//! Sending statistics shared between nodes: each node publishes its own GetSendStatistics
//! buckets (delivery attempts, bounces, complaints, rejects per (account, region, 15-minute
//! bucket)); GetSendStatistics and reputation enforcement read the sum of every node's, so that
//! any node answers for the whole cluster and all judge alike.

use std::collections::BTreeMap;

use crate::{ClusterError, Redis};

/// The (account, region)s that have statistics.
const KEYS: &str = "weir:stats:keys";

/// One bucket of one (account, region): account id, region, bucket start (Unix s), delivery
/// attempts, bounces, complaints, rejects.
pub type Row = (i64, String, i64, i64, i64, i64, i64);

fn key(account_id: i64, region: &str) -> String {
    format!("weir:stats:{account_id}:{region}")
}

/// Publish node `node`'s `rows`; each (account, region) keeps its statistics `ttl_s` seconds
/// after its last publication.
pub async fn publish(redis: &Redis, node: &str, rows: &[Row], ttl_s: i64) -> Result<(), ClusterError> {
    let mut by_key: BTreeMap<(i64, &str), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_key.entry((r.0, r.1.as_str())).or_default().push(r);
    }
    for ((account_id, region), rows) in by_key {
        let k = key(account_id, region);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&k);
        for r in rows {
            cmd.arg(format!("{node}|{}", r.2)).arg(format!("{},{},{},{}", r.3, r.4, r.5, r.6));
        }
        redis.query::<i64>(&cmd).await?;
        redis.query::<i64>(redis::cmd("EXPIRE").arg(&k).arg(ttl_s)).await?;
        redis.query::<i64>(redis::cmd("SADD").arg(KEYS).arg(format!("{account_id}:{region}"))).await?;
    }
    Ok(())
}

/// Every node's buckets of (account, region) since `since`, summed per bucket, in bucket order;
/// node `node`'s own are taken from `own` (fresher than what it last published).
pub async fn sum(
    redis: &Redis,
    node: &str,
    own: &[Row],
    account_id: i64,
    region: &str,
    since: i64,
) -> Result<Vec<Row>, ClusterError> {
    let fields: Vec<(String, String)> = redis.query(redis::cmd("HGETALL").arg(key(account_id, region))).await?;
    let mut out: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
    for (f, v) in fields {
        let Some((n, bucket)) = f.rsplit_once('|') else { continue };
        let Ok(bucket) = bucket.parse::<i64>() else { continue };
        let x: Vec<i64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
        if n == node || bucket < since || x.len() != 4 {
            continue;
        }
        let e = out.entry(bucket).or_default();
        for i in 0..4 {
            e[i] += x[i];
        }
    }
    for r in own.iter().filter(|r| r.0 == account_id && r.1 == region && r.2 >= since) {
        let e = out.entry(r.2).or_default();
        for (i, v) in [r.3, r.4, r.5, r.6].into_iter().enumerate() {
            e[i] += v;
        }
    }
    Ok(out.into_iter().map(|(b, x)| (account_id, region.to_string(), b, x[0], x[1], x[2], x[3])).collect())
}

/// Every (account, region) that has statistics in Redis, plus those of `own`.
pub async fn keys(redis: &Redis, own: &[Row]) -> Result<Vec<(i64, String)>, ClusterError> {
    let listed: Vec<String> = redis.query(redis::cmd("SMEMBERS").arg(KEYS)).await?;
    let mut out: Vec<(i64, String)> = listed
        .iter()
        .filter_map(|k| k.split_once(':').and_then(|(id, r)| Some((id.parse().ok()?, r.to_string()))))
        .collect();
    out.extend(own.iter().map(|r| (r.0, r.1.clone())));
    out.sort();
    out.dedup();
    Ok(out)
}
