//! The delivery engine: due recipients → routes → lanes → connections → classified replies →
//! new recipient states, events, suppression and statistics. Its rooms: [`crate::scheduler`]
//! (spool to lanes), [`crate::connection`] (sessions obeying the lane), [`crate::outcome`]
//! (replies to durable states and events); receivers are reached through a
//! [`Connector`] (TCP, or the simulator's in-memory pipes).
//!
//! Memory holds only the set of recipients in flight and the lanes' short queues; the spool
//! (SQLite, indexed on state and next attempt) is the queue. Recipients are marked `sending`
//! before a connection is tried, so that after a crash the ones that may already have been
//! delivered are known (and counted as possible duplicates) when they are queued again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock: the real one in the server, a virtual one (paused, auto-advancing) in the simulator.
use tokio::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
pub use weir_classify::backoff::Schedule;
use weir_model::Senders;
use weir_store::Spool;
use weir_store::events::EventLog;
use weir_store::model::AttemptOutcome;

use crate::client::{Connector, TcpConnector};
use crate::lane::{Lane, LaneLimits};
use crate::route::Router;

/// Settings of the delivery engine.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Name sent in EHLO.
    pub helo_name: String,
    /// Recipients in flight at most.
    pub max_in_flight: usize,
    /// How often the spool is polled for due recipients.
    pub poll_interval: Duration,
    /// Retry schedule and window.
    pub schedule: Schedule,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long to wait for a server's greeting.
    pub greeting_timeout: Duration,
    /// A host that did not answer (no connection, no greeting) is skipped for this long in
    /// favour of the domain's other MX hosts.
    pub dead_host_for: Duration,
    /// Retry a greylisted recipient after this long, when the reply states no delay.
    pub greylist_retry: Duration,
    /// Timeout for each reply.
    pub command_timeout: Duration,
    /// Try STARTTLS when offered.
    pub starttls: bool,
    /// Lane limits by provider name (`google`, …, `other`) or lane key.
    pub lanes: HashMap<String, LaneLimits>,
    /// Lane controller tuning (rates and connections come from the lane limits).
    pub pacing: weir_pacing::controller::PacingConfig,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            helo_name: "localhost".into(),
            max_in_flight: 2000,
            poll_interval: Duration::from_millis(200),
            schedule: Schedule::default(),
            connect_timeout: Duration::from_secs(30),
            greeting_timeout: Duration::from_secs(300),
            dead_host_for: Duration::from_secs(300),
            greylist_retry: Duration::from_secs(300),
            command_timeout: Duration::from_secs(120),
            starttls: true,
            lanes: HashMap::new(),
            pacing: weir_pacing::controller::PacingConfig::default(),
        }
    }
}

/// Counters of one lane: first-deferral rate and final delivery rate as separate figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneStats {
    /// Provider of the lane.
    pub provider: String,
    /// First attempts made.
    pub first_attempts: u64,
    /// First attempts that were deferred.
    pub first_attempt_deferrals: u64,
    /// Of those, deferred by greylisting (every first attempt is, at a greylisting receiver).
    pub first_attempt_greylisted: u64,
    /// Recipients delivered (at any attempt).
    pub delivered: u64,
    /// Recipients delivered on a retry.
    pub delivered_after_retry: u64,
    /// Deferrals (all attempts).
    pub deferrals: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients expired (retry window over).
    pub expired: u64,
    /// Attempts by outcome (`delivered`, `deferred`, `bounced`, `expired`) and reply class.
    pub replies: BTreeMap<String, BTreeMap<String, u64>>,
}

impl LaneStats {
    /// Count `n` attempts with this outcome (see [`LaneStats::replies`]), reply class and
    /// whether they were first attempts: the one place the counters move, live and when they
    /// are loaded from the spool at start.
    pub fn add(&mut self, outcome: AttemptOutcome, class: &str, first: bool, n: u64) {
        if first {
            self.first_attempts += n;
        }
        match outcome {
            AttemptOutcome::Delivered => {
                self.delivered += n;
                if !first {
                    self.delivered_after_retry += n;
                }
            }
            AttemptOutcome::Bounced => self.bounced += n,
            _ => {
                self.deferrals += n;
                if first {
                    self.first_attempt_deferrals += n;
                    if class == "greylisted" {
                        self.first_attempt_greylisted += n;
                    }
                }
                if outcome == AttemptOutcome::Expired {
                    self.expired += n;
                }
            }
        }
        *self.replies.entry(outcome.as_str().into()).or_default().entry(class.into()).or_default() += n;
    }
}

