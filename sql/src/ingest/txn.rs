//! [`Writes`]: where a session's rows go — straight to the log, or, while a transaction block
//! is open, into the block's [`Pending`] writes, which COMMIT appends all at once.
//!
//! A block's writes are encoded frames held in memory (at most [`MAX_PENDING_BYTES`]); nothing
//! reaches a partition before COMMIT, so ROLLBACK, a failed COMMIT or a disconnect only drops
//! them. COMMIT appends every stream's frames as one statement through the partitions' groups
//! ([`crate::engine::Replicas::append_across`]): all of them become visible together, and a
//! crash keeps all or none. Savepoints are marks in the list of writes.
//!
//! This module never decides transaction state (that is the session's); it only holds and
//! appends rows.

use std::sync::Arc;

use eddy_storage::Topic;
use parking_lot::Mutex;

use super::Encoded;
use crate::engine::Engine;
use crate::{Error, Result};

/// The most a transaction block may hold before COMMIT, in encoded bytes. Writes beyond it
/// fail with 54000: a block lives in the server's memory until it commits.
pub const MAX_PENDING_BYTES: usize = 256 << 20;

/// One statement's rows for one stream, held by a block.
#[derive(Debug)]
struct Write {
    topic: Arc<Topic>,
    encoded: Encoded,
    bytes: usize,
}

/// The writes of an open transaction block, in statement order.
#[derive(Debug, Default)]
pub struct Pending {
    writes: Vec<Write>,
    bytes: usize,
    /// `READ ONLY` block: writes are refused (25006).
    read_only: bool,
}

/// A position in a block's writes: a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

impl Pending {
    /// Nothing written yet.
    pub fn new(read_only: bool) -> Pending {
        Pending {
            read_only,
            ..Pending::default()
        }
    }

    /// Rows held so far.
    pub fn rows(&self) -> u64 {
        self.writes.iter().map(|w| w.encoded.rows()).sum()
    }

    /// The current position, for a savepoint.
    pub fn mark(&self) -> Mark {
        Mark(self.writes.len())
    }

    /// Drops every write made after `mark`.
    pub fn rollback_to(&mut self, mark: Mark) {
        for w in self.writes.drain(mark.0.min(self.writes.len())..) {
            self.bytes -= w.bytes;
        }
    }

    /// Makes the block `READ ONLY` or `READ WRITE` (`SET TRANSACTION`).
    pub fn set_read_only(&mut self, read_only: bool) -> Result<()> {
        if !read_only && self.read_only {
            // PostgreSQL: "transaction read-write mode must be set before any query".
            return Err(Error::ReadOnlyTransaction(
                "a READ ONLY transaction cannot become READ WRITE".into(),
            ));
        }
        self.read_only = read_only;
        Ok(())
    }

    fn hold(&mut self, topic: &Arc<Topic>, encoded: Encoded) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnlyTransaction(format!(
                "cannot write to stream \"{}\" in a read-only transaction",
                topic.name()
            )));
        }
        let bytes = encoded.bytes();
        if self.bytes + bytes > MAX_PENDING_BYTES {
            return Err(Error::TransactionTooLarge(format!(
                "a transaction holds at most {} MiB of writes until COMMIT; this statement \
                 would bring it to {} MiB (commit more often, or write outside a transaction \
                 block)",
                MAX_PENDING_BYTES >> 20,
                (self.bytes + bytes).div_ceil(1 << 20)
            )));
        }
        let rows = encoded.rows();
        self.bytes += bytes;
        self.writes.push(Write {
            topic: topic.clone(),
            encoded,
            bytes,
        });
        Ok(rows)
    }

    /// Appends every write, all or nothing across streams and partitions; returns the rows.
    /// A stream dropped while the block was open fails the whole commit with 40001.
    pub async fn commit(self, engine: &Engine) -> Result<u64> {
        let store = engine.topics();
        let mut per_topic: Vec<(Arc<Topic>, Encoded)> = Vec::new();
        let mut rows = 0;
        for w in self.writes {
            rows += w.encoded.rows();
            match per_topic.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &w.topic)) {
                Some((_, e)) => e.extend(w.encoded),
                None => per_topic.push((w.topic, w.encoded)),
            }
        }
        for (topic, _) in &per_topic {
            let current = store.topic(topic.storage());
            if !current.is_some_and(|c| Arc::ptr_eq(&c, topic)) {
                return Err(Error::SerializationFailure(format!(
                    "could not commit: stream \"{}\" was dropped while this transaction was \
                     open; none of the transaction's writes were kept",
                    topic.name()
                )));
            }
        }
        let (topics, encoded): (Vec<Arc<Topic>>, Vec<Encoded>) = per_topic.into_iter().unzip();
        let work = topics
            .iter()
            .map(|t| t.as_ref())
            .zip(encoded.into_iter().map(Encoded::into_work))
            .collect();
        engine.replicas().append_across(work).await?;
        Ok(rows)
    }
}

/// Where one session's writes go. Shared by the session and its plans (the INSERT sink finds
/// it in the DataFusion session config), so that an INSERT planned anywhere honours the
/// session's block.
#[derive(Debug, Default)]
pub struct Writes {
    block: Mutex<Option<Pending>>,
}

impl Writes {
    /// Appends `encoded` to `topic` now and durably ([`super::append`]), or — inside a
    /// block — holds it for COMMIT. Returns the rows.
    pub async fn append(
        &self,
        engine: &Engine,
        topic: &Arc<Topic>,
        encoded: Encoded,
    ) -> Result<u64> {
        let encoded = match self.block.lock().as_mut() {
            Some(block) => return block.hold(topic, encoded),
            None => encoded,
        };
        super::append(engine, topic, encoded).await
    }

    /// Opens a block (BEGIN). Its writes wait for [`Writes::take`].
    pub fn open(&self, pending: Pending) {
        *self.block.lock() = Some(pending);
    }

    /// Ends the block: its writes, to commit or drop.
    pub fn take(&self) -> Option<Pending> {
        self.block.lock().take()
    }

    /// Runs `f` on the open block, if any.
    pub fn with_block<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> Option<T> {
        self.block.lock().as_mut().map(f)
    }
}
