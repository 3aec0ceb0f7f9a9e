//! The group-commit writer: one thread owns the write connection, folds every job waiting in
//! its queue into one transaction, commits (one fsync), and only then answers each job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Called after the commit with `None` on success or the commit error.
type Complete = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// Runs inside the transaction and returns how to answer once the commit is known.
type Job = Box<dyn FnOnce(&Connection) -> Complete + Send>;

/// Counters of the writer, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Jobs committed.
    pub jobs: u64,
}

/// The inline writer's connection and its open transaction.
struct Inline {
    conn: Connection,
    /// Writes in the open transaction (none open when zero).
    pending: usize,
    max_batch: usize,
}

pub(crate) struct Writer {
    /// Inline mode: writes run on the caller's thread.
    inline: Option<Mutex<Inline>>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
    jobs: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, max_batch: usize) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let jobs = Arc::new(AtomicU64::new(0));
        let (c2, j2) = (commits.clone(), jobs.clone());
        let thread = std::thread::Builder::new()
            .name("weir-store-writer".into())
            .spawn(move || run(conn, rx, max_batch.max(1), &c2, &j2))?;
        Ok(Writer { inline: None, tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), commits, jobs })
    }

    /// A writer without a thread: writes run on the caller's thread, in transactions of up to
    /// `max_batch` writes (each in a savepoint of its own), and reads go through the same
    /// connection so they see them. A write is answered before its commit: for a throwaway
    /// spool only (the simulator's), never for a server.
    pub(crate) fn inline(conn: Connection, max_batch: usize) -> Writer {
        Writer {
            inline: Some(Mutex::new(Inline { conn, pending: 0, max_batch: max_batch.max(1) })),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            commits: Arc::new(AtomicU64::new(0)),
            jobs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn run_inline<T>(&self, inline: &mut Inline, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if inline.pending == 0 {
            exec(&inline.conn, "BEGIN IMMEDIATE")?;
        }
        let r = in_savepoint(&inline.conn, f);
        inline.pending += 1;
        self.jobs.fetch_add(1, Ordering::Relaxed);
        if inline.pending >= inline.max_batch {
            self.commit_inline(inline)?;
        }
        r
    }

    fn commit_inline(&self, inline: &mut Inline) -> Result<()> {
        if inline.pending == 0 {
            return Ok(());
        }
        inline.pending = 0;
        if let Err(e) = exec(&inline.conn, "COMMIT") {
            let _ = exec(&inline.conn, "ROLLBACK");
            return Err(StoreError::Commit(e.to_string()));
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Inline mode: run a read on the writing connection (it sees the writes not yet
    /// committed). In threaded mode `f` is given back.
    pub(crate) fn read_inline<T, F: FnOnce(&Connection) -> Result<T>>(
        &self,
        f: F,
    ) -> std::result::Result<Result<T>, F> {
        match &self.inline {
            Some(i) => Ok(f(&i.lock().conn)),
            None => Err(f),
        }
    }

    fn send(&self, job: Job) -> std::result::Result<(), Job> {
        match self.tx.lock().as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    pub(crate) async fn submit<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        if let Some(inline) = &self.inline {
            return self.run_inline(&mut inline.lock(), f);
        }
        let (done, wait) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit_err: Option<&StoreError>| {
                let answer = match (commit_err, outcome) {
                    (Some(e), _) => Err(StoreError::Commit(e.to_string())),
                    (None, r) => r,
                };
                let _ = done.send(answer);
            })
        });
        if self.send(job).is_err() {
            return Err(StoreError::WriterGone);
        }
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) fn submit_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> Result<()> + Send + 'static,
    {
        if let Some(inline) = &self.inline {
            if let Err(e) = self.run_inline(&mut inline.lock(), f) {
                tracing::warn!(error = %e, "detached write failed");
            }
            return;
        }
        let job: Job = Box::new(move |conn| {
            if let Err(e) = in_savepoint(conn, f) {
                tracing::warn!(error = %e, "detached write failed");
            }
            Box::new(|_| {})
        });
        if self.send(job).is_err() {
            tracing::warn!("detached write dropped: writer stopped");
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats { commits: self.commits.load(Ordering::Relaxed), jobs: self.jobs.load(Ordering::Relaxed) }
    }

    pub(crate) fn shutdown(&self) {
        if let Some(inline) = &self.inline
            && let Err(e) = self.commit_inline(&mut inline.lock())
        {
            tracing::warn!(error = %e, "last inline writes not committed");
        }
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A fixed statement, prepared once per connection (these run several times per write).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Run one job inside a savepoint so that its failure does not undo the rest of the group.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    exec(conn, "SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            exec(conn, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            exec(conn, "ROLLBACK TO job")?;
            exec(conn, "RELEASE job")?;
            Err(e)
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, max_batch: usize, commits: &AtomicU64, jobs: &AtomicU64) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let mut completes: Vec<Complete> = Vec::with_capacity(batch.len());
        let begin = exec(&conn, "BEGIN IMMEDIATE").map_err(StoreError::from);
        if let Err(e) = begin {
            tracing::error!(error = %e, "cannot begin a transaction");
            // Dropping the jobs unanswered makes each caller see `WriterGone`-style failure.
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            completes.push(job(&conn));
        }
        let commit = exec(&conn, "COMMIT").map(|_| ()).map_err(StoreError::from);
        if let Err(e) = &commit {
            tracing::error!(error = %e, "group commit failed");
            let _ = exec(&conn, "ROLLBACK");
        } else {
            commits.fetch_add(1, Ordering::Relaxed);
            jobs.fetch_add(n, Ordering::Relaxed);
        }
        let err = commit.err();
        for c in completes {
            c(err.as_ref());
        }
    }
}
