//! `pg_catalog`, the relations PostgreSQL tools read to list and describe what a database
//! holds (psql's `\d` family, pgcli, SQLAlchemy's reflection, JDBC's `DatabaseMetaData`),
//! rebuilt from Eddy's catalog at plan time ([`model`] says what is shown and why).
//!
//! Streams and tables are both ordinary relations (`relkind = 'r'`): both are read with
//! SELECT and written with INSERT, and tools list only `'r'` as tables. Each relation's key is
//! an index relation (`relkind = 'i'`, access method `hash`: rows are placed by the key's
//! hash); a table's key is also its primary-key constraint (unique), a stream's KEY is not
//! (streams hold many rows per key). Relations Eddy has nothing for (rules, policies,
//! publications, ...) exist and are empty.

pub mod model;
mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int16Array, Int32Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use model::*;
pub use model::{format_type, relation_of, type_oid};
pub use settings::{Setting, Settings};

use crate::Engine;

/// Catalog relations that have no rows in Eddy (no column defaults, no collations, ...).
pub const ALWAYS_EMPTY: [&str; 30] = [
    "pg_attrdef",
    "pg_collation",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_proc",
    "pg_auth_members",
    "pg_depend",
    "pg_sequence",
    "pg_event_trigger",
    "pg_operator",
    "pg_conversion",
    "pg_language",
    "pg_cast",
    "pg_opfamily",
    "pg_foreign_data_wrapper",
    "pg_foreign_server",
    "pg_user_mapping",
    "pg_ts_config",
    "pg_ts_dict",
    "pg_ts_parser",
    "pg_ts_template",
    "pg_parameter_acl",
];
const TABLES: [&str; 26] = [
    "pg_namespace",
    "pg_class",
    "pg_am",
    "pg_attribute",
    "pg_type",
    "pg_index",
    "pg_constraint",
    "pg_description",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_tablespace",
    "pg_attrdef",
    "pg_collation",
    "pg_proc",
    "pg_auth_members",
    "pg_inherits",
    "pg_policy",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_extension",
    "pg_sequence",
    "pg_opclass",
    "pg_settings",
    "pg_parameter_acl",
];

/// Whether `name` is a `pg_catalog` relation (so that an unqualified `pg_type` finds it).
pub fn is_catalog_relation(name: &str) -> bool {
    TABLES.contains(&name) || ALWAYS_EMPTY.contains(&name)
}

/// The `pg_catalog` schema.
#[derive(Debug)]
pub struct PgCatalogSchema {
    engine: Arc<Engine>,
    settings: Option<Settings>,
}

impl PgCatalogSchema {
    /// `pg_catalog` over `engine`'s streams.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            settings: None,
        }
    }

    /// The same, `pg_settings` showing a session's settings.
    pub fn with_settings(self, settings: Settings) -> Self {
        Self {
            settings: Some(settings),
            ..self
        }
    }
}

/// A relation under construction, column by column (all nullable).
#[derive(Default)]
struct Rel {
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl Rel {
    fn col(mut self, name: &str, array: ArrayRef) -> Self {
        self.fields
            .push(Field::new(name, array.data_type().clone(), true));
        self.columns.push(array);
        self
    }
    fn int(self, name: &str, v: Vec<i32>) -> Self {
        self.col(name, Arc::new(Int32Array::from(v)))
    }
    fn int2(self, name: &str, v: Vec<i16>) -> Self {
        self.col(name, Arc::new(Int16Array::from(v)))
    }
    fn text<S: Into<String>>(self, name: &str, v: Vec<S>) -> Self {
        let v: Vec<String> = v.into_iter().map(Into::into).collect();
        self.col(name, Arc::new(StringArray::from(v)))
    }
    fn bool(self, name: &str, v: Vec<bool>) -> Self {
        self.col(name, Arc::new(BooleanArray::from(v)))
    }
    /// A column of NULLs of `t` (`relacl`, `reloptions`, ...), `n` rows.
    fn nulls(self, name: &str, t: DataType, n: usize) -> Self {
        self.col(name, new_null_array(&t, n))
    }
    fn build(self) -> Result<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema.clone(), self.columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn int2_lists(v: Vec<Vec<i16>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(
        v.into_iter().map(|l| Some(l.into_iter().map(Some))),
    ))
}

fn oid_lists(v: Vec<Vec<i32>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
        v.into_iter().map(|l| Some(l.into_iter().map(Some))),
    ))
}

