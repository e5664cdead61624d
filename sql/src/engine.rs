//! [`Engine`]: the node's streams — catalog plus partition logs — and the operations that keep
//! the two consistent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use eddy_catalog::{Catalog, Command, QueryDef, StreamDef};
use eddy_storage::tier::ColdStore;
use eddy_storage::{LogConfig, Topic, TopicStore};

use crate::continuous::{Queries, TableStores};
use crate::{Result, Session};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Root of all on-disk state.
    pub data_dir: PathBuf,
    /// Partitions of a stream created without `partitions=`.
    pub default_partitions: u32,
    /// Segment size of a stream created without `segment_bytes=`.
    pub default_segment_bytes: u64,
    /// URL of the cold tier (`file:///dir`, `s3://bucket/prefix`); `None`: no cold tier.
    pub cold_store: Option<String>,
    /// A persistent query snapshots its state once its checkpoint log grew this many bytes
    /// past twice the last snapshot.
    pub query_snapshot_bytes: u64,
}

impl EngineConfig {
    /// Defaults rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_partitions: 1,
            default_segment_bytes: 128 << 20,
            cold_store: None,
            query_snapshot_bytes: 64 << 20,
        }
    }
}

/// The node's streams. Shared by every session.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    catalog: Catalog,
    topics: TopicStore,
    round_robin: AtomicU64,
    queries: Queries,
    tables: TableStores,
    /// Counts `DROP STREAM|TABLE`s, so that push queries learn that their stream went away.
    drops: tokio::sync::watch::Sender<u64>,
}

