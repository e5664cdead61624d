//! Transactions in a partition's Raft log: a `TXN` entry is committed by Raft but shown only
//! once a decision commits it; an abort hides its rows for good, across reopening, while
//! their offsets stay taken.

use eddy_storage::{Decision, EncodedFrame, Entry, LogConfig, PartitionLog};

use crate::common::read_offsets;
use crate::entries::{control, data, open};

/// A data entry of one frame of `rows` rows at `first`, marked `TXN`.
fn txn(term: u64, index: u64, first: u64, rows: usize) -> Entry {
    let mut entry = data(term, index, first, &[rows]);
    entry.frames.iter_mut().for_each(EncodedFrame::mark_txn);
    entry
}

fn decision(term: u64, index: u64, commit: bool, ranges: &[(u64, u64)]) -> Entry {
    let frame = Decision {
        commit,
        ranges: ranges.to_vec(),
    }
    .frame()
    .unwrap();
    Entry {
        term,
        index,
        frames: vec![frame],
    }
}

fn write_and_commit(log: &PartitionLog, entries: Vec<Entry>) {
    let last = entries.last().unwrap().index;
    log.write_entries(entries).unwrap();
    log.flush().unwrap();
    log.commit_entries(last).unwrap();
}

/// A committed `TXN` entry holds back itself and every later entry; a commit decision shows
/// them all, in offset order.
#[test]
fn a_transaction_is_shown_only_once_decided_and_holds_back_later_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    write_and_commit(
        &log,
        vec![
            control(1, 0, b"membership"),
            data(1, 1, 0, &[2]),
            txn(1, 2, 2, 3),
            data(1, 3, 5, &[1]),
        ],
    );
    assert_eq!(log.high_watermark(), 2, "stops at the undecided entry");
    assert_eq!(log.undecided().unwrap(), vec![(2, 5)]);
    assert_eq!(read_offsets(&log, 0), vec![0, 1]);
    assert_eq!(log.resume_entry().unwrap(), Some(2));

    write_and_commit(&log, vec![decision(1, 4, true, &[(2, 5)])]);
    assert_eq!(log.high_watermark(), 6);
    assert!(log.undecided().unwrap().is_empty());
    assert_eq!(read_offsets(&log, 0), (0..6).collect::<Vec<_>>());
    assert_eq!(log.resume_entry().unwrap(), Some(4));
    // Deciding again, even the other way, changes nothing.
    write_and_commit(&log, vec![decision(1, 5, false, &[(2, 5)])]);
    assert_eq!(read_offsets(&log, 0), (0..6).collect::<Vec<_>>());
    assert_eq!(log.aborted_rows(0, 6), 0);
}

/// An aborted entry's rows are skipped by every reader, its offsets are not given again,
/// and the abort holds after the log is reopened, from any position the replication layer
/// saved (even one past the decision, which then only `txn-aborted` remembers).
#[test]
fn an_aborted_transaction_is_never_read_and_its_offsets_stay_taken() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<u64> = (0..2).chain(5..7).collect();
    {
        let log = open(dir.path(), LogConfig::default(), None);
        write_and_commit(
            &log,
            vec![
                data(1, 0, 0, &[2]),
                txn(1, 1, 2, 3),
                data(1, 2, 5, &[1]),
                decision(1, 3, false, &[(2, 5)]),
                data(1, 4, 6, &[1]),
            ],
        );
        assert_eq!(log.high_watermark(), 7);
        assert_eq!(read_offsets(&log, 0), expected);
        assert_eq!(read_offsets(&log, 3), vec![5, 6], "a read from inside it");
        assert_eq!(log.aborted_rows(0, 7), 3);
        assert_eq!(log.aborted_rows(4, 7), 1);
        log.close().unwrap();
    }
    for scan_from in [None, Some(0), Some(4)] {
        let log = PartitionLog::open_replicated(
            dir.path(),
            LogConfig::default(),
            Some(4),
            scan_from,
            &|_, _| false,
        )
        .unwrap();
        assert_eq!(log.high_watermark(), 7, "scan from {scan_from:?}");
        assert_eq!(read_offsets(&log, 0), expected, "scan from {scan_from:?}");
        log.close().unwrap();
    }
}

/// A `TXN` entry committed but undecided when the log closed is found again on open (from the
/// saved scan-from index), still held back, and can be decided then; an uncommitted decision
/// last in the log stays there for Raft to keep or cut.
#[test]
fn an_undecided_transaction_is_found_again_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let scan_from = {
        let log = open(dir.path(), LogConfig::default(), None);
        log.write_entries(vec![
            data(1, 0, 0, &[1]),
            txn(1, 1, 1, 2),
            data(1, 2, 3, &[1]),
            // Written, never committed: a later leader may replace it.
            decision(1, 3, true, &[(1, 3)]),
        ])
        .unwrap();
        log.flush().unwrap();
        log.commit_entries(2).unwrap();
        let scan_from = log.resume_entry().unwrap();
        log.close().unwrap();
        scan_from
    };
    assert_eq!(scan_from, Some(1));
    let log = PartitionLog::open_replicated(
        dir.path(),
        LogConfig::default(),
        Some(2),
        scan_from,
        &|_, _| false,
    )
    .unwrap();
    assert_eq!(log.undecided().unwrap(), vec![(1, 3)]);
    assert_eq!(log.high_watermark(), 1);
    assert_eq!(
        log.last_entry().unwrap(),
        Some((1, 3)),
        "recovery keeps a last TXN frame (a decision) whole: Raft decides its fate"
    );
    log.truncate_entries(3).unwrap();
    write_and_commit(&log, vec![decision(2, 3, false, &[(1, 3)])]);
    assert_eq!(read_offsets(&log, 0), vec![0, 3]);
    assert!(log.undecided().unwrap().is_empty());
}

/// Two transactions decided in one decision, one of them interleaved with plain rows: the
/// stable end follows the first undecided entry.
#[test]
fn the_stable_end_follows_the_first_undecided_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    write_and_commit(
        &log,
        vec![txn(1, 0, 0, 2), data(1, 1, 2, &[1]), txn(1, 2, 3, 2)],
    );
    assert_eq!(log.high_watermark(), 0);
    write_and_commit(&log, vec![decision(1, 3, true, &[(0, 2)])]);
    assert_eq!(log.high_watermark(), 3, "up to the second one");
    write_and_commit(&log, vec![decision(1, 4, false, &[(3, 5)])]);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(read_offsets(&log, 0), vec![0, 1, 2]);
}

/// An entry that mixes `TXN` frames with others is refused, as is a decision that is not one.
#[test]
fn malformed_transaction_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    let mut mixed = data(1, 0, 0, &[1, 1]);
    mixed.frames[0].mark_txn();
    assert!(log.write_entries(vec![mixed]).is_err());
    let mut bogus = EncodedFrame::control(b"not a decision").unwrap();
    bogus.mark_txn();
    let entry = Entry {
        term: 1,
        index: 0,
        frames: vec![bogus],
    };
    assert!(log.write_entries(vec![entry]).is_err());
    assert_eq!(log.last_entry().unwrap(), None);
}
