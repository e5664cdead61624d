//! The real `psql` client against Eddy: DDL, INSERT (with its command tag), SELECT, COPY from
//! psql's stdin, and an error. psql must be installed: without it these tests fail, never skip.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::harness::TestServer;

const PSQL: &str = "/usr/bin/psql";

pub(crate) struct Output {
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `psql -X -A -t` with the given extra arguments, feeding `stdin`.
pub(crate) async fn psql(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    assert!(
        Path::new(PSQL).exists(),
        "{PSQL} is not installed: these tests need the PostgreSQL client (apt-get install postgresql-client)"
    );
    let mut child = tokio::process::Command::new(PSQL)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "eddy",
            "-d",
            "eddy",
        ])
        .arg("-p")
        .arg(server.port().to_string())
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("psql starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write psql stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("psql finished within 60 s")
        .expect("psql ran");
    Output {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs one `-c` command that must succeed; returns its stdout.
async fn psql_ok(server: &TestServer, command: &str) -> String {
    let out = psql(server, &["-c", command], "").await;
    assert_eq!(
        out.status,
        Some(0),
        "psql -c {command:?} failed\nstdout: {}\nstderr: {}\n--- server stderr ---\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_creates_inserts_and_selects() {
    let server = TestServer::start_fresh().expect("server starts");

    let out = psql_ok(&server, "CREATE STREAM readings (sensor VARCHAR KEY, value DOUBLE, at TIMESTAMP) WITH (partitions=2, timestamp='at')").await;
    assert_eq!(out.trim(), "CREATE STREAM");

    let out = psql_ok(
        &server,
        "INSERT INTO readings VALUES ('s1', 20.5, '2024-05-01 12:00:00'), ('s2', 18.25, '2024-05-01 12:00:01'), ('s1', 21.75, '2024-05-01 12:00:02')",
    )
    .await;
    assert_eq!(out.trim(), "INSERT 0 3");

    let out = psql_ok(
        &server,
        "SELECT sensor, value, rowtime FROM readings ORDER BY rowtime",
    )
    .await;
    assert_eq!(
        out,
        "s1|20.5|2024-05-01 12:00:00\ns2|18.25|2024-05-01 12:00:01\ns1|21.75|2024-05-01 12:00:02\n"
    );

    let out = psql_ok(
        &server,
        "SELECT sensor, count(*), max(value) FROM readings GROUP BY sensor ORDER BY sensor",
    )
    .await;
    assert_eq!(out, "s1|2|21.75\ns2|1|18.25\n");

    // NULL prints as an empty field in unaligned mode.
    psql_ok(&server, "INSERT INTO readings (sensor) VALUES ('s3')").await;
    let out = psql_ok(
        &server,
        "SELECT sensor, value FROM readings WHERE sensor = 's3'",
    )
    .await;
    assert_eq!(out, "s3|\n");

    let out = psql_ok(&server, "SHOW STREAMS").await;
    assert_eq!(out, "readings|readings|2|sensor|at\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_a_script_with_copy_from_stdin() {
    let server = TestServer::start_fresh().expect("server starts");

    // A script on stdin, with COPY data inline as pg_dump writes it.
    let script = "\
CREATE STREAM people (name VARCHAR, age INT);
COPY people FROM STDIN;
ada\t36
grace\t45
linus\t\\N
\\.
COPY people FROM STDIN WITH (FORMAT csv, HEADER true);
name,age
ken,70
\\.
SELECT name, age FROM people ORDER BY rowoffset;
SELECT count(*) FROM people;
";
    let out = psql(&server, &["-f", "-"], script).await;
    assert_eq!(
        out.status,
        Some(0),
        "psql script failed\nstdout: {}\nstderr: {}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert_eq!(
        out.stdout,
        "CREATE STREAM\nCOPY 3\nCOPY 1\nada|36\ngrace|45\nlinus|\nken|70\n4\n"
    );

    // COPY TO STDOUT goes to psql's stdout.
    let out = psql_ok(
        &server,
        "COPY (SELECT name FROM people WHERE age > 40 ORDER BY name) TO STDOUT",
    )
    .await;
    assert_eq!(out, "grace\nken\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reports_errors_with_their_message() {
    let server = TestServer::start_fresh().expect("server starts");

    let out = psql(&server, &["-c", "SELECT * FROM missing"], "").await;
    assert_ne!(
        out.status,
        Some(0),
        "psql succeeded on an unknown stream: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("stream \"missing\" does not exist"),
        "stderr: {}",
        out.stderr
    );

    // VERBOSITY verbose shows the SQLSTATE.
    let out = psql(
        &server,
        &["-v", "VERBOSITY=verbose", "-c", "CREATE VIEW v AS SELECT 1"],
        "",
    )
    .await;
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("0A000"), "stderr: {}", out.stderr);

    // The server is still fine for the next client.
    assert_eq!(psql_ok(&server, "SELECT 40 + 2").await, "42\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_backslash_d_lists_streams_as_tables() {
    let server = TestServer::start_fresh().expect("server starts");
    psql_ok(
        &server,
        "CREATE STREAM clicks (user_id VARCHAR KEY, n BIGINT)",
    )
    .await;
    psql_ok(&server, "CREATE STREAM other (a INT)").await;

    // -A -t: unaligned rows "schema|name|type|owner".
    let out = psql_ok(&server, "\\d").await;
    let rows: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        rows,
        vec!["public|clicks|table|eddy", "public|other|table|eddy"],
        "{out}"
    );

    // `\d name`: columns with PostgreSQL's type names.
    let out = psql_ok(&server, "\\d clicks").await;
    let rows: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        rows,
        vec![
            "user_id|character varying|||",
            "n|bigint|||",
            "rowtime|timestamp(3) without time zone||not null|",
            "rowpartition|integer||not null|",
            "rowoffset|bigint||not null|",
        ],
        "{out}"
    );

    let out = psql_ok(&server, "\\dt cl*").await;
    let rows: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows, vec!["public|clicks|table|eddy"], "{out}");

    // Declared types as PostgreSQL's `\d` shows them: lengths, precisions, JSON, UUID.
    psql_ok(
        &server,
        "CREATE STREAM typed (v VARCHAR(10), c CHAR(3), t TEXT, j JSON, jb JSONB, u UUID, \
         ts TIMESTAMP(3), tz TIMESTAMPTZ, tm TIME, si SMALLINT, r REAL, n NUMERIC(5, 2), a INT[])",
    )
    .await;
    let out = psql_ok(&server, "\\d typed").await;
    let rows: Vec<&str> = out.lines().filter(|l| !l.is_empty()).take(13).collect();
    assert_eq!(
        rows,
        vec![
            "v|character varying(10)|||",
            "c|character(3)|||",
            "t|text|||",
            "j|json|||",
            "jb|jsonb|||",
            "u|uuid|||",
            "ts|timestamp(3) without time zone|||",
            "tz|timestamp with time zone|||",
            "tm|time without time zone|||",
            "si|smallint|||",
            "r|real|||",
            "n|numeric(5,2)|||",
            "a|integer[]|||",
        ],
        "{out}"
    );
}

/// Runs a describe command with headers and footers on (`\\d name`'s "Indexes:" is a footer).
async fn psql_full(server: &TestServer, command: &str) -> String {
    let out = psql(server, &["-P", "tuples_only=off", "-c", command], "").await;
    assert_eq!(
        out.status,
        Some(0),
        "psql -c {command:?} failed\nstdout: {}\nstderr: {}\n--- server stderr ---\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(out.stderr.is_empty(), "{command}: {}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_family_answers_from_eddys_catalog() {
    let server = TestServer::start_fresh().expect("server starts");
    psql_ok(
        &server,
        "CREATE STREAM s (k VARCHAR KEY, v INT, amount DECIMAL(10,2)) WITH (partitions = 2)",
    )
    .await;
    psql_ok(&server, "CREATE TABLE t (id VARCHAR PRIMARY KEY, n BIGINT)").await;
    psql_ok(&server, "INSERT INTO s VALUES ('a', 1, 1.50)").await;

    // A stream's KEY is its hash index; a table's key its primary key.
    let out = psql_full(&server, "\\d s").await;
    assert!(out.contains("k|character varying|||"), "{out}");
    assert!(out.contains("amount|numeric(10,2)|||"), "{out}");
    assert!(out.contains("rowoffset|bigint||not null|"), "{out}");
    assert!(out.contains("Indexes:\n    \"s_key\" hash (k)"), "{out}");
    let out = psql_full(&server, "\\d t").await;
    assert!(out.contains("\"t_pkey\" PRIMARY KEY, hash (id)"), "{out}");

    // Sizes and descriptions.
    let out = psql_ok(&server, "\\dt+").await;
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("public|s|table|eddy|permanent|log|")
            && rows[0].ends_with(" bytes|stream, 2 partitions, KEY k"),
        "{out}"
    );
    // An empty partition holds its Raft group's first entries (membership, the leader's
    // blank entry): 136 bytes.
    assert_eq!(
        rows[1],
        "public|t|table|eddy|permanent|log|136 bytes|table, 1 partition, PRIMARY KEY (id)"
    );
    let out = psql_ok(&server, "\\d+").await;
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = psql_full(&server, "\\d+ s").await;
    assert!(
        out.contains("rowpartition|integer||not null||plain|||pseudo-column: the row's partition"),
        "{out}"
    );
    assert!(out.contains("Access method: log"), "{out}");

    // The other listings: empty where Eddy has nothing of the kind, never an error.
    assert_eq!(psql_ok(&server, "\\df").await, "");
    assert_eq!(psql_ok(&server, "\\dT").await, "");
    assert_eq!(psql_ok(&server, "\\l").await, "eddy|eddy|UTF8|C|C||libc|\n");
    assert!(psql_ok(&server, "\\du").await.starts_with("eddy|Superuser"));
    assert_eq!(
        psql_ok(&server, "\\di").await,
        "public|s_key|index|eddy|s\npublic|t_pkey|index|eddy|t\n"
    );
    assert_eq!(
        psql_ok(&server, "\\dp").await,
        "public|s|table|||\npublic|t|table|||\n"
    );
    assert_eq!(psql_ok(&server, "\\dn").await, "public|eddy\n");
    assert_eq!(psql_ok(&server, "\\db").await, "pg_default|eddy|\n");
    assert_eq!(psql_ok(&server, "\\do").await, "");
    let out = psql(&server, &["-c", "\\sv s"], "").await;
    assert!(
        out.stderr.contains("\"public.s\" is not a view"),
        "{}",
        out.stderr
    );

    // Functions and names psql users type.
    assert_eq!(
        psql_ok(&server, "SELECT current_user, session_user").await,
        "eddy|eddy\n"
    );
    let out = psql_full(&server, "SELECT 1").await;
    assert!(out.starts_with("?column?\n"), "{out}");
    let out = psql_full(&server, "SELECT 'a'").await;
    assert!(out.starts_with("?column?\n"), "{out}");
    // Every unnamed column is labelled, repeats and all, as PostgreSQL labels them.
    let out = psql_full(
        &server,
        "SELECT 1, 2, 'a' || 'b', v::text, CASE WHEN true THEN 1 END, 1::int, ARRAY[1] FROM s",
    )
    .await;
    assert!(
        out.starts_with("?column?|?column?|?column?|v|case|int4|array\n"),
        "{out}"
    );
    let out = psql_full(&server, "SELECT count(*), count(v), now() IS NULL FROM s").await;
    assert!(out.starts_with("count|count|?column?\n"), "{out}");
    assert!(
        psql_full(&server, "SELECT k, k FROM s")
            .await
            .starts_with("k|k\n"),
        "a column selected twice"
    );
    // `\dconfig` lists the settings the session changed; `\dconfig name` any one.
    let out = psql(
        &server,
        &[],
        "SET statement_timeout = '5s';\n\\dconfig\n\\dconfig+ time*\n",
    )
    .await;
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    // (Eddy keeps `statement_timeout` in milliseconds, as SHOW prints it.)
    assert_eq!(
        out.stdout, "SET\nstatement_timeout|5000\ntimezone|UTC|string|user|\n",
        "{}",
        out.stderr
    );
    assert_eq!(
        psql_ok(&server, "SELECT typname FROM pg_type WHERE oid = 1043").await,
        "varchar\n"
    );
    assert_eq!(
        psql_ok(
            &server,
            "SELECT relname FROM pg_class WHERE relkind = 'r' ORDER BY 1"
        )
        .await,
        "s\nt\n"
    );
    assert_eq!(
        psql_ok(
            &server,
            "SELECT column_name, ordinal_position, data_type, numeric_precision, numeric_scale \
             FROM information_schema.columns WHERE table_name = 's' ORDER BY ordinal_position"
        )
        .await,
        "k|1|character varying||\nv|2|integer|32|0\namount|3|numeric|10|2\n\
         rowtime|4|timestamp without time zone||\nrowpartition|5|integer|32|0\n\
         rowoffset|6|bigint|64|0\n"
    );
}
