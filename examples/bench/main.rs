//! End-to-end benchmark of Eddy through the PostgreSQL wire protocol, with PostgreSQL itself as
//! the reference in the same run.
//!
//! Measures, on 1,000,000 deterministic rows of about 100 bytes:
//! 1. `COPY ... FROM STDIN` ingest (10 statements of 100k rows, one of 1M rows, and the 10
//!    statements again as CSV with the name quoted and in PostgreSQL's binary format),
//! 2. single-row `INSERT` latency (sequential) and throughput (8 concurrent connections),
//! 3. a `SELECT count(*), sum(x)` scan,
//! 4. the same COPY (text and binary) and scan on a throwaway PostgreSQL cluster (`initdb` under
//!    `/usr/lib/postgresql/*/bin`; skipped with a message when it is not installed).
//!
//! Every count and sum is checked against values computed here; a wrong answer panics. Timings
//! are only printed, never asserted.
//!
//! Run with `cargo run --release --example bench`; `EDDY_BENCH_ROWS=20000` makes a quick run (e.g.
//! of a debug build in CI).

mod binary;
mod postgres;

use postgres::connect;

use postgres::{PgCluster, find_postgres_bin};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{NaiveDate, TimeDelta};
use eddy_server::config::ServerConfig;
use futures::{SinkExt, pin_mut};
use hdrhistogram::Histogram;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Rows ingested by COPY, unless `EDDY_BENCH_ROWS` says otherwise (a multiple of 10, for quick
/// runs of a debug build).
const DEFAULT_ROWS: u64 = 1_000_000;
/// The COPY ingest is split into this many statements.
const COPY_STATEMENTS: u64 = 10;
/// Size of one CopyData message sent by the client.
const CHUNK_BYTES: usize = 1 << 20;
/// Sequential single-row INSERTs.
const SEQUENTIAL_INSERTS: u64 = 2_000;
/// Concurrent connections for the INSERT throughput figure, and INSERTs per connection.
const INSERT_CONNECTIONS: u64 = 8;
const INSERTS_PER_CONNECTION: u64 = 500;
/// Runs of the scan query.
const SCAN_RUNS: usize = 3;

const COLUMNS: &str = "id BIGINT, x BIGINT, name VARCHAR, v DOUBLE, ts TIMESTAMP";
const PG_COLUMNS: &str = "id BIGINT, x BIGINT, name VARCHAR, v DOUBLE PRECISION, ts TIMESTAMP";
const SCAN: &str = "SELECT count(*), sum(x) FROM s";

/// The COPY text of all rows, cut into statements and ~1 MiB chunks on line boundaries.
struct Dataset {
    /// Number of rows.
    rows: u64,
    /// One entry per COPY statement; each is the chunks sent for it.
    statements: Vec<Vec<Bytes>>,
    /// Total bytes of COPY text.
    bytes: u64,
    /// The same rows as CSV (the name quoted), cut into the same statements and chunks.
    csv_statements: Vec<Vec<Bytes>>,
    /// Total bytes of CSV.
    csv_bytes: u64,
    /// The same rows in binary COPY format, cut into the same statements and chunks.
    binary_statements: Vec<Vec<Bytes>>,
    /// Total bytes of binary COPY data.
    binary_bytes: u64,
    /// Sum of the `x` column over all rows.
    sum_x: i128,
}

/// Appends row `i` as a line of COPY text format (~100 bytes); returns its `x`.
fn push_row(i: u64, out: &mut String) -> i64 {
    const ALPHABET: &str =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let x = ((i * 7_919) % 100_003) as i64 - 50_000;
    let start = (i % 26) as usize;
    let filler = &ALPHABET[start..start + 49];
    let v = (i % 1_000) as f64 / 8.0;
    let base = NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date");
    let ts = base + TimeDelta::seconds(i as i64);
    out.push_str(&format!(
        "{i}\t{x}\tuser{i:07}-{filler}\t{v}\t{}\n",
        ts.format("%Y-%m-%d %H:%M:%S")
    ));
    x
}

fn generate(rows: u64) -> Dataset {
    let per_statement = rows / COPY_STATEMENTS;
    let mut statements = Vec::new();
    let mut bytes = 0u64;
    let mut sum_x = 0i128;
    for s in 0..COPY_STATEMENTS {
        let mut chunks = Vec::new();
        let mut chunk = String::with_capacity(CHUNK_BYTES + 256);
        for i in s * per_statement..(s + 1) * per_statement {
            sum_x += i128::from(push_row(i, &mut chunk));
            if chunk.len() >= CHUNK_BYTES {
                bytes += chunk.len() as u64;
                chunks.push(Bytes::from(std::mem::replace(
                    &mut chunk,
                    String::with_capacity(CHUNK_BYTES + 256),
                )));
            }
        }
        if !chunk.is_empty() {
            bytes += chunk.len() as u64;
            chunks.push(Bytes::from(chunk));
        }
        statements.push(chunks);
    }
    let (csv_statements, csv_bytes) = to_csv(&statements);
    let (binary_statements, binary_bytes) = binary::to_binary(&statements);
    Dataset {
        rows,
        statements,
        bytes,
        csv_statements,
        csv_bytes,
        binary_statements,
        binary_bytes,
        sum_x,
    }
}

/// The COPY text chunks as CSV: fields split by commas, the name (third field) quoted.
fn to_csv(statements: &[Vec<Bytes>]) -> (Vec<Vec<Bytes>>, u64) {
    let mut bytes = 0u64;
    let csv = statements
        .iter()
        .map(|chunks| {
            chunks
                .iter()
                .map(|chunk| {
                    let mut out = String::with_capacity(chunk.len() + chunk.len() / 40);
                    for line in String::from_utf8_lossy(chunk).lines() {
                        for (i, field) in line.split('\t').enumerate() {
                            match i {
                                0 => out.push_str(field),
                                2 => {
                                    out.push_str(",\"");
                                    out.push_str(field);
                                    out.push('"');
                                }
                                _ => {
                                    out.push(',');
                                    out.push_str(field);
                                }
                            }
                        }
                        out.push('\n');
                    }
                    bytes += out.len() as u64;
                    Bytes::from(out)
                })
                .collect()
        })
        .collect();
    (csv, bytes)
}

/// Sends `chunks` as the data of one `statement` (a COPY FROM STDIN); returns the row count
/// reported.
async fn copy_in(client: &Client, statement: &str, chunks: &[Bytes]) -> anyhow::Result<u64> {
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    pin_mut!(sink);
    for chunk in chunks {
        sink.as_mut().send(chunk.clone()).await?;
    }
    Ok(sink.finish().await?)
}

/// Runs each group of chunks as one COPY into `table` (`options` after `FROM STDIN`); checks
/// the counts; returns the elapsed time.
async fn timed_copy(
    client: &Client,
    table: &str,
    options: &str,
    statements: &[Vec<Bytes>],
    rows: u64,
) -> anyhow::Result<Duration> {
    let statement = format!("COPY {table} FROM STDIN {options}");
    let start = Instant::now();
    let mut copied = 0;
    for chunks in statements {
        copied += copy_in(client, &statement, chunks).await?;
    }
    let elapsed = start.elapsed();
    assert_eq!(
        copied, rows,
        "{statement} reported {copied} rows, expected {rows}"
    );
    Ok(elapsed)
}

/// Runs `statements` as COPYs into `table` (`options` after `FROM STDIN`), prints their rate as
/// `who`, and checks the table's count and sum of `x`; returns the elapsed time.
async fn copy_and_check(
    client: &Client,
    who: &str,
    table: &str,
    options: &str,
    statements: &[Vec<Bytes>],
    bytes: u64,
    data: &Dataset,
) -> anyhow::Result<Duration> {
    let rows = data.rows;
    let elapsed = timed_copy(client, table, options, statements, rows).await?;
    println!(
        "{who}: COPY {} ({} x {} rows): {:.2} s = {} rows/s, {:.1} MB/s",
        format!("{table} {options}").trim_end(),
        statements.len(),
        rows / statements.len() as u64,
        elapsed.as_secs_f64(),
        human(rate(rows, elapsed)),
        rate(bytes, elapsed) / 1e6
    );
    let sql = format!("SELECT count(*), sum(x) FROM {table}");
    let (count, sum) = count_and_sum(client, &sql).await?;
    assert_eq!(
        (count, sum),
        (rows, data.sum_x),
        "{who}: {table} (count, sum) after COPY"
    );
    Ok(elapsed)
}

/// The first row of a simple query, as text cells.
async fn first_row(client: &Client, sql: &str) -> anyhow::Result<Vec<Option<String>>> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok((0..row.len())
                .map(|i| row.get(i).map(str::to_string))
                .collect());
        }
    }
    bail!("{sql} returned no row")
}

