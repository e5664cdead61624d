//! Raft groups on this machine: what a replicated write costs, how soon a restarted group of one
//! takes writes, and what groups cost at idle — with the floor each is measured against in the
//! same run.
//!
//! - **Writes** through a 3-node group (three nodes in this process, loopback TCP, one disk):
//!   sequential writes from the leader and from a follower (forwarded), p50/p99 and writes/s,
//!   against the floor a durable write cannot beat here: one small append + fdatasync.
//! - **Restart of a group of one** (what a single node's metadata group does at every start):
//!   time from `Group::start` to its first write committed.
//! - **Idle**: 3 nodes × N groups (default 100, `EDDY_RAFT_GROUPS`) with leaders elected, CPU
//!   of the process and messages/s for 10 s (`EDDY_RAFT_IDLE_SECONDS`), against 3 nodes × 1
//!   group: metadata-style groups (`Timing::default`, heartbeats every 100 ms), then partition
//!   groups as a node will hold one per partition replica (`Timing::partition`, every 150 ms,
//!   their segments the log). openraft 0.9 heartbeats each group on its own; the transport
//!   coalesces what is queued into one socket write, so writes/s shows how much that saves.
//!
//! `cargo run --release --example raft_bench`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_raft::{Group, Machine, PartitionMachine, Result, StateMachine, Timing, Transport};
use eddy_storage::LogConfig;
use tokio::net::TcpListener;

/// Counts what it applies.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _index: u64, _command: &[u8]) -> Vec<u8> {
        self.0 += 1;
        Vec::new()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.0.to_le_bytes().to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let mut b = [0; 8];
        b.copy_from_slice(bytes.get(..8).unwrap_or(&[0; 8]));
        self.0 = u64::from_le_bytes(b);
        Ok(())
    }
}

struct Node {
    transport: Arc<Transport>,
    groups: Vec<Group<Machine<Counter>>>,
    partitions: Vec<Group<PartitionMachine>>,
}

/// What the groups of a cluster are.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Groups over a state machine, as the metadata group (`Timing::default`).
    Metadata,
    /// Partition groups (`Timing::partition`).
    Partition,
}

async fn cluster(nodes: u64, groups: u64, root: &std::path::Path) -> Vec<Node> {
    cluster_of(nodes, groups, Kind::Metadata, root).await
}

async fn cluster_of(nodes: u64, groups: u64, kind: Kind, root: &std::path::Path) -> Vec<Node> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=nodes {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    let voters: BTreeSet<u64> = peers.keys().copied().collect();
    let mut out = Vec::new();
    for (id, l) in listeners {
        out.push((id, Transport::start(id, l, peers.clone())));
    }
    let mut started = Vec::new();
    for (id, transport) in out {
        let (mut gs, mut ps) = (Vec::new(), Vec::new());
        for g in 0..groups {
            let dir = root.join(format!("n{id}/g{g}"));
            if kind == Kind::Partition {
                let group = Group::start_partition(
                    g,
                    transport.clone(),
                    &dir,
                    LogConfig::default(),
                    &voters,
                    Timing::partition(),
                )
                .await
                .unwrap();
                ps.push(group);
                continue;
            }
            let group = Group::start(
                g,
                transport.clone(),
                &dir,
                Counter::default(),
                &voters,
                Timing::default(),
            )
            .await
            .unwrap();
            gs.push(group);
        }
        started.push(Node {
            transport,
            groups: gs,
            partitions: ps,
        });
    }
    started
}

async fn stop(nodes: Vec<Node>) {
    for node in nodes {
        for g in &node.groups {
            let _ = g.shutdown().await;
        }
        for g in &node.partitions {
            let _ = g.shutdown().await;
        }
        node.transport.shutdown().await;
    }
}

