//! `Takeover`: one quick, uncontested election when a group's leader's connection closes.
//!
//! openraft elects only after a follower heard nothing from its leader for the leader lease
//! (`election_max`) plus an election timeout drawn from `election_min..election_max` — 1.5-2 s
//! with partition timing — and it draws that timeout once per Raft instance, not per election.
//! Every survivor times out on its own clock: two whose draws are close campaign in the same
//! term, split the vote, and do it again a timeout later, term after term. The failover
//! benchmark measured p50 5.2 s and p99 6.5 s from a `kill -9` of a leader to the first write
//! acknowledged on its partitions.
//!
//! A process that dies closes its sockets, so its peers see the connection close at once —
//! long before a timeout would tell them. Then each survivor of every group the lost node led
//! asks the other voters for their [`Standing`] (vote, last log id, whether they may vote, how
//! long since they heard the lost node), and all of them compute the same
//! [`campaigner`]: the voter with the greatest last log id (Raft grants a vote only to a
//! candidate whose log is at least the voter's; the greatest always qualifies), ties going
//! to the survivor the group id picks, so that new leaders spread over the nodes as the first
//! ones do. It campaigns as soon as every survivor's lease on the lost leader has run out (a
//! vote asked earlier is refused by openraft); nobody else campaigns early, so the vote is
//! not split.
//!
//! Elections stay openraft's: this picks only a moment and a candidate, never a vote. Whatever
//! goes wrong here — a survivor that does not answer, one that saw the connection close but
//! not the leader die, a lost node that comes back — openraft's own timers still elect
//! someone. A leader that stops without closing its connections (a stopped process, a cut
//! network, a machine that loses power) is found by those timers only.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::{LogId, Raft, ServerState, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::TypeConfig;
use crate::rejoin::Rejoin;
use crate::transport::Transport;
use crate::wire::{self, Kind};

/// Waited past the latest survivor's lease on the lost leader before campaigning. Each node
/// measures its silence from the last message it read from the lost node, openraft its lease
/// from the last one it handled: the margin covers the difference (a message queued behind
/// others, a busy core).
const MARGIN: Duration = Duration::from_millis(50);

/// How many times the campaigner asks for votes, and how long it waits for each outcome.
const ATTEMPTS: usize = 3;
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// How long a survivor waits for another's standing.
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// What one voter of a group says of itself after a leader was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Standing {
    /// The voter.
    pub node: u64,
    /// Its vote: the term and the leader it follows (or the candidate it voted for).
    pub vote: Vote<u64>,
    /// Its last log id (`None`: an empty log).
    pub last_log: Option<LogId<u64>>,
    /// Whether it may vote and campaign (not while rejoining, `rejoin.rs`).
    pub may_vote: bool,
    /// Milliseconds since it last read a message of the lost node (`None`: never).
    pub silent_ms: Option<u64>,
}

/// The voter that should campaign after the leader `lost` of `group`, from the standings of
/// the voters that answered (the asker's own among them); `None` when nothing should be done
/// early: someone already campaigns or follows another leader, or too few may vote to elect.
pub(crate) fn campaigner(
    group: u64,
    lost: u64,
    voters: &BTreeSet<u64>,
    standings: &[Standing],
) -> Option<u64> {
    let survivors: Vec<u64> = voters.iter().copied().filter(|v| *v != lost).collect();
    let term = standings.first()?.vote.leader_id.term;
    let following_lost = |s: &Standing| {
        s.vote.leader_id.term == term
            && s.vote.leader_id.voted_for == Some(lost)
            && survivors.contains(&s.node)
    };
    if !standings.iter().all(following_lost) {
        return None;
    }
    let eligible: Vec<&Standing> = standings.iter().filter(|s| s.may_vote).collect();
    if eligible.len() < voters.len() / 2 + 1 {
        return None;
    }
    // The group id picks the first in the survivors' order, as it picks a new group's first
    // campaigner (`group.rs`), so that leaders spread.
    let start = (group % survivors.len() as u64) as usize;
    let rank = |node: u64| {
        let at = survivors.iter().position(|v| *v == node).unwrap_or(0);
        (at + survivors.len() - start) % survivors.len()
    };
    eligible
        .iter()
        .max_by_key(|s| (s.last_log, Reverse(rank(s.node))))
        .map(|s| s.node)
}

