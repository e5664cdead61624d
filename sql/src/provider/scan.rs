//! [`StreamScanExec`]: reads a stream's partitions as Arrow batches, one DataFusion partition
//! per log partition (or per offset range of one, when the stream has fewer partitions than
//! the session has cores): first the cold tier's Parquet objects (pruned by the manifest, row
//! groups by statistics), then the hot log from where the cold tier ends, adding the
//! `rowpartition` and `rowoffset` pseudo-columns — all through storage's one read across both
//! tiers ([`eddy_storage::PartitionRead`], which owns the tiering-race protocol and the
//! pseudo-columns). This module owns only the planning: splits, bounds, limit, metrics.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use eddy_storage::tier::ColdReadStats;
use eddy_storage::{ReadRequest, TimeBounds, Topic, overlapping_objects};

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
        let (Some(log), Some(first)) = (topic.partition(p as usize), topic.first_offset(p)) else {
            splits.push(whole);
            continue;
        };
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

    /// The scan's event-time bounds on `rowtime`, the last stored column.
    fn time_bounds(&self) -> Option<TimeBounds> {
        let (lo, hi) = self.bounds.time;
        ((lo, hi) != (i64::MIN, i64::MAX)).then(|| TimeBounds {
            column: self.table_schema.fields().len() - 3,
            lo,
            hi,
        })
    }

    /// (objects the scan reads, objects in the manifests) over the scanned partitions.
    fn cold_counts(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for &p in &self.bounds.partitions {
            if let Some(cold) = self.topic.cold(p as usize) {
                let objects = cold.objects();
                counts.1 += objects.len();
                let range = (self.bounds.offset_start, self.bounds.offset_end);
                counts.0 += overlapping_objects(objects, range, self.time_bounds()).len();
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
        let Some(split) = self.splits.get(partition).copied() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.projected.clone(),
                futures::stream::empty(),
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
        let ends = self.ends.get_or_init(|| self.topic.high_watermarks());
        let end = ends.get(split.partition as usize).copied().unwrap_or(0);
        let request = ReadRequest {
            offsets: (split.start, split.end.min(end)),
            columns: self.projection.clone(),
            schema: self.projected.clone(),
            time: self.time_bounds(),
        };
        let read = self
            .topic
            .read(split.partition, request)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let limit = self.limit.unwrap_or(usize::MAX);
        let batches = futures::stream::unfold(
            (read, limit, Some(counters)),
            |(mut read, remaining, mut counters)| async move {
                let next = match remaining {
                    0 => None,
                    _ => read.next_batch().await,
                };
                let Some(next) = next else {
                    if let Some(counters) = counters.take() {
                        counters.record(read.cold_stats());
                    }
                    return None;
                };
                let (item, remaining) = match next {
                    Ok(batch) if batch.num_rows() > remaining => (Ok(batch.slice(0, remaining)), 0),
                    Ok(batch) => {
                        let rows = batch.num_rows();
                        (Ok(batch), remaining - rows)
                    }
                    Err(e) => (Err(DataFusionError::External(Box::new(e))), 0),
                };
                Some((item, (read, remaining, counters)))
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.projected.clone(),
            batches,
        )))
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
