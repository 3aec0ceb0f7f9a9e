//! Tables. `user_version` records the schema version for later migrations.

use rusqlite::Connection;

use crate::Result;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    access_key_id TEXT NOT NULL UNIQUE,
    secret        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);
-- Per (account, region) settings; a region without a row uses the sandbox defaults.
CREATE TABLE IF NOT EXISTS account_regions (
    account_id         INTEGER NOT NULL REFERENCES accounts(id),
    region             TEXT NOT NULL,
    max_24h            INTEGER NOT NULL,
    max_rate           REAL NOT NULL,
    burst_seconds      REAL NOT NULL,
    production         INTEGER NOT NULL,
    sending_enabled    INTEGER NOT NULL,
    suppressed_reasons TEXT NOT NULL,
    enforcement        TEXT NOT NULL DEFAULT 'HEALTHY',
    enforcement_reset_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, region)
);
CREATE TABLE IF NOT EXISTS identities (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    region     TEXT NOT NULL,
    identity   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, identity)
);
CREATE TABLE IF NOT EXISTS suppression (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    region     TEXT NOT NULL,
    address    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    message_id TEXT,
    PRIMARY KEY (account_id, region, address)
);
-- The spool: one row per accepted message, one per recipient.
CREATE TABLE IF NOT EXISTS messages (
    id                TEXT PRIMARY KEY,
    account_id        INTEGER NOT NULL,
    region            TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    mail_from         TEXT NOT NULL,
    configuration_set TEXT,
    tags              TEXT NOT NULL,
    source            TEXT NOT NULL,
    size              INTEGER NOT NULL,
    body              BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id      TEXT NOT NULL,
    idx             INTEGER NOT NULL,
    address         TEXT NOT NULL,
    state           TEXT NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_reply      TEXT,
    first_reply     TEXT,
    updated_ms      INTEGER NOT NULL DEFAULT 0,
    priority        INTEGER NOT NULL DEFAULT 0,
    lane            TEXT,
    feedback        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (state, next_attempt_ms);
-- Quota ledger: recipients accepted per second (rolling 24 h) and the rate bucket state.
CREATE TABLE IF NOT EXISTS quota_seconds (
    account_id INTEGER NOT NULL,
    region     TEXT NOT NULL,
    second     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, second)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quota_bucket (
    account_id INTEGER NOT NULL,
    region     TEXT NOT NULL,
    tat        INTEGER NOT NULL,
    PRIMARY KEY (account_id, region)
) WITHOUT ROWID;
-- DKIM of domain identities: settings and keys (JSON [[selector, base64 DER], ...]).
CREATE TABLE IF NOT EXISTS dkim (
    account_id      INTEGER NOT NULL,
    region          TEXT NOT NULL,
    identity        TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    origin          TEXT NOT NULL,
    status          TEXT NOT NULL,
    keys            TEXT NOT NULL,
    key_spec        TEXT NOT NULL,
    next_key_spec   TEXT NOT NULL,
    generated_ms    INTEGER NOT NULL,
    last_success_ms INTEGER NOT NULL,
    pending         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, region, identity)
) WITHOUT ROWID;
-- Custom MAIL FROM domains of identities.
CREATE TABLE IF NOT EXISTS mail_from (
    account_id      INTEGER NOT NULL,
    region          TEXT NOT NULL,
    identity        TEXT NOT NULL,
    domain          TEXT NOT NULL,
    behavior        TEXT NOT NULL,
    status          TEXT NOT NULL,
    set_ms          INTEGER NOT NULL,
    last_success_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, identity)
) WITHOUT ROWID;
-- Delivery attempts since the spool was created, by lane, outcome, reply class and whether first
-- attempts: written with the attempts themselves, so the counters survive a restart exactly.
CREATE TABLE IF NOT EXISTS delivery_totals (
    lane     TEXT NOT NULL,
    provider TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    class    TEXT NOT NULL,
    first    INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (lane, outcome, class, first)
) WITHOUT ROWID;
-- Named documents of an account in a region (templates, configuration sets, contact lists...),
-- as JSON: their shapes are SES's and change with the API, not with the spool.
CREATE TABLE IF NOT EXISTS resources (
    account_id INTEGER NOT NULL,
    region     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    doc        TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, kind, name)
) WITHOUT ROWID;
-- GetSendStatistics: 15-minute buckets.
CREATE TABLE IF NOT EXISTS send_stats (
    account_id        INTEGER NOT NULL,
    region            TEXT NOT NULL,
    bucket            INTEGER NOT NULL,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    bounces           INTEGER NOT NULL DEFAULT 0,
    complaints        INTEGER NOT NULL DEFAULT 0,
    rejects           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, region, bucket)
) WITHOUT ROWID;
"#;

/// Create missing tables and columns.
pub fn migrate(conn: &Connection) -> Result<()> {
    // Pages freed by retention are reused in place by new mail (no auto-vacuum: its pointer-map
    // upkeep cost every send about 7 %); `weir spool compact` gives them back to the file system.
    conn.execute_batch(SCHEMA)?;
    // Retention walks messages in rowid order; the index it once used cost every send an insert.
    conn.execute_batch("DROP INDEX IF EXISTS messages_created")?;
    // Columns added after the first schema: add them to databases created before.
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('recipients')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, ddl) in [
        ("first_reply", "TEXT"),
        ("updated_ms", "INTEGER NOT NULL DEFAULT 0"),
        ("priority", "INTEGER NOT NULL DEFAULT 0"),
        ("lane", "TEXT"),
        ("feedback", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        if !cols.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE recipients ADD COLUMN {name} {ddl}"))?;
        }
    }
    let dkim_cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('dkim')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !dkim_cols.iter().any(|c| c == "pending") {
        conn.execute_batch("ALTER TABLE dkim ADD COLUMN pending TEXT NOT NULL DEFAULT ''")?;
    }
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('account_regions')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, ddl) in
        [("enforcement", "TEXT NOT NULL DEFAULT 'HEALTHY'"), ("enforcement_reset_ms", "INTEGER NOT NULL DEFAULT 0")]
    {
        if !cols.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE account_regions ADD COLUMN {name} {ddl}"))?;
        }
    }
    // Transactional (priority 0) before bulk (1).
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS recipients_due_priority ON recipients (state, priority, next_attempt_ms)",
    )?;
    // Written only when it changes: an open that writes nothing works on a full disk.
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != 1 {
        conn.pragma_update(None, "user_version", 1)?;
    }
    Ok(())
}
