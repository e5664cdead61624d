//! A partition's log as its Raft log: entries written with their term and index, invisible
//! until committed, truncated when divergent, the same bytes on every replica.

use eddy_storage::{EncodedFrame, Entry, Error, LogConfig, PartitionLog};

use crate::common::{batch, read_offsets, small_segments};

/// A data entry of `rows` (one frame per element) whose rows start at offset `first`.
pub(crate) fn data(term: u64, index: u64, first: u64, rows: &[usize]) -> Entry {
    let mut at = first;
    let frames = rows
        .iter()
        .map(|&n| {
            let frame = EncodedFrame::encode(&batch(at, n), at as i64, at as i64).unwrap();
            at += n as u64;
            frame
        })
        .collect();
    Entry {
        term,
        index,
        frames,
    }
}

pub(crate) fn control(term: u64, index: u64, payload: &[u8]) -> Entry {
    Entry {
        term,
        index,
        frames: vec![EncodedFrame::control(payload).unwrap()],
    }
}

pub(crate) fn open(
    dir: &std::path::Path,
    config: LogConfig,
    committed: Option<u64>,
) -> PartitionLog {
    PartitionLog::open_replicated(dir, config, committed, None, &|_, _| false).unwrap()
}

/// Written and flushed entries stay unreadable until committed; a commit makes exactly its
/// entries readable, whole, and control entries take no offsets.
#[test]
fn entries_are_readable_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    log.write_entries(vec![
        control(1, 1, b"blank"),
        data(1, 2, 0, &[3, 2]),
        data(1, 3, 5, &[4]),
    ])
    .unwrap();
    log.flush().unwrap();
    assert_eq!(log.high_watermark(), 0, "flushed is not committed");
    assert_eq!(log.last_entry().unwrap(), Some((1, 3)));
    assert_eq!(log.committed_entry().unwrap(), None);

    assert_eq!(log.commit_entries(1).unwrap(), vec![(1, 0, 0)]);
    assert_eq!(log.high_watermark(), 0);
    assert_eq!(log.commit_entries(2).unwrap(), vec![(2, 0, 5)]);
    assert_eq!(log.high_watermark(), 5, "both frames of entry 2 at once");
    assert_eq!(read_offsets(&log, 0), (0..5).collect::<Vec<_>>());
    assert_eq!(log.commit_entries(3).unwrap(), vec![(3, 5, 9)]);
    assert_eq!(read_offsets(&log, 0), (0..9).collect::<Vec<_>>());
    assert_eq!(
        log.commit_entries(3).unwrap(),
        vec![],
        "committing again is a no-op"
    );

    let entries = log.read_entries(1, 10, u64::MAX).unwrap();
    let shape: Vec<(u64, u64, bool)> = entries
        .iter()
        .map(|e| (e.term, e.index, e.control))
        .collect();
    assert_eq!(shape, [(1, 1, true), (1, 2, false), (1, 3, false)]);
    assert_eq!(entries[0].bytes, b"blank");
    assert_eq!(EncodedFrame::split(&entries[1].bytes).unwrap().len(), 2);
    // A byte budget stops after the entry that passes it, never inside one.
    assert_eq!(log.read_entries(2, 10, 1).unwrap().len(), 1);
    assert_eq!(log.read_entries(2, 3, u64::MAX).unwrap().len(), 1);
}

/// The follower's copy of an entry is the leader's bytes: sealed again at the same place,
/// every frame is byte for byte the same.
#[test]
fn an_entry_copied_to_another_log_is_the_same_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(a.path(), LogConfig::default(), None);
    leader
        .write_entries(vec![control(1, 1, b"m"), data(1, 2, 0, &[10, 20, 30])])
        .unwrap();
    let follower = open(b.path(), LogConfig::default(), None);
    for stored in leader.read_entries(1, 3, u64::MAX).unwrap() {
        let frames = if stored.control {
            vec![EncodedFrame::control(&stored.bytes).unwrap()]
        } else {
            EncodedFrame::split(&stored.bytes).unwrap()
        };
        follower
            .write_entries(vec![Entry {
                term: stored.term,
                index: stored.index,
                frames,
            }])
            .unwrap();
    }
    assert_eq!(
        leader.read_entries(1, 3, u64::MAX).unwrap(),
        follower.read_entries(1, 3, u64::MAX).unwrap()
    );
    follower.flush().unwrap();
    follower.commit_entries(2).unwrap();
    assert_eq!(read_offsets(&follower, 0), (0..60).collect::<Vec<_>>());
}

