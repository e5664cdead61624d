//! [`ContinuousPlan`]: a persistent query's `SELECT`, planned once by DataFusion and compiled
//! into what runs on each batch: stateless steps (filters, projections, scalar functions as
//! physical expressions) and, for `CREATE TABLE ... AS SELECT`, a keyed (windowed) aggregation.
//!
//! Planning happens in a private DataFusion context where every stream is an empty table with
//! its SQL schema (plus `windowstart`/`windowend` when the query has a `WINDOW`), so planning
//! never reads data. `WINDOWSTART`/`WINDOWEND` are added to the `GROUP BY` of a windowed
//! query, and to its output when it does not select them (they are part of the table's key).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, GroupByExpr, Ident, SelectItem, SetExpr, Statement,
};
use eddy_catalog::{PSEUDO_COLUMNS, RelationKind, StreamDef};

use super::aggregate::AggFn;
use super::window::Windowing;

use crate::exec::{Step, compile, physical};
use crate::parser::{Emit, PersistentQuery, SinkKind};
use crate::{Engine, Error, Result, functions, rewrite};

/// Name of the hidden column that carries each input row's `rowtime` through a stateless
/// query, so the output row keeps its event time.
pub(crate) const ROWTIME_CARRIER: &str = "__eddy_rowtime";

/// A persistent query compiled for its runner.
pub(crate) struct ContinuousPlan {
    /// The stream or table it reads.
    pub source: StreamDef,
    /// Steps over the source's batches (SQL schema, plus null window columns when windowed).
    pub pre: Vec<Step>,
    /// Stateless, or an aggregation.
    pub shape: Shape,
    /// The output columns, as the sink stores them (without `rowtime`).
    pub output: SchemaRef,
    /// The DataFusion plan, for `EXPLAIN <query id>`.
    pub logical: String,
}

/// What happens after the stateless steps.
pub(crate) enum Shape {
    /// Rows go straight to the sink; the last column of the steps' output is the row time.
    Stateless,
    /// A keyed aggregation.
    Aggregate(Arc<AggregatePlan>),
}

/// One column of DataFusion's aggregate output that is a group key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupCol {
    /// The n-th key expression.
    Key(usize),
    WindowStart,
    WindowEnd,
}

/// One aggregate: its function, its argument (`None`: counts rows) and the argument's type.
pub(crate) type AggExpr = (AggFn, Option<Arc<dyn PhysicalExpr>>, DataType);

/// A compiled `GROUP BY` aggregation.
pub(crate) struct AggregatePlan {
    /// Per group column of the aggregate output: a key or a window bound.
    pub group: Vec<GroupCol>,
    /// Key expressions over the steps' output, and their types.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Per key expression, the source column it is, when it is a plain column.
    pub key_columns: Vec<Option<String>>,
    pub key_types: Vec<DataType>,
    /// Aggregates: function, argument (`None`: counts rows), argument type.
    pub aggs: Vec<AggExpr>,
    /// DataFusion's aggregate output schema: group columns, then aggregates.
    pub agg_schema: SchemaRef,
    /// Steps from the aggregate output to the query's output (HAVING, SELECT list).
    pub post: Vec<Step>,
    /// Output columns holding each key expression, and the window bounds.
    pub key_outputs: Vec<usize>,
    pub window_outputs: Option<(usize, usize)>,
    /// The `WINDOW` clause.
    pub windowing: Option<Windowing>,
    /// `EMIT CHANGES` or `EMIT FINAL`.
    pub emit: Emit,
    /// Columns of the steps' output holding `rowtime` and `rowpartition`.
    pub rowtime_col: usize,
}

impl ContinuousPlan {
    /// Whether the query can run as one task per source partition: every row it combines
    /// with another lives in the same partition. True for row-by-row queries, and for
    /// aggregations grouped by exactly the source's KEY column (rows of a key share a
    /// partition). Other groupings need all partitions in one task.
    pub(crate) fn per_partition(&self) -> bool {
        match &self.shape {
            Shape::Stateless => true,
            Shape::Aggregate(a) => {
                let key = self.source.key_column().map(|(_, c)| c.name.clone());
                key.is_some() && a.key_columns == vec![key]
            }
        }
    }
}

