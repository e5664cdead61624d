//! What `pg_catalog` says about Eddy, derived from the catalog at plan time: the relations
//! (streams and tables, `relkind = 'r'`), their columns (user columns, then the pseudo-columns
//! `rowtime`, `rowpartition`, `rowoffset`), the key of each (an index relation, and for a table
//! a primary-key constraint), descriptions, and the PostgreSQL types with their real OIDs.
//!
//! Object ids are stable for a given set of relations: the n-th relation by name is
//! `16384 + 2n`, its key index `16385 + 2n`.

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use eddy_catalog::{PSEUDO_COLUMNS, RelationKind, SqlType, StreamDef};

use crate::Engine;

pub const PG_CATALOG_OID: i32 = 11;
pub const PUBLIC_OID: i32 = 2200;
pub const INFORMATION_SCHEMA_OID: i32 = 13_000;
pub const OWNER_OID: i32 = 10;
pub const DATABASE_OID: i32 = 16_383;
/// `pg_class` as a `classoid` (in `pg_description`).
pub const PG_CLASS_OID: i32 = 1259;
/// The access method of every relation: Eddy's partitioned log.
pub const LOG_AM_OID: i32 = 2;
/// The access method of key indexes: rows are placed and found by the key's hash.
pub const HASH_AM_OID: i32 = 405;
const FIRST_OID: i32 = 16_384;

/// One column as `pg_attribute` shows it.
pub struct Attribute {
    pub name: String,
    pub num: i16,
    pub type_oid: i32,
    pub typmod: i32,
    pub not_null: bool,
    pub description: Option<String>,
}

/// A stream or table as `pg_class` shows it.
pub struct Relation {
    pub oid: i32,
    pub def: StreamDef,
    pub attributes: Vec<Attribute>,
    /// The key's attribute numbers (empty for a stream without KEY).
    pub key: Vec<i16>,
}

impl Relation {
    pub fn index_oid(&self) -> i32 {
        self.oid + 1
    }

    pub fn is_table(&self) -> bool {
        self.def.kind == RelationKind::Table
    }

    /// The key index's name: `<t>_pkey` for a table (a primary key), `<s>_key` for a stream.
    pub fn index_name(&self) -> String {
        if self.is_table() {
            format!("{}_pkey", self.def.name)
        } else {
            format!("{}_key", self.def.name)
        }
    }

    fn key_names(&self) -> Vec<String> {
        self.key
            .iter()
            .map(|n| quote_ident(&self.attributes[*n as usize - 1].name))
            .collect()
    }

    /// `pg_get_indexdef` of the key index.
    pub fn index_def(&self) -> String {
        format!(
            "CREATE {}INDEX {} ON public.{} USING hash ({})",
            if self.is_table() { "UNIQUE " } else { "" },
            quote_ident(&self.index_name()),
            quote_ident(&self.def.name),
            self.key_names().join(", ")
        )
    }

    /// `pg_get_constraintdef` of a table's primary key.
    pub fn constraint_def(&self) -> String {
        format!("PRIMARY KEY ({})", self.key_names().join(", "))
    }

    /// `obj_description(oid, 'pg_class')`: what kind of relation, its partitions and key.
    pub fn description(&self) -> String {
        let key = match self.key_names().as_slice() {
            [] => String::new(),
            k if self.is_table() => format!(", PRIMARY KEY ({})", k.join(", ")),
            k => format!(", KEY {}", k.join(", ")),
        };
        format!(
            "{}, {} partition{}{key}",
            self.def.kind_name(),
            self.def.partitions,
            if self.def.partitions == 1 { "" } else { "s" }
        )
    }
}

/// The relations of `engine`, sorted by name, with their oids.
pub fn relations(engine: &Engine) -> Vec<Relation> {
    let mut defs = engine.catalog().streams();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs.into_iter()
        .enumerate()
        .map(|(i, def)| relation(FIRST_OID + 2 * i as i32, def))
        .collect()
}

/// The relation whose table or index oid is `oid`.
pub fn relation_of(engine: &Engine, oid: i64) -> Option<Relation> {
    relations(engine)
        .into_iter()
        .find(|r| i64::from(r.oid) == oid || i64::from(r.index_oid()) == oid)
}

