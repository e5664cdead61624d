//! COPY through the wire protocol: text, CSV (with header), JSON lines, a large COPY, the
//! all-or-nothing rule for bad input, and COPY ... TO STDOUT.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt, pin_mut};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows, rows as rows_of, scalar_i64, text};

/// Sends `chunks` as the data of `statement` (a COPY ... FROM STDIN); returns the row count.
async fn copy_in(
    client: &Client,
    statement: &str,
    chunks: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    let chunks = chunks.iter().map(|c| Bytes::from(c.to_string())).collect();
    copy_pieces(client, statement, chunks).await
}

/// Sends each of `chunks` as one CopyData message of `statement`; returns the row count.
async fn copy_pieces(
    client: &Client,
    statement: &str,
    chunks: Vec<Bytes>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    pin_mut!(sink);
    for chunk in chunks {
        sink.as_mut().send(chunk).await?;
    }
    sink.finish().await
}

/// Runs a COPY ... TO STDOUT and returns all its data as text.
async fn copy_out(client: &Client, statement: &str) -> anyhow::Result<String> {
    let stream = client.copy_out(statement).await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(String::from_utf8(chunks.concat())?)
}

fn cells(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| c.unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_text_format_appends_rows_with_nulls() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR, c DOUBLE)")
        .await?;

    let n = copy_in(
        &client,
        "COPY s FROM STDIN",
        &["1\tone\t1.5\n2\t\\N\t2.5\n", "3\tthree\t\\N\n"],
    )
    .await?;
    assert_eq!(n, 3);

    let got = cells(
        rows(
            &client,
            "SELECT a, b, c, rowoffset FROM s ORDER BY rowoffset",
        )
        .await?,
    );
    assert_eq!(
        got,
        table(&[
            &["1", "one", "1.5", "0"],
            &["2", "NULL", "2.5", "1"],
            &["3", "three", "NULL", "2"]
        ])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_column_list_leaves_other_columns_null() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR, c DOUBLE)")
        .await?;

    let n = copy_in(
        &client,
        "COPY s (c, a) FROM STDIN",
        &["0.5\t10\n0.25\t20\n"],
    )
    .await?;
    assert_eq!(n, 2);
    let got = cells(rows(&client, "SELECT a, b, c FROM s ORDER BY rowoffset").await?);
    assert_eq!(
        got,
        table(&[&["10", "NULL", "0.5"], &["20", "NULL", "0.25"]])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_csv_with_header_skips_the_header_line() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR, c DOUBLE)")
        .await?;

    let data =
        "a,b,c\r\n1,\"hello, world\",1.5\r\n2,,2.5\r\n3,\"say \"\"hi\"\"\",3.5\r\n5,\"\",\r\n";
    let n = copy_in(
        &client,
        "COPY s FROM STDIN WITH (FORMAT csv, HEADER true)",
        &[data],
    )
    .await?;
    assert_eq!(n, 4);

    let got = cells(rows(&client, "SELECT a, b, c, b = '' FROM s ORDER BY rowoffset").await?);
    // As in PostgreSQL, an unquoted empty field is NULL and a quoted one an empty string.
    assert_eq!(
        got,
        table(&[
            &["1", "hello, world", "1.5", "f"],
            &["2", "NULL", "2.5", "NULL"],
            &["3", "say \"hi\"", "3.5", "f"],
            &["5", "", "NULL", "t"]
        ])
    );

    // Without HEADER the first line is data.
    let n = copy_in(
        &client,
        "COPY s FROM STDIN WITH (FORMAT csv)",
        &["4,four,4.5\n"],
    )
    .await?;
    assert_eq!(n, 1);
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_json_lines_maps_fields_by_name() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR, c DOUBLE, ts TIMESTAMP)")
        .await?;

    let data = concat!(
        "{\"a\": 1, \"b\": \"one\", \"c\": 1.5, \"ts\": \"2024-01-01 00:00:00\"}\n",
        "{\"b\": \"two\", \"a\": 2}\n",
        "{\"a\": 3, \"b\": null, \"c\": 3.5}\n",
    );
    let n = copy_in(&client, "COPY s FROM STDIN WITH (FORMAT json)", &[data]).await?;
    assert_eq!(n, 3);

    let got = cells(rows(&client, "SELECT a, b, c, ts FROM s ORDER BY rowoffset").await?);
    assert_eq!(
        got,
        table(&[
            &["1", "one", "1.5", "2024-01-01 00:00:00"],
            &["2", "two", "NULL", "NULL"],
            &["3", "NULL", "3.5", "NULL"],
        ])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_ten_thousand_rows_into_a_keyed_stream() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM big (k VARCHAR KEY, n BIGINT, note VARCHAR) WITH (partitions=4)",
        )
        .await?;

    // Sent in many chunks whose boundaries fall mid-line, as a client streaming a file would.
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&format!("key{}\t{i}\tnote number {i}\n", i % 37));
    }
    let bytes = data.as_bytes();
    let chunks: Vec<&str> = bytes
        .chunks(4093)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let n = copy_in(&client, "COPY big FROM STDIN", &chunks).await?;
    assert_eq!(n, 10_000);

    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM big").await?,
        10_000
    );
    assert_eq!(
        scalar_i64(&client, "SELECT sum(n) FROM big").await?,
        49_995_000
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(DISTINCT n) FROM big").await?,
        10_000
    );
    // Each key is on exactly one partition.
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM (SELECT k FROM big GROUP BY k HAVING count(DISTINCT rowpartition) > 1)")
            .await?,
        0
    );
    // Offsets of every partition are exactly 0..count-1.
    let per_partition =
        rows(&client, "SELECT rowpartition, count(*), min(rowoffset), max(rowoffset), count(DISTINCT rowoffset) FROM big GROUP BY rowpartition")
            .await?;
    for row in cells(per_partition) {
        let count: i64 = row[1].parse()?;
        assert_eq!(row[2], "0", "partition {} starts at 0: {row:?}", row[0]);
        assert_eq!(
            row[3].parse::<i64>()?,
            count - 1,
            "partition {} has no gaps: {row:?}",
            row[0]
        );
        assert_eq!(
            row[4].parse::<i64>()?,
            count,
            "partition {} has no duplicate offsets: {row:?}",
            row[0]
        );
    }
    // Within one key, the COPY's order is kept (offsets increase with n).
    let out_of_order = scalar_i64(
        &client,
        "SELECT count(*) FROM (SELECT n, lag(n) OVER (PARTITION BY k ORDER BY rowoffset) AS prev FROM big) WHERE prev > n",
    )
    .await?;
    assert_eq!(out_of_order, 0);
    Ok(())
}

