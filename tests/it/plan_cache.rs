//! A statement planned once answers as if it were planned at every execution
//! (`sql/src/exec/cache.rs` keeps logical plans, and the physical plans of queries of
//! constants), and replies held back for a pipeline (`server/pg/connection.rs`) all arrive, in
//! order, whatever the statements do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use tokio_postgres::types::Type;

use crate::harness::{TestServer, rows};

/// The first column of every row `statement` answers, as integers.
async fn ints(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
) -> anyhow::Result<Vec<i64>> {
    Ok(client
        .query(statement, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plan_answers_as_a_fresh_one_would() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let mut client = server.client().await?;

    // Constants: the physical plan is kept and run again.
    let one = client
        .prepare("SELECT 1 + 1 AS two, 'x' || 'y' AS xy")
        .await?;
    for _ in 0..3 {
        let row = client.query_one(&one, &[]).await?;
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, String>(1)),
            (2, "xy".into())
        );
    }

    // The rows of a query of constants are kept once an execution read them whole: a larger
    // result than is kept, an error, and an execution stopped early (a portal's row limit)
    // still answer in full at every execution.
    let many = client
        .prepare("SELECT unnest(range(0, 20000)) AS n")
        .await?;
    for _ in 0..3 {
        assert_eq!(
            ints(&client, &many).await?,
            (0..20000).collect::<Vec<i64>>()
        );
    }
    let failing = client.prepare("SELECT 1 / 0").await?;
    for _ in 0..3 {
        let e = client.query(&failing, &[]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("22012"), "{e}");
    }
    let few = client.prepare("SELECT unnest(range(0, 5)) AS n").await?;
    let transaction = client.transaction().await?;
    let portal = transaction.bind(&few, &[]).await?;
    assert_eq!(transaction.query_portal(&portal, 2).await?.len(), 2);
    drop(portal);
    transaction.commit().await?;
    for _ in 0..3 {
        assert_eq!(ints(&client, &few).await?, vec![0, 1, 2, 3, 4]);
    }

    // `now()` is the execution's time, prepared or sent again as text.
    let now = client.prepare("SELECT now()").await?;
    let first: DateTime<Utc> = client.query_one(&now, &[]).await?.get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second: DateTime<Utc> = client.query_one(&now, &[]).await?.get(0);
    assert!(second > first, "prepared now() repeated {first}");
    let texts = [rows(&client, "SELECT CAST(now() AS VARCHAR)").await?, {
        tokio::time::sleep(Duration::from_millis(20)).await;
        rows(&client, "SELECT CAST(now() AS VARCHAR)").await?
    }];
    assert_ne!(texts[0], texts[1], "simple-protocol now() repeated");

    // Volatile functions are evaluated at each execution.
    let random = client.prepare("SELECT random()").await?;
    let draws: Vec<f64> = try_join_all((0..5).map(|_| client.query_one(&random, &[])))
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut distinct = draws.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), draws.len(), "random() repeated: {draws:?}");

    // A setting read by the statement is the one in force when it runs.
    client.batch_execute("SET myapp.color = 'red'").await?;
    let setting = client
        .prepare("SELECT current_setting('myapp.color')")
        .await?;
    let red: String = client.query_one(&setting, &[]).await?.get(0);
    client.batch_execute("SET myapp.color = 'blue'").await?;
    let blue: String = client.query_one(&setting, &[]).await?.get(0);
    assert_eq!((red.as_str(), blue.as_str()), ("red", "blue"));

    // A scan reads the log's end at each execution, and a stream re-created with other
    // columns is planned again.
    client
        .batch_execute("CREATE STREAM s (a BIGINT); INSERT INTO s VALUES (1)")
        .await?;
    let count = client.prepare("SELECT count(*) FROM s").await?;
    assert_eq!(client.query_one(&count, &[]).await?.get::<_, i64>(0), 1);
    client
        .batch_execute("INSERT INTO s VALUES (2), (3)")
        .await?;
    assert_eq!(client.query_one(&count, &[]).await?.get::<_, i64>(0), 3);
    assert_eq!(rows(&client, "SELECT * FROM s ORDER BY a").await?.len(), 3);
    client
        .batch_execute("DROP STREAM s; CREATE STREAM s (a BIGINT, b VARCHAR); INSERT INTO s VALUES (9, 'nine')")
        .await?;
    assert_eq!(
        rows(&client, "SELECT * FROM s ORDER BY a").await?,
        vec![vec![Some("9".to_string()), Some("nine".to_string())]]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_statements_get_every_reply_in_order() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM p (n BIGINT, pad VARCHAR)")
        .await?;
    // tokio-postgres pipelines the requests of futures polled together: Bind, Execute, Sync
    // of one statement follow the previous one's before any reply is read.
    let insert = client.prepare("INSERT INTO p VALUES ($1, $2)").await?;
    let pad = "x".repeat(100);
    let written = try_join_all((0..200i64).map(|n| {
        let (client, insert, pad) = (&client, &insert, &pad);
        async move { client.execute(insert, &[&n, pad]).await }
    }))
    .await?;
    assert!(written.iter().all(|&n| n == 1));

    // Replies larger than the hold (64 KiB), and errors, inside a pipeline.
    // `$1::BIGINT` types the parameter, as PostgreSQL infers it.
    let echo = client.prepare("SELECT $1::BIGINT").await?;
    let all = client.prepare("SELECT n, pad FROM p ORDER BY n").await?;
    let failing = client
        .prepare_typed("SELECT 1 / ($1 - 7)", &[Type::INT8])
        .await?;
    let (echoes, big, failed, after) = tokio::join!(
        try_join_all((0..50i64).map(|n| {
            let (client, echo) = (&client, &echo);
            async move {
                Ok::<_, tokio_postgres::Error>(
                    client.query_one(echo, &[&n]).await?.get::<_, i64>(0),
                )
            }
        })),
        try_join_all((0..3).map(|_| client.query(&all, &[]))),
        client.query(&failing, &[&7i64]),
        client.query_one(&echo, &[&99i64]),
    );
    assert_eq!(echoes?, (0..50).collect::<Vec<i64>>());
    for result in big? {
        let got: Vec<i64> = result.iter().map(|r| r.get(0)).collect();
        assert_eq!(got, (0..200).collect::<Vec<i64>>());
    }
    let error = failed.expect_err("division by zero");
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("22012"),
        "{error}"
    );
    assert_eq!(after?.get::<_, i64>(0), 99);
    Ok(())
}
