//! `FileLog`: a group's Raft log and vote in two files, for groups whose log is small (the
//! metadata group's DDL). Partition groups keep their log in the partition's segments instead.
//!
//! ```text
//! <dir>/raft.log   "EDDYRLG2", then records (`records.rs`), each an `Op`: an entry, or the
//!                  log id everything up to which was purged
//! <dir>/vote       "EDDYVOT2", then one record: the vote; replaced atomically
//! ```
//!
//! Version 2 of both (2026-12-02): log ids and votes of single-term leaders (openraft's
//! `single-term-leader`: one leader per term, as Raft has it, so a frame's term names its
//! entry's leader); version-1 files are refused with their version named.
//!
//! ```text
//! ```
//!
//! Every operation is durable before it returns or reports its flush: an append is written and
//! fdatasynced, then reported; a truncation cuts the file and syncs it; a vote is written to a
//! new file, synced and renamed over the old, and the directory synced. The whole log is also
//! kept in memory (it is DDL: small), and the file is rewritten without purged entries once they
//! are most of it. The I/O is done inline on the caller's task: DDL is rare and its fsync short,
//! and a group's storage calls are serial anyway.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::TypeConfig;
use crate::error::{Error, Result, io};
use crate::records;

const LOG_MAGIC: &[u8; 8] = b"EDDYRLG2";
const VOTE_MAGIC: &[u8; 8] = b"EDDYVOT2";
/// The log file is rewritten when purged entries' records are more than this many bytes and
/// more than half of it.
const REWRITE_ABOVE_BYTES: u64 = 1024 * 1024;

/// One record of `raft.log`.
#[derive(Deserialize)]
enum Op {
    Entry(Entry<TypeConfig>),
    Purged(LogId<u64>),
}

/// An [`Op`] to write, borrowing its entry (serde writes `&T` as `T`: the bytes decode as
/// an `Op`).
#[derive(Serialize)]
enum OpRef<'a> {
    Entry(&'a Entry<TypeConfig>),
    Purged(LogId<u64>),
}

/// A group's log and vote on disk; clones share it (the log reader openraft asks for is one).
#[derive(Clone)]
pub struct FileLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Bytes of valid records: where the next one is written.
    len: u64,
    /// Entries by index, with where each record starts.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    last_purged: Option<LogId<u64>>,
    /// Where the record of `last_purged` starts, if one is in the file.
    purged_at: Option<u64>,
    vote: Option<Vote<u64>>,
}

impl FileLog {
    /// Opens (or creates) the log in `dir`. A torn last record is cut off; damage anywhere else
    /// fails the open, changing nothing.
    pub fn open(dir: &Path) -> Result<FileLog> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("raft.log");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let contents = records::read(&bytes, LOG_MAGIC, &path)?;
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut purged_at = None;
        for record in &contents.records {
            let op: Op = postcard::from_bytes(record.payload).map_err(|e| Error::Damaged {
                path: path.clone(),
                at: record.at,
                why: format!("a record that is not a log operation: {e}"),
            })?;
            match op {
                Op::Entry(entry) => {
                    // A later entry at an index replaces the earlier one and everything after it
                    // (a truncation that a crash kept from being cut), as Raft's rule says.
                    let index = entry.log_id.index;
                    entries.split_off(&index);
                    entries.insert(index, (entry, record.at));
                }
                Op::Purged(log_id) => {
                    entries = entries.split_off(&(log_id.index + 1));
                    last_purged = Some(log_id);
                    purged_at = Some(record.at);
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut len = contents.valid_end;
        if len == 0 {
            file.write_all(LOG_MAGIC).map_err(io(&path))?;
            len = LOG_MAGIC.len() as u64;
            records::sync_dir(dir)?;
        }
        if (len as usize) < bytes.len() || bytes.is_empty() {
            file.set_len(len).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let vote = read_vote(dir)?;
        Ok(FileLog {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                len,
                entries,
                last_purged,
                purged_at,
                vote,
            })),
        })
    }
}

