//! Crash and corruption simulation: damage the files a log left behind, then reopen.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use eddy_storage::{Error, LogConfig, PartitionLog};
use proptest::prelude::*;

use crate::common::{batch, file_len, read_offsets};

/// Appends batches and returns, for the final active segment, the byte boundaries of its
/// frames as `(end position, next offset)` pairs, plus its path and base offset.
struct Written {
    active: PathBuf,
    active_base: u64,
    frames: Vec<(u64, u64)>,
    closed_segments: usize,
}

fn write_batches(dir: &Path, config: LogConfig, rows: &[usize]) -> Written {
    let log = PartitionLog::open(dir, config).unwrap();
    let mut frames = Vec::new();
    let mut active_path = PathBuf::new();
    for (i, &n) in rows.iter().enumerate() {
        let next = log.high_watermark();
        log.append(&batch(next, n), i as i64, i as i64).unwrap();
        let active = log.segments().pop().unwrap();
        if active.path != active_path {
            frames.clear();
            active_path = active.path.clone();
        }
        frames.push((active.bytes, active.next_offset));
    }
    let segments = log.segments();
    // Dropped without close(): a crash after the last acknowledged append.
    Written {
        active: active_path,
        active_base: segments.last().unwrap().base_offset,
        frames,
        closed_segments: segments.len() - 1,
    }
}

fn flip_bit(path: &Path, bit: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, bit / 8).unwrap();
    byte[0] ^= 1 << (bit % 8);
    file.write_all_at(&byte, bit / 8).unwrap();
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3_000,
        index_interval_bytes: 700,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn torn_active_segment_keeps_exactly_the_complete_prefix(
        rows in prop::collection::vec(1usize..30, 1..25),
        cut in 0.0f64..=1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let w = write_batches(dir.path(), config(), &rows);
        // Cut within the frames (the file goes on with zeros written ahead).
        let len = w.frames.last().unwrap().0;
        let cut = ((len as f64) * cut) as u64;
        OpenOptions::new().write(true).open(&w.active).unwrap().set_len(cut).unwrap();

        let survivors = w.frames.iter().take_while(|(end, _)| *end <= cut).last();
        let (kept_bytes, hw) = survivors.copied().unwrap_or((0, w.active_base));

        let log = PartitionLog::open(dir.path(), config()).unwrap();
        prop_assert_eq!(log.high_watermark(), hw);
        prop_assert_eq!(file_len(&w.active), kept_bytes);
        prop_assert_eq!(read_offsets(&log, 0), (0..hw).collect::<Vec<_>>());
        // Offsets continue from the surviving prefix; none of the survivors' is reused.
        let info = log.append(&batch(hw, 2), 0, 0).unwrap();
        prop_assert_eq!(info.base_offset, hw);
        prop_assert_eq!(read_offsets(&log, 0), (0..hw + 2).collect::<Vec<_>>());
        prop_assert_eq!(log.segments().len(), w.closed_segments + 1);
    }

    #[test]
    fn flipped_bit_in_the_last_frame_truncates_it(
        rows in prop::collection::vec(1usize..30, 1..12),
        bit in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let w = write_batches(dir.path(), LogConfig::default(), &rows);
        let start = w.frames.iter().rev().nth(1).map_or(0, |f| f.0);
        let (end, _) = *w.frames.last().unwrap();
        flip_bit(&w.active, start * 8 + bit.index(((end - start) * 8) as usize) as u64);

        let hw = w.frames.iter().rev().nth(1).map_or(0, |f| f.1);
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        prop_assert_eq!(log.high_watermark(), hw);
        prop_assert_eq!(file_len(&w.active), start);
        prop_assert_eq!(read_offsets(&log, 0), (0..hw).collect::<Vec<_>>());
    }

    #[test]
    fn flipped_bit_in_a_middle_frame_of_the_active_segment_fails_open(
        rows in prop::collection::vec(1usize..30, 3..12),
        frame in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let w = write_batches(dir.path(), LogConfig::default(), &rows);
        // Any frame but the last.
        let i = frame.index(w.frames.len() - 1);
        let start = if i == 0 { 0 } else { w.frames[i - 1].0 };
        let end = w.frames[i].0;
        let position = start * 8 + bit.index(((end - start) * 8) as usize) as u64;
        flip_bit(&w.active, position);
        let len = file_len(&w.active);

        match PartitionLog::open(dir.path(), LogConfig::default()) {
            Err(Error::Corrupt { path, position, .. }) => {
                prop_assert_eq!(path, w.active.clone());
                prop_assert_eq!(position, start);
            }
            other => prop_assert!(false, "expected Corrupt, got {:?}", other.map(|_| ())),
        }
        prop_assert_eq!(file_len(&w.active), len, "nothing was truncated");
    }
}

