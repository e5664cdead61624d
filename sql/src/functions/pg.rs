//! The functions PostgreSQL tools call on the catalog (psql's `\d` family, pgcli, SQLAlchemy,
//! pgjdbc): sizes, descriptions, definitions of keys, visibility, the current user and schemas,
//! and `regclass` conversions. Each answers from Eddy's catalog (`provider::pg_catalog`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::Engine;
use crate::provider::pg_catalog;

type Body = Arc<dyn Fn(&[ArrayRef], usize) -> datafusion::error::Result<ArrayRef> + Send + Sync>;

/// A function of any arguments with a fixed result type, computed over whole arrays.
struct Fun {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    body: Body,
}

impl std::fmt::Debug for Fun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Fun {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Fun {}
impl std::hash::Hash for Fun {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Fun {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.body)(&arrays, n)?))
    }
}

/// Registers `name` taking any of `arities` arguments (of any type).
fn register(
    ctx: &SessionContext,
    name: &'static str,
    arities: &[usize],
    ret: DataType,
    body: impl Fn(&[ArrayRef], usize) -> datafusion::error::Result<ArrayRef> + Send + Sync + 'static,
) {
    let sigs = arities
        .iter()
        .map(|a| {
            if *a == 0 {
                TypeSignature::Nullary
            } else {
                TypeSignature::Any(*a)
            }
        })
        .collect();
    ctx.register_udf(ScalarUDF::new_from_impl(Fun {
        name,
        signature: Signature::one_of(sigs, Volatility::Stable),
        ret,
        body: Arc::new(body),
    }));
}

/// Argument `i` as 64-bit integers (oids, attribute numbers, sizes); NULL where it is not one.
fn ints(args: &[ArrayRef], i: usize, n: usize) -> datafusion::error::Result<Int64Array> {
    match args.get(i) {
        Some(a)
            if matches!(
                a.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) =>
        {
            let a = cast(a, &DataType::Utf8)?;
            Ok(a.as_string::<i32>()
                .iter()
                .map(|s| s.and_then(|s| s.trim().parse::<i64>().ok()))
                .collect())
        }
        Some(a) => Ok(cast(a, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone()),
        None => Ok(Int64Array::from(vec![None; n])),
    }
}

fn texts(args: &[ArrayRef], i: usize) -> datafusion::error::Result<StringArray> {
    Ok(cast(&args[i], &DataType::Utf8)?.as_string::<i32>().clone())
}

fn constant_text(
    value: Option<&'static str>,
) -> impl Fn(&[ArrayRef], usize) -> datafusion::error::Result<ArrayRef> {
    move |_, n| Ok(Arc::new(StringArray::from(vec![value; n])) as ArrayRef)
}

fn constant_bool(
    value: bool,
) -> impl Fn(&[ArrayRef], usize) -> datafusion::error::Result<ArrayRef> {
    move |_, n| Ok(Arc::new(BooleanArray::from(vec![value; n])) as ArrayRef)
}

/// `pg_size_pretty`, PostgreSQL's rounding: bytes below 10 kB, then kB, MB, GB, TB.
pub fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    let mut half = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if half.abs() < LIMIT * 2 || unit == "TB" {
            return format!("{} {unit}", (half + 1) / 2);
        }
        half >>= 10;
    }
    unreachable!()
}

