//! Persistent queries with a real server and real clients: live input, late rows and grace
//! periods, session windows merging, `EMIT FINAL`, `TERMINATE`, queries restarting with the
//! server, and exactly-once across `kill -9`.
//!
//! Pull queries on a table wait until the table reflects every source row committed when they
//! start, so a test can read right after it writes. A stream written by a query has no such
//! wait: tests poll it with [`eventually`], bounded so a hang becomes a failure. Nothing here
//! asserts on timing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_postgres::Client;

use crate::harness::{TestServer, rows, scalar_i64, sqlstate};

const BOUND: Duration = Duration::from_secs(60);

/// Polls `sql` (one integer) until it returns `want`.
async fn eventually(client: &Client, sql: &str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = scalar_i64(client, sql).await?;
        if got == want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sql} gave {got}, waited {BOUND:?} for {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A query's row in `SHOW QUERIES`, as column → value.
async fn show_query(client: &Client, id: &str) -> anyhow::Result<BTreeMap<String, String>> {
    for m in client.simple_query("SHOW QUERIES").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m
            && r.get("query_id") == Some(id)
        {
            return Ok(r
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("").to_string()))
                .collect());
        }
    }
    anyhow::bail!("{id} is not in SHOW QUERIES")
}

fn table(rows: Vec<Vec<Option<String>>>) -> Vec<String> {
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| c.unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_as_select_and_insert_into_follow_live_rows_with_their_rowtime() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM readings (sensor VARCHAR KEY, temp DOUBLE, ts BIGINT) \
             WITH (partitions = 3, timestamp = 'ts');
         CREATE STREAM alerts (sensor VARCHAR KEY, fahrenheit DOUBLE) WITH (partitions = 1);
         CREATE STREAM hot AS SELECT sensor, temp FROM readings WHERE temp > 30 EMIT CHANGES;
         INSERT INTO alerts SELECT sensor, temp * 9 / 5 + 32 FROM readings WHERE temp > 40 EMIT CHANGES;",
    )
    .await?;
    // Latest (the default): the queries see rows written after they started.
    c.batch_execute(
        "INSERT INTO readings VALUES ('a', 25.0, 1000), ('b', 35.0, 2000), ('c', 45.0, 3000), \
         ('a', 50.0, 4000)",
    )
    .await?;
    eventually(&c, "SELECT count(*) FROM hot", 3).await?;
    eventually(&c, "SELECT count(*) FROM alerts", 2).await?;
    assert_eq!(
        table(rows(&c, "SELECT sensor, temp, rowtime FROM hot").await?),
        vec![
            "a 50.0 1970-01-01 00:00:04",
            "b 35.0 1970-01-01 00:00:02",
            "c 45.0 1970-01-01 00:00:03",
        ],
        "filtered rows keep their event time"
    );
    assert_eq!(
        table(rows(&c, "SELECT sensor, fahrenheit FROM alerts").await?),
        vec!["a 122.0", "c 113.0"]
    );
    let q = show_query(&c, "INSERTQUERY_3").await?;
    assert_eq!(q["status"], "RUNNING");
    assert_eq!(q["rows_in"], "4");
    assert_eq!(q["rows_out"], "2");
    // The source stays readable and writable by others; the query's sink too.
    c.batch_execute("INSERT INTO alerts VALUES ('manual', 1.0)")
        .await?;
    eventually(&c, "SELECT count(*) FROM alerts", 3).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_within_grace_count_and_later_ones_are_dropped_and_counted() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM clicks (page VARCHAR KEY, ts BIGINT) WITH (partitions = 1, timestamp = 'ts');
         CREATE TABLE views AS SELECT page, COUNT(*) AS n FROM clicks \
           WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS) GROUP BY page EMIT CHANGES;",
    )
    .await?;
    // Stream time reaches 14 s: window [0, 10 s) is still open (closes at 15 s).
    c.batch_execute("INSERT INTO clicks VALUES ('home', 1000), ('home', 14000)")
        .await?;
    c.batch_execute("INSERT INTO clicks VALUES ('home', 9000)")
        .await?;
    assert_eq!(
        table(rows(&c, "SELECT windowstart, n FROM views WHERE page = 'home'").await?),
        vec!["0 2", "10000 1"],
        "a row 5 s late but within the grace period counts"
    );
    // Stream time 15 s closes [0, 10 s): a row for it is late, dropped and counted.
    c.batch_execute("INSERT INTO clicks VALUES ('home', 15000)")
        .await?;
    c.batch_execute("INSERT INTO clicks VALUES ('home', 2000)")
        .await?;
    assert_eq!(
        table(rows(&c, "SELECT windowstart, n FROM views WHERE page = 'home'").await?),
        vec!["0 2", "10000 2"]
    );
    let q = show_query(&c, "CTAS_VIEWS_1").await?;
    assert_eq!(q["late_rows"], "1", "{q:?}");
    assert_eq!(q["rows_in"], "5");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_merge_when_a_row_bridges_them() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM visits (usr VARCHAR KEY, ts BIGINT) WITH (partitions = 2, timestamp = 'ts');
         CREATE TABLE sessions AS SELECT usr, COUNT(*) AS n FROM visits \
           WINDOW SESSION (5 SECONDS, GRACE PERIOD 1 HOUR) GROUP BY usr EMIT CHANGES;",
    )
    .await?;
    c.batch_execute(
        "INSERT INTO visits VALUES ('ann', 0), ('ann', 3000), ('ann', 11000), ('bob', 500)",
    )
    .await?;
    assert_eq!(
        table(rows(&c, "SELECT usr, windowstart, windowend, n FROM sessions").await?),
        vec!["ann 0 3000 2", "ann 11000 11000 1", "bob 500 500 1"],
        "rows more than 5 s apart are separate sessions"
    );
    // 7 s is within 5 s of both 3 s and 11 s: the two sessions become one.
    c.batch_execute("INSERT INTO visits VALUES ('ann', 7000)")
        .await?;
    assert_eq!(
        table(rows(&c, "SELECT usr, windowstart, windowend, n FROM sessions").await?),
        vec!["ann 0 11000 4", "bob 500 500 1"]
    );
    // The changelog says so too: the merged-away session gets a tombstone (NULL count).
    c.batch_execute("SET 'auto.offset.reset' = 'earliest'")
        .await?;
    let changes = table(
        rows(
            &c,
            "SELECT windowstart, windowend, n FROM sessions WHERE usr = 'ann' EMIT CHANGES LIMIT 4",
        )
        .await?,
    );
    assert_eq!(
        changes,
        vec!["0 11000 4", "0 3000 2", "11000 11000 1", "11000 11000 NULL"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_final_emits_each_window_once_when_it_closes() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM trades (sym VARCHAR KEY, px DOUBLE, ts BIGINT) WITH (partitions = 1, timestamp = 'ts');
         CREATE TABLE bars AS SELECT sym, COUNT(*) AS n, MIN(px) AS low, MAX(px) AS high FROM trades \
           WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY sym EMIT FINAL;",
    )
    .await?;
    c.batch_execute(
        "INSERT INTO trades VALUES ('x', 10.0, 1000), ('x', 12.0, 20000), ('x', 9.0, 59000), ('y', 1.0, 30000)",
    )
    .await?;
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM bars").await?,
        0,
        "nothing is emitted while the window is open"
    );
    c.batch_execute("INSERT INTO trades VALUES ('x', 11.0, 60000)")
        .await?;
    assert_eq!(
        table(rows(&c, "SELECT sym, windowstart, n, low, high FROM bars").await?),
        vec!["x 0 3 9.0 12.0", "y 0 1 1.0 1.0"],
        "stream time 60 s closes the first minute for every key of the partition"
    );
    c.batch_execute("INSERT INTO trades VALUES ('x', 13.0, 61000)")
        .await?;
    let q = show_query(&c, "CTAS_BARS_1").await?;
    assert_eq!(q["rows_out"], "2", "one row per closed window, once: {q:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_output_and_drop_waits_for_it() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM src (id INT) WITH (partitions = 1);
         CREATE STREAM copy AS SELECT id FROM src EMIT CHANGES;",
    )
    .await?;
    c.batch_execute("INSERT INTO src VALUES (1)").await?;
    eventually(&c, "SELECT count(*) FROM copy", 1).await?;
    assert_eq!(sqlstate(c.batch_execute("DROP STREAM src").await), "2BP01");
    assert_eq!(sqlstate(c.batch_execute("DROP STREAM copy").await), "2BP01");
    let explain = crate::harness::text(&c, "EXPLAIN CSAS_COPY_1").await?;
    assert!(explain.contains("source: src"), "{explain}");
    c.batch_execute("TERMINATE CSAS_COPY_1").await?;
    assert!(rows(&c, "SHOW QUERIES").await?.is_empty());
    c.batch_execute("INSERT INTO src VALUES (2)").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM copy").await?, 1);
    // A table outlives its terminated query, frozen: pull queries answer at once.
    c.batch_execute(
        "CREATE TABLE counts AS SELECT id, COUNT(*) AS n FROM src GROUP BY id;
         INSERT INTO src VALUES (3)",
    )
    .await?;
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM counts").await?, 1);
    let id = rows(&c, "SHOW QUERIES").await?[0][0]
        .clone()
        .context("query id")?;
    c.batch_execute(&format!("TERMINATE {id}; INSERT INTO src VALUES (4)"))
        .await?;
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM counts").await?, 1);
    c.batch_execute("DROP TABLE counts; DROP STREAM copy; DROP STREAM src")
        .await?;
    assert_eq!(
        sqlstate(c.batch_execute("TERMINATE CSAS_COPY_1").await),
        "42704"
    );
    Ok(())
}

