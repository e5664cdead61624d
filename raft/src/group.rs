//! `Group`: one running Raft group on this node — its openraft core, log, state machine and
//! routing in the transport — and the one way to write to it from any node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{
    BasicNode, CommittedLeaderId, Config, LogId, Membership, Raft, RaftMetrics, SnapshotMeta,
    StoredMembership,
};
use tokio::sync::watch;

use crate::error::{Error, Result};
use eddy_storage::{Decision, EncodedFrame, LogConfig, PartitionLog};
use openraft::storage::{RaftLogStorage, RaftStateMachine};

use crate::log_store::FileLog;
use crate::machine::{Applied, Machine, StateMachine};
use crate::network::{ClientWriteAnswer, GroupNetwork, RaftHandler};
use crate::partition::{self, PartitionMachine};
use crate::rejoin::Rejoin;
use crate::takeover::{LastLog, Takeover};
use crate::transport::Transport;
use crate::wire::{self, Kind};
use crate::{Request, TypeConfig};

/// Timing of a group.
#[derive(Clone, Debug)]
pub struct Timing {
    /// A leader's heartbeat interval.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// How long a write may look for a leader and wait for its commit before it is refused.
    pub write_timeout: Duration,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_every: u64,
}

impl Default for Timing {
    /// Heartbeats every 100 ms, elections after 0.5-1 s of silence (etcd's and openraft's
    /// examples' proportions: election well above a loopback or LAN round trip plus an fsync).
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(1000),
            write_timeout: Duration::from_secs(5),
            snapshot_every: 1000,
        }
    }
}

impl Timing {
    /// The timing of a partition group: heartbeats every 150 ms, elections after 0.5-1 s of
    /// silence. A node holds many partition groups, so longer intervals would make an idle
    /// cluster cheaper (500 ms / 1.5-3 s did: the design note measures both), but openraft
    /// makes a follower refuse to vote until `election_max` has passed since it last heard
    /// its leader (its leader lease): with 3 s, a candidate's first try is refused and a new
    /// leader comes after one or two timeouts more, and a write made right after its
    /// partition's leader was killed ran out of its 5 s (tests/it/cluster.rs caught it),
    /// well past issue 14's 2 s failover aim. Heartbeats of many groups to one peer are to be
    /// coalesced instead.
    ///
    /// A write may take 30 s (Kafka's `request.timeout.ms`), not 5: one COPY statement of
    /// millions of rows is hundreds of megabytes of entries, which a loaded leader on this
    /// machine took more than 5 s to commit (cluster_bench, 2026-12-04). Failures do not
    /// wait for it: a node cut off from its majority refuses within two leases
    /// (`Writer::cut_off`), and a lost leader is replaced within about one
    /// (`takeover.rs`).
    pub fn partition() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(150),
            write_timeout: Duration::from_secs(30),
            ..Timing::default()
        }
    }

    /// openraft's configuration; `snapshots`: the group's state machine takes snapshots (a
    /// partition's does not: its log is its state).
    fn config(&self, group: u64, snapshots: bool) -> Result<Config> {
        let config = Config {
            cluster_name: format!("eddy-group-{group}"),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            snapshot_policy: if snapshots {
                openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every)
            } else {
                openraft::SnapshotPolicy::Never
            },
            max_in_snapshot_log_to_keep: self.snapshot_every,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Raft {
            group,
            why: format!("invalid timing: {e}"),
        })
    }
}

/// One Raft group on this node, whose openraft state machine is `M`: [`Machine`] over a
/// [`StateMachine`] (the metadata group), or a partition's [`PartitionMachine`].
pub struct Group<M> {
    writer: Writer<M>,
    /// The background decision of a node that found no files for the group (`rejoin.rs`),
    /// stopped with the group.
    deciding: Option<tokio::task::JoinHandle<()>>,
    /// A partition group's proposer (`proposals.rs`), stopped with the group.
    proposer: Option<tokio::task::JoinHandle<()>>,
}

/// What writes to a group from this node: its openraft core, its state machine, the
/// transport to forward to the leader and the group's timing. Clones share them.
#[derive(Clone)]
pub(crate) struct Writer<M> {
    id: u64,
    raft: Raft<TypeConfig>,
    machine: M,
    transport: Arc<Transport>,
    timing: Timing,
}

