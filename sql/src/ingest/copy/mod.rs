//! Decoding `COPY ... FROM STDIN` data (text, CSV, JSON lines and PostgreSQL's binary format)
//! into stored batches.
//!
//! Text ([`text`]) and CSV fields go to per-column sinks ([`columns`]): common scalar types are
//! parsed as they arrive, others gathered as strings and converted a whole column at a time with
//! Arrow's cast kernel (a value the cast rejects is found by comparing null masks). Either way a
//! bad value is reported with its line number and column, as PostgreSQL does. Nested columns
//! (ARRAY, MAP, STRUCT) take JSON text in every format. Binary data ([`binary`]) is decoded
//! column by column from each type's binary encoding ([`binary_columns`]).

mod binary;
mod binary_columns;
mod columns;
mod csv_format;
mod receive;
mod text;

pub use receive::CopyReceiver;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::ReaderBuilder;
use eddy_catalog::StreamDef;
use eddy_storage::Topic;

use super::{MAX_FRAME_ROWS, with_rowtime};
use crate::parser::types::type_display;
use crate::{Error, Result};

/// The data format of a COPY.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    /// PostgreSQL text format: delimiter (default tab), `\N` for NULL, backslash escapes.
    Text {
        /// Field delimiter.
        delimiter: u8,
        /// NULL marker.
        null: String,
    },
    /// CSV: delimiter (default comma), quote, escape, unquoted NULL marker (default empty).
    Csv {
        /// Field delimiter.
        delimiter: u8,
        /// Quote character.
        quote: u8,
        /// Escape character inside quotes.
        escape: u8,
        /// NULL marker.
        null: String,
        /// The first line is a header to skip.
        header: bool,
    },
    /// One JSON object per line, keyed by column name.
    Json,
    /// PostgreSQL's binary COPY format (header, tuples of length-prefixed fields in each
    /// type's binary encoding, trailer).
    Binary,
}

impl CopyFormat {
    /// PostgreSQL's default text format.
    pub fn text() -> Self {
        CopyFormat::Text {
            delimiter: b'\t',
            null: "\\N".into(),
        }
    }

    /// PostgreSQL's default CSV format.
    pub fn csv() -> Self {
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: String::new(),
            header: false,
        }
    }
}

/// Decodes a whole COPY payload for `columns` (indices into the stream's columns, in the order
/// the data gives them) into stored batches on this thread. Fails on the first bad row, naming
/// its line. (A COPY arriving over the wire goes through [`CopyReceiver`] instead.)
pub fn decode(
    def: &StreamDef,
    columns: &[usize],
    format: &CopyFormat,
    data: &[u8],
) -> Result<Vec<RecordBatch>> {
    match format {
        CopyFormat::Json => decode_json(def, columns, data),
        CopyFormat::Binary => binary::decode(def, columns, data),
        CopyFormat::Text { delimiter, null } => {
            let options = text::TextOptions {
                delimiter: *delimiter,
                null,
            };
            text::decode_lines(def, columns, options, data, 0).map(|(batches, _)| batches)
        }
        CopyFormat::Csv { .. } => {
            csv_format::decode_lines(def, columns, format, data, 0).map(|(batches, _)| batches)
        }
    }
}

/// Checks that a row of `line` has one field per target column (`got` fields), naming the
/// first missing column or the extra data as PostgreSQL does.
fn check_arity(def: &StreamDef, columns: &[usize], got: usize, line: usize) -> Result<()> {
    if got > columns.len() {
        return Err(Error::InvalidValue(format!(
            "COPY {}, line {line}: extra data after last expected column",
            def.name
        )));
    }
    if got < columns.len() {
        let missing = &def.columns[columns[got]].name;
        return Err(Error::InvalidValue(format!(
            "COPY {}, line {line}: missing data for column \"{missing}\"",
            def.name
        )));
    }
    Ok(())
}

/// Converts a column of gathered strings to type `to` with Arrow's cast kernel (JSON text for
/// nested types); `lines` gives each row's input line for the error.
fn convert(
    def: &StreamDef,
    name: &str,
    to: &DataType,
    strings: &StringArray,
    lines: &[usize],
) -> Result<ArrayRef> {
    convert_column(to, strings)?.map_err(|Bad { row, why }| {
        Error::InvalidValue(format!(
            "COPY {}, line {}, column {name}: invalid input for type {}: \"{}\"{why}",
            def.name,
            lines[row],
            type_display(to, None),
            strings.value(row)
        ))
    })
}

/// Values in PostgreSQL's text form (`t`, `12.5`, `2026-11-23 10:00:00+02`, `\xdead`,
/// `{1,NULL,"a b"}` or JSON for arrays, JSON for maps and structs) as an array of type `to`:
/// how COPY reads a field, and how a text-format parameter or a cast of text to an array is
/// read. A value that is not one of `to` is `22P02`.
pub fn parse_text(to: &DataType, strings: &StringArray) -> Result<ArrayRef> {
    convert_column(to, strings)?.map_err(|Bad { row, why }| {
        let value = strings.value(row);
        Error::InvalidValue(match to {
            DataType::List(_) if value.trim_start().starts_with('{') => {
                format!("malformed array literal: \"{value}\"{why}")
            }
            _ => format!(
                "invalid input syntax for type {}: \"{value}\"{why}",
                type_display(to, None)
            ),
        })
    })
}

