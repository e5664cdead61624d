//! [`StreamScanExec`]: reads a stream's partitions as Arrow batches, one DataFusion partition
//! per log partition (or per offset range of one, when the stream has fewer partitions than
//! the session has cores): first the cold tier's Parquet objects (pruned by the manifest, row
//! groups by statistics), then the hot log from where the cold tier ends, adding the
//! `rowpartition` and `rowoffset` pseudo-columns from each stored batch's base offset (no
//! per-row decoding).
//!
//! The hot reader is created (pinning its segments) before the manifest is read: tiering
//! commits the manifest before it deletes a segment, so every offset is in one of the two.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use eddy_storage::tier::{ColdObject, ColdReadStats, ColdRequest, read_object};
use eddy_storage::{StoredBatch, Topic};
use futures::StreamExt;

use super::pushdown::ScanBounds;

/// Scan of one stream.
#[derive(Debug)]
pub struct StreamScanExec {
    stream: String,
    topic: Arc<Topic>,
    /// Full table schema (user columns, rowtime, rowpartition, rowoffset).
    table_schema: SchemaRef,
    projection: Vec<usize>,
    projected: SchemaRef,
    bounds: ScanBounds,
    /// What each DataFusion partition reads: a log partition and an offset range of it.
    splits: Vec<Split>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Every log partition's end, taken together when the first split executes, so that
    /// all splits read one state of the topic: a statement that wrote several partitions is
    /// read whole or not at all ([`Topic::high_watermarks`]).
    ends: Arc<std::sync::OnceLock<Vec<u64>>>,
}

/// One DataFusion partition of a scan: offsets `[start, end)` of log partition `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    partition: u32,
    start: u64,
    end: u64,
}

/// A log partition is split for parallel reading only when it holds at least this many rows
/// per split: below that, a second reader costs more than it saves.
const MIN_SPLIT_ROWS: u64 = 128 * 1024;

/// Splits for `bounds` over `topic`: one per log partition, or — when the stream has fewer
/// partitions than the session's target parallelism — each partition's current offset range
/// cut into equal pieces, the last open-ended so that rows committed before execution are
/// still read. Order within a partition is not promised by a scan without `ORDER BY`.
fn plan_splits(topic: &Topic, bounds: &ScanBounds, target_partitions: usize) -> Vec<Split> {
    let per_partition = (target_partitions / bounds.partitions.len().max(1)).max(1) as u64;
    let mut splits = Vec::new();
    for &p in &bounds.partitions {
        let whole = Split {
            partition: p,
            start: bounds.offset_start,
            end: bounds.offset_end,
        };
        let (Some(log), Some(cold)) = (topic.partition(p as usize), topic.cold(p as usize)) else {
            splits.push(whole);
            continue;
        };
        let first = cold
            .objects()
            .first()
            .map_or(log.log_start_offset(), |o| o.base_offset);
        let lo = bounds.offset_start.max(first);
        let hi = bounds.offset_end.min(log.high_watermark());
        let pieces = per_partition
            .min(hi.saturating_sub(lo) / MIN_SPLIT_ROWS)
            .max(1);
        if pieces == 1 {
            splits.push(whole);
            continue;
        }
        let step = (hi - lo).div_ceil(pieces);
        for i in 0..pieces {
            splits.push(Split {
                partition: p,
                start: if i == 0 {
                    bounds.offset_start
                } else {
                    lo + i * step
                },
                end: if i + 1 == pieces {
                    bounds.offset_end
                } else {
                    lo + (i + 1) * step
                },
            });
        }
    }
    splits
}

/// The cold objects a scan of one partition reads: those overlapping the scan's offset and
/// time bounds, in offset order.
fn cold_objects(objects: Vec<ColdObject>, bounds: &ScanBounds) -> Vec<ColdObject> {
    let (t0, t1) = bounds.time;
    objects
        .into_iter()
        .filter(|o| o.next_offset > bounds.offset_start && o.base_offset < bounds.offset_end)
        .filter(|o| match (o.min_timestamp, o.max_timestamp) {
            (Some(lo), Some(hi)) => hi >= t0 && lo <= t1,
            _ => true,
        })
        .collect()
}