/// How a group's last log id is read (from its log store, which openraft owns).
pub(crate) type LastLog =
    Box<dyn Fn() -> BoxFuture<'static, Option<LogId<u64>>> + Send + Sync + 'static>;

/// One group's takeovers on this node: answers the others' questions and runs its own.
pub(crate) struct Takeover {
    group: u64,
    raft: Raft<TypeConfig>,
    rejoin: Arc<Rejoin>,
    /// Weak: the transport holds the group's handler, which holds this.
    transport: Weak<Transport>,
    last_log: LastLog,
    /// openraft's leader lease: its `election_max`.
    lease: Duration,
    /// The takeover in progress and the node it replaces, stopped with the group.
    running: Mutex<Option<(u64, tokio::task::JoinHandle<()>)>>,
}

impl Drop for Takeover {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.lock().take() {
            task.abort();
        }
    }
}

impl Takeover {
    pub(crate) fn new(
        group: u64,
        raft: Raft<TypeConfig>,
        rejoin: Arc<Rejoin>,
        transport: &Arc<Transport>,
        last_log: LastLog,
        lease: Duration,
    ) -> Arc<Takeover> {
        Arc::new(Takeover {
            group,
            raft,
            rejoin,
            transport: Arc::downgrade(transport),
            last_log,
            lease,
            running: Mutex::new(None),
        })
    }

    /// This node's standing in the group, about the lost node `lost`.
    pub(crate) async fn standing(&self, lost: u64) -> Option<Standing> {
        let transport = self.transport.upgrade()?;
        let vote = self.raft.metrics().borrow().vote;
        Some(Standing {
            node: transport.node_id(),
            vote,
            last_log: (self.last_log)().await,
            may_vote: self.rejoin.may_vote(),
            silent_ms: transport.last_heard(lost).map(|d| d.as_millis() as u64),
        })
    }

