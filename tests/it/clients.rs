//! PostgreSQL tools as they ship, against the real server: SQLAlchemy's reflection (over
//! psycopg2), pgcli's completion and `\d` (pgspecial), and every column type through psycopg
//! 3 and psycopg2, each a script under `tests/py/` that asserts what it sees, and pgjdbc's `DatabaseMetaData` (what DBeaver and DataGrip call) from
//! `tests/java/Metadata.java`, compiled here. `.ci/run` installs them; a missing one fails the
//! test, never skips it.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use crate::harness::TestServer;

/// Runs `tests/py/<script>` with the server's port; it must print `ok` last.
async fn run_script(server: &TestServer, script: &str, install: &str) -> anyhow::Result<()> {
    run_script_with(server, script, &[], install).await
}

/// Runs `tests/py/<script>` with the server's port, then `args`; it must print `ok` last.
async fn run_script_with(
    server: &TestServer,
    script: &str,
    args: &[&str],
    install: &str,
) -> anyhow::Result<()> {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new("python3")
        .arg(&path)
        .arg(server.port().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3")?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("the script finished within 120 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "{script} failed (is it installed? {install})\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_and_pandas_reflect_streams_and_tables_over_psycopg2() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(
        &server,
        "sqlalchemy_reflection.py",
        "python3 -m pip install sqlalchemy psycopg2-binary pandas",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_and_pandas_reflect_streams_and_tables_over_psycopg3() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script_with(
        &server,
        "sqlalchemy_reflection.py",
        &["psycopg"],
        "python3 -m pip install sqlalchemy psycopg pandas",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_sqlalchemy_transactions_and_savepoints() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(
        &server,
        "transactions.py",
        "python3 -m pip install psycopg psycopg2-binary sqlalchemy",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgcli_describes_and_completes_streams() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(&server, "pgcli_compat.py", "python3 -m pip install pgcli").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_as_text_and_binary_parameters_with_psycopg_and_psycopg2()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(
        &server,
        "types_roundtrip.py",
        "python3 -m pip install 'psycopg[binary]' psycopg2-binary",
    )
    .await
}

/// pgjdbc from Debian (`libpostgresql-jdbc-java`): `.ci/run` installs it with a JDK.
const PGJDBC: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_database_metadata_lists_streams_columns_and_keys() -> anyhow::Result<()> {
    assert!(
        std::path::Path::new(PGJDBC).exists(),
        "{PGJDBC} is missing: apt-get install default-jdk-headless libpostgresql-jdbc-java"
    );
    let server = TestServer::start_fresh()?;
    let classes = tempfile::tempdir()?;
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/Metadata.java");
    let javac = tokio::process::Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(source)
        .output()
        .await
        .context("running javac (apt-get install default-jdk-headless)")?;
    assert!(
        javac.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let child = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{PGJDBC}", classes.path().display()))
        .arg("Metadata")
        .arg(server.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running java")?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("java finished within 120 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the JDBC program failed\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "schema information_schema",
            "schema pg_catalog",
            "schema public",
            "table clicks TABLE stream, 2 partitions, KEY user_id",
            "table users TABLE table, 1 partition, PRIMARY KEY (id)",
            "column user_id varchar 1 YES KEY (partitions the stream)",
            "column n int4 2 YES null",
            "column rowtime timestamp 3 NO pseudo-column: event time (the timestamp column, else ingest time)",
            "column rowpartition int4 4 NO pseudo-column: the row's partition",
            "column rowoffset int8 5 NO pseudo-column: the row's offset in its partition",
            // A table's key is its primary key; a stream's KEY is none (many rows per key).
            "pk id 1 users_pkey",
            "ok",
        ],
        "{stdout}"
    );
    Ok(())
}
