//! [`PushPlan`]: a push query compiled to physical expressions applied to each new batch.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, LimitClause, Statement, Value};
use eddy_storage::Topic;

use crate::handlers::query::{classify, plan_in};
use crate::{Error, Result, Session};

/// One step of the per-batch pipeline, bottom-up.
#[derive(Clone)]
pub(crate) enum Step {
    /// Keep the rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute the output columns.
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
}

/// A push query, ready to run on batches of its stream.
pub(crate) struct PushPlan {
    /// The stream (or table) read, and its topic.
    stream: String,
    topic: Arc<Topic>,
    /// The stream's SQL schema, which the tails produce.
    source_schema: SchemaRef,
    steps: Vec<Step>,
    schema: SchemaRef,
    limit: Option<usize>,
}

pub(crate) const SHAPE: &str = "push queries (EMIT CHANGES) support projections, WHERE filters and scalar \
    functions over one stream; aggregates, joins, windows, DISTINCT, ORDER BY and OFFSET are \
    not supported yet";

impl PushPlan {
    /// Plans `query` (a `Statement::Query` without `EMIT CHANGES`) with DataFusion and compiles
    /// it. `LIMIT n` becomes the push limit; anything but filters and projections over one
    /// stream is refused with [`Error::Unsupported`].
    pub(crate) async fn new(
        session: &Session,
        query: &Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<PushPlan> {
        let (mut plan, limit) = logical(session, query).await?;
        if let Some(params) = params
            && !params.is_empty()
        {
            plan = plan.with_param_values(params).map_err(classify)?;
        }
        let state = session.context().state();
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(classify)?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let mut steps = Vec::new();
        let (stream, source_schema) = compile(&state, &plan, &mut steps)?;
        let (_, topic) = session.engine().stream(&stream)?;
        Ok(PushPlan {
            stream,
            topic,
            source_schema,
            steps,
            schema,
            limit,
        })
    }

    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    pub(crate) fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    pub(crate) fn source_schema(&self) -> SchemaRef {
        self.source_schema.clone()
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Runs the filters and projections on one batch of the stream.
    pub(crate) fn apply(&self, batch: &RecordBatch) -> DFResult<RecordBatch> {
        let batch = run_steps(&self.steps, batch)?;
        if batch.num_rows() == 0 {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        Ok(batch)
    }
}

/// Runs filter and projection steps on one batch (stopping early when no row is left).
pub(crate) fn run_steps(steps: &[Step], batch: &RecordBatch) -> DFResult<RecordBatch> {
    let mut batch = batch.clone();
    {
        for step in steps {
            if batch.num_rows() == 0 {
                break;
            }
            batch = match step {
                Step::Filter(predicate) => {
                    let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        DataFusionError::Internal("WHERE did not give booleans".into())
                    })?;
                    filter_record_batch(&batch, mask)?
                }
                Step::Project { exprs, schema } => {
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                        .collect::<DFResult<Vec<_>>>()?;
                    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                    RecordBatch::try_new_with_options(schema.clone(), columns, &options)?
                }
            };
        }
    }
    Ok(batch)
}

/// The DataFusion plan of a push query (without its LIMIT) and the LIMIT.
pub(crate) async fn logical(
    session: &Session,
    query: &Statement,
) -> Result<(LogicalPlan, Option<usize>)> {
    let Statement::Query(q) = query else {
        return Err(Error::Unsupported(SHAPE.into()));
    };
    let mut q = q.clone();
    let limit = match q.limit_clause.take() {
        None => None,
        Some(LimitClause::LimitOffset {
            limit,
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => match limit {
            None => None,
            Some(SqlExpr::Value(v)) => match &v.value {
                Value::Number(n, _) => Some(n.parse::<usize>().map_err(|_| {
                    Error::Invalid(format!("LIMIT must be a non-negative integer, not {n}"))
                })?),
                _ => return Err(Error::Invalid("LIMIT must be an integer constant".into())),
            },
            Some(_) => return Err(Error::Invalid("LIMIT must be an integer constant".into())),
        },
        Some(_) => return Err(Error::Unsupported(SHAPE.into())),
    };
    if q.order_by.is_some() || q.fetch.is_some() {
        return Err(Error::Unsupported(SHAPE.into()));
    }
    let plan = plan_in(session, &Statement::Query(q), true).await?;
    Ok((plan, limit))
}

pub(crate) fn physical(
    state: &SessionState,
    expr: &Expr,
    schema: &DFSchema,
) -> Result<Arc<dyn PhysicalExpr>> {
    if expr_has_subquery(expr) {
        return Err(Error::Unsupported(SHAPE.into()));
    }
    state
        .create_physical_expr(expr.clone(), schema)
        .map_err(classify)
}

fn expr_has_subquery(expr: &Expr) -> bool {
    use datafusion::common::tree_node::TreeNode;
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ))
    })
    .unwrap_or(true)
}

/// Appends the steps computing `plan` to `steps`; returns the stream it reads and that
/// stream's schema.
pub(crate) fn compile(
    state: &SessionState,
    plan: &LogicalPlan,
    steps: &mut Vec<Step>,
) -> Result<(String, SchemaRef)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let source = compile(state, &p.input, steps)?;
            let exprs = p
                .expr
                .iter()
                .map(|e| physical(state, e, p.input.schema()))
                .collect::<Result<Vec<_>>>()?;
            steps.push(Step::Project {
                exprs,
                schema: Arc::new(p.schema.as_arrow().clone()),
            });
            Ok(source)
        }
        LogicalPlan::Filter(f) => {
            let source = compile(state, &f.input, steps)?;
            let predicate = physical(state, &f.predicate, f.input.schema())?;
            steps.push(Step::Filter(predicate));
            Ok(source)
        }
        LogicalPlan::SubqueryAlias(a) => compile(state, &a.input, steps),
        LogicalPlan::TableScan(t) => {
            if t.table_name.schema().is_some_and(|s| s != "public") {
                return Err(Error::Unsupported(
                    "push queries (EMIT CHANGES) read streams".into(),
                ));
            }
            let source_schema = t.source.schema();
            let full = DFSchema::try_from_qualified_schema(t.table_name.clone(), &source_schema)
                .map_err(classify)?;
            for filter in &t.filters {
                steps.push(Step::Filter(physical(state, filter, &full)?));
            }
            if let Some(projection) = &t.projection {
                let exprs = projection
                    .iter()
                    .map(|&i| -> Arc<dyn PhysicalExpr> {
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            source_schema.field(i).name(),
                            i,
                        ))
                    })
                    .collect();
                steps.push(Step::Project {
                    exprs,
                    schema: Arc::new(t.projected_schema.as_arrow().clone()),
                });
            }
            if t.fetch.is_some() {
                return Err(Error::Unsupported(SHAPE.into()));
            }
            Ok((t.table_name.table().to_string(), source_schema))
        }
        _ => Err(Error::Unsupported(SHAPE.into())),
    }
}
