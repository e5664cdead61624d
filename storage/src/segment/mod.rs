//! One segment: a `.log` file of frames plus its in-memory state and `.index` cache.
//!
//! A segment's file handle is shared (`Arc<File>`) and accessed only with positioned reads and
//! writes, so readers never contend with the appender for a file cursor. A reader that holds a
//! segment keeps its file open, so retention deleting the file underneath does not disturb it.

pub(crate) mod format;
pub(crate) mod index;

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use parking_lot::RwLock;

use self::format::{FrameHeader, HEADER_LEN, V1_HEADER_LEN, decode_body};
use self::index::IndexEntry;
use crate::error::{Error, Result};
use crate::log::SegmentInfo;

/// File name of the segment (`ext` = "log" or "index") starting at `base_offset`.
pub(crate) fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses a segment file name back into its base offset.
pub(crate) fn parse_file_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What is known about a segment's contents. Guarded by the segment's lock; the appender is
/// the only writer, and it updates the state only after the frame's bytes are written.
#[derive(Debug)]
pub(crate) struct SegState {
    /// One past the last offset written to this segment.
    pub next_offset: u64,
    /// Bytes of complete frames in the file.
    pub size: u64,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    /// The sparse index (see [`index`]).
    pub index: Vec<IndexEntry>,
    /// Raft indexes of the segment's first and last frames that belong to an entry.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// When this process first appended to the segment (or opened it, for a recovered
    /// non-empty active segment); drives `segment_ms`.
    pub first_append: Option<Instant>,
    /// No more appends go here.
    pub closed: bool,
}

impl SegState {
    pub fn empty(base_offset: u64) -> Self {
        SegState {
            next_offset: base_offset,
            size: 0,
            min_timestamp: None,
            max_timestamp: None,
            index: Vec::new(),
            first_index: None,
            last_index: None,
            first_append: None,
            closed: false,
        }
    }

    /// Accounts for the frame at `position` (which must start at `size`, or re-cover the
    /// batch of the last index entry when resuming from an index).
    pub fn record(
        &mut self,
        segment_base: u64,
        position: u64,
        header: &FrameHeader,
        index_interval_bytes: u64,
    ) {
        // A control frame (a Raft entry that is not data) has no event time: it moves
        // neither bound, and an index entry before any data says "no time yet" (min above max).
        let (min, max) = if header.control() {
            (self.min_timestamp, self.max_timestamp)
        } else {
            (
                Some(
                    self.min_timestamp
                        .map_or(header.min_timestamp, |m| m.min(header.min_timestamp)),
                ),
                Some(
                    self.max_timestamp
                        .map_or(header.max_timestamp, |m| m.max(header.max_timestamp)),
                ),
            )
        };
        let wants_entry = match self.index.last() {
            None => true,
            Some(last) => {
                let last = u64::from(last.position);
                position > last && position - last >= index_interval_bytes
            }
        };
        // The log rolls before either field could overflow (see `PartitionLog::append`);
        // a segment found on disk beyond that simply gets no further index entries.
        let fields = (
            u32::try_from(header.base_offset - segment_base),
            u32::try_from(position),
        );
        if let (true, (Ok(relative_offset), Ok(position))) = (wants_entry, fields) {
            self.index.push(IndexEntry {
                relative_offset,
                position,
                min_timestamp: min.unwrap_or(i64::MAX),
                max_timestamp: max.unwrap_or(i64::MIN),
                index: header.entry().then_some(header.index),
            });
        }
        if header.entry() {
            self.first_index.get_or_insert(header.index);
            self.last_index = Some(header.index);
        }
        self.min_timestamp = min;
        self.max_timestamp = max;
        self.next_offset = header.next_offset();
        self.size = position + header.frame_len();
    }

    /// Whether any batch in the segment can have a timestamp in `lo..=hi`.
    pub fn may_overlap(&self, (lo, hi): (i64, i64)) -> bool {
        match (self.min_timestamp, self.max_timestamp) {
            (Some(min), Some(max)) => max >= lo && min <= hi,
            _ => false,
        }
    }
}