/// Waits until every group has a leader every node knows of.
async fn elected(nodes: &[Node]) {
    loop {
        let mut all = true;
        for node in nodes {
            for g in &node.groups {
                all &= g.leader().await.is_some();
            }
            for g in &node.partitions {
                all &= g.leader().await.is_some();
            }
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// Seconds of CPU this process used so far (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks / hz
}

async fn timed_writes(group: &Group<Machine<Counter>>, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        group.write(format!("w{i}").into_bytes()).await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    times
}

fn fsync_floor(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let mut file = std::fs::File::create(dir.join("floor")).unwrap();
    file.write_all(&vec![0; 1 << 20]).unwrap();
    file.sync_all().unwrap();
    let record = [7u8; 120];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        file.write_all_at(&record, (i * record.len()) as u64)
            .unwrap();
        file.sync_data().unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    times
}

#[tokio::main]
async fn main() {
    let writes: usize = std::env::var("EDDY_RAFT_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let groups: u64 = std::env::var("EDDY_RAFT_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let idle_seconds: u64 = std::env::var("EDDY_RAFT_IDLE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let root = tempfile::tempdir().unwrap();

    // Writes through a 3-node group.
    let nodes = cluster(3, 1, &root.path().join("w")).await;
    elected(&nodes).await;
    let leader_id = nodes[0].groups[0].leader().await.unwrap();
    let leader = &nodes[(leader_id - 1) as usize].groups[0];
    let follower = &nodes[(leader_id % 3) as usize].groups[0];
    timed_writes(leader, 100).await; // warm up
    let start = Instant::now();
    let from_leader = timed_writes(leader, writes).await;
    let leader_rate = writes as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let from_follower = timed_writes(follower, writes).await;
    let follower_rate = writes as f64 / start.elapsed().as_secs_f64();
    stop(nodes).await;
    let floor = fsync_floor(root.path(), writes);
    println!("raft_bench: 3 nodes in one process on loopback, one disk and two cores between them");
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "sequential writes", "writes/s", "p50 ms", "p99 ms", "p50 / fsync"
    );
    let floor_p50 = percentile(&floor, 0.5);
    for (label, times, rate) in [
        ("3-node group, from the leader", &from_leader, leader_rate),
        (
            "3-node group, from a follower (forwarded)",
            &from_follower,
            follower_rate,
        ),
    ] {
        println!(
            "{label:<44} {rate:>10.0} {:>10.3} {:>10.3} {:>11.1}x",
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 0.5) / floor_p50
        );
    }
    println!(
        "{:<44} {:>10.0} {:>10.3} {:>10.3} {:>12}",
        "floor: 120-byte overwrite + fdatasync",
        writes as f64 / floor.iter().map(Duration::as_secs_f64).sum::<f64>(),
        floor_p50,
        percentile(&floor, 0.99),
        "1.0x"
    );

    // A group of one, restarted: how soon it takes a write.
    let mut restarts = Vec::new();
    let one = root.path().join("one");
    for _ in 0..5 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers = BTreeMap::from([(1, listener.local_addr().unwrap().to_string())]);
        let start = Instant::now();
        let transport = Transport::start(1, listener, peers);
        let group = Group::start(
            0,
            transport.clone(),
            &one,
            Counter::default(),
            &BTreeSet::from([1]),
            Timing::default(),
        )
        .await
        .unwrap();
        group.write(b"x".to_vec()).await.unwrap();
        restarts.push(start.elapsed());
        group.shutdown().await.unwrap();
        transport.shutdown().await;
    }
    let first = restarts.remove(0);
    restarts.sort();
    println!(
        "group of one, start to first write: first start {:.1} ms, restarts median {:.1} ms of {} (election timeout {:?}-{:?})",
        first.as_secs_f64() * 1e3,
        percentile(&restarts, 0.5),
        restarts.len(),
        Timing::default().election_min,
        Timing::default().election_max
    );

    // Idle cost.
    println!("idle, {idle_seconds} s with leaders elected:");
    println!(
        "{:<28} {:>12} {:>14} {:>16}",
        "", "CPU % of 1", "messages/s", "socket writes/s"
    );
    let mut base_cpu = 0.0;
    for (kind, n) in [
        (Kind::Metadata, 1),
        (Kind::Metadata, groups),
        (Kind::Partition, groups),
    ] {
        let dir = root.path().join(format!("idle{n}-{}", kind as u8));
        let nodes = cluster_of(3, n, kind, &dir).await;
        elected(&nodes).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = |nodes: &[Node]| {
            nodes.iter().fold((0, 0), |(m, w), node| {
                let (nm, nw) = node.transport.sent();
                (m + nm, w + nw)
            })
        };
        let (m0, w0) = sent(&nodes);
        let c0 = cpu_seconds();
        tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
        let cpu = (cpu_seconds() - c0) / idle_seconds as f64 * 100.0;
        let (m1, w1) = sent(&nodes);
        if n == 1 {
            base_cpu = cpu;
        }
        println!(
            "{:<28} {:>12.1} {:>14.0} {:>16.0}{}",
            match kind {
                Kind::Metadata => format!("3 nodes x {n} groups"),
                Kind::Partition => format!("3 nodes x {n} partitions"),
            },
            cpu,
            (m1 - m0) as f64 / idle_seconds as f64,
            (w1 - w0) as f64 / idle_seconds as f64,
            if n == 1 {
                String::new()
            } else {
                format!("   ({:.1}x the CPU of 1 group)", cpu / base_cpu.max(0.01))
            }
        );
        stop(nodes).await;
    }
}
