//! [`SqliteJobStore`]: the [`JobStore`] on one SQLite file.
//!
//! Invariants:
//! - Two connections per process: writes go through one (in `BEGIN IMMEDIATE`
//!   transactions, so writers of different processes queue on SQLite's lock for at most the
//!   busy timeout; writes queued behind one another share a transaction, at most
//!   [`StoreOptions::max_batch`] of them, each in its own savepoint: `group.rs`), reads
//!   through the other (WAL: readers never wait for writers).
//! - State only moves forward, enforced by the `WHERE` of the `UPDATE` itself
//!   (`rank < new rank`, or equal rank while open), so no interleaving of processes can move
//!   a job back or replace one ending by another; progress only grows (`MAX`).
//! - Every state a job reaches is appended to `transitions` in the same transaction.
//! - A job is adopted only while its owner is gone (lease expired or local process dead), by
//!   an `UPDATE ... WHERE owner IS <old owner>`, so two processes never both adopt it.
//! - One prune pass deletes at most [`PRUNE_BATCH`] jobs (one transaction); the caller
//!   repeats while a pass was full.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use comfyui::snapshot::now_unix;
use comfyui::store::{
    Heartbeat, JobPage, JobQuery, JobStore, StoreError as TraitError, StoredJob, Update,
};
use comfyui::{JobFailure, JobSnapshot, JobState};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::StoreError;
use crate::group::GroupWriter;
use crate::owner::{Me, OwnerRow};
use crate::rows::{self, COLUMNS, json, rank};
use crate::schema;

/// Most jobs one prune pass deletes.
pub const PRUNE_BATCH: usize = 5_000;

/// The store's budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// How long a write waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// How long an owner's heartbeat stays valid.
    pub lease: Duration,
    /// Longest a job stays open; older open jobs are failed (`JobExpired`).
    pub max_open: Duration,
    /// Ended jobs older than this are pruned.
    pub retention_age: Duration,
    /// At most this many ended jobs are kept (the oldest pruned first).
    pub retention_count: usize,
    /// Most writes committed in one transaction when they queue behind one another
    /// (`group.rs`); bounds how long a burst of this process's writes holds SQLite's lock.
    pub max_batch: usize,
}

impl StoreOptions {
    /// Default busy timeout.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default lease.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
    /// Default open-job bound: one day.
    pub const DEFAULT_MAX_OPEN: Duration = Duration::from_secs(24 * 3600);
    /// Default retention age: 30 days.
    pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Default retention count.
    pub const DEFAULT_RETENTION_COUNT: usize = 100_000;
    /// Default most writes to a transaction.
    pub const DEFAULT_MAX_BATCH: usize = 64;
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            lease: Self::DEFAULT_LEASE,
            max_open: Self::DEFAULT_MAX_OPEN,
            retention_age: Self::DEFAULT_RETENTION_AGE,
            retention_count: Self::DEFAULT_RETENTION_COUNT,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }
}

/// The job store on one SQLite file.
pub struct SqliteJobStore {
    path: PathBuf,
    options: StoreOptions,
    me: Me,
    writer: GroupWriter,
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJobStore")
            .field("path", &self.path)
            .field("owner", &self.me.id)
            .finish()
    }
}

/// What a forward-only write changes besides the snapshot.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    Progress,
    Cancel,
}

impl SqliteJobStore {
    /// Opens (creating, migrating and checking) the store at `path` and registers this
    /// process as an owner.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let busy = options.busy_timeout;
        let mut writer = connect(path, busy)?;
        schema::migrate_to(&mut writer, schema::CURRENT_VERSION)
            .map_err(|e| StoreError::migrate(path, busy, e))?;
        let reader = connect(path, busy)?;
        let store = Self {
            path: path.to_path_buf(),
            writer: GroupWriter::new(writer, options.max_batch),
            options,
            me: Me::new(),
            reader: Mutex::new(reader),
        };
        store.write(|tx, me, _| renew_lease(tx, me, now_unix()).map_err(|e| store.err(e)))?;
        tracing::info!(path = %path.display(), owner = %store.me.id, "job store opened");
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This process's owner id.
    pub fn owner_id(&self) -> &str {
        &self.me.id
    }