impl FileLog {
    /// Records that everything up to `log_id` is purged (the log of a group seeded from a
    /// snapshot starts after it).
    pub(crate) fn purged_up_to(&self, log_id: LogId<u64>) -> Result<()> {
        self.inner.lock().purge(log_id)
    }
}

fn read_vote(dir: &Path) -> Result<Option<Vote<u64>>> {
    let path = dir.join("vote");
    let Some((at, payload)) = records::read_one(&path, VOTE_MAGIC, "a vote file")? else {
        return Ok(None);
    };
    postcard::from_bytes(&payload)
        .map(Some)
        .map_err(|e| Error::Damaged {
            path,
            at,
            why: format!("not a vote: {e}"),
        })
}

impl Inner {
    fn path(&self) -> PathBuf {
        self.dir.join("raft.log")
    }

    /// Appends records and syncs them; on a failed write the partial bytes are cut off.
    fn write_records(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.path();
        if let Err(e) = self.file.write_all_at(bytes, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(io(&path)(e));
        }
        self.file.sync_data().map_err(io(&path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn encode(op: &OpRef<'_>, out: &mut Vec<u8>) -> Result<()> {
        let payload = postcard::to_stdvec(op)
            .map_err(|e| Error::Protocol(format!("encoding a log record: {e}")))?;
        records::encode(&payload, out)
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> Result<()> {
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(entries.len());
        for entry in &entries {
            starts.push(self.len + bytes.len() as u64);
            Self::encode(&OpRef::Entry(entry), &mut bytes)?;
        }
        self.write_records(&bytes)?;
        for (entry, at) in entries.into_iter().zip(starts) {
            self.entries.insert(entry.log_id.index, (entry, at));
        }
        Ok(())
    }

    /// Removes entries at `index` and after: the file is cut where the first of them starts
    /// (and the purge record, if it was after, is written again).
    fn truncate(&mut self, index: u64) -> Result<()> {
        let Some((_, (_, at))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        let at = *at;
        let path = self.path();
        self.file.set_len(at).map_err(io(&path))?;
        self.file.sync_all().map_err(io(&path))?;
        self.len = at;
        self.entries.split_off(&index);
        if let (Some(log_id), Some(purged_at)) = (self.last_purged, self.purged_at)
            && purged_at >= at
        {
            self.purge(log_id)?;
        }
        Ok(())
    }

    fn purge(&mut self, log_id: LogId<u64>) -> Result<()> {
        let mut bytes = Vec::new();
        Self::encode(&OpRef::Purged(log_id), &mut bytes)?;
        let at = self.len;
        self.write_records(&bytes)?;
        self.entries = self.entries.split_off(&(log_id.index + 1));
        self.last_purged = Some(log_id);
        self.purged_at = Some(at);
        let live = self
            .entries
            .values()
            .next()
            .map(|(_, at)| *at)
            .unwrap_or(at);
        let dead = live.saturating_sub(LOG_MAGIC.len() as u64);
        if dead > REWRITE_ABOVE_BYTES && dead * 2 > self.len {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the live records to a new file and renames it over the log.
    fn rewrite(&mut self) -> Result<()> {
        let path = self.path();
        let fresh = self.dir.join("raft.log.new");
        let mut bytes = LOG_MAGIC.to_vec();
        let mut purged_at = None;
        if let Some(log_id) = self.last_purged {
            purged_at = Some(bytes.len() as u64);
            Self::encode(&OpRef::Purged(log_id), &mut bytes)?;
        }
        let mut starts = Vec::new();
        for (entry, _) in self.entries.values() {
            starts.push(bytes.len() as u64);
            Self::encode(&OpRef::Entry(entry), &mut bytes)?;
        }
        let mut file = File::create(&fresh).map_err(io(&fresh))?;
        file.write_all(&bytes).map_err(io(&fresh))?;
        file.sync_all().map_err(io(&fresh))?;
        fs::rename(&fresh, &path).map_err(io(&path))?;
        records::sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        self.len = bytes.len() as u64;
        self.purged_at = purged_at;
        for ((_, at), start) in self.entries.values_mut().zip(starts) {
            *at = start;
        }
        Ok(())
    }

    fn save_vote(&mut self, vote: &Vote<u64>) -> Result<()> {
        let payload = postcard::to_stdvec(vote)
            .map_err(|e| Error::Protocol(format!("encoding a vote: {e}")))?;
        let mut bytes = VOTE_MAGIC.to_vec();
        records::encode(&payload, &mut bytes)?;
        records::replace(&self.dir.join("vote"), &bytes)?;
        self.vote = Some(*vote);
        Ok(())
    }
}

fn write_error(e: Error) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for FileLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for FileLog {
    type LogReader = FileLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|(e, _)| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.inner
            .lock()
            .save_vote(vote)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.inner.lock().vote)
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
        let result = self.inner.lock().append(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.inner
            .lock()
            .truncate(log_id.index)
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.inner.lock().purge(log_id).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::Request;

    fn entry(term: u64, index: u64, text: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Request::new(text.as_bytes().to_vec())),
        }
    }

    fn indexes(log: &FileLog) -> Vec<(u64, u64)> {
        log.inner
            .lock()
            .entries
            .values()
            .map(|(e, _)| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    fn append(log: &FileLog, entries: Vec<Entry<TypeConfig>>) {
        log.inner.lock().append(entries).unwrap();
    }

    #[test]
    fn entries_truncation_purge_and_vote_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        append(&log, (1..=5).map(|i| entry(1, i, "x")).collect());
        log.inner.lock().truncate(4).unwrap();
        append(&log, vec![entry(2, 4, "y")]);
        log.inner
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        let vote = Vote::new(2, 3);
        log.inner.lock().save_vote(&vote).unwrap();
        drop(log);

        let log = FileLog::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![(1, 3), (2, 4)]);
        let inner = log.inner.lock();
        assert_eq!(inner.last_purged.map(|l| l.index), Some(2));
        assert_eq!(inner.vote, Some(vote));
    }

    #[test]
    fn a_truncation_before_the_purge_record_keeps_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        append(&log, (1..=6).map(|i| entry(1, i, "x")).collect());
        let purged = LogId::new(CommittedLeaderId::new(1, 1), 2);
        log.inner.lock().purge(purged).unwrap();
        log.inner.lock().truncate(5).unwrap();
        drop(log);
        let log = FileLog::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![(1, 3), (1, 4)]);
        assert_eq!(log.inner.lock().last_purged, Some(purged));
    }

    #[test]
    fn a_torn_append_is_dropped_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        append(&log, vec![entry(1, 1, "kept"), entry(1, 2, "torn")]);
        let at = log.inner.lock().entries[&2].1;
        drop(log);
        let path = dir.path().join("raft.log");
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(at + 5).unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![(1, 1)]);
        append(&log, vec![entry(1, 2, "again")]);
        drop(log);
        assert_eq!(
            indexes(&FileLog::open(dir.path()).unwrap()),
            vec![(1, 1), (1, 2)]
        );
    }

    #[test]
    fn damage_before_the_tail_refuses_the_open_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        append(&log, (1..=3).map(|i| entry(1, i, "abc")).collect());
        drop(log);
        let path = dir.path().join("raft.log");
        let mut bytes = fs::read(&path).unwrap();
        bytes[LOG_MAGIC.len() + 9] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = FileLog::open(dir.path())
            .err()
            .expect("damage must refuse the open");
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_purged_log_is_rewritten_without_its_dead_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        let big = "x".repeat(64 * 1024);
        append(&log, (1..=40).map(|i| entry(1, i, &big)).collect());
        let before = log.inner.lock().len;
        log.inner
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 35))
            .unwrap();
        let after = log.inner.lock().len;
        assert!(after < before / 4, "{after} of {before} bytes left");
        append(&log, vec![entry(1, 41, "y")]);
        drop(log);
        let log = FileLog::open(dir.path()).unwrap();
        assert_eq!(indexes(&log).first(), Some(&(1, 36)));
        assert_eq!(indexes(&log).last(), Some(&(1, 41)));
    }
}