fn rep<T: Clone>(v: T, n: usize) -> Vec<T> {
    vec![v; n]
}

impl PgCatalogSchema {
    fn pg_class(&self, rels: &[Relation]) -> Result<Arc<dyn TableProvider>> {
        // Each relation, then each relation's key index.
        let with_key: Vec<&Relation> = rels.iter().filter(|r| !r.key.is_empty()).collect();
        let n = rels.len() + with_key.len();
        let mut oid = vec![];
        let mut name = vec![];
        let mut kind = vec![];
        let mut am = vec![];
        let mut natts = vec![];
        let mut has_index = vec![];
        let mut tuples = vec![];
        for r in rels {
            oid.push(r.oid);
            name.push(r.def.name.clone());
            kind.push("r");
            am.push(LOG_AM_OID);
            natts.push(r.attributes.len() as i16);
            has_index.push(!r.key.is_empty());
            tuples.push(-1.0f32);
        }
        for r in &with_key {
            oid.push(r.index_oid());
            name.push(r.index_name());
            kind.push("i");
            am.push(HASH_AM_OID);
            natts.push(r.key.len() as i16);
            has_index.push(false);
            tuples.push(-1.0f32);
        }
        Rel::default()
            .int("oid", oid.clone())
            .text("relname", name)
            .int("relnamespace", rep(PUBLIC_OID, n))
            .int("reltype", rep(0, n))
            .int("reloftype", rep(0, n))
            .int("relowner", rep(OWNER_OID, n))
            .int("relam", am)
            .int("relfilenode", oid)
            .int("reltablespace", rep(0, n))
            .int("relpages", rep(0, n))
            .col("reltuples", Arc::new(Float32Array::from(tuples)))
            .int("relallvisible", rep(0, n))
            .int("reltoastrelid", rep(0, n))
            .bool("relhasindex", has_index)
            .bool("relisshared", rep(false, n))
            .text("relpersistence", rep("p", n))
            .text("relkind", kind)
            .int2("relnatts", natts)
            .int2("relchecks", rep(0, n))
            .bool("relhasrules", rep(false, n))
            .bool("relhastriggers", rep(false, n))
            .bool("relhassubclass", rep(false, n))
            .bool("relrowsecurity", rep(false, n))
            .bool("relforcerowsecurity", rep(false, n))
            .bool("relispopulated", rep(true, n))
            .text("relreplident", rep("d", n))
            .bool("relispartition", rep(false, n))
            .int("relrewrite", rep(0, n))
            .nulls("relacl", text_list(), n)
            .nulls("reloptions", text_list(), n)
            .nulls("relpartbound", DataType::Utf8, n)
            .build()
    }

    fn pg_attribute(&self, rels: &[Relation]) -> Result<Arc<dyn TableProvider>> {
        let (mut rel, mut name, mut typ, mut num, mut typmod, mut notnull) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut len = vec![];
        for r in rels {
            for a in &r.attributes {
                rel.push(r.oid);
                name.push(a.name.clone());
                typ.push(a.type_oid);
                num.push(a.num);
                typmod.push(a.typmod);
                notnull.push(a.not_null);
                len.push(
                    TYPES
                        .iter()
                        .find(|t| t.oid == a.type_oid)
                        .map_or(-1, |t| t.len),
                );
            }
            // The key index's columns, as PostgreSQL lists an index's attributes.
            for (i, k) in r.key.iter().enumerate() {
                let a = &r.attributes[*k as usize - 1];
                rel.push(r.index_oid());
                name.push(a.name.clone());
                typ.push(a.type_oid);
                num.push(i as i16 + 1);
                typmod.push(a.typmod);
                notnull.push(a.not_null);
                len.push(
                    TYPES
                        .iter()
                        .find(|t| t.oid == a.type_oid)
                        .map_or(-1, |t| t.len),
                );
            }
        }
        let n = rel.len();
        let dims = typ
            .iter()
            .map(|t| i32::from(TYPES.iter().any(|x| x.oid == *t && x.elem != 0)))
            .collect();
        Rel::default()
            .int("attrelid", rel)
            .text("attname", name)
            .int("atttypid", typ)
            .int("attstattarget", rep(-1, n))
            .int2("attlen", len)
            .int2("attnum", num)
            .int("attndims", dims)
            .int("attcacheoff", rep(-1, n))
            .int("atttypmod", typmod)
            .bool("attbyval", rep(false, n))
            .text("attalign", rep("i", n))
            .text("attstorage", rep("p", n))
            .text("attcompression", rep("", n))
            .bool("attnotnull", notnull)
            .bool("atthasdef", rep(false, n))
            .bool("atthasmissing", rep(false, n))
            .text("attidentity", rep("", n))
            .text("attgenerated", rep("", n))
            .bool("attisdropped", rep(false, n))
            .bool("attislocal", rep(true, n))
            .int("attinhcount", rep(0, n))
            .int("attcollation", rep(0, n))
            .nulls("attacl", text_list(), n)
            .nulls("attoptions", text_list(), n)
            .nulls("attfdwoptions", text_list(), n)
            .build()
    }

