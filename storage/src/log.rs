//! [`PartitionLog`]: appends with group commit, rolls, retention, lookups.
//!
//! Concurrency, from the outside in:
//!
//! - Appends queue on the partition's committer (`committer.rs`), whose one thread writes
//!   every queued group and then syncs once for all of them (group commit).
//! - `appender` (a mutex) serialises writers: the committer's thread, and multi-partition
//!   appends (`topics.rs`), which hold it from write to commit record. A batch is encoded
//!   *before* the lock is taken; under it offsets are assigned, the segment rolled if due,
//!   the frames written with positioned writes and `written` advanced.
//! - `sync_lock` serialises fdatasyncs: the syncer notes `written` and the active file,
//!   syncs that file and publishes `durable` = the noted offset.
//! - A roll syncs the old segment before switching files and publishes `durable` itself, so
//!   everything in a closed segment is durable and a sync of the active file covers the rest.
//! - Readers take a snapshot of `durable` (the high watermark) and only read frames below it,
//!   which were completely written before it was published.
//! - Every advance of `durable` is also published on a `tokio::sync::watch` channel, so tailing
//!   readers (push queries) wait for new data without polling and without any lock of the
//!   write path ([`PartitionLog::watch_high_watermark`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::committer::{Appended, Committer};
use crate::config::LogConfig;
use crate::entries::RaftState;
use crate::error::{Error, Result};
use crate::reader::LogReader;
use crate::recovery::recover;
use crate::segment::format::{EncodedFrame, Seal};
use crate::segment::index::lookup_timestamp;
use crate::segment::{PREALLOCATE_BYTES, Segment, sync_dir};

/// Offsets assigned to an appended batch: `base_offset..next_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub next_offset: u64,
}

/// A batch as stored: its first offset, timestamps from the frame header, and the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub batch: RecordBatch,
}

/// A description of one segment, for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: u64,
    /// One past the last offset written (may include not-yet-durable batches).
    pub next_offset: u64,
    pub bytes: u64,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub path: PathBuf,
    pub active: bool,
}

/// Counters since the log was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Successful appends.
    pub appends: u64,
    /// fdatasyncs of segment files (group commits plus rolls and close).
    pub fsyncs: u64,
    /// Frame bytes written.
    pub bytes_written: u64,
}

#[derive(Debug, Default)]
struct Counters {
    appends: AtomicU64,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Appender {
    pub(crate) active: Arc<Segment>,
    /// One past the last offset written (not necessarily durable).
    pub(crate) written: u64,
}

/// State shared by the log and its readers.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    pub(crate) config: RwLock<LogConfig>,
    /// In offset order; the last is the active segment. Never empty.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) appender: Mutex<Appender>,
    sync_lock: Mutex<()>,
    /// The high watermark: every offset below it is durable (and, in a Raft log, committed).
    pub(crate) durable: AtomicU64,
    /// Every offset below it is durable (fdatasynced).
    pub(crate) flushed: AtomicU64,
    /// Set when the log is a partition's Raft log (see `entries.rs`).
    pub(crate) raft: Option<RaftState>,
    /// `durable`, published to tailing readers after each advance.
    high_watermark_tx: watch::Sender<u64>,
    /// Appends are refused: closed, or a write or sync failed.
    closed: AtomicBool,
    /// Offsets of the last group if it belongs to a multi-partition append (whose commit
    /// record recovery then needs), else `None`.
    last_txn_group: Mutex<Option<(u64, u64)>>,
    counters: Counters,
}

impl Shared {
    /// The partition's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes that every offset below `end` is durable, advances the high watermark (to it,
    /// or in a Raft log to the end of the committed entries) and wakes the tailing readers.
    ///
    /// A Raft log's committed entries are durable on a majority, though perhaps not yet
    /// flushed here: a follower shows them at once (a write forwarded from it reads its own
    /// rows when it returns). Only an OS crash of this node before its flush can take them
    /// from it again, and then it shows less until the leader sends them back — never
    /// something uncommitted.
    pub(crate) fn publish_durable(&self, end: u64) {
        let flushed = self.flushed.fetch_max(end, Ordering::AcqRel).max(end);
        let visible = match &self.raft {
            None => flushed,
            Some(raft) => raft.stable_end.load(Ordering::Acquire),
        };
        let durable = self
            .durable
            .fetch_max(visible, Ordering::AcqRel)
            .max(visible);
        self.high_watermark_tx.send_if_modified(|published| {
            let advanced = *published < durable;
            if advanced {
                *published = durable;
            }
            advanced
        });
    }
}