/// Raft's rule: a divergent uncommitted tail is cut, the entries that replace it take the
/// same offsets again; a committed entry is never cut.
#[test]
fn a_divergent_tail_is_cut_and_its_offsets_given_again() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the tail spans several, and the cut deletes whole ones.
    let log = open(dir.path(), small_segments(2048), None);
    let mut next = 0;
    let mut entries = Vec::new();
    for index in 1..=12 {
        entries.push(data(1, index, next, &[20]));
        next += 20;
    }
    for entry in entries {
        log.write_entries(vec![entry]).unwrap();
    }
    log.flush().unwrap();
    assert!(log.segments().len() > 3, "{:?}", log.segments());
    log.commit_entries(4).unwrap();
    assert_eq!(log.high_watermark(), 80);

    let refused = log.truncate_entries(4);
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    log.truncate_entries(6).unwrap();
    assert_eq!(log.last_entry().unwrap(), Some((1, 5)));
    let on_disk: u64 = log
        .segments()
        .iter()
        .map(|s| s.next_offset - s.base_offset)
        .sum();
    assert_eq!(on_disk, 100, "{:?}", log.segments());
    log.write_entries(vec![data(2, 6, 100, &[7])]).unwrap();
    log.flush().unwrap();
    log.commit_entries(6).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..107).collect::<Vec<_>>());
    assert_eq!(log.read_entries(6, 100, u64::MAX).unwrap()[0].term, 2);
    log.close().unwrap();
    drop(log);

    // Recovery finds the same log: six entries, the new one last.
    let log = open(dir.path(), small_segments(2048), Some(6));
    assert_eq!(log.last_entry().unwrap(), Some((2, 6)));
    assert_eq!(read_offsets(&log, 0), (0..107).collect::<Vec<_>>());
}

/// On open, the entries past the committed index the caller names are pending again, and
/// frames of an entry a crash cut short are dropped whole.
#[test]
fn a_reopened_log_waits_for_commits_past_what_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    log.write_entries(vec![
        data(1, 1, 0, &[5]),
        data(1, 2, 5, &[5]),
        control(2, 3, b"blank"),
        data(2, 4, 10, &[5, 5]),
    ])
    .unwrap();
    log.flush().unwrap();
    log.commit_entries(4).unwrap();
    let len = log.segments()[0].bytes;
    log.close().unwrap();
    drop(log);
    // Entry 4's last frame torn off: entry 4 is not in the log any more.
    let segment = dir.path().join(format!("{:020}.log", 0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    let log = open(dir.path(), LogConfig::default(), Some(1));
    assert_eq!(log.last_entry().unwrap(), Some((2, 3)));
    assert_eq!(log.committed_entry().unwrap(), Some((1, 1)));
    assert_eq!(log.high_watermark(), 5, "only what was applied");
    assert_eq!(
        log.commit_entries(3).unwrap(),
        vec![(2, 5, 10), (3, 10, 10)]
    );
    assert_eq!(read_offsets(&log, 0), (0..10).collect::<Vec<_>>());
}

/// A Raft log takes entries only: a plain append would give offsets no entry names.
#[test]
fn a_raft_log_refuses_plain_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), None);
    let refused = log.append(&batch(0, 1), 0, 0);
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    let gap = log.write_entries(vec![data(1, 1, 0, &[1]), data(1, 3, 1, &[1])]);
    assert!(matches!(gap, Err(Error::InvalidArgument(_))), "{gap:?}");
    assert_eq!(
        log.last_entry().unwrap(),
        None,
        "nothing of a refused call is written"
    );
}

/// A frame as version 1 wrote it (56-byte header, no Raft index) at `base`.
fn v1_frame(base: u64, rows: usize) -> Vec<u8> {
    let v2 = EncodedFrame::encode(&batch(base, rows), 0, 0)
        .unwrap()
        .into_bytes();
    let mut v1 = Vec::with_capacity(v2.len() - 8);
    v1.extend_from_slice(&v2[..56]);
    v1.extend_from_slice(&v2[64..]);
    v1[4] = 1;
    v1[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&v1[16..]);
    v1[12..16].copy_from_slice(&crc.to_le_bytes());
    v1
}

/// Segments written before frame version 2 still open and read, appends go on after them in
/// version 2, and as a Raft log their rows count as committed.
#[test]
fn a_log_written_before_frame_version_2_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = v1_frame(0, 3);
    file.extend(v1_frame(3, 4));
    std::fs::write(dir.path().join(format!("{:020}.log", 0)), &file).unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..7).collect::<Vec<_>>());
    log.append(&batch(7, 2), 0, 0).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..9).collect::<Vec<_>>());
    log.close().unwrap();
    drop(log);

    let log = open(dir.path(), LogConfig::default(), None);
    assert_eq!(log.high_watermark(), 9);
    assert_eq!(log.last_entry().unwrap(), None);
    log.write_entries(vec![data(3, 1, 9, &[1])]).unwrap();
    log.flush().unwrap();
    log.commit_entries(1).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..10).collect::<Vec<_>>());
    assert_eq!(log.first_entry_index(), Some(1));
}

