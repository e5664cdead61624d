//! A partition's log as its own Raft log: the API the replication layer's log store calls.
//!
//! One Raft entry is one statement group of frames (or one `CONTROL` frame, for openraft's
//! blank and membership entries), each frame carrying the entry's term and index in its
//! header (`segment/format.rs`). Offsets stay a function of the log's prefix, so every replica
//! that holds the same entries holds the same rows at the same offsets, and a batch is written
//! once: the segment file *is* the Raft log (docs/design/2026-12-02-replication.md).
//!
//! What changes against a log of one node:
//!
//! - **Appends** are [`PartitionLog::write_entries`] (written, not synced) and
//!   [`PartitionLog::flush`] (one fdatasync shared by every caller waiting, as group commit);
//!   the committer's queue is not used — openraft already hands its storage everything queued
//!   in one call.
//! - **The high watermark** moves on [`PartitionLog::commit_entries`] (the state machine's
//!   apply), to the end of the last committed entry — durable on a majority, if not yet
//!   flushed here — never on a flush alone. Nothing uncommitted is ever readable.
//! - **Truncation** ([`PartitionLog::truncate_entries`]) cuts a divergent tail that was never
//!   committed; offsets past the cut are given again to the entries that replace it (they were
//!   never visible, so no reader saw them).
//!
//! This module never decides what is committed: it is told.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::log::PartitionLog;
use crate::segment::format::{EncodedFrame, FrameHeader};
use crate::segment::index::lookup_index;
use crate::segment::{Segment, sync_dir};

/// One entry to write: its term, its index, and its frames (a statement group, or one
/// control frame).
#[derive(Debug)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub frames: Vec<EncodedFrame>,
}

/// One entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub term: u64,
    pub index: u64,
    /// A control entry: `bytes` is its frame's body. Otherwise `bytes` are the entry's
    /// frames, whole and sealed, one after the other ([`EncodedFrame::split`] cuts them).
    pub control: bool,
    pub bytes: Vec<u8>,
}

/// An entry the log holds past the committed one.
#[derive(Clone, Copy, Debug)]
struct Pending {
    term: u64,
    index: u64,
    /// One past the entry's last offset.
    end: u64,
}

#[derive(Debug, Default)]
struct Entries {
    /// (term, index) of the last committed entry, if the log knows it.
    committed: Option<(u64, u64)>,
    /// Entries written after the committed one, in index order.
    pending: VecDeque<Pending>,
}

/// What a Raft log keeps beside the frames (shared with readers through the log's `Shared`).
#[derive(Debug, Default)]
pub(crate) struct RaftState {
    /// The end of the last committed entry: the high watermark never passes it.
    pub(crate) committed_end: AtomicU64,
    entries: Mutex<Entries>,
}

impl Entries {
    fn last(&self) -> Option<(u64, u64)> {
        self.pending
            .back()
            .map(|p| (p.term, p.index))
            .or(self.committed)
    }
}

/// Where a frame is: its segment, its position, its header.
struct Located {
    segment: Arc<Segment>,
    /// The segment's place in the log's list.
    at: usize,
    position: u64,
    header: FrameHeader,
}

impl PartitionLog {
    /// Opens the partition's Raft log in `dir` (see [`PartitionLog::open`] for recovery):
    /// every entry up to index `committed` is known committed (the state machine's last
    /// applied index, kept by the replication layer; `None`: none is), the entries after it
    /// wait for [`PartitionLog::commit_entries`]. Frames written before the log became a Raft
    /// log count as committed.
    pub fn open_replicated(
        dir: &Path,
        config: LogConfig,
        committed: Option<u64>,
    ) -> Result<PartitionLog> {
        let is_committed = |index: u64| committed.is_some_and(|c| index <= c);
        let log = Self::open_with(dir, config, &|_, _| false, Some(RaftState::default()))?;
        let shared = log.shared();
        let raft = log.raft()?;
        let written = shared.appender.lock().written;
        let mut entries = Entries::default();
        // The first offset of the first entry past `committed`.
        let mut pending_from = None;
        let mut current: Option<Pending> = None;
        // From the committed entry on: its term, then every later entry's end.
        for frame in log.frames_from(committed.unwrap_or(0))? {
            let (header, _) = frame?;
            match &mut current {
                Some(entry) if entry.index == header.index => entry.end = header.next_offset(),
                _ => {
                    if let Some(done) = current.take() {
                        entries.push(done, is_committed(done.index));
                    }
                    if !is_committed(header.index) && pending_from.is_none() {
                        pending_from = Some(header.base_offset);
                    }
                    current = Some(Pending {
                        term: header.term,
                        index: header.index,
                        end: header.next_offset(),
                    });
                }
            }
        }
        if let Some(done) = current {
            entries.push(done, is_committed(done.index));
        }
        let committed_end = pending_from.unwrap_or(written);
        raft.committed_end.store(committed_end, Ordering::Release);
        *raft.entries.lock() = entries;
        shared.publish_durable(0);
        Ok(log)
    }