/// A group of frames being appended under the partition's append lock: sealed by
/// [`PartitionLog::begin_group`], then written ([`Group::write`]) and synced, then either
/// applied (offsets, index and, for atomic appends, the high watermark advance) or cut off
/// the file again ([`Group::abort`]). Every written group must end in one of the two: bytes
/// left behind unapplied would be valid frames past the log's end.
pub(crate) struct Group<'a> {
    shared: &'a Shared,
    appender: parking_lot::MutexGuard<'a, Appender>,
    segment: Arc<Segment>,
    start: u64,
    end: u64,
    sealed: Vec<(u64, crate::segment::format::FrameHeader)>,
    txn: bool,
}

impl Group<'_> {
    /// Offsets `[base, next)` the group holds.
    pub(crate) fn offsets(&self) -> (u64, u64) {
        (
            self.appender.written,
            self.sealed
                .last()
                .map_or(self.appender.written, |(_, h)| h.next_offset()),
        )
    }

    /// Writes the sealed frames' bytes at the end of the active segment. On failure the
    /// partial bytes are cut off again (or, if even that fails, the log closes).
    pub(crate) fn write(&self, frames: &[EncodedFrame]) -> Result<()> {
        let segment = &self.segment;
        for ((position, _), frame) in self.sealed.iter().zip(frames) {
            if let Err(e) = segment.file.write_all_at(frame.bytes(), *position) {
                let error = Error::io(format!("appending to {}", segment.log_path.display()), e);
                self.cut();
                return Err(error);
            }
        }
        let ahead = PREALLOCATE_BYTES.min(self.shared.config.read().segment_bytes);
        segment.preallocate_after(self.end, ahead);
        Ok(())
    }

    /// The active segment's file, for an fdatasync outside the append lock's thread.
    pub(crate) fn segment(&self) -> Arc<Segment> {
        Arc::clone(&self.segment)
    }

    /// Marks the log closed after its file could not be synced (its contents are unknown).
    pub(crate) fn fail_stop(&self) {
        self.shared.fail_stop();
    }

    fn cut(&self) {
        if let Err(cut) = self.segment.truncate(self.start) {
            // The partial group stays in the file: stop, and let recovery drop it.
            self.shared.closed.store(true, Ordering::Release);
            warn!(segment = %self.segment.log_path.display(), error = %cut, "cannot cut a failed append off the segment; the log is closed until it is reopened");
        }
    }

    /// Cuts a written but not applied group off the file (another partition of the same
    /// atomic append failed).
    pub(crate) fn abort(self) {
        self.cut();
    }

    /// Records the written group: index entries, offsets; returns what each frame got.
    pub(crate) fn apply(mut self) -> Vec<AppendInfo> {
        let shared = self.shared;
        let interval = shared.config.read().index_interval_bytes;
        let mut infos = Vec::with_capacity(self.sealed.len());
        {
            let mut state = self.segment.state.write();
            for (position, header) in &self.sealed {
                state.record(self.segment.base_offset, *position, header, interval);
                infos.push(AppendInfo {
                    base_offset: header.base_offset,
                    next_offset: header.next_offset(),
                });
            }
            state.first_append.get_or_insert_with(Instant::now);
        }
        let (base, next) = self.offsets();
        self.appender.written = next;
        *shared.last_txn_group.lock() = self.txn.then_some((base, next));
        shared
            .counters
            .bytes_written
            .fetch_add(self.end - self.start, Ordering::Relaxed);
        infos
    }

    /// Applies a group whose file the caller synced, and publishes it to readers at once.
    pub(crate) fn apply_synced(self) -> Vec<AppendInfo> {
        let shared = self.shared;
        let infos = self.apply();
        if let Some(last) = infos.last() {
            shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            shared.publish_durable(last.next_offset);
            shared
                .counters
                .appends
                .fetch_add(infos.len() as u64, Ordering::Relaxed);
        }
        infos
    }
}

