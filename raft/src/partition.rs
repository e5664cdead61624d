//! Partition groups: a partition's [`PartitionLog`] is its Raft group's log — openraft's
//! entries are written into the segments as frames carrying their term and index, once — and
//! the group's state machine is the partition's high watermark, which moves when entries are
//! applied (committed), never before. See docs/design/2026-12-02-replication.md.
//!
//! ```text
//! <partition dir>/NNN.log          the entries' frames (storage's `entries.rs`)
//! <partition dir>/raft-state       "EDDYPRS1", one record (`records.rs`): the vote and the
//!                                  membership entries the log holds; replaced atomically
//! <partition dir>/raft-committed   "EDDYPRC2", term, index, scan-from index, CRC32C: the
//!                                  last committed log id and where the log's transaction
//!                                  state is read again on open; overwritten in place, not
//!                                  synced ("EDDYPRC1", without scan-from, is still read)
//! <partition dir>/txn-aborted      aborted transactions' offsets (storage's `decisions.rs`)
//! ```
//!
//! - **Appends** write the entries at once (readable by replication, not by readers) and hand
//!   the flush to the partition's committer thread (storage's `PartitionLog::flush_then`):
//!   one fdatasync for every append queued while the previous one ran, each append's
//!   `LogFlushed` answered in order, from that thread (a task and a blocking-pool thread in
//!   between cost a group of one a tenth of a millisecond per write, `partition_bench`).
//! - **The committed log id** is saved on every advance without a sync: a value lost in an OS
//!   crash is an older committed id, which is still committed — the partition then shows less
//!   until the leader's next message, never something uncommitted. On open the state machine
//!   starts as having applied it, so nothing is read back to be applied again.
//! - **Transactions**: a statement that writes several partitions writes a `TXN` entry in each
//!   ([`crate::Group::append_txn`]), then, once its coordinator decided, a decision entry
//!   ([`crate::Group::decide`]); readers see the rows only after a commit, never after an
//!   abort (storage's `decisions.rs`). The scan-from index saved with the committed id is
//!   the first undecided entry's, so a restart finds the undecided ones again.
//! - **Memberships** are few: each membership entry is also kept in `raft-state` (synced
//!   before the entry is written), so openraft finds the membership without reading the log.
//! - **Writes** waiting on a node are merged into one entry before openraft sees them
//!   (`proposals.rs`): openraft 0.9 flushes each append before it takes the next.
//! - **Snapshots**: the log is the state; a snapshot is its position. A replica behind the
//!   log's start (segments deleted by retention or tiering) cannot be caught up yet: that is
//!   milestone 4 (the cold manifest plus the hot segments as the snapshot).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_storage::{EncodedFrame, LogConfig, PartitionLog, StoredEntry};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, LogState, Membership, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result, io};
use crate::machine::Applied;
use crate::proposals::Proposals;
use crate::{Reply, Request, TypeConfig, records};

const STATE_MAGIC: &[u8; 8] = b"EDDYPRS1";
const COMMITTED_MAGIC: &[u8; 8] = b"EDDYPRC2";
/// Before transactions: no scan-from index (scan from the committed one).
const COMMITTED_MAGIC_V1: &[u8; 8] = b"EDDYPRC1";
/// Bytes of `raft-committed`: magic, term, index, scan-from index, CRC32C of the three.
const COMMITTED_LEN: usize = 8 + 8 + 8 + 8 + 4;
const COMMITTED_LEN_V1: usize = 8 + 8 + 8 + 4;
/// A batch of entries sent to a follower stops after this many bytes (at least one entry).
/// openraft 0.9 gives an AppendEntries its group's heartbeat interval (150 ms) to be sent,
/// written, flushed and answered, and sends it again when that runs out: a batch must be
/// done well within it on a loaded machine, or the same megabytes go out again and again
/// and replication stalls (cluster_bench with 16 MiB batches and entries of up to 64 MiB:
/// 20M rows never finished).
const SEND_BYTES: u64 = ENTRY_TARGET_BYTES as u64;
/// How large an entry is made when it can be chosen: writes waiting on a node are merged
/// into one entry up to this, and a statement's share is cut into entries of this
/// (`Coordinator`). See `SEND_BYTES`.
pub const ENTRY_TARGET_BYTES: usize = 4 << 20;
/// An entry may be at most this large: one frame (a batch of rows) larger than
/// [`ENTRY_TARGET_BYTES`] is an entry of its own, up to this.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

