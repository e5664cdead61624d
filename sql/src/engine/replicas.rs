//! [`Replicas`]: every partition of every stream as a Raft group (a group of one while the
//! node is a cluster of one), and the only way rows reach a stream.
//!
//! docs/design/2026-12-02-replication.md is the plan. Each partition's segment log is its
//! group's Raft log (`eddy_raft::PartitionStore`); the node's commit log (`<data>/commits`,
//! group [`COMMIT_LOG`]) holds the commit records of statements over several partitions
//! (`eddy_raft::Coordinator`). A write returns once its rows are readable on this node, so
//! the session's next statement sees it. There is no second, unreplicated write path: a
//! single node takes the same one.
//!
//! Group ids: `(n << 16) | p` for partition `p` of the stream stored as `<slug>-<n>` (`n` the
//! catalog's number, never given twice on any node, so every node derives the same id);
//! a name without a number (a stream from before the catalog numbered them) takes a CRC32C
//! of the name with the top bit set. Partitions are at most 10 000, below `1 << 16`.
//!
//! This module never decides what is written (that is the statement's) or how rows are
//! encoded (`ingest`); it only routes frames to groups and opens and stops them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eddy_raft::{Coordinator, Group, GroupStatus, PartitionMachine, Timing, Transport};
use eddy_storage::{
    EncodedFrame, LogConfig, PartitionFrames, PartitionLog, Topic, TopicStore, Visibility,
};
use parking_lot::RwLock;

use crate::{Error, Result};

/// The group id of the node's commit log.
pub const COMMIT_LOG: u64 = 1;

/// The groups of one open stream, in partition order.
type Groups = Arc<[Arc<Group<PartitionMachine>>]>;

/// The node's partition groups and its coordinator of multi-partition statements.
pub struct Replicas {
    transport: Arc<Transport>,
    voters: BTreeSet<u64>,
    coordinator: Arc<Coordinator>,
    /// Open streams' groups, by storage name.
    streams: RwLock<HashMap<String, Groups>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("voters", &self.voters)
            .field("streams", &self.streams.read().len())
            .finish()
    }
}

/// The group id of partition `p` of the stream stored as `storage`.
pub fn group_id(storage: &str, p: u32) -> u64 {
    let number = storage
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .filter(|n| *n > 0 && *n < (1 << 47));
    let number =
        number.unwrap_or_else(|| u64::from(crc32c::crc32c(storage.as_bytes())) | (1 << 47));
    (number << 16) | u64::from(p)
}

/// Snapshots of a stream's partitions: the coordinator caps each at its first statement
/// still being decided (see [`eddy_storage::Visibility`]).
struct Snapshots {
    coordinator: Arc<Coordinator>,
    ids: Vec<u64>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").field("ids", &self.ids).finish()
    }
}

impl Visibility for Snapshots {
    fn high_watermarks(&self, logs: &[Arc<PartitionLog>]) -> Vec<u64> {
        let parts: Vec<(u64, &PartitionLog)> = self
            .ids
            .iter()
            .copied()
            .zip(logs.iter().map(|l| l.as_ref()))
            .collect();
        self.coordinator.high_watermarks_of(&parts)
    }
}

impl Replicas {
    /// Starts the node's commit log in `data_dir/commits` over `voters`.
    pub async fn open(
        data_dir: &Path,
        transport: Arc<Transport>,
        voters: BTreeSet<u64>,
    ) -> Result<Replicas> {
        let log = Group::start_partition(
            COMMIT_LOG,
            transport.clone(),
            &data_dir.join("commits"),
            LogConfig::default(),
            &voters,
            Timing::partition(),
        )
        .await?;
        Ok(Replicas {
            transport,
            voters,
            coordinator: Arc::new(Coordinator::new(log)),
            streams: RwLock::new(HashMap::new()),
        })
    }