impl<M> Drop for Group<M> {
    fn drop(&mut self) {
        for task in [&self.deciding, &self.proposer].into_iter().flatten() {
            task.abort();
        }
    }
}

/// Initialises a group's membership on this node (every voter does so alike; openraft lets
/// one of them win the first election, and a node already initialised is left as it is).
async fn initialize(
    group: u64,
    raft: &Raft<TypeConfig>,
    members: BTreeMap<u64, BasicNode>,
) -> Result<()> {
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(raft_error(group, e)),
    }
}

/// Asks the peers, round after round, until it is known whether the group is new (a majority,
/// this node included, has no entry past the initial membership: initialise) or has had a
/// leader (a peer has such an entry: rejoin). See `rejoin.rs`.
async fn decide(
    group: u64,
    raft: &Raft<TypeConfig>,
    transport: &Transport,
    rejoin: &Rejoin,
    voters: &BTreeSet<u64>,
    timing: &Timing,
    members: BTreeMap<u64, BasicNode>,
) {
    let majority = voters.len() / 2 + 1;
    loop {
        let mut empty = 1; // this node
        for &peer in voters.iter().filter(|v| **v != transport.node_id()) {
            let Ok(body) = wire::to_body(&()) else { return };
            let Ok(reply) = transport
                .call(peer, Kind::Probe, group, body, timing.election_max)
                .await
            else {
                continue;
            };
            match wire::from_body::<u64>(&reply, "a probe's reply") {
                Ok(0) => empty += 1,
                Ok(_) => {
                    tracing::warn!(
                        group,
                        peer,
                        "no files for this group but a peer's log has entries: rejoining \
                         without a vote until caught up"
                    );
                    if let Err(e) = rejoin.begin() {
                        tracing::error!(group, "cannot rejoin: {e}");
                    }
                    return;
                }
                Err(e) => tracing::warn!(group, peer, "{e}"),
            }
        }
        if empty >= majority {
            rejoin.new_group();
            if let Err(e) = initialize(group, raft, members.clone()).await {
                tracing::error!(group, "initialising: {e}");
                return;
            }
            // A new group has no leader to wait for: one voter campaigns at once instead
            // of after an election timeout of silence (1.5-3 s for a partition), which
            // every new stream's first write would wait. Which one goes by the group id,
            // so that a stream's partitions start with their leaders spread over the
            // nodes; only one campaigns, so the first election is not split, and if it
            // is down the timeout elects another.
            let campaigner = voters.iter().nth((group % voters.len() as u64) as usize);
            if campaigner == Some(&transport.node_id())
                && let Err(e) = raft.trigger().elect().await
            {
                tracing::warn!(group, "campaigning in a new group: {e}");
            }
            return;
        }
        if transport.is_stopped() {
            return;
        }
        tokio::time::sleep(timing.heartbeat).await;
    }
}

fn raft_error(group: u64, e: impl std::fmt::Display) -> Error {
    Error::Raft {
        group,
        why: e.to_string(),
    }
}

impl<S: StateMachine> Group<Machine<S>> {
    /// Waits until this node has applied everything the group had committed when it was
    /// called: an empty entry goes through the leader (from any node) and is awaited here, so
    /// a node that just started or rejoined reads no older state than the group acknowledged.
    /// The state machine never sees it. Refused like [`Group::write`].
    pub async fn barrier(&self) -> Result<()> {
        self.write(Vec::new()).await.map(drop)
    }

