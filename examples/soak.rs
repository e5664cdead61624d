//! `kill -9` soak: writers on a 3-partition stream, the server killed at a random moment,
//! restarted, and every statement checked — an acknowledged one must be there whole and once,
//! an unacknowledged one whole or not at all, nothing else.
//!
//! Each round starts the real `eddy` binary (the one built beside this example) on the same
//! data directory, runs three writers for a random 50-1500 ms — single-row INSERTs, 200-row
//! INSERTs, and COPYs of 40,000 rows (more than one 32k-row block, so a COPY is several frames
//! in every partition) —, kills the server with SIGKILL, restarts it and checks the stream.
//! Every row carries its statement's number and a unique id, so the check is one `GROUP BY`.
//!
//! Run with `cargo run --release --example soak` (`EDDY_SOAK_ROUNDS`, default 100). Prints the
//! counts; exits non-zero on any violation.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

#[path = "support/process.rs"]
mod process;

use process::{connect, eddy_binary};

const COPY_ROWS: i64 = 40_000;
const MULTI_ROWS: i64 = 200;
/// Statement numbers of each writer start here, so they never collide.
const WRITER_BASE: [i64; 3] = [0, 1 << 40, 2 << 40];

/// What the writers did: each statement's row count, and whether it was acknowledged.
#[derive(Default)]
struct Ledger {
    statements: HashMap<i64, (i64, bool)>,
}

/// A tiny xorshift generator: the soak needs varied timing, not statistical quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Starts the server on `data` and returns it with its port.
fn start(eddy: &Path, data: &Path, log: &Path) -> anyhow::Result<(Child, u16)> {
    let mut child = Command::new(eddy)
        .args(["server", "--pg-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting eddy")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {line:?}; see {}", log.display()))?;
    Ok((child, port))
}

/// The rows of statement `stmt`: ids `stmt * 1_000_000 + i`.
fn values(stmt: i64, n: i64) -> impl Iterator<Item = (i64, i64)> {
    (0..n).map(move |i| (stmt * 1_000_000 + i, stmt))
}

async fn copy(client: &Client, stmt: i64) -> Result<u64, tokio_postgres::Error> {
    let data: String = values(stmt, COPY_ROWS)
        .map(|(id, s)| format!("{id}\t{s}\tcopy\n"))
        .collect();
    let sink = client.copy_in::<_, Bytes>("COPY soak FROM STDIN").await?;
    pin_mut!(sink);
    sink.as_mut().send(Bytes::from(data)).await?;
    sink.finish().await
}

async fn insert(client: &Client, stmt: i64, n: i64) -> Result<(), tokio_postgres::Error> {
    let rows: Vec<String> = values(stmt, n)
        .map(|(id, s)| format!("({id}, {s}, 'insert')"))
        .collect();
    client
        .batch_execute(&format!("INSERT INTO soak VALUES {}", rows.join(", ")))
        .await
}

/// Writes statements until the connection dies, recording each before it is sent.
async fn writer(client: Client, kind: usize, next: Arc<Mutex<i64>>, ledger: Arc<Mutex<Ledger>>) {
    loop {
        let stmt = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n
        };
        let rows = [1, MULTI_ROWS, COPY_ROWS][kind];
        ledger
            .lock()
            .unwrap()
            .statements
            .insert(stmt, (rows, false));
        let ok = match kind {
            0 | 1 => insert(&client, stmt, rows).await.is_ok(),
            _ => copy(&client, stmt).await.is_ok(),
        };
        if !ok {
            return;
        }
        if let Some(s) = ledger.lock().unwrap().statements.get_mut(&stmt) {
            s.1 = true;
        }
    }
}

#[derive(Default, Debug)]
struct Counts {
    rounds: u64,
    acked: u64,
    acked_rows: u64,
    unacked_kept_whole: u64,
    unacked_absent: u64,
    lost_acked: u64,
    partial: u64,
    duplicated: u64,
    unknown: u64,
}

