//! The extended query protocol as tokio-postgres uses it: parameters, prepared statements,
//! binary results.

use chrono::{NaiveDate, NaiveDateTime};

use crate::harness::{TestServer, scalar_i64};

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("timestamp literal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_with_parameters_filters_rows() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a BIGINT, b VARCHAR)")
        .await?;
    client
        .batch_execute("INSERT INTO s VALUES (1, 'one'), (5, 'five'), (7, 'seven'), (5, 'cinq')")
        .await?;

    let rows = client
        .query("SELECT a, b FROM s WHERE a = $1 ORDER BY b", &[&5i64])
        .await?;
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(5, "cinq".to_string()), (5, "five".to_string())]);

    let rows = client
        .query(
            "SELECT b FROM s WHERE a > $1 AND b <> $2 ORDER BY a",
            &[&1i64, &"five"],
        )
        .await?;
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec!["cinq".to_string(), "seven".to_string()]);

    // The same prepared statement with different parameters.
    let stmt = client
        .prepare("SELECT count(*) FROM s WHERE a >= $1")
        .await?;
    for (min, expected) in [(0i64, 4i64), (5, 3), (6, 1), (100, 0)] {
        let n: i64 = client.query_one(&stmt, &[&min]).await?.get(0);
        assert_eq!(n, expected, "a >= {min}");
    }

    // A text parameter compared with a text column.
    let n: i64 = client
        .query_one("SELECT count(*) FROM s WHERE b = $1", &[&"seven"])
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_insert_appends_one_row_per_execution() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a BIGINT, b VARCHAR) WITH (partitions=2)")
        .await?;

    let insert = client.prepare("INSERT INTO s VALUES ($1, $2)").await?;
    for i in 0..50i64 {
        let n = client.execute(&insert, &[&i, &format!("row {i}")]).await?;
        assert_eq!(n, 1, "INSERT of row {i}");
    }
    // NULL parameters.
    assert_eq!(
        client
            .execute(&insert, &[&None::<i64>, &None::<String>])
            .await?,
        1
    );
    // A column list with parameters.
    assert_eq!(
        client
            .execute(
                "INSERT INTO s (b, a) VALUES ($1, $2)",
                &[&"listed", &1000i64]
            )
            .await?,
        1
    );

    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 52);
    assert_eq!(
        scalar_i64(&client, "SELECT sum(a) FROM s").await?,
        (0..50).sum::<i64>() + 1000
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM s WHERE a IS NULL AND b IS NULL"
        )
        .await?,
        1
    );
    let b: String = client
        .query_one("SELECT b FROM s WHERE a = $1", &[&1000i64])
        .await?
        .get(0);
    assert_eq!(b, "listed");
    let b: String = client
        .query_one("SELECT b FROM s WHERE a = $1", &[&49i64])
        .await?
        .get(0);
    assert_eq!(b, "row 49");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_decode_to_rust_types() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM t (i INT, big BIGINT, d DOUBLE, s VARCHAR, b BOOLEAN, ts TIMESTAMP, day DATE) \
             WITH (timestamp='ts')",
        )
        .await?;
    client
        .batch_execute(
            "INSERT INTO t VALUES \
             (-7, 9000000000, 2.25, 'héllo', true, '2024-02-29 23:59:58.125', '2024-02-29'), \
             (NULL, NULL, NULL, NULL, NULL, '1999-12-31 00:00:00', NULL)",
        )
        .await?;

    // tokio-postgres asks for binary results for every column of `query`.
    let rows = client.query("SELECT i, big, d, s, b, ts, day, rowtime, rowpartition, rowoffset FROM t ORDER BY rowoffset", &[]).await?;
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<_, Option<i32>>(0), Some(-7));
    assert_eq!(r.get::<_, Option<i64>>(1), Some(9_000_000_000));
    assert_eq!(r.get::<_, Option<f64>>(2), Some(2.25));
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("héllo"));
    assert_eq!(r.get::<_, Option<bool>>(4), Some(true));
    assert_eq!(
        r.get::<_, Option<NaiveDateTime>>(5),
        Some(ts("2024-02-29 23:59:58.125"))
    );
    assert_eq!(
        r.get::<_, Option<NaiveDate>>(6),
        NaiveDate::from_ymd_opt(2024, 2, 29)
    );
    assert_eq!(
        r.get::<_, NaiveDateTime>(7),
        ts("2024-02-29 23:59:58.125"),
        "rowtime is the timestamp column"
    );
    assert_eq!(r.get::<_, i32>(8), 0, "rowpartition is INT");
    assert_eq!(r.get::<_, i64>(9), 0, "rowoffset is BIGINT");

    let r = &rows[1];
    assert_eq!(r.get::<_, Option<i32>>(0), None);
    assert_eq!(r.get::<_, Option<i64>>(1), None);
    assert_eq!(r.get::<_, Option<f64>>(2), None);
    assert_eq!(r.get::<_, Option<String>>(3), None);
    assert_eq!(r.get::<_, Option<bool>>(4), None);
    assert_eq!(r.get::<_, NaiveDateTime>(7), ts("1999-12-31 00:00:00"));
    assert_eq!(r.get::<_, i64>(9), 1);

    // Column metadata names the PostgreSQL types.
    let stmt = client.prepare("SELECT i, big, d, s, b, ts FROM t").await?;
    let types: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.type_().name().to_string())
        .collect();
    assert_eq!(
        types,
        ["int4", "int8", "float8", "varchar", "bool", "timestamp"].map(String::from)
    );
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["i", "big", "d", "s", "b", "ts"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_parameters_round_trip_through_insert() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM t (i INT, d DOUBLE, b BOOLEAN, ts TIMESTAMP)")
        .await?;

    let when = ts("2023-06-15 08:30:00.5");
    let n = client
        .execute(
            "INSERT INTO t VALUES ($1, $2, $3, $4)",
            &[&42i32, &-1.5f64, &false, &when],
        )
        .await?;
    assert_eq!(n, 1);
    let row = client
        .query_one("SELECT i, d, b, ts FROM t WHERE i = $1", &[&42i32])
        .await?;
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, f64>(1), -1.5);
    assert!(!row.get::<_, bool>(2));
    assert_eq!(row.get::<_, NaiveDateTime>(3), when);

    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM t WHERE ts < $1",
            &[&ts("2024-01-01 00:00:00")],
        )
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_errors_carry_sqlstates_and_keep_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client.batch_execute("CREATE STREAM s (a BIGINT)").await?;

    let code = |e: tokio_postgres::Error| e.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(
        client
            .prepare("SELECT * FROM nope WHERE a = $1")
            .await
            .err()
            .and_then(code)
            .as_deref(),
        Some("42P01")
    );
    assert_eq!(
        client
            .prepare("SELECT nope FROM s")
            .await
            .err()
            .and_then(code)
            .as_deref(),
        Some("42703")
    );
    assert_eq!(
        client
            .prepare("SELEKT 1")
            .await
            .err()
            .and_then(code)
            .as_deref(),
        Some("42601")
    );
    assert_eq!(
        client
            .query("SELECT CAST($1 AS VARCHAR)::INT", &[&"x"])
            .await
            .err()
            .and_then(code)
            .as_deref(),
        Some("22P02")
    );

    let one: i64 = client
        .query_one("SELECT count(*) + 1 FROM s WHERE a = $1", &[&3i64])
        .await?
        .get(0);
    assert_eq!(one, 1);
    assert!(!client.is_closed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_parameter_types_resolve_untyped_expressions() -> anyhow::Result<()> {
    use tokio_postgres::types::Type;

    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    // `$1 + $2` has no column to infer from: the types the client declared in Parse decide,
    // as in PostgreSQL.
    let int4 = client
        .prepare_typed("SELECT $1 + $2", &[Type::INT4, Type::INT4])
        .await?;
    let sum: i32 = client.query_one(&int4, &[&40i32, &2i32]).await?.get(0);
    assert_eq!(sum, 42);
    let int8 = client
        .prepare_typed("SELECT $1 + $2", &[Type::INT8, Type::INT8])
        .await?;
    let sum: i64 = client
        .query_one(&int8, &[&(1i64 << 40), &-1i64])
        .await?
        .get(0);
    assert_eq!(sum, (1 << 40) - 1);
    // Declared types mix as PostgreSQL's do: int4 + int8 is int8.
    let mixed = client
        .prepare_typed("SELECT $1 + $2", &[Type::INT4, Type::INT8])
        .await?;
    let sum: i64 = client.query_one(&mixed, &[&1i32, &2i64]).await?.get(0);
    assert_eq!(sum, 3);
    // Text parameters concatenate; adding them is an error with a SQLSTATE, not a crash.
    let text = client
        .prepare_typed("SELECT $1 || $2", &[Type::TEXT, Type::TEXT])
        .await?;
    let joined: String = client.query_one(&text, &[&"ab", &"cd"]).await?.get(0);
    assert_eq!(joined, "abcd");
    let e = match client
        .prepare_typed("SELECT $1 + $2", &[Type::TEXT, Type::TEXT])
        .await
    {
        Ok(stmt) => client
            .query_one(&stmt, &[&"1", &"2"])
            .await
            .expect_err("text + text"),
        Err(e) => e,
    };
    // 42804 datatype_mismatch (PostgreSQL says 42883, no operator text + text).
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42804"),
        "{e:?}"
    );
    // Undeclared parameters are still inferred from their context.
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 AS x) t WHERE x = $1",
            &[&1i64],
        )
        .await?
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    Ok(())
}

