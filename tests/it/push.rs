//! Push queries (`SELECT ... EMIT CHANGES`) with real clients: tokio-postgres (simple and
//! extended protocol, `query_raw` streaming, `copy_out`), psql with `FETCH_COUNT`, psycopg;
//! and how they end: `LIMIT`, cancel, a closed socket, `DROP STREAM` in another session.
//!
//! Rows a push query must see are written by another connection *while* it runs: a
//! [`Writer`] inserts a row every few milliseconds until stopped, so no test depends on when
//! the query happened to start. Nothing here asserts on timing; waits have generous bounds
//! that only turn a hang into a failure.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::harness::{TestServer, rows, scalar_i64, sqlstate};

/// Bound on anything that should finish once rows flow.
const BOUND: Duration = Duration::from_secs(60);

/// A one-partition stream `events (id INT, name VARCHAR)` holding `old` rows named `old`.
async fn events(server: &TestServer, old: i32) -> anyhow::Result<Client> {
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM events (id INT, name VARCHAR) WITH (partitions = 1)")
        .await?;
    for id in 0..old {
        client
            .execute(&format!("INSERT INTO events VALUES ({id}, 'old')"), &[])
            .await?;
    }
    Ok(client)
}

/// Inserts `(id, name)` rows, ids counting up from 100, from its own connection until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Writer {
    /// Inserts rows named `new`.
    async fn start(server: &TestServer) -> anyhow::Result<Writer> {
        Writer::named(server, "new").await
    }

    async fn named(server: &TestServer, name: &'static str) -> anyhow::Result<Writer> {
        let client = server.client().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut id = 100;
            while !flag.load(Ordering::SeqCst) {
                client
                    .execute(&format!("INSERT INTO events VALUES ({id}, '{name}')"), &[])
                    .await?;
                id += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        });
        Ok(Writer { stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(BOUND, f)
        .await
        .with_context(|| format!("{what} did not finish within {BOUND:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_query_with_limit_ends_after_rows_inserted_by_another_connection() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let client = events(&server, 5).await?;
    let writer = Writer::start(&server).await?;
    // Extended protocol (prepare, bind, execute): tokio-postgres's `query`.
    let got = bounded(
        "the push query",
        client.query("SELECT id, name FROM events EMIT CHANGES LIMIT 3", &[]),
    )
    .await??;
    writer.stop().await?;
    let got: Vec<(i32, String)> = got.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got.len(), 3, "LIMIT 3 ends the query after 3 rows: {got:?}");
    assert!(
        got.iter().all(|(id, name)| *id >= 100 && name == "new"),
        "latest (the default) starts after the rows committed before the query: {got:?}"
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "one partition is read in offset order: {got:?}"
    );
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_reads_the_history_first_then_new_rows() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 5).await?;
    client
        .batch_execute("SET 'auto.offset.reset' = 'earliest'")
        .await?;
    assert_eq!(
        rows(&client, "SHOW 'auto.offset.reset'").await?,
        vec![vec![Some("earliest".to_string())]]
    );
    let writer = Writer::start(&server).await?;
    // Simple protocol.
    let messages = bounded(
        "the push query",
        client.simple_query("SELECT id, name FROM events EMIT CHANGES LIMIT 7"),
    )
    .await??;
    writer.stop().await?;
    let got = simple_rows(&messages);
    let ids: Vec<&str> = got.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "100", "101"], "{got:?}");
    assert!(matches!(
        messages.last(),
        Some(SimpleQueryMessage::CommandComplete(7))
    ));

    // RESET goes back to latest: history is skipped again.
    client.batch_execute("RESET 'auto.offset.reset'").await?;
    let writer = Writer::named(&server, "newer").await?;
    let messages = bounded(
        "the push query",
        client.simple_query("SELECT name FROM events EMIT CHANGES LIMIT 2"),
    )
    .await??;
    writer.stop().await?;
    let got = simple_rows(&messages);
    assert_eq!(got, [["newer"], ["newer"]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_projection_and_scalar_functions_apply_to_each_batch() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 0).await?;
    client
        .batch_execute(
            "INSERT INTO events VALUES (0, 'a'), (1, 'b'), (2, 'c'), (3, 'd'); \
             INSERT INTO events VALUES (4, 'e'), (5, 'f'), (6, 'g'); \
             SET 'auto.offset.reset' = 'earliest'",
        )
        .await?;
    let messages = bounded(
        "the push query",
        client.simple_query(
            "SELECT upper(name) AS up, id * 10 AS x, rowoffset FROM events \
             WHERE id % 2 = 0 AND name <> 'c' EMIT CHANGES LIMIT 3",
        ),
    )
    .await??;
    assert_eq!(
        simple_rows(&messages),
        [["A", "0", "0"], ["E", "40", "4"], ["G", "60", "6"]]
    );
    let Some(SimpleQueryMessage::RowDescription(columns)) = messages.first() else {
        panic!("no row description: {messages:?}");
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["up", "x", "rowoffset"]);

    // Parameters bind in the extended protocol.
    let got = bounded(
        "the push query",
        client.query(
            "SELECT id FROM events WHERE id > $1 EMIT CHANGES LIMIT 2",
            &[&4i32],
        ),
    )
    .await??;
    let ids: Vec<i32> = got.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [5, 6]);

    // Aggregates and joins are for persistent queries; refused clearly for now.
    for sql in [
        "SELECT count(*) FROM events EMIT CHANGES",
        "SELECT e.id FROM events e JOIN events f ON e.id = f.id EMIT CHANGES",
        "SELECT id FROM events ORDER BY id EMIT CHANGES",
        "SELECT 1; SELECT id FROM events EMIT CHANGES",
    ] {
        assert_eq!(
            sqlstate(client.simple_query(sql).await),
            "0A000",
            "{sql} is refused as not supported"
        );
    }
    assert_eq!(
        sqlstate(
            client
                .simple_query("INSERT INTO events VALUES (9, 'z') EMIT CHANGES")
                .await
        ),
        "42601"
    );
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM events").await?, 7);
    Ok(())
}

