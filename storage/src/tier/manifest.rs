//! The per-partition manifest of the cold tier: which offset ranges live in which object.
//!
//! It is a small JSON file beside the partition's segments (`cold-manifest.json`), replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory). It is the truth
//! of what the cold tier holds: an object the manifest does not name is an orphan of an
//! interrupted upload or delete and is removed by the next sweep.
//!
//! Why local and not in the bucket (2026-11-23): on one node, the local disk is where the
//! partition's other durable state lives, so the manifest commits with one fsync and the
//! partition opens (and serves hot data) with the object store unreachable. When partitions
//! replicate, the manifest moves into the partition's Raft log with the rest of its state.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::segment::replace_file;
use crate::{Error, Result};

/// File name of the manifest inside a partition directory.
pub(crate) const MANIFEST_FILE: &str = "cold-manifest.json";

/// One Parquet object of the cold tier: the rows of one former segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdObject {
    /// Object path inside the store.
    pub key: String,
    /// First offset in the object.
    pub base_offset: u64,
    /// One past the last offset in the object.
    pub next_offset: u64,
    /// Rows in the object.
    pub rows: u64,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// Smallest and largest `ROWTIME` (ms) in the object.
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    /// Row groups in the object.
    pub row_groups: u32,
}

/// The cold objects of one partition, in offset order, non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub version: u32,
    pub objects: Vec<ColdObject>,
}

impl Manifest {
    /// Loads the manifest of the partition in `dir`; an absent file is an empty manifest.
    pub(crate) fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                position: 0,
                reason: format!("cold manifest is not valid: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                objects: vec![],
            }),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces the manifest in `dir` atomically and durably.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::InvalidArgument(format!("encoding cold manifest: {e}")))?;
        replace_file(dir, MANIFEST_FILE, &bytes)
    }

    /// One past the last cold offset, if any object exists.
    pub fn end_offset(&self) -> Option<u64> {
        self.objects.last().map(|o| o.next_offset)
    }

    /// Bytes of all objects.
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.bytes).sum()
    }
}
