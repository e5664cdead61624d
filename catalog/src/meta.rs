//! [`Catalog`]: the node's catalog, which is the metadata Raft group — a cluster of one when the
//! node has no peers, on the same path (docs/design/2026-12-02-replication.md).
//!
//! ```text
//! <data>/meta/log/       the group's log and vote (eddy_raft::FileLog)
//! <data>/meta/machine/   its last snapshot: the CatalogState
//! <data>/catalog/        a catalog from before replication: read once to seed meta/, then
//!                        left as it is (never written again)
//! ```
//!
//! A command is proposed to the group and returns once it is committed and applied on this
//! node, with its outcome (the command as applied, or why the state refused it). Reads are the
//! state this node has applied. Opening waits until the node has applied everything its log
//! holds, so that a restarted node never answers from an older catalog than it acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use eddy_raft::{Applied, Group, Machine, StateMachine, Timing, Transport};

use crate::persist::LocalCatalog;
use crate::replicated::{MetaMachine, decode_outcome, encode_command};
use crate::{CatalogState, Command, Error, QueryDef, Result, StreamDef};

/// The metadata group's id.
pub const META_GROUP: u64 = 0;

/// The node's catalog.
pub struct Catalog {
    group: Group<Machine<MetaMachine>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("applied", &self.applied())
            .finish()
    }
}

fn replication(e: eddy_raft::Error) -> Error {
    match e {
        eddy_raft::Error::Io { path, source } => Error::Io { path, source },
        eddy_raft::Error::Damaged { path, at, why } => Error::Damaged {
            path,
            position: at,
            reason: why,
        },
        other => Error::Replication(other),
    }
}

impl Catalog {
    /// Opens the catalog of the node whose data directory is `data_dir`, as the metadata group
    /// over `voters` on `transport` (seeding it, on first start, from a pre-replication catalog
    /// in `data_dir/catalog`), and waits until the node has applied its whole log.
    pub async fn open(
        data_dir: &Path,
        transport: Arc<Transport>,
        voters: &BTreeSet<u64>,
        timing: Timing,
    ) -> Result<Catalog> {
        let meta = data_dir.join("meta");
        let legacy = data_dir.join("catalog");
        if !meta.join("log").exists() && legacy.exists() {
            let state = LocalCatalog::open(&legacy)?.state();
            let bytes = MetaMachine::new(state.clone())
                .snapshot()
                .map_err(replication)?;
            let members: BTreeMap<u64, String> = voters
                .iter()
                .map(|v| (*v, transport.peers().get(v).cloned().unwrap_or_default()))
                .collect();
            Group::<Machine<MetaMachine>>::seed(&meta, state.applied(), &members, &bytes)
                .map_err(replication)?;
            tracing::info!(
                commands = state.applied(),
                from = %legacy.display(),
                "the catalog is now the metadata group's first snapshot"
            );
        }
        let group = Group::start(
            META_GROUP,
            transport.clone(),
            &meta,
            MetaMachine::default(),
            voters,
            timing.clone(),
        )
        .await
        .map_err(replication)?;
        let catalog = Catalog { group };
        if voters.len() == 1 {
            catalog.caught_up(&timing).await?;
        } else {
            catalog.synced().await;
        }
        Ok(catalog)
    }

    /// Waits, as long as it takes, until this node has applied everything the metadata
    /// group had committed (a barrier through its leader). A node of a cluster serves
    /// nothing before: like a Kafka broker waiting for its controller quorum, it cannot
    /// know which streams exist until a majority of the voters answers.
    async fn synced(&self) {
        let mut tries = 0u32;
        loop {
            match self.group.barrier().await {
                Ok(()) => return,
                Err(e) => {
                    tries += 1;
                    if tries == 1 || tries.is_multiple_of(6) {
                        tracing::warn!(error = %e, "waiting for a majority of the metadata group's voters");
                    }
                    // A refusal that comes at once (no connection yet) is not retried in a
                    // spin.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A receiver that changes whenever this node applies an entry of the metadata group:
    /// what a node watches to act on catalog changes other nodes proposed.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.group.machine().applied()
    }

    /// Waits until this node leads and has applied everything in its log (a sole voter).
    async fn caught_up(&self, timing: &Timing) -> Result<()> {
        let mut metrics = self.group.metrics();
        let wait = metrics.wait_for(|m| {
            m.current_leader == Some(m.id) && m.last_applied.map(|l| l.index) >= m.last_log_index
        });
        match tokio::time::timeout(timing.write_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::NotReady(
                "the metadata group did not apply its log in time".into(),
            )),
        }
    }

    /// Proposes a command; returns it as applied (with the storage name the catalog gave a
    /// stream it creates), once it is applied on this node.
    pub async fn execute(&self, command: Command) -> Result<Command> {
        let bytes = encode_command(&command)?;
        let (_, reply) = self.group.write(bytes).await.map_err(replication)?;
        decode_outcome(&reply)
    }

    fn read<T>(&self, f: impl FnOnce(&CatalogState) -> T) -> T {
        self.group.machine().read(|m| f(m.state()))
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<StreamDef> {
        self.read(|s| s.stream(name).cloned())
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> Vec<StreamDef> {
        self.read(|s| s.streams().cloned().collect())
    }

    /// Storage names of dropped streams whose data is not yet known to be deleted.
    pub fn dropped(&self) -> Vec<String> {
        self.read(|s| s.dropped().map(str::to_string).collect())
    }

    /// A persistent query by id.
    pub fn query(&self, id: &str) -> Option<QueryDef> {
        self.read(|s| s.query(id).cloned())
    }

    /// All persistent queries, ordered by id.
    pub fn queries(&self) -> Vec<QueryDef> {
        self.read(|s| s.queries().cloned().collect())
    }

    /// The number of commands applied: a version that only grows, used to number persistent
    /// queries and to invalidate cached plans.
    pub fn applied(&self) -> u64 {
        self.read(CatalogState::applied)
    }

    /// Stops the group on this node.
    pub async fn close(&self) -> Result<()> {
        self.group.shutdown().await.map_err(replication)
    }
}
