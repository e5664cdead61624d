//! [`StreamTable`]: a stream as a DataFusion table (scan with pseudo-column pruning, INSERT).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use eddy_catalog::StreamDef;
use eddy_storage::Topic;

use super::pushdown::{ScanBounds, is_prunable};
use super::scan::StreamScanExec;
use super::sink::StreamSink;
use crate::Engine;

/// One stream, as DataFusion sees it: the user's columns then `rowtime`, `rowpartition`,
/// `rowoffset`. The pseudo-columns are nullable here only so that `INSERT` can leave them out;
/// a scan never produces a NULL in them.
#[derive(Debug)]
pub struct StreamTable {
    engine: Arc<Engine>,
    def: StreamDef,
    topic: Arc<Topic>,
    schema: SchemaRef,
}

impl StreamTable {
    /// A table over `def`, reading `topic`.
    pub fn new(engine: Arc<Engine>, def: StreamDef, topic: Arc<Topic>) -> Self {
        let fields: Vec<Field> = def
            .table_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        Self {
            engine,
            def,
            topic,
            schema,
        }
    }

    /// Whether this is a stream, or a table read as its changelog.
    pub fn kind(&self) -> eddy_catalog::RelationKind {
        self.def.kind
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pruning is by whole partitions, segments and batches, so DataFusion still applies the
        // filter to the rows that remain: Inexact.
        Ok(filters
            .iter()
            .map(|f| {
                if is_prunable(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = ScanBounds::from_filters(filters, self.def.partitions);
        Ok(Arc::new(StreamScanExec::new(
            self.def.name.clone(),
            self.topic.clone(),
            self.schema.clone(),
            projection.cloned(),
            bounds,
            limit,
            state.config().target_partitions(),
        )?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return datafusion::common::not_impl_err!(
                "streams are append-only: {insert_op} is not supported"
            );
        }
        let sink = StreamSink::new(
            self.engine.clone(),
            self.def.clone(),
            self.topic.clone(),
            self.schema.clone(),
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
