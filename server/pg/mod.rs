//! The PostgreSQL wire front end: start-up, simple and extended query protocols, COPY, cancel.
//!
//! Each connection gets an [`eddy_sql::Session`] (kept in pgwire's per-connection extensions).
//! Statements run through the session; results are encoded from Arrow batches by [`encode`],
//! errors become SQLSTATEs in [`errors`] — the only place that mapping lives.

mod connection;
mod copy_csv;
pub mod encode;
pub mod errors;
pub mod framing;
mod handler;
mod numeric;
mod params;
mod push;
mod transaction;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use eddy_sql::Engine;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::handler::EddyHandler;

/// pgwire's handler factory: every protocol part is served by one [`EddyHandler`].
pub struct Handlers {
    handler: Arc<EddyHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.handler.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.handler.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// How the server is asked to stop, as its connections see it: once cancelled, an idle
/// connection closes with SQLSTATE 57P01, a push query ends with it, and a statement in
/// progress runs to its end (see [`serve`]).
pub type Stopping = CancellationToken;

/// Accepts connections, each served by a task this function owns, until `stopping` is
/// cancelled; then drains: it stops accepting (new connections are refused), idle connections
/// and push queries end at once, statements in progress may finish for up to `grace`, and
/// whatever still runs after that is aborted. Returns once no connection task is left, so the
/// caller may close the engine. Messages above `max_message_bytes` end their connection (see
/// [`framing`]).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    max_message_bytes: usize,
    stopping: Stopping,
    grace: Duration,
) -> anyhow::Result<()> {
    let manager = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        handler: Arc::new(EddyHandler::new(engine, manager.clone(), stopping.clone())),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
    });
    let mut connections = JoinSet::new();
    loop {
        let (socket, peer) = tokio::select! {
            () = stopping.cancelled() => break,
            // Reaps finished connections as it goes.
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                log_panic(ended);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the clients we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let handler = handlers.handler.clone();
            let cancel = handlers.cancel.clone();
            let served = connection::serve(socket, handler, cancel, max_message_bytes, stopping);
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        connections = open,
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(grace, async {
        while let Some(ended) = connections.join_next().await {
            log_panic(ended);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_ms = grace.as_millis() as u64,
            "statements still running after the shutdown grace period: abandoned unacknowledged"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// A connection task that panicked is logged (the others go on).
fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}