/// Sends CancelRequests until `task` finishes: a cancel that arrives before the query started
/// is ignored by the server, so one is sent every 200 ms rather than guessing when to send it.
async fn cancel_until_done<T>(
    token: &tokio_postgres::CancelToken,
    task: &mut tokio::task::JoinHandle<T>,
) -> anyhow::Result<T> {
    bounded("the cancelled query", async {
        loop {
            token.cancel_query(NoTls).await?;
            tokio::select! {
                done = &mut *task => return Ok::<_, anyhow::Error>(done?),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_never_ending_push_query_and_the_connection_stays_usable()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 2).await?;
    let token = client.cancel_token();
    let mut task = tokio::spawn(async move {
        let result = client
            .simple_query("SELECT id FROM events EMIT CHANGES")
            .await;
        (result.map(|_| ()), client)
    });
    let (result, client) = cancel_until_done(&token, &mut task).await?;
    assert_eq!(sqlstate(result), "57014");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM events").await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_raw_receives_rows_of_an_unbounded_push_query_as_they_commit() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = Arc::new(events(&server, 0).await?);
    let writer = Writer::start(&server).await?;
    // No LIMIT: the rows can only arrive because each batch is flushed as it is read.
    let stream = client
        .query_raw(
            "SELECT id, name FROM events EMIT CHANGES",
            Vec::<i32>::new(),
        )
        .await?;
    let mut stream = Box::pin(stream);
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let row = bounded("the next row", stream.next())
            .await?
            .context("the push query ended")??;
        ids.push(row.get::<_, i32>(0));
    }
    writer.stop().await?;
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] >= 100,
        "{ids:?}"
    );

    let token = client.cancel_token();
    let mut rest = tokio::spawn(async move { stream.try_collect::<Vec<_>>().await });
    let result = cancel_until_done(&token, &mut rest).await?;
    assert_eq!(sqlstate(result), "57014");
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_socket_ends_its_push_query() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let _setup = events(&server, 1).await?;
    let (client, connection) = server.config().connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let query = tokio::spawn(async move {
        let _ = client
            .simple_query("SELECT id FROM events EMIT CHANGES")
            .await;
    });
    wait_for_log(&server, "push query started").await?;
    // Dropping the connection future closes the socket without a Terminate message.
    connection.abort();
    query.abort();
    wait_for_log(&server, "push query ended").await?;
    assert!(
        server_log_has(&server, "outcome=\"error: "),
        "the query ended on the failed write to the closed socket\n{}",
        server.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_socket_while_fetching_from_a_push_cursor_ends_the_fetch()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let _setup = events(&server, 1).await?;
    let (client, connection) = server.config().connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute("BEGIN; DECLARE p CURSOR FOR SELECT id FROM events EMIT CHANGES")
        .await?;
    // No row will come: the FETCH waits inside the server.
    let fetch = tokio::spawn(async move {
        let _ = client.simple_query("FETCH 1 FROM p").await;
    });
    wait_for_log(&server, "first FETCH from a push cursor").await?;
    connection.abort();
    fetch.abort();
    wait_for_log(&server, "client gone while its statement waited").await?;
    Ok(())
}

async fn wait_for_log(server: &TestServer, needle: &str) -> anyhow::Result<()> {
    bounded(needle, async {
        while !server_log_has(server, needle) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn server_log_has(server: &TestServer, needle: &str) -> bool {
    server.log().contains(needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_a_push_query_streams_lines_as_they_arrive() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 3).await?;
    let writer = Writer::start(&server).await?;
    let out = client
        .copy_out("COPY (SELECT id, name FROM events WHERE id % 2 = 0 EMIT CHANGES LIMIT 3) TO STDOUT WITH (FORMAT csv)")
        .await?;
    let chunks: Vec<bytes::Bytes> = bounded("COPY TO", out.try_collect()).await??;
    writer.stop().await?;
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines {
        let (id, name) = line.split_once(',').context("csv line")?;
        let id: i32 = id.parse()?;
        assert!(id >= 100 && id % 2 == 0 && name == "new", "{line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_fetch_from_ordinary_and_push_queries() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 5).await?;
    let fetch = |sql: &'static str| {
        let client = &client;
        async move {
            let messages = bounded(sql, client.simple_query(sql)).await??;
            anyhow::Ok(
                simple_rows(&messages)
                    .into_iter()
                    .map(|r| r[0].clone())
                    .collect::<Vec<_>>(),
            )
        }
    };
    client.batch_execute("BEGIN").await?;
    client
        .batch_execute("DECLARE c NO SCROLL CURSOR FOR SELECT id FROM events ORDER BY id")
        .await?;
    assert_eq!(fetch("FETCH FORWARD 2 FROM c").await?, ["0", "1"]);
    assert_eq!(fetch("FETCH NEXT FROM c").await?, ["2"]);
    assert_eq!(fetch("FETCH ALL FROM c").await?, ["3", "4"]);
    assert!(fetch("FETCH 1 FROM c").await?.is_empty());
    client.batch_execute("CLOSE c").await?;
    assert_eq!(
        sqlstate(client.simple_query("FETCH 1 FROM c").await),
        "42704"
    );
    client.batch_execute("ROLLBACK").await?;

    // A push cursor: each FETCH waits for rows committed after the DECLARE.
    let writer = Writer::start(&server).await?;
    client.batch_execute("BEGIN").await?;
    client
        .batch_execute("DECLARE p CURSOR FOR SELECT id FROM events EMIT CHANGES LIMIT 3")
        .await?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let rows = fetch("FETCH FORWARD 1 FROM p").await?;
        assert_eq!(rows.len(), 1);
        got.extend(rows);
    }
    assert!(
        fetch("FETCH FORWARD 1 FROM p").await?.is_empty(),
        "LIMIT 3 reached"
    );
    client.batch_execute("CLOSE p; COMMIT").await?;
    writer.stop().await?;
    assert!(
        got.iter().all(|id| id.parse::<i32>().unwrap() >= 100),
        "{got:?}"
    );

    // COMMIT closes cursors declared without HOLD.
    client
        .batch_execute("BEGIN; DECLARE q CURSOR FOR SELECT id FROM events; COMMIT")
        .await?;
    assert_eq!(
        sqlstate(client.simple_query("FETCH 1 FROM q").await),
        "42704"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_fetch_count_1_streams_a_push_query() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let _client = events(&server, 2).await?;
    let writer = Writer::start(&server).await?;
    // psql runs this as BEGIN; DECLARE _psql_cursor ...; FETCH FORWARD 1 ... until a FETCH
    // returns no row; CLOSE; COMMIT.
    let out = crate::psql::psql(
        &server,
        &[],
        "\\set FETCH_COUNT 1\nSELECT id, name FROM events EMIT CHANGES LIMIT 3;\nSELECT 'after';\n",
    )
    .await;
    writer.stop().await?;
    assert_eq!(
        out.status,
        Some(0),
        "psql failed\nstdout: {}\nstderr: {}\n--- server ---\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for line in &lines[..3] {
        let (id, name) = line.split_once('|').context("psql -A line")?;
        assert!(id.parse::<i32>()? >= 100 && name == "new", "{line}");
    }
    assert_eq!(lines[3], "after");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_iterates_push_queries_through_stream_and_named_cursors() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let _client = events(&server, 3).await?;
    let writer = Writer::start(&server).await?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/push_cursor.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3")?;
    let out = bounded("the psycopg script", child.wait_with_output()).await??;
    writer.stop().await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the psycopg script failed (is psycopg installed? python3 -m pip install 'psycopg[binary]')\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for line in &lines[..2] {
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(
            parts[0] == "stream" && parts[1].parse::<i32>()? >= 100 && parts[2] == "new",
            "{line}"
        );
    }
    assert_eq!(
        lines[2..],
        ["named 0 old", "named 1 old", "named 2 old", "named 100 new"]
    );
    Ok(())
}

/// Files of stream `dir` the server holds open, from `/proc/<pid>/fd`: with `deleted`, those
/// already deleted (what a reader of a dropped stream pins), else those still there.
fn open_files(server: &TestServer, dir: &str, deleted: bool) -> anyhow::Result<Vec<String>> {
    let pid = server.pid().context("the server runs")?;
    let under = server.data_dir().join("topics").join(dir);
    let mut out = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy().to_string();
        if target.starts_with(&*under.to_string_lossy())
            && target.ends_with(" (deleted)") == deleted
        {
            out.push(target);
        }
    }
    Ok(out)
}

/// Waits until the server holds no deleted file of stream `dir` open.
async fn files_released(server: &TestServer, dir: &str) -> anyhow::Result<()> {
    bounded("the dropped stream's files to be released", async {
        loop {
            let open = open_files(server, dir, true)?;
            if open.is_empty() {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stream_ends_push_queries_and_cursors_on_it_and_frees_its_files() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let client = Arc::new(events(&server, 3).await?);
    // A push query waiting for rows (latest: none come), streamed with query_raw...
    let waiting = client.clone();
    let query = tokio::spawn(async move {
        let stream = waiting
            .query_raw("SELECT id FROM events EMIT CHANGES", Vec::<i32>::new())
            .await?;
        stream.try_collect::<Vec<_>>().await
    });
    wait_for_log(&server, "push query started").await?;
    // ...and a push cursor whose FETCH waits, on another connection.
    let cursor = server.client().await?;
    cursor
        .batch_execute("BEGIN; DECLARE p CURSOR FOR SELECT id FROM events EMIT CHANGES")
        .await?;
    let fetch = tokio::spawn(async move {
        let result = cursor.simple_query("FETCH 1 FROM p").await;
        (result, cursor)
    });
    wait_for_log(&server, "first FETCH from a push cursor").await?;
    assert!(
        !open_files(&server, "events", false)?.is_empty(),
        "the server reads the stream's segment files"
    );

    let admin = server.client().await?;
    admin.batch_execute("DROP STREAM events").await?;

    let result = bounded("the push query after DROP STREAM", query).await??;
    let error = result.as_ref().err().and_then(|e| e.as_db_error()).cloned();
    assert_eq!(sqlstate(result), "57014");
    assert_eq!(
        error.map(|e| e.message().to_string()).as_deref(),
        Some("canceling statement: stream \"events\" was dropped")
    );
    let (result, cursor) = bounded("the FETCH after DROP STREAM", fetch).await??;
    assert_eq!(sqlstate(result), "57014");
    // The cursor is still declared (its transaction open), yet holds no reader any more.
    files_released(&server, "events").await?;
    cursor.batch_execute("ROLLBACK").await?;

    // Every session goes on; the name can be used again, push queries on it work.
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    assert_eq!(scalar_i64(&cursor, "SELECT 1").await?, 1);
    admin
        .batch_execute(
            "CREATE STREAM events (id INT, name VARCHAR) WITH (partitions = 1);
             SET 'auto.offset.reset' = 'earliest';
             INSERT INTO events VALUES (7, 'again')",
        )
        .await?;
    let again = bounded(
        "a push query on the new stream",
        admin.query("SELECT id FROM events EMIT CHANGES LIMIT 1", &[]),
    )
    .await??;
    assert_eq!(again[0].get::<_, i32>(0), 7);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stream_ends_a_psql_fetch_count_push_query_with_its_error() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let admin = events(&server, 2).await?;
    // psql reads through a cursor (FETCH_COUNT) and waits in a FETCH until the drop; it goes
    // on after the error to the next statement.
    let psql = crate::psql::psql(
        &server,
        &["-v", "ON_ERROR_STOP=0"],
        "\\set FETCH_COUNT 1\nSELECT id, name FROM events EMIT CHANGES;\nSELECT 'after';\n",
    );
    let drop = async {
        wait_for_log(&server, "first FETCH from a push cursor").await?;
        admin.batch_execute("DROP STREAM events").await?;
        anyhow::Ok(())
    };
    let (out, dropped) = tokio::join!(psql, drop);
    dropped?;
    assert!(
        out.stderr
            .contains("ERROR:  canceling statement: stream \"events\" was dropped"),
        "stdout: {}\nstderr: {}\n--- server ---\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        out.stdout.contains("after"),
        "psql's session went on: {}",
        out.stdout
    );
    files_released(&server, "events").await?;
    assert_eq!(scalar_i64(&admin, "SELECT 1").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stream_ends_a_psycopg_push_query_with_query_canceled() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let admin = events(&server, 2).await?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/push_dropped.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3")?;
    wait_for_log(&server, "push query started").await?;
    admin.batch_execute("DROP STREAM events").await?;
    let out = bounded("the psycopg script", child.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the psycopg script failed (is psycopg installed? python3 -m pip install 'psycopg[binary]')\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "QueryCanceled 57014 canceling statement: stream \"events\" was dropped",
            "1"
        ]
    );
    files_released(&server, "events").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_a_row_limit_suspends_push_and_ordinary_portals() -> anyhow::Result<()> {
    // JDBC's setFetchSize, node's pg-cursor and pg-query-stream send Execute with max_rows
    // and expect max_rows rows then PortalSuspended; before, a push portal sent nothing.
    let server = TestServer::start_fresh()?;
    let mut client = events(&server, 5).await?;
    let writer = Writer::start(&server).await?;
    let tx = client.transaction().await?;

    // A push query: each Execute of 2 rows returns 2 new rows, then the portal waits for more.
    let push = tx
        .bind("SELECT id, name FROM events EMIT CHANGES", &[])
        .await?;
    let mut seen = vec![];
    for _ in 0..3 {
        let rows = bounded("an Execute of 2 rows", tx.query_portal(&push, 2)).await??;
        assert_eq!(rows.len(), 2, "max_rows = 2 gives 2 rows of a push query");
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert!(
        seen.iter().all(|&id| id >= 100),
        "only rows inserted after the start: {seen:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 6, "no row twice across Executes: {seen:?}");

    // An ordinary query: 2 rows, 2 rows, then the rest and the end of the portal.
    let scan = tx
        .bind("SELECT id FROM events WHERE id < 100 ORDER BY id", &[])
        .await?;
    let mut ids = vec![];
    let mut executes = 0;
    loop {
        let rows = bounded("an Execute", tx.query_portal(&scan, 2)).await??;
        executes += 1;
        let done = rows.len() < 2;
        ids.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        if done {
            break;
        }
    }
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert_eq!(executes, 3, "5 rows in Executes of 2: 2, 2, 1");
    drop(push);
    tx.commit().await?;
    writer.stop().await?;
    // The connection is still usable.
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM events WHERE id < 100").await?,
        5
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_ends_push_and_ad_hoc_queries_with_57014_but_never_a_write()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = events(&server, 3).await?;
    assert_eq!(
        sqlstate(client.batch_execute("SET statement_timeout = 'soon'").await),
        "22023"
    );
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await?;
    // A push query with no LIMIT and no writer would wait forever.
    let push = bounded(
        "a push query under statement_timeout",
        client.simple_query("SELECT id FROM events EMIT CHANGES"),
    )
    .await?;
    assert_eq!(sqlstate(push), "57014");
    // An ad hoc query that would run for hours.
    let slow = bounded(
        "a long ad hoc query under statement_timeout",
        client.simple_query("SELECT count(*) FROM generate_series(1, 100000000000)"),
    )
    .await?;
    assert_eq!(sqlstate(slow), "57014");
    // Writes are not cut off (their append may be durable already); the session goes on.
    client.batch_execute("SET statement_timeout = 1").await?;
    client
        .execute("INSERT INTO events VALUES (7, 'written')", &[])
        .await?;
    client.batch_execute("SET statement_timeout = 0").await?;
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM events").await?, 4);
    Ok(())
}
