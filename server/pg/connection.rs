//! One client connection: pgwire's message loop, over a socket whose bytes pass the
//! [`FrameChecker`] before pgwire's codec sees them.
//!
//! This is pgwire's own `process_socket` (SSL refusal, start-up timeout, dispatch through
//! `process_message`, errors through `process_error`) with two additions: a framing
//! [`Violation`] is answered with a FATAL ErrorResponse before the connection closes (pgwire
//! would drop the socket silently, or decode the wrong bytes), and a message the checker found
//! invalid UTF-8 in is answered with `22021` instead of being run with U+FFFD in it.
//!
//! And replies are written as PostgreSQL writes them: together. pgwire flushes after each of
//! BindComplete, CommandComplete and ReadyForQuery, so a prepared statement's round trip cost
//! three socket writes (three TCP segments, three wake-ups of the client) where PostgreSQL,
//! which flushes at Sync and Flush only, makes one. Here the replies to Parse, Bind, Describe,
//! Close and the Execute of an ordinary statement are held back ([`Checked`]'s hold, at most
//! [`HOLD_BYTES`]) while the client has already sent its next message, and written with the
//! first reply that is not held — the ReadyForQuery of the Sync that ends the pipeline. A
//! reply is never held while the connection waits for the client: when nothing complete is
//! left to read, whatever is held is written. Push queries, cursors' FETCH (which may wait
//! for rows, sending keep-alives) and COPY are never held: they flush as they always did.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use eddy_sql::handlers::copy::is_copy;
use eddy_sql::parser::EddyStatement;
use futures::{SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, DefaultClient, PgWireConnectionState,
};
use pgwire::error::PgWireError;
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::Stopping;
use super::errors;
use super::framing::{FrameChecker, Verdict, Violation};
use super::handler::{EddyHandler, Prepared};

/// How long a client may take from connecting to the end of its start-up (as pgwire).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The most reply bytes held back from the socket (PostgreSQL's send buffer is 8 KiB; a
/// larger hold lets a pipeline of small statements go out in one write).
const HOLD_BYTES: usize = 64 * 1024;

/// A socket whose incoming bytes are framed and checked before they are read, and whose
/// outgoing bytes may be held back until the end of a pipeline (see the module doc).
#[derive(Debug)]
pub struct Checked<S> {
    inner: S,
    checker: FrameChecker,
    violation: Option<Violation>,
    /// Whether flushes are held: written bytes wait in `held` (up to [`HOLD_BYTES`]).
    hold: bool,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    held_sent: usize,
}

impl<S> Checked<S> {
    /// Wraps `inner`; messages above `max_message_bytes` are refused.
    pub fn new(inner: S, max_message_bytes: usize) -> Self {
        Checked {
            inner,
            checker: FrameChecker::new(max_message_bytes),
            violation: None,
            hold: false,
            held: Vec::new(),
            held_sent: 0,
        }
    }

