//! The store's schema and its migrations, as code: one function per version step, applied in
//! order inside one `BEGIN IMMEDIATE` transaction, the version kept in `PRAGMA user_version`.
//!
//! Invariants: a file's `user_version` is the number of steps applied to it; a step is never
//! changed once released (a change is a new step); a file of a newer version than
//! [`CURRENT_VERSION`] is refused, never downgraded; a failed step rolls back the whole
//! migration, leaving the file as it was.
//!
//! Versions:
//! 1. `jobs`: one row per job (origin, parameters, state and its rank, progress, timings,
//!    error, images, files).
//! 2. Several processes and backends: `jobs.backend`, `jobs.owner`, `jobs.cancel_requested`,
//!    the `owners` table (process id, host, lease), the `transitions` table (each state a job
//!    reached, with its time; existing jobs get their current state back-filled).
//! 3. Post-processing: `jobs.postprocess_ms` (the stage's time) and `jobs.postprocessing`
//!    (JSON `{done, total}`, NULL for a job without post-processing). Existing jobs get NULL
//!    in both: they had none.

use rusqlite::{Connection, Transaction};

/// The version this build writes.
pub const CURRENT_VERSION: i64 = 3;

/// The steps, in order: `STEPS[i]` migrates version `i` to `i + 1`.
const STEPS: [fn(&Transaction<'_>) -> rusqlite::Result<()>; CURRENT_VERSION as usize] =
    [to_v1_jobs, to_v2_owners_transitions, to_v3_postprocess];

/// The file's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the steps from the file's version up to `target` (at most [`CURRENT_VERSION`]) in
/// one transaction. Returns the version found before.
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<i64, MigrateError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > CURRENT_VERSION {
        return Err(MigrateError::Newer { found });
    }
    for step in found..target.min(CURRENT_VERSION) {
        STEPS[step as usize](&tx)?;
        tx.pragma_update(None, "user_version", step + 1)?;
        tracing::info!(from = step, to = step + 1, "job store migrated");
    }
    tx.commit()?;
    Ok(found)
}

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer build.
    #[error(
        "its schema version {found} is newer than this build's {CURRENT_VERSION}; use a newer comfyui-mcp or another COMFYUI_MCP_DB file"
    )]
    Newer {
        /// The file's version.
        found: i64,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

fn to_v1_jobs(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE jobs (
            prompt_id      TEXT PRIMARY KEY NOT NULL,
            origin         TEXT NOT NULL,
            template_id    TEXT,
            parameters     TEXT NOT NULL,
            metadata       TEXT NOT NULL,
            graph_sha256   TEXT NOT NULL,
            graph_nodes    TEXT NOT NULL,
            state          TEXT NOT NULL,
            rank           INTEGER NOT NULL CHECK (rank BETWEEN 0 AND 2),
            progress       REAL NOT NULL,
            queue_position INTEGER,
            submitted_at   REAL NOT NULL,
            started_at     REAL,
            finished_at    REAL,
            execution_time REAL,
            error          TEXT,
            node_errors    TEXT NOT NULL,
            warnings       TEXT NOT NULL,
            images         TEXT NOT NULL,
            files          TEXT NOT NULL,
            updated_at     REAL NOT NULL
        );
        CREATE INDEX jobs_by_time ON jobs (submitted_at DESC, prompt_id DESC);
        CREATE INDEX jobs_by_template ON jobs (template_id, submitted_at DESC);
        CREATE INDEX jobs_ended ON jobs (rank, finished_at);",
    )
}

fn to_v3_postprocess(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE jobs ADD COLUMN postprocess_ms REAL;
        ALTER TABLE jobs ADD COLUMN postprocessing TEXT;",
    )
}

fn to_v2_owners_transitions(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE jobs ADD COLUMN backend TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN owner TEXT;
        ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX jobs_open_by_owner ON jobs (owner) WHERE rank < 2;
        CREATE TABLE owners (
            owner_id     TEXT PRIMARY KEY NOT NULL,
            pid          INTEGER NOT NULL,
            host         TEXT NOT NULL,
            started_at   REAL NOT NULL,
            heartbeat_at REAL NOT NULL
        );
        CREATE TABLE transitions (
            prompt_id TEXT NOT NULL REFERENCES jobs (prompt_id) ON DELETE CASCADE,
            state     TEXT NOT NULL,
            at        REAL NOT NULL,
            owner     TEXT
        );
        CREATE INDEX transitions_by_job ON transitions (prompt_id, at);
        INSERT INTO transitions (prompt_id, state, at)
            SELECT prompt_id, 'queued', submitted_at FROM jobs;
        INSERT INTO transitions (prompt_id, state, at)
            SELECT prompt_id, state, COALESCE(finished_at, started_at, submitted_at)
            FROM jobs WHERE state <> 'queued';",
    )
}
