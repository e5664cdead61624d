//! The one place where errors become PostgreSQL SQLSTATE codes.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use eddy_sql::Error;
use pgwire::error::{ErrorInfo, PgWireError};

use super::framing::Violation;

/// SQLSTATE for an error of the SQL layer.
pub fn sqlstate(e: &Error) -> &'static str {
    match e {
        Error::Syntax(_) => "42601",
        Error::UnknownStream(_) => "42P01",
        Error::UnknownColumn(_) => "42703",
        Error::AlreadyExists(_) => "42P07",
        Error::InvalidValue(_) => "22P02",
        Error::ValueTooLong(_) => "22001",
        Error::InRow { source, .. } => sqlstate(source),
        Error::BadCopyFormat(_) => "22P04",
        Error::InvalidBinary(_) => "22P03",
        Error::Invalid(_) => "22023",
        Error::UndefinedObject(_) | Error::UnknownQuery(_) => "42704",
        Error::Dependents(_) => "2BP01",
        Error::InUse(_) => "55006",
        Error::Unsupported(_) => "0A000",
        Error::DataFusion(df) => datafusion_sqlstate(df),
        Error::Storage(e) => storage_sqlstate(e),
        Error::Catalog(eddy_catalog::Error::Damaged { .. }) => "XX001",
        Error::Catalog(eddy_catalog::Error::Io { source, .. }) => io_sqlstate(source),
        Error::Catalog(eddy_catalog::Error::Replication(e)) => replication_sqlstate(e),
        Error::Catalog(_) => "58030",
        Error::Replication(e) | Error::InPartition { source: e, .. } => replication_sqlstate(e),
        Error::StreamOffline { corrupt: true, .. } => "XX001",
        Error::StreamOffline { .. } => "58030",
        Error::InvalidName(_) => "42602",
        Error::NameTooLong(_) => "42622",
        Error::TooDeep(_) => "54001",
        // Cancelled by another session's DROP: like a cancel, the session goes on (57P01
        // would tell clients and pools that the connection is being terminated).
        Error::Cancelled | Error::StreamDropped(_) | Error::StatementTimeout => "57014",
        Error::ServerStopping => "57P01",
        Error::Damaged(_) => "XX001",
        Error::TransactionAborted => "25P02",
        Error::TransactionState { in_block: true, .. } => "25001",
        Error::TransactionState {
            in_block: false, ..
        } => "25P01",
        Error::UnknownSavepoint(_) => "3B001",
        Error::ReadOnlyTransaction(_) => "25006",
        Error::TransactionTooLarge(_) => "54000",
        Error::SerializationFailure(_) => "40001",
        Error::Checkpoint { source, .. } => sqlstate(source),
        Error::Internal(_) => "XX000",
    }
}

/// Corruption is `data_corrupted`; a full disk `disk_full`; other I/O `io_error`.
fn storage_sqlstate(e: &eddy_storage::Error) -> &'static str {
    use eddy_storage::Error as S;
    match e {
        S::Corrupt { .. } | S::Decode { .. } => "XX001",
        S::Io { source, .. } => io_sqlstate(source),
        _ => "58030",
    }
}

/// A statement aborted by its commit log is a serialization failure (retry it); a write whose
/// outcome a leader change left unknown is `statement_completion_unknown`; a partition with
/// no leader to take it is `cannot_connect_now`, as PostgreSQL answers while it cannot serve.
fn replication_sqlstate(e: &eddy_raft::Error) -> &'static str {
    use eddy_raft::Error as R;
    match e {
        R::Aborted(_) => "40001",
        R::Unavailable { unknown: true, .. } | R::NoReply { .. } => "40003",
        R::Unavailable { .. } | R::Unreachable { .. } => "57P03",
        R::Storage(e) => storage_sqlstate(e),
        R::Io { source, .. } => io_sqlstate(source),
        R::Damaged { .. } => "XX001",
        _ => "58030",
    }
}

fn io_sqlstate(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => "53100",
        _ => "58030",
    }
}

