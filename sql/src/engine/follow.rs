//! [`Engine::follow_catalog`]: what catalog commands — proposed on any node, applied on every
//! node in the metadata group's order — do to this node's partition groups and files.
//!
//! The node that runs a DDL statement does its effects itself, before it answers (and undoes a
//! failed create); every other node does them here, after it applies the command: it opens the
//! groups of streams it has not opened (its replicas of their partitions) and closes and
//! deletes the local data of streams the catalog no longer has. Both hold the engine's
//! `effects` lock, so neither sees the other half done. On a cluster of one there is nothing
//! left for it to do, and it runs anyway: one code path.
//!
//! This module decides nothing about the catalog: it only makes this node match it.

use std::collections::HashSet;

use eddy_catalog::StreamDef;

use super::{Engine, Offline, offline_reason, open_stream};
use crate::Result;

impl Engine {
    /// Makes this node's open streams what its applied catalog says: closes (deleting local
    /// data) what was dropped, then opens what is new, and returns the streams it opened
    /// (tables among them need their stores started). A stream that fails to open is served
    /// as offline with the reason, as at start.
    pub async fn follow_catalog(&self) -> Vec<StreamDef> {
        let _effects = self.effects.lock().await;
        let streams = self.catalog.streams();
        let live: HashSet<&str> = streams.iter().map(StreamDef::storage_name).collect();
        let mut opened = Vec::new();
        for topic in self.topics.topics() {
            if live.contains(topic.storage()) {
                continue;
            }
            let name = topic.name().to_string();
            if let Err(e) = self.forget_local(&name, topic.storage()).await {
                tracing::warn!(stream = %name, error = %e, "deleting a dropped stream's local data; left for the next start");
            }
        }
        for def in &streams {
            let open = self.topics.topic(def.storage_name()).is_some();
            if open || self.offline.read().contains_key(&def.name) {
                continue;
            }
            match open_stream(&self.replicas, &self.topics, &self.config, def).await {
                Ok(()) => opened.push(def.clone()),
                Err(e) => {
                    tracing::error!(stream = %def.name, error = %e, "stream is offline");
                    self.offline
                        .write()
                        .insert(def.name.clone(), offline_reason(&e));
                }
            }
        }
        let names: HashSet<&str> = streams.iter().map(|d| d.name.as_str()).collect();
        self.offline
            .write()
            .retain(|name, _: &mut Offline| names.contains(name.as_str()));
        opened
    }

    /// Ends what serves the dropped stream `name` on this node (push queries, its table
    /// store), stops its groups and deletes its local data.
    pub(super) async fn forget_local(&self, name: &str, storage: &str) -> Result<()> {
        self.offline.write().remove(name);
        // Push queries on it end now, releasing their readers of the files deleted below.
        self.drops.send_modify(|n| *n += 1);
        self.queries.stop_materializer(name);
        self.tables.remove(name);
        self.replicas.close_stream(storage).await;
        self.topics.delete(storage)?;
        Ok(())
    }
}
