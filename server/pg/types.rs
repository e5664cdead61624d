//! Arrow types as PostgreSQL types, and bound parameters as DataFusion scalars.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};

/// The PostgreSQL type a column of this Arrow type is sent as.
pub fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            match f.data_type() {
                DataType::Boolean => Type::BOOL_ARRAY,
                DataType::Int16 => Type::INT2_ARRAY,
                DataType::Int32 => Type::INT4_ARRAY,
                DataType::Int64 => Type::INT8_ARRAY,
                DataType::Float32 => Type::FLOAT4_ARRAY,
                DataType::Float64 => Type::FLOAT8_ARRAY,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT_ARRAY,
                _ => Type::JSON,
            }
        }
        DataType::Struct(_) | DataType::Map(..) => Type::JSON,
        _ => Type::TEXT,
    }
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
pub fn field_infos(
    schema: &datafusion::arrow::datatypes::Schema,
    format: Option<&Format>,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fmt = format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text);
            // A repeated label (`SELECT 1, 2`) is unique inside the plan only.
            let name = eddy_sql::output_name(f.name()).to_string();
            FieldInfo::new(name, None, None, pg_type(f.data_type()), fmt)
        })
        .collect()
}

/// The PostgreSQL type to announce for a parameter whose type DataFusion inferred.
pub fn param_pg_type(t: Option<&DataType>) -> Type {
    match t {
        Some(DataType::Null) | None => Type::UNKNOWN,
        Some(t) => pg_type(t),
    }
}

fn bad_param(i: usize, e: impl std::fmt::Display) -> PgWireError {
    super::errors::bad_parameter(i, e)
}

/// Decodes the bound parameters of a portal into scalars of the inferred types.
pub fn params<S: Clone>(
    portal: &Portal<S>,
    declared: &[Option<Type>],
    inferred: &[Option<DataType>],
) -> PgWireResult<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let target = inferred.get(i).cloned().flatten();
        let pg = declared
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| *t != Type::UNKNOWN)
            .unwrap_or_else(|| match &target {
                Some(t) => pg_type(t),
                None => Type::TEXT,
            });
        let value = decode_param(portal, i, &pg)?;
        // Where DataFusion could not infer a type (`$1 + $2`: `None`, or `Null`), the value
        // keeps the type the client declared, as PostgreSQL resolves the statement with it.
        let value = match &target {
            Some(t) if *t != DataType::Null && value.data_type() != *t => {
                value.cast_to(t).map_err(|e| bad_param(i, e))?
            }
            _ => value,
        };
        out.push(value);
    }
    Ok(out)
}

fn decode_param<S: Clone>(portal: &Portal<S>, i: usize, pg: &Type) -> PgWireResult<ScalarValue> {
    Ok(match *pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, pg)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, pg)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, pg)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, pg)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, pg)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, pg)?),
        Type::NUMERIC => {
            let d = portal.parameter::<rust_decimal::Decimal>(i, pg)?;
            match d {
                Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
                None => ScalarValue::Decimal128(None, 38, 0),
            }
        }
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, pg)?),
        Type::DATE => {
            let d = portal.parameter::<chrono::NaiveDate>(i, pg)?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            ScalarValue::Date32(d.map(|d| (d - epoch).num_days() as i32))
        }
        Type::TIMESTAMP => {
            let t = portal.parameter::<chrono::NaiveDateTime>(i, pg)?;
            ScalarValue::TimestampMicrosecond(t.map(|t| t.and_utc().timestamp_micros()), None)
        }
        Type::TIMESTAMPTZ => {
            let t = portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(i, pg)?;
            ScalarValue::TimestampMicrosecond(
                t.map(|t| t.timestamp_micros()),
                Some("+00:00".into()),
            )
        }
        _ => ScalarValue::Utf8(portal.parameter::<String>(i, pg)?),
    })
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
