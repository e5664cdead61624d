//! COPY's CSV format as PostgreSQL reads it: delimiter, quote, escape (a doubled quote when the
//! escape is the quote), a NULL marker that only matches *unquoted* fields (so `""` is an empty
//! string and an empty unquoted field is NULL by default), an optional header line, `\.` to end.
//!
//! We parse it ourselves rather than with the `csv` crate because PostgreSQL's NULL rule needs
//! to know whether a field was quoted, which that crate does not report. An unquoted field is a
//! slice of the input (no copy); a quoted one is unquoted into a reused buffer.
//!
//! Also owns [`RowEnds`], which finds where whole CSV rows end in data that is still arriving
//! (a newline inside quotes is not a row end), so CSV is decoded in blocks like text.

use datafusion::arrow::array::RecordBatch;
use eddy_catalog::StreamDef;

use super::columns::Frames;
use super::{CopyFormat, check_arity};
use crate::{Error, Result};

/// Decodes CSV data whose first line is line `first_line + 1` of the payload (a header is
/// skipped only when it is the payload's first line). Returns the batches and whether an end
/// marker (`\.`) ended the data.
pub(super) fn decode_lines(
    def: &StreamDef,
    columns: &[usize],
    format: &CopyFormat,
    data: &[u8],
    first_line: usize,
) -> Result<(Vec<RecordBatch>, bool)> {
    let CopyFormat::Csv {
        delimiter,
        quote,
        escape,
        null,
        header,
    } = format
    else {
        return Err(Error::Internal("CSV decoder given another format".into()));
    };
    let text = std::str::from_utf8(data).map_err(|e| {
        let line = first_line + 1 + memchr::memchr_iter(b'\n', &data[..e.valid_up_to()]).count();
        Error::InvalidValue(format!("COPY {}: line {line} is not valid UTF-8", def.name))
    })?;
    let mut parser = Parser {
        def,
        text,
        delimiter: *delimiter,
        quote: *quote,
        escape: *escape,
        null,
        pos: 0,
        line: first_line + 1,
        unquoted: String::new(),
        fields: Vec::with_capacity(columns.len()),
    };
    let mut frames = Frames::new(def, columns);
    if *header && first_line == 0 && !parser.at_end() {
        parser.record()?;
    }
    while !parser.at_end() {
        if parser.at_end_marker() {
            return Ok((frames.finish()?, true));
        }
        let line = parser.line;
        parser.record()?;
        check_arity(def, columns, parser.fields.len(), line)?;
        for (c, field) in parser.fields.iter().enumerate() {
            let value = match *field {
                Field::Null => None,
                Field::Input(a, b) => Some(&text[a..b]),
                Field::Unquoted(a, b) => Some(&parser.unquoted[a..b]),
            };
            frames.field(c, value, line)?;
        }
        frames.end_row(line)?;
    }
    Ok((frames.finish()?, false))
}

/// Where a parsed field's value is.
#[derive(Clone, Copy)]
enum Field {
    Null,
    /// A range of the input (an unquoted field).
    Input(usize, usize),
    /// A range of [`Parser::unquoted`] (a field that had quotes).
    Unquoted(usize, usize),
}

