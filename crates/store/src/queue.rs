//! The operator's view of the queue and control over it: recipients filtered by message, state,
//! account, recipient, lane and age; a summary of what is really waiting, by state and lane; and
//! retry now, hold, release and bounce. Only recipients the engine does not hold (`queued`,
//! `held`) are changed: one being sent finishes its attempt first.

use rusqlite::{Connection, params, params_from_iter};

use crate::Result;
use crate::model::RecipientState;

/// Which recipients a listing or a command applies to (every field optional).
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// One message.
    pub message_id: Option<String>,
    /// One state.
    pub state: Option<RecipientState>,
    /// One account, by name.
    pub account: Option<String>,
    /// One recipient address (case-insensitive).
    pub recipient: Option<String>,
    /// One lane (as `GET /admin/v1/delivery` names them): recipients attempted in it.
    pub lane: Option<String>,
    /// Messages accepted at least this long ago, ms.
    pub older_than_ms: Option<i64>,
}

impl QueueFilter {
    /// Whether it selects everything (commands refuse that).
    pub fn is_unfiltered(&self) -> bool {
        self.message_id.is_none()
            && self.state.is_none()
            && self.account.is_none()
            && self.recipient.is_none()
            && self.lane.is_none()
            && self.older_than_ms.is_none()
    }
}

/// One recipient of one message, as the operator sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueRow {
    /// MessageId.
    pub message_id: String,
    /// Recipient index in the message.
    pub idx: i64,
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Recipient address.
    pub address: String,
    /// State.
    pub state: RecipientState,
    /// Delivery attempts made.
    pub attempts: i64,
    /// The last reply, if any.
    pub last_reply: Option<String>,
    /// The first deferral's reply, if any.
    pub first_reply: Option<String>,
    /// Next attempt (Unix ms), while queued.
    pub next_attempt_ms: Option<i64>,
    /// When the message was accepted (Unix ms).
    pub created_ms: i64,
    /// Last change of this recipient (Unix ms).
    pub updated_ms: i64,
    /// Lane of the last attempt.
    pub lane: Option<String>,
    /// The message's configuration set.
    pub configuration_set: Option<String>,
}

/// A count of the queue summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SummaryRow {
    /// State.
    pub state: RecipientState,
    /// Lane of the last attempt (`None`: not attempted yet).
    pub lane: Option<String>,
    /// Recipients.
    pub recipients: i64,
    /// Distinct messages.
    pub messages: i64,
    /// Acceptance time of the oldest (Unix ms).
    pub oldest_created_ms: i64,
}

const FILTER: &str = "(?1 IS NULL OR r.message_id = ?1) AND (?2 IS NULL OR r.state = ?2)
    AND (?3 IS NULL OR a.name = ?3) AND (?4 IS NULL OR lower(r.address) = lower(?4))
    AND (?5 IS NULL OR r.lane = ?5) AND (?6 IS NULL OR m.created_ms <= ?6)";

/// The filter's parameters ?1–?6, then `extra` as ?7.
fn bind(f: &QueueFilter, now_ms: i64, extra: i64) -> Vec<Box<dyn rusqlite::ToSql>> {
    vec![
        Box::new(f.message_id.clone()),
        Box::new(f.state),
        Box::new(f.account.clone()),
        Box::new(f.recipient.clone()),
        Box::new(f.lane.clone()),
        Box::new(f.older_than_ms.map(|age| now_ms - age)),
        Box::new(extra),
    ]
}