    /// Prepares `dir` so that the group starts from `state` as if it had applied entries up
    /// to `index`, with `voters` (id → peer address) as its membership: how a node takes over
    /// state that existed before replication (a single node's catalog). Refused when `dir`
    /// already holds the group.
    pub fn seed(
        dir: &Path,
        index: u64,
        voters: &BTreeMap<u64, String>,
        state: &[u8],
    ) -> Result<()> {
        if dir.join("log").exists() {
            return Err(Error::Raft {
                group: 0,
                why: format!("{} already holds a group", dir.display()),
            });
        }
        let log_id = LogId::new(CommittedLeaderId::new(0, 0), index);
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        let membership = Membership::new(vec![members.keys().copied().collect()], members);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), membership),
            snapshot_id: format!("seed-{index}"),
        };
        crate::machine::write_snapshot(&dir.join("machine"), &meta, state)?;
        FileLog::open(&dir.join("log"))?.purged_up_to(log_id)
    }

    /// Starts group `id` over `voters` with its files in `dir`: opens the log and the state
    /// machine's snapshot, starts the openraft core, routes the group's messages to it, and —
    /// on first start — initialises it with the voters (every voter does so alike; openraft
    /// lets only one of them win the first election).
    pub async fn start(
        id: u64,
        transport: Arc<Transport>,
        dir: &Path,
        machine: S,
        voters: &BTreeSet<u64>,
        timing: Timing,
    ) -> Result<Group<Machine<S>>> {
        let fresh = !dir.join("log").exists();
        let log = FileLog::open(&dir.join("log"))?;
        let machine = Machine::open(&dir.join("machine"), machine)?;
        launch(
            id,
            transport,
            (log, machine),
            (fresh, dir.join("rejoining")),
            voters,
            timing.config(id, true)?,
            timing,
        )
        .await
    }
}

impl Group<PartitionMachine> {
    /// Starts partition group `id` over `voters` in the partition's directory `dir`: its
    /// segments are the group's log (`partition.rs`), its high watermark the state machine.
    pub async fn start_partition(
        id: u64,
        transport: Arc<Transport>,
        dir: &Path,
        config: LogConfig,
        voters: &BTreeSet<u64>,
        timing: Timing,
    ) -> Result<Group<PartitionMachine>> {
        Self::start_partition_resolving(id, transport, dir, config, voters, timing, &|_, _| false)
            .await
    }

    /// [`Group::start_partition`] for a partition that may hold one node's frames from before
    /// it was a Raft log: a last multi-partition group of that time is kept only if
    /// `committed_before(base, next)` (see [`PartitionLog::open_replicated`]).
    pub async fn start_partition_resolving(
        id: u64,
        transport: Arc<Transport>,
        dir: &Path,
        config: LogConfig,
        voters: &BTreeSet<u64>,
        timing: Timing,
        committed_before: &(dyn Fn(u64, u64) -> bool + Sync),
    ) -> Result<Group<PartitionMachine>> {
        let (store, machine, _, fresh) = partition::open(dir, config, committed_before)?;
        let mut group = launch(
            id,
            transport,
            (store, machine),
            (fresh, dir.join("raft-rejoining")),
            voters,
            timing.config(id, false)?,
            timing,
        )
        .await?;
        group.proposer = Some(tokio::spawn(crate::proposals::run(group.writer.clone())));
        Ok(group)
    }

    /// The partition's log, to read (everything below its high watermark is committed).
    pub fn log(&self) -> &Arc<PartitionLog> {
        self.machine().log()
    }

    /// Appends one statement group of frames through the group's leader (from any node) and
    /// returns its offsets `(base, next)` once committed and applied here. Appends that wait
    /// meanwhile on this node are merged into one entry (`proposals.rs`).
    pub async fn append(&self, frames: Vec<EncodedFrame>) -> Result<(u64, u64)> {
        self.rows_only(&frames)?;
        let answer = self.machine().proposals().push(self.id(), frames);
        answer
            .await
            .unwrap_or_else(|_| Err(crate::proposals::gone(self.id())))
    }

    /// Writes one entry of rows and returns the offsets it was given.
    async fn write_rows(&self, bytes: Vec<u8>) -> Result<(u64, u64)> {
        let (index, reply) = self.write(bytes).await?;
        partition::decode_offsets(&reply)?.ok_or_else(|| Error::Raft {
            group: self.id(),
            why: format!("entry {index} was applied as no data"),
        })
    }

    /// Appends one partition's share of a multi-partition append as a `TXN` entry through
    /// the leader and returns its offsets once committed and applied here. Its rows stay
    /// invisible — and hold back every later entry's — until [`Group::decide`] names the
    /// offsets. Never merged with other writes: each has its own decision.
    pub async fn append_txn(&self, mut frames: Vec<EncodedFrame>) -> Result<(u64, u64)> {
        self.rows_only(&frames)?;
        frames.iter_mut().for_each(EncodedFrame::mark_txn);
        self.write_rows(partition::encode_frames(frames)?).await
    }

