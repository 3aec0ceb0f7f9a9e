//! Outcome handling: each recipient's reply classified, its new state recorded durably, then
//! events, suppression and lane statistics, and the recipient released from the in-flight set.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use weir_classify::classify::{Action, BounceType, Category, Decision, Scope, classify};
use weir_classify::provider::Provider;
use weir_classify::reply::Reply;
use weir_store::events::{EventLog, Failure, MailInfo};
use weir_store::model::{AttemptOutcome, RecipientState};
use weir_store::spool::{AttemptResult, DueRecipient};

use crate::engine::{Engine, LaneStats};
use crate::lane::Lane;
use crate::simulator::{self, Outcome};

/// One recipient's reply from one attempt.
pub(crate) struct RcptOutcome {
    pub(crate) rcpt: DueRecipient,
    pub(crate) reply: Reply,
    pub(crate) mta: String,
    pub(crate) tls: bool,
    /// The reply refused the connection, not this recipient: the lane was already told.
    pub(crate) refused_connection: bool,
}

/// An event to emit once the results it reports are stored.
type Announce = Box<dyn FnOnce(&EventLog) + Send>;

pub(crate) fn synth(code: u16, enh: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, Some(enh), text)
}

/// The same reply, from no server, for every recipient of a job that was not tried.
pub(crate) fn untried(rcpts: Vec<DueRecipient>, reply: &Reply, refused_connection: bool) -> Vec<RcptOutcome> {
    rcpts
        .into_iter()
        .map(|rcpt| RcptOutcome { rcpt, reply: reply.clone(), mta: String::new(), tls: false, refused_connection })
        .collect()
}

impl Engine {
    pub(crate) async fn simulate(self: Arc<Self>, rcpts: Vec<DueRecipient>) {
        let mut outcomes = Vec::new();
        for rcpt in rcpts {
            let reply = match simulator::outcome(&rcpt.address) {
                Some(Outcome::Delivered(r)) => r,
                Some(Outcome::Complaint(r)) => {
                    let mail = self.mail_info(&rcpt);
                    let now = self.senders.now_ms();
                    self.events.complaint(&mail, now, &rcpt.address);
                    self.spool.count_complaint(rcpt.account_id, rcpt.region.clone(), now);
                    r
                }
                Some(Outcome::Bounce(r)) => r,
                Some(Outcome::Suppressed) => {
                    synth(550, (5, 1, 1), "Address is on the suppression list (mailbox simulator)")
                }
                None => synth(250, (2, 0, 0), "Ok"),
            };
            outcomes.push(RcptOutcome {
                rcpt,
                reply,
                mta: simulator::DOMAIN.into(),
                tls: true,
                refused_connection: false,
            });
        }
        self.finish("simulator", Provider::Other, outcomes).await;
    }

    /// What the recipient's configuration set asks of its delivery.
    pub(crate) fn options(&self, r: &DueRecipient) -> weir_model::DeliveryOptions {
        self.senders.delivery_options(r.account_id, &r.region, r.configuration_set.as_deref())
    }

    pub(crate) fn mail_info(&self, r: &DueRecipient) -> MailInfo {
        let account = self.senders.account_name(r.account_id).unwrap_or_default();
        MailInfo {
            message_id: r.message_id.clone(),
            source: r.mail_from.clone(),
            timestamp_ms: r.created_ms,
            account,
            region: r.region.clone(),
            configuration_set: r.configuration_set.clone(),
        }
    }

    /// Apply the classifier's decision for every outcome, durably, then tell the world (events,
    /// suppression) and release the recipients.
    pub(crate) async fn finish(&self, lane_key: &str, provider: Provider, outcomes: Vec<RcptOutcome>) {
        let now = self.senders.now_ms();
        let lane = self.lanes.lock().get(lane_key).cloned();
        let mut batch = Batch::default();
        // Per outcome: refused for its mailbox only (it spent none of the receiver's rate).
        let mut mailbox_only: Vec<bool> = Vec::with_capacity(outcomes.len());
        for o in &outcomes {
            let d = classify(&o.reply, provider);
            mailbox_only.push(!o.refused_connection && d.scope == Scope::Mailbox && d.category != Category::Accepted);
            if d.category == Category::Accepted {
                let mut paces = self.mailboxes.lock();
                if !paces.is_empty() {
                    paces.accepted(&o.rcpt.address, now);
                }
            }
            if let Some(l) = lane.as_ref().filter(|_| !o.refused_connection) {
                self.tell_lane(l, lane_key, provider, o, &d, now);
            }
            let at = Attempt { o, d: &d, lane: lane.as_ref(), lane_key, now };
            let (state, next, deferral) = self.decide(&at, &mut batch);
            let first = o.rcpt.attempts == 0;
            self.stats
                .lock()
                .entry(lane_key.to_string())
                .or_insert_with(|| LaneStats { provider: provider.as_str().into(), ..Default::default() })
                .add(AttemptOutcome::of(state), d.category.as_str(), first, 1);
            log_attempt(&at, state, next);
            batch.results.push(AttemptResult {
                message_id: o.rcpt.message_id.clone(),
                idx: o.rcpt.idx,
                state,
                next_attempt_ms: next,
                reply: o.reply.to_string(),
                deferral,
                lane: lane_key.to_string(),
                provider: provider.as_str(),
                class: d.category.as_str(),
                first,
            });
        }
        if let Some(l) = lane.as_ref() {
            refund_mailbox_only(l, &outcomes, &mailbox_only);
        }
        let held = batch.commit(self, now).await;
        self.release(
            outcomes.iter().map(|o| &o.rcpt).filter(|r| !held.iter().any(|(m, i)| *m == r.message_id && *i == r.idx)),
        );
    }

