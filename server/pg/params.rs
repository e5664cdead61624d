//! Bound parameters as DataFusion scalars, in text and binary format, for every type Eddy
//! has.
//!
//! A parameter's wire type is the one the client declared at Parse, else the one the server
//! announced for it (what DataFusion inferred). Its target is the type DataFusion inferred
//! (the column an INSERT writes, the other side of a comparison).
//!
//! - **Text**: a value sent as text, `unknown`, `json`, `uuid`, ... is read as the target
//!   type exactly as COPY reads a field ([`eddy_sql::ingest::copy::parse_text`]: arrays as
//!   `{a,"b c"}` or JSON, maps and structs as JSON, timestamps with their offsets); a value
//!   of another declared type (`int4`, `timestamptz`, `int4[]`) is read as that type, then
//!   cast to the target, as PostgreSQL casts it.
//! - **Binary**: decoded by its wire type (PostgreSQL's binary formats: big-endian integers,
//!   `numeric` in base 10000, microseconds since 2000-01-01, 16-byte UUIDs, `jsonb` with its
//!   version byte, one-dimensional arrays of any of these), then cast to the target; text
//!   decoded from binary (`text`, `json`, `uuid`) is read as the target like a text value.
//!
//! Microseconds are kept: a `timestamptz` is an instant (UTC), cast to a `timestamp`
//! column as its UTC wall-clock time, as PostgreSQL does in a session whose TimeZone is UTC.

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::ScalarValue;
use eddy_sql::parser::types::UTC;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{PgWireError, PgWireResult};
use postgres_types::Kind;

use super::numeric::PgNumeric;
use super::types::pg_type;

/// Microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

fn bad_param(i: usize, e: impl std::fmt::Display) -> PgWireError {
    super::errors::bad_parameter(i, e)
}

/// Decodes the bound parameters of a portal into scalars of the inferred types.
pub fn params<S: Clone>(
    portal: &Portal<S>,
    declared: &[Option<Type>],
    inferred: &[Option<FieldRef>],
) -> PgWireResult<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let inferred = inferred
            .get(i)
            .cloned()
            .flatten()
            .filter(|f| f.data_type() != &DataType::Null);
        let target = inferred.as_ref().map(|f| f.data_type().clone());
        let declared = declared
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| *t != Type::UNKNOWN);
        let raw = portal.parameters.get(i).cloned().flatten();
        let binary = portal.parameter_format.is_binary(i);
        // Binary needs a type: the declared one, else the one announced (`param_pg_type`).
        let wire = declared
            .clone()
            .or_else(|| inferred.as_ref().map(|f| super::types::field_type(f).0));
        let value = decode(
            declared.as_ref(),
            wire.as_ref(),
            target.as_ref(),
            raw.as_deref(),
            binary,
        )
        .map_err(|e| bad_param(i, e))?;
        out.push(value);
    }
    Ok(out)
}

/// One parameter: its declared type, its wire type (declared or announced), its target, its
/// bytes (`None`: NULL), its format.
fn decode(
    declared: Option<&Type>,
    wire: Option<&Type>,
    target: Option<&DataType>,
    raw: Option<&[u8]>,
    binary: bool,
) -> Result<ScalarValue, String> {
    let Some(raw) = raw else {
        // NULL: of the target type (or, without one, the declared type's, else text), as
        // PostgreSQL resolves `$1 + $2` with the declared types.
        let t = target
            .cloned()
            .or_else(|| declared.and_then(natural_type))
            .unwrap_or(DataType::Utf8);
        return ScalarValue::try_from(&t).map_err(|e| e.to_string());
    };
    let value = if binary {
        let wire = wire
            .cloned()
            .or_else(|| target.map(pg_type))
            .unwrap_or(Type::TEXT);
        match from_binary(&wire, raw)? {
            Decoded::Value(v) => v,
            Decoded::Text(text) => return text_as(&text, declared, target),
        }
    } else {
        let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
        return text_as(text, declared, target);
    };
    cast_to_target(value, target)
}

/// A value where DataFusion inferred no type keeps its own; else it is cast to the target.
fn cast_to_target(value: ScalarValue, target: Option<&DataType>) -> Result<ScalarValue, String> {
    match target {
        Some(t) if value.data_type() != *t => value.cast_to(t).map_err(|e| e.to_string()),
        _ => Ok(value),
    }
}

