//! The SQL layer's error type: categorical variants the server maps to SQLSTATE codes.

use datafusion::error::DataFusionError;

/// Errors raised while parsing, planning or executing a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement text is not valid SQL (42601).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A stream or table named in the statement does not exist (42P01).
    #[error("stream \"{0}\" does not exist")]
    UnknownStream(String),
    /// A column named in the statement does not exist (42703).
    #[error("{0}")]
    UnknownColumn(String),
    /// An object with this name already exists (42P07).
    #[error("stream \"{0}\" already exists")]
    AlreadyExists(String),
    /// A value could not be read as its column's type (22P02).
    #[error("{0}")]
    InvalidValue(String),
    /// A string longer than its column's `VARCHAR(n)` or `CHAR(n)` (22001).
    #[error("{0}")]
    ValueTooLong(String),
    /// A value of row `row` (0-based, in its batch) of column `column` failed `source`; the
    /// message and SQLSTATE are the source's (COPY names the input line from `row`).
    #[error("{source}")]
    InRow {
        /// The row in the batch that was being written.
        row: usize,
        /// The column.
        column: String,
        /// What was wrong.
        #[source]
        source: Box<Error>,
    },
    /// Binary COPY data that breaks the format's structure: its signature, header, a tuple's
    /// field count or a field's length (22P04, `bad_copy_file_format`).
    #[error("{0}")]
    BadCopyFormat(String),
    /// A binary field that is not a value of its column's type (22P03,
    /// `invalid_binary_representation`).
    #[error("{0}")]
    InvalidBinary(String),
    /// A statement or option is recognised but its use is invalid (22023 / 42P16).
    #[error("{0}")]
    Invalid(String),
    /// An unknown type, session variable or other named object (42704).
    #[error("{0}")]
    UndefinedObject(String),
    /// A feature Eddy does not support (yet) (0A000).
    #[error("{0}")]
    Unsupported(String),
    /// A planning or execution error from DataFusion; the server inspects it for a SQLSTATE.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// The partition log failed.
    #[error(transparent)]
    Storage(#[from] eddy_storage::Error),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(eddy_catalog::Error),
    /// A partition group refused or lost a write: no leader, an outcome unknown, a statement
    /// aborted (the server maps each to its SQLSTATE).
    #[error(transparent)]
    Replication(eddy_raft::Error),
    /// [`Error::Replication`] of one partition's group, named.
    #[error("stream \"{stream}\" partition {partition}: {source}")]
    InPartition {
        /// The stream.
        stream: String,
        /// The partition.
        partition: u32,
        /// What its group answered.
        #[source]
        source: eddy_raft::Error,
    },
    /// A DROP refused: a persistent query depends on the object (2BP01).
    #[error("{0}")]
    Dependents(String),
    /// The object is written by a persistent query and takes no other writes (55006).
    #[error("{0}")]
    InUse(String),
    /// No persistent query with this id (42704).
    #[error("query \"{0}\" does not exist")]
    UnknownQuery(String),
    /// The stream exists but could not be opened (XX001 when its data is corrupt, else
    /// 58030); the reason names the partition and file where known.
    #[error("stream \"{name}\" is offline: {reason}")]
    StreamOffline {
        /// The stream.
        name: String,
        /// Why it could not be opened.
        reason: String,
        /// Whether stored data failed its checks.
        corrupt: bool,
    },
    /// A name is not a valid identifier (42602).
    #[error("{0}")]
    InvalidName(String),
    /// A name is longer than 63 bytes (42622).
    #[error("{0}")]
    NameTooLong(String),
    /// The statement nests deeper than a limit of [`crate::parser::limits`] (54001).
    #[error("stack depth limit exceeded: {0}")]
    TooDeep(String),
    /// The client cancelled the statement (57014).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// The statement ran longer than the session's `statement_timeout` (57014).
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    /// The server is shutting down and ended the statement (57P01).
    #[error("terminating connection due to administrator command")]
    ServerStopping,
    /// The stream a push query follows was dropped (57014: the statement is cancelled, the
    /// session goes on).
    #[error("canceling statement: stream \"{0}\" was dropped")]
    StreamDropped(String),
    /// A persistent query's checkpoint cannot be replayed: damaged past its checksums, or not
    /// what the query's plan writes. The query is reported failed with this reason (its code
    /// is the cause's); the server and the other queries go on.
    #[error("query {query}: its checkpoint cannot be replayed: {source}")]
    Checkpoint {
        /// The query and task (`<id>/<task>`).
        query: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A statement other than ROLLBACK in a transaction block a failed statement aborted
    /// (25P02).
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,
    /// A statement that cannot run inside a transaction block, or a block statement outside
    /// one (25001 / 25P01).
    #[error("{message}")]
    TransactionState {
        /// What is wrong.
        message: String,
        /// Whether a block is open (25001) or not (25P01).
        in_block: bool,
    },
    /// `ROLLBACK TO` / `RELEASE` of a savepoint the block does not have (3B001).
    #[error("savepoint \"{0}\" does not exist")]
    UnknownSavepoint(String),
    /// A write in a `READ ONLY` transaction (25006).
    #[error("{0}")]
    ReadOnlyTransaction(String),
    /// A transaction block holds more writes than it may keep until COMMIT (54000).
    #[error("{0}")]
    TransactionTooLarge(String),
    /// COMMIT could not keep the block's writes because of a concurrent change (40001).
    #[error("{0}")]
    SerializationFailure(String),
    /// Stored data that passed its checksums is not in the shape its reader expects (XX001).
    #[error("{0}")]
    Damaged(String),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<eddy_raft::Error> for Error {
    /// A storage error keeps its kind (a full disk, corruption); the rest is replication's.
    fn from(e: eddy_raft::Error) -> Self {
        match e {
            eddy_raft::Error::Storage(e) => Error::Storage(e),
            other => Error::Replication(other),
        }
    }
}

impl From<eddy_catalog::Error> for Error {
    fn from(e: eddy_catalog::Error) -> Self {
        match e {
            eddy_catalog::Error::AlreadyExists(n) => Error::AlreadyExists(n),
            eddy_catalog::Error::NotFound(n) => Error::UnknownStream(n),
            eddy_catalog::Error::Invalid(m) => Error::Invalid(m),
            eddy_catalog::Error::InUse(m) => Error::Dependents(m),
            eddy_catalog::Error::QueryNotFound(id) => Error::UnknownQuery(id),
            eddy_catalog::Error::InvalidName(m) => Error::InvalidName(m),
            e @ eddy_catalog::Error::NameTooLong { .. } => Error::NameTooLong(e.to_string()),
            other => Error::Catalog(other),
        }
    }
}

impl Error {
    /// This error of a value on `line` of column `column` of a COPY into `stream`, with the
    /// line and column in its message as the other COPY errors have them (same SQLSTATE).
    pub fn in_copy(self, stream: &str, line: usize, column: &str) -> Error {
        let at = |m: String| format!("COPY {stream}, line {line}, column {column}: {m}");
        match self {
            Error::ValueTooLong(m) => Error::ValueTooLong(at(m)),
            Error::InvalidValue(m) => Error::InvalidValue(at(m)),
            other => other,
        }
    }

    /// A DataFusion error as a categorised [`Error`] (unknown stream, unknown column, syntax,
    /// or one of ours that travelled through DataFusion as `External`); anything else stays
    /// [`Error::DataFusion`] and the server picks its SQLSTATE from the message.
    pub fn from_datafusion(e: DataFusionError) -> Error {
        let root = e.find_root();
        match root {
            DataFusionError::Plan(msg)
                if msg.starts_with("table '") && msg.contains("not found") =>
            {
                let name = msg
                    .trim_start_matches("table '")
                    .split('\'')
                    .next()
                    .unwrap_or_default();
                let name = name.rsplit('.').next().unwrap_or(name);
                Error::UnknownStream(name.to_string())
            }
            DataFusionError::SchemaError(..) if root.to_string().contains("No field named") => {
                Error::UnknownColumn(root.to_string())
            }
            DataFusionError::SQL(p, _) => Error::Syntax(p.to_string()),
            DataFusionError::External(inner) if inner.is::<Error>() => match e {
                DataFusionError::External(inner) => match inner.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => Error::DataFusion(DataFusionError::External(other)),
                },
                other => Error::DataFusion(other),
            },
            _ => Error::DataFusion(e),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// Result alias for the SQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