/// What a partition's file system must keep free after a write of rows: the room for the
/// entries a group cannot refuse (decisions, openraft's blank and membership entries, its
/// `raft-state`, the segments' indexes). Rows that would eat into it are refused before they
/// are proposed (`PartitionLog::ensure_room`), because openraft stops a group whose log store
/// fails a write — as Redpanda keeps `storage_min_free_bytes`.
pub const KEEP_FREE_BYTES: u64 = 8 << 20;

/// What a control frame holds: an openraft entry that is not data.
#[derive(Serialize, Deserialize)]
enum Control {
    Blank,
    Membership(Membership<u64, BasicNode>),
}

/// `raft-state`'s record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct DiskState {
    vote: Option<Vote<u64>>,
    /// The membership entries the log holds, in index order.
    memberships: Vec<(LogId<u64>, Membership<u64, BasicNode>)>,
}

/// What the state machine has applied.
#[derive(Clone, Debug, Default)]
struct AppliedState {
    last: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

struct Inner {
    dir: PathBuf,
    log: Arc<PartitionLog>,
    state: Mutex<DiskState>,
    committed_file: File,
    applied: Mutex<AppliedState>,
    applied_tx: watch::Sender<u64>,
    /// This node's writes waiting to be proposed, merged into entries.
    proposals: Proposals,
    /// The entries appended and not yet applied, as they were appended: openraft's core
    /// reads each round back to apply it, and replication to followers reads the entries it
    /// just appended; both are served from here without a read and decode of the segments.
    recent: Mutex<Recent>,
}

/// See `Inner::recent`: at most [`RECENT_BYTES`] of entries, in index order.
#[derive(Default)]
struct Recent {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    bytes: usize,
}

/// What [`Recent`] holds at most; entries beyond it are read from the segments.
const RECENT_BYTES: usize = 64 << 20;

impl Recent {
    fn push(&mut self, entry: Entry<TypeConfig>) {
        let len = Recent::len(&entry);
        // Kept only in order, after what is held, and within the bound.
        let follows = self
            .entries
            .last_key_value()
            .is_none_or(|(last, _)| *last + 1 == entry.log_id.index);
        if !follows || self.bytes + len > RECENT_BYTES {
            self.clear();
            if len > RECENT_BYTES {
                return;
            }
        }
        self.bytes += len;
        self.entries.insert(entry.log_id.index, entry);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `start..end`, if all are held.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let last = *self.entries.last_key_value()?.0;
        if end > last + 1 {
            return None;
        }
        self.limited(start, end, usize::MAX)
    }