/// Runs `SELECT count(*), sum(x)` and returns both (a sum of BIGINT is NUMERIC in PostgreSQL).
async fn count_and_sum(client: &Client, sql: &str) -> anyhow::Result<(u64, i128)> {
    let row = first_row(client, sql).await?;
    let cell = |i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .with_context(|| format!("{sql}: column {i} is NULL"))
    };
    let count = cell(0)?
        .parse()
        .with_context(|| format!("{sql}: count {row:?}"))?;
    let sum = cell(1)?
        .parse()
        .with_context(|| format!("{sql}: sum {row:?}"))?;
    Ok((count, sum))
}

/// Runs the scan [`SCAN_RUNS`] times, checking the answer each time; returns the sorted durations.
async fn timed_scans(
    client: &Client,
    system: &str,
    expected: (u64, i128),
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..SCAN_RUNS {
        let start = Instant::now();
        let got = count_and_sum(client, SCAN).await?;
        times.push(start.elapsed());
        assert_eq!(
            got, expected,
            "{system}: {SCAN} returned (count, sum) {got:?}, expected {expected:?}"
        );
    }
    times.sort();
    Ok(times)
}

/// One row of the INSERT stream as a VALUES list.
fn insert_sql(i: u64) -> String {
    let x = (i % 1_000) as i64;
    format!(
        "INSERT INTO ins VALUES ({i}, {x}, 'insert-row-{i:07}', {}.5, '2024-06-01 12:00:00')",
        i % 100
    )
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// `1234567.0` → `1.23M`, `43210.0` → `43.2k`.
fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

struct EddyFigures {
    copy: Duration,
    single_copy: Duration,
    csv_copy: Duration,
    binary_copy: Duration,
    insert_p50_us: u64,
    insert_p99_us: u64,
    insert_max_us: u64,
    concurrent: Duration,
    concurrent_p50_us: u64,
    concurrent_p99_us: u64,
    scans: Vec<Duration>,
}

struct PgFigures {
    version: String,
    copy: Duration,
    binary_copy: Duration,
    scans: Vec<Duration>,
}

async fn bench_eddy(data: &Dataset) -> anyhow::Result<EddyFigures> {
    let rows = data.rows;
    let dir = tempfile::tempdir()?;
    let server = eddy_server::start(ServerConfig::for_dir(dir.path())).await?;
    let port = server.addr.port();
    println!(
        "eddy: listening on {} (data in {})",
        server.addr,
        dir.path().display()
    );
    let client = connect(port, "eddy", "eddy").await?;
    client
        .batch_execute(&format!("CREATE STREAM s ({COLUMNS}) WITH (partitions=1)"))
        .await?;
    client
        .batch_execute(&format!(
            "CREATE STREAM s_single ({COLUMNS}) WITH (partitions=1)"
        ))
        .await?;
    client
        .batch_execute(&format!(
            "CREATE STREAM ins ({COLUMNS}) WITH (partitions=1)"
        ))
        .await?;
    client
        .batch_execute(&format!(
            "CREATE STREAM s_csv ({COLUMNS}) WITH (partitions=1)"
        ))
        .await?;
    client
        .batch_execute(&format!(
            "CREATE STREAM s_binary ({COLUMNS}) WITH (partitions=1)"
        ))
        .await?;

    // 1. COPY: 10 statements of 100k rows, then all rows in one statement into another stream.
    let copy = copy_and_check(&client, "eddy", "s", "", &data.statements, data.bytes, data).await?;
    let all = [data.statements.concat()];
    let single_copy =
        copy_and_check(&client, "eddy", "s_single", "", &all, data.bytes, data).await?;
    // ... and the same statements in CSV.
    let csv_copy = copy_and_check(
        &client,
        "eddy",
        "s_csv",
        "WITH (FORMAT csv)",
        &data.csv_statements,
        data.csv_bytes,
        data,
    )
    .await?;
    // ... and in binary.
    let binary_copy = copy_and_check(
        &client,
        "eddy",
        "s_binary",
        "WITH (FORMAT binary)",
        &data.binary_statements,
        data.binary_bytes,
        data,
    )
    .await?;

    // 2. INSERT latency, one connection, one row at a time.
    let mut sequential = new_histogram();
    for i in 0..SEQUENTIAL_INSERTS {
        let start = Instant::now();
        client.batch_execute(&insert_sql(i)).await?;
        sequential.record(start.elapsed().as_micros() as u64)?;
    }
    println!(
        "eddy: {SEQUENTIAL_INSERTS} sequential INSERTs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(sequential.value_at_quantile(0.5)),
        ms(sequential.value_at_quantile(0.99)),
        ms(sequential.max())
    );

    // ... and throughput from concurrent connections (group commit shares the fsyncs).
    let mut clients = Vec::new();
    for _ in 0..INSERT_CONNECTIONS {
        clients.push(connect(port, "eddy", "eddy").await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, conn) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let first = SEQUENTIAL_INSERTS + c as u64 * INSERTS_PER_CONNECTION;
            for i in first..first + INSERTS_PER_CONNECTION {
                let start = Instant::now();
                conn.batch_execute(&insert_sql(i)).await?;
                histogram.record(start.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut concurrent_histogram = new_histogram();
    for task in tasks {
        concurrent_histogram.add(task.await??)?;
    }
    let concurrent = start.elapsed();
    let total_inserts = INSERT_CONNECTIONS * INSERTS_PER_CONNECTION;
    println!(
        "eddy: {INSERT_CONNECTIONS} connections x {INSERTS_PER_CONNECTION} INSERTs: {:.2} s = {:.0} inserts/s \
         (p50 {:.2} ms, p99 {:.2} ms)",
        concurrent.as_secs_f64(),
        rate(total_inserts, concurrent),
        ms(concurrent_histogram.value_at_quantile(0.5)),
        ms(concurrent_histogram.value_at_quantile(0.99))
    );
    let expected_inserts = SEQUENTIAL_INSERTS + total_inserts;
    let (count, _) = count_and_sum(&client, "SELECT count(*), sum(x) FROM ins").await?;
    assert_eq!(
        count, expected_inserts,
        "eddy: count(*) of ins is {count}, expected {expected_inserts}"
    );

    // 3. Scan.
    let scans = timed_scans(&client, "eddy", (rows, data.sum_x)).await?;
    println!("eddy: {SCAN} x {SCAN_RUNS}: {}", scan_times(&scans));

    drop(client);
    server.shutdown().await?;
    Ok(EddyFigures {
        copy,
        single_copy,
        csv_copy,
        binary_copy,
        insert_p50_us: sequential.value_at_quantile(0.5),
        insert_p99_us: sequential.value_at_quantile(0.99),
        insert_max_us: sequential.max(),
        concurrent,
        concurrent_p50_us: concurrent_histogram.value_at_quantile(0.5),
        concurrent_p99_us: concurrent_histogram.value_at_quantile(0.99),
        scans,
    })
}

fn scan_times(scans: &[Duration]) -> String {
    scans
        .iter()
        .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(", ")
}

fn best_and_median(rows: u64, scans: &[Duration]) -> (f64, f64) {
    (rate(rows, scans[0]), rate(rows, scans[scans.len() / 2]))
}

async fn bench_postgres(bin: PathBuf, data: &Dataset) -> anyhow::Result<PgFigures> {
    let rows = data.rows;
    let mut cluster = tokio::task::spawn_blocking(move || PgCluster::start(bin)).await??;
    let client = cluster.connect().await?;
    let version = first_row(&client, "SHOW server_version")
        .await?
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default();
    println!(
        "postgres {version}: listening on 127.0.0.1:{} (fsync=on, synchronous_commit=on)",
        cluster.port
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE s ({PG_COLUMNS}); CREATE TABLE s_binary ({PG_COLUMNS})"
        ))
        .await?;

    let copy = copy_and_check(
        &client,
        "postgres",
        "s",
        "",
        &data.statements,
        data.bytes,
        data,
    )
    .await?;
    let binary_copy = copy_and_check(
        &client,
        "postgres",
        "s_binary",
        "WITH (FORMAT binary)",
        &data.binary_statements,
        data.binary_bytes,
        data,
    )
    .await?;
    // A fresh table's hint bits and visibility map are set by the first reads; VACUUM does that
    // work up front, as it would have happened by the time a real table is queried.
    client.batch_execute("VACUUM ANALYZE s").await?;
    let scans = timed_scans(&client, "postgres", (rows, data.sum_x)).await?;
    println!("postgres: {SCAN} x {SCAN_RUNS}: {}", scan_times(&scans));
    drop(client);
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(PgFigures {
        version,
        copy,
        binary_copy,
        scans,
    })
}

// Not `#[tokio::main]`: the server's runtime has the stack its planning needs.
fn main() -> anyhow::Result<()> {
    eddy_server::runtime()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    // `RUST_LOG=eddy_sql=debug` shows each COPY's receive/decode/append times.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let start = Instant::now();
    let rows = match std::env::var("EDDY_BENCH_ROWS") {
        Ok(v) => v.parse().context("EDDY_BENCH_ROWS must be a number")?,
        Err(_) => DEFAULT_ROWS,
    };
    if rows == 0 || !rows.is_multiple_of(COPY_STATEMENTS) {
        bail!("EDDY_BENCH_ROWS must be a positive multiple of {COPY_STATEMENTS}");
    }
    let data = tokio::task::spawn_blocking(move || generate(rows)).await?;
    println!(
        "generated {rows} rows, {:.1} MB of COPY text ({:.0} bytes/row) in {:.2} s",
        data.bytes as f64 / 1e6,
        data.bytes as f64 / rows as f64,
        start.elapsed().as_secs_f64()
    );

    let eddy = bench_eddy(&data).await?;
    let pg = match find_postgres_bin() {
        None => {
            println!(
                "PostgreSQL reference skipped: initdb not found under /usr/lib/postgresql/*/bin"
            );
            None
        }
        Some(bin) => match bench_postgres(bin, &data).await {
            Ok(figures) => Some(figures),
            Err(e) => {
                println!("PostgreSQL reference skipped: {e:#}");
                None
            }
        },
    };

    let copy_rate = rate(rows, eddy.copy);
    let (scan_best, scan_median) = best_and_median(rows, &eddy.scans);
    let copy_reference = match &pg {
        Some(pg) => {
            let pg_rate = rate(rows, pg.copy);
            format!(
                "(PostgreSQL: {} rows/s, ratio {:.2}x)",
                human(pg_rate),
                copy_rate / pg_rate
            )
        }
        None => "(PostgreSQL: skipped)".into(),
    };
    let scan_reference = match &pg {
        Some(pg) => {
            let (pg_best, pg_median) = best_and_median(rows, &pg.scans);
            format!(
                "(PostgreSQL: best {} rows/s, median {} rows/s, ratio {:.2}x best, {:.2}x median)",
                human(pg_best),
                human(pg_median),
                scan_best / pg_best,
                scan_median / pg_median
            )
        }
        None => "(PostgreSQL: skipped)".into(),
    };

    println!();
    println!("== Eddy benchmark ({profile}, {cores} cores) ==");
    println!(
        "copy ingest   : {rows} rows in {:.2} s = {} rows/s, {:.1} MB/s ({COPY_STATEMENTS} COPYs)   {copy_reference}",
        eddy.copy.as_secs_f64(),
        human(copy_rate),
        rate(data.bytes, eddy.copy) / 1e6
    );
    println!(
        "single COPY   : {rows} rows in {:.2} s = {} rows/s, {:.1} MB/s",
        eddy.single_copy.as_secs_f64(),
        human(rate(rows, eddy.single_copy)),
        rate(data.bytes, eddy.single_copy) / 1e6
    );
    println!(
        "csv COPY      : {rows} rows in {:.2} s = {} rows/s, {:.1} MB/s ({COPY_STATEMENTS} COPYs, name quoted)",
        eddy.csv_copy.as_secs_f64(),
        human(rate(rows, eddy.csv_copy)),
        rate(data.csv_bytes, eddy.csv_copy) / 1e6
    );
    let binary_reference = match &pg {
        Some(pg) => format!(
            "(PostgreSQL binary: {} rows/s, ratio {:.2}x)",
            human(rate(rows, pg.binary_copy)),
            rate(rows, eddy.binary_copy) / rate(rows, pg.binary_copy)
        ),
        None => "(PostgreSQL: skipped)".into(),
    };
    println!(
        "binary COPY   : {rows} rows in {:.2} s = {} rows/s, {:.1} MB/s ({COPY_STATEMENTS} COPYs)   {binary_reference}",
        eddy.binary_copy.as_secs_f64(),
        human(rate(rows, eddy.binary_copy)),
        rate(data.binary_bytes, eddy.binary_copy) / 1e6
    );
    println!(
        "insert latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({SEQUENTIAL_INSERTS} sequential); \
         {INSERT_CONNECTIONS} conns: {:.0} inserts/s (p50 {:.2} ms, p99 {:.2} ms)",
        ms(eddy.insert_p50_us),
        ms(eddy.insert_p99_us),
        ms(eddy.insert_max_us),
        rate(INSERT_CONNECTIONS * INSERTS_PER_CONNECTION, eddy.concurrent),
        ms(eddy.concurrent_p50_us),
        ms(eddy.concurrent_p99_us)
    );
    println!(
        "scan count/sum: best {} rows/s, median {} rows/s   {scan_reference}",
        human(scan_best),
        human(scan_median)
    );
    if let Some(pg) = &pg {
        println!(
            "reference     : PostgreSQL {}, fsync=on, synchronous_commit=on, same rows and COPY chunks",
            pg.version
        );
    }
    println!("all answers checked: counts and sums as expected");
    Ok(())
}
