//! Transaction decisions in a partition's Raft log, and the aborted ranges readers skip.
//!
//! In a log of one node a multi-partition append's `TXN` group stays the last of its
//! partition until its commit record is durable, and recovery drops it if the record is
//! missing (`txn.rs`). A Raft log cannot do that: an entry, once committed, is never cut, and
//! other writes may follow it before the commit record exists. So, as Kafka's transaction
//! markers do, the outcome is written into the partition's log itself:
//!
//! - a `TXN` entry is committed by Raft like any other, but readers stop before it (the
//!   *stable* end, Kafka's last stable offset) until a **decision** entry names its offset
//!   range — `commit` shows its rows, `abort` hides them for good;
//! - aborted rows keep their offsets (offsets are never reused) and every reader skips them:
//!   the ranges are kept in memory and in `txn-aborted` beside the segments, rewritten whole
//!   and synced before the decision that added a range counts as applied (aborts are rare:
//!   a writer that failed or died mid-statement).
//!
//! ```text
//! txn-aborted: magic "EDDYABT1" · u32 LE count · count × (u64 LE base, u64 LE next) ·
//!              u32 LE CRC32C of the bytes after the magic
//! ```
//!
//! The **commit record** that decides a statement is a [`CommitRecord`]: one frame of a
//! commit log (itself a partition, replicated like any other) naming every share's group and
//! offsets. Written after every share's `TXN` entry committed, it is the statement's commit
//! point; decisions follow it, and a restart decides what it finds undecided by it.
//!
//! This module decides nothing: who commits and who aborts is the writer's coordinator's
//! business (the commit record); it only applies what a decision says.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};

use crate::error::{Error, Result};
use crate::segment::format::EncodedFrame;
use crate::segment::{read_checked_file, replace_checked_file};

const ABORTED_MAGIC: &[u8; 8] = b"EDDYABT1";
const ABORTED_FILE: &str = "txn-aborted";
const DECISION_VERSION: u8 = 1;

/// The outcome of multi-partition appends in one partition: the offset ranges `[base, next)`
/// of the `TXN` entries it names, and whether they commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub commit: bool,
    pub ranges: Vec<(u64, u64)>,
}

impl Decision {
    /// The decision as a control frame, to be written as an entry of the partition's log.
    pub fn frame(&self) -> Result<EncodedFrame> {
        if self.ranges.is_empty() {
            return Err(Error::InvalidArgument(
                "a transaction decision names no entry".into(),
            ));
        }
        let count = u32::try_from(self.ranges.len()).map_err(|_| {
            Error::InvalidArgument("a transaction decision names too many entries".into())
        })?;
        let mut body = Vec::with_capacity(6 + 16 * self.ranges.len());
        body.push(DECISION_VERSION);
        body.push(u8::from(self.commit));
        body.extend_from_slice(&count.to_le_bytes());
        for (base, next) in &self.ranges {
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&next.to_le_bytes());
        }
        let mut frame = EncodedFrame::control(&body)?;
        frame.mark_txn();
        Ok(frame)
    }

    /// Reads a decision frame's body; the error says what is wrong with it.
    pub(crate) fn parse(body: &[u8]) -> Result<Decision, &'static str> {
        let (&[version, outcome], rest) = body.split_first_chunk::<2>().ok_or("too short")?;
        if version != DECISION_VERSION {
            return Err("unknown decision version");
        }
        let commit = match outcome {
            0 => false,
            1 => true,
            _ => return Err("unknown outcome"),
        };
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or("too short")?;
        let count = u32::from_le_bytes(*count) as usize;
        if rest.len() != count.checked_mul(16).ok_or("count too large")? {
            return Err("length does not match the count");
        }
        let mut ranges = Vec::with_capacity(count);
        while let Some((pair, more)) = rest.split_first_chunk::<16>() {
            let (base, next) = range(pair);
            if next <= base {
                return Err("an empty or reversed range");
            }
            ranges.push((base, next));
            rest = more;
        }
        Ok(Decision { commit, ranges })
    }
}

