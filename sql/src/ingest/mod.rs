//! Ingest: turning rows into stored batches and appending them to a stream's partitions.
//!
//! Every write path (INSERT, COPY) ends in [`encode`] then [`txn::Writes::append`], which
//! writes through the partitions' Raft groups (`engine::replicas`): rows get
//! their `rowtime` (the stream's timestamp column, else the ingest time), are routed to
//! partitions by key ([`partitioner`]), cut into frames of at most [`MAX_FRAME_ROWS`] rows,
//! and appended; each partition's appends are durable (group commit) before the write
//! returns. Input is fully
//! validated before the first append, so a bad statement writes nothing.
//!
//! A statement's rows are all or nothing across its partitions ([`crate::engine::Replicas::append`]);
//! inside a transaction block they wait in [`txn::Pending`] until COMMIT, which appends the
//! block's rows of every stream at once.

pub mod checks;
pub mod copy;
pub mod partitioner;
pub mod txn;
pub mod values;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, is_not_null, max, min};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use eddy_catalog::StreamDef;
use eddy_storage::{EncodedFrame, PartitionFrames, Topic};

use crate::engine::now_ms;
use crate::{Engine, Error, Result};

/// Largest number of rows in one stored frame: big enough to amortise framing and fsync, small
/// enough that a reader decodes a bounded amount at a time.
pub const MAX_FRAME_ROWS: usize = 32 * 1024;

/// Converts rows in the table schema (user columns, then rowtime, rowpartition, rowoffset, as an
/// INSERT plan produces them) to the stored schema (user columns, then rowtime).
pub fn from_table_rows(def: &StreamDef, batch: &RecordBatch) -> Result<RecordBatch> {
    let n = def.columns.len();
    if batch.num_columns() == n {
        // A table's INSERT: the user columns only.
        return with_rowtime(def, batch.columns().to_vec(), None);
    }
    if batch.num_columns() != n + 3 {
        return Err(Error::Internal(format!(
            "insert produced {} columns, expected {}",
            batch.num_columns(),
            n + 3
        )));
    }
    for (i, name) in [(n + 1, "rowpartition"), (n + 2, "rowoffset")] {
        if batch.column(i).null_count() != batch.num_rows() {
            return Err(Error::Invalid(format!(
                "{name} is assigned by the log and cannot be inserted"
            )));
        }
    }
    let user: Vec<ArrayRef> = batch.columns()[..n].to_vec();
    let explicit = cast(
        batch.column(n),
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )?;
    with_rowtime(def, user, Some(explicit))
}

/// Builds a stored batch from the user columns (in declaration order, already of the declared
/// types) and optionally explicit `rowtime` values (NULL where not given). Every value is
/// checked against its column's declared SQL type first ([`checks::enforce`]).
pub fn with_rowtime(
    def: &StreamDef,
    mut user: Vec<ArrayRef>,
    explicit: Option<ArrayRef>,
) -> Result<RecordBatch> {
    checks::enforce(def, &mut user)?;
    let rows = user.first().map(|c| c.len()).unwrap_or(0);
    let now = now_ms();
    let event: Option<ArrayRef> = match def
        .timestamp_column
        .as_ref()
        .and_then(|c| def.column_index(c))
    {
        Some(i) => Some(match user[i].data_type() {
            DataType::Int64 => user[i].clone(),
            _ => cast(
                &cast(&user[i], &DataType::Timestamp(TimeUnit::Millisecond, None))?,
                &DataType::Int64,
            )?,
        }),
        None => None,
    };
    let explicit = match explicit {
        Some(e) => Some(cast(&e, &DataType::Int64)?),
        None => None,
    };
    // Lowest precedence first: the ingest time (`None`: every row), then the timestamp
    // column, then `explicit`.
    let mut rowtime: Option<Int64Array> = None;
    for preferred in [event, explicit].into_iter().flatten() {
        let fallback = || {
            rowtime
                .take()
                .unwrap_or_else(|| Int64Array::from_value(now, rows))
        };
        rowtime = Some(prefer(preferred.as_primitive::<Int64Type>(), fallback)?);
    }
    let rowtime = rowtime.unwrap_or_else(|| Int64Array::from_value(now, rows));
    let mut columns = user;
    // Same buffer, no nulls: a reinterpretation, not a copy.
    columns.push(Arc::new(TimestampMillisecondArray::new(
        rowtime.values().clone(),
        None,
    )));
    Ok(RecordBatch::try_new(def.stored_schema(), columns)?)
}

/// `preferred`'s values where they are not NULL, `fallback`'s (which has no NULLs) elsewhere;
/// `fallback` is only built if some are NULL.
fn prefer(preferred: &Int64Array, fallback: impl FnOnce() -> Int64Array) -> Result<Int64Array> {
    if preferred.null_count() == 0 {
        return Ok(preferred.clone());
    }
    if preferred.null_count() == preferred.len() {
        return Ok(fallback());
    }
    let chosen = zip(&is_not_null(preferred)?, preferred, &fallback())?;
    Ok(chosen.as_primitive::<Int64Type>().clone())
}

/// A statement's rows routed to partitions and encoded as frames, ready to append.
#[derive(Debug)]
pub struct Encoded {
    /// Frames of each partition, in order.
    per_partition: Vec<Vec<EncodedFrame>>,
    rows: u64,
}

impl Encoded {
    /// Nothing yet, for a topic of `partitions` partitions.
    pub fn new(partitions: usize) -> Self {
        Encoded {
            per_partition: (0..partitions).map(|_| Vec::new()).collect(),
            rows: 0,
        }
    }

