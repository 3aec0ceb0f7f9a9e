//! The scheduler: due recipients → routes → lanes → connections → classified replies → new
//! recipient states, events, suppression and statistics.
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
use weir_classify::classify::{Action, Category, classify};
use weir_classify::provider::Provider;
use weir_classify::reply::Reply;
use weir_store::ops::{self, AttemptResult, DueRecipient};
use weir_submit::Service;

use crate::client::{Client, Connector, Stage, TcpConnector};
use crate::lane::{Lane, LaneLimits};
use crate::route::{Route, Router, Target};
use crate::simulator::{self, Outcome};
use weir_store::events::{EventLog, Failure, MailInfo};

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
            command_timeout: Duration::from_secs(120),
            starttls: true,
            lanes: HashMap::new(),
            pacing: weir_pacing::controller::PacingConfig::default(),
        }
    }
}

/// Work for one connection: recipients of one message in one domain.
pub struct Job {
    /// The recipients.
    pub rcpts: Vec<DueRecipient>,
    /// Their domain.
    pub domain: String,
    /// Where they go.
    pub route: Route,
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
}

/// The delivery engine.
pub struct Engine {
    svc: Arc<Service>,
    cfg: DeliveryConfig,
    router: Router,
    events: Arc<EventLog>,
    tls: Arc<rustls::ClientConfig>,
    connector: Arc<dyn Connector>,
    inflight: Mutex<HashSet<(String, i64)>>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    stats: Mutex<BTreeMap<String, LaneStats>>,
    possible_duplicates: AtomicU64,
    /// Set when the engine stops: results that cannot be recorded are left to the next start.
    stopping: AtomicBool,
    /// Recipients caught mid-send by the last stop are still to be requeued.
    requeue_pending: AtomicBool,
}

/// One recipient's reply from one attempt.
struct Outcome1 {
    rcpt: DueRecipient,
    reply: Reply,
    mta: String,
    tls: bool,
    /// The reply refused the connection, not this recipient: the lane was already told.
    refused_connection: bool,
}

/// An event to emit once the results it reports are stored.
type Announce = Box<dyn FnOnce(&EventLog) + Send>;

fn synth(code: u16, enh: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, Some(enh), text)
}

/// The same reply, from no server, for every recipient of a job that was not tried.
fn untried(rcpts: Vec<DueRecipient>, reply: &Reply, refused_connection: bool) -> Vec<Outcome1> {
    rcpts
        .into_iter()
        .map(|rcpt| Outcome1 { rcpt, reply: reply.clone(), mta: String::new(), tls: false, refused_connection })
        .collect()
}

