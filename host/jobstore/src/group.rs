//! Group commit: writes that queue for the writer connection while another one runs share
//! its transaction, so a burst of writes (500 jobs submitted at once) costs a few commits
//! instead of one each.
//!
//! Invariants:
//! * every write runs in a `SAVEPOINT` of the open transaction: a write that fails (or
//!   panics) is rolled back alone; the other writes of its batch keep their changes;
//! * a write's result reaches its caller only once the transaction that holds it has
//!   committed; a failed `COMMIT` fails every write of its batch, with that error;
//! * the transaction is committed by the last write of its batch: the first one that finds
//!   no other write of this process waiting for the connection, or the `max_batch`-th. A
//!   transaction is therefore open only while this process's writers are already queued,
//!   for at most `max_batch` writes, and an idle store holds none (other processes wait on
//!   SQLite's lock no longer than before: the length of one queue, capped);
//! * alone, a write costs what it did before (`BEGIN IMMEDIATE`, its statements,
//!   `COMMIT`) plus one `SAVEPOINT`/`RELEASE` pair.
//!
//! Lifecycle: one per store, owning the writer connection.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::{Connection, ffi};

/// The writer connection and the batch open on it.
struct Writer {
    conn: Connection,
    /// The transaction open now: its batch number and the writes it holds so far.
    open: Option<(u64, usize)>,
    next_batch: u64,
}

/// How each committed batch ended, kept until every write of it has read it.
type Outcomes = HashMap<u64, (Result<(), rusqlite::Error>, usize)>;

/// The writer connection, shared by group commit. See the module docs.
pub(crate) struct GroupWriter {
    writer: Mutex<Writer>,
    /// Writes waiting for `writer` right now.
    waiting: AtomicUsize,
    outcomes: Mutex<Outcomes>,
    committed: Condvar,
    max_batch: usize,
    commits: AtomicU64,
}

impl GroupWriter {
    /// Shares `conn` among writes, at most `max_batch` (at least 1) to a transaction.
    pub(crate) fn new(conn: Connection, max_batch: usize) -> Self {
        Self {
            writer: Mutex::new(Writer {
                conn,
                open: None,
                next_batch: 0,
            }),
            waiting: AtomicUsize::new(0),
            outcomes: Mutex::new(HashMap::new()),
            committed: Condvar::new(),
            max_batch: max_batch.max(1),
            commits: AtomicU64::new(0),
        }
    }