/// Exactly-once across crashes: a backlog is loaded, the server is killed (-9) while its
/// queries work through it, more rows are written after each restart, and in the end the
/// table must equal the aggregation recomputed from the source log, and the copy stream must
/// hold every source row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_queries_run_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM events (id BIGINT, k VARCHAR KEY, v BIGINT, ts BIGINT) \
             WITH (partitions = 2, timestamp = 'ts');
         CREATE TABLE totals AS SELECT k, COUNT(*) AS n, SUM(v) AS s FROM events GROUP BY k EMIT CHANGES;
         CREATE TABLE minutes AS SELECT k, COUNT(*) AS n FROM events \
           WINDOW TUMBLING (SIZE 60 SECONDS) GROUP BY k EMIT CHANGES;
         CREATE STREAM copied AS SELECT id, k FROM events EMIT CHANGES;",
    )
    .await?;
    let mut next_id = 0i64;
    let mut load = |n: i64| {
        let mut data = String::new();
        for _ in 0..n {
            let id = next_id;
            next_id += 1;
            data.push_str(&format!("{id}\tk{}\t{}\t{}\n", id % 37, id % 11, id * 10));
        }
        data
    };
    for round in 0..3 {
        let c = server.client().await?;
        let data = load(100_000);
        let sink = c
            .copy_in("COPY events (id, k, v, ts) FROM STDIN")
            .await
            .context("copy")?;
        {
            use futures::SinkExt;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data)).await?;
            sink.finish().await?;
        }
        // Kill the server while the queries work through the backlog (when they are quicker
        // than this, the round still checks a plain restart).
        let behind = show_query(&c, "CSAS_COPIED_3").await?;
        eprintln!("round {round}: killing with the copy query at {behind:?}");
        server.kill9();
        server.restart()?;
    }
    let c = server.client().await?;
    let total = next_id;
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM events").await?, total);
    let expected = table(rows(&c, "SELECT k, count(*), sum(v) FROM events GROUP BY k").await?);
    // Pull queries wait for the tables to catch up with the source.
    assert_eq!(
        table(rows(&c, "SELECT k, n, s FROM totals").await?),
        expected
    );
    assert_eq!(
        scalar_i64(&c, "SELECT sum(n) FROM minutes").await?,
        total,
        "every event counted once in its window"
    );
    let windows = table(rows(&c, "SELECT k, windowstart, n FROM minutes").await?);
    let recomputed = table(
        rows(
            &c,
            "SELECT k, ts / 60000 * 60000, count(*) FROM events GROUP BY k, ts / 60000 * 60000",
        )
        .await?,
    );
    assert_eq!(windows, recomputed);
    eventually(&c, "SELECT count(*) FROM copied", total).await?;
    assert_eq!(
        scalar_i64(&c, "SELECT count(DISTINCT id) FROM copied").await?,
        total,
        "no row copied twice"
    );
    for id in ["CTAS_TOTALS_1", "CTAS_MINUTES_2", "CSAS_COPIED_3"] {
        let q = show_query(&c, id).await?;
        assert_eq!(q["status"], "RUNNING", "{q:?}\n{}", server.log());
        assert_eq!(q["rows_in"], total.to_string(), "{q:?}");
    }
    Ok(())
}

