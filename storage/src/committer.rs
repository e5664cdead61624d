//! [`Committer`]: a partition's group commit. Appenders queue their statement groups and
//! wait; one writer thread takes everything queued, writes each group (its own statement
//! group, at the next offsets, exactly as a lone append would), makes them all durable with
//! one fdatasync of the active segment, publishes the high watermark once and answers every
//! appender. While it syncs, the next groups queue behind it, so the number of groups per
//! sync grows with the load by itself: one writer waits for its own sync, 64 writers share
//! one — Kafka's and PostgreSQL's group commit without a timer that would delay a lone
//! writer.
//!
//! Why a writer per partition rather than per disk: an fdatasync covers one file, and a
//! partition's active segment is its own file (it is the unit the cold tier uploads and, with
//! replication, a Raft log), so groups of different partitions cannot share a sync without a
//! shared write-ahead file — which would write every byte twice. Partitions of one disk sync
//! in parallel instead; a device queues their flushes together.
//!
//! The writer thread starts with the first append, and ends after [`IDLE`] without one or
//! when the log is dropped or closed: an idle partition costs no thread. It holds the log's
//! state only weakly between rounds, so a dropped log's files are released at once.
//!
//! A Raft log's flushes take the same thread ([`Committer::submit_flush`]): its entries are
//! written by the replication layer as they arrive, and a flush queued here is answered, in
//! order, by the round's one fdatasync — one thread hand-off there and one back, instead of a
//! task of its own and a blocking-pool thread.
//!
//! This module never decides offsets, framing or recovery (the log's `Shared` does); it only
//! orders, batches and answers appends.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::log::{AppendInfo, Shared};
use crate::segment::format::EncodedFrame;

/// How long a writer thread waits for the next append before it ends.
pub(crate) const IDLE: Duration = Duration::from_secs(2);

/// Where one append's answer goes.
type Reply = oneshot::Sender<Result<Vec<AppendInfo>>>;

/// What a queued flush runs once everything written before it is durable (or failed).
pub(crate) type Flushed = Box<dyn FnOnce(Result<()>) + Send>;

/// One queued statement group and where its answer goes, or a flush.
enum Request {
    Append {
        frames: Vec<EncodedFrame>,
        reply: Reply,
    },
    Flush(Flushed),
}

/// What a round answers: each request's outcome, delivered once the round let the log go.
enum Answer {
    Append(Reply, Result<Vec<AppendInfo>>),
    Flush(Flushed, Result<()>),
}

impl Request {
    fn refuse(self, error: Error) {
        match self {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Flush(done) => done(Err(error)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// No thread: the next append starts one.
    Absent,
    /// A thread is writing or syncing a round; it looks at the queue when done.
    Busy,
    /// A thread is waiting for the queue (notify it).
    Waiting,
}

struct Queue {
    requests: Vec<Request>,
    writer: Writer,
    /// The log was dropped or closed: refuse appends, let the thread end.
    stopped: bool,
}

/// The queue of one partition's appends and its writer thread (see the module docs).
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue.lock();
        f.debug_struct("Committer")
            .field("queued", &queue.requests.len())
            .field("stopped", &queue.stopped)
            .finish()
    }
}

/// The answer to one queued append: resolves once its group is durable (or failed).
#[must_use = "an append is only known durable once its future resolves"]
pub struct Appended(oneshot::Receiver<Result<Vec<AppendInfo>>>);

impl std::future::Future for Appended {
    type Output = Result<Vec<AppendInfo>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            // The writer never drops a request unanswered unless its thread died.
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

impl Committer {
    pub(crate) fn new() -> Arc<Committer> {
        Arc::new(Committer {
            queue: Mutex::new(Queue {
                requests: Vec::new(),
                writer: Writer::Absent,
                stopped: false,
            }),
            wake: Condvar::new(),
        })
    }

