//! Raft groups of real nodes over loopback TCP (each node its own transport, files and
//! openraft core, in this process): writes from any node land everywhere in one order, a lost
//! leader is replaced and catches up, a wiped node is caught up from a snapshot, a minority
//! refuses writes instead of hanging.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_raft::{Error, Group, Machine, Result, StateMachine, Timing, Transport};
use tokio::net::TcpListener;

mod common;
use common::eventually;

/// The state machine under test: every command appended to a list; the reply is its length.
#[derive(Default)]
struct Journal(Vec<String>);

impl StateMachine for Journal {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.0.push(String::from_utf8_lossy(command).into_owned());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.0.join("\n").into_bytes())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let text = String::from_utf8_lossy(bytes);
        self.0 = if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n').map(str::to_string).collect()
        };
        Ok(())
    }
}

struct Node {
    id: u64,
    transport: Arc<Transport>,
    group: Group<Machine<Journal>>,
}

impl Node {
    fn journal(&self) -> Vec<String> {
        self.group.machine().read(|j| j.0.clone())
    }

    async fn stop(self) {
        self.group.shutdown().await.unwrap();
        self.transport.shutdown().await;
    }
}

struct Cluster {
    peers: BTreeMap<u64, String>,
    root: tempfile::TempDir,
    timing: Timing,
}

const GROUP: u64 = 0;

fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(5),
        snapshot_every: 1000,
    }
}

impl Cluster {
    async fn new(n: u64, timing: Timing) -> (Cluster, Vec<Node>) {
        let (peers, listeners) = common::listeners(n).await;
        let cluster = Cluster {
            peers,
            root: tempfile::tempdir().unwrap(),
            timing,
        };
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            nodes.push(cluster.start(id, listener).await);
        }
        (cluster, nodes)
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    async fn start(&self, id: u64, listener: TcpListener) -> Node {
        let transport = Transport::start(id, listener, self.peers.clone());
        let voters: BTreeSet<u64> = self.peers.keys().copied().collect();
        let group = Group::start(
            GROUP,
            transport.clone(),
            &self.dir(id),
            Journal::default(),
            &voters,
            self.timing.clone(),
        )
        .await
        .unwrap();
        Node {
            id,
            transport,
            group,
        }
    }