    /// The options in use.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The open jobs and the owner of each (for tests and diagnostics).
    pub fn owners_of_open(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT prompt_id, owner FROM jobs WHERE rank < 2 ORDER BY 1")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The states a job went through, oldest first, with their times.
    pub fn transitions(&self, prompt_id: &str) -> Result<Vec<(JobState, f64)>, StoreError> {
        let names: Vec<(String, f64)> = self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT state, at FROM transitions WHERE prompt_id = ?1 ORDER BY at, rowid",
            )?;
            let rows = stmt.query_map([prompt_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(names
            .into_iter()
            .filter_map(|(s, at)| rows::parse_state(&s).map(|s| (s, at)))
            .collect())
    }

    /// Number of jobs stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0)))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, self.options.busy_timeout, e)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = lock(&self.reader);
        f(&conn).map_err(|e| self.err(e))
    }

    /// Transactions the writer connection has committed (for tests and benchmarks).
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction of the writer connection, shared with
    /// the writes queued behind it (`group.rs`); returns once that transaction committed.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection, &Me, &StoreOptions) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.writer
            .write(|tx| f(tx, &self.me, &self.options), |e| self.err(e))
    }

    fn load(&self, conn: &Connection, prompt_id: &str) -> Result<Option<StoredJob>, StoreError> {
        let raw = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE prompt_id = ?1"))
            .and_then(|mut stmt| stmt.query_row([prompt_id], rows::read_raw))
            .optional()
            .map_err(|e| self.err(e))?;
        raw.map(|r| r.decode(&self.path)).transpose()
    }

