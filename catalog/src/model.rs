//! What the catalog records about a stream.

use std::collections::HashMap;

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
    /// The SQL type it was declared with, where the Arrow type alone does not say it
    /// (`VARCHAR(10)`, `JSON`, `UUID`, `TIMESTAMP(3)`, ...). `None` in definitions written
    /// before 2026-12-01, and for types the Arrow type names fully; see
    /// [`ColumnDef::declared`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_type: Option<SqlType>,
}

impl ColumnDef {
    /// A column of `data_type` with no declared SQL type beyond it.
    pub fn new(name: impl Into<String>, data_type: DataType, key: bool) -> Self {
        ColumnDef {
            name: name.into(),
            data_type,
            key,
            sql_type: None,
        }
    }

    /// The declared SQL type, if any: a text column defined before SQL types were recorded
    /// (every `VARCHAR`, `STRING` and `TEXT` was plain Arrow `Utf8` then) is a `VARCHAR`.
    pub fn declared(&self) -> Option<SqlType> {
        self.sql_type.or(match self.data_type {
            DataType::Utf8 => Some(SqlType::Varchar(None)),
            _ => None,
        })
    }
}

/// The metadata key of a field whose column was declared with a [`SqlType`]; its value is
/// the type's [`Display`](std::fmt::Display) form (`varchar(10)`, `json`, `precision(3)`).
pub const SQL_TYPE_KEY: &str = "eddy.sql_type";

/// What a column's declared SQL type says beyond its Arrow type: the PostgreSQL type it is
/// sent as, and what a write checks. The text types are all stored as Arrow `Utf8`, the
/// precision applies to `Timestamp` and `Time` columns (stored in microseconds).
///
/// The SQL layer enforces it on every write (INSERT, COPY, a persistent query's output);
/// the catalog only records it. Fields of the SQL schema carry it as metadata
/// ([`SQL_TYPE_KEY`]), so that a query's result column says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlType {
    /// `VARCHAR`, `STRING`, `VARCHAR(n)`: at most n characters (PostgreSQL's
    /// `character varying(n)`).
    Varchar(Option<u32>),
    /// `TEXT`.
    Text,
    /// `CHAR(n)`: at most n characters, kept without trailing spaces and sent blank-padded to
    /// n (PostgreSQL's `character(n)`, `bpchar`, whose trailing spaces do not count).
    Char(u32),
    /// `JSON`: valid JSON, kept as written.
    Json,
    /// `JSONB`: valid JSON, kept as written (PostgreSQL would normalise it).
    Jsonb,
    /// `UUID`: kept in canonical lower-case form, `8-4-4-4-12` hex digits.
    Uuid,
    /// `TIMESTAMP(p)`, `TIMESTAMPTZ(p)`, `TIME(p)`: rounded to p (0..=6) fractional digits of
    /// a second, as PostgreSQL rounds.
    Precision(u8),
}

impl SqlType {
    /// Whether a column of Arrow type `t` can have this SQL type.
    pub fn applies_to(&self, t: &DataType) -> bool {
        match self {
            SqlType::Precision(_) => {
                matches!(
                    t,
                    DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_)
                )
            }
            _ => matches!(t, DataType::Utf8),
        }
    }

    /// The SQL type a field carries (in its metadata), if it carries one that applies to its
    /// Arrow type: a cast keeps a field's metadata, so `json_column::int` still has `json`
    /// in it, and is not JSON.
    pub fn of_field(field: &Field) -> Option<SqlType> {
        let t: SqlType = field.metadata().get(SQL_TYPE_KEY)?.parse().ok()?;
        t.applies_to(field.data_type()).then_some(t)
    }

    /// The field metadata that carries this type.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([(SQL_TYPE_KEY.to_string(), self.to_string())])
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlType::Varchar(None) => write!(f, "varchar"),
            SqlType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            SqlType::Text => write!(f, "text"),
            SqlType::Char(n) => write!(f, "char({n})"),
            SqlType::Json => write!(f, "json"),
            SqlType::Jsonb => write!(f, "jsonb"),
            SqlType::Uuid => write!(f, "uuid"),
            SqlType::Precision(p) => write!(f, "precision({p})"),
        }
    }
}

