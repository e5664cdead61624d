//! # eddy (server)
//!
//! Process wiring: configuration ([`config`]), the PostgreSQL wire front end ([`pg`], the only
//! module that speaks pgwire), and background tasks ([`tasks`]: retention and tiering). [`run`] opens the
//! engine, serves connections until SIGTERM or Ctrl-C, then closes every log cleanly.
//!
//! The server never plans SQL or touches files itself: sessions of [`eddy_sql`] do.

pub mod config;
pub mod pg;
pub mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use eddy_sql::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;

/// Stack size of the runtime's threads (tokio's default is 2 MiB). Planning and running a
/// statement recurse over its syntax tree and expressions; the nesting limits of
/// [`eddy_sql::parser::limits`] are measured to fit in this in debug builds, where frames are
/// largest (docs/design/2026-12-01-input-limits.md). Only the pages a thread touches are
/// committed, so idle threads cost address space, not memory.
pub const WORKER_STACK_BYTES: usize = 64 << 20;

/// The multi-threaded runtime a server runs on: its worker and blocking threads (where
/// connections plan and run statements, and persistent queries run) have
/// [`WORKER_STACK_BYTES`] of stack. The binary and every example that hosts a server in-process
/// use it; `#[tokio::main]` would give them tokio's 2 MiB.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
}

/// A server serving connections in background tasks (used by `run`, examples and benchmarks).
pub struct RunningServer {
    /// The address the PostgreSQL listener is bound to.
    pub addr: SocketAddr,
    engine: Arc<Engine>,
    serve: JoinHandle<anyhow::Result<()>>,
    retention: JoinHandle<()>,
}

/// Opens the data directory and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let mut engine_config = EngineConfig::new(&config.data_dir);
    engine_config.default_partitions = config.default_partitions;
    engine_config.cold_store = Some(config.cold_store_url()?);
    engine_config.query_snapshot_bytes = config.query_snapshot_bytes;
    let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config))
        .await?
        .context("opening the data directory")?;
    engine.start_queries().await;
    let listener = TcpListener::bind(config.pg_addr)
        .await
        .with_context(|| format!("binding {}", config.pg_addr))?;
    let addr = listener.local_addr()?;
    let retention = tasks::spawn_maintenance(engine.clone(), config.retention_check_interval());
    let serve = tokio::spawn(pg::serve(
        listener,
        engine.clone(),
        config.max_message_bytes,
    ));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "eddy is ready");
    Ok(RunningServer {
        addr,
        engine,
        serve,
        retention,
    })
}

impl RunningServer {
    /// Stops accepting connections and closes every log (synced).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.serve.abort();
        self.retention.abort();
        let engine = self.engine;
        tokio::task::spawn_blocking(move || engine.close()).await??;
        Ok(())
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let mut server = start(config).await?;
    // Tests and scripts read this line to find an ephemeral port.
    println!("eddy: listening on {}", server.addr);
    tokio::select! {
        result = &mut server.serve => result??,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    server.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
