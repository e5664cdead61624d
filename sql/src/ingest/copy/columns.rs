//! Gathering decoded COPY fields into stored batches.
//!
//! Each target column has a sink. Columns of the common scalar types (integers, floats,
//! VARCHAR, TIMESTAMP) parse every field straight into a typed Arrow builder with the same
//! parsers Arrow's cast kernel uses, so a bad value is reported at once with its line, and the
//! text is never copied into an intermediate string column. Every other type gathers strings
//! and is converted a whole column at a time by [`super::convert`] when a frame is full.
//!
//! This module owns frame cutting ([`MAX_FRAME_ROWS`]) and the error for a bad value; it never
//! splits input into fields (that is the format decoders' job).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, PrimitiveBuilder, RecordBatch, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, ArrowTimestampType, DataType, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
};
use eddy_catalog::StreamDef;

use super::convert;
use crate::ingest::{MAX_FRAME_ROWS, with_rowtime};
use crate::parser::types::{UTC, type_display};
use crate::{Error, Result};

/// Rows gathered into frames of at most [`MAX_FRAME_ROWS`] rows, finished as each fills.
pub(super) struct Frames<'a> {
    def: &'a StreamDef,
    columns: &'a [usize],
    sinks: Vec<Sink>,
    /// Input line of each gathered row (for errors found when a frame is finished).
    lines: Vec<usize>,
    out: Vec<RecordBatch>,
}

impl<'a> Frames<'a> {
    pub(super) fn new(def: &'a StreamDef, columns: &'a [usize]) -> Self {
        Frames {
            def,
            columns,
            sinks: columns
                .iter()
                .map(|&c| Sink::new(&def.columns[c].data_type, 0))
                .collect(),
            lines: Vec::with_capacity(MAX_FRAME_ROWS),
            out: Vec::new(),
        }
    }

    /// Number of target columns (fields per row).
    pub(super) fn width(&self) -> usize {
        self.columns.len()
    }

    /// Appends field `c` (`None` = NULL) of the row on input line `line`.
    pub(super) fn field(&mut self, c: usize, value: Option<&str>, line: usize) -> Result<()> {
        if self.sinks[c].push(value) {
            return Ok(());
        }
        let col = &self.def.columns[self.columns[c]];
        Err(Error::InvalidValue(format!(
            "COPY {}, line {line}, column {}: invalid input for type {}: \"{}\"",
            self.def.name,
            col.name,
            type_display(&col.data_type, col.declared()),
            value.unwrap_or_default()
        )))
    }

