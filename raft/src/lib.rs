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
mod transport;
pub mod wire;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use atomic::{Coordinator, Share};
pub use error::{Error, Result};
pub use group::{Group, Timing};
pub use log_store::FileLog;
pub use machine::{Applied, Machine, StateMachine};
pub use partition::{KEEP_FREE_BYTES, MAX_ENTRY_BYTES, PartitionMachine, PartitionStore};
pub use transport::{Handler, Transport};

/// A replicated command: opaque bytes (a catalog command, a framed partition batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(#[serde(with = "serde_bytes")] pub Vec<u8>);

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
