//! Commit records of multi-partition appends.
//!
//! Two logs share one format and one code path:
//! - a topic's own `<topic dir>/txn.log` ([`TopicGroup`]): the commit points of statements that
//!   write several partitions of that topic;
//! - the store's `<topic root>/transactions.log` ([`StoreGroup`]): the commit points of
//!   transactions that write several topics, each group naming its topic's storage name.
//!
//! ```text
//! magic ("EDDYTXN1" topic log, "EDDYTXS1" store log), then records, each:
//!   u32 LE  payload length
//!   u32 LE  CRC32C of the payload
//!   …       groups: [u16 LE name length, name bytes (store log only)],
//!                   u32 LE partition, u64 LE base offset, u64 LE next offset
//! ```
//!
//! A record is the commit point of one multi-partition append: written and fdatasynced after
//! every partition's group is durable, before any of them is visible. Recovery keeps a
//! partition's last `TXN` group only if a record (in either log) names it. A log only needs
//! the records whose group is still the last of its partition: it is rewritten with just those
//! when it opens and whenever it grows past [`COMPACT_BYTES`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::segment::replace_file;
use crate::{Error, Result};

/// The log is compacted once it is larger than this.
const COMPACT_BYTES: u64 = 1 << 20;

/// One group of a committed append in a topic's own log: partition, base offset, next offset.
pub(crate) type GroupRef = (u32, u64, u64);

/// A topic log's group.
pub(crate) type TopicGroup = GroupRef;

/// A store log's group: the topic's storage name and the group in it.
pub(crate) type StoreGroup = (String, GroupRef);

/// How one kind of log names a group on disk.
pub(crate) trait GroupCodec: Sized + Clone {
    /// The file's first bytes.
    const MAGIC: &'static [u8; 8];
    /// The file's name in its directory.
    const FILE: &'static str;
    /// Appends the group's bytes.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads one group from the front of `bytes`: the group and the bytes it took.
    fn take(bytes: &[u8]) -> Option<(Self, usize)>;
}

fn put_ref(&(p, base, next): &GroupRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&next.to_le_bytes());
}

fn take_ref(bytes: &[u8]) -> Option<(GroupRef, usize)> {
    let g = bytes.get(..20)?;
    let p = u32::from_le_bytes(g[0..4].try_into().ok()?);
    let base = u64::from_le_bytes(g[4..12].try_into().ok()?);
    let next = u64::from_le_bytes(g[12..20].try_into().ok()?);
    Some(((p, base, next), 20))
}

impl GroupCodec for TopicGroup {
    const MAGIC: &'static [u8; 8] = b"EDDYTXN1";
    const FILE: &'static str = "txn.log";
    fn put(&self, out: &mut Vec<u8>) {
        put_ref(self, out);
    }
    fn take(bytes: &[u8]) -> Option<(Self, usize)> {
        take_ref(bytes)
    }
}

impl GroupCodec for StoreGroup {
    const MAGIC: &'static [u8; 8] = b"EDDYTXS1";
    const FILE: &'static str = "transactions.log";
    fn put(&self, out: &mut Vec<u8>) {
        // Storage names are at most 255 bytes (`topics::checked`).
        out.extend_from_slice(&(self.0.len() as u16).to_le_bytes());
        out.extend_from_slice(self.0.as_bytes());
        put_ref(&self.1, out);
    }
    fn take(bytes: &[u8]) -> Option<(Self, usize)> {
        let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(bytes.get(2..2 + len)?)
            .ok()?
            .to_string();
        let (group, used) = take_ref(bytes.get(2 + len..)?)?;
        Some(((name, group), 2 + len + used))
    }
}

/// The open commit log of one topic (`G` = [`TopicGroup`]) or of the store ([`StoreGroup`]).
#[derive(Debug)]
pub(crate) struct TxnLog<G> {
    path: PathBuf,
    file: File,
    len: u64,
    /// The records in the file, in order.
    records: Vec<Vec<G>>,
    /// Set after a failed write could not be cut off or a failed fsync: no more commits.
    failed: Option<String>,
}

fn encode<G: GroupCodec>(groups: &[G]) -> Vec<u8> {
    let mut payload = Vec::new();
    for g in groups {
        g.put(&mut payload);
    }
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn record_at<G: GroupCodec>(bytes: &[u8], pos: usize) -> Option<(Vec<G>, usize)> {
    let len = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
    let payload = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
    if len == 0 || crc32c::crc32c(payload) != crc {
        return None;
    }
    let mut groups = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (group, used) = G::take(rest)?;
        groups.push(group);
        rest = &rest[used..];
    }
    Some((groups, pos + 8 + len))
}

