//! Ingest into a 3-node cluster next to a node alone, in one run (issue 14's benchmark):
//! COPY rows/s and MB/s, from one client and from one client per node, and single-row INSERT
//! latency (p50/p99), each acknowledged once a majority has it — against the same on one
//! node, whose writes are acknowledged once on its own disk.
//!
//! All three nodes share this machine's one disk and two cores: each row is written to
//! three logs and fsynced three times on the same disk, by processes that share the cores
//! with the client. The figure says what replication costs here, not what three machines
//! would do. Checks that every node holds every row at the end.
//!
//! `cargo run --release --example cluster_bench` (`EDDY_CLUSTER_ROWS`, default 1,000,000;
//! `EDDY_CLUSTER_INSERTS`, default 2,000; `EDDY_CLUSTER_KEEP=1` keeps the nodes' directories
//! and logs).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

#[path = "support/process.rs"]
mod process;

use process::{Node, eddy_binary, percentile, start_cluster};

const PARTITIONS: usize = 6;
const CHUNK_BYTES: usize = 64 * 1024;

/// `rows` rows of `(id, x, name)` as COPY text, split into `parts` statements of chunks.
fn generate(rows: u64, parts: u64) -> (Vec<Vec<Bytes>>, u64) {
    let mut statements = Vec::new();
    let mut bytes = 0;
    let per = rows / parts;
    for part in 0..parts {
        let mut chunks = Vec::new();
        let mut chunk = String::with_capacity(CHUNK_BYTES + 128);
        let end = if part + 1 == parts {
            rows
        } else {
            (part + 1) * per
        };
        for i in part * per..end {
            chunk.push_str(&format!("{i}\t{}\tname-{}\n", i % 1000, i % 10_007));
            if chunk.len() >= CHUNK_BYTES {
                bytes += chunk.len() as u64;
                chunks.push(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            bytes += chunk.len() as u64;
            chunks.push(Bytes::from(chunk));
        }
        statements.push(chunks);
    }
    (statements, bytes)
}

async fn copy_in(client: &Client, table: &str, chunks: &[Bytes]) -> anyhow::Result<u64> {
    let sink = client
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN"))
        .await?;
    pin_mut!(sink);
    for chunk in chunks {
        sink.as_mut().send(chunk.clone()).await?;
    }
    Ok(sink.finish().await?)
}

/// What one setup measured.
struct Figures {
    copy_one: Duration,
    copy_each: Duration,
    insert_p50: Duration,
    insert_p99: Duration,
}

/// Runs the measurements against `nodes` (one node, or a cluster whose first node takes the
/// single-client work); checks every node's count at the end.
async fn measure(
    nodes: &[Node],
    one: &[Vec<Bytes>],
    each: &[Vec<Bytes>],
    rows: u64,
    inserts: usize,
) -> anyhow::Result<Figures> {
    let first = nodes[0].client().await?;
    for table in ["one", "each", "ins"] {
        first
            .batch_execute(&format!(
                "CREATE STREAM {table} (id BIGINT, x BIGINT, name VARCHAR) \
                 WITH (partitions = {PARTITIONS})"
            ))
            .await?;
    }
    // Every node knows the streams before the clients there write (DDL reaches the others
    // on their next metadata apply).
    let mut clients = Vec::new();
    for node in nodes {
        let client = node.client().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .simple_query("SELECT count(*) FROM ins")
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("node {} never saw the streams", node.id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clients.push(client);
    }

    let start = Instant::now();
    let mut copied = 0;
    for statement in one {
        copied += copy_in(&first, "one", statement).await?;
    }
    let copy_one = start.elapsed();
    if copied != rows {
        bail!("COPY from one client reported {copied} rows, expected {rows}");
    }

    // One client per node, each a share of the rows (one node alone: as many clients).
    let start = Instant::now();
    let jobs = each.iter().enumerate().map(|(i, statement)| {
        let client = &clients[i % clients.len()];
        async move { copy_in(client, "each", statement).await }
    });
    let copied: u64 = futures::future::try_join_all(jobs).await?.into_iter().sum();
    let copy_each = start.elapsed();
    if copied != rows {
        bail!("COPY from one client per node reported {copied} rows, expected {rows}");
    }

    let insert = first.prepare("INSERT INTO ins VALUES ($1, $2, $3)").await?;
    let mut times = Vec::with_capacity(inserts);
    for i in 0..inserts as i64 {
        let start = Instant::now();
        first.execute(&insert, &[&i, &(i % 7), &"x"]).await?;
        times.push(start.elapsed());
    }
    times.sort();

    for (node, client) in nodes.iter().zip(&clients) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let counts = client
                .query_one(
                    "SELECT (SELECT count(*) FROM one), (SELECT count(*) FROM each), \
                     (SELECT count(*) FROM ins)",
                    &[],
                )
                .await?;
            let got: (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
            if got == (rows as i64, rows as i64, inserts as i64) {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {} holds {got:?} rows", node.id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Figures {
        copy_one,
        copy_each,
        insert_p50: percentile(&times, 0.5),
        insert_p99: percentile(&times, 0.99),
    })
}

async fn run(
    eddy: &Path,
    root: &Path,
    nodes: usize,
    data: (&[Vec<Bytes>], &[Vec<Bytes>]),
    rows: u64,
    inserts: usize,
) -> anyhow::Result<Figures> {
    let running = if nodes == 1 {
        let mut node = Node::new(1, root.join("alone"), None)?;
        node.spawn(eddy)?;
        vec![node]
    } else {
        start_cluster(eddy, &root.join("cluster"), nodes)?
    };
    measure(&running, data.0, data.1, rows, inserts).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = env("EDDY_CLUSTER_ROWS", 1_000_000);
    let inserts = env("EDDY_CLUSTER_INSERTS", 2_000) as usize;
    let eddy = eddy_binary()?;
    let root = tempfile::Builder::new().prefix("eddy-cluster-").tempdir()?;
    let (one, bytes) = generate(rows, 4);
    let (each, _) = generate(rows, 3);
    let mb = bytes as f64 / 1e6;

    // With EDDY_CLUSTER_KEEP the nodes' directories and logs stay, to read after a failure.
    let (_removed_at_end, root) = if std::env::var_os("EDDY_CLUSTER_KEEP").is_some() {
        let kept = root.keep();
        eprintln!("keeping {}", kept.display());
        (None, kept)
    } else {
        let path = root.path().to_path_buf();
        (Some(root), path)
    };
    let root = root.as_path();
    let alone = run(&eddy, root, 1, (&one, &each), rows, inserts).await?;
    let three = run(&eddy, root, 3, (&one, &each), rows, inserts).await?;

    println!(
        "cluster_bench: {rows} rows ({mb:.1} MB of COPY text) into {PARTITIONS} partitions; \
         3 nodes on loopback share one disk and two cores (every row fsynced on 3 logs of \
         that disk)"
    );
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    for (what, a, t) in [
        ("COPY, one client", alone.copy_one, three.copy_one),
        (
            "COPY, 3 clients (one per node)",
            alone.copy_each,
            three.copy_each,
        ),
    ] {
        println!(
            "{what}: 1 node {:.0} rows/s ({:.0} MB/s), 3 nodes {:.0} rows/s ({:.0} MB/s): \
             3 nodes / 1 node = {:.2}x",
            rate(a),
            mb / a.as_secs_f64(),
            rate(t),
            mb / t.as_secs_f64(),
            a.as_secs_f64() / t.as_secs_f64()
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "INSERT one row, sequential ({inserts}): 1 node p50 {:.2} ms p99 {:.2} ms; 3 nodes \
         (majority acks) p50 {:.2} ms p99 {:.2} ms: p50 3 nodes / 1 node = {:.2}x",
        ms(alone.insert_p50),
        ms(alone.insert_p99),
        ms(three.insert_p50),
        ms(three.insert_p99),
        ms(three.insert_p50) / ms(alone.insert_p50)
    );
    println!("aim (issue 14): 3-node ingest >= 0.50x of one node's");
    println!("checked: every node holds every row");
    Ok(())
}
