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
//! - **Transactions**: a `TXN` entry (a multi-partition append's rows) is committed like any
//!   other but held back from readers — the high watermark stops at its start — until a
//!   decision entry commits or aborts it; aborted rows keep their offsets and are skipped by
//!   readers (`decisions.rs`). [`PartitionLog::resume_entry`] says where the transaction
//!   state must be read again on open.
//! - **Truncation** ([`PartitionLog::truncate_entries`]) cuts a divergent tail that was never
//!   committed; offsets past the cut are given again to the entries that replace it (they were
//!   never visible, so no reader saw them).
//!
//! This module never decides what is committed: it is told.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::config::LogConfig;
use crate::decisions::{self, Decision};
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
    /// openraft's control entry (blank, membership): `bytes` is its frame's body. Otherwise
    /// `bytes` are the entry's frames, whole and sealed, one after the other
    /// ([`EncodedFrame::split`] cuts them) — rows, or a transaction decision.
    pub control: bool,
    pub bytes: Vec<u8>,
}

/// What an entry holds, as far as the log's visibility cares.
#[derive(Clone, Debug)]
enum Kind {
    Rows,
    /// Rows of a multi-partition append: held back until a decision names them.
    Txn,
    /// A transaction decision (`decisions.rs`).
    Decision(Decision),
    /// openraft's own (blank, membership): no rows.
    Control,
}

impl Kind {
    /// The kind of an entry whose frames are (any) `control` and (all) `txn`; `body` reads a
    /// control frame's body, needed only for a decision.
    fn of(control: bool, txn: bool, body: impl FnOnce() -> Result<Decision>) -> Result<Kind> {
        Ok(match (control, txn) {
            (true, true) => Kind::Decision(body()?),
            (true, false) => Kind::Control,
            (false, true) => Kind::Txn,
            (false, false) => Kind::Rows,
        })
    }
}

/// An entry the log holds past the committed one.
#[derive(Clone, Debug)]
struct Pending {
    term: u64,
    index: u64,
    /// One past the entry's last offset.
    end: u64,
    kind: Kind,
}

/// A committed `TXN` entry no decision has named yet.
#[derive(Clone, Copy, Debug)]
struct Undecided {
    index: u64,
    base: u64,
    end: u64,
}

#[derive(Debug, Default)]
struct Entries {
    /// (term, index) of the last committed entry, if the log knows it.
    committed: Option<(u64, u64)>,
    /// Entries written after the committed one, in index order.
    pending: VecDeque<Pending>,
    /// Committed `TXN` entries awaiting their decision, in index order.
    undecided: VecDeque<Undecided>,
}

/// What a Raft log keeps beside the frames (shared with readers through the log's `Shared`).
#[derive(Debug, Default)]
pub(crate) struct RaftState {
    /// The end of the last committed entry.
    pub(crate) committed_end: AtomicU64,
    /// What readers may see: the committed end, or the start of the first undecided `TXN`
    /// entry before it (Kafka's last stable offset). The high watermark never passes it.
    pub(crate) stable_end: AtomicU64,
    /// Offset ranges of aborted `TXN` entries, sorted: readers skip them. Swapped whole.
    pub(crate) aborted: RwLock<Arc<Vec<(u64, u64)>>>,
    /// (term, index) of the last entry deleted from the log's front (`purged.rs`).
    pub(crate) purged: Mutex<Option<(u64, u64)>>,
    entries: Mutex<Entries>,
}

impl RaftState {
    /// The index of the last committed entry, if known.
    pub(crate) fn committed_index(&self) -> Option<u64> {
        self.entries.lock().committed.map(|(_, i)| i)
    }
}

impl Entries {
    fn last(&self) -> Option<(u64, u64)> {
        self.pending
            .back()
            .map(|p| (p.term, p.index))
            .or(self.committed)
    }

    /// Applies a committed entry that started at offset `base`: a `TXN` entry waits for its
    /// decision, a decision settles the entries it names (the ranges it aborts are added to
    /// `aborts`). A decision naming no undecided entry (decided already, or unknown) changes
    /// nothing: a coordinator may decide again after a leader change.
    fn settle(&mut self, entry: &Pending, base: u64, aborts: &mut Vec<(u64, u64)>) {
        self.committed = Some((entry.term, entry.index));
        match &entry.kind {
            Kind::Txn => self.undecided.push_back(Undecided {
                index: entry.index,
                base,
                end: entry.end,
            }),
            Kind::Decision(decision) => {
                for &(b, n) in &decision.ranges {
                    if let Some(at) = self
                        .undecided
                        .iter()
                        .position(|u| (u.base, u.end) == (b, n))
                    {
                        self.undecided.remove(at);
                        if !decision.commit {
                            aborts.push((b, n));
                        }
                    }
                }
            }
            Kind::Rows | Kind::Control => {}
        }
    }