/// The records of a commit log's bytes: a bad record with a valid one after it is
/// corruption; a bad last record is a torn write, never acknowledged, and ignored.
fn parse<G: GroupCodec>(bytes: &[u8], path: &Path) -> Result<Vec<Vec<G>>> {
    if bytes.is_empty() || G::MAGIC.starts_with(bytes) {
        return Ok(vec![]);
    }
    if !bytes.starts_with(G::MAGIC) {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: "not a commit log".into(),
        });
    }
    let mut records = vec![];
    let mut pos = G::MAGIC.len();
    while pos < bytes.len() {
        match record_at::<G>(bytes, pos) {
            Some((groups, end)) => {
                records.push(groups);
                pos = end;
            }
            None => {
                if let Some(later) =
                    (pos + 1..bytes.len()).find(|&q| record_at::<G>(bytes, q).is_some())
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

impl<G: GroupCodec + std::hash::Hash + Eq> TxnLog<G> {
    /// The groups committed according to the log in `dir` (none if there is no log).
    pub(crate) fn committed(dir: &Path) -> Result<HashSet<G>> {
        Ok(Self::read(dir)?.into_iter().flatten().collect())
    }

    /// Every record of the log in `dir` (none if there is no log).
    pub(crate) fn read(dir: &Path) -> Result<Vec<Vec<G>>> {
        let path = dir.join(G::FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        parse(&bytes, &path)
    }

    /// Writes a fresh log in `dir` holding the records of `keep` (atomically: write, fsync,
    /// rename, fsync the directory) and opens it for appending.
    pub(crate) fn rewrite(dir: &Path, keep: Vec<Vec<G>>) -> Result<TxnLog<G>> {
        let path = dir.join(G::FILE);
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e| Error::io(what, e)
        };
        let mut bytes = G::MAGIC.to_vec();
        for r in &keep {
            bytes.extend(encode(r));
        }
        replace_file(dir, G::FILE, &bytes)?;
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
        groups: Vec<G>,
        still_needed: impl Fn(&G) -> bool,
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
        let mut log = TxnLog::<TopicGroup>::rewrite(dir.path(), vec![]).unwrap();
        log.commit(vec![(0, 0, 10), (1, 0, 7)], |_| true).unwrap();
        log.commit(vec![(0, 10, 12), (2, 0, 1)], |_| true).unwrap();
        let path = dir.path().join("txn.log");
        let full = fs::read(&path).unwrap();
        let all = TxnLog::<TopicGroup>::committed(dir.path()).unwrap();
        assert_eq!(all.len(), 4);
        for cut in full.len() - 47..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let some = TxnLog::<TopicGroup>::committed(dir.path()).unwrap();
            assert_eq!(
                some,
                [(0, 0, 10), (1, 0, 7)].into_iter().collect(),
                "cut {cut}"
            );
        }
        let mut flipped = full.clone();
        flipped[TopicGroup::MAGIC.len() + 9] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            TxnLog::<TopicGroup>::committed(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn store_records_name_their_topics_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TxnLog::<StoreGroup>::rewrite(dir.path(), vec![]).unwrap();
        let first = vec![
            ("a-1".to_string(), (0, 0, 5)),
            ("b-2".to_string(), (2, 7, 9)),
        ];
        log.commit(first.clone(), |_| true).unwrap();
        log.commit(vec![("a-1".to_string(), (1, 0, 3))], |_| true)
            .unwrap();
        let path = dir.path().join(StoreGroup::FILE);
        let full = fs::read(&path).unwrap();
        assert_eq!(TxnLog::<StoreGroup>::read(dir.path()).unwrap().len(), 2);
        // Cut anywhere inside the last record: only the first stays.
        let last_len = 8 + 2 + 3 + 20;
        for cut in full.len() - last_len + 1..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            assert_eq!(
                TxnLog::<StoreGroup>::read(dir.path()).unwrap(),
                vec![first.clone()],
                "cut {cut}"
            );
        }
        // The two logs never read each other's files.
        assert!(TxnLog::<TopicGroup>::read(dir.path()).unwrap().is_empty());
    }
}
