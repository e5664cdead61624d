//! Everything DataFusion plans: `SELECT`, `INSERT INTO ... VALUES | SELECT`, `EXPLAIN`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::physical_plan::{collect, execute_stream};
use datafusion::sql::sqlparser::ast::Statement;

use crate::exec::cache::planned;
use crate::{Description, Error, Output, Result, Session};

/// Plans and runs a statement; `params` binds `$1, $2, ...`.
pub async fn execute(
    session: &Session,
    statement: &Statement,
    params: Option<Vec<ScalarValue>>,
) -> Result<Output> {
    if let Some(columns) = provably_empty_catalog_query(statement) {
        let fields: Vec<_> = columns
            .iter()
            .map(|c| datafusion::arrow::datatypes::Field::new(c, DataType::Utf8, true))
            .collect();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        return crate::handlers::show::rows(datafusion::arrow::array::RecordBatch::new_empty(
            schema,
        ));
    }
    let planned = planned(session, statement).await?;
    if let Some(lookup) = &planned.lookup
        && session.fast_paths()
        && let Some(rows) = lookup.run(params.as_deref().unwrap_or(&[])).await
    {
        return crate::handlers::show::rows(rows?);
    }
    if let Some(constant) = &planned.constant
        && params.as_ref().is_none_or(Vec::is_empty)
    {
        let stream = constant.execute(session.task_ctx())?;
        return Ok(Output::Rows {
            schema: stream.schema(),
            stream,
        });
    }
    let mut plan = planned.plan.clone();
    if let Some(params) = params
        && !params.is_empty()
    {
        plan = plan
            .with_param_values(params)
            .map_err(Error::from_datafusion)?;
    }
    let is_insert = matches!(&plan, LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)));
    let physical = session.physical_plan(&plan).await?;
    if is_insert {
        let batches = collect(physical, session.task_ctx())
            .await
            .map_err(Error::from_datafusion)?;
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
    let stream = execute_stream(physical, session.task_ctx()).map_err(Error::from_datafusion)?;
    Ok(Output::Rows {
        schema: stream.schema(),
        stream,
    })
}

/// Parameter and result types of a statement.
pub async fn describe(session: &Session, statement: &Statement) -> Result<Description> {
    Ok(planned(session, statement).await?.description.clone())
}

/// Whether `select` reads `pg_constraint` (first, joined by inner joins) for a kind of
/// constraint Eddy never has: `pg_constraint` holds only tables' primary keys (`contype =
/// 'p'`), so pgcli's foreign-key query (`WHERE fk.contype = 'f'`) has no rows.
fn only_absent_constraints(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, JoinOperator, TableFactor, Value};
    let [twj] = select.from.as_slice() else {
        return false;
    };
    let TableFactor::Table { name, .. } = &twj.relation else {
        return false;
    };
    if crate::parser::normalize_object_name(name) != "pg_constraint"
        || !twj.joins.iter().all(|j| {
            matches!(
                j.join_operator,
                JoinOperator::Join(_) | JoinOperator::Inner(_)
            )
        })
    {
        return false;
    }
    let Some(selection) = &select.selection else {
        return false;
    };
    crate::parser::conjuncts(selection).iter().any(|c| {
        matches!(c, Expr::BinaryOp { left, op: BinaryOperator::Eq, right }
            if (matches!(left.as_ref(), Expr::Identifier(i) if i.value == "contype")
                || matches!(left.as_ref(), Expr::CompoundIdentifier(p) if p.last().is_some_and(|i| i.value == "contype")))
            && matches!(right.as_ref(), Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(k) if k != "p")))
    })
}

/// Whether a query reads from a `pg_catalog` relation Eddy keeps empty, in a way that makes the
/// whole result empty (the relation is the left side of every join, no aggregate), as psql's
/// footer queries for `\d name` do. Such queries answer with no rows and text columns, exactly
/// what PostgreSQL returns for them on a table without policies, publications, parents, ...
pub fn provably_empty_catalog_query(statement: &Statement) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::ast::{JoinOperator, SelectItem, SetExpr, TableFactor};
    let Statement::Query(query) = statement else {
        return None;
    };
    fn select_of(body: &SetExpr) -> Option<&datafusion::sql::sqlparser::ast::Select> {
        match body {
            SetExpr::Select(s) => Some(s),
            SetExpr::SetOperation { left, .. } => select_of(left),
            SetExpr::Query(q) => select_of(&q.body),
            _ => None,
        }
    }
    fn all_empty(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => {
                // A cross product (comma list) with an empty factor is empty; so is an empty
                // relation on the left of inner/left joins.
                let any_empty_factor = select.from.iter().any(|twj| {
                    let empty = matches!(&twj.relation, TableFactor::Table { name, .. }
                        if name.0.len() == 2
                            && name.0[0].as_ident().is_some_and(|i| i.value == "pg_catalog")
                            && crate::provider::pg_catalog::ALWAYS_EMPTY
                                .contains(&crate::parser::normalize_object_name(name).as_str()));
                    empty
                        && twj.joins.iter().all(|j| {
                            matches!(
                                j.join_operator,
                                JoinOperator::Join(_)
                                    | JoinOperator::Inner(_)
                                    | JoinOperator::Left(_)
                                    | JoinOperator::LeftOuter(_)
                                    | JoinOperator::CrossJoin(_)
                            )
                        })
                });
                // A top-level aggregate over no rows still yields one row.
                let aggregates = select.projection.iter().any(|item| {
                    let expr = match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                        _ => return false,
                    };
                    matches!(expr, datafusion::sql::sqlparser::ast::Expr::Function(f)
                        if ["count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and", "bool_or"]
                            .contains(&crate::parser::normalize_object_name(&f.name).as_str()))
                });
                (any_empty_factor || only_absent_constraints(select))
                    && !aggregates
                    && select.having.is_none()
            }
            SetExpr::SetOperation { left, right, .. } => all_empty(left) && all_empty(right),
            SetExpr::Query(q) => all_empty(&q.body),
            _ => false,
        }
    }
    if !all_empty(&query.body) {
        return None;
    }
    let select = select_of(&query.body)?;
    Some(
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(
                    datafusion::sql::sqlparser::ast::Expr::CompoundIdentifier(parts),
                ) => parts.last().map(|p| p.value.clone()).unwrap_or_default(),
                SelectItem::UnnamedExpr(datafusion::sql::sqlparser::ast::Expr::Identifier(i)) => {
                    i.value.clone()
                }
                _ => "?column?".to_string(),
            })
            .collect(),
    )
}
