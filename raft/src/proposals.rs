//! `Proposals`: group commit for a partition group's writes.
//!
//! openraft 0.9's core waits for each append's flush before it takes the next one
//! (`RaftCore::append_to_log` blocks on the flush callback), so writes proposed one by one
//! pay one fsync each however many arrive together — `examples/partition_bench` measured
//! 1.00 fsyncs per append with 16 writers. So writes are merged before openraft sees them:
//! writes that arrive while one is being proposed wait; the caller that proposes next merges
//! everything waiting (up to [`MAX_ENTRY_BYTES`]) into **one** entry, and answers each write
//! with its own offsets — the entry's base plus the rows of the writes before it in the entry.
//! The number of writes per entry grows with the load by itself, as in the storage's
//! committer: a lone writer waits for nobody.
//!
//! Merging is sound because an entry is committed, and becomes visible, whole: every write in
//! it is acknowledged only after that, and each keeps its rows contiguous and in order.
//!
//! Leadership is handed on, as in storage's commit rounds: a caller proposes rounds until its
//! own write is answered, then wakes the first waiting write to lead the next round. A leader
//! whose future is dropped mid-round hands on all the same; the writes of the round it was
//! proposing are answered as of unknown outcome (they may yet commit).

use std::collections::VecDeque;

use eddy_storage::EncodedFrame;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::partition::MAX_ENTRY_BYTES;

/// What a waiting write is told.
enum Turn {
    Done(Result<(u64, u64)>),
    /// Propose the next round.
    Lead,
}

struct Waiting {
    id: u64,
    frames: Vec<EncodedFrame>,
    rows: u64,
    bytes: usize,
    /// `None` once it was told to lead (it answers itself).
    tx: Option<oneshot::Sender<Turn>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    leading: bool,
    next_id: u64,
}

/// The writes waiting to be proposed to one partition group (see the module docs).
#[derive(Default)]
pub(crate) struct Proposals {
    queue: Mutex<Queue>,
}

/// Hands leadership on when the leader stops, answered or dropped.
struct Leading<'a>(&'a Proposals);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        loop {
            let Some(first) = queue.waiting.front_mut() else {
                queue.leading = false;
                return;
            };
            match first.tx.take().map(|tx| tx.send(Turn::Lead)) {
                Some(Ok(())) => return,
                // That write's caller is gone: it needs no answer, and proposes nothing.
                _ => {
                    queue.waiting.pop_front();
                }
            }
        }
    }
}

fn gone(group: u64) -> Error {
    Error::Unavailable {
        group,
        why: "the write that was proposing it stopped".into(),
        unknown: true,
    }
}

impl Proposals {
    /// Proposes `frames` (one statement group) merged with whatever else waits; `write`
    /// proposes one entry's bytes and returns its offsets. Returns this write's offsets.
    pub(crate) async fn propose<F, Fut>(
        &self,
        group: u64,
        frames: Vec<EncodedFrame>,
        write: F,
    ) -> Result<(u64, u64)>
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: Future<Output = Result<(u64, u64)>>,
    {
        let rows = frames.iter().map(|f| u64::from(f.record_count())).sum();
        let bytes = frames.iter().map(|f| f.len() as usize).sum();
        let (tx, rx) = oneshot::channel();
        // The guard must not live across an await: the lock is taken in a block of its own.
        let (id, follow) = {
            let mut queue = self.queue.lock();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.waiting.push_back(Waiting {
                id,
                frames,
                rows,
                bytes,
                tx: Some(tx),
            });
            let follow = queue.leading;
            queue.leading = true;
            (id, follow)
        };
        if follow {
            match rx.await {
                Ok(Turn::Done(answer)) => return answer,
                Ok(Turn::Lead) => {}
                Err(_) => return Err(gone(group)),
            }
        }
        let _leading = Leading(self);
        loop {
            let round = self.take_round();
            let mine = round.iter().any(|w| w.id == id);
            let total: u64 = round.iter().map(|w| w.rows).sum();
            let mut answers = Vec::with_capacity(round.len());
            let mut frames = Vec::new();
            for w in round {
                answers.push((w.id, w.rows, w.tx));
                frames.extend(w.frames);
            }
            let result = match crate::partition::encode_frames(frames) {
                Ok(bytes) => write(bytes).await,
                Err(e) => Err(e),
            };
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
            let mut own = None;
            for (wid, rows, tx) in answers {
                let answer = match &result {
                    Ok(_) => Ok((at, at + rows)),
                    Err(e) => Err(e.duplicate()),
                };
                at += rows;
                if wid == id {
                    own = Some(answer);
                } else if let Some(tx) = tx {
                    let _ = tx.send(Turn::Done(answer));
                }
            }
            if mine {
                return own.unwrap_or_else(|| Err(gone(group)));
            }
        }
    }

    /// The waiting writes for one round, in arrival order: the first always, later ones while
    /// the entry stays within [`MAX_ENTRY_BYTES`].
    fn take_round(&self) -> Vec<Waiting> {
        let mut queue = self.queue.lock();
        let mut round = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.waiting.front() {
            if !round.is_empty() && bytes + next.bytes > MAX_ENTRY_BYTES {
                break;
            }
            bytes += next.bytes;
            round.extend(queue.waiting.pop_front());
        }
        round
    }
}
