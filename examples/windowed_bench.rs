//! Throughput of a persistent windowed aggregation, and latency of pull queries on its table.
//!
//! An in-process server. `EDDY_WINDOW_EVENTS` events (default 10M) over `EDDY_WINDOW_KEYS`
//! keys (default 100k), event times spread over 100 s, are loaded with COPY into a stream of
//! `EDDY_WINDOW_PARTITIONS` partitions (default 1); then
//!
//! ```sql
//! CREATE TABLE per_key AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events
//!   WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k EMIT CHANGES
//! ```
//!
//! reads the backlog from the earliest offset; the run ends when `SHOW QUERIES` reports every
//! event read and committed. That gives events/s for one query: one task per partition (the
//! GROUP BY is the stream's KEY), so one core with one partition. The
//! table's rows are checked against the input (every event counted once, sums match). Then
//! pull queries by key (`SELECT * FROM per_key WHERE k = $1`, prepared) are timed. The same
//! aggregation by DataFusion over the stream's history (an ad hoc `GROUP BY`) is the reference.
//!
//! Run with `cargo run --release --example windowed_bench`. Figures are printed, never
//! asserted; wrong results panic.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use eddy_server::config::ServerConfig;
use futures::SinkExt;
use hdrhistogram::Histogram;
use tokio_postgres::{Client, NoTls};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn connect(port: u16) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("eddy")
        .dbname("eddy")
        .connect(NoTls)
        .await
        .context("connecting")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Key of event `i`: a scrambled spread over `keys` keys.
fn key_of(i: u64, keys: u64) -> u64 {
    (i.wrapping_mul(2_654_435_761)) % keys
}

async fn load(client: &Client, events: u64, keys: u64, span_ms: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let chunk = 500_000u64;
    let mut i = 0;
    while i < events {
        let end = (i + chunk).min(events);
        let sink = client.copy_in("COPY events (k, v, ts) FROM STDIN").await?;
        let mut text = String::with_capacity(((end - i) * 24) as usize);
        for e in i..end {
            let ts = e * span_ms / events;
            text.push_str(&format!("k{}\t{}\t{}\n", key_of(e, keys), e % 1000, ts));
        }
        futures::pin_mut!(sink);
        sink.send(Bytes::from(text)).await?;
        sink.finish().await?;
        i = end;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn query_counts(client: &Client, id: &str) -> anyhow::Result<(i64, i64, String)> {
    for row in client.simple_query("SHOW QUERIES").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = row
            && r.get("query_id") == Some(id)
        {
            let n = |c: &str| r.get(c).and_then(|v| v.parse().ok()).unwrap_or(0);
            return Ok((
                n("rows_in"),
                n("lag"),
                r.get("status").unwrap_or("").to_string(),
            ));
        }
    }
    anyhow::bail!("query {id} not in SHOW QUERIES")
}

// Not `#[tokio::main]`: the server's runtime has the stack its planning needs.
fn main() -> anyhow::Result<()> {
    eddy_server::runtime()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let events = env("EDDY_WINDOW_EVENTS", 10_000_000);
    let keys = env("EDDY_WINDOW_KEYS", 100_000).min(events).max(1);
    let span_ms = 100_000u64;
    // The stream's partitions: GROUP BY its KEY column runs one query task per partition.
    let partitions = env("EDDY_WINDOW_PARTITIONS", 1).max(1);
    let dir = tempfile::tempdir()?;
    let server = eddy_server::start(ServerConfig::for_dir(dir.path())).await?;
    let port = server.addr.port();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "windowed_bench: eddy on {} ({build} build), {events} events, {keys} keys, {partitions} partition(s), 10 s tumbling windows over {} s of event time",
        server.addr,
        span_ms / 1000
    );
    let client = connect(port).await?;
    client
        .batch_execute(&format!(
            "CREATE STREAM events (k VARCHAR KEY, v BIGINT, ts BIGINT) \
             WITH (partitions = {partitions}, timestamp = 'ts')"
        ))
        .await?;
    let load_s = load(&client, events, keys, span_ms).await?;
    println!(
        "  load (COPY):            {:>10.0} events/s ({load_s:.1} s)",
        events as f64 / load_s
    );

    // Reference: DataFusion aggregating the same history ad hoc.
    let start = Instant::now();
    let rows = client
        .query(
            "SELECT k, ts / 10000 AS w, count(*) AS n, sum(v) AS total FROM events GROUP BY k, ts / 10000",
            &[],
        )
        .await?;
    let adhoc_s = start.elapsed().as_secs_f64();
    let expected_windows = rows.len();
    let expected_total: i64 = rows.iter().map(|r| r.get::<_, i64>("total")).sum();
    println!(
        "  ad hoc GROUP BY (ref):  {:>10.0} events/s ({adhoc_s:.2} s, {expected_windows} groups)",
        events as f64 / adhoc_s
    );

    client
        .batch_execute("SET 'auto.offset.reset' = 'earliest'")
        .await?;
    let start = Instant::now();
    client
        .batch_execute(
            "CREATE TABLE per_key AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events \
             WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k EMIT CHANGES",
        )
        .await?;
    let id = client
        .simple_query("SHOW QUERIES")
        .await?
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("query_id").map(str::to_string),
            _ => None,
        })
        .context("no query")?;
    loop {
        let (rows_in, lag, status) = query_counts(&client, &id).await?;
        anyhow::ensure!(!status.starts_with("ERROR"), "query failed: {status}");
        if rows_in as u64 >= events && lag == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agg_s = start.elapsed().as_secs_f64();
    println!(
        "  persistent windowed count+sum: {:>10.0} events/s ({agg_s:.2} s, {partitions} query task(s))",
        events as f64 / agg_s
    );

    // Every event counted once, in the right window.
    let check = client
        .query_one(
            "SELECT count(*) AS windows, sum(n) AS n, sum(total) AS total FROM per_key",
            &[],
        )
        .await?;
    let (windows, n, total): (i64, i64, i64) =
        (check.get("windows"), check.get("n"), check.get("total"));
    assert_eq!(n as u64, events, "events counted");
    assert_eq!(total, expected_total, "sum of v");
    assert_eq!(windows as usize, expected_windows, "windows");
    println!("  checked: {windows} (key, window) rows, {n} events, sum {total}");

    // Pull queries by key.
    let pull = client.prepare("SELECT * FROM per_key WHERE k = $1").await?;
    let mut hist = Histogram::<u64>::new(3)?;
    let lookups = env("EDDY_PULL_QUERIES", 2_000);
    let start = Instant::now();
    for i in 0..lookups {
        let key = format!("k{}", key_of(i * 7919, keys));
        let t = Instant::now();
        let rows = client.query(&pull, &[&key]).await?;
        hist.record(t.elapsed().as_micros() as u64)?;
        assert!(!rows.is_empty(), "key {key} has windows");
    }
    let pull_s = start.elapsed().as_secs_f64();
    println!(
        "  pull query by key:      p50 {:.2} ms, p99 {:.2} ms, {:.0} queries/s (one connection)",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        lookups as f64 / pull_s
    );
    server.shutdown().await?;
    Ok(())
}
