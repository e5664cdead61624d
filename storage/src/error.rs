//! The crate's one error type. Variants are categories a caller can act on (retry, reset the
//! offset, report corruption); the underlying cause is kept as `source`.

use std::path::PathBuf;

use arrow::error::ArrowError;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the partition log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed; `context` says what the log was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not form a valid frame (bad magic, CRC mismatch, offsets out of order)
    /// somewhere other than a torn tail that recovery may truncate.
    #[error("corrupt segment {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A frame passed its CRC but its Arrow IPC body could not be decoded.
    #[error("cannot decode batch in {} at byte {position}: {source}", path.display())]
    Decode {
        path: PathBuf,
        position: u64,
        #[source]
        source: ArrowError,
    },
    /// A batch could not be encoded as Arrow IPC.
    #[error("cannot encode batch: {source}")]
    Encode {
        #[source]
        source: ArrowError,
    },
    /// The requested offset is past the high watermark.
    #[error("offset {requested} is out of range: the log holds [{log_start}, {high_watermark})")]
    OutOfRange {
        requested: u64,
        log_start: u64,
        high_watermark: u64,
    },
    /// The caller passed something the log cannot store (an empty batch, min > max timestamp).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another `PartitionLog` (in this or another process) has the directory open.
    #[error("partition directory {} is locked by another open log", path.display())]
    Locked { path: PathBuf },
    /// Another process holds the data directory's lock.
    #[error(
        "data directory {} is in use by another eddy server ({owner}); stop it first",
        path.display()
    )]
    DirInUse { path: PathBuf, owner: String },
    /// The log was closed, or stopped accepting writes after a failed write or fsync.
    #[error("partition log is closed")]
    Closed,
    /// A cold object is not in the store (retention deleted it while it was being read).
    #[error("cold object {key} is gone (deleted by retention)")]
    ColdObjectGone { key: String },
    /// The cold tier's object store failed or could not be reached; `context` says what the
    /// tier was doing. Retryable: local data is untouched.
    #[error("cold tier: {context}: {source}")]
    Cold {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn cold(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Cold {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The same failure for another request of one round (errors are not `Clone`: I/O
    /// errors keep their kind and message, corruption its place).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::io(
                context.clone(),
                std::io::Error::new(source.kind(), source.to_string()),
            ),
            Error::Closed => Error::Closed,
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Corrupt {
                path,
                position,
                reason,
            } => Error::Corrupt {
                path: path.clone(),
                position: *position,
                reason: reason.clone(),
            },
            other => Error::io(
                "committing a round of appends",
                std::io::Error::other(other.to_string()),
            ),
        }
    }
}
