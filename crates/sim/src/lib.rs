//! The simulator. Each run is the real delivery engine — scheduler, lanes, connection tasks,
//! SMTP client, classifier, pacing controller, spool — with two seams replaced: connections go
//! through in-memory pipes to modelled receivers ([`weir_receivers`]) instead of TCP, and the
//! clock is tokio's paused clock, which jumps to the next timer whenever every task waits, so
//! hours of delivery take seconds. The baselines are the same engine with pacing off (a fixed
//! rate; or Postfix's habits: static concurrency, no rate limit, its retry schedule).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use weir_classify::backoff::Schedule;
use weir_delivery::client::{Connecting, Connector, Io, TcpConnector};
use weir_delivery::engine::LaneStats;
use weir_delivery::lane::LaneLimits;
use weir_delivery::route::{AddrFuture, MxFuture, Resolver, Router};
use weir_delivery::{DeliveryConfig, Engine};
use weir_pacing::controller::{PacingConfig, TimelineEntry};
use weir_receivers::{Receiver, Spec, Style};
use weir_store::model::{Priority, RecipientState, RegionSettings, SpoolEntry};
use weir_store::{Spool, Store, StoreOptions};
use weir_submit::{Service, ServiceConfig};

/// Simulator failures (setting up the store or the runtime).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Filesystem or runtime trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The spool failed.
    #[error("{0}")]
    Store(#[from] weir_store::StoreError),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// A scenario file (`weir simulate SCENARIO.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name in the report.
    pub name: String,
    /// Give up after this much virtual time.
    #[serde(default = "default_hours")]
    pub max_hours: f64,
    /// Seed of the choices of invalid and transactional recipients.
    #[serde(default)]
    pub seed: u64,
    /// The lane's first this many seconds (finding the receiver's limits) are left out of the
    /// settled first-deferral rate: 300 (five minutes), or five scaled minutes in scaled runs.
    #[serde(default = "default_settle")]
    pub settle_seconds: u64,
    /// First retry after this many seconds, for every sender (scaled real-time runs); the
    /// senders' own schedules otherwise (weir 15 minutes, Postfix 5).
    #[serde(default)]
    pub retry_first_seconds: Option<u64>,
    /// Retry greylisted mail after this many seconds when the reply states no delay.
    #[serde(default = "default_greylist_retry")]
    pub greylist_retry_seconds: u64,
    /// weir's lane: its normal rate and connections (`max_rate_per_min`, `max_connections`),
    /// warm-up start, and pacing tuning.
    pub weir: PacingConfig,
    /// The baselines.
    pub baselines: Baselines,
    /// The receivers (each its own lane) and the mail for them.
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderRun>,
}

fn default_hours() -> f64 {
    48.0
}

fn default_settle() -> u64 {
    300
}

fn default_greylist_retry() -> u64 {
    300
}

/// Baseline senders: the same engine with pacing off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    /// Fixed-rate sender: messages per minute.
    pub fixed_rate_per_min: f64,
    /// Fixed-rate sender: connections.
    pub fixed_connections: u32,
    /// Postfix-like sender: static destination concurrency.
    pub postfix_connections: u32,
}

/// One receiver and the mail for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRun {
    /// Name (`gmail`, `yahoo`, …).
    pub name: String,
    /// Messages to deliver (one recipient each).
    pub messages: u64,
    /// Share of the messages that are transactional (the rest is bulk).
    #[serde(default)]
    pub transactional_fraction: f64,
    /// Share of recipients that do not exist (5.1.1).
    #[serde(default)]
    pub invalid_fraction: f64,
    /// Distinct recipients (0 = every message has its own).
    #[serde(default)]
    pub distinct_recipients: u64,
    /// Share of the messages addressed to one hot mailbox (`hot0@…`), which takes only the
    /// receiver's `hot_mailbox_per_min`.
    #[serde(default)]
    pub hot_share: f64,
    /// The receiver's hidden behaviour.
    pub receiver: Spec,
}

/// Who sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sender {
    /// weir: adaptive pacing.
    Weir,
    /// A fixed rate over fixed connections, weir's retry schedule.
    Fixed,
    /// Postfix's habits: static concurrency, as fast as each connection goes, retries after 5
    /// minutes doubling to 4,000 s.
    Postfix,
}

impl Sender {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Sender::Weir => "weir",
            Sender::Fixed => "fixed-rate",
            Sender::Postfix => "postfix-like",
        }
    }
}

