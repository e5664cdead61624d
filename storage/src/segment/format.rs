//! The segment file format.
//!
//! A partition directory holds segments named, as in Kafka, by their zero-padded base offset:
//!
//! ```text
//! 00000000000000000000.log     frames, appended
//! 00000000000000000000.index   sparse offset + time index (a cache; see `index.rs`)
//! 00000000000000001234.log     the next segment starts at offset 1234
//! 00000000000000001234.index
//! LOCK                         held (flock) by the open PartitionLog
//! ```
//!
//! A `.log` file is a sequence of frames with nothing between them. One frame holds one
//! appended batch. All integers are little endian; the header is 64 bytes (version 2; 56 in
//! version 1, which has no Raft index) so the body starts 8-byte aligned:
//!
//! ```text
//! byte  size  field
//!    0     4  magic "EDDY"
//!    4     1  format version (2; version 1 is still read)
//!    5     3  reserved, zero
//!    8     4  body length in bytes (u32)
//!   12     4  CRC32C of bytes 16 .. end of body (everything after this field)
//!   16     8  base offset (u64): offset of the batch's first row
//!   24     4  record count (u32, > 0; 0 only with `CONTROL`): rows in the batch, offsets
//!             base .. base + count
//!   28     4  attributes (u32): bit 0 `CONTINUES`, bit 1 `TXN`, bit 2 `CONTROL`, bit 3
//!             `ENTRY` (see below); others zero
//!   32     8  min timestamp (i64, ms)
//!   40     8  max timestamp (i64, ms)
//!   48     8  Raft term (u64) when `ENTRY` is set, else 0
//!   56     8  Raft index (u64; version 2 only) when `ENTRY` is set, else 0
//!   64     …  body: the batch as an Arrow IPC *stream* (schema message, record batch
//!             message, end-of-stream marker), so every frame decodes on its own
//! ```
//!
//! **Raft entries.** A replicated partition's log is its Raft log (see
//! docs/design/2026-12-02-replication.md): one entry is one statement group, every frame of
//! it has `ENTRY` set and carries the entry's term and index (openraft's log id; the first
//! entry, the initial membership, is index 0), and indexes grow by one from entry to entry. A
//! `CONTROL` frame is an entry that is not data (openraft's blank and membership entries): it
//! holds no rows and takes no offset (its base offset is the next one, its count 0, its
//! timestamps 0), and its body is opaque bytes for the replication layer. Readers of rows skip
//! it. Frames without `ENTRY` (all of version 1, and a log of one node's) precede a
//! partition's Raft log.
//!
//! **Statement groups.** The frames one append writes (a statement's share of one partition,
//! e.g. a COPY's blocks) are a group: every frame but the last has `CONTINUES` set, and the
//! group is written under one lock, contiguously, never across a segment roll. Readers only
//! ever see whole groups (the high watermark moves past a group at once), and recovery drops
//! a trailing group whose last frame is missing, so a statement's rows in a partition survive
//! a crash together or not at all. Frames written before groups existed have no bit set: each
//! is a group of its own.
//!
//! **Multi-partition appends.** A statement that writes several partitions of a topic sets
//! `TXN` on every frame of its group in each partition, and commits with one record in the
//! topic's `txn.log` (see `topics.rs`) naming each group's offsets. Until that record is
//! durable no reader sees any of the groups, and no other group follows them in their
//! partitions, so recovery keeps a last `TXN` group only if the record names it.
//!
//! **Transactions in a Raft log.** There the rows of a multi-partition append are a `TXN`
//! entry in each partition, committed by Raft like any other but held back from readers until
//! a **decision** names it: a `CONTROL` frame with `TXN` set, whose body (below) names the
//! `TXN` entries' offset ranges and says commit or abort. The high watermark readers see (the
//! *stable* end, Kafka's last stable offset) stops at the first undecided `TXN` entry; an
//! aborted entry's rows keep their offsets and are skipped by every reader (see
//! `decisions.rs`). A decision's body:
//!
//! ```text
//!   u8 version (1) · u8 outcome (1 commit, 0 abort) · u32 LE count ·
//!   count × (u64 LE base offset, u64 LE next offset)
//! ```
//!
//! Offsets are contiguous: a frame's base offset is the previous frame's base + count, and a
//! segment's first frame starts at the base offset in its file name. The magic, version and
//! length are not under the CRC (as in Kafka), but a damaged length makes the CRC cover the
//! wrong bytes and so fails it.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};

