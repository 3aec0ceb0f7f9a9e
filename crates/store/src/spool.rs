//! The spool as the delivery engine sees it: typed operations on queued recipients, their
//! bodies and the attempts made, with no SQL and no connection outside this crate. Writes
//! resolve once their group commit is durable; reads use the reader connection.

use std::sync::Arc;

use crate::model::SpoolEntry;
use crate::ops;
pub use crate::ops::SpoolSummary;
pub use crate::ops::{AttemptResult, DeliveryTotal, DueRecipient, Report};
pub use crate::queue::{Action as QueueAction, QueueFilter, QueueRow, SummaryRow};
pub use crate::retention::{Cursor as RetentionCursor, Purged};
use crate::{Result, Store};

/// A recipient of a message: (MessageId, recipient index).
pub type RcptId = (String, i64);

/// Typed access to the spool (a handle: clones share the store).
#[derive(Clone)]
pub struct Spool {
    store: Arc<Store>,
}

impl Spool {
    /// The spool kept in `store`.
    pub fn new(store: Arc<Store>) -> Spool {
        Spool { store }
    }

    /// Spool accepted messages (the simulator's and tests' way in; the front doors go through
    /// the submission service, which charges quotas in the same commit).
    pub async fn enqueue(&self, entries: Vec<SpoolEntry>) -> Result<()> {
        self.store
            .write(move |c| {
                for e in &entries {
                    ops::enqueue(c, e)?;
                }
                Ok(())
            })
            .await
    }

    /// After a restart: recipients picked or caught mid-send go back to the queue. Returns how
    /// many were mid-send (each possibly delivered already).
    pub async fn requeue_interrupted(&self) -> Result<usize> {
        self.store.write(ops::requeue_interrupted).await
    }

