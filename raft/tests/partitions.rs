//! Partition groups of real nodes over loopback TCP: a partition's segments are its Raft log.
//! Every replica holds the same frames at the same offsets, nothing uncommitted is readable,
//! a new leader's entries replace a divergent uncommitted tail (its offsets given again), and
//! a group of one restarts with its rows visible at once, and a transaction's entry is shown
//! on every replica only once decided, never after an abort.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_raft::{Error, Group, PartitionMachine, Timing, Transport};
use eddy_storage::{Decision, LogConfig, PartitionLog};
use tokio::net::TcpListener;

mod common;
use common::{eventually, frames, rows};

/// Partition 0 of the stream the catalog's command 1 created.
const GROUP: u64 = 1 << 16;

fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(2),
        ..Timing::partition()
    }
}

struct Node {
    id: u64,
    transport: Arc<Transport>,
    group: Group<PartitionMachine>,
}

impl Node {
    fn log(&self) -> &Arc<PartitionLog> {
        self.group.log()
    }

    async fn stop(self) {
        self.group.shutdown().await.unwrap();
        self.transport.shutdown().await;
    }
}

struct Cluster {
    peers: BTreeMap<u64, String>,
    root: tempfile::TempDir,
}

impl Cluster {
    async fn new(n: u64) -> (Cluster, Vec<Node>) {
        let (peers, listeners) = common::listeners(n).await;
        let cluster = Cluster {
            peers,
            root: tempfile::tempdir().unwrap(),
        };
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            nodes.push(cluster.start(id, listener).await);
        }
        (cluster, nodes)
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}")).join("0")
    }

    async fn start(&self, id: u64, listener: TcpListener) -> Node {
        let transport = Transport::start(id, listener, self.peers.clone());
        let voters: BTreeSet<u64> = self.peers.keys().copied().collect();
        let group = Group::start_partition(
            GROUP,
            transport.clone(),
            &self.dir(id),
            LogConfig::default(),
            &voters,
            timing(),
        )
        .await
        .unwrap();
        Node {
            id,
            transport,
            group,
        }
    }

    async fn restart(&self, id: u64) -> Node {
        let listener = common::listen_again(&self.peers[&id]).await;
        self.start(id, listener).await
    }
}

/// Starts the partition group in `dir` on a node that is a cluster of one.
async fn alone(dir: &Path) -> Node {
    let transport = Transport::alone(1);
    let group = Group::start_partition(
        GROUP,
        transport.clone(),
        dir,
        LogConfig::default(),
        &BTreeSet::from([1]),
        timing(),
    )
    .await
    .unwrap();
    Node {
        id: 1,
        transport,
        group,
    }
}

