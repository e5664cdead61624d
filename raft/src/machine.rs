//! `Machine`: openraft's state machine over any deterministic [`StateMachine`] (the catalog's,
//! for the metadata group), with its snapshot on disk.
//!
//! ```text
//! <dir>/snapshot   "EDDYSNP3", then two records: the snapshot's meta (last log id, membership,
//!                  id), and the state machine's own bytes; replaced atomically
//! ```
//!
//! Applying is in memory; what makes it durable is the log. After a restart the state is the
//! last snapshot's, and openraft applies the committed entries after it again — so `apply`
//! must give the same result for the same entries from the same state, and effects outside the
//! state (a directory made for a created stream) must tolerate being asked for twice.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::error::{Error, Result, io};
use crate::{Reply, TypeConfig, records};

const SNAPSHOT_MAGIC: &[u8; 8] = b"EDDYSNP3";

/// A deterministic state machine replicated by a group.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the command committed at Raft log `index` and says what the proposer is told.
    /// The same commands in the same order from the same state give the same state and replies.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The state as bytes, for a snapshot.
    fn snapshot(&self) -> Result<Vec<u8>>;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, bytes: &[u8]) -> Result<()>;
}

/// An openraft state machine a group can wait on.
pub trait Applied: Send + Sync + 'static {
    /// The index of the last entry applied on this node, watched (0 before any).
    fn applied(&self) -> watch::Receiver<u64>;

    /// Releases what the machine holds open, once the group's core has stopped.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl<S: StateMachine> Applied for Machine<S> {
    fn applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }
}

/// A snapshot kept: its meta and the state machine's bytes.
type Kept = (SnapshotMeta<u64, BasicNode>, Vec<u8>);

struct Shared<S> {
    machine: S,
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

/// openraft's view of a [`StateMachine`]; clones share it.
pub struct Machine<S> {
    dir: PathBuf,
    /// Read by every statement (the catalog's streams), written by each apply.
    shared: Arc<RwLock<Shared<S>>>,
    /// The last snapshot taken or installed: its meta and bytes.
    current: Arc<Mutex<Option<Kept>>>,
    /// The index of the last entry applied (0: none), for callers that wait for an apply.
    applied_tx: Arc<watch::Sender<u64>>,
}

impl<S> Clone for Machine<S> {
    fn clone(&self) -> Self {
        Machine {
            dir: self.dir.clone(),
            shared: self.shared.clone(),
            current: self.current.clone(),
            applied_tx: self.applied_tx.clone(),
        }
    }
}

impl<S: StateMachine> Machine<S> {
    /// Opens the machine whose snapshot is kept in `dir`, starting from `machine` when there is
    /// none.
    pub fn open(dir: &Path, mut machine: S) -> Result<Machine<S>> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("snapshot");
        let current = match fs::read(&path) {
            Ok(bytes) => Some(decode_snapshot(&bytes, &path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        let (applied, membership) = match &current {
            Some((meta, data)) => {
                machine.restore(data)?;
                (meta.last_log_id, meta.last_membership.clone())
            }
            None => (None, StoredMembership::default()),
        };
        let index = applied.map_or(0, |l| l.index);
        Ok(Machine {
            dir: dir.to_path_buf(),
            shared: Arc::new(RwLock::new(Shared {
                machine,
                applied,
                membership,
            })),
            current: Arc::new(Mutex::new(current)),
            applied_tx: Arc::new(watch::channel(index).0),
        })
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.shared.read().machine)
    }

    fn save(&self, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> Result<()> {
        write_snapshot(&self.dir, meta, data)?;
        *self.current.lock() = Some((meta.clone(), data.to_vec()));
        Ok(())
    }
}

/// Writes a snapshot file into `dir`, atomically.
pub(crate) fn write_snapshot(
    dir: &Path,
    meta: &SnapshotMeta<u64, BasicNode>,
    data: &[u8],
) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("snapshot");
    let meta_bytes = postcard::to_stdvec(meta)
        .map_err(|e| Error::Protocol(format!("encoding a snapshot's meta: {e}")))?;
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    records::encode(&meta_bytes, &mut bytes)?;
    records::encode(data, &mut bytes)?;
    records::replace(&path, &bytes)
}

fn decode_snapshot(bytes: &[u8], path: &Path) -> Result<Kept> {
    let contents = records::read(bytes, SNAPSHOT_MAGIC, path)?;
    match contents.records.as_slice() {
        [meta, data] if contents.valid_end == bytes.len() as u64 => {
            let meta = postcard::from_bytes(meta.payload).map_err(|e| Error::Damaged {
                path: path.to_path_buf(),
                at: meta.at,
                why: format!("not a snapshot's meta: {e}"),
            })?;
            Ok((meta, data.payload.to_vec()))
        }
        _ => Err(Error::Damaged {
            path: path.to_path_buf(),
            at: 0,
            why: "a snapshot file must hold its meta and its data, whole".into(),
        }),
    }
}

fn sm_error(e: Error) -> StorageError<u64> {
    StorageIOError::write_state_machine(&e).into()
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for Machine<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, data) = {
            let shared = self.shared.read();
            let data = shared.machine.snapshot().map_err(sm_error)?;
            let id = match shared.applied {
                Some(l) => format!("{}-{}", l.leader_id.term, l.index),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: shared.applied,
                last_membership: shared.membership.clone(),
                snapshot_id: id,
            };
            (meta, data)
        };
        self.save(&meta, &data).map_err(sm_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for Machine<S> {
    type SnapshotBuilder = Machine<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let shared = self.shared.read();
        Ok((shared.applied, shared.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut last = None;
        {
            let mut shared = self.shared.write();
            for entry in entries {
                let reply = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    // An empty command is a barrier (`Group::barrier`): no state machine's
                    // command is empty, so none is passed on.
                    EntryPayload::Normal(request) if request.bytes().is_empty() => Vec::new(),
                    EntryPayload::Normal(request) => {
                        shared.machine.apply(entry.log_id.index, request.bytes())
                    }
                    EntryPayload::Membership(membership) => {
                        shared.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Vec::new()
                    }
                };
                shared.applied = Some(entry.log_id);
                last = Some(entry.log_id.index);
                replies.push(Reply(reply));
            }
        }
        if let Some(index) = last {
            self.applied_tx.send_replace(index);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        self.save(meta, &data).map_err(sm_error)?;
        {
            let mut shared = self.shared.write();
            shared.machine.restore(&data).map_err(sm_error)?;
            shared.applied = meta.last_log_id;
            shared.membership = meta.last_membership.clone();
        }
        self.applied_tx
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.current.lock().clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
