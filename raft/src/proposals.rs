//! `Proposals`: group commit for a partition group's writes, pipelined.
//!
//! openraft 0.9's core waits for each append's flush before it takes the next one
//! (`RaftCore::append_to_log` blocks on the flush callback), so writes proposed one by one
//! pay one fsync each however many arrive together — `examples/partition_bench` measured
//! 1.00 fsyncs per append with 16 writers. So writes are merged before openraft sees them:
//! the group's **proposer** (one task per partition group on this node, [`run`]) takes
//! everything waiting (up to [`ENTRY_TARGET_BYTES`]) as one **round**, proposes it as one
//! entry, and each write is answered with its own offsets — the entry's base plus the rows of
//! the writes before it in the entry. The number of writes per round grows with the load by
//! itself, as in the storage's committer: a lone writer waits for nobody.
//!
//! Merging is sound because an entry is committed, and becomes visible, whole: every write in
//! it is acknowledged only after that, and each keeps its rows contiguous and in order.
//!
//! **Pipelined.** A round waits for nothing but the flush of the round before it: the next
//! round is proposed as soon as the log store's flush of the previous one returns, while that
//! one is still being committed and applied, and a round is answered by the state machine as
//! it applies the entry (the log store and the state machine find the round by the entry's
//! index: [`Proposals::appended`], [`Proposals::applied`]) rather than by openraft's reply,
//! which the core sends only after it took the next append's flush. So the disk flushes round
//! after round with only the hand-off to openraft's core between them. (Two rounds proposed
//! at once, tried in the sixth session, made rounds smaller and fsyncs more: here a round
//! still takes everything that waited during the flush before it.)
//!
//! On a node that is not the group's leader a round is forwarded to the leader
//! (`Writer::write`), one round at a time, as before pipelining.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use eddy_storage::EncodedFrame;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use openraft::error::ClientWriteError;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};
use crate::group::Writer;
use crate::partition::{self, ENTRY_TARGET_BYTES, PartitionMachine};
use crate::{Request, TypeConfig};
use openraft::raft::ClientWriteResult;

/// A write's answer: its offsets `(base, next)`.
type Answer = oneshot::Sender<Result<(u64, u64)>>;

struct Waiting {
    frames: Vec<EncodedFrame>,
    rows: u64,
    bytes: usize,
    tx: Answer,
}

/// A round proposed and not yet answered.
struct Round {
    /// Each write's rows and answer, in the entry's order.
    writes: Vec<(u64, Answer)>,
    /// The log store flushed its entry (or it went to another node's leader: then it stays
    /// unflushed here until answered, so rounds are forwarded one at a time).
    flushed: bool,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    next_round: u64,
    rounds: HashMap<u64, Round>,
    /// Entry index → round, for the rounds the log store appended.
    indexes: BTreeMap<u64, u64>,
    /// The group stopped: writes are refused, none waits.
    closed: bool,
    /// The group's id, for errors (set by its proposer).
    group: u64,
}

impl State {
    /// A round waits for its flush (or for the leader it was forwarded to).
    fn unflushed(&self) -> bool {
        self.rounds.values().any(|r| !r.flushed)
    }
}

/// The writes of one partition group on this node, waiting or proposed (see the module docs).
#[derive(Default)]
pub(crate) struct Proposals {
    state: Mutex<State>,
    /// Wakes the proposer: a write arrived, or a round was flushed.
    wake: Notify,
}

/// A write the group stopped before it was answered (it may yet be committed).
pub(crate) fn gone(group: u64) -> Error {
    Error::Unavailable {
        group,
        why: "the group stopped before the write was answered".into(),
        unknown: true,
    }
}

