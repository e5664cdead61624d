//! Retention and a partition group: deleting a Raft log's oldest segments (as retention and the
//! cold tier do) takes nothing the group still needs — a group of one goes on taking writes,
//! and restarts with the rows it kept, offsets going on where they were.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use eddy_raft::{Group, PartitionMachine, Timing, Transport};
use eddy_storage::LogConfig;

mod common;
use common::{frames, rows};

const GROUP: u64 = 1 << 16;

/// Segments of ~1 KiB, at most ~4 KiB kept: a few dozen single-row entries roll several.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        retention_bytes: Some(4096),
        ..LogConfig::default()
    }
}

async fn start(dir: &Path) -> Group<PartitionMachine> {
    let timing = Timing {
        write_timeout: Duration::from_secs(5),
        ..Timing::partition()
    };
    Group::start_partition(
        GROUP,
        Transport::alone(1),
        dir,
        config(),
        &BTreeSet::from([1]),
        timing,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_goes_on_after_retention_deleted_its_first_segments() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    let group = start(&dir).await;
    for i in 0..60 {
        assert_eq!(
            group.append(frames(&[&[i]])).await.unwrap(),
            (i as u64, i as u64 + 1)
        );
    }
    let deleted = group.log().enforce_retention(i64::MAX).unwrap();
    assert!(deleted > 0, "retention deleted no segment");
    let start_offset = group.log().log_start_offset();
    assert!(
        start_offset > 0 && start_offset < 60,
        "log start {start_offset}"
    );
    let kept: Vec<i64> = (start_offset as i64..60).collect();
    assert_eq!(rows(group.log()), kept);
    assert_eq!(group.append(frames(&[&[60]])).await.unwrap(), (60, 61));
    group.shutdown().await.unwrap();

    let group = start(&dir).await;
    assert_eq!(group.log().log_start_offset(), start_offset);
    assert_eq!(group.log().high_watermark(), 61);
    assert_eq!(group.append(frames(&[&[61]])).await.unwrap(), (61, 62));
    let kept: Vec<i64> = (start_offset as i64..62).collect();
    assert_eq!(rows(group.log()), kept);
    group.shutdown().await.unwrap();
}

/// Retention stops at the first segment holding an undecided `TXN` entry: its rows may yet be
/// committed, and the decision must find them. Once decided, the segment may go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_an_undecided_share() {
    let root = tempfile::tempdir().unwrap();
    let group = start(&root.path().join("p")).await;
    for i in 0..10 {
        group.append(frames(&[&[i]])).await.unwrap();
    }
    let share = group.append_txn(frames(&[&[100]])).await.unwrap();
    for i in 11..60 {
        group.append(frames(&[&[i]])).await.unwrap();
    }
    group.log().enforce_retention(i64::MAX).unwrap();
    assert!(
        group.log().log_start_offset() <= share.0,
        "the share's segment was deleted: log start {}, share {share:?}",
        group.log().log_start_offset()
    );
    group
        .decide(&eddy_storage::Decision {
            commit: true,
            ranges: vec![share],
        })
        .await
        .unwrap();
    assert!(group.log().enforce_retention(i64::MAX).unwrap() > 0);
    assert!(group.log().log_start_offset() > share.1);
    group.shutdown().await.unwrap();
}
