//! Sending a push query's rows as they arrive, and the rows of every `COPY ... TO STDOUT`.
//!
//! pgwire's `send_query_response` feeds rows into the connection's buffer and flushes only at
//! 8 KiB or at the end of the query, so a push query would sit in the buffer. Instead the rows
//! are written here, inside `do_query`, with a flush after each batch; pgwire then sends only
//! the `CommandComplete`. Running inside `do_query` also means pgwire's own cancel path
//! applies: a CancelRequest drops this future and the client gets SQLSTATE 57014 on a
//! connection that stays usable.
//!
//! A client that closes its socket is noticed on the next write. While no row arrives, a
//! `ParameterStatus` message (allowed at any time by the protocol, ignored by clients) is sent
//! every [`KEEPALIVE`], so an abandoned query ends within a few seconds instead of waiting
//! forever for a row to fail on.
//!
//! `COPY ... TO STDOUT` goes the same way ([`send_copy`]), so that its data and its row count
//! are this module's alone: pgwire's COPY path would count a CSV header line or a binary
//! file header as a row.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;

use eddy_sql::ingest::copy::CopyFormat;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyDone, CopyOutResponse};
use pgwire::messages::data::RowDescription;
use pgwire::messages::startup::ParameterStatus;

use super::encode::copy_encoder;
use super::errors::{shutting_down, to_pgwire};
use super::types::field_infos;
use super::{Stopping, encode};

/// How long a push query may send nothing before a keep-alive probes the socket.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// Runs `statement` while sending a keep-alive every [`KEEPALIVE`], so a client that goes away
/// while it waits (a `FETCH` from a push cursor waiting for rows) ends it on a failed write.
/// A server that stops ends it too, with SQLSTATE 57P01 (it may wait for rows forever).
pub async fn with_keepalive<C, T>(
    client: &mut C,
    stopping: &Stopping,
    statement: impl Future<Output = T>,
) -> PgWireResult<T>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut statement = std::pin::pin!(statement);
    loop {
        let waited = tokio::select! {
            () = stopping.cancelled() => return Err(stopped()),
            waited = tokio::time::timeout(KEEPALIVE, &mut statement) => waited,
        };
        match waited {
            Ok(done) => return Ok(done),
            Err(_idle) => {
                if let Err(e) = keepalive(client).await {
                    tracing::info!(peer = %client.socket_addr(), error = %e, "client gone while its statement waited");
                    return Err(e);
                }
            }
        }
    }
}

/// The error a statement ends with when the server stops (FATAL: the connection closes).
fn stopped() -> PgWireError {
    PgWireError::UserError(Box::new(shutting_down()))
}

async fn keepalive<C>(client: &mut C) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let application_name = client
        .metadata()
        .get("application_name")
        .cloned()
        .unwrap_or_default();
    client
        .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            "application_name".into(),
            application_name,
        )))
        .await?;
    Ok(())
}

/// Streams a push query to the client until its `LIMIT` (or forever, until cancelled or the
/// client goes away). `format` is the portal's result format (extended protocol, where the
/// client already has the row description), `None` for the simple protocol. With `copy`, the
/// rows go out as `COPY ... TO STDOUT` data. Returns the tag for `CommandComplete`. A server
/// that stops ends it with SQLSTATE 57P01, which closes the connection.
pub async fn send<C>(
    client: &mut C,
    stopping: &Stopping,
    schema: &SchemaRef,
    stream: SendableRecordBatchStream,
    copy: Option<CopyFormat>,
    format: Option<&Format>,
) -> PgWireResult<Tag>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut running = Running {
        peer: client.socket_addr(),
        rows: 0,
        outcome: None,
    };
    tracing::info!(peer = %running.peer, "push query started");
    let result = tokio::select! {
        () = stopping.cancelled() => Err(stopped()),
        result = stream_rows(client, schema, stream, copy, format, &mut running.rows) => result,
    };
    running.outcome = Some(match &result {
        Ok(_) => "limit reached".into(),
        Err(e) => format!("error: {e}"),
    });
    result
}

/// Sends the rows of `COPY ... TO STDOUT` in `format` (text, CSV with its header, or binary
/// with its file header and trailer); returns the `COPY n` tag. A server that stops ends it
/// with SQLSTATE 57P01.
pub async fn send_copy<C>(
    client: &mut C,
    stopping: &Stopping,
    schema: &SchemaRef,
    stream: SendableRecordBatchStream,
    format: CopyFormat,
) -> PgWireResult<Tag>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut rows = 0;
    tokio::select! {
        () = stopping.cancelled() => Err(stopped()),
        result = stream_rows(client, schema, stream, Some(format), None, &mut rows) => result,
    }
}

/// Logs the end of a push query on every exit, including a cancel, which drops the future.
struct Running {
    peer: std::net::SocketAddr,
    rows: usize,
    outcome: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let outcome = self.outcome.as_deref().unwrap_or("cancelled");
        tracing::info!(peer = %self.peer, rows = self.rows, outcome, "push query ended");
    }
}

async fn stream_rows<C>(
    client: &mut C,
    schema: &SchemaRef,
    mut stream: SendableRecordBatchStream,
    copy: Option<CopyFormat>,
    format: Option<&Format>,
    rows: &mut usize,
) -> PgWireResult<Tag>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let is_copy = copy.is_some();
    let binary = copy == Some(CopyFormat::Binary);
    let fields = Arc::new(field_infos(schema, if is_copy { None } else { format }));
    let mut encoder = match copy {
        Some(copy) => {
            let columns = fields.len();
            let format = i8::from(binary);
            client
                .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                    format,
                    columns as i16,
                    vec![i16::from(format); columns],
                )))
                .await?;
            if let Some(header) = encode::copy_header(&fields, &copy) {
                client.feed(PgWireBackendMessage::CopyData(header)).await?;
            }
            Some(copy_encoder(fields.clone(), copy)?)
        }
        None => {
            if format.is_none() {
                let description = RowDescription::new(fields.iter().map(Into::into).collect());
                client
                    .send(PgWireBackendMessage::RowDescription(description))
                    .await?;
            }
            None
        }
    };
    loop {
        let batch = match tokio::time::timeout(KEEPALIVE, stream.next()).await {
            Ok(Some(batch)) => batch.map_err(|e| to_pgwire(eddy_sql::Error::from_datafusion(e)))?,
            Ok(None) => break,
            Err(_idle) => {
                keepalive(client).await?;
                continue;
            }
        };
        *rows += batch.num_rows();
        match &mut encoder {
            Some(encoder) => {
                for data in encode::copy_rows(&batch, encoder)? {
                    client.feed(PgWireBackendMessage::CopyData(data)).await?;
                }
            }
            None => {
                for row in encode::data_rows(&batch, &fields)? {
                    client.feed(PgWireBackendMessage::DataRow(row)).await?;
                }
            }
        }
        client.flush().await?;
    }
    if is_copy {
        if binary {
            // The encoder wrote the file header with the first row; without rows it goes with
            // the trailer, in one message, as PostgreSQL sends it (psycopg reads no message
            // that is a header alone).
            let trailer = CopyEncoder::finish_copy_binary();
            let last = if *rows == 0 {
                encode::binary_copy_header(&trailer.data)
            } else {
                trailer
            };
            client.feed(PgWireBackendMessage::CopyData(last)).await?;
        }
        client
            .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await?;
        return Ok(Tag::new("COPY").with_rows(*rows));
    }
    Ok(Tag::new("SELECT").with_rows(*rows))
}