/// The frame magic, "EDDY".
pub(crate) const MAGIC: [u8; 4] = *b"EDDY";
/// The format version written; version 1 (no Raft index) is still read.
pub(crate) const VERSION: u8 = 2;
/// Attribute bit: more frames of the same group follow this one.
pub(crate) const ATTR_CONTINUES: u32 = 1;
/// Attribute bit: the group is part of a multi-partition append.
pub(crate) const ATTR_TXN: u32 = 2;
/// Attribute bit: the frame is a control entry of the Raft log, not rows.
pub(crate) const ATTR_CONTROL: u32 = 4;
/// Attribute bit: the frame belongs to a Raft entry (its term and index are the entry's).
pub(crate) const ATTR_ENTRY: u32 = 8;
/// Size of the frame header written (version 2); the largest a reader reads.
pub(crate) const HEADER_LEN: usize = 64;
/// Size of a version-1 frame header, the smallest a reader accepts.
pub(crate) const V1_HEADER_LEN: usize = 56;

/// Bodies up to this size are checksummed again when their frame is sealed (at ~10 GB/s, a
/// few microseconds at most); larger ones have their CRC, computed when they were encoded
/// outside the append lock, combined with the header's.
const COMBINE_ABOVE_BYTES: usize = 64 * 1024;
/// First byte covered by the CRC.
const CRC_START: usize = 16;

/// A parsed frame header. Parsing checks the fields that need no body; the CRC is checked
/// with [`FrameHeader::crc_matches`] once the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub body_len: u32,
    pub crc: u32,
    pub base_offset: u64,
    pub record_count: u32,
    pub attributes: u32,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub term: u64,
    /// The Raft index (0 in a version-1 frame and in a log that is not a Raft log).
    pub index: u64,
    /// The format version: 1 or 2.
    pub version: u8,
}

impl FrameHeader {
    /// Whether more frames of this frame's group follow.
    pub fn continues(&self) -> bool {
        self.attributes & ATTR_CONTINUES != 0
    }

    /// Whether the frame's group is part of a multi-partition append.
    pub fn txn(&self) -> bool {
        self.attributes & ATTR_TXN != 0
    }

