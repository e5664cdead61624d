//! [`CommitRounds`]: group commit for atomic appends — a transaction block's COMMIT across
//! topics (the store's rounds) and a statement that writes several partitions of one topic
//! (the topic's rounds). An atomic append holds the append locks of every partition it writes from its
//! first write to its commit record, so two of them on the same partitions cannot overlap,
//! and each would pay its partitions' fsyncs plus the commit record's fsync alone. Instead,
//! appends that arrive while one is being committed wait; the one that finishes next merges
//! everything waiting into **one** atomic append — per partition one group holding each
//! request's frames in arrival order, one commit record — and answers them all. Eight
//! concurrent COMMITs then cost about what one does.
//!
//! Merging is sound because no request is acknowledged before the merged commit record is
//! durable: the round is all or nothing, so each request inside it is too, and the order of
//! independent transactions inside a round is the order they arrived. A failure fails every
//! request of the round (nothing of it is kept).
//!
//! Leadership is handed on, not kept: a caller runs rounds until its own request is answered,
//! then, if requests are still waiting, wakes the first to lead the next round. So no caller
//! works for others longer than the round it is in.
//!
//! This module never writes: it only queues, merges and answers; the caller's `run` does
//! the append.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::topics::{PartitionFrames, Topic};

/// One atomic append across topics: each topic with its partitions' frames.
pub(crate) type Work = Vec<(Arc<Topic>, PartitionFrames)>;

/// What a round merges: an atomic append's work.
pub(crate) trait Mergeable: Sized {
    /// Encoded bytes.
    fn bytes(&self) -> u64;
    /// Whether this request may join a round already holding `round`.
    fn fits(&self, round: &[Self]) -> bool;
    /// One atomic append holding every request's frames, per partition in order.
    fn merge(works: Vec<Self>) -> Self;
}

/// A round stops taking requests past this many encoded bytes (at least one is taken):
/// latency of the requests in it stays bounded by what one large COMMIT costs.
const ROUND_BYTES: u64 = 64 << 20;

enum State {
    Waiting,
    /// Run the next round.
    Lead,
    Done(Result<()>),
}

/// Where a waiting request learns its outcome, or that it leads the next round.
struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

impl Slot {
    fn set(&self, state: State) {
        *self.state.lock() = state;
        self.changed.notify_one();
    }

    /// Waits until answered or made leader; the result if answered.
    fn wait(&self) -> Option<Result<()>> {
        let mut state = self.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Waiting) {
                State::Waiting => self.changed.wait(&mut state),
                State::Lead => return None,
                State::Done(result) => return Some(result),
            }
        }
    }
}

struct Queue<W> {
    waiting: Vec<(W, Arc<Slot>)>,
    /// A caller is running rounds.
    leading: bool,
}

/// The queue of a store's or a topic's atomic appends (see the module docs).
pub(crate) struct CommitRounds<W> {
    queue: Mutex<Queue<W>>,
}

impl<W> Default for CommitRounds<W> {
    fn default() -> Self {
        CommitRounds {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                leading: false,
            }),
        }
    }
}

impl<W> std::fmt::Debug for CommitRounds<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitRounds")
            .field("waiting", &self.queue.lock().waiting.len())
            .finish()
    }
}

