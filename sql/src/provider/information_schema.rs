//! `information_schema` as PostgreSQL spells it (`tables`, `columns`, `schemata`, `views`,
//! `table_constraints`, `key_column_usage`), over Eddy's streams and tables: PostgreSQL's
//! type names and 1-based `ordinal_position`, where DataFusion's own would show Arrow types
//! counted from 0. The facts are `pg_catalog`'s ([`super::pg_catalog::model`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use super::SystemSchema;
use super::pg_catalog::model::{Relation, TYPES, pg_type_of_field, relations};
use crate::Engine;

const TABLES: [&str; 6] = [
    "tables",
    "columns",
    "schemata",
    "views",
    "table_constraints",
    "key_column_usage",
];

/// The `information_schema` schema.
#[derive(Debug)]
pub struct InformationSchema {
    engine: Arc<Engine>,
}

impl InformationSchema {
    /// `information_schema` over `engine`'s streams.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Columns of text (`None` is NULL) and integers, in order.
enum Col {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i32>>),
}

fn build(cols: Vec<(&str, Col)>) -> Result<Arc<dyn TableProvider>> {
    let mut fields = vec![];
    let mut arrays: Vec<ArrayRef> = vec![];
    for (name, col) in cols {
        match col {
            Col::Text(v) => {
                fields.push(Field::new(name, DataType::Utf8, true));
                arrays.push(Arc::new(StringArray::from(v)));
            }
            Col::Int(v) => {
                fields.push(Field::new(name, DataType::Int32, true));
                arrays.push(Arc::new(Int32Array::from(v)));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn text(v: impl IntoIterator<Item = impl Into<String>>) -> Col {
    Col::Text(v.into_iter().map(|s| Some(s.into())).collect())
}

fn same(v: &str, n: usize) -> Col {
    Col::Text(vec![Some(v.to_string()); n])
}

/// `information_schema.columns.data_type`: the SQL name, `ARRAY` for arrays, as PostgreSQL.
fn data_type(oid: i32) -> &'static str {
    match TYPES.iter().find(|t| t.oid == oid) {
        Some(t) if t.elem != 0 => "ARRAY",
        Some(t) => t.sql_name,
        None => "USER-DEFINED",
    }
}

/// One column: name, position, type oid, typmod, NOT NULL.
type Column = (String, i16, i32, i32, bool);

/// Every relation information_schema lists: `public`'s streams and tables, then the system
/// tables in `eddy`.
async fn all_relations(engine: &Arc<Engine>) -> Result<Vec<(&'static str, String, Vec<Column>)>> {
    let mut out = vec![];
    for r in relations(engine) {
        let cols = r
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.num, a.type_oid, a.typmod, a.not_null))
            .collect();
        out.push(("public", r.def.name.clone(), cols));
    }
    let system = SystemSchema::new(engine.clone());
    let mut names = system.table_names();
    names.sort();
    for name in names {
        let Some(table) = system.table(&name).await? else {
            continue;
        };
        let cols = table
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (oid, typmod) = pg_type_of_field(f);
                (
                    f.name().clone(),
                    i as i16 + 1,
                    oid,
                    typmod,
                    !f.is_nullable(),
                )
            })
            .collect();
        out.push(("eddy", name, cols));
    }
    Ok(out)
}