    fn forward(&self, snap: &JobSnapshot, kind: Write) -> Result<Update, StoreError> {
        self.write(|tx, me, _| {
            let now = now_unix();
            let current: Option<String> = tx
                .prepare_cached("SELECT state FROM jobs WHERE prompt_id = ?1")
                .and_then(|mut stmt| stmt.query_row([&snap.prompt_id], |r| r.get(0)))
                .optional()
                .map_err(|e| self.err(e))?;
            let Some(current) = current else {
                return Ok(Update::Missing);
            };
            let changed = tx
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, rank = ?3, progress = MAX(progress, ?4),
                        queue_position = ?5, started_at = COALESCE(started_at, ?6),
                        finished_at = ?7, execution_time = ?8, error = ?9, node_errors = ?10,
                        warnings = ?11, images = ?12, files = ?13, updated_at = ?14,
                        cancel_requested = MAX(cancel_requested, ?15),
                        postprocess_ms = ?16, postprocessing = ?17
                     WHERE prompt_id = ?1 AND (rank < ?3 OR (rank = ?3 AND rank < 2))",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        snap.prompt_id,
                        snap.state.as_str(),
                        rank(snap.state),
                        snap.progress,
                        snap.queue_position,
                        snap.started_at,
                        snap.finished_at,
                        snap.execution_time,
                        snap.error.as_ref().map(json),
                        json(&snap.node_errors),
                        json(&snap.warnings),
                        json(&snap.images),
                        json(&snap.files),
                        now,
                        kind == Write::Cancel,
                        snap.postprocess_ms,
                        snap.postprocessing.as_ref().map(json),
                    ])
                })
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                let stored = self
                    .load(tx, &snap.prompt_id)?
                    .map(|j| Update::Stale(Box::new(j.snapshot)));
                return Ok(stored.unwrap_or(Update::Missing));
            }
            if current != snap.state.as_str() {
                add_transition(tx, &snap.prompt_id, snap.state, now, &me.id)
                    .map_err(|e| self.err(e))?;
            }
            Ok(Update::Applied)
        })
    }

    fn insert_job(&self, job: &StoredJob) -> Result<(), StoreError> {
        let s = &job.snapshot;
        self.write(|tx, me, _| {
            tx.prepare_cached(
                "INSERT INTO jobs (prompt_id, origin, template_id, parameters, metadata,
                    graph_sha256, graph_nodes, state, rank, progress, queue_position,
                    submitted_at, started_at, finished_at, execution_time, error, node_errors,
                    warnings, images, files, updated_at, backend, owner, cancel_requested,
                    postprocess_ms, postprocessing)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                    ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
                 ON CONFLICT (prompt_id) DO UPDATE SET
                    state = excluded.state, rank = excluded.rank, progress = excluded.progress,
                    queue_position = excluded.queue_position, warnings = excluded.warnings,
                    graph_sha256 = excluded.graph_sha256, graph_nodes = excluded.graph_nodes,
                    updated_at = excluded.updated_at, backend = excluded.backend,
                    owner = excluded.owner
                 WHERE jobs.rank < 2",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    s.prompt_id,
                    json(&s.origin),
                    s.origin.template_id(),
                    json(&s.parameters),
                    json(&s.metadata),
                    job.graph_sha256,
                    json(&job.graph_nodes),
                    s.state.as_str(),
                    rank(s.state),
                    s.progress,
                    s.queue_position,
                    s.submitted_at,
                    s.started_at,
                    s.finished_at,
                    s.execution_time,
                    s.error.as_ref().map(json),
                    json(&s.node_errors),
                    json(&s.warnings),
                    json(&s.images),
                    json(&s.files),
                    now_unix(),
                    job.backend,
                    me.id,
                    job.cancel_requested,
                    s.postprocess_ms,
                    s.postprocessing.as_ref().map(json),
                ])
            })
            .map_err(|e| self.err(e))?;
            add_transition(tx, &s.prompt_id, JobState::Queued, s.submitted_at, &me.id)
                .map_err(|e| self.err(e))?;
            if s.state != JobState::Queued {
                add_transition(tx, &s.prompt_id, s.state, now_unix(), &me.id)
                    .map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(state) = query.state {
            args.push(SqlValue::Text(state.as_str().to_owned()));
            sql.push_str(&format!(" AND state = ?{}", args.len()));
        }
        if let Some(template) = &query.template {
            args.push(SqlValue::Text(template.clone()));
            sql.push_str(&format!(" AND template_id = ?{}", args.len()));
        }
        if let Some(since) = query.since {
            args.push(SqlValue::Real(since));
            sql.push_str(&format!(" AND submitted_at >= ?{}", args.len()));
        }
        if let Some(c) = &query.cursor {
            args.push(SqlValue::Real(c.submitted_at));
            args.push(SqlValue::Text(c.prompt_id.clone()));
            let (t, id) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " AND (submitted_at < ?{t} OR (submitted_at = ?{t} AND prompt_id < ?{id}))"
            ));
        }
        let limit = query.limit.clamp(1, comfyui::store::MAX_PAGE);
        sql.push_str(&format!(
            " ORDER BY submitted_at DESC, prompt_id DESC LIMIT {}",
            limit + 1
        ));
        let raws = self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), rows::read_raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let jobs = raws
            .into_iter()
            .map(|r| r.decode(&self.path).map(|j| j.snapshot))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JobPage::from_ordered(jobs, limit))
    }

    fn beat(
        &self,
        open: &[String],
        adopt_limit: usize,
        backend: &str,
    ) -> Result<Heartbeat, StoreError> {
        let claimed = self.write(|tx, me, options| {
            let now = now_unix();
            renew_lease(tx, me, now).map_err(|e| self.err(e))?;
            expire_open(tx, me, now, options.max_open).map_err(|e| self.err(e))?;
            let gone = gone_owners(tx, me, now, options.lease).map_err(|e| self.err(e))?;
            let claimed = claim(tx, me, &gone, adopt_limit, backend).map_err(|e| self.err(e))?;
            forget_owners(tx, &gone).map_err(|e| self.err(e))?;
            Ok(claimed)
        })?;
        let conn = lock(&self.reader);
        let mut beat = Heartbeat::default();
        for id in &claimed {
            if let Some(job) = self.load(&conn, id)? {
                tracing::info!(prompt_id = %id, state = %job.snapshot.state, "adopted an open job whose server is gone");
                beat.adopted.push(job);
            }
        }
        for id in open {
            if let Some(job) = self.load(&conn, id)?
                && job.snapshot.state.is_terminal()
            {
                beat.ended.push(job.snapshot);
            }
        }
        Ok(beat)
    }

    fn prune_pass(&self) -> Result<Vec<String>, StoreError> {
        self.write(|tx, _, options| {
            let cut = now_unix() - options.retention_age.as_secs_f64();
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT prompt_id FROM jobs WHERE rank = 2 AND finished_at < ?1
                         UNION
                         SELECT prompt_id FROM (SELECT prompt_id FROM jobs WHERE rank = 2
                             ORDER BY finished_at DESC, prompt_id DESC LIMIT -1 OFFSET ?2)
                         LIMIT ?3",
                    )
                    .map_err(|e| self.err(e))?;
                let rows = stmt
                    .query_map(
                        params![cut, options.retention_count as i64, PRUNE_BATCH as i64],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.err(e))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(|e| self.err(e))?
            };
            let mut delete = tx
                .prepare_cached("DELETE FROM jobs WHERE prompt_id = ?1")
                .map_err(|e| self.err(e))?;
            for id in &ids {
                delete.execute([id]).map_err(|e| self.err(e))?;
            }
            Ok(ids)
        })
    }
}

