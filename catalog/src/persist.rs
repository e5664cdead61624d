//! Durable catalog for a single node: a snapshot plus an append-only command log.
//!
//! Files in the catalog directory:
//! - `snapshot.json`: a serialised [`CatalogState`], replaced atomically (write, fsync, rename,
//!   fsync directory);
//! - `commands.log`: one JSON [`Command`] per line, fsynced before a command is acknowledged.
//!
//! On open the snapshot is loaded and the log replayed; then a fresh snapshot is written and the
//! log truncated, so the log stays short. A torn last line (crash mid-append) was never
//! acknowledged and is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};

use crate::{CatalogState, Command, Error, QueryDef, Result, StreamDef};

/// The node's catalog: state machine plus its persistence.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    state: RwLock<CatalogState>,
    log: Mutex<File>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Catalog {
    /// Opens (or creates) the catalog stored in `dir`.
    pub fn open(dir: &Path) -> Result<Catalog> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let snapshot_path = dir.join("snapshot.json");
        let log_path = dir.join("commands.log");
        let mut state = match fs::read(&snapshot_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
                path: snapshot_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogState::default(),
            Err(e) => return Err(io(&snapshot_path)(e)),
        };
        if log_path.exists() {
            let file = File::open(&log_path).map_err(io(&log_path))?;
            let lines: Vec<String> = BufReader::new(file)
                .lines()
                .collect::<std::io::Result<_>>()
                .map_err(io(&log_path))?;
            let last = lines.len().saturating_sub(1);
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Command>(line) {
                    // Commands were checked before they were logged; one that no longer applies
                    // (already in the snapshot) is skipped.
                    Ok(cmd) => {
                        if let Err(e) = state.apply(cmd) {
                            tracing::debug!(error = %e, "catalog replay skipped a command");
                        }
                    }
                    Err(_) if i == last => {
                        tracing::warn!(path = %log_path.display(), "dropping torn last catalog command");
                    }
                    Err(source) => {
                        return Err(Error::Corrupt {
                            path: log_path.clone(),
                            source,
                        });
                    }
                }
            }
        }
        write_snapshot(dir, &state)?;
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        log.sync_all().map_err(io(&log_path))?;
        Ok(Catalog {
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            log: Mutex::new(log),
        })
    }

    /// Checks, logs durably, then applies a command.
    pub fn execute(&self, command: Command) -> Result<()> {
        let mut log = self.log.lock();
        let mut state = self.state.write();
        state.check(&command)?;
        let path = self.dir.join("commands.log");
        let mut line = serde_json::to_vec(&command).map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        line.push(b'\n');
        log.write_all(&line).map_err(io(&path))?;
        log.sync_data().map_err(io(&path))?;
        state.apply(command)
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<StreamDef> {
        self.state.read().stream(name).cloned()
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> Vec<StreamDef> {
        self.state.read().streams().cloned().collect()
    }

    /// A persistent query by id.
    pub fn query(&self, id: &str) -> Option<QueryDef> {
        self.state.read().query(id).cloned()
    }

    /// All persistent queries, ordered by id.
    pub fn queries(&self) -> Vec<QueryDef> {
        self.state.read().queries().cloned().collect()
    }

    /// The number of commands applied so far: a counter that never goes back, used to number
    /// persistent queries.
    pub fn applied(&self) -> u64 {
        self.state.read().applied()
    }
}

fn write_snapshot(dir: &Path, state: &CatalogState) -> Result<()> {
    let tmp = dir.join("snapshot.json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|source| Error::Corrupt {
        path: tmp.clone(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    let dst = dir.join("snapshot.json");
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow_schema::DataType;

    use super::*;
    use crate::{ColumnDef, StreamOptions};

    fn def(name: &str) -> StreamDef {
        StreamDef {
            name: name.into(),
            columns: vec![ColumnDef {
                name: "a".into(),
                data_type: DataType::Utf8,
                key: false,
            }],
            timestamp_column: None,
            partitions: 1,
            options: StreamOptions::default(),
            topic: name.into(),
            kind: Default::default(),
            primary_key: vec![],
        }
    }

    #[test]
    fn commands_survive_reopen_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            c.execute(Command::CreateStream(def("a"))).unwrap();
            c.execute(Command::CreateStream(def("b"))).unwrap();
            c.execute(Command::DropStream { name: "a".into() }).unwrap();
            // A crash mid-append leaves half a line.
            let mut f = OpenOptions::new()
                .append(true)
                .open(dir.path().join("commands.log"))
                .unwrap();
            f.write_all(br#"{"op":"create_stream","na"#).unwrap();
        }
        let c = Catalog::open(dir.path()).unwrap();
        let names: Vec<_> = c.streams().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["b".to_string()]);
        assert!(c.stream("b").is_some());
        assert!(matches!(
            c.execute(Command::CreateStream(def("b"))),
            Err(Error::AlreadyExists(_))
        ));
    }
}
