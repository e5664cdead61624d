//! One column of binary COPY fields into one Arrow array, in one loop per column over the
//! fields' bytes, as PostgreSQL's `recv` functions read them:
//!
//! | column | field |
//! |---|---|
//! | BOOLEAN | 1 byte, non-zero is true |
//! | SMALLINT, INT, BIGINT | 2, 4, 8 bytes, big-endian (exactly: `int8` into INT is refused) |
//! | REAL, DOUBLE | IEEE 754, 4 or 8 bytes |
//! | DECIMAL(p, s) | `numeric`: digit count, weight, sign, display scale, base-10000 digits; rounded half away from zero to `s` |
//! | VARCHAR | UTF-8 bytes |
//! | BYTES | the bytes |
//! | DATE | days since 2000-01-01, 4 bytes |
//! | TIMESTAMP | microseconds since 2000-01-01 00:00, 8 bytes (to Eddy's milliseconds, truncated as text COPY truncates) |
//! | TIME | microseconds since midnight, 8 bytes |
//! | `ARRAY<T>` | a one-dimensional array (dimensions, null flag, element type, then length-prefixed elements), or JSON text |
//! | MAP, STRUCT, other | JSON (or `jsonb`, its version byte first) as text COPY reads it |
//!
//! An array column's elements are gathered across all its rows and decoded as one child
//! column. Nothing here is decoded value by value into a `ScalarValue`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, ListArray, PrimitiveBuilder,
    StringArray, StringBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use eddy_catalog::StreamDef;

use super::binary::Field;
use super::convert_column;
use crate::Error;
use crate::parser::types::type_display;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Microseconds in a day (`24:00:00` is a valid time).
const DAY_MICROS: i64 = 86_400_000_000;

/// A field that is not a value of its column.
#[derive(Debug)]
pub(super) struct Bad {
    /// Its index among the column's fields.
    pub index: usize,
    /// What is wrong.
    pub message: String,
    /// Text that is not a value of the type (22P02), rather than bad binary (22P03).
    pub text: bool,
}

impl Bad {
    fn binary(index: usize, message: impl Into<String>) -> Bad {
        Bad {
            index,
            message: message.into(),
            text: false,
        }
    }

    /// The error for this field in row `row` (of the whole COPY), column `column`.
    pub fn into_error(self, def: &StreamDef, row: usize, column: &str) -> Error {
        let message = format!(
            "COPY {}, row {row}, column {column}: {}",
            def.name, self.message
        );
        if self.text {
            Error::InvalidValue(message)
        } else {
            Error::InvalidBinary(message)
        }
    }
}

type Decoded = std::result::Result<ArrayRef, Bad>;