    fn pg_type(&self) -> Result<Arc<dyn TableProvider>> {
        let n = TYPES.len();
        let col = |f: fn(&PgType) -> i32| TYPES.iter().map(f).collect::<Vec<_>>();
        Rel::default()
            .int("oid", col(|t| t.oid))
            .text("typname", TYPES.iter().map(|t| t.name).collect())
            .int("typnamespace", rep(PG_CATALOG_OID, n))
            .int("typowner", rep(OWNER_OID, n))
            .int2("typlen", TYPES.iter().map(|t| t.len).collect())
            .bool(
                "typbyval",
                TYPES.iter().map(|t| (1..=8).contains(&t.len)).collect(),
            )
            .text("typtype", rep("b", n))
            .text("typcategory", TYPES.iter().map(|t| t.category).collect())
            .bool("typispreferred", rep(false, n))
            .bool("typisdefined", rep(true, n))
            .text("typdelim", rep(",", n))
            .int("typrelid", rep(0, n))
            .int("typsubscript", rep(0, n))
            .int("typelem", col(|t| t.elem))
            .int("typarray", col(|t| t.array))
            .text(
                "typinput",
                TYPES.iter().map(|t| format!("{}in", t.name)).collect(),
            )
            .text(
                "typoutput",
                TYPES.iter().map(|t| format!("{}out", t.name)).collect(),
            )
            .text(
                "typreceive",
                TYPES.iter().map(|t| format!("{}recv", t.name)).collect(),
            )
            .text(
                "typsend",
                TYPES.iter().map(|t| format!("{}send", t.name)).collect(),
            )
            .text("typalign", rep("i", n))
            .text("typstorage", rep("p", n))
            .bool("typnotnull", rep(false, n))
            .int("typbasetype", rep(0, n))
            .int("typtypmod", rep(-1, n))
            .int("typndims", rep(0, n))
            .int("typcollation", rep(0, n))
            .nulls("typdefault", DataType::Utf8, n)
            .nulls("typacl", text_list(), n)
            .build()
    }

    fn pg_index(&self, rels: &[Relation]) -> Result<Arc<dyn TableProvider>> {
        let rels: Vec<&Relation> = rels.iter().filter(|r| !r.key.is_empty()).collect();
        let n = rels.len();
        let tables: Vec<bool> = rels.iter().map(|r| r.is_table()).collect();
        Rel::default()
            .int("indexrelid", rels.iter().map(|r| r.index_oid()).collect())
            .int("indrelid", rels.iter().map(|r| r.oid).collect())
            .int2(
                "indnatts",
                rels.iter().map(|r| r.key.len() as i16).collect(),
            )
            .int2(
                "indnkeyatts",
                rels.iter().map(|r| r.key.len() as i16).collect(),
            )
            .bool("indisunique", tables.clone())
            .bool("indnullsnotdistinct", rep(false, n))
            .bool("indisprimary", tables)
            .bool("indisexclusion", rep(false, n))
            .bool("indimmediate", rep(true, n))
            .bool("indisclustered", rep(false, n))
            .bool("indisvalid", rep(true, n))
            .bool("indcheckxmin", rep(false, n))
            .bool("indisready", rep(true, n))
            .bool("indislive", rep(true, n))
            .bool("indisreplident", rep(false, n))
            .col(
                "indkey",
                int2_lists(rels.iter().map(|r| r.key.clone()).collect()),
            )
            .col("indcollation", oid_lists(rep(vec![], n)))
            .col("indclass", oid_lists(rep(vec![], n)))
            .col(
                "indoption",
                int2_lists(rels.iter().map(|r| rep(0, r.key.len())).collect()),
            )
            .nulls("indexprs", DataType::Utf8, n)
            .nulls("indpred", DataType::Utf8, n)
            .build()
    }

