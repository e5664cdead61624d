//! [`PartitionTail`]: follows one partition's log as it grows.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use eddy_storage::tier::{ColdPartition, ColdReadStats, ColdRequest, read_object};
use eddy_storage::{PartitionLog, StoredBatch};
use futures::StreamExt;
use tokio::sync::watch;

use super::StartAt;
use crate::{Engine, Error};

/// How a push query's tail learns that its stream was dropped (`DROP STREAM|TABLE` in another
/// session): the engine's drop counter changed and the catalog no longer maps the stream's
/// name to the topic the tail reads.
#[derive(Clone)]
pub(crate) struct DropWatch {
    engine: Arc<Engine>,
    stream: String,
    topic: Arc<eddy_storage::Topic>,
    drops: watch::Receiver<u64>,
}

impl DropWatch {
    /// Watches `stream`, whose topic is `topic` now.
    pub(crate) fn new(
        engine: Arc<Engine>,
        stream: String,
        topic: Arc<eddy_storage::Topic>,
    ) -> Self {
        let drops = engine.watch_drops();
        DropWatch {
            engine,
            stream,
            topic,
            drops,
        }
    }

    fn gone(&self) -> bool {
        !self
            .engine
            .stream(&self.stream)
            .is_ok_and(|(_, topic)| Arc::ptr_eq(&topic, &self.topic))
    }

    /// Whether the stream was dropped; checks the catalog only after a drop.
    fn dropped(&mut self) -> bool {
        if !self.drops.has_changed().unwrap_or(false) {
            return false;
        }
        self.drops.borrow_and_update();
        self.gone()
    }

