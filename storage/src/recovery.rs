//! Opening a partition directory: finding segments, loading or rebuilding their indexes, and
//! verifying the active segment's tail.
//!
//! - **Closed segments** (all but the last) were synced before the log rolled past them, so
//!   they are trusted: their index is loaded and checked, then completed by reading the frame
//!   headers after its last entry (no bodies, no CRC). A missing or inconsistent index is
//!   rebuilt from the headers and rewritten.
//! - **The active segment** (the last) is read frame by frame with CRC checks. A bad frame
//!   with no valid frame after it is a torn tail from a crash: bytes that were never
//!   acknowledged (an append returns only after fdatasync). It is truncated, synced and
//!   logged. A bad frame followed by a valid one is corruption in the middle of acknowledged
//!   data, and opening fails with [`Error::Corrupt`] rather than silently dropping it.
//!   Frames are kept by statement group (`segment/format.rs`): a trailing group whose last
//!   frame is missing was never acknowledged either, and is truncated whole. A tail of
//!   zeros is the space appends wrote ahead (`Segment::preallocate_after`), not a torn write:
//!   it is cut without a warning, so that after open every file ends at the log's end.

use std::path::Path;
use std::sync::Arc;

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::segment::format::{FrameHeader, HEADER_LEN, MAGIC, V1_HEADER_LEN};
use crate::segment::index::{self, IndexEntry};
use crate::segment::{self, SegState, Segment, sync_dir};

/// What recovery found.
pub(crate) struct Recovered {
    /// In offset order; the last is the active one.
    pub segments: Vec<Arc<Segment>>,
    /// Offsets of the active segment's last group if a multi-partition append wrote it.
    pub last_txn_group: Option<(u64, u64)>,
}

/// Opens every segment in `dir` (creating segment 0 in an empty directory). A last group of a
/// multi-partition append is kept only if `committed(base, next)`.
pub(crate) fn recover(
    dir: &Path,
    index_interval_bytes: u64,
    committed: &dyn Fn(u64, u64) -> bool,
) -> Result<Recovered> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = segment::parse_file_name(name, "log") {
            bases.push(base);
        } else if let Some(base) = segment::parse_file_name(name, "index") {
            index_files.push(base);
        }
    }
    bases.sort_unstable();

    // An index whose segment is gone (a crash between the two deletions of retention).
    let mut removed_orphans = false;
    for base in index_files {
        if bases.binary_search(&base).is_err() {
            let path = dir.join(segment::file_name(base, "index"));
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            removed_orphans = true;
        }
    }

    let mut segments = Vec::with_capacity(bases.len().max(1));
    let last = bases.len().checked_sub(1);
    let mut last_txn_group = None;
    for (i, &base) in bases.iter().enumerate() {
        let segment = Segment::open(dir, base)?;
        if Some(i) == last {
            last_txn_group = recover_active(&segment, index_interval_bytes, committed)?;
        } else {
            load_closed(&segment, index_interval_bytes)?;
        }
        segments.push(Arc::new(segment));
    }
    for pair in segments.windows(2) {
        let next = pair[0].state.read().next_offset;
        if next != pair[1].base_offset {
            return Err(pair[1].corrupt(
                0,
                format!(
                    "segment starts at offset {} but the previous one ends at {next}",
                    pair[1].base_offset
                ),
            ));
        }
    }
    if segments.is_empty() {
        segments.push(Arc::new(Segment::create(dir, 0)?));
        sync_dir(dir)?;
    } else if removed_orphans {
        sync_dir(dir)?;
    }
    Ok(Recovered {
        segments,
        last_txn_group,
    })
}

