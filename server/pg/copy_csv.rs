//! [`CsvCopyEncoder`]: rows of `COPY ... TO STDOUT WITH (FORMAT csv)` as PostgreSQL writes
//! them (`CopyAttributeOutCSV`), so that what Eddy writes any CSV reader — and Eddy's own
//! COPY FROM — reads back to the same values. pgwire's CSV encoder left an empty string
//! unquoted, the same as NULL (so `''` came back NULL), and escaped only the quote.
//!
//! PostgreSQL's rules: NULL is the null string, unquoted. A value is quoted when it equals
//! the null string (by default the empty string: `""`), when it is `\.` alone in a one-column
//! row (the end-of-data marker), or when it holds the delimiter, the quote, a CR or a LF;
//! inside quotes the quote and the escape character are preceded by the escape character
//! (which by default is the quote, so quotes are doubled).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::api::results::FieldInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

use super::encode::FieldSink;

/// Encodes one row at a time in PostgreSQL's CSV format.
pub(crate) struct CsvCopyEncoder {
    fields: Arc<Vec<FieldInfo>>,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: String,
    row: BytesMut,
    value: BytesMut,
    column: usize,
    format: FormatOptions,
}

impl CsvCopyEncoder {
    pub(crate) fn new(
        fields: Arc<Vec<FieldInfo>>,
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: String,
    ) -> Self {
        CsvCopyEncoder {
            fields,
            delimiter,
            quote,
            escape,
            null,
            row: BytesMut::new(),
            value: BytesMut::new(),
            column: 0,
            format: FormatOptions::default(),
        }
    }

    /// The row encoded so far, as one COPY data message ending in a newline.
    pub(crate) fn take_copy(&mut self) -> CopyData {
        self.row.put_u8(b'\n');
        self.column = 0;
        CopyData::new(self.row.split().freeze())
    }

    fn needs_quotes(&self, value: &[u8]) -> bool {
        value == self.null.as_bytes()
            || (self.fields.len() == 1 && value == b"\\.")
            || value
                .iter()
                .any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r')
    }
}

impl FieldSink for CsvCopyEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        let ty = self
            .fields
            .get(self.column)
            .map(|f| f.datatype().clone())
            .ok_or_else(|| PgWireError::ApiError("more fields than columns".into()))?;
        if self.column > 0 {
            self.row.put_u8(self.delimiter);
        }
        self.column += 1;
        self.value.clear();
        let is_null = value
            .to_sql_text(&ty, &mut self.value, &self.format)
            .map_err(PgWireError::ApiError)?;
        if let IsNull::Yes = is_null {
            self.row.put_slice(self.null.as_bytes());
            return Ok(());
        }
        if !self.needs_quotes(&self.value) {
            self.row.put_slice(&self.value);
            return Ok(());
        }
        self.row.put_u8(self.quote);
        for &b in self.value.iter() {
            if b == self.quote || b == self.escape {
                self.row.put_u8(self.escape);
            }
            self.row.put_u8(b);
        }
        self.row.put_u8(self.quote);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_types::Type;

    fn row(values: &[Option<&str>], escape: u8) -> String {
        let fields = Arc::new(
            values
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    FieldInfo::new(
                        format!("c{i}"),
                        None,
                        None,
                        Type::TEXT,
                        pgwire::api::results::FieldFormat::Text,
                    )
                })
                .collect(),
        );
        let mut encoder = CsvCopyEncoder::new(fields, b',', b'"', escape, String::new());
        for v in values {
            encoder.put(v).unwrap();
        }
        String::from_utf8(encoder.take_copy().data.to_vec()).unwrap()
    }

    #[test]
    fn fields_are_quoted_and_escaped_as_postgresql_writes_them() {
        assert_eq!(row(&[Some("a"), None, Some("")], b'"'), "a,,\"\"\n");
        assert_eq!(
            row(&[Some("x,y"), Some("say \"hi\""), Some("l1\nl2")], b'"'),
            "\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\"\n"
        );
        assert_eq!(row(&[Some("\\.")], b'"'), "\"\\.\"\n");
        assert_eq!(row(&[Some("\\."), Some("b")], b'"'), "\\.,b\n");
        // ESCAPE '\': the quote and the escape itself get it, only inside quotes.
        assert_eq!(
            row(&[Some("a\"b\\c"), Some("plain\\")], b'\\'),
            "\"a\\\"b\\\\c\",plain\\\n"
        );
    }
}
