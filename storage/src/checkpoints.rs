//! [`CheckpointDirs`]: the directories of persistent queries' checkpoint logs,
//! `<data-dir>/queries/<id>/`, named by query id with every character but ASCII letters,
//! digits and `_` turned into `_` (ids embed a sink's name; a name never becomes a path).
//! Removal failures are logged, never ignored silently; directories of queries the caller
//! does not name are moved to `lost+found/`, never deleted.

use std::path::{Path, PathBuf};

use crate::TopicStore;

/// The checkpoint directories under one data directory.
#[derive(Debug, Clone)]
pub struct CheckpointDirs {
    root: PathBuf,
}

impl CheckpointDirs {
    /// Checkpoint directories under `<data_dir>/queries`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("queries"),
        }
    }

    /// The directory of query `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(name)
    }

    /// Deletes query `id`'s directory (the catalog recorded the query's creation, and its
    /// end or a failed start); a failure is logged.
    pub fn remove(&self, id: &str) {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a query's checkpoints")
            }
        }
    }

    /// Moves the directories of queries not in `live` to `lost+found/` (see
    /// [`TopicStore::move_aside`]).
    pub fn move_aside_unknown(&self, live: &[String], topics: &TopicStore) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let live: Vec<PathBuf> = live.iter().map(|id| self.dir(id)).collect();
        for entry in entries.flatten() {
            if !live.contains(&entry.path())
                && let Err(e) = topics.move_aside(&entry.path(), "query-")
            {
                tracing::warn!(dir = %entry.path().display(), error = %e, "could not move aside the checkpoints of an unknown query");
            }
        }
    }
}
