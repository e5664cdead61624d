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
    /// Name of the backing topic (the stream's name today), as `SHOW TOPICS` shows it.
    pub topic: String,
    /// Where the topic's data lives: its directory under the data directory's `topics/` and
    /// its prefix in the cold tier. Assigned by the catalog when the stream is created
    /// (`<slug>-<n>`, see [`storage_name_for`]), never derived from the name at run time, so a
    /// name never becomes a path. Empty in definitions written before the catalog assigned it;
    /// [`StreamDef::storage_name`] then falls back to `topic`.
    #[serde(default)]
    pub storage: String,
    /// Stream or table.
    #[serde(default)]
    pub kind: RelationKind,
    /// A table's primary key columns (a row whose other columns are all NULL deletes its key);
    /// empty for streams.
    #[serde(default)]
    pub primary_key: Vec<String>,
}

impl StreamDef {
    /// The topic's directory name (local) and object prefix (cold tier).
    pub fn storage_name(&self) -> &str {
        if self.storage.is_empty() {
            &self.topic
        } else {
            &self.storage
        }
    }

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
        check_identifier(&self.name)?;
        for c in &self.columns {
            check_identifier(&c.name)?;
        }
        if !is_safe_storage_name(self.storage_name()) {
            return invalid(format!(
                "storage name \"{}\" of \"{}\" is not a plain directory name",
                self.storage_name(),
                self.name
            ));
        }
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

/// The longest identifier, in bytes: PostgreSQL's `NAMEDATALEN - 1`.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks a stream, table or column name as PostgreSQL would accept it: not empty, at most
/// [`MAX_IDENTIFIER_BYTES`] bytes, no NUL. PostgreSQL truncates a longer identifier with a
/// NOTICE; Eddy refuses it instead, so that two long names differing after byte 63 can never
/// silently become the same object.
pub fn check_identifier(name: &str) -> crate::Result<()> {
    if name.is_empty() {
        return Err(crate::Error::InvalidName(
            "zero-length delimited identifier".into(),
        ));
    }
    if name.contains('\0') {
        return Err(crate::Error::InvalidName(
            "an identifier cannot contain a NUL character".into(),
        ));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(crate::Error::NameTooLong {
            name: name.chars().take(20).collect(),
            bytes: name.len(),
        });
    }
    Ok(())
}

/// Whether `name` can be used as one directory name under a directory Eddy owns: not empty,
/// not `.` or `..`, no separator or NUL, at most 255 bytes, only ASCII letters, digits, `_`,
/// `-` and `.`. Every storage name the catalog assigns passes; a definition whose storage
/// name does not (written by an older version) is never opened.
pub fn is_safe_storage_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The storage name the catalog gives the stream `name` created by command number `n`:
/// up to 40 bytes of the name with everything but ASCII letters, digits and `_` replaced by
/// `_`, then `-n`. Unique because `n` is; readable so an operator can find a stream's files.
pub fn storage_name_for(name: &str, n: u64) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if slug.is_empty() {
        slug.push('s');
    }
    format!("{slug}-{n}")
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