    /// Starts the groups of the stream `name` stored as `storage` (creating what is missing;
    /// recovery runs as each log opens), decides what a restart left undecided, and serves
    /// the topic from their logs. On failure the groups started are stopped again.
    pub async fn open_stream(
        &self,
        topics: &TopicStore,
        name: &str,
        storage: &str,
        partitions: u32,
        config: LogConfig,
    ) -> Result<Arc<Topic>> {
        let committed: HashSet<(u32, u64, u64)> = topics.committed_before(storage)?;
        let mut groups = Vec::with_capacity(partitions as usize);
        let started = async {
            for p in 0..partitions {
                let dir = topics.partition_dir(storage, p)?;
                let before = |base, next| committed.contains(&(p, base, next));
                let group = Group::start_partition_resolving(
                    group_id(storage, p),
                    self.transport.clone(),
                    &dir,
                    config.clone(),
                    &self.voters,
                    Timing::partition(),
                    &before,
                )
                .await?;
                groups.push(Arc::new(group));
            }
            let refs: Vec<&Group<PartitionMachine>> = groups.iter().map(|g| g.as_ref()).collect();
            self.coordinator.resolve(&refs).await?;
            let logs = groups.iter().map(|g| g.log().clone()).collect();
            let snapshots = Arc::new(Snapshots {
                coordinator: self.coordinator.clone(),
                ids: groups.iter().map(|g| g.id()).collect(),
            });
            Ok::<_, Error>(topics.adopt_topic(name, storage, logs, snapshots)?)
        }
        .await;
        match started {
            Ok(topic) => {
                self.streams
                    .write()
                    .insert(storage.to_string(), groups.into());
                Ok(topic)
            }
            Err(e) => {
                stop(&groups).await;
                Err(e)
            }
        }
    }

    /// Stops the groups of the stream stored as `storage` (its logs closed), if open.
    pub async fn close_stream(&self, storage: &str) {
        let groups = self.streams.write().remove(storage);
        if let Some(groups) = groups {
            stop(&groups).await;
        }
    }

    /// Stops every group, the commit log last.
    pub async fn close(&self) -> Result<()> {
        let all: Vec<Groups> = self.streams.write().drain().map(|(_, g)| g).collect();
        for groups in &all {
            stop(groups).await;
        }
        self.coordinator
            .commit_log()
            .shutdown()
            .await
            .map_err(Error::from)
    }

    /// How this node sees each partition group of the stream stored as `storage`, in
    /// partition order (`None` if it is not open here).
    pub fn status_of(&self, storage: &str) -> Option<Vec<GroupStatus>> {
        let groups = self.streams.read().get(storage).cloned()?;
        Some(groups.iter().map(|g| g.status()).collect())
    }

