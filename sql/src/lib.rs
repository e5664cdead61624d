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
pub use session::{CopyIn, Description, Output, Session};