/// A text value: read as the target when it was sent as text (or a text-like type), else as
/// its declared type and cast to the target.
fn text_as(
    text: &str,
    declared: Option<&Type>,
    target: Option<&DataType>,
) -> Result<ScalarValue, String> {
    let text: std::borrow::Cow<str> = match declared {
        // A UUID compares and is stored in its canonical form.
        Some(t) if *t == Type::UUID => {
            eddy_sql::ingest::checks::uuid(text).map_err(|e| e.to_string())?
        }
        _ => text.into(),
    };
    let own = declared.filter(|t| !is_text_like(t)).and_then(natural_type);
    match (own, target) {
        (Some(own), target) => cast_to_target(parse(&text, &own)?, target),
        (None, Some(target)) => parse(&text, target),
        (None, None) => Ok(ScalarValue::Utf8(Some(text.into_owned()))),
    }
}

/// `text` in PostgreSQL's text form as a value of type `t`.
fn parse(text: &str, t: &DataType) -> Result<ScalarValue, String> {
    match plain(text, t) {
        Some(value) => Ok(value),
        None => parse_as_copy(text, t),
    }
}

/// `text` read by COPY's text converter: every form and every error COPY has.
fn parse_as_copy(text: &str, t: &DataType) -> Result<ScalarValue, String> {
    let strings = StringArray::from(vec![Some(text)]);
    let array = eddy_sql::ingest::copy::parse_text(t, &strings).map_err(|e| e.to_string())?;
    ScalarValue::try_from_array(&array, 0).map_err(|e| e.to_string())
}

/// The commonest parameters — text, and integers written as bare digits — read without
/// building an array to cast (a quarter of a prepared read by key's parameter handling went
/// there). Anything else, and every text that would fail (an overflow, a sign alone), is
/// `None` and goes the whole way, which reads and refuses it exactly as COPY does.
fn plain(text: &str, t: &DataType) -> Option<ScalarValue> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match t {
        DataType::Utf8 => Some(ScalarValue::Utf8(Some(text.to_owned()))),
        DataType::Int64 if integer => text.parse().ok().map(|v| ScalarValue::Int64(Some(v))),
        DataType::Int32 if integer => text.parse().ok().map(|v| ScalarValue::Int32(Some(v))),
        DataType::Int16 if integer => text.parse().ok().map(|v| ScalarValue::Int16(Some(v))),
        _ => None,
    }
}

/// Types whose values are text to be read as whatever they go into.
fn is_text_like(t: &Type) -> bool {
    matches!(
        *t,
        Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::JSON
            | Type::JSONB
            | Type::UUID
    )
}

/// The Arrow type a value of PostgreSQL type `t` is read as on its own.
fn natural_type(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        ref t if is_text_like(t) => DataType::Utf8,
        ref t => match t.kind() {
            Kind::Array(element) => DataType::List(Arc::new(Field::new_list_field(
                natural_type(element)?,
                true,
            ))),
            _ => return None,
        },
    })
}

/// What a binary value decodes to.
enum Decoded {
    /// A value of its own type.
    Value(ScalarValue),
    /// Text (`text`, `json`, `uuid`, ...), to be read as the target type.
    Text(String),
}

fn fixed<const N: usize>(raw: &[u8], t: &Type) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("a binary {t} is {N} bytes, got {}", raw.len()))
}

