//! Background tasks owned by the server.

use std::sync::Arc;
use std::time::Duration;

use eddy_sql::Engine;
use tokio::task::JoinHandle;

/// Runs retention over every partition every `interval`.
pub fn spawn_retention(engine: Arc<Engine>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let engine = engine.clone();
            match tokio::task::spawn_blocking(move || engine.enforce_retention()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(segments = n, "retention deleted segments"),
                Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                Err(e) => tracing::warn!(error = %e, "retention task failed"),
            }
        }
    })
}
