//! Where templates are rendered: off the async workers, on at most as many blocking threads as
//! there are cores, and one at a time per account, so that one tenant's templates can take at most
//! one thread while the listeners, the health check and other tenants go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// How long a request waits for its account's turn before it is refused as throttled.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Why a render did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The account already had renders waiting this long.
    #[error("Too many templated messages are being rendered for this account.")]
    Busy,
    /// The render thread ended without an answer (it panicked).
    #[error("The template could not be rendered.")]
    Failed,
}

/// The bounded pool.
pub struct RenderPool {
    threads: Arc<Semaphore>,
    accounts: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl Default for RenderPool {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        RenderPool::new(cores.max(2))
    }
}

impl RenderPool {
    /// A pool of `threads` render threads.
    pub fn new(threads: usize) -> RenderPool {
        RenderPool { threads: Arc::new(Semaphore::new(threads.max(1))), accounts: Mutex::new(HashMap::new()) }
    }

    /// Run `f` for `account` on a render thread.
    pub async fn run<T: Send + 'static>(
        &self,
        account: i64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let turn = self.accounts.lock().entry(account).or_insert_with(|| Arc::new(Semaphore::new(1))).clone();
        let wait = async {
            let mine = turn.acquire_owned().await.map_err(|_| PoolError::Failed)?;
            let thread = self.threads.clone().acquire_owned().await.map_err(|_| PoolError::Failed)?;
            Ok::<_, PoolError>((mine, thread))
        };
        let permits = tokio::time::timeout(QUEUE_WAIT, wait).await.map_err(|_| PoolError::Busy)??;
        let out = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            f()
        })
        .await
        .map_err(|_| PoolError::Failed)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_never_holds_more_than_one_thread() {
        let pool = Arc::new(RenderPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..6 {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(7, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("ran");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_account_runs_while_one_is_busy() {
        let pool = Arc::new(RenderPool::new(2));
        let busy = pool.clone();
        let long = tokio::spawn(async move { busy.run(1, || std::thread::sleep(Duration::from_millis(500))).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        pool.run(2, || ()).await.expect("ran");
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
        long.await.expect("join").expect("ran");
    }
}
