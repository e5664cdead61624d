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
//!
//! Replay trusts nothing it reads: each commit is checked against the query's
//! [`CommitLayout`] (the frame's columns, each part's column types, the number of source
//! partitions) as it is decoded, so a checkpoint written by another plan, or damaged past its
//! checksums, is an error naming the query ([`Error::Checkpoint`]), never a panic in a
//! downcast.

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

/// The column types a query's commits hold: what [`Wal::replay`] checks each commit against,
/// so the readers of its parts (`Aggregator::restore`, `TableStore::apply`, the sink append)
/// never meet a column of another type.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitLayout {
    /// Source partitions the task reads: the length of `offsets` (and `stream_times`).
    pub partitions: usize,
    /// The aggregation's `state` and `deleted` parts (`None`: the query keeps no state).
    pub state: Option<(Vec<DataType>, Vec<DataType>)>,
    /// The table store's rows, the `store` part of snapshots (`None`: no store).
    pub store: Option<Vec<DataType>>,
    /// The sink's stored rows, the `out` parts.
    pub output: Vec<DataType>,
}

/// The columns of every commit frame: part name, sink partition, IPC body.
const FRAME_TYPES: [DataType; 3] = [DataType::Utf8, DataType::Int32, DataType::Binary];

fn types_of(schema: &Schema) -> Vec<DataType> {
    schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

fn type_list(types: &[DataType]) -> String {
    types
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Ok` if `batch` has exactly the column types `want`, else why not.
fn check_part(part: &str, batch: &RecordBatch, want: Option<&[DataType]>) -> Result<()> {
    let Some(want) = want else {
        return Err(Error::Damaged(format!(
            "it has a `{part}` part, which this query does not write"
        )));
    };
    let got = types_of(batch.schema_ref());
    if got != want {
        return Err(Error::Damaged(format!(
            "its `{part}` part has columns ({}), the query's plan writes ({})",
            type_list(&got),
            type_list(want)
        )));
    }
    Ok(())
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
        .ok_or_else(|| Error::Damaged("a part of a commit holds no batch".into()))
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

    /// Reads a commit frame, checking it against `layout` before any column is downcast.
    fn decode(frame: &RecordBatch, layout: &CommitLayout) -> Result<Commit> {
        let frame_types = types_of(frame.schema_ref());
        if frame_types != FRAME_TYPES {
            return Err(Error::Damaged(format!(
                "a commit frame has columns ({}), not ({})",
                type_list(&frame_types),
                type_list(&FRAME_TYPES)
            )));
        }
        let json = frame
            .schema()
            .metadata()
            .get(COMMIT_KEY)
            .cloned()
            .ok_or_else(|| Error::Damaged("a commit frame without its marks".into()))?;
        let marks: Marks = serde_json::from_str(&json)
            .map_err(|e| Error::Damaged(format!("a commit's marks do not decode: {e}")))?;
        if marks.offsets.len() != layout.partitions
            || !(marks.stream_times.is_empty() || marks.stream_times.len() == layout.partitions)
        {
            return Err(Error::Damaged(format!(
                "commit {} has offsets for {} source partitions (stream times for {}), the \
                 task reads {}",
                marks.epoch,
                marks.offsets.len(),
                marks.stream_times.len(),
                layout.partitions
            )));
        }
        let mut commit = Commit {
            marks,
            ..Commit::default()
        };
        // The frame's types were checked above: these downcasts cannot fail.
        let parts = frame.column(0).as_string::<i32>();
        let partitions = frame
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let bodies = frame.column(2).as_binary::<i32>();
        let (state, deleted) = match &layout.state {
            Some((s, d)) => (Some(&s[..]), Some(&d[..])),
            None => (None, None),
        };
        for i in 0..frame.num_rows() {
            let part = parts.value(i);
            if part == "marks" {
                continue;
            }
            let batch = from_ipc(bodies.value(i))?;
            match part {
                "state" => {
                    check_part(part, &batch, state)?;
                    commit.state = Some(batch);
                }
                "deleted" => {
                    check_part(part, &batch, deleted)?;
                    commit.deleted = Some(batch);
                }
                "store" => {
                    check_part(part, &batch, layout.store.as_deref())?;
                    commit.store = Some(batch);
                }
                "out" => {
                    check_part(part, &batch, Some(&layout.output))?;
                    let p = u32::try_from(partitions.value(i)).map_err(|_| {
                        Error::Damaged(format!("output for sink partition {}", partitions.value(i)))
                    })?;
                    commit.outputs.push((p, batch));
                }
                other => {
                    return Err(Error::Damaged(format!(
                        "unknown part `{other}` in a commit"
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

    /// Replays every commit in order, calling `apply` on each; a commit that does not fit
    /// `layout` stops the replay with [`Error::Damaged`] (saying which commit).
    pub(crate) fn replay(
        &mut self,
        layout: &CommitLayout,
        mut apply: impl FnMut(Commit) -> Result<()>,
    ) -> Result<()> {
        let start = self.log.log_start_offset();
        for frame in self.log.reader(start)? {
            let frame = frame?;
            let commit = Commit::decode(&frame.batch, layout).map_err(|e| match e {
                Error::Damaged(why) => {
                    Error::Damaged(format!("the commit at offset {}: {why}", frame.base_offset))
                }
                other => other,
            })?;
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn layout() -> CommitLayout {
        CommitLayout {
            partitions: 1,
            state: Some((
                vec![DataType::Binary, DataType::Int64],
                vec![DataType::Binary],
            )),
            store: None,
            output: vec![DataType::Utf8],
        }
    }

    fn batch(column: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("c", column)]).unwrap()
    }

    fn commit() -> Commit {
        let state = RecordBatch::try_from_iter([
            (
                "key",
                Arc::new(BinaryArray::from_iter_values([b"k"])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![2]))),
        ])
        .unwrap();
        Commit {
            marks: Marks {
                offsets: vec![3],
                stream_times: vec![None],
                ..Marks::default()
            },
            state: Some(state),
            outputs: vec![(0, batch(Arc::new(StringArray::from(vec!["row"]))))],
            ..Commit::default()
        }
    }

    fn damaged(result: Result<Commit>) -> String {
        match result {
            Err(Error::Damaged(why)) => why,
            Err(other) => panic!("not Damaged: {other:?}"),
            Ok(c) => panic!("decoded: {c:?}"),
        }
    }

    #[test]
    fn a_commit_of_the_layout_decodes() {
        let frame = commit().encode().unwrap();
        let back = Commit::decode(&frame, &layout()).unwrap();
        assert_eq!(back.marks.offsets, vec![3]);
        assert_eq!(back.state.unwrap().num_rows(), 1);
        assert_eq!(back.outputs.len(), 1);
    }

    #[test]
    fn a_state_of_other_column_types_is_refused_not_downcast() {
        let mut c = commit();
        c.state = Some(
            RecordBatch::try_from_iter([
                (
                    "key",
                    Arc::new(BinaryArray::from_iter_values([b"k"])) as ArrayRef,
                ),
                ("n", Arc::new(StringArray::from(vec!["two"]))),
            ])
            .unwrap(),
        );
        let why = damaged(Commit::decode(&c.encode().unwrap(), &layout()));
        assert!(why.contains("`state`"), "{why}");
        assert!(
            why.contains("(Binary, Utf8)") && why.contains("(Binary, Int64)"),
            "{why}"
        );
    }

    #[test]
    fn output_rows_of_other_columns_are_refused() {
        let mut c = commit();
        c.outputs = vec![(0, batch(Arc::new(Int64Array::from(vec![1]))))];
        let why = damaged(Commit::decode(&c.encode().unwrap(), &layout()));
        assert!(why.contains("`out`"), "{why}");
    }

    #[test]
    fn a_part_the_query_does_not_write_is_refused() {
        let stateless = CommitLayout {
            state: None,
            ..layout()
        };
        let why = damaged(Commit::decode(&commit().encode().unwrap(), &stateless));
        assert!(why.contains("does not write"), "{why}");
    }

    #[test]
    fn a_commit_for_other_source_partitions_is_refused() {
        let two = CommitLayout {
            partitions: 2,
            ..layout()
        };
        let why = damaged(Commit::decode(&commit().encode().unwrap(), &two));
        assert!(why.contains("1 source partitions"), "{why}");
    }

    #[test]
    fn a_frame_of_other_columns_is_refused() {
        let good = commit().encode().unwrap();
        let schema = Schema::new_with_metadata(
            vec![
                Field::new("part", DataType::Utf8, false),
                Field::new("partition", DataType::Utf8, false),
                Field::new("ipc", DataType::Binary, false),
            ],
            good.schema().metadata().clone(),
        );
        let columns: Vec<ArrayRef> = vec![
            good.column(0).clone(),
            Arc::new(StringArray::from(vec!["0"; good.num_rows()])),
            good.column(2).clone(),
        ];
        let frame = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        let why = damaged(Commit::decode(&frame, &layout()));
        assert!(
            why.contains("commit frame has columns (Utf8, Utf8, Binary)"),
            "{why}"
        );
        // Fewer columns than a frame has: refused before any column is read.
        let why = damaged(Commit::decode(
            &batch(Arc::new(StringArray::from(vec!["marks"]))),
            &layout(),
        ));
        assert!(why.contains("commit frame has columns (Utf8)"), "{why}");
    }

    #[test]
    fn marks_that_do_not_decode_are_refused() {
        let good = commit().encode().unwrap();
        let schema = Schema::new_with_metadata(
            good.schema().fields().clone(),
            HashMap::from([(COMMIT_KEY.to_string(), "{not json".to_string())]),
        );
        let frame = RecordBatch::try_new(Arc::new(schema), good.columns().to_vec()).unwrap();
        let why = damaged(Commit::decode(&frame, &layout()));
        assert!(why.contains("marks do not decode"), "{why}");
    }

    #[test]
    fn replay_stops_at_the_damaged_commit_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        wal.append(&commit()).unwrap();
        let mut bad = commit();
        bad.outputs = vec![(0, batch(Arc::new(Int64Array::from(vec![1]))))];
        wal.append(&bad).unwrap();
        let mut applied = 0;
        let err = wal
            .replay(&layout(), |_| {
                applied += 1;
                Ok(())
            })
            .unwrap_err();
        assert_eq!(applied, 1, "the good commit is applied, the bad one is not");
        let why = err.to_string();
        // Offsets count the log's rows: the first commit's frame holds three parts.
        assert!(why.contains("the commit at offset 3"), "{why}");
    }
}
