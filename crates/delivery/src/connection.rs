//! Connection tasks: one SMTP session at a time per task, taking jobs from its lane's queue,
//! obeying the lane's allowance, and handing every recipient's reply to the outcome handling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use weir_store::model::Priority;

use serde_json::{Value, json};
use tokio::time::Instant;
use weir_classify::classify::{Scope, classify};
use weir_classify::provider::Provider;
use weir_classify::reply::Reply;
use weir_store::spool::DueRecipient;

use crate::client::{Client, Stage, Timeouts, Transaction};
use crate::engine::Engine;
use crate::lane::Job;
use crate::lane::Lane;
use crate::outcome::{RcptOutcome, synth, untried};
use crate::route::{Route, Target};

impl Engine {
    /// A session with the first target of `route` that takes one, or the stage and reply of the
    /// last refusal.
    pub(crate) async fn open(&self, lane: &Lane, route: &Route) -> Result<(Client, Target), (Stage, Reply)> {
        let mut last = (Stage::Connect, synth(451, (4, 4, 1), "No answer from any hosts listed in MX"));
        // Hosts that did not answer lately are skipped while another MX is left to try.
        let now = Instant::now();
        let alive: Vec<&Target> = {
            let mut dead = self.dead_hosts.lock();
            dead.retain(|_, until| *until > now);
            route.targets.iter().filter(|t| !dead.contains_key(&format!("{}:{}", t.host, t.port))).collect()
        };
        let targets: Vec<&Target> = if alive.is_empty() { route.targets.iter().collect() } else { alive };
        let timeouts = Timeouts {
            connect: self.cfg.connect_timeout,
            greeting: self.cfg.greeting_timeout,
            command: self.cfg.command_timeout,
        };
        for t in targets {
            let ips = self.router.addrs(&t.host).await;
            let Some(ip) = ips.first() else {
                last = (Stage::Connect, synth(451, (4, 4, 3), format!("{}: no address found for the MX host", t.host)));
                continue;
            };
            let tls = self.cfg.starttls.then(|| (self.tls.clone(), t.host.as_str()));
            match Client::open(self.connector.as_ref(), &ip.to_string(), t.port, &self.cfg.helo_name, timeouts, tls)
                .await
            {
                Ok(c) => return Ok((c, t.clone())),
                Err(refused) => {
                    if did_not_answer(&refused) {
                        self.host_did_not_answer(lane, t, &refused.1, route.targets.len() > 1);
                    }
                    last = refused;
                }
            }
        }
        Err(last)
    }

    /// Remember a host that did not answer, so the next connections go to the other MX hosts.
    fn host_did_not_answer(&self, lane: &Lane, t: &Target, reply: &Reply, others: bool) {
        let key = format!("{}:{}", t.host, t.port);
        let until = Instant::now() + self.cfg.dead_host_for;
        let fresh = self.dead_hosts.lock().insert(key.clone(), until).is_none();
        if fresh {
            let secs = self.cfg.dead_host_for.as_secs();
            tracing::warn!(lane = %lane.key, host = %key, %reply, skip_seconds = secs,
                "a mail server did not answer; it is skipped for a while{}",
                if others { " and the domain's other MX hosts are tried" } else { "" });
            let changes = lane.note(
                Instant::now(),
                "host_skipped",
                &format!("{key} did not answer ({reply}); skipped for {secs} s"),
            );
            self.lane_changes(lane, changes);
        }
    }

    /// Emit lane timeline entries as LaneChange events.
    pub(crate) fn lane_changes(&self, lane: &Lane, changes: Vec<weir_pacing::controller::TimelineEntry>) {
        for change in changes {
            let mut v = serde_json::to_value(&change).unwrap_or(Value::Null);
            v["at"] = json!(self.senders.now_ms());
            self.events.lane_change(&lane.key, lane.provider.as_str(), v);
        }
    }

