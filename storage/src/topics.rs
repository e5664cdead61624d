//! Topics: named sets of partition logs laid out under one root directory.
//!
//! Layout: `<root>/<topic>/<partition>/` holds one [`PartitionLog`]. The catalog decides which
//! topics exist; this module only creates, opens and deletes their directories. Callers order the
//! steps so a crash leaves nothing inconsistent: a topic is created after its catalog entry is
//! durable (creating wipes any stale directory of the same name) and deleted after the catalog
//! entry is gone ([`TopicStore::remove_orphans`] finishes a drop interrupted by a crash).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::tier::{ColdPartition, ColdStore};
use crate::{Error, LogConfig, PartitionLog, Result};

/// One topic: its partitions, indexed by partition number, each with its cold tier.
#[derive(Debug)]
pub struct Topic {
    name: String,
    partitions: Vec<Arc<PartitionLog>>,
    cold: Vec<Arc<ColdPartition>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All partitions, in partition order.
    pub fn partitions(&self) -> &[Arc<PartitionLog>] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, p: usize) -> Option<&Arc<PartitionLog>> {
        self.partitions.get(p)
    }

    /// One partition's cold tier.
    pub fn cold(&self, p: usize) -> Option<&Arc<ColdPartition>> {
        self.cold.get(p)
    }
}

/// The topics of one node.
#[derive(Debug)]
pub struct TopicStore {
    root: PathBuf,
    cold_store: Option<ColdStore>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
}

fn io_err<'a>(path: &'a Path, context: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        context: format!("{context} {}", path.display()),
        source,
    }
}

impl TopicStore {
    /// Opens the topic root (creating it), with no cold tier. No topic is opened until
    /// asked for.
    pub fn open(root: &Path) -> Result<TopicStore> {
        Self::open_with_cold_store(root, None)
    }

    /// Opens the topic root (creating it); closed segments past local retention tier to
    /// `cold_store`.
    pub fn open_with_cold_store(root: &Path, cold_store: Option<ColdStore>) -> Result<TopicStore> {
        fs::create_dir_all(root).map_err(io_err(root, "creating topic root"))?;
        Ok(TopicStore {
            root: root.to_path_buf(),
            cold_store,
            topics: RwLock::new(HashMap::new()),
        })
    }

    /// The cold store, if any.
    pub fn cold_store(&self) -> Option<&ColdStore> {
        self.cold_store.as_ref()
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates a new, empty topic, replacing any stale directory left by an interrupted drop.
    pub fn create(&self, name: &str, partitions: u32, config: LogConfig) -> Result<Arc<Topic>> {
        let dir = self.topic_dir(name);
        if dir.exists() {
            tracing::warn!(topic = name, "removing stale topic directory before create");
            fs::remove_dir_all(&dir).map_err(io_err(&dir, "removing stale topic"))?;
        }
        self.open_topic(name, partitions, config)
    }

    /// Opens an existing topic (creating missing partition directories), running recovery.
    pub fn open_topic(&self, name: &str, partitions: u32, config: LogConfig) -> Result<Arc<Topic>> {
        let dir = self.topic_dir(name);
        let logs = (0..partitions)
            .map(|p| PartitionLog::open(&dir.join(p.to_string()), config.clone()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let cold = (0..partitions)
            .map(|p| {
                ColdPartition::open(&dir.join(p.to_string()), name, p, self.cold_store.clone())
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            partitions: logs,
            cold,
        });
        self.topics.write().insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// An open topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All open topics.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Closes a topic and deletes its local data (see [`TopicStore::delete_cold`] for the
    /// cold tier).
    pub fn delete(&self, name: &str) -> Result<()> {
        if let Some(topic) = self.topics.write().remove(name) {
            for log in topic.partitions() {
                log.close()?;
            }
        }
        let dir = self.topic_dir(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir, "deleting topic"))?;
        }
        Ok(())
    }

    /// Deletes the cold objects of a topic (before [`TopicStore::delete`]). An unreachable
    /// store fails this; the objects are then orphans, removed by
    /// [`TopicStore::remove_cold_orphans`] or by the sweep of a new topic of the same name.
    pub async fn delete_cold(&self, name: &str) -> Result<usize> {
        match &self.cold_store {
            Some(store) => store.delete_topic(name).await,
            None => Ok(0),
        }
    }

    /// Deletes the cold objects of topics that no catalog entry names (a drop whose cold
    /// delete failed). Returns how many topics were cleaned.
    pub async fn remove_cold_orphans(&self, keep: &[String]) -> Result<usize> {
        let Some(store) = &self.cold_store else {
            return Ok(0);
        };
        let mut removed = 0;
        for topic in store.topics().await? {
            if !keep.contains(&topic) {
                tracing::warn!(topic = %topic, "removing orphan cold objects");
                store.delete_topic(&topic).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes topic directories that no catalog entry names (a drop interrupted by a crash).
    pub fn remove_orphans(&self, keep: &[String]) -> Result<usize> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.root).map_err(io_err(&self.root, "listing topics"))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root, "listing topics"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !keep.contains(&name) {
                tracing::warn!(topic = %name, "removing orphan topic directory");
                fs::remove_dir_all(entry.path())
                    .map_err(io_err(&entry.path(), "removing orphan"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Applies retention to every partition of every topic; returns segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        for topic in self.topics() {
            for log in topic.partitions() {
                deleted += log.enforce_retention(now_ms)?;
            }
        }
        Ok(deleted)
    }
}