    fn pg_constraint(&self, rels: &[Relation]) -> Result<Arc<dyn TableProvider>> {
        let rels: Vec<&Relation> = rels
            .iter()
            .filter(|r| r.is_table() && !r.key.is_empty())
            .collect();
        let n = rels.len();
        Rel::default()
            .int("oid", rels.iter().map(|r| r.index_oid()).collect())
            .text("conname", rels.iter().map(|r| r.index_name()).collect())
            .int("connamespace", rep(PUBLIC_OID, n))
            .text("contype", rep("p", n))
            .bool("condeferrable", rep(false, n))
            .bool("condeferred", rep(false, n))
            .bool("convalidated", rep(true, n))
            .int("conrelid", rels.iter().map(|r| r.oid).collect())
            .int("contypid", rep(0, n))
            .int("conindid", rels.iter().map(|r| r.index_oid()).collect())
            .int("conparentid", rep(0, n))
            .int("confrelid", rep(0, n))
            .text("confupdtype", rep(" ", n))
            .text("confdeltype", rep(" ", n))
            .text("confmatchtype", rep(" ", n))
            .bool("conislocal", rep(true, n))
            .int("coninhcount", rep(0, n))
            .bool("connoinherit", rep(true, n))
            .col(
                "conkey",
                int2_lists(rels.iter().map(|r| r.key.clone()).collect()),
            )
            .col("confkey", int2_lists(rep(vec![], n)))
            .nulls("conbin", DataType::Utf8, n)
            .build()
    }

    fn pg_description(&self, rels: &[Relation]) -> Result<Arc<dyn TableProvider>> {
        let (mut objoid, mut subid, mut text) = (vec![], vec![], vec![]);
        for r in rels {
            objoid.push(r.oid);
            subid.push(0);
            text.push(r.description());
            for a in &r.attributes {
                if let Some(d) = &a.description {
                    objoid.push(r.oid);
                    subid.push(i32::from(a.num));
                    text.push(d.clone());
                }
            }
        }
        let n = objoid.len();
        Rel::default()
            .int("objoid", objoid)
            .int("classoid", rep(PG_CLASS_OID, n))
            .int("objsubid", subid)
            .text("description", text)
            .build()
    }

