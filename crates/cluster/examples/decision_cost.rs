//! The cost of one quota decision: the Lua script in Redis (round trip included) against the
//! pure engine in process, sequentially and with 64 decisions in flight. Used by
//! `benches/cluster.sh`.
//!
//!   decision_cost redis://127.0.0.1:6379/ [N]

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_cluster::{EPOCH_KEY, Redis, RedisQuota, RedisTarget};
use weir_quota::{Limits, QuotaState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: decision_cost REDIS_URL [N]")?;
    let n: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    // The bench's own throwaway redis-server on loopback.
    let target = RedisTarget { url, ca_pem: None, allow_no_password: true };
    let q = RedisQuota::new(Redis::new(&target, Duration::from_secs(5))?);
    q.redis().query::<()>(redis::cmd("SET").arg(EPOCH_KEY).arg("bench")).await?;
    let l = Limits { max_24h: None, max_rate: Some(1e9), burst_seconds: 1.0, sending_enabled: true };

    let t = Instant::now();
    for i in 0..n {
        q.admit("bench", 1, "us-east-1", &l, 1, Some(&format!("m{i}")), None, false)
            .await?
            .map_err(|r| format!("{r:?}"))?;
    }
    let seq = t.elapsed();

    let q = Arc::new(q);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64u32 {
        let (q, l) = (q.clone(), l.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 64 {
                let _ = q.admit("bench", 2, "us-east-1", &l, 1, Some(&format!("p{w}-{i}")), None, false).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let par = t.elapsed();

    let mut pure = QuotaState::new();
    let t = Instant::now();
    for i in 0..n {
        let _ = std::hint::black_box(pure.admit(&l, 1_700_000_000_000_000_000 + u64::from(i) * 1000, 1));
    }
    let local = t.elapsed();
    let us = |d: Duration, k: u32| d.as_secs_f64() * 1e6 / f64::from(k);
    println!(
        "{}",
        serde_json::json!({
            "decisions": n,
            "redis_sequential_us": us(seq, n),
            "redis_64_in_flight_per_second": f64::from(n / 64 * 64) / par.as_secs_f64(),
            "pure_us": us(local, n),
            "ratio_redis_to_pure": seq.as_secs_f64() / local.as_secs_f64().max(1e-12),
        })
    );
    Ok(())
}
