//! Everything DataFusion plans: `SELECT`, `INSERT INTO ... VALUES | SELECT`, `EXPLAIN`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::{Description, Error, Output, Result, Session, rewrite};

/// Turns a DataFusion error into a categorised [`Error`] (unknown stream, unknown column, ...).
pub fn classify(e: DataFusionError) -> Error {
    let root = e.find_root();
    match root {
        DataFusionError::Plan(msg) if msg.starts_with("table '") && msg.contains("not found") => {
            let name = msg
                .trim_start_matches("table '")
                .split('\'')
                .next()
                .unwrap_or_default();
            let name = name.rsplit('.').next().unwrap_or(name);
            Error::UnknownStream(name.to_string())
        }
        DataFusionError::SchemaError(..) if root.to_string().contains("No field named") => {
            Error::UnknownColumn(root.to_string())
        }
        DataFusionError::SQL(p, _) => Error::Syntax(p.to_string()),
        DataFusionError::External(inner) if inner.is::<Error>() => match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(DataFusionError::External(other)),
            },
            other => Error::DataFusion(other),
        },
        _ => Error::DataFusion(e),
    }
}

async fn plan(session: &Session, statement: &Statement) -> Result<LogicalPlan> {
    match statement {
        Statement::Query(_) | Statement::Insert(_) | Statement::Explain { .. } => {}
        Statement::CreateTable(_) | Statement::CreateView(_) => {
            return Err(Error::Unsupported(
                "CREATE TABLE and CREATE VIEW are not supported yet; use CREATE STREAM".into(),
            ));
        }
        other => {
            let kind = other
                .to_string()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(Error::Unsupported(format!(
                "statement not supported: {kind}"
            )));
        }
    }
    let mut statement = statement.clone();
    rewrite::rewrite(&mut statement, session.engine());
    let state = session.context().state();
    state
        .statement_to_plan(DFStatement::Statement(Box::new(statement)))
        .await
        .map_err(classify)
}

/// Plans and runs a statement; `params` binds `$1, $2, ...`.
pub async fn execute(
    session: &Session,
    statement: &Statement,
    params: Option<Vec<ScalarValue>>,
) -> Result<Output> {
    let mut plan = plan(session, statement).await?;
    if let Some(params) = params
        && !params.is_empty()
    {
        plan = plan.with_param_values(params).map_err(classify)?;
    }
    let is_insert = matches!(&plan, LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)));
    let df = session
        .context()
        .execute_logical_plan(plan)
        .await
        .map_err(classify)?;
    if is_insert {
        let batches = df.collect().await.map_err(classify)?;
        let rows: u64 = batches
            .iter()
            .filter(|b| b.num_columns() > 0)
            .map(|b| {
                let col = b.column(0);
                match col.data_type() {
                    DataType::UInt64 => col
                        .as_primitive::<UInt64Type>()
                        .iter()
                        .flatten()
                        .sum::<u64>(),
                    _ => 0,
                }
            })
            .sum();
        return Ok(Output::Command {
            tag: "INSERT 0".into(),
            rows: Some(rows as usize),
        });
    }
    let stream = df.execute_stream().await.map_err(classify)?;
    Ok(Output::Rows {
        schema: stream.schema(),
        stream,
    })
}

/// Parameter and result types of a statement.
pub async fn describe(session: &Session, statement: &Statement) -> Result<Description> {
    let plan = plan(session, statement).await?;
    let types: HashMap<String, Option<DataType>> = plan.get_parameter_types().map_err(classify)?;
    let count = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let params = (1..=count)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    let is_insert = matches!(&plan, LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)));
    let columns = (!is_insert).then(|| Arc::new(plan.schema().as_arrow().clone()));
    Ok(Description { params, columns })
}
