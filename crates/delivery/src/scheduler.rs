//! The scheduler: due recipients out of the spool, grouped into jobs, routed to lanes, and
//! connection tasks started as each lane's allowance permits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_store::model::Priority;

use tokio::time::Instant;
use weir_classify::provider::Provider;
use weir_classify::reply::Reply;
use weir_store::spool::DueRecipient;

use crate::engine::Engine;
use crate::lane::Job;
use crate::lane::{Lane, LaneLimits};
use crate::outcome::{synth, untried};
use crate::route::Route;
use crate::simulator;

/// How often the due mail in the spool is counted for the lanes, ms, and the most counted.
const WAITING_COUNT_EVERY_MS: i64 = 5_000;
const WAITING_COUNT_CAP: u64 = 200_000;

/// A paced mailbox's message whose turn comes within this long waits for it in memory.
const TURN_HELD: Duration = Duration::from_secs(120);

impl Engine {
    /// Put recipients caught in the middle of a transaction by the last stop back in the queue;
    /// tried again on every tick until storage takes it.
    pub(crate) async fn requeue_interrupted(&self) {
        match self.spool.requeue_interrupted().await {
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

    /// Hold `r` (in flight) in memory until its paced mailbox's turn `at`, when that is soon
    /// and room is left: it keeps its place, where put back in the queue it would come back
    /// only after every recipient due before it (a whole backlog, its turn long past). Gives
    /// `r` back when it is not held.
    pub(crate) fn hold_turn(&self, r: DueRecipient, at: i64, now: i64) -> Option<DueRecipient> {
        let mut turns = self.turns.lock();
        if at - now > TURN_HELD.as_millis() as i64 || turns.len() >= self.cfg.max_in_flight / 4 {
            return Some(r);
        }
        turns.push((at, r));
        None
    }

    /// Held recipients whose turn has come go to the front of their lane.
    fn turns_due(self: &Arc<Self>) {
        let now = self.senders.now_ms();
        let due: Vec<DueRecipient> = {
            let mut turns = self.turns.lock();
            if turns.is_empty() {
                return;
            }
            let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *turns).into_iter().partition(|(at, _)| *at <= now);
            *turns = kept;
            due.into_iter().map(|(_, r)| r).collect()
        };
        for r in due {
            let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            let this = self.clone();
            tokio::spawn(async move { this.route_job(domain, vec![r]).await });
        }
    }

    /// Every few seconds, tell the lanes how much is due in the spool beyond what the engine
    /// holds in flight (counted up to a bound: past it, a probe for a higher rate pays anyway).
    fn count_waiting(&self, now: i64) {
        let last = self.waiting_counted_ms.load(Ordering::Relaxed);
        if now - last < WAITING_COUNT_EVERY_MS && last != 0 {
            return;
        }
        self.waiting_counted_ms.store(now.max(1), Ordering::Relaxed);
        let n = match self.spool.due_count(now, WAITING_COUNT_CAP) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the queue");
                return;
            }
        };
        for lane in self.lanes.lock().values() {
            lane.spool_waiting.store(n, Ordering::Relaxed);
        }
    }

    pub(crate) async fn tick(self: &Arc<Self>) -> Result<(), weir_store::StoreError> {
        self.turns_due();
        // A lane allowed more connections than it runs (a step up after a pause) opens them
        // here: otherwise only new work arriving for it would, and a backlog picked before the
        // pause would go out over the one connection that outlived it.
        let waiting: Vec<Arc<Lane>> =
            self.lanes.lock().values().filter(|l| !l.queue.lock().is_empty()).cloned().collect();
        for lane in waiting {
            self.dispatch(lane);
        }
        let busy = self.inflight.lock().len();
        let now = self.senders.now_ms();
        self.count_waiting(now);
        if busy >= self.cfg.max_in_flight {
            return Ok(());
        }
        let room = self.cfg.max_in_flight - busy;
        // Picked recipients are out of the due set, so this reads only what is new.
        let due = self.spool.due(now, room)?;
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
        if let Err(e) = self.spool.pick(ids).await {
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

    pub(crate) async fn route_job(self: Arc<Self>, domain: String, rcpts: Vec<DueRecipient>) {
        if domain == simulator::DOMAIN {
            return self.simulate(rcpts).await;
        }
        match self.router.route(&domain).await {
            Ok(route) => {
                let lane = self.lane(&route);
                let bulk = rcpts.iter().any(|r| r.priority == Priority::Bulk);
                // A paced mailbox's message back at its turn goes first: behind the lane's
                // backlog its turn would pass.
                let turn = {
                    let paces = self.mailboxes.lock();
                    rcpts.iter().any(|r| paces.paced(&r.address))
                };
                let job = Job { rcpts, domain, route };
                let mut q = lane.queue.lock();
                // Transactional work goes ahead of any bulk work already waiting in the lane.
                match q.iter().position(|j| j.rcpts.iter().any(|r| r.priority == Priority::Bulk)) {
                    _ if turn => q.push_front(job),
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

    pub(crate) fn lane(&self, route: &Route) -> Arc<Lane> {
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

    pub(crate) fn dispatch(self: &Arc<Self>, lane: Arc<Lane>) {
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
}
