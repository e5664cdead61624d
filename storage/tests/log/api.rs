//! Edges of the public API.

use eddy_storage::{Error, LogConfig, PartitionLog};

use crate::common::{batch, fill, read_offsets, small_segments};

#[test]
fn fresh_log_is_empty_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(&dir.path().join("p0"), LogConfig::default()).unwrap();
    assert_eq!(log.high_watermark(), 0);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.reader(0).unwrap().count(), 0);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert!(matches!(
        log.reader(1),
        Err(Error::OutOfRange { requested: 1, .. })
    ));
    assert_eq!(log.segments().len(), 1);
}

#[test]
fn empty_batches_and_inverted_timestamps_are_rejected_without_using_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(matches!(
        log.append(&batch(0, 0), 0, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append(&batch(0, 1), 5, 4),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(log.append(&batch(0, 3), 1, 1).unwrap().base_offset, 0);
    assert_eq!(log.high_watermark(), 3);
}

#[test]
fn closed_log_refuses_appends_and_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(matches!(
        PartitionLog::open(dir.path(), LogConfig::default()),
        Err(Error::Locked { .. })
    ));
    fill(&log, &[2, 3]);
    log.close().unwrap();
    log.close().unwrap();
    assert!(matches!(log.append(&batch(5, 1), 0, 0), Err(Error::Closed)));
    assert_eq!(read_offsets(&log, 0), (0..5).collect::<Vec<_>>());
    let reopened = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(reopened.append(&batch(5, 1), 0, 0).unwrap().base_offset, 5);
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(1)).unwrap();
    fill(&log, &[1, 1, 1]);
    let segments = log.segments();
    assert_eq!(
        segments.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(segments[2].path.ends_with("00000000000000000002.log"));

    log.set_config(LogConfig {
        segment_ms: Some(0),
        ..LogConfig::default()
    });
    fill(&log, &[2, 2]);
    assert_eq!(log.segments().len(), 5);
    log.set_config(LogConfig::default());
    fill(&log, &[2, 2]);
    assert_eq!(log.segments().len(), 5);
    assert_eq!(read_offsets(&log, 0), (0..11).collect::<Vec<_>>());
}

#[test]
fn reader_starts_inside_a_batch_with_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    fill(&log, &[10, 10]);
    let first = log.reader(15).unwrap().next().unwrap().unwrap();
    assert_eq!(first.base_offset, 10);
    assert_eq!(first.batch.num_rows(), 10);
    // The end bound is a snapshot: later appends are not seen.
    let reader = log.reader(0).unwrap();
    fill(&log, &[5]);
    assert_eq!(reader.count(), 2);
}

#[test]
fn missing_stale_or_short_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4_000,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    {
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        fill(&log, &[3; 40]);
        assert!(log.segments().len() >= 4);
        log.close().unwrap();
    }
    let segments: Vec<_> = {
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        log.segments()
    };
    let index = |i: usize| segments[i].path.with_extension("index");
    let good = std::fs::read(index(1)).unwrap();
    assert!(good.len() >= 2 * 24, "every batch indexed");
    std::fs::remove_file(index(0)).unwrap();
    std::fs::write(index(1), &good[..good.len() - 24]).unwrap(); // short
    std::fs::copy(index(1), index(2)).unwrap(); // stale: another segment's
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(std::fs::read(index(1)).unwrap(), good);
    assert!(index(0).exists());
    assert_eq!(read_offsets(&log, 0), (0..120).collect::<Vec<_>>());
    for start in [0, 1, 7, 50, 61, 119, 120] {
        assert_eq!(read_offsets(&log, start), (start..120).collect::<Vec<_>>());
    }
    assert_eq!(log.offset_for_timestamp(17).unwrap(), Some(51));
}

#[test]
fn log_is_shareable_across_threads_and_readers_are_sendable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PartitionLog>();
    send::<eddy_storage::LogReader>();
    send_sync::<Error>();
}

#[test]
fn append_batches_writes_consecutive_frames_under_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let before = log.stats().fsyncs;
    let frames = vec![
        (batch(0, 3), 1, 1),
        (batch(3, 2), 2, 2),
        (batch(5, 4), 3, 3),
    ];
    let infos = log.append_batches(&frames).unwrap();
    let offsets: Vec<(u64, u64)> = infos
        .iter()
        .map(|i| (i.base_offset, i.next_offset))
        .collect();
    assert_eq!(offsets, vec![(0, 3), (3, 5), (5, 9)]);
    assert_eq!(
        log.stats().fsyncs - before,
        1,
        "one group commit for all frames"
    );
    assert_eq!(log.high_watermark(), 9);
    assert_eq!(read_offsets(&log, 0), (0..9).collect::<Vec<_>>());
    assert!(log.append_batches(&[]).unwrap().is_empty());
}
