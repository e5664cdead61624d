//! Statements over several partitions through their groups (`Coordinator`): all of a statement
//! readable or none of it — on success, when a share fails, and across a restart at either side
//! of the commit record.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eddy_raft::{Coordinator, Group, PartitionMachine, Timing, Transport};
use eddy_storage::{CommitRecord, LogConfig};

mod common;
use common::{frames, rows};

/// Partitions 0-2 of one stream, and the commit log.
const GROUPS: [u64; 4] = [1 << 16, (1 << 16) + 1, (1 << 16) + 2, 2 << 16];

/// A node alone with three partition groups and a commit log, in `root`.
struct Node {
    transport: Arc<Transport>,
    parts: Vec<Group<PartitionMachine>>,
    coordinator: Coordinator,
}

impl Node {
    async fn start(root: &Path) -> Node {
        Node::start_with(root, eddy_raft::MAX_ENTRY_BYTES).await
    }

    /// A node whose coordinator cuts shares into entries of at most `entry_limit` bytes.
    async fn start_with(root: &Path, entry_limit: usize) -> Node {
        let transport = Transport::alone(1);
        let mut groups = Vec::new();
        for id in GROUPS {
            let timing = Timing {
                write_timeout: Duration::from_secs(5),
                ..Timing::partition()
            };
            let group = Group::start_partition(
                id,
                transport.clone(),
                &root.join(id.to_string()),
                LogConfig::default(),
                &BTreeSet::from([1]),
                timing,
            )
            .await
            .unwrap();
            groups.push(group);
        }
        let commit_log = groups.pop().unwrap();
        Node {
            transport,
            parts: groups,
            coordinator: Coordinator::new(commit_log).with_entry_limit(entry_limit),
        }
    }

    fn parts(&self) -> Vec<&Group<PartitionMachine>> {
        self.parts.iter().collect()
    }

    fn rows(&self) -> Vec<Vec<i64>> {
        self.parts.iter().map(|g| rows(g.log())).collect()
    }

    async fn stop(self) {
        for group in self.parts.iter().chain([self.coordinator.commit_log()]) {
            group.shutdown().await.unwrap();
        }
        self.transport.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_three_partitions_is_readable_whole() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let p = node.parts();
    let ranges = node
        .coordinator
        .append(vec![
            (p[0], frames(&[&[1, 2]])),
            (p[1], frames(&[&[3]])),
            (p[2], frames(&[&[4]])),
        ])
        .await
        .unwrap();
    assert_eq!(ranges, [vec![(0, 2)], vec![(0, 1)], vec![(0, 1)]]);
    assert_eq!(node.rows(), [vec![1, 2], vec![3], vec![4]]);
    assert_eq!(node.coordinator.high_watermarks(&p), [2, 1, 1]);
    // A plain write after it, and one more statement.
    p[1].append(frames(&[&[5]])).await.unwrap();
    node.coordinator
        .append(vec![(p[2], frames(&[&[6]])), (p[0], frames(&[&[7]]))])
        .await
        .unwrap();
    assert_eq!(node.rows(), [vec![1, 2, 7], vec![3, 5], vec![4, 6]]);
    let records = rows_of_commit_log(&node);
    assert_eq!(records.len(), 2);
    assert!(
        node.coordinator
            .append(vec![(p[0], frames(&[&[8]])), (p[0], frames(&[&[9]]))])
            .await
            .is_err(),
        "one partition twice"
    );
    assert_eq!(node.rows()[0], [1, 2, 7]);
    node.stop().await;
}

/// Appends a record to the commit log directly, as a writer racing the test's coordinator does.
async fn append_record(node: &Node, commit: bool, shares: Vec<(u64, u64, u64)>) {
    let record = CommitRecord { commit, shares }.frame().unwrap();
    node.coordinator
        .commit_log()
        .append(vec![record])
        .await
        .unwrap();
}

/// One-row `TXN` shares of values `first + i` in each partition, as (group, base, next).
async fn txn_shares(node: &Node, first: i64) -> Vec<(u64, u64, u64)> {
    let mut shares = Vec::new();
    for (i, g) in node.parts().iter().enumerate() {
        let (base, next) = g.append_txn(frames(&[&[first + i as i64]])).await.unwrap();
        shares.push((g.id(), base, next));
    }
    shares
}

/// A share whose writer lost track of it holds its partition's readers back until a sweep
/// gives it up — not before its grace has passed, and without stopping other statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_share_is_given_up_by_a_sweep_after_its_grace() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let p = node.parts();
    p[0].append(frames(&[&[1]])).await.unwrap();
    p[0].append_txn(frames(&[&[100]])).await.unwrap();
    p[0].append(frames(&[&[2]])).await.unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(node.coordinator.sweep(&p, hour).await.unwrap(), 0);
    assert_eq!(node.rows(), [vec![1], vec![], vec![]], "within its grace");
    node.coordinator
        .append(vec![(p[1], frames(&[&[3]])), (p[2], frames(&[&[4]]))])
        .await
        .unwrap();
    assert_eq!(node.rows(), [vec![1], vec![3], vec![4]]);
    assert_eq!(node.coordinator.sweep(&p, Duration::ZERO).await.unwrap(), 1);
    assert_eq!(node.rows(), [vec![1, 2], vec![3], vec![4]]);
    assert_eq!(p[0].log().aborted_rows(0, 3), 1);
    let records = rows_of_commit_log(&node);
    assert_eq!(
        records.len(),
        2,
        "the statement's commit, the orphan's abort"
    );
    assert!(records[0].commit && !records[1].commit);
    assert_eq!(node.coordinator.sweep(&p, Duration::ZERO).await.unwrap(), 0);
    node.stop().await;
}

