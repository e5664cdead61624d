//! PostgreSQL's binary COPY format (`COPY s FROM STDIN (FORMAT binary)`): an 11-byte
//! signature, a flags word, a header extension, then per tuple a 16-bit field count and per
//! field a 32-bit length (-1 for NULL) and that many bytes in the type's `send` encoding,
//! ended by a field count of -1.
//!
//! A block of whole tuples is decoded in two passes: [`Tuples::scan`] walks the lengths and
//! records where each field lies (checking the tuple structure), then every column is decoded
//! on its own, in one loop over its fields straight into a typed Arrow builder
//! ([`super::binary_columns`]). A structural fault is 22P04 (`bad_copy_file_format`), a field
//! that is not a valid value of its column 22P03 (`invalid_binary_representation`); either
//! names the row (counted from 1 over the whole COPY, as PostgreSQL counts lines) and, for a
//! field, the column. The first fault in row order wins, as in PostgreSQL.

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use eddy_catalog::StreamDef;

use super::binary_columns::{Bad, decode_column};
use crate::ingest::{MAX_FRAME_ROWS, with_rowtime};
use crate::{Error, Result};

/// The binary COPY signature: `PGCOPY\n\377\r\n\0`.
pub(super) const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and the header extension's length.
const FIXED_HEADER: usize = 19;

/// Where a field lies in a block: its first byte and its length (-1: NULL).
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub start: usize,
    pub len: i32,
}

impl Field {
    /// The field's bytes, `None` for NULL.
    #[inline]
    pub fn bytes(self, data: &[u8]) -> Option<&[u8]> {
        (self.len >= 0).then(|| &data[self.start..self.start + self.len as usize])
    }
}

fn bad_format(def: &StreamDef, message: impl std::fmt::Display) -> Error {
    Error::BadCopyFormat(format!("COPY {}: {message}", def.name))
}

/// The length of the header at the start of `data`: `Ok(None)` while more data is needed
/// (`complete`: no more will come, so a short header is an error).
pub(super) fn header_len(def: &StreamDef, data: &[u8], complete: bool) -> Result<Option<usize>> {
    let seen = data.len().min(SIGNATURE.len());
    if data[..seen] != SIGNATURE[..seen] || (complete && seen < SIGNATURE.len()) {
        return Err(bad_format(def, "COPY file signature not recognized"));
    }
    if data.len() < FIXED_HEADER {
        return if complete {
            Err(bad_format(
                def,
                "invalid COPY file header (missing flags or length)",
            ))
        } else {
            Ok(None)
        };
    }
    let flags = i32::from_be_bytes([data[11], data[12], data[13], data[14]]);
    if flags & (1 << 16) != 0 {
        return Err(bad_format(def, "invalid COPY file header (WITH OIDS)"));
    }
    if (flags as u32) >> 17 != 0 {
        return Err(bad_format(
            def,
            "unrecognized critical flags in COPY file header",
        ));
    }
    let extension = i32::from_be_bytes([data[15], data[16], data[17], data[18]]);
    if extension < 0 {
        return Err(bad_format(def, "invalid COPY file header (missing length)"));
    }
    let len = FIXED_HEADER + extension as usize;
    if data.len() < len {
        return if complete {
            Err(bad_format(def, "invalid COPY file header (wrong length)"))
        } else {
            Ok(None)
        };
    }
    Ok(Some(len))
}

/// How a scan for tuple ends stopped.
#[derive(Debug, PartialEq)]
pub(super) enum Stop {
    /// `row_end` asked to stop after the tuple ending at this position.
    Full(usize),
    /// The data ends inside the tuple starting at this position (or exactly before it).
    NeedMore(usize),
    /// The trailer (field count -1) starts at this position.
    Trailer(usize),
    /// The tuple starting at this position is malformed (the decoder names the fault).
    Malformed,
}

/// Walks the tuples of `data` from `from` (a tuple start), calling `row_end` with the end of
/// each whole one until it returns false. Checks only what finding the ends needs; the
/// decoder checks the rest and words the errors.
pub(super) fn scan_tuples(
    data: &[u8],
    from: usize,
    width: usize,
    mut row_end: impl FnMut(usize) -> bool,
) -> Stop {
    let mut pos = from;
    loop {
        let Some(count) = read_i16(data, pos) else {
            return Stop::NeedMore(pos);
        };
        if count == -1 {
            return Stop::Trailer(pos);
        }
        if count < 0 || count as usize != width {
            return Stop::Malformed;
        }
        let mut at = pos + 2;
        for _ in 0..width {
            let Some(len) = read_i32(data, at) else {
                return Stop::NeedMore(pos);
            };
            if len < -1 {
                return Stop::Malformed;
            }
            at += 4 + len.max(0) as usize;
        }
        if at > data.len() {
            return Stop::NeedMore(pos);
        }
        pos = at;
        if !row_end(pos) {
            return Stop::Full(pos);
        }
    }
}

