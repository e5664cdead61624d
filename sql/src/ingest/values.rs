//! The fast path of `INSERT INTO s [(columns)] VALUES (...), ...`: rows of literals and
//! parameters go straight into arrays of the stream's column types and through the same
//! [`super::with_rowtime`] (declared-type checks, `rowtime`), [`super::encode`] (partitioner,
//! frames) and [`Writes::append`] (append or transaction block) as every other INSERT and COPY,
//! without a DataFusion plan. Planning `INSERT ... VALUES` through DataFusion cost more than
//! the append itself (`docs/design/2026-12-01-small-statements.md`).
//!
//! The path takes only what it can do exactly as the planned INSERT does, and gives the
//! statement back (`None`) for everything else, which then takes the general path:
//!
//! - the values are number, string, boolean and NULL literals (a number negated or not) and
//!   parameters, a parameter possibly cast to the type its client declared for it at Parse
//!   (`parser::declare_parameter_types` writes `$1::BIGINT` for psycopg's and pgjdbc's
//!   typed parameters) when that type is a boolean, integer, float or text; any other
//!   expression (another cast, a function, `DEFAULT`) is planned;
//! - each value is cast to its column's type with the cast the plan's projection applies
//!   (Arrow's, not lossy-safe: an overflow is an error); a decimal literal going into a
//!   DECIMAL column is read from its text, as `rewrite::types` makes the plan read it, and a
//!   string going into an array, map, struct or bytea column is left to the plan
//!   (`eddy_cast` reads PostgreSQL's text forms);
//! - **any error gives the statement back**: a value that does not cast, an unknown column,
//!   a wrong number of values, a table a persistent query maintains. The general path then
//!   fails it with exactly the SQLSTATE and message it always had, so this path never has an
//!   error of its own to keep in step. Only errors after the rows are built — a declared
//!   type's check, a full disk — come from here, and they come from the code both paths share.

use std::sync::{Arc, Weak};

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CastKind, Expr, Insert, ObjectNamePart, SetExpr, Statement, TableObject, UnaryOperator, Value,
};
use eddy_catalog::{RelationKind, StreamDef};
use eddy_storage::Topic;

use super::txn::Writes;
use crate::parser::{SqlType, bare_body, normalize_ident, placeholder_index};
use crate::{Engine, Result};

/// Up to this many rows an INSERT encodes its frames on the connection's task; more go to
/// the blocking pool (a long VALUES list must not stall the runtime's other connections).
const INLINE_ENCODE_ROWS: usize = 1024;

/// The cast of the planned INSERT's projection (DataFusion's `CastExpr` default): errors, not
/// NULLs, for values that do not fit.
const CAST: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// One value of a VALUES row, before parameters are bound.
#[derive(Debug, Clone)]
enum Slot {
    /// A literal, typed as DataFusion types SQL literals.
    Literal(ScalarValue),
    /// `$n` (0-based here), cast first to the type its client declared, if it declared one
    /// (the planned INSERT casts it to that type, then to its column's).
    Param(usize, Option<DataType>),
}

/// Where a position of the column list goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// A user column, by its index in the stream's definition.
    Column(usize),
    /// The `rowtime` pseudo-column of a stream.
    Rowtime,
}

/// An `INSERT ... VALUES` the fast path takes: its stream, its targets, its rows.
#[derive(Debug)]
pub struct ValuesInsert {
    def: StreamDef,
    /// Weak: a session keeps its statements' fast-path forms, and a dropped stream's files
    /// are released when the last handle to its topic goes.
    topic: Weak<Topic>,
    targets: Vec<Target>,
    rows: Vec<Vec<Slot>>,
    /// See [`ValuesInsert::param_fields`].
    params: Vec<Option<FieldRef>>,
}

