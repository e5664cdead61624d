//! Topics: named sets of partition logs laid out under one root directory.
//!
//! Layout: `<root>/<storage>/<partition>/` holds one [`PartitionLog`], where `<storage>` is
//! the topic's storage name, assigned by the catalog (never a user's name: a name never
//! becomes a path); the cold tier uses the same storage name as the topic's object prefix.
//! The catalog decides which topics exist; this module only creates, opens and deletes their
//! directories, and it deletes only what its caller names as dropped: a directory that is
//! neither open nor dropped is an orphan, moved to `<root>/../lost+found/`, never removed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::rounds::{CommitRounds, Work};
use crate::tier::{ColdPartition, ColdStore};
use crate::txn::{GroupRef, StoreGroup, TxnLog};
use crate::{EncodedFrame, Error, LogConfig, PartitionLog, PartitionRead, ReadRequest, Result};

/// One atomic append's frames for one topic: each partition written and its frames, in order.
pub type PartitionFrames = Vec<(usize, Vec<EncodedFrame>)>;

/// Snapshots of a topic whose partitions are Raft logs: a statement over several of them is
/// decided in each partition on its own, so only its writer's coordinator knows which of
/// their rows may be read together. Implemented by the replication layer.
pub trait Visibility: Send + Sync + std::fmt::Debug {
    /// Each partition's high watermark, capped so that no statement is in them in part
    /// (`logs` in partition order).
    fn high_watermarks(&self, logs: &[Arc<PartitionLog>]) -> Vec<u64>;
}