async fn leader_of(nodes: &[Node]) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes {
            if node.group.leader().await == Some(node.id) {
                return node.id;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn take(nodes: &mut Vec<Node>, id: u64) -> Node {
    let at = nodes.iter().position(|n| n.id == id).unwrap();
    nodes.remove(at)
}

async fn stop_all(nodes: Vec<Node>) {
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_holds_the_same_frames_at_the_same_offsets() {
    let (_cluster, nodes) = Cluster::new(3).await;
    let mut next = 0;
    let mut written: Vec<i64> = Vec::new();
    for round in 0..3i64 {
        for node in &nodes {
            // A statement group of two frames, from any node: forwarded to the leader.
            let a = [round * 100 + node.id as i64];
            let b = [
                round * 100 + node.id as i64 + 10,
                round * 100 + node.id as i64 + 20,
            ];
            let (base, end) = node.group.append(frames(&[&a, &b])).await.unwrap();
            assert_eq!((base, end), (next, next + 3));
            next = end;
            written.extend(a.iter().chain(&b).copied());
            // Committed and applied on the writer's node when the append returns.
            assert!(
                node.log().high_watermark() >= end,
                "node {}: {} < {end}",
                node.id,
                node.log().high_watermark()
            );
        }
    }
    eventually(
        "every replica's high watermark reached the last write",
        || nodes.iter().all(|n| n.log().high_watermark() == next),
    )
    .await;
    let leader_entries = nodes[0].log().read_entries(0, u64::MAX, u64::MAX).unwrap();
    // Control entries (the initial membership, each leader's blank) and nine data entries.
    assert_eq!(leader_entries.iter().filter(|e| !e.control).count(), 9);
    for node in &nodes {
        assert_eq!(rows(node.log()), written, "node {}", node.id);
        assert_eq!(
            node.log().read_entries(0, u64::MAX, u64::MAX).unwrap(),
            leader_entries,
            "node {} holds other bytes",
            node.id
        );
    }
    stop_all(nodes).await;
}

/// A leader cut off from its followers keeps the entry it could not commit out of sight; when
/// the others have elected a leader and gone on, that entry is cut from its log and the new
/// leader's entry takes its offsets — which no reader ever saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_tail_is_never_read_and_is_replaced_by_the_new_leaders() {
    let (cluster, mut nodes) = Cluster::new(3).await;
    let (_, end) = nodes[0].group.append(frames(&[&[1, 2]])).await.unwrap();
    eventually("every replica has the first write", || {
        nodes.iter().all(|n| n.log().high_watermark() == end)
    })
    .await;
    let old = leader_of(&nodes).await;
    let followers: Vec<u64> = nodes.iter().map(|n| n.id).filter(|&id| id != old).collect();
    for id in &followers {
        take(&mut nodes, *id).stop().await;
    }
    let isolated = take(&mut nodes, old);
    let err = isolated
        .group
        .append(frames(&[&[666]]))
        .await
        .expect_err("a leader alone committed a write");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let log = isolated.log();
    let (_, last) = log.last_entry().unwrap().unwrap();
    let (_, committed) = log.committed_entry().unwrap().unwrap();
    assert!(last > committed, "the lone leader's entry is in its log");
    assert_eq!(log.high_watermark(), end, "but not readable");
    assert_eq!(rows(log), [1, 2]);
    isolated.stop().await;

    let mut survivors = Vec::new();
    for id in &followers {
        survivors.push(cluster.restart(*id).await);
    }
    // A leader of their own first: the write timeout (2 s) is not meant to cover an election.
    leader_of(&survivors).await;
    let (base, _) = survivors[0]
        .group
        .append(frames(&[&[7, 8, 9]]))
        .await
        .unwrap_or_else(|e| panic!("the survivors' write: {e}"));
    assert_eq!(
        base, end,
        "the new entry takes the offsets the lost one had"
    );
    let back = cluster.restart(old).await;
    eventually("the old leader took the new leader's entry", || {
        rows(back.log()) == [1, 2, 7, 8, 9]
    })
    .await;
    survivors.push(back);
    let reference = survivors[0]
        .log()
        .read_entries(0, u64::MAX, u64::MAX)
        .unwrap();
    for node in &survivors {
        eventually("every replica holds the same entries", || {
            node.log().read_entries(0, u64::MAX, u64::MAX).unwrap() == reference
        })
        .await;
    }
    stop_all(survivors).await;
}

/// A node that is a cluster of one: its partition group restarts with every committed row
/// readable before it has taken a write, and goes on at the next offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_one_restarts_with_its_rows_visible_at_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("0");
    let start = || alone(&dir);
    let node = start().await;
    for i in 0..5 {
        node.group.append(frames(&[&[i]])).await.unwrap();
    }
    node.stop().await;

    let node = start().await;
    assert_eq!(node.log().high_watermark(), 5);
    assert_eq!(rows(node.log()), [0, 1, 2, 3, 4]);
    let (base, end) = node.group.append(frames(&[&[5, 6]])).await.unwrap();
    assert_eq!((base, end), (5, 7));
    node.stop().await;
}

/// Concurrent appends on one node are merged into entries (one fsync each, not one per
/// write), and every write still gets its own offsets, holding exactly its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_entries_and_keep_their_own_offsets() {
    let (_cluster, nodes) = Cluster::new(3).await;
    let nodes = Arc::new(nodes);
    let writers: Vec<_> = (0..16i64)
        .map(|w| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..20i64 {
                    let ids: Vec<i64> = (0..=(i % 3)).map(|k| w * 1000 + i * 10 + k).collect();
                    let node = &nodes[(w % 3) as usize];
                    let (base, next) = node.group.append(frames(&[&ids])).await.unwrap();
                    assert_eq!(next - base, ids.len() as u64);
                    mine.push((base, ids));
                }
                mine
            })
        })
        .collect();
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let total: u64 = written.iter().map(|(_, ids)| ids.len() as u64).sum();
    eventually("every replica has every write", || {
        nodes.iter().all(|n| n.log().high_watermark() == total)
    })
    .await;
    for node in nodes.iter() {
        let rows = rows(node.log());
        for (base, ids) in &written {
            let at = *base as usize;
            assert_eq!(
                &rows[at..at + ids.len()],
                ids.as_slice(),
                "node {}",
                node.id
            );
        }
    }
    let data = nodes[0]
        .log()
        .read_entries(0, u64::MAX, u64::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| !e.control)
        .count();
    assert!(
        data < written.len(),
        "{data} entries for {} writes",
        written.len()
    );
    let nodes = Arc::into_inner(nodes).unwrap();
    stop_all(nodes).await;
}

