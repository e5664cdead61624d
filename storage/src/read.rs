//! [`PartitionRead`]: the one read over a partition's whole offset space — the cold tier's
//! objects, then the hot log from where they end — as Arrow batches of the requested columns,
//! with the `rowpartition` and `rowoffset` pseudo-columns computed from offsets (no per-row
//! decoding on the hot side; the cold objects store them).
//!
//! The protocol that keeps tiering invisible to readers lives here and only here:
//! 1. the hot reader is created first, pinning the segments that hold the range;
//! 2. then one snapshot of the manifest is taken: its objects and the offset where they end;
//! 3. the cold objects are read up to that end, the pinned hot reader from there on.
//!
//! Tiering commits the manifest before it deletes a segment, so every offset of the range is
//! in one of the two tiers, and none is in both. An object that retention deleted after the
//! snapshot was taken is skipped, as any row past retention is; any other failure is the
//! read's error, and the read ends there.
//!
//! Scans (a bounded range, a projection, time pruning) and tails (push queries and persistent
//! queries following the log) both read through this type; so will a replica catching up.
//! It must never know what a column means beyond the offsets and partition it adds.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::log::{PartitionLog, StoredBatch};
use crate::reader::LogReader;
use crate::tier::{ColdObject, ColdPartition, ColdReadStats, ColdRequest, read_object};
use crate::{Error, Result};

/// Rows per batch read from a cold object (at most).
const COLD_BATCH_ROWS: usize = 32 * 1024;

/// Hot batches decoded ahead of the consumer.
const HOT_READ_AHEAD: usize = 2;

/// What to read from one partition.
///
/// Columns are numbered in the partition's *read schema*: the stored columns (what the
/// appended batches hold), then `rowpartition` (INT32), then `rowoffset` (INT64) — the
/// layout of a cold object ([`crate::tier::object_schema`]).
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// Offsets `[start, end)`; `end` is capped at the high watermark when the read opens.
    pub offsets: (u64, u64),
    /// Columns of the read schema to return, in output order.
    pub columns: Vec<usize>,
    /// The output schema: one field per entry of `columns`, of the same types.
    pub schema: SchemaRef,
    /// Skips stored batches, segments, cold objects and row groups whose timestamps cannot
    /// overlap the bounds. Rows are not filtered.
    pub time: Option<TimeBounds>,
}

impl ReadRequest {
    /// Every column of `schema` (the whole read schema), offsets `start..`, no time bounds.
    pub fn all_from(start: u64, schema: SchemaRef) -> Self {
        ReadRequest {
            offsets: (start, u64::MAX),
            columns: (0..schema.fields().len()).collect(),
            schema,
            time: None,
        }
    }
}

/// Timestamp bounds of a read, inclusive, in the units of the frames' timestamps (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// The stored column holding the timestamps (its Parquet statistics prune row groups).
    pub column: usize,
    pub lo: i64,
    pub hi: i64,
}

/// The cold objects that may hold rows of `[start, end)` within `time`, in offset order.
pub fn overlapping_objects(
    objects: Vec<ColdObject>,
    (start, end): (u64, u64),
    time: Option<TimeBounds>,
) -> Vec<ColdObject> {
    objects
        .into_iter()
        .filter(|o| o.next_offset > start && o.base_offset < end)
        .filter(|o| match (time, o.min_timestamp, o.max_timestamp) {
            (Some(t), Some(lo), Some(hi)) => hi >= t.lo && lo <= t.hi,
            _ => true,
        })
        .collect()
}

/// A read of one partition across both tiers; see the module doc. Batches come out in offset
/// order through [`PartitionRead::next_batch`].
pub struct PartitionRead {
    partition: u32,
    columns: Arc<[usize]>,
    schema: SchemaRef,
    start: u64,
    end: u64,
    time: Option<TimeBounds>,
    cold: Option<Arc<ColdPartition>>,
    /// Cold objects not read yet, and where the cold tier ended in the snapshot.
    objects: VecDeque<ColdObject>,
    cold_end: u64,
    current: Option<ObjectRead>,
    hot: Hot,
    /// Every offset below it has been returned, or skipped (retention, time bounds).
    position: u64,
    stats: Arc<ColdReadStats>,
    failed: bool,
}

