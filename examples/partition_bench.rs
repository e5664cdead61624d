//! A replicated partition on this machine: appends through a partition's Raft group (its
//! segments are the Raft log) against the same appends to an unreplicated `PartitionLog` on
//! the same disk, in the same run — the reference a replicated write is measured against.
//!
//! - **Single-row appends, one writer**: p50/p99 and appends/s, 3 replicas and a group of one
//!   (a single node, on the path it will take) against the local log.
//! - **Single-row appends, 16 writers**: appends/s and fsyncs per append (group commit
//!   through openraft's batched appends, against the local log's committer).
//! - **Bulk**: entries of 8 frames × 8192 rows (a COPY block per frame), MB/s of frame bytes.
//! - **A statement over three partitions**, one writer: the unreplicated topic's atomic append
//!   (a `TXN` group per partition, one commit record in `txn.log`) against what the same
//!   statement costs through groups of one node with `eddy_raft::Coordinator`: a `TXN` entry
//!   per partition, the commit record as an entry of a commit-log group, then a decision
//!   entry per partition (docs/design/2026-12-02-replication.md).
//!
//! Each section's first line is its reference, and the ratios are against it.
//!
//! Three nodes in this process on loopback TCP share one disk and two cores, so every figure
//! pays three replicas' fsyncs and CPU on one machine; across machines the disk work is
//! parallel. `cargo run --release --example partition_bench`; `EDDY_BENCH_APPENDS` (default
//! 2000) sets the single-row count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use eddy_raft::{Coordinator, Group, PartitionMachine, Timing, Transport};
use eddy_storage::{EncodedFrame, LogConfig, PartitionLog, TopicStore};
use tokio::net::TcpListener;

const GROUP: u64 = 1 << 16;

fn batch(first: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let ids = Int64Array::from_iter_values(first..first + rows as i64);
    let names = StringArray::from_iter_values((0..rows).map(|i| format!("name-{i:08}")));
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
}

fn frames(first: i64, frames: usize, rows: usize) -> Vec<EncodedFrame> {
    (0..frames)
        .map(|f| EncodedFrame::encode(&batch(first + (f * rows) as i64, rows), 0, 0).unwrap())
        .collect()
}

struct Node {
    transport: Arc<Transport>,
    group: Group<PartitionMachine>,
}

async fn cluster(n: u64, root: &std::path::Path) -> Vec<Node> {
    let timing = Timing::partition();
    if n == 1 {
        let transport = Transport::alone(1);
        let group = Group::start_partition(
            GROUP,
            transport.clone(),
            &root.join("node-1"),
            LogConfig::default(),
            &BTreeSet::from([1]),
            timing,
        )
        .await
        .unwrap();
        return vec![Node { transport, group }];
    }
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    let voters: BTreeSet<u64> = peers.keys().copied().collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let transport = Transport::start(id, listener, peers.clone());
        let group = Group::start_partition(
            GROUP,
            transport.clone(),
            &root.join(format!("node-{id}")),
            LogConfig::default(),
            &voters,
            timing.clone(),
        )
        .await
        .unwrap();
        nodes.push(Node { transport, group });
    }
    nodes
}

async fn stop(nodes: Vec<Node>) {
    for node in nodes {
        node.group.shutdown().await.unwrap();
        node.transport.shutdown().await;
    }
}

