//! Errors of the replication layer.

use std::path::PathBuf;

/// What can go wrong replicating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of a group could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file of a group holds bytes that are not what was written (not a torn tail).
    #[error("{} is damaged at byte {at}: {why}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        at: u64,
        /// What is wrong.
        why: String,
    },
    /// A peer sent something that is not a valid message.
    #[error("peer protocol error: {0}")]
    Protocol(String),
    /// A peer could not be reached: the request was not sent.
    #[error("node {node} is unreachable: {why}")]
    Unreachable {
        /// The peer.
        node: u64,
        /// Why.
        why: String,
    },
    /// A request was sent to a peer, which did not answer: it may have acted on it.
    #[error("node {node} did not answer: {why}")]
    NoReply {
        /// The peer.
        node: u64,
        /// Why.
        why: String,
    },
    /// No leader answered a write within the time allowed: the group has no majority, or is
    /// electing. The write was not applied, or its outcome is unknown when `unknown` is set.
    #[error("{}", unavailable_message(*.group, .why, *.unknown))]
    Unavailable {
        /// The group.
        group: u64,
        /// What was last seen.
        why: String,
        /// Whether the write may have been committed after all (sent, never answered).
        unknown: bool,
    },
    /// A statement over several partitions was aborted, not committed: one of its shares
    /// was given up (found undecided too long by a sweep) before its commit record was in the
    /// commit log. Nothing of it is readable; it may be retried.
    #[error("the statement was aborted: {0}")]
    Aborted(String),
    /// The partition's log failed (its kind kept: a corrupt frame, a full disk, a closed
    /// log), while opening it or before a write was proposed.
    #[error(transparent)]
    Storage(#[from] eddy_storage::Error),
    /// openraft refused or failed (a fatal error of the group, a storage error inside it).
    #[error("raft group {group}: {why}")]
    Raft {
        /// The group.
        group: u64,
        /// openraft's error.
        why: String,
    },
}

fn unavailable_message(group: u64, why: &str, unknown: bool) -> String {
    if unknown {
        format!("raft group {group}: the write's outcome is unknown ({why})")
    } else {
        format!("raft group {group} has no leader that accepts writes ({why})")
    }
}

impl Error {
    /// The group the error is about, where it names one.
    pub fn group(&self) -> Option<u64> {
        match self {
            Error::Unavailable { group, .. } | Error::Raft { group, .. } => Some(*group),
            _ => None,
        }
    }

    /// The same error again, for each of several callers one failure answers (an I/O error's
    /// source is kept by kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Damaged { path, at, why } => Error::Damaged {
                path: path.clone(),
                at: *at,
                why: why.clone(),
            },
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Aborted(m) => Error::Aborted(m.clone()),
            Error::Unreachable { node, why } => Error::Unreachable {
                node: *node,
                why: why.clone(),
            },
            Error::NoReply { node, why } => Error::NoReply {
                node: *node,
                why: why.clone(),
            },
            Error::Unavailable {
                group,
                why,
                unknown,
            } => Error::Unavailable {
                group: *group,
                why: why.clone(),
                unknown: *unknown,
            },
            Error::Raft { group, why } => Error::Raft {
                group: *group,
                why: why.clone(),
            },
            Error::Storage(e) => Error::Storage(e.duplicate()),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] naming `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
