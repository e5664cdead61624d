//! Random appends checked against a model of what the log must hold.

use eddy_storage::{LogConfig, PartitionLog};
use proptest::prelude::*;

use crate::common::{batch, ids};

/// One appended batch as the model remembers it.
#[derive(Clone, Debug)]
struct Appended {
    base: u64,
    rows: u64,
    min_ts: i64,
    max_ts: i64,
}

fn check_against_model(log: &PartitionLog, model: &[Appended], probes: &[(u64, i64, i64)]) {
    let hw = model.last().map_or(0, |b| b.base + b.rows);
    assert_eq!(log.high_watermark(), hw);
    assert_eq!(log.log_start_offset(), 0);

    // Offset reads from random starts, whole log.
    for &(start, _, _) in probes {
        let start = start % (hw + 1);
        let batches: Vec<_> = log.reader(start).unwrap().map(Result::unwrap).collect();
        let expected: Vec<&Appended> = model.iter().filter(|b| b.base + b.rows > start).collect();
        assert_eq!(batches.len(), expected.len(), "batches from offset {start}");
        for (got, want) in batches.iter().zip(&expected) {
            assert_eq!(got.base_offset, want.base);
            assert_eq!(
                (got.min_timestamp, got.max_timestamp),
                (want.min_ts, want.max_ts)
            );
            assert_eq!(ids(got).len() as u64, want.rows);
        }
    }

    // Offset + time range reads.
    for &(start, t1, t2) in probes {
        let start = start % (hw + 1);
        let end = start + (t1.unsigned_abs() % 50);
        let (lo, hi) = (t1.min(t2), t1.max(t2));
        let got: Vec<u64> = log
            .reader_range(start, end, Some((lo, hi)))
            .unwrap()
            .map(|b| b.unwrap().base_offset)
            .collect();
        let want: Vec<u64> = model
            .iter()
            .filter(|b| start < end.min(hw) && b.base + b.rows > start && b.base < end.min(hw))
            .filter(|b| b.max_ts >= lo && b.min_ts <= hi)
            .map(|b| b.base)
            .collect();
        assert_eq!(got, want, "range [{start}, {end}) time [{lo}, {hi}]");

        let want_ts = model.iter().find(|b| b.max_ts >= t1).map(|b| b.base);
        assert_eq!(
            log.offset_for_timestamp(t1).unwrap(),
            want_ts,
            "timestamp {t1}"
        );
    }

    // Segment metadata agrees with the model.
    let segments = log.segments();
    assert!(segments.last().unwrap().active);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].next_offset, pair[1].base_offset);
        assert!(!pair[0].active);
    }
    for s in &segments {
        let inside: Vec<&Appended> = model
            .iter()
            .filter(|b| b.base >= s.base_offset && b.base < s.next_offset)
            .collect();
        assert_eq!(s.min_timestamp, inside.iter().map(|b| b.min_ts).min());
        assert_eq!(s.max_timestamp, inside.iter().map(|b| b.max_ts).max());
    }
}

fn append_all(log: &PartitionLog, model: &mut Vec<Appended>, ops: &[(usize, i64, i64)]) {
    for &(rows, ts, span) in ops {
        let base = log.high_watermark();
        let info = log.append(&batch(base, rows), ts, ts + span).unwrap();
        assert_eq!(info.base_offset, base);
        assert_eq!(info.next_offset, base + rows as u64);
        model.push(Appended {
            base,
            rows: rows as u64,
            min_ts: ts,
            max_ts: ts + span,
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_read_back_exactly_and_survive_reopen(
        ops in prop::collection::vec((1usize..40, -50i64..200, 0i64..30), 1..40),
        more in prop::collection::vec((1usize..40, -50i64..200, 0i64..30), 1..10),
        probes in prop::collection::vec((0u64..2000, -80i64..260, -80i64..260), 1..12),
        segment_bytes in 1_000u64..6_000,
        index_interval_bytes in 0u64..3_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes, ..LogConfig::default() };
        let mut model = Vec::new();
        {
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            append_all(&log, &mut model, &ops);
            check_against_model(&log, &model, &probes);
            log.close().unwrap();
        }
        // Reopen with a different index density: closed segments' indexes still serve.
        let config = LogConfig { index_interval_bytes: index_interval_bytes / 2 + 1, ..config };
        let log = PartitionLog::open(dir.path(), config).unwrap();
        check_against_model(&log, &model, &probes);
        append_all(&log, &mut model, &more);
        check_against_model(&log, &model, &probes);
    }
}
