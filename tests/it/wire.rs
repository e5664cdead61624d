//! The wire protocol read exactly by declared lengths: hand-built frames on raw sockets.
//!
//! Every malformed message gets an ErrorResponse (08P01, or 54000 over the size limit) and
//! its connection closes; nothing before the bad message's end runs twice or runs at all;
//! the server keeps serving everyone else.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestServer, scalar_i64};

/// How long to wait for the server's next message.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A frontend message: type byte, then the length that covers itself and `body`.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    frame_with_len(kind, body.len() as i32 + 4, body)
}

/// A frontend message that declares `len`, whatever `body` really is.
fn frame_with_len(kind: u8, len: i32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

fn query(sql: &[u8]) -> Vec<u8> {
    frame(b'Q', &cstr(sql))
}

fn startup_packet() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for s in [&b"user"[..], b"eddy", b"database", b"eddy"] {
        body.extend(cstr(s));
    }
    body.push(0);
    let mut out = (body.len() as i32 + 4).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A backend message.
#[derive(Debug)]
struct Message {
    kind: u8,
    body: Vec<u8>,
}

impl Message {
    /// An ErrorResponse's field (`b'C'` code, `b'M'` message, `b'S'` severity).
    fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }
}

/// A raw client connection.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Connects and completes start-up (until the first ReadyForQuery).
    async fn connect(server: &TestServer) -> anyhow::Result<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", server.port())).await?;
        let mut raw = Raw { stream };
        raw.send(&startup_packet()).await?;
        loop {
            let m = raw
                .next()
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed in start-up"))?;
            if m.kind == b'Z' {
                return Ok(raw);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next backend message; `None` once the server closed the connection.
    async fn next(&mut self) -> anyhow::Result<Option<Message>> {
        let mut header = [0u8; 5];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut header)).await? {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        anyhow::ensure!(len >= 4, "backend message with length {len}");
        let mut body = vec![0u8; len as usize - 4];
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut body)).await??;
        Ok(Some(Message {
            kind: header[0],
            body,
        }))
    }

    /// Reads until an ErrorResponse; fails on a DataRow (nothing may run) or on a close
    /// without an error. Returns (severity, SQLSTATE, message).
    async fn expect_error(&mut self) -> anyhow::Result<(String, String, String)> {
        loop {
            let Some(m) = self.next().await? else {
                anyhow::bail!("connection closed without an ErrorResponse");
            };
            match m.kind {
                b'E' => {
                    return Ok((
                        m.field(b'S').unwrap_or_default(),
                        m.field(b'C').unwrap_or_default(),
                        m.field(b'M').unwrap_or_default(),
                    ));
                }
                b'D' | b'C' => anyhow::bail!("a statement ran: {m:?}"),
                _ => {}
            }
        }
    }

    /// Asserts the server closes the connection (after whatever it still sends).
    async fn expect_closed(&mut self) -> anyhow::Result<()> {
        while let Some(m) = self.next().await? {
            anyhow::ensure!(m.kind != b'D', "a row after the error: {m:?}");
        }
        Ok(())
    }

    /// The first column of each DataRow of a simple query, as text.
    async fn rows(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        self.send(&query(sql.as_bytes())).await?;
        let mut out = Vec::new();
        loop {
            let m = self
                .next()
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed"))?;
            match m.kind {
                b'D' => {
                    let len = i32::from_be_bytes([m.body[2], m.body[3], m.body[4], m.body[5]]);
                    out.push(String::from_utf8_lossy(&m.body[6..6 + len as usize]).into_owned());
                }
                b'E' => anyhow::bail!("error: {:?}", m.field(b'M')),
                b'Z' => return Ok(out),
                _ => {}
            }
        }
    }
}

/// A Parse of an unnamed statement with one parameter.
fn parse_one_param() -> Vec<u8> {
    let mut body = cstr(b"");
    body.extend(cstr(b"SELECT $1::INT"));
    body.extend(0u16.to_be_bytes());
    frame(b'P', &body)
}

/// A Bind of the unnamed statement whose one parameter declares `param_len` but carries
/// `data`.
fn bind_with_param(param_len: i32, data: &[u8]) -> Vec<u8> {
    let mut body = cstr(b"");
    body.extend(cstr(b""));
    body.extend(0u16.to_be_bytes());
    body.extend(1u16.to_be_bytes());
    body.extend(param_len.to_be_bytes());
    body.extend_from_slice(data);
    body.extend(0u16.to_be_bytes());
    frame(b'B', &body)
}

