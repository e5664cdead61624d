//! [`Coordinator`]: a statement over several partitions, all or nothing, through their groups
//! — the replicated commit record of docs/design/2026-12-02-replication.md.
//!
//! ```text
//!  shares ──append_txn──▶ each partition: a TXN entry (committed, held back)
//!         ──append──────▶ the commit log: one CommitRecord naming every share  ← commit point
//!         ──decide──────▶ each partition: a commit decision (rows readable)
//! ```
//!
//! - A failure **before** the commit record aborts the shares that were written (a share whose
//!   outcome is unknown is left to [`Coordinator::resolve`]); a record whose own outcome is
//!   unknown leaves everything undecided for `resolve`, which reads the commit log.
//! - **After** the record the statement is committed, whatever happens next: a decision that
//!   fails is answered as of unknown outcome, and `resolve` commits it later.
//! - **Snapshots**: decisions apply in each partition on its own, so a scan reading several
//!   partitions could see one share and not another. [`Coordinator::high_watermarks`] caps
//!   every partition at the first share still *in flight* (record written, decisions not all
//!   applied here): a scan sees all of a statement or none of it.
//! - **Restart**: [`Coordinator::resolve`] decides every undecided share of the given
//!   partitions by the commit log: named by a record → commit, else abort.
//!
//! The commit log is itself a partition group (replicated like the data); its rows are the
//! records. It is read whole by `resolve` — compacting it (dropping records whose shares are
//! all decided) is left for when the engine writes through it.

use std::collections::HashSet;

use eddy_storage::{CommitRecord, Decision, EncodedFrame};
use futures::future::join_all;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::{Group, PartitionMachine};

/// A partition group of the statement, and the frames of its share.
pub type Share<'a> = (&'a Group<PartitionMachine>, Vec<EncodedFrame>);

/// Commits statements over several partitions through one commit log (see the module docs).
pub struct Coordinator {
    commit_log: Group<PartitionMachine>,
    /// (group, base, next) of the shares whose statement is committed and whose decisions
    /// are not all applied on this node yet.
    in_flight: Mutex<Vec<(u64, u64, u64)>>,
}

fn unknown(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable { unknown: true, .. } | Error::NoReply { .. }
    )
}

impl Coordinator {
    /// A coordinator whose commit records go to `commit_log`'s partition.
    pub fn new(commit_log: Group<PartitionMachine>) -> Coordinator {
        Coordinator {
            commit_log,
            in_flight: Mutex::new(Vec::new()),
        }
    }

    /// The commit log's group.
    pub fn commit_log(&self) -> &Group<PartitionMachine> {
        &self.commit_log
    }