struct Parser<'a> {
    def: &'a StreamDef,
    text: &'a str,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: &'a str,
    pos: usize,
    /// Line of `pos` (1-based, whole payload).
    line: usize,
    /// The current record's quoted fields, unquoted.
    unquoted: String,
    /// The current record's fields.
    fields: Vec<Field>,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Whether the next line is the end marker `\.`.
    fn at_end_marker(&self) -> bool {
        let rest = &self.text.as_bytes()[self.pos..];
        rest.starts_with(b"\\.")
            && matches!(&rest[2..], [] | [b'\n', ..] | [b'\r', b'\n', ..] | [b'\r'])
    }

    /// Parses one record into `fields`, leaving `pos` after its line end.
    fn record(&mut self) -> Result<()> {
        self.fields.clear();
        self.unquoted.clear();
        let bytes = self.text.as_bytes();
        loop {
            let field = self.field()?;
            self.fields.push(field);
            match bytes.get(self.pos) {
                Some(&c) if c == self.delimiter => self.pos += 1,
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    return Ok(());
                }
                _ => return Ok(()), // the end of the data
            }
        }
    }

    /// Parses one field, leaving `pos` at the delimiter or line end after it.
    fn field(&mut self) -> Result<Field> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let stop = memchr::memchr3(self.delimiter, self.quote, b'\n', &bytes[start..])
            .map_or(bytes.len(), |p| start + p);
        if stop < bytes.len() && bytes[stop] == self.quote {
            return self.quoted_field(start);
        }
        self.pos = stop;
        // A CRLF line end: the CR is not data.
        let end =
            if stop > start && bytes[stop - 1] == b'\r' && bytes.get(stop) != Some(&self.delimiter)
            {
                stop - 1
            } else {
                stop
            };
        let raw = &self.text[start..end];
        Ok(if raw == self.null {
            Field::Null
        } else {
            Field::Input(start, end)
        })
    }

    /// Parses a field with quotes in it (PostgreSQL lets a quoted part start anywhere in a
    /// field) into `unquoted`.
    fn quoted_field(&mut self, start: usize) -> Result<Field> {
        let (text, bytes) = (self.text, self.text.as_bytes());
        let begin = self.unquoted.len();
        let (mut i, mut segment, mut in_quotes) = (start, start, false);
        loop {
            if in_quotes {
                let next = if self.escape == self.quote {
                    memchr::memchr(self.quote, &bytes[i..])
                } else {
                    memchr::memchr2(self.quote, self.escape, &bytes[i..])
                };
                let Some(next) = next.map(|p| i + p) else {
                    return Err(Error::InvalidValue(format!(
                        "COPY {}, line {}: unterminated CSV quoted field",
                        self.def.name, self.line
                    )));
                };
                self.line += memchr::memchr_iter(b'\n', &bytes[i..next]).count();
                let after = bytes.get(next + 1).copied();
                let c = bytes[next];
                if c == self.escape && (after == Some(self.quote) || after == Some(self.escape)) {
                    // An escaped quote or escape: keep the character after the escape.
                    self.unquoted.push_str(&text[segment..next]);
                    (segment, i) = (next + 1, next + 2);
                } else if c == self.quote {
                    self.unquoted.push_str(&text[segment..next]);
                    (segment, i, in_quotes) = (next + 1, next + 1, false);
                } else {
                    i = next + 1; // an escape before an ordinary character is data
                }
            } else {
                let next = memchr::memchr3(self.delimiter, self.quote, b'\n', &bytes[i..])
                    .map_or(bytes.len(), |p| i + p);
                if next < bytes.len() && bytes[next] == self.quote {
                    self.unquoted.push_str(&text[segment..next]);
                    (segment, i, in_quotes) = (next + 1, next + 1, true);
                    continue;
                }
                // The field ends; a CR before the line end, outside quotes, is not data.
                let end = if next > segment
                    && bytes[next - 1] == b'\r'
                    && bytes.get(next) != Some(&self.delimiter)
                {
                    next - 1
                } else {
                    next
                };
                self.unquoted.push_str(&text[segment..end]);
                self.pos = next;
                return Ok(Field::Unquoted(begin, self.unquoted.len()));
            }
        }
    }
}

/// Finds the ends of whole rows in CSV data received piece by piece: newlines outside quotes.
/// An escape character (when it is not the quote) inside quotes hides the byte after it.
#[derive(Debug, Clone)]
pub(super) struct RowEnds {
    quote: u8,
    escape: u8,
    in_quotes: bool,
    /// Position of a byte hidden by an escape (it may not have arrived yet).
    hidden: Option<usize>,
}

impl RowEnds {
    pub(super) fn new(quote: u8, escape: u8) -> Self {
        RowEnds {
            quote,
            escape,
            in_quotes: false,
            hidden: None,
        }
    }

    /// Calls `row_end(position after the newline)` for every row end in `data[from..]` until
    /// it returns false. Returns the newlines seen, quoted ones too.
    pub(super) fn scan(
        &mut self,
        data: &[u8],
        from: usize,
        mut row_end: impl FnMut(usize) -> bool,
    ) -> usize {
        let mut newlines = 0;
        for pos in memchr::memchr3_iter(self.quote, self.escape, b'\n', &data[from..]) {
            let pos = from + pos;
            if self.hidden == Some(pos) {
                // An escaped character is data; an escaped newline still counts as a line.
                self.hidden = None;
                if data[pos] == b'\n' {
                    newlines += 1;
                }
                continue;
            }
            match data[pos] {
                b'\n' => {
                    newlines += 1;
                    if !self.in_quotes && !row_end(pos + 1) {
                        return newlines;
                    }
                }
                c if c == self.quote => self.in_quotes = !self.in_quotes,
                _ if self.in_quotes => self.hidden = Some(pos + 1), // the escape
                _ => {}
            }
        }
        newlines
    }

