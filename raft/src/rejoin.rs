//! `Rejoin`: when a node may vote in a group whose files it does not have.
//!
//! A node that lost a group's files while the group went on (a wiped data directory) must not
//! vote until it has caught up: its lost log may have been part of the majority that committed
//! an entry, and with its vote a peer that lacks the entry could be elected and the entry lost
//! (`raft/tests/groups.rs` builds exactly that case). A node cannot tell a wiped directory from
//! a first start, so a node that finds no files for a group decides from its peers, voting for
//! no one meanwhile:
//!
//! - a peer whose log holds an entry past the initial membership (index 0, which every voter
//!   writes when it initialises; a later one exists only once a leader was elected — after a
//!   restart the log is what a node knows for sure, not what it has applied yet) →
//!   **rejoining**: no vote until this node has
//!   applied everything the first leader it hears from had committed then (a late first start
//!   is treated the same; it costs nothing but the wait to catch up);
//! - peers that together with this node are a majority have no such entry → a **new** group:
//!   the caller initialises it and the node votes.
//!
//! Sound because an entry is committed only once a majority's logs hold it, and any two
//! majorities meet: peers that make a majority with this node and hold nothing mean nothing was
//! committed — unless the only node where the two majorities meet is this one, wiped. So what
//! this does not cover: a node wiped after being in the majority of the group's *very first*
//! entries while the rest of that majority is down and the other voters never got any entry.
//! Nor a rejoining node that is caught up partly by a leader that then dies: it may campaign
//! (openraft casts its own vote) with a log short of that leader's commits. Both need two
//! failures inside one catch-up; the design note says so.
//!
//! A marker file keeps "rejoining" across a restart in the middle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::watch;

use crate::error::{Result, io};

const VOTING: u8 = 0;
const DECIDING: u8 = 1;
const REJOINING: u8 = 2;

/// The rule for one group on this node.
pub(crate) struct Rejoin {
    /// The marker file, present while rejoining.
    marker: PathBuf,
    state: AtomicU8,
    /// The index to apply before voting; `u64::MAX` until a leader has said.
    until: AtomicU64,
    applied: watch::Receiver<u64>,
}

impl Rejoin {
    /// The rule for a group: rejoining when `marker` exists, deciding when the group's files
    /// were just created (`fresh`) among several voters, voting otherwise.
    pub fn new(marker: PathBuf, fresh: bool, applied: watch::Receiver<u64>) -> Rejoin {
        let state = if marker.exists() {
            REJOINING
        } else if fresh {
            DECIDING
        } else {
            VOTING
        };
        Rejoin {
            marker,
            state: AtomicU8::new(state),
            until: AtomicU64::new(u64::MAX),
            applied,
        }
    }

    /// Whether the node still has to decide from its peers.
    pub fn deciding(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DECIDING
    }

    /// Whether the node is catching up and must not vote yet.
    pub fn rejoining(&self) -> bool {
        self.state.load(Ordering::SeqCst) == REJOINING
    }

    /// Peers have applied entries: rejoin, durably.
    pub fn begin(&self) -> Result<()> {
        std::fs::write(&self.marker, b"rejoining: no vote until caught up\n")
            .map_err(io(&self.marker))?;
        if let Some(dir) = self.marker.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        self.state.store(REJOINING, Ordering::SeqCst);
        Ok(())
    }

    /// A majority has applied nothing: the group is new; vote.
    pub fn new_group(&self) {
        self.state.store(VOTING, Ordering::SeqCst);
    }

    /// A leader said it had committed up to `index` (every AppendEntries, heartbeats
    /// included): the first one sets what to catch up to, and each one ends rejoining once
    /// this node has. Ending it here, not only when a vote is asked for, matters: a group
    /// with a stable leader asks for no votes, and a node still marked rejoining when that
    /// leader dies — its `until` forgotten by a restart — would refuse every candidate, so
    /// two such survivors of three could never elect (the partition tests saw it once new
    /// groups elected at once and their late peers found entries while deciding).
    pub fn heard(&self, index: u64) {
        if self.rejoining() {
            let _ =
                self.until
                    .compare_exchange(u64::MAX, index, Ordering::SeqCst, Ordering::SeqCst);
            self.may_vote();
        }
    }

    /// Whether this node may vote now; ends rejoining once it has caught up.
    pub fn may_vote(&self) -> bool {
        match self.state.load(Ordering::SeqCst) {
            VOTING => return true,
            DECIDING => return false,
            _ => {}
        }
        let until = self.until.load(Ordering::SeqCst);
        if until == u64::MAX || *self.applied.borrow() < until {
            return false;
        }
        match std::fs::remove_file(&self.marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(marker = %self.marker.display(), "removing the rejoin marker: {e}");
                return false;
            }
        }
        self.state.store(VOTING, Ordering::SeqCst);
        tracing::info!(marker = %self.marker.display(), "caught up after rejoining: voting again");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejoining_node_votes_again_once_caught_up_though_no_one_asked_for_a_vote() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("rejoining");
        std::fs::write(&marker, b"x").unwrap();
        let (applied, watched) = watch::channel(3);
        let rejoin = Rejoin::new(marker.clone(), false, watched);
        assert!(rejoin.rejoining());
        rejoin.heard(5);
        assert!(rejoin.rejoining(), "applied 3 of the leader's 5");
        applied.send_replace(5);
        // A heartbeat, whose commit index has moved on meanwhile: still 5 to reach.
        rejoin.heard(9);
        assert!(!rejoin.rejoining(), "caught up: voting");
        assert!(!marker.exists(), "and across a restart too");
        assert!(rejoin.may_vote());
    }
}
