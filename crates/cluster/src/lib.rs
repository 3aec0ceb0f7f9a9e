//! Cluster mode: several weir nodes share one set of quotas through Redis or Valkey.
//!
//! # Layout
//! - [`RedisQuota`]: the quota decision of `weir-quota` (rolling 24 h at one-second resolution,
//!   then the token bucket with debt; paused → daily → rate; refusals charge nothing) executed
//!   atomically by one Lua script per decision (`quota.lua`), all keys of an (account, region)
//!   under one hash tag, on the server's clock, with an idempotency key per message so that a
//!   call retried after a timeout is not charged twice.
//!
//! The pure `weir-quota` engine stays the reference: `tests/lua_matches_pure.rs` drives both
//! with the same random request sequences and requires identical decisions. The script works in
//! microseconds (Lua numbers are doubles), so rates are exact to the microsecond.

use std::time::Duration;

use redis::aio::ConnectionManager;
use weir_quota::{Charge, Limits, Nanos, Refusal};

/// How long an idempotency key remembers its answer, seconds.
pub const IDEMPOTENCY_TTL_SECS: u64 = 3600;

/// Failures talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The connection or the command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something it never answers.
    #[error("unexpected answer from the quota script: {0:?}")]
    Answer(Vec<i64>),
}

/// The quota decisions of every (account, region), in Redis.
#[derive(Clone)]
pub struct RedisQuota {
    conn: ConnectionManager,
    script: redis::Script,
}

/// The hash tag that puts every key of one (account, region) in one cluster slot.
fn tag(account_id: i64, region: &str) -> String {
    format!("{{weir:q:{account_id}:{region}}}")
}

impl RedisQuota {
    /// Connect to `url` (`redis://host:port/db`); reconnects by itself.
    pub async fn connect(url: &str) -> Result<RedisQuota, ClusterError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(RedisQuota { conn, script: redis::Script::new(include_str!("quota.lua")) })
    }

    /// Decide and, if accepted, charge `n` recipients. `now` is for tests (the server's clock
    /// otherwise); `message_id` makes a retried call return the first answer.
    pub async fn admit(
        &self,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        message_id: Option<&str>,
        now: Option<Nanos>,
    ) -> Result<Result<Charge, Refusal>, ClusterError> {
        let a = self.run("admit", account_id, region, limits, n, message_id, now).await?;
        match a.as_slice() {
            [0, second, count, before, after] => Ok(Ok(Charge {
                second: *second as u64,
                count: *count as u32,
                tat_before: *before as u64 * 1000,
                tat_after: *after as u64 * 1000,
            })),
            other => refusal(other).map(Err).ok_or_else(|| ClusterError::Answer(other.to_vec())),
        }
    }

    /// Would `n` recipients pass now? Charges nothing.
    pub async fn check(
        &self,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        now: Option<Nanos>,
    ) -> Result<Result<(), Refusal>, ClusterError> {
        let a = self.run("check", account_id, region, limits, n, None, now).await?;
        match a.as_slice() {
            [0] => Ok(Ok(())),
            other => refusal(other).map(Err).ok_or_else(|| ClusterError::Answer(other.to_vec())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        op: &str,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        message_id: Option<&str>,
        now: Option<Nanos>,
    ) -> Result<Vec<i64>, ClusterError> {
        let t = tag(account_id, region);
        let (emission_us, tau_us) = match limits.rate_params() {
            // Below a microsecond per token the script's resolution is the limit.
            Some(p) => ((p.emission_ns / 1000).max(1), p.tau_ns / 1000),
            None => (0, 0),
        };
        let idem = message_id.map(|m| format!("{t}:i:{m}")).unwrap_or_default();
        let mut inv = self.script.prepare_invoke();
        inv.key(format!("{t}:w"))
            .key(format!("{t}:s"))
            .key(format!("{t}:m"))
            .key(idem)
            .arg(op)
            .arg(now.map(|n| (n / 1000).to_string()).unwrap_or_default())
            .arg(n)
            .arg(if limits.sending_enabled { 1 } else { 0 })
            .arg(limits.max_24h.map_or(-1, |m| m as i64))
            .arg(emission_us)
            .arg(tau_us)
            .arg(IDEMPOTENCY_TTL_SECS);
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }
}

fn us(v: i64) -> Duration {
    Duration::from_micros(v.max(0) as u64)
}

/// A refusal answer of the script, as the pure engine's type (times back from microseconds).
fn refusal(a: &[i64]) -> Option<Refusal> {
    Some(match a {
        [1] => Refusal::SendingPaused,
        [2, -1] => Refusal::DailyQuotaExceeded { retry_after: None },
        [2, r] => Refusal::DailyQuotaExceeded { retry_after: Some(us(*r)) },
        [3, r] => Refusal::MaxSendRateExceeded { retry_after: us(*r) },
        _ => return None,
    })
}
