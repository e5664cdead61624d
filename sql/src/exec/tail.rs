//! [`PartitionTail`]: follows one partition's log as it grows.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use eddy_storage::{PartitionLog, ReadRequest, Topic};
use futures::StreamExt;
use tokio::sync::watch;

use crate::{Engine, Error, Session};

/// Where a push query starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The high watermark at query start: only rows committed afterwards.
    Latest,
    /// The log start: everything still retained, then new rows.
    Earliest,
}

impl StartAt {
    /// The session's `auto.offset.reset`.
    pub fn of(session: &Session) -> StartAt {
        match session.variable("auto.offset.reset").as_deref() {
            Some("earliest") => StartAt::Earliest,
            _ => StartAt::Latest,
        }
    }
}

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

/// Partition `p` of `topic`, or an error naming it.
fn partition_log(topic: &Topic, p: u32) -> Result<Arc<PartitionLog>> {
    topic.partition(p as usize).cloned().ok_or_else(|| {
        DataFusionError::Internal(format!("stream {} has no partition {p}", topic.name()))
    })
}

/// Batches read per wake-up at most, so a long backlog (`earliest`) streams out in pieces.
const BATCHES_PER_READ: usize = 64;

/// Reads a partition from a start offset on, waiting on the log's high-watermark watch when it
/// has caught up. Its batches have the stream's SQL schema (user columns, `rowtime`,
/// `rowpartition`, `rowoffset`). It reads through storage's read across both tiers
/// ([`Topic::read`]), so `earliest` replays tiered history too.
pub(crate) struct PartitionTail {
    topic: Arc<Topic>,
    log: Arc<PartitionLog>,
    partition: u32,
    /// The next offset to read.
    next: u64,
    watch: watch::Receiver<u64>,
    schema: SchemaRef,
    max_batches: usize,
    /// A push query's: ends the tail with an error when the stream is dropped.
    dropped: Option<DropWatch>,
}

impl PartitionTail {
    pub(crate) fn new(
        topic: Arc<Topic>,
        partition: u32,
        start: StartAt,
        schema: SchemaRef,
    ) -> Result<Self> {
        let log = partition_log(&topic, partition)?;
        let next = match start {
            StartAt::Latest => log.high_watermark(),
            StartAt::Earliest => topic.first_offset(partition).unwrap_or(0),
        };
        // `at` subscribes to the watch; an append between reading `next` and subscribing is
        // still seen, because the tail compares the watermark with `next` before it waits.
        Self::at(topic, partition, next, schema)
    }

    /// A tail of partition `partition` of `topic` starting at `next` (a persistent query
    /// resuming from its checkpoint).
    pub(crate) fn at(
        topic: Arc<Topic>,
        partition: u32,
        next: u64,
        schema: SchemaRef,
    ) -> Result<Self> {
        let log = partition_log(&topic, partition)?;
        let watch = log.watch_high_watermark();
        Ok(PartitionTail {
            topic,
            log,
            partition,
            next,
            watch,
            schema,
            max_batches: BATCHES_PER_READ,
            dropped: None,
        })
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

    /// Up to `max_batches` batches from `next` to the high watermark, both tiers; `next`
    /// moves past what was read (and past anything retention deleted meanwhile).
    async fn read(&mut self) -> Result<Vec<RecordBatch>> {
        let request = ReadRequest::all_from(self.next, self.schema.clone());
        let mut read = self
            .topic
            .read(self.partition, request)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut out = Vec::new();
        while out.len() < self.max_batches {
            match read.next_batch().await {
                Some(batch) => out.push(batch.map_err(|e| DataFusionError::External(Box::new(e)))?),
                None => break,
            }
        }
        self.next = self.next.max(read.position());
        Ok(out)
    }

    /// The tail as a stream of batches.
    pub(crate) fn into_stream(
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