/// An empty table with `schema`: planning needs schemas, never data.
fn empty_table(schema: SchemaRef) -> Result<Arc<MemTable>> {
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![]]).map_err(Error::from_datafusion)?,
    ))
}

/// The source schema a persistent query plans against.
pub(crate) fn source_schema(def: &StreamDef, windowed: bool) -> SchemaRef {
    let schema = def.table_schema();
    if !windowed {
        return schema;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("windowstart", DataType::Int64, true));
    fields.push(Field::new("windowend", DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Adds the null window columns to a source batch of a windowed query.
pub(crate) fn with_window_columns(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for _ in 0..2 {
        columns.push(new_null_array(&DataType::Int64, batch.num_rows()));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn planning_context(engine: &Engine, windowed: bool) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("eddy", "public");
    let ctx = SessionContext::new_with_config(config);
    let schema = MemorySchemaProvider::new();
    for def in engine.catalog().streams() {
        use datafusion::catalog::SchemaProvider;
        schema
            .register_table(
                def.name.clone(),
                empty_table(source_schema(&def, windowed))?,
            )
            .map_err(Error::from_datafusion)?;
    }
    let catalog = MemoryCatalogProvider::new();
    catalog
        .register_schema("public", Arc::new(schema))
        .map_err(Error::from_datafusion)?;
    ctx.register_catalog("eddy", Arc::new(catalog));
    functions::register(&ctx);
    Ok(ctx)
}

/// Plans and compiles a persistent query against the engine's current catalog.
pub(crate) async fn plan(engine: &Engine, q: &PersistentQuery) -> Result<ContinuousPlan> {
    let Statement::Query(query) = q.query.as_ref() else {
        return Err(Error::Internal("persistent query is not a query".into()));
    };
    let mut query = query.clone();
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(Error::Unsupported(
            "persistent queries take no ORDER BY, LIMIT or FETCH".into(),
        ));
    }
    let windowed = q.window.is_some();
    let aggregate = {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(Error::Unsupported(
                "a persistent query is one SELECT".into(),
            ));
        };
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        if windowed {
            if !grouped {
                return Err(Error::Invalid(
                    "WINDOW needs a GROUP BY: a window aggregates rows".into(),
                ));
            }
            if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
                for w in ["windowstart", "windowend"] {
                    exprs.push(SqlExpr::Identifier(Ident::new(w)));
                }
            }
        }
        if !grouped {
            select.projection.push(SelectItem::ExprWithAlias {
                expr: SqlExpr::Identifier(Ident::new("rowtime")),
                alias: Ident::with_quote('"', ROWTIME_CARRIER),
            });
        }
        grouped
    };
    match (q.kind, aggregate) {
        (SinkKind::CreateTable, false) => {
            return Err(Error::Invalid(
                "CREATE TABLE ... AS SELECT needs a GROUP BY (a table has a key); use CREATE \
                 STREAM ... AS SELECT for row-by-row queries"
                    .into(),
            ));
        }
        (SinkKind::CreateStream | SinkKind::InsertInto, true) => {
            return Err(Error::Invalid(
                "an aggregation (GROUP BY) makes a table: use CREATE TABLE ... AS SELECT".into(),
            ));
        }
        _ => {}
    }
    let ctx = planning_context(engine, windowed)?;
    let mut statement = Statement::Query(query);
    rewrite::rewrite(&mut statement, engine);
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DFStatement::Statement(Box::new(statement)))
        .await
        .map_err(Error::from_datafusion)?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .map_err(Error::from_datafusion)?;
    let logical = plan.display_indent().to_string();
    let (pre, source, shape, output) = if aggregate {
        compile_aggregate(&state, &plan, q)?
    } else {
        let mut pre = Vec::new();
        let (source, _) = compile(&state, &plan, &mut pre)?;
        let schema = plan.schema().as_arrow();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != ROWTIME_CARRIER)
            .map(|f| f.as_ref().clone())
            .collect();
        (pre, source, Shape::Stateless, Arc::new(Schema::new(fields)))
    };
    let source = engine
        .catalog()
        .stream(&source)
        .ok_or_else(|| Error::UnknownStream(source.clone()))?;
    if aggregate && source.kind == RelationKind::Table {
        return Err(Error::Unsupported(format!(
            "aggregating table \"{}\" needs retractions of updated rows, which Eddy does not \
             do yet; aggregate a stream",
            source.name
        )));
    }
    Ok(ContinuousPlan {
        source,
        pre,
        shape,
        output: output_names(&output)?,
        logical,
    })
}