    /// Entries from `start` on, before `end`, while they hold at most `max_bytes` (at least
    /// one), if `start` is held.
    fn limited(&self, start: u64, end: u64, max_bytes: usize) -> Option<Vec<Entry<TypeConfig>>> {
        let first = *self.entries.first_key_value()?.0;
        if start < first || start >= end || !self.entries.contains_key(&start) {
            return None;
        }
        let mut bytes = 0;
        let mut out = Vec::new();
        for (_, entry) in self.entries.range(start..end) {
            bytes += Recent::len(entry);
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Some(out)
    }

    /// Drops the entries up to `index`, applied.
    fn applied(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        self.entries = kept;
        self.bytes = self.entries.values().map(Recent::len).sum();
    }

    /// Drops the entries from `index` on, truncated.
    fn truncated(&mut self, index: u64) {
        self.entries.split_off(&index);
        self.bytes = self.entries.values().map(Recent::len).sum();
    }

    fn len(entry: &Entry<TypeConfig>) -> usize {
        match &entry.payload {
            EntryPayload::Normal(request) => request.bytes().len(),
            _ => 0,
        }
    }
}

/// A partition's Raft log storage (openraft's `RaftLogStorage`); clones share it.
#[derive(Clone)]
pub struct PartitionStore(Arc<Inner>);

/// A partition's state machine: the high watermark (openraft's `RaftStateMachine`); clones
/// share it.
#[derive(Clone)]
pub struct PartitionMachine(Arc<Inner>);

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

/// Opens the partition in `dir` as a Raft log: its store, its state machine, and the log
/// itself (for readers). `fresh`: `dir` held no Raft state yet.
pub fn open(
    dir: &Path,
    config: LogConfig,
    committed_before: &dyn Fn(u64, u64) -> bool,
) -> Result<(PartitionStore, PartitionMachine, Arc<PartitionLog>, bool)> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let state_path = dir.join("raft-state");
    let fresh = !state_path.exists();
    let mut state = read_state(&state_path)?;
    let committed_path = dir.join("raft-committed");
    let (committed, scan_from) = match read_committed(&committed_path)? {
        Some((id, scan_from)) => (Some(id.index), scan_from),
        None => (None, None),
    };
    let log = PartitionLog::open_replicated(dir, config, committed, scan_from, committed_before)
        .map_err(Error::Storage)?;
    let last = log.last_entry().map_err(Error::Storage)?;
    // Memberships of entries a crash kept from being written are not in the log.
    state
        .memberships
        .retain(|(id, _)| last.is_some_and(|(_, l)| id.index <= l));
    let applied = log
        .committed_entry()
        .map_err(Error::Storage)?
        .map(|(term, index)| log_id(term, index));
    let membership = state
        .memberships
        .iter()
        .rev()
        .find(|(id, _)| applied.is_some_and(|a| id.index <= a.index))
        .map(|(id, m)| StoredMembership::new(Some(*id), m.clone()))
        .unwrap_or_default();
    let committed_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&committed_path)
        .map_err(io(&committed_path))?;
    let log = Arc::new(log);
    let inner = Arc::new(Inner {
        dir: dir.to_path_buf(),
        log: log.clone(),
        state: Mutex::new(state),
        committed_file,
        applied: Mutex::new(AppliedState {
            last: applied,
            membership,
        }),
        applied_tx: watch::channel(applied.map_or(0, |a| a.index)).0,
        proposals: Proposals::default(),
        recent: Mutex::default(),
    });
    Ok((
        PartitionStore(inner.clone()),
        PartitionMachine(inner),
        log,
        fresh,
    ))
}

fn read_state(path: &Path) -> Result<DiskState> {
    let Some((at, payload)) = records::read_one(path, STATE_MAGIC, "a partition's Raft state")?
    else {
        return Ok(DiskState::default());
    };
    postcard::from_bytes(&payload).map_err(|e| Error::Damaged {
        path: path.to_path_buf(),
        at,
        why: format!("not a partition's Raft state: {e}"),
    })
}

/// The committed log id saved and the index to scan the log from, if they were and the file
/// is whole (a torn write reads as none: an older committed id is still a committed one).
fn read_committed(path: &Path) -> Result<Option<(LogId<u64>, Option<u64>)>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let v1 = bytes.len() == COMMITTED_LEN_V1 && &bytes[..8] == COMMITTED_MAGIC_V1;
    if !v1 && (bytes.len() != COMMITTED_LEN || &bytes[..8] != COMMITTED_MAGIC) {
        return Ok(None);
    }
    let crc_at = bytes.len() - 4;
    let crc = u32::from_le_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    if crc32c::crc32c(&bytes[8..crc_at]) != crc {
        return Ok(None);
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let scan_from = (!v1).then(|| word(24));
    Ok(Some((log_id(word(8), word(16)), scan_from)))
}

impl Inner {
    /// Replaces `raft-state` with `state`, durably.
    fn save_state(&self, state: &DiskState) -> Result<()> {
        let payload = postcard::to_allocvec(state).map_err(|e| Error::Protocol(e.to_string()))?;
        let mut bytes = STATE_MAGIC.to_vec();
        records::encode(&payload, &mut bytes)?;
        records::replace(&self.dir.join("raft-state"), &bytes)
    }