impl ValuesInsert {
    /// The fast path's form of `statement`, or `None` when the statement is not an INSERT of
    /// literal and parameter rows into a stream or table that takes INSERTs (then it is
    /// planned, see the module doc).
    pub fn of(engine: &Engine, statement: &Statement) -> Option<ValuesInsert> {
        let Statement::Insert(insert) = statement else {
            return None;
        };
        let (def, topic) = target_stream(engine, insert)?;
        let targets = targets(&def, insert)?;
        let SetExpr::Values(values) = bare_body(insert.source.as_ref()?)? else {
            return None;
        };
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.len() != targets.len() {
                return None;
            }
            let slots = row
                .iter()
                .zip(&targets)
                .map(|(e, t)| slot(e, column_type(&def, *t)))
                .collect::<Option<Vec<_>>>()?;
            rows.push(slots);
        }
        let params = param_fields(&def, &targets, &rows);
        Some(ValuesInsert {
            def,
            topic: Arc::downgrade(&topic),
            targets,
            rows,
            params,
        })
    }

    /// The fields parameters `$1, $2, ...` go into: their columns' (with the declared SQL
    /// type), as the planned INSERT infers them, or the type a client declared. `None` for a
    /// number the statement skips.
    pub fn param_fields(&self) -> &[Option<FieldRef>] {
        &self.params
    }

    /// The stored batch of the statement's rows with `params` bound, or `None` when a value
    /// does not cast or a parameter is missing (the general path then reports it).
    fn batch(
        &self,
        params: &[ScalarValue],
    ) -> Option<Result<datafusion::arrow::array::RecordBatch>> {
        let n = self.def.columns.len();
        let mut user: Vec<Option<ArrayRef>> = vec![None; n];
        let mut rowtime = None;
        for (position, target) in self.targets.iter().enumerate() {
            let data_type = column_type(&self.def, *target);
            let values = self
                .rows
                .iter()
                .map(|row| match &row[position] {
                    Slot::Literal(v) => cast(v, &data_type),
                    Slot::Param(i, None) => cast(params.get(*i)?, &data_type),
                    Slot::Param(i, Some(declared)) => {
                        cast(&cast(params.get(*i)?, declared)?, &data_type)
                    }
                })
                .collect::<Option<Vec<_>>>()?;
            let array = if values.is_empty() {
                new_null_array(&data_type, 0)
            } else {
                ScalarValue::iter_to_array(values).ok()?
            };
            match target {
                Target::Column(c) => user[*c] = Some(array),
                Target::Rowtime => rowtime = Some(array),
            }
        }
        let rows = self.rows.len();
        let user = user
            .into_iter()
            .zip(&self.def.columns)
            .map(|(a, c)| a.unwrap_or_else(|| new_null_array(&c.data_type, rows)))
            .collect();
        Some(super::with_rowtime(&self.def, user, rowtime))
    }

    /// Runs the INSERT with `params` bound: `Some(rows written)`, or `None` when the
    /// statement must take the general path after all (a value that does not cast).
    pub async fn execute(
        self: &Arc<Self>,
        engine: &Arc<Engine>,
        writes: &Arc<Writes>,
        params: &[ScalarValue],
    ) -> Option<Result<u64>> {
        // Dropped since: the planned path reports it.
        let topic = self.topic.upgrade()?;
        let batch = match self.batch(params)? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let partitions = topic.partitions().len();
        let encoded = if batch.num_rows() <= INLINE_ENCODE_ROWS {
            // A few rows encode in microseconds: not worth a thread hop.
            super::encode(engine, &self.def, partitions, &[batch])
        } else {
            let (engine, insert) = (engine.clone(), self.clone());
            tokio::task::spawn_blocking(move || {
                super::encode(&engine, &insert.def, partitions, &[batch])
            })
            .await
            .unwrap_or_else(|e| Err(crate::Error::Internal(format!("insert task failed: {e}"))))
        };
        Some(match encoded {
            Ok(encoded) => writes.append(engine, &topic, encoded).await,
            Err(e) => Err(e),
        })
    }
}

/// The fields of the parameters a statement's rows use (see [`ValuesInsert::param_fields`]).
fn param_fields(def: &StreamDef, targets: &[Target], rows: &[Vec<Slot>]) -> Vec<Option<FieldRef>> {
    let schema = def.table_schema();
    let mut out: Vec<Option<FieldRef>> = Vec::new();
    for row in rows {
        for (slot, target) in row.iter().zip(targets) {
            if let Slot::Param(i, declared) = slot {
                if out.len() <= *i {
                    out.resize(*i + 1, None);
                }
                let index = match target {
                    Target::Column(c) => *c,
                    Target::Rowtime => def.columns.len(),
                };
                out[*i] = Some(match declared {
                    Some(t) => Arc::new(Field::new(format!("${}", i + 1), t.clone(), true)),
                    None => Arc::new(schema.field(index).clone()),
                });
            }
        }
    }
    out
}

