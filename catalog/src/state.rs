//! The catalog state machine: pure, deterministic, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Error, QueryDef, Result, StreamDef, storage_name_for};

/// A change to the catalog. Commands are what the command log (and later the metadata Raft
/// group) records; applying the same commands in the same order yields the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create a stream and its topic.
    CreateStream(StreamDef),
    /// Drop a stream and its topic.
    DropStream {
        /// Stream name.
        name: String,
    },
    /// Start a persistent query, creating its sink first when `sink` is given
    /// (`CREATE STREAM|TABLE ... AS SELECT`), in one step.
    CreateQuery {
        /// The query.
        query: QueryDef,
        /// The sink to create with it; `None` when it writes an existing stream.
        sink: Option<StreamDef>,
    },
    /// Remove a persistent query (`TERMINATE`).
    DropQuery {
        /// Query id.
        id: String,
    },
    /// The data of these dropped streams' storage names is deleted, locally and in the cold
    /// tier: forget them (see [`CatalogState::dropped`]).
    PurgeStorage {
        /// Storage names, as recorded by the drops.
        names: Vec<String>,
    },
}

/// Gives a stream the command creates its storage name, from the command's index.
pub(crate) fn assign_storage(mut command: Command, index: u64) -> Command {
    let def = match &mut command {
        Command::CreateStream(def) => Some(def),
        Command::CreateQuery { sink, .. } => sink.as_mut(),
        _ => None,
    };
    if let Some(def) = def
        && def.storage.is_empty()
    {
        def.storage = storage_name_for(&def.name, index);
    }
    command
}

/// Everything the catalog knows, keyed by stream name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    streams: BTreeMap<String, StreamDef>,
    /// Persistent queries by id.
    #[serde(default)]
    queries: BTreeMap<String, QueryDef>,
    /// Number of commands applied so far (the log index of the last one).
    applied: u64,
    /// Storage names of dropped streams whose data may not be deleted yet. Only what is listed
    /// here may ever be deleted by the engine: a directory or cold prefix that neither a
    /// stream nor this set names is an orphan, moved aside, never removed.
    #[serde(default)]
    dropped: BTreeSet<String>,
}

impl CatalogState {
    /// Checks that `command` would apply cleanly, without changing anything.
    pub fn check(&self, command: &Command) -> Result<()> {
        match command {
            Command::CreateStream(def) => {
                def.validate()?;
                if self.streams.contains_key(&def.name) {
                    return Err(Error::AlreadyExists(def.name.clone()));
                }
                self.check_storage_free(def)?;
            }
            Command::DropStream { name } => {
                if !self.streams.contains_key(name) {
                    return Err(Error::NotFound(name.clone()));
                }
                if let Some(q) = self
                    .queries
                    .values()
                    .find(|q| q.sink == *name || q.sources.contains(name))
                {
                    let how = if q.sink == *name { "writes" } else { "reads" };
                    return Err(Error::InUse(format!(
                        "cannot drop \"{name}\": persistent query {} {how} it; TERMINATE {} first",
                        q.id, q.id
                    )));
                }
            }
            Command::CreateQuery { query, sink } => {
                if self.queries.contains_key(&query.id) {
                    return Err(Error::AlreadyExists(query.id.clone()));
                }
                for source in &query.sources {
                    if !self.streams.contains_key(source) {
                        return Err(Error::NotFound(source.clone()));
                    }
                }
                match sink {
                    Some(def) => {
                        def.validate()?;
                        if def.name != query.sink {
                            return Err(Error::Invalid("query sink mismatch".into()));
                        }
                        if self.streams.contains_key(&def.name) {
                            return Err(Error::AlreadyExists(def.name.clone()));
                        }
                        self.check_storage_free(def)?;
                    }
                    None => {
                        if !self.streams.contains_key(&query.sink) {
                            return Err(Error::NotFound(query.sink.clone()));
                        }
                    }
                }
            }
            Command::DropQuery { id } => {
                if !self.queries.contains_key(id) {
                    return Err(Error::QueryNotFound(id.clone()));
                }
            }
            Command::PurgeStorage { .. } => {}
        }
        Ok(())
    }