    /// Where readers must stop: the first undecided entry's start, else `committed_end`.
    fn stable_end(&self, committed_end: u64) -> u64 {
        self.undecided.front().map_or(committed_end, |u| u.base)
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
    /// log count as committed, except a last multi-partition group of that time
    /// ([`crate::Topic::append_atomic`]'s `TXN` group, one node's rule): it is kept only if
    /// `committed_before(base, next)` says its commit record is durable (the topic's
    /// `txn.log`, read by [`crate::TopicStore::committed_before`]) — so a partition opened as a
    /// Raft log for the first time drops a statement that was never committed, as its last
    /// one-node open would have.
    pub fn open_replicated(
        dir: &Path,
        config: LogConfig,
        committed: Option<u64>,
        scan_from: Option<u64>,
        committed_before: &dyn Fn(u64, u64) -> bool,
    ) -> Result<PartitionLog> {
        // Every purged entry was committed (a save of `committed` may be older after a crash).
        let purged = crate::purged::read_purged(dir)?;
        let committed = committed.max(purged.map(|(_, index)| index));
        let is_committed = |index: u64| committed.is_some_and(|c| index <= c);
        // A Raft log keeps every whole `TXN` entry: whether its rows count is up to the
        // decisions in the log, not to recovery (`recovery.rs` settles one-node groups only).
        let log = Self::open_with(dir, config, committed_before, Some(RaftState::default()))?;
        let shared = log.shared();
        let raft = log.raft()?;
        let written = shared.appender.lock().written;
        let mut entries = Entries::default();
        let mut aborts = Vec::new();
        // The first offset of the first entry past `committed`.
        let mut pending_from = None;
        // The entry being read, and its first offset.
        let mut current: Option<(Pending, u64)> = None;
        let start = match committed {
            Some(c) => scan_from.map_or(c, |s| s.min(c)),
            None => 0,
        };
        for frame in log.frames_from(start)? {
            let (header, (segment, position)) = frame?;
            match &mut current {
                Some((entry, _)) if entry.index == header.index => entry.end = header.next_offset(),
                _ => {
                    if let Some((done, base)) = current.take() {
                        entries.found(done, base, &is_committed, &mut aborts);
                    }
                    if !is_committed(header.index) && pending_from.is_none() {
                        pending_from = Some(header.base_offset);
                    }
                    let kind = Kind::of(header.control(), header.txn(), || {
                        let frame = read_frame(&segment, position, &header)?;
                        Decision::parse(&frame[header.header_len()..])
                            .map_err(|why| segment.corrupt(position, why))
                    })?;
                    current = Some((
                        Pending {
                            term: header.term,
                            index: header.index,
                            end: header.next_offset(),
                            kind,
                        },
                        header.base_offset,
                    ));
                }
            }
        }
        if let Some((done, base)) = current {
            entries.found(done, base, &is_committed, &mut aborts);
        }
        let committed_end = pending_from.unwrap_or(written);
        let recorded = decisions::read_aborted(dir)?;
        let aborted = decisions::merge(&recorded, &aborts);
        if aborted != recorded {
            // Found again by this scan only: recorded before the next save moves past them.
            decisions::write_aborted(dir, &aborted)?;
        }
        *raft.aborted.write() = Arc::new(aborted);
        if entries.committed.map(|(_, i)| i) < purged.map(|(_, i)| i) {
            entries.committed = purged;
        }
        *raft.purged.lock() = purged;
        raft.committed_end.store(committed_end, Ordering::Release);
        raft.stable_end
            .store(entries.stable_end(committed_end), Ordering::Release);
        *raft.entries.lock() = entries;
        shared.publish_durable(0);
        Ok(log)
    }

    /// The index from which [`PartitionLog::open_replicated`] must read the log again to
    /// rebuild its transaction state (`scan_from`): the first undecided `TXN` entry's, else
    /// the last committed entry's. The replication layer saves it beside the committed index.
    pub fn resume_entry(&self) -> Result<Option<u64>> {
        let state = self.raft()?.entries.lock();
        Ok(state
            .undecided
            .front()
            .map(|u| u.index)
            .or(state.committed.map(|(_, i)| i)))
    }

    /// The offset ranges of committed `TXN` entries no decision has named yet, in log order:
    /// readers stop before the first of them until its writer's coordinator decides.
    pub fn undecided(&self) -> Result<Vec<(u64, u64)>> {
        let state = self.raft()?.entries.lock();
        Ok(state.undecided.iter().map(|u| (u.base, u.end)).collect())
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
            let txn = entry.frames.iter().filter(|f| f.is_txn()).count();
            if n == 0 || (control && n > 1) || (txn != 0 && txn != n) {
                return Err(Error::InvalidArgument(format!(
                    "entry {} holds {n} frame(s){}{}",
                    entry.index,
                    if control { ", one of them control" } else { "" },
                    if txn != 0 && txn != n {
                        ", some of them TXN"
                    } else {
                        ""
                    }
                )));
            }
            let kind = Kind::of(control, txn > 0, || {
                Decision::parse(entry.frames[0].body()).map_err(|why| {
                    Error::InvalidArgument(format!(
                        "entry {} is not a transaction decision: {why}",
                        entry.index
                    ))
                })
            })?;
            for (i, frame) in entry.frames.into_iter().enumerate() {
                frames.push(frame);
                places.push((i + 1 < n, Some((entry.term, entry.index))));
            }
            ends.push((entry.term, entry.index, frames.len() - 1, kind));
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
        for (term, index, last_frame, kind) in ends {
            state.pending.push_back(Pending {
                term,
                index,
                end: infos[last_frame].next_offset,
                kind,
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

    /// [`PartitionLog::flush`] without waiting: `done` runs on the partition's committer
    /// thread once everything written before this call is durable, after the flushes queued
    /// before it (one fdatasync for all that are queued together).
    pub fn flush_then(&self, done: impl FnOnce(Result<()>) + Send + 'static) {
        self.committer().submit_flush(self.shared(), Box::new(done));
    }

    /// Marks every entry up to `index` committed and moves the high watermark to the end of
    /// the last of them — or to the first `TXN` entry still undecided (`decisions.rs`).
    /// Returns each newly committed entry's index and offsets `(index, base, next)`; control
    /// entries span no offsets. A decision that aborts is recorded in `txn-aborted` (synced)
    /// before anything moves; if that fails the log stops taking appends.
    pub fn commit_entries(&self, index: u64) -> Result<Vec<(u64, u64, u64)>> {
        let raft = self.raft()?;
        let shared = self.shared();
        let mut committed = Vec::new();
        {
            let mut state = raft.entries.lock();
            let mut base = raft.committed_end.load(Ordering::Acquire);
            let mut aborts = Vec::new();
            while state.pending.front().is_some_and(|e| e.index <= index) {
                let Some(entry) = state.pending.pop_front() else {
                    break;
                };
                committed.push((entry.index, base, entry.end));
                state.settle(&entry, base, &mut aborts);
                base = entry.end;
            }
            if !aborts.is_empty() {
                let aborted = decisions::merge(&raft.aborted.read(), &aborts);
                if let Err(e) = decisions::write_aborted(shared.dir(), &aborted) {
                    shared.fail_stop();
                    return Err(e);
                }
                // Before the stable end moves past them: a reader bounded by it sees them.
                *raft.aborted.write() = Arc::new(aborted);
            }
            raft.committed_end.store(base, Ordering::Release);
            raft.stable_end
                .store(state.stable_end(base), Ordering::Release);
        }
        shared.publish_durable(0);
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
            let mut frame = read_frame(&segment, position, &header)?;
            bytes += len as u64;
            // openraft's own entries give back their payload; a decision is an entry of the
            // log's own, sent as its frame like data.
            let control = header.control() && !header.txn();
            if control {
                frame.drain(..header.header_len());
            }
            match out.last_mut() {
                Some(entry) if same => entry.bytes.extend_from_slice(&frame),
                _ => out.push(StoredEntry {
                    term: header.term,
                    index: header.index,
                    control,
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
    /// Adds an entry found on open, which started at offset `base`.
    fn found(
        &mut self,
        entry: Pending,
        base: u64,
        is_committed: &dyn Fn(u64) -> bool,
        aborts: &mut Vec<(u64, u64)>,
    ) {
        if is_committed(entry.index) {
            self.settle(&entry, base, aborts);
        } else {
            self.pending.push_back(entry);
        }
    }
}

/// The whole frame at `position`, CRC-checked.
fn read_frame(segment: &Segment, position: u64, header: &FrameHeader) -> Result<Vec<u8>> {
    let mut frame = vec![0u8; header.frame_len() as usize];
    segment.read_at(&mut frame, position)?;
    let header_len = header.header_len();
    if !header.crc_matches(&frame[..header_len], &frame[header_len..]) {
        return Err(segment.corrupt(position, "CRC mismatch"));
    }
    Ok(frame)
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