#[inline]
fn read_i16(data: &[u8], at: usize) -> Option<i16> {
    let b = data.get(at..at + 2)?;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

#[inline]
fn read_i32(data: &[u8], at: usize) -> Option<i32> {
    let b = data.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The fields of a block's tuples, row by row, and the first structural fault after them.
struct Tuples {
    /// `rows * width` fields, row-major.
    fields: Vec<Field>,
    rows: usize,
    /// The fault that ended the scan early (it is in the row after the last one kept).
    fault: Option<Error>,
}

impl Tuples {
    /// Reads the tuples of `data` (whole tuples, maybe the trailer; the first is row
    /// `first_row + 1` of the COPY).
    fn scan(def: &StreamDef, width: usize, data: &[u8], first_row: usize) -> Tuples {
        let mut fields = Vec::with_capacity(width * MAX_FRAME_ROWS.min(data.len() / 8 + 1));
        let mut rows = 0;
        let mut pos = 0;
        let fault = loop {
            let row = first_row + rows + 1;
            let fault = |m: String| Some(bad_format(def, format!("row {row}: {m}")));
            if pos == data.len() {
                break None;
            }
            let Some(count) = read_i16(data, pos) else {
                break fault("unexpected EOF in COPY data".into());
            };
            if count == -1 {
                break (pos + 2 < data.len())
                    .then(|| bad_format(def, "received copy data after EOF marker"));
            }
            if count < 0 || count as usize != width {
                break fault(format!("row field count is {count}, expected {width}"));
            }
            let mut at = pos + 2;
            let kept = fields.len();
            let mut broken = None;
            for _ in 0..width {
                let Some(len) = read_i32(data, at) else {
                    broken = Some("unexpected EOF in COPY data".to_string());
                    break;
                };
                if len < -1 {
                    broken = Some(format!("invalid field size {len}"));
                    break;
                }
                let start = at + 4;
                at = start + len.max(0) as usize;
                if at > data.len() {
                    broken = Some("unexpected EOF in COPY data".to_string());
                    break;
                }
                fields.push(Field { start, len });
            }
            if let Some(m) = broken {
                fields.truncate(kept);
                break fault(m);
            }
            pos = at;
            rows += 1;
        };
        Tuples {
            fields,
            rows,
            fault,
        }
    }
}

/// Decodes a block of binary tuples (whole tuples; the first is row `first_row + 1`) for
/// `columns` (indices into the stream's columns, in the order the data gives them) into
/// stored batches of at most [`MAX_FRAME_ROWS`] rows.
pub(super) fn decode_tuples(
    def: &StreamDef,
    columns: &[usize],
    data: &[u8],
    first_row: usize,
) -> Result<Vec<RecordBatch>> {
    let width = columns.len();
    let tuples = Tuples::scan(def, width, data, first_row);
    let mut out = Vec::with_capacity(tuples.rows.div_ceil(MAX_FRAME_ROWS));
    let mut column_fields = Vec::with_capacity(MAX_FRAME_ROWS.min(tuples.rows));
    for chunk_start in (0..tuples.rows).step_by(MAX_FRAME_ROWS) {
        let rows = MAX_FRAME_ROWS.min(tuples.rows - chunk_start);
        let mut user: Vec<Option<ArrayRef>> = vec![None; def.columns.len()];
        // The first bad field in row order (then column order) is the one reported.
        let mut first_bad: Option<(usize, usize, Bad)> = None;
        for (c, &target) in columns.iter().enumerate() {
            column_fields.clear();
            column_fields
                .extend((chunk_start..chunk_start + rows).map(|r| tuples.fields[r * width + c]));
            let col = &def.columns[target];
            match decode_column(&col.data_type, data, &column_fields) {
                Ok(array) => user[target] = Some(array),
                Err(bad) => {
                    if first_bad
                        .as_ref()
                        .is_none_or(|(row, _, _)| bad.index < *row)
                    {
                        first_bad = Some((bad.index, target, bad));
                    }
                }
            }
        }
        if let Some((index, target, bad)) = first_bad {
            let row = first_row + chunk_start + index + 1;
            return Err(bad.into_error(def, row, &def.columns[target].name));
        }
        let user = user
            .into_iter()
            .zip(&def.columns)
            .map(|(a, c)| a.unwrap_or_else(|| new_null_array(&c.data_type, rows)))
            .collect();
        out.push(with_rowtime(def, user, None)?);
    }
    match tuples.fault {
        Some(fault) => Err(fault),
        None => Ok(out),
    }
}

/// Decodes a whole binary COPY payload (header, tuples, trailer) on this thread.
pub(super) fn decode(def: &StreamDef, columns: &[usize], data: &[u8]) -> Result<Vec<RecordBatch>> {
    let header = header_len(def, data, true)?.unwrap_or(data.len());
    decode_tuples(def, columns, &data[header..], 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload of `rows` tuples of two fields, `(i as int8, "name i")`.
    pub(crate) fn payload(rows: usize) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for i in 0..rows {
            out.extend_from_slice(&2i16.to_be_bytes());
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&(i as i64).to_be_bytes());
            let name = format!("name {i}");
            out.extend_from_slice(&(name.len() as i32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn headers_are_checked_as_postgresql_checks_them() {
        let def = super::super::tests::def();
        let good = payload(0);
        assert_eq!(header_len(&def, &good, true).unwrap(), Some(19));
        assert_eq!(header_len(&def, &good[..5], false).unwrap(), None);
        assert_eq!(header_len(&def, &good[..12], false).unwrap(), None);
        let err = |data: &[u8]| header_len(&def, data, true).unwrap_err().to_string();
        assert!(err(b"").contains("signature not recognized"));
        assert!(err(b"PGCOPZ").contains("signature not recognized"));
        assert!(err(&good[..15]).contains("missing"));
        let mut oids = good.clone();
        oids[12] = 1; // bit 16
        assert!(err(&oids).contains("WITH OIDS"));
        let mut critical = good.clone();
        critical[11] = 0x80;
        assert!(err(&critical).contains("critical flags"));
        let mut extension = good.clone();
        extension[18] = 4;
        assert!(err(&extension).contains("wrong length"));
        extension.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(header_len(&def, &extension, true).unwrap(), Some(23));
    }

    #[test]
    fn tuple_ends_are_found_in_any_cut_of_the_data() {
        let data = payload(5);
        let body = &data[19..];
        let mut ends = vec![];
        let stop = scan_tuples(body, 0, 2, |end| {
            ends.push(end);
            true
        });
        assert_eq!(ends.len(), 5);
        assert_eq!(stop, Stop::Trailer(body.len() - 2));
        // Cut one byte into the third tuple: two whole tuples, then more is needed.
        let cut = ends[1] + 1;
        let mut seen = 0;
        let stop = scan_tuples(&body[..cut], 0, 2, |_| {
            seen += 1;
            true
        });
        assert_eq!((seen, stop), (2, Stop::NeedMore(ends[1])));
        assert_eq!(scan_tuples(body, 0, 3, |_| true), Stop::Malformed);
    }

    #[test]
    fn a_payload_decodes_into_frames_in_order() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let def = super::super::tests::def();
        let rows = 70_000;
        let batches = decode(&def, &[0, 1], &payload(rows)).unwrap();
        assert_eq!(batches.len(), rows.div_ceil(MAX_FRAME_ROWS));
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, (0..rows as i64).collect::<Vec<_>>());
        let last = batches.last().unwrap();
        assert_eq!(
            last.column(1).as_string::<i32>().value(last.num_rows() - 1),
            format!("name {}", rows - 1)
        );
    }

    #[test]
    fn structural_faults_name_their_row_and_come_after_earlier_bad_values() {
        let def = super::super::tests::def();
        let mut data = payload(3);
        data.truncate(data.len() - 2); // no trailer: allowed
        assert_eq!(decode(&def, &[0, 1], &data).unwrap()[0].num_rows(), 3);
        // A tuple cut short.
        let e = decode(&def, &[0, 1], &data[..data.len() - 3]).unwrap_err();
        assert!(matches!(e, Error::BadCopyFormat(_)), "{e}");
        assert!(e.to_string().contains("row 3: unexpected EOF"), "{e}");
        // A wrong field count in row 2.
        let mut wrong = payload(3);
        let row2 = 19 + 2 + 4 + 8 + 4 + "name 0".len();
        wrong[row2 + 1] = 3;
        let e = decode(&def, &[0, 1], &wrong).unwrap_err();
        assert!(
            e.to_string()
                .contains("row 2: row field count is 3, expected 2"),
            "{e}"
        );
        // A bad value in row 1 (an int8 of 4 bytes) is reported before row 2's fault.
        let mut both = wrong.clone();
        both[19 + 5] = 4;
        both.drain(19 + 6 + 4..19 + 6 + 8);
        let e = decode(&def, &[0, 1], &both).unwrap_err();
        assert!(matches!(e, Error::InvalidBinary(_)), "{e}");
        assert!(e.to_string().contains("row 1, column id"), "{e}");
        // Data after the trailer.
        let mut after = payload(1);
        after.push(0);
        let e = decode(&def, &[0, 1], &after).unwrap_err();
        assert!(e.to_string().contains("after EOF marker"), "{e}");
    }
}
