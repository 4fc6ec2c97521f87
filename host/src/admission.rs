//! Admission control: the one place pack calls are admitted and run.
//!
//! Every pack call of the server (a `generate` build, a pack load with its
//! self-test, the `templates` and `check` commands) goes through
//! [`Admission::run`]. A call first takes a permit of its pack's share, then
//! a global permit, waiting at most [`AdmissionConfig::queue_wait`] for both
//! together; if none comes free in time it fails with
//! [`AdmissionError::Busy`], naming the limit that was full and the setting
//! that raises it.
//!
//! Invariants:
//! * at most `permits` pack calls run at once, server-wide, and at most
//!   `per_pack` of them for one pack (keyed by its file), so one pack cannot
//!   starve the others;
//! * calls run on a fixed pool of `permits` threads owned by the admission,
//!   each with a [`PACK_THREAD_STACK`] native stack (room for the 4 MiB of
//!   wasm stack the engine allows plus the host frames below it), so thread
//!   count and peak memory are bounded by permits × the per-call memory cap,
//!   whatever the number of callers. Each declares its stack to the pack
//!   runtime (`pack_runtime::declare_call_thread`), so a pack call runs on
//!   it directly (a wasm stack setting above what it holds makes the
//!   runtime use its own larger call threads instead);
//! * a job is handed to the pool only while it holds both permits, so a pool
//!   thread is always free for it; the permits are released on that thread
//!   when the job returns (or panics), never earlier: a caller that gives up
//!   waiting for the result does not free the permit of a call still running;
//! * waiting never blocks an async worker (tokio semaphores), and the wait is
//!   FIFO per semaphore.
//!
//! Lifecycle: created once per service; the pool threads exit when the
//! `Admission` is dropped (their queue closes).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Native stack of every thread that runs pack calls: 8 MiB, twice the wasm
/// stack the engine allows, so a deeply recursing guest (an interpreter pack)
/// hits the wasm stack limit, a clean trap, before the native guard page.
pub const PACK_THREAD_STACK: usize = 8 << 20;

/// Default longest wait for a permit before a call fails as busy.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Limits of the admission. Defaults: permits = available cores, per-pack
/// share = half the permits rounded up, wait = 5 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Pack calls running at once, server-wide (`COMFYUI_MCP_PACK_CONCURRENCY`).
    pub permits: usize,
    /// Pack calls of one pack running at once (`COMFYUI_MCP_PACK_SHARE`).
    pub per_pack: usize,
    /// Longest wait for a permit (`COMFYUI_MCP_PACK_QUEUE_WAIT_MS`).
    pub queue_wait: Duration,
}

impl AdmissionConfig {
    /// The limits from optional settings: `permits` defaults to the number of
    /// cores, `per_pack` to half the permits rounded up; both are at least 1
    /// and the share never exceeds the permits.
    pub fn resolve(permits: Option<usize>, per_pack: Option<usize>, queue_wait: Duration) -> Self {
        let permits = permits
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let per_pack = per_pack
            .unwrap_or_else(|| permits.div_ceil(2))
            .clamp(1, permits);
        Self {
            permits,
            per_pack,
            queue_wait,
        }
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self::resolve(None, None, DEFAULT_QUEUE_WAIT)
    }
}

/// How long a caller is willing to wait for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// At most the configured queue wait, then [`AdmissionError::Busy`]
    /// (calls made for a client).
    Bounded,
    /// Until a permit comes free (background pack loads, which must not fail
    /// because clients are busy; they still never exceed the limits).
    Queue,
}

/// Which limit was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyLimit {
    /// Every permit of the server was taken.
    Server,
    /// The pack already used its whole share.
    PackShare,
}

/// A call that was not run, or did not finish normally.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// No permit came free within the queue wait.
    #[error("{}", busy_message(*.limit, .pack, *.permits, *.per_pack, *.waited))]
    Busy {
        /// The full limit.
        limit: BusyLimit,
        /// The pack (file) the call was for.
        pack: String,
        /// The server-wide limit.
        permits: usize,
        /// The per-pack limit.
        per_pack: usize,
        /// How long the call waited.
        waited: Duration,
    },
    /// The job panicked on its pool thread (a host bug; the thread survives).
    #[error("the pack call panicked on the host side: {0}")]
    Panicked(String),
    /// The pool is gone (the service is shutting down).
    #[error("the pack call pool has shut down")]
    Closed,
}