/// One topic: its partitions, indexed by partition number, each with its cold tier.
#[derive(Debug)]
pub struct Topic {
    name: String,
    storage: String,
    partitions: Vec<Arc<PartitionLog>>,
    cold: Vec<Arc<ColdPartition>>,
    /// Commit records of multi-partition appends (`txn.log`).
    txn: Mutex<TxnLog<GroupRef>>,
    /// Held for writing while a multi-partition append publishes its groups, for reading
    /// while [`Topic::high_watermarks`] takes its snapshot: no snapshot holds part of one.
    visibility: RwLock<()>,
    /// Who takes snapshots of a topic whose partitions are Raft logs (their statements are
    /// decided partition by partition, by the replication layer): see [`Visibility`].
    snapshots: Option<Arc<dyn Visibility>>,
    /// Concurrent multi-partition appends, merged into rounds.
    rounds: CommitRounds<PartitionFrames>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's storage name: its directory and cold-tier prefix.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// All partitions, in partition order.
    pub fn partitions(&self) -> &[Arc<PartitionLog>] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, p: usize) -> Option<&Arc<PartitionLog>> {
        self.partitions.get(p)
    }

    /// One partition's cold tier.
    pub fn cold(&self, p: usize) -> Option<&Arc<ColdPartition>> {
        self.cold.get(p)
    }

    /// A read of partition `p` across both tiers ([`PartitionRead`]).
    pub fn read(&self, p: u32, request: ReadRequest) -> Result<PartitionRead> {
        let log = self.partitions.get(p as usize).ok_or_else(|| {
            Error::InvalidArgument(format!("topic {} has no partition {p}", self.name))
        })?;
        PartitionRead::open(log, self.cold.get(p as usize), p, request)
    }

    /// The first offset partition `p` still holds, in either tier (`None`: no such partition).
    pub fn first_offset(&self, p: u32) -> Option<u64> {
        let log = self.partitions.get(p as usize)?;
        let cold = self
            .cold
            .get(p as usize)
            .and_then(|c| c.objects().first().map(|o| o.base_offset));
        Some(cold.unwrap_or_else(|| log.log_start_offset()))
    }

    /// Every partition's high watermark, taken together: a multi-partition append is either
    /// in all of them or in none. A scan that reads up to these offsets reads one consistent
    /// state of the topic.
    pub fn high_watermarks(&self) -> Vec<u64> {
        if let Some(snapshots) = &self.snapshots {
            return snapshots.high_watermarks(&self.partitions);
        }
        let _snapshot = self.visibility.read();
        self.partitions.iter().map(|p| p.high_watermark()).collect()
    }

    /// Appends one statement's frames to several partitions, all or nothing: for readers
    /// (none sees any part before all of it, see [`Topic::high_watermarks`]), across a crash
    /// (none of it survives unless all of it was committed) and on failure (a failed write or
    /// sync in one partition cuts the statement off every partition). Each entry is a
    /// partition and its frames. One partition is a plain [`PartitionLog::append_encoded`].
    ///
    /// How: the partitions' append locks are taken in partition order, each partition's frames
    /// are written as one `TXN` group and synced (the partitions in parallel), then one commit
    /// record naming every group is appended to the topic's `txn.log` and synced — the commit
    /// point — and only then are the groups published, under the visibility lock. No other
    /// write reaches those partitions in between, so an uncommitted group is always the last
    /// of its partition and recovery can drop it. Concurrent multi-partition appends are
    /// merged into rounds that share those fsyncs (see the `rounds` module).
    pub fn append_atomic(&self, mut work: PartitionFrames) -> Result<()> {
        work.retain(|(_, frames)| !frames.is_empty());
        work.sort_by_key(|(p, _)| *p);
        if let [(p, _)] = work.as_slice() {
            let p = *p;
            let frames = work.pop().map(|(_, f)| f).unwrap_or_default();
            self.log(p)?.append_encoded(frames)?;
            return Ok(());
        }
        if work.is_empty() {
            return Ok(());
        }
        for (p, _) in &work {
            self.log(*p)?;
        }
        self.rounds.commit(work, |merged| self.append_now(merged))
    }

    /// One round of [`Topic::append_atomic`]'s multi-partition appends: their frames merged
    /// per partition (see the `rounds` module), committed as one atomic append.
    fn append_now(&self, mut work: PartitionFrames) -> Result<()> {
        work.sort_by_key(|(p, _)| *p);
        let mut parts = work
            .into_iter()
            .map(|(p, frames)| Ok((self.log(p)?.as_ref(), p as u32, frames)))
            .collect::<Result<Vec<_>>>()?;
        let numbers: Vec<u32> = parts.iter().map(|(_, p, _)| *p).collect();
        commit_groups(
            &mut parts,
            |offsets| {
                let refs: Vec<GroupRef> = numbers
                    .iter()
                    .zip(offsets)
                    .map(|(&p, &(base, next))| (p, base, next))
                    .collect();
                self.txn.lock().commit(refs, |&(p, base, next)| {
                    self.is_last_txn_group(p, base, next)
                })
            },
            &[&self.visibility],
        )
    }

    fn log(&self, p: usize) -> Result<&Arc<PartitionLog>> {
        self.partitions.get(p).ok_or_else(|| {
            Error::InvalidArgument(format!("topic {} has no partition {p}", self.name))
        })
    }

    /// Whether `[base, next)` is partition `p`'s last group and was written by an atomic
    /// append (its commit record is still needed by recovery).
    fn is_last_txn_group(&self, p: u32, base: u64, next: u64) -> bool {
        self.partitions
            .get(p as usize)
            .and_then(|log| log.last_txn_group())
            == Some((base, next))
    }
}

