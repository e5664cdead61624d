//! [`PullTable`]: a table as DataFusion sees it in an ad hoc `SELECT` — a *pull query* over
//! the table's current rows in its [`TableStore`], not a replay of its topic.
//!
//! A filter `key = constant` on every lookup key column becomes a point (or, for windowed
//! tables, a prefix) lookup in the store. Before reading, the scan waits briefly until the
//! store reflects every source row committed when the query started, so a client reads its
//! own acknowledged writes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use eddy_catalog::StreamDef;
use eddy_storage::Topic;

use super::sink::StreamSink;
use crate::Engine;
use crate::engine::TableStore;

/// How long a pull query waits for the table to catch up with committed source rows.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(5);

/// A table's current rows.
#[derive(Debug)]
pub struct PullTable {
    engine: Arc<Engine>,
    def: StreamDef,
    topic: Arc<Topic>,
    store: Arc<TableStore>,
}

impl PullTable {
    /// The table `def`, served from `store`; inserts go to `topic`.
    pub fn new(
        engine: Arc<Engine>,
        def: StreamDef,
        topic: Arc<Topic>,
        store: Arc<TableStore>,
    ) -> Self {
        Self {
            engine,
            def,
            topic,
            store,
        }
    }

    /// The constant a filter gives `column`, if it is `column = constant`.
    fn equality(filter: &Expr, column: &str) -> Option<ScalarValue> {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = filter
        else {
            return None;
        };
        match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                if c.name == column && !v.is_null() =>
            {
                Some(v.clone())
            }
            _ => None,
        }
    }

    fn lookup_key(&self, filters: &[Expr]) -> Option<Vec<ScalarValue>> {
        self.store
            .lookup_columns()
            .iter()
            .map(|c| filters.iter().find_map(|f| Self::equality(f, c)))
            .collect()
    }
}

#[async_trait]
impl TableProvider for PullTable {
    fn schema(&self) -> SchemaRef {
        self.store.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A lookup narrows the rows; DataFusion still applies every filter: Inexact.
        Ok(filters
            .iter()
            .map(|_| TableProviderFilterPushDown::Inexact)
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.store.catch_up(CATCH_UP).await {
            tracing::warn!(table = %self.def.name, "pull query served before the table caught up");
        }
        let key = self.lookup_key(filters);
        let batch = self.store.scan(key.as_deref())?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.store.schema(),
            projection.cloned(),
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return datafusion::common::not_impl_err!(
                "a table takes new rows with INSERT (an upsert by primary key): {insert_op} is \
                 not supported"
            );
        }
        if let Some(q) = self
            .engine
            .catalog()
            .queries()
            .into_iter()
            .find(|q| q.sink == self.def.name)
        {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::Error::InUse(format!(
                    "table \"{}\" is maintained by persistent query {}; it takes no INSERT",
                    self.def.name, q.id
                )),
            )));
        }
        let sink = StreamSink::new(
            self.engine.clone(),
            self.def.clone(),
            self.topic.clone(),
            self.store.schema(),
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