async fn leader(nodes: &[Node]) -> &Group<PartitionMachine> {
    loop {
        if let Some(id) = nodes[0].group.leader().await {
            return &nodes[(id - 1) as usize].group;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// Figures of one way to append: sorted latencies and appends/s.
struct Run {
    times: Vec<Duration>,
    rate: f64,
}

impl Run {
    fn line(&self, name: &str, reference: Option<&Run>) -> String {
        let ratio = reference.map_or(String::new(), |r| {
            format!(", {:.2}x the reference's rate", self.rate / r.rate)
        });
        format!(
            "  {name:<22} p50 {:.3} ms  p99 {:.3} ms  {:>7.0}/s{ratio}",
            ms(&self.times, 0.5),
            ms(&self.times, 0.99),
            self.rate
        )
    }
}

/// `n` single-row appends one after the other, after 50 to warm up: latencies and rate.
async fn sequential<F, Fut>(n: usize, append: F) -> Run
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..50 {
        append(i).await;
    }
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        append(i as i64).await;
        times.push(t.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    times.sort();
    Run { times, rate }
}

/// `writers` tasks appending single rows until `n` in all: appends/s.
async fn concurrent<F, Fut>(writers: usize, n: usize, append: F) -> f64
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let append = append.clone();
            tokio::spawn(async move {
                for i in 0..n / writers {
                    append((w * n + i) as i64).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The benchmark runs in a task, as the server's sessions do: a caller on the runtime's own
/// thread (`block_on`) pays a thread hand-off on every wake-up that a task on a worker does not
/// (measured: a group of one's lone write p50 0.19-0.21 ms from `block_on`, 0.17-0.21 ms from
/// a task, where the local log's rises from 0.12-0.15 to 0.16-0.19 ms).
#[tokio::main]
async fn main() {
    tokio::spawn(bench()).await.unwrap();
}

async fn bench() {
    let n: usize = std::env::var("EDDY_BENCH_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let root = tempfile::tempdir().unwrap();
    let local =
        Arc::new(PartitionLog::open(&root.path().join("local"), LogConfig::default()).unwrap());
    let three = Arc::new(cluster(3, &root.path().join("three")).await);
    let one = Arc::new(cluster(1, &root.path().join("one")).await);
    let (three_leader, one_leader) = (leader(&three).await, leader(&one).await);

    println!("partition_bench: 3 replicas in one process on loopback, one disk and two cores");
    println!("single-row appends, one writer ({n}):");
    let reference = sequential(n, |i| {
        let append = local.enqueue(frames(i, 1, 1));
        async move {
            append.await.unwrap();
        }
    })
    .await;
    let replicated = sequential(n, |i| async move {
        three_leader.append(frames(i, 1, 1)).await.unwrap();
    })
    .await;
    let alone = sequential(n, |i| async move {
        one_leader.append(frames(i, 1, 1)).await.unwrap();
    })
    .await;
    println!("{}", reference.line("local log (reference)", None));
    println!("{}", replicated.line("3 replicas", Some(&reference)));
    println!("{}", alone.line("group of one", Some(&reference)));

    println!("single-row appends, 16 writers ({n}):");
    let fsyncs = local.stats().fsyncs;
    let local_rate = concurrent(16, n, {
        let local = local.clone();
        move |i| {
            let local = local.clone();
            async move {
                local.enqueue(frames(i, 1, 1)).await.unwrap();
            }
        }
    })
    .await;
    let local_syncs = (local.stats().fsyncs - fsyncs) as f64 / n as f64;
    let mut rates = Vec::new();
    for nodes in [&three, &one] {
        let log = leader(nodes).await.log().clone();
        let fsyncs = log.stats().fsyncs;
        let rate = concurrent(16, n, {
            let nodes = nodes.clone();
            move |i| {
                let nodes = nodes.clone();
                async move {
                    leader(&nodes).await.append(frames(i, 1, 1)).await.unwrap();
                }
            }
        })
        .await;
        rates.push((rate, (log.stats().fsyncs - fsyncs) as f64 / n as f64));
    }
    println!("  local log (reference)  {local_rate:>7.0}/s  {local_syncs:.2} fsyncs per append");
    for ((rate, syncs), name) in rates.iter().zip(["3 replicas", "group of one"]) {
        println!(
            "  {name:<22} {rate:>7.0}/s  {syncs:.2} fsyncs per append (leader), {:.2}x the local log's rate",
            rate / local_rate
        );
    }

    println!("bulk: entries of 8 frames x 8192 rows:");
    let entries = 24;
    let block = frames(0, 8, 8192);
    let bytes: u64 = block.iter().map(|f| f.len()).sum::<u64>() * entries as u64;
    let start = Instant::now();
    for e in 0..entries {
        local.enqueue(frames(e * 65536, 8, 8192)).await.unwrap();
    }
    let local_mb = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
    println!("  local log (reference)  {local_mb:>7.0} MB/s");
    for (nodes, name) in [(&three, "3 replicas"), (&one, "group of one")] {
        let group = leader(nodes).await;
        let start = Instant::now();
        for e in 0..entries {
            group.append(frames(e * 65536, 8, 8192)).await.unwrap();
        }
        let mb = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
        println!(
            "  {name:<22} {mb:>7.0} MB/s, {:.2}x the local log's",
            mb / local_mb
        );
    }
    atomic_statements(n / 4, root.path()).await;
    for nodes in [three, one] {
        if let Ok(nodes) = Arc::try_unwrap(nodes) {
            stop(nodes).await;
        }
    }
}

/// One-row shares of one statement in three partitions, `n` statements one after the other.
async fn atomic_statements(n: usize, root: &std::path::Path) {
    println!("a statement of one row in each of three partitions, one writer ({n}):");
    let store = TopicStore::open(&root.join("topics")).unwrap();
    let topic = store
        .open_topic("t", "t-1", 3, LogConfig::default())
        .unwrap();
    let reference = sequential(n, |i| {
        let topic = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let work = (0..3).map(|p| (p, frames(i, 1, 1))).collect();
                topic.append_atomic(work).unwrap();
            })
            .await
            .unwrap();
        }
    })
    .await;
    let transport = Transport::alone(1);
    let mut groups = Vec::new();
    for g in 0..4 {
        let group = Group::start_partition(
            GROUP + 1 + g,
            transport.clone(),
            &root.join(format!("atomic-{g}")),
            LogConfig::default(),
            &BTreeSet::from([1]),
            Timing::partition(),
        )
        .await
        .unwrap();
        groups.push(group);
    }
    let coordinator = Coordinator::new(groups.pop().unwrap());
    let (parts, coordinator) = (&groups, &coordinator);
    let replicated = sequential(n, |i| async move {
        let shares = parts.iter().map(|g| (g, frames(i, 1, 1))).collect();
        coordinator.append(shares).await.unwrap();
    })
    .await;
    println!("{}", reference.line("local topic (reference)", None));
    println!("{}", replicated.line("groups of one", Some(&reference)));
    let rows: u64 = parts.iter().map(|g| g.log().high_watermark()).sum();
    assert_eq!(rows, 3 * (n as u64 + 50), "every statement's rows visible");
    for group in groups.iter().chain([coordinator.commit_log()]) {
        group.shutdown().await.unwrap();
    }
    transport.shutdown().await;
}
