//! Stopping: SIGTERM (or [`eddy_server::RunningServer::shutdown`]) stops accepting, lets a
//! statement in progress finish, ends idle connections and push queries with 57P01, and only
//! then closes the engine; a configuration `validate()` refuses never gets as far as the data
//! directory.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, TryStreamExt, pin_mut};
use tokio_postgres::NoTls;

use crate::harness::{TestServer, scalar_i64, sqlstate};

/// Bound on each wait for the server (debug builds on 2 cores are slow); never a timing
/// assertion.
const BOUND: Duration = Duration::from_secs(60);

/// Waits until nothing accepts connections on `port` any more.
async fn wait_refused(port: u16) -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("the server still accepts connections after SIGTERM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_copy_in_progress_finish_ends_idle_and_push_connections_and_exits_0()
-> anyhow::Result<()> {
    // A grace period no test run comes near: the COPY must finish because it is in progress.
    let mut server = TestServer::start_fresh_with(&["--shutdown-grace-ms", "600000"], &[])?;
    let setup = server.client().await?;
    setup
        .batch_execute("CREATE STREAM s (v INT) WITH (partitions = 2); INSERT INTO s VALUES (1)")
        .await?;
    drop(setup);

    let (idle, idle_connection) = server.config().connect(NoTls).await?;
    let idle_connection = tokio::spawn(idle_connection);

    let (push, push_connection) = server.config().connect(NoTls).await?;
    tokio::spawn(push_connection);
    let push_query = tokio::spawn(async move {
        let rows = push
            .query_raw("SELECT v FROM s EMIT CHANGES", Vec::<i32>::new())
            .await?;
        rows.try_collect::<Vec<_>>().await
    });

    let copier = server.client().await?;
    let sink = copier.copy_in::<_, Bytes>("COPY s FROM STDIN").await?;
    pin_mut!(sink);
    sink.as_mut().send(Bytes::from_static(b"2\n3\n")).await?;
    tokio::time::timeout(BOUND, async {
        while !server.log().contains("push query started") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("the push query did not start")?;

    server.sigterm()?;
    wait_refused(server.port()).await?;
    // Stopping already: the COPY still gets its data through, and is acknowledged.
    sink.as_mut().send(Bytes::from_static(b"4\n")).await?;
    let copied = tokio::time::timeout(BOUND, sink.finish())
        .await
        .with_context(|| format!("the COPY did not finish\n{}", server.log()))??;
    assert_eq!(copied, 3);

    let pushed = tokio::time::timeout(BOUND, push_query)
        .await
        .with_context(|| format!("the push query did not end\n{}", server.log()))??;
    assert_eq!(sqlstate(pushed), "57P01", "the push query ends");
    let idle_ended = tokio::time::timeout(BOUND, idle_connection)
        .await
        .with_context(|| format!("the idle connection was not closed\n{}", server.log()))??;
    assert_eq!(sqlstate(idle_ended), "57P01", "the idle connection is told");
    drop(idle);

    let code = server.wait_stopped()?;
    assert_eq!(code, Some(0), "exit code after SIGTERM\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains("abandoned"),
        "nothing ran past the grace period\n{log}"
    );

    server.restart()?;
    let client = server.client().await?;
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 4);
    assert_eq!(scalar_i64(&client, "SELECT sum(v) FROM s").await?, 10);
    Ok(())
}

/// With no grace period a statement in progress is abandoned; `shutdown` returns only once
/// every connection task has ended (each session holds the engine, whose lock a new server
/// on the same directory needs), and what was acknowledged is there.
#[test]
fn shutdown_ends_every_connection_task_before_the_engine_closes() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("eddy-it-").tempdir()?;
    let config = eddy_server::config::ServerConfig {
        shutdown_grace_ms: 0,
        ..eddy_server::config::ServerConfig::for_dir(dir.path().join("data"))
    };
    eddy_server::runtime()?.block_on(async {
        let server = eddy_server::start(config.clone()).await?;
        let connect = || {
            let mut pg = tokio_postgres::Config::new();
            pg.host("127.0.0.1")
                .port(server.addr.port())
                .user("eddy")
                .dbname("eddy");
            async move { pg.connect(NoTls).await }
        };
        let (idle, idle_connection) = connect().await?;
        let idle_connection = tokio::spawn(idle_connection);
        idle.batch_execute("CREATE STREAM s (v INT); INSERT INTO s VALUES (1)")
            .await?;
        let (copier, copier_connection) = connect().await?;
        let copier_connection = tokio::spawn(copier_connection);
        let sink = copier.copy_in::<_, Bytes>("COPY s FROM STDIN").await?;
        pin_mut!(sink);
        sink.as_mut().send(Bytes::from_static(b"2\n")).await?;

        server.shutdown().await?;
        // Both connections are closed: their tasks ended with their sockets.
        assert_eq!(
            sqlstate(tokio::time::timeout(BOUND, idle_connection).await??),
            "57P01"
        );
        tokio::time::timeout(BOUND, copier_connection).await??.ok();
        assert!(
            sink.finish().await.is_err(),
            "the abandoned COPY is not acknowledged"
        );

        // No session kept the engine (and its data-directory lock) alive.
        let server = eddy_server::start(config).await?;
        let mut pg = tokio_postgres::Config::new();
        pg.host("127.0.0.1")
            .port(server.addr.port())
            .user("eddy")
            .dbname("eddy");
        let (client, connection) = pg.connect(NoTls).await?;
        tokio::spawn(connection);
        assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 1);
        drop(client);
        server.shutdown().await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_an_invalid_config_before_opening_the_data_directory() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("eddy-it-").tempdir()?;
    let data = dir.path().join("data");
    let config = eddy_server::config::ServerConfig {
        default_partitions: 0,
        ..eddy_server::config::ServerConfig::for_dir(&data)
    };
    let Err(e) = eddy_server::start(config).await else {
        anyhow::bail!("start accepted --default-partitions 0");
    };
    assert!(
        format!("{e:#}").contains("--default-partitions must be between 1 and 10000, not 0"),
        "{e:#}"
    );
    assert!(!data.exists(), "nothing was created");

    // The binary says so too, and exits with a failure.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .args(["--pg-addr", "127.0.0.1:0", "--max-message-bytes", "10"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--max-message-bytes must be between 1024 and"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing was created");
    Ok(())
}
