//! `CREATE STREAM`, `CREATE TABLE` (source tables), `DROP STREAM` and `DROP TABLE`.

use std::sync::Arc;

use eddy_catalog::{RelationKind, StreamDef, StreamOptions};

use crate::parser::{CreateStream, apply_options};
use crate::{Engine, Error, Output, Result};

/// Creates a stream from its parsed definition.
pub async fn create_stream(engine: &Arc<Engine>, c: &CreateStream) -> Result<Output> {
    let tag = if c.primary_key.is_some() {
        "CREATE TABLE"
    } else {
        "CREATE STREAM"
    };
    let done = || {
        Ok(Output::Command {
            tag: tag.into(),
            rows: None,
        })
    };
    if c.if_not_exists && engine.catalog().stream(&c.name).is_some() {
        return done();
    }
    let mut def = StreamDef {
        name: c.name.clone(),
        columns: c.columns.clone(),
        timestamp_column: None,
        partitions: engine.config().default_partitions,
        options: StreamOptions::default(),
        topic: c.name.clone(),
        storage: String::new(),
        kind: RelationKind::Stream,
        primary_key: vec![],
    };
    for column in def.columns.iter().filter(|c| c.key) {
        crate::ingest::partitioner::check_key_type(column)?;
    }
    apply_options(&mut def, &c.options)?;
    if let Some(pk) = &c.primary_key {
        def.kind = RelationKind::Table;
        def.primary_key = pk.clone();
        if def.options.retention_ms.is_some() || def.options.retention_bytes.is_some() {
            // Until the log compacts tables, retention would delete keys that are current.
            return Err(Error::Invalid(
                "a table keeps the latest row of every key: retention_ms and retention_bytes \
                 do not apply to tables"
                    .into(),
            ));
        }
    }
    let def = engine.create_stream(def).await?;
    if def.kind == RelationKind::Table {
        crate::continuous::start_table(engine, &def)?;
    }
    done()
}

/// Drops a stream or table and deletes its data, cold objects included.
pub async fn drop_stream(
    engine: &Engine,
    name: &str,
    if_exists: bool,
    table: bool,
) -> Result<Output> {
    let tag = if table { "DROP TABLE" } else { "DROP STREAM" };
    let done = Ok(Output::Command {
        tag: tag.into(),
        rows: None,
    });
    let Some(def) = engine.catalog().stream(name) else {
        if if_exists {
            return done;
        }
        return Err(Error::UnknownStream(name.to_string()));
    };
    if table != (def.kind == RelationKind::Table) {
        return Err(Error::Invalid(format!(
            "\"{name}\" is a {}: use DROP {}",
            def.kind_name(),
            def.kind_name().to_uppercase()
        )));
    }
    engine.drop_stream(name).await?;
    done
}
