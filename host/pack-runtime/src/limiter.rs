//! One memory budget per call: a `wasmtime::ResourceLimiter` that sums every
//! linear memory and every table of the store against
//! [`Limits::memory_bytes`](crate::Limits::memory_bytes).
//!
//! Lifecycle: one [`CallLimiter`] per `Store`, so per call; it sees every
//! creation (initial sizes, in start functions too) and every growth of a
//! memory or table in that store, and wasmtime enforces its instance,
//! memory and table counts. Invariants:
//! * `used` is the sum of the current sizes of all memories plus all tables
//!   (elements x [`TABLE_ELEMENT_BYTES`]) the store holds, and never exceeds
//!   the budget;
//! * a refused growth traps the call (rather than returning -1 to the pack)
//!   and records a [`Refusal`]: the call's error is classified from that
//!   record, never from wasmtime's message text.

use crate::limits::{Limits, TABLE_ELEMENT_BYTES};

/// What the limiter refused, kept in the store state for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Bytes in use when the growth was refused.
    pub used: usize,
    /// Bytes the refused growth asked for on top of that.
    pub requested: usize,
}

/// The error a refused growth traps with; its text is for the debug log only.
#[derive(Debug, thiserror::Error)]
#[error("growth of {requested} bytes refused: {used} of {budget} bytes already in use")]
struct Refused {
    used: usize,
    requested: usize,
    budget: usize,
}

/// The per-store limiter. See the module docs.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    budget: usize,
    used: usize,
    /// The last growth granted, given back if wasmtime then fails to perform it.
    granted: usize,
    instances: usize,
    memories: usize,
    tables: usize,
    refusal: Option<Refusal>,
}

impl CallLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            budget: limits.memory_bytes,
            used: 0,
            granted: 0,
            instances: limits.max_instances,
            memories: limits.max_memories,
            tables: limits.max_tables,
            refusal: None,
        }
    }

    /// The refusal that stopped the call, if the limiter refused anything.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Bytes held by the store's memories and tables. Memories and tables
    /// never shrink and a failed growth is given back at once, so this is
    /// also the call's peak.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, delta_bytes: usize) -> wasmtime::Result<bool> {
        match self.used.checked_add(delta_bytes) {
            Some(total) if total <= self.budget => {
                self.used = total;
                self.granted = delta_bytes;
                Ok(true)
            }
            _ => {
                let refusal = Refusal {
                    used: self.used,
                    requested: delta_bytes,
                };
                // Keep the first refusal: it is the cause.
                self.refusal.get_or_insert(refusal);
                Err(Refused {
                    used: self.used,
                    requested: delta_bytes,
                    budget: self.budget,
                }
                .into())
            }
        }
    }

    /// Growth of a memory or table from `current` to `desired` units of
    /// `unit_bytes` each. Over its own declared `maximum` it is an ordinary
    /// failed grow (-1 for `memory.grow`, as the spec says): nothing is
    /// charged; unless `desired` alone is over the whole budget, which is
    /// refused whatever the maximum. That order keeps pooled and on-demand
    /// calls alike: a pooled table reports its slot's capacity
    /// (`memory_bytes / TABLE_ELEMENT_BYTES`, `compiler.rs`) as its maximum,
    /// and only a growth over the budget on its own can pass that capacity.
    fn grow_to(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
        unit_bytes: usize,
    ) -> wasmtime::Result<bool> {
        let alone_over_budget = desired.saturating_mul(unit_bytes) > self.budget;
        if !alone_over_budget && maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow(desired.saturating_sub(current).saturating_mul(unit_bytes))
    }

    fn give_back(&mut self) {
        self.used -= self.granted;
        self.granted = 0;
    }
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow_to(current, desired, maximum, 1)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow_to(current, desired, maximum, TABLE_ELEMENT_BYTES)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back();
        Ok(())
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    fn limiter(budget: usize) -> CallLimiter {
        CallLimiter::new(&Limits {
            memory_bytes: budget,
            ..Limits::default()
        })
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut l = limiter(1000);
        assert!(l.memory_growing(0, 600, None).unwrap());
        assert!(l.table_growing(0, 50, None).unwrap()); // 400 bytes on 64-bit
        assert_eq!(l.used(), 600 + 50 * TABLE_ELEMENT_BYTES);
        assert!(l.refusal().is_none());
        let left = 1000 - l.used();
        assert!(
            l.memory_growing(600, 600 + left, None).unwrap(),
            "exactly at the cap"
        );
        assert!(l.memory_growing(0, 1, None).is_err(), "one byte over");
        assert_eq!(
            l.refusal(),
            Some(Refusal {
                used: 1000,
                requested: 1
            })
        );
    }

    #[test]
    fn a_failed_growth_is_given_back_and_declared_maximums_are_not_refusals() {
        let mut l = limiter(1000);
        assert!(l.memory_growing(0, 800, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("mmap failed"))
            .unwrap();
        assert_eq!(l.used(), 0);
        assert!(!l.memory_growing(0, 800, Some(700)).unwrap());
        assert!(l.refusal().is_none());
    }

    #[test]
    fn a_growth_over_the_whole_budget_is_refused_whatever_the_maximum() {
        let mut l = limiter(1000);
        // A pooled table reports its slot's capacity (budget / 8) as maximum.
        let capacity = 1000 / TABLE_ELEMENT_BYTES;
        assert!(l.table_growing(0, capacity + 1, Some(capacity)).is_err());
        assert_eq!(
            l.refusal(),
            Some(Refusal {
                used: 0,
                requested: (capacity + 1) * TABLE_ELEMENT_BYTES
            })
        );
    }
}