    /// Tell the lane what the receiver said. A refusal of the sending domain's authentication
    /// holds that domain's mail at this provider; the lane and the other domains' mail go on.
    fn tell_lane(&self, l: &Lane, lane_key: &str, provider: Provider, o: &RcptOutcome, d: &Decision, now: i64) {
        let changes = if d.scope == Scope::DomainAuth {
            let domain = o.rcpt.mail_from.rsplit_once('@').map_or("", |(_, dom)| dom).to_ascii_lowercase();
            let hold = Duration::from_millis(self.cfg.pacing.incident_clear_ms);
            l.hold_domain(Instant::now(), &domain, hold, &o.reply.to_string())
        } else {
            l.on_reply(Instant::now(), d.category, &o.reply.to_string())
        };
        for change in changes {
            let mut v = serde_json::to_value(&change).unwrap_or(Value::Null);
            v["at"] = json!(now);
            self.events.lane_change(lane_key, provider.as_str(), v);
        }
    }

    /// The one decision on a recipient's reply: its new state, when it is tried again, whether
    /// it was a deferral, and (in `batch`) the event, bounce count, suppression and mailbox turn
    /// that follow once the result is stored.
    fn decide(&self, at: &Attempt<'_>, batch: &mut Batch) -> (RecipientState, i64, bool) {
        let (o, d, now) = (at.o, at.d, at.now);
        let mail = self.mail_info(&o.rcpt);
        let reply_text = o.reply.to_string();
        let status = o.reply.enhanced_str().unwrap_or_else(|| format!("{}.0.0", o.reply.code / 100));
        let diagnostic = format!("smtp; {reply_text}");
        match d.action {
            Action::Delivered => {
                let (rcpt, mta, tls) = (o.rcpt.address.clone(), o.mta.clone(), o.tls);
                batch.announce.push(Box::new(move |ev| ev.delivery(&mail, now, &rcpt, &reply_text, &mta, tls)));
                (RecipientState::Delivered, 0, false)
            }
            Action::Bounce { bounce_type, subtype, suppress } => {
                // A second hard bounce of the same address suppresses it too.
                let suppress = suppress
                    || (bounce_type == BounceType::Permanent
                        && self.spool.hard_bounces(o.rcpt.account_id, &o.rcpt.address).unwrap_or(0) >= 1);
                let (rcpt, kind) = (o.rcpt.address.clone(), bounce_type.as_str());
                batch.announce.push(Box::new(move |ev| {
                    let f = Failure { kind, subtype, status: &status, diagnostic: &diagnostic };
                    ev.bounce(&mail, now, &rcpt, &f);
                }));
                batch.bounces.push((o.rcpt.account_id, o.rcpt.region.clone()));
                if suppress && self.suppresses_bounces(&o.rcpt) {
                    batch.suppress.push(o.rcpt.clone());
                }
                (RecipientState::Bounced, 0, false)
            }
            action => {
                match action {
                    Action::ConfigIncident => tracing::error!(lane = %at.lane_key, reply = %reply_text,
                        scope = d.scope.as_str(), "the receiver refuses the sender's authentication or transport: fix it; mail waits and is retried"),
                    Action::BlockLane => tracing::error!(lane = %at.lane_key, reply = %reply_text,
                        "the receiver blocks the sending IP: the lane stops for a while; delisting is done with the provider"),
                    _ => {}
                }
                let next = self.retry_at(at, batch);
                if let (Some(t), Some(l)) = (next, at.lane) {
                    // The lane is not drained while this recipient waits.
                    l.hold_until(Instant::now() + Duration::from_millis((t - now).max(0) as u64));
                }
                match next {
                    Some(t) => {
                        let (rcpt, subtype) = (o.rcpt.address.clone(), d.category.delay_type());
                        batch.announce.push(Box::new(move |ev| {
                            let f = Failure { kind: "", subtype, status: &status, diagnostic: &diagnostic };
                            ev.delay(&mail, now, &rcpt, &f, t);
                        }));
                        (RecipientState::Queued, t, true)
                    }
                    None => {
                        let first_reason = o.rcpt.first_reply.clone().unwrap_or(reply_text);
                        let diag = format!("smtp; retry window expired; first deferral: {first_reason}");
                        let rcpt = o.rcpt.address.clone();
                        batch.announce.push(Box::new(move |ev| {
                            let f =
                                Failure { kind: "Transient", subtype: "General", status: "4.4.7", diagnostic: &diag };
                            ev.bounce(&mail, now, &rcpt, &f);
                        }));
                        (RecipientState::Expired, 0, true)
                    }
                }
            }
        }
    }