/// A sweep that gave up one share of a statement before the statement's commit record reached
/// the commit log aborts the whole statement: the commit record that comes after commits
/// nothing, on every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_record_after_an_abort_of_one_of_its_shares_commits_nothing() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let shares = txn_shares(&node, 10).await;
    let p = node.parts();
    assert_eq!(
        node.coordinator
            .sweep(&p[..1], Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    append_record(&node, true, shares.clone()).await;
    assert_eq!(node.coordinator.resolve(&p).await.unwrap(), 2);
    assert_eq!(node.rows(), [Vec::<i64>::new(), vec![], vec![]]);
    for g in &p {
        assert_eq!(g.log().aborted_rows(0, 1), 1, "group {}", g.id());
    }
    node.stop().await;
}

/// A commit record that is first in the commit log wins over an abort record naming the same
/// shares after it (how a writer settles a record whose outcome it does not know).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_record_first_in_the_commit_log_wins_over_a_later_abort() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let shares = txn_shares(&node, 10).await;
    append_record(&node, true, shares.clone()).await;
    append_record(&node, false, shares).await;
    let p = node.parts();
    assert_eq!(node.coordinator.resolve(&p).await.unwrap(), 3);
    assert_eq!(node.rows(), [vec![10], vec![11], vec![12]]);
    node.stop().await;
}

/// A share larger than one entry is written as several `TXN` entries of its partition, which
/// one commit record names: its rows become readable together, in order — also for a
/// statement of one partition, which fits no single entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_larger_than_an_entry_spans_entries_and_commits_whole() {
    let root = tempfile::tempdir().unwrap();
    let one = frames(&[&[0]]).remove(0).len() as usize;
    let node = Node::start_with(root.path(), 2 * one).await;
    let p = node.parts();
    let ranges = node
        .coordinator
        .append(vec![
            (p[0], frames(&[&[1], &[2], &[3], &[4], &[5]])),
            (p[1], frames(&[&[6]])),
        ])
        .await
        .unwrap();
    assert_eq!(ranges, [vec![(0, 2), (2, 4), (4, 5)], vec![(0, 1)]]);
    assert_eq!(node.rows(), [vec![1, 2, 3, 4, 5], vec![6], vec![]]);
    let ranges = node
        .coordinator
        .append(vec![(p[2], frames(&[&[7], &[8], &[9]]))])
        .await
        .unwrap();
    assert_eq!(ranges, [vec![(0, 2), (2, 3)]], "two TXN entries");
    assert!(p[2].log().undecided().unwrap().is_empty());
    let ranges = node
        .coordinator
        .append(vec![(p[2], frames(&[&[10]]))])
        .await
        .unwrap();
    assert_eq!(ranges, [vec![(3, 4)]], "one plain entry");
    assert_eq!(node.rows()[2], [7, 8, 9, 10]);
    let records = rows_of_commit_log(&node);
    assert_eq!(
        records.len(),
        2,
        "a record for each statement over several entries"
    );
    assert_eq!(records[0].shares.len(), 4);
    node.stop().await;
}

/// A frame larger than the entry size a share is cut to (one big batch of rows) is an entry
/// of its own, not a refused write; the frames beside it keep to the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_the_entry_size_is_an_entry_of_its_own() {
    let root = tempfile::tempdir().unwrap();
    let one = frames(&[&[0]]).remove(0).len() as usize;
    let node = Node::start_with(root.path(), one).await;
    let p = node.parts();
    let wide: Vec<i64> = (100..200).collect();
    let mut share = frames(&[&[1]]);
    share.extend(frames(&[&wide]));
    share.extend(frames(&[&[2]]));
    assert!(share[1].len() as usize > one);
    let ranges = node.coordinator.append(vec![(p[0], share)]).await.unwrap();
    assert_eq!(ranges, [vec![(0, 1), (1, 101), (101, 102)]]);
    let mut expected = vec![1];
    expected.extend(&wide);
    expected.push(2);
    assert_eq!(node.rows()[0], expected);
    node.stop().await;
}

