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

/// Creates `dir` if needed and flocks `dir/LOCK`: `None` if another open file holds it.
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
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
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
}
