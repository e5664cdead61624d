//! Transaction blocks over the wire: a block's writes to several streams become visible
//! together at COMMIT and survive a crash all or not at all; savepoints over the extended
//! protocol (tokio-postgres); the status byte of ReadyForQuery after each step. The client
//! libraries' own use (psycopg, SQLAlchemy) is `tests/py/transactions.py`.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::{TestServer, scalar_i64};

const CREATE: &str = "CREATE STREAM a (k BIGINT KEY, v VARCHAR) WITH (partitions = 3); \
                      CREATE STREAM b (n BIGINT)";

/// One block: `rows` rows into `a` (keys from `first`, over every partition) and one into `b`.
async fn write_block(client: &Client, first: i64, rows: i64) -> Result<(), tokio_postgres::Error> {
    let values: Vec<String> = (first..first + rows)
        .map(|k| format!("({k}, 'v{k}')"))
        .collect();
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO a VALUES {}; INSERT INTO b VALUES ({first}); COMMIT",
            values.join(", ")
        ))
        .await
}

async fn counts(client: &Client) -> (i64, i64) {
    (
        scalar_i64(client, "SELECT count(*) FROM a").await.unwrap(),
        scalar_i64(client, "SELECT count(*) FROM b").await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_over_two_streams_survives_a_crash_whole_or_not_at_all() {
    for (point, kept) in [
        ("append-before-commit", false),
        ("append-after-commit", true),
    ] {
        let mut server =
            TestServer::start_fresh_with(&[], &[("EDDY_CRASH_AT", point)]).expect("server starts");
        let client = server.client().await.unwrap();
        client.batch_execute(CREATE).await.unwrap();
        // Outside a block, one-partition statements need no commit record.
        for k in 0..6 {
            client
                .batch_execute(&format!("INSERT INTO a VALUES ({k}, 'single')"))
                .await
                .unwrap();
        }
        client
            .batch_execute("INSERT INTO b VALUES (0)")
            .await
            .unwrap();
        let result = write_block(&client, 100, 300).await;
        assert!(result.is_err(), "{point}: the server died in the COMMIT");
        assert!(server.wait_exit(Duration::from_secs(30)).unwrap());
        assert!(server.log().contains(&format!("EDDY_CRASH_AT={point}")));
        server.set_env("EDDY_CRASH_AT", None);
        server.restart().unwrap();
        let client = server.client().await.unwrap();
        let expected = if kept { (306, 2) } else { (6, 1) };
        assert_eq!(counts(&client).await, expected, "{point}");
        // The logs go on, and a new block commits in both streams.
        write_block(&client, 1000, 30).await.unwrap();
        let after = (expected.0 + 30, expected.1 + 1);
        assert_eq!(counts(&client).await, after, "{point}: the next block");
        drop(client);
        server.kill9();
        server.restart().unwrap();
        let client = server.client().await.unwrap();
        assert_eq!(
            counts(&client).await,
            after,
            "{point}: after another kill -9"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_a_block_whole_and_only_after_commit() {
    const ROWS: i64 = 500;
    const BLOCKS: i64 = 12;
    let server = TestServer::start_fresh().expect("server starts");
    let writer = server.client().await.unwrap();
    writer.batch_execute(CREATE).await.unwrap();
    // A block that is open sees nothing of itself reach others.
    writer
        .batch_execute("BEGIN; INSERT INTO a VALUES (1, 'open'); INSERT INTO b VALUES (1)")
        .await
        .unwrap();
    let reader = server.client().await.unwrap();
    assert_eq!(counts(&reader).await, (0, 0), "nothing before COMMIT");
    writer.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(counts(&reader).await, (0, 0), "nothing after ROLLBACK");
    let write = tokio::spawn(async move {
        for i in 0..BLOCKS {
            write_block(&writer, i * ROWS, ROWS).await.unwrap();
        }
    });
    let mut reads = 0;
    loop {
        let done = write.is_finished();
        let a = scalar_i64(&reader, "SELECT count(*) FROM a").await.unwrap();
        assert_eq!(a % ROWS, 0, "a reader saw {a} rows of `a`: part of a block");
        reads += 1;
        if done {
            break;
        }
    }
    write.await.unwrap();
    assert!(reads > 1);
    assert_eq!(counts(&reader).await, (ROWS * BLOCKS, BLOCKS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_over_the_extended_protocol() {
    let server = TestServer::start_fresh().expect("server starts");
    let mut client = server.client().await.unwrap();
    client.batch_execute(CREATE).await.unwrap();
    let insert = client.prepare("INSERT INTO b VALUES ($1)").await.unwrap();
    let mut tx = client.transaction().await.unwrap();
    tx.execute(&insert, &[&1i64]).await.unwrap();
    {
        let sp = tx.savepoint("inner").await.unwrap();
        sp.execute(&insert, &[&2i64]).await.unwrap();
        // A failing statement inside the savepoint; the savepoint's rollback recovers.
        assert!(sp.execute("SELECT 1 / 0", &[]).await.is_err());
        let refused = sp.execute(&insert, &[&3i64]).await.unwrap_err();
        assert_eq!(refused.code().unwrap().code(), "25P02", "{refused}");
        sp.rollback().await.unwrap();
    }
    {
        let sp = tx.savepoint("kept").await.unwrap();
        sp.execute(&insert, &[&4i64]).await.unwrap();
        sp.commit().await.unwrap(); // RELEASE
    }
    tx.execute(&insert, &[&5i64]).await.unwrap();
    tx.commit().await.unwrap();
    let kept: Vec<i64> = client
        .query("SELECT n FROM b ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, [1, 4, 5]);
    // A dropped transaction object rolls back.
    {
        let tx = client.transaction().await.unwrap();
        tx.execute(&insert, &[&6i64]).await.unwrap();
    }
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM b").await.unwrap(),
        3
    );
    // A COMMIT of a failed block answers ROLLBACK and keeps nothing.
    client
        .batch_execute("BEGIN; INSERT INTO b VALUES (7)")
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT 1 / 0").await.is_err());
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM b").await.unwrap(),
        3
    );
}