impl StreamScanExec {
    /// A scan of `topic` within `bounds`, producing `projection` of `table_schema`, read by
    /// up to `target_partitions` parallel readers.
    pub fn new(
        stream: String,
        topic: Arc<Topic>,
        table_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        bounds: ScanBounds,
        limit: Option<usize>,
        target_partitions: usize,
    ) -> Result<Self> {
        let projection = projection.unwrap_or_else(|| (0..table_schema.fields().len()).collect());
        let projected = Arc::new(table_schema.project(&projection)?);
        let splits = plan_splits(&topic, &bounds, target_partitions);
        let partitions = splits.len().max(1);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(projected.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            stream,
            topic,
            table_schema,
            projection,
            projected,
            bounds,
            splits,
            limit,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            ends: Arc::default(),
        })
    }

    /// (objects the scan reads, objects in the manifests) over the scanned partitions.
    fn cold_counts(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for &p in &self.bounds.partitions {
            if let Some(cold) = self.topic.cold(p as usize) {
                let objects = cold.objects();
                counts.1 += objects.len();
                counts.0 += cold_objects(objects, &self.bounds).len();
            }
        }
        counts
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self
            .projected
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "StreamScanExec: stream={}, {}, projection=[{}]",
            self.stream,
            self.bounds,
            names.join(", ")
        )?;
        if self.splits.len() > self.bounds.partitions.len() {
            write!(f, ", splits={}", self.splits.len())?;
        }
        let (read, total) = self.cold_counts();
        if total > 0 {
            write!(f, ", cold_objects={read} of {total}")?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &'static str {
        "StreamScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "StreamScanExec has no children".into(),
            ))
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.projected.clone(), 2);
        let Some(split) = self.splits.get(partition).copied() else {
            return Ok(builder.build());
        };
        let log_partition = split.partition;
        let (Some(log), Some(cold)) = (
            self.topic.partition(log_partition as usize).cloned(),
            self.topic.cold(log_partition as usize).cloned(),
        ) else {
            return Err(DataFusionError::Internal(format!(
                "partition {log_partition} is not open"
            )));
        };
        let metric = |name: &'static str| -> Count {
            MetricBuilder::new(&self.metrics).counter(name, partition)
        };
        let counters = ColdCounters {
            objects: metric("cold_objects_read"),
            row_groups_read: metric("cold_row_groups_read"),
            row_groups_pruned: metric("cold_row_groups_pruned"),
            bytes: metric("cold_bytes_fetched"),
        };
        let tx = builder.tx();
        let ends = self.ends.get_or_init(|| self.topic.high_watermarks());
        let end = ends.get(log_partition as usize).copied().unwrap_or(0);
        let bounds = ScanBounds {
            offset_start: split.start,
            offset_end: split.end.min(end),
            ..self.bounds.clone()
        };
        let stored_columns = self.table_schema.fields().len() - 2;
        let shaper = Shaper {
            partition: log_partition as i32,
            stored_columns,
            projection: self.projection.clone(),
            schema: self.projected.clone(),
            offset_start: bounds.offset_start,
            offset_end: bounds.offset_end,
        };
        let limit = self.limit.unwrap_or(usize::MAX);
        let time = (bounds.time != (i64::MIN, i64::MAX)).then_some(bounds.time);
        // The hot reader first (pinning its segments), then the manifest; see the module doc.
        let mut hot = if bounds.offset_start >= bounds.offset_end
            || bounds.offset_start >= log.high_watermark()
        {
            None
        } else {
            Some(
                log.reader_range(bounds.offset_start, bounds.offset_end, time)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            )
        };
        let cold_end = cold.end_offset();
        let objects = cold_objects(cold.objects(), &bounds);
        if let Some(hot) = hot.as_mut() {
            hot.advance_start(cold_end);
        }
        let store = cold.store().cloned();
        let cold = cold.clone();
        let projection = self.projection.clone();
        let schema = self.projected.clone();
        builder.spawn(async move {
            let mut remaining = limit;
            if !objects.is_empty() {
                let store = store.ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "partition {log_partition} has cold objects but the server has no cold store"
                    ))
                })?;
                let stats = Arc::new(ColdReadStats::default());
                for object in objects {
                    let request = ColdRequest {
                        columns: projection.clone(),
                        offsets: (bounds.offset_start, bounds.offset_end.min(cold_end)),
                        time: time.map(|(lo, hi)| (stored_columns - 1, lo, hi)),
                        batch_size: 32 * 1024,
                    };
                    // An object deleted by retention since the manifest was read is skipped; any other
                    // failure fails the query.
                    let gone = |e: eddy_storage::Error| {
                        if cold.expired_while_reading(&e) {
                            Ok(())
                        } else {
                            Err(DataFusionError::External(Box::new(e)))
                        }
                    };
                    let mut batches = match read_object(&store, &object, request, stats.clone())
                        .await
                    {
                        Ok(batches) => batches,
                        Err(e) => {
                            gone(e)?;
                            continue;
                        }
                    };
                    while let Some(batch) = batches.next().await {
                        let batch = match batch {
                            Ok(batch) => batch,
                            Err(e) => {
                                gone(e)?;
                                break;
                            }
                        };
                        let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                        let mut batch = RecordBatch::try_new_with_options(
                            schema.clone(),
                            batch.columns().to_vec(),
                            &rows,
                        )?;
                        if batch.num_rows() > remaining {
                            batch = batch.slice(0, remaining);
                        }
                        remaining -= batch.num_rows();
                        if tx.send(Ok(batch)).await.is_err() || remaining == 0 {
                            counters.record(&stats);
                            return Ok(()); // the consumer went away, or the limit is reached
                        }
                    }
                }
                counters.record(&stats);
            }
            let Some(hot) = hot else {
                return Ok(());
            };
            tokio::task::spawn_blocking(move || {
                for stored in hot {
                    let stored = stored.map_err(|e| DataFusionError::External(Box::new(e)))?;
                    let Some(mut batch) = shaper.shape(&stored)? else {
                        continue;
                    };
                    if batch.num_rows() > remaining {
                        batch = batch.slice(0, remaining);
                    }
                    remaining -= batch.num_rows();
                    if tx.blocking_send(Ok(batch)).is_err() || remaining == 0 {
                        break; // the consumer went away, or the limit is reached
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        });
        Ok(builder.build())
    }
}

