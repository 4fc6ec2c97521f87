//! The SQLite job store of comfyui-mcp: every job (origin, parameters with the concrete seed,
//! metadata, state and its transitions, progress, timings, error, ComfyUI's prompt id and
//! backend, images and their local files) in one WAL-mode SQLite file shared by every server
//! process pointed at it. It implements [`comfyui::store::JobStore`]; the backend calls it off
//! the async runtime.
//!
//! Module map: `schema` (DDL and migrations), `rows` (row ⇄ job), `owner` (process identity,
//! leases), `error` (typed errors), `group` (group commit of the writes), `sqlite` (the store itself).
//!
//! Lifecycle: [`SqliteJobStore::open`] creates or migrates the file, checks it
//! (`PRAGMA quick_check`), and registers this process as an owner — every failure there
//! (corrupt file, lock held beyond the busy timeout, newer schema) is an error naming the file
//! and the cause, and the server does not start. Afterwards the backend's heartbeat renews the
//! lease, adopts the open jobs of owners that are gone, ends jobs open for longer than
//! [`StoreOptions::max_open`], and prunes ended jobs beyond the retention age and count.

mod error;
mod group;
mod owner;
mod rows;
pub mod schema;
mod sqlite;

pub use error::StoreError;
pub use owner::{Me, OwnerRow};
pub use sqlite::{PRUNE_BATCH, SqliteJobStore, StoreOptions};
