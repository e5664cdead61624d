//! The catalog's file formats: checksummed records, so that damage is found, never applied.
//!
//! ```text
//! commands.log   "EDDYCMD1", then records, each:
//!                  u32 LE  payload length
//!                  u32 LE  CRC32C of the next 8 + length bytes
//!                  u64 LE  command index (1, 2, ...: the catalog's `applied` after it)
//!                  …       payload: the command as JSON
//! snapshot.json  "EDDYSNP1 crc32c=XXXXXXXX len=N\n", then the state as pretty JSON
//! ```
//!
//! A record is acknowledged only after its fdatasync, and records are only ever appended, so
//! the one record a crash can leave incomplete is the last. Reading therefore treats a bad
//! record as a torn tail only when no valid record starts anywhere after it; a bad record
//! followed by a valid one is damage in acknowledged data ([`Error::Damaged`]).
//!
//! The snapshot keeps its JSON readable for an operator; its first line carries the CRC.

use std::path::Path;

use crate::{Error, Result};

/// First bytes of a framed command log.
pub(crate) const LOG_MAGIC: &[u8; 8] = b"EDDYCMD1";
const SNAPSHOT_MAGIC: &str = "EDDYSNP1";
const RECORD_HEADER: usize = 16;

/// One record of the command log.
#[derive(Debug)]
pub(crate) struct Record {
    pub index: u64,
    pub payload: Vec<u8>,
}

/// What reading a command log found.
#[derive(Debug)]
pub(crate) struct LogContents {
    pub records: Vec<Record>,
    /// Where the valid records end; anything after is a torn tail.
    pub valid_end: u64,
}

/// Encodes one record.
pub(crate) fn encode_record(index: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Invalid("catalog command too large".into()))?;
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The record starting at `pos`, if a whole one with a matching CRC does.
fn record_at(bytes: &[u8], pos: usize) -> Option<(Record, usize)> {
    let header = bytes.get(pos..pos + RECORD_HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 {
        return None;
    }
    let end = (pos + RECORD_HEADER).checked_add(len)?;
    let covered = bytes.get(pos + 8..end)?;
    if crc32c::crc32c(covered) != crc {
        return None;
    }
    let index = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let payload = bytes[pos + RECORD_HEADER..end].to_vec();
    Some((Record { index, payload }, end))
}

/// Reads a framed command log (its bytes start with [`LOG_MAGIC`]).
pub(crate) fn read_log(bytes: &[u8], path: &Path) -> Result<LogContents> {
    let mut records = Vec::new();
    let mut pos = LOG_MAGIC.len();
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Some((record, end)) => {
                records.push(record);
                pos = end;
            }
            None => {
                if let Some(later) = (pos + 1..bytes.len()).find(|&q| record_at(bytes, q).is_some())
                {
                    return Err(Error::Damaged {
                        path: path.to_path_buf(),
                        position: pos as u64,
                        reason: format!(
                            "a record fails its checksum but a valid one follows at byte {later}"
                        ),
                    });
                }
                break;
            }
        }
    }
    Ok(LogContents {
        records,
        valid_end: pos.min(bytes.len()) as u64,
    })
}

/// Encodes a snapshot: header line with the CRC, then the JSON.
pub(crate) fn encode_snapshot(json: &[u8]) -> Vec<u8> {
    let header = format!(
        "{SNAPSHOT_MAGIC} crc32c={:08x} len={}\n",
        crc32c::crc32c(json),
        json.len()
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(json);
    out
}

/// The JSON of a snapshot, checked against its CRC. A file that starts with `{` is a snapshot
/// written before snapshots had a header, returned as it is.
pub(crate) fn decode_snapshot<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let damaged = |reason: &str| Error::Damaged {
        path: path.to_path_buf(),
        position: 0,
        reason: reason.to_string(),
    };
    if bytes.first() == Some(&b'{') {
        return Ok(bytes);
    }
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| damaged("no header line"))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| damaged("bad header"))?;
    let mut parts = header.split(' ');
    if parts.next() != Some(SNAPSHOT_MAGIC) {
        return Err(damaged("not an Eddy catalog snapshot"));
    }
    let field = |p: Option<&str>, name: &str| {
        p.and_then(|p| p.strip_prefix(name))
            .map(str::to_string)
            .ok_or_else(|| damaged("bad header"))
    };
    let crc = u32::from_str_radix(&field(parts.next(), "crc32c=")?, 16)
        .map_err(|_| damaged("bad header"))?;
    let len: usize = field(parts.next(), "len=")?
        .parse()
        .map_err(|_| damaged("bad header"))?;
    let json = &bytes[newline + 1..];
    if json.len() != len {
        return Err(damaged(&format!(
            "{} bytes of state, the header says {len}",
            json.len()
        )));
    }
    if crc32c::crc32c(json) != crc {
        return Err(damaged("the state fails its checksum"));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = LOG_MAGIC.to_vec();
        for (i, p) in records {
            out.extend(encode_record(*i, p).unwrap());
        }
        out
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail_and_every_flip_is_found() {
        let path = Path::new("commands.log");
        let bytes = log_of(&[(1, b"{\"a\":1}"), (2, b"{\"b\":22}"), (3, b"{\"c\":333}")]);
        let full = read_log(&bytes, path).unwrap();
        assert_eq!(full.records.len(), 3);
        let last_start = bytes.len() - (RECORD_HEADER + 9);
        for cut in last_start..bytes.len() {
            let c = read_log(&bytes[..cut], path).unwrap();
            assert_eq!(c.records.len(), 2, "cut at {cut}");
            assert_eq!(c.valid_end, last_start as u64);
        }
        // A flipped bit in any byte of the first two records is damage, never a shorter log.
        for at in LOG_MAGIC.len()..last_start {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            match read_log(&b, path) {
                Err(Error::Damaged { .. }) => {}
                other => panic!("flip at {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn snapshots_check_their_crc() {
        let path = Path::new("snapshot.json");
        let s = encode_snapshot(b"{\"x\": 1}");
        assert_eq!(decode_snapshot(&s, path).unwrap(), b"{\"x\": 1}");
        let mut bad = s.clone();
        let n = bad.len();
        bad[n - 2] = b'2';
        assert!(matches!(
            decode_snapshot(&bad, path),
            Err(Error::Damaged { .. })
        ));
        assert!(decode_snapshot(&s[..n - 1], path).is_err());
        assert_eq!(decode_snapshot(b"{}", path).unwrap(), b"{}");
    }
}
