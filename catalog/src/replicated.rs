//! The catalog as the metadata group's state machine (docs/design/2026-12-02-replication.md):
//! [`MetaMachine`] applies [`Command`]s in the order the group committed them, on every node.
//!
//! A command travels as JSON (the format of today's command log) and its outcome comes back
//! as JSON too: the command as applied — with the storage name derived from the number of
//! commands applied before it, which every node applying the same log computes alike — or the
//! refusal [`CatalogState::check`] gave. Checking happens at
//! apply, not before proposing, so two nodes that propose `CREATE STREAM s` at once get one
//! stream and one "already exists", decided by the log's order.

use eddy_raft::StateMachine;
use serde::{Deserialize, Serialize};

use crate::state::assign_storage;
use crate::{CatalogState, Command, Error, Result};

/// Why an applied command changed nothing: the refusals [`CatalogState::check`] gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    /// See [`Error::AlreadyExists`].
    AlreadyExists(String),
    /// See [`Error::NotFound`].
    NotFound(String),
    /// See [`Error::QueryNotFound`].
    QueryNotFound(String),
    /// See [`Error::InUse`].
    InUse(String),
    /// See [`Error::Invalid`].
    Invalid(String),
    /// See [`Error::InvalidName`].
    InvalidName(String),
    /// See [`Error::NameTooLong`].
    NameTooLong {
        /// The name's first characters.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        match e {
            Error::AlreadyExists(n) => Refusal::AlreadyExists(n),
            Error::NotFound(n) => Refusal::NotFound(n),
            Error::QueryNotFound(n) => Refusal::QueryNotFound(n),
            Error::InUse(m) => Refusal::InUse(m),
            Error::InvalidName(m) => Refusal::InvalidName(m),
            Error::NameTooLong { name, bytes } => Refusal::NameTooLong { name, bytes },
            other => Refusal::Invalid(other.to_string()),
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::AlreadyExists(n) => Error::AlreadyExists(n),
            Refusal::NotFound(n) => Error::NotFound(n),
            Refusal::QueryNotFound(n) => Error::QueryNotFound(n),
            Refusal::InUse(m) => Error::InUse(m),
            Refusal::Invalid(m) => Error::Invalid(m),
            Refusal::InvalidName(m) => Error::InvalidName(m),
            Refusal::NameTooLong { name, bytes } => Error::NameTooLong { name, bytes },
        }
    }
}

/// What the proposer of a command is told.
pub type Outcome = std::result::Result<Command, Refusal>;

/// A command as the group carries it.
pub fn encode_command(command: &Command) -> Result<Vec<u8>> {
    serde_json::to_vec(command).map_err(|e| Error::Invalid(format!("encoding a command: {e}")))
}

/// The outcome the group answered: the command as applied, or its refusal as an [`Error`].
pub fn decode_outcome(bytes: &[u8]) -> Result<Command> {
    let outcome: Outcome = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("decoding a command's outcome: {e}")))?;
    outcome.map_err(Error::from)
}

/// The catalog's state, applied from the metadata group's log.
#[derive(Debug, Default)]
pub struct MetaMachine {
    state: CatalogState,
}

impl MetaMachine {
    /// A machine starting from `state`.
    pub fn new(state: CatalogState) -> MetaMachine {
        MetaMachine { state }
    }

    /// The state.
    pub fn state(&self) -> &CatalogState {
        &self.state
    }

    fn outcome(&mut self, bytes: &[u8]) -> Outcome {
        let command: Command = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::Invalid(format!("a command that does not decode: {e}")))?;
        let command = assign_storage(command, self.state.applied() + 1);
        self.state.check(&command)?;
        self.state.apply(command.clone())?;
        Ok(command)
    }
}

impl StateMachine for MetaMachine {
    /// Numbered by the commands applied before it, not by the log index (which also counts
    /// openraft's own entries): names and query ids stay what a single node gave them.
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let outcome = self.outcome(command);
        // An `Outcome` is plain data: encoding it cannot fail.
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self) -> eddy_raft::Result<Vec<u8>> {
        serde_json::to_vec(&self.state)
            .map_err(|e| eddy_raft::Error::Protocol(format!("encoding the catalog: {e}")))
    }

    fn restore(&mut self, bytes: &[u8]) -> eddy_raft::Result<()> {
        self.state = serde_json::from_slice(bytes)
            .map_err(|e| eddy_raft::Error::Protocol(format!("decoding the catalog: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use eddy_raft::{Group, Machine, Timing, Transport};

    use super::*;
    use crate::LocalCatalog;
    use crate::state::tests::def;

    #[test]
    fn outcomes_number_storage_by_commands_and_refuse_as_the_state_does() {
        let mut m = MetaMachine::default();
        let create = encode_command(&Command::CreateStream(def("s"))).unwrap();
        let applied = decode_outcome(&m.apply(5, &create)).unwrap();
        let Command::CreateStream(d) = applied else {
            panic!("{applied:?}")
        };
        assert_eq!(d.storage, "s-1", "numbered by commands, not by log index");
        assert_eq!(m.state().applied(), 1);
        let again = decode_outcome(&m.apply(6, &create)).unwrap_err();
        assert!(
            matches!(again, Error::AlreadyExists(ref n) if n == "s"),
            "{again}"
        );
        let garbage = decode_outcome(&m.apply(7, b"{not json")).unwrap_err();
        assert!(garbage.to_string().contains("does not decode"), "{garbage}");
        assert_eq!(m.state().streams().count(), 1);
    }

    /// A catalog written before replication becomes the metadata group's first state: its
    /// streams are there, and new commands are numbered after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_catalog_seeds_the_metadata_group() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = LocalCatalog::open(&dir.path().join("catalog")).unwrap();
        legacy.execute(Command::CreateStream(def("old"))).unwrap();
        let state = legacy.state();
        drop(legacy);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers = BTreeMap::from([(1, listener.local_addr().unwrap().to_string())]);
        let meta = dir.path().join("meta");
        let bytes = MetaMachine::new(state.clone()).snapshot().unwrap();
        Group::<Machine<MetaMachine>>::seed(&meta, state.applied(), &peers, &bytes).unwrap();
        let transport = Transport::start(1, listener, peers);
        let timing = Timing {
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            ..Timing::default()
        };
        let group = Group::start(
            0,
            transport.clone(),
            &meta,
            MetaMachine::default(),
            &BTreeSet::from([1]),
            timing,
        )
        .await
        .unwrap();
        assert!(group.machine().read(|m| m.state().stream("old").is_some()));
        let (index, reply) = group
            .write(encode_command(&Command::CreateStream(def("new"))).unwrap())
            .await
            .unwrap();
        assert!(index > state.applied());
        let Command::CreateStream(new) = decode_outcome(&reply).unwrap() else {
            panic!("not a create")
        };
        assert_eq!(new.storage, format!("new-{}", state.applied() + 1));
        assert!(group.machine().read(|m| m.state().stream("old").is_some()));
        group.shutdown().await.unwrap();
        transport.shutdown().await;
    }
}
