//! Ingest: turning rows into stored batches and appending them to a stream's partitions.
//!
//! Every write path (INSERT, COPY) ends in [`append`]: rows get their `rowtime` (the stream's
//! timestamp column, else the ingest time), are routed to partitions by key
//! ([`partitioner`]), cut into frames of at most [`MAX_FRAME_ROWS`] rows, and appended; each
//! partition's appends are durable (group commit) before [`append`] returns. Input is fully
//! validated before the first append, so a bad statement writes nothing.
//!
//! Limitation (until partitions are replicated with Raft): a multi-partition statement that is
//! interrupted by a crash *between* partition appends keeps the partitions already written.

pub mod copy;
pub mod partitioner;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, max, min};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use eddy_catalog::StreamDef;
use eddy_storage::Topic;

use crate::{Engine, Error, Result};

/// Largest number of rows in one stored frame: big enough to amortise framing and fsync, small
/// enough that a reader decodes a bounded amount at a time.
pub const MAX_FRAME_ROWS: usize = 32 * 1024;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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
/// types) and optionally explicit `rowtime` values (NULL where not given).
pub fn with_rowtime(
    def: &StreamDef,
    user: Vec<ArrayRef>,
    explicit: Option<ArrayRef>,
) -> Result<RecordBatch> {
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
    let explicit = explicit.as_ref().map(|a| a.as_primitive::<Int64Type>());
    let event = event.as_ref().map(|a| a.as_primitive::<Int64Type>());
    let values: Vec<i64> = (0..rows)
        .map(|r| {
            explicit
                .filter(|a| a.is_valid(r))
                .map(|a| a.value(r))
                .or_else(|| event.filter(|a| a.is_valid(r)).map(|a| a.value(r)))
                .unwrap_or(now)
        })
        .collect();
    let mut columns = user;
    columns.push(Arc::new(TimestampMillisecondArray::from(values)));
    Ok(RecordBatch::try_new(def.stored_schema(), columns)?)
}

/// Appends stored batches to the stream's partitions; returns the number of rows appended.
pub fn append(
    engine: &Engine,
    def: &StreamDef,
    topic: &Topic,
    batches: Vec<RecordBatch>,
) -> Result<u64> {
    let mut per_partition: Vec<Vec<RecordBatch>> = vec![Vec::new(); topic.partitions().len()];
    let mut total = 0u64;
    for batch in &batches {
        total += batch.num_rows() as u64;
        for (p, part) in partitioner::split(
            def,
            batch,
            topic.partitions().len() as u32,
            engine.round_robin(),
        )? {
            per_partition[p as usize].push(part);
        }
    }
    let work: Vec<(usize, Vec<RecordBatch>)> = per_partition
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let append_one = |p: usize, batches: &[RecordBatch]| -> Result<()> {
        let log = topic
            .partition(p)
            .ok_or_else(|| Error::Internal(format!("partition {p} missing")))?;
        let mut frames = Vec::new();
        for batch in batches {
            let mut start = 0;
            while start < batch.num_rows() {
                let len = MAX_FRAME_ROWS.min(batch.num_rows() - start);
                let frame = batch.slice(start, len);
                let (lo, hi) = time_range(&frame);
                frames.push((frame, lo, hi));
                start += len;
            }
        }
        // One sync for the whole statement's frames in this partition.
        log.append_batches(&frames)?;
        Ok(())
    };
    if work.len() <= 1 {
        for (p, b) in &work {
            append_one(*p, b)?;
        }
    } else {
        // Partitions fsync independently: append them in parallel so their syncs overlap.
        std::thread::scope(|s| {
            let handles: Vec<_> = work
                .iter()
                .map(|(p, b)| s.spawn(move || append_one(*p, b)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| Error::Internal("append thread panicked".into()))?
            })
        })?;
    }
    Ok(total)
}

/// Min and max `rowtime` of a stored batch.
pub fn time_range(batch: &RecordBatch) -> (i64, i64) {
    let Some(col) = batch.columns().last() else {
        return (0, 0);
    };
    let ts = col.as_primitive::<TimestampMillisecondType>();
    (min(ts).unwrap_or(0), max(ts).unwrap_or(0))
}
