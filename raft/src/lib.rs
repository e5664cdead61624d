//! # eddy-raft
//!
//! Replication for Eddy: Raft groups on openraft, the files their logs and state machines
//! keep, and the one connection per pair of nodes that carries every group's messages.
//! docs/design/2026-12-02-replication.md is the plan.
//!
//! ```text
//!   Group<M> ──▶ openraft::Raft ──▶ FileLog (log + vote)      Machine<S> (state + snapshot)
//!      │               ├─────────▶ PartitionStore ─▶ PartitionLog ◀─ PartitionMachine (HW)
//!      │               │
//!      │ write()       └──▶ GroupNetwork ──▶ Transport ──TCP──▶ peer's Transport ──▶ RaftHandler
//!      └── forwarded to the leader (ClientWrite) when this node is not it
//! ```
//!
//! - [`Transport`] (`transport.rs`): the connections, request ids, routing by group id;
//!   [`wire`]: the envelope's bytes.
//! - [`Group`] (`group.rs`): a started group; `write` proposes from any node.
//! - [`FileLog`] (`log_store.rs`): openraft's log storage in a checksummed record file
//!   (`records.rs`), for small logs (the metadata group).
//! - `rejoin.rs`: when a node that lost a group's files may vote in it again.
//! - [`Machine`] (`machine.rs`): openraft's state machine over a deterministic
//!   [`StateMachine`], with its snapshot file.
//! - [`PartitionStore`] and [`PartitionMachine`] (`partition.rs`): a partition group, whose
//!   log is the partition's segments and whose state machine is its high watermark;
//!   [`Group::start_partition`], [`Group::append`]; a statement's share of one partition
//!   ([`Group::append_txn`]) and its outcome ([`Group::decide`]).
//! - [`Coordinator`] (`atomic.rs`): statements over several partitions, all or nothing, with
//!   their commit record in a commit log that is itself a partition group.
//!
//! This crate must never depend on the SQL layer: replication moves bytes and indexes, not
//! statements.

mod atomic;
mod error;
mod group;
mod log_store;
mod machine;
mod network;
mod partition;
mod proposals;
mod records;
mod rejoin;
mod takeover;
mod transport;
pub mod wire;

use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use atomic::{Coordinator, Share};
pub use error::{Error, Result};
pub use group::{Group, GroupStatus, Timing};
pub use log_store::FileLog;
pub use machine::{Applied, Machine, StateMachine};
pub use partition::{
    ENTRY_TARGET_BYTES, KEEP_FREE_BYTES, MAX_ENTRY_BYTES, PartitionMachine, PartitionStore,
};
pub use transport::{Handler, Transport};

/// A replicated command: opaque bytes (a catalog command, a framed partition batch). Cloned
/// by reference count: openraft's retries and a forward to the leader copy no bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    bytes: Bytes,
    /// The round of merged writes this node's proposer put in it (`proposals.rs`), so that
    /// the partition's log store and state machine know whom to answer. Neither sent nor
    /// stored: a request read back or received from a peer has none.
    round: Option<u64>,
}

impl Request {
    /// A command of `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Request {
        Request {
            bytes: bytes.into(),
            round: None,
        }
    }

    /// A round of merged partition writes (`proposals.rs`).
    pub(crate) fn of_round(bytes: Bytes, round: u64) -> Request {
        Request {
            bytes,
            round: Some(round),
        }
    }

    /// The command's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The proposer's round, on the node that proposed it (see the field).
    pub(crate) fn proposed_round(&self) -> Option<u64> {
        self.round
    }
}

/// A request's encoding: a newtype of bytes named `Request`, exactly what the derived
/// encoding of `Request(Vec<u8>)` was, so that the metadata group's log files and the peers'
/// messages read the same before and after the round was added.
#[derive(Serialize)]
#[serde(rename = "Request")]
struct RequestOut<'a>(#[serde(with = "serde_bytes")] &'a [u8]);

#[derive(Deserialize)]
#[serde(rename = "Request")]
struct RequestIn(#[serde(with = "serde_bytes")] Vec<u8>);

impl Serialize for Request {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RequestOut(&self.bytes).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Request, D::Error> {
        RequestIn::deserialize(deserializer).map(|RequestIn(bytes)| Request::new(bytes))
    }
}

/// What applying a command answered: opaque bytes the state machine chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(#[serde(with = "serde_bytes")] pub Vec<u8>);

openraft::declare_raft_types!(
    /// openraft types for Eddy's groups.
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// How `Request` was encoded before it carried a round (a derived newtype).
    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Request")]
    struct Before(#[serde(with = "serde_bytes")] Vec<u8>);

    #[test]
    fn a_request_encodes_as_it_did_before_it_had_a_round() {
        let bytes = b"a command".to_vec();
        let before = postcard::to_stdvec(&Before(bytes.clone())).unwrap();
        let now = postcard::to_stdvec(&Request::of_round(Bytes::from(bytes.clone()), 7)).unwrap();
        assert_eq!(now, before);
        let back: Request = postcard::from_bytes(&before).unwrap();
        assert_eq!(back, Request::new(bytes));
        assert_eq!(back.proposed_round(), None);
    }
}
