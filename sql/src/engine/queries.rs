//! The registry of what runs on this node: each persistent query's tasks, their state and
//! counters ([`Status`], [`QueryState`]), the table materializers — what `SHOW QUERIES`,
//! `EXPLAIN` and shutdown see. The `continuous` module starts and stops them; this module
//! only holds them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use eddy_catalog::QueryDef;
use parking_lot::Mutex;
use tokio::sync::watch;

/// What one task of a persistent query is doing; `SHOW QUERIES` and `EXPLAIN` show it as
/// `STARTING`, `RUNNING`, `STOPPED` or `ERROR: <why>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueryState {
    /// Opening its checkpoint log and restoring its state.
    #[default]
    Starting,
    /// Reading its sources.
    Running,
    /// Stopped cleanly (`TERMINATE`, shutdown).
    Stopped,
    /// Failed, or could not start: why.
    Failed(String),
}

impl std::fmt::Display for QueryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryState::Starting => f.write_str("STARTING"),
            QueryState::Running => f.write_str("RUNNING"),
            QueryState::Stopped => f.write_str("STOPPED"),
            QueryState::Failed(why) => write!(f, "ERROR: {why}"),
        }
    }
}

/// A query task's state and counters, as `SHOW QUERIES` reports them.
#[derive(Debug, Default)]
pub struct Status {
    state: Mutex<QueryState>,
    /// Rows read from the source.
    pub rows_in: AtomicU64,
    /// Rows written to the sink.
    pub rows_out: AtomicU64,
    /// Rows dropped because their window had closed.
    pub late: AtomicU64,
    /// Rows committed to the source but not yet processed.
    pub lag: AtomicU64,
    /// Groups (open windows) held in memory.
    pub groups: AtomicU64,
}

impl Status {
    pub(crate) fn set(&self, state: QueryState) {
        *self.state.lock() = state;
    }

    /// The task's state now.
    pub fn state(&self) -> QueryState {
        self.state.lock().clone()
    }
}

/// A running (or failed) persistent query, as `SHOW QUERIES` and `EXPLAIN` see it.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    /// The catalog's record of it.
    pub def: QueryDef,
    /// Counters and state of each of its tasks (one per source partition, or one).
    pub runners: Vec<Arc<Status>>,
    /// Its DataFusion plan and compiled shape.
    pub explain: String,
}

impl QueryInfo {
    /// The first failed task's state if one failed, else the first task's.
    pub fn state(&self) -> QueryState {
        let states: Vec<QueryState> = self.runners.iter().map(|s| s.state()).collect();
        states
            .iter()
            .find(|s| matches!(s, QueryState::Failed(_)))
            .or(states.first())
            .cloned()
            .unwrap_or_default()
    }

    /// A counter summed over the tasks.
    pub fn total(&self, counter: impl Fn(&Status) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.runners
            .iter()
            .map(|s| counter(s).load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

pub(crate) struct Running {
    pub(crate) info: QueryInfo,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The node's persistent queries and table materializers.
#[derive(Default)]
pub struct Queries {
    pub(crate) running: Mutex<BTreeMap<String, Running>>,
    pub(crate) materializers: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries")
            .field("running", &self.running.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Queries {
    /// Every query, by id.
    pub fn list(&self) -> Vec<QueryInfo> {
        self.running
            .lock()
            .values()
            .map(|r| r.info.clone())
            .collect()
    }

    /// One query.
    pub fn get(&self, id: &str) -> Option<QueryInfo> {
        self.running.lock().get(id).map(|r| r.info.clone())
    }

    /// Stops every task (server shutdown). Checkpoints make this safe at any point.
    pub fn abort_all(&self) {
        for (_, r) in std::mem::take(&mut *self.running.lock()) {
            for t in r.tasks {
                t.abort();
            }
        }
        for (_, t) in std::mem::take(&mut *self.materializers.lock()) {
            t.abort();
        }
    }

    pub(crate) fn stop_materializer(&self, table: &str) {
        if let Some(t) = self.materializers.lock().remove(table) {
            t.abort();
        }
    }
}