/// A record of the commit log: a statement's commit point, naming every share of it, or an
/// abort naming shares whose statement is given up (by whoever found them undecided). Each
/// share is (the partition group's id, base offset, next offset) of a committed `TXN` entry,
/// so it names that entry alone. What the records mean is decided by their order in the log
/// (the replication layer's coordinator). Stored as one frame of three `UInt64` columns and a
/// `Boolean` `commit` column, one row per share, every row of one record alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    pub commit: bool,
    pub shares: Vec<(u64, u64, u64)>,
}

impl CommitRecord {
    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("group", DataType::UInt64, false),
            Field::new("base", DataType::UInt64, false),
            Field::new("next", DataType::UInt64, false),
            Field::new("commit", DataType::Boolean, false),
        ]))
    }

    /// The record as a frame of the commit log; refused when it names no share.
    pub fn frame(&self) -> Result<EncodedFrame> {
        if self.shares.is_empty() {
            return Err(Error::InvalidArgument(
                "a commit record names at least one share".into(),
            ));
        }
        let column = |f: fn(&(u64, u64, u64)) -> u64| {
            Arc::new(UInt64Array::from_iter_values(self.shares.iter().map(f))) as _
        };
        let commit = BooleanArray::from(vec![self.commit; self.shares.len()]);
        let batch = RecordBatch::try_new(
            Self::schema(),
            vec![
                column(|s| s.0),
                column(|s| s.1),
                column(|s| s.2),
                Arc::new(commit),
            ],
        )
        .map_err(|source| Error::Encode { source })?;
        EncodedFrame::encode(&batch, 0, 0)
    }

    /// A record read back from the commit log; refused when the batch is not one.
    pub fn from_batch(batch: &RecordBatch) -> Result<CommitRecord> {
        let not_one = || {
            Error::InvalidArgument(format!(
                "a batch of schema {} is not a commit record",
                batch.schema()
            ))
        };
        if batch.schema().fields() != Self::schema().fields() || batch.num_rows() == 0 {
            return Err(not_one());
        }
        let column = |i: usize| {
            let c = batch.column(i).as_primitive_opt::<UInt64Type>();
            c.filter(|c| c.null_count() == 0).ok_or_else(not_one)
        };
        let (groups, bases, nexts) = (column(0)?, column(1)?, column(2)?);
        let commits = batch
            .column(3)
            .as_boolean_opt()
            .filter(|c| c.null_count() == 0)
            .ok_or_else(not_one)?;
        let commit = commits.value(0);
        if commits.true_count() != if commit { batch.num_rows() } else { 0 } {
            return Err(Error::InvalidArgument(
                "a commit record whose rows disagree on its outcome".into(),
            ));
        }
        let shares = (0..batch.num_rows())
            .map(|i| (groups.value(i), bases.value(i), nexts.value(i)))
            .collect();
        Ok(CommitRecord { commit, shares })
    }
}

/// An offset range as stored: two little-endian `u64`s, base then next.
fn range(pair: &[u8; 16]) -> (u64, u64) {
    let (mut base, mut next) = ([0u8; 8], [0u8; 8]);
    base.copy_from_slice(&pair[..8]);
    next.copy_from_slice(&pair[8..]);
    (u64::from_le_bytes(base), u64::from_le_bytes(next))
}

/// Whether the frame starting at `base` lies in one of `aborted` (sorted by base, disjoint).
/// A `TXN` entry's frames are wholly inside its range, so the frame's base decides.
pub(crate) fn is_aborted(aborted: &[(u64, u64)], base: u64) -> bool {
    let after = aborted.partition_point(|&(b, _)| b <= base);
    after > 0 && base < aborted[after - 1].1
}

/// Rows of `[from, to)` inside the `aborted` ranges.
pub(crate) fn aborted_rows(aborted: &[(u64, u64)], from: u64, to: u64) -> u64 {
    aborted
        .iter()
        .map(|&(b, n)| n.min(to).saturating_sub(b.max(from)))
        .sum()
}

