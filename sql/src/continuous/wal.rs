//! [`Wal`]: a persistent query's checkpoint log — how it stays exactly-once across crashes.
//!
//! Each chunk of input a query processes ends in one **commit**, appended to the query's own
//! partition log (`<data>/queries/<id>/wal`, the same CRC-framed, group-committed segments as
//! any stream) as *one frame*, so it is durable whole or not at all:
//!
//! ```text
//! commit e = { source offsets after the chunk, stream times, counters,
//!              state delta (changed groups, freed groups),
//!              output rows per sink partition,
//!              sink high watermarks before the output was appended }
//! ```
//!
//! Only after the commit is durable are the output rows appended to the sink, each partition's
//! rows as one frame tagged with the query id and the epoch (Arrow schema metadata). So on
//! restart: replay the commits (state, table store), then look for the last commit's tagged
//! frames in the sink above the recorded watermarks and append whichever are missing, then
//! resume reading the sources at the recorded offsets. No row is lost (the commit holds it)
//! and none is written twice (the tag says whether it was). Every so often a commit carries a
//! full snapshot instead of a delta, and the segments before it are deleted.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BinaryArray, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use eddy_storage::{LogConfig, PartitionLog};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Schema metadata key naming the query that appended a sink frame.
pub(crate) const TAG_QUERY: &str = "eddy.query";
/// Schema metadata key giving the epoch of the commit that produced a sink frame.
pub(crate) const TAG_EPOCH: &str = "eddy.epoch";
const COMMIT_KEY: &str = "eddy.commit";

/// The scalar part of a commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Marks {
    pub epoch: u64,
    /// Next offset to read per source partition.
    pub offsets: Vec<u64>,
    /// Largest event time seen per source partition.
    pub stream_times: Vec<Option<i64>>,
    /// Rows read, rows written, late rows dropped, since the query started.
    pub rows_in: u64,
    pub rows_out: u64,
    pub late: u64,
    /// Sink high watermark per partition before this commit's output was appended.
    pub sink_marks: Vec<u64>,
    /// The state and store parts are a full snapshot, not a delta.
    pub snapshot: bool,
}

/// One commit.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    pub marks: Marks,
    pub state: Option<RecordBatch>,
    pub deleted: Option<RecordBatch>,
    /// The table store's rows (snapshots only).
    pub store: Option<RecordBatch>,
    /// Stored rows to append, per sink partition.
    pub outputs: Vec<(u32, RecordBatch)>,
}

fn frame_schema(marks: &Marks) -> Result<SchemaRef> {
    let json = serde_json::to_string(marks)
        .map_err(|e| Error::Internal(format!("encoding a commit: {e}")))?;
    Ok(Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("part", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("ipc", DataType::Binary, false),
        ],
        HashMap::from([(COMMIT_KEY.to_string(), json)]),
    )))
}

fn ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(out)
}

fn from_ipc(bytes: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    reader
        .next()
        .transpose()?
        .ok_or_else(|| Error::Internal("empty batch in a query checkpoint".into()))
}

