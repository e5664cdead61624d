//! [`Cluster`]: this node's place among its peers — its id, the static voter set (every node
//! votes in every group), the peer transport — and the record that ties a data directory to
//! them (`eddy_storage::NodeRecord`, which reads and writes it).
//!
//! ```text
//! <data>/node.json   {"node_id": 2, "voters": [1, 2, 3]}, written on the first start
//! ```
//!
//! A data directory holds one node's replicas of groups whose memberships name the voters, so
//! it must never be started as another node or among other voters: the file is checked at
//! every start and a mismatch refuses to start, before anything is opened. Peer addresses may
//! change between starts (the transport dials what `--peers` says); ids may not. Changing the
//! voter set is a membership change, which is not built (docs/design/2026-12-02-replication.md,
//! "Membership later").
//!
//! This module never opens groups or streams: it only says who the node is and connects it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use eddy_raft::Transport;
use eddy_storage::NodeRecord;

use crate::{Error, Result};

/// The id of a node that is a cluster of one ([`Cluster::ALONE_ID`]).
const ALONE: u64 = Cluster::ALONE_ID;

/// This node's id and its cluster's voters with their peer addresses (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This node's id: positive, and one of `peers`.
    pub node_id: u64,
    /// Every voter, this node included: id → the address its peers listen on.
    pub peers: BTreeMap<u64, String>,
    /// Where this node's peer listener binds when that is not its own entry of `peers`
    /// (its peers reach it through a proxy or a NAT: Kafka's `listeners` beside
    /// `advertised.listeners`). `None`: its entry.
    pub listen: Option<String>,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::alone()
    }
}

impl Cluster {
    /// The id of a node that is a cluster of one.
    pub const ALONE_ID: u64 = 1;

    /// A cluster of one: node [`ALONE`], no peers to listen for or dial.
    pub fn alone() -> Cluster {
        Cluster {
            node_id: ALONE,
            peers: BTreeMap::from([(ALONE, String::new())]),
            listen: None,
        }
    }

    /// The voters' ids.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.peers.keys().copied().collect()
    }

    /// Whether this node is the only voter.
    pub fn is_alone(&self) -> bool {
        self.peers.len() == 1
    }

    /// Checks the settings: a positive node id that is one of the voters.
    pub fn validate(&self) -> Result<()> {
        if self.peers.contains_key(&0) {
            return Err(Error::Invalid("node ids start at 1".into()));
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(Error::Invalid(format!(
                "node {} is not one of the voters ({})",
                self.node_id,
                ids(&self.voters())
            )));
        }
        Ok(())
    }

    /// Checks that `data_dir` belongs to this node among these voters, recording it there on
    /// the first start. A directory with data but no record is a cluster of one's (from
    /// before clusters): it starts only as node [`ALONE`], alone.
    pub(crate) fn claim(&self, data_dir: &Path) -> Result<()> {
        let wanted = NodeRecord {
            node_id: self.node_id,
            voters: self.voters(),
        };
        match NodeRecord::read(data_dir)? {
            Some(found) => self.refuse_unless_same(&found, data_dir),
            None => {
                if NodeRecord::holds_data(data_dir) {
                    let alone = NodeRecord {
                        node_id: ALONE,
                        voters: BTreeSet::from([ALONE]),
                    };
                    self.refuse_unless_same(&alone, data_dir)?;
                }
                Ok(wanted.write(data_dir)?)
            }
        }
    }

    fn refuse_unless_same(&self, found: &NodeRecord, data_dir: &Path) -> Result<()> {
        if found.node_id != self.node_id {
            return Err(Error::Invalid(format!(
                "{} holds node {}'s data, not node {}'s: start it with --node-id {}",
                data_dir.display(),
                found.node_id,
                self.node_id,
                found.node_id
            )));
        }
        if found.voters != self.voters() {
            return Err(Error::Invalid(format!(
                "{} belongs to a cluster whose voters are {}, not {}: changing the voters is \
                 not supported yet",
                data_dir.display(),
                ids(&found.voters),
                ids(&self.voters())
            )));
        }
        Ok(())
    }

    /// This node's end of the peer connections: listening on `listen` or its own entry of
    /// `peers` and dialing the others, or no connections at all for a cluster of one.
    pub(crate) async fn connect(&self) -> Result<Arc<Transport>> {
        if self.is_alone() {
            return Ok(Transport::alone(self.node_id));
        }
        let (addr, whose) = match &self.listen {
            Some(listen) => (listen, "--peer-listen-addr".to_string()),
            None => (
                &self.peers[&self.node_id],
                format!("node {}'s entry of --peers", self.node_id),
            ),
        };
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| {
                Error::Invalid(format!("cannot listen for peers on {addr} ({whose}): {e}"))
            })?;
        Ok(Transport::start(self.node_id, listener, self.peers.clone()))
    }
}

fn ids(voters: &BTreeSet<u64>) -> String {
    let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
    ids.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(me: u64) -> Cluster {
        Cluster {
            node_id: me,
            peers: (1..=3)
                .map(|i| (i, format!("127.0.0.1:{}", 7000 + i)))
                .collect(),
            listen: None,
        }
    }

    #[test]
    fn a_data_directory_starts_only_as_the_node_and_among_the_voters_it_first_had() {
        let dir = tempfile::tempdir().unwrap();
        three(2).claim(dir.path()).unwrap();
        three(2).claim(dir.path()).unwrap();
        let as_other = three(3).claim(dir.path()).unwrap_err().to_string();
        assert!(
            as_other.contains("node 2's data, not node 3's"),
            "{as_other}"
        );
        let mut fewer = three(2);
        fewer.peers.remove(&3);
        let changed = fewer.claim(dir.path()).unwrap_err().to_string();
        assert!(
            changed.contains("voters are 1, 2, 3, not 1, 2"),
            "{changed}"
        );
        let mut moved = three(2);
        moved.peers.insert(1, "127.0.0.1:9999".into());
        moved.claim(dir.path()).unwrap();
    }

    #[test]
    fn a_cluster_of_ones_data_from_before_the_record_cannot_join_a_cluster() {
        let dir = tempfile::tempdir().unwrap();
        // A cluster of one's data from before node.json: its topics directory.
        eddy_storage::TopicStore::open(&dir.path().join("topics")).unwrap();
        let refused = three(1).claim(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("voters are 1, not 1, 2, 3"), "{refused}");
        assert_eq!(NodeRecord::read(dir.path()).unwrap(), None);
        Cluster::alone().claim(dir.path()).unwrap();
        assert!(NodeRecord::read(dir.path()).unwrap().is_some());
    }

    #[test]
    fn the_node_must_be_a_voter() {
        let mut c = three(4);
        assert!(c.validate().unwrap_err().to_string().contains("not one of"));
        c.node_id = 1;
        c.validate().unwrap();
        c.peers.insert(0, "x:1".into());
        assert!(c.validate().is_err());
    }
}
