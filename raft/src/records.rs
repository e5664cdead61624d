//! Checksummed records: the byte format of a group's log and snapshot files (sans-IO).
//!
//! ```text
//! file    8-byte magic (what the file is), then records, each:
//!           u32 LE  payload length
//!           u32 LE  CRC32C of the payload
//!           …       payload
//! ```
//!
//! Records are only ever appended and a write is acknowledged after its fsync, so the one
//! record a crash can leave incomplete is the last. Reading therefore treats a bad record as a
//! torn tail only when no valid record starts anywhere after it; a bad record followed by a
//! valid one is damage in acknowledged data, refused (as the catalog's command log does).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result, io};

const RECORD_HEADER: usize = 8;

/// Encodes one record, appending it to `out`.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Protocol(format!("a record of {} bytes", payload.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// One record read back, with where it starts in the file.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub at: u64,
    pub payload: &'a [u8],
}

/// What a file holds.
#[derive(Debug)]
pub(crate) struct Contents<'a> {
    pub records: Vec<Record<'a>>,
    /// Where the valid records end; anything after it is a torn tail.
    pub valid_end: u64,
}

fn record_at(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(RECORD_HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = pos + RECORD_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, start + len))
}

/// Reads a whole file's bytes: its records, or [`Error::Damaged`] naming `path` when a bad
/// record is followed by a good one or the magic is wrong.
pub(crate) fn read<'a>(bytes: &'a [u8], magic: &[u8; 8], path: &Path) -> Result<Contents<'a>> {
    if bytes.len() < magic.len() {
        if magic.starts_with(bytes) {
            // A crash while the file was being created: nothing was ever acknowledged.
            return Ok(Contents {
                records: Vec::new(),
                valid_end: 0,
            });
        }
        return Err(damaged(path, 0, "the file does not start with its magic"));
    }
    if &bytes[..magic.len()] != magic {
        // The magic's last byte is the format's version.
        let n = magic.len() - 1;
        if bytes[..n] == magic[..n] {
            return Err(damaged(
                path,
                0,
                &format!(
                    "the file is of format version {}, this Eddy reads version {}",
                    bytes[n] as char, magic[n] as char
                ),
            ));
        }
        return Err(damaged(path, 0, "the file does not start with its magic"));
    }
    let mut records = Vec::new();
    let mut pos = magic.len();
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Some((payload, next)) => {
                records.push(Record {
                    at: pos as u64,
                    payload,
                });
                pos = next;
            }
            None => {
                if (pos + 1..bytes.len()).any(|later| record_at(bytes, later).is_some()) {
                    return Err(damaged(
                        path,
                        pos as u64,
                        "a record that fails its checksum is followed by valid ones",
                    ));
                }
                break;
            }
        }
    }
    Ok(Contents {
        records,
        valid_end: pos as u64,
    })
}

/// Replaces the file at `path` with `bytes` (a magic and its records) atomically: written
/// whole under `<name>.new`, synced, renamed over `path`, the directory synced. A crash leaves
/// the old file or the new one, never part of either.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let fresh = path.with_extension("new");
    let mut file = File::create(&fresh).map_err(io(&fresh))?;
    file.write_all(bytes).map_err(io(&fresh))?;
    file.sync_all().map_err(io(&fresh))?;
    fs::rename(&fresh, path).map_err(io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir)
}

/// Fsyncs a directory, so that files created, renamed or removed in it stay so.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Reads a file [`replace`] wrote with exactly one record: its payload and where it starts,
/// `None` if there is no file. Anything but one whole record is damage (a replaced file is
/// never partial); `what` names the file's kind in the error.
pub(crate) fn read_one(path: &Path, magic: &[u8; 8], what: &str) -> Result<Option<(u64, Vec<u8>)>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let contents = read(&bytes, magic, path)?;
    match contents.records.as_slice() {
        [record] if contents.valid_end == bytes.len() as u64 => {
            Ok(Some((record.at, record.payload.to_vec())))
        }
        _ => Err(damaged(
            path,
            0,
            &format!("{what} must hold exactly one whole record"),
        )),
    }
}

fn damaged(path: &Path, at: u64, why: &str) -> Error {
    Error::Damaged {
        path: path.to_path_buf(),
        at,
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"TESTREC1";

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for p in payloads {
            encode(p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = file(&[b"one", b"", b"three"]);
        let contents = read(&bytes, MAGIC, Path::new("f")).unwrap();
        let payloads: Vec<&[u8]> = contents.records.iter().map(|r| r.payload).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(contents.valid_end, bytes.len() as u64);
    }

    #[test]
    fn a_torn_last_record_is_cut_at_every_length() {
        let whole = file(&[b"first", b"second record"]);
        let first_end = file(&[b"first"]).len();
        for cut in first_end..whole.len() {
            let contents = read(&whole[..cut], MAGIC, Path::new("f")).unwrap();
            assert_eq!(contents.records.len(), 1, "cut at {cut}");
            assert_eq!(contents.valid_end, first_end as u64);
        }
    }

    #[test]
    fn a_bad_record_before_a_good_one_is_damage() {
        let mut bytes = file(&[b"first", b"second"]);
        bytes[MAGIC.len() + RECORD_HEADER] ^= 1;
        let err = read(&bytes, MAGIC, Path::new("meta/raft.log")).unwrap_err();
        assert!(
            matches!(err, Error::Damaged { at: 8, .. }),
            "{err}: the first record is damaged"
        );
        assert!(err.to_string().contains("meta/raft.log"), "{err}");
    }

    #[test]
    fn a_wrong_magic_is_damage_and_a_partial_one_is_empty() {
        assert!(read(b"NOTMAGIC", MAGIC, Path::new("f")).is_err());
        let partial = read(&MAGIC[..3], MAGIC, Path::new("f")).unwrap();
        assert!(partial.records.is_empty());
    }
}