/// A value in PostgreSQL's binary format for type `t`.
fn from_binary(t: &Type, raw: &[u8]) -> Result<Decoded, String> {
    use Decoded::{Text, Value};
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|e| e.to_string())
    };
    Ok(match *t {
        Type::BOOL => Value(ScalarValue::Boolean(Some(fixed::<1>(raw, t)?[0] != 0))),
        Type::INT2 => Value(ScalarValue::Int16(Some(i16::from_be_bytes(fixed(raw, t)?)))),
        Type::INT4 => Value(ScalarValue::Int32(Some(i32::from_be_bytes(fixed(raw, t)?)))),
        Type::OID => Value(ScalarValue::Int32(Some(
            u32::from_be_bytes(fixed(raw, t)?) as i32
        ))),
        Type::INT8 => Value(ScalarValue::Int64(Some(i64::from_be_bytes(fixed(raw, t)?)))),
        Type::FLOAT4 => Value(ScalarValue::Float32(Some(f32::from_be_bytes(fixed(
            raw, t,
        )?)))),
        Type::FLOAT8 => Value(ScalarValue::Float64(Some(f64::from_be_bytes(fixed(
            raw, t,
        )?)))),
        Type::NUMERIC => {
            let n = PgNumeric::decode(raw)?;
            // Enough digits for the value: the target's type then rounds it to its scale.
            let scale = n.scale as u8;
            let precision = n.precision().clamp(1, 38) as u8;
            Value(ScalarValue::Decimal128(
                Some(n.value),
                precision,
                scale as i8,
            ))
        }
        Type::BYTEA => Value(ScalarValue::Binary(Some(raw.to_vec()))),
        Type::DATE => {
            let days = i32::from_be_bytes(fixed(raw, t)?);
            finite(days == i32::MAX || days == i32::MIN, t)?;
            Value(ScalarValue::Date32(Some(
                days.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")?,
            )))
        }
        Type::TIME => Value(ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(
            fixed(raw, t)?,
        )))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(fixed(raw, t)?);
            finite(micros == i64::MAX || micros == i64::MIN, t)?;
            let micros = micros
                .checked_add(PG_EPOCH_MICROS)
                .ok_or("timestamp out of range")?;
            let zone = (*t == Type::TIMESTAMPTZ).then(|| UTC.into());
            Value(ScalarValue::TimestampMicrosecond(Some(micros), zone))
        }
        Type::UUID => Text(eddy_sql::ingest::checks::uuid_from_bytes(&fixed(raw, t)?)),
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => Text(utf8(json)?),
            _ => return Err("jsonb binary format version 1 expected".into()),
        },
        ref t if is_text_like(t) => Text(utf8(raw)?),
        ref t => match t.kind() {
            Kind::Array(element) => Value(array_from_binary(element, raw)?),
            _ => return Err(format!("binary parameters of type {t} are not supported")),
        },
    })
}

fn finite(infinite: bool, t: &Type) -> Result<(), String> {
    if infinite {
        return Err(format!("an infinite {t} cannot be stored"));
    }
    Ok(())
}

