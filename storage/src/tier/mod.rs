//! The cold tier: closed segments rewritten as Parquet objects in an `object_store` location
//! (a local directory or any S3-compatible bucket), a per-partition manifest of what lives
//! there, and streamed reads of those objects.
//!
//! Layout of the store (documented for other engines in the README):
//! `<root>/<topic>/<partition>/<base offset:020>-<next offset:020>.parquet`, one object per
//! former segment, zstd, row groups of [`ROW_GROUP_ROWS`] rows with statistics; columns are
//! the stored columns followed by `rowpartition` (INT32) and `rowoffset` (INT64).
//!
//! This module never decides what a column means beyond the offset and partition it adds, and
//! never deletes local data before the manifest naming its object is durable.

mod cache;
mod manifest;
mod partition;
mod read;
mod store;
mod upload;

pub use manifest::{ColdObject, Manifest};
pub use partition::{ColdPartition, TierReport, TierStatus};
pub use read::{ColdReadStats, ColdRequest, read_object};
pub use store::ColdStore;
pub use upload::{OFFSET_COLUMN, PARTITION_COLUMN, ROW_GROUP_ROWS, object_schema};