/// `eddy_array_param(x)`: an array parameter as an array — a list stays itself, text in
/// PostgreSQL's array syntax (`{a,"b c"}`) becomes a list of text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayParam {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayParam {
    fn name(&self) -> &str {
        "eddy_array_param"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match args.first() {
            Some(
                t @ (DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)),
            ) => t.clone(),
            _ => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        })
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let a = &arrays[0];
        if matches!(
            a.data_type(),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
        ) {
            return Ok(ColumnarValue::Array(a.clone()));
        }
        let texts = cast(a, &DataType::Utf8)?;
        let mut b = ListBuilder::new(StringBuilder::new());
        for t in texts.as_string::<i32>().iter() {
            match t {
                None => b.append(false),
                Some(t) => {
                    let Some(items) = crate::parser::parse_array_literal(t) else {
                        return Err(DataFusionError::Execution(format!(
                            "malformed array literal: \"{t}\""
                        )));
                    };
                    for item in items {
                        b.values().append_value(item);
                    }
                    b.append(true);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// Registers `current_setting(name [, missing_ok])` over `lookup` (the session's variables).
/// An unknown setting is an error (42704, PostgreSQL's "unrecognized configuration parameter"),
/// or NULL when `missing_ok` is true.
pub fn register_settings(
    ctx: &SessionContext,
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) {
    register(
        ctx,
        "current_setting",
        &[1, 2],
        DataType::Utf8,
        move |args, n| {
            let names = texts(args, 0)?;
            let missing_ok = match args.get(1) {
                Some(a) => cast(a, &DataType::Boolean)?.as_boolean().clone(),
                None => BooleanArray::from(vec![false; n]),
            };
            let mut out = StringBuilder::with_capacity(n, n * 8);
            for (name, missing_ok) in names.iter().zip(missing_ok.iter()) {
                let Some(name) = name else {
                    out.append_null();
                    continue;
                };
                match lookup(&name.to_ascii_lowercase()) {
                    Some(value) => out.append_value(value),
                    None if missing_ok == Some(true) => out.append_null(),
                    None => {
                        return Err(DataFusionError::External(Box::new(
                            crate::Error::UndefinedObject(format!(
                                "unrecognized configuration parameter \"{name}\""
                            )),
                        )));
                    }
                }
            }
            Ok(Arc::new(out.finish()))
        },
    );
}

/// Registers the catalog functions over `engine`.
pub fn register_catalog(ctx: &SessionContext, engine: &Arc<Engine>) {
    ctx.register_udf(ScalarUDF::new_from_impl(ArrayParam {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    for name in ["current_user", "session_user", "user", "current_role"] {
        register(ctx, name, &[0], DataType::Utf8, constant_text(Some("eddy")));
    }
    let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    register(ctx, "current_schemas", &[1], list, |args, n| {
        let implicit = cast(&args[0], &DataType::Boolean)?;
        let implicit = implicit.as_boolean();
        let mut b = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            if implicit.is_valid(i) && implicit.value(i) {
                b.values().append_value("pg_catalog");
            }
            b.values().append_value("public");
            b.append(true);
        }
        Ok(Arc::new(b.finish()))
    });
    register(ctx, "pg_size_pretty", &[1], DataType::Utf8, |args, n| {
        let v = ints(args, 0, n)?;
        Ok(Arc::new(
            v.iter()
                .map(|b| b.map(size_pretty))
                .collect::<StringArray>(),
        ))
    });
    for name in [
        "pg_table_size",
        "pg_total_relation_size",
        "pg_relation_size",
    ] {
        let engine = engine.clone();
        register(ctx, name, &[1, 2], DataType::Int64, move |args, n| {
            let oids = ints(args, 0, n)?;
            Ok(Arc::new(
                oids.iter()
                    .map(|o| o.and_then(|o| pg_catalog::relation_size(&engine, o)))
                    .collect::<Int64Array>(),
            ))
        });
    }
    register(ctx, "pg_indexes_size", &[1], DataType::Int64, |_, n| {
        Ok(Arc::new(Int64Array::from(vec![0; n])))
    });
    let e = engine.clone();
    register(
        ctx,
        "obj_description",
        &[1, 2],
        DataType::Utf8,
        move |args, n| {
            let oids = ints(args, 0, n)?;
            // Only relations (`pg_class`) have descriptions.
            let class = if args.len() > 1 {
                Some(texts(args, 1)?)
            } else {
                None
            };
            Ok(Arc::new(
                (0..n)
                    .map(|i| {
                        let is_class = class
                            .as_ref()
                            .is_none_or(|c| c.is_valid(i) && c.value(i) == "pg_class");
                        oids.is_valid(i)
                            .then(|| oids.value(i))
                            .filter(|_| is_class)
                            .and_then(|o| pg_catalog::description(&e, o, None))
                    })
                    .collect::<StringArray>(),
            ))
        },
    );
    let e = engine.clone();
    register(
        ctx,
        "col_description",
        &[2],
        DataType::Utf8,
        move |args, n| {
            let oids = ints(args, 0, n)?;
            let cols = ints(args, 1, n)?;
            Ok(Arc::new(
                oids.iter()
                    .zip(cols.iter())
                    .map(|(o, c)| pg_catalog::description(&e, o?, Some(c?)))
                    .collect::<StringArray>(),
            ))
        },
    );
    register(
        ctx,
        "shobj_description",
        &[2],
        DataType::Utf8,
        constant_text(None),
    );
    let e = engine.clone();
    register(
        ctx,
        "pg_get_indexdef",
        &[1, 3],
        DataType::Utf8,
        move |args, n| {
            let oids = ints(args, 0, n)?;
            // With a column number (> 0), PostgreSQL gives that key column's name.
            let col = ints(args, 1, n)?;
            Ok(Arc::new(
                oids.iter()
                    .zip(col.iter())
                    .map(|(o, c)| {
                        let def = pg_catalog::index_def(&e, o?)?;
                        match c {
                            Some(c) if c > 0 => {
                                let inner = def.rsplit_once('(')?.1.trim_end_matches(')');
                                inner.split(", ").nth(c as usize - 1).map(str::to_string)
                            }
                            _ => Some(def),
                        }
                    })
                    .collect::<StringArray>(),
            ))
        },
    );
    let e = engine.clone();
    register(
        ctx,
        "pg_get_constraintdef",
        &[1, 2],
        DataType::Utf8,
        move |args, n| {
            let oids = ints(args, 0, n)?;
            Ok(Arc::new(
                oids.iter()
                    .map(|o| pg_catalog::constraint_def(&e, o?))
                    .collect::<StringArray>(),
            ))
        },
    );
    let e = engine.clone();
    register(
        ctx,
        "eddy_regclass_oid",
        &[1],
        DataType::Int64,
        move |args, n| {
            let names = texts(args, 0)?;
            let mut out = Vec::with_capacity(n);
            for name in names.iter() {
                out.push(match name {
                    None => None,
                    Some(name) => match name.parse::<i64>() {
                        Ok(oid) => Some(oid),
                        Err(_) => match pg_catalog::relation_oid(&e, name) {
                            Some(oid) => Some(oid),
                            None => {
                                return Err(DataFusionError::Plan(format!(
                                    "relation \"{name}\" does not exist"
                                )));
                            }
                        },
                    },
                });
            }
            Ok(Arc::new(Int64Array::from(out)))
        },
    );
    let e = engine.clone();
    register(ctx, "to_regclass", &[1], DataType::Int64, move |args, _| {
        let names = texts(args, 0)?;
        Ok(Arc::new(
            names
                .iter()
                .map(|s| pg_catalog::relation_oid(&e, s?))
                .collect::<Int64Array>(),
        ))
    });
    register(ctx, "eddy_like_escape", &[2], DataType::Utf8, |args, _| {
        let patterns = texts(args, 0)?;
        let escapes = texts(args, 1)?;
        Ok(Arc::new(
            patterns
                .iter()
                .zip(escapes.iter())
                .map(|(p, e)| {
                    let escape = e?.chars().next()?;
                    Some(crate::parser::backslash_escaped(p?, escape))
                })
                .collect::<StringArray>(),
        ))
    });
    register(ctx, "to_regtype", &[1], DataType::Int64, |args, _| {
        let names = texts(args, 0)?;
        Ok(Arc::new(
            names
                .iter()
                .map(|s| pg_catalog::type_oid(s?).map(i64::from))
                .collect::<Int64Array>(),
        ))
    });
    let e = engine.clone();
    register(
        ctx,
        "eddy_regclass_name",
        &[1],
        DataType::Utf8,
        move |args, n| {
            let oids = ints(args, 0, n)?;
            Ok(Arc::new(
                oids.iter()
                    .map(|o| {
                        let o = o?;
                        Some(pg_catalog::relation_name(&e, o).unwrap_or_else(|| o.to_string()))
                    })
                    .collect::<StringArray>(),
            ))
        },
    );
    register(ctx, "format_type", &[2], DataType::Utf8, |args, n| {
        let oids = ints(args, 0, n)?;
        let mods = ints(args, 1, n)?;
        Ok(Arc::new(
            oids.iter()
                .zip(mods.iter())
                .map(|(o, m)| Some(pg_catalog::format_type(o?, m).unwrap_or_else(|| "???".into())))
                .collect::<StringArray>(),
        ))
    });
    for name in [
        "pg_get_viewdef",
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
        "pg_get_partkeydef",
        "pg_get_statisticsobjdef_columns",
        "pg_get_triggerdef",
        "pg_get_ruledef",
    ] {
        register(ctx, name, &[1, 2], DataType::Utf8, constant_text(None));
    }
    register(
        ctx,
        "pg_get_expr",
        &[2, 3],
        DataType::Utf8,
        constant_text(None),
    );
    for name in [
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
    ] {
        register(ctx, name, &[1], DataType::Boolean, constant_bool(true));
    }
    register(
        ctx,
        "pg_relation_is_publishable",
        &[1],
        DataType::Boolean,
        constant_bool(false),
    );
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
    ] {
        register(
            ctx,
            name,
            &[2, 3, 4],
            DataType::Boolean,
            constant_bool(true),
        );
    }
    // Every relation is in the data directory; PostgreSQL gives '' for the default tablespace.
    register(
        ctx,
        "pg_tablespace_location",
        &[1],
        DataType::Utf8,
        constant_text(Some("")),
    );
    register(
        ctx,
        "pg_encoding_to_char",
        &[1],
        DataType::Utf8,
        constant_text(Some("UTF8")),
    );
    register(
        ctx,
        "pg_get_userbyid",
        &[1],
        DataType::Utf8,
        constant_text(Some("eddy")),
    );
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_are_rounded_as_postgresql_does() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(20 * 1024 * 1024), "20 MB");
    }
}
