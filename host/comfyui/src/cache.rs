//! `SharedCache`: a single-flight, per-connection cache of one value fetched from ComfyUI
//! (node catalog, model lists, system stats, the queue).
//!
//! Invariants and lifecycle:
//! - At most one fetch runs per cache and connection generation. Concurrent callers all await
//!   the *same* fetch (a shared future) and all get its result **and its error**: with ComfyUI
//!   unreachable, N concurrent callers wait one timeout, not N.
//! - No lock is held across I/O: the slot is a `std::sync::Mutex` taken only to look at or
//!   replace the slot. The fetch runs in its own task, so a caller that gives up (or is
//!   cancelled) does not abort it for the others.
//! - A value is served while the generation it was fetched under is current; the backend bumps
//!   the generation on every websocket connect and disconnect, so nothing fetched before a
//!   reconnect is served after it (a fetch still running for an old generation is left to
//!   its waiters and a new one starts).
//! - A failure that is costly to find out again (ComfyUI unreachable, a timeout, an answer
//!   over the size cap) is served to new callers only for [`SharedCache::negative_ttl`] (never
//!   for a whole connection), then the next caller fetches again. Any other failure (ComfyUI
//!   answered with an HTTP error or a malformed body) is shared with the callers that waited
//!   for that request only: the next caller asks again at once. An optional positive TTL bounds
//!   how long a success is reused within one generation (`None`: the whole generation).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::error::ClientError;

/// Default time a failed fetch is handed to new callers before the next attempt.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(2);

type Flight<T> = Shared<BoxFuture<'static, Result<T, ClientError>>>;

enum Slot<T> {
    Empty,
    Running {
        generation: u64,
        flight: Flight<T>,
    },
    Done {
        generation: u64,
        at: Instant,
        result: Result<T, ClientError>,
    },
}

/// One cached value with single-flight refresh. `T` is cheap to clone (an `Arc` in practice).
pub struct SharedCache<T: Clone + Send + Sync + 'static> {
    name: &'static str,
    slot: Mutex<Slot<T>>,
    negative_ttl: Duration,
    positive_ttl: Option<Duration>,
}

impl<T: Clone + Send + Sync + 'static> std::fmt::Debug for SharedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("name", &self.name)
            .field("negative_ttl", &self.negative_ttl)
            .field("positive_ttl", &self.positive_ttl)
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> SharedCache<T> {
    /// An empty cache. `name` is used in logs; failures are reused for `negative_ttl`;
    /// successes for `positive_ttl` (or the whole generation when `None`).
    pub fn new(name: &'static str, negative_ttl: Duration, positive_ttl: Option<Duration>) -> Self {
        Self {
            name,
            slot: Mutex::new(Slot::Empty),
            negative_ttl,
            positive_ttl,
        }
    }

    /// How long a failure is served before the next fetch.
    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }

    /// The value for `generation`: the cached one when still valid, else the result of the
    /// running fetch, else of a new fetch made by `fetch` (called at most once per flight).
    pub async fn get<F, Fut>(&self, generation: u64, fetch: F) -> Result<T, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let flight = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Slot::Done {
                    generation: g,
                    at,
                    result,
                } if *g == generation && self.fresh(result, *at) => return result.clone(),
                Slot::Running {
                    generation: g,
                    flight,
                } if *g == generation => flight.clone(),
                _ => {
                    let name = self.name;
                    let task = tokio::spawn(fetch());
                    let flight: Flight<T> = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(ClientError::Setup {
                                url: String::new(),
                                reason: format!("the {name} fetch task did not finish: {e}"),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    *slot = Slot::Running {
                        generation,
                        flight: flight.clone(),
                    };
                    flight
                }
            }
        };
        let result = flight.clone().await;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        // Store the outcome once, only if the slot still holds this very flight.
        if let Slot::Running {
            generation: g,
            flight: current,
        } = &*slot
            && current.ptr_eq(&flight)
        {
            if let Err(e) = &result {
                tracing::debug!(cache = self.name, error = %e, ttl = ?self.negative_ttl, "fetch failed; the failure is shared until the TTL runs out");
            }
            *slot = Slot::Done {
                generation: *g,
                at: Instant::now(),
                result: result.clone(),
            };
        }
        result
    }

    /// Forgets the cached value (the next `get` fetches).
    pub fn invalidate(&self) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Empty;
    }

    fn fresh(&self, result: &Result<T, ClientError>, at: Instant) -> bool {
        let ttl = match result {
            Ok(_) => self.positive_ttl,
            Err(e) if reuse_failure(e) => Some(self.negative_ttl),
            Err(_) => return false,
        };
        ttl.is_none_or(|ttl| at.elapsed() < ttl)
    }
}

/// Failures worth handing to new callers for the negative TTL: each would cost a caller up
/// to a whole timeout (or a capped download) to find out again.
fn reuse_failure(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::TooLarge { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn unreachable() -> ClientError {
        ClientError::Unreachable {
            url: "http://h/".into(),
            request: "GET /x".into(),
            source: "refused".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_its_error() {
        let cache: Arc<SharedCache<u32>> =
            Arc::new(SharedCache::new("t", Duration::from_secs(60), None));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut waiters = Vec::new();
        for _ in 0..20 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            waiters.push(tokio::spawn(async move {
                cache
                    .get(1, move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Err::<u32, _>(unreachable())
                    })
                    .await
            }));
        }
        // Let every waiter join the flight, then let the fetch finish.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for w in waiters {
            let err = w.await.unwrap().unwrap_err();
            assert!(err.is_unreachable(), "{err}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for all callers");
        // Within the negative TTL the failure is served without a fetch.
        let again = cache.get(1, || async { Ok::<u32, ClientError>(7) }).await;
        assert!(again.is_err());
    }

    #[tokio::test]
    async fn failures_expire_after_the_negative_ttl_and_generations_refresh() {
        let cache: SharedCache<u32> = SharedCache::new("t", Duration::ZERO, None);
        assert!(cache.get(1, || async { Err(unreachable()) }).await.is_err());
        // TTL zero: the next caller fetches again.
        assert_eq!(cache.get(1, || async { Ok(5) }).await.unwrap(), 5);
        // A success is kept for the whole generation.
        assert_eq!(cache.get(1, || async { Ok(6) }).await.unwrap(), 5);
        // A new generation (websocket reconnect) fetches again.
        assert_eq!(cache.get(2, || async { Ok(6) }).await.unwrap(), 6);
        cache.invalidate();
        assert_eq!(cache.get(2, || async { Ok(8) }).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn an_http_error_answer_is_not_reused_for_new_callers() {
        let cache: SharedCache<u32> = SharedCache::new("t", Duration::from_secs(60), None);
        let http = || ClientError::Http {
            url: "http://h/".into(),
            request: "GET /x".into(),
            status: 500,
            body: "boom".into(),
        };
        assert!(cache.get(1, || async move { Err(http()) }).await.is_err());
        assert_eq!(cache.get(1, || async { Ok(4) }).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_cancelled_caller_does_not_abort_the_fetch_for_others() {
        let cache: Arc<SharedCache<u32>> =
            Arc::new(SharedCache::new("t", Duration::from_secs(60), None));
        let gate = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicUsize::new(0));
        let (g, st) = (gate.clone(), started.clone());
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get(1, move || async move {
                        st.fetch_add(1, Ordering::SeqCst);
                        g.notified().await;
                        Ok(3)
                    })
                    .await
            })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        let second = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(1, || async { Ok(99) }).await })
        };
        tokio::task::yield_now().await;
        gate.notify_one();
        assert_eq!(second.await.unwrap().unwrap(), 3);
    }
}
