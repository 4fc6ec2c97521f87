//! The threads pack calls run on, kept for reuse.
//!
//! Every call runs on a thread with [`Limits::native_stack_bytes`] of native
//! stack (`pack.rs`). Spawning one costs a stack `mmap`, a guard page and a
//! `clone`, about as much as the rest of a small pack's call, so finished
//! call threads wait for the next call instead of exiting.
//!
//! Invariants:
//! * a call runs on a thread of this runtime with the configured stack, one
//!   call per thread at a time; the caller blocks until it has finished;
//! * at most `max_idle` threads are kept waiting (the runtime's
//!   [`Limits::pool_slots`]; 0 spawns a thread per call as before); a thread
//!   past that exits when its call ends. An idle thread keeps the stack pages
//!   its deepest call touched, so idle threads hold at most `max_idle` x the
//!   native stack;
//! * a panic in a call is caught on its thread and resumed on the caller's,
//!   so a thread never dies with a call half done and is reused after;
//! * dropping the runtime and its packs ends the idle threads;
//! * a thread that declared its stack ([`declare_call_thread`]) at least as
//!   large as the configured one runs its calls itself, without a hop: a
//!   caller that already keeps call threads (the server's admission pool)
//!   pays no second thread switch per call.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};

use crate::limits::Limits;

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// Native stack the current thread declared, in bytes (0: none).
    static DECLARED_STACK: Cell<usize> = const { Cell::new(0) };
}

/// Declares that the current thread was spawned with `stack_bytes` of
/// native stack, so pack calls made on it run on it directly when that is
/// at least [`Limits::native_stack_bytes`] (instead of on a call thread of
/// the runtime). Call it first thing on a thread you spawned with
/// `std::thread::Builder::stack_size(stack_bytes)`; declaring more than the
/// thread has lets a deeply recursing pack overflow the native stack, which
/// aborts the process.
pub fn declare_call_thread(stack_bytes: usize) {
    DECLARED_STACK.with(|declared| declared.set(stack_bytes));
}

/// Idle call threads of one runtime. See the module docs.
pub(crate) struct CallThreads {
    stack_bytes: usize,
    max_idle: usize,
    idle: Mutex<Vec<Sender<Job>>>,
}

impl CallThreads {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            stack_bytes: limits.native_stack_bytes(),
            max_idle: limits.pool_slots,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a call thread and returns what it returned; `Err` when
    /// no thread could be started. A panic in `f` is resumed here.
    pub(crate) fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, String> {
        if DECLARED_STACK.with(Cell::get) >= self.stack_bytes {
            return Ok(f());
        }
        let (done, result) = sync_channel(1);
        let job = move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
        };
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
        // SAFETY: only the lifetime is changed. The job borrows from this
        // frame, and this function does not return before the job is gone:
        // `result.recv()` below returns once the job has sent its result
        // (after which it only drops its own channel end) or once the job
        // was dropped unrun (its sender dropped with it). The thread never
        // keeps a job past running it.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let worker = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let worker = match worker {
            Some(worker) => match worker.send(job) {
                Ok(()) => worker,
                // The thread is gone (it cannot be while idle, but be sure).
                Err(returned) => self.spawn(returned.0)?,
            },
            None => self.spawn(job)?,
        };
        let outcome = result.recv();
        if outcome.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.max_idle {
                idle.push(worker);
            }
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err("the call thread ended before the call ran".to_owned()),
        }
    }

    /// A new call thread running `first`, then whatever it is sent.
    fn spawn(&self, first: Job) -> Result<Sender<Job>, String> {
        let (jobs, inbox): (Sender<Job>, Receiver<Job>) = channel();
        jobs.send(first).map_err(|_| "channel closed".to_owned())?;
        std::thread::Builder::new()
            .name("pack-call".into())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                while let Ok(job) = inbox.recv() {
                    job();
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(jobs)
    }
}
