//! Senders in the simulator, and the loop that runs one sender against one provider.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use weir_classify::classify::{Action, classify};
use weir_classify::provider::Provider;

use super::provider::ProviderModel;
use super::{LaneReport, ProviderSpec, Scenario};
use crate::controller::{Controller, PacingConfig};

/// Who is sending.
#[derive(Debug, Clone, Copy)]
pub enum Strategy {
    /// weir's lane controller.
    Weir(PacingConfig),
    /// A fixed rate over fixed connections (retries on the same 15/30/60-minute schedule).
    Fixed {
        /// Messages per minute.
        rate_per_min: f64,
        /// Connections.
        connections: u32,
    },
    /// Postfix-like: a static destination concurrency, each connection sending as fast as it can;
    /// concurrency only shrinks when connections are refused; Postfix's retry backoff.
    Postfix {
        /// Concurrency.
        connections: u32,
    },
}

impl Strategy {
    fn name(&self) -> &'static str {
        match self {
            Strategy::Weir(_) => "weir",
            Strategy::Fixed { .. } => "fixed-rate",
            Strategy::Postfix { .. } => "postfix-like",
        }
    }
}

const STEP: u64 = 1000;
const MIN: u64 = 60_000;

fn mix(x: u64) -> u64 {
    // splitmix64: a fixed pseudo-random choice per id.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn best_minutes(s: &Scenario, p: &ProviderSpec) -> f64 {
    let cap_conn = f64::from(p.max_connections) * s.per_connection_rate * 60.0;
    let mut limit = if p.warmup_start_per_min > 0.0 { p.warmup_start_per_min } else { p.limit_per_min };
    let (mut sent, mut minute) = (0.0, 0.0);
    let n = p.messages as f64;
    while sent < n {
        let cap = limit.min(p.limit_per_min).min(cap_conn);
        if sent + cap >= n {
            return minute + (n - sent) / cap;
        }
        sent += cap;
        minute += 1.0;
        if (minute as u64).is_multiple_of(10) && limit < p.limit_per_min {
            limit *= p.warmup_growth_per_10min;
        }
    }
    minute
}

