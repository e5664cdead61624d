//! Transaction blocks through the PostgreSQL wire protocol, with PostgreSQL as the reference in
//! the same run: each block is `BEGIN`, five single-row INSERTs into a three-partition stream
//! (`orders`), one into a second stream (`audit`), `COMMIT` — prepared statements, so only the
//! commit path differs from plain INSERTs. For 1 and 8 connections it prints blocks/s, the
//! p50/p99 latency of a block, the same six INSERTs without a block (each its own commit),
//! and the five orders as one five-row INSERT (a statement across partitions, atomic) plus
//! the audit row, for comparison. At the end every committed row is counted; a wrong count panics.
//!
//! `cargo run --release --example txn_bench`; `EDDY_BENCH_SECONDS=1` makes a quick run.
//! PostgreSQL (`initdb` under `/usr/lib/postgresql/*/bin`, `fsync=on`,
//! `synchronous_commit=on`) is skipped with a message when it is not installed.

#[path = "bench/postgres.rs"]
mod postgres;

use postgres::connect;

use std::time::{Duration, Instant};

use eddy_server::config::ServerConfig;
use hdrhistogram::Histogram;

/// One workload's figures.
struct Figures {
    blocks_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    blocks: u64,
}

/// How one round of five orders and one audit row is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `BEGIN`, six single-row INSERTs, `COMMIT`.
    Block,
    /// Six single-row INSERTs, each its own commit.
    Autocommit,
    /// One five-row INSERT into `orders` (several partitions, one atomic statement), one
    /// single-row INSERT into `audit`.
    MultiRow,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Block => "BEGIN; 6 INSERTs; COMMIT",
            Mode::Autocommit => "6 INSERTs, autocommit    ",
            Mode::MultiRow => "5-row INSERT + 1 INSERT  ",
        }
    }
}

/// Runs `clients` connections for `seconds`, each repeating five orders and one audit row
/// written as `mode` says; returns the figures and the rounds (blocks) completed.
async fn run(
    port: u16,
    user: &str,
    db: &str,
    clients: usize,
    seconds: f64,
    mode: Mode,
    first_id: i64,
) -> anyhow::Result<Figures> {
    let block = mode == Mode::Block;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = connect(port, user, db).await?;
        let user_prefix = first_id + (c as i64) * 10_000_000;
        tasks.push(tokio::spawn(async move {
            let order = client.prepare("INSERT INTO orders VALUES ($1, $2)").await?;
            let five = client
                .prepare(
                    "INSERT INTO orders VALUES ($1, $2), ($3, $2), ($4, $2), ($5, $2), ($6, $2)",
                )
                .await?;
            let audit = client.prepare("INSERT INTO audit VALUES ($1, $2)").await?;
            let mut histogram = Histogram::<u64>::new(3)?;
            let mut n: i64 = 0;
            let started = Instant::now();
            while Instant::now() < deadline {
                let t = Instant::now();
                if block {
                    client.batch_execute("BEGIN").await?;
                }
                if mode == Mode::MultiRow {
                    let ids: Vec<i64> = (0..5).map(|i| user_prefix + n * 5 + i).collect();
                    client
                        .execute(
                            &five,
                            &[&ids[0], &"item", &ids[1], &ids[2], &ids[3], &ids[4]],
                        )
                        .await?;
                } else {
                    for i in 0..5 {
                        let id = user_prefix + n * 5 + i;
                        client.execute(&order, &[&id, &"item"]).await?;
                    }
                }
                client
                    .execute(&audit, &[&(user_prefix + n), &"five orders"])
                    .await?;
                if block {
                    client.batch_execute("COMMIT").await?;
                }
                histogram.record(t.elapsed().as_micros() as u64)?;
                n += 1;
            }
            anyhow::Ok((n as u64, started.elapsed(), histogram))
        }));
    }
    let mut total = 0;
    let mut longest = Duration::ZERO;
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        let (n, elapsed, h) = t.await??;
        total += n;
        longest = longest.max(elapsed);
        all.add(h)?;
    }
    Ok(Figures {
        blocks_per_s: total as f64 / longest.as_secs_f64(),
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        blocks: total,
    })
}

/// Every workload on one server; checks the rows at the end.
async fn bench(
    name: &str,
    port: u16,
    user: &str,
    db: &str,
    seconds: f64,
) -> anyhow::Result<Vec<Figures>> {
    let mut out = Vec::new();
    let mut expected_orders = 0;
    let workloads = [
        (1, Mode::Block),
        (8, Mode::Block),
        (1, Mode::Autocommit),
        (8, Mode::Autocommit),
        (1, Mode::MultiRow),
        (8, Mode::MultiRow),
    ];
    for (i, (clients, mode)) in workloads.into_iter().enumerate() {
        let f = run(port, user, db, clients, seconds, mode, (i as i64) << 40).await?;
        println!(
            "{name:>10}: {clients} connection(s), {}: {:>8.0} blocks/s ({:>7.0} rows/s), p50 {:.2} ms, p99 {:.2} ms",
            mode.label(),
            f.blocks_per_s,
            f.blocks_per_s * 6.0,
            f.p50_ms,
            f.p99_ms
        );
        expected_orders += f.blocks * 5;
        out.push(f);
    }
    let client = connect(port, user, db).await?;
    let orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    let audit: i64 = client
        .query_one("SELECT count(*) FROM audit", &[])
        .await?
        .get(0);
    let blocks: u64 = out.iter().map(|f| f.blocks).sum();
    assert_eq!(orders as u64, expected_orders, "{name}: orders committed");
    assert_eq!(audit as u64, blocks, "{name}: audit rows committed");
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("EDDY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let dir = tempfile::tempdir()?;
    let server = eddy_server::start(ServerConfig::for_dir(dir.path())).await?;
    let port = server.addr.port();
    let admin = connect(port, "eddy", "eddy").await?;
    admin
        .batch_execute(
            "CREATE STREAM orders (id BIGINT KEY, item VARCHAR) WITH (partitions = 3); \
             CREATE STREAM audit (id BIGINT, note VARCHAR)",
        )
        .await?;
    let eddy = bench("eddy", port, "eddy", "eddy", seconds).await?;
    drop(admin);
    server.shutdown().await?;

    let Some(bin) = postgres::find_postgres_bin() else {
        println!("postgresql: not installed (no initdb under /usr/lib/postgresql): no reference");
        return Ok(());
    };
    let mut pg = postgres::PgCluster::start(bin)?;
    let client = pg.connect().await?;
    client
        .batch_execute(
            "CREATE TABLE orders (id BIGINT, item TEXT); CREATE TABLE audit (id BIGINT, note TEXT)",
        )
        .await?;
    let (pg_port, pg_user) = (pg.port, pg.user_name());
    let reference = bench("postgresql", pg_port, &pg_user, "postgres", seconds).await?;
    let labels = [
        "block, 1 connection",
        "block, 8 connections",
        "autocommit, 1 connection",
        "autocommit, 8 connections",
        "5-row INSERT, 1 connection",
        "5-row INSERT, 8 connections",
    ];
    for ((label, e), p) in labels.iter().zip(&eddy).zip(&reference) {
        println!(
            "eddy / postgresql, {label}: {:.2}x blocks/s",
            e.blocks_per_s / p.blocks_per_s
        );
    }
    Ok(())
}