/// A scan's cold-read metrics (shown by `EXPLAIN ANALYZE`).
struct ColdCounters {
    objects: Count,
    row_groups_read: Count,
    row_groups_pruned: Count,
    bytes: Count,
}

impl ColdCounters {
    fn record(&self, stats: &ColdReadStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.objects.add(stats.objects.load(Relaxed) as usize);
        self.row_groups_read
            .add(stats.row_groups_read.load(Relaxed) as usize);
        self.row_groups_pruned
            .add(stats.row_groups_pruned.load(Relaxed) as usize);
        self.bytes.add(stats.bytes_fetched.load(Relaxed) as usize);
    }
}

/// Turns a stored batch into the scan's output batch.
struct Shaper {
    partition: i32,
    stored_columns: usize,
    projection: Vec<usize>,
    schema: SchemaRef,
    offset_start: u64,
    offset_end: u64,
}

impl Shaper {
    fn shape(&self, stored: &StoredBatch) -> Result<Option<RecordBatch>> {
        let rows = stored.batch.num_rows() as u64;
        let first = stored.base_offset.max(self.offset_start);
        let end = (stored.base_offset + rows).min(self.offset_end);
        if first >= end {
            return Ok(None);
        }
        let skip = (first - stored.base_offset) as usize;
        let len = (end - first) as usize;
        let columns: Vec<ArrayRef> = self
            .projection
            .iter()
            .map(|&i| -> ArrayRef {
                if i < self.stored_columns {
                    stored.batch.column(i).slice(skip, len)
                } else if i == self.stored_columns {
                    Arc::new(Int32Array::from_value(self.partition, len))
                } else {
                    Arc::new(Int64Array::from_iter_values(first as i64..end as i64))
                }
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }
}