/// Writes each part (a partition's log, its number, its frames; in the global lock order:
/// topic storage name, then partition) as one `TXN` group and syncs it — the partitions in
/// parallel —, then calls `commit` with every group's offsets (it makes the commit record
/// durable: the commit point), then publishes every group under the `visibility` locks. No
/// other write reaches those partitions in between (their append locks are held throughout),
/// so an uncommitted group is always the last of its partition and recovery can drop it. A
/// failed write, sync or commit cuts every group off its file before the error returns.
fn commit_groups(
    parts: &mut [(&PartitionLog, u32, Vec<EncodedFrame>)],
    commit: impl FnOnce(&[(u64, u64)]) -> Result<()>,
    visibility: &[&RwLock<()>],
) -> Result<()> {
    let mut groups = Vec::with_capacity(parts.len());
    for (log, _, frames) in parts.iter_mut() {
        groups.push(log.begin_group(frames, true)?);
    }
    let written: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .zip(parts.iter())
            .map(|(group, (_, _, frames))| {
                scope.spawn(move || {
                    group.write(frames)?;
                    group.segment().sync().inspect_err(|_| group.fail_stop())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::InvalidArgument("append thread panicked".into()))
                })
            })
            .collect()
    });
    if let Some(e) = written.into_iter().find_map(Result::err) {
        groups.into_iter().for_each(|g| g.abort());
        return Err(e);
    }
    crate::failpoint::crash_point("append-before-commit");
    let offsets: Vec<(u64, u64)> = groups.iter().map(|g| g.offsets()).collect();
    if let Err(e) = commit(&offsets) {
        groups.into_iter().for_each(|g| g.abort());
        return Err(e);
    }
    crate::failpoint::crash_point("append-after-commit");
    let _publish: Vec<_> = visibility.iter().map(|v| v.write()).collect();
    for group in groups {
        group.apply_synced();
    }
    Ok(())
}

/// The topics of one node, keyed by storage name.
#[derive(Debug)]
pub struct TopicStore {
    root: PathBuf,
    cold_store: Option<ColdStore>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Commit records of appends that span topics (`transactions.log` in the root).
    txn: Mutex<TxnLog<StoreGroup>>,
    /// The groups that log named when the store opened, by storage name: recovery of each
    /// topic keeps a last `TXN` group one of them names.
    committed_across: HashMap<String, HashSet<GroupRef>>,
    /// Concurrent atomic appends, merged into rounds.
    rounds: CommitRounds<Work>,
}

fn io_err<'a>(path: &'a Path, context: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        context: format!("{context} {}", path.display()),
        source,
    }
}

/// Refuses a storage name that is not one plain directory name (the catalog never assigns
/// one; this guards the one place where a name is joined onto a path).
fn checked(storage: &str) -> Result<&str> {
    let plain = !storage.is_empty()
        && storage.len() <= 255
        && storage != "."
        && storage != ".."
        && storage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        Ok(storage)
    } else {
        Err(Error::InvalidArgument(format!(
            "\"{storage}\" is not a plain directory name"
        )))
    }
}

impl TopicStore {
    /// Opens the topic root (creating it), with no cold tier. No topic is opened until
    /// asked for.
    pub fn open(root: &Path) -> Result<TopicStore> {
        Self::open_with_cold_store(root, None)
    }

    /// Opens the topic root (creating it); closed segments past local retention tier to
    /// `cold_store`.
    pub fn open_with_cold_store(root: &Path, cold_store: Option<ColdStore>) -> Result<TopicStore> {
        fs::create_dir_all(root).map_err(io_err(root, "creating topic root"))?;
        // Rewritten whole at open (a torn last record is dropped); compacted as it grows.
        let records = TxnLog::<StoreGroup>::read(root)?;
        let mut committed_across: HashMap<String, HashSet<GroupRef>> = HashMap::new();
        for (storage, group) in records.iter().flatten() {
            committed_across
                .entry(storage.clone())
                .or_default()
                .insert(*group);
        }
        let txn = TxnLog::rewrite(root, records)?;
        Ok(TopicStore {
            root: root.to_path_buf(),
            cold_store,
            topics: RwLock::new(HashMap::new()),
            txn: Mutex::new(txn),
            committed_across,
            rounds: CommitRounds::default(),
        })
    }

    /// The cold store, if any.
    pub fn cold_store(&self) -> Option<&ColdStore> {
        self.cold_store.as_ref()
    }

