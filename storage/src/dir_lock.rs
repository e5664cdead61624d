//! [`DataDirLock`]: one process per data directory.
//!
//! Taken first, before anything in the directory is read or written, and held until the
//! process lets it go (an flock on `<data-dir>/LOCK`, released by the kernel on exit,
//! `kill -9` included). Partition logs and the catalog lock their own directories too; this
//! lock is what keeps a second server from rewriting anything before one of those refuses it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The held lock of a data directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it; fails with [`Error::Locked`] (naming the owner's
    /// pid when it wrote one) if another process holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock> {
        let path = dir.join("LOCK");
        let Some(mut file) = lock_dir(dir)? else {
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::DirInUse {
                path: dir.to_path_buf(),
                owner: owner.trim().to_string(),
            });
        };
        let pid = format!("pid {}\n", std::process::id());
        if let Err(e) = file
            .set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
        {
            tracing::warn!(error = %e, "could not write the pid into the data directory lock");
        }
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long a lock that is held is tried again before it counts as another holder's.
///
/// An flock belongs to the open file, and a process that starts a program (`fork`, then
/// `exec`) gives the child a copy of every descriptor until the `exec` closes it
/// (`O_CLOEXEC`): a lock this process just released may stay held for that moment by a
/// child another thread is starting — on a loaded machine, milliseconds. Seen in the test
/// suite, where servers restart in a process whose other tests start clients: a restart found
/// its own data directory "in use by another eddy server" with its own pid.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Creates `dir` if needed and flocks `dir/LOCK`: `None` if another open file holds it (for
/// longer than [`LOCK_PATIENCE`]).
pub(crate) fn lock_dir(dir: &Path) -> Result<Option<File>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() >= deadline => {
                return Ok(None);
            }
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(Error::DirInUse { owner, .. }) => {
                assert_eq!(owner, format!("pid {}", std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    /// A lock held for a moment by another open file of it (as a child being started holds
    /// its copy until `exec`) is taken once let go, not refused.
    #[test]
    fn a_lock_let_go_within_a_moment_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(held);
        });
        assert!(DataDirLock::acquire(dir.path()).is_ok());
        release.join().unwrap();
    }
}
