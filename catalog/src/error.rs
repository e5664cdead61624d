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
