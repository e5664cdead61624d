//! The cold tier end to end: closed segments become Parquet objects in the cold store (the
//! default local directory, or a real S3-compatible server), queries read both tiers as one
//! offset space, retention reaches cold objects, and a crash at each step of tiering loses
//! nothing and leaves no orphan.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows, scalar_i64, text};
use crate::moto::Moto;
use crate::proxy::Proxy;

/// Maintenance (retention + tiering) every 200 ms, so tests see tiering quickly.
const FAST: [&str; 2] = ["--retention-check-ms", "200"];
/// How long tiering may take to catch up on a loaded 2-core machine.
const TIER_TIMEOUT: Duration = Duration::from_secs(90);

/// Small segments (rolled at 1 KiB) that all tier as soon as they close.
const TIERED: &str = "CREATE STREAM t (id BIGINT, name VARCHAR, ts TIMESTAMP) \
     WITH (segment_bytes=1024, local_retention_bytes=1, timestamp='ts')";

/// Inserts rows `from..to` (id = i, name = 'n<i>', ts = 2026-01-01 + i seconds), ten per
/// statement, so each statement is one stored batch. Stops at the first error; returns the
/// number of rows acknowledged.
async fn insert_rows(client: &Client, from: i64, to: i64) -> i64 {
    let mut acked = 0;
    let mut i = from;
    while i < to {
        let end = (i + 10).min(to);
        let values: Vec<String> = (i..end)
            .map(|k| {
                format!("({k}, 'n{k}', TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{k} seconds')")
            })
            .collect();
        if client
            .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .is_err()
        {
            break;
        }
        acked += end - i;
        i = end;
    }
    acked
}