/// Figures of one sender on one receiver.
#[derive(Debug, Clone, Serialize)]
pub struct LaneReport {
    /// Receiver.
    pub provider: String,
    /// Sender.
    pub sender: String,
    /// Minutes until every message was delivered, bounced or expired (or the time limit).
    pub drain_minutes: f64,
    /// Minutes the hidden rate allows at best.
    pub best_minutes: f64,
    /// drain / best.
    pub drain_ratio: f64,
    /// First-attempt deferrals / first attempts, counting first attempts after the lane's first
    /// `settle_seconds`.
    pub first_deferral_rate_settled: f64,
    /// First-attempt deferrals / first attempts, all.
    pub first_deferral_rate: f64,
    /// Delivered / valid recipients.
    pub final_delivery_rate: f64,
    /// Most connections the receiver saw open at once.
    pub max_connections_used: u32,
    /// Connections the receiver refused at the greeting.
    pub connections_refused: u64,
    /// Delivery attempts made (per recipient).
    pub attempts: u64,
    /// Deferral replies received.
    pub deferrals: u64,
    /// Minutes until the last transactional message was delivered.
    pub transactional_drain_minutes: f64,
    /// Whether everything was final before the time limit.
    pub drained: bool,
    /// Attempts counted for recipients beyond the times the receiver saw them offered (a
    /// refused connection booked as an attempt): must be 0.
    pub attempts_without_offer: u64,
    /// Messages to the hot mailbox, and the refusals for its limit it gave (4.2.1).
    pub hot_messages: u64,
    /// See `hot_messages`.
    pub mailbox_refusals: u64,
    /// First attempts deferred by greylisting (after the settling time): unavoidable, left out
    /// of `first_deferral_rate_settled`.
    pub first_attempts_greylisted_settled: u64,
    /// Recipients delivered by the end of each ten seconds of the run (where a drain lost time).
    pub delivered_every_10s: Vec<u64>,
    /// weir only: the lane's incident timeline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
}

/// Run every receiver of the scenario with each of `senders`, in `mode`.
pub fn run(s: &Scenario, senders: &[Sender], mode: Mode) -> Result<Vec<LaneReport>, SimError> {
    let mut out = Vec::new();
    for p in &s.providers {
        for &sender in senders {
            out.push(run_lane_in(s, p, sender, mode)?);
        }
    }
    Ok(out)
}

/// Connections to one modelled receiver through in-memory pipes.
struct MemConnector(Receiver);

impl Connector for MemConnector {
    fn connect<'a>(&'a self, _host: &'a str, _port: u16) -> Connecting<'a> {
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(weir_receivers::serve(theirs, self.0.clone()));
            Ok(Box::new(ours) as Box<dyn Io>)
        })
    }
}

/// Every domain's MX is the receiver's host name (so lanes and providers are recognised as in
/// production); every host is at 127.0.0.1, which the in-memory connector ignores.
struct SimResolver(String);

impl Resolver for SimResolver {
    fn mx<'a>(&'a self, _domain: &'a str) -> MxFuture<'a> {
        let mx = vec![(10, self.0.clone())];
        Box::pin(async move { Ok(mx) })
    }
    fn addrs<'a>(&'a self, _host: &'a str) -> AddrFuture<'a> {
        Box::pin(async move { vec![std::net::IpAddr::from([127, 0, 0, 1])] })
    }
}

/// An MX host name of the receiver's provider.
fn mx_host(style: Style, name: &str) -> String {
    match style {
        Style::Gmail => "gmail-smtp-in.l.google.com".into(),
        Style::Yahoo => "mta5.am0.yahoodns.net".into(),
        Style::Microsoft => format!("{name}-sim.mail.protection.outlook.com"),
        Style::Generic => format!("mx.{name}.sim"),
    }
}

fn mix(x: u64) -> u64 {
    // splitmix64: a fixed pseudo-random choice per id.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn chance(seed: u64, i: u64, fraction: f64) -> bool {
    (mix(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D)) % 1_000_000) as f64 / 1_000_000.0 < fraction
}

/// Minutes the receiver's hidden rate needs for the valid recipients at best (its warm-up
/// included).
pub fn best_minutes(p: &ProviderRun, seed: u64) -> f64 {
    let r = &p.receiver;
    let mut best = best_rate_minutes(p);
    // The hot mailbox takes its messages at its own pace (the first minute's at once).
    if r.hot_mailbox_per_min > 0 && p.hot_share > 0.0 {
        let hot = (hot_messages(p, seed) as f64 - f64::from(r.hot_mailbox_per_min)).max(0.0);
        best = best.max(hot / f64::from(r.hot_mailbox_per_min));
    }
    // Greylisted mail passes one window after it was first offered, at best, and a first pass
    // over every recipient goes before (as fast as the connections allow).
    if r.greylist_seconds > 0.0 {
        let valid = p.messages as f64 * (1.0 - p.invalid_fraction);
        best = best.max(valid / connection_bound_per_min(r)) + r.greylist_seconds / 60.0;
    }
    best
}

