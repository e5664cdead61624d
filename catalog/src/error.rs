//! The catalog's error type.

use std::path::PathBuf;

/// Errors raised by catalog commands and persistence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream (or topic) with this name already exists.
    #[error("stream \"{0}\" already exists")]
    AlreadyExists(String),
    /// No stream with this name exists.
    #[error("stream \"{0}\" does not exist")]
    NotFound(String),
    /// No persistent query with this id exists.
    #[error("query \"{0}\" does not exist")]
    QueryNotFound(String),
    /// The object is used by a persistent query.
    #[error("{0}")]
    InUse(String),
    /// The definition is inconsistent (duplicate column, bad option, ...).
    #[error("{0}")]
    Invalid(String),
    /// A name is empty or contains a character no identifier may hold (42602).
    #[error("{0}")]
    InvalidName(String),
    /// A name is longer than PostgreSQL's 63 bytes (42622).
    #[error("identifier \"{name}...\" is {bytes} bytes long; at most 63 bytes are allowed")]
    NameTooLong {
        /// The name's first characters.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// Another process has the catalog open.
    #[error("catalog {path} is locked by another process")]
    Locked {
        /// The catalog directory.
        path: PathBuf,
    },
    /// A catalog file fails its checksum or does not decode, somewhere other than a torn
    /// last record (XX001). Nothing is repaired or removed: the operator decides.
    #[error("catalog file {} is damaged at byte {position}: {reason}", path.display())]
    Damaged {
        /// The file involved.
        path: PathBuf,
        /// Where the damage starts.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A write or fsync of the command log failed earlier; the catalog takes no more commands
    /// until the server restarts (the log's state on disk is unknown after a failed fsync).
    #[error("the catalog refuses changes after a failed write of its log: {0}; restart the server")]
    ReadOnly(String),
    /// The metadata group could not take the command (no leader within the write timeout, or
    /// its core failed); the message says which.
    #[error("the catalog could not commit the change: {0}")]
    Replication(#[source] eddy_raft::Error),
    /// The metadata group is not ready (it did not apply its log in time at start).
    #[error("the catalog is not ready: {0}")]
    NotReady(String),
    /// Reading or writing the catalog files failed.
    #[error("catalog I/O on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A catalog file could not be decoded.
    #[error("catalog file {path} is corrupt: {source}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for the catalog.
pub type Result<T, E = Error> = std::result::Result<T, E>;
