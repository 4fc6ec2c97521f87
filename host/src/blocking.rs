//! A bounded pool for CPU or file work that must not run on the async runtime's workers (graph
//! checks, reading and parsing workflow files, inline thumbnails: the thumbnail pool is one
//! of these under its own name and size).
//!
//! Lifecycle and invariants: a [`BlockingPool`] holds `threads` permits. [`BlockingPool::run`]
//! waits (asynchronously, in FIFO order) for a permit, then runs the job on tokio's blocking
//! threads; the permit moves into the job and is released only when the job returns, so a
//! caller that gives up (a cancelled request) never lets more than `threads` jobs run at once.
//! At most `threads` such jobs run at any moment, whatever the number of callers; the others
//! wait without holding a thread. The size is a server setting (`--check-threads`,
//! `COMFYUI_MCP_CHECK_THREADS`, default [`BlockingPool::DEFAULT_THREADS`]).

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a job did not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    /// The job panicked (or the runtime shut down under it).
    #[error("a {pool} job stopped before finishing: {detail}")]
    Aborted {
        /// The pool's name.
        pool: &'static str,
        /// What tokio reported.
        detail: String,
    },
    /// The pool was closed (only at shutdown).
    #[error("the {pool} pool is shut down")]
    Closed {
        /// The pool's name.
        pool: &'static str,
    },
}

/// At most `threads` jobs at once, on tokio's blocking threads.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    name: &'static str,
    threads: usize,
    permits: Arc<Semaphore>,
}

impl BlockingPool {
    /// Default size of the graph-check pool: 2 jobs at once.
    pub const DEFAULT_THREADS: usize = 2;

    /// A pool named `name` (for messages) running at most `threads` jobs at once (at least 1).
    pub fn new(name: &'static str, threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            name,
            threads,
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// How many jobs may run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How many more jobs could start right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Runs `job` off the async runtime once a permit is free; returns what it returned.
    pub async fn run<T, F>(&self, job: F) -> Result<T, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BlockingError::Closed { pool: self.name })?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| BlockingError::Aborted {
            pool: self.name,
            detail: e.to_string(),
        })
    }
}

impl Default for BlockingPool {
    fn default() -> Self {
        Self::new("graph check", Self::DEFAULT_THREADS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Starts a job on `pool` that blocks until `release` is sent, then returns `value`;
    /// returns once the job runs.
    async fn hold<T: Send + 'static>(
        pool: &BlockingPool,
        value: T,
    ) -> (
        mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<T, BlockingError>>,
    ) {
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let caller = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    blocked.recv().ok();
                    value
                })
                .await
            }
        });
        started.await.expect("the job started");
        (release, caller)
    }

    /// With every permit taken by a job that blocks, a further job waits (without a thread)
    /// while the async runtime, here a single thread, keeps serving other tasks; the waiting
    /// job runs once a permit comes back.
    #[tokio::test(flavor = "current_thread")]
    async fn jobs_beyond_the_size_wait_and_the_runtime_keeps_serving() {
        let pool = BlockingPool::new("test", 1);
        let (release, first) = hold(&pool, 1).await;
        assert_eq!(pool.available(), 0);
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        // The single runtime thread is free: other tasks run while both jobs are pending.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished(), "the second job waits for the permit");
        let served = tokio::spawn(async { "served" }).await.unwrap();
        assert_eq!(served, "served");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(pool.available(), 1);
    }

    /// A caller that gives up does not free the permit while its job still runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_caller_keeps_its_permit_until_the_job_ends() {
        let pool = BlockingPool::new("test", 1);
        let (release, caller) = hold(&pool, ()).await;
        caller.abort();
        let _ = caller.await;
        assert_eq!(
            pool.available(),
            0,
            "the job still runs and holds its permit"
        );
        release.send(()).unwrap();
        // The job ends; the permit comes back.
        assert_eq!(pool.run(|| 3).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_is_an_error_and_frees_its_permit() {
        let pool = BlockingPool::new("test", 1);
        let error = pool.run(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert!(matches!(error, BlockingError::Aborted { .. }), "{error}");
        assert!(error.to_string().contains("test job"), "{error}");
        assert_eq!(pool.run(|| 4).await.unwrap(), 4);
    }
}