type Compiled = (Vec<Step>, String, Shape, SchemaRef);

fn compile_aggregate(
    state: &SessionState,
    plan: &LogicalPlan,
    q: &PersistentQuery,
) -> Result<Compiled> {
    // Projection [Filter (HAVING)] Aggregate input
    let LogicalPlan::Projection(projection) = plan else {
        return Err(Error::Unsupported(
            "this aggregation's shape is not supported in a persistent query".into(),
        ));
    };
    let mut post = Vec::new();
    let mut below = projection.input.as_ref();
    let mut having = None;
    if let LogicalPlan::Filter(f) = below {
        having = Some(f);
        below = f.input.as_ref();
    }
    let LogicalPlan::Aggregate(agg) = below else {
        return Err(Error::Unsupported(
            "a persistent aggregation is SELECT keys, aggregates FROM stream [WINDOW ...] \
             [WHERE ...] GROUP BY keys [HAVING ...]"
                .into(),
        ));
    };
    let mut pre = Vec::new();
    let (source, _) = compile(state, &agg.input, &mut pre)?;
    let input_schema = agg.input.schema();
    let mut group = Vec::new();
    let mut keys = Vec::new();
    let mut key_types = Vec::new();
    let mut key_columns = Vec::new();
    for e in &agg.group_expr {
        match e {
            Expr::Column(c) if c.name == "windowstart" && q.window.is_some() => {
                group.push(GroupCol::WindowStart)
            }
            Expr::Column(c) if c.name == "windowend" && q.window.is_some() => {
                group.push(GroupCol::WindowEnd)
            }
            e => {
                group.push(GroupCol::Key(keys.len()));
                let t = e.get_type(input_schema).map_err(Error::from_datafusion)?;
                key_types.push(t);
                key_columns.push(match e {
                    Expr::Column(c) => Some(c.name.clone()),
                    _ => None,
                });
                keys.push(physical(state, e, input_schema)?);
            }
        }
    }
    if keys.is_empty() {
        return Err(Error::Invalid(
            "GROUP BY needs at least one key column".into(),
        ));
    }
    let mut aggs = Vec::new();
    for e in &agg.aggr_expr {
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(f) = inner else {
            return Err(Error::Unsupported(format!("aggregate {e}")));
        };
        let p = &f.params;
        if p.filter.is_some() || !p.order_by.is_empty() {
            return Err(Error::Unsupported(
                "FILTER and ORDER BY inside aggregates are not supported in persistent queries"
                    .into(),
            ));
        }
        let func = AggFn::from_name(f.func.name(), p.distinct).ok_or_else(|| {
            Error::Unsupported(format!(
                "aggregate {} is not supported in persistent queries (COUNT, SUM, AVG, MIN, MAX, \
                 COUNT_DISTINCT, LATEST_BY_OFFSET, EARLIEST_BY_OFFSET are)",
                f.func.name()
            ))
        })?;
        let (arg, arg_type) = match p.args.as_slice() {
            [] => (None, DataType::Null),
            [Expr::Literal(v, _)] if func == AggFn::Count && !v.is_null() => (None, DataType::Null),
            [a] => {
                let t = a.get_type(input_schema).map_err(Error::from_datafusion)?;
                (Some(physical(state, a, input_schema)?), t)
            }
            _ => {
                return Err(Error::Unsupported(format!(
                    "{} with several arguments",
                    f.func.name()
                )));
            }
        };
        aggs.push((func, arg, arg_type));
    }
    if let Some(f) = having {
        post.push(Step::Filter(physical(
            state,
            &f.predicate,
            agg.schema.as_ref(),
        )?));
    }
    let agg_schema: SchemaRef = Arc::new(agg.schema.as_arrow().clone());
    // The SELECT list over the aggregate output; window bounds appended when not selected.
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut key_outputs = vec![usize::MAX; keys.len()];
    let mut window_outputs = (usize::MAX, usize::MAX);
    for (i, e) in projection.expr.iter().enumerate() {
        // Nullable: a table's tombstones carry NULL in every non-key column.
        let field = projection
            .schema
            .field(i)
            .as_ref()
            .clone()
            .with_nullable(true);
        if let Some(g) = group_col_of(e, agg) {
            match group[g] {
                GroupCol::Key(k) if key_outputs[k] == usize::MAX => key_outputs[k] = i,
                GroupCol::WindowStart => window_outputs.0 = i,
                GroupCol::WindowEnd => window_outputs.1 = i,
                _ => {}
            }
        }
        exprs.push(physical(state, e, agg.schema.as_ref())?);
        fields.push(field);
    }
    if let Some(k) = key_outputs.iter().position(|&o| o == usize::MAX) {
        return Err(Error::Invalid(format!(
            "GROUP BY key {} must be selected as a column: it is the table's primary key",
            agg.group_expr[group
                .iter()
                .position(|g| *g == GroupCol::Key(k))
                .unwrap_or(0)]
        )));
    }
    let window_outputs = if q.window.is_some() {
        for (slot, (name, col)) in [
            (
                &mut window_outputs.0,
                ("windowstart", GroupCol::WindowStart),
            ),
            (&mut window_outputs.1, ("windowend", GroupCol::WindowEnd)),
        ] {
            if *slot == usize::MAX {
                let g = group.iter().position(|x| *x == col).unwrap_or(0);
                *slot = exprs.len();
                exprs.push(Arc::new(ColumnExpr::new(agg_schema.field(g).name(), g)));
                fields.push(Field::new(name, DataType::Int64, false));
            }
        }
        Some(window_outputs)
    } else {
        None
    };
    let output: SchemaRef = Arc::new(Schema::new(fields));
    post.push(Step::Project {
        exprs,
        schema: output.clone(),
    });
    let pre_schema = agg.input.schema().as_arrow();
    let rowtime_col = pre_schema
        .index_of(PSEUDO_COLUMNS[0])
        .ok()
        .filter(|_| pre_schema.index_of(PSEUDO_COLUMNS[1]).is_ok())
        .ok_or_else(|| {
            Error::Unsupported(
                "a persistent aggregation reads its stream directly (no subquery that drops \
                 rowtime)"
                    .into(),
            )
        })?;
    let plan = AggregatePlan {
        group,
        keys,
        key_columns,
        key_types,
        aggs,
        agg_schema,
        post,
        key_outputs,
        window_outputs,
        windowing: q.window.as_ref().map(Windowing::new),
        emit: q.emit,
        rowtime_col,
    };
    Ok((pre, source, Shape::Aggregate(Arc::new(plan)), output))
}