/// A one-dimensional array (or an empty one) in PostgreSQL's binary format: dimensions,
/// NULL flag, element type, then each element as length (-1: NULL) and bytes. Every length
/// is checked against the bytes there are.
fn array_from_binary(element: &Type, raw: &[u8]) -> Result<ScalarValue, String> {
    let mut pos = 0;
    let int = |pos: &mut usize| -> Result<i32, String> {
        let b = raw
            .get(*pos..*pos + 4)
            .ok_or_else(|| "array parameter is truncated".to_string())?;
        *pos += 4;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let dimensions = int(&mut pos)?;
    let _has_nulls = int(&mut pos)?;
    let element_oid = int(&mut pos)? as u32;
    if element_oid != element.oid() {
        return Err(format!(
            "array of {element} holds elements of type oid {element_oid}"
        ));
    }
    let len = match dimensions {
        0 => 0,
        1 => {
            let len = int(&mut pos)?;
            let _lower_bound = int(&mut pos)?;
            usize::try_from(len).map_err(|_| "negative array length".to_string())?
        }
        _ => return Err("multidimensional array parameters are not supported".into()),
    };
    let mut values = Vec::with_capacity(len.min(raw.len()));
    for _ in 0..len {
        let n = int(&mut pos)?;
        let value = if n < 0 {
            None
        } else {
            let end = pos
                .checked_add(n as usize)
                .filter(|end| *end <= raw.len())
                .ok_or_else(|| "array element is truncated".to_string())?;
            let bytes = &raw[pos..end];
            pos = end;
            Some(match from_binary(element, bytes)? {
                Decoded::Value(v) => v,
                Decoded::Text(s) => ScalarValue::Utf8(Some(s)),
            })
        };
        values.push(value);
    }
    if pos != raw.len() {
        return Err("array parameter has bytes after its last element".into());
    }
    let element_type =
        natural_type(element).ok_or_else(|| format!("arrays of {element} are not supported"))?;
    // NUMERIC elements each have their own precision: one type for all, as the column's.
    let element_type = match element_type {
        DataType::Decimal128(..) => {
            let scale = values
                .iter()
                .flatten()
                .map(|v| match v {
                    ScalarValue::Decimal128(_, _, s) => *s,
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            DataType::Decimal128(38, scale)
        }
        t => t,
    };
    let values = values
        .into_iter()
        .map(|v| match v {
            Some(v) => v.cast_to(&element_type),
            None => ScalarValue::try_from(&element_type),
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    Ok(ScalarValue::List(ScalarValue::new_list(
        &values,
        &element_type,
        true,
    )))
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use datafusion::arrow::array::{Array, AsArray};

    use super::*;

    fn list(t: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(t, true)))
    }

    /// The shortcut for plain integers and text reads exactly what the whole way reads, and
    /// leaves every other text (and every failure, with its message) to it.
    #[test]
    fn plain_parameters_read_as_the_whole_way_reads_them() {
        let types = [
            DataType::Int64,
            DataType::Int32,
            DataType::Int16,
            DataType::Utf8,
        ];
        let texts = [
            "0",
            "42",
            "-7",
            "007",
            "032767",
            "032768",
            "-32768",
            "2147483648",
            "-",
            "",
            " 1",
            "1 ",
            "+1",
            "1.5",
            "1e3",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "abc",
            "é",
        ];
        for t in &types {
            for text in texts {
                if let Some(fast) = plain(text, t) {
                    assert_eq!(Ok(fast), parse_as_copy(text, t), "{text:?} as {t}");
                }
                assert_eq!(parse(text, t), parse_as_copy(text, t), "{text:?} as {t}");
            }
        }
        assert!(plain("9223372036854775808", &DataType::Int64).is_none());
        assert!(plain("-", &DataType::Int64).is_none());
        assert_eq!(
            plain("-12", &DataType::Int64),
            Some(ScalarValue::Int64(Some(-12)))
        );
    }

    fn text(declared: Option<Type>, target: Option<DataType>, v: &str) -> ScalarValue {
        decode(
            declared.as_ref(),
            declared.as_ref(),
            target.as_ref(),
            Some(v.as_bytes()),
            false,
        )
        .unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn binary(declared: Type, target: Option<DataType>, v: &[u8]) -> Result<ScalarValue, String> {
        decode(
            Some(&declared),
            Some(&declared),
            target.as_ref(),
            Some(v),
            true,
        )
    }

    fn array(element: &Type, items: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i32(i32::from(items.iter().any(Option::is_none)));
        b.put_u32(element.oid());
        b.put_i32(items.len() as i32);
        b.put_i32(1);
        for item in items {
            match item {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
        b.to_vec()
    }

    #[test]
    fn text_arrays_are_arrays_not_one_string() {
        let strings = list(DataType::Utf8);
        let v = text(None, Some(strings.clone()), r#"{a,"b c",NULL}"#);
        let ScalarValue::List(l) = &v else {
            panic!("{v:?}")
        };
        let items = l.value(0);
        assert_eq!(items.len(), 3);
        assert_eq!(items.as_string::<i32>().value(1), "b c");
        assert!(items.is_null(2));
        // Declared text[] (psycopg's binary=False for a list) reads the same.
        let declared = text(Some(Type::TEXT_ARRAY), Some(strings), "{a,b}");
        let ScalarValue::List(l) = &declared else {
            panic!("{declared:?}")
        };
        assert_eq!(l.value(0).len(), 2);
        // int4[] into ARRAY<BIGINT>: read as int4[], cast.
        let ints = text(Some(Type::INT4_ARRAY), Some(list(DataType::Int64)), "{1,2}");
        assert_eq!(ints.data_type(), list(DataType::Int64));
    }

    #[test]
    fn timestamps_keep_microseconds_and_their_instant() {
        let us = DataType::Timestamp(TimeUnit::Microsecond, None);
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
        assert_eq!(
            text(None, Some(us.clone()), "2024-01-01 10:00:00.123456"),
            ScalarValue::TimestampMicrosecond(Some(1_704_103_200_123_456), None)
        );
        // An offset is an instant: 10:00+02 is 08:00 UTC, in either column.
        let at_8 = 1_704_096_000_000_000;
        assert_eq!(
            text(
                Some(Type::TIMESTAMPTZ),
                Some(tz.clone()),
                "2024-01-01 10:00:00+02"
            ),
            ScalarValue::TimestampMicrosecond(Some(at_8), Some(UTC.into()))
        );
        assert_eq!(
            text(
                Some(Type::TIMESTAMPTZ),
                Some(us.clone()),
                "2024-01-01 10:00:00+02"
            ),
            ScalarValue::TimestampMicrosecond(Some(at_8), None)
        );
        let micros = (at_8 - PG_EPOCH_MICROS + 1).to_be_bytes();
        assert_eq!(
            binary(Type::TIMESTAMPTZ, Some(tz), &micros).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(at_8 + 1), Some(UTC.into()))
        );
        assert!(binary(Type::TIMESTAMP, Some(us), &i64::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn binary_scalars_decode_by_their_type() {
        assert_eq!(
            binary(Type::INT2, Some(DataType::Int64), &7i16.to_be_bytes()).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert_eq!(
            binary(Type::FLOAT4, None, &1.5f32.to_be_bytes()).unwrap(),
            ScalarValue::Float32(Some(1.5))
        );
        assert_eq!(
            binary(
                Type::TIME,
                Some(DataType::Time64(TimeUnit::Microsecond)),
                &45_296_789_123i64.to_be_bytes()
            )
            .unwrap(),
            ScalarValue::Time64Microsecond(Some(45_296_789_123))
        );
        assert_eq!(
            binary(Type::DATE, None, &0i32.to_be_bytes()).unwrap(),
            ScalarValue::Date32(Some(PG_EPOCH_DAYS))
        );
        let uuid = [
            0xa0u8, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(
            binary(Type::UUID, Some(DataType::Utf8), &uuid).unwrap(),
            ScalarValue::Utf8(Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()))
        );
        assert_eq!(
            binary(Type::JSONB, Some(DataType::Utf8), b"\x01{\"a\":1}").unwrap(),
            ScalarValue::Utf8(Some("{\"a\":1}".into()))
        );
        assert!(binary(Type::JSONB, Some(DataType::Utf8), b"{}").is_err());
        let mut n = BytesMut::new();
        PgNumeric {
            value: 12345,
            scale: 3,
        }
        .encode(&mut n);
        assert_eq!(
            binary(Type::NUMERIC, Some(DataType::Decimal128(10, 2)), &n).unwrap(),
            ScalarValue::Decimal128(Some(1235), 10, 2)
        );
        assert!(binary(Type::INT4, None, &[0, 1]).is_err());
    }

    #[test]
    fn binary_arrays_decode_and_are_bounded() {
        let one = 1i16.to_be_bytes();
        let two = 2i16.to_be_bytes();
        let raw = array(&Type::INT2, &[Some(&one), None, Some(&two)]);
        let v = binary(Type::INT2_ARRAY, Some(list(DataType::Int32)), &raw).unwrap();
        let ScalarValue::List(l) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(l.value(0).data_type(), &DataType::Int32);
        assert_eq!(l.value(0).len(), 3);
        let strings = array(&Type::TEXT, &[Some(b"a"), Some(b"b c")]);
        let v = binary(Type::TEXT_ARRAY, Some(list(DataType::Utf8)), &strings).unwrap();
        let ScalarValue::List(l) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(l.value(0).as_string::<i32>().value(1), "b c");
        // Every cut of a valid array is refused, never read past its end.
        for cut in 0..raw.len() {
            assert!(
                binary(Type::INT2_ARRAY, None, &raw[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut lying = raw.clone();
        lying[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(binary(Type::INT2_ARRAY, None, &lying).is_err());
        let empty = {
            let mut b = BytesMut::new();
            b.put_i32(0);
            b.put_i32(0);
            b.put_u32(Type::INT4.oid());
            b.to_vec()
        };
        let v = binary(Type::INT4_ARRAY, Some(list(DataType::Int32)), &empty).unwrap();
        let ScalarValue::List(l) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(l.value(0).len(), 0);
    }

    #[test]
    fn nulls_take_the_target_type() {
        assert_eq!(
            decode(Some(&Type::INT4), None, Some(&DataType::Int64), None, true).unwrap(),
            ScalarValue::Int64(None)
        );
        assert_eq!(
            decode(Some(&Type::INT4), None, None, None, false).unwrap(),
            ScalarValue::Int32(None)
        );
    }
}
