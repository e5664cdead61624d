//! `CREATE STREAM|TABLE ... AS SELECT`, `INSERT INTO ... SELECT ... EMIT CHANGES`,
//! `SHOW QUERIES`, `EXPLAIN <query id>`, `TERMINATE`, `SHOW TABLES`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use eddy_catalog::RelationKind;

use super::show::{rows, schema};
use crate::parser::{PersistentQuery, SinkKind};
use crate::push::StartAt;
use crate::{Error, Output, Result, Session, continuous};

/// Creates and starts a persistent query.
pub async fn create(session: &Session, q: &PersistentQuery) -> Result<Output> {
    let tag = match q.kind {
        SinkKind::CreateStream => "CREATE STREAM",
        SinkKind::CreateTable => "CREATE TABLE",
        SinkKind::InsertInto => "INSERT 0",
    };
    let done = |rows| {
        Ok(Output::Command {
            tag: tag.into(),
            rows,
        })
    };
    let engine = session.engine();
    if q.if_not_exists && engine.catalog().stream(&q.sink).is_some() {
        return done(None);
    }
    let earliest = StartAt::of(session) == StartAt::Earliest;
    let id = continuous::create(engine, q, earliest).await?;
    tracing::info!(query = %id, sink = %q.sink, "persistent query started");
    done(matches!(q.kind, SinkKind::InsertInto).then_some(0))
}

/// Columns of `SHOW QUERIES`.
pub fn queries_schema() -> SchemaRef {
    schema(&[
        ("query_id", DataType::Utf8),
        ("status", DataType::Utf8),
        ("sink", DataType::Utf8),
        ("sources", DataType::Utf8),
        ("rows_in", DataType::Int64),
        ("rows_out", DataType::Int64),
        ("late_rows", DataType::Int64),
        ("lag", DataType::Int64),
        ("groups", DataType::Int64),
        ("statement", DataType::Utf8),
    ])
}

/// `SHOW QUERIES`: one row per persistent query.
pub fn show_queries(session: &Session) -> Result<Output> {
    let queries = session.engine().queries().list();
    let count = |f: &dyn Fn(&crate::engine::Status) -> &std::sync::atomic::AtomicU64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            queries.iter().map(|q| q.total(f) as i64),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.def.id.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.state().to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.def.sink.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.def.sources.join(", ")),
        )),
        count(&|s| &s.rows_in),
        count(&|s| &s.rows_out),
        count(&|s| &s.late),
        count(&|s| &s.lag),
        count(&|s| &s.groups),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.def.sql.clone()),
        )),
    ];
    rows(RecordBatch::try_new(queries_schema(), columns)?)
}

/// Columns of `EXPLAIN <query id>`.
pub fn explain_schema() -> SchemaRef {
    schema(&[("plan", DataType::Utf8)])
}

/// `EXPLAIN <query id>`: the query's statement, status and plan, a line a row.
pub fn explain(session: &Session, id: &str) -> Result<Output> {
    let q = session
        .engine()
        .queries()
        .get(id)
        .ok_or_else(|| Error::UnknownQuery(id.to_string()))?;
    let mut lines = vec![
        format!("statement: {}", q.def.sql),
        format!("status: {}", q.state()),
        format!("tasks: {}", q.runners.len()),
    ];
    lines.extend(q.explain.lines().map(str::to_string));
    let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(lines))];
    rows(RecordBatch::try_new(explain_schema(), columns)?)
}

/// `TERMINATE id` / `TERMINATE ALL`.
pub async fn terminate(session: &Session, id: Option<&str>) -> Result<Output> {
    let engine = session.engine();
    let ids: Vec<String> = match id {
        Some(id) => vec![id.to_string()],
        None => engine
            .catalog()
            .queries()
            .into_iter()
            .map(|q| q.id)
            .collect(),
    };
    for id in &ids {
        continuous::terminate(engine, id).await?;
    }
    Ok(Output::Command {
        tag: "TERMINATE".into(),
        rows: None,
    })
}

/// Columns of `SHOW TABLES`.
pub fn tables_schema() -> SchemaRef {
    schema(&[
        ("name", DataType::Utf8),
        ("topic", DataType::Utf8),
        ("partitions", DataType::Int64),
        ("primary_key", DataType::Utf8),
        ("rows", DataType::Int64),
        ("windowed", DataType::Utf8),
    ])
}

/// `SHOW TABLES`.
pub fn show_tables(session: &Session) -> Result<Output> {
    let engine = session.engine();
    let tables: Vec<_> = engine
        .catalog()
        .streams()
        .into_iter()
        .filter(|s| s.kind == RelationKind::Table)
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            tables.iter().map(|t| t.name.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            tables.iter().map(|t| t.topic.clone()),
        )),
        Arc::new(Int64Array::from_iter_values(
            tables.iter().map(|t| t.partitions as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            tables.iter().map(|t| t.primary_key.join(", ")),
        )),
        Arc::new(Int64Array::from_iter_values(tables.iter().map(|t| {
            engine.tables().get(&t.name).map_or(0, |s| s.len() as i64)
        }))),
        Arc::new(StringArray::from_iter_values(tables.iter().map(|t| {
            match engine.tables().get(&t.name) {
                Some(s) if s.windowed() => "yes",
                _ => "no",
            }
        }))),
    ];
    rows(RecordBatch::try_new(tables_schema(), columns)?)
}