fn rows_of_commit_log(node: &Node) -> Vec<CommitRecord> {
    node.coordinator
        .commit_log()
        .log()
        .reader(0)
        .unwrap()
        .map(|b| CommitRecord::from_batch(&b.unwrap().batch).unwrap())
        .collect()
}

/// The writer died after every share was written and before its commit record: after a
/// restart the shares are aborted — never readable — and the partitions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_without_a_commit_record_are_aborted_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let p = node.parts();
    p[0].append(frames(&[&[1]])).await.unwrap();
    for (i, g) in p.iter().enumerate() {
        g.append_txn(frames(&[&[100 + i as i64]])).await.unwrap();
    }
    p[0].append(frames(&[&[2]])).await.unwrap();
    assert_eq!(node.rows(), [vec![1], vec![], vec![]], "held back");
    node.stop().await;

    let node = Node::start(root.path()).await;
    let p = node.parts();
    assert_eq!(node.rows(), [vec![1], vec![], vec![]], "still held back");
    assert_eq!(node.coordinator.resolve(&p).await.unwrap(), 3);
    assert_eq!(node.rows(), [vec![1, 2], vec![], vec![]]);
    assert_eq!(p[0].log().aborted_rows(0, 3), 1);
    node.coordinator
        .append(vec![(p[0], frames(&[&[3]])), (p[1], frames(&[&[4]]))])
        .await
        .unwrap();
    assert_eq!(node.rows(), [vec![1, 2, 3], vec![4], vec![]]);
    node.stop().await;
}

/// The writer died after its commit record and before the decisions: the statement is
/// committed, and a restart shows all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_named_by_a_commit_record_are_committed_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(root.path()).await;
    let p = node.parts();
    let mut shares = Vec::new();
    for (i, g) in p.iter().enumerate() {
        let (base, next) = g.append_txn(frames(&[&[10 + i as i64]])).await.unwrap();
        shares.push((g.id(), base, next));
    }
    append_record(&node, true, shares).await;
    assert_eq!(node.rows(), [Vec::<i64>::new(), vec![], vec![]]);
    node.stop().await;

    let node = Node::start(root.path()).await;
    let p = node.parts();
    assert_eq!(node.coordinator.resolve(&p).await.unwrap(), 3);
    assert_eq!(node.rows(), [vec![10], vec![11], vec![12]]);
    assert_eq!(
        node.coordinator.resolve(&p).await.unwrap(),
        0,
        "nothing left to decide"
    );
    node.stop().await;
}

/// While statements commit one after another, snapshots taken through the coordinator never
/// hold part of one: every statement writes one row to each partition, so every snapshot
/// shows the three partitions at the same count (a partition's own high watermark moves as
/// its decision applies, before the others').
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_never_holds_part_of_a_statement() {
    let root = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::start(root.path()).await);
    let statements = 60;
    let writer = {
        let node = node.clone();
        tokio::spawn(async move {
            let p = node.parts();
            for i in 0..statements {
                node.coordinator
                    .append(vec![
                        (p[0], frames(&[&[i]])),
                        (p[1], frames(&[&[i]])),
                        (p[2], frames(&[&[i]])),
                    ])
                    .await
                    .unwrap();
            }
        })
    };
    let mut snapshots = 0;
    while !writer.is_finished() {
        let p = node.parts();
        let ends = node.coordinator.high_watermarks(&p);
        assert!(
            ends.iter().all(|&e| e == ends[0]),
            "a snapshot holds part of a statement: {ends:?}"
        );
        snapshots += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(snapshots > statements, "{snapshots} snapshots");
    let p = node.parts();
    assert_eq!(node.coordinator.high_watermarks(&p), [statements as u64; 3]);
    Arc::into_inner(node).unwrap().stop().await;
}

/// A sweep that commits statements found committed in the commit log (their writer gone
/// before its decisions) decides them partition by partition; snapshots taken meanwhile never
/// hold part of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_never_holds_part_of_a_statement_a_sweep_commits() {
    let root = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::start(root.path()).await);
    let statements = 30;
    for i in 0..statements {
        let shares = txn_shares(&node, 10 * i).await;
        append_record(&node, true, shares).await;
    }
    assert_eq!(node.coordinator.high_watermarks(&node.parts()), [0; 3]);
    let sweeper = {
        let node = node.clone();
        tokio::spawn(async move { node.coordinator.sweep(&node.parts(), Duration::ZERO).await })
    };
    let mut snapshots = 0;
    while !sweeper.is_finished() {
        let ends = node.coordinator.high_watermarks(&node.parts());
        assert!(
            ends.iter().all(|&e| e == ends[0]),
            "a snapshot holds part of a statement: {ends:?}"
        );
        snapshots += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(sweeper.await.unwrap().unwrap(), 3 * statements as usize);
    assert!(snapshots > 1, "{snapshots} snapshots");
    let p = node.parts();
    assert_eq!(node.coordinator.high_watermarks(&p), [statements as u64; 3]);
    Arc::into_inner(node).unwrap().stop().await;
}
