//! The benchmark's rows in PostgreSQL's binary COPY format (`COPY ... FROM STDIN (FORMAT
//! binary)`): the same statements and chunks as the text data, each statement a file header,
//! one tuple per row (`int8, int8, text, float8, timestamp`), and the trailer.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::NaiveDateTime;

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for timestamps.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One text line (`id\tx\tname\tv\tts`) as a binary tuple.
fn push_tuple(line: &str, out: &mut BytesMut) {
    let mut fields = line.split('\t');
    let mut next = || fields.next().expect("five fields per line");
    let (id, x, name, v, ts) = (next(), next(), next(), next(), next());
    out.put_i16(5);
    out.put_i32(8);
    out.put_i64(id.parse().expect("id"));
    out.put_i32(8);
    out.put_i64(x.parse().expect("x"));
    out.put_i32(name.len() as i32);
    out.put_slice(name.as_bytes());
    out.put_i32(8);
    out.put_f64(v.parse().expect("v"));
    let ts = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").expect("ts");
    out.put_i32(8);
    out.put_i64(ts.and_utc().timestamp_micros() - PG_EPOCH_MICROS);
}

/// The COPY text statements as binary COPY statements, chunk for chunk; returns them and
/// their total bytes.
pub fn to_binary(statements: &[Vec<Bytes>]) -> (Vec<Vec<Bytes>>, u64) {
    let mut bytes = 0u64;
    let binary = statements
        .iter()
        .map(|chunks| {
            let last = chunks.len().saturating_sub(1);
            chunks
                .iter()
                .enumerate()
                .map(|(i, chunk)| {
                    let mut out = BytesMut::with_capacity(chunk.len() + chunk.len() / 2);
                    if i == 0 {
                        out.put_slice(b"PGCOPY\n\xff\r\n\0");
                        out.put_i32(0); // flags
                        out.put_i32(0); // no header extension
                    }
                    for line in String::from_utf8_lossy(chunk).lines() {
                        push_tuple(line, &mut out);
                    }
                    if i == last {
                        out.put_i16(-1);
                    }
                    bytes += out.len() as u64;
                    out.freeze()
                })
                .collect()
        })
        .collect();
    (binary, bytes)
}
