//! Retention: what the spool no longer needs is removed, in bounded batches, and its pages are
//! given back to the file system. A message whose recipients are all final (delivered, bounced,
//! expired, suppressed) loses its body once its last change is older than the body cutoff, and
//! its metadata (message and recipient rows) once older than the metadata cutoff. Sending
//! statistics live in their own table and are kept for their own 14 days.

use rusqlite::{Connection, params};

use crate::Result;

/// Messages whose recipients are all final and unchanged since `cutoff_ms`.
const DONE_BEFORE: &str = "SELECT m.id FROM messages m WHERE m.created_ms < ?1 AND NOT EXISTS (
    SELECT 1 FROM recipients r WHERE r.message_id = m.id
      AND (r.state IN ('queued', 'held', 'picked', 'sending') OR r.updated_ms >= ?1))";

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Bodies emptied.
    pub bodies: usize,
    /// Messages (with their recipients) deleted.
    pub messages: usize,
}

/// Remove at most `batch` bodies older than `body_cutoff_ms` and `batch` messages older than
/// `metadata_cutoff_ms`, then give up to `vacuum_pages` free pages back to the file system.
pub fn purge(
    c: &Connection,
    body_cutoff_ms: i64,
    metadata_cutoff_ms: i64,
    batch: usize,
    vacuum_pages: u32,
) -> Result<Purged> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let ids: Vec<String> = c
        .prepare_cached(&format!("{DONE_BEFORE} LIMIT ?2"))?
        .query_map(params![metadata_cutoff_ms, batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut del_r = c.prepare_cached("DELETE FROM recipients WHERE message_id = ?1")?;
    let mut del_m = c.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
    for id in &ids {
        del_r.execute([id])?;
        del_m.execute([id])?;
    }
    let bodies = c
        .prepare_cached(&format!(
            "UPDATE messages SET body = x'' WHERE id IN ({DONE_BEFORE} AND length(m.body) > 0 LIMIT ?2)"
        ))?
        .execute(params![body_cutoff_ms, batch])?;
    if vacuum_pages > 0 {
        c.execute_batch(&format!("PRAGMA incremental_vacuum({vacuum_pages})"))?;
    }
    Ok(Purged { bodies, messages: ids.len() })
}
