//! Cluster mode: several weir nodes share one set of quotas and one catalog through Redis or
//! Valkey.
//!
//! # Layout
//! - [`Redis`]: one lazily (re)connected multiplexed connection with a bounded response time;
//!   every failure is a [`ClusterError`] the caller turns into "fail closed".
//! - [`RedisQuota`]: the quota decision of `weir-quota` (rolling 24 h at one-second resolution,
//!   then the token bucket with debt; paused → daily → rate; refusals charge nothing) executed
//!   atomically by one Lua script per decision (`quota.lua`), all keys of an (account, region)
//!   under one hash tag, on the server's clock, with an idempotency key per message so that a
//!   call retried after a timeout is not charged twice. `seed.lua` adds a node's ledger back
//!   after Redis lost its data; `refund.lua` gives back a charge whose message was not spooled.
//! - [`epoch`]: the gate that keeps an emptied Redis from admitting anything until every known
//!   node has re-seeded it from its ledger.
//! - [`catalog`]: the stream through which nodes replicate catalog changes, and the shared
//!   account-id sequence.
//! - [`stats`]: every node's sending statistics, summed for GetSendStatistics and reputation.
//!
//! The pure `weir-quota` engine stays the reference: `tests/lua_matches_pure.rs` drives both
//! with the same random request sequences and requires identical decisions. The script works in
//! microseconds (Lua numbers are doubles), so rates are exact to the microsecond.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use weir_quota::{Charge, Limits, Nanos, Refusal};

pub mod catalog;
pub mod epoch;
pub mod seal;
pub mod stats;

/// How long an idempotency key remembers its answer, seconds: long enough for a call retried
/// after a timeout, short enough that a busy cluster does not hold one key per message for long.
pub const IDEMPOTENCY_TTL_SECS: u64 = 30;

/// The key holding the epoch in which the shared counters are open for decisions.
pub const EPOCH_KEY: &str = "weir:epoch";

/// Failures talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The connection or the command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the configured timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The script answered something it never answers.
    #[error("unexpected answer from the quota script: {0:?}")]
    Answer(Vec<i64>),
    /// The shared counters are not open in the node's epoch (Redis lost its data, or the nodes
    /// are re-seeding it): nothing may be decided.
    #[error("the shared quota counters are being re-seeded")]
    NotSeeded,
    /// Counters this node knows were charged are gone from Redis (evicted, deleted): the cluster
    /// must re-seed, as after an emptied Redis, never start them again from zero.
    #[error("the shared quota counters of an account were lost")]
    Lost,
    /// The configuration cannot work (a URL without a password, a certificate that does not parse).
    #[error("{0}")]
    Config(String),
}

/// One connection to Redis, made on first use and remade by itself after a failure; every
/// command answers within `timeout` or fails.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    timeout: Duration,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// `redis://:password@host:port/db`, or `rediss://…` for TLS.
    pub url: String,
    /// PEM certificates trusted for `rediss://` (default: the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Whether a URL without a password is accepted (a Redis no one else can reach).
    pub allow_no_password: bool,
}