fn keyed(rels: &[Relation]) -> Vec<&Relation> {
    rels.iter()
        .filter(|r| r.is_table() && !r.key.is_empty())
        .collect()
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let rels = relations(&self.engine);
        let provider = match name {
            "tables" => {
                let all = all_relations(&self.engine).await?;
                let m = all.len();
                build(vec![
                    ("table_catalog", same("eddy", m)),
                    ("table_schema", text(all.iter().map(|(s, _, _)| *s))),
                    ("table_name", text(all.iter().map(|(_, t, _)| t.clone()))),
                    ("table_type", same("BASE TABLE", m)),
                    (
                        "is_insertable_into",
                        text(
                            all.iter()
                                .map(|(s, _, _)| if *s == "eddy" { "NO" } else { "YES" }),
                        ),
                    ),
                ])?
            }
            "schemata" => build(vec![
                ("catalog_name", same("eddy", 3)),
                (
                    "schema_name",
                    text(["pg_catalog", "public", "information_schema"]),
                ),
                ("schema_owner", same("eddy", 3)),
            ])?,
            "views" => build(vec![
                ("table_catalog", Col::Text(vec![])),
                ("table_schema", Col::Text(vec![])),
                ("table_name", Col::Text(vec![])),
                ("view_definition", Col::Text(vec![])),
            ])?,
            "columns" => {
                let (mut table, mut column, mut position, mut nullable) =
                    (vec![], vec![], vec![], vec![]);
                let (mut types, mut udt, mut precision, mut scale) =
                    (vec![], vec![], vec![], vec![]);
                let (mut dt_precision, mut char_length) = (vec![], vec![]);
                let mut schema = vec![];
                for (sch, name, cols) in all_relations(&self.engine).await? {
                    for (col, num, type_oid, typmod, not_null) in cols {
                        schema.push(sch);
                        table.push(name.clone());
                        column.push(col);
                        position.push(Some(i32::from(num)));
                        nullable.push(if not_null { "NO" } else { "YES" });
                        types.push(data_type(type_oid));
                        udt.push(
                            TYPES
                                .iter()
                                .find(|t| t.oid == type_oid)
                                .map_or("", |t| t.name),
                        );
                        let decimal = type_oid == 1700 && typmod >= 4;
                        precision.push(match type_oid {
                            21 => Some(16),
                            23 => Some(32),
                            20 => Some(64),
                            700 => Some(24),
                            701 => Some(53),
                            _ if decimal => Some((typmod - 4) >> 16),
                            _ => None,
                        });
                        scale.push(match type_oid {
                            21 | 23 | 20 => Some(0),
                            _ if decimal => Some((typmod - 4) & 0xffff),
                            _ => None,
                        });
                        // No typmod on a time or timestamp is PostgreSQL's default, 6.
                        dt_precision.push(
                            matches!(type_oid, 1114 | 1184 | 1083).then_some(if typmod < 0 {
                                6
                            } else {
                                typmod.min(6)
                            }),
                        );
                        char_length.push(
                            (matches!(type_oid, 1042 | 1043) && typmod >= 4).then_some(typmod - 4),
                        );
                    }
                }
                let m = table.len();
                build(vec![
                    ("table_catalog", same("eddy", m)),
                    ("table_schema", text(schema)),
                    ("table_name", text(table)),
                    ("column_name", text(column)),
                    ("ordinal_position", Col::Int(position)),
                    ("column_default", Col::Text(vec![None; m])),
                    ("is_nullable", text(nullable)),
                    ("data_type", text(types)),
                    ("character_maximum_length", Col::Int(char_length)),
                    ("numeric_precision", Col::Int(precision)),
                    ("numeric_scale", Col::Int(scale)),
                    ("datetime_precision", Col::Int(dt_precision)),
                    ("udt_catalog", same("eddy", m)),
                    ("udt_schema", same("pg_catalog", m)),
                    ("udt_name", text(udt)),
                ])?
            }
            "table_constraints" => {
                let keyed = keyed(&rels);
                let m = keyed.len();
                build(vec![
                    ("constraint_catalog", same("eddy", m)),
                    ("constraint_schema", same("public", m)),
                    (
                        "constraint_name",
                        text(keyed.iter().map(|r| r.index_name())),
                    ),
                    ("table_catalog", same("eddy", m)),
                    ("table_schema", same("public", m)),
                    ("table_name", text(keyed.iter().map(|r| r.def.name.clone()))),
                    ("constraint_type", same("PRIMARY KEY", m)),
                    ("is_deferrable", same("NO", m)),
                    ("initially_deferred", same("NO", m)),
                ])?
            }
            "key_column_usage" => {
                let (mut cname, mut table, mut column, mut position) =
                    (vec![], vec![], vec![], vec![]);
                for r in keyed(&rels) {
                    for (i, k) in r.key.iter().enumerate() {
                        cname.push(r.index_name());
                        table.push(r.def.name.clone());
                        column.push(r.attributes[*k as usize - 1].name.clone());
                        position.push(Some(i as i32 + 1));
                    }
                }
                let m = table.len();
                build(vec![
                    ("constraint_catalog", same("eddy", m)),
                    ("constraint_schema", same("public", m)),
                    ("constraint_name", text(cname)),
                    ("table_catalog", same("eddy", m)),
                    ("table_schema", same("public", m)),
                    ("table_name", text(table)),
                    ("column_name", text(column)),
                    ("ordinal_position", Col::Int(position)),
                ])?
            }
            _ => return Ok(None),
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