impl JobStore for SqliteJobStore {
    fn insert(&self, job: &StoredJob) -> Result<(), TraitError> {
        Ok(self.insert_job(job)?)
    }

    fn update(&self, snapshot: &JobSnapshot) -> Result<Update, TraitError> {
        Ok(self.forward(snapshot, Write::Progress)?)
    }

    fn get(&self, prompt_id: &str) -> Result<Option<StoredJob>, TraitError> {
        let conn = lock(&self.reader);
        Ok(self.load(&conn, prompt_id)?)
    }

    fn list(&self, query: &JobQuery) -> Result<JobPage, TraitError> {
        Ok(self.list_jobs(query)?)
    }

    fn cancel(&self, snapshot: &JobSnapshot) -> Result<Update, TraitError> {
        Ok(self.forward(snapshot, Write::Cancel)?)
    }

    fn heartbeat(
        &self,
        open: &[String],
        adopt_limit: usize,
        backend: &str,
    ) -> Result<Heartbeat, TraitError> {
        Ok(self.beat(open, adopt_limit, backend)?)
    }

    fn prune(&self) -> Result<Vec<String>, TraitError> {
        Ok(self.prune_pass()?)
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens one connection: busy timeout, WAL, foreign keys, and an integrity check.
fn connect(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let fail = |e| StoreError::sqlite(path, busy, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(busy).map_err(fail)?;
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(fail)?;
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(fail)?;
    if check != "ok" {
        return Err(StoreError::Damaged {
            path: path.to_path_buf(),
            report: check,
        });
    }
    Ok(conn)
}

fn renew_lease(tx: &Connection, me: &Me, now: f64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO owners (owner_id, pid, host, started_at, heartbeat_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (owner_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )?
    .execute(params![me.id, me.pid, me.host, now])?;
    Ok(())
}

fn add_transition(
    tx: &Connection,
    prompt_id: &str,
    state: JobState,
    at: f64,
    owner: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO transitions (prompt_id, state, at, owner) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![prompt_id, state.as_str(), at, owner])?;
    Ok(())
}

/// Fails every job open for longer than `max_open` (any owner).
fn expire_open(tx: &Connection, me: &Me, now: f64, max_open: Duration) -> rusqlite::Result<usize> {
    let cut = now - max_open.as_secs_f64();
    let failure = JobFailure::message(
        "JobExpired",
        format!(
            "the job stayed open for more than {}s (COMFYUI_MCP_JOB_MAX_OPEN_SECS) without ComfyUI reporting its end; ComfyUI was unreachable or lost it",
            max_open.as_secs()
        ),
    );
    tx.execute(
        "INSERT INTO transitions (prompt_id, state, at, owner)
         SELECT prompt_id, 'failed', ?2, ?3 FROM jobs WHERE rank < 2 AND submitted_at < ?1",
        params![cut, now, me.id],
    )?;
    let n = tx.execute(
        "UPDATE jobs SET state = 'failed', rank = 2, error = ?2, finished_at = ?3,
            queue_position = 0, updated_at = ?3
         WHERE rank < 2 AND submitted_at < ?1",
        params![cut, json(&failure), now],
    )?;
    if n > 0 {
        tracing::warn!(
            jobs = n,
            "failed jobs open for longer than the open-job bound"
        );
    }
    Ok(n)
}

/// Owners other than `me` that are gone.
fn gone_owners(
    tx: &Connection,
    me: &Me,
    now: f64,
    lease: Duration,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT owner_id, pid, host, heartbeat_at FROM owners WHERE owner_id <> ?1",
    )?;
    let rows = stmt.query_map([&me.id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            OwnerRow {
                pid: r.get(1)?,
                host: r.get(2)?,
                heartbeat_at: r.get(3)?,
            },
        ))
    })?;
    let mut gone = Vec::new();
    for row in rows {
        let (id, owner) = row?;
        if owner.is_gone(me, now, lease) {
            gone.push(id);
        }
    }
    Ok(gone)
}

