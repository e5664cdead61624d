//! The fast paths answer exactly as the planned paths do. `INSERT ... VALUES` of literals and
//! parameters (`sql/src/ingest/values.rs`) and pull queries by key (`sql/src/exec/lookup.rs`)
//! skip DataFusion; `SET eddy.fast_paths = off` sends the same statements through it. Every
//! statement here runs both ways — literals of every kind into columns of every kind, values
//! that cast, overflow or do not parse, checks of declared types, parameters bound as a client
//! binds them, keys of the wrong type — and the outcomes (the SQLSTATE and message of an error,
//! else the rows stored or read) must be the same.

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::harness::{TestServer, rows};

/// Columns of both streams: (name, type), then literals to insert into that column.
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "big",
        "BIGINT",
        &[
            "1",
            "-5",
            "1.5",
            "-2.5",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "1e3",
            "'42'",
            "' 7 '",
            "'abc'",
            "NULL",
            "true",
            "'1.5'",
        ],
    ),
    (
        "small",
        "SMALLINT",
        &["7", "32767", "32768", "-32769", "'12'", "2.7", "NULL"],
    ),
    ("i", "INT", &["2147483647", "2147483648", "'x'", "-1"]),
    (
        "dbl",
        "DOUBLE",
        &[
            "1", "1.25", "-0.5", "1e308", "1e309", "'2.5'", "'NaN'", "'inf'", "NULL",
        ],
    ),
    ("r", "REAL", &["1.5", "3.5e38", "1e39", "'0.1'"]),
    (
        "dec",
        "DECIMAL(10,2)",
        &[
            "1",
            "2.5",
            "-3.125",
            "12345678.99",
            "123456789.1",
            "0.005",
            "'7.25'",
            "'x'",
            "1e2",
            "NULL",
        ],
    ),
    (
        "s",
        "VARCHAR",
        &[
            "'plain'",
            "''",
            "'it''s'",
            "12",
            "-1.5",
            "true",
            "NULL",
            "'ünï ✓'",
        ],
    ),
    (
        "v5",
        "VARCHAR(5)",
        &["'abcde'", "'abcdef'", "'abc  '", "123456", "'é✓é✓é'"],
    ),
    ("c3", "CHAR(3)", &["'ab'", "'abcd'", "'a'"]),
    (
        "b",
        "BOOLEAN",
        &[
            "true", "false", "'t'", "'yes'", "'off'", "1", "0", "'maybe'", "NULL",
        ],
    ),
    (
        "ts",
        "TIMESTAMP",
        &[
            "'2026-01-02 03:04:05'",
            "'2026-01-02T03:04:05.123456'",
            "'2026-01-02'",
            "'2026-01-02 03:04:05+02:00'",
            "'not a time'",
            "1700000000000",
            "NULL",
        ],
    ),
    (
        "tz",
        "TIMESTAMPTZ",
        &[
            "'2026-01-02 03:04:05+02:00'",
            "'2026-01-02 03:04:05'",
            "'2026-13-01'",
        ],
    ),
    ("d", "DATE", &["'2026-02-28'", "'2026-02-30'", "20000"]),
    (
        "j",
        "JSON",
        &["'{\"a\": 1}'", "'[1, 2'", "'3'", "'\"s\"'", "NULL"],
    ),
    (
        "u",
        "UUID",
        &[
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
            "'A0EEBC999C0B4EF8BB6D6BB9BD380A11'",
            "'not-a-uuid'",
        ],
    ),
    (
        "arr",
        "ARRAY<INT>",
        &["'{1,2,3}'", "'{}'", "'{1,x}'", "NULL"],
    ),
    ("bytes", "BYTEA", &["'\\x0102ff'", "'abc'"]),
];

/// What a statement did: its error (SQLSTATE and message), or nothing.
async fn outcome(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => format!("not a server error: {e}"),
        },
    }
}

/// What a prepared statement did when executed with `params`.
async fn prepared_outcome(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
    let result = match client.prepare(sql).await {
        Ok(prepared) => client.execute(&prepared, params).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => format!("client error: {e}"),
        },
    }
}

/// What a statement prepared with declared parameter types (as psycopg 3 and pgjdbc declare
/// them) did when executed with `params`.
async fn typed_outcome(
    client: &Client,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> String {
    let result = match client.prepare_typed(sql, types).await {
        Ok(prepared) => client.execute(&prepared, params).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => format!("client error: {e}"),
        },
    }
}

