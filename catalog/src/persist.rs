//! The catalog as a single node kept it before replication: a snapshot plus an append-only
//! command log. Read once, to seed the metadata group (`meta.rs`); kept so that data
//! directories written before replication open unchanged.
//!
//! Files in the catalog directory (formats in `frame.rs`):
//! - `LOCK`: flock-ed while a [`LocalCatalog`] is open, so a second process never writes here;
//! - `snapshot.json`: a serialised [`CatalogState`] behind a CRC header, replaced atomically
//!   (write, fsync, rename, fsync directory);
//! - `commands.log`: checksummed records, one [`Command`] each with its index, fsynced before
//!   a command is acknowledged.
//!
//! On open the snapshot is loaded and the log replayed (records the snapshot already holds,
//! by index, are skipped; any other that does not apply is damage); then a fresh snapshot is
//! written and the log emptied, so the log stays short. A torn last record (crash mid-append)
//! was never acknowledged and is dropped; damage anywhere else fails the open with
//! [`Error::Damaged`] and changes nothing on disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};

use crate::frame::{self, LOG_MAGIC};
use crate::state::assign_storage;
use crate::{CatalogState, Command, Error, QueryDef, Result, StreamDef};

/// A pre-replication catalog: state machine plus its persistence.
#[derive(Debug)]
pub struct LocalCatalog {
    dir: PathBuf,
    state: RwLock<CatalogState>,
    log: Mutex<CommandLog>,
    /// The flock-ed `LOCK` file, held while open.
    _lock: File,
}

#[derive(Debug)]
struct CommandLog {
    file: File,
    /// Bytes of valid records (where the next one is written).
    len: u64,
    /// Set after a write could not be undone or an fsync failed: no more commands.
    failed: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

impl LocalCatalog {
    /// Opens (or creates) the catalog stored in `dir`. Fails with [`Error::Locked`] before
    /// reading or writing anything if another process has it open, and with
    /// [`Error::Damaged`] (changing nothing) if a file is damaged.
    pub fn open(dir: &Path) -> Result<LocalCatalog> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock_dir(dir)?;
        let snapshot_path = dir.join("snapshot.json");
        let log_path = dir.join("commands.log");
        let mut state = match fs::read(&snapshot_path) {
            Ok(bytes) => {
                let json = frame::decode_snapshot(&bytes, &snapshot_path)?;
                serde_json::from_slice(json).map_err(|source| Error::Corrupt {
                    path: snapshot_path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogState::default(),
            Err(e) => return Err(io(&snapshot_path)(e)),
        };
        let bytes = match fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&log_path)(e)),
        };
        if bytes.starts_with(LOG_MAGIC) {
            replay(&mut state, &bytes, &log_path)?;
        } else if !LOG_MAGIC.starts_with(&bytes) {
            replay_legacy(&mut state, &bytes, &log_path)?;
        }
        write_snapshot(dir, &state)?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        file.write_all(LOG_MAGIC).map_err(io(&log_path))?;
        file.sync_all().map_err(io(&log_path))?;
        Ok(LocalCatalog {
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            log: Mutex::new(CommandLog {
                file,
                len: LOG_MAGIC.len() as u64,
                failed: None,
            }),
            _lock: lock,
        })
    }

