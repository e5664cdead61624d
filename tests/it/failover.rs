//! One property of a 3-node cluster (issue 14): **no acknowledged row is lost or duplicated
//! when the node leading most partitions is killed under load** — writers on every node, the
//! leader killed with SIGKILL and restarted on its data, several times; afterwards every node
//! holds every acknowledged row exactly once, the same rows at the same offsets, and each
//! partition's offsets run without a gap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::cluster::{eventually, logs, start_three};
use crate::harness::{TestServer, rows};

/// Kill-and-restart rounds (the benchmark repeats many more).
const ROUNDS: usize = 3;
/// How long writers run before a kill and before the restart.
const WRITE_FOR: Duration = Duration::from_millis(1500);

/// What the writers learnt: keys acknowledged, and keys whose outcome they could not know
/// (a connection lost mid-statement, 40003).
#[derive(Default)]
pub(crate) struct Ledger {
    pub acked: BTreeSet<String>,
    pub unknown: BTreeSet<String>,
    /// Each refusal's SQLSTATE and message, with the node it came from.
    pub refused: Vec<(usize, String, String)>,
}

/// Writes single rows to node `node` until `stop`, each key once, recording each outcome;
/// ends by itself when its connection goes (its node was killed).
pub(crate) fn writer(
    node: &TestServer,
    id: usize,
    generation: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let config = node.config();
    tokio::spawn(async move {
        let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else {
            return;
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let key = format!("n{id}-g{generation}-{seq}");
            let insert = format!("INSERT INTO f VALUES ('{key}', {seq}, {id})");
            match client.batch_execute(&insert).await {
                Ok(()) => {
                    ledger.lock().expect("ledger").acked.insert(key);
                }
                Err(e) => match e.as_db_error().map(|d| d.code().code().to_string()) {
                    // Not written: the partition had no leader within the write timeout.
                    Some(code) if code == "57P03" => {
                        let message = e
                            .as_db_error()
                            .map_or(String::new(), |d| d.message().into());
                        ledger
                            .lock()
                            .expect("ledger")
                            .refused
                            .push((id, code, message));
                    }
                    _ => {
                        ledger.lock().expect("ledger").unknown.insert(key);
                        if e.is_closed() || e.as_db_error().is_none() {
                            return;
                        }
                    }
                },
            }
        }
    })
}

/// The node that leads most of `f`'s partitions, as the node `client` speaks to sees them.
pub(crate) async fn busiest_leader(client: &tokio_postgres::Client) -> Option<usize> {
    let leaders = rows(
        client,
        "SELECT leader FROM eddy.partitions WHERE stream = 'f' AND leader IS NOT NULL",
    )
    .await
    .ok()?;
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for row in leaders {
        *counts.entry(row[0].as_deref()?.parse().ok()?).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_busiest_leader_under_load_loses_and_duplicates_no_acknowledged_row() {
    let mut nodes = start_three();
    let first = nodes[0].client().await.expect("connect");
    first
        .batch_execute(
            "CREATE STREAM f (k VARCHAR KEY, seq BIGINT, node BIGINT) WITH (partitions = 3)",
        )
        .await
        .expect("create");
    drop(first);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers: Vec<JoinHandle<()>> = (0..3)
        .map(|i| writer(&nodes[i], i + 1, 0, ledger.clone(), stop.clone()))
        .collect();

    for round in 1..=ROUNDS {
        tokio::time::sleep(WRITE_FOR).await;
        let asker = nodes[0].client().await.expect("connect to node 1");
        let victim = eventually("a leader for every partition", || async {
            busiest_leader(&asker).await
        })
        .await;
        drop(asker);
        nodes[victim - 1].kill9();
        tokio::time::sleep(WRITE_FOR).await;
        // The restart waits for the node's listening line: off the writers' threads.
        tokio::task::block_in_place(|| nodes[victim - 1].restart())
            .unwrap_or_else(|e| panic!("node {victim} restarts in round {round}: {e}"));
        writers.push(writer(
            &nodes[victim - 1],
            victim,
            round,
            ledger.clone(),
            stop.clone(),
        ));
    }
    tokio::time::sleep(WRITE_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

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
        "{ROUNDS} kills: {} rows acknowledged, {} unknown, {} stored",
        acked.len(),
        unknown.len(),
        answers[0].len()
    );
}

/// Checks `f` on every node once it has caught up: every acknowledged row once, no row that
/// was never written (only `acked` or `unknown` keys), each partition's offsets from 0
/// without a gap, and the acknowledged rows at the same place on every node. Returns each
/// node's rows (key, partition, offset).
pub(crate) async fn each_acknowledged_row_once_everywhere(
    nodes: &[TestServer],
    acked: &BTreeSet<String>,
    unknown: &BTreeSet<String>,
) -> Vec<Vec<Vec<Option<String>>>> {
    let mut answers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let client = node.client().await.expect("connect");
        // Every acknowledged row is there once the node has caught up; none twice.
        let answer = eventually(&format!("every acknowledged row on node {}", i + 1), || {
            let client = &client;
            let acked = &acked;
            async move {
                let all = rows(
                    client,
                    "SELECT k, rowpartition, rowoffset FROM f ORDER BY rowpartition, rowoffset",
                )
                .await
                .ok()?;
                let keys: BTreeSet<&str> = all.iter().filter_map(|r| r[0].as_deref()).collect();
                acked
                    .iter()
                    .all(|k| keys.contains(k.as_str()))
                    .then_some(all)
            }
        })
        .await;
        let mut seen = BTreeSet::new();
        for row in &answer {
            let key = row[0].clone().expect("key");
            assert!(seen.insert(key.clone()), "node {}: {key} twice", i + 1);
            assert!(
                acked.contains(&key) || unknown.contains(&key),
                "node {}: {key} was never written",
                i + 1
            );
        }
        // Offsets per partition run from 0 without a gap (single-row statements, never
        // aborted: an offset is never skipped, and never given to two rows).
        let mut next: BTreeMap<String, i64> = BTreeMap::new();
        for row in &answer {
            let partition = row[1].clone().expect("partition");
            let offset: i64 = row[2].as_deref().expect("offset").parse().expect("offset");
            let expected = next.entry(partition.clone()).or_insert(0);
            assert_eq!(
                offset,
                *expected,
                "node {}: partition {partition}'s offsets skip\n{}",
                i + 1,
                logs(nodes)
            );
            *expected += 1;
        }
        answers.push(answer);
    }
    for (i, answer) in answers.iter().enumerate().skip(1) {
        // The rows of statements whose outcome was unknown may reach one node's answer
        // after another's was read: compare the acknowledged rows only.
        let only_acked = |a: &Vec<Vec<Option<String>>>| -> Vec<Vec<Option<String>>> {
            a.iter()
                .filter(|r| r[0].as_ref().is_some_and(|k| acked.contains(k)))
                .cloned()
                .collect()
        };
        assert_eq!(
            only_acked(answer),
            only_acked(&answers[0]),
            "node {} holds the acknowledged rows where node 1 does",
            i + 1
        );
    }
    answers
}