    /// Returns once the stream is dropped.
    async fn wait(&mut self) {
        loop {
            // Seen before checking: a drop after the check wakes `changed()`.
            self.drops.borrow_and_update();
            if self.gone() {
                return;
            }
            if self.drops.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn error(&self) -> DataFusionError {
        DataFusionError::External(Box::new(Error::StreamDropped(self.stream.clone())))
    }
}

/// Batches read per wake-up at most, so a long backlog (`earliest`) streams out in pieces.
const BATCHES_PER_READ: usize = 64;

/// The first offset a partition still holds, in either tier.
pub(crate) fn first_offset(log: &PartitionLog, cold: Option<&Arc<ColdPartition>>) -> u64 {
    cold.and_then(|c| c.objects().first().map(|o| o.base_offset))
        .unwrap_or_else(|| log.log_start_offset())
}

/// Reads a partition from a start offset on, waiting on the log's high-watermark watch when it
/// has caught up. Its batches have the stream's SQL schema (user columns, `rowtime`,
/// `rowpartition`, `rowoffset`). Offsets below the cold tier's end are read from the cold
/// objects, one object per wake-up (so `earliest` replays tiered history too).
pub(crate) struct PartitionTail {
    log: Arc<PartitionLog>,
    cold: Option<Arc<ColdPartition>>,
    partition: i32,
    /// The next offset to read.
    next: u64,
    watch: watch::Receiver<u64>,
    schema: SchemaRef,
    max_batches: usize,
    /// A push query's: ends the tail with an error when the stream is dropped.
    dropped: Option<DropWatch>,
}

impl PartitionTail {
    pub(super) fn new(
        log: Arc<PartitionLog>,
        cold: Option<Arc<ColdPartition>>,
        partition: i32,
        start: StartAt,
        schema: SchemaRef,
    ) -> Self {
        let next = match start {
            StartAt::Latest => log.high_watermark(),
            StartAt::Earliest => first_offset(&log, cold.as_ref()),
        };
        // `at` subscribes to the watch; an append between reading `next` and subscribing is
        // still seen, because the tail compares the watermark with `next` before it waits.
        Self::at(log, cold, partition, next, schema)
    }

    /// A tail of `log` starting at `next` (a persistent query resuming from its checkpoint).
    pub(crate) fn at(
        log: Arc<PartitionLog>,
        cold: Option<Arc<ColdPartition>>,
        partition: i32,
        next: u64,
        schema: SchemaRef,
    ) -> Self {
        let watch = log.watch_high_watermark();
        PartitionTail {
            log,
            cold,
            partition,
            next,
            watch,
            schema,
            max_batches: BATCHES_PER_READ,
            dropped: None,
        }
    }

    /// Ends the tail with [`Error::StreamDropped`] when `watch` sees its stream dropped.
    pub(crate) fn until_dropped(mut self, watch: DropWatch) -> Self {
        self.dropped = Some(watch);
        self
    }

    /// Reads at most `n` stored batches per call.
    pub(crate) fn with_max_batches(mut self, n: usize) -> Self {
        self.max_batches = n.max(1);
        self
    }

    /// The next offset to read.
    pub(crate) fn position(&self) -> u64 {
        self.next
    }

    /// Rows committed but not yet read.
    pub(crate) fn lag(&self) -> u64 {
        self.log.high_watermark().saturating_sub(self.next)
    }

    /// What is readable now, without waiting (empty when caught up).
    pub(crate) async fn read_available(&mut self) -> Result<Vec<RecordBatch>> {
        self.watch.borrow_and_update();
        loop {
            if self.log.high_watermark() <= self.next {
                return Ok(vec![]);
            }
            let before = self.next;
            let batches = self.read().await?;
            if !batches.is_empty() || self.next == before {
                return Ok(batches);
            }
        }
    }

    /// Waits until the high watermark moves (returns at once if it moved since the last read).
    /// `false` when the log is gone.
    pub(crate) async fn changed(&mut self) -> bool {
        if self.log.high_watermark() > self.next {
            return true;
        }
        self.watch.changed().await.is_ok()
    }

    /// The batches committed after the previous call, waiting for at least one. An error
    /// when the stream was dropped (with a [`DropWatch`]); `None` when the log is gone.
    async fn next_batches(&mut self) -> Option<Result<Vec<RecordBatch>>> {
        loop {
            if let Some(d) = self.dropped.as_mut()
                && d.dropped()
            {
                return Some(Err(d.error()));
            }
            // Mark the current value seen *before* reading the watermark: an append that
            // lands after this point wakes `changed()` below.
            self.watch.borrow_and_update();
            if self.log.high_watermark() > self.next {
                let before = self.next;
                match self.read().await {
                    Ok(batches) if batches.is_empty() => {
                        if self.next > before {
                            continue; // read past rows before the start offset
                        }
                        // Nothing readable below the watermark (a segment just deleted by
                        // retention, say): wait for the next append rather than spin.
                    }
                    other => return Some(other),
                }
            }
            let dropped = match self.dropped.as_mut() {
                None => self.watch.changed().await.map(|()| false),
                Some(d) => tokio::select! {
                    changed = self.watch.changed() => changed.map(|()| false),
                    () = d.wait() => Ok(true),
                },
            };
            if dropped.ok()? {
                return self.dropped.as_ref().map(|d| Err(d.error()));
            }
        }
    }

    async fn read(&mut self) -> Result<Vec<RecordBatch>> {
        let (log, start, max_batches) = (self.log.clone(), self.next, self.max_batches);
        // The hot reader pins its segments before the manifest is read: tiering commits the
        // manifest before deleting a segment, so no offset falls between the two.
        let reader = log
            .reader(start)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if let Some(cold) = &self.cold
            && start < cold.end_offset()
        {
            return self.read_cold(cold.clone()).await;
        }
        let stored: Vec<StoredBatch> = tokio::task::spawn_blocking(move || {
            reader
                .take(max_batches)
                .collect::<eddy_storage::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut out = Vec::with_capacity(stored.len());
        for batch in &stored {
            let end = batch.base_offset + batch.batch.num_rows() as u64;
            // A start below the log start (retention) begins at the first batch still there.
            let first = self.next.max(batch.base_offset);
            if first < end {
                out.push(self.shape(batch, first, end)?);
            }
            self.next = self.next.max(end);
        }
        Ok(out)
    }

    /// The rows of the first cold object holding offsets at or after `next`.
    async fn read_cold(&mut self, cold: Arc<ColdPartition>) -> Result<Vec<RecordBatch>> {
        let Some(object) = cold
            .objects()
            .into_iter()
            .find(|o| o.next_offset > self.next)
        else {
            return Ok(vec![]);
        };
        let store = cold
            .store()
            .cloned()
            .ok_or_else(|| DataFusionError::Execution("cold objects but no cold store".into()))?;
        let request = ColdRequest {
            columns: (0..self.schema.fields().len()).collect(),
            offsets: (self.next, object.next_offset),
            time: None,
            batch_size: 32 * 1024,
        };
        let stats = Arc::new(ColdReadStats::default());
        let mut out = vec![];
        // An object deleted by retention since the manifest was read is skipped; any other
        // failure fails the query.
        let gone = |e: eddy_storage::Error| {
            if cold.expired_while_reading(&e) {
                Ok(())
            } else {
                Err(DataFusionError::External(Box::new(e)))
            }
        };
        match read_object(&store, &object, request, stats).await {
            Ok(mut batches) => {
                while let Some(batch) = batches.next().await {
                    match batch {
                        Ok(batch) => {
                            let rows =
                                RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                            out.push(RecordBatch::try_new_with_options(
                                self.schema.clone(),
                                batch.columns().to_vec(),
                                &rows,
                            )?);
                        }
                        Err(e) => {
                            gone(e)?;
                            out.clear();
                            break;
                        }
                    }
                }
            }
            Err(e) => gone(e)?,
        }
        self.next = self.next.max(object.next_offset);
        Ok(out)
    }

    /// Rows `first..end` of a stored batch, with the pseudo-columns added.
    fn shape(&self, stored: &StoredBatch, first: u64, end: u64) -> Result<RecordBatch> {
        let skip = (first - stored.base_offset) as usize;
        let len = (end - first) as usize;
        let mut columns: Vec<ArrayRef> = stored
            .batch
            .columns()
            .iter()
            .map(|c| c.slice(skip, len))
            .collect();
        columns.push(Arc::new(Int32Array::from_value(self.partition, len)));
        columns.push(Arc::new(Int64Array::from_iter_values(
            first as i64..end as i64,
        )));
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }

    /// The tail as a stream of batches.
    pub(super) fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + Unpin + 'static {
        Box::pin(
            futures::stream::unfold(Some(self), |tail| async move {
                let mut tail = tail?;
                match tail.next_batches().await? {
                    Ok(batches) => Some((
                        futures::stream::iter(batches.into_iter().map(Ok)).left_stream(),
                        Some(tail),
                    )),
                    Err(e) => Some((futures::stream::iter([Err(e)]).right_stream(), None)),
                }
            })
            .flatten(),
        )
    }
}