    fn raft(&self) -> Result<&RaftState> {
        self.shared().raft.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the partition log is not a Raft log".to_string())
        })
    }

    /// (term, index) of the last entry written, if the log holds one.
    pub fn last_entry(&self) -> Result<Option<(u64, u64)>> {
        Ok(self.raft()?.entries.lock().last())
    }

    /// (term, index) of the last committed entry, if the log knows one.
    pub fn committed_entry(&self) -> Result<Option<(u64, u64)>> {
        Ok(self.raft()?.entries.lock().committed)
    }

    /// The index of the first entry still on disk (retention and the cold tier delete whole
    /// segments from the front), if any.
    pub fn first_entry_index(&self) -> Option<u64> {
        self.shared()
            .segments
            .read()
            .iter()
            .find_map(|s| s.state.read().first_index)
    }

    /// Writes `entries` (their indexes following the last entry's) at the end of the log, as
    /// one contiguous run; they are not durable until [`PartitionLog::flush`] and not
    /// readable until committed. A failed write cuts what it wrote off the file again.
    pub fn write_entries(&self, entries: Vec<Entry>) -> Result<()> {
        let raft = self.raft()?;
        let mut last = raft.entries.lock().last().map(|(_, i)| i);
        let mut frames = Vec::new();
        // Per frame: (more frames of its entry follow, term, index).
        let mut places = Vec::new();
        let mut ends = Vec::with_capacity(entries.len());
        for entry in entries {
            if last.is_some_and(|l| entry.index != l + 1) {
                return Err(Error::InvalidArgument(format!(
                    "entry {} does not follow the log's last entry {last:?}",
                    entry.index
                )));
            }
            let n = entry.frames.len();
            let control = entry.frames.iter().any(EncodedFrame::is_control);
            if n == 0 || (control && n > 1) {
                return Err(Error::InvalidArgument(format!(
                    "entry {} holds {n} frame(s){}",
                    entry.index,
                    if control { ", one of them control" } else { "" }
                )));
            }
            for (i, frame) in entry.frames.into_iter().enumerate() {
                frames.push(frame);
                places.push((i + 1 < n, Some((entry.term, entry.index))));
            }
            ends.push((entry.term, entry.index, frames.len() - 1));
            last = Some(entry.index);
        }
        if frames.is_empty() {
            return Ok(());
        }
        let shared = self.shared();
        let group = shared.begin_sealed(&mut frames, false, |i| places[i])?;
        group.write(&frames)?;
        // Under the append lock still: the pending list follows the file's order.
        let mut state = raft.entries.lock();
        let infos = group.apply();
        for (term, index, last_frame) in ends {
            state.pending.push_back(Pending {
                term,
                index,
                end: infos[last_frame].next_offset,
            });
        }
        shared.count_appends(infos.len());
        Ok(())
    }

    /// Returns once everything written is durable: one fdatasync, shared with every other
    /// caller waiting meanwhile. Blocking.
    pub fn flush(&self) -> Result<()> {
        let shared = self.shared();
        let end = shared.appender.lock().written;
        shared.wait_durable(end)
    }

    /// Marks every entry up to `index` committed and moves the high watermark to the end of
    /// the last of them. Returns each newly committed entry's index and
    /// offsets `(index, base, next)`; control entries span no offsets.
    pub fn commit_entries(&self, index: u64) -> Result<Vec<(u64, u64, u64)>> {
        let raft = self.raft()?;
        let mut committed = Vec::new();
        {
            let mut state = raft.entries.lock();
            let mut base = raft.committed_end.load(Ordering::Acquire);
            while let Some(&entry) = state.pending.front() {
                if entry.index > index {
                    break;
                }
                state.pending.pop_front();
                committed.push((entry.index, base, entry.end));
                base = entry.end;
                state.committed = Some((entry.term, entry.index));
            }
            raft.committed_end.store(base, Ordering::Release);
        }
        self.shared().publish_durable(0);
        Ok(committed)
    }

    /// Deletes every entry from index `from` on: a divergent tail Raft replaces. Refused for
    /// a committed entry (the high watermark never goes back).
    pub fn truncate_entries(&self, from: u64) -> Result<()> {
        let raft = self.raft()?;
        let shared = self.shared();
        let mut appender = shared.appender.lock();
        let mut state = raft.entries.lock();
        if state.committed.is_some_and(|(_, c)| from <= c) {
            return Err(Error::InvalidArgument(format!(
                "entry {from} is committed: it is never truncated"
            )));
        }
        let Some(found) = self.frames_from(from)?.located()? else {
            return Ok(());
        };
        let Located {
            segment,
            at,
            position,
            header,
        } = found;
        let removed: Vec<Arc<Segment>> = shared.segments.write().drain(at + 1..).collect();
        for later in &removed {
            for path in [&later.log_path, &later.index_path] {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
                }
            }
        }
        let context = || format!("truncating {}", segment.log_path.display());
        segment
            .truncate(position)
            .and_then(|()| segment.file.sync_all())
            .map_err(|e| Error::io(context(), e))?;
        match std::fs::remove_file(&segment.index_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(context(), e)),
        }
        sync_dir(shared.dir())?;
        {
            let mut seg = segment.state.write();
            seg.index.retain(|e| u64::from(e.position) < position);
            seg.next_offset = header.base_offset;
            seg.size = position;
            seg.last_index = from.checked_sub(1);
            if seg.first_index.is_none_or(|first| first >= from) {
                seg.first_index = None;
                seg.last_index = None;
            }
            seg.closed = false;
        }
        appender.active = segment;
        appender.written = header.base_offset;
        shared
            .flushed
            .fetch_min(header.base_offset, Ordering::AcqRel);
        state.pending.retain(|p| p.index < from);
        Ok(())
    }

    /// Entries with index in `from..to`, in order, stopping after `max_bytes` (at least one
    /// entry is returned if there is one). Frames are read whole and CRC-checked.
    pub fn read_entries(&self, from: u64, to: u64, max_bytes: u64) -> Result<Vec<StoredEntry>> {
        let mut out: Vec<StoredEntry> = Vec::new();
        let mut bytes = 0u64;
        for frame in self.frames_from(from)? {
            let (header, segment_and_position) = frame?;
            let same = out.last().is_some_and(|e| e.index == header.index);
            if !same && (header.index >= to || (bytes >= max_bytes && !out.is_empty())) {
                break;
            }
            let (segment, position) = segment_and_position;
            let len = header.frame_len() as usize;
            let mut frame = vec![0u8; len];
            segment.read_at(&mut frame, position)?;
            let header_len = header.header_len();
            if !header.crc_matches(&frame[..header_len], &frame[header_len..]) {
                return Err(segment.corrupt(position, "CRC mismatch"));
            }
            bytes += len as u64;
            if header.control() {
                frame.drain(..header_len);
            }
            match out.last_mut() {
                Some(entry) if same => entry.bytes.extend_from_slice(&frame),
                _ => out.push(StoredEntry {
                    term: header.term,
                    index: header.index,
                    control: header.control(),
                    bytes: frame,
                }),
            }
        }
        Ok(out)
    }

    /// The frames of Raft index `from` and after, in log order.
    fn frames_from(&self, from: u64) -> Result<Frames> {
        let segments = self.shared().segments.read().clone();
        // The first segment whose frames reach `from`.
        let start = segments
            .iter()
            .position(|s| s.state.read().last_index.is_some_and(|l| l >= from))
            .unwrap_or(segments.len());
        let position = segments.get(start).map_or(0, |s| {
            lookup_index(&s.state.read().index, from).map_or(0, |e| u64::from(e.position))
        });
        Ok(Frames {
            segments,
            at: start,
            position,
            from,
        })
    }
}

