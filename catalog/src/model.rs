//! What the catalog records about a stream.

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Names of the pseudo-columns every stream exposes, in the order they follow the user's columns:
/// event time, partition and offset (as ksqlDB's `ROWTIME`, `ROWPARTITION`, `ROWOFFSET`, lower-cased
/// as Postgres folds unquoted identifiers).
pub const PSEUDO_COLUMNS: [&str; 3] = ["rowtime", "rowpartition", "rowoffset"];

/// One user column of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name, already normalised (unquoted identifiers lower-cased).
    pub name: String,
    /// Arrow type of the column.
    pub data_type: DataType,
    /// Whether this is the stream's KEY column (used for partitioning).
    pub key: bool,
}

/// Per-stream log options, from `WITH (...)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Delete closed segments older than this.
    pub retention_ms: Option<u64>,
    /// Delete oldest closed segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Roll the active segment at this size.
    pub segment_bytes: Option<u64>,
    /// Roll the active segment at this age.
    pub segment_ms: Option<u64>,
    /// Move closed segments older than this to the cold tier (Kafka's `local.retention.ms`).
    #[serde(default)]
    pub local_retention_ms: Option<u64>,
    /// Move the oldest closed segments to the cold tier while the partition's local segments
    /// are larger than this (Kafka's `local.retention.bytes`).
    #[serde(default)]
    pub local_retention_bytes: Option<u64>,
}

/// Whether a relation is an append-only stream or an upserting table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// Every row is an event (`CREATE STREAM`).
    #[default]
    Stream,
    /// The latest row per primary key is the table's content (`CREATE TABLE`); the topic is
    /// its changelog.
    Table,
}

/// A stream or table: a topic plus a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDef {
    /// Stream name (normalised).
    pub name: String,
    /// User columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Column whose value is the row's event time (`ROWTIME`); ingest time when `None`.
    pub timestamp_column: Option<String>,
    /// Number of partitions of the backing topic.
    pub partitions: u32,
    /// Log options.
    pub options: StreamOptions,
    /// Name of the backing topic (the stream's name today).
    pub topic: String,
    /// Stream or table.
    #[serde(default)]
    pub kind: RelationKind,
    /// A table's primary key columns (a row whose other columns are all NULL deletes its key);
    /// empty for streams.
    #[serde(default)]
    pub primary_key: Vec<String>,
}

impl StreamDef {
    /// The KEY column, if any.
    pub fn key_column(&self) -> Option<(usize, &ColumnDef)> {
        self.columns.iter().enumerate().find(|(_, c)| c.key)
    }

    /// Index of a user column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Schema of the batches stored in the log: user columns then `rowtime`.
    pub fn stored_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(user_field).collect();
        fields.push(rowtime_field());
        SchemaRef::new(Schema::new(fields))
    }

    /// Schema SQL sees: user columns then the three pseudo-columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(user_field).collect();
        fields.push(rowtime_field());
        fields.push(Field::new(PSEUDO_COLUMNS[1], DataType::Int32, false));
        fields.push(Field::new(PSEUDO_COLUMNS[2], DataType::Int64, false));
        SchemaRef::new(Schema::new(fields))
    }

    /// `"stream"` or `"table"`, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RelationKind::Stream => "stream",
            RelationKind::Table => "table",
        }
    }

    /// Checks the definition is self-consistent.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |m: String| Err(crate::Error::Invalid(m));
        for k in &self.primary_key {
            if self.column_index(k).is_none() {
                return invalid(format!("primary key column \"{k}\" is not a column"));
            }
        }
        if self.kind == RelationKind::Table && self.primary_key.is_empty() {
            return invalid(format!("table \"{}\" needs a PRIMARY KEY", self.name));
        }
        if self.columns.is_empty() {
            return invalid(format!(
                "stream \"{}\" must have at least one column",
                self.name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if PSEUDO_COLUMNS.contains(&c.name.as_str()) {
                return invalid(format!(
                    "column name \"{}\" is reserved for a pseudo-column",
                    c.name
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return invalid(format!("column \"{}\" specified more than once", c.name));
            }
        }
        if self.columns.iter().filter(|c| c.key).count() > 1 {
            return invalid("a stream has at most one KEY column".to_string());
        }
        if self.partitions == 0 || self.partitions > 10_000 {
            return invalid(format!(
                "partitions must be between 1 and 10000, got {}",
                self.partitions
            ));
        }
        if let Some(ts) = &self.timestamp_column {
            let Some(i) = self.column_index(ts) else {
                return invalid(format!(
                    "timestamp column \"{ts}\" is not a column of the stream"
                ));
            };
            match self.columns[i].data_type {
                DataType::Timestamp(_, _) | DataType::Int64 => {}
                ref other => {
                    return invalid(format!(
                        "timestamp column \"{ts}\" must be TIMESTAMP or BIGINT (epoch ms), not {other}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn user_field(c: &ColumnDef) -> Field {
    Field::new(&c.name, c.data_type.clone(), true)
}

fn rowtime_field() -> Field {
    Field::new(
        PSEUDO_COLUMNS[0],
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    )
}

/// A persistent query: `CREATE STREAM|TABLE ... AS SELECT` or `INSERT INTO ... SELECT ...
/// EMIT CHANGES`. The statement is kept as text and planned again when the node starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryDef {
    /// Id, as ksqlDB names them: `CSAS_<SINK>_<n>`, `CTAS_<SINK>_<n>`, `INSERTQUERY_<n>`.
    pub id: String,
    /// The statement as the user wrote it.
    pub sql: String,
    /// Streams and tables it reads.
    pub sources: Vec<String>,
    /// The stream or table it writes.
    pub sink: String,
}
