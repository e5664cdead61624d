//! Small statements, one at a time, with PostgreSQL as the reference in the same run, both driven
//! by PostgreSQL's own `pgbench` (`-M prepared`, `-n`): a single-row INSERT into
//! `t (id BIGINT, name VARCHAR, x BIGINT)` on 1, 8 and 64 connections, `SELECT 1` on 2, and a
//! read by key of a table of `EDDY_SMALL_KEYS` rows (default 1M) on 1, 2 and 8 — on Eddy a pull query of
//! the source table `kv (k BIGINT PRIMARY KEY, v BIGINT)`, on PostgreSQL a primary-key lookup.
//! It prints transactions/s, mean latency — for INSERTs also p50 and p99, from pgbench's
//! per-transaction log (`-l`; pgbench reads its clock lazily, so transactions whose reply is
//! already there when it looks are logged as 0 µs: a read's percentiles would be fiction,
//! an INSERT waits for an fsync every time) — and the ratio to PostgreSQL, and for Eddy's INSERTs the
//! fdatasyncs per second of the stream's log and the statements each one made durable (group
//! commit). Every INSERT acknowledged is counted at the end; a wrong count panics.
//!
//! `cargo run --release --example small_bench`; `EDDY_BENCH_SECONDS=1 EDDY_SMALL_KEYS=1000`
//! makes a quick run. Without PostgreSQL (`initdb` and `pgbench` under
//! `/usr/lib/postgresql/*/bin`) there is neither a reference nor `pgbench`: it says so and stops.

#[path = "bench/postgres.rs"]
mod postgres;

use postgres::connect;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use eddy_server::config::ServerConfig;
use tokio_postgres::Client;

/// One pgbench workload.
struct Workload {
    label: &'static str,
    script: String,
    clients: usize,
    /// Whether it INSERTs into `t` (its statements are counted and its fsyncs reported).
    inserts: bool,
}

/// What pgbench printed of one run.
struct Run {
    tps: f64,
    latency_ms: f64,
    /// p50 and p99 latency (ms), for INSERT workloads.
    percentiles: Option<(f64, f64)>,
    transactions: u64,
}

/// Where a server is and who connects to it.
struct Target<'a> {
    port: u16,
    user: &'a str,
    db: &'a str,
}

fn pgbench(bin: &Path, target: &Target, w: &Workload, seconds: u64) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("script.sql");
    std::fs::write(&script, &w.script)?;
    let threads = w.clients.min(2);
    let mut command = Command::new(bin.join("pgbench"));
    command
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1"])
        .args(["-p", &target.port.to_string(), "-U", target.user])
        .args(["-c", &w.clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()]);
    if w.inserts {
        command
            .arg("-l")
            .arg("--log-prefix")
            .arg(dir.path().join("txn"));
    }
    let out = command
        .arg("-f")
        .arg(&script)
        .arg(target.db)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {stdout}{}",
            w.label,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> anyhow::Result<f64> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no `{prefix}` in pgbench's output: {stdout}"))
    };
    let percentiles = if w.inserts {
        Some(percentiles(dir.path())?)
    } else {
        None
    };
    Ok(Run {
        tps: field("tps = ")?,
        latency_ms: field("latency average = ")?,
        percentiles,
        transactions: field("number of transactions actually processed: ")? as u64,
    })
}

/// p50 and p99 latency (ms) of the transactions in pgbench's per-transaction logs (`-l`) in
/// `dir`: each line is `client transaction latency_us script epoch_s epoch_us`.
fn percentiles(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("txn"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|f| f.parse().ok()) {
                latencies.record(us)?;
            }
        }
    }
    if latencies.is_empty() {
        bail!("pgbench wrote no transaction log in {}", dir.display());
    }
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99)))
}

/// A run's latency: the mean, and p50 and p99 where measured.
fn latency(run: &Run) -> String {
    let mut out = format!("{:>7.3} ms mean", run.latency_ms);
    if let Some((p50, p99)) = run.percentiles {
        out += &format!(", p50 {p50:.3} ms, p99 {p99:.3} ms");
    }
    out
}