    fn empty(&self, name: &str) -> Option<Result<Arc<dyn TableProvider>>> {
        let cols: &[(&str, DataType)] = match name {
            "pg_attrdef" => &[
                ("oid", DataType::Int32),
                ("adrelid", DataType::Int32),
                ("adnum", DataType::Int16),
                ("adbin", DataType::Utf8),
            ],
            "pg_collation" => &[
                ("oid", DataType::Int32),
                ("collname", DataType::Utf8),
                ("collnamespace", DataType::Int32),
            ],
            "pg_proc" => &[
                ("oid", DataType::Int32),
                ("proname", DataType::Utf8),
                ("pronamespace", DataType::Int32),
                ("proowner", DataType::Int32),
                ("prokind", DataType::Utf8),
                ("proretset", DataType::Boolean),
                ("prorettype", DataType::Int32),
                ("pronargs", DataType::Int16),
                ("proargtypes", DataType::Utf8),
                ("prosrc", DataType::Utf8),
            ],
            "pg_auth_members" => &[
                ("roleid", DataType::Int32),
                ("member", DataType::Int32),
                ("grantor", DataType::Int32),
                ("admin_option", DataType::Boolean),
            ],
            "pg_inherits" => &[
                ("inhrelid", DataType::Int32),
                ("inhparent", DataType::Int32),
                ("inhseqno", DataType::Int32),
                ("inhdetachpending", DataType::Boolean),
            ],
            "pg_policy" => &[
                ("oid", DataType::Int32),
                ("polname", DataType::Utf8),
                ("polrelid", DataType::Int32),
                ("polcmd", DataType::Utf8),
                ("polpermissive", DataType::Boolean),
                ("polqual", DataType::Utf8),
                ("polwithcheck", DataType::Utf8),
            ],
            "pg_trigger" => &[
                ("oid", DataType::Int32),
                ("tgrelid", DataType::Int32),
                ("tgname", DataType::Utf8),
                ("tgisinternal", DataType::Boolean),
                ("tgenabled", DataType::Utf8),
            ],
            "pg_rewrite" => &[
                ("oid", DataType::Int32),
                ("rulename", DataType::Utf8),
                ("ev_class", DataType::Int32),
                ("ev_type", DataType::Utf8),
            ],
            "pg_depend" => &[
                ("classid", DataType::Int32),
                ("objid", DataType::Int32),
                ("objsubid", DataType::Int32),
                ("refclassid", DataType::Int32),
                ("refobjid", DataType::Int32),
                ("refobjsubid", DataType::Int32),
                ("deptype", DataType::Utf8),
            ],
            "pg_extension" => &[
                ("oid", DataType::Int32),
                ("extname", DataType::Utf8),
                ("extnamespace", DataType::Int32),
                ("extversion", DataType::Utf8),
            ],
            "pg_opclass" => &[
                ("oid", DataType::Int32),
                ("opcname", DataType::Utf8),
                ("opcmethod", DataType::Int32),
                ("opcnamespace", DataType::Int32),
                ("opcdefault", DataType::Boolean),
            ],
            "pg_sequence" => &[("seqrelid", DataType::Int32), ("seqtypid", DataType::Int32)],
            _ => return None,
        };
        let mut rel = Rel::default();
        for (n, t) in cols {
            rel = rel.nulls(n, t.clone(), 0);
        }
        Some(rel.build())
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(empty) = self.empty(name) {
            return empty.map(Some);
        }
        let rels = relations(&self.engine);
        let provider = match name {
            "pg_namespace" => Rel::default()
                .int(
                    "oid",
                    vec![PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID],
                )
                .text(
                    "nspname",
                    vec!["pg_catalog", "public", "information_schema"],
                )
                .int("nspowner", rep(OWNER_OID, 3))
                .nulls("nspacl", text_list(), 3)
                .build()?,
            "pg_class" => self.pg_class(&rels)?,
            "pg_am" => Rel::default()
                .int("oid", vec![LOG_AM_OID, HASH_AM_OID])
                .text("amname", vec!["log", "hash"])
                .text("amtype", vec!["t", "i"])
                .build()?,
            "pg_attribute" => self.pg_attribute(&rels)?,
            "pg_type" => self.pg_type()?,
            "pg_index" => self.pg_index(&rels)?,
            "pg_constraint" => self.pg_constraint(&rels)?,
            "pg_description" => self.pg_description(&rels)?,
            "pg_database" => Rel::default()
                .int("oid", vec![DATABASE_OID])
                .text("datname", vec!["eddy"])
                .int("datdba", vec![OWNER_OID])
                .int("encoding", vec![6])
                .text("datlocprovider", vec!["c"])
                .bool("datistemplate", vec![false])
                .bool("datallowconn", vec![true])
                .int("datconnlimit", vec![-1])
                .int("dattablespace", vec![1663])
                .text("datcollate", vec!["C"])
                .text("datctype", vec!["C"])
                .nulls("daticulocale", DataType::Utf8, 1)
                .nulls("datacl", text_list(), 1)
                .build()?,
            "pg_roles" | "pg_user" => {
                let rel = if name == "pg_roles" {
                    Rel::default()
                        .int("oid", vec![OWNER_OID])
                        .text("rolname", vec!["eddy"])
                        .bool("rolsuper", vec![true])
                        .bool("rolinherit", vec![true])
                        .bool("rolcreaterole", vec![true])
                        .bool("rolcreatedb", vec![true])
                        .bool("rolcanlogin", vec![true])
                        .bool("rolreplication", vec![false])
                        .int("rolconnlimit", vec![-1])
                        .text("rolpassword", vec!["********"])
                        .bool("rolbypassrls", vec![true])
                } else {
                    Rel::default()
                        .text("usename", vec!["eddy"])
                        .int("usesysid", vec![OWNER_OID])
                        .bool("usecreatedb", vec![true])
                        .bool("usesuper", vec![true])
                        .bool("userepl", vec![false])
                        .bool("usebypassrls", vec![true])
                        .text("passwd", vec!["********"])
                };
                rel.col(
                    if name == "pg_roles" {
                        "rolvaliduntil"
                    } else {
                        "valuntil"
                    },
                    Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>])),
                )
                .nulls(
                    if name == "pg_roles" {
                        "rolconfig"
                    } else {
                        "useconfig"
                    },
                    text_list(),
                    1,
                )
                .build()?
            }
            "pg_settings" => settings::pg_settings(self.settings.as_ref())?,
            "pg_parameter_acl" => Rel::default()
                .nulls("oid", DataType::Int32, 0)
                .nulls("parname", DataType::Utf8, 0)
                .nulls("paracl", text_list(), 0)
                .build()?,
            "pg_tablespace" => Rel::default()
                .int("oid", vec![1663])
                .text("spcname", vec!["pg_default"])
                .int("spcowner", vec![OWNER_OID])
                .build()?,
            _ => return Ok(None),
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// Bytes of relation `oid` (local segments and cold objects), for `pg_table_size`; 0 for an
/// index (Eddy keeps none on disk) and `None` for an unknown oid.
pub fn relation_size(engine: &Engine, oid: i64) -> Option<i64> {
    let r = relation_of(engine, oid)?;
    if i64::from(r.oid) != oid {
        return Some(0);
    }
    model::relation_bytes(engine, &r.def.name)
}