/// The malformed inputs of the issue, each with the SQLSTATE it must get.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let two_statements = b"SELECT 1\0SELECT 2\0";
    let mut shorter = frame_with_len(b'Q', 8, b"SELE");
    shorter.extend_from_slice(b"CT 1\0");
    vec![
        (
            "Q with length 0",
            frame_with_len(b'Q', 0, b"SELECT 1\0"),
            "08P01",
        ),
        (
            "Q with length 3",
            frame_with_len(b'Q', 3, b"SELECT 1\0"),
            "08P01",
        ),
        (
            "Q with length 4 (no string)",
            frame_with_len(b'Q', 4, b""),
            "08P01",
        ),
        ("Q with a length shorter than its body", shorter, "08P01"),
        (
            "two statements behind one declared length",
            frame(b'Q', two_statements),
            "08P01",
        ),
        (
            "a NUL inside a simple query",
            frame(b'Q', b"SELECT 1\0X\0"),
            "08P01",
        ),
        (
            "a query string without its NUL",
            frame(b'Q', b"SELECT 1"),
            "08P01",
        ),
        (
            "Bind with a parameter length past the end",
            [parse_one_param(), bind_with_param(1000, b"12")].concat(),
            "08P01",
        ),
        (
            "Bind with a negative parameter length other than -1",
            [parse_one_param(), bind_with_param(-2, b"")].concat(),
            "08P01",
        ),
        (
            "a huge declared length",
            frame_with_len(b'Q', 0x7fff_0000, b"SELECT"),
            "54000",
        ),
        (
            "a negative declared length",
            frame_with_len(b'Q', -1, b"SELECT 1\0"),
            "08P01",
        ),
        ("Sync with a body", frame(b'S', b"\0\0\0\0\0\0"), "08P01"),
        ("an unknown message type", frame(b'!', b""), "08P01"),
        (
            "Describe of neither statement nor portal",
            frame(b'D', b"X\0"),
            "08P01",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_protocol_violation_and_close() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let bystander = server.client().await?;
    for (what, bytes, code) in malformed_cases() {
        let mut raw = Raw::connect(&server).await?;
        raw.send(&bytes).await?;
        let (severity, got, message) = raw.expect_error().await?;
        assert_eq!(got, code, "{what}: {message}");
        assert_eq!(severity, "FATAL", "{what}: {message}");
        raw.expect_closed().await?;
        // Everyone else is still served.
        assert_eq!(scalar_i64(&bystander, "SELECT 1").await?, 1, "after {what}");
    }
    let fresh = server.client().await?;
    assert_eq!(scalar_i64(&fresh, "SELECT 41 + 1").await?, 42);
    assert!(!server.log().contains("panicked"), "{}", server.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_messages_before_a_bad_one_run_exactly_once() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client.batch_execute("CREATE STREAM s (v INT)").await?;
    let mut raw = Raw::connect(&server).await?;
    // One good INSERT, then a Query whose declared length hides a second INSERT after a NUL.
    let mut bytes = query(b"INSERT INTO s VALUES (1)");
    bytes.extend(frame(
        b'Q',
        b"INSERT INTO s VALUES (2)\0INSERT INTO s VALUES (3)\0",
    ));
    raw.send(&bytes).await?;
    let mut completed = 0;
    loop {
        let m = raw
            .next()
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed early"))?;
        match m.kind {
            b'C' => completed += 1,
            b'E' => {
                assert_eq!(m.field(b'C').as_deref(), Some("08P01"));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(completed, 1, "only the well-formed INSERT ran");
    raw.expect_closed().await?;
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 1);
    assert_eq!(scalar_i64(&client, "SELECT sum(v) FROM s").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_simple_query_is_refused_and_the_session_goes_on() -> anyhow::Result<()> {
    let server = TestServer::start_fresh()?;
    let client = server.client().await?;
    client.batch_execute("CREATE STREAM s (t VARCHAR)").await?;
    let mut raw = Raw::connect(&server).await?;
    for sql in [
        &b"INSERT INTO s VALUES ('caf\xe9')"[..],
        b"INSERT INTO s VALUES ('\xff\xfe')",
        b"INSERT INTO s VALUES ('\xe2\x82')",
        b"SELECT '\xc3'",
    ] {
        raw.send(&query(sql)).await?;
        let (severity, code, message) = raw.expect_error().await?;
        assert_eq!(
            (severity.as_str(), code.as_str()),
            ("ERROR", "22021"),
            "{message}"
        );
        assert!(message.contains("invalid byte sequence"), "{message}");
        // ReadyForQuery follows, and the same connection keeps working.
        loop {
            let m = raw.next().await?.ok_or_else(|| anyhow::anyhow!("closed"))?;
            if m.kind == b'Z' {
                break;
            }
        }
    }
    assert_eq!(raw.rows("SELECT 'café'").await?, vec!["café".to_string()]);
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_bytes_is_refused_naming_the_limit() -> anyhow::Result<()> {
    let server = TestServer::start_fresh_with(&["--max-message-bytes", "4096"], &[])?;
    let client = server.client().await?;
    let small = format!("SELECT length('{}')", "x".repeat(3000));
    assert_eq!(scalar_i64(&client, &small).await?, 3000);
    let big = format!("SELECT length('{}')", "x".repeat(5000));
    let e = client.simple_query(&big).await.expect_err("over the limit");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().contains("4096"), "{}", db.message());
    assert!(
        db.message().contains("max-message-bytes"),
        "{}",
        db.message()
    );
    // The connection is closed; others are served.
    assert!(client.simple_query("SELECT 1").await.is_err());
    let fresh = server.client().await?;
    assert_eq!(scalar_i64(&fresh, "SELECT 1").await?, 1);

    let bad = TestServer::start_fresh_with(&[], &[("EDDY_MAX_MESSAGE_BYTES", "12")]);
    assert!(
        bad.is_err(),
        "a limit below every message is refused at start"
    );
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Valid messages to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut execute = cstr(b"");
    execute.extend(0i32.to_be_bytes());
    vec![
        query(b"SELECT 1"),
        query(b"SELECT 'a' || 'b', 2 + 3"),
        parse_one_param(),
        bind_with_param(1, b"7"),
        frame(b'E', &execute),
        frame(b'D', b"S\0"),
        frame(b'C', b"P\0"),
        frame(b'S', b""),
        frame(b'H', b""),
        frame(b'd', b"1,2\n"),
        frame(b'c', b""),
        frame(b'f', b"oops\0"),
    ]
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut m = seeds[rng.below(seeds.len())].clone();
    match rng.below(7) {
        0 => {
            let i = rng.below(m.len());
            m[i] ^= 1 << rng.below(8);
        }
        1 => {
            let cut = rng.below(m.len());
            m.truncate(cut.max(1));
        }
        2 => {
            let len = (rng.next() as i32).rem_euclid(64) - 8;
            m[1..5].copy_from_slice(&len.to_be_bytes());
        }
        3 => {
            let i = rng.below(m.len());
            let n = rng.below(16);
            let extra = rng.bytes(n);
            m.splice(i..i, extra);
        }
        4 => {
            let n = 1 + rng.below(32);
            m = rng.bytes(n);
        }
        5 => {
            let i = 5 + rng.below(m.len().saturating_sub(5).max(1));
            if i < m.len() {
                m[i] = 0;
            }
        }
        _ => {}
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_never_bring_the_server_down() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh()?;
    let seed = 0x5eed_0fed_d1e5;
    let mut rng = Rng(seed);
    let seeds = seeds();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut connections = 0;
    while connections < 300 && Instant::now() < deadline {
        connections += 1;
        let mut raw = Raw::connect(&server).await?;
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(4) {
            bytes.extend(mutate(&mut rng, &seeds));
        }
        raw.send(&bytes).await?;
        // Read whatever comes for a moment (an answer, an error, a close), then hang up.
        let _ = tokio::time::timeout(Duration::from_millis(150), async {
            while let Ok(Some(_)) = raw.next().await {}
        })
        .await;
    }
    assert!(
        !server.wait_exit(Duration::from_millis(10))?,
        "server exited (seed {seed:#x})\n{}",
        server.log()
    );
    let fresh = server.client().await?;
    assert_eq!(scalar_i64(&fresh, "SELECT 1").await?, 1);
    assert!(
        !server.log().contains("panicked"),
        "seed {seed:#x}\n{}",
        server.log()
    );
    Ok(())
}