/// Polls `sql` (one integer cell) until `done` holds; fails with the last value and the
/// server log after [`TIER_TIMEOUT`].
async fn wait_for(
    server: &TestServer,
    client: &Client,
    sql: &str,
    done: impl Fn(i64) -> bool,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + TIER_TIMEOUT;
    loop {
        let value = scalar_i64(client, sql).await?;
        if done(value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!(
                "{sql} is still {value} after {TIER_TIMEOUT:?}\n{}",
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every closed local segment of `t` is tiered and at least one object exists.
async fn wait_tiered(server: &TestServer, client: &Client) -> anyhow::Result<()> {
    wait_for(
        server,
        client,
        "SELECT count(*) FROM eddy.segments WHERE stream = 't' AND tier = 'local' AND NOT active",
        |n| n == 0,
    )
    .await?;
    wait_for(
        server,
        client,
        "SELECT count(*) FROM eddy.segments WHERE stream = 't' AND tier = 'cold'",
        |n| n > 0,
    )
    .await?;
    Ok(())
}

/// Checks that `t` holds exactly ids 0..n at offsets 0..n, each once.
async fn assert_exact(client: &Client, n: i64) -> anyhow::Result<()> {
    let got = rows(
        client,
        "SELECT count(*), count(DISTINCT rowoffset), min(rowoffset), max(rowoffset), sum(id), \
         count(*) FILTER (WHERE id = rowoffset) FROM t",
    )
    .await?;
    let expected: Vec<Option<String>> = [n, n, 0, n - 1, n * (n - 1) / 2, n]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect();
    assert_eq!(got, vec![expected]);
    Ok(())
}

/// Object keys the manifests name (from `eddy.segments`).
async fn manifest_keys(client: &Client) -> anyhow::Result<BTreeSet<String>> {
    Ok(rows(
        client,
        "SELECT location FROM eddy.segments WHERE tier = 'cold'",
    )
    .await?
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect())
}

/// Files under the local cold directory, as keys relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_segments_tier_to_parquet_and_queries_span_both_tiers() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh_with(&FAST, &[])?;
    let client = server.client().await?;
    client.batch_execute(TIERED).await?;
    assert_eq!(insert_rows(&client, 0, 200).await, 200);
    wait_tiered(&server, &client).await?;
    assert_exact(&client, 200).await?;

    // Values round-trip through Parquet, and ranges across objects and tiers read right.
    assert_eq!(
        rows(
            &client,
            "SELECT name, CAST(ts AS VARCHAR), CAST(rowtime AS VARCHAR) FROM t WHERE rowoffset = 3"
        )
        .await?,
        vec![vec![
            Some("n3".to_string()),
            Some("2026-01-01T00:00:03".to_string()),
            Some("2026-01-01T00:00:03".to_string())
        ]]
    );
    let ids: Vec<i64> = client
        .query(
            "SELECT id FROM t WHERE rowoffset BETWEEN 15 AND 195 ORDER BY rowoffset",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, (15..=195).collect::<Vec<i64>>());

    // The manifest prunes objects by offset, and EXPLAIN says so.
    let total = scalar_i64(
        &client,
        "SELECT count(*) FROM eddy.segments WHERE tier = 'cold'",
    )
    .await?;
    let first = scalar_i64(
        &client,
        "SELECT count(*) FROM eddy.segments WHERE tier = 'cold' AND base_offset < 10",
    )
    .await?;
    assert!(
        total > first,
        "{total} objects, {first} hold offsets below 10"
    );
    let plan: String = text(&client, "EXPLAIN SELECT id FROM t WHERE rowoffset < 10").await?;
    assert!(
        plan.contains(&format!("cold_objects={first} of {total}")),
        "{plan}"
    );

    // The store holds exactly the objects the manifest names.
    let cold_dir = server.data_dir().join("cold");
    assert_eq!(files_under(&cold_dir), manifest_keys(&client).await?);

    // A reader that is not Eddy's (the parquet crate's own) sees the documented layout.
    let key = manifest_keys(&client)
        .await?
        .into_iter()
        .next()
        .context("an object")?;
    check_object_with_parquet_crate(&cold_dir.join(&key))?;

    // A push query from `earliest` replays the tiered history, then the hot tail, in order.
    client
        .batch_execute("SET 'auto.offset.reset' = 'earliest'")
        .await?;
    let pushed: Vec<i64> = rows(&client, "SELECT id FROM t EMIT CHANGES LIMIT 200")
        .await?
        .into_iter()
        .map(|r| r[0].as_deref().unwrap_or("").parse().unwrap_or(-1))
        .collect();
    assert_eq!(pushed, (0..200).collect::<Vec<i64>>());

    // Everything survives a restart; new rows continue the offsets.
    drop(client);
    server.restart()?;
    let client = server.client().await?;
    assert_exact(&client, 200).await?;
    assert_eq!(insert_rows(&client, 200, 260).await, 60);
    wait_tiered(&server, &client).await?;
    assert_exact(&client, 260).await?;
    Ok(())
}

/// Reads one object with `parquet`'s synchronous reader: the stream's columns then the
/// pseudo-columns, offsets contiguous, ids equal to offsets (as inserted).
fn check_object_with_parquet_crate(path: &PathBuf) -> anyhow::Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["id", "name", "ts", "rowtime", "rowpartition", "rowoffset"]
    );
    let mut offsets = Vec::new();
    for batch in builder.build()? {
        let batch = batch?;
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .context("id is BIGINT")?;
        let offs = batch
            .column(5)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .context("rowoffset is BIGINT")?;
        assert_eq!(ids.values(), offs.values());
        offsets.extend(offs.values().iter().copied());
    }
    assert!(!offsets.is_empty());
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_cold_objects_by_time() -> anyhow::Result<()> {
    let server = TestServer::start_fresh_with(&FAST, &[])?;
    let client = server.client().await?;
    // One day of retention: rows stamped in 2001 expire, rows stamped now stay.
    client
        .batch_execute(
            "CREATE STREAM t (id BIGINT, ts TIMESTAMP) \
             WITH (segment_bytes=1024, local_retention_bytes=1, timestamp='ts', retention_ms=86400000)",
        )
        .await?;
    for i in 0..10 {
        let values: Vec<String> = (i * 10..i * 10 + 10)
            .map(|k| format!("({k}, TIMESTAMP '2001-01-01 00:00:00')"))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await?;
    }
    for i in 10..20 {
        let values: Vec<String> = (i * 10..i * 10 + 10)
            .map(|k| format!("({k}, now())"))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await?;
    }
    // Old rows leave both tiers; recent rows stay, tiered except the active segment.
    wait_for(
        &server,
        &client,
        "SELECT count(*) FROM t WHERE id < 100",
        |n| n == 0,
    )
    .await?;
    wait_tiered(&server, &client).await?;
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM t WHERE id >= 100").await?,
        100
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM eddy.segments WHERE max_rowtime < TIMESTAMP '2002-01-01 00:00:00'"
        )
        .await?,
        0
    );
    let cold_dir = server.data_dir().join("cold");
    assert_eq!(files_under(&cold_dir), manifest_keys(&client).await?);
    Ok(())
}