    /// Ends the current row (every field given), from input line `line`.
    pub(super) fn end_row(&mut self, line: usize) -> Result<()> {
        self.lines.push(line);
        if self.lines.len() >= MAX_FRAME_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// The finished frames.
    pub(super) fn finish(mut self) -> Result<Vec<RecordBatch>> {
        if !self.lines.is_empty() {
            self.flush()?;
        }
        Ok(self.out)
    }

    /// Turns the gathered rows into a stored batch.
    fn flush(&mut self) -> Result<()> {
        let def = self.def;
        let rows = self.lines.len();
        let mut user: Vec<ArrayRef> = def
            .columns
            .iter()
            .map(|c| new_null_array(&c.data_type, rows))
            .collect();
        for (sink, &target) in self.sinks.iter_mut().zip(self.columns) {
            let col = &def.columns[target];
            user[target] = match sink {
                Sink::Typed(builder) => builder.finish_array(),
                Sink::Strings(strings) => {
                    let strings = strings.finish();
                    convert(def, &col.name, &col.data_type, &strings, &self.lines)?
                }
            };
            // The next frame's builders start at this one's size.
            *sink = Sink::new(&col.data_type, user[target].get_buffer_memory_size());
        }
        // A value its column's SQL type refuses (`VARCHAR(3)`, `JSON`) is named by its line.
        let batch = with_rowtime(def, user, None).map_err(|e| match e {
            Error::InRow {
                row,
                column,
                source,
            } => source.in_copy(&def.name, self.lines[row], &column),
            other => other,
        })?;
        self.lines.clear();
        self.out.push(batch);
        Ok(())
    }
}

/// Where one column's fields go.
enum Sink {
    /// Parsed as they arrive.
    Typed(Box<dyn TypedSink>),
    /// Gathered as strings, converted when the frame is finished.
    Strings(StringBuilder),
}

impl Sink {
    /// A sink for a column of type `to`, sized for about `bytes` of values.
    fn new(to: &DataType, bytes: usize) -> Sink {
        fn parsed<T: ArrowPrimitiveType>(parse: fn(&str) -> Option<T::Native>) -> Sink {
            Sink::Typed(Box::new(Parsed::<T> {
                builder: PrimitiveBuilder::with_capacity(MAX_FRAME_ROWS),
                parse,
            }))
        }
        let strings = || StringBuilder::with_capacity(MAX_FRAME_ROWS, bytes.max(64 * 1024));
        match to {
            DataType::Int8 => parsed::<Int8Type>(Int8Type::parse),
            DataType::Int16 => parsed::<Int16Type>(Int16Type::parse),
            DataType::Int32 => parsed::<Int32Type>(Int32Type::parse),
            DataType::Int64 => parsed::<Int64Type>(Int64Type::parse),
            DataType::Float32 => parsed::<Float32Type>(Float32Type::parse),
            DataType::Float64 => parsed::<Float64Type>(Float64Type::parse),
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                parsed::<TimestampMillisecondType>(parse_timestamp_ms)
            }
            // TIMESTAMP and TIMESTAMPTZ (kept in UTC: a value without an offset is UTC).
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                parsed::<TimestampMicrosecondType>(parse_timestamp_us)
            }
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == UTC => {
                parsed::<TimestampMicrosecondType>(parse_timestamp_us)
            }
            DataType::Utf8 => Sink::Typed(Box::new(Utf8(strings()))),
            _ => Sink::Strings(strings()),
        }
    }

    /// Appends a value; false when it is not a valid value of the column's type (typed sinks
    /// only: gathered strings are checked when the frame is finished).
    fn push(&mut self, value: Option<&str>) -> bool {
        match self {
            Sink::Typed(sink) => sink.push(value),
            Sink::Strings(strings) => {
                strings.append_option(value);
                true
            }
        }
    }
}

/// A column whose fields are parsed as they arrive.
trait TypedSink: Send {
    /// Appends a value; false when it is not a valid value of the column's type.
    fn push(&mut self, value: Option<&str>) -> bool;
    /// The gathered values.
    fn finish_array(&mut self) -> ArrayRef;
}

struct Parsed<T: ArrowPrimitiveType> {
    builder: PrimitiveBuilder<T>,
    parse: fn(&str) -> Option<T::Native>,
}