impl Proposals {
    /// Queues `frames` (one statement group) for the proposer; the receiver gets the write's
    /// offsets once its entry is committed and applied here.
    pub(crate) fn push(
        &self,
        group: u64,
        frames: Vec<EncodedFrame>,
    ) -> oneshot::Receiver<Result<(u64, u64)>> {
        let rows = frames.iter().map(|f| u64::from(f.record_count())).sum();
        let bytes = frames.iter().map(|f| f.len() as usize).sum();
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state.lock();
            if state.closed {
                let _ = tx.send(Err(gone(group)));
                return rx;
            }
            state.waiting.push_back(Waiting {
                frames,
                rows,
                bytes,
                tx,
            });
            // While a round waits for its flush, the flush wakes the proposer.
            if state.unflushed() {
                return rx;
            }
        }
        self.wake.notify_one();
        rx
    }

    /// The log store wrote these `(entry index, round)`s; their flush follows.
    pub(crate) fn appended(&self, rounds: &[(u64, u64)]) {
        if rounds.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        state.indexes.extend(rounds.iter().copied());
    }

    /// The log store's flush of these rounds' entries returned: the next round may go.
    pub(crate) fn flushed(&self, rounds: &[(u64, u64)]) {
        if rounds.is_empty() {
            return;
        }
        {
            let mut state = self.state.lock();
            for (_, round) in rounds {
                if let Some(r) = state.rounds.get_mut(round) {
                    r.flushed = true;
                }
            }
            if state.waiting.is_empty() {
                return;
            }
        }
        self.wake.notify_one();
    }

    /// The log store removed the entries from index `from` on: they will never be applied
    /// (their rounds are answered by openraft's reply, an error).
    pub(crate) fn truncated(&self, from: u64) {
        let mut state = self.state.lock();
        state.indexes.split_off(&from);
    }

    /// The state machine applied entry `index`, which holds the rows `offsets`.
    pub(crate) fn applied(&self, index: u64, offsets: Option<(u64, u64)>) {
        let (group, round) = {
            let mut state = self.state.lock();
            let Some(round) = state.indexes.remove(&index) else {
                return;
            };
            (state.group, state.rounds.remove(&round))
        };
        if let Some(round) = round {
            answer(
                group,
                round,
                offsets.ok_or_else(|| Error::Raft {
                    group,
                    why: format!("entry {index} was applied as no data"),
                }),
            );
        }
    }

    /// Answers round `round` with `result` unless it was answered already.
    fn answer(&self, group: u64, round: u64, result: Result<(u64, u64)>) {
        let round = self.state.lock().rounds.remove(&round);
        if let Some(round) = round {
            answer(group, round, result);
        }
    }

    /// Whether round `round` is still to be answered.
    fn unanswered(&self, round: u64) -> bool {
        self.state.lock().rounds.contains_key(&round)
    }

    /// The group stopped: every write waiting or proposed is answered as of unknown outcome
    /// (a proposed one may yet commit), and later writes are refused.
    pub(crate) fn close(&self, group: u64) {
        let (waiting, rounds) = {
            let mut state = self.state.lock();
            state.closed = true;
            state.indexes.clear();
            (
                std::mem::take(&mut state.waiting),
                std::mem::take(&mut state.rounds),
            )
        };
        for w in waiting {
            let _ = w.tx.send(Err(gone(group)));
        }
        for (_, round) in rounds {
            answer(group, round, Err(gone(group)));
        }
    }

    /// The next round, if one may be proposed now (no round waits for its flush) and writes
    /// wait: its number and its entry's bytes. Writes whose frames do not make an entry are
    /// answered with the error here, and the writes after them make the round.
    fn next_round(&self, group: u64) -> Option<(u64, Bytes)> {
        let mut state = self.state.lock();
        loop {
            if state.closed || state.waiting.is_empty() || state.unflushed() {
                return None;
            }
            let mut bytes = 0;
            let mut writes = Vec::new();
            let mut frames = Vec::new();
            while let Some(next) = state.waiting.front() {
                if !writes.is_empty() && bytes + next.bytes > ENTRY_TARGET_BYTES {
                    break;
                }
                bytes += next.bytes;
                let Some(w) = state.waiting.pop_front() else {
                    break;
                };
                writes.push((w.rows, w.tx));
                frames.extend(w.frames);
            }
            let number = state.next_round;
            state.next_round += 1;
            match partition::encode_frames(frames) {
                Ok(encoded) => {
                    state.rounds.insert(
                        number,
                        Round {
                            writes,
                            flushed: false,
                        },
                    );
                    return Some((number, Bytes::from(encoded)));
                }
                Err(e) => answer(
                    group,
                    Round {
                        writes,
                        flushed: true,
                    },
                    Err(e),
                ),
            }
        }
    }
}

/// Answers each write of `round`: its share of the entry's offsets, or the error.
fn answer(group: u64, round: Round, result: Result<(u64, u64)>) {
    let total: u64 = round.writes.iter().map(|(rows, _)| rows).sum();
    let result = result.and_then(|(base, next)| {
        if next - base == total {
            Ok(base)
        } else {
            Err(Error::Raft {
                group,
                why: format!("an entry of {total} rows was given offsets {base}..{next}"),
            })
        }
    });
    let mut at = result.as_ref().copied().unwrap_or(0);
    for (rows, tx) in round.writes {
        let _ = tx.send(match &result {
            Ok(_) => Ok((at, at + rows)),
            Err(e) => Err(e.duplicate()),
        });
        at += rows;
    }
}

/// Closes the proposals when the proposer stops (its task aborted with the group).
struct Closing<'a>(&'a Proposals, u64);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

/// Rounds forwarded to the leader on another node: each round's number and the leader's
/// answer (`Writer::write`'s).
type Forwarded = FuturesUnordered<BoxFuture<'static, (u64, Result<(u64, Vec<u8>)>)>>;