/// A crash (abort, as kill -9) at `point` while tiering, then a restart: every acknowledged
/// row is there exactly once, tiering completes, and the store holds no orphan.
async fn crash_while_tiering(point: &str) -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh_with(&FAST, &[("EDDY_CRASH_AT", point)])?;
    let client = server.client().await?;
    client.batch_execute(TIERED).await?;
    let acked = insert_rows(&client, 0, 300).await;
    assert!(
        server.wait_exit(TIER_TIMEOUT)?,
        "the server never reached {point}\n{}",
        server.log()
    );
    assert!(
        server.log().contains(&format!("EDDY_CRASH_AT={point}")),
        "{}",
        server.log()
    );
    drop(client);

    server.set_env("EDDY_CRASH_AT", None);
    server.restart()?;
    let client = server.client().await?;
    wait_tiered(&server, &client).await?;
    let n = scalar_i64(&client, "SELECT count(*) FROM t").await?;
    // The statement in flight at the crash may or may not have become durable.
    assert!(
        n == acked || n == acked + 10,
        "{n} rows after acknowledging {acked}"
    );
    assert_exact(&client, n).await?;
    // Later inserts continue the offsets, and the orphan sweep leaves exactly the manifest.
    assert_eq!(insert_rows(&client, n, n + 50).await, 50);
    wait_tiered(&server, &client).await?;
    assert_exact(&client, n + 50).await?;
    let cold_dir = server.data_dir().join("cold");
    assert_eq!(files_under(&cold_dir), manifest_keys(&client).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_upload_before_manifest_loses_nothing() -> anyhow::Result<()> {
    crash_while_tiering("tier-after-upload").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_manifest_before_local_delete_loses_nothing() -> anyhow::Result<()> {
    crash_while_tiering("tier-after-manifest").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_cold_retention_leaves_no_orphan() -> anyhow::Result<()> {
    let mut server =
        TestServer::start_fresh_with(&FAST, &[("EDDY_CRASH_AT", "retention-after-manifest")])?;
    let client = server.client().await?;
    // About 6 KB in all tiers: the oldest objects are deleted by size as new ones arrive.
    client
        .batch_execute(
            "CREATE STREAM t (id BIGINT, name VARCHAR, ts TIMESTAMP) \
             WITH (segment_bytes=1024, local_retention_bytes=1, timestamp='ts', retention_bytes=6000)",
        )
        .await?;
    insert_rows(&client, 0, 300).await;
    assert!(
        server.wait_exit(TIER_TIMEOUT)?,
        "no crash\n{}",
        server.log()
    );
    drop(client);
    server.set_env("EDDY_CRASH_AT", None);
    server.restart()?;
    let client = server.client().await?;
    let n = scalar_i64(&client, "SELECT max(rowoffset) + 1 FROM t").await?;
    assert_eq!(insert_rows(&client, n, n + 20).await, 20);
    wait_tiered(&server, &client).await?;
    // What is left is a contiguous tail of the offsets, ids as inserted.
    let tail = rows(
        &client,
        "SELECT count(*) = max(rowoffset) - min(rowoffset) + 1, \
         count(*) FILTER (WHERE id = rowoffset) = count(*), max(rowoffset) FROM t",
    )
    .await?;
    assert_eq!(
        tail,
        vec![vec![
            Some("t".to_string()),
            Some("t".to_string()),
            Some((n + 19).to_string())
        ]]
    );
    // The object whose manifest entry was removed before the crash is swept at start.
    let cold_dir = server.data_dir().join("cold");
    let deadline = Instant::now() + TIER_TIMEOUT;
    while files_under(&cold_dir) != manifest_keys(&client).await? {
        if Instant::now() > deadline {
            bail!(
                "store {:?} != manifest {:?}\n{}",
                files_under(&cold_dir),
                manifest_keys(&client).await?,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A real S3-compatible server (moto, from PyPI) behind a proxy the test can cut.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_tiers_queries_and_rides_out_an_outage() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    moto.create_bucket("eddy-test")?;
    let proxy = Proxy::start(moto.port).await?;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let mut server = TestServer::start_fresh_with(
        &[FAST[0], FAST[1], "--cold-store", "s3://eddy-test/tiered"],
        &env,
    )?;
    let client = server.client().await?;
    client.batch_execute(TIERED).await?;
    assert_eq!(insert_rows(&client, 0, 150).await, 150);
    wait_tiered(&server, &client).await?;
    assert_exact(&client, 150).await?;
    let keys = manifest_keys(&client).await?;
    let storage = text(&client, "SELECT storage FROM eddy.streams WHERE name = 't'").await?;
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("tiered/{storage}/0/"))),
        "{keys:?}"
    );
    // Nothing went to the local default directory.
    assert!(files_under(&server.data_dir().join("cold")).is_empty());

    // The store goes away: ingest goes on, tiering fails visibly and keeps data local.
    proxy.set_down(true);
    let cold_end = scalar_i64(
        &client,
        "SELECT max(end_offset) FROM eddy.segments WHERE tier = 'cold'",
    )
    .await?;
    assert_eq!(insert_rows(&client, 150, 300).await, 150);
    wait_for(
        &server,
        &client,
        "SELECT max(consecutive_failures) FROM eddy.tiering WHERE stream = 't'",
        |n| n > 0,
    )
    .await?;
    let error = rows(
        &client,
        "SELECT last_error FROM eddy.tiering WHERE stream = 't'",
    )
    .await?;
    assert!(
        error[0][0]
            .as_deref()
            .is_some_and(|e| e.contains("cold tier")),
        "{error:?}"
    );
    let topics = rows(&client, "SHOW TOPICS").await?;
    assert!(
        topics[0][8]
            .as_deref()
            .is_some_and(|t| t.starts_with("failing (")),
        "{topics:?}"
    );
    // Hot data stays queryable (the manifest prunes every cold object).
    assert_eq!(
        scalar_i64(
            &client,
            &format!("SELECT count(*) FROM t WHERE rowoffset >= {cold_end}")
        )
        .await?,
        300 - cold_end
    );

    // The store comes back: tiering catches up after its backoff; nothing is lost.
    proxy.set_down(false);
    wait_tiered(&server, &client).await?;
    wait_for(
        &server,
        &client,
        "SELECT max(consecutive_failures) FROM eddy.tiering WHERE stream = 't'",
        |n| n == 0,
    )
    .await?;
    assert_exact(&client, 300).await?;
    let topics = rows(&client, "SHOW TOPICS").await?;
    assert_eq!(topics[0][8].as_deref(), Some("ok"), "{topics:?}");
    assert_eq!(topics[0][2].as_deref(), Some("0"), "{topics:?}");
    drop(client);
    server.restart()?;
    let client = server.client().await?;
    assert_exact(&client, 300).await?;
    Ok(())
}
