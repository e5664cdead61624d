//! `CREATE STREAM` and `DROP STREAM`.

use eddy_catalog::{ColumnDef, StreamDef, StreamOptions};

use crate::parser::CreateStream;
use crate::{Engine, Error, Output, Result};

/// Creates a stream from its parsed definition.
pub fn create_stream(engine: &Engine, c: &CreateStream) -> Result<Output> {
    let done = || {
        Ok(Output::Command {
            tag: "CREATE STREAM".into(),
            rows: None,
        })
    };
    if c.if_not_exists && engine.catalog().stream(&c.name).is_some() {
        return done();
    }
    let mut def = StreamDef {
        name: c.name.clone(),
        columns: c
            .columns
            .iter()
            .map(|(name, data_type, key)| ColumnDef {
                name: name.clone(),
                data_type: data_type.clone(),
                key: *key,
            })
            .collect(),
        timestamp_column: None,
        partitions: engine.config().default_partitions,
        options: StreamOptions::default(),
        topic: c.name.clone(),
    };
    for (key, value) in &c.options {
        let number = || -> Result<u64> {
            value.parse::<u64>().map_err(|_| {
                Error::Invalid(format!(
                    "option {key} takes a non-negative integer, got '{value}'"
                ))
            })
        };
        match key.as_str() {
            "partitions" => {
                def.partitions = u32::try_from(number()?)
                    .map_err(|_| Error::Invalid(format!("partitions out of range: {value}")))?
            }
            "timestamp" => def.timestamp_column = Some(value.to_lowercase()),
            "retention_ms" => def.options.retention_ms = Some(number()?),
            "retention_bytes" => def.options.retention_bytes = Some(number()?),
            "segment_bytes" => {
                let n = number()?;
                if n < 1024 {
                    return Err(Error::Invalid(format!(
                        "segment_bytes must be at least 1024, got {n}"
                    )));
                }
                def.options.segment_bytes = Some(n)
            }
            "segment_ms" => def.options.segment_ms = Some(number()?),
            "local_retention_ms" => def.options.local_retention_ms = Some(number()?),
            "local_retention_bytes" => def.options.local_retention_bytes = Some(number()?),
            // Accepted for ksqlDB compatibility: the topic is always the stream's own.
            "kafka_topic" | "value_format" | "key_format" | "format" => {}
            other => return Err(Error::Invalid(format!("unknown stream option \"{other}\""))),
        }
    }
    engine.create_stream(def)?;
    done()
}

/// Drops a stream and deletes its data, cold objects included.
pub async fn drop_stream(engine: &Engine, name: &str, if_exists: bool) -> Result<Output> {
    if if_exists && engine.catalog().stream(name).is_none() {
        return Ok(Output::Command {
            tag: "DROP STREAM".into(),
            rows: None,
        });
    }
    engine.drop_stream(name).await?;
    Ok(Output::Command {
        tag: "DROP STREAM".into(),
        rows: None,
    })
}