impl Engine {
    /// Opens the catalog and every stream's partitions (running log recovery), and finishes any
    /// drop a crash interrupted.
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let catalog = Catalog::open(&config.data_dir.join("catalog"))?;
        let cold = match &config.cold_store {
            Some(url) => Some(ColdStore::from_url(url)?),
            None => None,
        };
        let topics = TopicStore::open_with_cold_store(&config.data_dir.join("topics"), cold)?;
        let streams = catalog.streams();
        let names: Vec<String> = streams.iter().map(|s| s.topic.clone()).collect();
        topics.remove_orphans(&names)?;
        for def in &streams {
            topics.open_topic(&def.topic, def.partitions, log_config(&config, def))?;
        }
        tracing::info!(streams = streams.len(), dir = %config.data_dir.display(), "engine opened");
        Ok(Arc::new(Engine {
            config,
            catalog,
            topics,
            round_robin: AtomicU64::new(0),
            queries: Queries::default(),
            tables: TableStores::default(),
            drops: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// A new SQL session.
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone())
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The topics.
    pub fn topics(&self) -> &TopicStore {
        &self.topics
    }

    /// A stream's definition and open topic.
    pub fn stream(&self, name: &str) -> Option<(StreamDef, Arc<Topic>)> {
        let def = self.catalog.stream(name)?;
        let topic = self.topics.topic(&def.topic)?;
        Some((def, topic))
    }

    /// The persistent queries and table materializers running on this node.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// The stores of the node's tables (what pull queries read).
    pub fn tables(&self) -> &TableStores {
        &self.tables
    }

    /// A receiver that changes after each `DROP STREAM|TABLE`: a push query waiting on it
    /// then checks (with [`Engine::stream`]) whether its own stream is still there.
    pub(crate) fn watch_drops(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Starts the persistent queries and table stores the catalog records; call once after
    /// [`Engine::open`], inside the runtime.
    pub async fn start_queries(self: &Arc<Self>) {
        crate::continuous::start_all(self).await;
    }

    /// Records a persistent query (and the sink it creates) in the catalog, durably, then
    /// creates the sink's topic.
    pub(crate) fn create_query(&self, query: QueryDef, sink: Option<StreamDef>) -> Result<()> {
        self.catalog.execute(Command::CreateQuery {
            query,
            sink: sink.clone(),
        })?;
        if let Some(def) = sink {
            self.topics
                .create(&def.topic, def.partitions, log_config(&self.config, &def))?;
        }
        Ok(())
    }

    /// Removes a persistent query from the catalog.
    pub(crate) fn drop_query(&self, id: &str) -> Result<()> {
        self.catalog
            .execute(Command::DropQuery { id: id.to_string() })?;
        Ok(())
    }

    /// Counter for round-robin placement of keyless rows.
    pub fn round_robin(&self) -> &AtomicU64 {
        &self.round_robin
    }

    /// Records the stream in the catalog (durably), then creates its topic.
    pub fn create_stream(&self, def: StreamDef) -> Result<()> {
        self.catalog.execute(Command::CreateStream(def.clone()))?;
        self.topics
            .create(&def.topic, def.partitions, log_config(&self.config, &def))?;
        Ok(())
    }

    /// Removes the stream from the catalog (durably), then deletes its cold objects and its
    /// local data. A cold store that cannot be reached does not fail the drop: the objects
    /// become orphans, removed at the next start (or by the sweep of a new stream of the same
    /// name before it uploads anything).
    pub async fn drop_stream(&self, name: &str) -> Result<()> {
        let topic = self.catalog.stream(name).map(|d| d.topic);
        self.catalog.execute(Command::DropStream {
            name: name.to_string(),
        })?;
        // Push queries on it end now, releasing their readers of the files deleted below.
        self.drops.send_modify(|n| *n += 1);
        self.queries.stop_materializer(name);
        self.tables.remove(name);
        if let Some(topic) = topic {
            if let Err(e) = self.topics.delete_cold(&topic).await {
                tracing::warn!(topic = %topic, error = %e, "cold objects of a dropped stream left for the orphan sweep");
            }
            self.topics.delete(&topic)?;
        }
        Ok(())
    }

    /// One tiering pass over every partition of every stream (see
    /// [`eddy_storage::tier::ColdPartition::run_pass`]): retention of cold objects, then of
    /// local segments, then tiering. Errors are recorded per partition (and logged); returns
    /// how many segments were tiered.
    pub async fn tier_pass(&self) -> usize {
        let now = crate::ingest::now_ms();
        let mut tiered = 0;
        for topic in self.topics.topics() {
            for (p, log) in topic.partitions().iter().enumerate() {
                let Some(cold) = topic.cold(p) else { continue };
                if let Ok(report) = cold.run_pass(log, now).await {
                    tiered += report.tiered;
                }
            }
        }
        tiered
    }

    /// Removes cold objects of streams that no longer exist (a drop whose cold delete
    /// failed); run at start, retried by the caller until it succeeds.
    pub async fn remove_cold_orphans(&self) -> Result<usize> {
        let names: Vec<String> = self
            .catalog
            .streams()
            .iter()
            .map(|s| s.topic.clone())
            .collect();
        Ok(self.topics.remove_cold_orphans(&names).await?)
    }

    /// Applies retention to every partition; returns the number of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        Ok(self.topics.enforce_retention(crate::ingest::now_ms())?)
    }

    /// Stops the persistent queries, then syncs and closes every partition log.
    pub fn close(&self) -> Result<()> {
        self.queries.abort_all();
        for topic in self.topics.topics() {
            for log in topic.partitions() {
                log.close()?;
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

/// Log settings for a stream: its options over the engine's defaults.
pub fn log_config(config: &EngineConfig, def: &StreamDef) -> LogConfig {
    LogConfig {
        segment_bytes: def
            .options
            .segment_bytes
            .unwrap_or(config.default_segment_bytes),
        segment_ms: def.options.segment_ms,
        retention_ms: def.options.retention_ms,
        retention_bytes: def.options.retention_bytes,
        local_retention_ms: def.options.local_retention_ms,
        local_retention_bytes: def.options.local_retention_bytes,
        ..LogConfig::default()
    }
}
