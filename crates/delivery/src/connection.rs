//! Connection tasks: one SMTP session at a time per task, taking jobs from its lane's queue,
//! obeying the lane's allowance, and handing every recipient's reply to the outcome handling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use weir_classify::classify::Category;
use weir_classify::reply::Reply;
use weir_store::ops::{self, DueRecipient};

use crate::client::{Client, Stage};
use crate::engine::{Engine, Job};
use crate::lane::Lane;
use crate::outcome::{RcptOutcome, synth, untried};
use crate::route::{Route, Target};

impl Engine {
    /// A session with the first target of `route` that takes one, or the stage and reply of the
    /// last refusal.
    pub(crate) async fn open(&self, route: &Route) -> Result<(Client, Target), (Stage, Reply)> {
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
    pub(crate) fn lane_changes(&self, lane: &Lane, changes: Vec<weir_pacing::controller::TimelineEntry>) {
        for change in changes {
            let mut v = serde_json::to_value(&change).unwrap_or(Value::Null);
            v["at"] = json!(self.svc.now_ms());
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
            if let Err(e) = self.spool.write(move |c| ops::mark_sending(c, &ids, now_ms)).await {
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
            if lane.limits.cluster_messages_per_minute > 0 {
                // The lane's share across every node, on top of this node's own pacing.
                loop {
                    let w = self.svc.shared_lane_wait(&lane.key, lane.limits.cluster_messages_per_minute).await;
                    if w.is_zero() {
                        break;
                    }
                    tokio::time::sleep(w).await;
                }
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
    pub(crate) async fn connection_refused(&self, lane: &Arc<Lane>, job: Job, stage: Stage, reply: Reply) -> bool {
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

    /// The message as sent: with a DKIM signature when its From domain's DKIM signs (signed
    /// per attempt, so a key enabled or rotated after acceptance is the one used). An RSA
    /// signature takes a millisecond or more of CPU: it is made on the blocking pool, so the
    /// async workers keep serving the front doors meanwhile.
    async fn signed_body(&self, r: &DueRecipient, body: Vec<u8>) -> Vec<u8> {
        if !self.svc.dkim_in_use() {
            return body;
        }
        let Some(domain) = weir_mail::dkim::from_domain(&body) else { return body };
        let Some(signer) = self.svc.dkim_signer(r.account_id, &r.region, &domain) else { return body };
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
    /// recipients per transaction. Returns the outcomes, the recipients never tried because
    /// the session ended, and whether it ended.
    pub(crate) async fn transactions(
        &self,
        lane: &Lane,
        client: &mut Client,
        mta: &str,
        rcpts: Vec<DueRecipient>,
    ) -> (Vec<RcptOutcome>, Vec<DueRecipient>, bool) {
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let body = match self.spool.read(|c| ops::spool_body(c, &rcpts[0].message_id)) {
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
                return (outcomes, Vec::new(), false);
            }
        };
        let body = self.signed_body(&rcpts[0], body).await;
        // With return paths, each recipient has its own (a bounce speaks for its recipient only,
        // and greylisting sees the same sender at every attempt): one recipient per transaction,
        // several transactions on this connection, as VERP senders do.
        let first = &rcpts[0];
        let verp = self.svc.return_path_domain(first.account_id, &first.region, &first.mail_from).is_some();
        let mut per_txn = if verp { 1 } else { lane.limits.recipients_per_transaction.max(1) };
        let mut pending: VecDeque<DueRecipient> = rcpts.into();
        let mut first_txn = true;
        while !pending.is_empty() {
            if !first_txn && client.rset().await.map(|r| !r.is_positive()).unwrap_or(true) {
                return (outcomes, pending.into(), true);
            }
            first_txn = false;
            let chunk: Vec<DueRecipient> = pending.drain(..per_txn.min(pending.len())).collect();
            let tls = client.tls;
            // A configuration set with TLS policy REQUIRE: nothing in clear text. Deferred (and
            // in the end bounced) without a word to the receiver, which said nothing about rate.
            if !tls && self.options(&chunk[0]).require_tls {
                let set = chunk[0].configuration_set.clone().unwrap_or_default();
                let reply = synth(
                    450,
                    (4, 7, 10),
                    format!("TLS is required by configuration set {set}, and {mta} did not offer STARTTLS"),
                );
                let mut refused = untried(chunk, &reply, true);
                for o in &mut refused {
                    o.mta = mta.to_string();
                }
                outcomes.extend(refused);
                continue;
            }
            let addrs: Vec<String> = chunk.iter().map(|r| r.address.clone()).collect();
            // With return paths configured, bounces come back to weir: the envelope sender names
            // the message and the transaction's one recipient.
            let first = &chunk[0];
            let mail_from = self
                .svc
                .return_path_for(first.account_id, &first.region, &first.mail_from, &first.message_id, first.idx)
                .unwrap_or_else(|| first.mail_from.clone());
            let txn = client.send(&mail_from, &addrs, &body).await;
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
                outcomes.push(RcptOutcome { rcpt, reply, mta: mta.to_string(), tls, refused_connection: false });
            }
            let taken = n - again.len();
            if taken == 0 {
                // Not one recipient taken: defer them rather than loop.
                outcomes.extend(again.into_iter().map(|(rcpt, reply)| RcptOutcome {
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
}
