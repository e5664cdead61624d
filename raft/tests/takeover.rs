//! A leader whose connections close is replaced by the survivor `takeover.rs` picks, well
//! before openraft's own timers would elect anyone: three real nodes on loopback (each its
//! own transport and files, in this process), twelve groups, the node leading four of them
//! stopped.
//!
//! openraft's timers are set long here (elections after 4-4.2 s of silence: a lease of 2.1 s
//! plus a timeout of 2-2.1 s), so a leader elected by them would be whichever survivor's
//! timer ran out first; the takeover's campaigner is known in advance (equal logs: the
//! survivor the group id picks). The first leaders are spread by group id too, so the stopped
//! node leads four groups, and timers would pick all four right by chance 1 in 16.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use eddy_raft::{Group, Machine, Result, StateMachine, Timing, Transport};

mod common;

/// A state machine that keeps nothing: only the elections matter here.
#[derive(Default)]
struct Nothing;

impl StateMachine for Nothing {
    fn apply(&mut self, _index: u64, _command: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }
}

const GROUPS: u64 = 12;

struct Node {
    transport: Arc<Transport>,
    groups: Vec<Group<Machine<Nothing>>>,
}

async fn leaders(node: &Node) -> Vec<Option<u64>> {
    let mut leaders = Vec::new();
    for group in &node.groups {
        leaders.push(group.leader().await);
    }
    leaders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_leader_is_replaced_by_the_picked_survivor_before_any_timer() {
    let timing = Timing {
        heartbeat: Duration::from_millis(100),
        election_min: Duration::from_millis(2000),
        election_max: Duration::from_millis(2100),
        write_timeout: Duration::from_secs(10),
        snapshot_every: 1000,
    };
    let root = tempfile::tempdir().unwrap();
    let (peers, listeners) = common::listeners(3).await;
    let voters: BTreeSet<u64> = peers.keys().copied().collect();
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let transport = Transport::start(id, listener, peers.clone());
        let mut groups = Vec::new();
        for group in 0..GROUPS {
            let dir = root.path().join(format!("node-{id}/group-{group}"));
            groups.push(
                Group::start(
                    group,
                    transport.clone(),
                    &dir,
                    Nothing,
                    &voters,
                    timing.clone(),
                )
                .await
                .unwrap(),
            );
        }
        nodes.insert(id, Node { transport, groups });
    }
    // A write through each group from node 2: every group has a leader, every log an entry.
    for group in &nodes[&2].groups {
        group.write(b"x".to_vec()).await.unwrap();
    }
    let before = leaders(&nodes[&2]).await;
    let lost = 1;
    let led: Vec<u64> = (0..GROUPS)
        .filter(|g| before[*g as usize] == Some(lost))
        .collect();
    assert!(
        led.len() >= 2,
        "node {lost} leads too few groups to tell: {before:?}"
    );
    // Followers that have all of every leader's entries: equal logs.
    common::eventually("the followers caught up", || {
        (0..GROUPS as usize).all(|g| {
            let want = before[g].map(|l| nodes[&l].groups[g].status().last_log);
            nodes
                .values()
                .all(|n| Some(n.groups[g].status().last_log) == want)
        })
    })
    .await;

    let node = nodes.remove(&lost).unwrap();
    for group in &node.groups {
        group.shutdown().await.unwrap();
    }
    node.transport.shutdown().await;

    // The survivors [2, 3]: group g goes to the one at g % 2.
    let survivors = [2u64, 3];
    for &group in &led {
        let expected = survivors[(group % 2) as usize];
        let mut metrics = nodes[&2].groups[group as usize].metrics();
        let elected = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != lost));
        tokio::time::timeout(Duration::from_secs(20), elected)
            .await
            .expect("a new leader within 20 s")
            .unwrap();
        let now = nodes[&2].groups[group as usize].leader().await;
        assert_eq!(
            now,
            Some(expected),
            "group {group}: elected by a timer, not the takeover (leaders before: {before:?})"
        );
    }
    for (_, node) in nodes {
        for group in &node.groups {
            group.shutdown().await.unwrap();
        }
        node.transport.shutdown().await;
    }
}
