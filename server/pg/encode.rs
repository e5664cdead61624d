//! Arrow batches to PostgreSQL rows (DataRow messages, or COPY lines).
//!
//! Each column is downcast once per batch ([`Column::new`]); rows are then encoded value by
//! value, in text or binary as the client asked, by pgwire's encoders.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy_catalog::SqlType;
use eddy_sql::ingest::copy::CopyFormat;

use super::copy_csv::CsvCopyEncoder;
use super::numeric::PgNumeric;
use pgwire::api::results::{CopyEncoder, CopyTextOptions, DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use postgres_types::ToSql;

/// Something that takes one field at a time: a row encoder or a COPY encoder.
pub trait FieldSink {
    /// Appends the next field of the current row.
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()>;
}

impl FieldSink for DataRowEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        self.encode_field(value)
    }
}

fn err(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(e.to_string().into())
}

/// One column, downcast once.
enum Column<'a> {
    Null,
    Bool(&'a datafusion::arrow::array::BooleanArray),
    I16(Box<dyn Fn(usize) -> i16 + 'a>),
    I32(Box<dyn Fn(usize) -> i32 + 'a>),
    I64(Box<dyn Fn(usize) -> i64 + 'a>),
    F32(Box<dyn Fn(usize) -> f32 + 'a>),
    F64(&'a datafusion::arrow::array::Float64Array),
    Decimal(&'a datafusion::arrow::array::Decimal128Array, u32),
    /// Text; a `CHAR(n)` column's values padded with spaces to n characters on the way out.
    Text(Box<dyn Fn(usize) -> &'a str + 'a>, Option<usize>),
    Bytes(Box<dyn Fn(usize) -> &'a [u8] + 'a>),
    Date(Box<dyn Fn(usize) -> Option<NaiveDate> + 'a>),
    Time(Box<dyn Fn(usize) -> Option<NaiveTime> + 'a>),
    Timestamp(Box<dyn Fn(usize) -> Option<NaiveDateTime> + 'a>, bool),
    /// Numbers sent as `numeric` that no Rust type holds (wide decimals, UInt64): their text.
    Numeric(ArrayFormatter<'a>),
    /// Lists of simple types as PostgreSQL arrays, nested types as JSON, anything else as text.
    Display(ArrayFormatter<'a>),
    Json(&'a ArrayRef),
}

fn timestamp(v: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let per = crate::pg::types::unit_per_second(&unit);
    let secs = v.div_euclid(per);
    let nanos = (v.rem_euclid(per) * (1_000_000_000 / per)) as u32;
    DateTime::from_timestamp(secs, nanos).map(|d| d.naive_utc())
}

fn time_of_day(nanos: i64) -> Option<NaiveTime> {
    NaiveTime::from_num_seconds_from_midnight_opt(
        (nanos / 1_000_000_000) as u32,
        (nanos % 1_000_000_000) as u32,
    )
}

impl<'a> Column<'a> {
    fn new(a: &'a ArrayRef) -> PgWireResult<Column<'a>> {
        use DataType as D;
        Ok(match a.data_type() {
            D::Null => Column::Null,
            D::Boolean => Column::Bool(a.as_boolean()),
            D::Int8 => {
                let x = a.as_primitive::<Int8Type>();
                Column::I16(Box::new(move |i| x.value(i) as i16))
            }
            D::Int16 => {
                let x = a.as_primitive::<Int16Type>();
                Column::I16(Box::new(move |i| x.value(i)))
            }
            D::UInt8 => {
                let x = a.as_primitive::<UInt8Type>();
                Column::I16(Box::new(move |i| x.value(i) as i16))
            }
            D::Int32 => {
                let x = a.as_primitive::<Int32Type>();
                Column::I32(Box::new(move |i| x.value(i)))
            }
            D::UInt16 => {
                let x = a.as_primitive::<UInt16Type>();
                Column::I32(Box::new(move |i| x.value(i) as i32))
            }
            D::Int64 => {
                let x = a.as_primitive::<Int64Type>();
                Column::I64(Box::new(move |i| x.value(i)))
            }
            D::UInt32 => {
                let x = a.as_primitive::<UInt32Type>();
                Column::I64(Box::new(move |i| x.value(i) as i64))
            }
            D::Float16 => {
                let x = a.as_primitive::<Float16Type>();
                Column::F32(Box::new(move |i| x.value(i).to_f32()))
            }
            D::Float32 => {
                let x = a.as_primitive::<Float32Type>();
                Column::F32(Box::new(move |i| x.value(i)))
            }
            D::Float64 => Column::F64(a.as_primitive::<Float64Type>()),
            D::Decimal128(_, s) if *s >= 0 => {
                Column::Decimal(a.as_primitive::<Decimal128Type>(), *s as u32)
            }
            D::Utf8 => {
                let x = a.as_string::<i32>();
                Column::Text(Box::new(move |i| x.value(i)), None)
            }
            D::LargeUtf8 => {
                let x = a.as_string::<i64>();
                Column::Text(Box::new(move |i| x.value(i)), None)
            }
            D::Utf8View => {
                let x = a.as_string_view();
                Column::Text(Box::new(move |i| x.value(i)), None)
            }
            D::Binary => {
                let x = a.as_binary::<i32>();
                Column::Bytes(Box::new(move |i| x.value(i)))
            }
            D::LargeBinary => {
                let x = a.as_binary::<i64>();
                Column::Bytes(Box::new(move |i| x.value(i)))
            }
            D::BinaryView => {
                let x = a.as_binary_view();
                Column::Bytes(Box::new(move |i| x.value(i)))
            }
            D::Date32 => {
                let x = a.as_primitive::<Date32Type>();
                Column::Date(Box::new(move |i| x.value_as_date(i)))
            }
            D::Date64 => {
                let x = a.as_primitive::<Date64Type>();
                Column::Date(Box::new(move |i| x.value_as_date(i)))
            }
            D::Time32(TimeUnit::Second) => {
                let x = a.as_primitive::<Time32SecondType>();
                Column::Time(Box::new(move |i| {
                    time_of_day(x.value(i) as i64 * 1_000_000_000)
                }))
            }
            D::Time32(_) => {
                let x = a.as_primitive::<Time32MillisecondType>();
                Column::Time(Box::new(move |i| {
                    time_of_day(x.value(i) as i64 * 1_000_000)
                }))
            }
            D::Time64(TimeUnit::Microsecond) => {
                let x = a.as_primitive::<Time64MicrosecondType>();
                Column::Time(Box::new(move |i| time_of_day(x.value(i) * 1_000)))
            }
            D::Time64(_) => {
                let x = a.as_primitive::<Time64NanosecondType>();
                Column::Time(Box::new(move |i| time_of_day(x.value(i))))
            }
            D::Timestamp(unit, tz) => {
                let tz = tz.is_some();
                let f: Box<dyn Fn(usize) -> Option<NaiveDateTime> + 'a> = match unit {
                    TimeUnit::Second => {
                        let x = a.as_primitive::<TimestampSecondType>();
                        Box::new(move |i| timestamp(x.value(i), TimeUnit::Second))
                    }
                    TimeUnit::Millisecond => {
                        let x = a.as_primitive::<TimestampMillisecondType>();
                        Box::new(move |i| timestamp(x.value(i), TimeUnit::Millisecond))
                    }
                    TimeUnit::Microsecond => {
                        let x = a.as_primitive::<TimestampMicrosecondType>();
                        Box::new(move |i| timestamp(x.value(i), TimeUnit::Microsecond))
                    }
                    TimeUnit::Nanosecond => {
                        let x = a.as_primitive::<TimestampNanosecondType>();
                        Box::new(move |i| timestamp(x.value(i), TimeUnit::Nanosecond))
                    }
                };
                Column::Timestamp(f, tz)
            }
            D::List(_) | D::LargeList(_) | D::FixedSizeList(..) | D::Struct(_) | D::Map(..) => {
                Column::Json(a)
            }
            D::UInt64
            | D::Decimal32(..)
            | D::Decimal64(..)
            | D::Decimal128(..)
            | D::Decimal256(..) => Column::Numeric(
                ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).map_err(err)?,
            ),
            _ => Column::Display(
                ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).map_err(err)?,
            ),
        })
    }

    fn put<S: FieldSink>(&self, array: &ArrayRef, row: usize, sink: &mut S) -> PgWireResult<()> {
        if array.is_null(row) {
            return sink.put(&None::<i32>);
        }
        match self {
            Column::Null => sink.put(&None::<i32>),
            Column::Bool(x) => sink.put(&x.value(row)),
            Column::I16(f) => sink.put(&f(row)),
            Column::I32(f) => sink.put(&f(row)),
            Column::I64(f) => sink.put(&f(row)),
            Column::F32(f) => sink.put(&f(row)),
            Column::F64(x) => sink.put(&x.value(row)),
            Column::Decimal(x, scale) => sink.put(&PgNumeric {
                value: x.value(row),
                scale: *scale,
            }),
            Column::Text(f, None) => sink.put(&PgText(f(row))),
            Column::Text(f, Some(n)) => {
                let v = f(row);
                let chars = v.chars().count();
                if chars >= *n {
                    sink.put(&PgText(v))
                } else {
                    let padded = format!("{v}{:width$}", "", width = n - chars);
                    sink.put(&PgText(&padded))
                }
            }
            Column::Bytes(f) => sink.put(&f(row)),
            Column::Date(f) => sink.put(&f(row)),
            Column::Time(f) => sink.put(&f(row).map(PgTime::Time)),
            Column::Timestamp(f, false) => sink.put(&f(row).map(PgTime::Timestamp)),
            Column::Timestamp(f, true) => {
                sink.put(&f(row).map(|t| {
                    PgTime::TimestampTz(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc))
                }))
            }
            Column::Display(fmt) => sink.put(&fmt.value(row).to_string()),
            Column::Numeric(fmt) => sink.put(&NumericText(fmt.value(row).to_string())),
            Column::Json(a) => json_cell(a, row, sink),
        }
    }
}

/// A list of simple values as a PostgreSQL array (the types `pg_type_of` announces as
/// arrays); anything nested as JSON.
fn json_cell<S: FieldSink>(a: &ArrayRef, row: usize, sink: &mut S) -> PgWireResult<()> {
    if let DataType::List(f) = a.data_type() {
        let item = a.as_list::<i32>().value(row);
        if let Some(put) = typed_array(&item, sink) {
            return put;
        }
        match f.data_type() {
            DataType::Int32 => {
                return sink.put(&item.as_primitive::<Int32Type>().iter().collect::<Vec<_>>());
            }
            DataType::Int64 => {
                return sink.put(&item.as_primitive::<Int64Type>().iter().collect::<Vec<_>>());
            }
            DataType::Int16 => {
                return sink.put(&item.as_primitive::<Int16Type>().iter().collect::<Vec<_>>());
            }
            DataType::Float64 => {
                return sink.put(
                    &item
                        .as_primitive::<Float64Type>()
                        .iter()
                        .collect::<Vec<_>>(),
                );
            }
            DataType::Float32 => {
                return sink.put(
                    &item
                        .as_primitive::<Float32Type>()
                        .iter()
                        .collect::<Vec<_>>(),
                );
            }
            DataType::Boolean => return sink.put(&item.as_boolean().iter().collect::<Vec<_>>()),
            DataType::Utf8 => {
                return sink.put(
                    &item
                        .as_string::<i32>()
                        .iter()
                        .map(|s| s.map(str::to_string))
                        .collect::<Vec<_>>(),
                );
            }
            // `array_agg(x::text)`: DataFusion plans text as Utf8View; announced as text[] too.
            DataType::Utf8View => {
                return sink.put(
                    &item
                        .as_string_view()
                        .iter()
                        .map(|s| s.map(str::to_string))
                        .collect::<Vec<_>>(),
                );
            }
            DataType::LargeUtf8 => {
                return sink.put(
                    &item
                        .as_string::<i64>()
                        .iter()
                        .map(|s| s.map(str::to_string))
                        .collect::<Vec<_>>(),
                );
            }
            _ => {}
        }
    }
    sink.put(&json_value(a, row)?)
}

/// Arrays of TINYINT, DECIMAL, DATE, TIME and TIMESTAMP elements, through the scalar
/// encoders (`None`: not one of those).
fn typed_array<S: FieldSink>(item: &ArrayRef, sink: &mut S) -> Option<PgWireResult<()>> {
    let column = Column::new(item).ok()?;
    let n = item.len();
    let valid = |i: usize| item.is_valid(i);
    Some(match &column {
        Column::I16(f) if item.data_type() == &DataType::Int8 => {
            sink.put(&(0..n).map(|i| valid(i).then(|| f(i))).collect::<Vec<_>>())
        }
        Column::Decimal(x, scale) => sink.put(
            &(0..n)
                .map(|i| {
                    valid(i).then(|| PgNumeric {
                        value: x.value(i),
                        scale: *scale,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Column::Date(f) => sink.put(
            &(0..n)
                .map(|i| valid(i).then(|| f(i)).flatten())
                .collect::<Vec<_>>(),
        ),
        Column::Time(f) => sink.put(
            &(0..n)
                .map(|i| valid(i).then(|| f(i).map(PgTime::Time)).flatten())
                .collect::<Vec<_>>(),
        ),
        Column::Timestamp(f, zoned) => sink.put(
            &(0..n)
                .map(|i| {
                    valid(i)
                        .then(|| {
                            f(i).map(|t| {
                                if *zoned {
                                    PgTime::TimestampTz(DateTime::<Utc>::from_naive_utc_and_offset(
                                        t, Utc,
                                    ))
                                } else {
                                    PgTime::Timestamp(t)
                                }
                            })
                        })
                        .flatten()
                })
                .collect::<Vec<_>>(),
        ),
        _ => return None,
    })
}

fn json_value(a: &ArrayRef, row: usize) -> PgWireResult<serde_json::Value> {
    use serde_json::Value;
    if a.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::List(_) => {
            let item = a.as_list::<i32>().value(row);
            Value::Array(
                (0..item.len())
                    .map(|i| json_value(&item, i))
                    .collect::<PgWireResult<_>>()?,
            )
        }
        DataType::LargeList(_) => {
            let item = a.as_list::<i64>().value(row);
            Value::Array(
                (0..item.len())
                    .map(|i| json_value(&item, i))
                    .collect::<PgWireResult<_>>()?,
            )
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut map = serde_json::Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                map.insert(f.name().clone(), json_value(col, row)?);
            }
            Value::Object(map)
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let entries = m.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let fmt =
                ArrayFormatter::try_new(keys.as_ref(), &FormatOptions::default()).map_err(err)?;
            let mut map = serde_json::Map::new();
            for i in 0..entries.len() {
                map.insert(fmt.value(i).to_string(), json_value(values, i)?);
            }
            Value::Object(map)
        }
        DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => {
            let text = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
                .map_err(err)?
                .value(row)
                .to_string();
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        _ => Value::String(
            ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
                .map_err(err)?
                .value(row)
                .to_string(),
        ),
    })
}

/// The columns of a batch, downcast; `CHAR(n)` columns (stored without their trailing
/// spaces, as PostgreSQL compares them) padded to `n` as PostgreSQL sends them.
fn columns(batch: &RecordBatch) -> PgWireResult<Vec<Column<'_>>> {
    batch
        .columns()
        .iter()
        .zip(batch.schema_ref().fields())
        .map(|(a, f)| {
            Ok(match (Column::new(a)?, SqlType::of_field(f)) {
                (Column::Text(text, _), Some(SqlType::Char(n))) => {
                    Column::Text(text, Some(n as usize))
                }
                (column, _) => column,
            })
        })
        .collect()
}

/// Encodes every row of a batch into DataRow messages.
pub fn data_rows(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let columns = columns(batch)?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (col, array) in columns.iter().zip(batch.columns()) {
            col.put(array, row, &mut encoder)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

/// The rows of a COPY TO: pgwire's encoder for text and binary, Eddy's for CSV (see
/// [`CsvCopyEncoder`]).
pub(crate) enum CopyRows {
    Pg(CopyEncoder),
    Csv(CsvCopyEncoder),
}

impl CopyRows {
    fn take_copy(&mut self) -> CopyData {
        match self {
            CopyRows::Pg(e) => e.take_copy(),
            CopyRows::Csv(e) => e.take_copy(),
        }
    }
}

impl FieldSink for CopyRows {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        match self {
            CopyRows::Pg(e) => e.encode_field(value),
            CopyRows::Csv(e) => e.put(value),
        }
    }
}

/// Encodes every row of a batch as COPY data, one message per row.
pub(crate) fn copy_rows(
    batch: &RecordBatch,
    encoder: &mut CopyRows,
) -> PgWireResult<Vec<CopyData>> {
    let columns = columns(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (col, array) in columns.iter().zip(batch.columns()) {
            col.put(array, row, encoder)?;
        }
        out.push(encoder.take_copy());
    }
    Ok(out)
}

/// Seconds fraction as PostgreSQL prints it: microseconds, trailing zeros trimmed, none if zero.
fn fraction(nanos: u32) -> String {
    let micros = nanos / 1_000;
    if micros == 0 {
        return String::new();
    }
    let s = format!(".{micros:06}");
    s.trim_end_matches('0').to_string()
}

/// Date/time values whose text form matches PostgreSQL's (`2026-11-23 10:00:00`, `...:00.5`,
/// `+00` for time zones); binary form is postgres-types' own.
#[derive(Debug)]
enum PgTime {
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Time(NaiveTime),
}

impl ToSql for PgTime {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgTime::Timestamp(t) => t.to_sql(ty, out),
            PgTime::TimestampTz(t) => t.to_sql(ty, out),
            PgTime::Time(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <NaiveDateTime as ToSql>::accepts(ty)
            || <DateTime<Utc> as ToSql>::accepts(ty)
            || <NaiveTime as ToSql>::accepts(ty)
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgTime {
    fn to_sql_text(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
        _format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use chrono::Timelike;
        let text = match self {
            PgTime::Timestamp(t) => format!(
                "{}{}",
                t.format("%Y-%m-%d %H:%M:%S"),
                fraction(t.nanosecond())
            ),
            PgTime::TimestampTz(t) => format!(
                "{}{}+00",
                t.format("%Y-%m-%d %H:%M:%S"),
                fraction(t.nanosecond())
            ),
            PgTime::Time(t) => format!("{}{}", t.format("%H:%M:%S"), fraction(t.nanosecond())),
        };
        // Inside an array, as PostgreSQL writes it: quoted, for the space.
        let quote = matches!(ty.kind(), postgres_types::Kind::Array(_)) && text.contains(' ');
        if quote {
            out.extend_from_slice(b"\"");
        }
        out.extend_from_slice(text.as_bytes());
        if quote {
            out.extend_from_slice(b"\"");
        }
        Ok(postgres_types::IsNull::No)
    }
}

/// A text value as the text-like type its column is announced as: `text`, `varchar`,
/// `bpchar` and `json` are its bytes, `jsonb` in binary its bytes after the format's version
/// byte (1), `uuid` in binary its 16 bytes.
#[derive(Debug)]
struct PgText<'a>(&'a str);

impl ToSql for PgText<'_> {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_types::Type;
        match *ty {
            Type::JSONB => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(self.0.as_bytes());
            }
            Type::UUID => {
                let bytes = eddy_sql::ingest::checks::uuid_to_bytes(self.0)
                    .ok_or_else(|| format!("\"{}\" is not a canonical UUID", self.0))?;
                out.extend_from_slice(&bytes);
            }
            _ => out.extend_from_slice(self.0.as_bytes()),
        }
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        use postgres_types::Type;
        <&str as ToSql>::accepts(ty) || matches!(*ty, Type::JSON | Type::JSONB | Type::UUID)
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgText<'_> {
    fn to_sql_text(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
        format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql_text(ty, out, format_options)
    }
}

impl ToSql for PgNumeric {
    fn to_sql(
        &self,
        _ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.encode(out);
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        *ty == postgres_types::Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgNumeric {
    fn to_sql_text(
        &self,
        _ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
        _format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.to_string().as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

/// A decimal number in its text form (`-12.340`), sent as `numeric`: its binary form is
/// PostgreSQL's (`numeric_send`: base-10000 digits, weight, sign, display scale).
#[derive(Debug)]
struct NumericText(String);

impl ToSql for NumericText {
    fn to_sql(
        &self,
        _ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&numeric_binary(&self.0).ok_or("not a decimal number")?);
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(_ty: &postgres_types::Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for NumericText {
    fn to_sql_text(
        &self,
        _ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
        _format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

/// `numeric_send` of a plain decimal (`[-]digits[.digits]`); `None` for anything else.
fn numeric_binary(text: &str) -> Option<Vec<u8>> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let dscale = u16::try_from(frac.len()).ok()?;
    // Whole groups of four digits, the integer part aligned on the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let digits_of =
        |s: &[u8]| -> i16 { s.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')) };
    let padded_int = format!("{}{int}", "0".repeat(int_pad));
    let padded_frac = format!("{frac}{}", "0".repeat(frac_pad));
    let mut groups: Vec<i16> = padded_int
        .as_bytes()
        .chunks(4)
        .chain(padded_frac.as_bytes().chunks(4))
        .map(digits_of)
        .collect();
    let mut weight = i16::try_from(padded_int.len() / 4).ok()? - 1;
    // No leading or trailing zero groups, as PostgreSQL stores it.
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= i16::try_from(leading).ok()?;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&u16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// The file header of a binary COPY (signature, flags: no OIDs, no header extension), then
/// `rest`.
pub(crate) fn binary_copy_header(rest: &[u8]) -> CopyData {
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(rest);
    CopyData::new(bytes::Bytes::from(header))
}

/// The header line of `COPY ... TO STDOUT WITH (FORMAT csv, HEADER)`: the column names, each
/// quoted where it holds the delimiter, the quote, or a line break (as PostgreSQL writes it);
/// `None` for every other format.
pub(crate) fn copy_header(fields: &[FieldInfo], format: &CopyFormat) -> Option<CopyData> {
    let CopyFormat::Csv {
        delimiter,
        quote,
        header: true,
        ..
    } = format
    else {
        return None;
    };
    let (delimiter, quote) = (*delimiter as char, *quote as char);
    let names: Vec<String> = fields
        .iter()
        .map(|f| {
            let name = f.name();
            if name.contains([delimiter, quote, '\n', '\r']) {
                let doubled = name.replace(quote, &format!("{quote}{quote}"));
                format!("{quote}{doubled}{quote}")
            } else {
                name.to_string()
            }
        })
        .collect();
    let line = names.join(&delimiter.to_string()) + "\n";
    Some(CopyData::new(bytes::Bytes::from(line)))
}

/// The COPY TO encoder for `format`.
pub(crate) fn copy_encoder(
    fields: Arc<Vec<FieldInfo>>,
    format: CopyFormat,
) -> PgWireResult<CopyRows> {
    Ok(match format {
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            null,
            ..
        } => CopyRows::Csv(CsvCopyEncoder::new(fields, delimiter, quote, escape, null)),
        CopyFormat::Text { delimiter, null } => CopyRows::Pg(CopyEncoder::new_text(
            fields,
            CopyTextOptions {
                delimiter: (delimiter as char).to_string().into(),
                null_string: null.into(),
            },
        )),
        // The encoder writes the file header before the first row; the caller writes it
        // when there is none, and the trailer.
        CopyFormat::Binary => CopyRows::Pg(CopyEncoder::new_binary(fields)),
        CopyFormat::Json => {
            return Err(super::errors::to_pgwire(eddy_sql::Error::Unsupported(
                "COPY TO JSON".into(),
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::numeric_binary;

    fn parts(text: &str) -> (i16, i16, u16, u16, Vec<i16>) {
        let b = numeric_binary(text).unwrap();
        let word = |i: usize| [b[i], b[i + 1]];
        let digits = (8..b.len())
            .step_by(2)
            .map(|i| i16::from_be_bytes(word(i)))
            .collect();
        (
            i16::from_be_bytes(word(0)),
            i16::from_be_bytes(word(2)),
            u16::from_be_bytes(word(4)),
            u16::from_be_bytes(word(6)),
            digits,
        )
    }

    #[test]
    fn numerics_are_sent_as_postgresql_sends_them() {
        // (ndigits, weight, sign, dscale, digits), as numeric_send writes them.
        assert_eq!(parts("12.34"), (2, 0, 0, 2, vec![12, 3400]));
        assert_eq!(
            parts("-12345678.9"),
            (3, 1, 0x4000, 1, vec![1234, 5678, 9000])
        );
        assert_eq!(parts("0.0001"), (1, -1, 0, 4, vec![1]));
        assert_eq!(parts("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(parts("-0.00"), (0, 0, 0, 2, vec![]));
        assert_eq!(parts("10000.00"), (1, 1, 0, 2, vec![1]));
        assert_eq!(
            parts("18446744073709551615"),
            (5, 4, 0, 0, vec![1844, 6744, 737, 955, 1615])
        );
        assert!(numeric_binary("1e5").is_none());
        assert!(numeric_binary("").is_none());
    }
}
