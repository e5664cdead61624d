//! [`Coordinator`]: a statement over several partitions, all or nothing, through their groups
//! — the replicated commit record of docs/design/2026-12-02-replication.md.
//!
//! ```text
//!  shares ──append_txn──▶ each partition: a TXN entry (committed, held back)
//!         ──append──────▶ the commit log: one CommitRecord naming every share  ← commit point
//!         ──decide──────▶ each partition: a commit decision (rows readable)
//! ```
//!
//! - **The commit log decides, in its order.** Its records name shares (a committed `TXN`
//!   entry each, so a share names one entry for good): a *commit* record every share of one
//!   statement, an *abort* record shares given up. A share is decided by the first record that
//!   names it, and a commit record one of whose shares an earlier abort record took commits
//!   nothing — all its shares are aborted. Every node folds the log alike ([`Outcomes`]), so
//!   whoever races to decide a statement, it is committed whole or not at all.
//! - A failure **before** the commit record aborts the shares that were written. A record
//!   whose own outcome is unknown is settled by appending an abort record for the same shares:
//!   whichever of the two the log holds first wins, and the caller is told which.
//! - **After** the record the statement is committed (unless the fold says an abort came
//!   first: [`Error::Aborted`]); a decision that fails is answered as of unknown outcome, and a
//!   sweep commits it later.
//! - **Orphans**: a share whose writer lost track of it (its `append_txn` timed out, the node
//!   died) may be committed in its partition with no record ever to name it, and it holds that
//!   partition's readers back. [`Coordinator::sweep`] gives up every undecided share that no
//!   record names and that stayed so longer than a grace period (an abort record, then the
//!   decisions the fold gives) — the grace only spares statements still being written; the
//!   fold keeps them atomic even when a sweep wins.
//! - **Snapshots**: decisions apply in each partition on its own, so a scan reading several
//!   partitions could see one share and not another. [`Coordinator::high_watermarks`] caps
//!   every partition at the first share still *in flight* (record written, decisions not all
//!   applied here): a scan sees all of a statement or none of it.
//! - **Restart**: [`Coordinator::resolve`] is a sweep without grace: what a restart finds
//!   undecided is decided by the commit log, and given up when no record names it.
//!
//! The commit log is itself a partition group (replicated like the data); its rows are the
//! records. The fold reads it once, as it grows, and keeps every share's outcome in memory —
//! compacting both (dropping records whose shares are all decided in their partitions) is
//! left for when the engine writes through it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_storage::{CommitRecord, Decision, EncodedFrame, PartitionLog};
use futures::future::join_all;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::{ENTRY_TARGET_BYTES, Group, MAX_ENTRY_BYTES, PartitionMachine};

/// A partition group of the statement, and the frames of its share.
pub type Share<'a> = (&'a Group<PartitionMachine>, Vec<EncodedFrame>);

/// A share as the commit log names it: (group, base offset, next offset).
type Named = (u64, u64, u64);

/// A share's group and the offset ranges of its entries.
type ShareRanges<'a> = (&'a Group<PartitionMachine>, Vec<(u64, u64)>);

/// What the commit log's records, read in order, decide (see the module docs): a share's
/// outcome is that of the first record naming it, and a commit record that names a share an
/// earlier record aborted aborts all of its shares.
#[derive(Debug, Default)]
struct Outcomes {
    decided: HashMap<Named, bool>,
    /// The commit log's offset the fold has read up to.
    read_to: u64,
}

impl Outcomes {
    /// Drops the outcomes of committed shares whose commit decisions are applied: no later
    /// record can change them (a later abort record naming one only decides it again, which
    /// changes nothing), so only aborts — rare — stay in memory. A restart still folds the
    /// whole commit log again: it has no retention yet.
    fn forget_committed(&mut self, shares: &[Named]) {
        for share in shares {
            if self.decided.get(share) == Some(&true) {
                self.decided.remove(share);
            }
        }
    }

    fn fold(&mut self, record: CommitRecord) {
        let commit = record.commit
            && record
                .shares
                .iter()
                .all(|s| self.decided.get(s) != Some(&false));
        for share in record.shares {
            self.decided.entry(share).or_insert(commit);
        }
    }
}

