//! Cold-tier benchmark: the same rows scanned hot (local segments) and cold (Parquet objects
//! in the cold store), next to DataFusion reading the very same Parquet files directly, plus
//! tiering throughput and a selective query that touches only the objects it needs.
//!
//! Runs Eddy's engine in process (no network between the SQL session and storage, as in the
//! server). Stores: the local directory (always) and, when `moto` is installed
//! (`pip install 'moto[server]'`), a real S3-compatible server on loopback.
//!
//! Every count and sum is checked against values computed here; timings are only printed.
//!
//! `cargo run --release --example tier_bench`; `EDDY_BENCH_ROWS=20000` for a quick run,
//! `EDDY_BENCH_S3_ROWS` (default: min(rows, 2M); moto is a Python server) for the S3 part.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use eddy_sql::{Engine, EngineConfig, Output, Session};
use futures::TryStreamExt;

#[path = "../tests/support/moto.rs"]
mod moto;

const DEFAULT_ROWS: u64 = 10_000_000;
const PARTITIONS: u32 = 2;
const RUNS: usize = 3;
/// Rows per COPY statement: at most 500k, and ~20 statements in small runs (each statement
/// appends at least one batch per partition, and segments roll between appends).
fn copy_rows(rows: u64) -> u64 {
    (rows / 20).clamp(1_000, 500_000)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one statement and collects its rows.
async fn query(session: &Session, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut out = vec![];
    for stmt in session.parse(sql)? {
        if let Output::Rows { stream, .. } = session.execute(&stmt, None).await? {
            out = stream.try_collect().await?;
        }
    }
    Ok(out)
}

fn int(batches: &[RecordBatch], col: usize) -> anyhow::Result<i64> {
    let b = batches.first().context("no rows")?;
    let a = b
        .column(col)
        .as_any()
        .downcast_ref::<Int64Array>()
        .context("not BIGINT")?;
    if a.is_null(0) {
        bail!("NULL");
    }
    Ok(a.value(0))
}

fn text(batches: &[RecordBatch], col: usize) -> anyhow::Result<String> {
    let b = batches.first().context("no rows")?;
    let a = datafusion::arrow::array::as_string_array(b.column(col));
    if b.num_rows() == 0 || a.is_null(0) {
        bail!("no value");
    }
    Ok(a.value(0).to_string())
}

/// Row i as COPY text: id, x, a ~60-byte name, ts. Returns x.
fn push_row(i: u64, out: &mut String) -> i64 {
    let x = ((i * 7_919) % 100_003) as i64 - 50_000;
    out.push_str(&format!(
        "{i}\t{x}\tuser{i:08}-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW\t{}\n",
        1_700_000_000_000i64 + i as i64
    ));
    x
}

/// Segments of at most 32 MiB, and at least ~8 per partition so small runs tier too.
fn segment_bytes(rows: u64) -> u64 {
    (rows * 110 / u64::from(PARTITIONS) / 8).clamp(64 << 10, 32 << 20)
}

/// Creates `name` and COPYs rows 0..rows into it; returns sum(x).
async fn load(session: &Session, name: &str, with: &str, rows: u64) -> anyhow::Result<i128> {
    query(
        session,
        &format!(
            "CREATE STREAM {name} (id BIGINT, x BIGINT, name VARCHAR, ts BIGINT) \
             WITH (partitions={PARTITIONS}, timestamp='ts', segment_bytes={}{with})",
            segment_bytes(rows)
        ),
    )
    .await?;
    let mut sum: i128 = 0;
    let mut i = 0;
    while i < rows {
        let end = (i + copy_rows(rows)).min(rows);
        let mut text = String::with_capacity(((end - i) * 100) as usize);
        for k in i..end {
            sum += i128::from(push_row(k, &mut text));
        }
        let stmt = session.parse(&format!("COPY {name} FROM STDIN"))?;
        let Output::CopyIn(copy) = session.execute(&stmt[0], None).await? else {
            bail!("COPY did not start");
        };
        session.copy_in(&copy, text.as_bytes()).await?;
        i = end;
    }
    Ok(sum)
}

/// Best of [`RUNS`] of `count(*), sum(x)` through `run`, checked against `rows` and `sum`.
async fn best_scan<F, Fut>(label: &str, rows: u64, sum: i128, run: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<RecordBatch>>>,
{
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let batches = run().await?;
        let elapsed = start.elapsed();
        let (n, s) = (int(&batches, 0)?, int(&batches, 1)?);
        if n as u64 != rows || i128::from(s) != sum {
            bail!("{label}: got count {n} sum {s}, expected {rows} and {sum}");
        }
        best = best.min(elapsed);
    }
    let rate = rows as f64 / best.as_secs_f64();
    println!(
        "  {label:<44} {:>8.1} ms  {:>7.1}M rows/s",
        best.as_secs_f64() * 1e3,
        rate / 1e6
    );
    Ok(rate)
}

/// Tiers every closed segment of `stream` and prints the throughput.
async fn tier_all(engine: &Engine, session: &Session, stream: &str) -> anyhow::Result<()> {
    let local = query(
        session,
        &format!(
            "SELECT CAST(coalesce(sum(bytes), 0) AS BIGINT), CAST(count(*) AS BIGINT) FROM eddy.segments \
             WHERE stream = '{stream}' AND NOT active"
        ),
    )
    .await?;
    let (bytes_in, segments) = (int(&local, 0)?, int(&local, 1)?);
    let start = Instant::now();
    let mut tiered = 0;
    while tiered < segments as usize {
        let n = engine.tier_pass().await;
        if n == 0 {
            let status = query(
                session,
                "SELECT CAST(max(consecutive_failures) AS BIGINT) FROM eddy.tiering",
            )
            .await?;
            if int(&status, 0)? > 0 {
                bail!("tiering failed; see eddy.tiering");
            }
        }
        tiered += n;
    }
    let elapsed = start.elapsed();
    let cold = query(
        session,
        &format!(
            "SELECT CAST(sum(bytes) AS BIGINT), CAST(sum(rows) AS BIGINT) FROM eddy.segments \
             WHERE stream = '{stream}' AND tier = 'cold'"
        ),
    )
    .await?;
    let (bytes_out, rows_cold) = (int(&cold, 0)?, int(&cold, 1)?);
    println!(
        "  tiered {segments} segments, {rows_cold} rows: {:.1} MB of segments -> {:.1} MB of Parquet in {:.2} s = {:.1} MB/s in, {:.1} MB/s out",
        bytes_in as f64 / 1e6,
        bytes_out as f64 / 1e6,
        elapsed.as_secs_f64(),
        bytes_in as f64 / 1e6 / elapsed.as_secs_f64(),
        bytes_out as f64 / 1e6 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// The selective query: the first 1% of offsets of each partition. Prints time and what the
/// scan read (objects, row groups pruned) from EXPLAIN ANALYZE.
async fn selective(session: &Session, stream: &str, rows: u64) -> anyhow::Result<()> {
    let cut = (rows / u64::from(PARTITIONS) / 100).max(1);
    let sql = format!("SELECT count(*), sum(x) FROM {stream} WHERE rowoffset < {cut}");
    let start = Instant::now();
    let batches = query(session, &sql).await?;
    let elapsed = start.elapsed();
    let n = int(&batches, 0)?;
    if n as u64 != cut * u64::from(PARTITIONS) {
        bail!("{sql}: {n} rows, expected {}", cut * u64::from(PARTITIONS));
    }
    let plan = query(session, &format!("EXPLAIN ANALYZE {sql}")).await?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)?.to_string();
    let scan = text
        .lines()
        .find(|l| l.contains("StreamScanExec"))
        .unwrap_or("")
        .trim_matches(|c: char| c == '|' || c.is_whitespace())
        .to_string();
    println!(
        "  selective `rowoffset < {cut}`: {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    println!("    {scan}");
    Ok(())
}

/// A plain DataFusion context on both cores that lists files in subdirectories (one per
/// partition) of the table's location.
fn raw_context() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2).set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    ))
}

