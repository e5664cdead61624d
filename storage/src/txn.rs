//! A topic's commit records for multi-partition appends: `<topic dir>/txn.log`.
//!
//! ```text
//! "EDDYTXN1", then records, each:
//!   u32 LE  payload length (20 bytes per group)
//!   u32 LE  CRC32C of the payload
//!   …       groups: u32 LE partition, u64 LE base offset, u64 LE next offset
//! ```
//!
//! A record is the commit point of one multi-partition append: written and fdatasynced after
//! every partition's group is durable, before any of them is visible. Recovery keeps a
//! partition's last `TXN` group only if a record names it. The log only needs the records
//! whose group is still the last of its partition; it is rewritten with just those when the
//! topic opens and whenever it grows past [`COMPACT_BYTES`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::segment::sync_dir;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYTXN1";
const GROUP_BYTES: usize = 20;
/// The log is compacted once it is larger than this.
const COMPACT_BYTES: u64 = 1 << 20;

/// One group of a committed append: partition, base offset, next offset.
pub(crate) type GroupRef = (u32, u64, u64);

/// The open commit log of one topic.
#[derive(Debug)]
pub(crate) struct TxnLog {
    path: PathBuf,
    file: File,
    len: u64,
    /// The records in the file, in order.
    records: Vec<Vec<GroupRef>>,
    /// Set after a failed write could not be cut off or a failed fsync: no more commits.
    failed: Option<String>,
}

fn encode(groups: &[GroupRef]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(groups.len() * GROUP_BYTES);
    for &(p, base, next) in groups {
        payload.extend_from_slice(&p.to_le_bytes());
        payload.extend_from_slice(&base.to_le_bytes());
        payload.extend_from_slice(&next.to_le_bytes());
    }
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn record_at(bytes: &[u8], pos: usize) -> Option<(Vec<GroupRef>, usize)> {
    let len = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
    let payload = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
    if len == 0 || !len.is_multiple_of(GROUP_BYTES) || crc32c::crc32c(payload) != crc {
        return None;
    }
    let groups = payload
        .chunks_exact(GROUP_BYTES)
        .map(|g| {
            let u32_at = |i: usize| u32::from_le_bytes([g[i], g[i + 1], g[i + 2], g[i + 3]]);
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&g[i..i + 8]);
                u64::from_le_bytes(b)
            };
            (u32_at(0), u64_at(4), u64_at(12))
        })
        .collect();
    Some((groups, pos + 8 + len))
}

/// The records of a commit log's bytes: a bad record with a valid one after it is
/// corruption; a bad last record is a torn write, never acknowledged, and ignored.
fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Vec<GroupRef>>> {
    if bytes.is_empty() || MAGIC.starts_with(bytes) {
        return Ok(vec![]);
    }
    if !bytes.starts_with(MAGIC) {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: "not a commit log".into(),
        });
    }
    let mut records = vec![];
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        match record_at(bytes, pos) {
            Some((groups, end)) => {
                records.push(groups);
                pos = end;
            }
            None => {
                if let Some(later) = (pos + 1..bytes.len()).find(|&q| record_at(bytes, q).is_some())
                {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        position: pos as u64,
                        reason: format!(
                            "a commit record fails its checksum but a valid one follows at byte {later}"
                        ),
                    });
                }
                tracing::warn!(path = %path.display(), at = pos, "dropping a torn last commit record (never acknowledged)");
                break;
            }
        }
    }
    Ok(records)
}

impl TxnLog {
    /// The groups committed according to the log in `dir` (none if there is no log).
    pub(crate) fn committed(dir: &Path) -> Result<HashSet<GroupRef>> {
        let path = dir.join("txn.log");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(parse(&bytes, &path)?.into_iter().flatten().collect())
    }

    /// Writes a fresh log in `dir` holding the records of `keep` (atomically: write, fsync,
    /// rename, fsync the directory) and opens it for appending.
    pub(crate) fn rewrite(dir: &Path, keep: Vec<Vec<GroupRef>>) -> Result<TxnLog> {
        let path = dir.join("txn.log");
        let tmp = dir.join("txn.log.tmp");
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e| Error::io(what, e)
        };
        let mut bytes = MAGIC.to_vec();
        for r in &keep {
            bytes.extend(encode(r));
        }
        let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("renaming to", &path))?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        Ok(TxnLog {
            path,
            file,
            len: bytes.len() as u64,
            records: keep,
            failed: None,
        })
    }

    /// Makes `groups` committed: appends their record and fdatasyncs it. Before that, a log
    /// past [`COMPACT_BYTES`] is rewritten with the records `still_needed` keeps.
    pub(crate) fn commit(
        &mut self,
        groups: Vec<GroupRef>,
        still_needed: impl Fn(&GroupRef) -> bool,
    ) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(Error::io(
                format!("committing to {}", self.path.display()),
                std::io::Error::other(format!(
                    "the commit log failed earlier ({why}); restart the server"
                )),
            ));
        }
        if self.len > COMPACT_BYTES {
            let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
            let keep = std::mem::take(&mut self.records)
                .into_iter()
                .filter(|r| r.iter().any(&still_needed))
                .collect();
            *self = TxnLog::rewrite(&dir, keep)?;
        }
        let record = encode(&groups);
        if let Err(e) = self.file.write_all_at(&record, self.len) {
            if let Err(cut) = self.file.set_len(self.len) {
                self.failed = Some(format!("{e}; cutting it off failed: {cut}"));
            }
            return Err(Error::io(
                format!("appending to {}", self.path.display()),
                e,
            ));
        }
        if let Err(e) = self.file.sync_data() {
            self.failed = Some(format!("fsync failed: {e}"));
            return Err(Error::io(format!("syncing {}", self.path.display()), e));
        }
        self.len += record.len() as u64;
        self.records.push(groups);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_groups_survive_and_a_torn_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TxnLog::rewrite(dir.path(), vec![]).unwrap();
        log.commit(vec![(0, 0, 10), (1, 0, 7)], |_| true).unwrap();
        log.commit(vec![(0, 10, 12), (2, 0, 1)], |_| true).unwrap();
        let path = dir.path().join("txn.log");
        let full = fs::read(&path).unwrap();
        let all = TxnLog::committed(dir.path()).unwrap();
        assert_eq!(all.len(), 4);
        for cut in full.len() - 47..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let some = TxnLog::committed(dir.path()).unwrap();
            assert_eq!(
                some,
                [(0, 0, 10), (1, 0, 7)].into_iter().collect(),
                "cut {cut}"
            );
        }
        let mut flipped = full.clone();
        flipped[MAGIC.len() + 9] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            TxnLog::committed(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }
}