/// Commits statements over several partitions through one commit log (see the module docs).
pub struct Coordinator {
    commit_log: Group<PartitionMachine>,
    /// (group, base, next) of the shares whose statement is committed and whose decisions
    /// are not all applied on this node yet.
    in_flight: Mutex<Vec<Named>>,
    /// The commit log folded so far.
    outcomes: Mutex<Outcomes>,
    /// When a sweep first found each undecided share no record names.
    seen: Mutex<HashMap<Named, Instant>>,
    /// The most bytes one entry of a share holds.
    entry_limit: usize,
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
            outcomes: Mutex::new(Outcomes::default()),
            seen: Mutex::new(HashMap::new()),
            entry_limit: ENTRY_TARGET_BYTES,
        }
    }

    /// The same, with shares cut into entries of at most `bytes` (default
    /// [`ENTRY_TARGET_BYTES`], at most [`MAX_ENTRY_BYTES`]; a frame larger than it is an entry
    /// of its own): fewer bytes per entry spread a large share over more entries.
    pub fn with_entry_limit(mut self, bytes: usize) -> Coordinator {
        self.entry_limit = bytes.clamp(1, MAX_ENTRY_BYTES);
        self
    }

    /// The outcome the commit log gives each of `shares` (`None`: no record names it), after
    /// folding what was appended to it since the last call.
    fn outcomes_of(&self, shares: &[Named]) -> Result<Vec<Option<bool>>> {
        let log = self.commit_log.log();
        let mut outcomes = self.outcomes.lock();
        let end = log.high_watermark();
        if outcomes.read_to < end {
            let storage = |e: eddy_storage::Error| Error::Protocol(format!("the commit log: {e}"));
            for batch in log.reader(outcomes.read_to).map_err(storage)? {
                let batch = batch.map_err(storage)?;
                if batch.base_offset >= end {
                    break;
                }
                outcomes.fold(CommitRecord::from_batch(&batch.batch).map_err(storage)?);
            }
            outcomes.read_to = end;
        }
        Ok(shares
            .iter()
            .map(|s| outcomes.decided.get(s).copied())
            .collect())
    }

    /// The commit log's group.
    pub fn commit_log(&self) -> &Group<PartitionMachine> {
        &self.commit_log
    }

    /// Appends every share, all or nothing, and returns each one's offset ranges (one per
    /// entry it took) once its rows are readable on this node. Each group appears at most
    /// once. A share larger than one entry ([`Coordinator::with_entry_limit`]) is written as
    /// several `TXN` entries of its partition, all named by the one commit record; a statement
    /// of one partition that fits one entry is one plain entry (committed whole by itself).
    pub async fn append(&self, shares: Vec<Share<'_>>) -> Result<Vec<Vec<(u64, u64)>>> {
        let mut ids: Vec<u64> = shares.iter().map(|(g, _)| g.id()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Protocol(
                "a statement names one partition twice".into(),
            ));
        }
        let mut chunked = Vec::with_capacity(shares.len());
        for (group, frames) in shares {
            chunked.push((group, chunks(frames, self.entry_limit)?));
        }
        if let [(group, chunks)] = chunked.as_mut_slice()
            && chunks.len() == 1
        {
            let frames = chunks.pop().unwrap_or_default();
            return Ok(vec![vec![group.append(frames).await?]]);
        }
        // Every entry of every share, written in parallel: (share, group, chunk).
        let entries: Vec<(usize, &Group<PartitionMachine>, Vec<EncodedFrame>)> = chunked
            .into_iter()
            .enumerate()
            .flat_map(|(i, (g, chunks))| chunks.into_iter().map(move |c| (i, g, c)))
            .collect();
        let places: Vec<(usize, &Group<PartitionMachine>)> =
            entries.iter().map(|(i, g, _)| (*i, *g)).collect();
        let written = join_all(entries.into_iter().map(|(_, g, c)| g.append_txn(c))).await;
        if written.iter().any(Result::is_err) {
            let mut first = None;
            let mut aborts = Vec::new();
            for ((_, group), result) in places.iter().zip(written) {
                match result {
                    Ok(range) => aborts.push(abort(group, vec![range])),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            // Best effort: a share left undecided is given up by a sweep.
            join_all(aborts).await;
            return Err(first.unwrap_or_else(|| Error::Protocol("no share failed".into())));
        }
        let ranges: Vec<(u64, u64)> = written.into_iter().flatten().collect();
        let shares: Vec<Named> = places
            .iter()
            .zip(&ranges)
            .map(|((_, g), &(base, next))| (g.id(), base, next))
            .collect();
        // Each share's group and its entries' ranges, in share order (`places` holds a
        // share's entries one after the other).
        let mut per_share: Vec<ShareRanges> = Vec::new();
        for ((i, g), range) in places.iter().zip(&ranges) {
            match per_share.get_mut(*i) {
                Some((_, r)) => r.push(*range),
                None => per_share.push((*g, vec![*range])),
            }
        }
        eddy_storage::failpoint::crash_point("append-before-commit");
        let record = |commit| {
            CommitRecord {
                commit,
                shares: shares.clone(),
            }
            .frame()
            .map_err(|e| Error::Protocol(e.to_string()))
        };
        if let Err(e) = self.commit_log.append(vec![record(true)?]).await {
            if !unknown(&e) {
                join_all(per_share.iter().map(|(g, r)| abort(g, r.clone()))).await;
                return Err(e);
            }
            // It may yet be in the log: an abort record settles it — the first of the two wins.
            if self.commit_log.append(vec![record(false)?]).await.is_err() {
                // Still unknown: a sweep decides it once the commit log answers.
                return Err(e);
            }
        }
        let outcomes = self.outcomes_of(&shares)?;
        if outcomes.iter().any(|o| *o != Some(true)) {
            join_all(per_share.iter().map(|(g, r)| abort(g, r.clone()))).await;
            return Err(Error::Aborted(
                "a share was given up before its commit record was in the commit log".into(),
            ));
        }
        eddy_storage::failpoint::crash_point("append-after-commit");
        // Committed. In flight until every decision is applied here.
        let in_flight = InFlight::register(&self.in_flight, shares.clone());
        let decided = join_all(per_share.iter().map(|(group, ranges)| async move {
            group
                .decide(&Decision {
                    commit: true,
                    ranges: ranges.clone(),
                })
                .await
        }))
        .await;
        drop(in_flight);
        match decided.into_iter().find_map(Result::err) {
            None => {
                self.outcomes.lock().forget_committed(&shares);
                Ok(per_share.into_iter().map(|(_, r)| r).collect())
            }
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
        let parts: Vec<(u64, &PartitionLog)> =
            groups.iter().map(|g| (g.id(), g.log().as_ref())).collect();
        self.high_watermarks_of(&parts)
    }

    /// [`Coordinator::high_watermarks`] of partitions named by their group id and log (what
    /// a topic's [`eddy_storage::Visibility`] holds).
    pub fn high_watermarks_of(&self, parts: &[(u64, &PartitionLog)]) -> Vec<u64> {
        let in_flight = self.in_flight.lock();
        parts
            .iter()
            .map(|&(id, log)| {
                let hw = log.high_watermark();
                in_flight
                    .iter()
                    .filter(|(group, _, _)| *group == id)
                    .map(|&(_, base, _)| base)
                    .min()
                    .map_or(hw, |base| hw.min(base))
            })
            .collect()
    }

    /// Decides every undecided share of `groups` by the commit log, giving up — by an abort
    /// record — the shares no record names that were found so at least `grace` ago (on a
    /// first sweep only `grace` zero gives any up). Returns how many shares it decided. Run
    /// now and then, with a grace well above a statement's time to write its commit record
    /// (the groups' write timeout): a shorter one aborts live statements, never splits one.
    pub async fn sweep(
        &self,
        groups: &[&Group<PartitionMachine>],
        grace: Duration,
    ) -> Result<usize> {
        // A share written before a restart may still wait to be committed again (by the
        // new leader's first entry): each log is read once it applied what it holds.
        for group in groups.iter().copied().chain([&self.commit_log]) {
            caught_up(group).await?;
        }
        let undecided = |group: &Group<PartitionMachine>| -> Result<Vec<Named>> {
            let ranges = group
                .log()
                .undecided()
                .map_err(|e| Error::Protocol(e.to_string()))?;
            Ok(ranges
                .into_iter()
                .map(|(b, n)| (group.id(), b, n))
                .collect())
        };
        let mut all = Vec::new();
        for group in groups {
            all.extend(undecided(group)?);
        }
        let outcomes = self.outcomes_of(&all)?;
        let now = Instant::now();
        let orphans: Vec<Named> = {
            let mut seen = self.seen.lock();
            seen.retain(|s, _| all.contains(s));
            all.iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_none())
                .filter(|(s, _)| now.duration_since(*seen.entry(**s).or_insert(now)) >= grace)
                .map(|(s, _)| *s)
                .collect()
        };
        if !orphans.is_empty() {
            let record = CommitRecord {
                commit: false,
                shares: orphans,
            };
            let frame = record.frame().map_err(|e| Error::Protocol(e.to_string()))?;
            self.commit_log.append(vec![frame]).await?;
        }
        let outcomes = self.outcomes_of(&all)?;
        // Committed shares are decided group by group: in flight until all are, so that no
        // snapshot shows one partition's share of a statement without the others'.
        let committed: Vec<Named> = all
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Some(true))
            .map(|(s, _)| *s)
            .collect();
        let _in_flight = InFlight::register(&self.in_flight, committed.clone());
        let mut decided = 0;
        for group in groups {
            let (mut commit, mut abort) = (Vec::new(), Vec::new());
            for (&(id, base, next), outcome) in all.iter().zip(&outcomes) {
                match outcome {
                    Some(true) if id == group.id() => commit.push((base, next)),
                    Some(false) if id == group.id() => abort.push((base, next)),
                    _ => {}
                }
            }
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
        self.outcomes.lock().forget_committed(&committed);
        Ok(decided)
    }

    /// What a restart does before the partitions take statements: [`Coordinator::sweep`]
    /// without grace — every undecided share is decided by the commit log, or given up.
    pub async fn resolve(&self, groups: &[&Group<PartitionMachine>]) -> Result<usize> {
        self.sweep(groups, Duration::ZERO).await
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

/// Shares registered as in flight (committed, decisions not all applied on this node) until
/// dropped — on every path out, an error's included.
struct InFlight<'a> {
    list: &'a Mutex<Vec<Named>>,
    shares: Vec<Named>,
}

impl<'a> InFlight<'a> {
    fn register(list: &'a Mutex<Vec<Named>>, shares: Vec<Named>) -> InFlight<'a> {
        list.lock().extend(shares.iter().copied());
        InFlight { list, shares }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut list = self.list.lock();
        for share in &self.shares {
            if let Some(at) = list.iter().position(|s| s == share) {
                list.swap_remove(at);
            }
        }
    }
}

async fn abort(group: &Group<PartitionMachine>, ranges: Vec<(u64, u64)>) -> Result<()> {
    group
        .decide(&Decision {
            commit: false,
            ranges,
        })
        .await
}

/// `frames` cut, in order, into runs of at most `limit` bytes: one entry each. A frame above
/// the limit is a run of its own; one above [`MAX_ENTRY_BYTES`] cannot be written.
fn chunks(frames: Vec<EncodedFrame>, limit: usize) -> Result<Vec<Vec<EncodedFrame>>> {
    let mut out: Vec<Vec<EncodedFrame>> = Vec::new();
    let mut bytes = 0;
    for frame in frames {
        let len = frame.len() as usize;
        if len > MAX_ENTRY_BYTES {
            return Err(Error::Protocol(format!(
                "a frame of {len} bytes is above the {MAX_ENTRY_BYTES} an entry holds"
            )));
        }
        match out.last_mut() {
            Some(last) if bytes + len <= limit => last.push(frame),
            _ => {
                out.push(vec![frame]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    if out.is_empty() {
        return Err(Error::Protocol("a statement's share holds no frame".into()));
    }
    Ok(out)
}
