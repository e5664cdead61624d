//! A minimal client of PostgreSQL's simple query protocol that keeps what tokio-postgres's
//! `simple_query` drops: the type OID of each result column. The `.slt` runner checks those
//! types (`query ITRB`), so it must see what the server really announced in RowDescription.
//!
//! It speaks only what the runner needs (no TLS, trust authentication, text results) and reads
//! every backend message by its declared length.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one statement may take before the client gives up on the server.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// One result column: the PostgreSQL type OID the server announced for it.
#[derive(Debug, Clone)]
pub struct Column {
    pub type_oid: u32,
}

/// The server's answer to one simple query (which may hold several statements).
#[derive(Debug, Default)]
pub struct Answer {
    /// The last RowDescription's columns, if any statement returned rows.
    pub columns: Option<Vec<Column>>,
    /// Every DataRow, values as text (`None` is SQL NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// The number in the last CommandComplete tag (`INSERT 0 3` → 3), 0 if none.
    pub affected: u64,
    /// The first ErrorResponse: SQLSTATE and message.
    pub error: Option<(String, String)>,
}

/// A connection that has finished start-up and is ready for queries.
pub struct SimpleClient {
    socket: TcpStream,
}

impl SimpleClient {
    /// Connects to `127.0.0.1:port` as user `eddy`, database `eddy`.
    pub async fn connect(port: u16) -> anyhow::Result<SimpleClient> {
        let socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        let mut client = SimpleClient { socket };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes()); // protocol 3.0
        for s in ["user", "eddy", "database", "eddy"] {
            put_cstr(&mut body, s);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        client.socket.write_all(&msg).await?;
        loop {
            let (tag, body) = client.read_message().await?;
            match tag {
                b'R' => {
                    let code = Reader::new(&body).i32()?;
                    ensure!(code == 0, "authentication method {code} is not supported");
                }
                b'E' => {
                    let (code, message) = error_fields(&body)?;
                    bail!("start-up refused: {code}: {message}");
                }
                b'Z' => return Ok(client),
                // ParameterStatus, BackendKeyData, NoticeResponse.
                _ => {}
            }
        }
    }

    /// Runs `sql` with the simple query protocol and collects everything up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Answer> {
        tokio::time::timeout(STATEMENT_TIMEOUT, self.query_inner(sql))
            .await
            .with_context(|| format!("no answer within {STATEMENT_TIMEOUT:?}"))?
    }

    async fn query_inner(&mut self, sql: &str) -> anyhow::Result<Answer> {
        let mut body = Vec::new();
        put_cstr(&mut body, sql);
        self.send(b'Q', &body).await?;
        let mut answer = Answer::default();
        loop {
            let (tag, body) = self.read_message().await?;
            let mut r = Reader::new(&body);
            match tag {
                b'T' => {
                    let n = r.i16()?;
                    let mut columns = Vec::with_capacity(n.max(0) as usize);
                    for _ in 0..n {
                        r.cstr()?; // name
                        r.take(4 + 2)?; // table OID, attribute number
                        let type_oid = r.i32()? as u32;
                        r.take(2 + 4 + 2)?; // type size, type modifier, format
                        columns.push(Column { type_oid });
                    }
                    r.end()?;
                    answer.columns = Some(columns);
                }
                b'D' => {
                    let n = r.i16()?;
                    let mut row = Vec::with_capacity(n.max(0) as usize);
                    for _ in 0..n {
                        let len = r.i32()?;
                        row.push(if len < 0 {
                            None
                        } else {
                            Some(String::from_utf8(r.take(len as usize)?.to_vec())?)
                        });
                    }
                    r.end()?;
                    answer.rows.push(row);
                }
                b'C' => {
                    let tag = r.cstr()?;
                    answer.affected = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                // The first error is the statement's; later ones cannot be (the server stops).
                b'E' if answer.error.is_none() => {
                    answer.error = Some(error_fields(&body)?);
                }
                // COPY FROM STDIN: the runner sends no data, so refuse it.
                b'G' => {
                    let mut msg = Vec::new();
                    put_cstr(&mut msg, "the slt runner sends no COPY data");
                    self.send(b'f', &msg).await?;
                }
                b'Z' => return Ok(answer),
                // EmptyQueryResponse, NoticeResponse, ParameterStatus, CopyOut data, ...
                _ => {}
            }
        }
    }

    async fn send(&mut self, tag: u8, body: &[u8]) -> anyhow::Result<()> {
        let mut msg = vec![tag];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(body);
        self.socket.write_all(&msg).await?;
        Ok(())
    }

    /// One backend message: its type byte and exactly the body its length declares.
    async fn read_message(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; 5];
        self.socket
            .read_exact(&mut header)
            .await
            .context("the server closed the connection")?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        ensure!(
            (4..=1 << 30).contains(&len),
            "backend message {:?} declares length {len}",
            header[0] as char
        );
        let mut body = vec![0u8; len as usize - 4];
        self.socket.read_exact(&mut body).await?;
        Ok((header[0], body))
    }

    /// Says goodbye (Terminate), so the server sees a clean close.
    pub async fn close(&mut self) {
        let _ = self.send(b'X', &[]).await;
    }
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// SQLSTATE (`C`) and message (`M`) of an ErrorResponse body.
fn error_fields(body: &[u8]) -> anyhow::Result<(String, String)> {
    let mut r = Reader::new(body);
    let (mut code, mut message) = (String::new(), String::new());
    loop {
        let field = r.take(1)?[0];
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    r.end()?;
    Ok((code, message))
}

/// Reads the fields of one message body, refusing to run past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(n <= self.bytes.len(), "message body too short");
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> anyhow::Result<String> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .context("string without its NUL")?;
        let s = String::from_utf8(self.take(end)?.to_vec())?;
        self.take(1)?;
        Ok(s)
    }

    fn end(&self) -> anyhow::Result<()> {
        ensure!(
            self.bytes.is_empty(),
            "{} bytes after the message's fields",
            self.bytes.len()
        );
        Ok(())
    }
}