/// A string that is not a value of its type: its row, and a hint for the message.
struct Bad {
    row: usize,
    why: &'static str,
}

fn convert_column(
    to: &DataType,
    strings: &StringArray,
) -> Result<std::result::Result<ArrayRef, Bad>> {
    let bad = |row: usize, why: &'static str| Ok(Err(Bad { row, why }));
    let converted: ArrayRef = match to {
        DataType::Utf8 => return Ok(Ok(Arc::new(strings.clone()))),
        DataType::Binary => {
            let mut out = Vec::with_capacity(strings.len());
            for row in 0..strings.len() {
                out.push(if strings.is_null(row) {
                    None
                } else {
                    let v = strings.value(row);
                    Some(match v.strip_prefix("\\x") {
                        Some(hex) => match decode_hex(hex) {
                            Some(bytes) => bytes,
                            None => return bad(row, " (bad hex)"),
                        },
                        None => v.as_bytes().to_vec(),
                    })
                });
            }
            return Ok(Ok(Arc::new(BinaryArray::from_iter(out))));
        }
        DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_) => {
            let mut json = Vec::new();
            for row in 0..strings.len() {
                json.extend_from_slice(b"{\"v\":");
                if strings.is_null(row) {
                    json.extend_from_slice(b"null");
                } else {
                    match json_of(to, strings.value(row)) {
                        Some(value) => json.extend_from_slice(value.as_bytes()),
                        None => return bad(row, " (expected an array like {1,2})"),
                    }
                }
                json.extend_from_slice(b"}\n");
            }
            let schema = Arc::new(Schema::new(vec![Field::new("v", to.clone(), true)]));
            return match decode_json_bytes(schema, &json) {
                Ok(batch) if batch.num_rows() == strings.len() => Ok(Ok(batch.column(0).clone())),
                _ => {
                    let row = first_bad_json_row(to, strings);
                    let why = match to {
                        DataType::List(_) if strings.value(row).trim_start().starts_with('{') => "",
                        _ => " (expected JSON)",
                    };
                    bad(row, why)
                }
            };
        }
        _ => cast_with_options(
            strings,
            to,
            &CastOptions {
                safe: true,
                ..Default::default()
            },
        )?,
    };
    if converted.null_count() != strings.null_count() {
        for row in 0..strings.len() {
            if strings.is_valid(row) && converted.is_null(row) {
                return bad(row, "");
            }
        }
    }
    Ok(Ok(converted))
}

/// A one-dimensional PostgreSQL array literal (`{1,NULL,"a b"}`) as a JSON array of
/// `element`s; `None` when it is not one (nested arrays included).
fn pg_array_to_json(literal: &str, element: &DataType) -> Option<String> {
    let json: Vec<String> = crate::parser::parse_array_elements(literal)?
        .into_iter()
        .map(|item| match (item, element) {
            (None, _) => "null".to_string(),
            (Some(text), DataType::Boolean) => match text.to_ascii_lowercase().as_str() {
                "t" | "true" => "true".into(),
                "f" | "false" => "false".into(),
                _ => text,
            },
            // Numbers as JSON numbers; everything else (text, dates, times, timestamps) as
            // JSON strings, which the JSON reader parses as the element type.
            (Some(text), t) if t.is_numeric() => text,
            (Some(text), _) => serde_json::Value::String(text).to_string(),
        })
        .collect();
    Some(format!("[{}]", json.join(",")))
}

/// A nested value's text as JSON: a PostgreSQL array literal (`{1,2}`, what COPY TO writes)
/// for a list of scalars (`None` when it is not one), any other text as it is (JSON).
fn json_of<'a>(to: &DataType, value: &'a str) -> Option<std::borrow::Cow<'a, str>> {
    match (to, value.trim_start().starts_with('{')) {
        (DataType::List(item), true) => pg_array_to_json(value, item.data_type()).map(Into::into),
        _ => Some(value.into()),
    }
}