/// `obj_description(oid)` of a relation, `col_description(oid, n)` of a column.
pub fn description(engine: &Engine, oid: i64, column: Option<i64>) -> Option<String> {
    let r = relation_of(engine, oid)?;
    if i64::from(r.oid) != oid {
        return None;
    }
    match column {
        None => Some(r.description()),
        Some(n) => r
            .attributes
            .iter()
            .find(|a| i64::from(a.num) == n)?
            .description
            .clone(),
    }
}

/// `pg_get_indexdef(oid)` of a key index.
pub fn index_def(engine: &Engine, oid: i64) -> Option<String> {
    let r = relation_of(engine, oid)?;
    (i64::from(r.index_oid()) == oid && !r.key.is_empty()).then(|| r.index_def())
}

/// `pg_get_constraintdef(oid)` of a table's primary key.
pub fn constraint_def(engine: &Engine, oid: i64) -> Option<String> {
    let r = relation_of(engine, oid)?;
    (i64::from(r.index_oid()) == oid && r.is_table()).then(|| r.constraint_def())
}

/// The oids of the catalog's own relations, as `'pg_class'::regclass` gives them
/// (`pg_description.classoid`).
const CATALOG_OIDS: [(&str, i64); 12] = [
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_database", 1262),
    ("pg_am", 2601),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_namespace", 2615),
    ("pg_constraint", 2606),
    ("pg_trigger", 2620),
    ("pg_rewrite", 2618),
];

/// The oid of relation `name` (`'s'::regclass`), if there is one.
pub fn relation_oid(engine: &Engine, name: &str) -> Option<i64> {
    if let Some((_, oid)) = CATALOG_OIDS
        .iter()
        .find(|(n, _)| *n == name.trim_start_matches("pg_catalog."))
    {
        return Some(*oid);
    }
    let name = name.trim_start_matches("public.").trim_matches('"');
    relations(engine).into_iter().find_map(|r| {
        if r.def.name == name {
            Some(i64::from(r.oid))
        } else if r.index_name() == name {
            Some(i64::from(r.index_oid()))
        } else {
            None
        }
    })
}

/// The name of relation `oid` (`oid::regclass` as text).
pub fn relation_name(engine: &Engine, oid: i64) -> Option<String> {
    let r = relation_of(engine, oid)?;
    Some(if i64::from(r.oid) == oid {
        quote_ident(&r.def.name)
    } else {
        quote_ident(&r.index_name())
    })
}
