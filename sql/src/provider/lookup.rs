//! [`KeyLookup`]: a pull query by key answered straight from the table's store. `SELECT a, b
//! FROM t WHERE k = $1` (every lookup key column equal to a parameter or literal, nothing else)
//! is what an application sends most often, and planning it through DataFusion each time cost
//! many times the lookup itself. Recognised once, when the session plans the statement
//! (`exec::cache`), it then runs as: bind the key, wait until the store reflects what was
//! committed (as every pull query does), look the key up, project.
//!
//! It answers exactly what the planned query answers, or gives the query back: a key value
//! that is NULL or not already of its column's type (where the plan would compare after a
//! cast, `k = 1.5` on a BIGINT key), a select list or result other than plain columns of the
//! table, and any other clause all take the planned path.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use eddy_catalog::RelationKind;

use super::pull::CATCH_UP;
use crate::engine::TableStore;
use crate::parser::{
    bare_body, conjuncts, normalize_ident, normalize_object_name, placeholder_index,
};
use crate::{Engine, Result};

/// Where one key column's value comes from.
#[derive(Debug, Clone)]
enum KeyValue {
    Literal(ScalarValue),
    /// `$n`, 0-based.
    Param(usize),
}

/// A recognised pull query by key.
#[derive(Debug)]
pub struct KeyLookup {
    store: Arc<TableStore>,
    /// The value of each lookup column, in the store's lookup order.
    key: Vec<(KeyValue, DataType)>,
    /// Store columns of the result, in order.
    projection: Vec<usize>,
    /// The result's schema, as the planned query has it (names, labels).
    schema: SchemaRef,
}

impl KeyLookup {
    /// The lookup `statement` is, when it is one; `schema` is its planned result.
    pub fn of(engine: &Engine, statement: &Statement, schema: &SchemaRef) -> Option<Self> {
        let Statement::Query(query) = statement else {
            return None;
        };
        let SetExpr::Select(select) = bare_body(query)? else {
            return None;
        };
        let plain_group_by = matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if select.distinct.is_some()
            || select.select_modifiers.is_some()
            || select.top.is_some()
            || select.exclude.is_some()
            || select.into.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !plain_group_by
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.having.is_some()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || !select.connect_by.is_empty()
            || select.value_table_mode.is_some()
        {
            return None;
        }
        let [from] = select.from.as_slice() else {
            return None;
        };
        if !from.joins.is_empty() {
            return None;
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            partitions,
            json_path: None,
            sample: None,
            index_hints,
            ..
        } = &from.relation
        else {
            return None;
        };
        if !with_hints.is_empty()
            || !partitions.is_empty()
            || !index_hints.is_empty()
            || name.0.len() != 1
            || alias.as_ref().is_some_and(|a| !a.columns.is_empty())
        {
            return None;
        }
        let table = normalize_object_name(name);
        let def = engine.catalog().stream(&table)?;
        if def.kind != RelationKind::Table {
            return None;
        }
        let store = engine.tables().get(&table)?;
        let store_schema = store.schema();
        let qualifier = alias
            .as_ref()
            .map(|a| normalize_ident(&a.name))
            .unwrap_or(table);
        let column = |e: &Expr| -> Option<usize> {
            let name = match e {
                Expr::Identifier(i) => normalize_ident(i),
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [q, c] if normalize_ident(q) == qualifier => normalize_ident(c),
                    _ => return None,
                },
                _ => return None,
            };
            store_schema.index_of(&name).ok()
        };

        let mut projection = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    projection.push(column(e)?)
                }
                SelectItem::Wildcard(opts) if opts.opt_exclude.is_none() => {
                    projection.extend(0..store_schema.fields().len())
                }
                _ => return None,
            }
        }
        // The planned result must be exactly these columns, by type.
        if projection.len() != schema.fields().len()
            || projection
                .iter()
                .zip(schema.fields())
                .any(|(&c, f)| store_schema.field(c).data_type() != f.data_type())
        {
            return None;
        }

        // An AND of equalities only.
        let equalities = conjuncts(select.selection.as_ref()?)
            .into_iter()
            .map(|term| match term {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => Some((left.as_ref(), right.as_ref())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let lookup: Vec<usize> = store
            .lookup_columns()
            .iter()
            .map(|c| store_schema.index_of(c).ok())
            .collect::<Option<_>>()?;
        if equalities.len() != lookup.len() {
            return None;
        }
        let mut key = Vec::with_capacity(lookup.len());
        for &c in &lookup {
            let data_type = store_schema.field(c).data_type().clone();
            let value = equalities.iter().find_map(|(l, r)| {
                if column(l) == Some(c) {
                    key_value(r)
                } else if column(r) == Some(c) {
                    key_value(l)
                } else {
                    None
                }
            })?;
            key.push((value, data_type));
        }
        Some(KeyLookup {
            store,
            key,
            projection,
            schema: schema.clone(),
        })
    }

    /// Runs the lookup with `params` bound: the result rows, or `None` when the planned query
    /// must answer (a NULL key, a value of another type than its column).
    pub async fn run(&self, params: &[ScalarValue]) -> Option<Result<RecordBatch>> {
        let mut key = Vec::with_capacity(self.key.len());
        for (value, data_type) in &self.key {
            let value = match value {
                KeyValue::Literal(v) => v,
                KeyValue::Param(i) => params.get(*i)?,
            };
            if value.is_null() || value.data_type() != *data_type {
                return None;
            }
            key.push(value.clone());
        }
        if !self.store.catch_up(CATCH_UP).await {
            tracing::warn!("pull query served before the table caught up");
        }
        let rows = self
            .store
            .scan(Some(&key))
            .map_err(crate::Error::from_datafusion)
            .and_then(|batch| {
                let columns = self
                    .projection
                    .iter()
                    .map(|&c| batch.column(c).clone())
                    .collect();
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            });
        Some(rows)
    }
}

/// A key value the lookup takes: a parameter, or an integer or string literal typed as
/// DataFusion types it.
fn key_value(e: &Expr) -> Option<KeyValue> {
    let Expr::Value(v) = e else {
        return None;
    };
    match &v.value {
        Value::Placeholder(p) => placeholder_index(p).map(KeyValue::Param),
        Value::Number(n, _) => n
            .parse::<i64>()
            .ok()
            .map(|i| KeyValue::Literal(ScalarValue::Int64(Some(i)))),
        Value::SingleQuotedString(s) => Some(KeyValue::Literal(ScalarValue::Utf8(Some(s.clone())))),
        _ => None,
    }
}