/// Valid messages of the run addressed to the hot mailbox (drawn as the spool's are).
fn hot_messages(p: &ProviderRun, seed: u64) -> u64 {
    (0..p.messages)
        .filter(|n| !chance(seed, *n, p.invalid_fraction) && chance(seed.wrapping_add(2), *n, p.hot_share))
        .count() as u64
}

/// Messages a minute the receiver's connections carry at best: each message costs two round
/// trips on its connection (the pipelined commands, then the message and its reply).
fn connection_bound_per_min(r: &weir_receivers::Spec) -> f64 {
    60_000.0 / (2.0 * r.reply_delay_ms.max(1) as f64) * f64::from(r.max_connections.max(1))
}

fn best_rate_minutes(p: &ProviderRun) -> f64 {
    let r = &p.receiver;
    let valid = p.messages as f64 * (1.0 - p.invalid_fraction);
    let mut limit = if r.warmup_start_per_min > 0.0 { r.warmup_start_per_min } else { r.limit_per_min };
    let (mut sent, mut minute) = (0.0, 0.0);
    while sent < valid {
        let room = limit.min(r.limit_per_min).min(connection_bound_per_min(r));
        if sent + room >= valid {
            return minute + (valid - sent) / room;
        }
        sent += room;
        minute += 1.0;
        if (minute as u64).is_multiple_of(10) {
            limit *= r.warmup_growth_per_10min;
        }
    }
    minute
}

/// Where the receivers are and whose clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In-memory pipes, tokio's paused clock (hours in seconds).
    Virtual,
    /// The receiver listens on loopback TCP, the engine connects over TCP, in real time (give the
    /// scenario short pacing timings and `retry_first_seconds`).
    Loopback,
}

/// Run one sender against one receiver, in virtual time.
pub fn run_lane(s: &Scenario, p: &ProviderRun, sender: Sender) -> Result<LaneReport, SimError> {
    run_lane_in(s, p, sender, Mode::Virtual)
}

/// Run one sender against one receiver in `mode`.
pub fn run_lane_in(s: &Scenario, p: &ProviderRun, sender: Sender, mode: Mode) -> Result<LaneReport, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(mode == Mode::Virtual).build()?;
    rt.block_on(simulate(s, p, sender, mode))
}

/// The counters of the simulation's one lane.
fn lane_stats(engine: &Engine) -> (String, LaneStats) {
    engine.lane_stats().into_iter().next().unwrap_or_default()
}

