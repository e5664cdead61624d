//! A minimal `pg_catalog` so that `psql`'s `\d` and `\dt` list streams: `pg_namespace`,
//! `pg_class`, `pg_am`, `pg_attribute` and `pg_type`, rebuilt from the catalog at plan time.
//!
//! Streams appear as ordinary tables (`relkind = 'r'`) in schema `public`. Object ids are stable
//! for a given set of streams (16384 + position by name), as psql only joins on them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use crate::Engine;

const PUBLIC_OID: i32 = 2200;
const PG_CATALOG_OID: i32 = 11;
const FIRST_TABLE_OID: i32 = 16384;
/// Catalog relations that have no rows in Eddy (no column defaults, no collations, ...).
pub const ALWAYS_EMPTY: [&str; 16] = [
    "pg_attrdef",
    "pg_collation",
    "pg_am",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
    "pg_trigger",
    "pg_index",
    "pg_constraint",
    "pg_rewrite",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_description",
];
const TABLES: [&str; 5] = [
    "pg_namespace",
    "pg_class",
    "pg_am",
    "pg_attribute",
    "pg_type",
];

/// The `pg_catalog` schema.
#[derive(Debug)]
pub struct PgCatalogSchema {
    engine: Arc<Engine>,
}

impl PgCatalogSchema {
    /// `pg_catalog` over `engine`'s streams.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn table(fields: Vec<(&str, DataType)>, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn text(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn bools(n: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![false; n]))
}

/// `format_type(oid, typmod)`: the type name psql shows in `\d name`.
pub fn format_type(oid: i64) -> &'static str {
    match oid {
        16 => "boolean",
        23 => "integer",
        20 => "bigint",
        701 => "double precision",
        1700 => "numeric",
        25 => "text",
        17 => "bytea",
        1114 => "timestamp without time zone",
        1082 => "date",
        1083 => "time without time zone",
        114 => "json",
        _ => "unknown",
    }
}

fn int(values: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(values))
}

