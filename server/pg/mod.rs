//! The PostgreSQL wire front end: start-up, simple and extended query protocols, COPY, cancel.
//!
//! Each connection gets an [`eddy_sql::Session`] (kept in pgwire's per-connection extensions).
//! Statements run through the session; results are encoded from Arrow batches by [`encode`],
//! errors become SQLSTATEs in [`errors`] — the only place that mapping lives.

mod connection;
pub mod encode;
pub mod errors;
pub mod framing;
mod handler;
mod push;
pub mod types;

use std::sync::Arc;

use eddy_sql::Engine;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;

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

/// Accepts connections until the listener fails; each connection runs in its own task.
/// Messages above `max_message_bytes` end their connection (see [`framing`]).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    max_message_bytes: usize,
) -> anyhow::Result<()> {
    let manager = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        handler: Arc::new(EddyHandler::new(engine, manager.clone())),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
    });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the clients we have.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        tokio::spawn(async move {
            let handler = handlers.handler.clone();
            let cancel = handlers.cancel.clone();
            if let Err(e) = connection::serve(socket, handler, cancel, max_message_bytes).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