/// Zero bytes written ahead of the active segment's end (see [`Segment::preallocate_after`]).
pub(crate) const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// A segment file and its state.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub file: Arc<File>,
    pub state: RwLock<SegState>,
    /// The file's length as this process left it. Past `state.size` an active segment holds
    /// zeros written ahead; a closed segment's file ends at `state.size`.
    allocated: AtomicU64,
}

impl Segment {
    /// Creates a new, empty segment file starting at `base_offset`. The caller fsyncs the
    /// directory.
    pub fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let index_path = dir.join(file_name(base_offset, "index"));
        match std::fs::remove_file(&index_path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", index_path.display()), e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("creating {}", log_path.display()), e))?;
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            file: Arc::new(file),
            state: RwLock::new(SegState::empty(base_offset)),
            allocated: AtomicU64::new(0),
        })
    }

    /// Opens an existing segment file with empty state (recovery fills it in).
    pub fn open(dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let index_path = dir.join(file_name(base_offset, "index"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            file: Arc::new(file),
            state: RwLock::new(SegState::empty(base_offset)),
            allocated: AtomicU64::new(0),
        })
    }

    /// After a write that ended at `end`: when it went past the zeros written ahead, writes
    /// `ahead` more zero bytes after it. The appends that follow then overwrite blocks the file
    /// already has, and their fdatasync flushes data only — an append that grows the file also
    /// has to flush its new size, which costs a quarter more per sync on this project's disk
    /// (PostgreSQL preallocates its WAL segments for the same reason). Recovery knows a tail
    /// of zeros for what it is. Best effort: if the zeros cannot be written (a full disk),
    /// appends grow the file as before.
    pub fn preallocate_after(&self, end: u64, ahead: u64) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        if end < self.allocated.load(Ordering::Relaxed) {
            return;
        }
        let stop = end + ahead;
        let mut at = end;
        while at < stop {
            let n = (stop - at).min(ZEROS.len() as u64) as usize;
            if let Err(error) = self.file.write_all_at(&ZEROS[..n], at) {
                tracing::debug!(segment = %self.log_path.display(), %error, "cannot preallocate");
                break;
            }
            at += n as u64;
        }
        self.allocated.store(at, Ordering::Relaxed);
    }

    /// Cuts the file to `len` bytes (zeros written ahead included).
    pub fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.allocated.store(len, Ordering::Relaxed);
        Ok(())
    }

    /// Notes the file's length as recovery left it.
    pub fn set_allocated(&self, len: u64) {
        self.allocated.store(len, Ordering::Relaxed);
    }

    pub fn corrupt(&self, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Reads exactly `buf.len()` bytes at `position`; running out of file is corruption,
    /// since callers only read frames they know to be complete.
    pub fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file.read_exact_at(buf, position).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                self.corrupt(position, "unexpected end of segment file")
            } else {
                Error::io(format!("reading {}", self.log_path.display()), e)
            }
        })
    }

    /// Reads and parses the frame header at `position` (64 bytes, or 56 for a version-1
    /// frame, which may end the file fewer than 64 bytes later).
    pub fn read_header(&self, position: u64) -> Result<(FrameHeader, [u8; HEADER_LEN])> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut n = 0;
        while n < HEADER_LEN {
            match self.file.read_at(&mut bytes[n..], position + n as u64) {
                Ok(0) => break,
                Ok(read) => n += read,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("reading {}", self.log_path.display()), e)),
            }
        }
        if n < V1_HEADER_LEN {
            return Err(self.corrupt(position, "unexpected end of segment file"));
        }
        let header =
            FrameHeader::parse(&bytes[..n]).map_err(|reason| self.corrupt(position, reason))?;
        Ok((header, bytes))
    }

    /// Reads the header at `position` and checks it holds the batch starting at `expected_base`.
    pub fn read_header_expecting(
        &self,
        position: u64,
        expected_base: u64,
    ) -> Result<(FrameHeader, [u8; HEADER_LEN])> {
        let (header, bytes) = self.read_header(position)?;
        if header.base_offset != expected_base {
            return Err(self.corrupt(
                position,
                format!(
                    "frame has base offset {}, expected {expected_base}",
                    header.base_offset
                ),
            ));
        }
        Ok((header, bytes))
    }

    /// Reads the body of the frame whose header was read at `position` and checks its CRC.
    pub fn read_body(
        &self,
        position: u64,
        header: &FrameHeader,
        header_bytes: &[u8; HEADER_LEN],
    ) -> Result<Vec<u8>> {
        let mut body = vec![0u8; header.body_len as usize];
        self.read_at(&mut body, position + header.header_len() as u64)?;
        if !header.crc_matches(header_bytes, &body) {
            return Err(self.corrupt(position, "CRC mismatch"));
        }
        Ok(body)
    }

    /// Reads, verifies and decodes the batch of the frame at `position`.
    pub fn read_batch(
        &self,
        position: u64,
        header: &FrameHeader,
        header_bytes: &[u8; HEADER_LEN],
    ) -> Result<RecordBatch> {
        let body = self.read_body(position, header, header_bytes)?;
        let batch = decode_body(body).map_err(|source| Error::Decode {
            path: self.log_path.clone(),
            position,
            source,
        })?;
        if batch.num_rows() != header.record_count as usize {
            return Err(self.corrupt(
                position,
                format!(
                    "frame header says {} rows, body holds {}",
                    header.record_count,
                    batch.num_rows()
                ),
            ));
        }
        Ok(batch)
    }

    /// Writes the index file from the in-memory entries and syncs it.
    pub fn write_index(&self) -> Result<()> {
        let bytes = index::encode(&self.state.read().index);
        let context = || format!("writing {}", self.index_path.display());
        let file = File::create(&self.index_path).map_err(|e| Error::io(context(), e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| Error::io(context(), e))?;
        file.sync_data().map_err(|e| Error::io(context(), e))
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.log_path.display()), e))
    }

    pub fn info(&self, active: bool) -> SegmentInfo {
        let state = self.state.read();
        SegmentInfo {
            base_offset: self.base_offset,
            next_offset: state.next_offset,
            bytes: state.size,
            min_timestamp: state.min_timestamp,
            max_timestamp: state.max_timestamp,
            path: self.log_path.clone(),
            active,
        }
    }
}