/// One partition's log on local disk. `Send + Sync`: share it behind an `Arc`; appends,
/// reads and retention may run concurrently from any threads.
#[derive(Debug)]
pub struct PartitionLog {
    shared: Arc<Shared>,
    /// Queues appends and runs their group commits (see the `committer` module).
    committer: Arc<Committer>,
    /// The `LOCK` file, flock-ed while the log is open.
    lock: Mutex<Option<File>>,
    /// `ensure_room`'s last look at the file system: when, and the bytes free then minus
    /// what was asked for since.
    room: Mutex<Option<(std::time::Instant, u64)>>,
}

/// `ensure_room` trusts its last look at the file system for this long, and only while more
/// than [`ROOM_TRUSTED`] was free: no disk writes a gibibyte in a tenth of a second (this one
/// writes 1.2 GB/s), so nothing else can have taken the room meanwhile. A small file system,
/// or one nearly full, is looked at on every call.
const ROOM_AGE: std::time::Duration = std::time::Duration::from_millis(100);
/// See [`ROOM_AGE`].
const ROOM_TRUSTED: u64 = 1 << 30;

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.committer.stop();
    }
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory if missing, and runs recovery (see
    /// the `recovery` module): closed segments' indexes are checked, the active segment's
    /// torn tail is truncated, and corruption elsewhere fails with [`Error::Corrupt`].
    /// Fails with [`Error::Locked`] if another `PartitionLog` has `dir` open.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        Self::open_resolving(dir, config, &|_, _| false)
    }

    /// Like [`PartitionLog::open`], for a partition of a topic that makes multi-partition
    /// appends: a last group written by one is kept only if `committed(base, next)` says its
    /// commit record is durable (see [`crate::Topic::append_atomic`]).
    pub(crate) fn open_resolving(
        dir: &Path,
        config: LogConfig,
        committed: &dyn Fn(u64, u64) -> bool,
    ) -> Result<PartitionLog> {
        Self::open_with(dir, config, committed, None)
    }

    /// Opens the log; `raft` makes it a Raft log (see `entries.rs`).
    pub(crate) fn open_with(
        dir: &Path,
        config: LogConfig,
        committed: &dyn Fn(u64, u64) -> bool,
        raft: Option<RaftState>,
    ) -> Result<PartitionLog> {
        let lock = crate::dir_lock::lock_dir(dir)?.ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })?;
        let recovered = recover(dir, config.index_interval_bytes, committed)?;
        let segments = recovered.segments;
        let active = segments
            .last()
            .cloned()
            .ok_or_else(|| Error::InvalidArgument("recovery returned no segment".into()))?;
        let written = active.state.read().next_offset;
        debug!(dir = %dir.display(), segments = segments.len(), next_offset = written, "opened partition log");
        let shared = Shared {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            appender: Mutex::new(Appender { active, written }),
            sync_lock: Mutex::new(()),
            durable: AtomicU64::new(if raft.is_some() { 0 } else { written }),
            flushed: AtomicU64::new(written),
            raft,
            high_watermark_tx: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            last_txn_group: Mutex::new(recovered.last_txn_group),
            counters: Counters::default(),
        };
        shared.publish_durable(written);
        Ok(PartitionLog {
            shared: Arc::new(shared),
            committer: Committer::new(),
            lock: Mutex::new(Some(lock)),
            room: Mutex::new(None),
        })
    }

    /// The partition's committer (its writer thread).
    pub(crate) fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }

    /// The state shared with readers and the committer.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Appends one batch (at least one row), assigning offsets `base..base + num_rows`.
    /// Returns once the batch is durable (fdatasync). Concurrent appends share syncs (group
    /// commit). After a failed write or sync the log refuses appends with [`Error::Closed`];
    /// reopen it to recover. Blocking: async callers use [`PartitionLog::enqueue`].
    pub fn append(
        &self,
        batch: &RecordBatch,
        min_timestamp: i64,
        max_timestamp: i64,
    ) -> Result<AppendInfo> {
        let frame = EncodedFrame::encode(batch, min_timestamp, max_timestamp)?;
        let infos = self.append_encoded(vec![frame])?;
        infos
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidArgument("no frame to write".into()))
    }

    /// Appends several batches (each at least one row) as consecutive frames, then waits for
    /// one sync covering all of them: a bulk load pays one fdatasync, not one per frame. Each
    /// entry is a batch with its min and max timestamp. The frames are one statement group
    /// (see [`PartitionLog::append_encoded`]): a crash before the sync keeps none of them.
    pub fn append_batches(&self, batches: &[(RecordBatch, i64, i64)]) -> Result<Vec<AppendInfo>> {
        // Encoded before the append lock is taken, on several threads when there are many.
        let frames = EncodedFrame::encode_all(batches)?;
        self.append_encoded(frames)
    }

    /// Appends frames encoded beforehand (see [`EncodedFrame::encode`]) as one statement
    /// group (see `segment/format.rs`): written contiguously under one lock, never split by a
    /// roll, then made durable by a sync it shares with the groups queued beside it (see
    /// [`PartitionLog::enqueue`]). Readers see the group whole or not at all, and a crash
    /// before the sync drops it whole. A failed write cuts the group off the file again and
    /// the log stays open for the next append (a full disk recovers once space is freed);
    /// only a failed cut or fsync, after which the file's contents are unknown, closes it.
    /// Blocking: it waits for the sync.
    pub fn append_encoded(&self, frames: Vec<EncodedFrame>) -> Result<Vec<AppendInfo>> {
        futures::executor::block_on(self.enqueue(frames))
    }

    /// [`PartitionLog::append_encoded`] without blocking: queues the group for the
    /// partition's committer (see the `committer` module), which writes every group queued
    /// while it was busy and makes them durable with one fdatasync. The future resolves once
    /// the group is durable and readable; dropping it does not withdraw the group.
    pub fn enqueue(&self, frames: Vec<EncodedFrame>) -> Appended {
        self.committer.submit(&self.shared, frames)
    }

    /// Takes the append lock for a group of `frames` (rolling first if due) and seals their
    /// headers at the next offsets; nothing is written yet. `txn`: the group is part of a
    /// multi-partition append (see [`crate::Topic::append_atomic`]).
    pub(crate) fn begin_group(&self, frames: &mut [EncodedFrame], txn: bool) -> Result<Group<'_>> {
        self.shared.begin_group(frames, txn)
    }
}