fn relation(oid: i32, def: StreamDef) -> Relation {
    let schema = def.table_schema();
    let key_names: Vec<&str> = if def.primary_key.is_empty() {
        def.columns
            .iter()
            .filter(|c| c.key)
            .map(|c| c.name.as_str())
            .collect()
    } else {
        def.primary_key.iter().map(String::as_str).collect()
    };
    let mut attributes = vec![];
    let mut key = vec![];
    for (i, field) in schema.fields().iter().enumerate() {
        let num = i as i16 + 1;
        let (type_oid, typmod) = pg_type_of_field(field);
        let is_key = key_names.contains(&field.name().as_str());
        if is_key {
            key.push(num);
        }
        let description = match PSEUDO_COLUMNS.iter().position(|p| p == field.name()) {
            Some(0) => Some("pseudo-column: event time (the timestamp column, else ingest time)"),
            Some(1) => Some("pseudo-column: the row's partition"),
            Some(2) => Some("pseudo-column: the row's offset in its partition"),
            _ if is_key && def.kind == RelationKind::Table => Some("PRIMARY KEY"),
            _ if is_key => Some("KEY (partitions the stream)"),
            _ => None,
        };
        attributes.push(Attribute {
            name: field.name().clone(),
            num,
            type_oid,
            typmod,
            not_null: !field.is_nullable(),
            description: description.map(str::to_string),
        });
    }
    Relation {
        oid,
        def,
        attributes,
        key,
    }
}

/// A PostgreSQL type oid and typmod for a field: the type the server announces for a result
/// column, and `pg_attribute` shows for a stream's column. A field carrying its column's
/// declared [`SqlType`] is that type (`varchar(10)`, `json`, `uuid`, `timestamp(3)`), any
/// other is its Arrow type's ([`pg_type_of`]).
pub fn pg_type_of_field(field: &Field) -> (i32, i32) {
    let (oid, typmod) = pg_type_of(field.data_type());
    match SqlType::of_field(field) {
        None => (oid, typmod),
        Some(SqlType::Varchar(n)) => (1043, n.map_or(-1, |n| n as i32 + 4)),
        Some(SqlType::Char(n)) => (1042, n as i32 + 4),
        Some(SqlType::Text) => (25, -1),
        Some(SqlType::Json) => (114, -1),
        Some(SqlType::Jsonb) => (3802, -1),
        Some(SqlType::Uuid) => (2950, -1),
        Some(SqlType::Precision(p)) => (oid, i32::from(p)),
    }
}

/// A PostgreSQL type oid and typmod for an Arrow type (a field without a declared SQL type:
/// text is `text`, a timestamp in milliseconds `timestamp(3)`).
pub fn pg_type_of(t: &DataType) -> (i32, i32) {
    let precision = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond | TimeUnit::Nanosecond => -1,
    };
    match t {
        DataType::Boolean => (16, -1),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (21, -1),
        DataType::Int32 | DataType::UInt16 => (23, -1),
        DataType::Int64 | DataType::UInt32 => (20, -1),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (1700, ((i32::from(*p) << 16) | i32::from(*s as u8)) + 4)
        }
        DataType::UInt64 | DataType::Decimal32(..) | DataType::Decimal64(..) => (1700, -1),
        DataType::Float16 | DataType::Float32 => (700, -1),
        DataType::Float64 => (701, -1),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => (25, -1),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => (17, -1),
        DataType::Date32 | DataType::Date64 => (1082, -1),
        DataType::Time32(unit) | DataType::Time64(unit) => (1083, precision(unit)),
        DataType::Timestamp(unit, tz) => (if tz.is_some() { 1184 } else { 1114 }, precision(unit)),
        // Lists of the scalar types the server encodes as PostgreSQL arrays (`encode.rs`).
        DataType::List(f) => {
            let array = match f.data_type() {
                DataType::Boolean => 1000,
                DataType::Int8 | DataType::Int16 => 1005,
                DataType::Int32 => 1007,
                DataType::Int64 => 1016,
                DataType::Float32 => 1021,
                DataType::Float64 => 1022,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 1009,
                DataType::Decimal128(_, s) if *s >= 0 => 1231,
                DataType::Date32 => 1182,
                DataType::Time32(_) | DataType::Time64(_) => 1183,
                DataType::Timestamp(_, None) => 1115,
                DataType::Timestamp(_, Some(_)) => 1185,
                // Nested lists, maps and structs inside lists: JSON.
                _ => 114,
            };
            (array, -1)
        }
        DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..) => (114, -1),
        _ => (25, -1),
    }
}

/// One row of `pg_type`.
pub struct PgType {
    pub oid: i32,
    pub name: &'static str,
    /// `format_type`'s spelling.
    pub sql_name: &'static str,
    pub len: i16,
    pub category: &'static str,
    /// The element type of an array type, else 0.
    pub elem: i32,
    /// The array type of a base type, else 0.
    pub array: i32,
}

const fn base(
    oid: i32,
    name: &'static str,
    sql_name: &'static str,
    len: i16,
    category: &'static str,
    array: i32,
) -> PgType {
    PgType {
        oid,
        name,
        sql_name,
        len,
        category,
        elem: 0,
        array,
    }
}

const fn array(oid: i32, name: &'static str, sql_name: &'static str, elem: i32) -> PgType {
    PgType {
        oid,
        name,
        sql_name,
        len: -1,
        category: "A",
        elem,
        array: 0,
    }
}

