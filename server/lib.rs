//! # eddy (server)
//!
//! Process wiring: configuration ([`config`]), the PostgreSQL wire front end ([`pg`], the only
//! module that speaks pgwire), and background tasks ([`tasks`]: retention and tiering). [`run`] opens the
//! engine, serves connections until SIGTERM or Ctrl-C, then closes every log cleanly.
//!
//! The server never plans SQL or touches files itself: sessions of [`eddy_sql`] do.

pub mod alloc;
pub mod config;
pub mod pg;
pub mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use eddy_sql::Engine;
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
/// use it; `#[tokio::main]` would give them tokio's 2 MiB. It sets the C allocator's
/// thresholds first ([`alloc::tune`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    alloc::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
}

/// A server serving connections in background tasks (used by `run`, examples and benchmarks).
/// It owns every task it starts: [`RunningServer::shutdown`] ends them all before it closes the
/// engine.
pub struct RunningServer {
    /// The address the PostgreSQL listener is bound to.
    pub addr: SocketAddr,
    engine: Arc<Engine>,
    stopping: pg::Stopping,
    /// The accept loop, which owns the connection tasks; `None` once it has ended.
    serve: Option<JoinHandle<anyhow::Result<()>>>,
    /// Retention and tiering, and the follower of the catalog.
    background: Vec<JoinHandle<()>>,
}

/// Checks the settings ([`ServerConfig::validate`]), opens the data directory and starts
/// serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config.validate().context("invalid configuration")?;
    let config = Arc::new(config);
    let engine_config = config.engine_config()?;
    let engine = Engine::open(engine_config)
        .await
        .context("opening the data directory")?;
    engine.start_queries().await;
    let listener = match TcpListener::bind(config.pg_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            close(engine).await?;
            return Err(e).with_context(|| format!("binding {}", config.pg_addr));
        }
    };
    let addr = listener.local_addr()?;
    let background = vec![
        tasks::spawn_maintenance(engine.clone(), config.retention_check_interval()),
        tasks::spawn_catalog_follower(engine.clone()),
    ];
    let stopping = pg::Stopping::new();
    let serve = tokio::spawn(pg::serve(
        listener,
        engine.clone(),
        config.max_message_bytes,
        stopping.clone(),
        config.shutdown_grace(),
    ));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "eddy is ready");
    Ok(RunningServer {
        addr,
        engine,
        stopping,
        serve: Some(serve),
        background,
    })
}

impl RunningServer {
    /// The engine it serves (benchmarks read its logs' counters).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stops in order: no new connections; idle connections and push queries end (SQLSTATE
    /// 57P01); statements in progress finish within the grace period (`--shutdown-grace-ms`,
    /// then they are abandoned, unacknowledged); the maintenance task stops; and only once no
    /// connection task is left, the persistent queries stop and every log is synced and closed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stopping.cancel();
        let served = match self.serve.take() {
            Some(serve) => serve.await.map_err(anyhow::Error::from).and_then(|r| r),
            None => Ok(()),
        };
        for task in &mut self.background {
            task.abort();
            // Cancelled or finished; either way it no longer runs.
            let _ = task.await;
        }
        close(self.engine.clone()).await?;
        self.wait_for_last_engine_handle().await;
        served
    }

    /// Waits (bounded) until this server holds the only handle on the engine. The data
    /// directory's lock goes with the engine's last handle, and work that outlives its
    /// statement still holds one for a moment: the blocking decode or append of a COPY
    /// abandoned at the grace deadline, a persistent query's task that was aborted but not yet
    /// dropped. Returning earlier would let a new server on the same directory find it locked.
    async fn wait_for_last_engine_handle(&self) {
        let bound = tokio::time::Instant::now() + ENGINE_RELEASE_BOUND;
        while Arc::strong_count(&self.engine) > 1 && tokio::time::Instant::now() < bound {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let holders = Arc::strong_count(&self.engine) - 1;
        if holders > 0 {
            tracing::warn!(
                holders,
                "engine still referenced after shutdown; its lock is released when they end"
            );
        }
    }

    /// Waits until the accept loop ends by itself (it only does on a failure).
    async fn serving(&mut self) -> anyhow::Result<()> {
        let Some(serve) = self.serve.as_mut() else {
            return std::future::pending().await;
        };
        let result = serve.await;
        self.serve = None;
        result?
    }
}

/// Dropped without [`RunningServer::shutdown`]: its tasks are aborted (the connections' with
/// the accept loop that owns them); the logs are left for the next open to recover.
impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stopping.cancel();
        if let Some(serve) = self.serve.take() {
            serve.abort();
        }
        for task in &self.background {
            task.abort();
        }
    }
}

/// How long [`RunningServer::shutdown`] waits for work that outlived its statement to let go
/// of the engine (a block decode or an append on a closed log takes milliseconds).
const ENGINE_RELEASE_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Stops the persistent queries, then syncs and closes every log.
async fn close(engine: Arc<Engine>) -> anyhow::Result<()> {
    engine.close().await?;
    Ok(())
}

/// Runs the server until SIGTERM or Ctrl-C, then shuts it down (see
/// [`RunningServer::shutdown`]).
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let mut server = start(config).await?;
    // Tests and scripts read this line to find an ephemeral port.
    println!("eddy: listening on {}", server.addr);
    let failed = tokio::select! {
        result = server.serving() => result.err(),
        _ = shutdown_signal() => None,
    };
    tracing::info!("shutting down");
    let closed = server.shutdown().await;
    if let Some(e) = failed {
        return Err(e);
    }
    closed?;
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