async fn simulate(s: &Scenario, p: &ProviderRun, sender: Sender, mode: Mode) -> Result<LaneReport, SimError> {
    // A throwaway spool: in memory-backed /dev/shm where the machine has it.
    let shm = std::path::Path::new("/dev/shm");
    let dir =
        if shm.is_dir() { tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir())? } else { tempfile::tempdir()? };
    let store = Arc::new(Store::open(dir.path(), StoreOptions { max_batch: 512, fsync: false, inline_writes: true })?);
    let spool = Spool::new(store.clone());
    let origin = Instant::now();
    // 2026-01-01T00:00:00Z plus virtual time.
    let base_ns: u64 = 1_767_225_600 * 1_000_000_000;
    let clock: weir_submit::Clock = Arc::new(move || base_ns + origin.elapsed().as_nanos() as u64);
    let unlimited = RegionSettings { max_24h: -1, max_rate: -1.0, production: true, ..RegionSettings::sandbox() };
    let svc = Arc::new(Service::open(store.clone(), ServiceConfig::new(unlimited, "weir.sim"), clock)?);
    let account = svc.directory().create_account("sim").await.map_err(|e| SimError::Other(e.to_string()))?;
    let domain = format!("{}.sim", p.name);
    let now_ms = svc.now_ms();
    fill_spool(s, p, &spool, account.id, &domain, now_ms).await?;

    let receiver = Receiver::new(p.receiver.clone());
    let mx = mx_host(p.receiver.style, &p.name);
    let provider = weir_classify::provider::of_host(&mx);
    let (limits, pacing, schedule) = sender_settings(s, sender);
    let cfg = DeliveryConfig {
        helo_name: "weir.sim".into(),
        max_in_flight: 2000,
        poll_interval: Duration::from_millis(200),
        schedule,
        connect_timeout: Duration::from_secs(30),
        greeting_timeout: Duration::from_secs(300),
        dead_host_for: Duration::from_secs(300),
        greylist_retry: Duration::from_secs(s.greylist_retry_seconds),
        command_timeout: Duration::from_secs(120),
        starttls: false,
        lanes: HashMap::from([(provider.as_str().to_string(), limits)]),
        pacing,
    };
    let events = Arc::new(weir_store::events::EventLog::open(dir.path())?);
    let (connector, port): (Arc<dyn Connector>, u16) = match mode {
        Mode::Virtual => (Arc::new(MemConnector(receiver.clone())), 25),
        Mode::Loopback => (Arc::new(TcpConnector), receiver.clone().listen("127.0.0.1:0").await?.port()),
    };
    let router = Router::new(HashMap::new(), None, Arc::new(SimResolver(mx)), port);
    let engine =
        Arc::new(Engine::new(svc.delivery_port(), spool.clone(), cfg, router, events)?.with_connector(connector));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine.clone().run(stopped));

    let (drained, at_settled, delivered_every_10s) = watch(s, &engine, &spool, origin).await?;
    let _ = stop.send(true);
    let _ = running.await;
    let (lane_key, end) = lane_stats(&engine);
    let settled = at_settled.unwrap_or_else(|| end.clone());
    let first_after = end.first_attempts - settled.first_attempts;
    let deferred_after = end.first_attempt_deferrals - settled.first_attempt_deferrals;
    let (first, first_deferred, delivered) = (end.first_attempts, end.first_attempt_deferrals, end.delivered);
    let valid = (0..p.messages).filter(|n| !chance(s.seed, *n, p.invalid_fraction)).count() as f64;
    let start_ms = (base_ns / 1_000_000) as i64;
    let minutes_to = |ms: Option<i64>| ms.map_or(0.0, |m| (m - start_ms).max(0) as f64 / 60_000.0);
    let drain_minutes = spool.last_change_ms()?;
    let drain_minutes = if drained { minutes_to(drain_minutes) } else { s.max_hours * 60.0 };
    let best = best_minutes(p, s.seed);
    let counters = receiver.counters();
    let attempts = spool.attempts_by_address()?;
    let attempts_without_offer: u64 =
        attempts.iter().map(|(a, n)| (*n - i64::from(receiver.offers(a))).max(0) as u64).sum();
    let grey_settled = end.first_attempt_greylisted - settled.first_attempt_greylisted;
    Ok(LaneReport {
        provider: p.name.clone(),
        sender: sender.name().into(),
        drain_minutes,
        best_minutes: best,
        drain_ratio: if best > 0.0 { drain_minutes / best } else { 0.0 },
        first_deferral_rate_settled: if first_after == 0 {
            0.0
        } else {
            deferred_after.saturating_sub(grey_settled) as f64 / first_after as f64
        },
        attempts_without_offer,
        hot_messages: hot_messages(p, s.seed),
        mailbox_refusals: counters.per_recipient_refusals,
        first_attempts_greylisted_settled: grey_settled,
        delivered_every_10s,
        first_deferral_rate: if first == 0 { 0.0 } else { first_deferred as f64 / first as f64 },
        final_delivery_rate: if valid == 0.0 { 1.0 } else { delivered as f64 / valid },
        max_connections_used: counters.peak_connections,
        connections_refused: counters.connection_refusals,
        attempts: delivered + end.bounced + end.deferrals,
        deferrals: end.deferrals,
        transactional_drain_minutes: minutes_to(spool.last_delivery_ms(Priority::Transactional)?),
        drained,
        timeline: if sender == Sender::Weir { engine.lane_timeline(&lane_key) } else { Vec::new() },
    })
}

