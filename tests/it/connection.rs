//! Connections survive errors, many clients work at once, and a running query can be cancelled.

use std::time::Duration;

use tokio_postgres::NoTls;

use crate::harness::{TestServer, rows, scalar_i64, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_statements_do_not_close_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (k VARCHAR KEY, v INT)")
        .await?;

    let cases: &[(&str, &str)] = &[
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM s", "42703"),
        ("SELEC 1", "42601"),
        ("INSERT INTO s VALUES ('a', 'b')", "22P02"),
        ("CREATE STREAM s (x INT)", "42P07"),
        ("CREATE STREAM t (x NOTATYPE)", "42704"),
        ("SHOW not_a_setting", "42704"),
        ("CREATE TABLE t (x INT)", "22023"),
        ("CREATE VIEW v AS SELECT 1", "0A000"),
        ("", ""),
        (";;", ""),
        ("SELECT 1/0", "22012"),
    ];
    for round in 0..3 {
        for (sql, expected) in cases {
            let result = client.simple_query(sql).await;
            if expected.is_empty() {
                assert!(result.is_ok(), "{sql:?}: {result:?}");
            } else {
                assert_eq!(
                    sqlstate(result),
                    *expected,
                    "simple query {sql:?} (round {round})"
                );
                // The extended protocol reports the same error.
                assert_eq!(
                    sqlstate(client.query(*sql, &[]).await),
                    *expected,
                    "extended query {sql:?}"
                );
            }
            assert_eq!(
                scalar_i64(&client, "SELECT 1").await?,
                1,
                "connection works after {sql:?}"
            );
        }
    }
    assert!(!client.is_closed());
    assert!(
        !server.log().contains("panicked"),
        "server panicked:\n{}",
        server.log()
    );

    // Nothing was appended by the failed statements.
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_contiguous_offsets() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let setup = server.client().await?;
    setup
        .batch_execute("CREATE STREAM s (writer INT, n INT) WITH (partitions=2)")
        .await?;

    let mut tasks = Vec::new();
    for w in 0..6 {
        let client = server.client().await?;
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let n = client
                    .execute(
                        &format!("INSERT INTO s VALUES ({w}, {i}), ({w}, {})", i + 1000),
                        &[],
                    )
                    .await
                    .expect("insert");
                assert_eq!(n, 2);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await?
            .expect("writer");
    }

    assert_eq!(scalar_i64(&setup, "SELECT count(*) FROM s").await?, 240);
    assert_eq!(
        scalar_i64(&setup, "SELECT count(DISTINCT writer * 10000 + n) FROM s").await?,
        240
    );
    for row in rows(&setup, "SELECT rowpartition, count(*), count(DISTINCT rowoffset), min(rowoffset), max(rowoffset) FROM s GROUP BY rowpartition").await? {
        let count: i64 = row[1].as_deref().unwrap().parse()?;
        assert_eq!(row[2].as_deref(), Some(count.to_string().as_str()), "no duplicate offsets: {row:?}");
        assert_eq!(row[3].as_deref(), Some("0"), "{row:?}");
        assert_eq!(row[4].as_deref(), Some((count - 1).to_string().as_str()), "no gaps: {row:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_user_and_database_name_is_accepted() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    for (user, db) in [
        ("postgres", "postgres"),
        ("alice", "analytics"),
        ("eddy", "eddy"),
    ] {
        let mut config = server.config();
        config.user(user).dbname(db).application_name("it");
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(connection);
        assert_eq!(
            scalar_i64(&client, "SELECT 7").await?,
            7,
            "user {user} db {db}"
        );
    }
    // The server_version parameter of the start-up handshake.
    let row = server
        .client()
        .await?
        .query_one("SHOW server_version", &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), "15.8");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_long_query() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    let token = client.cancel_token();

    // Far too much work to finish within the test's time bound.
    let query = tokio::spawn(async move {
        let result = client
            .simple_query(
                "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3",
            )
            .await;
        (result.map(|_| ()), client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await?;

    let (result, client) = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .map_err(|_| {
            anyhow::anyhow!("the query was not cancelled within 20 s of the cancel request")
        })??;
    assert_eq!(
        sqlstate(result),
        "57014",
        "a cancelled query reports query_canceled"
    );
    assert_eq!(
        scalar_i64(&client, "SELECT 1").await?,
        1,
        "the connection works after the cancel"
    );
    Ok(())
}