/// Replaces `dir/name` with `bytes` atomically and durably: a temporary file written and
/// synced, renamed over the old one, the directory synced.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    sync_dir(dir)
}

/// Replaces `dir/name` (see [`replace_file`]) with a small checked file: `magic`, `payload`,
/// the payload's CRC32C. [`read_checked_file`] reads it back.
pub(crate) fn replace_checked_file(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    payload: &[u8],
) -> Result<()> {
    let mut bytes = Vec::with_capacity(magic.len() + payload.len() + 4);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    replace_file(dir, name, &bytes)
}

/// The payload of a file [`replace_checked_file`] wrote (`None`: no such file); a wrong magic
/// or CRC is [`Error::Corrupt`], naming the file as `what`.
pub(crate) fn read_checked_file(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    what: &str,
) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let damaged = |why: &str| Error::Corrupt {
        path: path.clone(),
        position: 0,
        reason: format!("{what}: {why}"),
    };
    let body = bytes
        .strip_prefix(magic)
        .ok_or_else(|| damaged("bad magic"))?;
    let (payload, crc) = body
        .split_last_chunk::<4>()
        .ok_or_else(|| damaged("too short"))?;
    if crc32c::crc32c(payload) != u32::from_le_bytes(*crc) {
        return Err(damaged("CRC mismatch"));
    }
    Ok(Some(payload.to_vec()))
}

/// Fsyncs a directory so that file creations and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_zero_padded_and_parse_back() {
        assert_eq!(file_name(1234, "log"), "00000000000000001234.log");
        assert_eq!(
            parse_file_name("00000000000000001234.log", "log"),
            Some(1234)
        );
        assert_eq!(parse_file_name("00000000000000001234.index", "log"), None);
        assert_eq!(parse_file_name("1234.log", "log"), None);
        assert_eq!(parse_file_name("0000000000000000123x.log", "log"), None);
    }
}
