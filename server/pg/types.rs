//! Arrow fields as PostgreSQL types: the one mapping is `pg_catalog`'s
//! ([`eddy_sql::provider::pg_catalog::model::pg_type_of_field`]), so a result column is
//! announced with the type `\d` shows for the column it reads. Bound parameters are decoded in
//! [`super::params`].

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, TimeUnit};
use eddy_sql::provider::pg_catalog::model::{pg_type_of, pg_type_of_field};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};

fn of_oid(oid: i32) -> Type {
    u32::try_from(oid)
        .ok()
        .and_then(Type::from_oid)
        .unwrap_or(Type::TEXT)
}

/// The PostgreSQL type a column of this Arrow type (without a declared SQL type) is sent as.
pub fn pg_type(t: &DataType) -> Type {
    of_oid(pg_type_of(t).0)
}

/// The PostgreSQL type and type modifier a result field is announced with.
pub fn field_type(f: &Field) -> (Type, i32) {
    let (oid, typmod) = pg_type_of_field(f);
    (of_oid(oid), typmod)
}

/// The SQL type a declared parameter type is cast to (`None`: unknown or not castable here,
/// the parameter's type is inferred).
pub fn sql_type(t: &Type) -> Option<eddy_sql::parser::SqlType> {
    use datafusion::sql::sqlparser::ast::{DataType as Sql, ExactNumberInfo, TimezoneInfo};
    Some(match *t {
        Type::BOOL => Sql::Boolean,
        Type::INT2 => Sql::SmallInt(None),
        Type::INT4 => Sql::Int(None),
        Type::INT8 => Sql::BigInt(None),
        Type::FLOAT4 => Sql::Real,
        Type::FLOAT8 => Sql::DoublePrecision,
        Type::NUMERIC => Sql::Numeric(ExactNumberInfo::None),
        Type::TEXT | Type::VARCHAR => Sql::Text,
        Type::BYTEA => Sql::Bytea,
        Type::DATE => Sql::Date,
        Type::TIMESTAMP => Sql::Timestamp(None, TimezoneInfo::None),
        Type::TIMESTAMPTZ => Sql::Timestamp(None, TimezoneInfo::WithTimeZone),
        _ => return None,
    })
}

/// Row description for a result schema, in the formats the client asked for.
pub fn field_infos(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fmt = format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text);
            let (t, typmod) = field_type(f);
            // A repeated label (`SELECT 1, 2`) is unique inside the plan only.
            let name = eddy_sql::output_name(f.name()).to_string();
            FieldInfo::new(name, None, None, t, fmt).with_type_modifier(typmod)
        })
        .collect()
}

/// The PostgreSQL type to announce for a parameter whose type DataFusion inferred (a
/// parameter going into a `JSON` column is `json`).
pub fn param_pg_type(t: Option<&FieldRef>) -> Type {
    match t {
        Some(f) if f.data_type() != &DataType::Null => field_type(f).0,
        _ => Type::UNKNOWN,
    }
}

/// How many ticks of `unit` make one second.
pub fn unit_per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eddy_catalog::SqlType;

    use super::*;

    /// A column is announced as what it was declared: the catalog's mapping, once.
    #[test]
    fn declared_types_are_announced() {
        let text = |t: SqlType| Field::new("c", DataType::Utf8, true).with_metadata(t.metadata());
        for (field, oid, typmod) in [
            (text(SqlType::Varchar(Some(10))), Type::VARCHAR, 14),
            (text(SqlType::Varchar(None)), Type::VARCHAR, -1),
            (text(SqlType::Char(3)), Type::BPCHAR, 7),
            (text(SqlType::Text), Type::TEXT, -1),
            (text(SqlType::Json), Type::JSON, -1),
            (text(SqlType::Jsonb), Type::JSONB, -1),
            (text(SqlType::Uuid), Type::UUID, -1),
            (Field::new("c", DataType::Utf8, true), Type::TEXT, -1),
            (Field::new("c", DataType::Int8, true), Type::INT2, -1),
            (Field::new("c", DataType::Float32, true), Type::FLOAT4, -1),
            (
                Field::new("c", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Type::TIMESTAMP,
                -1,
            ),
            (
                Field::new("c", DataType::Timestamp(TimeUnit::Microsecond, None), true)
                    .with_metadata(SqlType::Precision(3).metadata()),
                Type::TIMESTAMP,
                3,
            ),
            (
                Field::new("c", DataType::Timestamp(TimeUnit::Millisecond, None), true),
                Type::TIMESTAMP,
                3,
            ),
            (
                Field::new(
                    "c",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    true,
                ),
                Type::TIMESTAMPTZ,
                -1,
            ),
            (
                Field::new("c", DataType::Time64(TimeUnit::Microsecond), true),
                Type::TIME,
                -1,
            ),
            (
                Field::new("c", DataType::Decimal128(10, 2), true),
                Type::NUMERIC,
                (10 << 16 | 2) + 4,
            ),
            (
                Field::new(
                    "c",
                    DataType::List(Arc::new(Field::new_list_field(
                        DataType::Timestamp(TimeUnit::Microsecond, None),
                        true,
                    ))),
                    true,
                ),
                Type::TIMESTAMP_ARRAY,
                -1,
            ),
        ] {
            assert_eq!(field_type(&field), (oid, typmod), "{field:?}");
        }
    }
}