/// A round proposed to this node's core: openraft's reply, looked at without a wake-up of
/// its own (normally the state machine answered the round first, and the reply is dropped).
struct Proposed {
    round: u64,
    bytes: Bytes,
    reply: oneshot::Receiver<ClientWriteResult<TypeConfig>>,
    deadline: tokio::time::Instant,
}

/// How often the proposer looks at openraft's replies while rounds are out, when nothing
/// else wakes it: a round refused because leadership just moved waits at most this long to
/// be forwarded.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// The proposer of partition group `writer`'s writes on this node (see the module docs); runs
/// until the group stops (its task is aborted, and [`Proposals::close`] answers the rest).
///
/// openraft's reply to each round is not awaited (that would wake the proposer once more per
/// round, after the core handled the state machine's result): it is read when the proposer
/// wakes anyway — for the next round — or every [`LOOK_EVERY`] while rounds are out.
pub(crate) async fn run(writer: Writer<PartitionMachine>) {
    let group = writer.id();
    let proposals = writer.machine().proposals();
    proposals.state.lock().group = group;
    let _closing = Closing(proposals, group);
    let mut proposed: Vec<Proposed> = Vec::new();
    let mut forwarded: Forwarded = FuturesUnordered::new();
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A leader cut off from its majority gives up on what it waits for (`cut_off`).
        let cut_off = (!proposed.is_empty()).then(|| writer.cut_off()).flatten();
        proposed.retain_mut(|p| look_at(&writer, &mut forwarded, p, cut_off.as_deref()));
        while let Some((round, bytes)) = proposals.next_round(group) {
            let leader = writer.raft().metrics().borrow().current_leader;
            if leader != Some(writer.node_id()) {
                forward(&writer, &mut forwarded, round, bytes);
                continue;
            }
            if let Some(why) = writer.cut_off() {
                proposals.answer(group, round, Err(writer.refused(why, false)));
                continue;
            }
            match writer
                .raft()
                .client_write_ff(Request::of_round(bytes.clone(), round))
                .await
            {
                Ok(reply) => proposed.push(Proposed {
                    round,
                    bytes,
                    reply,
                    deadline: tokio::time::Instant::now() + writer.timing().write_timeout,
                }),
                Err(fatal) => proposals.answer(
                    group,
                    round,
                    Err(Error::Raft {
                        group,
                        why: fatal.to_string(),
                    }),
                ),
            }
        }
        tokio::select! {
            _ = proposals.wake.notified() => {}
            _ = look.tick(), if !proposed.is_empty() => {}
            Some((round, written)) = forwarded.next(), if !forwarded.is_empty() => {
                let result = written.and_then(|(index, reply)| {
                    partition::decode_offsets(&reply)?.ok_or_else(|| Error::Raft {
                        group,
                        why: format!("entry {index} was applied as no data"),
                    })
                });
                proposals.answer(group, round, result);
            }
        }
    }
}

/// Sends round `round` to the group's leader on another node, answered when it replies.
fn forward(writer: &Writer<PartitionMachine>, forwarded: &mut Forwarded, round: u64, bytes: Bytes) {
    let writer = writer.clone();
    forwarded.push(Box::pin(async move { (round, writer.write(bytes).await) }));
}

/// Looks at openraft's reply to a proposed round; false once the round needs no more looks.
/// `cut_off`: why this leader cannot commit it (`Writer::cut_off`).
fn look_at(
    writer: &Writer<PartitionMachine>,
    forwarded: &mut Forwarded,
    p: &mut Proposed,
    cut_off: Option<&str>,
) -> bool {
    let group = writer.id();
    let proposals = writer.machine().proposals();
    if !proposals.unanswered(p.round) {
        return false;
    }
    let result = match p.reply.try_recv() {
        Err(oneshot::error::TryRecvError::Empty) => {
            if let Some(why) = cut_off {
                Err(writer.refused(why.to_string(), true))
            } else if tokio::time::Instant::now() < p.deadline {
                return true;
            } else {
                Err(Error::Unavailable {
                    group,
                    why: "the leader did not commit it in time".into(),
                    unknown: true,
                })
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
            // Leadership moved before the core took it: the round goes to the new leader.
            forward(writer, forwarded, p.round, p.bytes.clone());
            return false;
        }
        // Normally answered already, as it was applied.
        Ok(Ok(response)) => partition::decode_offsets(&response.data.0).and_then(|offsets| {
            offsets.ok_or_else(|| Error::Raft {
                group,
                why: format!("entry {} was applied as no data", response.log_id.index),
            })
        }),
        Ok(Err(e)) => Err(Error::Raft {
            group,
            why: e.to_string(),
        }),
        Err(oneshot::error::TryRecvError::Closed) => Err(Error::Unavailable {
            group,
            why: "the leader stepped down or stopped before it committed the write".into(),
            unknown: true,
        }),
    };
    proposals.answer(group, p.round, result);
    false
}