/// Loads a closed segment's state from its index plus a header scan of the rest.
fn load_closed(segment: &Segment, index_interval_bytes: u64) -> Result<()> {
    let len = file_len(segment)?;
    let resumed = match std::fs::read(&segment.index_path) {
        Ok(bytes) => index::decode(&bytes, len)
            .map_err(str::to_string)
            .and_then(|entries| resume_from_index(segment, entries)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("index is missing".to_string()),
        Err(e) => Err(format!("index is unreadable: {e}")),
    };
    let (mut state, rebuilt) = match resumed {
        Ok(state) => (state, false),
        Err(reason) => {
            warn!(segment = %segment.log_path.display(), %reason, "rebuilding segment index");
            (SegState::empty(segment.base_offset), true)
        }
    };
    let entries_before = state.index.len();
    let mut position = state.size;
    while position < len {
        if zeros_to_end(segment, position, len)? {
            // Zeros written ahead that a roll did not get to cut (it cuts them before it
            // creates the next segment, so only a file put together otherwise has them).
            debug!(segment = %segment.log_path.display(), position, "cutting the zeros written ahead");
            segment
                .truncate(position)
                .and_then(|()| segment.file.sync_all())
                .map_err(|e| Error::io(format!("truncating {}", segment.log_path.display()), e))?;
            break;
        }
        if len - position < V1_HEADER_LEN as u64 {
            return Err(segment.corrupt(position, "incomplete frame header in a closed segment"));
        }
        let (header, _) = segment.read_header_expecting(position, state.next_offset)?;
        if position + header.frame_len() > len {
            return Err(segment.corrupt(position, "incomplete frame in a closed segment"));
        }
        state.record(segment.base_offset, position, &header, index_interval_bytes);
        position += header.frame_len();
    }
    state.closed = true;
    let stale = rebuilt || state.index.len() != entries_before;
    *segment.state.write() = state;
    // The index is a cache: the segment is usable without a file for it.
    if stale && let Err(error) = segment.write_index() {
        warn!(segment = %segment.log_path.display(), %error, "cannot write segment index");
    }
    Ok(())
}

/// State as of the frame the last index entry points at, checked against that frame's header.
/// The caller re-reads that frame and everything after it.
fn resume_from_index(segment: &Segment, entries: Vec<IndexEntry>) -> Result<SegState, String> {
    let Some(last) = entries.last().copied() else {
        return Err("index is empty".to_string());
    };
    if entries[0].index.is_none() && last.index.is_some() {
        // Frames without a Raft index before frames with one (the segment a version-2
        // writer continued): the index does not say where the Raft log starts.
        return Err("the index does not say where the segment's Raft entries start".to_string());
    }
    let expected = segment.base_offset + u64::from(last.relative_offset);
    let position = u64::from(last.position);
    let header = match segment.read_header(position) {
        Ok((header, _)) => header,
        Err(e) => return Err(format!("last index entry is stale: {e}")),
    };
    if header.base_offset != expected {
        return Err(format!(
            "last index entry is stale: frame at byte {position} starts at offset {}, not {expected}",
            header.base_offset
        ));
    }
    let mut state = SegState::empty(segment.base_offset);
    state.next_offset = expected;
    state.size = position;
    // An entry before any data holds "no time yet" (min above max: see `SegState::record`).
    if last.min_timestamp <= last.max_timestamp {
        state.min_timestamp = Some(last.min_timestamp);
        state.max_timestamp = Some(last.max_timestamp);
    }
    state.first_index = entries[0].index;
    state.last_index = last.index;
    state.index = entries;
    Ok(state)
}

/// Scans the active segment with CRC checks, truncating a torn tail, an incomplete last
/// statement group, and a last group of a multi-partition append that was never committed.
/// Returns the offsets of the last group if a committed multi-partition append wrote it.
fn recover_active(
    segment: &Segment,
    index_interval_bytes: u64,
    committed: &dyn Fn(u64, u64) -> bool,
) -> Result<Option<(u64, u64)>> {
    let len = file_len(segment)?;
    let mut position = 0;
    // Complete groups in file order, and the frames of a group not completed yet.
    let mut groups: Vec<Vec<(u64, FrameHeader)>> = Vec::new();
    let mut open_group: Vec<(u64, FrameHeader)> = Vec::new();
    let mut next_offset = segment.base_offset;
    let mut cut = None;
    let mut zeros_from = None;
    while position < len {
        match check_frame(segment, position, len, next_offset)? {
            Ok(header) => {
                open_group.push((position, header));
                if !header.continues() {
                    groups.push(std::mem::take(&mut open_group));
                }
                next_offset = header.next_offset();
                position += header.frame_len();
            }
            Err(_) if zeros_to_end(segment, position, len)? => {
                // Zeros written ahead of the end (`Segment::preallocate_after`).
                zeros_from = Some(position);
                break;
            }
            Err(reason) => {
                if let Some(valid) = find_valid_frame(segment, position + 1, len)? {
                    return Err(segment.corrupt(
                        position,
                        format!("{reason}, but a valid frame follows at byte {valid}"),
                    ));
                }
                cut = Some((position, reason));
                break;
            }
        }
    }
    if let Some(&(group_start, _)) = open_group.first() {
        cut = Some((
            group_start,
            format!(
                "statement group of {} frame(s) has no last frame",
                open_group.len()
            ),
        ));
    }
    let mut last_txn_group = None;
    // A Raft entry's `TXN` group is kept whatever `committed` says: its fate is the
    // decisions in the log (`entries.rs`). Only a one-node group is settled here.
    if let Some(last) = groups.last()
        && last[0].1.txn()
        && !last[0].1.entry()
    {
        let (base, next) = (last[0].1.base_offset, last[last.len() - 1].1.next_offset());
        if committed(base, next) {
            last_txn_group = Some((base, next));
        } else {
            cut = Some((
                last[0].0,
                format!("offsets {base}..{next} of a multi-partition append were never committed"),
            ));
            groups.pop();
        }
    }
    if let Some((at, reason)) = cut {
        warn!(
            segment = %segment.log_path.display(),
            position = at,
            dropped_bytes = len - at,
            %reason,
            "truncating torn tail of the active segment (never acknowledged)"
        );
        let context = || format!("truncating {}", segment.log_path.display());
        segment.truncate(at).map_err(|e| Error::io(context(), e))?;
        segment
            .file
            .sync_all()
            .map_err(|e| Error::io(context(), e))?;
    } else if let Some(at) = zeros_from {
        // Not a torn write: cut quietly, so that the file ends at the log's end after every
        // open; the next append writes ahead again.
        debug!(segment = %segment.log_path.display(), position = at, "cutting the zeros written ahead");
        let context = || format!("truncating {}", segment.log_path.display());
        segment.truncate(at).map_err(|e| Error::io(context(), e))?;
        segment
            .file
            .sync_all()
            .map_err(|e| Error::io(context(), e))?;
    } else {
        segment.set_allocated(len);
    }
    let mut state = SegState::empty(segment.base_offset);
    for (at, header) in groups.iter().flatten() {
        state.record(segment.base_offset, *at, header, index_interval_bytes);
    }
    if state.size > 0 {
        state.first_append = Some(std::time::Instant::now());
    }
    *segment.state.write() = state;
    Ok(last_txn_group)
}

/// Checks the whole frame at `position`. The outer error is I/O; the inner one says why the
/// bytes there are not a valid frame.
fn check_frame(
    segment: &Segment,
    position: u64,
    len: u64,
    expected_base: u64,
) -> Result<Result<FrameHeader, String>> {
    if len - position < V1_HEADER_LEN as u64 {
        return Ok(Err("incomplete frame header".to_string()));
    }
    let (header, header_bytes) = match segment.read_header(position) {
        Ok(read) => read,
        Err(Error::Corrupt { reason, .. }) => return Ok(Err(reason)),
        Err(e) => return Err(e),
    };
    if header.base_offset != expected_base {
        return Ok(Err(format!(
            "frame has base offset {}, expected {expected_base}",
            header.base_offset
        )));
    }
    if position + header.frame_len() > len {
        return Ok(Err("incomplete frame body".to_string()));
    }
    match segment.read_body(position, &header, &header_bytes) {
        Ok(_) => Ok(Ok(header)),
        Err(Error::Corrupt { reason, .. }) => Ok(Err(reason)),
        Err(e) => Err(e),
    }
}

/// The position of the first complete frame with a valid CRC at or after `from`, if any.
/// Only runs when recovery has already found a bad frame, so reading the rest of the file
/// into memory is acceptable.
fn find_valid_frame(segment: &Segment, from: u64, len: u64) -> Result<Option<u64>> {
    if from >= len {
        return Ok(None);
    }
    let mut rest = vec![0u8; (len - from) as usize];
    segment.read_at(&mut rest, from)?;
    let mut at = 0;
    while let Some(found) = rest[at..].windows(MAGIC.len()).position(|w| w == MAGIC) {
        let start = at + found;
        let header_bytes = &rest[start..(start + HEADER_LEN).min(rest.len())];
        if let Ok(header) = FrameHeader::parse(header_bytes) {
            let body_start = start + header.header_len();
            let body_end = body_start.saturating_add(header.body_len as usize);
            if let Some(body) = rest.get(body_start..body_end)
                && header.crc_matches(header_bytes, body)
            {
                return Ok(Some(from + start as u64));
            }
        }
        at = start + 1;
    }
    Ok(None)
}

/// Whether every byte of the segment from `from` to `len` is zero.
fn zeros_to_end(segment: &Segment, from: u64, len: u64) -> Result<bool> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = from;
    // A frame starts with its magic: the first bytes decide at once where one is.
    let mut step = HEADER_LEN;
    while at < len {
        let n = (len - at).min(step as u64) as usize;
        step = chunk.len();
        segment.read_at(&mut chunk[..n], at)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn file_len(segment: &Segment) -> Result<u64> {
    segment.file.metadata().map(|m| m.len()).map_err(|e| {
        Error::io(
            format!("reading metadata of {}", segment.log_path.display()),
            e,
        )
    })
}
