//! COPY's CSV format, read with the `csv` crate: delimiter, quote, escape (doubled quotes when
//! escape = quote), an unquoted NULL marker, an optional header line.
//!
//! Also owns [`RowEnds`], which finds where whole CSV rows end in data that is still arriving
//! (a newline inside quotes is not a row end), so CSV is decoded in blocks like text.

use datafusion::arrow::array::RecordBatch;
use eddy_catalog::StreamDef;

use super::CopyFormat;
use super::columns::Frames;
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
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(*header && first_line == 0)
        .delimiter(*delimiter)
        .quote(*quote)
        .escape((escape != quote).then_some(*escape))
        .double_quote(escape == quote)
        .flexible(true)
        .from_reader(data);
    let mut frames = Frames::new(def, columns);
    let mut record = csv::StringRecord::new();
    loop {
        let before = first_line + reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(Error::InvalidValue(format!(
                    "COPY {}, line {before}: {e}",
                    def.name
                )));
            }
        }
        // The line the record starts on (after a header, when there is one).
        let line = first_line + record.position().map_or(0, |p| p.line() as usize);
        if record.len() == 1 && &record[0] == "\\." {
            return Ok((frames.finish()?, true));
        }
        check_arity(def, columns, record.len(), line)?;
        // The csv reader does not say whether a field was quoted, so an empty field is NULL
        // when the NULL marker is empty (PostgreSQL's default).
        for (c, f) in record.iter().enumerate() {
            frames.field(c, (f != null.as_str()).then_some(f), line)?;
        }
        frames.end_row(line)?;
    }
    Ok((frames.finish()?, false))
}

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
                self.hidden = None;
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
    use super::*;

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