    fn frames(entry: Entry<TypeConfig>) -> Result<eddy_storage::Entry> {
        let control = |c: &Control| -> Result<Vec<EncodedFrame>> {
            let payload = postcard::to_allocvec(c).map_err(|e| Error::Protocol(e.to_string()))?;
            Ok(vec![
                EncodedFrame::control(&payload).map_err(Error::Storage)?,
            ])
        };
        let frames = match entry.payload {
            EntryPayload::Blank => control(&Control::Blank)?,
            EntryPayload::Membership(m) => control(&Control::Membership(m))?,
            EntryPayload::Normal(request) => {
                EncodedFrame::split(request.bytes()).map_err(Error::Storage)?
            }
        };
        Ok(eddy_storage::Entry {
            term: entry.log_id.leader_id.term,
            index: entry.log_id.index,
            frames,
        })
    }

    fn entry(stored: StoredEntry) -> Result<Entry<TypeConfig>> {
        let payload = if stored.control {
            match postcard::from_bytes(&stored.bytes) {
                Ok(Control::Blank) => EntryPayload::Blank,
                Ok(Control::Membership(m)) => EntryPayload::Membership(m),
                Err(e) => {
                    return Err(Error::Protocol(format!(
                        "control entry {} is not an openraft entry: {e}",
                        stored.index
                    )));
                }
            }
        } else {
            EntryPayload::Normal(Request::new(stored.bytes))
        };
        Ok(Entry {
            log_id: log_id(stored.term, stored.index),
            payload,
        })
    }

    fn read(&self, start: u64, end: u64, max_bytes: u64) -> Result<Vec<Entry<TypeConfig>>> {
        self.log
            .read_entries(start, end, max_bytes)
            .map_err(Error::Storage)?
            .into_iter()
            .map(Inner::entry)
            .collect()
    }
}

fn read_error(e: Error) -> StorageError<u64> {
    StorageIOError::read_logs(&e).into()
}

fn write_error(e: Error) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

fn range_of<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for PartitionStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let (start, end) = range_of(&range);
        if let Some(entries) = self.0.recent.lock().get(start, end) {
            return Ok(entries);
        }
        self.0.read(start, end, u64::MAX).map_err(read_error)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        if let Some(entries) = self
            .0
            .recent
            .lock()
            .limited(start, end, SEND_BYTES as usize)
        {
            return Ok(entries);
        }
        self.0.read(start, end, SEND_BYTES).map_err(read_error)
    }
}

