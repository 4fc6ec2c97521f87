//! Typed errors of the job store. Classification is by SQLite's result code, never by the
//! message text.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::ErrorCode;

use crate::schema::MigrateError;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a SQLite database or is damaged. Nothing was written to it.
    #[error(
        "job store {} is corrupt or not a SQLite database ({source}); move it aside to start with an empty store, or set COMFYUI_MCP_DB to another file (or `off`)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite's integrity check found damage. Nothing was written to it.
    #[error(
        "job store {} is damaged (PRAGMA quick_check: {report}); move it aside to start with an empty store, or set COMFYUI_MCP_DB to another file (or `off`)",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The first problem SQLite reported.
        report: String,
    },
    /// Another connection held the write lock for longer than the busy timeout.
    #[error(
        "job store {} is locked: another process held its write lock for more than {waited:?} (COMFYUI_MCP_DB_BUSY_TIMEOUT_MS)",
        path.display()
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// The busy timeout.
        waited: Duration,
    },
    /// The file has a schema this build does not know.
    #[error("job store {}: {source}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: MigrateError,
    },
    /// The file's folder could not be created.
    #[error("cannot create the folder of job store {}: {source}", path.display())]
    Folder {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be read back.
    #[error("job store {}: job {prompt_id} has an unreadable `{column}`: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The job.
        prompt_id: String,
        /// The column.
        column: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Any other SQLite failure.
    #[error("job store {}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Classifies a SQLite error of an operation on `path`.
    pub fn sqlite(path: &std::path::Path, busy: Duration, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, source }
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, waited: busy }
            }
            _ => StoreError::Sqlite { path, source },
        }
    }

    /// Classifies a migration failure on `path`.
    pub fn migrate(path: &std::path::Path, busy: Duration, source: MigrateError) -> Self {
        match source {
            MigrateError::Sqlite(e) => Self::sqlite(path, busy, e),
            newer @ MigrateError::Newer { .. } => StoreError::Schema {
                path: path.to_path_buf(),
                source: newer,
            },
        }
    }
}

impl From<StoreError> for comfyui::store::StoreError {
    fn from(e: StoreError) -> Self {
        comfyui::store::StoreError(Box::new(e))
    }
}
