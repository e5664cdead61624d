//! One property of a 3-node cluster (issue 14): **a leader stopped for longer than its lease
//! is replaced, and when it resumes it steps down; no acknowledged row is lost or written
//! twice**. The node leading most partitions gets SIGSTOP (its sockets stay open, so only
//! openraft's timers find it gone), writers keep going on the others, then SIGCONT. The
//! stopped leader's writer is stuck meanwhile; whatever it had proposed is either committed
//! by its successor or refused, never acknowledged by two leaders.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::cluster::{eventually, start_three};
use crate::failover::{Ledger, busiest_leader, each_acknowledged_row_once_everywhere, writer};
use crate::harness::rows;

/// How long writers run before the pause and after the resume.
const WRITE_FOR: Duration = Duration::from_millis(2000);
/// How long the leader is stopped: past its lease plus an election timeout (2 s at most).
const PAUSE_FOR: Duration = Duration::from_secs(4);

/// Each partition of `f` with its leader and term, as `client`'s node sees them.
async fn leaders_and_terms(client: &tokio_postgres::Client) -> BTreeMap<String, (String, i64)> {
    rows(
        client,
        "SELECT partition, leader, term FROM eddy.partitions WHERE stream = 'f'",
    )
    .await
    .expect("eddy.partitions")
    .into_iter()
    .map(|r| {
        let p = r[0].clone().expect("partition");
        let leader = r[1].clone().unwrap_or_default();
        let term = r[2].as_deref().and_then(|t| t.parse().ok()).unwrap_or(0);
        (p, (leader, term))
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_steps_down_on_resume_and_no_row_is_acknowledged_twice() {
    let nodes = start_three();
    let first = nodes[0].client().await.expect("connect");
    first
        .batch_execute(
            "CREATE STREAM f (k VARCHAR KEY, seq BIGINT, node BIGINT) WITH (partitions = 3)",
        )
        .await
        .expect("create");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<JoinHandle<()>> = (0..3)
        .map(|i| writer(&nodes[i], i + 1, 0, ledger.clone(), stop.clone()))
        .collect();
    tokio::time::sleep(WRITE_FOR).await;

    let victim = eventually("a leader for every partition", || async {
        busiest_leader(&first).await
    })
    .await;
    let paused = &nodes[victim - 1];
    let before = leaders_and_terms(&paused.client().await.expect("connect")).await;
    let led: Vec<String> = before
        .iter()
        .filter(|(_, (leader, _))| *leader == victim.to_string())
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!led.is_empty(), "node {victim} leads nothing: {before:?}");
    paused.signal("STOP").expect("SIGSTOP");
    tokio::time::sleep(PAUSE_FOR).await;
    paused.signal("CONT").expect("SIGCONT");
    tokio::time::sleep(WRITE_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

    // Resumed, the old leader knows a newer term for every partition it led: it stepped
    // down (or, rarely, was elected again — in a new term all the same).
    let client = paused.client().await.expect("connect to the resumed node");
    let after = eventually("the resumed node sees a new term", || async {
        let now = leaders_and_terms(&client).await;
        led.iter()
            .all(|p| now.get(p).is_some_and(|(_, term)| *term > before[p].1))
            .then_some(now)
    })
    .await;

    let (acked, unknown) = {
        let l = ledger.lock().expect("ledger");
        (l.acked.clone(), l.unknown.clone())
    };
    assert!(
        acked.len() > 30,
        "the writers got rows through: {}",
        acked.len()
    );
    let answers = each_acknowledged_row_once_everywhere(&nodes, &acked, &unknown).await;
    eprintln!(
        "node {victim} paused {PAUSE_FOR:?} leading {led:?}: before {before:?}, after {after:?}; \
         {} rows acknowledged, {} unknown, {} stored",
        acked.len(),
        unknown.len(),
        answers[0].len()
    );
}
