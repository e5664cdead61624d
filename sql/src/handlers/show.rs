//! `SHOW STREAMS`, `SHOW TOPICS` and `DESCRIBE name`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::memory::MemoryStream;

use crate::parser::types::type_display;
use crate::{Engine, Error, Output, Result};

/// Rows from one in-memory batch.
pub fn rows(batch: RecordBatch) -> Result<Output> {
    let schema = batch.schema();
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Output::Rows {
        schema,
        stream: Box::pin(stream),
    })
}

pub(crate) fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Columns of `SHOW STREAMS`.
pub fn streams_schema() -> SchemaRef {
    schema(&[
        ("name", DataType::Utf8),
        ("topic", DataType::Utf8),
        ("partitions", DataType::Int64),
        ("key_column", DataType::Utf8),
        ("timestamp_column", DataType::Utf8),
    ])
}

/// `SHOW STREAMS`
pub fn streams(engine: &Engine) -> Result<Output> {
    let streams: Vec<_> = engine
        .catalog()
        .streams()
        .into_iter()
        .filter(|s| s.kind == eddy_catalog::RelationKind::Stream)
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            streams.iter().map(|s| s.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            streams.iter().map(|s| s.topic.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            streams.iter().map(|s| s.partitions as i64),
        )),
        Arc::new(StringArray::from_iter(
            streams
                .iter()
                .map(|s| s.key_column().map(|(_, c)| c.name.clone())),
        )),
        Arc::new(StringArray::from_iter(
            streams.iter().map(|s| s.timestamp_column.clone()),
        )),
    ];
    rows(RecordBatch::try_new(streams_schema(), cols)?)
}

/// Columns of `SHOW TOPICS`.
pub fn topics_schema() -> SchemaRef {
    schema(&[
        ("topic", DataType::Utf8),
        ("partition", DataType::Int64),
        ("log_start_offset", DataType::Int64),
        ("high_watermark", DataType::Int64),
        ("segments", DataType::Int64),
        ("bytes", DataType::Int64),
        ("cold_objects", DataType::Int64),
        ("cold_bytes", DataType::Int64),
        ("tiering", DataType::Utf8),
    ])
}

/// `SHOW TOPICS`: one row per partition. `log_start_offset` is the first offset in either
/// tier; `segments`/`bytes` are local, `cold_*` the cold tier's; `tiering` is `off` (the
/// stream sets no local retention), `ok`, or `failing (N): <last error>`.
pub fn topics(engine: &Engine) -> Result<Output> {
    let mut names = Vec::new();
    let mut parts = Vec::new();
    let mut starts = Vec::new();
    let mut hws = Vec::new();
    let mut segs = Vec::new();
    let mut bytes = Vec::new();
    let mut cold_objects = Vec::new();
    let mut cold_bytes = Vec::new();
    let mut tiering = Vec::new();
    for topic in engine.topics().topics() {
        for (p, log) in topic.partitions().iter().enumerate() {
            let segments = log.segments();
            let cold = topic.cold(p);
            let objects = cold.map(|c| c.objects()).unwrap_or_default();
            names.push(topic.name().to_string());
            parts.push(p as i64);
            starts.push(
                objects
                    .first()
                    .map_or(log.log_start_offset(), |o| o.base_offset) as i64,
            );
            hws.push(log.high_watermark() as i64);
            segs.push(segments.len() as i64);
            bytes.push(segments.iter().map(|s| s.bytes as i64).sum::<i64>());
            cold_objects.push(objects.len() as i64);
            cold_bytes.push(objects.iter().map(|o| o.bytes as i64).sum::<i64>());
            let config = log.config();
            let status = cold.map(|c| c.status()).unwrap_or_default();
            tiering.push(
                if config.local_retention_ms.is_none() && config.local_retention_bytes.is_none() {
                    "off".to_string()
                } else if let Some(error) = status.last_error {
                    format!("failing ({}): {error}", status.consecutive_failures)
                } else {
                    "ok".to_string()
                },
            );
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(parts)),
        Arc::new(Int64Array::from(starts)),
        Arc::new(Int64Array::from(hws)),
        Arc::new(Int64Array::from(segs)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(Int64Array::from(cold_objects)),
        Arc::new(Int64Array::from(cold_bytes)),
        Arc::new(StringArray::from(tiering)),
    ];
    rows(RecordBatch::try_new(topics_schema(), cols)?)
}

/// Columns of `DESCRIBE`.
pub fn describe_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("column", DataType::Utf8, true),
        Field::new("type", DataType::Utf8, true),
        Field::new("key", DataType::Boolean, true),
        Field::new("extra", DataType::Utf8, true),
    ]))
}

/// `DESCRIBE name`: the stream's columns, then its pseudo-columns.
pub fn describe(engine: &Engine, name: &str) -> Result<Output> {
    let def = engine
        .catalog()
        .stream(name)
        .ok_or_else(|| Error::UnknownStream(name.to_string()))?;
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut keys = Vec::new();
    let mut extra = Vec::new();
    for c in &def.columns {
        names.push(c.name.clone());
        types.push(type_display(&c.data_type, c.declared()));
        let primary = def.primary_key.contains(&c.name);
        keys.push(c.key || primary);
        extra.push(if def.timestamp_column.as_deref() == Some(&c.name) {
            Some("timestamp")
        } else if primary {
            Some("primary key")
        } else {
            None
        });
    }
    for (n, t, e) in [
        ("rowtime", "TIMESTAMP(3)", "pseudo-column: event time"),
        ("rowpartition", "INTEGER", "pseudo-column: partition"),
        ("rowoffset", "BIGINT", "pseudo-column: offset in partition"),
    ] {
        names.push(n.to_string());
        types.push(t.to_string());
        keys.push(false);
        extra.push(Some(e));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(types)),
        Arc::new(BooleanArray::from(keys)),
        Arc::new(StringArray::from(extra)),
    ];
    rows(RecordBatch::try_new(describe_schema(), cols)?)
}