/// tokio-postgres prepares, reads the parameter types the server announces (the columns'
/// declared types), and binds every value in binary as those types: each comes back as it
/// went in, microseconds and instants included; a value its column refuses is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_parameters_bind_as_the_announced_types_and_round_trip() -> anyhow::Result<()> {
    use chrono::{DateTime, NaiveTime, Utc};
    use rust_decimal::Decimal;

    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM b (si SMALLINT, r REAL, tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ, \
             tags TEXT[], ints INT[], v VARCHAR(4), n NUMERIC(20, 4), j JSON, u UUID, c CHAR(2))",
        )
        .await?;
    let announced = client
        .prepare("INSERT INTO b (j, u, c, v, tags) VALUES ($1, $2, $3, $4, $5)")
        .await?;
    let names: Vec<&str> = announced.params().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["json", "uuid", "bpchar", "varchar", "_text"]);

    let insert = client
        .prepare("INSERT INTO b (si, r, tm, ts, tz, tags, ints, v, n) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .await?;
    let tm = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("time");
    let at = ts("2024-02-29 12:34:56.123456");
    let tz: DateTime<Utc> = ts("1999-12-31 23:59:59.000001").and_utc();
    let tags = vec![Some("a".to_string()), None, Some("b, \"c\"".to_string())];
    let ints = vec![Some(1i32), None, Some(-7)];
    let n: Decimal = "-1234567890123456.1234".parse()?;
    let rows = client
        .execute(
            &insert,
            &[&-7i16, &0.25f32, &tm, &at, &tz, &tags, &ints, &"abcd", &n],
        )
        .await?;
    assert_eq!(rows, 1);
    let row = client
        .query_one("SELECT si, r, tm, ts, tz, tags, ints, v, n FROM b", &[])
        .await?;
    assert_eq!(row.get::<_, i16>(0), -7);
    assert_eq!(row.get::<_, f32>(1), 0.25);
    assert_eq!(row.get::<_, NaiveTime>(2), tm);
    assert_eq!(row.get::<_, NaiveDateTime>(3), at);
    assert_eq!(row.get::<_, DateTime<Utc>>(4), tz);
    assert_eq!(row.get::<_, Vec<Option<String>>>(5), tags);
    assert_eq!(row.get::<_, Vec<Option<i32>>>(6), ints);
    assert_eq!(row.get::<_, String>(7), "abcd");
    assert_eq!(row.get::<_, Decimal>(8), n);
    // The same parameters select the row back (binary comparisons of every type).
    let found = client
        .query(
            "SELECT count(*) FROM b WHERE si = $1 AND tm = $2 AND ts = $3 AND tz = $4 AND v = $5 AND n = $6",
            &[&-7i16, &tm, &at, &tz, &"abcd", &n],
        )
        .await?;
    assert_eq!(found[0].get::<_, i64>(0), 1);
    let too_long = client
        .execute(
            &insert,
            &[
                &None::<i16>,
                &None::<f32>,
                &None::<NaiveTime>,
                &None::<NaiveDateTime>,
                &None::<DateTime<Utc>>,
                &None::<Vec<String>>,
                &None::<Vec<i32>>,
                &"abcde",
                &None::<Decimal>,
            ],
        )
        .await;
    assert_eq!(crate::harness::sqlstate(too_long), "22001");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM b").await?, 1);
    Ok(())
}
