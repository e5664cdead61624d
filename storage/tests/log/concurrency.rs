//! Many appenders and readers at once.

use std::sync::Arc;
use std::thread;

use eddy_storage::{AppendInfo, LogConfig, PartitionLog};

use crate::common::{batch, ids, read_offsets};

#[test]
fn concurrent_appends_get_unique_contiguous_offsets_and_share_fsyncs() {
    const THREADS: usize = 8;
    const APPENDS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let log = Arc::new(PartitionLog::open(dir.path(), config).unwrap());

    // A reader tails the log while it grows: it only ever sees durable, contiguous data.
    let tail = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            let mut next = 0;
            while next < (THREADS * APPENDS * 3) as u64 {
                for stored in log.reader(next).unwrap() {
                    let stored = stored.unwrap();
                    assert_eq!(stored.base_offset, next);
                    next += stored.batch.num_rows() as u64;
                }
                thread::yield_now();
            }
        })
    };

    let appenders: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                (0..APPENDS)
                    .map(|i| {
                        let rows = 1 + (t + i) % 5;
                        let info = log.append(&tagged(rows), t as i64, t as i64).unwrap();
                        assert!(
                            log.high_watermark() >= info.next_offset,
                            "acknowledged = durable"
                        );
                        info
                    })
                    .collect::<Vec<AppendInfo>>()
            })
        })
        .collect();
    let mut infos: Vec<AppendInfo> = appenders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    infos.sort_by_key(|i| i.base_offset);
    let mut next = 0;
    for info in &infos {
        assert_eq!(info.base_offset, next, "offsets are contiguous and unique");
        next = info.next_offset;
    }
    assert_eq!(log.high_watermark(), next);

    // Top up so the tailing reader reaches its goal, then wait for it.
    while log.high_watermark() < (THREADS * APPENDS * 3) as u64 {
        log.append(&tagged(5), 0, 0).unwrap();
    }
    tail.join().unwrap();

    let stats = log.stats();
    assert!(stats.appends >= (THREADS * APPENDS) as u64);
    assert!(
        stats.fsyncs < stats.appends,
        "group commit shares fsyncs: {stats:?}"
    );
    assert!(
        log.segments().len() > 1,
        "rolled while appending concurrently"
    );
    println!("{stats:?}");
}

/// A batch for a concurrent writer, which cannot know its offsets in advance (so its ids do
/// not match them and the checks above count rows instead).
fn tagged(rows: usize) -> arrow::array::RecordBatch {
    batch(0, rows)
}

#[test]
fn tailing_readers_see_every_row_exactly_once_across_rolls() {
    const ROWS: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let log = Arc::new(PartitionLog::open(dir.path(), config).unwrap());
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut seen = Vec::new();
                while (seen.len() as u64) < ROWS {
                    let next = seen.len() as u64;
                    for stored in log.reader(next).unwrap() {
                        seen.extend(ids(&stored.unwrap()).into_iter().filter(|&o| o >= next));
                    }
                    thread::yield_now();
                }
                seen
            })
        })
        .collect();
    // One writer, so it knows the offsets its rows will get.
    for _ in 0..ROWS / 3 {
        let next = log.high_watermark();
        log.append(&batch(next, 3), 0, 0).unwrap();
    }
    for reader in readers {
        assert_eq!(reader.join().unwrap(), (0..ROWS).collect::<Vec<_>>());
    }
    assert!(log.segments().len() > 3);
    assert_eq!(read_offsets(&log, 0), (0..ROWS).collect::<Vec<_>>());
}

/// A tailing reader waits on the high-watermark watch rather than polling: every durable append
/// wakes it, and the value it sees is readable.
#[test]
fn high_watermark_watch_wakes_a_waiting_reader_after_each_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(dir.path(), LogConfig::default()).unwrap());
    let mut watch = log.watch_high_watermark();
    assert_eq!(*watch.borrow_and_update(), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                log.append(&tagged(2), 0, 0).unwrap();
            }
        })
    };
    let seen = runtime.block_on(async {
        let mut seen = 0;
        while seen < 10 {
            watch.changed().await.unwrap();
            let hw = *watch.borrow_and_update();
            assert!(hw > seen, "the watch only moves forward");
            assert!(hw <= log.high_watermark());
            seen = hw;
        }
        seen
    });
    writer.join().unwrap();
    assert_eq!(seen, 10);
    let rows: usize = log
        .reader(0)
        .unwrap()
        .map(|b| b.unwrap().batch.num_rows())
        .sum();
    assert_eq!(rows, 10);
}