    fn topic_dir(&self, storage: &str) -> Result<PathBuf> {
        Ok(self.root.join(checked(storage)?))
    }

    /// Where orphan directories are moved: `lost+found/` beside the topic root.
    pub fn lost_and_found(&self) -> PathBuf {
        self.root.parent().unwrap_or(&self.root).join("lost+found")
    }

    /// Opens topic `name` stored as `storage` (creating missing partition directories),
    /// running recovery. If it fails, the partitions it had opened are closed again.
    pub fn open_topic(
        &self,
        name: &str,
        storage: &str,
        partitions: u32,
        config: LogConfig,
    ) -> Result<Arc<Topic>> {
        let dir = self.topic_dir(storage)?;
        fs::create_dir_all(&dir).map_err(io_err(&dir, "creating"))?;
        let committed = TxnLog::<GroupRef>::committed(&dir)?;
        let across = self.committed_across.get(storage);
        let logs = (0..partitions)
            .map(|p| {
                let is_committed = |base, next| {
                    committed.contains(&(p, base, next))
                        || across.is_some_and(|a| a.contains(&(p, base, next)))
                };
                PartitionLog::open_resolving(
                    &dir.join(p.to_string()),
                    config.clone(),
                    &is_committed,
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        // Only the records of groups that are still the last of their partition matter.
        let keep: Vec<Vec<GroupRef>> = logs
            .iter()
            .enumerate()
            .filter_map(|(p, log)| {
                log.last_txn_group()
                    .map(|(base, next)| vec![(p as u32, base, next)])
            })
            .collect();
        let txn = match TxnLog::rewrite(&dir, keep) {
            Ok(txn) => txn,
            Err(e) => {
                for log in &logs {
                    let _closed = log.close();
                }
                return Err(e);
            }
        };
        let cold = match self.cold_tiers(&dir, storage, partitions) {
            Ok(cold) => cold,
            Err(e) => {
                for log in &logs {
                    let _closed = log.close();
                }
                return Err(e);
            }
        };
        Ok(self.serve(Topic {
            name: name.to_string(),
            storage: storage.to_string(),
            partitions: logs,
            cold,
            txn: Mutex::new(txn),
            visibility: RwLock::new(()),
            snapshots: None,
            rounds: CommitRounds::default(),
        }))
    }

    /// Each partition's cold tier, for a topic of `partitions` in `dir`.
    fn cold_tiers(
        &self,
        dir: &Path,
        storage: &str,
        partitions: u32,
    ) -> Result<Vec<Arc<ColdPartition>>> {
        (0..partitions)
            .map(|p| {
                ColdPartition::open(
                    &dir.join(p.to_string()),
                    storage,
                    p,
                    self.cold_store.clone(),
                )
                .map(Arc::new)
            })
            .collect()
    }

    /// Registers an opened topic, served from now on.
    fn serve(&self, topic: Topic) -> Arc<Topic> {
        let topic = Arc::new(topic);
        self.topics
            .write()
            .insert(topic.storage.clone(), topic.clone());
        topic
    }

    /// The one-node multi-partition groups of topic `storage` whose commit record is durable
    /// (its `txn.log`, and the store's `transactions.log`), as (partition, base, next): what
    /// [`PartitionLog::open_replicated`] keeps of a last such group when a partition of the
    /// topic becomes a Raft log.
    pub fn committed_before(&self, storage: &str) -> Result<HashSet<GroupRef>> {
        let dir = self.topic_dir(storage)?;
        let mut committed = if dir.exists() {
            TxnLog::<GroupRef>::committed(&dir)?
        } else {
            HashSet::new()
        };
        if let Some(across) = self.committed_across.get(storage) {
            committed.extend(across.iter().copied());
        }
        Ok(committed)
    }

    /// The directory of partition `p` of topic `storage`, created if missing: where the
    /// replication layer opens the partition's Raft log for [`TopicStore::adopt_topic`].
    pub fn partition_dir(&self, storage: &str, p: u32) -> Result<PathBuf> {
        let dir = self.topic_dir(storage)?.join(p.to_string());
        fs::create_dir_all(&dir).map_err(io_err(&dir, "creating"))?;
        Ok(dir)
    }

    /// Serves topic `name` stored as `storage` from partition logs opened elsewhere (the
    /// replication layer's Raft logs, in [`TopicStore::partition_dir`]), with their cold
    /// tiers; `visibility` takes its snapshots ([`Topic::high_watermarks`]).
    pub fn adopt_topic(
        &self,
        name: &str,
        storage: &str,
        logs: Vec<Arc<PartitionLog>>,
        visibility: Arc<dyn Visibility>,
    ) -> Result<Arc<Topic>> {
        let dir = self.topic_dir(storage)?;
        let cold = self.cold_tiers(&dir, storage, logs.len() as u32)?;
        // The records stay: until a partition's first Raft entry is durable, its next open
        // must find its last one-node group's record again (`committed_before`).
        let txn = TxnLog::rewrite(&dir, TxnLog::<GroupRef>::read(&dir)?)?;
        Ok(self.serve(Topic {
            name: name.to_string(),
            storage: storage.to_string(),
            partitions: logs,
            cold,
            txn: Mutex::new(txn),
            visibility: RwLock::new(()),
            snapshots: Some(visibility),
            rounds: CommitRounds::default(),
        }))
    }

    /// An open topic by storage name.
    pub fn topic(&self, storage: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(storage).cloned()
    }

    /// All open topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Appends to several topics at once, all or nothing — a transaction's writes: each entry
    /// is a topic and its partitions' frames, as for [`Topic::append_atomic`] (which this is
    /// for one topic). Across topics the commit point is one record in the store's
    /// `transactions.log`; every topic's groups are then published under each topic's
    /// visibility lock, all held together, so a scan of any one topic sees all of its part
    /// or none. The append locks are taken in storage-name then partition order, the order
    /// every atomic append uses, so two of them never wait on each other in a cycle.
    ///
    /// Concurrent calls are committed in rounds: the appends waiting while one commits are
    /// merged into one atomic append (see the `rounds` module), so they share its fsyncs.
    pub fn append_across(&self, mut work: Vec<(Arc<Topic>, PartitionFrames)>) -> Result<()> {
        for (_, parts) in work.iter_mut() {
            parts.retain(|(_, frames)| !frames.is_empty());
        }
        work.retain(|(_, parts)| !parts.is_empty());
        if work.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = work.iter().map(|(t, _)| t.storage()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument(
                "one topic appears twice in an atomic append".into(),
            ));
        }
        self.rounds.commit(work, |merged| self.append_now(merged))
    }

    /// One round of [`TopicStore::append_across`]: its merged work, appended atomically.
    fn append_now(&self, mut work: Vec<(Arc<Topic>, PartitionFrames)>) -> Result<()> {
        for (_, parts) in work.iter_mut() {
            parts.retain(|(_, frames)| !frames.is_empty());
            parts.sort_by_key(|(p, _)| *p);
        }
        work.retain(|(_, parts)| !parts.is_empty());
        work.sort_by(|a, b| a.0.storage.cmp(&b.0.storage));
        if work.windows(2).any(|w| w[0].0.storage == w[1].0.storage) {
            return Err(Error::InvalidArgument(
                "one topic appears twice in an atomic append".into(),
            ));
        }
        if work.len() <= 1 {
            return match work.pop() {
                Some((topic, parts)) => topic.append_atomic(parts),
                None => Ok(()),
            };
        }
        let topics: Vec<Arc<Topic>> = work.iter().map(|(t, _)| t.clone()).collect();
        let mut names: Vec<(usize, u32)> = Vec::new();
        let mut parts = Vec::new();
        for (i, (topic, frames)) in work.into_iter().enumerate() {
            for (p, frames) in frames {
                parts.push((topics[i].log(p)?.as_ref(), p as u32, frames));
                names.push((i, p as u32));
            }
            drop(topic);
        }
        let visibility: Vec<&RwLock<()>> = topics.iter().map(|t| &t.visibility).collect();
        commit_groups(
            &mut parts,
            |offsets| {
                let groups: Vec<StoreGroup> = names
                    .iter()
                    .zip(offsets)
                    .map(|(&(i, p), &(base, next))| (topics[i].storage.clone(), (p, base, next)))
                    .collect();
                self.txn
                    .lock()
                    .commit(groups, |(storage, (p, base, next))| {
                        // A topic that is not open may be opened later (offline now): keep its record.
                        self.topic(storage)
                            .is_none_or(|t| t.is_last_txn_group(*p, *base, *next))
                    })
            },
            &visibility,
        )
    }

    /// Closes the topic stored as `storage` and deletes its local data. Call only for a
    /// storage name the catalog recorded as dropped (see [`TopicStore::delete_cold`] for the
    /// cold tier).
    pub fn delete(&self, storage: &str) -> Result<()> {
        if let Some(topic) = self.topics.write().remove(storage) {
            for log in topic.partitions() {
                log.close()?;
            }
        }
        let dir = self.topic_dir(storage)?;
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir, "deleting topic"))?;
        }
        Ok(())
    }

    /// Deletes the cold objects of a dropped topic's storage name. An unreachable store fails
    /// this; the caller keeps the name as dropped and tries again later.
    pub async fn delete_cold(&self, storage: &str) -> Result<usize> {
        match &self.cold_store {
            Some(store) => store.delete_topic(checked(storage)?).await,
            None => Ok(0),
        }
    }

    /// Moves every topic directory that is neither in `keep` nor in `dropped` to
    /// [`TopicStore::lost_and_found`] (data the catalog does not know of: never deleted);
    /// returns how many were moved.
    pub fn move_aside_orphans(&self, keep: &[String], dropped: &[String]) -> Result<usize> {
        let mut moved = 0;
        let entries = fs::read_dir(&self.root).map_err(io_err(&self.root, "listing topics"))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root, "listing topics"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() || keep.contains(&name) || dropped.contains(&name) {
                continue;
            }
            self.move_aside(&entry.path(), "")?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Moves `path` (a directory of this data directory that no catalog entry names) to
    /// [`TopicStore::lost_and_found`] as `<prefix><name>.<unix ms>`; returns where it went.
    pub fn move_aside(&self, path: &Path, prefix: &str) -> Result<PathBuf> {
        let aside = self.lost_and_found();
        fs::create_dir_all(&aside).map_err(io_err(&aside, "creating"))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = aside.join(format!("{prefix}{name}.{stamp}"));
        tracing::warn!(
            dir = %path.display(),
            to = %target.display(),
            "a directory no catalog entry names: moved aside, not deleted"
        );
        fs::rename(path, &target).map_err(io_err(&target, "moving an orphan to"))?;
        Ok(target)
    }

    /// Cold-tier prefixes that neither `keep` nor `dropped` names: left in place (an operator
    /// decides), and returned so the caller can report them.
    pub async fn unknown_cold_topics(
        &self,
        keep: &[String],
        dropped: &[String],
    ) -> Result<Vec<String>> {
        let Some(store) = &self.cold_store else {
            return Ok(vec![]);
        };
        Ok(store
            .topics()
            .await?
            .into_iter()
            .filter(|t| !keep.contains(t) && !dropped.contains(t))
            .collect())
    }

    /// Applies retention to every partition of every topic; returns segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        for topic in self.topics() {
            for log in topic.partitions() {
                deleted += log.enforce_retention(now_ms)?;
            }
        }
        Ok(deleted)
    }
}