/// A group of one stopped while writers keep appending: every write is answered — with its
/// offsets or an error, none waits for good — and after a restart every acknowledged write's
/// rows are at its offsets. (Rounds are pipelined: a round is proposed while the one before it
/// is still being applied, and answered by the state machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_when_a_group_stops_are_all_answered_and_kept_if_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("0");
    let start = || async { Arc::new(alone(&dir).await) };
    let node = start().await;
    let writers: Vec<_> = (0..8i64)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let ids: Vec<i64> = (0..=(i % 3)).map(|k| w * 100_000 + i * 10 + k).collect();
                    match node.group.append(frames(&[&ids])).await {
                        Ok((base, next)) => {
                            assert_eq!(next - base, ids.len() as u64);
                            acknowledged.push((base, ids));
                        }
                        Err(Error::Unavailable { .. }) => return acknowledged,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    eventually("writes were acknowledged", || {
        node.log().high_watermark() > 200
    })
    .await;
    node.group.shutdown().await.unwrap();
    let mut written = Vec::new();
    for w in writers {
        let answered = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("a writer was never answered");
        written.extend(answered.unwrap());
    }
    let node = Arc::into_inner(node).unwrap();
    node.transport.shutdown().await;

    let node = start().await;
    let rows = rows(node.log());
    let mut offsets = BTreeSet::new();
    for (base, ids) in &written {
        let at = *base as usize;
        assert_eq!(&rows[at..at + ids.len()], ids.as_slice());
        assert!(offsets.insert(*base), "offset {base} given twice");
    }
    assert!(written.len() > 100, "{} writes acknowledged", written.len());
    Arc::into_inner(node).unwrap().stop().await;
}

/// A multi-partition append's share of this partition: a `TXN` entry that every replica holds
/// back (with every write after it) until a decision is committed; a commit shows its rows, an
/// abort hides them on every replica, and a replica restarted remembers the abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_shown_on_every_replica_only_as_decided() {
    let (cluster, mut nodes) = Cluster::new(3).await;
    nodes[0].group.append(frames(&[&[1]])).await.unwrap();
    let kept = nodes[1].group.append_txn(frames(&[&[2, 3]])).await.unwrap();
    let dropped = nodes[2].group.append_txn(frames(&[&[4]])).await.unwrap();
    let (_, end) = nodes[0].group.append(frames(&[&[5]])).await.unwrap();
    assert_eq!((kept, dropped, end), ((1, 3), (3, 4), 5));
    eventually("every replica holds both undecided", || {
        nodes
            .iter()
            .all(|n| n.log().undecided().unwrap() == [kept, dropped])
    })
    .await;
    for node in &nodes {
        assert_eq!(rows(node.log()), [1], "node {}", node.id);
        assert_eq!(node.log().high_watermark(), 1);
    }

    let abort = Decision {
        commit: false,
        ranges: vec![dropped],
    };
    nodes[1].group.decide(&abort).await.unwrap();
    assert_eq!(rows(nodes[1].log()), [1], "still held back by the first");
    let commit = Decision {
        commit: true,
        ranges: vec![kept],
    };
    nodes[2].group.decide(&commit).await.unwrap();
    assert_eq!(
        rows(nodes[2].log()),
        [1, 2, 3, 5],
        "shown once applied here"
    );
    eventually("every replica shows the decided rows", || {
        nodes
            .iter()
            .all(|n| rows(n.log()) == [1, 2, 3, 5] && n.log().high_watermark() == end)
    })
    .await;

    let leader = leader_of(&nodes).await;
    let follower = nodes.iter().map(|n| n.id).find(|&id| id != leader).unwrap();
    take(&mut nodes, follower).stop().await;
    let back = cluster.restart(follower).await;
    eventually("the restarted replica shows the same rows", || {
        rows(back.log()) == [1, 2, 3, 5] && back.log().high_watermark() == end
    })
    .await;
    assert_eq!(back.log().aborted_rows(0, end), 1);
    nodes.push(back);
    stop_all(nodes).await;
}
