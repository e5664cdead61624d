//! # eddy-catalog
//!
//! Owns Eddy's metadata: the streams that exist, their columns and Arrow types, their KEY and
//! timestamp columns, partition counts and log options.
//!
//! Every change is a [`Command`] applied to a pure [`CatalogState`] state machine, which the
//! metadata Raft group drives ([`MetaMachine`], `replicated.rs`); [`Catalog`] (`meta.rs`) is
//! the node's handle on that group — a cluster of one when the node has no peers. A data
//! directory from before replication keeps its catalog as a command log plus a snapshot
//! ([`LocalCatalog`], `persist.rs`), which seeds the group once.
//!
//! This crate must never touch partition data, parse SQL or speak a wire protocol: callers
//! (the SQL layer) validate statements and hand it commands.

mod error;
mod frame;
mod meta;
mod model;
mod persist;
mod replicated;
mod state;

pub use error::{Error, Result};
pub use meta::{Catalog, META_GROUP};
pub use model::{
    ColumnDef, MAX_IDENTIFIER_BYTES, PSEUDO_COLUMNS, QueryDef, RelationKind, SQL_TYPE_KEY, SqlType,
    StreamDef, StreamOptions, check_identifier, is_safe_storage_name, storage_name_for,
};
pub use persist::LocalCatalog;
pub use replicated::{MetaMachine, Outcome, Refusal, decode_outcome, encode_command};
pub use state::{CatalogState, Command};
