//! # eddy-catalog
//!
//! Owns Eddy's metadata: the streams that exist, their columns and Arrow types, their KEY and
//! timestamp columns, partition counts and log options.
//!
//! Every change is a [`Command`] applied to a pure [`CatalogState`] state machine. A single node
//! persists commands in a command log plus a snapshot ([`Catalog`]); [`MetaMachine`] is the
//! same state machine as the metadata Raft group drives it (`replicated.rs`), which the server
//! is not yet switched to.
//!
//! This crate must never touch partition data, parse SQL or speak a wire protocol: callers
//! (the SQL layer) validate statements and hand it commands.

mod error;
mod frame;
mod model;
mod persist;
mod replicated;
mod state;

pub use error::{Error, Result};
pub use model::{
    ColumnDef, MAX_IDENTIFIER_BYTES, PSEUDO_COLUMNS, QueryDef, RelationKind, SQL_TYPE_KEY, SqlType,
    StreamDef, StreamOptions, check_identifier, is_safe_storage_name, storage_name_for,
};
pub use persist::Catalog;
pub use replicated::{MetaMachine, Outcome, Refusal, decode_outcome, encode_command};
pub use state::{CatalogState, Command};