    /// Writes the outcome of `TXN` entries (their offsets, as [`Group::append_txn`] returned
    /// them) and returns once it is applied here: committed rows are then readable, aborted
    /// ones never are. Deciding an entry again, either way, changes nothing.
    pub async fn decide(&self, decision: &Decision) -> Result<()> {
        let frame = decision
            .frame()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        self.write(frame.into_bytes()).await.map(|_| ())
    }

    /// Refuses a partition write that is not one or more frames of rows, or that this
    /// node's disk could not take without eating into [`partition::KEEP_FREE_BYTES`] (a
    /// failed write would stop the group: see there).
    fn rows_only(&self, frames: &[EncodedFrame]) -> Result<()> {
        if frames.is_empty() || frames.iter().any(EncodedFrame::is_control) {
            return Err(Error::Protocol(
                "a partition write holds one or more frames of rows".into(),
            ));
        }
        let bytes = frames.iter().map(EncodedFrame::len).sum();
        self.log().ensure_room(bytes, partition::KEEP_FREE_BYTES)?;
        Ok(())
    }
}

/// Starts the openraft core over a log store and a state machine, routes the group's messages to it and
/// decides how it joins: `rejoin` = (the group's files were just created, the marker file of
/// `rejoin.rs`).
async fn launch<L, M>(
    id: u64,
    transport: Arc<Transport>,
    (log, machine): (L, M),
    rejoin: (bool, std::path::PathBuf),
    voters: &BTreeSet<u64>,
    config: Config,
    timing: Timing,
) -> Result<Group<M>>
where
    L: RaftLogStorage<TypeConfig> + Clone,
    M: RaftStateMachine<TypeConfig> + Applied + Clone,
{
    let (fresh, marker) = rejoin;
    let lease = Duration::from_millis(config.election_timeout_max);
    let reader = log.clone();
    let last_log: LastLog = Box::new(move || {
        let mut log = reader.clone();
        Box::pin(async move { log.get_log_state().await.ok().and_then(|s| s.last_log_id) })
    });
    let config = Arc::new(config);
    let network = GroupNetwork {
        transport: transport.clone(),
        group: id,
    };
    let raft = Raft::new(transport.node_id(), config, network, log, machine.clone())
        .await
        .map_err(|e| raft_error(id, e))?;
    let rejoin = Arc::new(Rejoin::new(
        marker,
        fresh && voters.len() > 1,
        machine.applied(),
    ));
    transport.register(
        id,
        Arc::new(RaftHandler {
            raft: raft.clone(),
            rejoin: rejoin.clone(),
            takeover: Takeover::new(
                id,
                raft.clone(),
                rejoin.clone(),
                &transport,
                last_log,
                lease,
            ),
        }),
    );
    let members: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|v| {
            let addr = transport.peers().get(v).cloned().unwrap_or_default();
            (*v, BasicNode { addr })
        })
        .collect();
    let mut deciding = None;
    if rejoin.deciding() {
        // Decided from the peers in the background: the node may have to wait for them.
        let (raft, transport, voters, timing) = (
            raft.clone(),
            transport.clone(),
            voters.clone(),
            timing.clone(),
        );
        deciding = Some(tokio::spawn(async move {
            decide(id, &raft, &transport, &rejoin, &voters, &timing, members).await;
        }));
    } else if !rejoin.rejoining() {
        initialize(id, &raft, members).await?;
        if voters.len() == 1 && voters.contains(&transport.node_id()) {
            // The only voter needs nobody's vote: elect now instead of after an election
            // timeout of silence (every restart of a single node would wait for it).
            raft.trigger()
                .elect()
                .await
                .map_err(|e| raft_error(id, e))?;
        }
    }
    Ok(Group {
        writer: Writer {
            id,
            raft,
            machine,
            transport,
            timing,
        },
        deciding,
        proposer: None,
    })
}

/// A group as one node sees it ([`Group::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The node that sees the group so.
    pub node: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// This node's current term.
    pub term: u64,
    /// The voters.
    pub voters: Vec<u64>,
    /// This node's last log index (0: empty).
    pub last_log: u64,
    /// The last index this node applied (committed entries only are applied).
    pub applied: u64,
    /// On the leader: each follower and the last index it is known to hold. `None` on a
    /// follower, which does not know.
    pub followers: Option<Vec<(u64, Option<u64>)>>,
}