/// The cold object being read.
struct ObjectRead {
    object: ColdObject,
    batches: BoxStream<'static, Result<RecordBatch>>,
    /// The offset of its next row, when rows come without gaps (no time bounds).
    next: Option<u64>,
}

enum Hot {
    /// Created (segments pinned) but not read yet.
    Pending(Box<LogReader>),
    /// A blocking thread decodes the hot batches; each comes with the offset after it.
    Reading(mpsc::Receiver<Result<(RecordBatch, u64)>>),
    Done,
}

impl std::fmt::Debug for PartitionRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionRead")
            .field("partition", &self.partition)
            .field("offsets", &(self.start, self.end))
            .field("position", &self.position)
            .field("cold_objects_left", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl PartitionRead {
    /// Opens a read of partition `partition` (`log`, and its cold tier if any). Synchronous:
    /// it pins the hot segments and takes the manifest snapshot; nothing is read until
    /// [`PartitionRead::next_batch`].
    pub fn open(
        log: &PartitionLog,
        cold: Option<&Arc<ColdPartition>>,
        partition: u32,
        request: ReadRequest,
    ) -> Result<PartitionRead> {
        let ReadRequest {
            offsets: (start, end),
            columns,
            schema,
            time,
        } = request;
        if columns.len() != schema.fields().len() {
            return Err(Error::InvalidArgument(format!(
                "read of {} columns into a schema of {} fields",
                columns.len(),
                schema.fields().len()
            )));
        }
        let end = end.min(log.high_watermark());
        // 1. The hot reader first: it pins the segments holding the range.
        let mut hot = if start >= end {
            None
        } else {
            Some(log.reader_range(start, end, time.map(|t| (t.lo, t.hi)))?)
        };
        // 2. Then one snapshot of the manifest.
        let (objects, cold_end) = cold.map_or((vec![], 0), |c| c.snapshot());
        // 3. Cold up to where the snapshot ends, hot from there.
        if let Some(hot) = hot.as_mut() {
            hot.advance_start(cold_end);
        }
        let objects = if start >= end {
            vec![]
        } else {
            overlapping_objects(objects, (start, end.min(cold_end)), time)
        };
        Ok(PartitionRead {
            partition,
            columns: columns.into(),
            schema,
            start,
            end,
            time,
            cold: cold.cloned(),
            objects: objects.into(),
            cold_end,
            current: None,
            hot: hot.map_or(Hot::Done, |h| Hot::Pending(Box::new(h))),
            position: start,
            stats: Arc::default(),
            failed: false,
        })
    }

    /// Every offset below this one has been returned or skipped (deleted by retention, or
    /// outside the time bounds). With time bounds it may lag inside a cold object.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The (exclusive) end of the range, capped at the high watermark at open.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// What the read fetched from the cold tier so far.
    pub fn cold_stats(&self) -> &ColdReadStats {
        &self.stats
    }

    /// The next batch, in offset order; `None` at the end of the range (and after an error).
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        if self.failed {
            return None;
        }
        let next = self.advance().await;
        if matches!(next, Some(Err(_))) {
            self.failed = true;
            self.current = None;
            self.hot = Hot::Done;
        }
        next
    }

    /// The read as a stream of batches.
    pub fn into_stream(self) -> BoxStream<'static, Result<RecordBatch>> {
        futures::stream::unfold(self, |mut read| async move {
            read.next_batch().await.map(|batch| (batch, read))
        })
        .boxed()
    }

    async fn advance(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(current) = self.current.as_mut() {
                let item = current.batches.next().await;
                let object_end = current.object.next_offset;
                match item {
                    Some(Ok(batch)) => {
                        if let Some(next) = current.next.as_mut() {
                            *next += batch.num_rows() as u64;
                            self.position = self.position.max(*next);
                        }
                        return Some(self.relabel(batch));
                    }
                    Some(Err(e)) if !self.expired(&e) => return Some(Err(e)),
                    // The rest of an object retention deleted is skipped, like its rows.
                    Some(Err(_)) | None => {
                        self.position = self.position.max(object_end.min(self.end));
                        self.current = None;
                        continue;
                    }
                }
            }
            if let Some(object) = self.objects.pop_front() {
                match self.open_object(object).await {
                    Ok(()) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            match &mut self.hot {
                Hot::Done => return None,
                Hot::Pending(_) => {
                    self.position = self.position.max(self.cold_end.min(self.end));
                    if let Hot::Pending(reader) = std::mem::replace(&mut self.hot, Hot::Done) {
                        self.hot = Hot::Reading(self.spawn_hot(*reader));
                    }
                }
                Hot::Reading(rx) => match rx.recv().await {
                    Some(Ok((batch, next))) => {
                        self.position = self.position.max(next);
                        return Some(Ok(batch));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => {
                        self.position = self.position.max(self.end);
                        self.hot = Hot::Done;
                        return None;
                    }
                },
            }
        }
    }

    /// Starts reading `object`; an object retention deleted meanwhile is skipped.
    async fn open_object(&mut self, object: ColdObject) -> Result<()> {
        let Some(store) = self.cold.as_ref().and_then(|c| c.store()).cloned() else {
            return Err(Error::cold(
                format!("reading partition {}", self.partition),
                "the partition has cold objects but the server has no cold store",
            ));
        };
        let first = self.position.max(object.base_offset);
        let request = ColdRequest {
            columns: self.columns.to_vec(),
            offsets: (self.start, self.end.min(self.cold_end)),
            time: self.time.map(|t| (t.column, t.lo, t.hi)),
            batch_size: COLD_BATCH_ROWS,
        };
        match read_object(&store, &object, request, self.stats.clone()).await {
            Ok(batches) => {
                self.current = Some(ObjectRead {
                    next: self.time.is_none().then_some(first),
                    object,
                    batches,
                });
                Ok(())
            }
            Err(e) if self.expired(&e) => {
                self.position = self.position.max(object.next_offset.min(self.end));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn expired(&self, e: &Error) -> bool {
        self.cold
            .as_ref()
            .is_some_and(|c| c.expired_while_reading(e))
    }

    /// A cold batch under the output schema (same columns, the caller's field names).
    fn relabel(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), batch.columns().to_vec(), &rows)
            .map_err(|source| Error::Encode { source })
    }

    /// Decodes the hot batches on a blocking thread (segment reads are file I/O), a few
    /// ahead of the consumer; it stops when the read is dropped.
    fn spawn_hot(&self, reader: LogReader) -> mpsc::Receiver<Result<(RecordBatch, u64)>> {
        let (tx, rx) = mpsc::channel(HOT_READ_AHEAD);
        let shape = Shape {
            partition: self.partition as i32,
            columns: self.columns.clone(),
            schema: self.schema.clone(),
            start: self.start,
            end: self.end,
        };
        tokio::task::spawn_blocking(move || {
            for stored in reader {
                let item = stored.and_then(|stored| shape.apply(&stored));
                let item = match item {
                    Ok(None) => continue,
                    Ok(Some(shaped)) => Ok(shaped),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

/// Turns a stored batch into an output batch: the rows inside the range, the requested
/// columns, the pseudo-columns computed from the batch's base offset.
struct Shape {
    partition: i32,
    columns: Arc<[usize]>,
    schema: SchemaRef,
    start: u64,
    end: u64,
}

impl Shape {
    /// The output batch and the offset after it; `None` when no row is inside the range.
    fn apply(&self, stored: &StoredBatch) -> Result<Option<(RecordBatch, u64)>> {
        let rows = stored.batch.num_rows() as u64;
        let first = stored.base_offset.max(self.start);
        let end = (stored.base_offset + rows).min(self.end);
        if first >= end {
            return Ok(None);
        }
        let stored_columns = stored.batch.num_columns();
        let (skip, len) = (
            (first - stored.base_offset) as usize,
            (end - first) as usize,
        );
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for &i in self.columns.iter() {
            columns.push(match i.checked_sub(stored_columns) {
                None => stored.batch.column(i).slice(skip, len),
                Some(0) => Arc::new(Int32Array::from_value(self.partition, len)),
                Some(1) => Arc::new(Int64Array::from_iter_values(first as i64..end as i64)),
                Some(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "column {i} of a partition whose batches have {stored_columns} columns"
                    )));
                }
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|source| Error::Encode { source })?;
        Ok(Some((batch, end)))
    }
}