impl<W: Mergeable> CommitRounds<W> {
    /// Commits `work` in a round with whatever else waits, calling `run` with each round's
    /// merged work; returns this request's outcome. Blocking.
    pub(crate) fn commit(&self, work: W, run: impl Fn(W) -> Result<()>) -> Result<()> {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Waiting),
            changed: Condvar::new(),
        });
        {
            let mut queue = self.queue.lock();
            queue.waiting.push((work, Arc::clone(&slot)));
            if queue.leading {
                drop(queue);
                if let Some(result) = slot.wait() {
                    return result;
                }
            } else {
                queue.leading = true;
            }
        }
        // Leading: rounds until this request is answered.
        loop {
            let (works, slots) = take_round(&mut self.queue.lock().waiting);
            // A panic must not leave the waiters (and every later request) waiting forever.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(W::merge(works))))
                .unwrap_or_else(|_| {
                    Err(Error::io(
                        "committing a round of appends",
                        std::io::Error::other("the append panicked"),
                    ))
                });
            let mut mine = false;
            for s in slots {
                if Arc::ptr_eq(&s, &slot) {
                    mine = true;
                } else {
                    s.set(State::Done(
                        result.as_ref().map(|&()| ()).map_err(Error::duplicate),
                    ));
                }
            }
            if mine {
                let mut queue = self.queue.lock();
                match queue.waiting.first() {
                    Some((_, next)) => next.set(State::Lead),
                    None => queue.leading = false,
                }
                return result;
            }
        }
    }
}

/// Takes the waiting requests for one round, in arrival order: the first always; later ones
/// while under [`ROUND_BYTES`] and as long as they fit with those taken. Returns their work
/// and their slots.
fn take_round<W: Mergeable>(waiting: &mut Vec<(W, Arc<Slot>)>) -> (Vec<W>, Vec<Arc<Slot>>) {
    let mut bytes = 0;
    let mut works: Vec<W> = Vec::new();
    let mut slots = Vec::new();
    for (work, slot) in std::mem::take(waiting) {
        let size = work.bytes();
        if !works.is_empty() && (!work.fits(&works) || bytes + size > ROUND_BYTES) {
            waiting.push((work, slot));
            continue;
        }
        bytes += size;
        works.push(work);
        slots.push(slot);
    }
    (works, slots)
}

fn frame_bytes(parts: &PartitionFrames) -> u64 {
    parts
        .iter()
        .flat_map(|(_, frames)| frames.iter())
        .map(|f| f.len())
        .sum()
}

/// Appends `parts`' frames to `into`'s, partition by partition.
fn merge_parts(into: &mut PartitionFrames, parts: PartitionFrames) {
    for (p, frames) in parts {
        match into.iter_mut().find(|(q, _)| *q == p) {
            Some((_, existing)) => existing.extend(frames),
            None => into.push((p, frames)),
        }
    }
}

/// A statement's work on one topic: always fits.
impl Mergeable for PartitionFrames {
    fn bytes(&self) -> u64 {
        frame_bytes(self)
    }

    fn fits(&self, _: &[Self]) -> bool {
        true
    }

    fn merge(works: Vec<Self>) -> Self {
        let mut merged = PartitionFrames::new();
        for work in works {
            merge_parts(&mut merged, work);
        }
        merged
    }
}

/// A transaction's work across topics: fits unless it names another topic object under a
/// storage name already in the round (a topic dropped and created again: the next round
/// takes it).
impl Mergeable for Work {
    fn bytes(&self) -> u64 {
        self.iter().map(|(_, parts)| frame_bytes(parts)).sum()
    }

    fn fits(&self, round: &[Self]) -> bool {
        !self.iter().any(|(t, _)| {
            round
                .iter()
                .flatten()
                .any(|(u, _)| u.storage() == t.storage() && !Arc::ptr_eq(u, t))
        })
    }