fn busy_message(
    limit: BusyLimit,
    pack: &str,
    permits: usize,
    per_pack: usize,
    waited: Duration,
) -> String {
    match limit {
        BusyLimit::Server => format!(
            "server busy: all {permits} pack-call permits stayed taken for {waited:.1?}; \
             retry later, or raise COMFYUI_MCP_PACK_CONCURRENCY (--pack-concurrency) or \
             COMFYUI_MCP_PACK_QUEUE_WAIT_MS (--pack-queue-wait-ms)"
        ),
        BusyLimit::PackShare => format!(
            "server busy: pack {pack} already runs its share of {per_pack} of the \
             {permits} pack-call permits, and none came free within {waited:.1?}; \
             retry later, or raise COMFYUI_MCP_PACK_SHARE (--pack-share) or \
             COMFYUI_MCP_PACK_QUEUE_WAIT_MS (--pack-queue-wait-ms)"
        ),
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Admits pack calls and runs them on its own threads. Share behind an `Arc`.
pub struct Admission {
    config: AdmissionConfig,
    global: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Weak<Semaphore>>>,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("config", &self.config)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Starts the pool of `config.permits` threads.
    pub fn new(config: AdmissionConfig) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.permits {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("pack-call-{i}"))
                .stack_size(PACK_THREAD_STACK)
                .spawn(move || {
                    // Pack calls run right here, not on a further thread.
                    pack_runtime::declare_call_thread(PACK_THREAD_STACK);
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Arc::new(Self {
            global: Arc::new(Semaphore::new(config.permits)),
            shares: Mutex::new(HashMap::new()),
            queue: Mutex::new(Some(tx)),
            counters: Arc::default(),
            config,
        }))
    }

    /// The limits in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Pack calls running now.
    pub fn running(&self) -> usize {
        self.counters.running.load(Ordering::SeqCst)
    }

    /// The most pack calls that ever ran at once.
    pub fn peak_running(&self) -> usize {
        self.counters.peak.load(Ordering::SeqCst)
    }

    /// Runs `job` (a blocking pack call) for `pack` on a pool thread once
    /// admitted, and returns its result.
    pub async fn run<T, F>(&self, pack: &str, wait: Wait, job: F) -> Result<T, AdmissionError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permits = self.admit(pack, wait).await?;
        let (tx, rx) = oneshot::channel();
        let counters = self.counters.clone();
        let wrapped: Job = Box::new(move || {
            let now = counters.running.fetch_add(1, Ordering::SeqCst) + 1;
            counters.peak.fetch_max(now, Ordering::SeqCst);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(job));
            counters.running.fetch_sub(1, Ordering::SeqCst);
            drop(permits);
            let _ = tx.send(outcome);
        });
        let sent = match self.queue.lock() {
            Ok(queue) => queue.as_ref().is_some_and(|q| q.send(wrapped).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(AdmissionError::Closed);
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(AdmissionError::Panicked(panic_text(&panic))),
            Err(_) => Err(AdmissionError::Closed),
        }
    }

    async fn admit(
        &self,
        pack: &str,
        wait: Wait,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), AdmissionError> {
        let started = Instant::now();
        let share = self.share(pack);
        let acquire = async {
            let own = share
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BusyLimit::PackShare)?;
            let global = self
                .global
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BusyLimit::Server)?;
            Ok::<_, BusyLimit>((own, global))
        };
        let busy = |limit| AdmissionError::Busy {
            limit,
            pack: pack.to_owned(),
            permits: self.config.permits,
            per_pack: self.config.per_pack,
            waited: started.elapsed(),
        };
        match wait {
            Wait::Queue => acquire.await.map_err(|_| AdmissionError::Closed),
            Wait::Bounded => match tokio::time::timeout(self.config.queue_wait, acquire).await {
                Ok(result) => result.map_err(|_| AdmissionError::Closed),
                // Which limit kept the call out: its share was full when no
                // permit of it was free at the deadline (and the share is a
                // limit of its own, smaller than the server's).
                Err(_)
                    if share.available_permits() == 0
                        && self.config.per_pack < self.config.permits =>
                {
                    Err(busy(BusyLimit::PackShare))
                }
                Err(_) => Err(busy(BusyLimit::Server)),
            },
        }
    }

    /// The semaphore of `pack`'s share, created on first use and forgotten
    /// when no call of that pack holds or waits for it.
    fn share(&self, pack: &str) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = shares.get(pack).and_then(Weak::upgrade) {
            return existing;
        }
        shares.retain(|_, weak| weak.strong_count() > 0);
        let fresh = Arc::new(Semaphore::new(self.config.per_pack));
        shares.insert(pack.to_owned(), Arc::downgrade(&fresh));
        fresh
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn config(permits: usize, per_pack: usize, wait_ms: u64) -> AdmissionConfig {
        AdmissionConfig::resolve(
            Some(permits),
            Some(per_pack),
            Duration::from_millis(wait_ms),
        )
    }

    /// Starts a call of `pack` that runs until `release` is set; returns once it runs.
    async fn hold(
        admission: &Arc<Admission>,
        pack: &'static str,
    ) -> (
        Arc<AtomicBool>,
        tokio::task::JoinHandle<Result<(), AdmissionError>>,
    ) {
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let a = admission.clone();
        let holder = tokio::spawn(async move {
            a.run(pack, Wait::Bounded, move || {
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .await
        });
        while admission.running() == 0 {
            tokio::task::yield_now().await;
        }
        (release, holder)
    }

    /// Runs a call of `pack` that must be refused as busy on `full`, with a message naming
    /// `setting`; returns the error.
    async fn refused(
        admission: &Admission,
        pack: &str,
        full: BusyLimit,
        setting: &str,
    ) -> AdmissionError {
        let err = admission.run(pack, Wait::Bounded, || ()).await.unwrap_err();
        assert!(
            matches!(err, AdmissionError::Busy { limit, .. } if limit == full),
            "{err:?}"
        );
        assert!(err.to_string().contains(setting), "{err}");
        err
    }

    #[test]
    fn defaults_follow_the_cores_and_the_share_is_half_rounded_up() {
        let c = AdmissionConfig::resolve(Some(5), None, DEFAULT_QUEUE_WAIT);
        assert_eq!((c.permits, c.per_pack), (5, 3));
        let c = AdmissionConfig::resolve(Some(1), None, DEFAULT_QUEUE_WAIT);
        assert_eq!((c.permits, c.per_pack), (1, 1));
        let c = AdmissionConfig::resolve(Some(0), Some(9), DEFAULT_QUEUE_WAIT);
        assert_eq!((c.permits, c.per_pack), (1, 1));
        assert!(AdmissionConfig::default().permits >= 1);
    }

    #[tokio::test]
    async fn a_pack_over_its_share_gets_a_busy_error_naming_the_setting() {
        let admission = Admission::new(config(2, 1, 50)).unwrap();
        let (release, holder) = hold(&admission, "hog.wasm").await;
        refused(
            &admission,
            "hog.wasm",
            BusyLimit::PackShare,
            "COMFYUI_MCP_PACK_SHARE",
        )
        .await;
        // Another pack still gets the second permit.
        admission
            .run("good.wasm", Wait::Bounded, || ())
            .await
            .unwrap();
        release.store(true, Ordering::SeqCst);
        holder.await.unwrap().unwrap();
        assert_eq!(admission.peak_running(), 2);
    }

    #[tokio::test]
    async fn a_full_server_gets_a_busy_error_naming_the_concurrency_setting() {
        let admission = Admission::new(config(1, 1, 50)).unwrap();
        let (release, holder) = hold(&admission, "a.wasm").await;
        let err = refused(
            &admission,
            "b.wasm",
            BusyLimit::Server,
            "COMFYUI_MCP_PACK_CONCURRENCY",
        )
        .await;
        assert!(matches!(err, AdmissionError::Busy { permits: 1, .. }));
        release.store(true, Ordering::SeqCst);
        holder.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_job_frees_its_permit_and_its_thread() {
        let admission = Admission::new(config(1, 1, 1000)).unwrap();
        let err = admission
            .run("p.wasm", Wait::Bounded, || panic!("boom"))
            .await
            .unwrap_err();
        assert!(matches!(err, AdmissionError::Panicked(ref m) if m == "boom"));
        assert_eq!(
            admission.run("p.wasm", Wait::Bounded, || 7).await.unwrap(),
            7
        );
    }

    #[tokio::test]
    async fn jobs_run_on_threads_with_the_large_stack() {
        let admission = Admission::new(config(1, 1, 1000)).unwrap();
        // 1000 frames of at least 3 KiB: more than the 2 MiB a default thread
        // has, under 8 MiB.
        fn deep(n: usize) -> usize {
            let buf = std::hint::black_box([0u8; 3072]);
            if n == 0 {
                buf[0] as usize
            } else {
                deep(n - 1) + std::hint::black_box(buf[1]) as usize
            }
        }
        let got = admission
            .run("deep.wasm", Wait::Bounded, || deep(1000))
            .await
            .unwrap();
        assert_eq!(got, 0);
    }
}