/// Every lane's counters as the spool recorded them (so they survive a restart).
fn load_stats(spool: &Spool) -> BTreeMap<String, LaneStats> {
    let mut stats: BTreeMap<String, LaneStats> = BTreeMap::new();
    match spool.delivery_totals() {
        Ok(rows) => {
            for t in rows {
                let s = stats.entry(t.lane).or_default();
                s.provider = t.provider;
                s.add(t.outcome, &t.class, t.first, t.count);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the delivery totals; lane counters start at zero"),
    }
    stats
}

/// The delivery engine.
pub struct Engine {
    pub(crate) senders: Arc<dyn Senders>,
    /// The spool: due recipients, bodies, attempt results.
    pub(crate) spool: Spool,
    pub(crate) cfg: DeliveryConfig,
    pub(crate) router: Router,
    pub(crate) events: Arc<EventLog>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) inflight: Mutex<HashSet<(String, i64)>>,
    pub(crate) lanes: Mutex<HashMap<String, Arc<Lane>>>,
    pub(crate) stats: Mutex<BTreeMap<String, LaneStats>>,
    pub(crate) possible_duplicates: AtomicU64,
    /// Set when the engine stops: results that cannot be recorded are left to the next start.
    pub(crate) stopping: AtomicBool,
    /// Recipients caught mid-send by the last stop are still to be requeued.
    pub(crate) requeue_pending: AtomicBool,
    /// Hosts (`host:port`) that did not answer, skipped until the instant given.
    pub(crate) dead_hosts: Mutex<HashMap<String, Instant>>,
    /// Mailboxes that asked for fewer messages (4.2.1): the earliest next message to each.
    pub(crate) mailboxes: Mutex<crate::mailbox::Paces>,
    /// Paced mailboxes' messages waiting in memory for their turns, with when they come
    /// (see [`Engine::hold_turn`]).
    pub(crate) turns: Mutex<Vec<(i64, weir_store::spool::DueRecipient)>>,
    /// When the due mail in the spool was last counted (see `count_waiting`).
    pub(crate) waiting_counted_ms: std::sync::atomic::AtomicI64,
}

impl Engine {
    /// A new engine delivering from `spool` for the accounts `senders` answers for, recording events
    /// in `events`.
    pub fn new(
        senders: Arc<dyn Senders>,
        spool: Spool,
        cfg: DeliveryConfig,
        router: Router,
        events: Arc<EventLog>,
    ) -> std::io::Result<Engine> {
        Ok(Engine {
            senders,
            stats: Mutex::new(load_stats(&spool)),
            spool,
            cfg,
            router,
            events,
            tls: crate::client::opportunistic_tls(),
            connector: Arc::new(TcpConnector),
            inflight: Mutex::new(HashSet::new()),
            lanes: Mutex::new(HashMap::new()),
            possible_duplicates: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            requeue_pending: AtomicBool::new(true),
            dead_hosts: Mutex::new(HashMap::new()),
            mailboxes: Mutex::new(crate::mailbox::Paces::default()),
            turns: Mutex::new(Vec::new()),
            waiting_counted_ms: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The same engine reaching receivers through `connector` (the simulator's in-memory
    /// receivers) instead of TCP.
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Engine {
        self.connector = connector;
        self
    }

    /// Recipients being delivered right now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().len()
    }

    /// Counters of every lane.
    pub fn lane_stats(&self) -> BTreeMap<String, LaneStats> {
        self.stats.lock().clone()
    }

    /// A lane's timeline, times in milliseconds since the lane was created.
    pub fn lane_timeline(&self, key: &str) -> Vec<weir_pacing::controller::TimelineEntry> {
        self.lanes.lock().get(key).map(|l| l.raw_timeline()).unwrap_or_default()
    }

    /// Lane counters and engine state, as JSON (admin API).
    pub fn status(&self) -> Value {
        let lanes: BTreeMap<String, Value> = self
            .stats
            .lock()
            .iter()
            .map(|(k, s)| {
                let first_deferral_rate = if s.first_attempts == 0 {
                    0.0
                } else {
                    s.first_attempt_deferrals as f64 / s.first_attempts as f64
                };
                let done = s.delivered + s.bounced + s.expired;
                let final_delivery_rate = if done == 0 { 0.0 } else { s.delivered as f64 / done as f64 };
                let lane = self.lanes.lock().get(k).cloned();
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                v["first_deferral_rate"] = json!(first_deferral_rate);
                v["final_delivery_rate"] = json!(final_delivery_rate);
                if let Some(l) = lane {
                    let now = Instant::now();
                    let a = l.allowance(now);
                    v["safe_rate_per_minute"] = json!(a.rate_per_min);
                    v["connections_allowed"] = json!(a.connections);
                    v["paused"] = json!(a.paused_until.is_some());
                    v["bulk_allowed"] = json!(a.bulk_allowed);
                    v["timeline"] = json!(l.timeline(now, self.senders.now_ms()));
                }
                (k.clone(), v)
            })
            .collect();
        json!({
            "in_flight": self.inflight.lock().len(),
            "possible_duplicates_after_restart": self.possible_duplicates.load(Ordering::Relaxed),
            "lanes": lanes,
        })
    }

    /// Run until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            if self.requeue_pending.load(Ordering::Relaxed) {
                self.requeue_interrupted().await;
            }
            self.events.retry_pending();
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "delivery scheduler");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.stopping.store(true, Ordering::Relaxed);
    }
}