/// Checks the stream against the ledger; returns the statements the stream holds.
async fn check(
    client: &Client,
    ledger: &Ledger,
    counts: &mut Counts,
) -> anyhow::Result<std::collections::BTreeSet<i64>> {
    let rows = client
        .query(
            "SELECT stmt, count(*), count(DISTINCT id) FROM soak GROUP BY stmt",
            &[],
        )
        .await?;
    let found: BTreeMap<i64, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), (r.get::<_, i64>(1), r.get::<_, i64>(2))))
        .collect();
    for (&stmt, &(n, distinct)) in &found {
        if n != distinct {
            counts.duplicated += 1;
            eprintln!("statement {stmt}: {n} rows but {distinct} distinct ids");
        }
        match ledger.statements.get(&stmt) {
            None => {
                counts.unknown += 1;
                eprintln!("statement {stmt}: {n} rows of a statement never sent");
            }
            Some(&(want, _)) if distinct != want => {
                counts.partial += 1;
                eprintln!("statement {stmt}: {distinct} of its {want} rows");
            }
            Some(_) => {}
        }
    }
    for (&stmt, &(want, acked)) in &ledger.statements {
        let present = found.contains_key(&stmt);
        match (acked, present) {
            (true, true) => {}
            (true, false) => {
                counts.lost_acked += 1;
                eprintln!("statement {stmt} ({want} rows) was acknowledged and is gone");
            }
            (false, true) => counts.unacked_kept_whole += 1,
            (false, false) => counts.unacked_absent += 1,
        }
    }
    Ok(found.into_keys().collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: u64 = std::env::var("EDDY_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let eddy = eddy_binary()?;
    let dir = tempfile::Builder::new().prefix("eddy-soak-").tempdir()?;
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let mut rng = Rng(seed);
    let (mut server, mut port) = start(&eddy, &data, &log)?;
    connect(port)
        .await?
        .batch_execute(
            "CREATE STREAM soak (id BIGINT KEY, stmt BIGINT, kind VARCHAR) WITH (partitions = 3)",
        )
        .await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let counters: Vec<_> = WRITER_BASE
        .iter()
        .map(|&b| Arc::new(Mutex::new(b)))
        .collect();
    let mut counts = Counts::default();
    let started = Instant::now();
    for round in 0..rounds {
        let mut writers = vec![];
        for (kind, next) in counters.iter().enumerate() {
            let client = connect(port).await?;
            writers.push(tokio::spawn(writer(
                client,
                kind,
                next.clone(),
                ledger.clone(),
            )));
        }
        let wait = 50 + rng.next() % 1450;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill()?;
        server.wait()?;
        for w in writers {
            let _ = w.await;
        }
        let (next_server, next_port) =
            start(&eddy, &data, &log).with_context(|| format!("restart after round {round}"))?;
        server = next_server;
        port = next_port;
        let client = connect(port).await?;
        let snapshot = std::mem::take(&mut ledger.lock().unwrap().statements);
        let present = check(
            &client,
            &Ledger {
                statements: snapshot.clone(),
            },
            &mut counts,
        )
        .await?;
        // From now on every statement the stream holds must stay, and one that is absent must
        // stay absent: a later round finding it counts it as unknown.
        ledger.lock().unwrap().statements = snapshot
            .into_iter()
            .filter(|(stmt, s)| s.1 || present.contains(stmt))
            .map(|(stmt, (rows, _))| (stmt, (rows, true)))
            .collect();
        counts.rounds += 1;
        if counts.rounds % 10 == 0 {
            let ledger = ledger.lock().unwrap();
            counts.acked = ledger.statements.len() as u64;
            counts.acked_rows = ledger.statements.values().map(|s| s.0 as u64).sum();
            drop(ledger);
            println!(
                "after {} rounds ({:.0} s): {counts:?}",
                counts.rounds,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let kept = std::mem::take(&mut ledger.lock().unwrap().statements);
    counts.acked = kept.len() as u64;
    counts.acked_rows = kept.values().map(|s| s.0 as u64).sum();
    server.kill()?;
    server.wait()?;
    println!(
        "soak: {} rounds in {:.1} s (kill -9 each), 3 partitions; writers: single-row INSERT, \
         {MULTI_ROWS}-row INSERT, {COPY_ROWS}-row COPY",
        counts.rounds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  statements kept (acknowledged, or committed just before a kill): {} ({} rows); \
         unacknowledged at a kill: {} kept whole, {} absent",
        counts.acked, counts.acked_rows, counts.unacked_kept_whole, counts.unacked_absent
    );
    println!(
        "  violations: lost acknowledged {}, partial statements {}, duplicated rows {}, \
         rows of unknown statements {}",
        counts.lost_acked, counts.partial, counts.duplicated, counts.unknown
    );
    if counts.lost_acked + counts.partial + counts.duplicated + counts.unknown > 0 {
        bail!("the soak found violations: {counts:?}");
    }
    Ok(())
}
