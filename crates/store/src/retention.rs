//! Retention: what the spool no longer needs is removed, in bounded batches. A message whose
//! recipients are all final (delivered, bounced, expired, suppressed) loses its body once its
//! last change is older than the body cutoff, and its metadata (message and recipient rows) once
//! older than the metadata cutoff. Sending statistics live in their own table and are kept for
//! their own 14 days.
//!
//! Old messages are found by walking the messages table in rowid order, which is acceptance
//! order, from a cursor the caller keeps: no index on the acceptance time, so a send pays
//! nothing for retention. A sweep stops at the first message younger than the cutoff; messages
//! passed over because they were not finished are looked at again by the next sweep.

use rusqlite::{Connection, params};

use crate::Result;

/// One message as a sweep sees it: rowid, id, accepted at, finished before the cutoff, has a body.
const SCAN: &str = "SELECT m.rowid, m.id, m.created_ms, NOT EXISTS (
    SELECT 1 FROM recipients r WHERE r.message_id = m.id
      AND (r.state IN ('queued', 'held', 'picked', 'sending') OR r.updated_ms >= ?2)), length(m.body) > 0
    FROM messages m WHERE m.rowid > ?1 ORDER BY m.rowid LIMIT ?3";

/// Where the two sweeps (bodies, metadata) are; start with `Cursor::default()` and keep it
/// between calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    body: Sweep,
    meta: Sweep,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sweep {
    /// Rows up to this rowid have been looked at in the current sweep.
    after: i64,
    /// The first row passed over because it was not finished: the next sweep starts there.
    held_back: Option<i64>,
}

impl Sweep {
    /// The sweep reached its end: the next one starts at the first row it had to leave.
    fn restart(&mut self, stop: i64) {
        self.after = self.held_back.map_or(stop, |r| r - 1).min(stop);
        self.held_back = None;
    }
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Bodies emptied.
    pub bodies: usize,
    /// Messages (with their recipients) deleted.
    pub messages: usize,
    /// Whether both sweeps reached messages younger than their cutoff (or the end): nothing more
    /// to do until time moves on.
    pub caught_up: bool,
}

/// Look at up to `batch` messages in each sweep: empty the bodies of those finished before
/// `body_cutoff_ms`, delete those finished before `metadata_cutoff_ms`. New mail reuses the pages freed (`Store::compact` shrinks the file).
pub fn purge(
    c: &Connection,
    cursor: &mut Cursor,
    body_cutoff_ms: i64,
    metadata_cutoff_ms: i64,
    batch: usize,
) -> Result<Purged> {
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut out = Purged { caught_up: true, ..Purged::default() };
    {
        let mut del_r = c.prepare_cached("DELETE FROM recipients WHERE message_id = ?1")?;
        let mut del_m = c.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        out.caught_up &= sweep(c, &mut cursor.meta, metadata_cutoff_ms, limit, |id, _| {
            del_r.execute([id])?;
            del_m.execute([id])?;
            out.messages += 1;
            Ok(())
        })?;
    }
    {
        let mut empty = c.prepare_cached("UPDATE messages SET body = x'' WHERE id = ?1")?;
        out.caught_up &= sweep(c, &mut cursor.body, body_cutoff_ms, limit, |id, has_body| {
            if has_body {
                empty.execute([id])?;
                out.bodies += 1;
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// One step of a sweep: `act` on each finished message accepted before `cutoff_ms`; true when
/// the sweep reached its end (and was restarted).
fn sweep(
    c: &Connection,
    s: &mut Sweep,
    cutoff_ms: i64,
    limit: i64,
    mut act: impl FnMut(&str, bool) -> Result<()>,
) -> Result<bool> {
    let rows: Vec<(i64, String, i64, bool, bool)> = c
        .prepare_cached(SCAN)?
        .query_map(params![s.after, cutoff_ms, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let full = rows.len() as i64 == limit;
    for (rowid, id, created_ms, done, has_body) in rows {
        if created_ms >= cutoff_ms {
            s.restart(rowid - 1);
            return Ok(true);
        }
        if done {
            act(&id, has_body)?;
        } else if s.held_back.is_none() {
            s.held_back = Some(rowid);
        }
        s.after = rowid;
    }
    if full {
        return Ok(false);
    }
    s.restart(s.after);
    Ok(true)
}
