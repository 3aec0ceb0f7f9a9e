//! DKIM settings and keys of domain identities: one row per (account, region, domain).

use rusqlite::{Connection, params};

use crate::Result;
use crate::model::DkimRecord;

/// Add or replace a domain's DKIM row.
pub fn upsert(c: &Connection, account_id: i64, region: &str, d: &DkimRecord) -> Result<()> {
    use base64::Engine as _;
    let keys: Vec<serde_json::Value> = d
        .keys
        .iter()
        .map(|(s, k)| serde_json::json!([s, base64::engine::general_purpose::STANDARD.encode(k)]))
        .collect();
    c.prepare_cached(
        "INSERT INTO dkim (account_id, region, identity, enabled, origin, status, keys, key_spec, next_key_spec,
           generated_ms, last_success_ms, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (account_id, region, identity) DO UPDATE SET enabled = excluded.enabled,
           origin = excluded.origin, status = excluded.status, keys = excluded.keys,
           key_spec = excluded.key_spec, next_key_spec = excluded.next_key_spec,
           generated_ms = excluded.generated_ms, last_success_ms = excluded.last_success_ms,
           pending = excluded.pending",
    )?
    .execute(params![
        account_id,
        region,
        d.identity,
        d.enabled,
        d.origin,
        d.status,
        serde_json::Value::Array(keys).to_string(),
        d.key_spec,
        d.next_key_spec,
        d.generated_ms,
        d.last_success_ms,
        d.pending
            .as_ref()
            .map(|(s, k)| serde_json::json!([s, base64::engine::general_purpose::STANDARD.encode(k)]).to_string())
            .unwrap_or_default()
    ])?;
    Ok(())
}

/// Remove a domain's DKIM row (with its identity).
pub fn delete(c: &Connection, account_id: i64, region: &str, identity: &str) -> Result<()> {
    c.execute(
        "DELETE FROM dkim WHERE account_id = ?1 AND region = ?2 AND identity = ?3",
        params![account_id, region, identity],
    )?;
    Ok(())
}

/// Every DKIM row.
pub fn list(c: &Connection) -> Result<Vec<(i64, String, DkimRecord)>> {
    use base64::Engine as _;
    let mut st = c.prepare(
        "SELECT account_id, region, identity, enabled, origin, status, keys, key_spec, next_key_spec, generated_ms,
           last_success_ms, pending FROM dkim",
    )?;
    let rows = st.query_map([], |r| {
        let keys: String = r.get(6)?;
        let keys: Vec<(String, String)> = serde_json::from_str(&keys).unwrap_or_default();
        let keys = keys
            .into_iter()
            .filter_map(|(s, k)| base64::engine::general_purpose::STANDARD.decode(k).ok().map(|k| (s, k)))
            .collect();
        let pending: String = r.get(11)?;
        let pending = serde_json::from_str::<(String, String)>(&pending)
            .ok()
            .and_then(|(s, k)| base64::engine::general_purpose::STANDARD.decode(k).ok().map(|k| (s, k)));
        Ok((
            r.get(0)?,
            r.get(1)?,
            DkimRecord {
                identity: r.get(2)?,
                enabled: r.get(3)?,
                origin: r.get(4)?,
                status: r.get(5)?,
                keys,
                key_spec: r.get(7)?,
                next_key_spec: r.get(8)?,
                generated_ms: r.get(9)?,
                last_success_ms: r.get(10)?,
                pending,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
