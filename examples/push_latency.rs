//! End-to-end latency of push queries: from an `INSERT`'s acknowledgement (commit) to a client
//! running `SELECT ... EMIT CHANGES` receiving the row, through the PostgreSQL wire protocol.
//!
//! An in-process server; writers insert at a target rate (open loop: a tick every `period`,
//! each tick one `INSERT` of `rows_per_insert` rows, spread over `connections` connections).
//! Every row carries its batch number; the writers note when each batch was acknowledged,
//! the push client notes when each row arrived, and the two are joined afterwards. A row can
//! arrive *before* its INSERT's acknowledgement reaches the writer (the row is readable as
//! soon as it is durable, the ack travels back afterwards): such latencies count as 0 and are
//! reported. Latency from sending the INSERT is printed too.
//!
//! Scenarios: ~1k rows/s (single-row INSERTs), ~50k rows/s (500-row INSERTs every 10 ms), and
//! ~1k rows/s again with 20 more push queries on the same stream — receiving every row, or
//! filtering every row out — to see what concurrent readers cost the writers and each other.
//!
//! Run with `cargo run --release --example push_latency`; `EDDY_PUSH_SECONDS=2` shortens each
//! scenario (the default is 5 s). Figures are printed, never asserted; the row counts are
//! checked (a lost or duplicated row panics).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eddy_server::config::ServerConfig;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio_postgres::{Client, NoTls};