    /// Queues `frames` as one statement group of the log whose state is `shared`.
    pub(crate) fn submit(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        frames: Vec<EncodedFrame>,
    ) -> Appended {
        let (reply, answer) = oneshot::channel();
        if frames.is_empty() {
            let _ = reply.send(Ok(vec![]));
            return Appended(answer);
        }
        self.queue(shared, Request::Append { frames, reply });
        Appended(answer)
    }

    /// Queues a flush: `done` runs on the writer thread once everything written to the log
    /// before this call is durable, after the flushes queued before it.
    pub(crate) fn submit_flush(self: &Arc<Self>, shared: &Arc<Shared>, done: Flushed) {
        self.queue(shared, Request::Flush(done));
    }

    fn queue(self: &Arc<Self>, shared: &Arc<Shared>, request: Request) {
        let mut queue = self.queue.lock();
        if queue.stopped {
            drop(queue);
            request.refuse(Error::Closed);
            return;
        }
        queue.requests.push(request);
        match queue.writer {
            Writer::Busy => {}
            Writer::Waiting => {
                queue.writer = Writer::Busy;
                self.wake.notify_one();
            }
            Writer::Absent => {
                let (me, state) = (Arc::clone(self), Arc::downgrade(shared));
                let name = format!("eddy-commit-{}", shared.dir().display());
                match std::thread::Builder::new()
                    .name(name)
                    .spawn(move || me.run(state))
                {
                    Ok(_) => queue.writer = Writer::Busy,
                    Err(e) => {
                        let refused: Vec<Request> = queue.requests.drain(..).collect();
                        drop(queue);
                        for r in refused {
                            r.refuse(Error::io(
                                "starting a partition's commit thread",
                                std::io::Error::new(e.kind(), e.to_string()),
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Refuses further appends and lets the writer thread end once the queue is empty.
    pub(crate) fn stop(&self) {
        let mut queue = self.queue.lock();
        queue.stopped = true;
        self.wake.notify_all();
    }

    /// The writer thread: rounds until idle for [`IDLE`] or stopped. The log's state is let
    /// go before the round's answers are sent, so an appender that got its answer and drops
    /// the log knows no file of it is still held here.
    fn run(&self, state: Weak<Shared>) {
        while let Some(requests) = self.next_round() {
            let answers = match state.upgrade() {
                // A panic drops the round's requests (their appenders get `Closed`) and
                // closes the log, whose file is then in an unknown state; the thread stays,
                // so later appends are answered (`Closed`) instead of waiting forever.
                Some(shared) => {
                    std::panic::catch_unwind(AssertUnwindSafe(|| commit_round(&shared, requests)))
                        .unwrap_or_else(|_| {
                            shared.fail_stop();
                            Vec::new()
                        })
                }
                None => {
                    requests.into_iter().for_each(|r| r.refuse(Error::Closed));
                    Vec::new()
                }
            };
            for answer in answers {
                match answer {
                    // The appender may have stopped waiting (its connection ended): the
                    // group is committed all the same.
                    Answer::Append(reply, answer) => {
                        let _ = reply.send(answer);
                    }
                    Answer::Flush(done, result) => done(result),
                }
            }
        }
    }

    /// Everything queued, waiting for it if the queue is empty; `None` when the thread
    /// should end (it has marked itself absent under the lock, so the next append starts a
    /// new one).
    fn next_round(&self) -> Option<Vec<Request>> {
        let mut queue = self.queue.lock();
        loop {
            if !queue.requests.is_empty() {
                queue.writer = Writer::Busy;
                return Some(std::mem::take(&mut queue.requests));
            }
            if queue.stopped {
                queue.writer = Writer::Absent;
                return None;
            }
            queue.writer = Writer::Waiting;
            let timed_out = self.wake.wait_for(&mut queue, IDLE).timed_out();
            if timed_out && queue.requests.is_empty() {
                queue.writer = Writer::Absent;
                return None;
            }
        }
    }
}

/// Writes each request's group, syncs once, returns each one's answer. A group whose write
/// fails is cut off the file (by the log) and answered with its error; the others still
/// commit. A failed sync closes the log (its file's contents are unknown) and fails every
/// group of the round: none was acknowledged, and recovery decides what of them survives.
/// A flush in the round makes the sync cover everything written so far.
fn commit_round(shared: &Shared, requests: Vec<Request>) -> Vec<Answer> {
    // Each request's outcome before the sync; the sync's is added below.
    let mut written = Vec::with_capacity(requests.len());
    let mut end = None;
    for request in requests {
        match request {
            Request::Append { mut frames, reply } => {
                let result = shared.write_group(&mut frames);
                if let Ok(infos) = &result {
                    end = infos.last().map(|i| i.next_offset).or(end);
                }
                written.push(Answer::Append(reply, result));
            }
            Request::Flush(done) => {
                end = Some(shared.appender.lock().written).max(end);
                written.push(Answer::Flush(done, Ok(())));
            }
        }
    }
    let synced = match end {
        Some(end) => shared.wait_durable(end),
        None => Ok(()),
    };
    written
        .into_iter()
        .map(|answer| match answer {
            Answer::Append(reply, result) => {
                let answer = match (result, &synced) {
                    (Ok(infos), Ok(())) => {
                        shared.count_appends(infos.len());
                        Ok(infos)
                    }
                    (Ok(_), Err(e)) => Err(e.duplicate()),
                    (Err(e), _) => Err(e),
                };
                Answer::Append(reply, answer)
            }
            Answer::Flush(done, _) => {
                Answer::Flush(done, synced.as_ref().map_err(Error::duplicate).copied())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use crate::{EncodedFrame, Error, LogConfig, PartitionLog};

    fn frame(first: i64, rows: i64) -> EncodedFrame {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ids = Int64Array::from_iter_values(first..first + rows);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap();
        EncodedFrame::encode(&batch, 0, 0).unwrap()
    }

    /// Groups queued while the writer cannot write (here: the append lock is held, as a
    /// multi-partition append holds it) are written in one round and made durable by one
    /// sync, each still its own group at its own offsets.
    #[test]
    fn groups_queued_behind_a_round_share_its_successor_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let held = log.begin_group(&mut [], false).unwrap();
        let queued: Vec<_> = (0..10).map(|i| log.enqueue(vec![frame(i, 2)])).collect();
        drop(held);
        let mut infos: Vec<_> = queued
            .into_iter()
            .map(|q| futures::executor::block_on(q).unwrap())
            .collect();
        infos.sort_by_key(|i| i[0].base_offset);
        for (i, info) in infos.iter().enumerate() {
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].base_offset, 2 * i as u64);
            assert_eq!(info[0].next_offset, 2 * i as u64 + 2);
        }
        let stats = log.stats();
        assert_eq!(stats.appends, 10);
        // The first round took what was queued when the writer started (at least one
        // group); everything else queued before the lock was released: one more round.
        assert!(stats.fsyncs <= 2, "{stats:?}");
        assert_eq!(log.high_watermark(), 20);
    }

    /// A closed log refuses queued appends with `Closed`, and its writer thread ends.
    #[test]
    fn a_closed_log_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        futures::executor::block_on(log.enqueue(vec![frame(0, 1)])).unwrap();
        log.close().unwrap();
        let refused = futures::executor::block_on(log.enqueue(vec![frame(1, 1)]));
        assert!(matches!(refused, Err(Error::Closed)), "{refused:?}");
        assert_eq!(log.high_watermark(), 1);
    }

    /// Dropping a log releases its files at once, although its writer thread may still be
    /// waiting for the next append: the thread holds the log's state only weakly.
    #[test]
    fn a_dropped_log_keeps_no_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let open_in_dir = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.starts_with(dir.path()))
                .count()
        };
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        futures::executor::block_on(log.enqueue(vec![frame(0, 3)])).unwrap();
        assert!(open_in_dir() > 0);
        drop(log);
        assert_eq!(open_in_dir(), 0, "files of a dropped log are still open");
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.high_watermark(), 3);
    }
}