    /// This node's id and its peer transport (who is connected now).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn groups(&self, topic: &Topic) -> Result<Groups> {
        self.streams
            .read()
            .get(topic.storage())
            .cloned()
            .ok_or_else(|| {
                Error::SerializationFailure(format!(
                    "stream \"{}\" was dropped while the statement ran; none of its rows were \
                     written",
                    topic.name()
                ))
            })
    }

    /// Appends one statement's frames to one stream's partitions, all or nothing; returns
    /// once its rows are readable on this node.
    pub async fn append(&self, topic: &Topic, work: PartitionFrames) -> Result<()> {
        self.append_across(vec![(topic, work)]).await
    }

    /// Appends one statement's (or transaction's) frames to several streams' partitions, all
    /// or nothing (one coordinator statement); returns once its rows are readable here.
    pub async fn append_across(&self, work: Vec<(&Topic, PartitionFrames)>) -> Result<()> {
        let mut held = Vec::with_capacity(work.len());
        for (topic, _) in &work {
            held.push(self.groups(topic)?);
        }
        let work_names: Vec<String> = work.iter().map(|(t, _)| t.name().to_string()).collect();
        let mut shares = Vec::new();
        for (groups, (topic, parts)) in held.iter().zip(work) {
            for (p, frames) in parts {
                if frames.is_empty() {
                    continue;
                }
                let group = groups.get(p).ok_or_else(|| {
                    Error::Internal(format!("stream {} has no partition {p}", topic.name()))
                })?;
                shares.push((group.as_ref(), frames));
            }
        }
        if shares.is_empty() {
            return Ok(());
        }
        let groups: Vec<&Group<PartitionMachine>> = shares.iter().map(|(g, _)| *g).collect();
        let ranges = self
            .coordinator
            .append(shares)
            .await
            .map_err(|e| named(e, &held, &work_names))?;
        for (group, ranges) in groups.into_iter().zip(ranges) {
            if let Some(&(_, next)) = ranges.last() {
                self.readable(group, next).await.map_err(|e| match e {
                    Error::Replication(e) => named(e, &held, &work_names),
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// Appends one batch's frames to partition `p` of `topic` on their own (a persistent
    /// query's output, which its epoch tag makes idempotent); returns once readable here.
    pub async fn append_partition(
        &self,
        topic: &Topic,
        p: usize,
        frames: Vec<EncodedFrame>,
    ) -> Result<()> {
        self.append(topic, vec![(p, frames)]).await
    }

    /// Waits until a snapshot of `group`'s partition includes offset `next - 1`: an entry is
    /// applied when committed, but the readers' end can stand behind another statement's
    /// share that is not decided yet (or in flight). Bounded by the group's write timeout.
    async fn readable(&self, group: &Group<PartitionMachine>, next: u64) -> Result<()> {
        let log = group.log();
        let visible = || self.coordinator.high_watermarks_of(&[(group.id(), log)])[0] >= next;
        if visible() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + group.timing().write_timeout;
        let mut watch = log.watch_high_watermark();
        while !visible() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::from(eddy_raft::Error::Unavailable {
                    group: group.id(),
                    why: format!(
                        "the rows were written but are not yet readable (behind offset {}, \
                         an undecided statement's)",
                        log.high_watermark()
                    ),
                    unknown: false,
                }));
            }
            // The in-flight cap moves without a notification: look again soon.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(5)), watch.changed()).await;
        }
        Ok(())
    }

    /// Gives up shares that stayed undecided, unnamed by any commit record, for longer than
    /// `grace` (a writer that lost track of them), and decides the rest by the commit log:
    /// see `eddy_raft::Coordinator::sweep`. Returns how many shares it decided.
    pub async fn sweep(&self, grace: Duration) -> Result<usize> {
        let all: Vec<Groups> = self.streams.read().values().cloned().collect();
        let refs: Vec<&Group<PartitionMachine>> = all
            .iter()
            .flat_map(|g| g.iter().map(|g| g.as_ref()))
            .collect();
        self.coordinator
            .sweep(&refs, grace)
            .await
            .map_err(Error::from)
    }

    /// The grace a periodic sweep gives: twice a partition group's write timeout, well above
    /// what a live statement takes between its shares and its commit record.
    pub fn sweep_grace() -> Duration {
        Timing::partition().write_timeout * 2
    }
}

/// `e`, with the stream and partition named when it is about one of `held`'s groups (the
/// groups of the streams named `names`, in the same order).
fn named(e: eddy_raft::Error, held: &[Groups], names: &[String]) -> Error {
    let place = e.group().and_then(|id| {
        held.iter().zip(names).find_map(|(groups, name)| {
            let p = groups.iter().position(|g| g.id() == id)?;
            Some((name.clone(), p as u32))
        })
    });
    match place {
        Some((stream, partition)) => Error::InPartition {
            stream,
            partition,
            source: e,
        },
        None => Error::from(e),
    }
}

/// Stops groups (their logs closed); a failure is logged, as the group is gone either way.
async fn stop(groups: &[Arc<Group<PartitionMachine>>]) {
    for group in groups {
        if let Err(e) = group.shutdown().await {
            tracing::warn!(group = group.id(), error = %e, "stopping a partition group");
        }
    }
}
