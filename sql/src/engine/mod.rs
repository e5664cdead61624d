//! [`Engine`]: the node's streams — catalog plus partition logs — and the operations that keep
//! the two consistent.

mod cluster;
mod follow;
mod queries;
mod replicas;
mod tables;

pub use self::cluster::Cluster;

pub(crate) use self::queries::Running;
pub use self::queries::{Queries, QueryInfo, QueryState, Status};
pub use self::replicas::{COMMIT_LOG, Replicas, group_id};
pub use self::tables::{TableStore, TableStores, WindowColumns};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use eddy_catalog::{Catalog, Command, QueryDef, StreamDef};
use eddy_raft::{Timing, Transport};
use eddy_storage::tier::ColdStore;
use eddy_storage::{DataDirLock, LogConfig, Topic, TopicStore};
use parking_lot::RwLock;

use crate::{Error, Result};

/// Why a stream the catalog records is not being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offline {
    /// What failed, with the partition and file where known.
    pub reason: String,
    /// Whether stored data failed its checks (SQLSTATE XX001) rather than an operation
    /// (58030).
    pub corrupt: bool,
}

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
    /// This node and its peers ([`Cluster::alone`] unless set).
    pub cluster: Cluster,
}

impl EngineConfig {
    /// [`EngineConfig::default_partitions`] unless set: one.
    pub const DEFAULT_PARTITIONS: u32 = 1;
    /// [`EngineConfig::default_segment_bytes`] unless set: 128 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 128 << 20;
    /// [`EngineConfig::query_snapshot_bytes`] unless set: 64 MiB.
    pub const DEFAULT_QUERY_SNAPSHOT_BYTES: u64 = 64 << 20;

    /// Defaults rooted at `data_dir` (the `DEFAULT_*` constants; no cold tier).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_partitions: Self::DEFAULT_PARTITIONS,
            default_segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            cold_store: None,
            query_snapshot_bytes: Self::DEFAULT_QUERY_SNAPSHOT_BYTES,
            cluster: Cluster::alone(),
        }
    }
}