fn first_bad_json_row(to: &DataType, strings: &StringArray) -> usize {
    let schema = Arc::new(Schema::new(vec![Field::new("v", to.clone(), true)]));
    (0..strings.len())
        .find(|&row| {
            strings.is_valid(row) && {
                let Some(value) = json_of(to, strings.value(row)) else {
                    return true;
                };
                let line = format!("{{\"v\":{value}}}\n");
                decode_json_bytes(schema.clone(), line.as_bytes())
                    .map(|b| b.num_rows() != 1)
                    .unwrap_or(true)
            }
        })
        .unwrap_or(0)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Decodes JSON lines (at most [`MAX_FRAME_ROWS`] of them) into one batch.
fn decode_json_bytes(schema: Arc<Schema>, data: &[u8]) -> Result<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(MAX_FRAME_ROWS)
        .build_decoder()?;
    let mut rest = data;
    while !rest.is_empty() {
        let n = decoder.decode(rest)?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

fn decode_json(def: &StreamDef, columns: &[usize], data: &[u8]) -> Result<Vec<RecordBatch>> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|&i| Field::new(&def.columns[i].name, def.columns[i].data_type.clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let mut out = Vec::new();
    for (chunk_no, chunk) in lines.chunks(MAX_FRAME_ROWS).enumerate() {
        let body: Vec<u8> = chunk
            .iter()
            .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()) && *l != b"\\.")
            .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
            .collect();
        let batch = match decode_json_bytes(schema.clone(), &body) {
            Ok(b) => b,
            Err(e) => {
                // Find the offending line for the message.
                for (i, line) in chunk.iter().enumerate() {
                    if line.iter().all(|b| b.is_ascii_whitespace()) || *line == b"\\." {
                        continue;
                    }
                    if let Err(line_err) = decode_json_bytes(schema.clone(), line) {
                        let line_no = chunk_no * MAX_FRAME_ROWS + i + 1;
                        return Err(Error::InvalidValue(format!(
                            "COPY {}, line {line_no}: {line_err}",
                            def.name
                        )));
                    }
                }
                return Err(e);
            }
        };
        let rows = batch.num_rows();
        let mut user: Vec<ArrayRef> = def
            .columns
            .iter()
            .map(|c| new_null_array(&c.data_type, rows))
            .collect();
        for (j, &target) in columns.iter().enumerate() {
            user[target] = batch.column(j).clone();
        }
        if rows > 0 {
            out.push(with_rowtime(def, user, None)?);
        }
    }
    Ok(out)
}

/// A COPY FROM STDIN waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// Target stream.
    pub def: StreamDef,
    /// Its topic.
    pub topic: Arc<Topic>,
    /// Indices of the stream's columns the data gives, in order.
    pub columns: Vec<usize>,
    /// Data format.
    pub format: CopyFormat,
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use eddy_catalog::{ColumnDef, RelationKind, StreamOptions};

    use super::*;

    #[test]
    fn postgresql_array_literals_read_as_json_arrays() {
        let ints = DataType::Int64;
        assert_eq!(pg_array_to_json("{1,2,NULL}", &ints).unwrap(), "[1,2,null]");
        assert_eq!(pg_array_to_json("{}", &ints).unwrap(), "[]");
        assert_eq!(
            pg_array_to_json(r#"{a,"b c","x\"y",NULL,"NULL"}"#, &DataType::Utf8).unwrap(),
            r#"["a","b c","x\"y",null,"NULL"]"#
        );
        assert_eq!(
            pg_array_to_json("{t,f}", &DataType::Boolean).unwrap(),
            "[true,false]"
        );
        assert_eq!(
            pg_array_to_json("{{1},{2}}", &ints),
            None,
            "nested arrays are refused"
        );
        assert_eq!(pg_array_to_json("{1,,2}", &ints), None);
        assert_eq!(pg_array_to_json("{\"a", &DataType::Utf8), None);
    }

    /// A stream `s (id BIGINT, name VARCHAR)`.
    pub(super) fn def() -> StreamDef {
        StreamDef {
            name: "s".into(),
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("name", DataType::Utf8, false),
            ],
            timestamp_column: None,
            partitions: 1,
            options: StreamOptions::default(),
            topic: "s".into(),
            storage: String::new(),
            kind: RelationKind::Stream,
            primary_key: vec![],
        }
    }

    /// A payload of `rows` rows, row `bad` (0-based) with a bad id.
    fn payload(rows: usize, bad: Option<usize>) -> Vec<u8> {
        let mut text = String::new();
        for i in 0..rows {
            if Some(i) == bad {
                text.push_str("oops\tx\n");
            } else {
                text.push_str(&format!("{i}\tname with some padding {i}\\tend\n"));
            }
        }
        text.into_bytes()
    }

    #[test]
    fn a_text_payload_decodes_in_order_into_frames() {
        let rows = 200_000;
        let data = payload(rows, None);
        let batches = decode(&def(), &[0, 1], &CopyFormat::text(), &data).unwrap();
        assert_eq!(batches.len(), rows.div_ceil(MAX_FRAME_ROWS));
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, (0..rows as i64).collect::<Vec<_>>());
        let last = batches.last().unwrap();
        assert_eq!(
            last.column(1).as_string::<i32>().value(last.num_rows() - 1),
            format!("name with some padding {}\tend", rows - 1)
        );
    }

    #[test]
    fn a_bad_row_is_named_by_its_line() {
        for bad in [150_000, 10] {
            let data = payload(200_000, Some(bad));
            let err = decode(&def(), &[0, 1], &CopyFormat::text(), &data).unwrap_err();
            assert!(
                err.to_string().contains(&format!("line {}", bad + 1)),
                "{err}"
            );
        }
    }
}