    /// Holds replies back (`true`), or writes them as they are flushed, after whatever was
    /// held (`false`; the next write or flush sends the held bytes first).
    fn set_hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// The violation that stopped the stream, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The verdict on the oldest message read and not asked about yet.
    pub fn pop_verdict(&mut self) -> Option<Verdict> {
        self.checker.pop_verdict()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(v) = &this.violation {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                v.to_string(),
            )));
        }
        let start = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Err((accepted, violation)) = this.checker.feed(&buf.filled()[start..]) {
            buf.set_filled(start + accepted);
            let message = violation.to_string();
            this.violation = Some(violation);
            if accepted == 0 {
                // Nothing to hand on: fail now (an empty read would look like EOF).
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, message)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> Checked<S> {
    /// Writes the held bytes to the socket.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held_sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.held_sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held_sent += n;
        }
        self.held.clear();
        self.held_sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `bufs` into the held bytes (after sending them if the hold is full, which makes a
    /// slow reader push back), and sends them unless they are to be held.
    fn poll_hold(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.held.len() >= HOLD_BYTES {
            ready!(self.poll_send_held(cx))?;
        }
        let mut taken = 0;
        for buf in bufs {
            self.held.extend_from_slice(buf);
            taken += buf.len();
        }
        if (!self.hold || self.held.len() >= HOLD_BYTES)
            && let Poll::Ready(Err(e)) = self.poll_send_held(cx)
        {
            return Poll::Ready(Err(e));
        }
        // Taken: what the socket has not accepted yet goes out at the next write or flush.
        Poll::Ready(Ok(taken))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.hold && this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_hold(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.hold && this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type Socket = Framed<Checked<TcpStream>, PgWireMessageServerCodec<Prepared>>;

/// Serves one client until it disconnects, sends Terminate, or breaks the protocol, or the
/// server stops: then a connection between statements closes at once (FATAL 57P01), one in
/// the middle of a statement (a COPY's data, an extended-protocol sequence before its Sync)
/// once that statement ends.
pub async fn serve(
    tcp: TcpStream,
    handler: Arc<EddyHandler>,
    cancel_handler: Arc<DefaultCancelHandler>,
    max_message_bytes: usize,
    stopping: Stopping,
) -> io::Result<()> {
    let addr = tcp.peer_addr()?;
    let client = DefaultClient::new(addr, false);
    let mut socket: Socket = Framed::new(
        Checked::new(tcp, max_message_bytes),
        PgWireMessageServerCodec::new(client),
    );
    let startup = tokio::time::timeout(STARTUP_TIMEOUT, refuse_encryption(&mut socket));
    let startup = tokio::select! {
        // Not a session yet: nothing to tell it.
        () = stopping.cancelled() => return Ok(()),
        startup = startup => startup,
    };
    match startup {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return fail(&mut socket, e).await,
    }
    let startup_deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    // No statement has begun and not ended (what a stopping server waits for).
    let mut between_statements = true;

    loop {
        let in_startup = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if in_startup {
            tokio::select! {
                () = stopping.cancelled() => return Ok(()),
                next = tokio::time::timeout_at(startup_deadline, socket.next()) => match next {
                    Ok(next) => next,
                    Err(_) => return Ok(()),
                },
            }
        } else if between_statements {
            tokio::select! {
                // A message already on its way is read (and answered) before this wins.
                biased;
                next = socket.next() => next,
                () = stopping.cancelled() => return close_for_shutdown(&mut socket).await,
            }
        } else {
            socket.next().await
        };
        // Whatever the last message held goes out with this one's replies, unless this one's
        // are held too.
        socket.get_mut().set_hold(false);
        let message = match next {
            None => return Ok(()),
            Some(Err(e)) => return fail(&mut socket, e).await,
            Some(Ok(message)) => message,
        };
        // The client is leaving: close (asyncpg waits for the server to drop the socket).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Some(Verdict::InvalidUtf8(bytes)) = socket.get_mut().pop_verdict()
            && !in_startup
        {
            // As PostgreSQL: the statement fails, the session goes on.
            let error = PgWireError::UserError(Box::new(errors::invalid_utf8(&bytes)));
            process_error(&mut socket, error, is_extended_query).await?;
            continue;
        }
        let is_cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        // The start-up ends in ReadyForQuery; a simple Query ends its statement (unless it
        // starts a COPY), so does Sync; the end of COPY data does in the simple protocol (the
        // extended one waits for a Sync).
        let ends_statement = in_startup
            || match &message {
                PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Sync(_) => true,
                PgWireFrontendMessage::CopyDone(_) | PgWireFrontendMessage::CopyFail(_) => {
                    !is_extended_query
                }
                _ => false,
            };
        let hold = !in_startup && holds_replies(&message, &socket);
        socket.get_mut().set_hold(hold);
        let result = process_message(
            message,
            &mut socket,
            handler.clone(),
            handler.clone(),
            handler.clone(),
            handler.clone(),
            cancel_handler.clone(),
        )
        .await;
        if let Err(e) = result {
            socket.get_mut().set_hold(false);
            let is_fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended_query).await?;
            if is_fatal {
                return Ok(());
            }
        }
        if is_cancel_request {
            return Ok(());
        }
        // Held replies wait only for a message the client has already sent.
        if hold && !complete_message_buffered(socket.read_buffer()) {
            socket.get_mut().set_hold(false);
            SinkExt::<PgWireBackendMessage>::flush(&mut socket).await?;
        }
        between_statements =
            ends_statement && !matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
    }
}

/// Whether the replies to `message` may be held back: those of the extended protocol's
/// quick steps, and the Execute of an ordinary statement (not a push query, a cursor's
/// statement or a COPY, which stream or wait, and flush themselves).
fn holds_replies(message: &PgWireFrontendMessage, socket: &Socket) -> bool {
    match message {
        PgWireFrontendMessage::Parse(_)
        | PgWireFrontendMessage::Bind(_)
        | PgWireFrontendMessage::Describe(_)
        | PgWireFrontendMessage::Close(_) => true,
        PgWireFrontendMessage::Execute(execute) => {
            let name = execute.name.as_deref().unwrap_or(DEFAULT_NAME);
            // An empty portal (an empty query) answers at once.
            socket
                .portal_store()
                .get_portal(name)
                .is_some_and(|entry| match entry.value() {
                    None => true,
                    Some(portal) => matches!(&portal.statement.statement.statement,
                        EddyStatement::Sql(statement) if !is_copy(statement)),
                })
        }
        _ => false,
    }
}

/// Whether `buffer` (read from the socket, not decoded yet) holds a whole message: a type
/// byte and a length that the bytes cover.
fn complete_message_buffered(buffer: &[u8]) -> bool {
    match buffer.get(1..5) {
        Some(length) => {
            let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            buffer.len() > length as usize
        }
        None => false,
    }
}

/// Tells a client between statements that the server is stopping, then closes.
async fn close_for_shutdown(socket: &mut Socket) -> io::Result<()> {
    socket.get_mut().set_hold(false);
    socket
        .send(PgWireBackendMessage::ErrorResponse(
            errors::shutting_down().into(),
        ))
        .await?;
    socket.close().await
}

/// Answers SSLRequest and GSSENCRequest with "no" (Eddy speaks plain TCP) until the client
/// sends its StartupMessage or CancelRequest. False if the connection ended first.
async fn refuse_encryption(socket: &mut Socket) -> Result<bool, PgWireError> {
    loop {
        match socket.next().await {
            Some(Ok(PgWireFrontendMessage::SslNegotiation(negotiation))) => match negotiation {
                SslNegotiationMetaMessage::PostgresSsl(_) => {
                    socket.get_mut().pop_verdict();
                    socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Refuse))
                        .await?;
                }
                SslNegotiationMetaMessage::PostgresGss(_) => {
                    socket.get_mut().pop_verdict();
                    socket
                        .send(PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse))
                        .await?;
                }
                // The start-up packet is next; pgwire decodes it in the next state.
                SslNegotiationMetaMessage::None => {
                    socket.set_state(PgWireConnectionState::AwaitingStartup);
                    return Ok(true);
                }
            },
            Some(Ok(_)) => {
                return Err(PgWireError::IoError(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected message before the start-up packet",
                )));
            }
            Some(Err(e)) => return Err(e),
            None => return Ok(false),
        }
    }
}

/// Ends a connection whose byte stream failed: a framing violation (or a message pgwire
/// could not decode) gets a FATAL ErrorResponse first; a broken socket just closes.
async fn fail(socket: &mut Socket, e: PgWireError) -> io::Result<()> {
    let info = match (socket.get_ref().violation(), &e) {
        (Some(violation), _) => errors::protocol_violation(violation),
        (None, PgWireError::IoError(_)) => {
            tracing::debug!(error = %e, "connection failed");
            return Ok(());
        }
        (None, other) => errors::undecodable(other),
    };
    tracing::debug!(code = %info.code, message = %info.message, "closing the connection");
    socket.get_mut().set_hold(false);
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    socket.close().await
}
