//! Deep and wide statements against a real server: each one either answers correctly or is
//! refused with 54001 (stack depth limit exceeded) or 42601 — and the server lives on.
//!
//! Sizes around the limits of `eddy_sql::parser::limits` (3000 expression levels, 1000 query
//! levels); the tests run in debug builds, where stack frames are largest.

use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};

use crate::harness::{TestServer, rows, scalar_i64};

const MAX_EXPR_DEPTH: usize = 3_000;
const MAX_QUERY_DEPTH: usize = 1_000;
const MAX_CALL_DEPTH: usize = 256;
const MAX_SUBQUERY_DEPTH: usize = 16;

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// `(statement, expected first cell)` pairs that must succeed.
fn accepted() -> Vec<(String, String)> {
    vec![
        (format!("SELECT {}", chain("1", "+", 1_800)), "1800".into()),
        (
            format!("SELECT {}", chain("true", " AND ", 2_000)),
            "t".into(),
        ),
        (
            format!("SELECT {}", chain("false", " OR ", 2_000)),
            "f".into(),
        ),
        (
            format!("SELECT length({})", chain("'ab'", " || ", 2_000)),
            "4000".into(),
        ),
        (
            format!("SELECT {}", nested("(", "7", ")", 1_500)),
            "7".into(),
        ),
        (
            format!(
                "SELECT count(*) FROM ({}) t",
                chain("SELECT 1", " UNION ALL ", 600)
            ),
            "600".into(),
        ),
        (
            format!(
                "SELECT {}",
                nested("CASE WHEN true THEN ", "3", " END", 300)
            ),
            "3".into(),
        ),
        (
            format!("SELECT {}", nested("abs(", "-5", ")", 100)),
            "5".into(),
        ),
        (
            format!("SELECT {}", nested("(", "7", ")", 1_000)),
            "7".into(),
        ),
        (
            format!(
                "SELECT {}",
                nested("(SELECT ", "8", ")", MAX_SUBQUERY_DEPTH)
            ),
            "8".into(),
        ),
        (
            format!(
                "SELECT * FROM {}",
                nested("(SELECT * FROM ", "(SELECT 9 AS x) t", ") t", 400)
            ),
            "9".into(),
        ),
        // Wide, not deep: many columns, a long IN list.
        (
            format!(
                "SELECT count(*) FROM (SELECT {}) t",
                (0..2_000)
                    .map(|i| format!("{i} AS c{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "1".into(),
        ),
        (
            format!(
                "SELECT 1 IN ({})",
                (0..10_000)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "t".into(),
        ),
    ]
}

/// Statements past a limit.
fn refused() -> Vec<String> {
    vec![
        format!("SELECT {}", chain("1", "+", MAX_EXPR_DEPTH + 1)),
        format!("SELECT {}", chain("1", "+", 200_000)),
        format!("SELECT {}", chain("true", " AND ", 50_000)),
        format!("SELECT {}", chain("'a'", " || ", 50_000)),
        format!("SELECT {}", nested("(", "1", ")", MAX_EXPR_DEPTH + 1)),
        format!("SELECT {}", nested("(", "1", ")", 100_000)),
        chain("SELECT 1", " UNION ALL ", MAX_QUERY_DEPTH + 1),
        chain("SELECT 1", " UNION ALL ", 100_000),
        format!(
            "SELECT {}",
            nested("(SELECT ", "1", ")", MAX_SUBQUERY_DEPTH + 1)
        ),
        format!(
            "SELECT {}",
            nested("(SELECT ", "1", ")", MAX_QUERY_DEPTH + 1)
        ),
        format!(
            "SELECT {}",
            nested("CASE WHEN true THEN ", "1", " END", MAX_EXPR_DEPTH + 1)
        ),
        format!("SELECT {}", nested("abs(", "1", ")", MAX_CALL_DEPTH + 1)),
        format!("SELECT {}", nested("abs(", "1", ")", MAX_EXPR_DEPTH + 1)),
        format!(
            "SELECT * FROM s WHERE v = 1 AND ({}) EMIT CHANGES",
            chain("v = 2", " OR ", 10_000)
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_statements_answer_or_are_refused_and_the_server_lives() -> anyhow::Result<()>
{
    let mut server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (k VARCHAR KEY, v INT)")
        .await?;
    for (sql, expected) in accepted() {
        let started = Instant::now();
        let got = rows(&client, &sql).await?;
        let cell = got.first().and_then(|r| r.first()).cloned().flatten();
        assert_eq!(cell.as_deref(), Some(expected.as_str()), "{}", &sql[..80]);
        eprintln!("{:?} for {}...", started.elapsed(), &sql[..60]);
    }
    for sql in refused() {
        let e = client.simple_query(&sql).await.expect_err(&sql[..80]);
        let db = e
            .as_db_error()
            .expect("a server error, not a dropped connection");
        assert!(
            ["54001", "42601"].contains(&db.code().code()),
            "{}: {db:?}",
            &sql[..80]
        );
        if db.code().code() == "54001" {
            assert!(db.message().contains("max_"), "{}", db.message());
        }
        assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    }
    assert!(
        !server.wait_exit(Duration::from_millis(10))?,
        "{}",
        server.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_parameter_chains_through_the_extended_protocol() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    // `$1 + $2` with declared int parameters (PostgreSQL resolves it with their types).
    for (ty, a, b) in [
        (Type::INT2, 1i64, 2i64),
        (Type::INT4, 40, 2),
        (Type::INT8, 1, -1),
    ] {
        let stmt = client
            .prepare_typed("SELECT $1 + $2", &[ty.clone(), ty.clone()])
            .await?;
        let row = match ty {
            Type::INT2 => client.query_one(&stmt, &[&(a as i16), &(b as i16)]).await?,
            Type::INT4 => client.query_one(&stmt, &[&(a as i32), &(b as i32)]).await?,
            _ => client.query_one(&stmt, &[&a, &b]).await?,
        };
        let sum: i64 = match ty {
            Type::INT2 => i64::from(row.get::<_, i16>(0)),
            Type::INT4 => i64::from(row.get::<_, i32>(0)),
            _ => row.get(0),
        };
        assert_eq!(sum, a + b, "{ty}");
    }

    let n = 2_000;
    let sql = format!(
        "SELECT {}",
        (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join("+")
    );
    let stmt = client.prepare_typed(&sql, &vec![Type::INT8; n]).await?;
    let ones = vec![1i64; n];
    let params: Vec<&(dyn ToSql + Sync)> = ones.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let sum: i64 = client.query_one(&stmt, &params).await?.get(0);
    assert_eq!(sum, n as i64);

    let deep = format!(
        "SELECT {}",
        (1..=MAX_EXPR_DEPTH + 1)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join("+")
    );
    let e = client.prepare(&deep).await.expect_err("too deep");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("54001"),
        "{e:?}"
    );
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_in_persistent_and_push_queries() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM s (k VARCHAR KEY, v INT); INSERT INTO s VALUES ('a', 1); \
             SET 'auto.offset.reset' = 'earliest'",
        )
        .await?;
    let sum = chain("v", "+", 2_500);
    client
        .batch_execute(&format!(
            "CREATE STREAM o AS SELECT k, {sum} AS x FROM s EMIT CHANGES"
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rows(&client, "SELECT x FROM o").await?;
        if let Some(row) = got.first() {
            assert_eq!(row[0].as_deref(), Some("2500"));
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no output row");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same expression in a push query, replayed from the earliest offset.
    let pushed = rows(
        &client,
        &format!("SELECT k, {sum} AS x FROM s EMIT CHANGES LIMIT 1"),
    )
    .await?;
    assert_eq!(pushed[0][1].as_deref(), Some("2500"));
    let too_deep = chain("v", "+", MAX_EXPR_DEPTH + 1);
    let e = client
        .batch_execute(&format!(
            "CREATE STREAM o2 AS SELECT k, {too_deep} AS x FROM s EMIT CHANGES"
        ))
        .await
        .expect_err("too deep");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("54001"),
        "{e:?}"
    );
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    Ok(())
}