struct Scenario {
    name: &'static str,
    /// One INSERT per connection every `period`.
    period: Duration,
    connections: usize,
    rows_per_insert: usize,
    /// Push queries besides the measured one, receiving every row too.
    extra_readers: usize,
    /// Push queries whose WHERE matches no row: they wake, read and filter every batch but
    /// send nothing, which isolates the server-side cost of a reader from delivering rows.
    idle_readers: usize,
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

fn micros(base: Instant) -> i64 {
    base.elapsed().as_micros() as i64
}

struct Figures {
    rows: u64,
    seconds: f64,
    from_ack: Histogram<u64>,
    before_ack: u64,
    from_send: Histogram<u64>,
}

async fn run(port: u16, s: &Scenario, seconds: u64, stream: &str) -> anyhow::Result<Figures> {
    let setup = connect(port).await?;
    setup
        .batch_execute(&format!(
            "CREATE STREAM {stream} (batch BIGINT, sent_us BIGINT, pad VARCHAR) WITH (partitions = 1)"
        ))
        .await?;
    let base = Instant::now();
    let ticks = (Duration::from_secs(seconds).as_nanos() / s.period.as_nanos()) as usize;
    let expected = ticks * s.connections * s.rows_per_insert;

    // The measured push query, and the extra ones (which must see every row too).
    let query = format!("SELECT batch, sent_us FROM {stream} EMIT CHANGES LIMIT {expected}");
    let mut readers = Vec::new();
    for i in 0..=s.extra_readers {
        let client = connect(port).await?;
        // Each scenario has its own stream, so `earliest` is exactly its rows: a reader that
        // starts late still sees them all (only its first latencies would suffer).
        client
            .batch_execute("SET 'auto.offset.reset' = 'earliest'")
            .await?;
        let query = query.clone();
        readers.push(tokio::spawn(async move {
            let rows = client.query_raw(&query, Vec::<i64>::new()).await?;
            let mut rows = Box::pin(rows);
            let mut arrivals = Vec::with_capacity(if i == 0 { expected } else { 0 });
            let mut n = 0;
            while let Some(row) = rows.next().await {
                let row = row?;
                n += 1;
                if i == 0 {
                    arrivals.push((row.get::<_, i64>(0), row.get::<_, i64>(1), micros(base)));
                }
            }
            anyhow::Ok((n, arrivals))
        }));
    }
    let mut idle = Vec::new();
    for _ in 0..s.idle_readers {
        let client = connect(port).await?;
        let query = format!("SELECT batch FROM {stream} WHERE batch < 0 EMIT CHANGES");
        // Never ends; aborting the task drops the connection, which ends the query.
        idle.push(tokio::spawn(async move {
            let _ = client.simple_query(&query).await;
        }));
    }
    // Give the push queries a moment to plan and start tailing before the first row.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acks: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
    let started = Instant::now();
    let mut writers = Vec::new();
    for c in 0..s.connections {
        let client = connect(port).await?;
        let acks = acks.clone();
        let (period, per_insert, connections) = (s.period, s.rows_per_insert, s.connections);
        let stream = stream.to_string();
        writers.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval_at(
                tokio::time::Instant::now() + period * c as u32 / connections as u32,
                period,
            );
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for t in 0..ticks {
                interval.tick().await;
                let batch = (t * connections + c) as i64;
                let sent = micros(base);
                let values: Vec<String> = (0..per_insert)
                    .map(|_| {
                        format!("({batch}, {sent}, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')")
                    })
                    .collect();
                client
                    .execute(
                        &format!("INSERT INTO {stream} VALUES {}", values.join(", ")),
                        &[],
                    )
                    .await?;
                acks.lock().expect("acks").insert(batch, micros(base));
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let write_seconds = started.elapsed().as_secs_f64();
    for task in idle {
        task.abort();
    }
    let mut measured = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let (n, arrivals) = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .context("a push query did not receive every row")???;
        assert_eq!(n, expected, "reader {i} got every row exactly once");
        if i == 0 {
            measured = arrivals;
        }
    }
    let acks = acks.lock().expect("acks");
    let mut from_ack = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut from_send = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut before_ack = 0;
    for (batch, sent, arrived) in &measured {
        let ack = acks[batch];
        if arrived < &ack {
            before_ack += 1;
        }
        from_ack.record((arrived - ack).max(1) as u64)?;
        from_send.record((arrived - sent).max(1) as u64)?;
    }
    Ok(Figures {
        rows: expected as u64,
        seconds: write_seconds,
        from_ack,
        before_ack,
        from_send,
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

// Not `#[tokio::main]`: the server's runtime has the stack its planning needs.
fn main() -> anyhow::Result<()> {
    eddy_server::runtime()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("EDDY_PUSH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let server = eddy_server::start(ServerConfig::for_dir(dir.path())).await?;
    let port = server.addr.port();
    println!(
        "push_latency: eddy on {} ({} build), {seconds} s per scenario",
        server.addr,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let scenarios = [
        Scenario {
            name: "~1k rows/s, single-row INSERTs on 8 connections",
            period: Duration::from_millis(8),
            connections: 8,
            rows_per_insert: 1,
            extra_readers: 0,
            idle_readers: 0,
        },
        Scenario {
            name: "~50k rows/s, 500-row INSERTs every 10 ms",
            period: Duration::from_millis(10),
            connections: 1,
            rows_per_insert: 500,
            extra_readers: 0,
            idle_readers: 0,
        },
        Scenario {
            name: "~1k rows/s with 20 more push queries receiving every row",
            period: Duration::from_millis(8),
            connections: 8,
            rows_per_insert: 1,
            extra_readers: 20,
            idle_readers: 0,
        },
        Scenario {
            name: "~1k rows/s with 20 more push queries filtering out every row",
            period: Duration::from_millis(8),
            connections: 8,
            rows_per_insert: 1,
            extra_readers: 0,
            idle_readers: 20,
        },
    ];
    for (i, s) in scenarios.iter().enumerate() {
        let f = run(port, s, seconds, &format!("lat{i}")).await?;
        println!(
            "{}: {} rows in {:.2} s = {:.0} rows/s; commit->received p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             ({} rows arrived before their ack); send->received p50 {:.2} ms, p99 {:.2} ms",
            s.name,
            f.rows,
            f.seconds,
            f.rows as f64 / f.seconds,
            ms(&f.from_ack, 0.5),
            ms(&f.from_ack, 0.99),
            f.from_ack.max() as f64 / 1000.0,
            f.before_ack,
            ms(&f.from_send, 0.5),
            ms(&f.from_send, 0.99),
        );
    }
    server.shutdown().await?;
    Ok(())
}
