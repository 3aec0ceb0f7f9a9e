//! The SQL of the quota ledger and the sending statistics.

use rusqlite::{Connection, params};

use super::{STATS_RETENTION_SECS, stats_bucket};
use crate::Result;
use crate::model::*;

/// Count one rejected send request in the statistics.
pub fn record_reject(c: &Connection, account_id: i64, region: &str, now_ms: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO send_stats (account_id, region, bucket, rejects) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (account_id, region, bucket) DO UPDATE SET rejects = rejects + 1",
    )?
    .execute(params![account_id, region, stats_bucket(now_ms)])?;
    Ok(())
}

/// Persisted quota counters of one (account, region).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaRecord {
    /// (second, recipients) inside the window.
    pub seconds: Vec<(u64, u64)>,
    /// Rate bucket state.
    pub tat: u64,
}

/// Load every (account, region)'s quota counters for the window ending at `now_s`.
pub fn load_quotas(c: &Connection, now_s: u64) -> Result<Vec<((i64, String), QuotaRecord)>> {
    let mut map: std::collections::BTreeMap<(i64, String), QuotaRecord> = Default::default();
    let since = now_s.saturating_sub(86_400) as i64;
    let mut st = c.prepare("SELECT account_id, region, second, count FROM quota_seconds WHERE second > ?1")?;
    let rows = st.query_map([since], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
    })?;
    for row in rows {
        let (a, reg, s, n) = row?;
        map.entry((a, reg)).or_default().seconds.push((s as u64, n as u64));
    }
    let mut st = c.prepare("SELECT account_id, region, tat FROM quota_bucket")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    for row in rows {
        let (a, reg, tat) = row?;
        map.entry((a, reg)).or_default().tat = tat as u64;
    }
    Ok(map.into_iter().collect())
}

/// Drop quota seconds older than the window and statistics older than two weeks.
pub fn prune(c: &Connection, now_s: i64) -> Result<()> {
    c.execute("DELETE FROM quota_seconds WHERE second <= ?1", [now_s - 86_400])?;
    c.execute("DELETE FROM send_stats WHERE bucket < ?1", [now_s - STATS_RETENTION_SECS])?;
    Ok(())
}

/// GetSendStatistics data points of the last two weeks (non-empty buckets only).
pub fn send_statistics(c: &Connection, account_id: i64, region: &str, now_s: i64) -> Result<Vec<SendDataPoint>> {
    let mut st = c.prepare_cached(
        "SELECT bucket, delivery_attempts, bounces, complaints, rejects FROM send_stats
         WHERE account_id = ?1 AND region = ?2 AND bucket >= ?3 ORDER BY bucket",
    )?;
    let rows = st.query_map(params![account_id, region, now_s - STATS_RETENTION_SECS], |r| {
        Ok(SendDataPoint {
            bucket: r.get(0)?,
            delivery_attempts: r.get(1)?,
            bounces: r.get(2)?,
            complaints: r.get(3)?,
            rejects: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Recipients sent to, bounces and complaints of every (account, region) per statistics bucket
/// (start, Unix seconds) since `from_s`: the volume reputation is judged on.
pub type Volume = (i64, String, i64, i64, i64, i64);

/// See [`Volume`].
pub fn reputation_volumes(c: &Connection, from_s: i64) -> Result<Vec<Volume>> {
    let mut st = c.prepare_cached(
        "SELECT account_id, region, bucket, delivery_attempts, bounces, complaints FROM send_stats WHERE bucket >= ?1",
    )?;
    let rows = st.query_map([from_s], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One statistics bucket of one (account, region): account id, region, bucket, delivery
/// attempts, bounces, complaints, rejects.
pub type StatsRow = (i64, String, i64, i64, i64, i64, i64);

/// Every statistics bucket of every (account, region) since `from_s` (cluster mode shares them).
pub fn stats_rows(c: &Connection, from_s: i64) -> Result<Vec<StatsRow>> {
    let mut st = c.prepare_cached(
        "SELECT account_id, region, bucket, delivery_attempts, bounces, complaints, rejects FROM send_stats
         WHERE bucket >= ?1",
    )?;
    let rows =
        st.query_map([from_s], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
