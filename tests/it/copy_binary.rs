//! Binary COPY (`FORMAT binary`) both ways with real clients: psycopg 3's `write_row` and
//! `rows()` over every column type (`tests/py/copy_binary.py`), and psql's `\copy ... with
//! (format binary)` writing a file from one stream and loading it into another, which must
//! then hold the same rows.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use crate::harness::TestServer;
use crate::psql::psql;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_copies_every_column_type_in_binary_both_ways() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/copy_binary.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3")?;
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .context("the script finished within 180 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "copy_binary.py failed (is psycopg installed? python3 -m pip install 'psycopg[binary]')\n\
         stdout: {stdout}\nstderr: {}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    Ok(())
}

/// Runs a psql script that must succeed; returns its stdout.
async fn psql_script(server: &TestServer, script: &str) -> String {
    let out = psql(server, &[], script).await;
    assert_eq!(
        out.status,
        Some(0),
        "psql failed\nstdout: {}\nstderr: {}\n--- server ---\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_binary_copy_round_trips_a_stream_through_a_file() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kinds.bin");
    let file = file.display();
    let columns = "i INT, n BIGINT, d DOUBLE, ok BOOLEAN, s VARCHAR, raw BYTES, day DATE, \
                   ts TIMESTAMP, amount DECIMAL(10,2), tags ARRAY<VARCHAR>, nums ARRAY<INT>, \
                   t TIME, attrs MAP<VARCHAR, INT>, point STRUCT<x DOUBLE, y DOUBLE>";
    let rows = "(1, 9007199254740993, 0.1, true, 'tab\there, \"quoted\"', X'00ff', \
                 '2026-01-02', '2026-01-02 03:04:05.678', 12.34, ['a', NULL, 'c d'], [1, -2], \
                 '23:59:59.5', make_map('k', 1), named_struct('x', 1.5, 'y', -2.0)), \
                (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
                (3, -1, -1e300, false, '', X'', '1999-12-31', '1969-07-20 20:17:40', -0.01, \
                 [], [], '00:00:00', make_map(), named_struct('x', 0.0, 'y', 0.0))";
    let dump = "SELECT * FROM {} ORDER BY i";
    let out = psql_script(
        &server,
        &format!(
            "CREATE STREAM a ({columns}) WITH (partitions = 2);\n\
             CREATE STREAM b ({columns});\n\
             INSERT INTO a VALUES {rows};\n\
             \\copy a to '{file}' with (format binary)\n\
             \\copy b from '{file}' with (format binary)\n\
             {};\n\
             {};\n",
            dump.replace("{}", "a"),
            dump.replace("{}", "b")
        ),
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    // The tags, then each SELECT's three rows.
    let a = lines
        .iter()
        .position(|l| l.starts_with("1|"))
        .context(out.clone())?;
    let b = lines
        .iter()
        .rposition(|l| l.starts_with("1|"))
        .context(out.clone())?;
    assert!(b > a, "{out}");
    assert_eq!(lines[a..a + 3], lines[b..b + 3], "{out}");
    assert!(lines.contains(&"COPY 3"), "both \\copy say COPY 3: {out}");
    assert_eq!(
        lines[a],
        "1|9007199254740993|0.1|t|tab\there, \"quoted\"|\\x00ff|2026-01-02|\
         2026-01-02 03:04:05.678|12.34|{a,NULL,\"c d\"}|{1,-2}|23:59:59.5|{\"k\":1}|{\"x\":1.5,\"y\":-2.0}",
        "{out}"
    );

    // A file that is not binary COPY data fails with 22P04 and loads nothing.
    std::fs::write(dir.path().join("bad.bin"), b"not a copy file")?;
    let out = psql(
        &server,
        &[],
        &format!(
            "\\set VERBOSITY verbose\n\\copy b from '{}' with (format binary)\n",
            dir.path().join("bad.bin").display()
        ),
    )
    .await;
    assert!(
        out.stderr.contains("22P04") && out.stderr.contains("signature not recognized"),
        "{}",
        out.stderr
    );
    let count = psql_script(&server, "SELECT count(*) FROM b;\n").await;
    assert_eq!(count.trim(), "3");
    Ok(())
}