    /// Whether a hard bounce of `r` puts it on the suppression list: its configuration set's
    /// reasons (else the account's) include BOUNCE; never for the mailbox simulator.
    fn suppresses_bounces(&self, r: &DueRecipient) -> bool {
        if r.address.to_ascii_lowercase().rsplit_once('@').is_some_and(|(_, dom)| dom == simulator::DOMAIN) {
            return false;
        }
        let reasons = self
            .options(r)
            .suppressed_reasons
            .unwrap_or_else(|| self.senders.suppressed_reasons(r.account_id, &r.region));
        reasons.contains(&weir_model::SuppressionReason::Bounce)
    }

    /// When a deferred recipient is tried again; None once its retry window is over.
    fn retry_at(&self, at: &Attempt<'_>, batch: &mut Batch) -> Option<i64> {
        let (o, d, now) = (at.o, at.d, at.now);
        let attempt = o.rcpt.attempts as u32 + 1;
        let scheduled = self.cfg.schedule.next_attempt(o.rcpt.created_ms, now, attempt, rand::random::<f64>());
        // A configuration set's MaxDeliverySeconds shortens the retry window.
        let scheduled = match self.options(&o.rcpt).max_delivery_ms {
            Some(max) => scheduled.filter(|t| *t <= o.rcpt.created_ms + max),
            None => scheduled,
        };
        let window_end = o.rcpt.created_ms + self.retry_window_ms(&o.rcpt);
        match (d.action, d.category, at.lane) {
            (_, c, _) if c.retry_in_next_transaction() => Some(now + 1000),
            // Greylisted: just after the window (the one the reply states, else the configured
            // one), never sooner; the envelope is the same every time.
            (Action::Greylisted { retry_after_s }, _, _) => {
                // A stated delay counts, but never under a minute (or the configured retry, if
                // shorter): "try again in 0 seconds" must not make weir hammer a receiver for
                // the whole retry window.
                let floor = self.cfg.greylist_retry.min(Duration::from_secs(60));
                let window =
                    retry_after_s.map_or(self.cfg.greylist_retry, |s| Duration::from_secs(u64::from(s)).max(floor));
                // Just after it: a fiftieth of the window and a fifth of a second.
                let window = window.as_millis() as i64;
                let at = now + window + window / 50 + 200;
                (at <= window_end).then_some(at)
            }
            // The mailbox receives too fast: this message takes the mailbox's next turn, and its
            // other messages queue behind it.
            (_, Category::RecipientRateLimited, _) => {
                let at = self.mailboxes.lock().refused(&o.rcpt.address, (&o.rcpt.message_id, o.rcpt.idx), now);
                let next = (at <= window_end).then_some(at);
                if next.is_some() {
                    // As the spool will have it once this attempt is recorded.
                    let mut r = o.rcpt.clone();
                    r.attempts += 1;
                    r.first_reply.get_or_insert_with(|| o.reply.to_string());
                    batch.turns.push((r, at));
                }
                next
            }
            // The lane was throttled, not this recipient: it is tried again when the lane may
            // send again (its pause over, or a minute), not after the recipient backoff, which
            // only lengthens the drain. Only with pacing on: a lane that does not slow down
            // would just be refused again.
            (_, c, Some(l)) if c.throttles_lane() && self.cfg.pacing.adaptive => {
                let wait = l.retry_after_throttle(Instant::now());
                l.hold_until(Instant::now() + wait);
                scheduled.map(|t| t.min(now + wait.as_millis() as i64))
            }
            _ => scheduled,
        }
    }

