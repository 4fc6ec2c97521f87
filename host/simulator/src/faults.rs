//! Injected faults: failing or slow HTTP, dropped or refused websockets, failing nodes,
//! websocket events that never arrive, history entries without their outputs.
//!
//! [`Faults`] is a cheap handle (clone it freely); every setting takes effect for the next
//! request or node. Faults persist until changed or [`Faults::clear`]ed; they survive a
//! simulated restart (they model the environment, not ComfyUI's state).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::Shared;

/// Mutable fault settings, guarded by one mutex.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    /// Remaining requests to fail, and with which status.
    pub fail_http: Option<(usize, u16)>,
    /// Delay before answering every request.
    pub http_delay: Duration,
    /// Refuse websocket upgrades.
    pub refuse_websockets: bool,
    /// Classes that raise an exception when executed, with the message.
    pub failing_classes: HashMap<String, String>,
    /// Websocket event types (`executed`, …) that are never sent.
    pub dropped_events: HashSet<String>,
    /// Remaining `GET /history/{id}` answers whose entries come without `outputs`.
    pub hidden_history_outputs: usize,
}

impl FaultState {
    /// Consumes one failing request, returning its status if one is due.
    pub fn take_http_failure(&mut self) -> Option<u16> {
        let (left, status) = self.fail_http?;
        self.fail_http = (left > 1).then(|| (left - 1, status));
        Some(status)
    }

    /// Consumes one "history without outputs" answer; true if one is due.
    pub fn take_hidden_history(&mut self) -> bool {
        let due = self.hidden_history_outputs > 0;
        self.hidden_history_outputs = self.hidden_history_outputs.saturating_sub(1);
        due
    }
}

/// A handle to inject faults into a running simulator.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut FaultState) -> R) -> R {
        let mut guard = lock(&self.shared.faults);
        f(&mut guard)
    }

    /// The next `n` HTTP requests (websocket upgrades included) answer `status` with a
    /// `text/plain` body, before reaching the simulated ComfyUI.
    pub fn fail_http(&self, n: usize, status: u16) {
        self.with(|f| f.fail_http = (n > 0).then_some((n, status)));
    }

    /// Closes every open websocket now, without a close handshake (like a network drop).
    /// Frames already queued are delivered first.
    pub fn drop_websockets(&self) {
        self.shared.drop_all_sockets();
    }

    /// Delays every HTTP answer by `delay` (`Duration::ZERO` to stop).
    pub fn http_delay(&self, delay: Duration) {
        self.with(|f| f.http_delay = delay);
    }

    /// While on, websocket upgrades are refused with 503.
    pub fn refuse_websockets(&self, on: bool) {
        self.with(|f| f.refuse_websockets = on);
    }

    /// Makes every executed node of `class` raise `Exception(message)`, reported as an
    /// `execution_error` at that node like a real node exception.
    pub fn fail_node_class(&self, class: &str, message: &str) {
        self.with(|f| {
            f.failing_classes
                .insert(class.to_string(), message.to_string())
        });
    }

    /// While on, websocket events of type `kind` (e.g. `executed`) are never sent, like
    /// messages lost while a socket was being replaced.
    pub fn drop_ws_events(&self, kind: &str, on: bool) {
        self.with(|f| {
            if on {
                f.dropped_events.insert(kind.to_string());
            } else {
                f.dropped_events.remove(kind);
            }
        });
    }

    /// The next `n` `GET /history/{id}` answers list their entries with empty `outputs`
    /// (as if the history were written without them, or read too early).
    pub fn hide_history_outputs(&self, n: usize) {
        self.with(|f| f.hidden_history_outputs = n);
    }

    /// Removes every injected fault.
    pub fn clear(&self) {
        self.with(|f| *f = FaultState::default());
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state stays
/// consistent: every critical section leaves it valid before anything can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_failures_count_down() {
        let mut f = FaultState {
            fail_http: Some((2, 503)),
            ..FaultState::default()
        };
        assert_eq!(f.take_http_failure(), Some(503));
        assert_eq!(f.take_http_failure(), Some(503));
        assert_eq!(f.take_http_failure(), None);
    }
}