impl Redis {
    /// A handle on `target`; nothing is dialled yet. A URL without a password is refused unless
    /// allowed: whoever reaches Redis would otherwise hold every tenant's quota and catalog.
    pub fn new(target: &RedisTarget, timeout: Duration) -> Result<Redis, ClusterError> {
        let info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(target.url.as_str())?;
        if info.redis.password.as_deref().is_none_or(str::is_empty) && !target.allow_no_password {
            return Err(ClusterError::Config(
                "cluster.redis has no password: set Redis's requirepass (or an ACL user) and put it in the URL \
                 (redis://:PASSWORD@host:port/), or set cluster.allow_no_password = true for a Redis no other \
                 user or host can reach"
                    .into(),
            ));
        }
        let tls = matches!(info.addr, redis::ConnectionAddr::TcpTls { .. });
        let client = match (&target.ca_pem, tls) {
            (Some(ca), true) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            )?,
            (Some(_), false) => {
                return Err(ClusterError::Config("cluster.ca_file is set but cluster.redis is not rediss://".into()));
            }
            (None, _) => redis::Client::open(info)?,
        };
        Ok(Redis { client, timeout, conn: Default::default() })
    }

    /// The bound on every command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn conn(&self) -> Result<ConnectionManager, ClusterError> {
        let init = async {
            let client = self.client.clone();
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout)
                .set_number_of_retries(1)
                .set_max_delay(200);
            Ok::<_, ClusterError>(ConnectionManager::new_with_config(client, config).await?)
        };
        let c = tokio::time::timeout(self.timeout, self.conn.get_or_try_init(|| init))
            .await
            .map_err(|_| ClusterError::Timeout(self.timeout))??;
        Ok(c.clone())
    }

    /// Run `cmd` within the timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClusterError> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| ClusterError::Timeout(self.timeout))?
            .map_err(ClusterError::from)
    }

    /// Run a prepared script invocation within the timeout.
    async fn invoke<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T, ClusterError> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, inv.invoke_async(&mut c))
            .await
            .map_err(|_| ClusterError::Timeout(self.timeout))?
            .map_err(ClusterError::from)
    }
}

/// The quota decisions of every (account, region), in Redis.
#[derive(Clone)]
pub struct RedisQuota {
    redis: Redis,
    decide: redis::Script,
    seed: redis::Script,
    refund: redis::Script,
}

/// The hash tag that puts every key of one (account, region) in one cluster slot.
fn tag(account_id: i64, region: &str) -> String {
    format!("{{weir:q:{account_id}:{region}}}")
}

/// The counters of one (account, region) in one epoch: window, seconds, state. Each epoch has
/// its own, so a re-seeded epoch starts from exactly the nodes' ledgers, never on top of what an
/// earlier epoch left.
fn counter_keys(account_id: i64, region: &str, epoch: &str) -> [String; 3] {
    let t = tag(account_id, region);
    [format!("{t}:{epoch}:w"), format!("{t}:{epoch}:s"), format!("{t}:{epoch}:m")]
}

/// One node's ledger of one (account, region): recipients per second, and the bucket's
/// theoretical arrival time (ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Account row id (the same on every node).
    pub account_id: i64,
    /// Region.
    pub region: String,
    /// (Unix second, recipients) in the last 24 hours.
    pub seconds: Vec<(u64, u64)>,
    /// Theoretical arrival time, Unix ns.
    pub tat: Nanos,
}

impl RedisQuota {
    /// Decisions through `redis`.
    pub fn new(redis: Redis) -> RedisQuota {
        RedisQuota {
            redis,
            decide: redis::Script::new(include_str!("quota.lua")),
            seed: redis::Script::new(include_str!("seed.lua")),
            refund: redis::Script::new(include_str!("refund.lua")),
        }
    }

