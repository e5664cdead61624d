//! PostgreSQL tools as they ship, against the real server: SQLAlchemy's reflection (over
//! psycopg2) and pgcli's completion and `\d` (pgspecial), each a script under `tests/py/` that
//! asserts what it sees. `.ci/run` installs them; a missing one fails the test, never skips it.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use crate::harness::TestServer;

/// Runs `tests/py/<script>` with the server's port; it must print `ok` last.
async fn run_script(server: &TestServer, script: &str, install: &str) -> anyhow::Result<()> {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new("python3")
        .arg(&path)
        .arg(server.port().to_string())
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
async fn sqlalchemy_reflects_streams_and_tables_over_psycopg2() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    run_script(
        &server,
        "sqlalchemy_reflection.py",
        "python3 -m pip install sqlalchemy psycopg2-binary",
    )
    .await
}
