//! The SQL of the catalog: accounts, region settings, identities, the suppression list.

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::*;
use crate::{Result, StoreError};

/// Insert or replace an account under its own id (cluster mode: the id came from the shared
/// sequence, possibly on another node).
pub fn upsert_account(c: &Connection, a: &Account) -> Result<()> {
    c.execute(
        "INSERT INTO accounts (id, name, access_key_id, secret, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, access_key_id = excluded.access_key_id,
         secret = excluded.secret, created_ms = excluded.created_ms",
        params![a.id, a.name, a.access_key_id, a.secret, a.created_ms],
    )?;
    Ok(())
}

/// The highest account id used here.
pub fn max_account_id(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT COALESCE(MAX(id), 0) FROM accounts", [], |r| r.get(0))?)
}

/// Insert a new account. Fails with `Conflict` if the name is taken.
pub fn insert_account(c: &Connection, name: &str, access_key_id: &str, secret: &str, now_ms: i64) -> Result<Account> {
    let exists: Option<i64> =
        c.query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| r.get(0)).optional()?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!("account '{name}' already exists")));
    }
    c.execute(
        "INSERT INTO accounts (name, access_key_id, secret, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![name, access_key_id, secret, now_ms],
    )?;
    Ok(Account {
        id: c.last_insert_rowid(),
        name: name.to_string(),
        access_key_id: access_key_id.to_string(),
        secret: secret.to_string(),
        created_ms: now_ms,
    })
}

/// Every account.
pub fn list_accounts(c: &Connection) -> Result<Vec<Account>> {
    let mut st = c.prepare("SELECT id, name, access_key_id, secret, created_ms FROM accounts ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(Account {
            id: r.get(0)?,
            name: r.get(1)?,
            access_key_id: r.get(2)?,
            secret: r.get(3)?,
            created_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Store the settings of one (account, region).
pub fn upsert_region(c: &Connection, account_id: i64, region: &str, s: &RegionSettings) -> Result<()> {
    c.execute(
        "INSERT INTO account_regions (account_id, region, max_24h, max_rate, burst_seconds, production, sending_enabled, suppressed_reasons, enforcement, enforcement_reset_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (account_id, region) DO UPDATE SET max_24h = excluded.max_24h, max_rate = excluded.max_rate,
           burst_seconds = excluded.burst_seconds, production = excluded.production,
           sending_enabled = excluded.sending_enabled, suppressed_reasons = excluded.suppressed_reasons,
           enforcement = excluded.enforcement, enforcement_reset_ms = excluded.enforcement_reset_ms",
        params![
            account_id,
            region,
            s.max_24h,
            s.max_rate,
            s.burst_seconds,
            s.production,
            s.sending_enabled,
            s.suppressed_reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
            s.enforcement,
            s.enforcement_reset_ms
        ],
    )?;
    Ok(())
}

/// Every stored (account, region) settings row.
pub fn list_regions(c: &Connection) -> Result<Vec<(i64, String, RegionSettings)>> {
    let mut st = c.prepare(
        "SELECT account_id, region, max_24h, max_rate, burst_seconds, production, sending_enabled, suppressed_reasons, enforcement, enforcement_reset_ms FROM account_regions",
    )?;
    let rows = st.query_map([], |r| {
        let reasons: String = r.get(7)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            RegionSettings {
                max_24h: r.get(2)?,
                max_rate: r.get(3)?,
                burst_seconds: r.get(4)?,
                production: r.get(5)?,
                sending_enabled: r.get(6)?,
                suppressed_reasons: parse_reasons(&reasons)?,
                enforcement: r.get(8)?,
                enforcement_reset_ms: r.get(9)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Create or replace an identity.
pub fn upsert_identity(c: &Connection, account_id: i64, region: &str, i: &Identity) -> Result<()> {
    c.execute(
        "INSERT INTO identities (account_id, region, identity, kind, status, token, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (account_id, region, identity) DO UPDATE SET kind = excluded.kind, status = excluded.status, token = excluded.token",
        params![account_id, region, i.identity, i.kind.as_str(), i.status.as_str(), i.token, i.created_ms],
    )?;
    Ok(())
}

/// Delete an identity; true if it existed.
pub fn delete_identity(c: &Connection, account_id: i64, region: &str, identity: &str) -> Result<bool> {
    let n = c.execute(
        "DELETE FROM identities WHERE account_id = ?1 AND region = ?2 AND identity = ?3",
        params![account_id, region, identity],
    )?;
    Ok(n > 0)
}

/// Every identity of every account.
pub fn list_identities(c: &Connection) -> Result<Vec<(i64, String, Identity)>> {
    let mut st =
        c.prepare("SELECT account_id, region, identity, kind, status, token, created_ms FROM identities ORDER BY created_ms, identity")?;
    let rows = st.query_map([], |r| {
        let kind: String = r.get(3)?;
        let status: String = r.get(4)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            Identity {
                identity: r.get(2)?,
                kind: IdentityKind::parse(&kind).unwrap_or(IdentityKind::EmailAddress),
                status: VerificationStatus::parse(&status).unwrap_or(VerificationStatus::Pending),
                token: r.get(5)?,
                created_ms: r.get(6)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Add or update an address on the suppression list.
pub fn put_suppressed(c: &Connection, account_id: i64, region: &str, s: &Suppressed) -> Result<()> {
    c.execute(
        "INSERT INTO suppression (account_id, region, address, reason, updated_ms, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (account_id, region, address) DO UPDATE SET reason = excluded.reason, updated_ms = excluded.updated_ms,
           message_id = excluded.message_id",
        params![account_id, region, s.address, s.reason, s.updated_ms, s.message_id],
    )?;
    Ok(())
}

/// Remove an address from the suppression list; true if it was there.
pub fn delete_suppressed(c: &Connection, account_id: i64, region: &str, address: &str) -> Result<bool> {
    let n = c.execute(
        "DELETE FROM suppression WHERE account_id = ?1 AND region = ?2 AND address = ?3",
        params![account_id, region, address],
    )?;
    Ok(n > 0)
}

/// Every suppressed address of every account.
pub fn list_suppressed(c: &Connection) -> Result<Vec<(i64, String, Suppressed)>> {
    let mut st = c.prepare("SELECT account_id, region, address, reason, updated_ms, message_id FROM suppression")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            Suppressed { address: r.get(2)?, reason: r.get(3)?, updated_ms: r.get(4)?, message_id: r.get(5)? },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The suppression reasons stored as `BOUNCE,COMPLAINT`; an unknown word is an error, not a guess.
fn parse_reasons(text: &str) -> rusqlite::Result<Vec<SuppressionReason>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            SuppressionReason::parse(s).ok_or_else(|| {
                let e = format!("unknown suppression reason {s:?}");
                rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
            })
        })
        .collect()
}
