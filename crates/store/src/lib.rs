//! Embedded durable storage for weir, on SQLite in WAL mode with `synchronous=FULL`.
//!
//! # Layout
//! - [`Store`]: one database file. Writes go through a single writer thread that commits in
//!   groups ([`writer`]); a caller's future resolves only after the commit that holds its write
//!   is on disk. Reads use a separate connection.
//! - `schema`: the tables, and the SQL of each operation (`ops`, `queue`, `resources`, `dkim`,
//!   `mail_from`, `retention`): private, so that no SQL or connection leaves this crate.
//! - [`model`]: rows as Rust types, recipient states and attempt outcomes among them.
//! - [`spool::Spool`]: the spool's typed operations (delivery, the operator's queue, retention).
//! - [`Accounts`], [`Ledger`], [`Documents`]: the submission service's (the catalog, quotas and
//!   statistics, named documents).
//! - [`events`]: the SES-shaped event log (`events.jsonl`) and its listeners.

mod dkim;
pub mod events;
mod mail_from;

/// The ledger's row types and windows.
pub mod ledger {
    pub use crate::ops::{QuotaRecord, STATS_BUCKET_SECS, STATS_RETENTION_SECS, StatsRow, Volume};
}
pub mod model;
mod ops;
mod queue;
mod repos;
mod resources;
mod retention;
mod schema;
pub mod spool;
mod writer;

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

pub use repos::{Accounts, AccountsSnapshot, Documents, Ledger};
pub use spool::Spool;
pub use writer::WriterStats;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The group commit holding this write failed; nothing of it is stored.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer thread is gone (shutting down).
    #[error("the storage writer has stopped")]
    WriterGone,
    /// A row the operation needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A row the operation would create exists already.
    #[error("{0}")]
    Conflict(String),
    /// Creating it would exceed a limit on how many there may be.
    #[error("{0}")]
    Limit(String),
    /// Filesystem trouble opening the store.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Tuning of the group-commit writer.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most write jobs folded into one transaction.
    pub max_batch: usize,
    /// `synchronous=FULL` (fsync every commit) when true; NORMAL otherwise (benchmarks only).
    pub fsync: bool,
    /// Writes commit on the caller's thread, one transaction each, instead of in groups on the
    /// writer thread. For the simulator: nothing waits on another thread, so a paused tokio
    /// clock never advances while a write is in progress. Not for a server (it blocks).
    pub inline_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_batch: 512, fsync: true, inline_writes: false }
    }
}

/// Handle to the database. Cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    writer: writer::Writer,
    reader: Mutex<Connection>,
}

/// Keep the WAL and shared-memory files when the last connection closes. SQLite deletes them on
/// a clean close; a server stopped cleanly then could not start on a full disk, where they
/// cannot be made again (after a crash they are still there, and it can).
fn persist_wal(conn: &Connection) -> Result<()> {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: the handle is this open connection's, alive for the call; SQLITE_FCNTL_PERSIST_WAL
    // takes a pointer to an int, which `on` is, and only reads and writes it during the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::ffi::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), None)));
    }
    Ok(())
}

fn configure(conn: &Connection, opts: &StoreOptions) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    persist_wal(conn)?;
    // The simulator's throwaway spool (inline writes) never waits for the disk.
    let sync = if opts.fsync {
        "FULL"
    } else if opts.inline_writes {
        "OFF"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Every statement of the hot path stays prepared (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

impl Store {
    /// Open (creating if needed) `dir/weir.db`.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("weir.db");
        let conn = Connection::open(&path)?;
        configure(&conn, &opts)?;
        schema::migrate(&conn)?;
        let reader =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        configure(&reader, &opts)?;
        let writer = if opts.inline_writes {
            writer::Writer::inline(conn, opts.max_batch)
        } else {
            writer::Writer::start(conn, opts.max_batch)?
        };
        Ok(Store { path, writer, reader: Mutex::new(reader) })
    }

    /// Open an existing database read-only (for inspection while a server runs).
    pub fn open_read_only(dir: &Path) -> Result<ReadOnly> {
        let path = dir.join("weir.db");
        if !path.exists() {
            return Err(StoreError::NotFound(format!("no weir database at {}", path.display())));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(ReadOnly { conn })
    }

    /// Rewrite the database of a stopped server into the smallest file (SQLite's VACUUM): pages
    /// that retention freed, which new mail would otherwise reuse, go back to the file system.
    /// Returns the file size before and after.
    pub fn compact(dir: &Path) -> Result<(u64, u64)> {
        let path = dir.join("weir.db");
        if !path.exists() {
            return Err(StoreError::NotFound(format!("no weir database at {}", path.display())));
        }
        let before = std::fs::metadata(&path)?.len();
        let conn = Connection::open(&path)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        drop(conn);
        Ok((before, std::fs::metadata(&path)?.len()))
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in the writer's next group commit; resolves after that commit is durable.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Queue `f` for the next commit without waiting for it (for records whose loss in a crash
    /// is acceptable, such as reject counters).
    pub(crate) fn write_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> Result<()> + Send + 'static,
    {
        self.writer.submit_detached(f);
    }

    /// Run a read on the reader connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let f = match self.writer.read_inline(f) {
            Ok(r) => return r,
            Err(f) => f,
        };
        let conn = self.reader.lock();
        f(&conn)
    }

    /// Counters of the group-commit writer.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// Stop the writer after it has committed everything queued.
    pub fn shutdown(&self) {
        self.writer.shutdown();
    }
}

/// A database opened read-only, for the command line's inspection of a data dir.
pub struct ReadOnly {
    conn: Connection,
}

impl ReadOnly {
    /// Messages with a recipient still waiting.
    pub fn waiting_messages(&self) -> Result<i64> {
        queue::waiting_messages(&self.conn)
    }

    /// Every spooled message, oldest first.
    pub fn spool_list(&self) -> Result<Vec<spool::SpoolSummary>> {
        ops::spool_list(&self.conn)
    }
}

#[cfg(test)]
mod tests;
