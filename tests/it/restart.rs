//! A clean restart (SIGTERM, exit 0) keeps streams, their definitions and their data; offsets
//! continue where they stopped.

use crate::harness::{TestServer, rows, scalar_i64, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_restart_keeps_streams_and_data() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let client = server.client().await.expect("connect");
    client
        .batch_execute(
            "CREATE STREAM orders (id BIGINT, customer VARCHAR KEY, amount DECIMAL(10, 2), placed TIMESTAMP, tags ARRAY<VARCHAR>) \
             WITH (partitions=3, timestamp='placed', retention_ms=604800000)",
        )
        .await
        .expect("create orders");
    client
        .batch_execute("CREATE STREAM notes (body VARCHAR)")
        .await
        .expect("create notes");
    client
        .batch_execute("CREATE STREAM scratch (x INT)")
        .await
        .expect("create scratch");
    client
        .batch_execute(
            "INSERT INTO orders VALUES \
             (1, 'alice', 10.50, '2024-01-01 10:00:00', ['a', 'b']), \
             (2, 'bob', 3.25, '2024-01-01 11:00:00', []), \
             (3, 'carol', 99.99, '2024-01-02 09:00:00', NULL)",
        )
        .await
        .expect("insert orders");
    client
        .batch_execute("INSERT INTO notes VALUES ('first'), ('second')")
        .await
        .expect("insert notes");
    client
        .batch_execute("DROP STREAM scratch")
        .await
        .expect("drop scratch");

    let streams_before = rows(&client, "SHOW STREAMS").await.expect("show streams");
    let describe_before = rows(&client, "DESCRIBE orders").await.expect("describe");
    let orders_query = "SELECT id, customer, amount, placed, tags, rowtime, rowpartition, rowoffset FROM orders ORDER BY id";
    let data_before = rows(&client, orders_query).await.expect("select orders");
    drop(client);

    let code = server.terminate().expect("server stops on SIGTERM");
    assert_eq!(code, Some(0), "exit code after SIGTERM\n{}", server.log());
    assert!(
        !server.log().contains("panicked"),
        "server panicked:\n{}",
        server.log()
    );

    server.restart().expect("server restarts");
    let client = server.client().await.expect("connect after restart");
    assert_eq!(
        rows(&client, "SHOW STREAMS").await.expect("show streams"),
        streams_before
    );
    assert_eq!(
        rows(&client, "DESCRIBE orders").await.expect("describe"),
        describe_before
    );
    assert_eq!(
        rows(&client, orders_query).await.expect("select orders"),
        data_before
    );
    let notes = rows(
        &client,
        "SELECT body, rowoffset FROM notes ORDER BY rowoffset",
    )
    .await
    .expect("notes");
    assert_eq!(
        notes,
        vec![
            vec![Some("first".into()), Some("0".into())],
            vec![Some("second".into()), Some("1".into())]
        ]
    );
    assert_eq!(
        client
            .simple_query("SELECT * FROM scratch")
            .await
            .err()
            .and_then(|e| e.as_db_error().map(|d| d.code().code().to_string())),
        Some("42P01".to_string()),
        "the dropped stream stays dropped"
    );

    // Offsets continue after the restart.
    client
        .batch_execute("INSERT INTO notes VALUES ('third')")
        .await
        .expect("insert after restart");
    assert_eq!(
        scalar_i64(&client, "SELECT rowoffset FROM notes WHERE body = 'third'")
            .await
            .expect("offset"),
        2
    );
    // A key keeps its partition across restarts.
    client
        .batch_execute("INSERT INTO orders VALUES (4, 'alice', 1.00, '2024-01-03 00:00:00', NULL)")
        .await
        .expect("insert order");
    let alice = rows(
        &client,
        "SELECT DISTINCT rowpartition FROM orders WHERE customer = 'alice'",
    )
    .await
    .expect("alice");
    assert_eq!(
        alice.len(),
        1,
        "alice's orders are on one partition: {alice:?}"
    );
    // Its offset is the next one of that partition (which also holds other customers).
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM orders o JOIN orders n ON o.rowpartition = n.rowpartition WHERE n.id = 4 AND o.id <> 4"
        )
        .await
        .expect("rows before"),
        scalar_i64(&client, "SELECT rowoffset FROM orders WHERE id = 4").await.expect("offset"),
    );

    // A second clean cycle, with nothing written in between, changes nothing.
    drop(client);
    assert_eq!(server.terminate().expect("second SIGTERM"), Some(0));
    server.restart().expect("second restart");
    let client = server.client().await.expect("connect");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM orders")
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM notes")
            .await
            .expect("count"),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_connections_still_exits_cleanly() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let idle = server.client().await.expect("connect");
    let busy = server.client().await.expect("connect");
    busy.batch_execute("CREATE STREAM s (v INT)")
        .await
        .expect("create");
    busy.batch_execute("INSERT INTO s VALUES (1), (2)")
        .await
        .expect("insert");

    let code = server
        .terminate()
        .expect("server stops on SIGTERM with open connections");
    assert_eq!(code, Some(0), "{}", server.log());
    drop((idle, busy));

    server.restart().expect("restart");
    let client = server.client().await.expect("connect");
    assert_eq!(
        scalar_i64(&client, "SELECT sum(v) FROM s")
            .await
            .expect("sum"),
        3
    );
}