    /// The data before `cut` was handed on: positions now count from `cut`.
    pub(super) fn shift(&mut self, cut: usize) {
        // A hidden position before the cut is stale (the escaped byte was not a hit).
        self.hidden = self.hidden.and_then(|h| h.checked_sub(cut));
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};

    use super::super::tests::def;
    use super::*;

    fn csv(escape: u8, header: bool) -> CopyFormat {
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape,
            null: String::new(),
            header,
        }
    }

    /// The `name` column decoded from `data`, and whether an end marker ended it.
    fn names(data: &str, format: &CopyFormat) -> Result<(Vec<Option<String>>, bool)> {
        let (batches, ended) = decode_lines(&def(), &[0, 1], format, data.as_bytes(), 0)?;
        let names = batches
            .iter()
            .flat_map(|b| {
                let col = b.column(1).as_string::<i32>().clone();
                (0..col.len())
                    .map(move |i| col.is_valid(i).then(|| col.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok((names, ended))
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn fields_read_as_postgresql_reads_them() {
        let format = csv(b'"', false);
        // An empty unquoted field is NULL, a quoted one is an empty string.
        let (got, _) = names("1,\n2,\"\"\n3,plain\r\n4,\"q\"\r\n", &format).unwrap();
        assert_eq!(
            got,
            vec![
                None,
                Some(String::new()),
                Some("plain".into()),
                Some("q".into())
            ]
        );
        // Doubled quotes, delimiters and newlines inside quotes, a quoted part mid-field.
        let (got, _) = names(
            "1,\"say \"\"hi\"\"\"\n2,\"a,b\nc\"\n3,ab\"c,d\"e\n",
            &format,
        )
        .unwrap();
        assert_eq!(got, some(&["say \"hi\"", "a,b\nc", "abc,de"]));
        // A header is skipped; an end marker ends the data.
        let (got, ended) = names("id,name\n1,x\n\\.\n2,never\n", &csv(b'"', true)).unwrap();
        assert_eq!((got, ended), (some(&["x"]), true));
        // No newline after the last row.
        assert_eq!(names("1,last", &format).unwrap().0, some(&["last"]));
    }

    #[test]
    fn a_backslash_escape_hides_quotes_and_itself_only() {
        let format = csv(b'\\', false);
        let (got, _) = names("1,\"a\\\"b\"\n2,\"c\\\\d\"\n3,\"e\\f\"\n", &format).unwrap();
        assert_eq!(got, some(&["a\"b", "c\\d", "e\\f"]));
    }

    #[test]
    fn errors_name_the_line_a_record_starts_on() {
        let format = csv(b'"', false);
        let err = names("1,\"two\nlines\"\nx,y\n", &format)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, column id"), "{err}");
        let err = names("1,a\n2,\"open\n", &format).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("unterminated"),
            "{err}"
        );
        let err = names("1,a\n2\n", &format).unwrap_err().to_string();
        assert!(
            err.contains("line 2: missing data for column \"name\""),
            "{err}"
        );
        let err = names("1,a,b\n", &format).unwrap_err().to_string();
        assert!(err.contains("line 1: extra data"), "{err}");
    }

    fn ends(data: &[u8], quote: u8, escape: u8) -> Vec<usize> {
        let mut found = Vec::new();
        RowEnds::new(quote, escape).scan(data, 0, |end| {
            found.push(end);
            true
        });
        found
    }

    #[test]
    fn newlines_inside_quotes_do_not_end_rows() {
        let data = b"1,\"a\nb\"\n2,\"c\"\"\n\"\n3,x\n";
        assert_eq!(ends(data, b'"', b'"'), vec![8, 17, 21]);
        // A backslash escape hides the quote after it.
        let data = b"1,\"a\\\"\nb\"\n2,y\n";
        assert_eq!(ends(data, b'"', b'\\'), vec![10, 14]);
    }

    #[test]
    fn a_scan_resumes_where_the_last_piece_ended() {
        let data = b"1,\"a\\\"\nb\"\n2,y\n";
        let mut scanner = RowEnds::new(b'"', b'\\');
        let mut found = Vec::new();
        // Feed the bytes one at a time, as pieces that end anywhere.
        let mut seen = 0;
        for end in 1..=data.len() {
            scanner.scan(&data[..end], seen, |e| {
                found.push(e);
                true
            });
            seen = end;
        }
        assert_eq!(found, vec![10, 14]);
    }
}