impl Engine {
    /// A new engine recording events in `events`.
    pub fn new(
        svc: Arc<Service>,
        cfg: DeliveryConfig,
        router: Router,
        events: Arc<EventLog>,
    ) -> std::io::Result<Engine> {
        Ok(Engine {
            svc,
            cfg,
            router,
            events,
            tls: crate::client::opportunistic_tls(),
            connector: Arc::new(TcpConnector),
            inflight: Mutex::new(HashSet::new()),
            lanes: Mutex::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            possible_duplicates: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            requeue_pending: AtomicBool::new(true),
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
                    v["timeline"] = json!(l.timeline(now, self.svc.now_ms()));
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

    /// Put recipients caught in the middle of a transaction by the last stop back in the queue;
    /// tried again on every tick until storage takes it.
    async fn requeue_interrupted(&self) {
        match self.svc.store().write(ops::requeue_interrupted).await {
            Ok(n) => {
                self.requeue_pending.store(false, Ordering::Relaxed);
                if n > 0 {
                    self.possible_duplicates.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(
                        recipients = n,
                        "requeued recipients interrupted mid-transaction (possible duplicates)"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot requeue interrupted recipients yet; will retry"),
        }
    }

    async fn tick(self: &Arc<Self>) -> Result<(), weir_store::StoreError> {
        let busy = self.inflight.lock().len();
        if busy >= self.cfg.max_in_flight {
            return Ok(());
        }
        let room = self.cfg.max_in_flight - busy;
        let now = self.svc.now_ms();
        // Picked recipients are out of the due set, so this reads only what is new.
        let due = self.svc.store().read(|c| ops::due_recipients(c, now, room))?;
        let mut picked: Vec<DueRecipient> = Vec::new();
        {
            let mut inflight = self.inflight.lock();
            for d in due {
                if inflight.insert((d.message_id.clone(), d.idx)) {
                    picked.push(d);
                }
            }
        }
        if picked.is_empty() {
            return Ok(());
        }
        let ids: Vec<(String, i64)> = picked.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
        if let Err(e) = self.svc.store().write(move |c| ops::pick(c, &ids)).await {
            self.release(picked.iter());
            return Err(e);
        }
        // One job per (message, domain), in due order.
        let mut groups: Vec<((String, String), Vec<DueRecipient>)> = Vec::new();
        for d in picked {
            let domain = d.address.rsplit_once('@').map(|(_, dom)| dom.to_ascii_lowercase()).unwrap_or_default();
            let key = (d.message_id.clone(), domain);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(d),
                None => groups.push((key, vec![d])),
            }
        }
        for ((_, domain), rcpts) in groups {
            let this = self.clone();
            tokio::spawn(async move { this.route_job(domain, rcpts).await });
        }
        Ok(())
    }

    async fn route_job(self: Arc<Self>, domain: String, rcpts: Vec<DueRecipient>) {
        if domain == simulator::DOMAIN {
            return self.simulate(rcpts).await;
        }
        match self.router.route(&domain).await {
            Ok(route) => {
                let lane = self.lane(&route);
                let bulk = rcpts.iter().any(|r| r.priority > 0);
                let job = Job { rcpts, domain, route };
                let mut q = lane.queue.lock();
                // Transactional work goes ahead of any bulk work already waiting in the lane.
                match q.iter().position(|j| j.rcpts.iter().any(|r| r.priority > 0)) {
                    Some(i) if !bulk => q.insert(i, job),
                    _ => q.push_back(job),
                }
                drop(q);
                self.dispatch(lane);
            }
            Err(e) => {
                // NullMx and NoSuchDomain carry 5xx codes: they bounce; DNS failures defer.
                let reply = Reply::parse(&e.to_string()).unwrap_or_else(|| synth(451, (4, 4, 3), e.to_string()));
                self.finish("dns", Provider::Other, untried(rcpts, &reply, false)).await;
            }
        }
    }

    fn lane(&self, route: &Route) -> Arc<Lane> {
        let mut lanes = self.lanes.lock();
        lanes
            .entry(route.lane.clone())
            .or_insert_with(|| {
                let limits = self
                    .cfg
                    .lanes
                    .get(&route.lane)
                    .or_else(|| self.cfg.lanes.get(route.provider.as_str()))
                    .copied()
                    .unwrap_or_else(|| LaneLimits::for_provider(route.provider));
                Arc::new(Lane::new(route.lane.clone(), route.provider, limits, &self.cfg.pacing))
            })
            .clone()
    }

    fn dispatch(self: &Arc<Self>, lane: Arc<Lane>) {
        // After refused connections, new ones wait (no reconnect storm); while only held bulk
        // mail is queued, no connection is started only to find nothing to send. One delayed
        // dispatch comes back when the wait is over.
        let now = Instant::now();
        let wait = lane.reconnect_wait(now).max(lane.bulk_hold(now).unwrap_or_default());
        if !wait.is_zero() {
            if !lane.dispatch_pending.swap(true, Ordering::AcqRel) {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    lane.dispatch_pending.store(false, Ordering::Release);
                    this.dispatch(lane);
                });
            }
            return;
        }
        loop {
            {
                let allowed = lane.allowance(Instant::now()).connections as usize;
                let mut conns = lane.connections.lock();
                if *conns >= allowed || lane.queue.lock().is_empty() {
                    return;
                }
                *conns += 1;
            }
            let (this, l) = (self.clone(), lane.clone());
            tokio::spawn(async move { this.connection(l).await });
        }
    }

    /// A session with the first target of `route` that takes one, or the stage and reply of the
    /// last refusal.
    async fn open(&self, route: &Route) -> Result<(Client, Target), (Stage, Reply)> {
        let mut last = (Stage::Connect, synth(451, (4, 4, 1), "No answer from any hosts listed in MX"));
        for t in &route.targets {
            let ips = self.router.addrs(&t.host).await;
            let Some(ip) = ips.first() else {
                last = (Stage::Connect, synth(451, (4, 4, 3), format!("{}: no address found for the MX host", t.host)));
                continue;
            };
            let tls = self.cfg.starttls.then(|| (self.tls.clone(), t.host.as_str()));
            let (connect, command) = (self.cfg.connect_timeout, self.cfg.command_timeout);
            match Client::open(
                self.connector.as_ref(),
                &ip.to_string(),
                t.port,
                &self.cfg.helo_name,
                connect,
                command,
                tls,
            )
            .await
            {
                Ok(c) => return Ok((c, t.clone())),
                Err(refused) => last = refused,
            }
        }
        Err(last)
    }

    /// Emit lane timeline entries as LaneChange events.
    fn lane_changes(&self, lane: &Lane, changes: Vec<weir_pacing::controller::TimelineEntry>) {
        for change in changes {
            let mut v = serde_json::to_value(&change).unwrap_or(Value::Null);
            v["at"] = json!(self.svc.now_ms());
            self.events.lane_change(&lane.key, lane.provider.as_str(), v);
        }
    }

    /// One connection task of a lane: takes jobs from the lane's queue until it is empty, the
    /// lane allows fewer connections, or the receiver refuses the connection while others of
    /// the lane are open.
    async fn connection(self: Arc<Self>, lane: Arc<Lane>) {
        let mut conn: Option<(Client, Target)> = None;
        let mut sent = 0usize;
        let mut left = false;
        loop {
            // Surplus connections close between transactions when the allowance drops.
            if lane.leave_if_surplus(Instant::now()) {
                left = true;
                break;
            }
            let bulk_ok = lane.allowance(Instant::now()).bulk_allowed;
            let job = {
                let mut q = lane.queue.lock();
                // While the lane is paused or in an incident, bulk work waits in the queue.
                let pos =
                    if bulk_ok { Some(0) } else { q.iter().position(|j| j.rcpts.iter().all(|r| r.priority == 0)) };
                pos.and_then(|i| q.remove(i))
            };
            let Some(job) = job else { break };
            // Durably `sending` from here until the result is recorded: what a crash leaves in
            // that state is exactly what may have been delivered twice.
            let ids: Vec<(String, i64)> = job.rcpts.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
            let now_ms = self.svc.now_ms();
            if let Err(e) = self.svc.store().write(move |c| ops::mark_sending(c, &ids, now_ms)).await {
                tracing::error!(error = %e, "cannot mark recipients as being sent; they go back to the queue when storage recovers");
                self.unpick(job.rcpts).await;
                continue;
            }
            let wait = lane.reserve(Instant::now());
            if wait > Duration::from_secs(20) {
                // A long pause: do not hold an idle connection open through it.
                if let Some((c, _)) = conn.take() {
                    c.quit().await;
                    lane.set_established(false);
                }
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let reuse = conn
                .as_ref()
                .is_some_and(|(_, t)| sent < lane.limits.messages_per_connection && job.route.targets.contains(t));
            if !reuse {
                if let Some((c, _)) = conn.take() {
                    c.quit().await;
                    lane.set_established(false);
                }
                sent = 0;
            } else if let Some((c, _)) = conn.as_mut()
                && c.rset().await.map(|r| !r.is_positive()).unwrap_or(true)
            {
                conn = None;
                lane.set_established(false);
            }
            if conn.is_none() {
                let gate = lane.reconnect_wait(Instant::now());
                if !gate.is_zero() {
                    tokio::time::sleep(gate).await;
                }
                match self.open(&job.route).await {
                    Ok(c) => {
                        lane.set_established(true);
                        conn = Some(c);
                    }
                    Err((stage, reply)) => {
                        if self.connection_refused(&lane, job, stage, reply).await {
                            let mut conns = lane.connections.lock();
                            *conns -= 1;
                            left = true;
                            break;
                        }
                        continue;
                    }
                }
            }
            let Some((client, target)) = conn.as_mut() else { continue };
            let mta = format!("{}:{}", target.host, target.port);
            let (outcomes, untried, closed) = self.transactions(&lane, client, &mta, job.rcpts).await;
            if closed {
                // The server ended the session (421, close, timeout): never reused.
                conn = None;
                lane.set_established(false);
            }
            if !untried.is_empty() {
                // Recipients the closed session never reached go back to the lane, first in line.
                lane.queue.lock().push_front(Job {
                    rcpts: untried,
                    domain: job.domain.clone(),
                    route: job.route.clone(),
                });
            }
            sent += 1;
            if !outcomes.is_empty() {
                self.finish(&lane.key, lane.provider, outcomes).await;
            }
        }
        if let Some((c, _)) = conn {
            c.quit().await;
            lane.set_established(false);
        }
        let last = {
            let mut conns = lane.connections.lock();
            if !left {
                *conns -= 1;
            }
            *conns == 0
        };
        if !lane.queue.lock().is_empty() {
            self.dispatch(lane);
        } else if last {
            let changes = lane.drained(Instant::now());
            self.lane_changes(&lane, changes);
        }
    }

    /// The receiver refused a connection (or it failed) before a session. The lane uses fewer
    /// connections and waits before the next; the rate is left alone, except for replies that
    /// say something about the sender (4.7.28, TS04, reputation, authentication), which go to the
    /// controller as any reply would. With other connections of the lane open, the job goes back
    /// to the queue untried and `true` says this task should end; alone, the lane's queued
    /// recipients are deferred with the reply.
    async fn connection_refused(&self, lane: &Arc<Lane>, job: Job, stage: Stage, reply: Reply) -> bool {
        let category = weir_classify::classify::category(&reply, lane.provider).0;
        tracing::debug!(lane = %lane.key, stage = stage.as_str(), %reply, "connection refused");
        let changes = lane.on_connection_refused(Instant::now(), &reply.to_string());
        self.lane_changes(lane, changes);
        if matches!(
            category,
            Category::UnusualRate | Category::YahooDeferral | Category::Reputation | Category::AuthOrTransport
        ) {
            let changes = lane.on_reply(Instant::now(), category, &reply.to_string());
            self.lane_changes(lane, changes);
        }
        // Other connections of the lane are open or still opening: the receiver is there, this
        // one was over its cap. The job waits for them.
        if lane.established() > 0 || *lane.connections.lock() > 1 {
            lane.queue.lock().push_front(job);
            return true;
        }
        // The only connection of the lane was refused: the receiver takes nothing now. This job
        // and everything queued behind it are deferred with that reply (as an MTA marks a
        // destination dead), rather than tried one by one against it.
        let mut jobs = vec![job];
        jobs.extend(lane.queue.lock().drain(..));
        for job in jobs {
            self.finish(&lane.key, lane.provider, untried(job.rcpts, &reply, true)).await;
        }
        false
    }

    /// Deliver one job's recipients over `client`, in transactions of at most the lane's
    /// recipients per transaction. Returns the outcomes, the recipients never tried because
    /// the session ended, and whether it ended.
    async fn transactions(
        &self,
        lane: &Lane,
        client: &mut Client,
        mta: &str,
        rcpts: Vec<DueRecipient>,
    ) -> (Vec<Outcome1>, Vec<DueRecipient>, bool) {
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let body = match self.svc.store().read(|c| ops::spool_body(c, &rcpts[0].message_id)) {
            Ok(Some(b)) => b,
            other => {
                tracing::error!(message = %rcpts[0].message_id, ?other, "spooled body missing");
                let reply = synth(451, (4, 3, 0), "local error: message body unavailable");
                outcomes.extend(rcpts.into_iter().map(|rcpt| Outcome1 {
                    rcpt,
                    reply: reply.clone(),
                    mta: mta.to_string(),
                    tls: false,
                    refused_connection: false,
                }));
                return (outcomes, Vec::new(), false);
            }
        };
        let mut per_txn = lane.limits.recipients_per_transaction.max(1);
        let mut pending: std::collections::VecDeque<DueRecipient> = rcpts.into();
        let mut first_txn = true;
        while !pending.is_empty() {
            if !first_txn && client.rset().await.map(|r| !r.is_positive()).unwrap_or(true) {
                return (outcomes, pending.into(), true);
            }
            first_txn = false;
            let chunk: Vec<DueRecipient> = pending.drain(..per_txn.min(pending.len())).collect();
            let addrs: Vec<String> = chunk.iter().map(|r| r.address.clone()).collect();
            let tls = client.tls;
            let txn = client.send(&chunk[0].mail_from, &addrs, &body).await;
            let mut again = Vec::new();
            let n = chunk.len();
            for (rcpt, rr) in chunk.into_iter().zip(txn.rcpts) {
                // 452 4.5.3: this server takes fewer recipients per transaction; the rest go in
                // the next one on this connection.
                if !txn.closed && weir_classify::classify::category(&rr, lane.provider).0 == Category::TooManyRecipients
                {
                    again.push((rcpt, rr));
                    continue;
                }
                let reply = if rr.is_positive() { txn.data.clone().unwrap_or(rr) } else { rr };
                outcomes.push(Outcome1 { rcpt, reply, mta: mta.to_string(), tls, refused_connection: false });
            }
            let taken = n - again.len();
            if taken == 0 {
                // Not one recipient taken: defer them rather than loop.
                outcomes.extend(again.into_iter().map(|(rcpt, reply)| Outcome1 {
                    rcpt,
                    reply,
                    mta: mta.to_string(),
                    tls,
                    refused_connection: false,
                }));
            } else if !again.is_empty() {
                per_txn = taken;
                for (rcpt, _) in again.into_iter().rev() {
                    pending.push_front(rcpt);
                }
            }
            if txn.closed {
                return (outcomes, pending.into(), true);
            }
        }
        (outcomes, Vec::new(), false)
    }

    async fn simulate(self: Arc<Self>, rcpts: Vec<DueRecipient>) {
        let mut outcomes = Vec::new();
        for rcpt in rcpts {
            let reply = match simulator::outcome(&rcpt.address) {
                Some(Outcome::Delivered(r)) => r,
                Some(Outcome::Complaint(r)) => {
                    let mail = self.mail_info(&rcpt);
                    let now = self.svc.now_ms();
                    self.events.complaint(&mail, now, &rcpt.address);
                    let (a, reg) = (rcpt.account_id, rcpt.region.clone());
                    self.svc.store().write_detached(move |c| ops::record_feedback(c, a, &reg, now, 0, 1));
                    r
                }
                Some(Outcome::Bounce(r)) => r,
                Some(Outcome::Suppressed) => {
                    synth(550, (5, 1, 1), "Address is on the suppression list (mailbox simulator)")
                }
                None => synth(250, (2, 0, 0), "Ok"),
            };
            outcomes.push(Outcome1 {
                rcpt,
                reply,
                mta: simulator::DOMAIN.into(),
                tls: true,
                refused_connection: false,
            });
        }
        self.finish("simulator", Provider::Other, outcomes).await;
    }

    fn mail_info(&self, r: &DueRecipient) -> MailInfo {
        let account = self.svc.account_by_id(r.account_id).map(|a| a.name.clone()).unwrap_or_default();
        MailInfo {
            message_id: r.message_id.clone(),
            source: r.mail_from.clone(),
            timestamp_ms: r.created_ms,
            account,
            region: r.region.clone(),
        }
    }

    /// Apply the classifier's decision for every outcome, durably, then tell the world (events,
    /// suppression) and release the recipients.
    async fn finish(&self, lane_key: &str, provider: Provider, outcomes: Vec<Outcome1>) {
        let now = self.svc.now_ms();
        let lane = self.lanes.lock().get(lane_key).cloned();
        let mut results = Vec::with_capacity(outcomes.len());
        let mut bounces: Vec<(i64, String)> = Vec::new();
        // Events and suppressions wait for the results' commit: none announces what is not stored.
        let mut announce: Vec<Announce> = Vec::new();
        let mut suppress_now: Vec<DueRecipient> = Vec::new();
        for o in &outcomes {
            let d = classify(&o.reply, provider);
            if let Some(l) = lane.as_ref().filter(|_| !o.refused_connection) {
                for change in l.on_reply(Instant::now(), d.category, &o.reply.to_string()) {
                    let mut v = serde_json::to_value(&change).unwrap_or(Value::Null);
                    v["at"] = json!(now);
                    self.events.lane_change(lane_key, provider.as_str(), v);
                }
            }
            let mail = self.mail_info(&o.rcpt);
            let first = o.rcpt.attempts == 0;
            let reply_text = o.reply.to_string();
            let status = o.reply.enhanced_str().unwrap_or_else(|| format!("{}.0.0", o.reply.code / 100));
            let diagnostic = format!("smtp; {reply_text}");
            let mut stats = self.stats.lock();
            let s = stats
                .entry(lane_key.to_string())
                .or_insert_with(|| LaneStats { provider: provider.as_str().into(), ..Default::default() });
            if first {
                s.first_attempts += 1;
            }
            let (state, next, deferral) = match d.action {
                Action::Delivered => {
                    s.delivered += 1;
                    if !first {
                        s.delivered_after_retry += 1;
                    }
                    let (rcpt, reply, mta, tls) = (o.rcpt.address.clone(), reply_text.clone(), o.mta.clone(), o.tls);
                    announce.push(Box::new(move |ev| ev.delivery(&mail, now, &rcpt, &reply, &mta, tls)));
                    ("delivered", 0, false)
                }
                Action::Bounce { bounce_type, subtype, suppress } => {
                    // A second hard bounce of the same address suppresses it too.
                    let suppress = suppress
                        || (bounce_type == weir_classify::classify::BounceType::Permanent
                            && self
                                .svc
                                .store()
                                .read(|c| ops::hard_bounces(c, o.rcpt.account_id, &o.rcpt.address))
                                .unwrap_or(0)
                                >= 1);
                    s.bounced += 1;
                    let (rcpt, kind, status, diagnostic) =
                        (o.rcpt.address.clone(), bounce_type.as_str(), status.clone(), diagnostic.clone());
                    announce.push(Box::new(move |ev| {
                        let f = Failure { kind, subtype, status: &status, diagnostic: &diagnostic };
                        ev.bounce(&mail, now, &rcpt, &f);
                    }));
                    bounces.push((o.rcpt.account_id, o.rcpt.region.clone()));
                    if suppress
                        && o.rcpt
                            .address
                            .to_ascii_lowercase()
                            .rsplit_once('@')
                            .is_none_or(|(_, dom)| dom != simulator::DOMAIN)
                    {
                        let settings = self.svc.region_settings(o.rcpt.account_id, &o.rcpt.region);
                        if settings.suppressed_reasons.iter().any(|r| r == "BOUNCE") {
                            suppress_now.push(o.rcpt.clone());
                        }
                    }
                    ("bounced", 0, false)
                }
                action => {
                    s.deferrals += 1;
                    if first {
                        s.first_attempt_deferrals += 1;
                    }
                    if matches!(action, Action::ConfigIncident) {
                        tracing::error!(lane = %lane_key, reply = %reply_text, "configuration incident: fix authentication/transport");
                    }
                    let attempt = o.rcpt.attempts as u32 + 1;
                    let scheduled =
                        self.cfg.schedule.next_attempt(o.rcpt.created_ms, now, attempt, rand::random::<f64>());
                    let next = match (d.category, &lane) {
                        (Category::TooManyRecipients, _) => Some(now + 1000),
                        // The lane was throttled, not this recipient: it is tried again when the
                        // lane may send again (its pause over, or a minute), not after the
                        // recipient backoff, which only lengthens the drain. Only with pacing on:
                        // a lane that does not slow down would just be refused again.
                        (
                            Category::RateLimited
                            | Category::YahooDeferral
                            | Category::UnusualRate
                            | Category::TooManyConnections,
                            Some(l),
                        ) if self.cfg.pacing.adaptive => {
                            scheduled.map(|t| t.min(now + l.retry_after_throttle(Instant::now()).as_millis() as i64))
                        }
                        _ => scheduled,
                    };
                    match next {
                        Some(t) => {
                            let (rcpt, subtype, status, diagnostic) =
                                (o.rcpt.address.clone(), delay_type(d.category), status.clone(), diagnostic.clone());
                            announce.push(Box::new(move |ev| {
                                let f = Failure { kind: "", subtype, status: &status, diagnostic: &diagnostic };
                                ev.delay(&mail, now, &rcpt, &f, t);
                            }));
                            ("queued", t, true)
                        }
                        None => {
                            s.expired += 1;
                            let first_reason = o.rcpt.first_reply.clone().unwrap_or(reply_text.clone());
                            let diag = format!("smtp; retry window expired; first deferral: {first_reason}");
                            let rcpt = o.rcpt.address.clone();
                            announce.push(Box::new(move |ev| {
                                let f = Failure {
                                    kind: "Transient",
                                    subtype: "General",
                                    status: "4.4.7",
                                    diagnostic: &diag,
                                };
                                ev.bounce(&mail, now, &rcpt, &f);
                            }));
                            ("expired", 0, true)
                        }
                    }
                }
            };
            drop(stats);
            results.push(AttemptResult {
                message_id: o.rcpt.message_id.clone(),
                idx: o.rcpt.idx,
                state: state.into(),
                next_attempt_ms: next,
                reply: reply_text,
                deferral,
            });
        }
        if self.record(results, bounces, now).await {
            for a in announce {
                a(&self.events);
            }
            for r in suppress_now {
                let svc = self.svc.clone();
                tokio::spawn(async move {
                    if let Err(e) = svc
                        .put_suppressed(r.account_id, &r.region, &r.address, "BOUNCE", Some(r.message_id.clone()))
                        .await
                    {
                        tracing::error!(error = %e, "cannot add to the suppression list");
                    }
                });
            }
        }
        self.release(outcomes.iter().map(|o| &o.rcpt));
    }

    /// Give picked, unsent recipients back to the queue (retried until storage takes it, or the
    /// engine stops: the next start requeues them), then out of the in-flight set.
    async fn unpick(&self, rcpts: Vec<DueRecipient>) {
        let ids: Vec<(String, i64)> = rcpts.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
        let mut pause = Duration::from_millis(100);
        loop {
            let ids = ids.clone();
            if self.svc.store().write(move |c| ops::unpick(c, &ids)).await.is_ok() {
                break;
            }
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        self.release(rcpts.iter());
    }

    /// Take recipients out of the in-flight set (they are picked again from the spool).
    fn release<'a>(&self, rcpts: impl Iterator<Item = &'a DueRecipient>) {
        let mut inflight = self.inflight.lock();
        for r in rcpts {
            inflight.remove(&(r.message_id.clone(), r.idx));
        }
    }

    /// Record `results` and the feedback counts; on a storage failure (a full disk) try again,
    /// backing off, until it works or the engine stops. Returns whether they were recorded.
    async fn record(&self, results: Vec<AttemptResult>, bounces: Vec<(i64, String)>, now: i64) -> bool {
        let mut pause = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let (r, b) = (results.clone(), bounces.clone());
            let write = self.svc.store().write(move |c| {
                ops::record_attempts(c, &r, now)?;
                for (a, reg) in &b {
                    ops::record_feedback(c, *a, reg, now, 1, 0)?;
                }
                Ok(())
            });
            match write.await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures + 1, "delivery results recorded after storage recovered");
                    }
                    return true;
                }
                Err(e) => {
                    if failures.is_multiple_of(50) {
                        tracing::error!(error = %e, recipients = results.len(), "cannot record delivery results; retrying");
                    }
                    failures += 1;
                }
            }
            if self.stopping.load(Ordering::Relaxed) {
                // They stay `sending` and are requeued (counted as possible duplicates) at the next start.
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

fn delay_type(c: Category) -> &'static str {
    match c {
        Category::RateLimited | Category::UnusualRate | Category::YahooDeferral | Category::RecipientRateLimited => {
            "RecipientServerError"
        }
        Category::MailboxFull => "MailboxFull",
        Category::AuthOrTransport => "TransientCommunicationFailure",
        Category::TooManyRecipients => "TooManyRequests",
        _ => "General",
    }
}