    /// Appends `other`'s frames after these (same topic).
    pub fn extend(&mut self, other: Encoded) {
        for (mine, theirs) in self.per_partition.iter_mut().zip(other.per_partition) {
            mine.extend(theirs);
        }
        self.rows += other.rows;
    }

    /// Number of rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encoded bytes, frame headers included.
    pub fn bytes(&self) -> usize {
        self.per_partition
            .iter()
            .flatten()
            .map(|f| f.len() as usize)
            .sum()
    }

    /// Each partition with its frames, for an atomic append.
    pub fn into_work(self) -> PartitionFrames {
        self.per_partition.into_iter().enumerate().collect()
    }
}

/// Routes stored batches to the stream's partitions and encodes them as frames of at most
/// [`MAX_FRAME_ROWS`] rows. No I/O: a bulk load does this while it still decodes its input.
pub fn encode(
    engine: &Engine,
    def: &StreamDef,
    partitions: usize,
    batches: &[RecordBatch],
) -> Result<Encoded> {
    // Each frame's partition, and the frame with its time range.
    let mut targets: Vec<usize> = Vec::new();
    let mut frames: Vec<(RecordBatch, i64, i64)> = Vec::new();
    let mut encoded = Encoded::new(partitions);
    for batch in batches {
        encoded.rows += batch.num_rows() as u64;
        for (p, part) in partitioner::split(def, batch, partitions as u32, engine.round_robin())? {
            let mut start = 0;
            while start < part.num_rows() {
                let len = MAX_FRAME_ROWS.min(part.num_rows() - start);
                let frame = part.slice(start, len);
                let (lo, hi) = time_range(&frame);
                targets.push(p as usize);
                frames.push((frame, lo, hi));
                start += len;
            }
        }
    }
    for (p, frame) in targets.into_iter().zip(EncodedFrame::encode_all(&frames)?) {
        encoded.per_partition[p].push(frame);
    }
    Ok(encoded)
}

/// Appends encoded frames, all or nothing across the partitions they go to, through the
/// partitions' Raft groups ([`crate::engine::Replicas::append`]); returns the number of rows
/// appended once they are readable on this node.
pub async fn append(engine: &Engine, topic: &Topic, encoded: Encoded) -> Result<u64> {
    let rows = encoded.rows;
    engine.replicas().append(topic, encoded.into_work()).await?;
    Ok(rows)
}

/// Min and max `rowtime` of a stored batch.
pub fn time_range(batch: &RecordBatch) -> (i64, i64) {
    let Some(col) = batch.columns().last() else {
        return (0, 0);
    };
    let ts = col.as_primitive::<TimestampMillisecondType>();
    (min(ts).unwrap_or(0), max(ts).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use eddy_catalog::{ColumnDef, RelationKind, StreamOptions};

    use super::*;

    /// A stream `s (v BIGINT, ts <ts_type>)`, its timestamp column `ts` if `with_ts`.
    fn def(ts_type: DataType, with_ts: bool) -> StreamDef {
        StreamDef {
            name: "s".into(),
            columns: vec![
                ColumnDef::new("v", DataType::Int64, false),
                ColumnDef::new("ts", ts_type, false),
            ],
            timestamp_column: with_ts.then(|| "ts".to_string()),
            partitions: 1,
            options: StreamOptions::default(),
            topic: "s".into(),
            storage: String::new(),
            kind: RelationKind::Stream,
            primary_key: vec![],
        }
    }

    /// The `rowtime` column of `with_rowtime`'s batch, with `now` for values in `lo..=hi`
    /// (the ingest time, read before and after the call).
    fn rowtimes(def: &StreamDef, ts: ArrayRef, explicit: Option<ArrayRef>) -> Vec<Option<i64>> {
        let v: ArrayRef = Arc::new(Int64Array::from_iter_values(0..ts.len() as i64));
        let lo = now_ms();
        let batch = with_rowtime(def, vec![v, ts], explicit).unwrap();
        let hi = now_ms();
        let rowtime = batch.column(2).as_primitive::<TimestampMillisecondType>();
        assert_eq!(rowtime.null_count(), 0);
        rowtime
            .values()
            .iter()
            .map(|&t| (!(lo..=hi).contains(&t)).then_some(t))
            .collect()
    }

    /// An explicit `rowtime` wins, then the timestamp column, then the ingest time (`None`
    /// here), row by row.
    #[test]
    fn rowtime_is_explicit_then_timestamp_column_then_now() {
        let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            Some(10),
            None,
            Some(30),
            None,
        ]));
        let explicit: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            None,
            Some(20),
            Some(99),
            None,
        ]));
        let with_ts = def(timestamp.clone(), true);
        assert_eq!(
            rowtimes(&with_ts, ts.clone(), Some(explicit.clone())),
            [Some(10), Some(20), Some(99), None]
        );
        assert_eq!(
            rowtimes(&with_ts, ts.clone(), None),
            [Some(10), None, Some(30), None]
        );
        let without_ts = def(timestamp, false);
        assert_eq!(
            rowtimes(&without_ts, ts.clone(), Some(explicit)),
            [None, Some(20), Some(99), None]
        );
        assert_eq!(rowtimes(&without_ts, ts, None), [None, None, None, None]);
        // A BIGINT timestamp column is milliseconds since the epoch.
        let bigint: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None, Some(7)]));
        assert_eq!(
            rowtimes(&def(DataType::Int64, true), bigint, None),
            [Some(5), None, Some(7)]
        );
    }
}