/// The node's streams. Shared by every session.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    catalog: Catalog,
    /// This node's end of its peer connections (none for a cluster of one).
    transport: Arc<Transport>,
    /// Every partition's Raft group: the only writer of rows.
    replicas: Arc<Replicas>,
    topics: TopicStore,
    round_robin: AtomicU64,
    queries: Queries,
    tables: TableStores,
    /// Streams the catalog records that could not be opened, by name.
    offline: RwLock<BTreeMap<String, Offline>>,
    /// The data directory's lock, held while the engine is open.
    _lock: DataDirLock,
    /// Counts `DROP STREAM|TABLE`s, so that push queries learn that their stream went away.
    drops: tokio::sync::watch::Sender<u64>,
    /// Held while a DDL statement of this node runs its command and its effects (the topic
    /// it creates, the files it deletes), and while [`Engine::follow_catalog`] applies
    /// other nodes' commands here: neither sees the other half done.
    effects: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Takes the data directory's lock (failing with `DirInUse` before touching
    /// anything if another server has it), opens the catalog, then every stream's partitions
    /// (running log recovery). A stream that cannot be opened is served as offline with the
    /// reason; the others are served. Dropped streams' local data is deleted; a topic
    /// directory the catalog does not know of is moved to `lost+found/`.
    ///
    /// The catalog is the metadata Raft group over the cluster's voters ([`Cluster`]; a
    /// cluster of one takes the same path, docs/design/2026-12-02-replication.md), and each
    /// partition a group over them too. In a cluster this waits until a majority answers and
    /// this node has applied what the metadata group had committed; the data directory must
    /// belong to this node among these voters (`cluster.rs`). Must run inside a tokio
    /// runtime; the blocking work (recovery) runs on its blocking pool.
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let dir = config.data_dir.clone();
        let lock = tokio::task::spawn_blocking(move || DataDirLock::acquire(&dir))
            .await
            .map_err(|e| Error::Internal(format!("opening the data directory: {e}")))??;
        config.cluster.validate()?;
        let (dir, cluster) = (config.data_dir.clone(), config.cluster.clone());
        tokio::task::spawn_blocking(move || cluster.claim(&dir))
            .await
            .map_err(|e| Error::Internal(format!("checking the data directory: {e}")))??;
        let transport = config.cluster.connect().await?;
        let voters = config.cluster.voters();
        let catalog = Catalog::open(
            &config.data_dir,
            transport.clone(),
            &voters,
            Timing::default(),
        )
        .await?;
        let replicas = Arc::new(Replicas::open(&config.data_dir, transport.clone(), voters).await?);
        let (cold_store, root) = (config.cold_store.clone(), config.data_dir.join("topics"));
        let streams = catalog.streams();
        let keep: Vec<String> = streams
            .iter()
            .map(|s| s.storage_name().to_string())
            .collect();
        let dropped = catalog.dropped();
        let topics = tokio::task::spawn_blocking(move || -> Result<TopicStore> {
            let cold = match &cold_store {
                Some(url) => Some(ColdStore::from_url(url)?),
                None => None,
            };
            let topics = TopicStore::open_with_cold_store(&root, cold)?;
            topics.move_aside_orphans(&keep, &dropped)?;
            Ok(topics)
        })
        .await
        .map_err(|e| Error::Internal(format!("opening the streams: {e}")))??;
        let mut offline = BTreeMap::new();
        for def in &streams {
            if let Err(e) = open_stream(&replicas, &topics, &config, def).await {
                tracing::error!(stream = %def.name, error = %e, "stream is offline");
                offline.insert(def.name.clone(), offline_reason(&e));
            }
        }
        tracing::info!(
            streams = streams.len(),
            offline = offline.len(),
            dir = %config.data_dir.display(),
            "engine opened"
        );
        Ok(Arc::new(Engine {
            config,
            catalog,
            transport,
            replicas,
            topics,
            round_robin: AtomicU64::new(0),
            queries: Queries::default(),
            tables: TableStores::default(),
            offline: RwLock::new(offline),
            _lock: lock,
            drops: tokio::sync::watch::Sender::new(0),
            effects: tokio::sync::Mutex::new(()),
        }))
    }

    /// Streams that are not served, with the reason.
    pub fn offline(&self) -> BTreeMap<String, Offline> {
        self.offline.read().clone()
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

    /// The partitions' Raft groups: where every write goes.
    pub fn replicas(&self) -> &Arc<Replicas> {
        &self.replicas
    }

    /// A stream's definition and open topic: [`Error::UnknownStream`] if the catalog has no
    /// such stream, [`Error::StreamOffline`] if it could not be opened.
    pub fn stream(&self, name: &str) -> Result<(StreamDef, Arc<Topic>)> {
        let def = self
            .catalog
            .stream(name)
            .ok_or_else(|| Error::UnknownStream(name.to_string()))?;
        match self.topics.topic(def.storage_name()) {
            Some(topic) => Ok((def, topic)),
            None => {
                let why = self.offline.read().get(name).cloned().unwrap_or(Offline {
                    reason: "its topic is not open".into(),
                    corrupt: false,
                });
                Err(Error::StreamOffline {
                    name: name.to_string(),
                    reason: why.reason,
                    corrupt: why.corrupt,
                })
            }
        }
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

    /// Records a persistent query (and the sink it creates) in the catalog, durably, then
    /// creates the sink's topic.
    pub(crate) async fn create_query(
        &self,
        query: QueryDef,
        sink: Option<StreamDef>,
    ) -> Result<()> {
        let _effects = self.effects.lock().await;
        let id = query.id.clone();
        let applied = self
            .catalog
            .execute(Command::CreateQuery { query, sink })
            .await?;
        if let Command::CreateQuery {
            sink: Some(def), ..
        } = applied
            && let Err(e) = open_stream(&self.replicas, &self.topics, &self.config, &def).await
        {
            self.undo_create(&def, Some(&id)).await;
            return Err(e);
        }
        Ok(())
    }

    /// Removes a persistent query from the catalog.
    pub(crate) async fn drop_query(&self, id: &str) -> Result<()> {
        self.catalog
            .execute(Command::DropQuery { id: id.to_string() })
            .await?;
        Ok(())
    }

    /// Counter for round-robin placement of keyless rows.
    pub fn round_robin(&self) -> &AtomicU64 {
        &self.round_robin
    }

    /// Records the stream in the catalog (durably; the catalog assigns its storage name),
    /// then creates its topic. If the topic cannot be created, the catalog entry is dropped
    /// again and what was created deleted before the error returns: a failed CREATE leaves
    /// nothing behind. Returns the definition as recorded.
    pub async fn create_stream(&self, def: StreamDef) -> Result<StreamDef> {
        let _effects = self.effects.lock().await;
        let Command::CreateStream(def) = self.catalog.execute(Command::CreateStream(def)).await?
        else {
            return Err(Error::Internal(
                "catalog changed a CreateStream command".into(),
            ));
        };
        if let Err(e) = open_stream(&self.replicas, &self.topics, &self.config, &def).await {
            self.undo_create(&def, None).await;
            return Err(e);
        }
        Ok(def)
    }

    /// Undoes a create whose topic failed: drops the query and the stream from the catalog,
    /// then deletes what was created. If the catalog cannot record that either (disk full),
    /// the stream stays, offline with the reason, and the next start tries to open it again.
    async fn undo_create(&self, def: &StreamDef, query: Option<&str>) {
        let mut undone = Ok(());
        if let Some(id) = query {
            undone = self
                .catalog
                .execute(Command::DropQuery { id: id.to_string() })
                .await
                .map(drop);
        }
        if undone.is_ok() {
            undone = self
                .catalog
                .execute(Command::DropStream {
                    name: def.name.clone(),
                })
                .await
                .map(drop);
        }
        match undone {
            Ok(()) => {
                if let Err(e) = self.delete_dropped_local(def.storage_name()).await {
                    tracing::warn!(stream = %def.name, error = %e, "removing a failed create's files; left for the next start");
                }
            }
            Err(e) => {
                tracing::error!(stream = %def.name, error = %e, "could not undo a failed create: the stream stays offline");
                self.offline.write().insert(
                    def.name.clone(),
                    Offline {
                        reason: format!("its creation failed and could not be undone: {e}"),
                        corrupt: false,
                    },
                );
            }
        }
    }

    /// Deletes the local data of a storage name the catalog recorded as dropped, and forgets
    /// the name once no cold tier holds it either.
    async fn delete_dropped_local(&self, storage: &str) -> Result<()> {
        self.replicas.close_stream(storage).await;
        self.topics.delete(storage)?;
        if self.topics.cold_store().is_none() {
            self.catalog
                .execute(Command::PurgeStorage {
                    names: vec![storage.to_string()],
                })
                .await?;
        }
        Ok(())
    }

    /// Removes the stream from the catalog (durably), then deletes its cold objects and its
    /// local data. A cold store that cannot be reached does not fail the drop: the catalog
    /// keeps the storage name as dropped and [`Engine::purge_dropped`] deletes the objects
    /// later.
    pub async fn drop_stream(&self, name: &str) -> Result<()> {
        let _effects = self.effects.lock().await;
        let storage = self
            .catalog
            .stream(name)
            .map(|d| d.storage_name().to_string());
        self.catalog
            .execute(Command::DropStream {
                name: name.to_string(),
            })
            .await?;
        self.offline.write().remove(name);
        if let Some(storage) = storage {
            self.forget_local(name, &storage).await?;
            if let Err(e) = self.purge(vec![storage]).await {
                tracing::warn!(stream = name, error = %e, "cold objects of a dropped stream left for the purge at the next start");
            }
        }
        Ok(())
    }

    /// Deletes the data of every dropped stream the catalog still lists (a drop interrupted by
    /// a crash or an unreachable cold store), then forgets them; run at start, and retried by
    /// the caller until it succeeds. Returns how many were purged. A cold prefix no catalog
    /// entry names at all is reported and left in place.
    pub async fn purge_dropped(&self) -> Result<usize> {
        let dropped = self.catalog.dropped();
        for storage in &dropped {
            self.topics.delete(storage)?;
        }
        let keep: Vec<String> = self
            .catalog
            .streams()
            .iter()
            .map(|s| s.storage_name().to_string())
            .collect();
        for unknown in self.topics.unknown_cold_topics(&keep, &dropped).await? {
            tracing::warn!(prefix = %unknown, "cold objects no catalog entry names: left in place");
        }
        let n = dropped.len();
        self.purge(dropped).await?;
        Ok(n)
    }

    /// Deletes dropped storage names' cold objects, then records them as purged.
    async fn purge(&self, names: Vec<String>) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        for storage in &names {
            self.topics.delete_cold(storage).await?;
        }
        self.catalog
            .execute(Command::PurgeStorage { names })
            .await?;
        Ok(())
    }

    /// One tiering pass over every partition of every stream (see
    /// [`eddy_storage::tier::ColdPartition::run_pass`]): retention of cold objects, then of
    /// local segments, then tiering. Errors are recorded per partition (and logged); returns
    /// how many segments were tiered.
    pub async fn tier_pass(&self) -> usize {
        let now = now_ms();
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

    /// Applies retention to every partition; returns the number of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        Ok(self.topics.enforce_retention(now_ms())?)
    }

    /// Stops the persistent queries, then the partition groups (syncing and closing every
    /// partition log) and the commit log, then the metadata group and the peer transport.
    pub async fn close(self: &Arc<Self>) -> Result<()> {
        self.queries.abort_all();
        let stopped = self.replicas.close().await;
        let closed = self.catalog.close().await;
        self.transport.shutdown().await;
        stopped?;
        Ok(closed?)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

/// Opens (creating what is missing) a stream's topic, its partitions as Raft groups.
async fn open_stream(
    replicas: &Replicas,
    topics: &TopicStore,
    config: &EngineConfig,
    def: &StreamDef,
) -> Result<()> {
    replicas
        .open_stream(
            topics,
            &def.topic,
            def.storage_name(),
            def.partitions,
            log_config(config, def),
        )
        .await?;
    Ok(())
}

/// How an error that kept a stream from opening is shown.
fn offline_reason(e: &Error) -> Offline {
    let corrupt = matches!(
        e,
        Error::Storage(eddy_storage::Error::Corrupt { .. } | eddy_storage::Error::Decode { .. })
    );
    Offline {
        reason: e.to_string(),
        corrupt,
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

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