    /// The connection to `peer` closed: if it led the group, take over (in the background).
    pub(crate) fn peer_lost(self: &Arc<Self>, peer: u64) {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(peer) || metrics.state != ServerState::Follower {
            return;
        }
        let mut running = self.running.lock();
        // A connection that comes up and closes again and again (a peer reached through a
        // proxy that accepts and drops) must not restart the takeover each time.
        if running
            .as_ref()
            .is_some_and(|(lost, task)| *lost == peer && !task.is_finished())
        {
            return;
        }
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(peer).await });
        if let Some((_, old)) = running.replace((peer, task)) {
            old.abort();
        }
    }

    async fn run(&self, lost: u64) {
        let Some(transport) = self.transport.upgrade() else {
            return;
        };
        let voters: BTreeSet<u64> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let Some(mine) = self.standing(lost).await else {
            return;
        };
        let mut standings = vec![mine.clone()];
        let me = transport.node_id();
        let asks = voters
            .iter()
            .filter(|v| **v != me && **v != lost)
            .map(|&peer| {
                let transport = transport.clone();
                async move {
                    let body = wire::to_body(&lost).ok()?;
                    let reply = transport
                        .call(peer, Kind::Standing, self.group, body, ASK_TIMEOUT)
                        .await
                        .ok()?;
                    wire::from_body::<Option<Standing>>(&reply, "a standing")
                        .ok()
                        .flatten()
                }
            });
        let asked_at = tokio::time::Instant::now();
        standings.extend(futures::future::join_all(asks).await.into_iter().flatten());
        if campaigner(self.group, lost, &voters, &standings) != Some(me) {
            return;
        }
        // Every survivor's lease on the lost leader must have run out, or its vote is refused.
        let least_silent = standings
            .iter()
            .map(|s| s.silent_ms.map_or(self.lease, Duration::from_millis))
            .min()
            .unwrap_or_default();
        let at = asked_at + (self.lease + MARGIN).saturating_sub(least_silent);
        tokio::time::sleep_until(at).await;
        // Still nobody else, and the lost node has not come back.
        let now = self.raft.metrics().borrow().clone();
        let back = transport.last_heard(lost).is_some_and(|d| d < self.lease);
        if now.vote != mine.vote || back {
            return;
        }
        tracing::info!(
            group = self.group,
            lost,
            "the leader's connection closed: campaigning after its lease"
        );
        // A vote refused because a voter's lease had not quite run out leaves this node a
        // candidate until its own timeout: ask again, in a higher term, a little later
        // (nobody else campaigns yet; a higher term only wins over one that does).
        for _ in 0..ATTEMPTS {
            if let Err(e) = self.raft.trigger().elect().await {
                tracing::warn!(group = self.group, "campaigning after a lost leader: {e}");
                return;
            }
            let mut metrics = self.raft.metrics();
            let term = mine.vote.leader_id.term;
            let decided = metrics.wait_for(|m| {
                m.current_term > term
                    && (m.current_leader.is_some() || m.state != ServerState::Candidate)
            });
            if tokio::time::timeout(RETRY_AFTER, decided).await.is_ok() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn standing(node: u64, term: u64, leader: u64, last: Option<(u64, u64)>) -> Standing {
        let mut vote = Vote::new(term, leader);
        vote.commit();
        Standing {
            node,
            vote,
            last_log: last.map(|(t, i)| LogId::new(CommittedLeaderId::new(t, 0), i)),
            may_vote: true,
            silent_ms: Some(10),
        }
    }

    fn voters() -> BTreeSet<u64> {
        BTreeSet::from([1, 2, 3])
    }

    #[test]
    fn equal_logs_go_to_the_survivor_the_group_picks_and_spread() {
        let s = [
            standing(2, 4, 1, Some((4, 10))),
            standing(3, 4, 1, Some((4, 10))),
        ];
        // Both survivors compute the same answer, whichever asks.
        let reversed = [s[1].clone(), s[0].clone()];
        for group in 0..6 {
            assert_eq!(
                campaigner(group, 1, &voters(), &s),
                campaigner(group, 1, &voters(), &reversed)
            );
        }
        assert_eq!(campaigner(0, 1, &voters(), &s), Some(2));
        assert_eq!(campaigner(1, 1, &voters(), &s), Some(3));
    }

    #[test]
    fn the_greatest_log_campaigns_by_term_before_index() {
        let s = [
            standing(2, 4, 1, Some((3, 12))),
            standing(3, 4, 1, Some((4, 11))),
        ];
        for group in 0..4 {
            assert_eq!(campaigner(group, 1, &voters(), &s), Some(3));
        }
        let s = [
            standing(2, 4, 1, Some((4, 12))),
            standing(3, 4, 1, Some((4, 11))),
        ];
        for group in 0..4 {
            assert_eq!(campaigner(group, 1, &voters(), &s), Some(2));
        }
    }

    #[test]
    fn nothing_early_once_someone_campaigns_or_follows_another() {
        let mut candidate = standing(3, 5, 3, Some((4, 10)));
        candidate.vote = Vote::new(5, 3);
        let s = [standing(2, 4, 1, Some((4, 10))), candidate];
        assert_eq!(campaigner(0, 1, &voters(), &s), None);
        let s = [
            standing(2, 4, 1, Some((4, 10))),
            standing(3, 4, 2, Some((4, 10))),
        ];
        assert_eq!(campaigner(0, 1, &voters(), &s), None);
    }

    #[test]
    fn no_campaign_without_a_majority_that_may_vote() {
        // Only the asker answered: one of three cannot be elected.
        let s = [standing(2, 4, 1, Some((4, 10)))];
        assert_eq!(campaigner(0, 1, &voters(), &s), None);
        let mut rejoining = standing(3, 4, 1, Some((4, 10)));
        rejoining.may_vote = false;
        let s = [standing(2, 4, 1, Some((4, 10))), rejoining];
        assert_eq!(campaigner(0, 1, &voters(), &s), None);
        // Of five, three that may vote are enough, and a rejoining one is never picked.
        let five = BTreeSet::from([1, 2, 3, 4, 5]);
        let mut rejoining = standing(5, 4, 1, Some((4, 99)));
        rejoining.may_vote = false;
        let s = [
            standing(2, 4, 1, Some((4, 10))),
            standing(3, 4, 1, Some((4, 10))),
            standing(4, 4, 1, Some((4, 10))),
            rejoining,
        ];
        assert!(matches!(campaigner(7, 1, &five, &s), Some(2..=4)));
    }
}