impl Shared {
    /// See [`PartitionLog::begin_group`]. A Raft log's appends are its entries
    /// (`entries.rs`), never a group of its own.
    pub(crate) fn begin_group(&self, frames: &mut [EncodedFrame], txn: bool) -> Result<Group<'_>> {
        if self.raft.is_some() {
            return Err(Error::InvalidArgument(
                "the partition is replicated: its appends go through its Raft group".into(),
            ));
        }
        let last = frames.len().saturating_sub(1);
        self.begin_sealed(frames, txn, |i| (i < last, None))
    }

    /// Takes the append lock (rolling first if due) and seals `frames` at the next offsets,
    /// frame `i` with `place(i)` = (more frames of its group follow, its Raft entry's term
    /// and index).
    pub(crate) fn begin_sealed(
        &self,
        frames: &mut [EncodedFrame],
        txn: bool,
        place: impl Fn(usize) -> (bool, Option<(u64, u64)>),
    ) -> Result<Group<'_>> {
        let mut appender = self.appender.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.roll_due(&appender)
            && let Err(e) = self.roll(&mut appender)
        {
            // Fail-stop: the files may be half switched over; reopening recovers them.
            self.closed.store(true, Ordering::Release);
            return Err(e);
        }
        let segment = Arc::clone(&appender.active);
        let start = segment.state.read().size;
        let mut position = start;
        let mut base_offset = appender.written;
        let mut sealed = Vec::with_capacity(frames.len());
        for (i, frame) in frames.iter_mut().enumerate() {
            let (continues, entry) = place(i);
            let header = frame.seal(Seal {
                base_offset,
                continues,
                txn,
                entry,
            });
            sealed.push((position, header));
            position += frame.len();
            base_offset = header.next_offset();
        }
        Ok(Group {
            shared: self,
            appender,
            segment,
            start,
            end: position,
            sealed,
            txn,
        })
    }

    /// Writes `frames` as one group at the end of the active segment; offsets and the index
    /// advance only once every byte is written. Not yet durable: see
    /// [`Shared::wait_durable`].
    pub(crate) fn write_group(&self, frames: &mut [EncodedFrame]) -> Result<Vec<AppendInfo>> {
        let group = self.begin_group(frames, false)?;
        group.write(frames)?;
        Ok(group.apply())
    }

    /// Returns once every offset below `end` is durable: one fdatasync of the active file
    /// covers everything written so far (closed segments were synced by their roll).
    pub(crate) fn wait_durable(&self, end: u64) -> Result<()> {
        if self.flushed.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let _sync = self.sync_lock.lock();
        if self.flushed.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let (target, active) = {
            let appender = self.appender.lock();
            (appender.written, Arc::clone(&appender.active))
        };
        if let Err(e) = active.sync() {
            self.closed.store(true, Ordering::Release);
            return Err(e);
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.publish_durable(target);
        Ok(())
    }

    /// Refuses further appends until the log is reopened (its file's state is unknown).
    pub(crate) fn fail_stop(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Counts `n` appended frames as appends (once durable).
    pub(crate) fn count_appends(&self, n: usize) {
        self.counters.appends.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn roll_due(&self, appender: &Appender) -> bool {
        let config = self.config.read();
        let state = appender.active.state.read();
        if state.size == 0 {
            return false;
        }
        let by_size = state.size >= config.segment_bytes;
        let by_age = match (config.segment_ms, state.first_append) {
            (Some(ms), Some(first)) => first.elapsed() >= Duration::from_millis(ms),
            _ => false,
        };
        // Index entries hold u32 positions and relative offsets.
        let near_limit = state.size >= u64::from(u32::MAX) / 2
            || state.next_offset - appender.active.base_offset >= u64::from(u32::MAX) / 2;
        by_size || by_age || near_limit
    }

    /// Closes the active segment (synced, index written) and starts a new one at `written`.
    /// Everything written so far is durable afterwards.
    fn roll(&self, appender: &mut Appender) -> Result<()> {
        let old = Arc::clone(&appender.active);
        // A closed segment ends at its last frame: the zeros written ahead go first.
        let size = old.state.read().size;
        old.truncate(size)
            .map_err(|e| Error::io(format!("truncating {}", old.log_path.display()), e))?;
        old.sync()?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.publish_durable(appender.written);
        let new = Arc::new(Segment::create(&self.dir, appender.written)?);
        sync_dir(&self.dir)?;
        old.state.write().closed = true;
        if let Err(error) = old.write_index() {
            warn!(segment = %old.log_path.display(), %error, "cannot write segment index; it will be rebuilt on open");
        }
        debug!(segment = %new.log_path.display(), "rolled to a new segment");
        self.segments.write().push(Arc::clone(&new));
        appender.active = new;
        Ok(())
    }
}

impl PartitionLog {
    /// Offsets of the last group if a multi-partition append wrote it.
    pub(crate) fn last_txn_group(&self) -> Option<(u64, u64)> {
        *self.shared.last_txn_group.lock()
    }

    /// The next offset to be assigned that is durable: every offset below it is durable and
    /// readable.
    pub fn high_watermark(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Rows of `[from, to)` that belong to aborted transactions (only a Raft log has them):
    /// their offsets stay taken, and readers skip them.
    pub fn aborted_rows(&self, from: u64, to: u64) -> u64 {
        self.shared.raft.as_ref().map_or(0, |raft| {
            crate::decisions::aborted_rows(&raft.aborted.read(), from, to)
        })
    }

    /// A receiver of the high watermark: it changes (and wakes `changed().await`) each time
    /// newly appended batches become durable. Tailing readers wait on it instead of polling;
    /// it costs the write path one uncontended channel update per group commit.
    pub fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.shared.high_watermark_tx.subscribe()
    }

    /// The first offset still on disk (retention deletes whole segments from the front).
    pub fn log_start_offset(&self) -> u64 {
        self.shared
            .segments
            .read()
            .first()
            .map_or(0, |s| s.base_offset)
    }

    /// A reader over `[start_offset, high watermark)`; see [`PartitionLog::reader_range`].
    pub fn reader(&self, start_offset: u64) -> Result<LogReader> {
        self.reader_range(start_offset, u64::MAX, None)
    }

    /// A reader over the batches holding offsets in `[start_offset, end_offset)`, with
    /// `end_offset` capped at the high watermark when the reader is created (a snapshot: it
    /// never returns non-durable data). It yields whole stored batches: the first may begin
    /// before `start_offset` and the last may extend past `end_offset`; slice as needed.
    ///
    /// With `time_range = Some((lo, hi))` (inclusive, ms) it skips batches and whole
    /// segments whose `[min, max]` timestamps cannot overlap it, without decoding them.
    ///
    /// A `start_offset` below the log start (deleted by retention) starts at the log start;
    /// one above the high watermark is [`Error::OutOfRange`].
    pub fn reader_range(
        &self,
        start_offset: u64,
        end_offset: u64,
        time_range: Option<(i64, i64)>,
    ) -> Result<LogReader> {
        let high_watermark = self.high_watermark();
        if start_offset > high_watermark {
            return Err(Error::OutOfRange {
                requested: start_offset,
                log_start: self.log_start_offset(),
                high_watermark,
            });
        }
        Ok(LogReader::new(
            Arc::clone(&self.shared),
            start_offset,
            end_offset.min(high_watermark),
            time_range,
        ))
    }

    /// Like Kafka's ListOffsets: the base offset of the earliest durable batch whose max
    /// timestamp is at least `ts`, or `None` if there is none.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let end = self.high_watermark();
        let segments = self.shared.segments.read().clone();
        for segment in segments {
            let (entry, segment_end, max) = {
                let state = segment.state.read();
                (
                    lookup_timestamp(&state.index, ts),
                    state.next_offset.min(end),
                    state.max_timestamp,
                )
            };
            if max.is_some_and(|max| max >= ts) {
                let (mut position, mut base) = entry.map_or((0, segment.base_offset), |e| {
                    (
                        u64::from(e.position),
                        segment.base_offset + u64::from(e.relative_offset),
                    )
                });
                while base < segment_end {
                    let (header, _) = segment.read_header_expecting(position, base)?;
                    if !header.control() && header.max_timestamp >= ts {
                        return Ok(Some(base));
                    }
                    position += header.frame_len();
                    base = header.next_offset();
                }
            }
            if segment_end >= end {
                break;
            }
        }
        Ok(None)
    }

    /// The segments, oldest first; the last is the active one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let segments = self.shared.segments.read();
        let last = segments.len().saturating_sub(1);
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| s.info(i == last))
            .collect()
    }

    /// Deletes whole closed segments from the front of the log while the oldest is expired
    /// by `retention_ms` (its max timestamp is below `now_ms - retention_ms`) or the log is
    /// over `retention_bytes`. Never deletes the active segment. Returns how many were
    /// deleted. Readers holding a deleted segment finish it from their open file handle.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let config = self.shared.config.read().clone();
        let cutoff = config
            .retention_ms
            .map(|ms| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)));
        let may_delete = self.may_delete();
        let removed: Vec<Arc<Segment>> = {
            let mut segments = self.shared.segments.write();
            let mut total: u64 = segments.iter().map(|s| s.state.read().size).sum();
            let mut n = 0;
            while n + 1 < segments.len() {
                let state = segments[n].state.read();
                if !may_delete(&state) {
                    break;
                }
                let expired =
                    matches!((cutoff, state.max_timestamp), (Some(c), Some(max)) if max < c);
                let over = config.retention_bytes.is_some_and(|limit| total > limit);
                if !(expired || over) {
                    break;
                }
                total -= state.size;
                n += 1;
            }
            self.save_purged(&segments[..n])?;
            segments.drain(..n).collect()
        };
        for segment in &removed {
            for path in [&segment.log_path, &segment.index_path] {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
                }
            }
            debug!(segment = %segment.log_path.display(), "deleted segment by retention");
        }
        if !removed.is_empty() {
            sync_dir(&self.shared.dir)?;
        }
        Ok(removed.len())
    }

    /// Deletes the oldest segment if it is closed and starts at `base_offset` (the cold tier
    /// calls this once the segment's object is in its manifest). Returns whether it was
    /// deleted. Readers holding it finish it from their open file handle.
    pub fn remove_oldest_segment(&self, base_offset: u64) -> Result<bool> {
        let may_delete = self.may_delete();
        let removed = {
            let mut segments = self.shared.segments.write();
            if segments.len() < 2
                || segments[0].base_offset != base_offset
                || !may_delete(&segments[0].state.read())
            {
                return Ok(false);
            }
            self.save_purged(&segments[..1])?;
            segments.remove(0)
        };
        for path in [&removed.log_path, &removed.index_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
            }
        }
        sync_dir(&self.shared.dir)?;
        Ok(true)
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Refuses, before anything is written, a write of `bytes` that would leave less than
    /// `keep_free` bytes free on the file system holding this log: an I/O error of kind
    /// `StorageFull` (what a full disk answers). A caller that must not fail halfway (a Raft
    /// log store, which stops its group on any error) checks here first and keeps the reserve
    /// for what it cannot refuse. Other writers to the same disk may still take the room
    /// between the check and the write: it narrows the window, it does not close it.
    pub fn ensure_room(&self, bytes: u64, keep_free: u64) -> Result<()> {
        let needed = bytes.saturating_add(keep_free);
        {
            let mut room = self.room.lock();
            if let Some((at, free)) = room.as_mut()
                && at.elapsed() < ROOM_AGE
                && *free >= needed.saturating_add(ROOM_TRUSTED)
            {
                *free -= bytes;
                return Ok(());
            }
        }
        let dir = &self.shared.dir;
        let stat = rustix::fs::statvfs(dir).map_err(|e| {
            Error::io(
                format!("reading the free space of {}", dir.display()),
                e.into(),
            )
        })?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free >= needed {
            *self.room.lock() = Some((std::time::Instant::now(), free - bytes));
            return Ok(());
        }
        Err(Error::io(
            format!("appending to {}", dir.display()),
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "{bytes} bytes to write but {free} bytes free, of which {keep_free} are \
                     kept for the log's own records"
                ),
            ),
        ))
    }

    /// Replaces the configuration; it applies from the next append or retention run.
    pub fn set_config(&self, config: LogConfig) {
        *self.shared.config.write() = config;
    }

    /// The current configuration.
    pub fn config(&self) -> LogConfig {
        self.shared.config.read().clone()
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.counters;
        LogStats {
            appends: c.appends.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Syncs the active segment, writes its index and releases the directory lock. Later
    /// appends fail with [`Error::Closed`]; existing and new readers keep working. Closing
    /// twice is harmless.
    pub fn close(&self) -> Result<()> {
        self.committer.stop();
        let shared = &self.shared;
        let appender = shared.appender.lock();
        let Some(lock) = self.lock.lock().take() else {
            return Ok(());
        };
        shared.closed.store(true, Ordering::Release);
        let result = (|| {
            appender.active.sync()?;
            shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            shared.publish_durable(appender.written);
            appender.active.write_index()?;
            sync_dir(&shared.dir)
        })();
        drop(lock);
        result
    }
}
