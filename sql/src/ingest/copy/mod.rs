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
    convert_column(to, strings).map_err(|(row, why)| {
        Error::InvalidValue(format!(
            "COPY {}, line {}, column {name}: invalid input for type {}: \"{}\"{why}",
            def.name,
            lines[row],
            type_display(to),
            strings.value(row)
        ))
    })
}

/// [`convert`], failing with the index of the first string that is not a value of `to` and
/// what to add to the message about it.
fn convert_column(
    to: &DataType,
    strings: &StringArray,
) -> std::result::Result<ArrayRef, (usize, String)> {
    let bad = |row: usize, why: &str| (row, why.to_string());
    let converted: ArrayRef = match to {
        DataType::Utf8 => return Ok(Arc::new(strings.clone())),
        DataType::Binary => {
            let mut out = Vec::with_capacity(strings.len());
            for row in 0..strings.len() {
                out.push(if strings.is_null(row) {
                    None
                } else {
                    let v = strings.value(row);
                    Some(match v.strip_prefix("\\x") {
                        Some(hex) => decode_hex(hex).ok_or_else(|| bad(row, " (bad hex)"))?,
                        None => v.as_bytes().to_vec(),
                    })
                });
            }
            return Ok(Arc::new(BinaryArray::from_iter(out)));
        }
        DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_) => {
            let mut json = Vec::new();
            for row in 0..strings.len() {
                json.extend_from_slice(b"{\"v\":");
                if strings.is_null(row) {
                    json.extend_from_slice(b"null");
                } else {
                    let value = strings.value(row);
                    // A PostgreSQL array literal (`{1,2}`, what COPY TO writes) for a list of
                    // scalars; JSON otherwise.
                    match (to, value.trim_start().starts_with('{')) {
                        (DataType::List(item), true) => {
                            match pg_array_to_json(value, item.data_type()) {
                                Some(array) => json.extend_from_slice(array.as_bytes()),
                                None => return Err(bad(row, " (expected an array like {1,2})")),
                            }
                        }
                        _ => json.extend_from_slice(value.as_bytes()),
                    }
                }
                json.extend_from_slice(b"}\n");
            }
            let schema = Arc::new(Schema::new(vec![Field::new("v", to.clone(), true)]));
            return match decode_json_bytes(schema, &json) {
                Ok(batch) if batch.num_rows() == strings.len() => Ok(batch.column(0).clone()),
                _ => {
                    let row = first_bad_json_row(to, strings);
                    Err(bad(row, " (expected JSON)"))
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
        )
        .map_err(|e| bad(0, &format!(" ({e})")))?,
    };
    if converted.null_count() != strings.null_count() {
        for row in 0..strings.len() {
            if strings.is_valid(row) && converted.is_null(row) {
                return Err(bad(row, ""));
            }
        }
    }
    Ok(converted)
}

/// A one-dimensional PostgreSQL array literal (`{1,NULL,"a b"}`) as a JSON array of
/// `element`s; `None` when it is not one (nested arrays included).
fn pg_array_to_json(literal: &str, element: &DataType) -> Option<String> {
    let json: Vec<String> = crate::parser::parse_array_elements(literal)?
        .into_iter()
        .map(|item| match (item, element) {
            (None, _) => "null".to_string(),
            (Some(text), DataType::Utf8 | DataType::LargeUtf8) => {
                serde_json::Value::String(text).to_string()
            }
            (Some(text), DataType::Boolean) => match text.to_ascii_lowercase().as_str() {
                "t" | "true" => "true".into(),
                "f" | "false" => "false".into(),
                _ => text,
            },
            (Some(text), _) => text,
        })
        .collect();
    Some(format!("[{}]", json.join(",")))
}

fn first_bad_json_row(to: &DataType, strings: &StringArray) -> usize {
    let schema = Arc::new(Schema::new(vec![Field::new("v", to.clone(), true)]));
    (0..strings.len())
        .find(|&row| {
            strings.is_valid(row) && {
                let line = format!("{{\"v\":{}}}\n", strings.value(row));
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
                ColumnDef {
                    name: "id".into(),
                    data_type: DataType::Int64,
                    key: false,
                },
                ColumnDef {
                    name: "name".into(),
                    data_type: DataType::Utf8,
                    key: false,
                },
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