/// A PostgreSQL type oid and name for an Arrow type, as `\d name` would show it.
fn pg_type_of(t: &DataType) -> (i32, &'static str) {
    match t {
        DataType::Boolean => (16, "boolean"),
        DataType::Int32 => (23, "integer"),
        DataType::Int64 => (20, "bigint"),
        DataType::Float64 => (701, "double precision"),
        DataType::Decimal128(..) => (1700, "numeric"),
        DataType::Utf8 => (25, "text"),
        DataType::Binary => (17, "bytea"),
        DataType::Timestamp(..) => (1114, "timestamp without time zone"),
        DataType::Date32 => (1082, "date"),
        DataType::Time32(_) | DataType::Time64(_) => (1083, "time without time zone"),
        _ => (114, "json"),
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let streams = self.engine.catalog().streams();
        let oids: Vec<i32> = (0..streams.len() as i32)
            .map(|i| FIRST_TABLE_OID + i)
            .collect();
        let provider = match name {
            "pg_namespace" => table(
                vec![
                    ("oid", DataType::Int32),
                    ("nspname", DataType::Utf8),
                    ("nspowner", DataType::Int32),
                ],
                vec![
                    int(vec![PG_CATALOG_OID, PUBLIC_OID]),
                    text(vec!["pg_catalog".into(), "public".into()]),
                    int(vec![10, 10]),
                ],
            )?,
            "pg_class" => {
                let n = streams.len();
                table(
                    vec![
                        ("oid", DataType::Int32),
                        ("relname", DataType::Utf8),
                        ("relnamespace", DataType::Int32),
                        ("relkind", DataType::Utf8),
                        ("relowner", DataType::Int32),
                        ("relam", DataType::Int32),
                        ("relnatts", DataType::Int32),
                        ("relchecks", DataType::Int32),
                        ("relhasindex", DataType::Boolean),
                        ("relhasrules", DataType::Boolean),
                        ("relhastriggers", DataType::Boolean),
                        ("relrowsecurity", DataType::Boolean),
                        ("relforcerowsecurity", DataType::Boolean),
                        ("relispartition", DataType::Boolean),
                        ("reltablespace", DataType::Int32),
                        ("reloftype", DataType::Int32),
                        ("reltoastrelid", DataType::Int32),
                        ("relpersistence", DataType::Utf8),
                        ("relreplident", DataType::Utf8),
                    ],
                    vec![
                        int(oids.clone()),
                        text(streams.iter().map(|s| s.name.clone()).collect()),
                        int(vec![PUBLIC_OID; n]),
                        text(vec!["r".to_string(); n]),
                        int(vec![10; n]),
                        int(vec![0; n]),
                        int(streams.iter().map(|s| s.columns.len() as i32).collect()),
                        int(vec![0; n]),
                        bools(n),
                        bools(n),
                        bools(n),
                        bools(n),
                        bools(n),
                        bools(n),
                        int(vec![0; n]),
                        int(vec![0; n]),
                        int(vec![0; n]),
                        text(vec!["p".to_string(); n]),
                        text(vec!["d".to_string(); n]),
                    ],
                )?
            }
            "pg_am" => table(
                vec![("oid", DataType::Int32), ("amname", DataType::Utf8)],
                vec![int(vec![]), text(vec![])],
            )?,
            "pg_attribute" => {
                let (mut rel, mut name, mut typ, mut num) = (vec![], vec![], vec![], vec![]);
                for (s, oid) in streams.iter().zip(&oids) {
                    for (i, c) in s.columns.iter().enumerate() {
                        rel.push(*oid);
                        name.push(c.name.clone());
                        typ.push(pg_type_of(&c.data_type).0);
                        num.push(i as i32 + 1);
                    }
                }
                let n = rel.len();
                table(
                    vec![
                        ("attrelid", DataType::Int32),
                        ("attname", DataType::Utf8),
                        ("atttypid", DataType::Int32),
                        ("attnum", DataType::Int32),
                        ("attnotnull", DataType::Boolean),
                        ("attisdropped", DataType::Boolean),
                        ("atttypmod", DataType::Int32),
                        ("atthasdef", DataType::Boolean),
                        ("attcollation", DataType::Int32),
                        ("attidentity", DataType::Utf8),
                        ("attgenerated", DataType::Utf8),
                    ],
                    vec![
                        int(rel),
                        text(name),
                        int(typ),
                        int(num),
                        bools(n),
                        bools(n),
                        int(vec![-1; n]),
                        bools(n),
                        int(vec![0; n]),
                        text(vec![String::new(); n]),
                        text(vec![String::new(); n]),
                    ],
                )?
            }
            "pg_type" => {
                let types = [16, 23, 20, 701, 1700, 25, 17, 1114, 1082, 1083, 114];
                let names = types
                    .iter()
                    .map(|oid| match oid {
                        16 => "bool",
                        23 => "int4",
                        20 => "int8",
                        701 => "float8",
                        1700 => "numeric",
                        25 => "text",
                        17 => "bytea",
                        1114 => "timestamp",
                        1082 => "date",
                        1083 => "time",
                        _ => "json",
                    })
                    .map(str::to_string)
                    .collect();
                table(
                    vec![
                        ("oid", DataType::Int32),
                        ("typname", DataType::Utf8),
                        ("typnamespace", DataType::Int32),
                        ("typcollation", DataType::Int32),
                    ],
                    vec![
                        int(types.to_vec()),
                        text(names),
                        int(vec![PG_CATALOG_OID; types.len()]),
                        int(vec![0; types.len()]),
                    ],
                )?
            }
            "pg_attrdef" => table(
                vec![
                    ("oid", DataType::Int32),
                    ("adrelid", DataType::Int32),
                    ("adnum", DataType::Int32),
                    ("adbin", DataType::Utf8),
                ],
                vec![int(vec![]), int(vec![]), int(vec![]), text(vec![])],
            )?,
            "pg_collation" => table(
                vec![("oid", DataType::Int32), ("collname", DataType::Utf8)],
                vec![int(vec![]), text(vec![])],
            )?,
            _ => return Ok(None),
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
