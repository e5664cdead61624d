//! # eddy-sql
//!
//! Owns Eddy's SQL: parsing ksqlDB-style statements on top of sqlparser ([`parser`]), one
//! handler per statement kind ([`handlers`]), DataFusion planning over streams ([`provider`]),
//! and the write path from rows to partition logs ([`ingest`]).
//!
//! ```text
//!  SQL text ─▶ parser ─▶ EddyStatement ─▶ handlers ─┬─▶ ddl / show / vars ─▶ catalog
//!                                                  ├─▶ query: DataFusion ─▶ StreamTable ─▶ StreamScanExec ─▶ logs
//!                                                  ├─▶ push (EMIT CHANGES), cursors: tail logs ─▶ per-batch exprs
//!                                                  ├─▶ persistent (CREATE ... AS SELECT): continuous ─▶ runner per query
//!                                                  │      (steps, windowed aggregation, checkpoints) ─▶ sink log + table store
//!                                                  └─▶ INSERT / COPY ─▶ ingest ─▶ partitioner ─▶ logs (group commit)
//! ```
//!
//! This crate never touches files directly (the catalog and storage crates do), and never
//! speaks a wire protocol (the server does): it turns statements into [`Output`]s.
//!
//! ## Layers
//!
//! Modules use only the layers below their own (a test in `tests/it/tidy.rs` checks it):
//!
//! ```text
//!  handlers            one per statement kind; the statement dispatch (Session::execute)
//!  push | continuous   push queries | persistent queries and table materializers
//!  exec                shared by both: planning under a session, compiled steps, partition tails
//!  session             one client's state: DataFusion contexts, variables, cursors
//!  functions | rewrite SQL functions (UDFs) | AST rewrites before planning
//!  provider            DataFusion's view of streams: tables, scans, system and pg_catalog tables
//!  ingest              the write path: rows to partitions, COPY decoding
//!  engine              the open node: catalog, topics, offline streams, what runs, table stores
//!  parser              statements, limits, option binding
//!  error               the error type
//! ```
//!
//! So a helper two query kinds share lives in `exec` (or lower), never in one of them; state
//! that lower layers read (a table's store, a query's status) lives in `engine`, and the
//! layer that fills it holds only behaviour.

pub mod continuous;
pub mod engine;
mod error;
mod exec;
mod functions;
pub mod handlers;
pub mod ingest;
pub mod parser;
pub mod provider;
pub mod push;
mod rewrite;
mod session;

pub use engine::{Engine, EngineConfig, Offline};
pub use error::{Error, Result};
pub use functions::SERVER_VERSION;
pub use ingest::copy::CopyIn;
pub use rewrite::output_name;
pub use session::{Description, Output, Session, TransactionStatus, end_stream_when};