/// The two steps of a commit that a crash can separate: checkpoint durable but output not
/// appended (restart appends it), output appended but the next checkpoint not written
/// (restart finds the tagged output and does not append it again). One query per server, so
/// the crash is that query's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_checkpoint_and_sink_append_neither_loses_nor_doubles() -> anyhow::Result<()>
{
    let queries = [
        (
            "CREATE STREAM out AS SELECT id, k FROM src EMIT CHANGES",
            "SELECT count(*) FROM out",
            "SELECT count(DISTINCT id) FROM out",
        ),
        (
            "CREATE TABLE out AS SELECT k, COUNT(*) AS n FROM src GROUP BY k",
            "SELECT sum(n) FROM out",
            "SELECT count(*) FROM out",
        ),
    ];
    for point in ["query-after-checkpoint", "query-after-output"] {
        for (create, total, distinct) in queries {
            let what = format!("{point}: {create}");
            let mut server = TestServer::start_fresh_with(&[], &[("EDDY_CRASH_AT", point)])?;
            let c = server.client().await?;
            c.batch_execute("CREATE STREAM src (id INT, k VARCHAR KEY) WITH (partitions = 2)")
                .await?;
            c.batch_execute(create).await?;
            // The query's first commit with output crashes the server.
            let _ = c
                .batch_execute("INSERT INTO src VALUES (1, 'a'), (2, 'b'), (3, 'c')")
                .await;
            assert!(
                server.wait_exit(BOUND)?,
                "{what}: the server should have aborted\n{}",
                server.log()
            );
            server.set_env("EDDY_CRASH_AT", None);
            server.restart()?;
            let c = server.client().await?;
            assert_eq!(
                scalar_i64(&c, "SELECT count(*) FROM src").await?,
                3,
                "{what}"
            );
            eventually(&c, total, 3).await?;
            assert_eq!(scalar_i64(&c, distinct).await?, 3, "{what}");
            c.batch_execute("INSERT INTO src VALUES (4, 'd')").await?;
            eventually(&c, total, 4).await?;
            // Let it settle: a duplicate would show up as a fifth row.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(scalar_i64(&c, total).await?, 4, "{what}");
            assert_eq!(scalar_i64(&c, distinct).await?, 4, "{what}");
        }
    }
    Ok(())
}