/// Run one sender against one provider until everything is final or the time limit.
pub fn run_lane(s: &Scenario, p: &ProviderSpec, strategy: Strategy, seed: u64) -> LaneReport {
    let n = p.messages as usize;
    let mut provider = ProviderModel::new(p);
    let mut controller = match strategy {
        Strategy::Weir(cfg) => Some(Controller::new(cfg, 0)),
        _ => None,
    };
    let mut postfix_conns = match strategy {
        Strategy::Postfix { connections } => connections,
        _ => 0,
    };
    let mut postfix_clean_since = 0u64;
    let rcpt_of = |i: usize| if p.distinct_recipients > 0 { i as u64 % p.distinct_recipients } else { i as u64 };
    let invalid = |r: u64| (mix(r ^ seed) % 10_000) as f64 / 10_000.0 < p.invalid_fraction;
    let transactional =
        |i: usize| (mix(i as u64 ^ seed.rotate_left(17)) % 10_000) as f64 / 10_000.0 < p.transactional_fraction;
    let mut tx_queue: VecDeque<usize> = VecDeque::new();
    let mut bulk_queue: VecDeque<usize> = VecDeque::new();
    for i in 0..n {
        if transactional(i) { tx_queue.push_back(i) } else { bulk_queue.push_back(i) }
    }
    let tx_total = tx_queue.len();
    let mut attempts = vec![0u16; n];
    let mut deferred: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let (mut finals, mut delivered, mut valid) = (0usize, 0u64, 0u64);
    for i in 0..n {
        if !invalid(rcpt_of(i)) {
            valid += 1;
        }
    }
    let (mut first_after5, mut first_def_after5) = (0u64, 0u64);
    let (mut total_attempts, mut max_conns_used) = (0u64, 0u32);
    let mut tx_done = 0usize;
    let mut tx_drain_ms = 0u64;
    let mut acc = 0.0f64;
    let end = (s.max_hours * 3_600_000.0) as u64;
    let mut t = 0u64;
    while finals < n && t <= end {
        while let Some(Reverse((at, i))) = deferred.peek().copied() {
            if at > t {
                break;
            }
            deferred.pop();
            if transactional(i) { tx_queue.push_back(i) } else { bulk_queue.push_back(i) }
        }
        let (rate_per_s, conns, bulk_allowed) = match (&strategy, controller.as_mut()) {
            (Strategy::Weir(_), Some(c)) => {
                c.on_tick(t);
                let a = c.allowance(t);
                if a.paused_until.is_some() {
                    (0.0, 0, false)
                } else {
                    (a.rate_per_min / 60.0, a.connections, a.bulk_allowed)
                }
            }
            (Strategy::Fixed { rate_per_min, connections }, _) => (rate_per_min / 60.0, *connections, true),
            _ => {
                if t.saturating_sub(postfix_clean_since) >= MIN {
                    postfix_clean_since = t;
                    if let Strategy::Postfix { connections } = strategy {
                        postfix_conns = (postfix_conns + 1).min(connections);
                    }
                }
                (f64::INFINITY, postfix_conns, true)
            }
        };
        let budget = rate_per_s.min(f64::from(conns) * s.per_connection_rate);
        let waiting = tx_queue.len() + if bulk_allowed { bulk_queue.len() } else { 0 };
        acc = if waiting == 0 { acc.min(budget) } else { acc + budget };
        let mut k = acc.floor() as usize;
        k = k.min(waiting);
        acc -= k as f64;
        let conns_used =
            if k == 0 { 0 } else { ((k as f64 / s.per_connection_rate).ceil() as u32).clamp(1, conns.max(1)) };
        max_conns_used = max_conns_used.max(conns_used);
        for _ in 0..k {
            let Some(i) = tx_queue.pop_front().or_else(|| if bulk_allowed { bulk_queue.pop_front() } else { None })
            else {
                break;
            };
            let rcpt = rcpt_of(i);
            let r = provider.attempt(t, rcpt, invalid(rcpt), conns_used);
            total_attempts += 1;
            let first = attempts[i] == 0;
            attempts[i] += 1;
            let d = classify(&r, Provider::Other);
            if let Some(c) = controller.as_mut() {
                c.on_reply(t, d.category, &r.to_string());
            }
            if matches!(strategy, Strategy::Postfix { .. }) && r.text.contains("Too many concurrent connections") {
                postfix_conns = postfix_conns.saturating_sub(1).max(1);
                postfix_clean_since = t;
            }
            if first && t >= 5 * MIN {
                first_after5 += 1;
            }
            match d.action {
                Action::Delivered => {
                    finals += 1;
                    delivered += 1;
                    if transactional(i) {
                        tx_done += 1;
                        if tx_done == tx_total {
                            tx_drain_ms = t;
                        }
                    }
                }
                Action::Bounce { .. } => {
                    finals += 1;
                    if transactional(i) {
                        tx_done += 1;
                        if tx_done == tx_total {
                            tx_drain_ms = t;
                        }
                    }
                }
                _ => {
                    if first && t >= 5 * MIN {
                        first_def_after5 += 1;
                    }
                    let a = u32::from(attempts[i]).min(12);
                    let delay = match strategy {
                        Strategy::Postfix { .. } => (300_000u64 << (a - 1).min(4)).min(4_000_000),
                        _ => (900_000u64 << (a - 1).min(5)).min(8 * 3_600_000),
                    };
                    if t + delay > 48 * 3_600_000 {
                        finals += 1;
                    } else {
                        deferred.push(Reverse((t + delay, i)));
                    }
                }
            }
        }
        t += STEP;
    }
    let best = best_minutes(s, p);
    let drain = t as f64 / 60_000.0;
    LaneReport {
        provider: p.name.clone(),
        sender: strategy.name().into(),
        drain_minutes: drain,
        best_minutes: best,
        drain_ratio: drain / best.max(1e-9),
        first_deferral_rate_after_5min: if first_after5 == 0 {
            0.0
        } else {
            first_def_after5 as f64 / first_after5 as f64
        },
        final_delivery_rate: if valid == 0 { 1.0 } else { delivered as f64 / valid as f64 },
        max_connections_used: max_conns_used,
        attempts: total_attempts,
        transactional_drain_minutes: tx_drain_ms as f64 / 60_000.0,
        drained: finals >= n,
        timeline: controller.map(|c| c.timeline().to_vec()).unwrap_or_default(),
    }
}