#[test]
fn flipped_bit_in_a_closed_segment_body_fails_the_read_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_batches(dir.path(), config(), &[20; 20]);
    assert!(w.closed_segments >= 2);
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let first = log.segments()[0].clone();
    drop(log);
    // A byte inside the first frame's body (past the 56-byte header).
    flip_bit(&first.path, 100 * 8 + 3);

    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut reader = log.reader(0).unwrap();
    match reader.next() {
        Some(Err(Error::Corrupt {
            path,
            position,
            reason,
        })) => {
            assert_eq!(path, first.path);
            assert_eq!(position, 0);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(reader.next().is_none(), "the reader ends after an error");
    // Batches in other frames still read.
    let later = log.reader(first.next_offset).unwrap();
    assert!(later.map(Result::unwrap).count() > 0);
}

/// Appends write zeros ahead of the active segment's end, so that the next appends overwrite
/// allocated blocks; a crash leaves them behind. Recovery takes them for the log's end (no
/// truncation of acknowledged data, none of a torn tail) and cuts them off; a torn write into
/// them is a torn tail like any other; a roll leaves the closed segment ending at its last frame.
#[test]
fn zeros_written_ahead_are_the_logs_end_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let w = write_batches(dir.path(), config.clone(), &[5, 7, 3]);
    let (end, hw) = *w.frames.last().unwrap();
    assert!(file_len(&w.active) > end, "nothing was written ahead");
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.high_watermark(), hw);
    assert_eq!(file_len(&w.active), end);
    assert_eq!(read_offsets(&log, 0), (0..hw).collect::<Vec<_>>());
    log.append(&batch(hw, 2), 0, 0).unwrap();
    assert!(file_len(&w.active) > end);
    let (end, hw) = (log.segments().pop().unwrap().bytes, hw + 2);
    drop(log);

    // A torn write into the zeros: the first half of a frame (a copy of the last one's).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&w.active)
        .unwrap();
    let start = w.frames[w.frames.len() - 2].0;
    let mut half = vec![0u8; ((w.frames.last().unwrap().0 - start) / 2) as usize];
    file.read_exact_at(&mut half, start).unwrap();
    file.write_all_at(&half, end).unwrap();
    drop(file);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.high_watermark(), hw);
    assert_eq!(file_len(&w.active), end);
    assert_eq!(read_offsets(&log, 0), (0..hw).collect::<Vec<_>>());

    // Rolls: every closed segment ends at its last frame.
    let small = LogConfig {
        segment_bytes: 3_000,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small).unwrap();
    for _ in 0..20 {
        log.append(&batch(log.high_watermark(), 20), 0, 0).unwrap();
    }
    let segments = log.segments();
    assert!(segments.len() > 2);
    for s in &segments[..segments.len() - 1] {
        assert_eq!(file_len(&s.path), s.bytes, "{}", s.path.display());
    }
}

#[test]
fn crash_mid_roll_leaves_an_empty_active_segment_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_batches(dir.path(), config(), &[10; 10]);
    let hw = w.frames.last().unwrap().1;
    // The new segment file exists but nothing was appended to it.
    std::fs::File::create(dir.path().join(format!("{hw:020}.log"))).unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.high_watermark(), hw);
    assert!(log.segments().last().unwrap().active);
    assert_eq!(log.append(&batch(hw, 1), 0, 0).unwrap().base_offset, hw);
    assert_eq!(read_offsets(&log, 0), (0..hw + 1).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A statement's frames in one partition (one `append_batches` call) survive a crash
    /// together or not at all: cut the file anywhere and every group is kept whole or dropped
    /// whole, only the last one can be dropped, and offsets continue from what was kept.
    #[test]
    fn a_cut_anywhere_keeps_statement_groups_whole(
        groups in prop::collection::vec(prop::collection::vec(1usize..20, 1..5), 1..8),
        cut in 0.0f64..=1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let mut ends = vec![];
        for group in &groups {
            let start = log.high_watermark();
            let mut first = start;
            let batches: Vec<_> = group
                .iter()
                .map(|&n| {
                    let b = (batch(first, n), 0, 0);
                    first += n as u64;
                    b
                })
                .collect();
            log.append_batches(&batches).unwrap();
            let active = log.segments().pop().unwrap();
            ends.push((active.bytes, active.next_offset));
        }
        let path = log.segments().pop().unwrap().path;
        drop(log);
        let len = ends.last().unwrap().0;
        let cut = ((len as f64) * cut) as u64;
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();

        let (kept_bytes, hw) = ends.iter().take_while(|(end, _)| *end <= cut).last().copied().unwrap_or((0, 0));
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        prop_assert_eq!(log.high_watermark(), hw);
        prop_assert_eq!(file_len(&path), kept_bytes);
        prop_assert_eq!(read_offsets(&log, 0), (0..hw).collect::<Vec<_>>());
        prop_assert_eq!(log.append(&batch(hw, 1), 0, 0).unwrap().base_offset, hw);
    }
}
