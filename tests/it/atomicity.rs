//! A statement that writes several partitions is all or nothing: for readers while it
//! commits, and across a crash at either side of its commit record.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows, scalar_i64};

const CREATE: &str = "CREATE STREAM s (k BIGINT KEY, v VARCHAR) WITH (partitions = 3)";

/// COPYs `n` rows with keys `first..first + n` (spread over every partition).
async fn copy_rows(client: &Client, first: i64, n: i64) -> Result<u64, tokio_postgres::Error> {
    let data: String = (first..first + n)
        .map(|k| format!("{k}\tvalue-{k}\n"))
        .collect();
    let sink = client.copy_in::<_, Bytes>("COPY s FROM STDIN").await?;
    pin_mut!(sink);
    sink.as_mut().send(Bytes::from(data)).await?;
    sink.finish().await
}

/// Rows per partition, as (partition, count) sorted.
async fn per_partition(client: &Client) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        "SELECT rowpartition, count(*) FROM s GROUP BY rowpartition ORDER BY rowpartition",
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_either_side_of_the_commit_record_keeps_all_or_nothing() {
    for (point, kept) in [
        ("append-before-commit", false),
        ("append-after-commit", true),
    ] {
        let mut server =
            TestServer::start_fresh_with(&[], &[("EDDY_CRASH_AT", point)]).expect("server starts");
        let client = server.client().await.unwrap();
        client.batch_execute(CREATE).await.unwrap();
        // Single-partition statements commit without a commit record.
        for k in 1..=12 {
            client
                .batch_execute(&format!("INSERT INTO s VALUES ({k}, 'single')"))
                .await
                .unwrap();
        }
        let before = per_partition(&client).await;
        assert_eq!(
            before.len(),
            3,
            "the keys reach every partition: {before:?}"
        );
        let result = copy_rows(&client, 1000, 40_000).await;
        assert!(result.is_err(), "{point}: the server died mid-statement");
        assert!(
            server.wait_exit(Duration::from_secs(30)).unwrap(),
            "{point}: the server aborted"
        );
        assert!(server.log().contains(&format!("EDDY_CRASH_AT={point}")));
        server.set_env("EDDY_CRASH_AT", None);
        server.restart().unwrap();
        let client = server.client().await.unwrap();
        let total = scalar_i64(&client, "SELECT count(*) FROM s").await.unwrap();
        if kept {
            assert_eq!(total, 12 + 40_000, "{point}: committed, so all of it");
        } else {
            assert_eq!(total, 12, "{point}: not committed, so none of it");
            assert_eq!(
                per_partition(&client).await,
                before,
                "{point}: no partition kept a part"
            );
        }
        // Offsets go on; a new statement commits in every partition.
        copy_rows(&client, 100_000, 3_000).await.unwrap();
        assert_eq!(
            scalar_i64(&client, "SELECT count(*) FROM s").await.unwrap(),
            total + 3_000
        );
        drop(client);
        server.kill9();
        server.restart().unwrap();
        let client = server.client().await.unwrap();
        assert_eq!(
            scalar_i64(&client, "SELECT count(*) FROM s").await.unwrap(),
            total + 3_000,
            "{point}: the same after another kill -9"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_part_of_a_statement_that_writes_several_partitions() {
    const ROWS: i64 = 6_000;
    const STATEMENTS: i64 = 16;
    let server = TestServer::start_fresh().expect("server starts");
    let writer = server.client().await.unwrap();
    writer.batch_execute(CREATE).await.unwrap();
    let reader = server.client().await.unwrap();
    let write = tokio::spawn(async move {
        for i in 0..STATEMENTS {
            if i % 2 == 0 {
                copy_rows(&writer, i * ROWS, ROWS).await.unwrap();
            } else {
                let values: Vec<String> = (i * ROWS..(i + 1) * ROWS)
                    .map(|k| format!("({k}, 'i')"))
                    .collect();
                writer
                    .batch_execute(&format!("INSERT INTO s VALUES {}", values.join(", ")))
                    .await
                    .unwrap();
            }
        }
    });
    let mut seen = 0;
    let mut reads = 0;
    while !write.is_finished() || seen < ROWS * STATEMENTS {
        let n = scalar_i64(&reader, "SELECT count(*) FROM s").await.unwrap();
        assert_eq!(n % ROWS, 0, "a reader saw {n} rows: part of a statement");
        assert!(n >= seen, "counts never go back");
        seen = n;
        reads += 1;
        if write.is_finished() && seen < ROWS * STATEMENTS {
            write.await.unwrap();
            break;
        }
    }
    assert!(reads > 1);
    assert_eq!(
        scalar_i64(&reader, "SELECT count(*) FROM s").await.unwrap(),
        ROWS * STATEMENTS
    );
}
