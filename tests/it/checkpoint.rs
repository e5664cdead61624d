//! A checkpoint that cannot be replayed fails its own query and nothing else: the server starts,
//! the query is reported failed in `SHOW QUERIES` with a reason naming it, and the other queries
//! and plain statements go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use eddy_storage::{LogConfig, PartitionLog};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows};

/// How long a restarted query may take to leave `STARTING` (debug builds on 2 cores are slow).
const BOUND: Duration = Duration::from_secs(60);

/// `SHOW QUERIES` as sink → (query id, status).
async fn queries(client: &Client) -> anyhow::Result<HashMap<String, (String, String)>> {
    Ok(rows(client, "SHOW QUERIES")
        .await?
        .into_iter()
        .map(|r| {
            let cell = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (cell(2), (cell(0), cell(1)))
        })
        .collect())
}

/// The one task directory of query `id` (a one-partition source: one task).
fn task_dir(data_dir: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(data_dir.join("queries").join(id))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    anyhow::ensure!(dirs.len() == 1, "{id} has task dirs {dirs:?}");
    Ok(dirs[0].clone())
}

/// Appends to the checkpoint log in `dir` a commit whose aggregation state has a text column
/// where `COUNT(*)` keeps an Int64, as a checkpoint written by another plan would. The frame
/// is laid out as `sql/src/continuous/wal.rs` writes one (part, partition, IPC body; the marks
/// in the schema metadata), with the marks of the last real commit.
fn append_commit_of_another_shape(dir: &Path) -> anyhow::Result<()> {
    let log = PartitionLog::open(dir, LogConfig::default())?;
    let mut last = None;
    for frame in log.reader(log.log_start_offset())? {
        last = Some(frame?.batch);
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no commit in {}", dir.display()))?;
    let state_schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
        Field::new("part", DataType::UInt32, false),
        Field::new("max_time", DataType::Int64, false),
        Field::new("emitted", DataType::Boolean, false),
        Field::new("acc0_0", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values([b"a".as_slice()])),
        Arc::new(Int64Array::from(vec![i64::MIN])),
        Arc::new(Int64Array::from(vec![i64::MAX])),
        Arc::new(UInt32Array::from(vec![0])),
        Arc::new(Int64Array::from(vec![0])),
        Arc::new(BooleanArray::from(vec![false])),
        Arc::new(StringArray::from(vec!["two"])),
    ];
    let state = RecordBatch::try_new(state_schema, columns)?;
    let mut ipc = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut ipc, &state.schema())?;
        w.write(&state)?;
        w.finish()?;
    }
    let frame = RecordBatch::try_new(
        last.schema(),
        vec![
            Arc::new(StringArray::from(vec!["marks", "state"])),
            Arc::new(Int32Array::from(vec![0, 0])),
            Arc::new(BinaryArray::from_iter_values([b"".as_slice(), &ipc])),
        ],
    )?;
    log.append(&frame, 0, 0)?;
    log.close()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_another_shape_fails_its_query_and_nothing_else() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM src (k VARCHAR KEY, v INT) WITH (partitions = 1);
         CREATE TABLE counts AS SELECT k, COUNT(*) AS n FROM src GROUP BY k EMIT CHANGES;
         CREATE TABLE sums AS SELECT k, SUM(v) AS total FROM src GROUP BY k EMIT CHANGES;
         INSERT INTO src VALUES ('a', 1), ('b', 2), ('a', 3);",
    )
    .await?;
    // Pull queries wait until the tables reflect every committed row.
    assert_eq!(
        rows(&c, "SELECT n FROM counts WHERE k = 'a'").await?,
        vec![vec![Some("2".to_string())]]
    );
    assert_eq!(
        rows(&c, "SELECT total FROM sums WHERE k = 'a'").await?,
        vec![vec![Some("4".to_string())]]
    );
    let before = queries(&c).await?;
    let counts_id = before["counts"].0.clone();
    let sums_id = before["sums"].0.clone();
    drop(c);
    server.terminate()?;

    append_commit_of_another_shape(&task_dir(server.data_dir(), &counts_id)?)?;

    server.restart()?;
    let c = server.client().await?;
    // The damaged query is reported failed, with a reason that names it and says why.
    let deadline = Instant::now() + BOUND;
    let status = loop {
        let status = queries(&c).await?["counts"].1.clone();
        if status != "STARTING" {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{counts_id} still STARTING after {BOUND:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.starts_with("ERROR"), "{status}");
    assert!(
        status.contains(&counts_id) && status.contains("checkpoint"),
        "{status}"
    );
    assert!(
        status.contains("Utf8") && status.contains("Int64"),
        "the reason says which types differ: {status}"
    );
    // The other query replayed its own checkpoint and goes on with new rows.
    c.batch_execute("INSERT INTO src VALUES ('a', 10)").await?;
    assert_eq!(
        rows(&c, "SELECT total FROM sums WHERE k = 'a'").await?,
        vec![vec![Some("14".to_string())]]
    );
    assert_eq!(queries(&c).await?["sums"], (sums_id, "RUNNING".to_string()));
    assert_eq!(
        rows(&c, "SELECT count(*) FROM src").await?,
        vec![vec![Some("4".to_string())]]
    );
    Ok(())
}
