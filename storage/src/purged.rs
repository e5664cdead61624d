//! What a Raft log keeps of the entries retention and the cold tier deleted from its front:
//! which segments may go, and the id (term, index) of the last entry that went (`raft-purged`).
//!
//! openraft needs that id (its "last purged log id"): without it, a log whose first entries are
//! gone looks like one that starts at index 0, and a restart asks for an entry that is not
//! there. The term cannot be read back once its segment is deleted, so it is saved first:
//! the file is replaced and synced *before* a segment is deleted (a crash between leaves a
//! purged id below entries still on disk, which is harmless: they are read past).
//!
//! A Raft log deletes only segments wholly committed and decided (below the high watermark,
//! every entry at or before the committed one): an entry a follower or a decision may still
//! need is never deleted by retention. A follower too far behind for what is left needs a
//! snapshot (docs/design/2026-12-02-replication.md, milestone 4).

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::PartitionLog;
use crate::segment::{SegState, Segment, read_checked_file, replace_checked_file};

const PURGED_FILE: &str = "raft-purged";
const PURGED_MAGIC: &[u8; 8] = b"EDDYPRG1";

/// The purged id saved in `dir`, if any.
pub(crate) fn read_purged(dir: &Path) -> Result<Option<(u64, u64)>> {
    let what = "the purged entry file";
    let Some(payload) = read_checked_file(dir, PURGED_FILE, PURGED_MAGIC, what)? else {
        return Ok(None);
    };
    let (term, index) = payload
        .split_first_chunk::<8>()
        .and_then(|(term, rest)| Some((*term, *rest.first_chunk::<8>()?)))
        .filter(|_| payload.len() == 16)
        .ok_or_else(|| Error::Corrupt {
            path: dir.join(PURGED_FILE),
            position: 0,
            reason: format!("{what}: wrong length"),
        })?;
    Ok(Some((u64::from_le_bytes(term), u64::from_le_bytes(index))))
}

fn write_purged(dir: &Path, (term, index): (u64, u64)) -> Result<()> {
    let mut payload = term.to_le_bytes().to_vec();
    payload.extend_from_slice(&index.to_le_bytes());
    replace_checked_file(dir, PURGED_FILE, PURGED_MAGIC, &payload)
}

/// The term of entry `index`, read from the headers of `segment` (which holds it).
fn entry_term(segment: &Segment, state: &SegState, index: u64) -> Result<u64> {
    // Start at the last index entry at or before the entry: frames follow in index order.
    let mut position = state
        .index
        .iter()
        .rev()
        .find(|e| e.index.is_some_and(|i| i <= index))
        .map_or(0, |e| u64::from(e.position));
    while position < state.size {
        let (header, _) = segment.read_header(position)?;
        if header.entry() && header.index == index {
            return Ok(header.term);
        }
        position += header.frame_len();
    }
    Err(segment.corrupt(position, format!("entry {index} is not in the segment")))
}

impl PartitionLog {
    /// (term, index) of the last entry deleted from the front of a Raft log, if any.
    pub fn purged_entry(&self) -> Option<(u64, u64)> {
        self.shared().raft.as_ref().and_then(|r| *r.purged.lock())
    }

    /// Which closed segments may be deleted from the front: all in a log of one node; in a
    /// Raft log those wholly committed and decided. Taken before the segment list's lock
    /// (the entry state's lock is never taken inside it); it only grows stale the safe way.
    pub(crate) fn may_delete(&self) -> impl Fn(&SegState) -> bool + use<> {
        let bound = self
            .shared()
            .raft
            .as_ref()
            .map(|raft| (self.high_watermark(), raft.committed_index()));
        move |state: &SegState| match bound {
            None => true,
            Some((hw, committed)) => {
                state.next_offset <= hw
                    && state
                        .last_index
                        .is_none_or(|last| committed.is_some_and(|c| last <= c))
            }
        }
    }

    /// Saves the last entry of `segments` (about to be deleted from the front of a Raft log)
    /// as the purged id, before they go. Nothing to do in a log of one node.
    pub(crate) fn save_purged(&self, segments: &[Arc<Segment>]) -> Result<()> {
        let Some(raft) = self.shared().raft.as_ref() else {
            return Ok(());
        };
        let last = segments.iter().rev().find_map(|s| {
            let state = s.state.read();
            state
                .last_index
                .map(|i| entry_term(s, &state, i).map(|t| (t, i)))
        });
        let Some(last) = last.transpose()? else {
            return Ok(());
        };
        if raft.purged.lock().is_some_and(|p| p.1 >= last.1) {
            return Ok(());
        }
        write_purged(self.dir(), last)?;
        *raft.purged.lock() = Some(last);
        Ok(())
    }
}
