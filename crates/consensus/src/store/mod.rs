//! Durable storage: the Raft log and vote in redb, the state machine and its snapshot file.

// openraft's storage traits return its `StorageError` (224 bytes) by value; the helpers here
// return the same type rather than box it only to unbox it at the trait boundary.
#![allow(clippy::result_large_err)]

mod codec;
mod log;
mod snapshot;
mod state;

pub(crate) use log::LogStore;
pub(crate) use state::StateStore;

use std::path::PathBuf;

/// The data directory could not be opened, or what it holds is damaged. Nothing was started and
/// nothing on disk was changed by the attempt (redb may repair an unfinished commit of its own).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory or a file in it could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// redb refused to open the log database (a truncated or damaged file, or one in use).
    #[error("{path}: cannot open the Raft log database: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// The log database opened, but an entry or a saved value is damaged or out of order:
    /// refused rather than risk losing acknowledged writes. Restore the directory from a backup,
    /// or wipe it and let the server rejoin (it then gets a snapshot from the leader).
    #[error("{path}: the Raft log is damaged: {what}")]
    Corrupt {
        /// The database or snapshot file.
        path: PathBuf,
        /// What is wrong, naming the entry or key.
        what: String,
    },
    /// The snapshot on disk could not be restored into the state machine.
    #[error("{path}: the state machine refused the snapshot: {reason}")]
    Restore {
        /// The snapshot file.
        path: PathBuf,
        /// The state machine's error.
        reason: String,
    },
}
