//! Compiled per-batch pipelines: a DataFusion logical plan of filters and projections over one
//! stream, turned once into physical expressions ([`Step`]s) that run on each new batch with
//! Arrow kernels. Push queries run them on the rows they tail; persistent queries run them
//! before their aggregation or sink.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use crate::{Error, Result};

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

/// What a compiled pipeline can hold, for the error when a plan has more.
pub(crate) const SHAPE: &str = "push queries (EMIT CHANGES) support projections, WHERE filters and scalar \
    functions over one stream; aggregates, joins, windows, DISTINCT, ORDER BY and OFFSET are \
    not supported yet";

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

/// A logical expression over `schema` as a physical one; subqueries are refused.
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
        .map_err(Error::from_datafusion)
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
                .map_err(Error::from_datafusion)?;
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
