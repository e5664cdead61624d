//! SQL behaviour as data: every `tests/slt/*.slt` file runs through pgwire against its own
//! fresh server.
//!
//! Values come back as text from the simple query protocol; NULL is `NULL` and the empty string
//! `(empty)`. An error reads `<SQLSTATE>: <message>`, so a file can say `statement error 42P01`,
//! `statement error (42P01)` or match the message with a regex.

use std::path::{Path, PathBuf};

use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::TestServer;

/// A statement's failure as sqllogictest sees it.
#[derive(Debug)]
pub struct SltError {
    code: Option<String>,
    message: String,
}

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for SltError {}

impl From<tokio_postgres::Error> for SltError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => SltError {
                code: Some(db.code().code().to_string()),
                message: db.message().to_string(),
            },
            // Not a server error (a dropped connection, a protocol error): keep the whole story.
            None => SltError {
                code: None,
                message: format!("client error: {e:?}"),
            },
        }
    }
}

/// One pgwire connection driven by sqllogictest.
pub struct Postgres {
    client: Client,
}

#[async_trait::async_trait]
impl AsyncDB for Postgres {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => columns = Some(desc.len()),
                SimpleQueryMessage::Row(row) => {
                    columns.get_or_insert(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(affected)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "eddy"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }

    async fn run_command(command: std::process::Command) -> std::io::Result<std::process::Output> {
        tokio::process::Command::from(command).output().await
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.code.clone()
    }
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("slt")
}

/// Runs one `.slt` file against a fresh server; panics with the runner's report on a mismatch.
pub async fn run_file(name: &str) {
    let path = slt_dir().join(name);
    assert!(path.exists(), "{} does not exist", path.display());
    if let Err(report) = run_path(&path).await {
        panic!("{name} failed:\n{report}");
    }
}

/// Runs an `.slt` file against a fresh server; the runner's report (and the server's stderr) on
/// failure.
async fn run_path(path: &Path) -> Result<(), String> {
    let server = TestServer::start_fresh().expect("server starts");
    let config = server.config();
    let mut runner = sqllogictest::Runner::new(move || {
        let config = config.clone();
        async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok::<_, SltError>(Postgres { client })
        }
    });
    runner.with_column_validator(sqllogictest::default_column_validator);
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(240),
        runner.run_file_async(path),
    )
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "{}\n--- server stderr (tail) ---\n{}",
            e.display(false),
            tail(&server.log())
        )),
        Err(_) => Err(format!(
            "did not finish within 240 s\n--- server stderr (tail) ---\n{}",
            tail(&server.log())
        )),
    }
}

/// The runner itself: a wrong expected value, a missed error and a wrong SQLSTATE all fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_runner_reports_mismatches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("wrong_value.slt", "query I\nSELECT 1\n----\n2\n"),
        ("missed_error.slt", "statement error\nSELECT 1\n"),
        (
            "wrong_sqlstate.slt",
            "statement error 42703\nSELECT * FROM missing\n",
        ),
        ("null_is_not_empty.slt", "query T\nSELECT ''\n----\nNULL\n"),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write slt");
        assert!(
            run_path(&path).await.is_err(),
            "{name} passed but should fail"
        );
    }
    let ok = dir.path().join("ok.slt");
    std::fs::write(&ok, "query TT\nSELECT NULL, ''\n----\nNULL (empty)\n\nstatement error (42P01)\nSELECT * FROM missing\n")
        .expect("write slt");
    run_path(&ok).await.expect("a correct file passes");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every file in tests/slt has a test below: a new file without one fails this test.
#[test]
fn every_slt_file_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(slt_dir())
        .expect("tests/slt exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".slt"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SLT_FILES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/slt and SLT_FILES in tests/it/slt.rs disagree"
    );
}

macro_rules! slt_tests {
    ($($test:ident => $file:literal,)*) => {
        const SLT_FILES: &[&str] = &[$($file),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run_file($file).await;
            }
        )*
    };
}

slt_tests! {
    slt_create_stream => "create_stream.slt",
    slt_drop_stream => "drop_stream.slt",
    slt_show_describe => "show_describe.slt",
    slt_types => "types.slt",
    slt_insert => "insert.slt",
    slt_select => "select.slt",
    slt_explain => "explain.slt",
    slt_session => "session.slt",
    slt_errors => "errors.slt",
    slt_push => "push.slt",
    slt_persistent => "persistent.slt",
}