    /// Whether the frame is a control entry (no rows, no offset).
    pub fn control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the frame belongs to a Raft entry (its term and index are the entry's).
    pub fn entry(&self) -> bool {
        self.attributes & ATTR_ENTRY != 0
    }

    /// Bytes of the header (64, or 56 in version 1).
    pub fn header_len(&self) -> usize {
        if self.version == 1 {
            V1_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Parses and sanity-checks the header at the start of `bytes` (which hold at least its
    /// version's length); the error says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, &'static str> {
        Self::parse_as(bytes, true)
    }

    /// [`FrameHeader::parse`]; `sealed: false` also takes a control frame not yet sealed
    /// into an entry (one travelling to the leader that will write it).
    fn parse_as(bytes: &[u8], sealed: bool) -> Result<FrameHeader, &'static str> {
        if bytes.len() < V1_HEADER_LEN {
            return Err("incomplete frame header");
        }
        if bytes[0..4] != MAGIC {
            return Err("bad magic");
        }
        let version = bytes[4];
        if version != 1 && version != VERSION {
            return Err("unknown format version");
        }
        if version == VERSION && bytes.len() < HEADER_LEN {
            return Err("incomplete frame header");
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err("reserved bytes are not zero");
        }
        let attributes = u32::from_le_bytes(array(bytes, 28));
        let known = if version == 1 {
            ATTR_CONTINUES | ATTR_TXN
        } else {
            ATTR_CONTINUES | ATTR_TXN | ATTR_CONTROL | ATTR_ENTRY
        };
        if attributes & !known != 0 {
            return Err("unknown attribute bits");
        }
        let header = FrameHeader {
            body_len: u32::from_le_bytes(array(bytes, 8)),
            crc: u32::from_le_bytes(array(bytes, 12)),
            base_offset: u64::from_le_bytes(array(bytes, 16)),
            record_count: u32::from_le_bytes(array(bytes, 24)),
            attributes,
            min_timestamp: i64::from_le_bytes(array(bytes, 32)),
            max_timestamp: i64::from_le_bytes(array(bytes, 40)),
            term: u64::from_le_bytes(array(bytes, 48)),
            index: if version == 1 {
                0
            } else {
                u64::from_le_bytes(array(bytes, 56))
            },
            version,
        };
        if !header.entry() && (header.term != 0 || header.index != 0) {
            return Err("a frame outside a Raft entry has a term or index");
        }
        if header.control() {
            if !header.entry() && sealed {
                return Err("a control frame outside a Raft entry");
            }
            if header.record_count != 0 {
                return Err("a control frame holds rows");
            }
            if header.continues() {
                return Err("a control frame is part of a statement group");
            }
        } else if header.record_count == 0 {
            return Err("record count is zero");
        }
        if header.min_timestamp > header.max_timestamp {
            return Err("min timestamp is greater than max timestamp");
        }
        Ok(header)
    }

    /// Bytes the whole frame occupies in the file.
    pub fn frame_len(&self) -> u64 {
        self.header_len() as u64 + u64::from(self.body_len)
    }

    /// One past the last offset of the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Whether the stored CRC matches the header bytes it covers (the first
    /// [`FrameHeader::header_len`] of `header`) and the body.
    pub fn crc_matches(&self, header: &[u8], body: &[u8]) -> bool {
        let Some(covered) = header.get(CRC_START..self.header_len()) else {
            return false;
        };
        crc32c::crc32c_append(crc32c::crc32c(covered), body) == self.crc
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Where a sealed frame goes: its offset, its place in a statement group, and the Raft entry
/// it belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seal {
    pub base_offset: u64,
    /// More frames of the same group follow.
    pub continues: bool,
    /// The group is part of a multi-partition append.
    pub txn: bool,
    /// The Raft entry's (term, index), in a Raft log.
    pub entry: Option<(u64, u64)>,
}

/// A batch encoded as a frame whose base offset is not yet known: the IPC body is written
/// (and its CRC computed) outside the append lock, e.g. by a bulk load while it still decodes
/// its input; [`EncodedFrame::seal`] fills in the header under the lock. Before it is sealed
/// its header already holds what the batch alone decides (length, rows, timestamps, whether
/// it is a control frame), so its bytes can travel to a replica, which seals them again at
/// the same place ([`EncodedFrame::from_bytes`]).
#[derive(Debug)]
pub struct EncodedFrame {
    /// Header space followed by the body.
    bytes: Vec<u8>,
    body_crc: u32,
    pub(crate) record_count: u32,
    pub(crate) min_timestamp: i64,
    pub(crate) max_timestamp: i64,
    control: bool,
    /// Set before sealing: the frame belongs to a multi-partition append (a data frame) or is
    /// a transaction decision (a control frame). Travels in the unsealed header.
    txn: bool,
}

impl EncodedFrame {
    /// Encodes a batch (1 to `u32::MAX` rows) whose timestamps span `min..=max`.
    pub fn encode(batch: &RecordBatch, min_timestamp: i64, max_timestamp: i64) -> Result<Self> {
        let record_count = u32::try_from(batch.num_rows())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a batch must hold 1 to {} rows, not {}",
                    u32::MAX,
                    batch.num_rows()
                ))
            })?;
        if min_timestamp > max_timestamp {
            return Err(Error::InvalidArgument(format!(
                "min timestamp {min_timestamp} is greater than max timestamp {max_timestamp}"
            )));
        }
        // Sized up front: growing a multi-megabyte buffer copies it several times.
        let body: usize = batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum();
        let mut bytes = Vec::with_capacity(HEADER_LEN + body + 4096);
        bytes.resize(HEADER_LEN, 0);
        let encode = |bytes: &mut Vec<u8>| -> Result<(), ArrowError> {
            let mut writer = StreamWriter::try_new(bytes, &batch.schema())?;
            writer.write(batch)?;
            writer.finish()
        };
        encode(&mut bytes).map_err(|source| Error::Encode { source })?;
        Self::finish(bytes, record_count, min_timestamp, max_timestamp, false)
    }

    /// A control frame (see the module docs) holding `payload`.
    pub fn control(payload: &[u8]) -> Result<Self> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.resize(HEADER_LEN, 0);
        bytes.extend_from_slice(payload);
        Self::finish(bytes, 0, 0, 0, true)
    }

    /// Marks the frame as part of a multi-partition append (`TXN`), before it is sealed: in a
    /// Raft log its entry is then held back from readers until a decision names it.
    pub fn mark_txn(&mut self) {
        self.txn = true;
        let attributes = u32::from_le_bytes(array(&self.bytes, 28)) | ATTR_TXN;
        self.bytes[28..32].copy_from_slice(&attributes.to_le_bytes());
    }

    /// Whether the frame is marked `TXN` (a transaction's rows, or a decision).
    pub fn is_txn(&self) -> bool {
        self.txn
    }

    /// Checks the body's size, computes its CRC and writes the header fields the batch alone
    /// decides.
    fn finish(
        mut bytes: Vec<u8>,
        record_count: u32,
        min_timestamp: i64,
        max_timestamp: i64,
        control: bool,
    ) -> Result<Self> {
        let body = &bytes[HEADER_LEN..];
        let Ok(body_len) = u32::try_from(body.len()) else {
            return Err(Error::InvalidArgument(format!(
                "encoded batch is {} bytes; a frame holds at most 4 GiB",
                body.len()
            )));
        };
        let body_crc = crc32c::crc32c(body);
        let h = &mut bytes[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[8..12].copy_from_slice(&body_len.to_le_bytes());
        h[24..28].copy_from_slice(&record_count.to_le_bytes());
        let attributes = if control { ATTR_CONTROL } else { 0 };
        h[28..32].copy_from_slice(&attributes.to_le_bytes());
        h[32..40].copy_from_slice(&min_timestamp.to_le_bytes());
        h[40..48].copy_from_slice(&max_timestamp.to_le_bytes());
        Ok(EncodedFrame {
            bytes,
            body_crc,
            record_count,
            min_timestamp,
            max_timestamp,
            control,
            txn: false,
        })
    }

    /// A frame from its bytes as [`EncodedFrame::bytes`] gave them on another node (sealed or
    /// not): the header is checked, the body's CRC computed again, and the frame is sealed
    /// anew where it is appended. Refuses bytes that are not one whole version-2 frame.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let header = FrameHeader::parse_as(&bytes, false)
            .map_err(|why| Error::InvalidArgument(format!("not a frame: {why}")))?;
        if header.version != VERSION {
            return Err(Error::InvalidArgument(
                "a replicated frame must be of format version 2".into(),
            ));
        }
        if header.frame_len() != bytes.len() as u64 {
            return Err(Error::InvalidArgument(format!(
                "frame of {} bytes says it holds {}",
                bytes.len(),
                header.frame_len()
            )));
        }
        let mut frame = Self::finish(
            bytes,
            header.record_count,
            header.min_timestamp,
            header.max_timestamp,
            header.control(),
        )?;
        if header.txn() {
            frame.mark_txn();
        }
        Ok(frame)
    }

    /// Encodes batches, each with its min and max timestamp, into frames in the same order.
    /// Encoding (IPC bytes and the body's CRC) needs no lock, so many batches (a bulk load, a
    /// large `INSERT ... SELECT`) are split into runs of at least two, one per core the
    /// machine offers ([`std::thread::available_parallelism`]), encoded on scoped threads.
    pub fn encode_all(batches: &[(RecordBatch, i64, i64)]) -> Result<Vec<EncodedFrame>> {
        let encode = |run: &[(RecordBatch, i64, i64)]| -> Result<Vec<EncodedFrame>> {
            run.iter()
                .map(|(batch, lo, hi)| EncodedFrame::encode(batch, *lo, *hi))
                .collect()
        };
        // Asked once: the standard library reads the cgroup files on every call, which cost a
        // single-row INSERT more than its frame's encoding (a sixth of its CPU, `perf`).
        static CORES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        });
        let threads = if batches.len() < 4 {
            1
        } else {
            (*CORES).min(batches.len() / 2)
        };
        if threads == 1 {
            return encode(batches);
        }
        let run = batches.len().div_ceil(threads);
        let mut runs = batches.chunks(run);
        let first = runs.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let others: Vec<_> = runs.map(|r| scope.spawn(move || encode(r))).collect();
            let mut frames = encode(first)?;
            for other in others {
                let more = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                frames.extend(more?);
            }
            Ok(frames)
        })
    }

    /// Number of rows.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Total frame size in bytes.
    #[allow(clippy::len_without_is_empty)] // a frame always has its header
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Cuts whole frames laid one after the other (a replicated entry's bytes) apart, each
    /// as [`EncodedFrame::from_bytes`] takes it.
    pub fn split(bytes: &[u8]) -> Result<Vec<EncodedFrame>> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = FrameHeader::parse_as(&bytes[at..], false).map_err(|why| {
                Error::InvalidArgument(format!("not a frame at byte {at}: {why}"))
            })?;
            let end = usize::try_from(header.frame_len())
                .ok()
                .and_then(|len| at.checked_add(len))
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("the frame at byte {at} is cut short"))
                })?;
            frames.push(EncodedFrame::from_bytes(bytes[at..end].to_vec())?);
            at = end;
        }
        Ok(frames)
    }

    /// Whether this is a control frame.
    pub fn is_control(&self) -> bool {
        self.control
    }

    /// Writes the header's place fields (see [`Seal`]) and its CRC; the frame is then
    /// [`EncodedFrame::bytes`].
    pub(crate) fn seal(&mut self, at: Seal) -> FrameHeader {
        let body_len = self.bytes.len() - HEADER_LEN;
        let (term, index) = at.entry.unwrap_or((0, 0));
        let entry = if at.entry.is_some() { ATTR_ENTRY } else { 0 };
        let txn = if at.txn || self.txn { ATTR_TXN } else { 0 };
        let attributes = entry
            | txn
            | if self.control {
                ATTR_CONTROL
            } else if at.continues {
                ATTR_CONTINUES
            } else {
                0
            };
        let mut header = FrameHeader {
            // `finish` checked that the body fits.
            body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
            crc: 0,
            base_offset: at.base_offset,
            record_count: self.record_count,
            attributes,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            term,
            index,
            version: VERSION,
        };
        let h = &mut self.bytes[..HEADER_LEN];
        h[16..24].copy_from_slice(&at.base_offset.to_le_bytes());
        h[28..32].copy_from_slice(&attributes.to_le_bytes());
        h[48..56].copy_from_slice(&term.to_le_bytes());
        h[56..64].copy_from_slice(&index.to_le_bytes());
        let header_crc = crc32c::crc32c(&self.bytes[CRC_START..HEADER_LEN]);
        // Combining CRCs costs a few dozen 32x32 GF(2) matrix squarings (microseconds, the
        // same for any length); a small body is cheaper to checksum again after the header.
        header.crc = if body_len <= COMBINE_ABOVE_BYTES {
            crc32c::crc32c_append(header_crc, &self.bytes[HEADER_LEN..])
        } else {
            crc32c::crc32c_combine(header_crc, self.body_crc, body_len)
        };
        self.bytes[12..16].copy_from_slice(&header.crc.to_le_bytes());
        header
    }

    /// Shorthand for a frame of a log that is not a Raft log.
    #[cfg(test)]
    pub(crate) fn seal_at(&mut self, base_offset: u64, continues: bool, txn: bool) -> FrameHeader {
        self.seal(Seal {
            base_offset,
            continues,
            txn,
            ..Seal::default()
        })
    }

    /// The frame's body (a control frame's payload).
    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The complete frame (its place fields meaningful after [`EncodedFrame::seal`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The frame's bytes, given up.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Decodes a frame body (one Arrow IPC stream holding exactly one batch). The body is
/// wrapped as an Arrow buffer without copying; aligned columns are used in place.
pub(crate) fn decode_body(body: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    let mut buffer = Buffer::from_vec(body);
    let mut decoder = StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(decoded) = decoder.decode(&mut buffer)?
            && batch.replace(decoded).is_some()
        {
            return Err(ArrowError::IpcError(
                "frame body holds more than one batch".to_string(),
            ));
        }
    }
    decoder.finish()?;
    batch.ok_or_else(|| ArrowError::IpcError("frame body holds no batch".to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(0..n);
        let names = StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("n{i}"))));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    fn split(bytes: &[u8]) -> ([u8; HEADER_LEN], Vec<u8>) {
        let mut header = [0; HEADER_LEN];
        header.copy_from_slice(&bytes[..HEADER_LEN]);
        (header, bytes[HEADER_LEN..].to_vec())
    }

    /// However many threads encode them, the frames come back in the batches' order, each
    /// the same bytes as encoding it alone.
    #[test]
    fn encode_all_keeps_order_across_threads() {
        for n in [0, 1, 3, 4, 9] {
            let batches: Vec<_> = (1..=n).map(|i| (batch(i), i, i * 10)).collect();
            let frames = EncodedFrame::encode_all(&batches).unwrap();
            assert_eq!(frames.len(), batches.len());
            for (frame, (b, lo, hi)) in frames.iter().zip(&batches) {
                let alone = EncodedFrame::encode(b, *lo, *hi).unwrap();
                assert_eq!(frame.record_count(), b.num_rows() as u32);
                assert_eq!((frame.min_timestamp, frame.max_timestamp), (*lo, *hi));
                assert_eq!(frame.bytes, alone.bytes);
            }
        }
    }

    #[test]
    fn sealed_frame_round_trips_header_and_body() {
        let original = batch(10);
        let mut frame = EncodedFrame::encode(&original, -5, 99).unwrap();
        let sealed = frame.seal_at(1234, false, false);
        let bytes = frame.bytes().to_vec();
        let (header_bytes, body) = split(&bytes);
        let header = FrameHeader::parse(&header_bytes).unwrap();
        assert_eq!(header, sealed);
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.record_count, 10);
        assert_eq!(header.next_offset(), 1244);
        assert_eq!((header.min_timestamp, header.max_timestamp), (-5, 99));
        assert_eq!(header.term, 0);
        assert_eq!(header.frame_len(), bytes.len() as u64);
        assert!(header.crc_matches(&header_bytes, &body));
        assert_eq!(decode_body(body).unwrap(), original);
    }

    #[test]
    fn small_and_large_bodies_are_sealed_with_the_same_crc() {
        // Below the threshold the body is checksummed again, above it CRCs are combined:
        // both must give the CRC of header and body read together.
        for rows in [1, 10, 20_000] {
            let mut frame = EncodedFrame::encode(&batch(rows), 0, 1).unwrap();
            let sealed = frame.seal_at(5, false, false);
            let bytes = frame.bytes().to_vec();
            let body_len = bytes.len() - HEADER_LEN;
            assert_eq!(
                rows == 20_000,
                body_len > COMBINE_ABOVE_BYTES,
                "{rows} rows"
            );
            let whole = crc32c::crc32c_append(
                crc32c::crc32c(&bytes[CRC_START..HEADER_LEN]),
                &bytes[HEADER_LEN..],
            );
            assert_eq!(sealed.crc, whole, "{rows} rows");
            let (header_bytes, body) = split(&bytes);
            assert!(sealed.crc_matches(&header_bytes, &body));
        }
    }

    #[test]
    fn any_flipped_bit_fails_parse_or_crc() {
        let mut frame = EncodedFrame::encode(&batch(3), 1, 2).unwrap();
        frame.seal_at(7, false, false);
        let bytes = frame.bytes().to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (header_bytes, body) = split(&damaged);
            let ok = match FrameHeader::parse(&header_bytes) {
                Err(_) => false,
                Ok(h) => {
                    h.frame_len() == damaged.len() as u64 && h.crc_matches(&header_bytes, &body)
                }
            };
            assert!(!ok, "flipping bit {bit} went unnoticed");
        }
    }

    /// A frame of a Raft entry carries its term and index under the CRC; control frames
    /// hold no rows; a term or index, or a control frame, outside an entry is refused.
    #[test]
    fn entry_and_control_frames_round_trip_and_bad_ones_are_refused() {
        let mut frame = EncodedFrame::encode(&batch(4), 3, 8).unwrap();
        let sealed = frame.seal(Seal {
            base_offset: 10,
            continues: true,
            txn: false,
            entry: Some((7, 42)),
        });
        let (header_bytes, body) = split(frame.bytes());
        let header = FrameHeader::parse(&header_bytes).unwrap();
        assert_eq!(header, sealed);
        assert!(header.entry() && header.continues() && !header.control());
        assert_eq!((header.term, header.index), (7, 42));
        assert!(header.crc_matches(&header_bytes, &body));

        let mut control = EncodedFrame::control(b"membership").unwrap();
        control.seal(Seal {
            base_offset: 14,
            continues: true,
            entry: Some((7, 43)),
            ..Seal::default()
        });
        let header = FrameHeader::parse(control.bytes()).unwrap();
        assert!(
            header.control() && !header.continues(),
            "a control frame ends its entry"
        );
        assert_eq!((header.record_count, header.next_offset()), (0, 14));
        assert_eq!(&control.bytes()[HEADER_LEN..], b"membership");
        let copy = EncodedFrame::from_bytes(control.bytes().to_vec()).unwrap();
        assert!(copy.is_control());

        let forged = |at: usize, value: u32| {
            let mut bytes = frame.bytes().to_vec();
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            FrameHeader::parse(&bytes)
        };
        assert!(forged(28, 0).is_err(), "term and index without ENTRY");
        assert!(forged(28, ATTR_CONTROL).is_err(), "control without ENTRY");
        assert!(
            forged(28, ATTR_CONTROL | ATTR_ENTRY).is_err(),
            "control with rows"
        );
        assert!(forged(28, 16 | ATTR_ENTRY).is_err(), "unknown bit");
    }

    #[test]
    fn empty_batches_and_inverted_timestamps_are_rejected() {
        assert!(matches!(
            EncodedFrame::encode(&batch(0), 0, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            EncodedFrame::encode(&batch(1), 2, 1),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn garbage_body_is_a_decode_error_not_a_panic() {
        assert!(decode_body(vec![1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        assert!(decode_body(Vec::new()).is_err());
    }
}
