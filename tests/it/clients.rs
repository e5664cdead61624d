//! PostgreSQL tools as they ship, against the real server: SQLAlchemy's reflection (over
//! psycopg2), pgcli's completion and `\d` (pgspecial), and every column type through psycopg
//! 3 and psycopg2, each a script under `tests/py/` that asserts what it sees; pgjdbc's
//! `DatabaseMetaData` (what DBeaver and DataGrip call), batches, update counts and fetch sizes
//! from `tests/java/`, compiled here; node-postgres with pg-cursor and pg-query-stream from
//! `tests/node/client.js`. `.ci/run` installs them; a missing one fails the test, never skips
//! it.

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
async fn copy_text_and_csv_round_trip_through_psycopg_and_psycopg2() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(
        &server,
        "copy_text.py",
        "python3 -m pip install 'psycopg[binary]' psycopg2-binary",
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

/// Compiles `tests/java/<class>.java` and runs it with pgjdbc and the server's port; returns its
/// stdout, once it exited with success.
async fn run_java(server: &TestServer, class: &str) -> anyhow::Result<String> {
    assert!(
        std::path::Path::new(PGJDBC).exists(),
        "{PGJDBC} is missing: apt-get install default-jdk-headless libpostgresql-jdbc-java"
    );
    let classes = tempfile::tempdir()?;
    let source = format!("{}/tests/java/{class}.java", env!("CARGO_MANIFEST_DIR"));
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
        .arg(class)
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the JDBC program {class} failed\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_database_metadata_lists_streams_columns_and_keys() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let stdout = run_java(&server, "Metadata").await?;
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

/// pgjdbc describes a statement once it prepares it on the server — at once for a batch of the
/// same statement, at the 5th execution otherwise — and an INSERT described with a
/// RowDescription instead of NoData turned every count into a result set: `executeBatch`
/// answered zeros and `executeUpdate` threw. Both thresholds must count every row, and a push
/// query read with a fetch size must come in chunks while its rows arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_batches_and_updates_count_rows_and_fetch_size_reads_a_push_query_in_chunks()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let stdout = run_java(&server, "Batch").await?;
    let ones = format!("[{}]", ["1"; 7].join(", "));
    let twos = format!("[{}]", ["2"; 7].join(", "));
    let batch = format!("[{}]", ["1"; 12].join(", "));
    let mut expected = vec![];
    for label in ["default", "threshold=0"] {
        expected.push(format!("{label} batch {batch}"));
        expected.push(format!("{label} executeUpdate {ones}"));
        expected.push(format!("{label} executeUpdate two rows {twos}"));
        expected.push(format!("{label} rows {}", 12 + 7 + 14));
    }
    expected.push("push fetch [0, 1, 2, 3, 4, 5]".into());
    expected.push("ok".into());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "{stdout}");
    Ok(())
}

/// node-postgres, pg-cursor and pg-query-stream (`tests/node/client.js`, its packages in
/// `tests/node/node_modules` from `npm ci`): parameters of every basic type, cursors over a
/// query and over a push query while its rows arrive, a query stream ended by LIMIT, and
/// SQLSTATEs in `error.code`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_binds_types_reads_cursors_and_streams_push_queries() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/pg-query-stream")
            .exists(),
        "node-postgres is missing: (cd tests/node && npm ci), as .ci/run does"
    );
    let child = tokio::process::Command::new("node")
        .arg(format!("{dir}/client.js"))
        .arg(server.port().to_string())
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running node (apt-get install nodejs npm)")?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("node finished within 120 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "tests/node/client.js failed\nstdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    Ok(())
}
