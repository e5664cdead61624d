//! Background tasks owned by the server.

use std::sync::Arc;
use std::time::Duration;

use eddy_sql::Engine;
use eddy_sql::engine::Replicas;
use tokio::task::JoinHandle;

/// How long after a failed sweep of dropped streams' cold objects it is tried again.
const SWEEP_RETRY: Duration = Duration::from_secs(30);

/// Every `interval`: cold-tier passes (retention of cold objects, then tiering of closed
/// segments past local retention; each partition backs off on its own after failures), then
/// local retention, then a sweep of statements left undecided in the partitions' logs
/// (`Replicas::sweep`). Cold objects of dropped streams are swept until a sweep succeeds.
pub fn spawn_maintenance(engine: Arc<Engine>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut orphans_swept = false;
        let mut sweep_due = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if !orphans_swept && tokio::time::Instant::now() >= sweep_due {
                sweep_due = tokio::time::Instant::now() + SWEEP_RETRY;
                match engine.purge_dropped().await {
                    Ok(n) => {
                        orphans_swept = true;
                        if n > 0 {
                            tracing::info!(streams = n, "deleted the data of dropped streams");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purging dropped streams failed; will retry")
                    }
                }
            }
            let tiered = engine.tier_pass().await;
            if tiered > 0 {
                tracing::info!(segments = tiered, "tiered segments to the cold store");
            }
            let retained = engine.clone();
            match tokio::task::spawn_blocking(move || retained.enforce_retention()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(segments = n, "retention deleted segments"),
                Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                Err(e) => tracing::warn!(error = %e, "retention task failed"),
            }
            // Shares of statements whose writer lost track of them hold their partitions'
            // readers back until given up.
            match engine.replicas().sweep(Replicas::sweep_grace()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(shares = n, "decided statements left undecided"),
                Err(e) => tracing::warn!(error = %e, "sweeping undecided statements failed"),
            }
        }
    })
}

/// Follows the catalog: after each entry this node applies to the metadata group, makes its
/// streams match (`Engine::catch_up_with_catalog`) — how another node's DDL reaches this one.
pub fn spawn_catalog_follower(engine: Arc<Engine>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied = engine.catalog().watch();
        loop {
            // What was applied between the engine's start and this subscription included.
            engine.catch_up_with_catalog().await;
            if applied.changed().await.is_err() {
                return;
            }
        }
    })
}