impl RaftLogStorage<TypeConfig> for PartitionStore {
    type LogReader = PartitionStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last = self
            .0
            .log
            .last_entry()
            .map_err(|e| read_error(Error::Storage(e)))?;
        // Retention and the cold tier delete whole segments from the front; the last entry
        // they took is openraft's last purged one (`PartitionLog::purged_entry`).
        let purged = self
            .0
            .log
            .purged_entry()
            .map(|(term, index)| log_id(term, index));
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.map(|(term, index)| log_id(term, index)).or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut state = self.0.state.lock();
        let mut next = state.clone();
        next.vote = Some(*vote);
        self.0
            .save_state(&next)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        *state = next;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.0.state.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let Some(committed) = committed else {
            return Ok(());
        };
        // Where open must read the log again for its transaction state: the log's own
        // answer, which never passes what it applied (openraft may save an id before
        // applying it); from the start when it applied nothing yet.
        let scan_from = self
            .0
            .log
            .resume_entry()
            .map_err(|e| write_error(Error::Storage(e)))?
            .unwrap_or(0)
            .min(committed.index);
        let mut bytes = Vec::with_capacity(COMMITTED_LEN);
        bytes.extend_from_slice(COMMITTED_MAGIC);
        bytes.extend_from_slice(&committed.leader_id.term.to_le_bytes());
        bytes.extend_from_slice(&committed.index.to_le_bytes());
        bytes.extend_from_slice(&scan_from.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[8..32]);
        bytes.extend_from_slice(&crc.to_le_bytes());
        // In place, not synced: see the module docs.
        self.0
            .committed_file
            .write_all_at(&bytes, 0)
            .map_err(|e| write_error(io(&self.0.dir.join("raft-committed"))(e)))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        read_committed(&self.0.dir.join("raft-committed"))
            .map(|saved| saved.map(|(id, _)| id))
            .map_err(read_error)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut memberships = Vec::new();
        // This node's proposer's rounds among the entries: (index, round).
        let mut rounds = Vec::new();
        let mut kept = Vec::new();
        let result = (|| -> Result<()> {
            for entry in entries {
                kept.push(entry.clone());
                match &entry.payload {
                    EntryPayload::Membership(m) => memberships.push((entry.log_id, m.clone())),
                    EntryPayload::Normal(request) => rounds.extend(
                        request
                            .proposed_round()
                            .map(|round| (entry.log_id.index, round)),
                    ),
                    EntryPayload::Blank => {}
                }
                batch.push(Inner::frames(entry)?);
            }
            if !memberships.is_empty() {
                let mut state = self.0.state.lock();
                let mut next = state.clone();
                next.memberships.extend(memberships);
                self.0.save_state(&next)?;
                *state = next;
            }
            self.0.log.write_entries(batch).map_err(Error::Storage)
        })();
        {
            let mut recent = self.0.recent.lock();
            match &result {
                Ok(()) => kept.into_iter().for_each(|e| recent.push(e)),
                Err(_) => recent.clear(),
            }
        }
        match result {
            Ok(()) => {
                self.0.proposals.appended(&rounds);
                let inner = self.0.clone();
                self.0.log.flush_then(move |flushed| {
                    // The proposer first: its next round is on its way while openraft's
                    // core commits this one.
                    if flushed.is_ok() {
                        inner.proposals.flushed(&rounds);
                    }
                    callback.log_io_completed(flushed.map_err(std::io::Error::other));
                });
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let result = (|| -> Result<()> {
            self.0
                .log
                .truncate_entries(log_id.index)
                .map_err(Error::Storage)?;
            self.0.proposals.truncated(log_id.index);
            self.0.recent.lock().truncated(log_id.index);
            let mut state = self.0.state.lock();
            if state
                .memberships
                .iter()
                .any(|(id, _)| id.index >= log_id.index)
            {
                let mut next = state.clone();
                next.memberships.retain(|(id, _)| id.index < log_id.index);
                self.0.save_state(&next)?;
                *state = next;
            }
            Ok(())
        })();
        result.map_err(write_error)
    }

    async fn purge(&mut self, _log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // The segments are the data: retention and tiering delete them, not Raft (partition
        // groups never snapshot, so openraft never asks to purge).
        Ok(())
    }
}

impl Applied for PartitionMachine {
    fn applied(&self) -> watch::Receiver<u64> {
        self.0.applied_tx.subscribe()
    }

    /// Closes the partition's log (synced, its directory lock released): the partition can
    /// be opened again at once, though a task of the stopped core may still hold it.
    fn close(&self) -> Result<()> {
        self.0.log.close().map_err(Error::Storage)
    }
}

impl PartitionMachine {
    /// The partition's log, to read (up to its high watermark).
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.0.log
    }

    /// This node's writes waiting to be proposed.
    pub(crate) fn proposals(&self) -> &Proposals {
        &self.0.proposals
    }
}