    /// Transactions committed so far (for tests and diagnostics).
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Runs `f` in the shared transaction and returns its result once that has committed.
    /// A SQLite error of the transaction itself (begin, savepoint, commit) comes back
    /// through `err`; `f`'s own error comes back as it is, its changes rolled back.
    pub(crate) fn write<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
        err: impl Fn(rusqlite::Error) -> E,
    ) -> Result<T, E> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut writer = lock(&self.writer);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let batch = match writer.begin() {
            Ok(batch) => batch,
            Err(e) => return Err(err(e)),
        };
        let ran = match writer.conn.execute_batch("SAVEPOINT write") {
            Ok(()) => {
                let ran = catch_unwind(AssertUnwindSafe(|| f(&writer.conn)));
                let kept = matches!(ran, Ok(Ok(_)));
                writer.end_savepoint(kept).map(|()| ran)
            }
            Err(e) => Err(e),
        };
        let (ran, broken) = match ran {
            Ok(ran) => (Some(ran), None),
            // The transaction is in an unknown state: it is rolled back, with every write of it.
            Err(e) => (None, Some(e)),
        };
        let outcome = self.finish(writer, batch, broken);
        match ran {
            None => Err(err(outcome.expect_err("a broken batch never commits"))),
            Some(Err(panic)) => resume_unwind(panic),
            Some(Ok(Err(e))) => Err(e),
            Some(Ok(Ok(value))) => outcome.map(|()| value).map_err(err),
        }
    }

    /// Counts the write in, then commits when it is the batch's last (or rolls back when
    /// `broken`), else waits for the write that does. Returns how the batch ended.
    fn finish(
        &self,
        mut writer: MutexGuard<'_, Writer>,
        batch: u64,
        broken: Option<rusqlite::Error>,
    ) -> Result<(), rusqlite::Error> {
        let members = {
            let open = writer.open.as_mut().expect("a write runs in an open batch");
            open.1 += 1;
            open.1
        };
        let last = broken.is_some()
            || members >= self.max_batch
            || self.waiting.load(Ordering::SeqCst) == 0;
        if !last {
            drop(writer);
            return self.await_outcome(batch);
        }
        let outcome = match broken {
            Some(e) => Err(e),
            None => writer.conn.execute_batch("COMMIT"),
        };
        if outcome.is_err() {
            // A failed COMMIT may leave the transaction open: end it so the next write
            // starts a fresh one (the error, if any, is the COMMIT's, already kept).
            let _ = writer.conn.execute_batch("ROLLBACK");
        } else {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        writer.open = None;
        drop(writer);
        if members > 1 {
            lock(&self.outcomes).insert(
                batch,
                (outcome.as_ref().map_err(copy).copied(), members - 1),
            );
            self.committed.notify_all();
        }
        outcome
    }

    /// How batch `batch` ended, once its last write has committed it.
    fn await_outcome(&self, batch: u64) -> Result<(), rusqlite::Error> {
        let mut outcomes = lock(&self.outcomes);
        loop {
            if let Some((outcome, readers)) = outcomes.get_mut(&batch) {
                let mine = outcome.as_ref().map_err(copy).copied();
                *readers -= 1;
                if *readers == 0 {
                    outcomes.remove(&batch);
                }
                return mine;
            }
            outcomes = self
                .committed
                .wait(outcomes)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Writer {
    /// The batch a write joins: the open one, or a new transaction.
    fn begin(&mut self) -> Result<u64, rusqlite::Error> {
        if let Some((batch, _)) = self.open {
            return Ok(batch);
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let batch = self.next_batch;
        self.next_batch += 1;
        self.open = Some((batch, 0));
        Ok(batch)
    }

    /// Ends a write's savepoint, keeping its changes or rolling them back.
    fn end_savepoint(&self, keep: bool) -> Result<(), rusqlite::Error> {
        if keep {
            self.conn.execute_batch("RELEASE write")
        } else {
            self.conn.execute_batch("ROLLBACK TO write; RELEASE write")
        }
    }
}

/// A copy of a SQLite error for each write of a batch (the result code and message kept,
/// so the typed classification of `StoreError` sees the same error).
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn writer(max_batch: usize) -> (tempfile::TempDir, Arc<GroupWriter>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER UNIQUE)")
            .unwrap();
        (dir, Arc::new(GroupWriter::new(conn, max_batch)))
    }

    fn insert(conn: &Connection, v: i64) -> rusqlite::Result<()> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).map(drop)
    }

    fn values(w: &GroupWriter) -> Vec<i64> {
        let writer = lock(&w.writer);
        let mut stmt = writer.conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A first write that holds the connection until `queued` more writes wait for it,
    /// then those writes (`ops[i]` inserts `10 + i`, failing when it is `Err`, panicking
    /// when it is `Ok(false)`); returns each write's result (`Err` text, or "panic").
    fn batch(w: &Arc<GroupWriter>, ops: Vec<Result<bool, ()>>) -> Vec<Result<(), String>> {
        let queued = ops.len();
        let first = {
            let w = w.clone();
            std::thread::spawn(move || {
                let held = w.clone();
                w.write(
                    |c| {
                        insert(c, 1)?;
                        wait_for(|| held.waiting.load(Ordering::SeqCst) == queued);
                        Ok::<_, rusqlite::Error>(())
                    },
                    |e| e,
                )
                .map_err(|e| e.to_string())
            })
        };
        wait_for(|| lock(&w.outcomes).is_empty() && w.writer.try_lock().is_err());
        let others: Vec<_> = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let mine = w.clone();
                let handle = std::thread::spawn(move || {
                    mine.write(
                        |c| {
                            insert(c, 10 + i as i64)?;
                            match op {
                                Ok(true) => Ok(()),
                                Ok(false) => panic!("write {i} panics"),
                                Err(()) => Err(rusqlite::Error::InvalidQuery),
                            }
                        },
                        |e| e,
                    )
                    .map_err(|e| e.to_string())
                });
                // One at a time, so every write is queued before the first one ends
                // (which it does as soon as the last one queues).
                if i + 1 < queued {
                    wait_for(|| w.waiting.load(Ordering::SeqCst) == i + 1);
                }
                handle
            })
            .collect();
        std::iter::once(first)
            .chain(others)
            .map(|h| h.join().unwrap_or_else(|_| Err("panic".to_owned())))
            .collect()
    }

    /// Four writes queued behind one another with a cap of `max_batch`: how many commits.
    fn commits_of_four(max_batch: usize) -> (Arc<GroupWriter>, tempfile::TempDir, u64) {
        let (dir, w) = writer(max_batch);
        let results = batch(&w, vec![Ok(true); 3]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(values(&w), [1, 10, 11, 12]);
        let commits = w.commits();
        (w, dir, commits)
    }

    #[test]
    fn writes_queued_behind_one_share_its_commit() {
        let (w, _dir, commits) = commits_of_four(64);
        assert_eq!(commits, 1, "four writes, one transaction");
        // Alone, a write commits at once.
        w.write(|c| insert(c, 2), |e| e).unwrap();
        assert_eq!(w.commits(), 2);
        assert!(
            lock(&w.writer).open.is_none(),
            "an idle store holds no transaction"
        );
    }

    #[test]
    fn a_batch_is_committed_at_its_cap() {
        assert_eq!(
            commits_of_four(2).2,
            2,
            "four writes, at most two a transaction"
        );
        assert_eq!(commits_of_four(1).2, 4, "a cap of one: a commit per write");
    }

    #[test]
    fn a_failing_or_panicking_write_is_rolled_back_alone() {
        let (_dir, w) = writer(64);
        let results = batch(&w, vec![Ok(true), Err(()), Ok(false), Ok(true)]);
        assert!(results[0].is_ok() && results[1].is_ok() && results[4].is_ok());
        assert!(
            results[2].as_ref().is_err_and(|e| e.contains("Query")),
            "{results:?}"
        );
        assert_eq!(results[3], Err("panic".to_owned()));
        assert_eq!(
            values(&w),
            [1, 10, 13],
            "only the failed writes' rows are gone"
        );
        assert_eq!(w.commits(), 1);
    }

    #[test]
    fn a_failed_commit_fails_every_write_of_its_batch() {
        let (_dir, w) = writer(64);
        // A deferred foreign key violation makes COMMIT itself fail.
        {
            let writer = lock(&w.writer);
            writer
                .conn
                .execute_batch(
                    "PRAGMA foreign_keys = ON;
                     CREATE TABLE p (id INTEGER PRIMARY KEY);
                     CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)",
                )
                .unwrap();
        }
        let orphan = w.write(
            |c| c.execute("INSERT INTO c (p) VALUES (7)", []).map(drop),
            |e| e,
        );
        let e = orphan.expect_err("the commit fails");
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert_eq!(w.commits(), 0);
        assert!(
            lock(&w.writer).open.is_none(),
            "rolled back, no transaction left open"
        );
        w.write(|c| insert(c, 3), |e| e).unwrap();
        assert_eq!(values(&w), [3]);
    }
}