/// Decodes the fields of one column of type `to` (their bytes are in `data`).
pub(super) fn decode_column(to: &DataType, data: &[u8], fields: &[Field]) -> Decoded {
    match to {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                match f.bytes(data) {
                    None => b.append_null(),
                    Some([v]) => b.append_value(*v != 0),
                    Some(v) => return Err(wrong_size(i, v.len(), 1, to)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Int8 => fixed::<Int8Type, 2>(to, data, fields, |b| {
            i8::try_from(i16::from_be_bytes(b)).map_err(|_| "value out of range".into())
        }),
        DataType::Int16 => fixed::<Int16Type, 2>(to, data, fields, |b| Ok(i16::from_be_bytes(b))),
        DataType::Int32 => fixed::<Int32Type, 4>(to, data, fields, |b| Ok(i32::from_be_bytes(b))),
        DataType::Int64 => fixed::<Int64Type, 8>(to, data, fields, |b| Ok(i64::from_be_bytes(b))),
        DataType::Float32 => {
            fixed::<Float32Type, 4>(to, data, fields, |b| Ok(f32::from_be_bytes(b)))
        }
        DataType::Float64 => {
            fixed::<Float64Type, 8>(to, data, fields, |b| Ok(f64::from_be_bytes(b)))
        }
        DataType::Date32 => fixed::<Date32Type, 4>(to, data, fields, |b| {
            i32::from_be_bytes(b)
                .checked_add(PG_EPOCH_DAYS)
                .filter(|_| !matches!(i32::from_be_bytes(b), i32::MIN | i32::MAX))
                .ok_or_else(|| "date out of range (infinite dates cannot be stored)".into())
        }),
        // A zone (`timestamptz`) does not change the encoding: UTC microseconds.
        DataType::Timestamp(unit, _) => {
            let to_unit: fn(i64) -> Option<i64> = match unit {
                TimeUnit::Second => |us| Some(us.div_euclid(1_000_000)),
                TimeUnit::Millisecond => |us| Some(us.div_euclid(1_000)),
                TimeUnit::Microsecond => Some,
                TimeUnit::Nanosecond => |us| us.checked_mul(1_000),
            };
            let read = move |b: [u8; 8]| {
                let pg = i64::from_be_bytes(b);
                (pg != i64::MIN && pg != i64::MAX)
                    .then(|| pg.checked_add(PG_EPOCH_MICROS))
                    .flatten()
                    .and_then(to_unit)
                    .ok_or_else(|| "timestamp out of range".to_string())
            };
            match unit {
                TimeUnit::Second => fixed::<TimestampSecondType, 8>(to, data, fields, read),
                TimeUnit::Millisecond => {
                    fixed::<TimestampMillisecondType, 8>(to, data, fields, read)
                }
                TimeUnit::Microsecond => {
                    fixed::<TimestampMicrosecondType, 8>(to, data, fields, read)
                }
                TimeUnit::Nanosecond => fixed::<TimestampNanosecondType, 8>(to, data, fields, read),
            }
        }
        DataType::Time32(unit) => {
            let per: i64 = if *unit == TimeUnit::Second {
                1_000_000
            } else {
                1_000
            };
            let read = move |b: [u8; 8]| {
                let us = i64::from_be_bytes(b);
                (0..=DAY_MICROS)
                    .contains(&us)
                    .then_some((us / per) as i32)
                    .ok_or_else(|| "time out of range".to_string())
            };
            if *unit == TimeUnit::Second {
                fixed::<Time32SecondType, 8>(to, data, fields, read)
            } else {
                fixed::<Time32MillisecondType, 8>(to, data, fields, read)
            }
        }
        DataType::Time64(unit) => {
            let times: i64 = if *unit == TimeUnit::Nanosecond {
                1_000
            } else {
                1
            };
            let read = move |b: [u8; 8]| {
                let us = i64::from_be_bytes(b);
                (0..=DAY_MICROS)
                    .contains(&us)
                    .then_some(us * times)
                    .ok_or_else(|| "time out of range".to_string())
            };
            if *unit == TimeUnit::Nanosecond {
                fixed::<Time64NanosecondType, 8>(to, data, fields, read)
            } else {
                fixed::<Time64MicrosecondType, 8>(to, data, fields, read)
            }
        }
        DataType::Decimal128(precision, scale) => {
            let mut b = Decimal128Builder::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                match f.bytes(data) {
                    None => b.append_null(),
                    Some(v) => match numeric(v, *precision, *scale) {
                        Ok(n) => b.append_value(n),
                        Err(why) => return Err(Bad::binary(i, why)),
                    },
                }
            }
            let array = b
                .finish()
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| Bad::binary(0, e.to_string()))?;
            Ok(Arc::new(array))
        }
        DataType::Utf8 => {
            let bytes: usize = fields.iter().map(|f| f.len.max(0) as usize).sum();
            let mut b = StringBuilder::with_capacity(fields.len(), bytes);
            for (i, f) in fields.iter().enumerate() {
                match f.bytes(data) {
                    None => b.append_null(),
                    Some(v) => b.append_value(utf8(i, v)?),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Binary => {
            let bytes: usize = fields.iter().map(|f| f.len.max(0) as usize).sum();
            let mut b = BinaryBuilder::with_capacity(fields.len(), bytes);
            for f in fields {
                b.append_option(f.bytes(data));
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::List(item) if holds_arrays(data, fields) => {
            list(item.data_type(), to, data, fields)
        }
        _ => as_text(to, data, fields),
    }
}

fn wrong_size(index: usize, got: usize, want: usize, to: &DataType) -> Bad {
    Bad::binary(
        index,
        format!(
            "incorrect binary data format: {got} bytes for {} (its binary form has {want})",
            type_display(to, None)
        ),
    )
}

/// A column of fixed-width values, each `N` bytes, read by `read`.
fn fixed<T: ArrowPrimitiveType, const N: usize>(
    to: &DataType,
    data: &[u8],
    fields: &[Field],
    read: impl Fn([u8; N]) -> std::result::Result<T::Native, String>,
) -> Decoded {
    let mut b = PrimitiveBuilder::<T>::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        match f.bytes(data) {
            None => b.append_null(),
            Some(v) => {
                let Ok(bytes) = <[u8; N]>::try_from(v) else {
                    return Err(wrong_size(i, v.len(), N, to));
                };
                match read(bytes) {
                    Ok(n) => b.append_value(n),
                    Err(why) => return Err(Bad::binary(i, why)),
                }
            }
        }
    }
    // The column's own type: a timestamp's zone, which the builder does not carry.
    Ok(Arc::new(b.finish().with_data_type(to.clone())))
}

/// Text, as PostgreSQL's `textrecv` takes it: UTF-8 without NUL bytes.
fn utf8(index: usize, v: &[u8]) -> std::result::Result<&str, Bad> {
    match std::str::from_utf8(v) {
        Ok(s) if !v.contains(&0) => Ok(s),
        _ => Err(Bad::binary(
            index,
            "invalid byte sequence for encoding \"UTF8\"",
        )),
    }
}

/// A `numeric` value at `scale` (rounded half away from zero), within `precision` digits.
fn numeric(v: &[u8], precision: u8, scale: i8) -> std::result::Result<i128, String> {
    let format = || "incorrect binary data format for numeric".to_string();
    if v.len() < 8 {
        return Err(format());
    }
    let word = |i: usize| u16::from_be_bytes([v[i], v[i + 1]]);
    let ndigits = word(0) as usize;
    let weight = word(2) as i16 as i64;
    let sign = word(4);
    if v.len() != 8 + 2 * ndigits {
        return Err(format());
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 | 0xD000 | 0xF000 => {
            return Err(format!(
                "NaN and infinity cannot be stored in {}",
                type_display(&DataType::Decimal128(precision, scale), None)
            ));
        }
        _ => return Err("invalid sign in external \"numeric\" value".into()),
    };
    let overflow = || {
        format!(
            "numeric field overflow: a field with precision {precision}, scale {scale} must \
             round to an absolute value less than 10^{}",
            i32::from(precision) - i32::from(scale)
        )
    };
    let scale = i64::from(scale);
    let mut value: i128 = 0;
    let mut round_up = false;
    for d in 0..ndigits {
        let digit = word(8 + 2 * d);
        if digit > 9999 {
            return Err("invalid digit in external \"numeric\" value".into());
        }
        // The group's units digit is at 10^(4 * (weight - d)); scaled by 10^scale.
        let units = 4 * (weight - d as i64) + scale;
        for (k, place) in [1000u16, 100, 10, 1].into_iter().enumerate() {
            let decimal = i128::from(digit / place % 10);
            let exponent = units + 3 - k as i64;
            if exponent >= 0 {
                if decimal != 0 {
                    let term = u32::try_from(exponent)
                        .ok()
                        .and_then(|e| 10i128.checked_pow(e))
                        .and_then(|p| p.checked_mul(decimal))
                        .ok_or_else(overflow)?;
                    value = value.checked_add(term).ok_or_else(overflow)?;
                }
            } else if exponent == -1 {
                round_up = decimal >= 5;
            }
        }
    }
    if round_up {
        value = value.checked_add(1).ok_or_else(overflow)?;
    }
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if value >= limit {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

/// Whether an ARRAY column's fields are PostgreSQL arrays rather than JSON text: decided by
/// the first value (an array starts with its dimension count, whose first byte is 0; JSON
/// text never starts with a NUL byte).
fn holds_arrays(data: &[u8], fields: &[Field]) -> bool {
    fields
        .iter()
        .find_map(|f| f.bytes(data))
        .is_none_or(|v| v.first() == Some(&0))
}

/// The element type oids an array of `item` may declare.
fn element_oids(item: &DataType) -> &'static [u32] {
    match item {
        DataType::Boolean => &[16],
        DataType::Int8 | DataType::Int16 => &[21],
        DataType::Int32 => &[23],
        DataType::Int64 => &[20],
        DataType::Float32 => &[700],
        DataType::Float64 => &[701],
        DataType::Decimal128(..) => &[1700],
        // text, varchar, bpchar, name
        DataType::Utf8 => &[25, 1043, 1042, 19],
        DataType::Binary => &[17],
        DataType::Date32 => &[1082],
        DataType::Timestamp(..) => &[1114, 1184],
        DataType::Time32(_) | DataType::Time64(_) => &[1083],
        // json, jsonb: nested values travel as JSON.
        _ => &[114, 3802],
    }
}

/// A column of one-dimensional PostgreSQL arrays of `item`: the headers are read row by row,
/// the elements of all rows decoded as one column.
fn list(item: &DataType, to: &DataType, data: &[u8], fields: &[Field]) -> Decoded {
    let mut offsets = Vec::with_capacity(fields.len() + 1);
    offsets.push(0i32);
    let mut valid = Vec::with_capacity(fields.len());
    let mut elements: Vec<Field> = Vec::new();
    // The row of each element, for errors.
    let mut element_rows: Vec<usize> = Vec::new();
    let oids = element_oids(item);
    for (i, f) in fields.iter().enumerate() {
        let Some(v) = f.bytes(data) else {
            valid.push(false);
            offsets.push(elements.len() as i32);
            continue;
        };
        let bad = |m: &str| Bad::binary(i, m.to_string());
        let int = |at: usize| -> std::result::Result<i32, Bad> {
            v.get(at..at + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("incorrect binary data format for an array"))
        };
        let ndim = int(0)?;
        let flags = int(4)?;
        let oid = int(8)? as u32;
        if !(0..=6).contains(&ndim) {
            return Err(bad(&format!("invalid number of dimensions: {ndim}")));
        }
        if ndim > 1 {
            return Err(bad(&format!(
                "a {ndim}-dimensional array cannot be stored in {} (one dimension)",
                type_display(to, None)
            )));
        }
        if flags != 0 && flags != 1 {
            return Err(bad("invalid array flags"));
        }
        if ndim == 1 && !oids.contains(&oid) {
            return Err(bad(&format!(
                "wrong element type: oid {oid} for an element of {}",
                type_display(to, None)
            )));
        }
        let mut at = 12;
        let count = if ndim == 1 {
            let n = int(12)?;
            int(16)?; // lower bound: any
            at = 20;
            usize::try_from(n).map_err(|_| bad("invalid array dimension"))?
        } else {
            0
        };
        for _ in 0..count {
            let len = int(at)?;
            let start = f.start + at + 4;
            at += 4 + len.max(0) as usize;
            if len < -1 || at > v.len() {
                return Err(bad("incorrect binary data format for an array element"));
            }
            elements.push(Field { start, len });
            element_rows.push(i);
        }
        if at != v.len() {
            return Err(bad("incorrect binary data format for an array"));
        }
        valid.push(true);
        offsets.push(i32::try_from(elements.len()).map_err(|_| bad("array too large"))?);
    }
    let values = decode_column(item, data, &elements).map_err(|mut b| {
        b.index = element_rows[b.index.min(element_rows.len().saturating_sub(1))];
        b
    })?;
    let DataType::List(field) = to else {
        return Err(Bad::binary(0, "not a list"));
    };
    ListArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        values,
        Some(NullBuffer::from(valid)),
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| Bad::binary(0, e.to_string()))
}

/// A column read from its fields as text (JSON for nested types), as text COPY reads it;
/// `jsonb`'s version byte is dropped.
fn as_text(to: &DataType, data: &[u8], fields: &[Field]) -> Decoded {
    let bytes: usize = fields.iter().map(|f| f.len.max(0) as usize).sum();
    let mut b = StringBuilder::with_capacity(fields.len(), bytes);
    for (i, f) in fields.iter().enumerate() {
        match f.bytes(data) {
            None => b.append_null(),
            Some(v) => b.append_value(utf8(i, v.strip_prefix(&[1]).unwrap_or(v))?),
        }
    }
    let strings: StringArray = b.finish();
    match convert_column(to, &strings) {
        Ok(Ok(array)) => Ok(array),
        Ok(Err(super::Bad { row, why })) => Err(Bad {
            index: row,
            message: format!(
                "invalid input for type {}: \"{}\"{why}",
                type_display(to, None),
                strings.value(row)
            ),
            text: true,
        }),
        Err(e) => Err(Bad {
            index: 0,
            message: e.to_string(),
            text: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Decimal128Type;

    use super::*;

    /// Fields laid out one after another in a buffer (`None`: NULL).
    fn column(values: &[Option<Vec<u8>>]) -> (Vec<u8>, Vec<Field>) {
        let mut data = vec![];
        let mut fields = vec![];
        for v in values {
            match v {
                None => fields.push(Field { start: 0, len: -1 }),
                Some(v) => {
                    fields.push(Field {
                        start: data.len(),
                        len: v.len() as i32,
                    });
                    data.extend_from_slice(v);
                }
            }
        }
        (data, fields)
    }

    /// PostgreSQL's binary numeric for a decimal string (as `numeric_send` writes it).
    fn numeric_bytes(s: &str) -> Vec<u8> {
        let (negative, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let int_pad = (4 - int.len() % 4) % 4;
        let int = format!("{}{int}", "0".repeat(int_pad));
        let frac_pad = (4 - frac.len() % 4) % 4;
        let frac_p = format!("{frac}{}", "0".repeat(frac_pad));
        let digits: Vec<u16> = int
            .as_bytes()
            .chunks(4)
            .chain(frac_p.as_bytes().chunks(4))
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect();
        let weight = (int.len() / 4) as i16 - 1;
        let mut out = vec![];
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&(frac.len() as u16).to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_read_at_the_column_scale() {
        let cases = [
            ("12.34", 1234),
            ("-12.34", -1234),
            ("0.005", 1),   // half away from zero
            ("-0.005", -1), // ...both ways
            ("0.0049", 0),
            ("12345678.9", 1_234_567_890),
            ("0", 0),
            ("100000", 10_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(numeric(&numeric_bytes(text), 10, 2), Ok(want), "{text}");
        }
        assert!(
            numeric(&numeric_bytes("123456789"), 10, 2)
                .unwrap_err()
                .contains("overflow")
        );
        // NaN
        assert!(
            numeric(&[0, 0, 0, 0, 0xC0, 0, 0, 0], 10, 2)
                .unwrap_err()
                .contains("NaN")
        );
        assert!(
            numeric(&[0, 1, 0, 0, 0, 0, 0, 0], 10, 2).is_err(),
            "digit missing"
        );
        assert!(
            numeric(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10], 10, 2).is_err(),
            "a digit over 9999"
        );
        // The largest DECIMAL(38, 0).
        let max = "9".repeat(38);
        assert_eq!(
            numeric(&numeric_bytes(&max), 38, 0),
            Ok(max.parse::<i128>().unwrap())
        );
    }

    #[test]
    fn fixed_width_types_refuse_other_widths() {
        let (data, fields) = column(&[Some(7i32.to_be_bytes().to_vec()), None]);
        let a = decode_column(&DataType::Int32, &data, &fields).unwrap();
        assert_eq!(a.as_primitive::<Int32Type>().value(0), 7);
        assert!(a.is_null(1));
        let e = decode_column(&DataType::Int64, &data, &fields).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(e.message.contains("4 bytes for BIGINT"), "{}", e.message);
    }

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        let (data, fields) = column(&[Some(0i32.to_be_bytes().to_vec())]);
        let a = decode_column(&DataType::Date32, &data, &fields).unwrap();
        assert_eq!(a.as_primitive::<Date32Type>().value(0), PG_EPOCH_DAYS);
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let (data, fields) = column(&[
            Some(1_500i64.to_be_bytes().to_vec()),
            Some((-1i64).to_be_bytes().to_vec()),
            Some(i64::MAX.to_be_bytes().to_vec()),
        ]);
        let e = decode_column(&ts, &data, &fields).unwrap_err();
        assert_eq!((e.index, e.message.as_str()), (2, "timestamp out of range"));
        let a = decode_column(&ts, &data, &fields[..2]).unwrap();
        let a = a.as_primitive::<TimestampMillisecondType>();
        assert_eq!(a.value(0), PG_EPOCH_MICROS / 1000 + 1);
        assert_eq!(
            a.value(1),
            PG_EPOCH_MICROS / 1000 - 1,
            "floored, as text COPY"
        );
    }

    #[test]
    fn arrays_decode_their_elements_as_one_column() {
        let array = |elems: &[Option<i64>]| {
            let mut v = vec![];
            v.extend_from_slice(&1i32.to_be_bytes());
            v.extend_from_slice(&(elems.contains(&None) as i32).to_be_bytes());
            v.extend_from_slice(&20u32.to_be_bytes());
            v.extend_from_slice(&(elems.len() as i32).to_be_bytes());
            v.extend_from_slice(&1i32.to_be_bytes());
            for e in elems {
                match e {
                    None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(n) => {
                        v.extend_from_slice(&8i32.to_be_bytes());
                        v.extend_from_slice(&n.to_be_bytes());
                    }
                }
            }
            v
        };
        let empty = [0i32.to_be_bytes(), 0i32.to_be_bytes(), 20u32.to_be_bytes()].concat();
        let (data, fields) = column(&[
            Some(array(&[Some(1), None, Some(3)])),
            None,
            Some(empty),
            Some(array(&[Some(-4)])),
        ]);
        let to = DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Int64,
            true,
        )));
        let a = decode_column(&to, &data, &fields).unwrap();
        let a = a.as_list::<i32>();
        assert_eq!(a.len(), 4);
        assert!(a.is_null(1));
        assert_eq!(a.value(2).len(), 0);
        let first = a.value(0);
        let first = first.as_primitive::<Int64Type>();
        assert_eq!(first.iter().collect::<Vec<_>>(), [Some(1), None, Some(3)]);
        // An element of the wrong width names the row holding it.
        let mut bad = array(&[Some(5)]);
        bad[23] = 4;
        bad.truncate(bad.len() - 4);
        let (data, fields) = column(&[Some(array(&[Some(1)])), Some(bad)]);
        let e = decode_column(&to, &data, &fields).unwrap_err();
        assert_eq!(e.index, 1, "{}", e.message);
        // JSON text for an array column, as COPY TO writes arrays it cannot type.
        let (data, fields) = column(&[Some(b"[1, 2]".to_vec())]);
        let a = decode_column(&to, &data, &fields).unwrap();
        assert_eq!(a.as_list::<i32>().value(0).len(), 2);
    }

    #[test]
    fn decimals_keep_the_column_precision() {
        let to = DataType::Decimal128(10, 2);
        let (data, fields) = column(&[Some(numeric_bytes("1.5")), None]);
        let a = decode_column(&to, &data, &fields).unwrap();
        assert_eq!(a.data_type(), &to);
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 150);
    }
}