impl<T: ArrowPrimitiveType> TypedSink for Parsed<T> {
    #[inline]
    fn push(&mut self, value: Option<&str>) -> bool {
        match value {
            None => self.builder.append_null(),
            Some(v) => match (self.parse)(v) {
                Some(n) => self.builder.append_value(n),
                None => return false,
            },
        }
        true
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

struct Utf8(StringBuilder);

impl TypedSink for Utf8 {
    #[inline]
    fn push(&mut self, value: Option<&str>) -> bool {
        self.0.append_option(value);
        true
    }

    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// A TIMESTAMP value as Arrow's string cast reads it, in milliseconds since the epoch: the
/// plain `YYYY-MM-DD HH:MM:SS[.fff]` form (what PostgreSQL and most tools write) is read
/// directly, anything else (time zones, `T`-less dates, ...) by Arrow's own parser.
fn parse_timestamp_ms(s: &str) -> Option<i64> {
    plain_timestamp(s.as_bytes(), 3).or_else(|| {
        let naive = string_to_datetime(&chrono::Utc, s).ok()?.naive_utc();
        TimestampMillisecondType::from_naive_datetime(naive, None)
    })
}

/// The same in microseconds (a value with an offset is its UTC time).
fn parse_timestamp_us(s: &str) -> Option<i64> {
    plain_timestamp(s.as_bytes(), 6).or_else(|| {
        let naive = string_to_datetime(&chrono::Utc, s).ok()?.naive_utc();
        TimestampMicrosecondType::from_naive_datetime(naive, None)
    })
}

#[cfg(test)]
fn plain_timestamp_ms(b: &[u8]) -> Option<i64> {
    plain_timestamp(b, 3)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}]` without a zone, in units of `10^-digits` seconds since
/// the epoch (fraction truncated, as Arrow does); `None` for any other shape or an
/// out-of-range field.
fn plain_timestamp(b: &[u8], digits_kept: u32) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            let d = c.wrapping_sub(b'0');
            (d < 10).then_some(acc * 10 + i64::from(d))
        })
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let kept = digits_kept as usize;
    let fraction = match &b[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let whole = digits(20..b.len())?;
            // Keep the first `kept` digits of the fraction.
            let scale = 10i64.pow(fraction.len().abs_diff(kept) as u32);
            if fraction.len() >= kept {
                whole / scale
            } else {
                whole * scale
            }
        }
        _ => return None,
    };
    let per_second = 10i64.pow(digits_kept);
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * per_second + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Arrow's cast reads from `s`.
    fn arrow_ms(s: &str) -> Option<i64> {
        let naive = string_to_datetime(&chrono::Utc, s).ok()?.naive_utc();
        TimestampMillisecondType::from_naive_datetime(naive, None)
    }

    #[test]
    fn plain_timestamps_read_as_arrow_reads_them() {
        let mut checked = 0;
        for year in [0, 1, 1600, 1899, 1969, 1970, 2000, 2023, 2024, 2100, 9999] {
            for month in 1..=12 {
                for day in [1, 15, 28, 29, 30, 31] {
                    for (time, frac) in [
                        ("00:00:00", ""),
                        ("23:59:59", ".999"),
                        ("12:34:56", ".5"),
                        ("01:02:03", ".123456789"),
                        ("01:02:03", ".12"),
                    ] {
                        let s = format!("{year:04}-{month:02}-{day:02} {time}{frac}");
                        assert_eq!(plain_timestamp_ms(s.as_bytes()), arrow_ms(&s), "{s}");
                        let t = s.replace(' ', "T");
                        assert_eq!(plain_timestamp_ms(t.as_bytes()), arrow_ms(&t), "{t}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 3000);
    }

    /// Microseconds read as Arrow reads them too, and a zone is the instant's UTC time.
    #[test]
    fn microsecond_timestamps_read_as_arrow_reads_them() {
        let arrow_us = |s: &str| {
            let naive = string_to_datetime(&chrono::Utc, s).ok()?.naive_utc();
            TimestampMicrosecondType::from_naive_datetime(naive, None)
        };
        for s in [
            "2024-03-01 12:34:56.123456",
            "2024-03-01 12:34:56.1",
            "2024-03-01T12:34:56.123456789",
            "1969-12-31 23:59:59.999999",
            "2024-03-01 12:34:56",
        ] {
            assert_eq!(plain_timestamp(s.as_bytes(), 6), arrow_us(s), "{s}");
            assert_eq!(parse_timestamp_us(s), arrow_us(s), "{s}");
        }
        assert_eq!(
            parse_timestamp_us("2024-01-01 10:00:00.5+02:00"),
            parse_timestamp_us("2024-01-01 08:00:00.5")
        );
    }

    #[test]
    fn other_timestamp_shapes_fall_back_to_arrow() {
        for s in [
            "2024-01-01",
            "2024-01-01T00:00:00Z",
            "2024-01-01 00:00:00+02:00",
            "2024-01-01 00:00:00.1234567891",
            "2024-13-01 00:00:00",
            "2024-02-30 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:60",
            "not a time at all!!",
            "2024-01-01 00:00:00.",
        ] {
            assert_eq!(parse_timestamp_ms(s), arrow_ms(s), "{s}");
        }
        assert_eq!(plain_timestamp_ms(b"2024-01-01T00:00:00Z"), None);
    }
}