impl std::str::FromStr for SqlType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let arg = |prefix: &str| -> Option<u32> {
            s.strip_prefix(prefix)?
                .strip_prefix('(')?
                .strip_suffix(')')?
                .parse()
                .ok()
        };
        Ok(match s {
            "varchar" => SqlType::Varchar(None),
            "text" => SqlType::Text,
            "json" => SqlType::Json,
            "jsonb" => SqlType::Jsonb,
            "uuid" => SqlType::Uuid,
            _ => {
                if let Some(n) = arg("varchar") {
                    SqlType::Varchar(Some(n))
                } else if let Some(n) = arg("char") {
                    SqlType::Char(n)
                } else if let Some(p) = arg("precision").and_then(|p| u8::try_from(p).ok()) {
                    SqlType::Precision(p)
                } else {
                    return Err(());
                }
            }
        })
    }
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

    /// Schema of the batches stored in the log: user columns then `rowtime`. (No field
    /// carries its SQL type: the log's bytes are the same as before SQL types were recorded.)
    pub fn stored_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(stored_field).collect();
        fields.push(rowtime_field());
        SchemaRef::new(Schema::new(fields))
    }

    /// Schema SQL sees: user columns (each carrying its declared SQL type, see
    /// [`SqlType::of_field`]) then the three pseudo-columns.
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
            if let Some(t) = c.sql_type
                && !t.applies_to(&c.data_type)
            {
                return invalid(format!(
                    "column \"{}\" of Arrow type {} cannot be declared {t}",
                    c.name, c.data_type
                ));
            }
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

fn stored_field(c: &ColumnDef) -> Field {
    Field::new(&c.name, c.data_type.clone(), true)
}

fn user_field(c: &ColumnDef) -> Field {
    let field = stored_field(c);
    match c.declared() {
        Some(t) if t.applies_to(&c.data_type) => field.with_metadata(t.metadata()),
        _ => field,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A column as a catalog written before SQL types were recorded has it: it still loads,
    /// as a column without a declared type (a text column reads as VARCHAR).
    #[test]
    fn columns_written_before_sql_types_still_load() {
        let old = r#"{"name":"v","data_type":"Utf8","key":false}"#;
        let c: ColumnDef = serde_json::from_str(old).unwrap();
        assert_eq!(c, ColumnDef::new("v", DataType::Utf8, false));
        assert_eq!(c.declared(), Some(SqlType::Varchar(None)));
        // And a column without one is written as before.
        assert_eq!(serde_json::to_string(&c).unwrap(), old);
        let mut typed = c.clone();
        typed.sql_type = Some(SqlType::Varchar(Some(10)));
        let json = serde_json::to_string(&typed).unwrap();
        assert_eq!(serde_json::from_str::<ColumnDef>(&json).unwrap(), typed);
    }

    #[test]
    fn sql_types_read_back_from_field_metadata() {
        for t in [
            SqlType::Varchar(None),
            SqlType::Varchar(Some(10)),
            SqlType::Text,
            SqlType::Char(3),
            SqlType::Json,
            SqlType::Jsonb,
            SqlType::Uuid,
            SqlType::Precision(0),
        ] {
            assert_eq!(t.to_string().parse::<SqlType>(), Ok(t));
            let data_type = match t {
                SqlType::Precision(_) => DataType::Timestamp(TimeUnit::Microsecond, None),
                _ => DataType::Utf8,
            };
            let field = Field::new("c", data_type, true).with_metadata(t.metadata());
            assert_eq!(SqlType::of_field(&field), Some(t));
            // A cast keeps the metadata but changes the type: then it is not that type.
            let cast = field.clone().with_data_type(DataType::Int32);
            assert_eq!(SqlType::of_field(&cast), None);
        }
        assert!("varchar(x)".parse::<SqlType>().is_err());
        assert!("precision(300)".parse::<SqlType>().is_err());
    }

    #[test]
    fn only_the_sql_schema_carries_sql_types() {
        let mut c = ColumnDef::new("j", DataType::Utf8, false);
        c.sql_type = Some(SqlType::Json);
        let def = StreamDef {
            name: "s".into(),
            columns: vec![c],
            timestamp_column: None,
            partitions: 1,
            options: StreamOptions::default(),
            topic: "s".into(),
            storage: String::new(),
            kind: RelationKind::Stream,
            primary_key: vec![],
        };
        assert_eq!(
            SqlType::of_field(def.table_schema().field(0)),
            Some(SqlType::Json)
        );
        assert!(def.stored_schema().field(0).metadata().is_empty());
        let mut bad = def.clone();
        bad.columns[0].data_type = DataType::Int64;
        assert!(bad.validate().is_err());
    }
}
