//! No acknowledged record lost, offsets never reused: writers INSERT and COPY while the server is
//! SIGKILLed; after a restart on the same data dir every acknowledged row is there, nothing
//! appears that was never sent, and each partition's offsets are exactly 0..count-1, stable across
//! further crashes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows};

const PARTITIONS: i64 = 3;
const WRITERS: i64 = 2;

/// What the writers know: rows the server acknowledged, and rows whose fate is unknown.
#[derive(Default, Clone)]
struct Ledger {
    acked: BTreeSet<i64>,
    in_flight: BTreeSet<i64>,
    acked_statements: usize,
}

/// One writer: statements of 1..=7 rows, alternating INSERT ... VALUES and COPY (text, then
/// CSV), until the server goes away. Sequence numbers are unique per (round, writer).
async fn writer(client: Client, ledger: Arc<Mutex<Ledger>>, first_seq: i64) {
    let mut seq = first_seq;
    for statement in 0.. {
        let n = 1 + (statement % 7);
        let batch: Vec<i64> = (seq..seq + n).collect();
        seq += n;
        ledger.lock().unwrap().in_flight.extend(&batch);
        let result = match statement % 3 {
            0 => {
                let values: Vec<String> = batch
                    .iter()
                    .map(|s| format!("('k{}', {s}, 'insert')", s % 11))
                    .collect();
                client
                    .execute(&format!("INSERT INTO r VALUES {}", values.join(", ")), &[])
                    .await
                    .map(|_| ())
            }
            1 => {
                let data: String = batch
                    .iter()
                    .map(|s| format!("k{}\t{s}\tcopy\n", s % 11))
                    .collect();
                copy(&client, "COPY r FROM STDIN", data).await
            }
            _ => {
                let data: String = batch
                    .iter()
                    .map(|s| format!("k{},{s},csv\n", s % 11))
                    .collect();
                copy(&client, "COPY r FROM STDIN WITH (FORMAT csv)", data).await
            }
        };
        match result {
            Ok(()) => {
                let mut l = ledger.lock().unwrap();
                for s in &batch {
                    l.in_flight.remove(s);
                }
                l.acked.extend(&batch);
                l.acked_statements += 1;
            }
            // The server was killed: this statement's rows may or may not be there.
            Err(_) => return,
        }
    }
}

async fn copy(client: &Client, statement: &str, data: String) -> Result<(), tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    pin_mut!(sink);
    sink.as_mut().send(Bytes::from(data)).await?;
    sink.finish().await.map(|_| ())
}