/// With a tiny snapshot threshold every few commits write a full snapshot of state and table
/// instead of a delta; a restart must rebuild the same tables from the last snapshot plus the
/// deltas after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_snapshots_rebuilds_state_and_tables() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh_with(&["--query-snapshot-bytes", "1"], &[])?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM ev (k VARCHAR KEY, v BIGINT, ts BIGINT) WITH (partitions = 2, timestamp = 'ts');
         CREATE TABLE w AS SELECT k, COUNT(*) AS n, SUM(v) AS s, COUNT_DISTINCT(v) AS d FROM ev \
           WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 HOUR) GROUP BY k EMIT CHANGES;
         CREATE TABLE sess AS SELECT k, COUNT(*) AS n FROM ev \
           WINDOW SESSION (3 SECONDS, GRACE PERIOD 1 HOUR) GROUP BY k;",
    )
    .await?;
    let mut expected_rows = 0;
    for round in 0..4i64 {
        for i in 0..5i64 {
            let ts = round * 7000 + i * 1000;
            c.batch_execute(&format!(
                "INSERT INTO ev VALUES ('a', {i}, {ts}), ('b', {round}, {ts}), ('c{i}', 1, {ts})"
            ))
            .await?;
            expected_rows += 3;
        }
        // Force the tables to catch up, so each round commits (and snapshots) separately.
        scalar_i64(&c, "SELECT count(*) FROM w").await?;
    }
    let before_w = table(rows(&c, "SELECT * FROM w").await?);
    let before_s = table(rows(&c, "SELECT * FROM sess").await?);
    assert_eq!(scalar_i64(&c, "SELECT sum(n) FROM w").await?, expected_rows);
    server.kill9();
    server.restart()?;
    let c = server.client().await?;
    assert_eq!(table(rows(&c, "SELECT * FROM w").await?), before_w);
    assert_eq!(table(rows(&c, "SELECT * FROM sess").await?), before_s);
    // And the state behind them is right: new rows extend the restored groups.
    c.batch_execute("INSERT INTO ev VALUES ('a', 99, 27000), ('b', 1, 26500)")
        .await?;
    let a = table(rows(&c, "SELECT windowstart, n FROM w WHERE k = 'a'").await?);
    let expected = table(
        rows(
            &c,
            "SELECT ts / 10000 * 10000, count(*) FROM ev WHERE k = 'a' GROUP BY ts / 10000 * 10000",
        )
        .await?,
    );
    assert_eq!(a, expected);
    let sessions = table(
        rows(
            &c,
            "SELECT k, windowstart, windowend, n FROM sess WHERE k = 'b'",
        )
        .await?,
    );
    assert_eq!(
        sessions,
        vec!["b 0 26500 21"],
        "one session: rows never 3 s apart"
    );
    Ok(())
}

/// A query that fails on a row (division by zero) reports `ERROR: ...` in SHOW QUERIES and
/// stops; its table keeps the rows committed before, and pull queries still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_query_reports_its_error_and_its_table_stays_readable() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM nums (k VARCHAR KEY, d INT) WITH (partitions = 1);
         CREATE TABLE ratios AS SELECT k, SUM(100 / d) AS r FROM nums GROUP BY k;
         INSERT INTO nums VALUES ('a', 4), ('b', 5)",
    )
    .await?;
    assert_eq!(
        table(rows(&c, "SELECT k, r FROM ratios").await?),
        vec!["a 25", "b 20"]
    );
    c.batch_execute("INSERT INTO nums VALUES ('a', 0)").await?;
    let deadline = Instant::now() + BOUND;
    loop {
        let q = show_query(&c, "CTAS_RATIOS_1").await?;
        if q["status"].starts_with("ERROR") {
            assert!(q["status"].contains("ivide by zero"), "{q:?}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no error reported: {q:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        table(rows(&c, "SELECT k, r FROM ratios").await?),
        vec!["a 25", "b 20"]
    );
    Ok(())
}
