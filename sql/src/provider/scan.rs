//! [`StreamScanExec`]: reads a stream's partitions as Arrow batches, one DataFusion partition
//! per log partition, adding the `rowpartition` and `rowoffset` pseudo-columns from each stored
//! batch's base offset (no per-row decoding).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use eddy_storage::{StoredBatch, Topic};

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
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    /// A scan of `topic` within `bounds`, producing `projection` of `table_schema`.
    pub fn new(
        stream: String,
        topic: Arc<Topic>,
        table_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        bounds: ScanBounds,
        limit: Option<usize>,
    ) -> Result<Self> {
        let projection = projection.unwrap_or_else(|| (0..table_schema.fields().len()).collect());
        let projected = Arc::new(table_schema.project(&projection)?);
        let partitions = bounds.partitions.len().max(1);
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
            limit,
            properties,
        })
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

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.projected.clone(), 2);
        let Some(&log_partition) = self.bounds.partitions.get(partition) else {
            return Ok(builder.build());
        };
        let Some(log) = self.topic.partition(log_partition as usize).cloned() else {
            return Err(DataFusionError::Internal(format!(
                "partition {log_partition} is not open"
            )));
        };
        let tx = builder.tx();
        let bounds = self.bounds.clone();
        let shaper = Shaper {
            partition: log_partition as i32,
            stored_columns: self.table_schema.fields().len() - 2,
            projection: self.projection.clone(),
            schema: self.projected.clone(),
            offset_start: bounds.offset_start,
            offset_end: bounds.offset_end,
        };
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        builder.spawn_blocking(move || {
            // A range past the end of this partition (or empty) reads nothing, as a filter would.
            if bounds.offset_start >= bounds.offset_end
                || bounds.offset_start >= log.high_watermark()
            {
                return Ok(());
            }
            let time = (bounds.time != (i64::MIN, i64::MAX)).then_some(bounds.time);
            let reader = log
                .reader_range(bounds.offset_start, bounds.offset_end, time)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            for stored in reader {
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
        });
        Ok(builder.build())
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