/// Starts the writers, SIGKILLs the server once `statements` more statements were acknowledged,
/// and waits for the writers to notice.
async fn write_until_killed(
    server: &mut TestServer,
    ledger: &Arc<Mutex<Ledger>>,
    round: i64,
    statements: usize,
) {
    let start = ledger.lock().unwrap().acked_statements;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = server.client().await.expect("writer connects");
        tasks.push(tokio::spawn(writer(
            client,
            ledger.clone(),
            (round * WRITERS + w) * 1_000_000,
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.lock().unwrap().acked_statements < start + statements {
        assert!(
            Instant::now() < deadline,
            "writers made no progress in 120 s\n{}",
            server.log()
        );
        assert!(
            tasks.iter().any(|t| !t.is_finished()),
            "all writers stopped before the kill\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("writer notices the dead server within 30 s")
            .expect("writer task does not panic");
    }
}

/// Where each row is: seq -> (partition, offset).
type Placement = BTreeMap<i64, (i64, i64)>;

/// Checks the invariants against a freshly restarted server and returns where every row is.
async fn verify(client: &Client, ledger: &Ledger, earlier: &Placement) -> Placement {
    let rows = rows(client, "SELECT seq, rowpartition, rowoffset, k FROM r")
        .await
        .expect("read back");
    let mut placement = Placement::new();
    let mut by_partition: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in &rows {
        let seq: i64 = row[0]
            .as_deref()
            .expect("seq")
            .parse()
            .expect("seq is a number");
        let partition: i64 = row[1]
            .as_deref()
            .expect("rowpartition")
            .parse()
            .expect("partition");
        let offset: i64 = row[2]
            .as_deref()
            .expect("rowoffset")
            .parse()
            .expect("offset");
        assert_eq!(
            row[3].as_deref(),
            Some(format!("k{}", seq % 11).as_str()),
            "row {seq} intact"
        );
        assert!(
            placement.insert(seq, (partition, offset)).is_none(),
            "row {seq} appears twice"
        );
        by_partition.entry(partition).or_default().push(offset);
    }

    // No acknowledged record lost.
    let missing: Vec<i64> = ledger
        .acked
        .iter()
        .filter(|s| !placement.contains_key(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows lost after SIGKILL, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Nothing that was never sent.
    let unknown: Vec<i64> = placement
        .keys()
        .filter(|s| !ledger.acked.contains(s) && !ledger.in_flight.contains(s))
        .copied()
        .collect();
    assert!(unknown.is_empty(), "rows that were never sent: {unknown:?}");
    assert!(placement.len() <= ledger.acked.len() + ledger.in_flight.len());

    // Offsets of every partition are distinct and increasing from 0, with gaps only where a
    // statement cut off by a kill was aborted (its share keeps its offsets, as an aborted
    // Kafka transaction's records keep theirs): at most as many as rows were in flight.
    for (partition, offsets) in &mut by_partition {
        offsets.sort_unstable();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]) && offsets[0] >= 0,
            "partition {partition}: offsets repeat or are negative: {offsets:?}"
        );
        let missing = offsets[offsets.len() - 1] + 1 - offsets.len() as i64;
        assert!(
            missing <= ledger.in_flight.len() as i64,
            "partition {partition}: {missing} offsets missing below {}, but only {} rows were \
             in flight at the kills",
            offsets[offsets.len() - 1],
            ledger.in_flight.len()
        );
        assert!(
            (0..PARTITIONS).contains(partition),
            "partition {partition} out of range"
        );
    }

    // Rows seen after an earlier restart keep their partition and offset: offsets never reused.
    for (seq, place) in earlier {
        assert_eq!(
            placement.get(seq),
            Some(place),
            "row {seq} moved or vanished after a second crash"
        );
    }
    placement
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_copy_keeps_acknowledged_rows() {
    let mut server = TestServer::start_fresh().expect("server starts");
    {
        let client = server.client().await.expect("connect");
        client
            .batch_execute(&format!("CREATE STREAM r (k VARCHAR KEY, seq BIGINT, how VARCHAR) WITH (partitions={PARTITIONS})"))
            .await
            .expect("create stream");
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut placement = Placement::new();

    // Two crash cycles: the second proves recovered logs are appended to correctly.
    for round in 0..2 {
        write_until_killed(&mut server, &ledger, round, 150).await;
        server
            .restart()
            .expect("server restarts on the same data dir");
        let client = server.client().await.expect("connect after restart");
        let snapshot = ledger.lock().unwrap().clone();
        placement = verify(&client, &snapshot, &placement).await;
        assert!(!snapshot.acked.is_empty() && placement.len() >= snapshot.acked.len());

        // SHOW TOPICS agrees: the high watermark of each partition is past its rows, by at
        // most the aborted rows' offsets.
        let topics = rows(&client, "SHOW TOPICS").await.expect("show topics");
        let mut counts: HashMap<i64, i64> = HashMap::new();
        for (partition, _) in placement.values() {
            *counts.entry(*partition).or_default() += 1;
        }
        for t in topics.iter().filter(|t| t[0].as_deref() == Some("r")) {
            let partition: i64 = t[1].as_deref().unwrap_or("-1").parse().expect("partition");
            let hw: i64 = t[3]
                .as_deref()
                .unwrap_or("-1")
                .parse()
                .expect("high watermark");
            let count = counts.get(&partition).copied().unwrap_or(0);
            let end = placement
                .values()
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| o + 1)
                .max()
                .unwrap_or(0);
            assert!(
                hw >= end && hw - count <= snapshot.in_flight.len() as i64,
                "high watermark {hw} of partition {partition}: {count} rows, the last at \
                 offset {}, {} rows in flight at the kills",
                end - 1,
                snapshot.in_flight.len()
            );
        }
    }

    // After recovery, new appends go past every offset each partition gave before.
    let client = server.client().await.expect("connect");
    let before: HashMap<i64, i64> = placement.values().fold(HashMap::new(), |mut m, (p, o)| {
        let end = m.entry(*p).or_default();
        *end = (*end).max(o + 1);
        m
    });
    let values: Vec<String> = (900_000_000..900_000_033)
        .map(|s| format!("('k{}', {s}, 'after')", s % 11))
        .collect();
    let n = client
        .execute(&format!("INSERT INTO r VALUES {}", values.join(", ")), &[])
        .await
        .expect("insert after recovery");
    assert_eq!(n, 33);
    let new_rows = rows(
        &client,
        "SELECT rowpartition, rowoffset FROM r WHERE how = 'after'",
    )
    .await
    .expect("read");
    assert_eq!(new_rows.len(), 33);
    for row in new_rows {
        let p: i64 = row[0].as_deref().unwrap().parse().unwrap();
        let o: i64 = row[1].as_deref().unwrap().parse().unwrap();
        let prior = before.get(&p).copied().unwrap_or(0);
        assert!(
            o >= prior,
            "new row at partition {p} offset {o} reuses an offset below {prior}"
        );
    }
    let mut snapshot = ledger.lock().unwrap().clone();
    snapshot.acked.extend((0..33).map(|i| 900_000_000 + i));
    let final_placement = verify(&client, &snapshot, &placement).await;
    assert_eq!(final_placement.len(), placement.len() + 33);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_right_after_create_keeps_the_stream() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let client = server.client().await.expect("connect");
    client
        .batch_execute(
            "CREATE STREAM a (k VARCHAR KEY, v INT) WITH (partitions=5, retention_ms=3600000)",
        )
        .await
        .expect("create a");
    client
        .batch_execute("CREATE STREAM b (v INT)")
        .await
        .expect("create b");
    client
        .batch_execute("INSERT INTO b VALUES (1)")
        .await
        .expect("insert");
    client.batch_execute("DROP STREAM b").await.expect("drop b");
    drop(client);
    server.kill9();

    server.restart().expect("restart");
    let client = server.client().await.expect("connect");
    let streams = rows(&client, "SHOW STREAMS").await.expect("show streams");
    assert_eq!(
        streams,
        vec![vec![
            Some("a".into()),
            Some("a".into()),
            Some("5".into()),
            Some("k".into()),
            None
        ]],
        "a survives the crash with its options, the dropped b stays dropped"
    );
    let n = client
        .execute("INSERT INTO a VALUES ('x', 1)", &[])
        .await
        .expect("insert into a");
    assert_eq!(n, 1);
    let err = client
        .simple_query("SELECT * FROM b")
        .await
        .expect_err("b is gone");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42P01"));
}