    /// Up to `limit` queued recipients due at `now_ms`: transactional first, then oldest.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DueRecipient>> {
        self.store.read(|c| ops::due_recipients(c, now_ms, limit))
    }

    /// How many queued recipients are due at `now_ms`, counted up to `cap`.
    pub fn due_count(&self, now_ms: i64, cap: u64) -> Result<u64> {
        self.store.read(|c| ops::due_count(c, now_ms, cap))
    }

    /// Take due recipients into the engine's memory.
    pub async fn pick(&self, ids: Vec<RcptId>) -> Result<()> {
        self.store.write(move |c| ops::pick(c, &ids)).await
    }

    /// Give picked recipients back to the queue, unsent.
    pub async fn unpick(&self, ids: Vec<RcptId>) -> Result<()> {
        self.store.write(move |c| ops::unpick(c, &ids)).await
    }

    /// Mark recipients as in a transaction now (a crash then tells possible duplicates).
    pub async fn mark_sending(&self, ids: Vec<RcptId>, now_ms: i64) -> Result<()> {
        self.store.write(move |c| ops::mark_sending(c, &ids, now_ms)).await
    }

    /// Put picked or sending recipients back in the queue, each until its own time, with
    /// `reason` as their last reply, without counting an attempt (nothing was offered for
    /// them).
    pub async fn postpone(&self, until: Vec<(RcptId, i64)>, reason: String) -> Result<()> {
        self.store
            .write(move |c| {
                for (id, at) in &until {
                    ops::postpone(c, std::slice::from_ref(id), *at, &reason)?;
                }
                Ok(())
            })
            .await
    }

    /// Every spooled message with its recipients' states, oldest first.
    pub fn list(&self) -> Result<Vec<SpoolSummary>> {
        self.store.read(ops::spool_list)
    }

    /// A spooled message's body.
    pub fn body(&self, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.store.read(|c| ops::spool_body(c, message_id))
    }

    /// Record attempt outcomes, and a hard bounce counted in the statistics of each
    /// (account, region) in `bounces`, in one commit.
    pub async fn record_attempts(
        &self,
        results: Vec<AttemptResult>,
        bounces: Vec<(i64, String)>,
        now_ms: i64,
    ) -> Result<()> {
        self.store
            .write(move |c| {
                ops::record_attempts(c, &results, now_ms)?;
                for (account, region) in &bounces {
                    ops::record_feedback(c, *account, region, now_ms, 1, 0)?;
                }
                Ok(())
            })
            .await
    }

    /// Count a complaint in the account's statistics, without waiting for the commit (the
    /// mailbox simulator's complaints: a count lost in a crash is acceptable).
    pub fn count_complaint(&self, account_id: i64, region: String, now_ms: i64) {
        self.store.write_detached(move |c| ops::record_feedback(c, account_id, &region, now_ms, 0, 1));
    }

    /// Hard bounces already recorded for `address` in the account's mail.
    pub fn hard_bounces(&self, account_id: i64, address: &str) -> Result<i64> {
        self.store.read(|c| ops::hard_bounces(c, account_id, address))
    }

    /// The delivery totals of every lane since the spool was created.
    pub fn delivery_totals(&self) -> Result<Vec<DeliveryTotal>> {
        self.store.read(ops::delivery_totals)
    }

    /// Whether any recipient is not final yet.
    pub fn any_unfinished(&self) -> Result<bool> {
        self.store.read(ops::any_unfinished)
    }

    /// When the last recipient of this priority was delivered.
    pub fn last_delivery_ms(&self, priority: crate::model::Priority) -> Result<Option<i64>> {
        self.store.read(|c| ops::last_delivery_ms(c, priority))
    }

    /// What is waiting (not final), by state and lane.
    pub fn summary(&self) -> Result<Vec<SummaryRow>> {
        self.store.read(crate::queue::summary)
    }

    /// Recipients matching `f` (the operator's queue listing), at most `limit`.
    pub fn rows(&self, f: &QueueFilter, now_ms: i64, limit: usize) -> Result<Vec<QueueRow>> {
        self.store.read(|c| crate::queue::rows(c, f, now_ms, limit))
    }

    /// Retry now, hold or release the recipients `f` selects; how many changed.
    pub async fn apply(&self, action: QueueAction, f: QueueFilter, now_ms: i64) -> Result<usize> {
        self.store.write(move |c| crate::queue::apply(c, action, &f, now_ms)).await
    }

    /// Bounce the queued or held recipients `f` selects with `reply`; the rows bounced.
    pub async fn bounce(&self, f: QueueFilter, now_ms: i64, reply: &'static str) -> Result<Vec<QueueRow>> {
        self.store.write(move |c| crate::queue::bounce(c, &f, now_ms, reply)).await
    }

    /// Record a report (a bounce after delivery, a complaint) about recipient `idx` of
    /// `message_id`, counted in the account's statistics: once per kind and recipient, and only
    /// for a delivered recipient. Whether it was new.
    pub async fn record_report(
        &self,
        (message_id, idx): RcptId,
        report: Report,
        account_id: i64,
        region: String,
        now_ms: i64,
    ) -> Result<bool> {
        self.store.write(move |c| ops::record_report(c, &message_id, idx, report, account_id, &region, now_ms)).await
    }

    /// One retention step from `cursor`: the bodies of messages finished before `bodies_before`
    /// emptied, and messages finished before `messages_before` deleted, at most `batch` of each
    /// (one short commit, so sends are not held up). What it removed, and where to go on.
    pub async fn purge(
        &self,
        mut cursor: RetentionCursor,
        bodies_before: i64,
        messages_before: i64,
        batch: usize,
    ) -> Result<(Purged, RetentionCursor)> {
        self.store
            .write(move |c| {
                crate::retention::purge(c, &mut cursor, bodies_before, messages_before, batch).map(|p| (p, cursor))
            })
            .await
    }

    /// When any recipient last changed.
    pub fn last_change_ms(&self) -> Result<Option<i64>> {
        self.store.read(ops::last_change_ms)
    }

    /// Attempts made per recipient address, over all its messages.
    pub fn attempts_by_address(&self) -> Result<Vec<(String, i64)>> {
        self.store.read(ops::attempts_by_address)
    }
}