    /// Appends every share, all or nothing, and returns each one's offsets once its rows are
    /// readable on this node. Each group appears at most once.
    pub async fn append(&self, shares: Vec<Share<'_>>) -> Result<Vec<(u64, u64)>> {
        let mut ids: Vec<u64> = shares.iter().map(|(g, _)| g.id()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Protocol(
                "a statement names one partition twice".into(),
            ));
        }
        let groups: Vec<&Group<PartitionMachine>> = shares.iter().map(|(g, _)| *g).collect();
        let written = join_all(shares.into_iter().map(|(g, frames)| g.append_txn(frames))).await;
        if written.iter().any(Result::is_err) {
            let mut first = None;
            let mut aborts = Vec::new();
            for (group, result) in groups.iter().zip(written) {
                match result {
                    Ok(range) => aborts.push(abort(group, range)),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            // Best effort: a share left undecided is aborted by `resolve`.
            join_all(aborts).await;
            return Err(first.unwrap_or_else(|| Error::Protocol("no share failed".into())));
        }
        let ranges: Vec<(u64, u64)> = written.into_iter().flatten().collect();
        let shares: Vec<(u64, u64, u64)> = groups
            .iter()
            .zip(&ranges)
            .map(|(g, &(base, next))| (g.id(), base, next))
            .collect();
        let record = CommitRecord {
            shares: shares.clone(),
        }
        .frame()
        .map_err(|e| Error::Protocol(e.to_string()))?;
        if let Err(e) = self.commit_log.append(vec![record]).await {
            if !unknown(&e) {
                join_all(groups.iter().zip(&ranges).map(|(g, r)| abort(g, *r))).await;
            }
            return Err(e);
        }
        // Committed. In flight until every decision is applied here.
        self.in_flight.lock().extend(shares.iter().copied());
        let decided = join_all(
            groups
                .iter()
                .zip(&ranges)
                .map(|(group, &range)| async move {
                    group
                        .decide(&Decision {
                            commit: true,
                            ranges: vec![range],
                        })
                        .await
                }),
        )
        .await;
        self.in_flight.lock().retain(|s| !shares.contains(s));
        match decided.into_iter().find_map(Result::err) {
            None => Ok(ranges),
            // Committed all the same: `resolve` shows the rest.
            Some(e) => Err(Error::Unavailable {
                group: self.commit_log.id(),
                why: format!("the statement is committed, a decision failed: {e}"),
                unknown: true,
            }),
        }
    }

    /// Each group's high watermark, capped at the first share still in flight in it: what a
    /// scan of these partitions may read so that it sees all of a statement or none of it.
    pub fn high_watermarks(&self, groups: &[&Group<PartitionMachine>]) -> Vec<u64> {
        let in_flight = self.in_flight.lock();
        groups
            .iter()
            .map(|g| {
                let hw = g.log().high_watermark();
                in_flight
                    .iter()
                    .filter(|(id, _, _)| *id == g.id())
                    .map(|&(_, base, _)| base)
                    .min()
                    .map_or(hw, |base| hw.min(base))
            })
            .collect()
    }

    /// Decides every undecided share of `groups` by the commit log — a record names it:
    /// commit, else abort — and returns how many were decided. Only while no statement of
    /// this coordinator is being appended (at start): a share being written now has no
    /// record yet and would be aborted.
    pub async fn resolve(&self, groups: &[&Group<PartitionMachine>]) -> Result<usize> {
        // A share written before a restart may still wait to be committed again (by the
        // new leader's first entry): each log is read once it applied what it holds.
        for group in groups.iter().copied().chain([&self.commit_log]) {
            caught_up(group).await?;
        }
        let mut committed = HashSet::new();
        for batch in self
            .commit_log
            .log()
            .reader(0)
            .map_err(|e| Error::Protocol(e.to_string()))?
        {
            let batch = batch.map_err(|e| Error::Protocol(e.to_string()))?;
            let record = CommitRecord::from_batch(&batch.batch)
                .map_err(|e| Error::Protocol(format!("the commit log: {e}")))?;
            committed.extend(record.shares);
        }
        let mut decided = 0;
        for group in groups {
            let undecided = group
                .log()
                .undecided()
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let named = |&(base, next): &(u64, u64)| committed.contains(&(group.id(), base, next));
            let (commit, abort): (Vec<_>, Vec<_>) = undecided.into_iter().partition(named);
            for (outcome, ranges) in [(true, commit), (false, abort)] {
                if !ranges.is_empty() {
                    decided += ranges.len();
                    group
                        .decide(&Decision {
                            commit: outcome,
                            ranges,
                        })
                        .await?;
                }
            }
        }
        Ok(decided)
    }
}

/// Waits (at most the group's write timeout) until the group applied every entry its log held
/// when called.
async fn caught_up(group: &Group<PartitionMachine>) -> Result<()> {
    let log = group.log();
    let index = |entry: eddy_storage::Result<Option<(u64, u64)>>| {
        entry
            .map(|e| e.map(|(_, index)| index))
            .map_err(|e| Error::Protocol(e.to_string()))
    };
    let Some(last) = index(log.last_entry())? else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + group.timing().write_timeout;
    while index(log.committed_entry())?.is_none_or(|c| c < last) {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Unavailable {
                group: group.id(),
                why: format!("entry {last} was not committed in time"),
                unknown: false,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn abort(group: &Group<PartitionMachine>, range: (u64, u64)) -> Result<()> {
    group
        .decide(&Decision {
            commit: false,
            ranges: vec![range],
        })
        .await
}
