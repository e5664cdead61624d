//! Eddy's partition log: the durable, ordered storage of one topic partition on local disk.
//!
//! ```text
//! PartitionLog ── append (group commit) ──▶ active segment ─ roll ─▶ closed segments ─▶ retention
//!      │                                      NNN.log   frames of Arrow IPC batches
//!      └── reader / offset_for_timestamp ◀──  NNN.index sparse offset + time index (a cache)
//! ```
//!
//! This crate owns:
//! - **segments**: files of CRC-framed Arrow IPC record batches, named by base offset
//!   (format in `segment/format.rs`), with a sparse offset and time index beside each
//!   (`segment/index.rs`);
//! - **appends** with group commit: a batch is acknowledged only after fdatasync, and
//!   concurrent appenders share one sync: a partition's committer writes every group queued
//!   while it was syncing, then syncs them together (`log.rs`, `committer.rs`);
//! - **reads** of durable batches by offset and time range, lazily, with no per-row decoding
//!   (`reader.rs`), and the one read over both tiers that scans and tails use
//!   ([`PartitionRead`], `read.rs`: pin the hot segments, snapshot the manifest, read cold then
//!   hot, add the `rowpartition`/`rowoffset` pseudo-columns);
//! - **tailing**: the high watermark is published on a `tokio::sync::watch` channel
//!   ([`PartitionLog::watch_high_watermark`]) so followers of the log wait without polling;
//! - **recovery** on open: a torn tail is truncated, corruption elsewhere is reported
//!   (`recovery.rs`);
//! - **the Raft log** of a replicated partition (`entries.rs`): the same segments, one entry
//!   per statement group with its term and index in the frames, truncation of a divergent
//!   tail, a high watermark moved by commits instead of flushes;
//! - **retention** of whole closed segments by time and size;
//! - the **cold tier** (`tier/`): closed segments past local retention rewritten as Parquet
//!   objects in an `object_store` location, a per-partition manifest, streamed cold reads.
//!
//! It must never know SQL, schemas beyond what an Arrow batch carries, the catalog, or Raft's
//! networking and elections: it stores batches at offsets (and entries at indexes) and hands
//! them back.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod checkpoints;
mod committer;
mod config;
mod decisions;
mod dir_lock;
mod entries;
mod error;
pub mod failpoint;
mod log;
mod node_record;
mod purged;
mod read;
mod reader;
mod recovery;
mod rounds;
mod segment;
pub mod tier;
mod topics;
mod txn;

pub use checkpoints::CheckpointDirs;
pub use committer::Appended;
pub use config::LogConfig;
pub use decisions::{CommitRecord, Decision};
pub use dir_lock::DataDirLock;
pub use entries::{Entry, StoredEntry};
pub use error::{Error, Result};
pub use log::{AppendInfo, LogStats, PartitionLog, SegmentInfo, StoredBatch};
pub use node_record::NodeRecord;
pub use read::{PartitionRead, ReadRequest, TimeBounds, overlapping_objects};
pub use reader::LogReader;
pub use segment::format::EncodedFrame;
pub use topics::{PartitionFrames, Topic, TopicStore, Visibility};