impl Commit {
    fn encode(&self) -> Result<RecordBatch> {
        // A first row that is always there: a frame holds at least one row.
        let mut parts = vec!["marks".to_string()];
        let mut partitions = vec![0];
        let mut bodies = vec![Vec::new()];
        let mut push = |name: &str, p: i32, b: &RecordBatch| -> Result<()> {
            parts.push(name.to_string());
            partitions.push(p);
            bodies.push(ipc(b)?);
            Ok(())
        };
        if let Some(b) = &self.state {
            push("state", 0, b)?;
        }
        if let Some(b) = &self.deleted {
            push("deleted", 0, b)?;
        }
        if let Some(b) = &self.store {
            push("store", 0, b)?;
        }
        for (p, b) in &self.outputs {
            push("out", *p as i32, b)?;
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(parts)),
            Arc::new(Int32Array::from(partitions)),
            Arc::new(BinaryArray::from_iter_values(bodies.iter())),
        ];
        Ok(RecordBatch::try_new(frame_schema(&self.marks)?, columns)?)
    }

    fn decode(frame: &RecordBatch) -> Result<Commit> {
        let json = frame
            .schema()
            .metadata()
            .get(COMMIT_KEY)
            .cloned()
            .ok_or_else(|| Error::Internal("query checkpoint frame without marks".into()))?;
        let marks: Marks = serde_json::from_str(&json)
            .map_err(|e| Error::Internal(format!("decoding a query checkpoint: {e}")))?;
        let mut commit = Commit {
            marks,
            ..Commit::default()
        };
        let parts = frame.column(0).as_string::<i32>();
        let partitions = frame
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let bodies = frame.column(2).as_binary::<i32>();
        for i in 0..frame.num_rows() {
            if parts.value(i) == "marks" {
                continue;
            }
            let batch = from_ipc(bodies.value(i))?;
            match parts.value(i) {
                "state" => commit.state = Some(batch),
                "deleted" => commit.deleted = Some(batch),
                "store" => commit.store = Some(batch),
                "out" => commit.outputs.push((partitions.value(i) as u32, batch)),
                other => {
                    return Err(Error::Internal(format!(
                        "unknown part {other} in a query checkpoint"
                    )));
                }
            }
        }
        Ok(commit)
    }
}

/// A query's checkpoint log.
pub(crate) struct Wal {
    log: PartitionLog,
    /// Offset of the frame holding the last snapshot.
    snapshot_at: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir` (recovery truncates a torn last commit).
    pub(crate) fn open(dir: &Path) -> Result<Wal> {
        let config = LogConfig {
            segment_bytes: 16 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir, config)?;
        Ok(Wal {
            snapshot_at: log.log_start_offset(),
            log,
        })
    }

    /// Replays every commit in order, calling `apply` on each.
    pub(crate) fn replay(&mut self, mut apply: impl FnMut(Commit) -> Result<()>) -> Result<()> {
        let start = self.log.log_start_offset();
        for frame in self.log.reader(start)? {
            let frame = frame?;
            let commit = Commit::decode(&frame.batch)?;
            if commit.marks.snapshot {
                self.snapshot_at = frame.base_offset;
            }
            apply(commit)?;
        }
        Ok(())
    }

    /// Appends a commit durably.
    pub(crate) fn append(&self, commit: &Commit) -> Result<()> {
        let frame = commit.encode()?;
        let info = self.log.append(&frame, 0, 0)?;
        if commit.marks.snapshot {
            self.remove_before(info.base_offset)?;
        }
        Ok(())
    }

    /// Deletes closed segments wholly before `offset` (superseded by a snapshot there).
    fn remove_before(&self, offset: u64) -> Result<()> {
        for s in self.log.segments() {
            if s.active || s.next_offset > offset {
                break;
            }
            self.log.remove_oldest_segment(s.base_offset)?;
        }
        Ok(())
    }

    /// Bytes written since the last snapshot, roughly (whole segments).
    pub(crate) fn bytes(&self) -> u64 {
        self.log.segments().iter().map(|s| s.bytes).sum()
    }

    /// Syncs and closes the log.
    pub(crate) fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

/// Whether a stored sink frame was appended by `query` for `epoch`.
pub(crate) fn is_tagged(batch: &RecordBatch, query: &str, epoch: u64) -> bool {
    let m = batch.schema_ref().metadata();
    m.get(TAG_QUERY).is_some_and(|q| q == query)
        && m.get(TAG_EPOCH).is_some_and(|e| *e == epoch.to_string())
}

/// `batch` tagged with the query and epoch that produced it.
pub(crate) fn tag(batch: &RecordBatch, query: &str, epoch: u64) -> Result<RecordBatch> {
    let schema = Schema::new_with_metadata(
        batch.schema().fields().clone(),
        HashMap::from([
            (TAG_QUERY.to_string(), query.to_string()),
            (TAG_EPOCH.to_string(), epoch.to_string()),
        ]),
    );
    Ok(batch.clone().with_schema(Arc::new(schema))?)
}
