//! Custom MAIL FROM domains of identities: one row per (account, region, identity).

use rusqlite::{Connection, params};

use crate::Result;
use crate::model::MailFromRecord;

/// Add or replace an identity's MAIL FROM domain.
pub fn upsert(c: &Connection, account_id: i64, region: &str, m: &MailFromRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO mail_from (account_id, region, identity, domain, behavior, status, set_ms, last_success_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (account_id, region, identity) DO UPDATE SET domain = excluded.domain,
           behavior = excluded.behavior, status = excluded.status, set_ms = excluded.set_ms,
           last_success_ms = excluded.last_success_ms",
    )?
    .execute(params![
        account_id,
        region,
        m.identity,
        m.domain,
        m.behavior,
        m.status,
        m.set_ms,
        m.last_success_ms
    ])?;
    Ok(())
}

/// Remove an identity's MAIL FROM domain.
pub fn delete(c: &Connection, account_id: i64, region: &str, identity: &str) -> Result<()> {
    c.execute(
        "DELETE FROM mail_from WHERE account_id = ?1 AND region = ?2 AND identity = ?3",
        params![account_id, region, identity],
    )?;
    Ok(())
}

/// Every row.
pub fn list(c: &Connection) -> Result<Vec<(i64, String, MailFromRecord)>> {
    let mut st = c.prepare(
        "SELECT account_id, region, identity, domain, behavior, status, set_ms, last_success_ms FROM mail_from",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            MailFromRecord {
                identity: r.get(2)?,
                domain: r.get(3)?,
                behavior: r.get(4)?,
                status: r.get(5)?,
                set_ms: r.get(6)?,
                last_success_ms: r.get(7)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