/// Merges `more` into the sorted, disjoint `ranges` (a range already there is not doubled).
pub(crate) fn merge(ranges: &[(u64, u64)], more: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = ranges.iter().chain(more).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The aborted ranges `dir` records (none when the file does not exist).
pub(crate) fn read_aborted(dir: &Path) -> Result<Vec<(u64, u64)>> {
    let what = "the aborted transactions file";
    let Some(payload) = read_checked_file(dir, ABORTED_FILE, ABORTED_MAGIC, what)? else {
        return Ok(Vec::new());
    };
    let damaged = |why: &str| Error::Corrupt {
        path: dir.join(ABORTED_FILE),
        position: 0,
        reason: format!("{what}: {why}"),
    };
    let (count, mut rest) = payload
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("too short"))?;
    let count = u32::from_le_bytes(*count) as usize;
    if rest.len() != count * 16 {
        return Err(damaged("length does not match the count"));
    }
    let mut ranges = Vec::with_capacity(count);
    while let Some((pair, more)) = rest.split_first_chunk::<16>() {
        ranges.push(range(pair));
        rest = more;
    }
    Ok(ranges)
}

/// Replaces `dir`'s aborted ranges with `ranges`, durably (see [`replace_checked_file`]).
pub(crate) fn write_aborted(dir: &Path, ranges: &[(u64, u64)]) -> Result<()> {
    let mut payload = Vec::with_capacity(4 + 16 * ranges.len());
    payload.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    for (base, next) in ranges {
        payload.extend_from_slice(&base.to_le_bytes());
        payload.extend_from_slice(&next.to_le_bytes());
    }
    replace_checked_file(dir, ABORTED_FILE, ABORTED_MAGIC, &payload)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_decision_reads_back_as_written_and_damage_is_named() {
        let decision = Decision {
            commit: false,
            ranges: vec![(3, 5), (9, 10)],
        };
        let frame = decision.frame().unwrap();
        assert!(frame.is_control() && frame.is_txn());
        let body = &frame.bytes()[64..];
        assert_eq!(Decision::parse(body).unwrap(), decision);
        assert!(Decision::parse(&body[..body.len() - 1]).is_err());
        let mut reversed = body.to_vec();
        reversed[6..14].copy_from_slice(&20u64.to_le_bytes());
        assert_eq!(
            Decision::parse(&reversed),
            Err("an empty or reversed range")
        );
    }

    #[test]
    fn a_commit_record_reads_back_from_its_frame() {
        for commit in [true, false] {
            let record = CommitRecord {
                commit,
                shares: vec![(65536, 0, 3), (65537, 10, 11)],
            };
            let frame = record.frame().unwrap();
            let body = frame.bytes()[64..].to_vec();
            let batch = crate::segment::format::decode_body(body).unwrap();
            assert_eq!(CommitRecord::from_batch(&batch).unwrap(), record);
        }
        let empty = CommitRecord {
            commit: true,
            shares: vec![],
        };
        assert!(empty.frame().is_err(), "a record names a share");
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)])),
            vec![Arc::new(UInt64Array::from(vec![1u64]))],
        )
        .unwrap();
        assert!(CommitRecord::from_batch(&other).is_err());
    }

    #[test]
    fn aborted_ranges_answer_by_frame_base_and_count_rows() {
        let aborted = [(10, 20), (30, 31)];
        for (base, want) in [(9, false), (10, true), (19, true), (20, false), (30, true)] {
            assert_eq!(is_aborted(&aborted, base), want, "offset {base}");
        }
        assert_eq!(aborted_rows(&aborted, 0, 100), 11);
        assert_eq!(aborted_rows(&aborted, 15, 30), 5);
        assert_eq!(
            merge(&aborted, &[(10, 20), (0, 5)]),
            vec![(0, 5), (10, 20), (30, 31)]
        );
    }

    #[test]
    fn the_aborted_file_is_replaced_whole_and_damage_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_aborted(dir.path()).unwrap().is_empty());
        write_aborted(dir.path(), &[(1, 4)]).unwrap();
        write_aborted(dir.path(), &[(1, 4), (7, 8)]).unwrap();
        assert_eq!(read_aborted(dir.path()).unwrap(), vec![(1, 4), (7, 8)]);
        let path = dir.path().join(ABORTED_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[14] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            read_aborted(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }
}