/// Entries of many frames, with index entries inside them: reading from any entry's index
/// returns it whole, from its first frame.
#[test]
fn an_entry_is_read_from_its_first_frame_wherever_the_index_points() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(1 << 20), None);
    let mut next = 0;
    for index in 0..20 {
        let rows = [3, 4, 5, 6];
        log.write_entries(vec![data(1, index, next, &rows)])
            .unwrap();
        next += 18;
    }
    for index in 0..20 {
        let read = log.read_entries(index, index + 1, u64::MAX).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].index, index);
        let frames = EncodedFrame::split(&read[0].bytes).unwrap();
        let rows: Vec<u32> = frames.iter().map(EncodedFrame::record_count).collect();
        assert_eq!(rows, [3, 4, 5, 6], "entry {index}");
    }
}

/// A partition written by one node becomes a Raft log: its last multi-partition group is kept
/// when the topic's commit records name it (`TopicStore::committed_before`) and dropped when
/// they do not — the statement was never committed, as the one-node open would have decided.
#[test]
fn a_one_node_statement_is_kept_or_dropped_by_its_commit_record_when_the_log_becomes_raft() {
    use eddy_storage::TopicStore;

    let root = tempfile::tempdir().unwrap();
    let frames = |first: u64, n: usize| {
        vec![EncodedFrame::encode(&batch(first, n), first as i64, first as i64).unwrap()]
    };
    {
        let store = TopicStore::open(root.path()).unwrap();
        let topic = store.open_topic("t", "t", 2, LogConfig::default()).unwrap();
        topic.append_atomic(vec![(0, frames(0, 3))]).unwrap();
        topic
            .append_atomic(vec![(0, frames(3, 2)), (1, frames(0, 4))])
            .unwrap();
        for log in topic.partitions() {
            log.close().unwrap();
        }
    }
    let store = TopicStore::open(root.path()).unwrap();
    let committed = store.committed_before("t").unwrap();
    assert!(committed.contains(&(0, 3, 5)) && committed.contains(&(1, 0, 4)));

    // Its commit record durable: kept, readable, and the log goes on as a Raft log.
    let dir = store.partition_dir("t", 0).unwrap();
    let unrecorded = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap();
        if file.file_type().unwrap().is_file() {
            std::fs::copy(file.path(), unrecorded.path().join(file.file_name())).unwrap();
        }
    }
    let by_record = |base, next| committed.contains(&(0, base, next));
    let log =
        PartitionLog::open_replicated(&dir, LogConfig::default(), None, None, &by_record).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..5).collect::<Vec<_>>());
    assert_eq!(
        log.undecided().unwrap(),
        vec![],
        "a one-node group is no TXN entry"
    );
    log.write_entries(vec![data(1, 0, 5, &[1])]).unwrap();
    log.flush().unwrap();
    log.commit_entries(0).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..6).collect::<Vec<_>>());
    log.close().unwrap();

    // No record names it: dropped, and its offsets are given again.
    let log = PartitionLog::open_replicated(
        unrecorded.path(),
        LogConfig::default(),
        None,
        None,
        &|_, _| false,
    )
    .unwrap();
    assert_eq!(read_offsets(&log, 0), (0..3).collect::<Vec<_>>());
    log.write_entries(vec![data(1, 0, 3, &[1])]).unwrap();
    log.flush().unwrap();
    log.commit_entries(0).unwrap();
    assert_eq!(read_offsets(&log, 0), (0..4).collect::<Vec<_>>());
}

/// A control entry (openraft's blank or membership entry) has no event time: a partition that
/// holds only control entries has no time range, before and after a reopen, and its first
/// rows' times are its range.
#[test]
fn control_entries_have_no_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let range = |log: &PartitionLog| {
        let s = &log.segments()[0];
        (s.min_timestamp, s.max_timestamp)
    };
    let log = open(dir.path(), LogConfig::default(), None);
    log.write_entries(vec![control(1, 1, b"membership")])
        .unwrap();
    log.flush().unwrap();
    log.commit_entries(1).unwrap();
    assert_eq!(range(&log), (None, None));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    log.close().unwrap();
    drop(log);

    let log = open(dir.path(), LogConfig::default(), Some(1));
    assert_eq!(range(&log), (None, None), "after a reopen");
    log.write_entries(vec![
        Entry {
            term: 1,
            index: 2,
            frames: vec![EncodedFrame::encode(&batch(0, 3), 500, 700).unwrap()],
        },
        control(1, 3, b"blank"),
    ])
    .unwrap();
    log.flush().unwrap();
    log.commit_entries(3).unwrap();
    assert_eq!(range(&log), (Some(500), Some(700)));
    assert_eq!(log.offset_for_timestamp(600).unwrap(), Some(0));
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), LogConfig::default(), Some(3));
    assert_eq!(range(&log), (Some(500), Some(700)), "after a reopen");
}
