//! PostgreSQL's COPY text format: one row per line, fields split by a one-byte delimiter,
//! `\N` (or the NULL option) for NULL, backslash escapes.
//!
//! The scanner makes one SIMD pass ([`memchr::memchr3_iter`]) over the payload for newlines,
//! delimiters and backslashes, after validating the payload's UTF-8 once; fields go straight to
//! the column sinks. Large payloads arrive as blocks of whole lines (see `receive.rs`), each
//! decoded by this module on its own thread.

use datafusion::arrow::array::RecordBatch;
use eddy_catalog::StreamDef;

use super::check_arity;
use super::columns::Frames;
use crate::{Error, Result};

/// The text format's options.
#[derive(Clone, Copy)]
pub(super) struct TextOptions<'a> {
    pub delimiter: u8,
    pub null: &'a str,
}

/// Decodes text-format data whose first line is line `first_line + 1` of the payload. Returns
/// the batches and whether an end marker (`\.`) ended the data.
pub(super) fn decode_lines(
    def: &StreamDef,
    columns: &[usize],
    options: TextOptions<'_>,
    data: &[u8],
    first_line: usize,
) -> Result<(Vec<RecordBatch>, bool)> {
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => {
            // Rows before the bad line are decoded first: their errors come first, and an
            // end marker among them ends the data before the bad bytes.
            let start = memchr::memrchr(b'\n', &data[..e.valid_up_to()]).map_or(0, |p| p + 1);
            let decoded = decode_lines(def, columns, options, &data[..start], first_line)?;
            if decoded.1 {
                return Ok(decoded);
            }
            let line = first_line + 1 + memchr::memchr_iter(b'\n', &data[..start]).count();
            return Err(Error::InvalidValue(format!(
                "COPY {}: line {line} is not valid UTF-8",
                def.name
            )));
        }
    };
    let mut scanner = Scanner {
        frames: Frames::new(def, columns),
        def,
        columns,
        options,
        text,
        line: first_line + 1,
        unescaped: String::new(),
    };
    let ended = scanner.run()?;
    Ok((scanner.frames.finish()?, ended))
}

struct Scanner<'a> {
    frames: Frames<'a>,
    def: &'a StreamDef,
    columns: &'a [usize],
    options: TextOptions<'a>,
    text: &'a str,
    /// Current input line (1-based, whole payload).
    line: usize,
    unescaped: String,
}

impl Scanner<'_> {
    /// Scans every row; true when an end marker ended the data.
    fn run(&mut self) -> Result<bool> {
        let bytes = self.text.as_bytes();
        let (mut start, mut column, mut escaped) = (0, 0, false);
        // Hits before this position are escaped characters, not separators.
        let mut skip_to = 0;
        for pos in memchr::memchr3_iter(self.options.delimiter, b'\n', b'\\', bytes) {
            match bytes[pos] {
                b'\n' => {
                    if self.end_line(start, pos, column, escaped)? {
                        return Ok(true);
                    }
                    (start, column, escaped, skip_to) = (pos + 1, 0, false, 0);
                }
                _ if pos < skip_to => {}
                b'\\' => (escaped, skip_to) = (true, pos + 2),
                _ => {
                    // A delimiter after the last column: at least `column + 2` fields.
                    if column + 1 >= self.frames.width() {
                        check_arity(self.def, self.columns, column + 2, self.line)?;
                    }
                    self.field(column, start, pos, escaped)?;
                    (start, column, escaped) = (pos + 1, column + 1, false);
                }
            }
        }
        // A last line without a newline.
        if start < bytes.len() {
            return self.end_line(start, bytes.len(), column, escaped);
        }
        Ok(false)
    }

    /// Ends the line whose last field is `start..end`; true for the end marker.
    fn end_line(&mut self, start: usize, end: usize, column: usize, escaped: bool) -> Result<bool> {
        let end = if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        if column == 0 && &self.text[start..end] == "\\." {
            return Ok(true);
        }
        check_arity(self.def, self.columns, column + 1, self.line)?;
        self.field(column, start, end, escaped)?;
        self.frames.end_row(self.line)?;
        self.line += 1;
        Ok(false)
    }

    /// Passes field `start..end` to column `column`.
    fn field(&mut self, column: usize, start: usize, end: usize, escaped: bool) -> Result<()> {
        let raw = &self.text[start..end];
        let value = if raw == self.options.null {
            None
        } else if escaped {
            unescape(raw, &mut self.unescaped).map_err(|()| {
                Error::InvalidValue(format!(
                    "COPY {}: line {} is not valid UTF-8 after unescaping",
                    self.def.name, self.line
                ))
            })?;
            Some(self.unescaped.as_str())
        } else {
            Some(raw)
        };
        let result = self.frames.field(column, value, self.line);
        if result.is_err() {
            // As PostgreSQL does, a line with the wrong number of fields is reported as such
            // before any of its values.
            check_arity(self.def, self.columns, self.fields_of_line(end), self.line)?;
        }
        result
    }

    /// Number of fields of the current line, from a field ending at `end`.
    fn fields_of_line(&self, end: usize) -> usize {
        let bytes = self.text.as_bytes();
        let line_start = memchr::memrchr(b'\n', &bytes[..end]).map_or(0, |p| p + 1);
        let line_end = memchr::memchr(b'\n', &bytes[end..]).map_or(bytes.len(), |p| end + p);
        let line = &bytes[line_start..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut fields = 1;
        let mut i = 0;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 1,
                c if c == self.options.delimiter => fields += 1,
                _ => {}
            }
            i += 1;
        }
        fields
    }
}

/// Decodes PostgreSQL text-format escapes into `out`: `\b \f \n \r \t \v`, `\` + 1-3 octal
/// digits, `\x` + 1-2 hex digits (a byte), and `\` before any other character (that character).
/// Fails when the bytes it makes are not UTF-8.
fn unescape(field: &str, out: &mut String) -> std::result::Result<(), ()> {
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    let input = field.as_bytes();
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        i += 1;
        if c != b'\\' {
            bytes.push(c);
            continue;
        }
        let Some(&next) = input.get(i) else {
            bytes.push(b'\\');
            break;
        };
        i += 1;
        let byte = match next {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match input.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                value as u8
            }
            b'x' if input.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match input.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            other => other,
        };
        bytes.push(byte);
    }
    match String::from_utf8(bytes) {
        Ok(s) => {
            *out = s;
            Ok(())
        }
        Err(e) => {
            *out = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescaped(s: &str) -> Option<String> {
        let mut out = String::new();
        unescape(s, &mut out).ok().map(|()| out)
    }

    #[test]
    fn escapes_decode_as_postgresql_decodes_them() {
        assert_eq!(unescaped(r"a\tb\nc\\d\.").as_deref(), Some("a\tb\nc\\d."));
        assert_eq!(unescaped(r"\101\x42\x4a\7").as_deref(), Some("ABJ\u{7}"));
        assert_eq!(unescaped(r"\xg").as_deref(), Some("xg"));
        assert_eq!(unescaped(r"end\").as_deref(), Some("end\\"));
        assert_eq!(unescaped(r"\303\251").as_deref(), Some("é"));
        assert_eq!(unescaped(r"\377"), None);
    }
}