/// The scenario's messages for provider `p`, spooled in batches: some to invalid mailboxes, some
/// to one hot mailbox, the rest spread over the distinct recipients.
async fn fill_spool(
    s: &Scenario,
    p: &ProviderRun,
    spool: &Spool,
    account_id: i64,
    domain: &str,
    now_ms: i64,
) -> Result<(), SimError> {
    let mut i = 0u64;
    while i < p.messages {
        let end = (i + 10_000).min(p.messages);
        let entries: Vec<SpoolEntry> = (i..end)
            .map(|n| {
                let local = if chance(s.seed, n, p.invalid_fraction) {
                    format!("invalid{n}")
                } else if chance(s.seed.wrapping_add(2), n, p.hot_share) {
                    "hot0".to_string()
                } else if p.distinct_recipients > 0 {
                    format!("r{}", mix(s.seed.wrapping_add(n)) % p.distinct_recipients)
                } else {
                    format!("r{n}")
                };
                let transactional = chance(s.seed.wrapping_add(1), n, p.transactional_fraction);
                SpoolEntry {
                    id: format!("sim-{n:010}"),
                    account_id,
                    region: "us-east-1".into(),
                    created_ms: now_ms,
                    mail_from: "sender@weir.sim".into(),
                    configuration_set: None,
                    tags_json: "[]".into(),
                    source: "sim".into(),
                    body: format!(
                        "From: sender@weir.sim\r\nTo: {local}@{domain}\r\nSubject: sim {n}\r\n\r\nHello.\r\n"
                    )
                    .into_bytes(),
                    recipients: vec![(format!("{local}@{domain}"), RecipientState::Queued)],
                    quota_second: 0,
                    quota_count: 0,
                    quota_tat: 0,
                    priority: if transactional { Priority::Transactional } else { Priority::Bulk },
                }
            })
            .collect();
        spool.enqueue(entries).await?;
        i = end;
    }

    Ok(())
}

/// The lane limits, pacing and retry schedule each sender runs with.
fn sender_settings(s: &Scenario, sender: Sender) -> (LaneLimits, PacingConfig, Schedule) {
    let w = &s.weir;
    let (limits, pacing, schedule) = match sender {
        Sender::Weir => (
            LaneLimits {
                max_connections: w.max_connections as usize,
                messages_per_minute: w.max_rate_per_min as u32,
                messages_per_connection: 100,
                recipients_per_transaction: 50,
                warmup_start_per_minute: w.warmup_start_per_min,
                cluster_messages_per_minute: 0,
            },
            *w,
            Schedule::default(),
        ),
        Sender::Fixed => (
            LaneLimits {
                max_connections: s.baselines.fixed_connections as usize,
                messages_per_minute: s.baselines.fixed_rate_per_min as u32,
                messages_per_connection: 100,
                recipients_per_transaction: 50,
                warmup_start_per_minute: None,
                cluster_messages_per_minute: 0,
            },
            PacingConfig { adaptive: false, ..*w },
            Schedule::default(),
        ),
        Sender::Postfix => (
            LaneLimits {
                max_connections: s.baselines.postfix_connections as usize,
                messages_per_minute: 0,
                messages_per_connection: 100,
                recipients_per_transaction: 50,
                warmup_start_per_minute: None,
                cluster_messages_per_minute: 0,
            },
            PacingConfig { adaptive: false, ..*w },
            Schedule {
                first: Duration::from_secs(300),
                max: Duration::from_secs(4000),
                window: Duration::from_secs(5 * 86_400),
                jitter_permille: 100,
            },
        ),
    };
    let schedule = match s.retry_first_seconds {
        Some(first) => Schedule { first: Duration::from_secs(first), max: Duration::from_secs(first * 4), ..schedule },
        None => schedule,
    };
    let schedule = match s.retry_first_seconds {
        Some(first) => Schedule { first: Duration::from_secs(first), max: Duration::from_secs(first * 4), ..schedule },
        None => schedule,
    };
    (limits, pacing, schedule)
}

/// Watch the lane until the spool drains or the scenario's time is up: whether it drained, the
/// lane's figures once settled, and the deliveries counted every ten seconds.
async fn watch(
    s: &Scenario,
    engine: &Arc<Engine>,
    spool: &Spool,
    origin: Instant,
) -> Result<(bool, Option<LaneStats>, Vec<u64>), SimError> {
    let limit = Duration::from_secs_f64(s.max_hours * 3600.0);
    let mut at_settled: Option<LaneStats> = None;
    let mut delivered_every_10s = Vec::new();
    let drained = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = origin.elapsed();
        if t.as_secs().is_multiple_of(10) && delivered_every_10s.len() < 10_000 {
            delivered_every_10s.push(lane_stats(engine).1.delivered);
        }
        if at_settled.is_none() && t >= Duration::from_secs(s.settle_seconds) {
            at_settled = Some(lane_stats(engine).1);
        }
        if !spool.any_unfinished()? {
            break true;
        }
        if t >= limit {
            break false;
        }
    };
    Ok((drained, at_settled, delivered_every_10s))
}