/// The stream or table `insert` writes, if the fast path may write it: named by one plain
/// name (or `public.name`), not maintained by a persistent query.
fn target_stream(engine: &Engine, insert: &Insert) -> Option<(StreamDef, Arc<Topic>)> {
    if insert.on.is_some()
        || insert.returning.is_some()
        || insert.or.is_some()
        || insert.ignore
        || insert.replace_into
        || insert.output.is_some()
        || !insert.assignments.is_empty()
        || insert.settings.is_some()
        || insert.format_clause.is_some()
        || insert.overwrite
        || insert.partitioned.is_some()
        || !insert.after_columns.is_empty()
        || insert.table_alias.is_some()
    {
        return None;
    }
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(normalize_ident(i)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let stream = match parts.as_slice() {
        [name] => name,
        [schema, name] if schema == "public" => name,
        _ => return None,
    };
    let (def, topic) = engine.stream(stream).ok()?;
    if def.kind == RelationKind::Table {
        if engine
            .catalog()
            .queries()
            .iter()
            .any(|q| q.sink == def.name)
        {
            return None;
        }
        // A table whose store has other columns than its definition (a windowed sink) is
        // the planned path's to judge.
        if let Some(store) = engine.tables().get(&def.name)
            && store.schema().fields().len() != def.columns.len()
        {
            return None;
        }
    }
    Some((def, topic))
}

/// The targets of the column list (every user column when there is none), or `None` for an
/// unknown or repeated column, or a pseudo-column the log assigns.
fn targets(def: &StreamDef, insert: &Insert) -> Option<Vec<Target>> {
    if insert.columns.is_empty() {
        return Some((0..def.columns.len()).map(Target::Column).collect());
    }
    let mut out = Vec::with_capacity(insert.columns.len());
    for column in &insert.columns {
        let [ObjectNamePart::Identifier(ident)] = column.0.as_slice() else {
            return None;
        };
        let name = normalize_ident(ident);
        let target = match def.column_index(&name) {
            Some(i) => Target::Column(i),
            None if name == "rowtime" && def.kind == RelationKind::Stream => Target::Rowtime,
            None => return None,
        };
        if out.contains(&target) {
            return None;
        }
        out.push(target);
    }
    Some(out)
}

fn column_type(def: &StreamDef, target: Target) -> DataType {
    match target {
        Target::Column(i) => def.columns[i].data_type.clone(),
        Target::Rowtime => DataType::Timestamp(TimeUnit::Millisecond, None),
    }
}

/// A value the fast path takes, typed as DataFusion types it when it plans the VALUES.
fn slot(e: &Expr, target: DataType) -> Option<Slot> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => placeholder_index(p).map(|i| Slot::Param(i, None)),
            Value::Number(text, _) => number(text, false, &target).map(Slot::Literal),
            Value::SingleQuotedString(s) => (!reads_text_forms(&target))
                .then(|| Slot::Literal(ScalarValue::Utf8(Some(s.clone())))),
            Value::Boolean(b) => Some(Slot::Literal(ScalarValue::Boolean(Some(*b)))),
            Value::Null => Some(Slot::Literal(ScalarValue::Null)),
            _ => None,
        },
        Expr::Cast {
            kind: CastKind::Cast,
            expr,
            data_type,
            array: false,
            format: None,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => {
                    let declared = declared(data_type)?;
                    if declared == DataType::Utf8 && reads_text_forms(&target) {
                        return None;
                    }
                    Some(Slot::Param(placeholder_index(p)?, Some(declared)))
                }
                _ => None,
            },
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(text, _) => number(text, true, &target).map(Slot::Literal),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether a string going into a column of this type is read as PostgreSQL's text form by
/// `eddy_cast` (arrays, maps, structs, bytea): that cast is the plan's, so such a string is
/// planned.
fn reads_text_forms(target: &DataType) -> bool {
    matches!(
        target,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::Map(..)
            | DataType::Struct(_)
            | DataType::Binary
    )
}

/// The Arrow type of a parameter's declared type, for the types whose cast the fast path
/// repeats exactly as the plan makes it (DataFusion's SQL type mapping; text is `Utf8`
/// rather than the plan's `Utf8View`, the same characters). Others are planned.
fn declared(sql_type: &SqlType) -> Option<DataType> {
    Some(match sql_type {
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) => DataType::Int64,
        SqlType::Real | SqlType::Float4 => DataType::Float32,
        SqlType::DoublePrecision | SqlType::Float8 => DataType::Float64,
        SqlType::Text => DataType::Utf8,
        _ => return None,
    })
}

/// A number literal as DataFusion reads it (`Int64` if it fits, else `Float64` for one with a
/// fraction or exponent), or — going into a DECIMAL column — its text, which the cast reads
/// exactly. Anything else (a integer beyond `i64`) is planned.
fn number(text: &str, negative: bool, target: &DataType) -> Option<ScalarValue> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if matches!(target, DataType::Decimal128(..)) {
        return Some(ScalarValue::Utf8(Some(signed)));
    }
    if let Ok(i) = signed.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(i)));
    }
    if text.contains(['.', 'e', 'E']) {
        return signed
            .parse::<f64>()
            .ok()
            .map(|f| ScalarValue::Float64(Some(f)));
    }
    None
}

fn cast(value: &ScalarValue, to: &DataType) -> Option<ScalarValue> {
    if value.data_type() == *to {
        return Some(value.clone());
    }
    value.cast_to_with_options(to, &CAST).ok()
}