    /// Applies a command (after [`CatalogState::check`]).
    pub fn apply(&mut self, command: Command) -> Result<()> {
        self.check(&command)?;
        match command {
            Command::CreateStream(def) => {
                self.streams.insert(def.name.clone(), def);
            }
            Command::DropStream { name } => {
                if let Some(def) = self.streams.remove(&name) {
                    self.dropped.insert(def.storage_name().to_string());
                }
            }
            Command::CreateQuery { query, sink } => {
                if let Some(def) = sink {
                    self.streams.insert(def.name.clone(), def);
                }
                self.queries.insert(query.id.clone(), query);
            }
            Command::DropQuery { id } => {
                self.queries.remove(&id);
            }
            Command::PurgeStorage { names } => {
                for name in names {
                    self.dropped.remove(&name);
                }
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// Refuses a definition whose storage another stream (or a dropped one not yet purged)
    /// still uses.
    fn check_storage_free(&self, def: &StreamDef) -> Result<()> {
        let storage = def.storage_name();
        if self.dropped.contains(storage)
            || self.streams.values().any(|s| s.storage_name() == storage)
        {
            return Err(Error::Invalid(format!(
                "storage \"{storage}\" of \"{}\" is in use",
                def.name
            )));
        }
        Ok(())
    }

    /// Storage names of dropped streams whose data is not known to be deleted.
    pub fn dropped(&self) -> impl Iterator<Item = &str> {
        self.dropped.iter().map(String::as_str)
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.streams.get(name)
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> impl Iterator<Item = &StreamDef> {
        self.streams.values()
    }

    /// A persistent query by id.
    pub fn query(&self, id: &str) -> Option<&QueryDef> {
        self.queries.get(id)
    }

    /// All persistent queries, ordered by id.
    pub fn queries(&self) -> impl Iterator<Item = &QueryDef> {
        self.queries.values()
    }

    /// Number of commands applied: a version that only grows, and the number the next
    /// command's storage name and query id are derived from (as the log's order decides it, so
    /// every node derives the same).
    pub fn applied(&self) -> u64 {
        self.applied
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow_schema::DataType;

    use super::*;
    use crate::{ColumnDef, StreamOptions};

    /// A two-partition stream with one BIGINT KEY column (other modules' tests use it too).
    pub(crate) fn def(name: &str) -> StreamDef {
        StreamDef {
            name: name.into(),
            columns: vec![ColumnDef::new("a", DataType::Int64, true)],
            timestamp_column: None,
            partitions: 2,
            options: StreamOptions::default(),
            topic: name.into(),
            storage: String::new(),
            kind: Default::default(),
            primary_key: vec![],
        }
    }

    #[test]
    fn create_then_duplicate_is_refused() {
        let mut s = CatalogState::default();
        s.apply(Command::CreateStream(def("s"))).unwrap();
        assert!(matches!(
            s.apply(Command::CreateStream(def("s"))),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(s.applied(), 1);
    }

    #[test]
    fn drop_unknown_is_not_found() {
        let mut s = CatalogState::default();
        assert!(matches!(
            s.apply(Command::DropStream { name: "x".into() }),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let mut d = def("s");
        d.columns.push(ColumnDef::new("a", DataType::Utf8, false));
        assert!(matches!(
            CatalogState::default().check(&Command::CreateStream(d)),
            Err(Error::Invalid(_))
        ));
        let mut d = def("s");
        d.timestamp_column = Some("a".into());
        d.columns[0].data_type = DataType::Utf8;
        assert!(
            CatalogState::default()
                .check(&Command::CreateStream(d))
                .is_err()
        );
    }
}