/// fdatasyncs and appends so far across the partitions of Eddy's stream `t`.
fn log_counters(server: &eddy_server::RunningServer) -> anyhow::Result<(u64, u64)> {
    let (_, topic) = server.engine().stream("t")?;
    Ok(topic.partitions().iter().fold((0, 0), |(f, a), log| {
        let s = log.stats();
        (f + s.fsyncs, a + s.appends)
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("EDDY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| s.ceil().max(1.0) as u64)
        .unwrap_or(5);
    let keys: u64 = std::env::var("EDDY_SMALL_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let Some(bin) = postgres::find_postgres_bin().filter(|b| b.join("pgbench").is_file()) else {
        println!("postgresql: not installed (no initdb and pgbench under /usr/lib/postgresql)");
        return Ok(());
    };
    let insert = "INSERT INTO t VALUES (1, 'abcdefghij', 42);\n".to_string();
    let mut workloads = vec![
        Workload {
            label: "INSERT, 1 connection",
            script: insert.clone(),
            clients: 1,
            inserts: true,
        },
        Workload {
            label: "INSERT, 8 connections",
            script: insert.clone(),
            clients: 8,
            inserts: true,
        },
        Workload {
            label: "INSERT, 64 connections",
            script: insert,
            clients: 64,
            inserts: true,
        },
        Workload {
            label: "SELECT 1, 2 connections",
            script: "SELECT 1;\n".into(),
            clients: 2,
            inserts: false,
        },
    ];
    // Reads by key on 1, 2 and 8 connections.
    for (label, clients) in [
        ("read by key, 1 connection", 1),
        ("read by key, 2 connections", 2),
        ("read by key, 8 connections", 8),
    ] {
        workloads.push(Workload {
            label,
            script: format!("\\set k random(1, {keys})\nSELECT v FROM kv WHERE k = :k;\n"),
            clients,
            inserts: false,
        });
    }

    // Eddy.
    let dir = tempfile::tempdir()?;
    let server = eddy_server::start(ServerConfig::for_dir(dir.path())).await?;
    let port = server.addr.port();
    let admin = connect(port, "eddy", "eddy").await?;
    admin
        .batch_execute(
            "CREATE STREAM t (id BIGINT, name VARCHAR, x BIGINT); \
             CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT)",
        )
        .await?;
    load_keys(&admin, keys).await?;
    let eddy_target = Target {
        port,
        user: "eddy",
        db: "eddy",
    };
    let mut eddy = Vec::new();
    let mut inserted = 0;
    for w in &workloads {
        let before = log_counters(&server)?;
        let run = pgbench(&bin, &eddy_target, w, seconds)?;
        let after = log_counters(&server)?;
        let mut line = format!(
            "      eddy: {:<28} {:>9.0} tps, {}",
            w.label,
            run.tps,
            latency(&run)
        );
        if w.inserts {
            inserted += run.transactions;
            let (fsyncs, appends) = (after.0 - before.0, after.1 - before.1);
            line += &format!(
                ", {:>6.0} fdatasyncs/s, {:.1} INSERTs per fdatasync",
                fsyncs as f64 / seconds as f64,
                appends as f64 / fsyncs.max(1) as f64
            );
        }
        println!("{line}");
        eddy.push(run);
    }
    let count: i64 = admin.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(
        count as u64, inserted,
        "Eddy: rows in t vs INSERTs pgbench saw acknowledged"
    );
    drop(admin);
    server.shutdown().await?;

    // PostgreSQL, the same workloads.
    let mut pg = postgres::PgCluster::start(bin.clone())?;
    let client = pg.connect().await?;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT, name TEXT, x BIGINT); \
             CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT)",
        )
        .await?;
    client
        .execute(
            "INSERT INTO kv SELECT k, k * 2 FROM generate_series(1, $1::bigint) AS k",
            &[&(keys as i64)],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE kv").await?;
    let user = pg.user_name();
    let pg_target = Target {
        port: pg.port,
        user: &user,
        db: "postgres",
    };
    for (w, e) in workloads.iter().zip(&eddy) {
        let run = pgbench(&bin, &pg_target, w, seconds)?;
        println!(
            "postgresql: {:<28} {:>9.0} tps, {}   eddy / postgresql: {:.2}x",
            w.label,
            run.tps,
            latency(&run),
            e.tps / run.tps
        );
    }
    Ok(())
}

/// `keys` rows into Eddy's `kv` by COPY, then waits until pull queries see the last one.
async fn load_keys(client: &Client, keys: u64) -> anyhow::Result<()> {
    use futures::SinkExt;
    let sink = client
        .copy_in("COPY kv FROM STDIN WITH (FORMAT csv)")
        .await?;
    futures::pin_mut!(sink);
    let mut chunk = String::new();
    for k in 1..=keys {
        chunk += &format!("{k},{}\n", k * 2);
        if chunk.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                .await?;
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await?;
    sink.finish().await?;
    for _ in 0..600 {
        let row = client
            .query_opt("SELECT v FROM kv WHERE k = $1", &[&(keys as i64)])
            .await?;
        if row.is_some() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("kv's last key never became readable")
}