/// Asserts a COPY of `chunks` into `s` failed with 22P02 naming the line and column, then that
/// nothing was appended; returns the error message.
async fn assert_bad_copy_appends_nothing(
    client: &Client,
    statement: &str,
    chunks: Vec<Bytes>,
    line: usize,
    column: &str,
) -> anyhow::Result<String> {
    let before = scalar_i64(client, "SELECT count(*) FROM s").await?;
    let result = copy_pieces(client, statement, chunks).await;
    let err = match result {
        Ok(n) => panic!("{statement} with a bad line {line} succeeded ({n} rows)"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{statement}: not a server error: {err:?}"));
    assert_eq!(db.code().code(), "22P02", "{statement}: {}", db.message());
    let message = format!("{} {}", db.message(), db.detail().unwrap_or_default());
    assert!(
        message.contains(&format!("line {line}")),
        "{statement}: message {message:?} does not say line {line}"
    );
    assert!(
        message.contains(column),
        "{statement}: message {message:?} does not name column {column}"
    );
    assert_eq!(
        scalar_i64(client, "SELECT count(*) FROM s").await?,
        before,
        "{statement}: rows were appended"
    );
    Ok(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_with_a_bad_third_row_appends_nothing() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR, amount DOUBLE) WITH (partitions=2)")
        .await?;
    copy_in(&client, "COPY s FROM STDIN", &["0\tzero\t0.5\n"]).await?;

    assert_bad_copy_appends_nothing(
        &client,
        "COPY s FROM STDIN",
        vec![Bytes::from(
            "1\tone\t1.5\n2\ttwo\t2.5\n3\tthree\tlots\n4\tfour\t4.5\n",
        )],
        3,
        "amount",
    )
    .await?;
    // CSV: line numbers count the header.
    assert_bad_copy_appends_nothing(
        &client,
        "COPY s FROM STDIN WITH (FORMAT csv, HEADER true)",
        vec![Bytes::from("a,b,amount\n1,one,1.5\nx,two,2.5\n")],
        3,
        "a",
    )
    .await?;
    // A row with too many fields is bad too.
    let result = copy_in(
        &client,
        "COPY s FROM STDIN",
        &["1\tone\t1.5\n2\ttwo\t2.5\t9\n"],
    )
    .await;
    assert!(result.is_err(), "a row with an extra field was accepted");

    // The connection is still usable and the table holds only the good first COPY.
    let got = cells(rows(&client, "SELECT a, b, amount FROM s").await?);
    assert_eq!(got, table(&[&["0", "zero", "0.5"]]));
    let offsets = cells(rows(&client, "SELECT rowpartition, rowoffset FROM s").await?);
    assert_eq!(offsets[0][1], "0");
    Ok(())
}

/// Row `i` of the streamed-COPY test, in text format with CRLF line ends, escapes, a
/// multi-byte character, NULLs and timestamps in several shapes.
fn streamed_row(i: usize) -> String {
    let name = match i % 4 {
        0 => format!("caf\u{e9} {i}"),
        1 => format!("tab\\t{i}"),
        2 => "\\N".to_string(),
        _ => format!("oct\\101{i}"),
    };
    let ts = match i % 3 {
        0 => format!("2024-01-01 00:00:{:02}", i % 60),
        1 => format!("2024-01-01T00:00:{:02}.5", i % 60),
        _ => format!("2024-01-01 00:00:{:02}+00:00", i % 60),
    };
    format!("{i}\t{name}\t{ts}\r\n")
}

/// Cuts `data` into pieces of `size` bytes, cutting through lines and characters.
fn pieces(data: &[u8], size: usize) -> Vec<Bytes> {
    data.chunks(size).map(Bytes::copy_from_slice).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_copy_cut_anywhere_decodes_every_row_once() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM s (id BIGINT, name VARCHAR, ts TIMESTAMP) WITH (partitions=2)",
        )
        .await?;
    // Enough rows for several decode blocks (a block is one frame: 32768 lines).
    let rows = 100_000;
    let data: String = (0..rows).map(streamed_row).collect();
    let n = copy_pieces(&client, "COPY s FROM STDIN", pieces(data.as_bytes(), 7_777)).await?;
    assert_eq!(n, rows as u64);
    let got = cells(
        rows_of(
            &client,
            "SELECT count(*), count(DISTINCT id), sum(id), count(name), \
             sum(CAST(extract(epoch FROM ts) AS BIGINT) % 60) FROM s",
        )
        .await?,
    );
    let (sum_ids, sum_secs): (usize, usize) = ((0..rows).sum(), (0..rows).map(|i| i % 60).sum());
    let quarter = rows / 4;
    assert_eq!(
        got,
        table(&[&[
            &rows.to_string(),
            &rows.to_string(),
            &sum_ids.to_string(),
            &(rows - quarter).to_string(),
            &sum_secs.to_string(),
        ]])
    );
    let got = cells(
        rows_of(
            &client,
            "SELECT id, name, CAST(ts AS VARCHAR) FROM s WHERE id IN (40000, 40001, 40002, 40003, 99999) ORDER BY id",
        )
        .await?,
    );
    assert_eq!(
        got,
        table(&[
            &["40000", "caf\u{e9} 40000", "2024-01-01T00:00:40.500"],
            &["40001", "tab\t40001", "2024-01-01T00:00:41"],
            &["40002", "NULL", "2024-01-01T00:00:42"],
            &["40003", "octA40003", "2024-01-01T00:00:43.500"],
            &["99999", "octA99999", "2024-01-01T00:00:39"],
        ])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_in_a_late_block_fails_the_whole_copy() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (id BIGINT, name VARCHAR, ts TIMESTAMP)")
        .await?;
    let good: String = (0..100_000).map(streamed_row).collect();
    // Line 90001 gets a bad timestamp; line 95001 a missing field (in a later block, so never
    // the one reported).
    let data = good
        .replace(
            "90000\tcaf\u{e9} 90000\t2024-01-01 00:00:00\r\n",
            "90000\tcaf\u{e9} 90000\t2024-01-01 25:00:00\r\n",
        )
        .replace(
            "95000\tcaf\u{e9} 95000\t2024-01-01 00:00:20+00:00\r\n",
            "95000\r\n",
        );
    assert_eq!(
        good.len() - data.len(),
        "\tcaf\u{e9} 95000\t2024-01-01 00:00:20+00:00".len()
    );
    let message = assert_bad_copy_appends_nothing(
        &client,
        "COPY s FROM STDIN",
        pieces(data.as_bytes(), 65_536),
        90_001,
        "ts",
    )
    .await?;
    assert!(
        message.contains("line 90001, column ts") && message.contains("25:00:00"),
        "{message}"
    );
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 0);

    // An end marker in a late block ends the data: rows after it are not read.
    let mut data: String = (0..50_000).map(streamed_row).collect();
    data.push_str("\\.\r\nnot a row at all\n");
    let n = copy_pieces(
        &client,
        "COPY s FROM STDIN",
        pieces(data.as_bytes(), 100_000),
    )
    .await?;
    assert_eq!(n, 50_000);
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 50_000);
    Ok(())
}