/// A stream defined before columns recorded their declared SQL types (its catalog entry has
/// none, and its TIMESTAMP and TIME are milliseconds, as they were then) loads, reads and
/// takes writes as before, described as what it is; a stream with declared types keeps them
/// across a restart, and they are still enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_types_survive_a_restart_and_older_definitions_still_load() -> anyhow::Result<()> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use eddy_catalog::{ColumnDef, RelationKind, StreamDef, StreamOptions};

    let dir = tempfile::Builder::new().prefix("eddy-it-").tempdir()?;
    {
        // As the catalog of a data directory written before 2026-12-01 has it.
        let engine =
            eddy_sql::Engine::open(eddy_sql::EngineConfig::new(dir.path().join("data"))).await?;
        engine
            .create_stream(StreamDef {
                name: "legacy".into(),
                columns: vec![
                    ColumnDef::new("name", DataType::Utf8, true),
                    ColumnDef::new(
                        "ts",
                        DataType::Timestamp(TimeUnit::Millisecond, None),
                        false,
                    ),
                    ColumnDef::new("tod", DataType::Time32(TimeUnit::Millisecond), false),
                ],
                timestamp_column: Some("ts".into()),
                partitions: 2,
                options: StreamOptions::default(),
                topic: "legacy".into(),
                storage: String::new(),
                kind: RelationKind::Stream,
                primary_key: vec![],
            })
            .await?;
        let session = engine.session();
        for statement in session
            .parse("INSERT INTO legacy VALUES ('a', '2024-01-01 10:00:00.123', '10:00:00.5')")?
        {
            session.execute(&statement, None).await?;
        }
        engine.close().await?;
    }
    let mut server = TestServer::start_with(dir.path(), &[], &[])?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM typed (v VARCHAR(5) KEY, c CHAR(3), j JSONB, u UUID, ts TIMESTAMP(3), tz TIMESTAMPTZ)",
        )
        .await?;
    server.restart()?;
    let client = server.client().await?;
    let described = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r[0].clone().unwrap_or_default(),
                    r[1].clone().unwrap_or_default()
                )
            })
            .collect()
    };
    assert_eq!(
        described(rows(&client, "DESCRIBE legacy").await?)[..3],
        ["name VARCHAR", "ts TIMESTAMP(3)", "tod TIME(3)"]
    );
    assert_eq!(
        described(rows(&client, "DESCRIBE typed").await?)[..6],
        [
            "v VARCHAR(5)",
            "c CHAR(3)",
            "j JSONB",
            "u UUID",
            "ts TIMESTAMP(3)",
            "tz TIMESTAMPTZ"
        ]
    );
    // The old stream's rows and writes, in milliseconds as before.
    client
        .batch_execute("INSERT INTO legacy VALUES ('b', '2024-01-01 10:00:01.123456', '10:00:01')")
        .await?;
    assert_eq!(
        rows(&client, "SELECT name, ts, tod FROM legacy ORDER BY ts").await?,
        [
            [
                Some("a"),
                Some("2024-01-01 10:00:00.123"),
                Some("10:00:00.5")
            ],
            [Some("b"), Some("2024-01-01 10:00:01.123"), Some("10:00:01")]
        ]
        .map(|r| r.map(|c| c.map(str::to_string)).to_vec())
    );
    let statement = client
        .prepare("SELECT name, legacy.ts, v, j, u, tz FROM legacy, typed")
        .await?;
    let types: Vec<&str> = statement
        .columns()
        .iter()
        .map(|c| c.type_().name())
        .collect();
    assert_eq!(
        types,
        [
            "varchar",
            "timestamp",
            "varchar",
            "jsonb",
            "uuid",
            "timestamptz"
        ]
    );
    // The new stream's declared types are still enforced after the restart.
    assert_eq!(
        sqlstate(
            client
                .batch_execute("INSERT INTO typed (v) VALUES ('toolong')")
                .await
        ),
        "22001"
    );
    assert_eq!(
        sqlstate(
            client
                .batch_execute("INSERT INTO typed (j) VALUES ('{')")
                .await
        ),
        "22P02"
    );
    client
        .batch_execute(
            "INSERT INTO typed VALUES ('k', 'x', '{\"a\": 1}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', \
             '2024-01-01 10:00:00.1239', '2024-01-01 12:00:00+02')",
        )
        .await?;
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(
        rows(&client, "SELECT v, c, j, u, ts, tz FROM typed").await?,
        [[
            Some("k"),
            Some("x  "),
            Some("{\"a\": 1}"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Some("2024-01-01 10:00:00.124"),
            Some("2024-01-01 10:00:00+00")
        ]]
        .map(|r| r.map(|c| c.map(str::to_string)).to_vec())
    );
    Ok(())
}