/// A DataFusion error's SQLSTATE: by its variant, and for some by words of its message (the
/// only way DataFusion tells a GROUP BY mistake from a type mismatch). Every arm that reads
/// a message has a row in `tests/slt/errors.slt` with a statement that produces it, so a
/// DataFusion upgrade that rewords one fails that file instead of changing a code silently.
fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            // A value that does not fit its target type: PostgreSQL's "out of range".
            ArrowError::CastError(m)
                if m.contains("Can't cast value") || m.contains("Overflow") =>
            {
                "22003"
            }
            ArrowError::InvalidArgumentError(m) if m.contains("too large to store") => "22003",
            ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::InvalidArgumentError(_) => "22P02",
            ArrowError::DivideByZero => "22012",
            ArrowError::ArithmeticOverflow(_) => "22003",
            ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
                "22003"
            }
            _ => "XX000",
        },
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => sqlstate(ours),
            // The regex crate's error, from regexp_* functions.
            None if inner.to_string().starts_with("regex parse error") => "2201B",
            None => "XX000",
        },
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(s, _)
            if matches!(s.as_ref(), SchemaError::AmbiguousReference { .. }) =>
        {
            "42702"
        }
        DataFusionError::SchemaError(s, _)
            if matches!(s.as_ref(), SchemaError::DuplicateQualifiedField { .. }) =>
        {
            "42712"
        }
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m)
            if m.contains("No function matches") || m.starts_with("Invalid function") =>
        {
            "42883"
        }
        DataFusionError::Plan(m) if m.contains("must appear in the GROUP BY clause") => "42803",
        DataFusionError::Plan(m)
            if m.starts_with("Cannot find column with position")
                || m.starts_with("Order by column out of bounds") =>
        {
            "42P10"
        }
        DataFusionError::Plan(m)
            if m.contains("Cannot") || m.contains("coerce") || m.contains("type") =>
        {
            "42804"
        }
        DataFusionError::Plan(_) => "42000",
        DataFusionError::ResourcesExhausted(_) => "53000",
        DataFusionError::Execution(m) if m.contains("Cast error") || m.contains("parse") => "22P02",
        DataFusionError::Execution(m) if m.starts_with("Error parsing timestamp") => "22007",
        DataFusionError::Execution(m) if m.starts_with("Placeholder") => "42P02",
        // A function refusing its arguments at run time (a zero step, a negative count, an
        // unknown unit): the statement's fault, not the server's.
        DataFusionError::Execution(_) => "22023",
        _ => "XX000",
    }
}

/// The message a client sees: our own text, or DataFusion's root cause without its prefixes.
fn message(e: &Error) -> String {
    match e {
        Error::DataFusion(df) => match df.find_root() {
            DataFusionError::External(inner) => inner.to_string(),
            DataFusionError::ArrowError(a, _) => a.to_string(),
            DataFusionError::Plan(m)
            | DataFusionError::Execution(m)
            | DataFusionError::NotImplemented(m) => m.clone(),
            root => root.to_string(),
        },
        other => other.to_string(),
    }
}

/// An error as the client receives it.
pub fn error_info(e: &Error) -> ErrorInfo {
    let state = sqlstate(e);
    if matches!(state, "XX000" | "XX001" | "58030" | "53100") {
        tracing::warn!(error = ?e, "statement failed");
    }
    ErrorInfo::new("ERROR".to_string(), state.to_string(), message(e))
}

/// An error as a pgwire error.
pub fn to_pgwire(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// A frontend byte stream that breaks the protocol's framing: FATAL, the connection closes.
/// A message over `--max-message-bytes` is `54000` (program_limit_exceeded), anything else
/// `08P01` (protocol_violation).
pub fn protocol_violation(v: &Violation) -> ErrorInfo {
    let state = match v {
        Violation::TooLarge { .. } => "54000",
        _ => "08P01",
    };
    ErrorInfo::new("FATAL".to_string(), state.to_string(), v.to_string())
}

/// A message pgwire could not decode although its framing was checked: FATAL `08P01`.
pub fn undecodable(e: &PgWireError) -> ErrorInfo {
    ErrorInfo::new(
        "FATAL".to_string(),
        "08P01".to_string(),
        format!("invalid frontend message: {e}"),
    )
}

/// A string in a message that is not UTF-8: `22021` (character_not_in_repertoire), in
/// PostgreSQL's words; the session goes on.
pub fn invalid_utf8(bytes: &[u8]) -> ErrorInfo {
    let hex: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
    ErrorInfo::new(
        "ERROR".to_string(),
        "22021".to_string(),
        format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            hex.join(" ")
        ),
    )
}

/// CopyData or CopyDone with no COPY FROM STDIN in progress: `08P01` (protocol_violation).
pub fn copy_data_without_copy() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "08P01".to_string(),
        "COPY data without a COPY statement".to_string(),
    )))
}

/// The client ended COPY FROM STDIN with CopyFail: `57014` (query_canceled), as PostgreSQL.
pub fn copy_failed(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(),
        format!("COPY from stdin failed: {message}"),
    )))
}

/// A bound parameter whose bytes are not a value of its type: `22P02`
/// (invalid_text_representation).
pub fn bad_parameter(index: usize, e: impl std::fmt::Display) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "22P02".to_string(),
        format!("invalid value for parameter ${}: {e}", index + 1),
    )))
}

/// The server is stopping: FATAL `57P01` (admin_shutdown), PostgreSQL's words; the
/// connection closes.
pub fn shutting_down() -> ErrorInfo {
    ErrorInfo::new(
        "FATAL".to_string(),
        "57P01".to_string(),
        "terminating connection due to administrator command".to_string(),
    )
}