    fn merge(works: Vec<Self>) -> Self {
        let mut merged: Work = Vec::new();
        for work in works {
            for (topic, parts) in work {
                match merged.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &topic)) {
                    Some((_, into)) => merge_parts(into, parts),
                    None => merged.push((topic, parts)),
                }
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parking_lot::Mutex;

    use super::*;
    use crate::{EncodedFrame, Error, LogConfig, TopicStore};

    fn frame(rows: i64) -> EncodedFrame {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        EncodedFrame::encode(&batch, 0, 0).unwrap()
    }

    /// Requests that arrive while a round runs are merged into the next one: per topic and
    /// partition, in arrival order; every caller gets its answer, and a failed round fails
    /// each of its requests.
    #[test]
    fn requests_waiting_behind_a_round_are_merged_into_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        let a = store.open_topic("a", "a", 2, LogConfig::default()).unwrap();
        let b = store.open_topic("b", "b", 1, LogConfig::default()).unwrap();
        let rounds = Arc::new(CommitRounds::<Work>::default());
        // Each round run: (topic, partition, frames) of its merged work.
        type Runs = Vec<Vec<(String, usize, usize)>>;
        let seen: Arc<Mutex<Runs>> = Arc::default();
        let (release, gate) = mpsc::channel::<Result<()>>();
        let gate = Arc::new(Mutex::new(gate));
        let run = {
            let (seen, gate) = (seen.clone(), gate.clone());
            move |work: Work| {
                seen.lock().push(
                    work.iter()
                        .flat_map(|(t, parts)| {
                            parts
                                .iter()
                                .map(|(p, f)| (t.name().to_string(), *p, f.len()))
                        })
                        .collect(),
                );
                gate.lock().recv().unwrap()
            }
        };
        let spawn = |work: Work| {
            let (rounds, run) = (rounds.clone(), run.clone());
            std::thread::spawn(move || rounds.commit(work, run))
        };
        let first = spawn(vec![(a.clone(), vec![(0, vec![frame(1)])])]);
        while seen.lock().is_empty() {
            std::thread::yield_now();
        }
        // The first round runs (held at the gate); three more requests queue behind it.
        let later = [
            spawn(vec![(a.clone(), vec![(1, vec![frame(1)])])]),
            spawn(vec![(b.clone(), vec![(0, vec![frame(1)])])]),
            spawn(vec![(
                a.clone(),
                vec![(1, vec![frame(2)]), (0, vec![frame(3)])],
            )]),
        ];
        while rounds.queue.lock().waiting.len() < 3 {
            std::thread::yield_now();
        }
        release.send(Ok(())).unwrap();
        first.join().unwrap().unwrap();
        release
            .send(Err(Error::io("test", std::io::Error::other("disk gone"))))
            .unwrap();
        for h in later {
            let e = h.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("disk gone"), "{e}");
        }
        let seen = seen.lock();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let mut second = seen[1].clone();
        second.sort();
        assert_eq!(
            second,
            [("a".into(), 0, 1), ("a".into(), 1, 2), ("b".into(), 0, 1)],
            "one round, per partition every waiting request's frames"
        );
    }

    /// One topic's statements merge per partition, each partition's frames in arrival order.
    #[test]
    fn a_topic_round_keeps_each_partition_in_arrival_order() {
        let merged = PartitionFrames::merge(vec![
            vec![(0, vec![frame(1)]), (2, vec![frame(2)])],
            vec![(2, vec![frame(3), frame(4)]), (1, vec![frame(5)])],
        ]);
        let shape: Vec<(usize, Vec<u64>)> = merged
            .iter()
            .map(|(p, frames)| (*p, frames.iter().map(|f| f.len()).collect()))
            .collect();
        let len = |rows| frame(rows).len();
        assert_eq!(
            shape,
            [
                (0, vec![len(1)]),
                (2, vec![len(2), len(3), len(4)]),
                (1, vec![len(5)])
            ]
        );
    }

    /// A round whose append panics answers its request with an error and lets the next
    /// request lead, instead of leaving every later commit waiting.
    #[test]
    fn a_panicking_round_fails_its_request_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::open(dir.path()).unwrap();
        let a = store.open_topic("a", "a", 1, LogConfig::default()).unwrap();
        let rounds = CommitRounds::<Work>::default();
        let work = || vec![(a.clone(), vec![(0, vec![frame(1)])])];
        let failed = rounds.commit(work(), |_| panic!("a bug in an append"));
        assert!(failed.unwrap_err().to_string().contains("panicked"));
        rounds.commit(work(), |_| Ok(())).unwrap();
    }
}