/// The types Eddy's columns and results have, plus those clients look up by name.
pub const TYPES: &[PgType] = &[
    base(16, "bool", "boolean", 1, "B", 1000),
    base(17, "bytea", "bytea", -1, "U", 1001),
    base(18, "char", "\"char\"", 1, "Z", 1002),
    base(19, "name", "name", 64, "S", 1003),
    base(20, "int8", "bigint", 8, "N", 1016),
    base(21, "int2", "smallint", 2, "N", 1005),
    base(22, "int2vector", "int2vector", -1, "A", 1006),
    base(23, "int4", "integer", 4, "N", 1007),
    base(25, "text", "text", -1, "S", 1009),
    base(26, "oid", "oid", 4, "N", 1028),
    base(114, "json", "json", -1, "U", 199),
    base(700, "float4", "real", 4, "N", 1021),
    base(701, "float8", "double precision", 8, "N", 1022),
    base(1042, "bpchar", "character", -1, "S", 1014),
    base(1043, "varchar", "character varying", -1, "S", 1015),
    base(1082, "date", "date", 4, "D", 1182),
    base(1083, "time", "time without time zone", 8, "D", 1183),
    base(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        "D",
        1115,
    ),
    base(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        "D",
        1185,
    ),
    base(1700, "numeric", "numeric", -1, "N", 1231),
    base(2950, "uuid", "uuid", 16, "U", 2951),
    base(3802, "jsonb", "jsonb", -1, "U", 3807),
    array(199, "_json", "json[]", 114),
    array(1000, "_bool", "boolean[]", 16),
    array(1001, "_bytea", "bytea[]", 17),
    array(1002, "_char", "\"char\"[]", 18),
    array(1003, "_name", "name[]", 19),
    array(1005, "_int2", "smallint[]", 21),
    array(1006, "_int2vector", "int2vector[]", 22),
    array(1007, "_int4", "integer[]", 23),
    array(1009, "_text", "text[]", 25),
    array(1014, "_bpchar", "character[]", 1042),
    array(1015, "_varchar", "character varying[]", 1043),
    array(1016, "_int8", "bigint[]", 20),
    array(1021, "_float4", "real[]", 700),
    array(1022, "_float8", "double precision[]", 701),
    array(1028, "_oid", "oid[]", 26),
    array(1115, "_timestamp", "timestamp without time zone[]", 1114),
    array(1182, "_date", "date[]", 1082),
    array(1183, "_time", "time without time zone[]", 1083),
    array(1185, "_timestamptz", "timestamp with time zone[]", 1184),
    array(1231, "_numeric", "numeric[]", 1700),
    array(2951, "_uuid", "uuid[]", 2950),
    array(3807, "_jsonb", "jsonb[]", 3802),
];

/// `format_type(oid, typmod)`, as PostgreSQL spells it (`character varying`, `numeric(10,2)`,
/// `timestamp(3) without time zone`); `None` for an oid Eddy has no type for.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let t = TYPES.iter().find(|t| i64::from(t.oid) == oid)?;
    let typmod = typmod.filter(|m| *m >= 0);
    Some(match (t.oid, typmod) {
        (1700, Some(m)) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        (1114, Some(p)) => format!("timestamp({p}) without time zone"),
        (1184, Some(p)) => format!("timestamp({p}) with time zone"),
        (1043, Some(m)) if m >= 4 => format!("character varying({})", m - 4),
        (1042, Some(m)) if m >= 4 => format!("character({})", m - 4),
        (1083, Some(p)) => format!("time({p}) without time zone"),
        _ => t.sql_name.to_string(),
    })
}

/// The oid of the type PostgreSQL names `name` (`to_regtype`): its `typname` (`int8`,
/// `_text`), its SQL spelling (`bigint`, `text[]`) or a common alias (`int`, `varchar`), with
/// or without `pg_catalog.`; `None` for a type Eddy does not have (`hstore`).
pub fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let name = match name {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "varchar" => "character varying",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "float" => "float8",
        "decimal" => "numeric",
        other => other,
    };
    TYPES
        .iter()
        .find(|t| t.name == name || t.sql_name == name)
        .map(|t| t.oid)
}

/// An identifier as PostgreSQL quotes it (only when needed).
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A relation's bytes on disk: local segments and cold objects of every partition.
pub fn relation_bytes(engine: &Engine, name: &str) -> Option<i64> {
    let (_, topic) = engine.stream(name).ok()?;
    let mut bytes = 0i64;
    for (p, log) in topic.partitions().iter().enumerate() {
        bytes += log.segments().iter().map(|s| s.bytes as i64).sum::<i64>();
        if let Some(cold) = topic.cold(p) {
            bytes += cold.bytes() as i64;
        }
    }
    Some(bytes)
}
