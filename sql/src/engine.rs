//! [`Engine`]: the node's streams — catalog plus partition logs — and the operations that keep
//! the two consistent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use eddy_catalog::{Catalog, Command, StreamDef};
use eddy_storage::{LogConfig, Topic, TopicStore};

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
}

impl EngineConfig {
    /// Defaults rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_partitions: 1,
            default_segment_bytes: 128 << 20,
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
}

impl Engine {
    /// Opens the catalog and every stream's partitions (running log recovery), and finishes any
    /// drop a crash interrupted.
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let catalog = Catalog::open(&config.data_dir.join("catalog"))?;
        let topics = TopicStore::open(&config.data_dir.join("topics"))?;
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

    /// Removes the stream from the catalog (durably), then deletes its data.
    pub fn drop_stream(&self, name: &str) -> Result<()> {
        let topic = self.catalog.stream(name).map(|d| d.topic);
        self.catalog.execute(Command::DropStream {
            name: name.to_string(),
        })?;
        if let Some(topic) = topic {
            self.topics.delete(&topic)?;
        }
        Ok(())
    }

    /// Applies retention to every partition; returns the number of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        Ok(self.topics.enforce_retention(crate::ingest::now_ms())?)
    }

    /// Syncs and closes every partition log.
    pub fn close(&self) -> Result<()> {
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
        ..LogConfig::default()
    }
}