async fn set_fast(client: &Client, on: bool) -> anyhow::Result<()> {
    let value = if on { "on" } else { "off" };
    client
        .batch_execute(&format!("SET eddy.fast_paths = {value}"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_values_the_fast_path_stores_and_refuses_what_the_planned_path_does()
-> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    let columns: Vec<String> = CASES.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
    for stream in ["fast", "planned"] {
        client
            .batch_execute(&format!(
                "CREATE STREAM {stream} (id BIGINT KEY, {}) WITH (partitions = 3)",
                columns.join(", ")
            ))
            .await?;
    }

    let mut id = 0;
    let mut statements = Vec::new();
    for (column, _, literals) in CASES {
        for literal in *literals {
            id += 1;
            statements.push(format!("({column}, id) VALUES ({literal}, {id})"));
        }
    }
    // Several rows at once, one of them bad; no column list; rowtime given; pseudo-columns the
    // log assigns; unknown columns; a wrong number of values.
    statements.extend(
        [
            "(id, big, s) VALUES (1001, 1, 'a'), (1002, 2.5, 'b'), (1003, -3, NULL)",
            "(id, big) VALUES (1004, 1), (1005, 'x')",
            "(id, v5) VALUES (1006, 'ok'), (1007, 'too long')",
            "(id, rowtime) VALUES (1008, '2026-01-01 00:00:00'), (1009, 1700000000000)",
            "(id, rowpartition) VALUES (1010, 1)",
            "(id, rowoffset) VALUES (1011, 1)",
            "(id, nope) VALUES (1012, 1)",
            "(id, big) VALUES (1013)",
            "(id, big) VALUES (1014, 1, 2)",
            "(id, id) VALUES (1015, 1)",
            "(ID, BIG) VALUES (1016, 16)",
            "(\"id\", \"big\") VALUES (1017, 17)",
            "(id, big) VALUES (1018, DEFAULT)",
            "(id, big) VALUES (1019, 1 + 1)",
        ]
        .map(String::from),
    );
    let all_columns = CASES.len() + 1;
    let mut full_row = vec!["NULL"; all_columns];
    full_row[0] = "1100";
    full_row[1] = "11";
    statements.push(format!("VALUES ({})", full_row.join(", ")));

    for statement in &statements {
        set_fast(&client, true).await?;
        let fast = outcome(&client, &format!("INSERT INTO fast {statement}")).await;
        set_fast(&client, false).await?;
        let planned = outcome(&client, &format!("INSERT INTO planned {statement}")).await;
        assert_eq!(fast, planned, "INSERT INTO ... {statement}");
    }

    // Parameters, bound as tokio-postgres binds them (binary, of the types Describe gave).
    let at = chrono::NaiveDate::from_ymd_opt(2026, 3, 4)
        .and_then(|d| d.and_hms_micro_opt(5, 6, 7, 123_456))
        .expect("a valid time");
    let bound: &[(&str, &[&(dyn ToSql + Sync)])] = &[
        (
            "(id, big, s) VALUES ($1, $2, $3)",
            &[&2001i64, &5i64, &"five"],
        ),
        ("(id, small) VALUES ($1, $2)", &[&2002i64, &7i16]),
        (
            "(id, dbl, b) VALUES ($1, $2, $3)",
            &[&2003i64, &2.5f64, &true],
        ),
        ("(id, v5) VALUES ($2, $1)", &[&"abcdef", &2004i64]),
        ("(id, ts) VALUES ($1, $2)", &[&2005i64, &at]),
        (
            "(id, i, r) VALUES ($1, $2, $3)",
            &[&2006i64, &-9i32, &0.25f32],
        ),
        ("(id, big) VALUES ($1, $1)", &[&2007i64]),
    ];
    for (statement, params) in bound {
        set_fast(&client, true).await?;
        let fast =
            prepared_outcome(&client, &format!("INSERT INTO fast {statement}"), params).await;
        set_fast(&client, false).await?;
        let planned =
            prepared_outcome(&client, &format!("INSERT INTO planned {statement}"), params).await;
        assert_eq!(fast, planned, "prepared INSERT INTO ... {statement}");
    }

    // Parameters whose types the client declared at Parse, of the declared type or another.
    let typed: &[(&str, &[Type], &[&(dyn ToSql + Sync)])] = &[
        (
            "(id, big, s) VALUES ($1, $2, $3)",
            &[Type::INT8, Type::INT4, Type::TEXT],
            &[&3001i64, &5i32, &"five"],
        ),
        (
            "(id, small) VALUES ($1, $2)",
            &[Type::INT8, Type::INT4],
            &[&3002i64, &40000i32],
        ),
        (
            "(id, small) VALUES ($1, $2)",
            &[Type::INT8, Type::INT8],
            &[&3003i64, &-12i64],
        ),
        (
            "(id, big) VALUES ($1, $2)",
            &[Type::INT8, Type::TEXT],
            &[&3004i64, &"12"],
        ),
        (
            "(id, big) VALUES ($1, $2)",
            &[Type::INT8, Type::TEXT],
            &[&3005i64, &"abc"],
        ),
        (
            "(id, dbl, r) VALUES ($1, $2, $3)",
            &[Type::INT8, Type::FLOAT4, Type::FLOAT8],
            &[&3006i64, &1.5f32, &1e300f64],
        ),
        (
            "(id, dec) VALUES ($1, $2)",
            &[Type::INT8, Type::INT8],
            &[&3007i64, &123i64],
        ),
        (
            "(id, b, s) VALUES ($1, $2, $3)",
            &[Type::INT8, Type::BOOL, Type::BOOL],
            &[&3008i64, &true, &false],
        ),
        (
            "(id, ts) VALUES ($1, $2)",
            &[Type::INT8, Type::TEXT],
            &[&3009i64, &"2026-01-02 03:04:05"],
        ),
        (
            "(id, arr) VALUES ($1, $2)",
            &[Type::INT8, Type::TEXT],
            &[&3010i64, &"{1,2}"],
        ),
        (
            "(id, v5, i) VALUES ($1, $2, $3)",
            &[Type::INT8, Type::TEXT, Type::INT2],
            &[&3011i64, &"toolong", &3i16],
        ),
        (
            "(id, big) VALUES ($1, $2)",
            &[Type::INT4, Type::INT4],
            &[&3012i32, &7i32],
        ),
    ];
    for (statement, types, params) in typed {
        set_fast(&client, true).await?;
        let fast = typed_outcome(
            &client,
            &format!("INSERT INTO fast {statement}"),
            types,
            params,
        )
        .await;
        set_fast(&client, false).await?;
        let planned = typed_outcome(
            &client,
            &format!("INSERT INTO planned {statement}"),
            types,
            params,
        )
        .await;
        assert_eq!(fast, planned, "typed INSERT INTO ... {statement} {types:?}");
    }

    // The same rows, every column as text (rowtime only where it was given).
    let select = |stream: &str| {
        let names: Vec<&str> = CASES.iter().map(|(n, _, _)| *n).collect();
        format!(
            "SELECT id, {}, rowpartition, CASE WHEN id IN (1008, 1009) THEN rowtime END \
             FROM {stream} ORDER BY id",
            names.join(", ")
        )
    };
    let fast = rows(&client, &select("fast")).await?;
    let planned = rows(&client, &select("planned")).await?;
    assert!(fast.len() > 50, "only {} rows stored", fast.len());
    assert_eq!(fast, planned);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_queries_by_key_the_fast_path_reads_what_the_planned_path_does() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE TABLE kv (k BIGINT PRIMARY KEY, v VARCHAR, n INT); \
             CREATE TABLE names (name VARCHAR PRIMARY KEY, k BIGINT); \
             INSERT INTO kv VALUES (1, 'one', 10), (2, 'two', NULL), (3, NULL, 30); \
             INSERT INTO names VALUES ('alice', 1), ('bob', 2)",
        )
        .await?;
    let queries = [
        "SELECT v FROM kv WHERE k = 1",
        "SELECT * FROM kv WHERE k = 2",
        "SELECT n, v, k FROM kv WHERE 3 = k",
        "SELECT kv.v AS value FROM kv WHERE kv.k = 1",
        "SELECT x.v FROM kv AS x WHERE x.k = 1",
        "SELECT v FROM kv WHERE k = 4",
        "SELECT v FROM kv WHERE k = 1.0",
        "SELECT v FROM kv WHERE k = 1.5",
        "SELECT v FROM kv WHERE k = '2'",
        "SELECT v FROM kv WHERE k = NULL",
        "SELECT v FROM kv WHERE k = 1 AND n = 10",
        "SELECT v FROM kv WHERE k = 1 AND k = 2",
        "SELECT v, v FROM kv WHERE k = 1",
        "SELECT v || '!' FROM kv WHERE k = 1",
        "SELECT k FROM names WHERE name = 'alice'",
        "SELECT * FROM names WHERE name = 'carol'",
        "SELECT * FROM names WHERE name = 1",
        "SELECT nope FROM kv WHERE k = 1",
    ];
    for query in queries {
        set_fast(&client, true).await?;
        let fast = rows(&client, query).await.map_err(|e| format!("{e:#}"));
        set_fast(&client, false).await?;
        let planned = rows(&client, query).await.map_err(|e| format!("{e:#}"));
        assert_eq!(fast, planned, "{query}");
    }
    // Prepared, executed repeatedly (the plan is cached after the first), with each key.
    let by_key = client.prepare("SELECT v, n FROM kv WHERE k = $1").await?;
    for k in [1i64, 2, 3, 4, 1] {
        set_fast(&client, true).await?;
        let fast: Vec<(Option<String>, Option<i32>)> = client
            .query(&by_key, &[&k])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        set_fast(&client, false).await?;
        let planned: Vec<(Option<String>, Option<i32>)> = client
            .query(&by_key, &[&k])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(fast, planned, "key {k}");
    }
    // A write, then a read of it on the same connection: the lookup waits for the table.
    client
        .batch_execute("INSERT INTO kv VALUES (1, 'uno', 11)")
        .await?;
    let row = client.query_one(&by_key, &[&1i64]).await?;
    assert_eq!(
        (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<i32>>(1)
        ),
        (Some("uno".into()), Some(11))
    );
    Ok(())
}