impl GroupStatus {
    /// The voters known to hold everything this node applied: on the leader itself and the
    /// followers caught up to its applied index; `None` where this node cannot tell (it is
    /// not the leader).
    pub fn in_sync(&self) -> Option<Vec<u64>> {
        let followers = self.followers.as_ref()?;
        let mut in_sync = vec![self.node];
        in_sync.extend(
            followers
                .iter()
                .filter(|(_, matched)| matched.is_some_and(|m| m >= self.applied))
                .map(|(v, _)| *v),
        );
        in_sync.sort_unstable();
        Some(in_sync)
    }

    /// On the leader, how many entries the furthest-behind follower lacks of its log.
    pub fn follower_lag(&self) -> Option<u64> {
        let followers = self.followers.as_ref()?;
        Some(
            followers
                .iter()
                .map(|(_, m)| self.last_log.saturating_sub(m.unwrap_or(0)))
                .max()
                .unwrap_or(0),
        )
    }
}

impl<M: Applied + Clone> Group<M> {
    /// The group's timing.
    pub fn timing(&self) -> &Timing {
        &self.writer.timing
    }

    /// The group's id.
    pub fn id(&self) -> u64 {
        self.writer.id
    }

    /// The state machine, to read.
    pub fn machine(&self) -> &M {
        &self.writer.machine
    }

    /// openraft's view of the group on this node (leader, term, log and applied indexes).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.writer.raft.metrics()
    }

    /// What this node knows of the group now: leader, term, voters and how far each
    /// follower has replicated (that only on the leader).
    pub fn status(&self) -> GroupStatus {
        let m = self.writer.raft.metrics().borrow().clone();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let followers = m.replication.as_ref().map(|replication| {
            voters
                .iter()
                .filter(|v| **v != m.id)
                .map(|v| {
                    let matched = replication.get(v).copied().flatten().map(|l| l.index);
                    (*v, matched)
                })
                .collect()
        });
        GroupStatus {
            node: m.id,
            leader: m.current_leader,
            term: m.current_term,
            voters,
            last_log,
            applied,
            followers,
        }
    }

    /// The leader this node knows of, if any.
    pub async fn leader(&self) -> Option<u64> {
        self.writer.raft.current_leader().await
    }

    /// Proposes `command` and waits until it is committed and applied on this node; returns
    /// its log index and the state machine's reply. From a follower the write is forwarded to
    /// the leader. Refused with [`Error::Unavailable`] when no leader takes it within the
    /// group's write timeout — `unknown` set when it was handed to a leader that never
    /// answered, so it may yet be applied.
    pub async fn write(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>)> {
        self.writer.write(Bytes::from(command)).await
    }

    /// Stops the group on this node: its messages are no longer routed, its core ends.
    pub async fn shutdown(&self) -> Result<()> {
        for task in [&self.deciding, &self.proposer].into_iter().flatten() {
            task.abort();
        }
        let w = &self.writer;
        w.transport.unregister(w.id);
        let stopped = w.raft.shutdown().await.map_err(|e| raft_error(w.id, e));
        w.machine.close()?;
        stopped
    }
}

impl<M: Applied + Clone> Writer<M> {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn machine(&self) -> &M {
        &self.machine
    }

    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub(crate) fn timing(&self) -> &Timing {
        &self.timing
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> u64 {
        self.transport.node_id()
    }

    /// Why no write can commit through this node now, if it has heard from no majority of
    /// the group's voters (itself included) for two leases: the minority side of a cut
    /// network, or a leader the others replaced while it was stopped. Such a node refuses
    /// new writes at once and gives up on those it waits for, instead of running out the
    /// write timeout (a leader here would never commit them; a follower would find no
    /// leader). Two leases, not one: by then the majority side has elected a new leader
    /// (one lease, `takeover.rs`, or openraft's lease plus a timeout), and a node that was
    /// only too busy to read its peers for a moment — three nodes sharing two cores under a
    /// COPY of millions of rows were seen so — does not fail the writes it had in hand.
    pub(crate) fn cut_off(&self) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let lease = self.timing.election_max * 2;
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        if self.transport.hears_majority(&voters, lease) {
            return None;
        }
        Some(format!(
            "node {} has heard from no majority of the voters for {lease:?}",
            m.id
        ))
    }

    /// [`Writer::cut_off`] as the refusal of a write: `unknown` when it was proposed.
    pub(crate) fn refused(&self, why: String, unknown: bool) -> Error {
        Error::Unavailable {
            group: self.id,
            why,
            unknown,
        }
    }