/// Recipients matching `f`, oldest message first, at most `limit`.
pub fn rows(c: &Connection, f: &QueueFilter, now_ms: i64, limit: usize) -> Result<Vec<QueueRow>> {
    let sql = format!(
        "SELECT r.message_id, r.idx, a.name, m.region, m.mail_from, r.address, r.state, r.attempts, r.last_reply,
                r.first_reply, r.next_attempt_ms, m.created_ms, r.updated_ms, r.lane, m.configuration_set
         FROM recipients r JOIN messages m ON m.id = r.message_id JOIN accounts a ON a.id = m.account_id
         WHERE {FILTER} ORDER BY m.created_ms, r.message_id, r.idx LIMIT ?7"
    );
    let mut st = c.prepare_cached(&sql)?;
    let b = bind(f, now_ms, i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = st.query_map(params_from_iter(b.iter()), |r| {
        let state: RecipientState = r.get(6)?;
        let next: i64 = r.get(10)?;
        Ok(QueueRow {
            message_id: r.get(0)?,
            idx: r.get(1)?,
            account: r.get(2)?,
            region: r.get(3)?,
            mail_from: r.get(4)?,
            address: r.get(5)?,
            next_attempt_ms: (state == RecipientState::Queued).then_some(next),
            state,
            attempts: r.get(7)?,
            last_reply: r.get(8)?,
            first_reply: r.get(9)?,
            created_ms: r.get(11)?,
            updated_ms: r.get(12)?,
            lane: r.get(13)?,
            configuration_set: r.get(14)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What is waiting (not final), by state and lane.
pub fn summary(c: &Connection) -> Result<Vec<SummaryRow>> {
    let mut st = c.prepare_cached(
        "SELECT r.state, r.lane, count(*), count(DISTINCT r.message_id), min(m.created_ms)
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.state IN ('queued', 'held', 'picked', 'sending')
         GROUP BY r.state, r.lane ORDER BY r.state, r.lane",
    )?;
    let rows = st.query_map([], |r| {
        Ok(SummaryRow {
            state: r.get(0)?,
            lane: r.get(1)?,
            recipients: r.get(2)?,
            messages: r.get(3)?,
            oldest_created_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Messages with a recipient still waiting (queued, held or in the engine).
pub fn waiting_messages(c: &Connection) -> Result<i64> {
    Ok(c.prepare_cached(
        "SELECT count(DISTINCT message_id) FROM recipients WHERE state IN ('queued', 'held', 'picked', 'sending')",
    )?
    .query_row([], |r| r.get(0))?)
}

/// An operator's command on the recipients a filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Queued recipients: attempt now.
    Retry,
    /// Queued recipients: no attempts until released.
    Hold,
    /// Held recipients: queued again, attempted now.
    Release,
}

/// Apply `action`; returns how many recipients it changed.
pub fn apply(c: &Connection, action: Action, f: &QueueFilter, now_ms: i64) -> Result<usize> {
    let (set, from) = match action {
        Action::Retry => ("next_attempt_ms = ?7", "queued"),
        Action::Hold => ("state = 'held', updated_ms = ?7", "queued"),
        Action::Release => ("state = 'queued', next_attempt_ms = ?7, updated_ms = ?7", "held"),
    };
    let sql = format!(
        "UPDATE recipients SET {set} WHERE state = '{from}' AND (message_id, idx) IN (
           SELECT r.message_id, r.idx FROM recipients r JOIN messages m ON m.id = r.message_id
           JOIN accounts a ON a.id = m.account_id WHERE {FILTER})"
    );
    Ok(c.prepare_cached(&sql)?.execute(params_from_iter(bind(f, now_ms, now_ms).iter()))?)
}

/// Bounce the queued or held recipients `f` selects, with `reply` as their last reply; returns
/// them (for their Bounce events).
pub fn bounce(c: &Connection, f: &QueueFilter, now_ms: i64, reply: &str) -> Result<Vec<QueueRow>> {
    let mut out = Vec::new();
    for state in [RecipientState::Queued, RecipientState::Held] {
        let g = QueueFilter { state: Some(state), ..f.clone() };
        out.extend(rows(c, &g, now_ms, usize::MAX)?);
    }
    let mut st = c.prepare_cached(
        "UPDATE recipients SET state = 'bounced', last_reply = ?3, updated_ms = ?4
         WHERE message_id = ?1 AND idx = ?2 AND state IN ('queued', 'held')",
    )?;
    let mut bounced = Vec::with_capacity(out.len());
    for r in out {
        if st.execute(params![r.message_id, r.idx, reply, now_ms])? == 1 {
            bounced.push(r);
        }
    }
    Ok(bounced)
}