    /// Starts node `id` again on its own address, with whatever its directory holds.
    async fn restart(&self, id: u64) -> Node {
        let listener = common::listen_again(&self.peers[&id]).await;
        self.start(id, listener).await
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

async fn stop_all(nodes: Vec<Node>) {
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_any_node_are_applied_everywhere_in_one_order() {
    let (_cluster, nodes) = Cluster::new(3, timing()).await;
    for round in 0..3 {
        for node in &nodes {
            let (index, reply) = node
                .group
                .write(format!("{round} from {}", node.id).into_bytes())
                .await
                .unwrap();
            assert!(index > 0);
            // The writer's own node has applied it when the write returns.
            let len = u64::from_le_bytes(reply.try_into().unwrap()) as usize;
            assert!(node.journal().len() >= len, "node {}", node.id);
        }
    }
    eventually("every node applied all nine writes", || {
        nodes.iter().all(|n| n.journal().len() == 9)
    })
    .await;
    let first = nodes[0].journal();
    for node in &nodes[1..] {
        assert_eq!(
            node.journal(),
            first,
            "node {} applied another order",
            node.id
        );
    }
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_leader_is_replaced_and_catches_up_when_it_returns() {
    let (cluster, mut nodes) = Cluster::new(3, timing()).await;
    nodes[0].group.write(b"before".to_vec()).await.unwrap();
    let leader = leader_of(&nodes).await;
    let at = nodes.iter().position(|n| n.id == leader).unwrap();
    // A node that started after the group had committed does not vote until it has caught up
    // (it cannot tell a late first start from a wiped directory): wait for that.
    eventually("every node applied the first write", || {
        nodes.iter().all(|n| n.journal().len() == 1)
    })
    .await;
    nodes.remove(at).stop().await;

    // The survivors elect a new leader and take writes, from either of them.
    let new_leader = leader_of(&nodes).await;
    assert_ne!(new_leader, leader);
    for node in &nodes {
        node.group
            .write(format!("while {leader} was away, via {}", node.id).into_bytes())
            .await
            .unwrap();
    }

    let back = cluster.restart(leader).await;
    eventually("the old leader caught up", || back.journal().len() == 3).await;
    assert_eq!(back.journal(), nodes[0].journal());
    assert_eq!(back.journal()[0], "before");
    nodes.push(back);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_caught_up_from_a_snapshot() {
    let mut timing = timing();
    timing.snapshot_every = 5;
    let (cluster, mut nodes) = Cluster::new(3, timing).await;
    for i in 0..30 {
        nodes[(i % 3) as usize]
            .group
            .write(format!("w{i}").into_bytes())
            .await
            .unwrap();
    }
    let leader = leader_of(&nodes).await;
    let victim = nodes.iter().position(|n| n.id != leader).unwrap();
    let victim_id = nodes[victim].id;
    nodes.remove(victim).stop().await;
    std::fs::remove_dir_all(cluster.dir(victim_id)).unwrap();
    assert!(!Path::new(&cluster.dir(victim_id)).exists());

    let back = cluster.restart(victim_id).await;
    eventually("the wiped node caught up", || back.journal().len() == 30).await;
    assert_eq!(back.journal(), nodes[0].journal());
    // It is a voter again: with the other follower gone, the two of them still commit.
    let other = nodes.iter().position(|n| n.id != leader).unwrap();
    nodes.remove(other).stop().await;
    nodes[0].group.write(b"after".to_vec()).await.unwrap();
    eventually("the wiped node applied a write it was needed for", || {
        back.journal().len() == 31
    })
    .await;
    nodes.push(back);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_refuses_writes_within_the_write_timeout() {
    let mut timing = timing();
    timing.write_timeout = Duration::from_secs(2);
    let (_cluster, mut nodes) = Cluster::new(3, timing).await;
    nodes[0].group.write(b"ok".to_vec()).await.unwrap();
    let alone = nodes.remove(0);
    stop_all(nodes).await;
    // A generous bound that only catches a write that never returns.
    let err = tokio::time::timeout(Duration::from_secs(60), alone.group.write(b"lost".to_vec()))
        .await
        .expect("a minority's write hung")
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }),
        "a minority's write must be refused: {err}"
    );
    assert_eq!(alone.journal(), vec!["ok".to_string()]);
    alone.stop().await;
}

/// A leader that no longer hears a majority (a cut network; here its followers stopped) gives
/// up on the write it waits for once a lease has passed — its outcome unknown, as it was
/// proposed — and refuses the next one before proposing it, instead of each running out the
/// write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_majority_refuses_writes_without_proposing_them() {
    let mut timing = timing();
    timing.write_timeout = Duration::from_secs(60);
    let (_cluster, mut nodes) = Cluster::new(3, timing).await;
    nodes[0].group.write(b"ok".to_vec()).await.unwrap();
    let leader = leader_of(&nodes).await;
    let at = nodes.iter().position(|n| n.id == leader).unwrap();
    let alone = nodes.remove(at);
    stop_all(nodes).await;
    // Bounds far below the write timeout: a write that waits it out fails here.
    let bound = Duration::from_secs(30);
    let waiting = tokio::time::timeout(bound, alone.group.write(b"waiting".to_vec()))
        .await
        .expect("the waiting write ran out the write timeout")
        .unwrap_err();
    assert!(
        matches!(waiting, Error::Unavailable { unknown: true, .. }),
        "a proposed write's outcome is unknown: {waiting}"
    );
    let last = alone.group.status().last_log;
    let refused = tokio::time::timeout(bound, alone.group.write(b"refused".to_vec()))
        .await
        .expect("the refused write ran out the write timeout")
        .unwrap_err();
    assert!(
        matches!(refused, Error::Unavailable { unknown: false, .. }),
        "a cut-off leader refuses before proposing: {refused}"
    );
    assert_eq!(alone.group.status().last_log, last, "nothing was proposed");
    alone.stop().await;
}

/// The case the rejoin rule exists for: an entry committed by the leader and one follower, that
/// follower wiped, the leader gone. The wiped follower and the follower that never got the
/// entry are a majority by count, but electing the latter would lose the committed entry; so
/// they must not elect anyone, and the entry survives when the leader returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_does_not_vote_a_committed_entry_away() {
    let mut timing = timing();
    timing.write_timeout = Duration::from_secs(3);
    let (cluster, mut nodes) = Cluster::new(3, timing).await;
    nodes[0].group.write(b"first".to_vec()).await.unwrap();
    eventually("every node applied the first write", || {
        nodes.iter().all(|n| n.journal().len() == 1)
    })
    .await;
    let leader = leader_of(&nodes).await;
    let followers: Vec<u64> = nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    let (wiped, behind) = (followers[0], followers[1]);
    let take = |nodes: &mut Vec<Node>, id: u64| {
        let at = nodes.iter().position(|n| n.id == id).unwrap();
        nodes.remove(at)
    };

    take(&mut nodes, behind).stop().await;
    let committed = nodes[0].group.write(b"committed".to_vec()).await.unwrap();
    assert!(committed.0 > 0);
    take(&mut nodes, wiped).stop().await;
    std::fs::remove_dir_all(cluster.dir(wiped)).unwrap();
    take(&mut nodes, leader).stop().await;
    assert!(nodes.is_empty());

    let behind_node = cluster.restart(behind).await;
    let wiped_node = cluster.restart(wiped).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        behind_node.group.write(b"would replace it".to_vec()),
    )
    .await
    .expect("the write hung");
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "a leader was elected without the committed entry: {refused:?}"
    );
    // Restarted, it re-applies only what a leader says is committed: nothing yet.
    assert!(
        !behind_node
            .journal()
            .iter()
            .any(|e| e == "would replace it")
    );

    let leader_node = cluster.restart(leader).await;
    let all = [behind_node, wiped_node, leader_node];
    eventually("every node has the committed entry", || {
        all.iter().all(|n| {
            n.journal().first().map(String::as_str) == Some("first")
                && n.journal().get(1).map(String::as_str) == Some("committed")
        })
    })
    .await;
    stop_all(all.into()).await;
}

/// A node takes over state from before replication: the group of one starts from it, numbers
/// its entries after it, and keeps both across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_group_of_one_starts_from_its_state_and_keeps_it() {
    let (cluster, nodes) = Cluster::new(1, timing()).await;
    stop_all(nodes).await;
    let dir = cluster.dir(1);
    std::fs::remove_dir_all(&dir).unwrap();
    Group::<Machine<Journal>>::seed(&dir, 7, &cluster.peers, b"a\nb").unwrap();
    assert!(
        Group::<Machine<Journal>>::seed(&dir, 7, &cluster.peers, b"a\nb").is_err(),
        "a seeded directory must not be seeded again"
    );

    let node = cluster.restart(1).await;
    assert_eq!(node.journal(), vec!["a", "b"]);
    let (index, _) = node.group.write(b"c".to_vec()).await.unwrap();
    assert!(index > 7, "entry {index} numbered inside the seeded state");
    assert_eq!(node.journal(), vec!["a", "b", "c"]);
    node.stop().await;

    let node = cluster.restart(1).await;
    node.group.write(b"d".to_vec()).await.unwrap();
    assert_eq!(node.journal(), vec!["a", "b", "c", "d"]);
    node.stop().await;
}