/// Takes over up to `limit` open jobs whose owner is gone or unknown.
/// Open jobs of `backend` (any when empty; jobs recorded before backends were named count
/// for every backend) whose owner is gone, up to `limit`, now owned by `me`.
fn claim(
    tx: &Connection,
    me: &Me,
    gone: &[String],
    limit: usize,
    backend: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut candidates: Vec<(String, Option<String>)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT prompt_id, owner FROM jobs
             WHERE rank < 2 AND (owner IS NULL OR owner NOT IN (SELECT owner_id FROM owners))
               AND (?2 = '' OR backend = ?2 OR backend = '')
             LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64, backend], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut stmt = tx.prepare_cached(
        "SELECT prompt_id, owner FROM jobs WHERE rank < 2 AND owner = ?1
           AND (?3 = '' OR backend = ?3 OR backend = '') LIMIT ?2",
    )?;
    for owner in gone {
        let room = limit.saturating_sub(candidates.len());
        if room == 0 {
            break;
        }
        let rows = stmt.query_map(params![owner, room as i64, backend], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        for row in rows {
            candidates.push(row?);
        }
    }
    let mut update = tx.prepare_cached(
        "UPDATE jobs SET owner = ?1 WHERE prompt_id = ?2 AND owner IS ?3 AND rank < 2",
    )?;
    let mut claimed = Vec::new();
    for (id, old) in candidates {
        if update.execute(params![me.id, id, old])? == 1 {
            claimed.push(id);
        }
    }
    Ok(claimed)
}

/// Drops the rows of gone owners that no longer own an open job.
fn forget_owners(tx: &Connection, gone: &[String]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM owners WHERE owner_id = ?1
         AND NOT EXISTS (SELECT 1 FROM jobs WHERE owner = ?1 AND rank < 2)",
    )?;
    for id in gone {
        stmt.execute([id])?;
    }
    Ok(())
}