    /// Resolves once this node is cut off ([`Writer::cut_off`]).
    async fn until_cut_off(&self) -> String {
        loop {
            tokio::time::sleep(self.timing.heartbeat).await;
            if let Some(why) = self.cut_off() {
                return why;
            }
        }
    }

    /// [`Group::write`].
    pub(crate) async fn write(&self, command: Bytes) -> Result<(u64, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + self.timing.write_timeout;
        let mut last = String::from("no leader yet");
        loop {
            if let Some(why) = self.cut_off() {
                return Err(self.refused(why, false));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable {
                    group: self.id,
                    why: last,
                    unknown: false,
                });
            }
            let written = tokio::select! {
                written = tokio::time::timeout(
                    left,
                    self.raft.client_write(Request::new(command.clone())),
                ) => written,
                why = self.until_cut_off() => return Err(self.refused(why, true)),
            };
            let leader = match written {
                Err(_) => {
                    return Err(Error::Unavailable {
                        group: self.id,
                        why: "the leader did not commit it in time".into(),
                        unknown: true,
                    });
                }
                Ok(Ok(response)) => return Ok((response.log_id.index, response.data.0)),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_id,
                Ok(Err(e)) => return Err(raft_error(self.id, e)),
            };
            let Some(leader) = leader.filter(|l| *l != self.transport.node_id()) else {
                tokio::time::sleep(self.timing.heartbeat.min(left)).await;
                continue;
            };
            if !self.transport.connected(leader) {
                // A leader whose connection is down may be dead: rather than wait for it to
                // come back, look again as soon as the group learns of a leader or a
                // connection comes up (takeover.rs elects one within about a lease).
                last = format!("leader {leader} is not connected");
                let mut metrics = self.raft.metrics();
                metrics.borrow_and_update();
                let mut connections = self.transport.connections();
                tokio::select! {
                    _ = metrics.changed() => {}
                    _ = connections.changed() => {}
                    _ = tokio::time::sleep(self.timing.heartbeat.min(left)) => {}
                }
                continue;
            }
            match self.forward(leader, &command, left).await {
                Ok(Some(written)) => return Ok(written),
                Ok(None) => {
                    last = format!("node {leader} is no longer the leader");
                    tokio::time::sleep(self.timing.heartbeat.min(left)).await;
                }
                Err(Error::Unreachable { why, .. }) => {
                    last = format!("leader {leader} is unreachable: {why}");
                    tokio::time::sleep(self.timing.heartbeat.min(left)).await;
                }
                Err(Error::NoReply { why, .. }) => {
                    return Err(Error::Unavailable {
                        group: self.id,
                        why: format!("leader {leader} did not answer: {why}"),
                        unknown: true,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a write to `leader`; `None` when it is not the leader any more.
    async fn forward(
        &self,
        leader: u64,
        command: &Bytes,
        left: Duration,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let body = wire::to_body(&Request::new(command.clone()))?;
        let reply = tokio::select! {
            reply = self.transport.call(leader, Kind::ClientWrite, self.id, body, left) => reply?,
            why = self.until_cut_off() => return Err(self.refused(why, true)),
        };
        let answer: ClientWriteAnswer = wire::from_body(&reply, "a client write's reply")?;
        let response = match answer {
            Ok(response) => response,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => return Ok(None),
            Err(e) => return Err(raft_error(self.id, e)),
        };
        // Committed; the caller reads this node's state next, so wait until it is applied here.
        let index = response.log_id.index;
        let mut applied = self.machine.applied();
        let wait = applied.wait_for(|a| *a >= index);
        tokio::select! {
            waited = tokio::time::timeout(self.timing.write_timeout, wait) => match waited {
                Ok(Ok(_)) => Ok(Some((index, response.data.0))),
                _ => Err(Error::Raft {
                    group: self.id,
                    why: format!("committed at index {index} but not yet applied on this node"),
                }),
            },
            // Cut off after the leader committed it: this node will not apply it soon, and
            // its caller cannot read it here; the caller learns the outcome is unknown
            // rather than wait out the write timeout.
            why = self.until_cut_off() => Err(self.refused(
                format!("committed at index {index} by the leader, not yet applied here: {why}"),
                true,
            )),
        }
    }
}