    /// Checks, logs durably, then applies a command; returns it as applied, with the storage
    /// name the catalog assigned to a stream it creates. A failed write leaves the log as it
    /// was (the partial record is cut off); a failed fsync, after which the file's contents
    /// are unknown, makes the catalog refuse further commands ([`Error::ReadOnly`]).
    pub fn execute(&self, command: Command) -> Result<Command> {
        let mut log = self.log.lock();
        if let Some(why) = &log.failed {
            return Err(Error::ReadOnly(why.clone()));
        }
        let mut state = self.state.write();
        let index = state.applied() + 1;
        let command = assign_storage(command, index);
        state.check(&command)?;
        let path = self.dir.join("commands.log");
        let json = serde_json::to_vec(&command).map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        let record = frame::encode_record(index, &json)?;
        if let Err(e) = log.file.write_all_at(&record, log.len) {
            if let Err(undo) = log.file.set_len(log.len) {
                log.failed = Some(format!("{e}; cutting the partial record failed: {undo}"));
            }
            return Err(io(&path)(e));
        }
        if let Err(e) = log.file.sync_data() {
            log.failed = Some(format!("fsync failed: {e}"));
            return Err(io(&path)(e));
        }
        log.len += record.len() as u64;
        state.apply(command.clone())?;
        Ok(command)
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<StreamDef> {
        self.state.read().stream(name).cloned()
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> Vec<StreamDef> {
        self.state.read().streams().cloned().collect()
    }

    /// Storage names of dropped streams whose data is not yet known to be deleted.
    pub fn dropped(&self) -> Vec<String> {
        self.state.read().dropped().map(str::to_string).collect()
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

    /// A copy of the whole state (what the metadata group starts from when it takes over a
    /// catalog written before replication).
    pub fn state(&self) -> CatalogState {
        self.state.read().clone()
    }
}

/// Replays a framed log: records up to the snapshot's index are skipped, the rest must follow
/// on without a gap and apply.
fn replay(state: &mut CatalogState, bytes: &[u8], path: &Path) -> Result<()> {
    let contents = frame::read_log(bytes, path)?;
    let damaged = |reason: String| Error::Damaged {
        path: path.to_path_buf(),
        position: 0,
        reason,
    };
    for record in contents.records {
        if record.index <= state.applied() {
            continue;
        }
        if record.index != state.applied() + 1 {
            return Err(damaged(format!(
                "command {} follows command {}",
                record.index,
                state.applied()
            )));
        }
        let command: Command = serde_json::from_slice(&record.payload)
            .map_err(|e| damaged(format!("command {} does not decode: {e}", record.index)))?;
        state
            .apply(command)
            .map_err(|e| damaged(format!("command {} does not apply: {e}", record.index)))?;
    }
    if contents.valid_end < bytes.len() as u64 {
        tracing::warn!(
            path = %path.display(),
            at = contents.valid_end,
            bytes = bytes.len() as u64 - contents.valid_end,
            "dropping a torn last catalog record (never acknowledged)"
        );
    }
    Ok(())
}

/// Replays a log written before records were framed: one JSON command per line, no index.
/// Only a torn last line is dropped; a command that no longer applies was in the snapshot.
fn replay_legacy(state: &mut CatalogState, bytes: &[u8], path: &Path) -> Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    let mut position = 0u64;
    for (i, line) in lines.iter().enumerate() {
        let at = position;
        position += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Command>(line) {
            Ok(cmd) => {
                if let Err(e) = state.apply(cmd) {
                    tracing::debug!(error = %e, "legacy catalog replay skipped a command");
                }
            }
            Err(_) if i == last => {
                tracing::warn!(path = %path.display(), "dropping torn last catalog command");
            }
            Err(e) => {
                return Err(Error::Damaged {
                    path: path.to_path_buf(),
                    position: at,
                    reason: format!("line {} does not decode: {e}", i + 1),
                });
            }
        }
    }
    Ok(())
}

fn write_snapshot(dir: &Path, state: &CatalogState) -> Result<()> {
    let tmp = dir.join("snapshot.json.tmp");
    let json = serde_json::to_vec_pretty(state).map_err(|source| Error::Corrupt {
        path: tmp.clone(),
        source,
    })?;
    let bytes = frame::encode_snapshot(&json);
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
    use crate::storage_name_for;
    use crate::{ColumnDef, StreamOptions};

    fn def(name: &str) -> StreamDef {
        StreamDef {
            name: name.into(),
            columns: vec![ColumnDef::new("a", DataType::Utf8, false)],
            timestamp_column: None,
            partitions: 1,
            options: StreamOptions::default(),
            topic: name.into(),
            storage: String::new(),
            kind: Default::default(),
            primary_key: vec![],
        }
    }

    fn names(c: &LocalCatalog) -> Vec<String> {
        c.streams().into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn commands_survive_reopen_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("commands.log");
        {
            let c = LocalCatalog::open(dir.path()).unwrap();
            c.execute(Command::CreateStream(def("a"))).unwrap();
            c.execute(Command::CreateStream(def("b"))).unwrap();
            c.execute(Command::DropStream { name: "a".into() }).unwrap();
            // A crash mid-append leaves part of a record.
            let record = frame::encode_record(4, br#"{"op":"drop_stream","name":"b"}"#).unwrap();
            let mut f = OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(&record[..record.len() - 3]).unwrap();
        }
        let c = LocalCatalog::open(dir.path()).unwrap();
        assert_eq!(names(&c), vec!["b".to_string()]);
        assert_eq!(c.dropped(), vec![c_storage("a", 1)]);
        assert!(matches!(
            c.execute(Command::CreateStream(def("b"))),
            Err(Error::AlreadyExists(_))
        ));
    }

    fn c_storage(name: &str, n: u64) -> String {
        storage_name_for(name, n)
    }

    #[test]
    fn a_second_open_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCatalog::open(dir.path()).unwrap();
        c.execute(Command::CreateStream(def("a"))).unwrap();
        let before = fs::read(dir.path().join("commands.log")).unwrap();
        let snapshot = fs::read(dir.path().join("snapshot.json")).unwrap();
        assert!(matches!(
            LocalCatalog::open(dir.path()),
            Err(Error::Locked { .. })
        ));
        assert_eq!(fs::read(dir.path().join("commands.log")).unwrap(), before);
        assert_eq!(
            fs::read(dir.path().join("snapshot.json")).unwrap(),
            snapshot
        );
        c.execute(Command::CreateStream(def("b"))).unwrap();
        drop(c);
        assert_eq!(
            names(&LocalCatalog::open(dir.path()).unwrap()),
            vec!["a", "b"]
        );
    }

    #[test]
    fn damage_inside_the_log_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("commands.log");
        {
            let c = LocalCatalog::open(dir.path()).unwrap();
            for n in ["a", "b", "c"] {
                c.execute(Command::CreateStream(def(n))).unwrap();
            }
        }
        let bytes = fs::read(&log).unwrap();
        // A flipped byte inside the first command (its name "a" becomes "q").
        let at = bytes.windows(8).position(|w| w == b"\"name\":\"").unwrap() + 8;
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        fs::write(&log, &flipped).unwrap();
        assert!(matches!(
            LocalCatalog::open(dir.path()),
            Err(Error::Damaged { .. })
        ));
        assert_eq!(
            fs::read(&log).unwrap(),
            flipped,
            "a refused open changes nothing"
        );
        fs::write(&log, &bytes).unwrap();
        assert_eq!(
            names(&LocalCatalog::open(dir.path()).unwrap()),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = LocalCatalog::open(dir.path()).unwrap();
            c.execute(Command::CreateStream(def("abc"))).unwrap();
        }
        drop(LocalCatalog::open(dir.path()).unwrap());
        let path = dir.path().join("snapshot.json");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("\"abc\"", "\"abd\"")).unwrap();
        assert!(matches!(
            LocalCatalog::open(dir.path()),
            Err(Error::Damaged { .. })
        ));
    }

    #[test]
    fn streams_get_storage_names_that_are_never_paths() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalCatalog::open(dir.path()).unwrap();
        for (i, name) in ["..", ".", "../../x", "/etc", "a b/c", "ünï"]
            .iter()
            .enumerate()
        {
            let Command::CreateStream(d) = c.execute(Command::CreateStream(def(name))).unwrap()
            else {
                unreachable!()
            };
            assert!(
                crate::is_safe_storage_name(&d.storage),
                "{name} -> {}",
                d.storage
            );
            assert!(d.storage.ends_with(&format!("-{}", i + 1)));
        }
        for bad in ["", &"x".repeat(64)] {
            assert!(c.execute(Command::CreateStream(def(bad))).is_err());
        }
    }
}