    /// One connection task of a lane: takes jobs from the lane's queue until it is empty, the
    /// lane allows fewer connections, or the receiver refuses the connection while others of
    /// the lane are open.
    pub(crate) async fn connection(self: Arc<Self>, lane: Arc<Lane>) {
        let mut conn: Option<(Client, Target)> = None;
        let mut sent = 0usize;
        let mut left = false;
        loop {
            // Surplus connections close between transactions when the allowance drops.
            if lane.leave_if_surplus(Instant::now()) {
                left = true;
                break;
            }
            let Some(job) = next_job(&lane) else { break };
            let job = match self.ready(&lane, job, &mut conn).await {
                Ready::Go(job) => job,
                Ready::Skip => continue,
                Ready::Leave => {
                    left = true;
                    break;
                }
            };
            // Durably `sending` from here until the result is recorded: what a crash leaves in
            // that state is exactly what may have been delivered twice.
            let ids: Vec<(String, i64)> = job.rcpts.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
            if let Err(e) = self.spool.mark_sending(ids, self.senders.now_ms()).await {
                tracing::error!(error = %e, "cannot mark recipients as being sent; they go back to the queue when storage recovers");
                self.unpick(job.rcpts).await;
                continue;
            }
            let (job, reused) = match self.session_for(&lane, job, &mut conn, &mut sent).await {
                Ok(found) => found,
                Err(leave) => {
                    if leave {
                        *lane.connections.lock() -= 1;
                        left = true;
                        break;
                    }
                    continue;
                }
            };
            let Some((client, target)) = conn.as_mut() else { continue };
            let mta = format!("{}:{}", target.host, target.port);
            let (outcomes, untried, closed, locked) = self.transactions(&lane, client, &mta, job.rcpts, reused).await;
            if closed {
                // The server ended the session (421, close, timeout): never reused.
                conn = None;
                lane.set_established(false);
            }
            let Job { domain, route, .. } = job;
            if self.settle(&lane, Job { rcpts: untried, domain, route }, outcomes, locked).await {
                sent += 1;
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

    /// Whether `job` may be sent now, after waiting for the lane's pace (and, in a cluster, the
    /// lane's shared cap). A domain held at this receiver, or mailboxes waiting for their turns,
    /// set its recipients aside; a lock-out begun during the wait sends this connection away.
    async fn ready(&self, lane: &Arc<Lane>, job: Job, conn: &mut Option<(Client, Target)>) -> Ready {
        // A sending domain whose authentication this receiver refused: its mail waits.
        let from = job.rcpts[0].mail_from.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
        if let Some(until) = lane.domain_held(Instant::now(), &from) {
            let wait = until.saturating_duration_since(Instant::now());
            let at = self.senders.now_ms() + wait.as_millis() as i64;
            let why = "the receiver refuses the sending domain's authentication; waiting";
            self.postpone_until(job.rcpts, at, why).await;
            return Ready::Skip;
        }
        // Mailboxes that asked for fewer messages: theirs wait for their turn, unsent.
        let Some(job) = self.mailbox_turns(lane, job).await.filter(|j| !j.rcpts.is_empty()) else {
            return Ready::Skip;
        };
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
            // A lock-out may have begun meanwhile, allowing one connection: the others give
            // their work back rather than knock all at once when the wait ends.
            if lane.leave_if_surplus(Instant::now()) {
                lane.queue.lock().push_front(job);
                return Ready::Leave;
            }
        }
        if lane.limits.cluster_messages_per_minute > 0 {
            // The lane's share across every node, on top of this node's own pacing.
            loop {
                let w = self.senders.shared_lane_wait(&lane.key, lane.limits.cluster_messages_per_minute).await;
                if w.is_zero() {
                    break;
                }
                tokio::time::sleep(w).await;
            }
        }
        Ready::Go(job)
    }

    /// The session that carries `job`: the open one if it goes to one of the job's hosts and has
    /// room, else a new one. Whether it is reused (it resets in the first transaction's
    /// pipelined batch); Err when the receiver refused the connection (the job was handled),
    /// true if this connection task should end.
    async fn session_for(
        &self,
        lane: &Arc<Lane>,
        job: Job,
        conn: &mut Option<(Client, Target)>,
        sent: &mut usize,
    ) -> Result<(Job, bool), bool> {
        let reuse = conn
            .as_ref()
            .is_some_and(|(_, t)| *sent < lane.limits.messages_per_connection && job.route.targets.contains(t));
        if !reuse {
            if let Some((c, _)) = conn.take() {
                c.quit().await;
                lane.set_established(false);
            }
            *sent = 0;
        }
        if conn.is_some() {
            return Ok((job, reuse));
        }
        let gate = lane.reconnect_wait(Instant::now());
        if !gate.is_zero() {
            tokio::time::sleep(gate).await;
        }
        match self.open(lane, &job.route).await {
            Ok(c) => {
                lane.set_established(true);
                *conn = Some(c);
                Ok((job, false))
            }
            Err((stage, reply)) => Err(self.connection_refused(lane, job, stage, reply).await),
        }
    }

    /// After a session's transactions: recipients it never reached (`untried`) go back to the
    /// lane, first in line, or, when MAIL FROM was deferred (`locked`), wait with no attempt
    /// counted; the outcomes are recorded. Whether a message was sent on the session.
    async fn settle(&self, lane: &Arc<Lane>, untried: Job, outcomes: Vec<RcptOutcome>, locked: Option<Reply>) -> bool {
        let sent = match locked {
            Some(reply) => {
                // MAIL FROM deferred: nothing was offered for these recipients. The lane learns
                // the reply once; they wait, no attempt counted (and, while the lane is paused,
                // everything queued behind them).
                let category = classify(&reply, lane.provider).category;
                let changes = lane.on_reply(Instant::now(), category, &reply.to_string());
                self.lane_changes(lane, changes);
                let mut rcpts = untried.rcpts;
                if lane.allowance(Instant::now()).paused_until.is_some() {
                    for j in lane.queue.lock().drain(..) {
                        rcpts.extend(j.rcpts);
                    }
                }
                self.set_aside(lane, rcpts, &reply).await;
                false
            }
            None => {
                if !untried.rcpts.is_empty() {
                    lane.queue.lock().push_front(untried);
                }
                true
            }
        };
        if !outcomes.is_empty() {
            self.finish(&lane.key, lane.provider, outcomes).await;
        }
        sent
    }

    /// Recipients whose mailbox asked for fewer messages and whose turn has not come wait for
    /// it, unsent and no attempt counted: a turn soon in memory (see [`Engine::hold_turn`];
    /// behind a backlog that fills the in-flight set, one put back in the queue would come back
    /// only after the whole backlog, its turns long past), a later one in the queue. Returns the
    /// job with the recipients that may go now, if any.
    async fn mailbox_turns(&self, lane: &Lane, job: Job) -> Option<Job> {
        let now = self.senders.now_ms();
        let Job { rcpts, domain, route } = job;
        let (mut go, mut wait) = (Vec::with_capacity(rcpts.len()), Vec::new());
        {
            let mut paces = self.mailboxes.lock();
            if paces.is_empty() {
                return Some(Job { rcpts, domain, route });
            }
            for r in rcpts {
                match paces.turn(&r.address, (&r.message_id, r.idx), now) {
                    Some(at) => wait.push((r, at)),
                    None => go.push(r),
                }
            }
        }
        let mut later = Vec::new();
        for (r, at) in wait {
            if let Some(r) = self.hold_turn(r, at, now) {
                later.push((r, at));
            }
        }
        if !later.is_empty() {
            let rows: Vec<((String, i64), i64)> =
                later.iter().map(|(r, at)| ((r.message_id.clone(), r.idx), *at)).collect();
            let reason = "waiting for the mailbox's pace (it asked for fewer messages)".to_string();
            match self.spool.postpone(rows, reason).await {
                Ok(()) => self.release(later.iter().map(|(r, _)| r)),
                Err(e) => {
                    tracing::error!(lane = %lane.key, error = %e, "cannot put paced recipients back; they go now");
                    go.extend(later.into_iter().map(|(r, _)| r));
                }
            }
        }
        (!go.is_empty()).then_some(Job { rcpts: go, domain, route })
    }

    /// Recipients not offered to the receiver because it refused the sending IP or the
    /// connection: back to the queue until the lane may try again, no attempt counted, no
    /// backoff advanced. Those whose retry window is over expire now.
    pub(crate) async fn set_aside(&self, lane: &Lane, rcpts: Vec<DueRecipient>, reply: &Reply) {
        if rcpts.is_empty() {
            return;
        }
        if !self.cfg.pacing.adaptive {
            // Pacing off (the simulator's fixed-rate and Postfix-like senders): as a classic
            // MTA does, the refusal defers the recipients on their own retry schedule.
            self.finish(&lane.key, lane.provider, untried(rcpts, reply, true)).await;
            return;
        }
        let now = Instant::now();
        let wait = lane.retry_wait(now).max(Duration::from_secs(1));
        let now_ms = self.senders.now_ms();
        let at = now_ms + wait.as_millis() as i64;
        let (expired, waiting): (Vec<DueRecipient>, Vec<DueRecipient>) =
            rcpts.into_iter().partition(|r| at > r.created_ms + self.retry_window_ms(r));
        if !expired.is_empty() {
            self.finish(&lane.key, lane.provider, untried(expired, reply, true)).await;
        }
        if waiting.is_empty() {
            return;
        }
        lane.hold_until(now + wait);
        let text = reply.to_string();
        tracing::info!(lane = %lane.key, reply = %text, recipients = waiting.len(), wait_seconds = wait.as_secs(),
            "the receiver refused before any recipient was offered; they wait without an attempt counted");
        self.postpone_until(waiting, at, &text).await;
    }

    /// Put recipients back in the queue until `at_ms` with `reason` as their last reply, no
    /// attempt counted (tried again until storage takes it, or the engine stops: the next start
    /// requeues them), then out of the in-flight set.
    async fn postpone_until(&self, rcpts: Vec<DueRecipient>, at_ms: i64, reason: &str) {
        let until: Vec<((String, i64), i64)> = rcpts.iter().map(|r| ((r.message_id.clone(), r.idx), at_ms)).collect();
        let mut pause = Duration::from_millis(100);
        loop {
            if self.spool.postpone(until.clone(), reason.to_string()).await.is_ok() {
                break;
            }
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        self.release(rcpts.iter());
    }

    /// How long after acceptance `r` may still be retried (its configuration set may shorten it).
    pub(crate) fn retry_window_ms(&self, r: &DueRecipient) -> i64 {
        let window = self.cfg.schedule.window.as_millis() as i64;
        self.options(r).max_delivery_ms.map_or(window, |m| m.min(window))
    }

    /// The receiver refused a connection (or it failed) before a session. The reply acts at its
    /// scope: a connection cap lowers the lane's connections; a lock-out, block or
    /// authentication refusal goes to the controller as any reply would; a host that did not
    /// answer was remembered by `open`. New connections wait (doubling). With other connections
    /// of the lane open, the job goes back to the queue and `true` says this task should end;
    /// alone, the job and the lane's queue wait until the lane may try again, without an attempt
    /// counted for any recipient: none was offered.
    pub(crate) async fn connection_refused(&self, lane: &Arc<Lane>, job: Job, stage: Stage, reply: Reply) -> bool {
        let d = classify(&reply, lane.provider);
        tracing::debug!(lane = %lane.key, stage = stage.as_str(), %reply, scope = d.scope.as_str(), "connection refused");
        let now = Instant::now();
        let changes = match d.scope {
            Scope::Connection => lane.on_connection_refused(now, &reply.to_string()),
            Scope::SendingIp | Scope::DomainAuth => {
                lane.gate_after_refusal(now);
                lane.on_reply(now, d.category, &reply.to_string())
            }
            _ => {
                lane.gate_after_refusal(now);
                Vec::new()
            }
        };
        self.lane_changes(lane, changes);
        // Other connections of the lane are open or still opening: the receiver is there, this
        // one was over its cap. The job waits for them.
        if d.scope == Scope::Connection && (lane.established() > 0 || *lane.connections.lock() > 1) {
            lane.queue.lock().push_front(job);
            return true;
        }
        let mut rcpts = job.rcpts;
        for j in lane.queue.lock().drain(..) {
            rcpts.extend(j.rcpts);
        }
        self.set_aside(lane, rcpts, &reply).await;
        false
    }

    /// The message as sent: with a DKIM signature when its From domain's DKIM signs (signed
    /// per attempt, so a key enabled or rotated after acceptance is the one used). An RSA
    /// signature takes a millisecond or more of CPU: it is made on the blocking pool, so the
    /// async workers keep serving the front doors meanwhile.
    async fn signed_body(&self, r: &DueRecipient, body: Vec<u8>) -> Vec<u8> {
        if !self.senders.dkim_in_use() {
            return body;
        }
        let Some(domain) = weir_mail::dkim::from_domain(&body) else { return body };
        let Some(signer) = self.senders.dkim_signer(r.account_id, &r.region, &domain) else { return body };
        // The copy stays here, so that whatever happens to the signing thread the message goes.
        let unsigned = body.clone();
        match tokio::task::spawn_blocking(move || signer.signed(&body)).await {
            Ok(Ok(signed)) => signed,
            Ok(Err(e)) => {
                tracing::warn!(message_id = %r.message_id, error = %e, "DKIM signing failed; sent unsigned");
                unsigned
            }
            Err(e) => {
                tracing::error!(message_id = %r.message_id, error = %e, "DKIM signing stopped; sent unsigned");
                unsigned
            }
        }
    }

    /// Deliver one job's recipients over `client`, in transactions of at most the lane's
    /// recipients per transaction (on a `reused` session the first one resets it, pipelined).
    /// Returns the outcomes, the recipients never offered because the session ended, whether
    /// it ended, and the MAIL FROM deferral that spoke for the lane, if there was one.
    pub(crate) async fn transactions(
        &self,
        lane: &Lane,
        client: &mut Client,
        mta: &str,
        rcpts: Vec<DueRecipient>,
        reused: bool,
    ) -> (Vec<RcptOutcome>, Vec<DueRecipient>, bool, Option<Reply>) {
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let body = match self.spool.body(&rcpts[0].message_id) {
            Ok(Some(b)) => b,
            other => {
                tracing::error!(message = %rcpts[0].message_id, ?other, "spooled body missing");
                let reply = synth(451, (4, 3, 0), "local error: message body unavailable");
                outcomes.extend(rcpts.into_iter().map(|rcpt| RcptOutcome {
                    rcpt,
                    reply: reply.clone(),
                    mta: mta.to_string(),
                    tls: false,
                    refused_connection: false,
                }));
                return (outcomes, Vec::new(), false, None);
            }
        };
        let body = self.signed_body(&rcpts[0], body).await;
        // With return paths, each recipient has its own (a bounce speaks for its recipient only,
        // and greylisting sees the same sender at every attempt): one recipient per transaction,
        // several transactions on this connection, as VERP senders do.
        let first = &rcpts[0];
        let verp = self.senders.return_path_domain(first.account_id, &first.region, &first.mail_from).is_some();
        let mut per_txn = if verp { 1 } else { lane.limits.recipients_per_transaction.max(1) };
        let mut pending: VecDeque<DueRecipient> = rcpts.into();
        let mut first_txn = !reused;
        while !pending.is_empty() {
            let reset = !first_txn;
            first_txn = false;
            let chunk: Vec<DueRecipient> = pending.drain(..per_txn.min(pending.len())).collect();
            let tls = client.tls;
            // A configuration set with TLS policy REQUIRE: nothing in clear text. Deferred (and
            // in the end bounced) without a word to the receiver, which said nothing about rate.
            if !tls && self.options(&chunk[0]).require_tls {
                outcomes.extend(tls_refused(&chunk, mta));
                continue;
            }
            let addrs: Vec<String> = chunk.iter().map(|r| r.address.clone()).collect();
            // With return paths configured, bounces come back to weir: the envelope sender names
            // the message and the transaction's one recipient.
            let first = &chunk[0];
            let mail_from = self
                .senders
                .return_path_for(first.account_id, &first.region, &first.mail_from, &first.message_id, first.idx)
                .unwrap_or_else(|| first.mail_from.clone());
            let txn = if reset {
                client.reset_and_send(&mail_from, &addrs, &body).await
            } else {
                client.send(&mail_from, &addrs, &body).await
            };
            // MAIL FROM deferred (a lock-out, a rate, a cap): no recipient was offered; they go
            // back unsent with the reply, which speaks for the lane.
            if txn.mail.is_transient() {
                let mut back: Vec<DueRecipient> = chunk;
                back.extend(pending);
                return (outcomes, back, true, Some(txn.mail));
            }
            let again = sort_replies(chunk, &txn, lane.provider, mta, tls, &mut outcomes);
            if let Some(taken) = again.as_ref().map(|(_, taken)| *taken) {
                per_txn = taken;
            }
            for rcpt in again.into_iter().flat_map(|(a, _)| a).rev() {
                pending.push_front(rcpt);
            }
            if txn.closed {
                return (outcomes, pending.into(), true, None);
            }
        }
        (outcomes, Vec::new(), false, None)
    }
}

/// The host never answered: no TCP connection, or no greeting (a timeout, a close). A reply the
/// server wrote is the server speaking, not a dead host.
fn did_not_answer((stage, reply): &(Stage, Reply)) -> bool {
    matches!(stage, Stage::Connect | Stage::Greeting) && matches!(reply.enhanced, Some((4, 4, 1 | 2)))
}

/// Whether a job may be sent now.
enum Ready {
    Go(Job),
    /// Its recipients were set aside; take the next job.
    Skip,
    /// This connection task ends (a lock-out began: fewer connections).
    Leave,
}

/// The next job of the lane's queue; while the lane is paused or in an incident, bulk work
/// waits in the queue.
fn next_job(lane: &Lane) -> Option<Job> {
    let bulk_ok = lane.allowance(Instant::now()).bulk_allowed;
    let mut q = lane.queue.lock();
    let pos = if bulk_ok {
        Some(0)
    } else {
        q.iter().position(|j| j.rcpts.iter().all(|r| r.priority == Priority::Transactional))
    };
    pos.and_then(|i| q.remove(i))
}

/// The recipients' replies of one transaction, as outcomes; except those a 452 4.5.3 asks to
/// offer in the next transaction on this connection (this server takes fewer recipients per
/// transaction), returned with how many it took. If it took none, they are deferred rather than
/// offered again in a loop.
fn sort_replies(
    chunk: Vec<DueRecipient>,
    txn: &Transaction,
    provider: Provider,
    mta: &str,
    tls: bool,
    outcomes: &mut Vec<RcptOutcome>,
) -> Option<(Vec<DueRecipient>, usize)> {
    let outcome = |rcpt, reply| RcptOutcome { rcpt, reply, mta: mta.to_string(), tls, refused_connection: false };
    let mut again = Vec::new();
    let n = chunk.len();
    for (rcpt, rr) in chunk.into_iter().zip(txn.rcpts.iter().cloned()) {
        if !txn.closed && weir_classify::classify::category(&rr, provider).0.retry_in_next_transaction() {
            again.push((rcpt, rr));
            continue;
        }
        let reply = if rr.is_positive() { txn.data.clone().unwrap_or(rr) } else { rr };
        outcomes.push(outcome(rcpt, reply));
    }
    let taken = n - again.len();
    if taken == 0 {
        outcomes.extend(again.into_iter().map(|(rcpt, reply)| outcome(rcpt, reply)));
        return None;
    }
    (!again.is_empty()).then(|| (again.into_iter().map(|(r, _)| r).collect(), taken))
}

/// The recipients of a transaction that needs TLS the receiver did not offer: deferred, as
/// from no server (the lane is not told).
fn tls_refused(chunk: &[DueRecipient], mta: &str) -> Vec<RcptOutcome> {
    let set = chunk[0].configuration_set.clone().unwrap_or_default();
    let reply =
        synth(450, (4, 7, 10), format!("TLS is required by configuration set {set}, and {mta} did not offer STARTTLS"));
    let mut refused = untried(chunk.to_vec(), &reply, true);
    for o in &mut refused {
        o.mta = mta.to_string();
    }
    refused
}
