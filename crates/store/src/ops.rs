//! The SQL of each operation, as plain functions over a connection. Writers call them inside
//! [`crate::Store::write`]; readers inside [`crate::Store::read`].

use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;
use crate::model::*;

mod catalog;
mod ledger;
pub use catalog::*;
pub use ledger::*;

/// Width of a GetSendStatistics bucket.
pub const STATS_BUCKET_SECS: i64 = 900;
/// How long statistics are kept (two weeks).
pub const STATS_RETENTION_SECS: i64 = 14 * 86_400;

fn stats_bucket(ms: i64) -> i64 {
    ms.div_euclid(1000) / STATS_BUCKET_SECS * STATS_BUCKET_SECS
}

/// Spool a message with its recipients, its quota charge and its statistics, atomically.
pub fn enqueue(c: &Connection, e: &SpoolEntry) -> Result<()> {
    insert_message(c, e)?;
    charge(c, e)
}

fn insert_message(c: &Connection, e: &SpoolEntry) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO messages (id, account_id, region, created_ms, mail_from, configuration_set, tags, source, size, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.id,
        e.account_id,
        e.region,
        e.created_ms,
        e.mail_from,
        e.configuration_set,
        e.tags_json,
        e.source,
        e.body.len() as i64,
        e.body
    ])?;
    let mut rcpt = c.prepare_cached(
        "INSERT INTO recipients (message_id, idx, address, state, next_attempt_ms, priority) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, (addr, state)) in e.recipients.iter().enumerate() {
        rcpt.execute(params![e.id, i as i64, addr, state.as_str(), e.created_ms, e.priority])?;
    }
    Ok(())
}

/// The quota charge and statistics of a spooled message.
fn charge(c: &Connection, e: &SpoolEntry) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO quota_seconds (account_id, region, second, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_id, region, second) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![e.account_id, e.region, e.quota_second as i64, e.quota_count])?;
    c.prepare_cached(
        "INSERT INTO quota_bucket (account_id, region, tat) VALUES (?1, ?2, ?3)
         ON CONFLICT (account_id, region) DO UPDATE SET tat = max(tat, excluded.tat)",
    )?
    .execute(params![e.account_id, e.region, e.quota_tat as i64])?;
    c.prepare_cached(
        "INSERT INTO send_stats (account_id, region, bucket, delivery_attempts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_id, region, bucket) DO UPDATE SET delivery_attempts = delivery_attempts + excluded.delivery_attempts",
    )?
    .execute(params![e.account_id, e.region, stats_bucket(e.created_ms), e.recipients.len() as i64])?;
    Ok(())
}

/// A spooled message as listed by `weir spool list`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolSummary {
    /// MessageId.
    pub id: String,
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// Acceptance time, Unix milliseconds.
    pub created_ms: i64,
    /// Envelope sender.
    pub mail_from: String,
    /// Recipients with their state.
    pub recipients: Vec<(String, RecipientState)>,
    /// MIME size.
    pub size: i64,
}