    /// Give picked, unsent recipients back to the queue (retried until storage takes it, or the
    /// engine stops: the next start requeues them), then out of the in-flight set.
    pub(crate) async fn unpick(&self, rcpts: Vec<DueRecipient>) {
        let ids: Vec<(String, i64)> = rcpts.iter().map(|r| (r.message_id.clone(), r.idx)).collect();
        let mut pause = Duration::from_millis(100);
        loop {
            let ids = ids.clone();
            if self.spool.unpick(ids.clone()).await.is_ok() {
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
    pub(crate) fn release<'a>(&self, rcpts: impl Iterator<Item = &'a DueRecipient>) {
        let mut inflight = self.inflight.lock();
        for r in rcpts {
            inflight.remove(&(r.message_id.clone(), r.idx));
        }
    }

    /// Record `results` and the feedback counts; on a storage failure (a full disk) try again,
    /// backing off, until it works or the engine stops. Returns whether they were recorded.
    pub(crate) async fn record(&self, results: Vec<AttemptResult>, bounces: Vec<(i64, String)>, now: i64) -> bool {
        let mut pause = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let (r, b) = (results.clone(), bounces.clone());
            match self.spool.record_attempts(r, b, now).await {
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

/// One recipient's reply being decided.
struct Attempt<'a> {
    o: &'a RcptOutcome,
    d: &'a Decision,
    lane: Option<&'a Arc<Lane>>,
    lane_key: &'a str,
    now: i64,
}

/// What a batch of outcomes stores, and what follows once it is stored.
#[derive(Default)]
struct Batch {
    results: Vec<AttemptResult>,
    /// (account, region) of each bounce, for the reputation counts.
    bounces: Vec<(i64, String)>,
    /// Events wait for the results' commit: none announces what is not stored.
    announce: Vec<Announce>,
    /// Hard-bounced recipients to put on the suppression list.
    suppress: Vec<DueRecipient>,
    /// Refused by their mailbox's pace: they wait for their turns (held in memory if soon).
    turns: Vec<(DueRecipient, i64)>,
}

impl Batch {
    /// Store the batch's results; once stored, hold the mailbox turns, announce the events and
    /// suppress. Returns the recipients held for their turns (they stay in flight).
    async fn commit(self, engine: &Engine, now: i64) -> Vec<(String, i64)> {
        let mut held: Vec<(String, i64)> = Vec::new();
        if !engine.record(self.results, self.bounces, now).await {
            return held;
        }
        for (r, at) in self.turns {
            let id = (r.message_id.clone(), r.idx);
            if engine.hold_turn(r, at, now).is_none() {
                held.push(id);
            }
        }
        for a in self.announce {
            a(&engine.events);
        }
        for r in self.suppress {
            let senders = engine.senders.clone();
            tokio::spawn(async move {
                if let Err(e) = senders.suppress_after_bounce(r.account_id, &r.region, &r.address, &r.message_id).await
                {
                    tracing::error!(error = %e, "cannot add to the suppression list");
                }
            });
        }
        held
    }
}

/// Messages the receiver refused for their mailboxes only give their rate slot back.
fn refund_mailbox_only(l: &Lane, outcomes: &[RcptOutcome], mailbox_only: &[bool]) {
    let mut spent: Vec<(&str, bool)> = Vec::new();
    for (o, mailbox_only) in outcomes.iter().zip(mailbox_only) {
        match spent.iter_mut().find(|(m, _)| *m == o.rcpt.message_id) {
            Some((_, s)) => *s |= !mailbox_only,
            None => spent.push((&o.rcpt.message_id, !mailbox_only)),
        }
    }
    for _ in spent.iter().filter(|(_, s)| !s) {
        l.refund(Instant::now());
    }
}

/// One line per attempt, at the default level: what an operator greps for first.
fn log_attempt(at: &Attempt<'_>, state: RecipientState, next: i64) {
    let (o, lane) = (at.o, at.lane_key);
    let (id, rcpt, attempt, reply) = (&o.rcpt.message_id, &o.rcpt.address, o.rcpt.attempts + 1, o.reply.to_string());
    match state {
        RecipientState::Queued => tracing::info!(
            message_id = %id, recipient = %rcpt, lane = %lane, mta = %o.mta, attempt,
            reply = %reply, next_attempt_in_s = (next - at.now) / 1000, "deferred"
        ),
        RecipientState::Expired => tracing::info!(
            message_id = %id, recipient = %rcpt, lane = %lane, mta = %o.mta, attempt,
            reply = %reply, "expired: retry window over, bounced"
        ),
        _ => tracing::info!(
            message_id = %id, recipient = %rcpt, lane = %lane, mta = %o.mta, attempt,
            reply = %reply, "{state}"
        ),
    }
}
