//! [`PushPlan`]: a push query compiled to physical expressions applied to each new batch.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, LimitClause, Statement, Value};
use eddy_storage::Topic;

use crate::exec::{SHAPE, Step, compile, plan_in, run_steps};
use crate::{Error, Result, Session};

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
            plan = plan
                .with_param_values(params)
                .map_err(Error::from_datafusion)?;
        }
        let state = session.context().state();
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(Error::from_datafusion)?;
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
