//! # eddy-raft
//!
//! Replication for Eddy with openraft. Today this crate holds the type configuration that the
//! metadata group (the catalog's commands) and the per-partition groups will share; the node
//! transport and the log-storage adapters over `eddy-storage` come with replication.
//!
//! This crate must never depend on the SQL layer.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A replicated entry: an opaque, already-encoded command (a catalog command, or a framed
/// partition batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry(pub Vec<u8>);

/// The response to an applied entry: the log index it was applied at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub u64);

openraft::declare_raft_types!(
    /// openraft types for Eddy's groups.
    pub TypeConfig:
        D = Entry,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