/// DataFusion on the raw Parquet files registered as `raw`.
async fn raw_scan(ctx: &SessionContext) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(ctx
        .sql("SELECT count(*), sum(x) FROM raw")
        .await?
        .collect()
        .await?)
}

async fn bench_store(
    label: &str,
    dir: &Path,
    cold_url: String,
    raw_root: String,
    raw_ctx: &SessionContext,
    rows: u64,
) -> anyhow::Result<()> {
    println!("\n{label} ({rows} rows, {PARTITIONS} partitions)");
    let mut config = EngineConfig::new(dir);
    config.cold_store = Some(cold_url);
    let engine = Engine::open(config).await?;
    let session = engine.session();
    let start = Instant::now();
    let sum = load(&session, "hot", "", rows).await?;
    let sum2 = load(&session, "cold", ", local_retention_bytes=1", rows).await?;
    assert_eq!(sum, sum2);
    println!(
        "  loaded 2 x {rows} rows by COPY in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    tier_all(&engine, &session, "cold").await?;
    let cold_rows = int(
        &query(
            &session,
            "SELECT CAST(sum(rows) AS BIGINT) FROM eddy.segments WHERE stream = 'cold' AND tier = 'cold'",
        )
        .await?,
        0,
    )?;
    println!("  {cold_rows} of {rows} rows are cold (the active segments stay local)");

    let scan = "SELECT count(*), sum(x) FROM";
    let (scan_hot, scan_cold) = (format!("{scan} hot"), format!("{scan} cold"));
    let hot = best_scan("Eddy, hot (local segments)", rows, sum, || {
        query(&session, &scan_hot)
    })
    .await?;
    let cold_all = best_scan(
        "Eddy, cold (objects + local active tail)",
        rows,
        sum,
        || query(&session, &scan_cold),
    )
    .await?;
    // The cold objects alone, through Eddy and through DataFusion on the raw files.
    let ends = query(
        &session,
        "SELECT partition, CAST(max(end_offset) AS BIGINT) FROM eddy.segments \
         WHERE stream = 'cold' AND tier = 'cold' GROUP BY partition ORDER BY partition",
    )
    .await?;
    let mut only_cold = vec![];
    for b in &ends {
        let p = b
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .context("partition")?;
        let e = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("end")?;
        for i in 0..b.num_rows() {
            only_cold.push(format!(
                "(rowpartition = {} AND rowoffset < {})",
                p.value(i),
                e.value(i)
            ));
        }
    }
    let only_cold = format!("{scan} cold WHERE {}", only_cold.join(" OR "));
    let expected = query(&session, &only_cold).await?;
    let (n_cold, sum_cold) = (int(&expected, 0)? as u64, i128::from(int(&expected, 1)?));
    if n_cold != cold_rows as u64 {
        bail!("cold rows: eddy.segments says {cold_rows}, the scan counted {n_cold}");
    }
    let eddy_cold = best_scan("Eddy, cold objects only", n_cold, sum_cold, || {
        query(&session, &only_cold)
    })
    .await?;
    // The stream's objects live under its catalog-assigned storage name, not its SQL name.
    let storage = text(
        &query(
            &session,
            "SELECT storage FROM eddy.streams WHERE name = 'cold'",
        )
        .await?,
        0,
    )?;
    let raw_url = format!("{raw_root}{storage}/");
    let _ = raw_ctx.deregister_table("raw");
    raw_ctx
        .register_parquet("raw", &raw_url, ParquetReadOptions::default())
        .await?;
    let raw = best_scan(
        "DataFusion on the same Parquet files",
        n_cold,
        sum_cold,
        || raw_scan(raw_ctx),
    )
    .await?;
    println!(
        "  DataFusion-raw rate / Eddy full cold scan rate: {:.2}x (aim <= 1.25); / Eddy cold-only \
         query rate (an OR filter on rowpartition/rowoffset evaluated per row): {:.2}x; \
         Eddy hot / Eddy full cold scan: {:.2}x",
        raw / cold_all,
        raw / eddy_cold,
        hot / cold_all
    );
    selective(&session, "cold", rows).await?;
    engine.close().await?;
    Ok(())
}

// Not `#[tokio::main]`: the server's runtime has the stack its planning needs.
fn main() -> anyhow::Result<()> {
    eddy_server::runtime()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let rows = env_u64("EDDY_BENCH_ROWS", DEFAULT_ROWS);
    let temp = tempfile::Builder::new()
        .prefix("eddy-tier-bench-")
        .tempdir()?;
    if let Ok(port) = std::env::var("EDDY_BENCH_MOTO_PORT") {
        // The S3 part, run in a child process that has the AWS_* settings in its environment.
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name("bench")
            .build()?;
        let ctx = raw_context();
        ctx.register_object_store(&url::Url::parse("s3://bench")?, Arc::new(s3));
        let s3_rows = env_u64("EDDY_BENCH_S3_ROWS", rows.min(2_000_000));
        return bench_store(
            &format!("S3 cold store (moto on 127.0.0.1:{port})"),
            &temp.path().join("s3"),
            "s3://bench/eddy".into(),
            "s3://bench/eddy/".into(),
            &ctx,
            s3_rows,
        )
        .await;
    }

    let dir = temp.path().join("local");
    let cold_dir = std::path::absolute(dir.join("cold"))?;
    let raw_ctx = raw_context();
    bench_store(
        "local-directory cold store",
        &dir,
        format!("file://{}", cold_dir.display()),
        format!("{}/", cold_dir.display()),
        &raw_ctx,
        rows,
    )
    .await?;

    if !moto::installed() {
        println!("\nS3: skipped (moto is not installed: pip install 'moto[server]')");
        return Ok(());
    }
    let moto = moto::Moto::start()?;
    moto.create_bucket("bench")?;
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let status = Command::new(std::env::current_exe()?)
        .env("EDDY_BENCH_MOTO_PORT", moto.port.to_string())
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .status()?;
    drop(moto);
    if !status.success() {
        bail!("the S3 part failed: {status}");
    }
    Ok(())
}