    /// The connection underneath.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Decide and, if accepted, charge `n` recipients, in `epoch`. `now` is for tests (the
    /// server's clock otherwise); `message_id` makes a retried call return the first answer;
    /// `expect`: this node charged (account, region) within the window, so its counters must be
    /// there ([`ClusterError::Lost`] if not).
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        epoch: &str,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        message_id: Option<&str>,
        now: Option<Nanos>,
        expect: bool,
    ) -> Result<Result<Charge, Refusal>, ClusterError> {
        let a = self.run("admit", epoch, account_id, region, limits, n, message_id, now, expect).await?;
        match a.as_slice() {
            [0, second, count, before, after] => Ok(Ok(Charge {
                second: *second as u64,
                count: *count as u32,
                tat_before: *before as u64 * 1000,
                tat_after: *after as u64 * 1000,
            })),
            [4] => Err(ClusterError::NotSeeded),
            [5] => Err(ClusterError::Lost),
            other => refusal(other).map(Err).ok_or_else(|| ClusterError::Answer(other.to_vec())),
        }
    }

    /// Would `n` recipients pass now? Charges nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn check(
        &self,
        epoch: &str,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        now: Option<Nanos>,
        expect: bool,
    ) -> Result<Result<(), Refusal>, ClusterError> {
        let a = self.run("check", epoch, account_id, region, limits, n, None, now, expect).await?;
        match a.as_slice() {
            [0, _] => Ok(Ok(())),
            [4] => Err(ClusterError::NotSeeded),
            [5] => Err(ClusterError::Lost),
            other => refusal(other).map(Err).ok_or_else(|| ClusterError::Answer(other.to_vec())),
        }
    }

    /// Recipients charged to (account, region) by every node in the last 24 hours.
    pub async fn sent_last_24h(
        &self,
        epoch: &str,
        account_id: i64,
        region: &str,
        expect: bool,
    ) -> Result<u64, ClusterError> {
        let open = Limits { max_24h: None, max_rate: None, burst_seconds: 1.0, sending_enabled: true };
        let a = self.run("check", epoch, account_id, region, &open, 0, None, None, expect).await?;
        match a.as_slice() {
            [0, total] => Ok((*total).max(0) as u64),
            [4] => Err(ClusterError::NotSeeded),
            [5] => Err(ClusterError::Lost),
            other => Err(ClusterError::Answer(other.to_vec())),
        }
    }

    /// Give back `charge` (its message was not spooled), in `epoch`.
    pub async fn refund(
        &self,
        epoch: &str,
        account_id: i64,
        region: &str,
        charge: &Charge,
    ) -> Result<(), ClusterError> {
        let [w, sec, m] = counter_keys(account_id, region, epoch);
        let spent_us = charge.tat_after.saturating_sub(charge.tat_before) / 1000;
        let mut inv = self.refund.prepare_invoke();
        inv.key(w).key(sec).key(m);
        inv.arg(charge.second).arg(charge.count).arg(spent_us);
        self.redis.invoke::<i64>(&inv).await.map(|_| ())
    }

    /// Add one node's ledger of one (account, region) to the shared counters of `epoch`.
    pub async fn seed(&self, epoch: &str, entry: &LedgerEntry) -> Result<(), ClusterError> {
        let [w, sec, m] = counter_keys(entry.account_id, &entry.region, epoch);
        let mut inv = self.seed.prepare_invoke();
        inv.key(w).key(sec).key(m);
        inv.arg(entry.tat / 1000);
        for (s, n) in &entry.seconds {
            inv.arg(*s).arg(*n);
        }
        self.redis.invoke::<i64>(&inv).await.map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        op: &str,
        epoch: &str,
        account_id: i64,
        region: &str,
        limits: &Limits,
        n: u32,
        message_id: Option<&str>,
        now: Option<Nanos>,
        expect: bool,
    ) -> Result<Vec<i64>, ClusterError> {
        let t = tag(account_id, region);
        let [w, sec, m] = counter_keys(account_id, region, epoch);
        let (emission_us, tau_us) = match limits.rate_params() {
            // Below a microsecond per token the script's resolution is the limit.
            Some(p) => ((p.emission_ns / 1000).max(1), p.tau_ns / 1000),
            None => (0, 0),
        };
        let idem = message_id.map(|m| format!("{t}:i:{m}")).unwrap_or_default();
        let mut inv = self.decide.prepare_invoke();
        inv.key(w)
            .key(sec)
            .key(m)
            .key(idem)
            .key(EPOCH_KEY)
            .arg(op)
            .arg(now.map(|n| (n / 1000).to_string()).unwrap_or_default())
            .arg(n)
            .arg(if limits.sending_enabled { 1 } else { 0 })
            .arg(limits.max_24h.map_or(-1, |m| m as i64))
            .arg(emission_us)
            .arg(tau_us)
            .arg(IDEMPOTENCY_TTL_SECS)
            .arg(epoch)
            .arg(if expect { 1 } else { 0 });
        self.redis.invoke(&inv).await
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