/// A data directory from before replication (its catalog a command log plus a snapshot) opens
/// as it was: its streams are there, the catalog becomes the metadata group's first snapshot,
/// new streams and queries are numbered after its commands, and restarts keep all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_from_before_replication_becomes_the_metadata_group() -> anyhow::Result<()> {
    use datafusion::arrow::datatypes::DataType;
    use eddy_catalog::{ColumnDef, Command, LocalCatalog, RelationKind, StreamDef, StreamOptions};

    let dir = tempfile::Builder::new().prefix("eddy-it-").tempdir()?;
    let def = |name: &str| StreamDef {
        name: name.into(),
        columns: vec![ColumnDef::new("v", DataType::Int64, false)],
        timestamp_column: None,
        partitions: 2,
        options: StreamOptions::default(),
        topic: name.into(),
        storage: String::new(),
        kind: RelationKind::Stream,
        primary_key: vec![],
    };
    {
        let legacy = LocalCatalog::open(&dir.path().join("data").join("catalog"))?;
        legacy.execute(Command::CreateStream(def("old")))?;
        legacy.execute(Command::CreateStream(def("gone")))?;
        legacy.execute(Command::DropStream {
            name: "gone".into(),
        })?;
    }
    let mut server = TestServer::start_with(dir.path(), &[], &[])?;
    let client = server.client().await?;
    client
        .batch_execute("INSERT INTO old VALUES (7); CREATE STREAM newer (v INT)")
        .await?;
    let streams = "SELECT name, storage FROM eddy.streams ORDER BY name";
    // Commands 1-3 came with the directory; the start purged "gone"'s storage (4).
    let expected = vec![
        vec![Some("newer".to_string()), Some("newer-5".to_string())],
        vec![Some("old".to_string()), Some("old-1".to_string())],
    ];
    assert_eq!(rows(&client, streams).await?, expected);
    assert!(server.data_dir().join("meta").is_dir());
    drop(client);
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(rows(&client, streams).await?, expected);
    assert_eq!(scalar_i64(&client, "SELECT v FROM old").await?, 7);
    drop(client);
    server.kill9();
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(rows(&client, streams).await?, expected);
    Ok(())
}
