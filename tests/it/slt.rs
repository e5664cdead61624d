//! SQL behaviour as data: every `tests/slt/*.slt` file runs through pgwire against its own
//! fresh server.
//!
//! Values come back as text from the simple query protocol; NULL is `NULL` and the empty string
//! `(empty)`. Column types are checked strictly: `query ITRB` must name as many columns as the
//! result has, each with the type the server announced in RowDescription — `I` integers
//! (int2/int4/int8), `R` floating point and numeric, `B` boolean, `T` everything else (text,
//! timestamps, dates, bytea, JSON, arrays: all rendered as text). An error reads
//! `<SQLSTATE>: <message>`, so a file can say `statement error 42P01`,
//! `statement error (42P01)` or match the message with a regex.

use std::path::{Path, PathBuf};

use sqllogictest::{AsyncDB, ColumnType, DBOutput};

use crate::harness::TestServer;
use crate::simple_client::SimpleClient;

/// A result column's type as a `.slt` file spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SltType {
    /// `I`: int2, int4, int8.
    Integer,
    /// `R`: float4, float8, numeric.
    Real,
    /// `B`: bool.
    Boolean,
    /// `T`: any type sent as text (text, varchar, timestamps, dates, bytea, JSON, arrays).
    Text,
}

impl SltType {
    /// The type of a column of PostgreSQL type `oid` (the OIDs of `pg_type`).
    fn of_oid(oid: u32) -> SltType {
        match oid {
            20 | 21 | 23 => SltType::Integer,
            700 | 701 | 1700 => SltType::Real,
            16 => SltType::Boolean,
            _ => SltType::Text,
        }
    }
}

impl ColumnType for SltType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'I' => SltType::Integer,
            'R' => SltType::Real,
            'B' => SltType::Boolean,
            'T' => SltType::Text,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            SltType::Integer => 'I',
            SltType::Real => 'R',
            SltType::Boolean => 'B',
            SltType::Text => 'T',
        }
    }
}

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

impl From<anyhow::Error> for SltError {
    // Not a server error (a dropped connection, a protocol error): keep the whole story.
    fn from(e: anyhow::Error) -> Self {
        SltError {
            code: None,
            message: format!("client error: {e:#}"),
        }
    }
}

/// One pgwire connection driven by sqllogictest.
pub struct Postgres {
    client: SimpleClient,
}

#[async_trait::async_trait]
impl AsyncDB for Postgres {
    type Error = SltError;
    type ColumnType = SltType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let answer = self.client.query(sql).await?;
        if let Some((code, message)) = answer.error {
            return Err(SltError {
                code: Some(code),
                message,
            });
        }
        let rows = answer
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v.as_deref() {
                        None => "NULL".to_string(),
                        Some("") => "(empty)".to_string(),
                        Some(v) => v.to_string(),
                    })
                    .collect()
            })
            .collect();
        match answer.columns {
            Some(columns) => Ok(DBOutput::Rows {
                types: columns
                    .iter()
                    .map(|c| SltType::of_oid(c.type_oid))
                    .collect(),
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(answer.affected)),
        }
    }

    async fn shutdown(&mut self) {
        self.client.close().await;
    }

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
    let port = server.port();
    let mut runner = sqllogictest::Runner::new(move || async move {
        let client = SimpleClient::connect(port).await?;
        Ok::<_, SltError>(Postgres { client })
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
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
    // Each file is wrong in one way only; the report says which.
    let cases = [
        (
            "wrong_value.slt",
            "query I\nSELECT 1\n----\n2\n",
            "result mismatch",
        ),
        (
            "missed_error.slt",
            "statement error\nSELECT 1\n",
            "expected to fail",
        ),
        (
            "wrong_sqlstate.slt",
            "statement error 42703\nSELECT * FROM missing\n",
            "42P01",
        ),
        (
            "null_is_not_empty.slt",
            "query T\nSELECT ''\n----\nNULL\n",
            "result mismatch",
        ),
        // Column counts and types are checked, not only the values.
        (
            "too_few_columns.slt",
            "query I\nSELECT 1, 2\n----\n1 2\n",
            "columns mismatch",
        ),
        (
            "too_many_columns.slt",
            "query II\nSELECT 1\n----\n1\n",
            "columns mismatch",
        ),
        (
            "empty_result_still_has_columns.slt",
            "query I\nSELECT 1, 2 WHERE false\n----\n",
            "columns mismatch",
        ),
        (
            "int_is_not_text.slt",
            "query T\nSELECT 1\n----\n1\n",
            "columns mismatch",
        ),
        (
            "text_is_not_int.slt",
            "query I\nSELECT '1'\n----\n1\n",
            "columns mismatch",
        ),
        (
            "float_is_not_int.slt",
            "query I\nSELECT 1.5::DOUBLE\n----\n1.5\n",
            "columns mismatch",
        ),
        (
            "bool_is_not_text.slt",
            "query T\nSELECT true\n----\nt\n",
            "columns mismatch",
        ),
    ];
    for (name, text, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write slt");
        match run_path(&path).await {
            Ok(()) => panic!("{name} passed but should fail"),
            Err(report) => assert!(
                report.contains(says),
                "{name} failed, but its report does not say {says:?}:\n{report}"
            ),
        }
    }
    let ok = dir.path().join("ok.slt");
    std::fs::write(
        &ok,
        "query TT\nSELECT NULL, ''\n----\nNULL (empty)\n\n\
         query IIIRRRBTT\nSELECT 1::SMALLINT, 2::INT, 3::BIGINT, 1.5::REAL, 2.5::DOUBLE, \
         CAST(3.5 AS DECIMAL(4,1)), true, 'x', DATE '2024-01-02'\n----\n\
         1 2 3 1.5 2.5 3.5 t x 2024-01-02\n\n\
         statement error (42P01)\nSELECT * FROM missing\n",
    )
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
    slt_pg_types => "pg_types.slt",
    slt_insert => "insert.slt",
    slt_select => "select.slt",
    slt_explain => "explain.slt",
    slt_session => "session.slt",
    slt_errors => "errors.slt",
    slt_push => "push.slt",
    slt_persistent => "persistent.slt",
    slt_session_windows => "session_windows.slt",
    slt_emit_final => "emit_final.slt",
    slt_system_tables => "system_tables.slt",
}