/// Row `i` of the streamed CSV test: every tenth name spans two lines, others have a comma or
/// doubled quotes.
fn csv_row(i: usize) -> String {
    let name = match i % 10 {
        0 => format!("\"multi\nline {i}\""),
        1 => format!("\"say \"\"hi\"\" {i}\""),
        _ => format!("\"name {i}, with comma\""),
    };
    format!("{i},{name},2024-01-01 00:00:{:02}\n", i % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_csv_copy_cut_anywhere_keeps_quoted_newlines_and_line_numbers() -> anyhow::Result<()>
{
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM s (id BIGINT, name VARCHAR, ts TIMESTAMP) WITH (partitions=2)",
        )
        .await?;
    let rows = 100_000;
    let statement = "COPY s FROM STDIN WITH (FORMAT csv, HEADER true)";
    let data = format!("id,name,ts\n{}", (0..rows).map(csv_row).collect::<String>());
    let n = copy_pieces(&client, statement, pieces(data.as_bytes(), 7_777)).await?;
    assert_eq!(n, rows as u64);
    let got = cells(
        rows_of(
            &client,
            "SELECT count(*), sum(id), count(DISTINCT name) FROM s",
        )
        .await?,
    );
    let sum_ids: usize = (0..rows).sum();
    assert_eq!(
        got,
        table(&[&[&rows.to_string(), &sum_ids.to_string(), &rows.to_string()]])
    );
    let got = cells(
        rows_of(
            &client,
            "SELECT id, name FROM s WHERE id IN (50000, 50001, 50002) ORDER BY id",
        )
        .await?,
    );
    assert_eq!(
        got,
        table(&[
            &["50000", "multi\nline 50000"],
            &["50001", "say \"hi\" 50001"],
            &["50002", "name 50002, with comma"],
        ])
    );

    // A bad id on row 90000: line = header + 90000 rows before + 9000 extra quoted lines + 1.
    let bad = data.replace("\n90000,", "\nx90000,");
    let message = assert_bad_copy_appends_nothing(
        &client,
        statement,
        pieces(bad.as_bytes(), 65_536),
        99_002,
        "id",
    )
    .await?;
    assert!(message.contains("line 99002, column id"), "{message}");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM s").await?,
        rows as i64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_rows_in_one_huge_message_are_decoded_in_byte_sized_blocks() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (id BIGINT, body VARCHAR)")
        .await?;
    // 30k rows of ~1 KB in ONE CopyData message: blocks are cut by size (8 MiB), not rows.
    let body = "x".repeat(1_000);
    let rows = 30_000;
    let data: String = (0..rows).map(|i| format!("{i}\t{body}\n")).collect();
    // A bad id in the first block fails the COPY while later blocks wait to be dispatched.
    let bad = data.replacen("\n5\t", "\nfive\t", 1);
    let message = assert_bad_copy_appends_nothing(
        &client,
        "COPY s FROM STDIN",
        vec![Bytes::from(bad)],
        6,
        "id",
    )
    .await?;
    assert!(message.contains("line 6, column id"), "{message}");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 0);

    let n = copy_pieces(&client, "COPY s FROM STDIN", vec![Bytes::from(data)]).await?;
    assert_eq!(n, rows as u64);
    let got = cells(
        rows_of(
            &client,
            "SELECT count(*), sum(id), min(length(body)) FROM s",
        )
        .await?,
    );
    let sum: usize = (0..rows).sum();
    assert_eq!(
        got,
        table(&[&[&rows.to_string(), &sum.to_string(), "1000"]])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_json_with_a_bad_third_row_appends_nothing() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR)")
        .await?;
    client
        .batch_execute("INSERT INTO s VALUES (0, 'zero')")
        .await?;

    assert_bad_copy_appends_nothing(
        &client,
        "COPY s FROM STDIN WITH (FORMAT json)",
        vec![Bytes::from(
            "{\"a\": 1, \"b\": \"one\"}\n{\"a\": 2}\n{\"a\": \"three\"}\n",
        )],
        3,
        "a",
    )
    .await?;
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_into_an_unknown_stream_is_42p01() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    let err = client
        .copy_in::<_, Bytes>("COPY nope FROM STDIN")
        .await
        .err();
    let err = match err {
        Some(e) => e,
        None => panic!("COPY into an unknown stream started"),
    };
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("42P01"),
        "{err:?}"
    );
    assert_eq!(scalar_i64(&client, "SELECT 1").await?, 1);
    // An unknown column fails the prepare the same way, and the connection stays usable.
    client.batch_execute("CREATE STREAM s (a INT)").await?;
    let err = client
        .copy_in::<_, Bytes>("COPY s (a, nope) FROM STDIN")
        .await
        .err()
        .expect("COPY naming an unknown column started");
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("42703"),
        "{err:?}"
    );
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_yields_the_rows() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM s (a INT, b VARCHAR)")
        .await?;
    client
        .batch_execute("INSERT INTO s VALUES (1, 'one'), (2, NULL), (3, 'with, comma')")
        .await?;

    let text = copy_out(&client, "COPY s TO STDOUT").await?;
    assert_eq!(text, "1\tone\n2\t\\N\n3\twith, comma\n");

    let csv = copy_out(
        &client,
        "COPY (SELECT a * 10, b FROM s WHERE a > 1 ORDER BY a) TO STDOUT WITH (FORMAT csv)",
    )
    .await?;
    assert_eq!(csv, "20,\n30,\"with, comma\"\n");

    let text = copy_out(
        &client,
        "COPY (SELECT rowoffset, a FROM s ORDER BY rowoffset DESC) TO STDOUT",
    )
    .await?;
    assert_eq!(text, "2\t3\n1\t2\n0\t1\n");

    // What COPY TO writes, COPY FROM reads back.
    client
        .batch_execute("CREATE STREAM s2 (a INT, b VARCHAR)")
        .await?;
    let all = copy_out(&client, "COPY s TO STDOUT").await?;
    assert_eq!(copy_in(&client, "COPY s2 FROM STDIN", &[&all]).await?, 3);
    assert_eq!(copy_out(&client, "COPY s2 TO STDOUT").await?, all);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partition_is_scanned_in_parallel_splits_each_row_once() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute("CREATE STREAM big (x BIGINT) WITH (partitions=1)")
        .await?;
    let n: i64 = 300_000;
    let data: String = (0..n).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        copy_in(&client, "COPY big FROM STDIN", &[&data]).await?,
        n as u64
    );
    // Enough rows for two readers of the one partition (on a machine with 2+ cores).
    let plan: String = text(&client, "EXPLAIN SELECT count(*) FROM big").await?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if cores >= 2 {
        assert!(plan.contains("splits=2"), "{plan}");
    }
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT rowoffset), sum(x), min(rowoffset), max(rowoffset), \
             count(*) FILTER (WHERE x = rowoffset) FROM big"
        )
        .await?,
        vec![
            [n, n, n * (n - 1) / 2, 0, n - 1, n]
                .iter()
                .map(|v| Some(v.to_string()))
                .collect::<Vec<_>>()
        ]
    );
    // Offset bounds still cut exactly across the splits.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM big WHERE rowoffset >= 1000 AND rowoffset < 250000"
        )
        .await?,
        249_000
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_csv_with_header_writes_the_header_and_copy_from_reads_it_back()
-> anyhow::Result<()> {
    // COPY TO used to ignore HEADER; what Eddy writes, Eddy must read.
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM src (id INT, \"odd,name\" VARCHAR) WITH (partitions = 1); \
             CREATE STREAM dst (id INT, \"odd,name\" VARCHAR) WITH (partitions = 1); \
             INSERT INTO src VALUES (1, 'a'), (2, 'b,c')",
        )
        .await?;
    let out = copy_out(
        &client,
        "COPY (SELECT id, \"odd,name\" FROM src ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await?;
    assert_eq!(out, "id,\"odd,name\"\n1,a\n2,\"b,c\"\n");
    let without = copy_out(
        &client,
        "COPY (SELECT id FROM src ORDER BY id) TO STDOUT WITH (FORMAT csv)",
    )
    .await?;
    assert_eq!(without, "1\n2\n", "no header unless asked");
    copy_in(
        &client,
        "COPY dst FROM STDIN WITH (FORMAT csv, HEADER)",
        &[out.as_str()],
    )
    .await?;
    assert_eq!(
        cells(rows(&client, "SELECT id, \"odd,name\" FROM dst ORDER BY id").await?),
        table(&[&["1", "a"], &["2", "b,c"]])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_copied_out_copy_back_in_text_and_csv() -> anyhow::Result<()> {
    // COPY TO writes arrays as PostgreSQL does ({1,2}); COPY FROM read only JSON ([1,2]).
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client
        .batch_execute(
            "CREATE STREAM a (id INT, xs ARRAY<INT>, tags ARRAY<VARCHAR>) WITH (partitions = 1); \
             CREATE STREAM b (id INT, xs ARRAY<INT>, tags ARRAY<VARCHAR>) WITH (partitions = 1); \
             CREATE STREAM c (id INT, xs ARRAY<INT>, tags ARRAY<VARCHAR>) WITH (partitions = 1)",
        )
        .await?;
    copy_in(
        &client,
        "COPY a FROM STDIN",
        &["1\t[1,2,null]\t[\"x\",\"y z\"]\n2\t{}\t{a,\"b,c\",NULL}\n"],
    )
    .await?;
    let select = |t: &str| format!("SELECT id, xs, tags FROM {t} ORDER BY id");
    let expected = cells(rows(&client, &select("a")).await?);
    assert_eq!(
        expected,
        table(&[
            &["1", "{1,2,NULL}", "{x,\"y z\"}"],
            &["2", "{}", "{a,\"b,c\",NULL}"]
        ])
    );
    for (format, target) in [("text", "b"), ("csv", "c")] {
        let out = copy_out(
            &client,
            &format!(
                "COPY (SELECT id, xs, tags FROM a ORDER BY id) TO STDOUT WITH (FORMAT {format})"
            ),
        )
        .await?;
        copy_in(
            &client,
            &format!("COPY {target} FROM STDIN WITH (FORMAT {format})"),
            &[out.as_str()],
        )
        .await?;
        assert_eq!(
            cells(rows(&client, &select(target)).await?),
            expected,
            "{format}: what COPY TO wrote ({out:?}) reads back the same"
        );
    }
    Ok(())
}