/// Every spooled message, oldest first.
pub fn spool_list(c: &Connection) -> Result<Vec<SpoolSummary>> {
    let mut st = c.prepare(
        "SELECT m.id, a.name, m.region, m.created_ms, m.mail_from, m.size FROM messages m JOIN accounts a ON a.id = m.account_id
         ORDER BY m.created_ms, m.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(SpoolSummary {
            id: r.get(0)?,
            account: r.get(1)?,
            region: r.get(2)?,
            created_ms: r.get(3)?,
            mail_from: r.get(4)?,
            recipients: vec![],
            size: r.get(5)?,
        })
    })?;
    let mut out: Vec<SpoolSummary> = rows.collect::<rusqlite::Result<_>>()?;
    let mut st = c.prepare_cached("SELECT address, state FROM recipients WHERE message_id = ?1 ORDER BY idx")?;
    for m in &mut out {
        let rows = st.query_map([&m.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        m.recipients = rows.collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// The MIME body of a spooled message.
pub fn spool_body(c: &Connection, id: &str) -> Result<Option<Vec<u8>>> {
    Ok(c.prepare_cached("SELECT body FROM messages WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?)
}

/// A recipient due for a delivery attempt, with what the engine needs of its message.
#[derive(Debug, Clone, PartialEq)]
pub struct DueRecipient {
    /// MessageId.
    pub message_id: String,
    /// Recipient index within the message.
    pub idx: i64,
    /// Address.
    pub address: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// First deferral reply, if any.
    pub first_reply: Option<String>,
    /// Account.
    pub account_id: i64,
    /// Region.
    pub region: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Acceptance time.
    pub created_ms: i64,
    /// Configuration set.
    pub configuration_set: Option<String>,
    /// Transactional or bulk.
    pub priority: Priority,
}

/// Up to `limit` queued recipients due at `now_ms`: transactional first, then oldest first.
/// (`priority IN (0, 1)` lets the index range-scan each priority up to `now_ms` instead of
/// visiting every queued row, most of them waiting for a later retry.)
pub fn due_recipients(c: &Connection, now_ms: i64, limit: usize) -> Result<Vec<DueRecipient>> {
    let mut st = c.prepare_cached(
        "SELECT r.message_id, r.idx, r.address, r.attempts, r.first_reply, m.account_id, m.region, m.mail_from,
                m.created_ms, m.configuration_set, r.priority
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.state = 'queued' AND r.priority IN (0, 1) AND r.next_attempt_ms <= ?1
         ORDER BY r.priority, r.next_attempt_ms LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms, limit as i64], |r| {
        Ok(DueRecipient {
            message_id: r.get(0)?,
            idx: r.get(1)?,
            address: r.get(2)?,
            attempts: r.get(3)?,
            first_reply: r.get(4)?,
            account_id: r.get(5)?,
            region: r.get(6)?,
            mail_from: r.get(7)?,
            created_ms: r.get(8)?,
            configuration_set: r.get(9)?,
            priority: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Take due recipients into the delivery engine's memory (`picked`): the next look for due
/// recipients no longer returns them. Nothing has been sent yet.
pub fn pick(c: &Connection, ids: &[(String, i64)]) -> Result<()> {
    move_state(c, ids, RecipientState::Queued, RecipientState::Picked)
}

/// Give picked recipients back to the queue, unsent.
pub fn unpick(c: &Connection, ids: &[(String, i64)]) -> Result<()> {
    move_state(c, ids, RecipientState::Picked, RecipientState::Queued)
}

/// Put picked or sending recipients back in the queue until `at_ms`, with `reason` as their
/// last reply, without counting an attempt: nothing was offered to the receiver for them (its
/// host refused the connection, or their mailbox's pace holds them back).
pub fn postpone(c: &Connection, ids: &[(String, i64)], at_ms: i64, reason: &str) -> Result<()> {
    let mut st = c.prepare_cached(
        "UPDATE recipients SET state = 'queued', next_attempt_ms = ?3, last_reply = ?4
         WHERE message_id = ?1 AND idx = ?2 AND state IN ('picked', 'sending')",
    )?;
    for (m, i) in ids {
        st.execute(params![m, i, at_ms, reason])?;
    }
    Ok(())
}

/// How many recipients are due by `now_ms` and not picked, counting up to `cap` (the count
/// walks the due index: bounded so that a huge backlog costs no more than `cap` rows).
pub fn due_count(c: &Connection, now_ms: i64, cap: u64) -> Result<u64> {
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM recipients WHERE state = 'queued' AND next_attempt_ms <= ?1 LIMIT ?2)",
        )?
        .query_row(params![now_ms, cap as i64], |r| r.get(0))?;
    Ok(n as u64)
}

/// Move these recipients from state `from` to `to` (those in another state are left alone).
fn move_state(c: &Connection, ids: &[(String, i64)], from: RecipientState, to: RecipientState) -> Result<()> {
    let mut st =
        c.prepare_cached("UPDATE recipients SET state = ?4 WHERE message_id = ?1 AND idx = ?2 AND state = ?3")?;
    for (m, i) in ids {
        st.execute(params![m, i, from.as_str(), to.as_str()])?;
    }
    Ok(())
}

/// Mark recipients as being sent right now (so that a crash can tell possible duplicates).
pub fn mark_sending(c: &Connection, ids: &[(String, i64)], now_ms: i64) -> Result<()> {
    let mut st = c.prepare_cached(
        "UPDATE recipients SET state = 'sending', updated_ms = ?3
         WHERE message_id = ?1 AND idx = ?2 AND state IN ('queued', 'picked')",
    )?;
    for (m, i) in ids {
        st.execute(params![m, i, now_ms])?;
    }
    Ok(())
}

/// After a restart: recipients caught mid-send go back to the queue, and so do those picked but
/// not yet sent. Returns how many were mid-send (each may already have been delivered: a
/// possible duplicate).
pub fn requeue_interrupted(c: &Connection) -> Result<usize> {
    c.execute("UPDATE recipients SET state = 'queued' WHERE state = 'picked'", [])?;
    Ok(c.execute("UPDATE recipients SET state = 'queued' WHERE state = 'sending'", [])?)
}

/// The outcome of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// MessageId.
    pub message_id: String,
    /// Recipient index.
    pub idx: i64,
    /// New state: delivered, bounced, expired or queued (a retry).
    pub state: RecipientState,
    /// Next attempt time when queued again.
    pub next_attempt_ms: i64,
    /// The reply, as text.
    pub reply: String,
    /// Whether this was a deferral (kept as the first deferral reason if none yet).
    pub deferral: bool,
    /// The lane that made the attempt.
    pub lane: String,
    /// The lane's provider.
    pub provider: &'static str,
    /// The reply's class (the classifier's category: `rate_limited`, `accepted`, …).
    pub class: &'static str,
    /// Whether this was the recipient's first attempt.
    pub first: bool,
}

/// Attempts of one (lane, outcome, class, first) since the spool was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTotal {
    /// Lane key.
    pub lane: String,
    /// Provider.
    pub provider: String,
    /// What the attempts came to.
    pub outcome: AttemptOutcome,
    /// Reply class.
    pub class: String,
    /// First attempts.
    pub first: bool,
    /// Attempts.
    pub count: u64,
}

/// Every row of the delivery totals.
pub fn delivery_totals(c: &Connection) -> Result<Vec<DeliveryTotal>> {
    let mut st = c.prepare_cached("SELECT lane, provider, outcome, class, first, count FROM delivery_totals")?;
    let rows = st.query_map([], |r| {
        Ok(DeliveryTotal {
            lane: r.get(0)?,
            provider: r.get(1)?,
            outcome: {
                let s: String = r.get(2)?;
                AttemptOutcome::parse(&s).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        format!("unknown attempt outcome {s:?}").into(),
                    )
                })?
            },
            class: r.get(3)?,
            first: r.get(4)?,
            count: r.get::<_, i64>(5)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Record attempt outcomes.
pub fn record_attempts(c: &Connection, results: &[AttemptResult], now_ms: i64) -> Result<()> {
    let mut st = c.prepare_cached(
        "UPDATE recipients SET state = ?3, next_attempt_ms = ?4, attempts = attempts + 1, last_reply = ?5,
           first_reply = CASE WHEN first_reply IS NULL AND ?6 THEN ?5 ELSE first_reply END, updated_ms = ?7,
           lane = ?8
         WHERE message_id = ?1 AND idx = ?2",
    )?;
    let mut totals: std::collections::BTreeMap<(&str, &str, &str, &str, bool), i64> = Default::default();
    for r in results {
        st.execute(params![
            r.message_id,
            r.idx,
            r.state.as_str(),
            r.next_attempt_ms,
            r.reply,
            r.deferral,
            now_ms,
            r.lane
        ])?;
        let outcome = AttemptOutcome::of(r.state).as_str();
        *totals.entry((r.lane.as_str(), r.provider, outcome, r.class, r.first)).or_default() += 1;
    }
    let mut add = c.prepare_cached(
        "INSERT INTO delivery_totals (lane, provider, outcome, class, first, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (lane, outcome, class, first) DO UPDATE SET count = count + excluded.count",
    )?;
    for ((lane, provider, outcome, class, first), n) in totals {
        add.execute(params![lane, provider, outcome, class, first, n])?;
    }
    Ok(())
}

/// Count bounces or complaints in the statistics.
pub fn record_feedback(
    c: &Connection,
    account_id: i64,
    region: &str,
    now_ms: i64,
    bounces: i64,
    complaints: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO send_stats (account_id, region, bucket, bounces, complaints) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id, region, bucket) DO UPDATE SET bounces = bounces + excluded.bounces,
           complaints = complaints + excluded.complaints",
    )?
    .execute(params![account_id, region, stats_bucket(now_ms), bounces, complaints])?;
    Ok(())
}

/// A report that came back about a delivered recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A bounce after delivery (a DSN).
    Bounce,
    /// A complaint (an ARF report).
    Complaint,
}

impl Report {
    /// Its bit in `recipients.feedback`.
    fn bit(self) -> i64 {
        match self {
            Report::Bounce => 1,
            Report::Complaint => 2,
        }
    }
}

/// Record `report` about recipient `idx` of `message_id`: once per kind and recipient, and only
/// for a recipient weir delivered (nothing else can bounce later or be complained about).
/// Counted in the account's statistics with it. Returns whether it was new.
pub fn record_report(
    c: &Connection,
    message_id: &str,
    idx: i64,
    report: Report,
    account_id: i64,
    region: &str,
    now_ms: i64,
) -> Result<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE recipients SET feedback = feedback | ?3
             WHERE message_id = ?1 AND idx = ?2 AND state = 'delivered' AND (feedback & ?3) = 0",
        )?
        .execute(params![message_id, idx, report.bit()])?;
    if changed == 0 {
        return Ok(false);
    }
    let (b, k) = if report == Report::Bounce { (1, 0) } else { (0, 1) };
    record_feedback(c, account_id, region, now_ms, b, k)?;
    Ok(true)
}

/// Hard bounces already recorded for `address` in the account's mail.
pub fn hard_bounces(c: &Connection, account_id: i64, address: &str) -> Result<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE m.account_id = ?1 AND r.address = ?2 AND r.state = 'bounced' AND r.last_reply LIKE '5%'",
    )?
    .query_row(params![account_id, address], |r| r.get(0))?)
}

/// Whether any recipient is not final yet (queued, picked or being sent).
pub fn any_unfinished(c: &Connection) -> Result<bool> {
    Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM recipients WHERE state IN ('queued', 'picked', 'sending'))")?
        .query_row([], |r| r.get(0))?)
}

/// When the last recipient of this priority was delivered.
pub fn last_delivery_ms(c: &Connection, priority: Priority) -> Result<Option<i64>> {
    Ok(c.query_row(
        "SELECT max(updated_ms) FROM recipients WHERE state = 'delivered' AND priority = ?1",
        [priority],
        |r| r.get(0),
    )?)
}

/// When any recipient last changed.
pub fn last_change_ms(c: &Connection) -> Result<Option<i64>> {
    Ok(c.query_row("SELECT max(updated_ms) FROM recipients", [], |r| r.get(0))?)
}

/// Attempts made per recipient address, over all its messages.
pub fn attempts_by_address(c: &Connection) -> Result<Vec<(String, i64)>> {
    let mut st = c.prepare("SELECT address, sum(attempts) FROM recipients GROUP BY address")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
