//! Planning a statement under a session: the DataFusion context (ordinary, or with tables
//! read as their changelog streams), Eddy's rewrites, and a plan's parameter and result
//! types. Used by ad hoc queries, push queries and cursors alike.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::{Description, Error, Result, Session, rewrite};

/// Plans `statement`; `changelog`: tables read as their changelog topics (push queries).
pub(crate) async fn plan_in(
    session: &Session,
    statement: &Statement,
    changelog: bool,
) -> Result<LogicalPlan> {
    match statement {
        Statement::Query(_) | Statement::Insert(_) | Statement::Explain { .. } => {}
        Statement::CreateTable(_) | Statement::CreateView(_) => {
            return Err(Error::Unsupported(
                "this CREATE TABLE / CREATE VIEW form is not supported: use CREATE STREAM, \
                 CREATE TABLE (k TYPE PRIMARY KEY, ...) or CREATE STREAM|TABLE ... AS SELECT"
                    .into(),
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
    // Labels come from the statement as written (`'s'::regclass` is `regclass`, whatever it is
    // rewritten to), then once more for the columns a `*` expanded to.
    rewrite::label_columns(&mut statement);
    rewrite::rewrite(&mut statement, session.engine());
    rewrite::label_columns(&mut statement);
    let statement = DFStatement::Statement(Box::new(statement));
    if !changelog {
        return session.logical_plan(statement).await;
    }
    session
        .changelog_context()
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(Error::from_datafusion)
}

/// Parameter and result types of a planned statement.
pub(crate) fn describe_plan(plan: &LogicalPlan) -> Result<Description> {
    // Fields, not only types: a parameter going into a declared column (`JSON`, `UUID`)
    // carries its SQL type, and is announced as it.
    let mut types: HashMap<String, Option<FieldRef>> = plan
        .get_parameter_fields()
        .map_err(Error::from_datafusion)?;
    // As PostgreSQL infers it, a parameter nothing else types is of the type it is cast to
    // (`SELECT $1::BIGINT`); DataFusion leaves it unknown.
    if types.values().any(Option::is_none) {
        for (id, field) in cast_parameter_types(plan) {
            if let Some(slot @ None) = types.get_mut(&id) {
                *slot = Some(field);
            }
        }
    }
    let count = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let params = (1..=count)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    let is_insert = matches!(plan, LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)));
    let columns = (!is_insert).then(|| Arc::new(plan.schema().as_arrow().clone()));
    Ok(Description { params, columns })
}

/// The type each parameter is cast to, where the plan casts it (`CAST($1 AS BIGINT)`); the
/// first cast of a parameter cast twice.
fn cast_parameter_types(plan: &LogicalPlan) -> Vec<(String, FieldRef)> {
    let mut out: Vec<(String, FieldRef)> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                    && !out.iter().any(|(id, _)| *id == p.id)
                {
                    out.push((p.id.clone(), field.clone()));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    out
}