fn sm_error(e: Error) -> StorageError<u64> {
    StorageIOError::write_state_machine(&e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let applied = self.0.applied.lock().clone();
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership,
            snapshot_id: applied.last.map_or("empty".into(), |l| {
                format!("{}-{}", l.leader_id.term, l.index)
            }),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for PartitionMachine {
    type SnapshotBuilder = PartitionMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let applied = self.0.applied.lock();
        Ok((applied.last, applied.membership.clone()))
    }

    /// Moves the high watermark past the entries; each data entry is answered with its
    /// offsets `(base, next)`.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let committed = self
            .0
            .log
            .commit_entries(last.index)
            .map_err(|e| sm_error(Error::Storage(e)))?;
        let mut replies = Vec::with_capacity(entries.len());
        // This node's proposer's rounds are answered here, not by openraft's reply (see
        // `proposals.rs`): after the high watermark moved, so the rows are readable.
        let mut answers = Vec::new();
        {
            let mut applied = self.0.applied.lock();
            for entry in &entries {
                if let EntryPayload::Membership(m) = &entry.payload {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                let offsets = committed
                    .iter()
                    .find(|(index, _, _)| *index == entry.log_id.index)
                    .map(|&(_, base, next)| (base, next));
                let reply = postcard::to_allocvec(&offsets)
                    .map_err(|e| sm_error(Error::Protocol(e.to_string())))?;
                replies.push(Reply(reply));
                if matches!(entry.payload, EntryPayload::Normal(_)) {
                    answers.push((entry.log_id.index, offsets));
                }
            }
            applied.last = Some(last);
        }
        self.0.applied_tx.send_replace(last.index);
        self.0.recent.lock().applied(last.index);
        for (index, offsets) in answers {
            self.0.proposals.applied(index, offsets);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        Err(sm_error(Error::Raft {
            group: 0,
            why: "a partition replica behind the log's start cannot be caught up by a \
                  snapshot yet"
                .into(),
        }))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(None)
    }
}

/// The offsets a partition group's write was given: `Some((base, next))`, or `None` when the
/// reply is not a data entry's.
pub fn decode_offsets(reply: &[u8]) -> Result<Option<(u64, u64)>> {
    postcard::from_bytes(reply).map_err(|e| Error::Protocol(format!("a partition's reply: {e}")))
}

/// The bytes of a partition write: the frames of one statement group, one after the other
/// (sealed again where they are appended; `Group::append` refused control frames). Refused
/// when empty or above [`MAX_ENTRY_BYTES`].
pub fn encode_frames(frames: Vec<EncodedFrame>) -> Result<Vec<u8>> {
    let len: usize = frames.iter().map(|f| f.len() as usize).sum();
    if frames.is_empty() {
        return Err(Error::Protocol("a partition write holds no frame".into()));
    }
    if len > MAX_ENTRY_BYTES {
        return Err(Error::Protocol(format!(
            "a partition write of {len} bytes is above the {MAX_ENTRY_BYTES} a Raft entry holds"
        )));
    }
    let mut bytes = Vec::with_capacity(len);
    for frame in frames {
        bytes.extend_from_slice(frame.bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Request;

    fn entry(index: u64, len: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Request::new(vec![index as u8; len])),
        }
    }

    #[test]
    fn recent_entries_are_served_only_whole_and_leave_when_applied_or_truncated() {
        let mut recent = Recent::default();
        for i in 5..10 {
            recent.push(entry(i, 10));
        }
        let got = |r: &Recent, s, e| {
            r.get(s, e)
                .map(|v| v.iter().map(|e| e.log_id.index).collect::<Vec<_>>())
        };
        assert_eq!(got(&recent, 5, 10), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(got(&recent, 4, 10), None, "index 4 is not held");
        assert_eq!(got(&recent, 6, 11), None, "index 10 is not held");
        let limited = recent.limited(6, u64::MAX, 25).unwrap();
        assert_eq!(limited.len(), 2);
        recent.applied(6);
        assert_eq!(got(&recent, 6, 8), None);
        assert_eq!(got(&recent, 7, 10), Some(vec![7, 8, 9]));
        recent.truncated(9);
        assert_eq!(got(&recent, 7, 10), None);
        assert_eq!(recent.bytes, 20);
        // An entry that does not follow replaces what is held.
        recent.push(entry(20, 10));
        assert_eq!(got(&recent, 7, 9), None);
        assert_eq!(got(&recent, 20, 21), Some(vec![20]));
        // Nothing beyond the bound is held.
        recent.push(entry(21, RECENT_BYTES + 1));
        assert_eq!(recent.bytes, 0);
        assert_eq!(got(&recent, 21, 22), None);
    }
}