/// Which group column of `agg` a SELECT item is, if it is one as it stands.
fn group_col_of(e: &Expr, agg: &datafusion::logical_expr::Aggregate) -> Option<usize> {
    let inner = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::Column(c) = inner else { return None };
    let fields = agg.schema.columns();
    let g = fields.iter().position(|f: &Column| f.name == c.name)?;
    (g < agg.group_expr.len()).then_some(g)
}

/// Output columns named as the sink stores them: plain identifiers kept, expressions named
/// `ksql_col_<i>` as ksqlDB does; pseudo-column names refused.
fn output_names(schema: &SchemaRef) -> Result<SchemaRef> {
    let mut seen = std::collections::HashSet::new();
    let mut fields = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let plain = f
            .name()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !f.name().starts_with(|c: char| c.is_ascii_digit());
        let name = if plain {
            f.name().clone()
        } else {
            format!("ksql_col_{i}")
        };
        if PSEUDO_COLUMNS.contains(&name.as_str()) {
            return Err(Error::Invalid(format!(
                "output column \"{name}\" is a pseudo-column of the sink; give it another name \
                 (AS ...)"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::Invalid(format!(
                "output column \"{name}\" appears twice; give one another name (AS ...)"
            )));
        }
        // The field itself (its declared SQL type, if it carries one), renamed.
        fields.push(f.as_ref().clone().with_name(name).with_nullable(true));
    }
    Ok(Arc::new(Schema::new(fields)))
}