impl Entries {
    /// Adds an entry found on open.
    fn push(&mut self, entry: Pending, committed: bool) {
        if committed {
            self.committed = Some((entry.term, entry.index));
        } else {
            self.pending.push_back(entry);
        }
    }
}

/// An iterator over frame headers from a Raft index on (see [`PartitionLog::frames_from`]):
/// each with its segment and position. Frames without an index (from before the log became
/// a Raft log) are skipped.
struct Frames {
    segments: Vec<Arc<Segment>>,
    at: usize,
    position: u64,
    from: u64,
}

type FrameAt = (FrameHeader, (Arc<Segment>, u64));

impl Frames {
    /// The first frame's place, if there is one.
    fn located(mut self) -> Result<Option<Located>> {
        match self.next_frame()? {
            None => Ok(None),
            Some((header, (segment, position))) => Ok(Some(Located {
                at: self.at,
                segment,
                position,
                header,
            })),
        }
    }

    fn next_frame(&mut self) -> Result<Option<FrameAt>> {
        while let Some(segment) = self.segments.get(self.at) {
            let size = segment.state.read().size;
            if self.position >= size {
                self.at += 1;
                self.position = 0;
                continue;
            }
            let position = self.position;
            let (header, _) = segment.read_header(position)?;
            if !header.entry() || header.index < self.from {
                self.position += header.frame_len();
                continue;
            }
            // The cursor stays on this frame's segment until the next call moves past it.
            self.position += header.frame_len();
            return Ok(Some((header, (Arc::clone(segment), position))));
        }
        Ok(None)
    }
}

impl Iterator for Frames {
    type Item = Result<FrameAt>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}
