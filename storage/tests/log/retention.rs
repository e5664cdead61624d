//! Retention deletes whole closed segments from the front, never the active one.

use eddy_storage::{LogConfig, PartitionLog};

use crate::common::{batch, fill, read_offsets, small_segments};

#[test]
fn retention_by_bytes_deletes_oldest_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(2_000)).unwrap();
    fill(&log, &[20; 30]);
    let before = log.segments();
    assert!(before.len() >= 5, "{} segments", before.len());
    let total: u64 = before.iter().map(|s| s.bytes).sum();
    let limit = total / 2;

    log.set_config(LogConfig {
        retention_bytes: Some(limit),
        ..small_segments(2_000)
    });
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    let after = log.segments();
    assert_eq!(after.len(), before.len() - deleted);
    assert!(after.iter().map(|s| s.bytes).sum::<u64>() <= limit);
    // Deleting one segment fewer would have stayed over the limit.
    assert!(after.iter().map(|s| s.bytes).sum::<u64>() + before[deleted - 1].bytes > limit);
    for gone in &before[..deleted] {
        assert!(!gone.path.exists());
        assert!(!gone.path.with_extension("index").exists());
    }
    let start = after[0].base_offset;
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(read_offsets(&log, 0), (start..600).collect::<Vec<_>>());

    // A tiny limit deletes every closed segment but never the active one.
    log.set_config(LogConfig {
        retention_bytes: Some(0),
        ..small_segments(2_000)
    });
    log.enforce_retention(0).unwrap();
    let last = log.segments();
    assert_eq!(last.len(), 1);
    assert!(last[0].active);
    assert_eq!(
        read_offsets(&log, 0),
        (last[0].base_offset..600).collect::<Vec<_>>()
    );
    assert_eq!(log.append(&batch(600, 1), 0, 0).unwrap().base_offset, 600);
}

#[test]
fn retention_by_time_deletes_segments_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(1_000),
        ..small_segments(1_500)
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // Timestamps 0, 100, 200, ...: batch i at 100 * i.
    for i in 0..30u64 {
        let t = 100 * i as i64;
        log.append(&batch(log.high_watermark(), 10), t, t).unwrap();
    }
    let before = log.segments();
    assert!(before.len() >= 4);
    // now = 2_500: the cutoff is 1_500; segments whose max timestamp < 1_500 go.
    let deleted = log.enforce_retention(2_500).unwrap();
    let expected = before
        .iter()
        .take_while(|s| !s.active && s.max_timestamp.unwrap() < 1_500)
        .count();
    assert!(expected > 0);
    assert_eq!(deleted, expected);
    let after = log.segments();
    assert!(after[0].max_timestamp.unwrap() >= 1_500);
    assert_eq!(
        read_offsets(&log, 0),
        (after[0].base_offset..300).collect::<Vec<_>>()
    );
    // Far in the future: everything closed is expired, the active segment stays.
    log.enforce_retention(i64::MAX).unwrap();
    assert_eq!(log.segments().len(), 1);
    drop(log);
    // Reopen after retention: offsets start where retention left them.
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.high_watermark(), 300);
    assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
}

#[test]
fn readers_survive_segments_deleted_underneath_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(1_500);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    fill(&log, &[10; 40]);
    let segments = log.segments();
    assert!(segments.len() >= 4);

    // Reader A is inside the first segment; reader B has not started.
    let mut a = log.reader(0).unwrap();
    let first = a.next().unwrap().unwrap();
    assert_eq!(first.base_offset, 0);
    let b = log.reader(0).unwrap();

    log.set_config(LogConfig {
        retention_bytes: Some(0),
        ..config
    });
    log.enforce_retention(0).unwrap();
    let start = log.log_start_offset();
    assert!(start > segments[0].next_offset);

    // Readers are snapshots: A and B read every batch that existed when they were created,
    // from the files they pinned, although the segments are gone from the log.
    let rest: Vec<u64> = a.map(|b| b.unwrap().base_offset).collect();
    assert_eq!(rest, (1..40).map(|i| i * 10).collect::<Vec<u64>>());
    let all: Vec<u64> = b.map(|b| b.unwrap().base_offset).collect();
    assert_eq!(all, (0..40).map(|i| i * 10).collect::<Vec<u64>>());
    // A new reader starts at the new log start.
    assert_eq!(
        log.reader(0).unwrap().next().unwrap().unwrap().base_offset,
        start
    );
    assert!(log.reader(0).unwrap().next().unwrap().is_ok());
}
