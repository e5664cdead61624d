//! The sparse offset + time index kept beside each segment.
//!
//! `NNN.index` is the magic `EDDYIX02`, then an array of fixed 32-byte little-endian entries,
//! one for the segment's first frame and then one for each frame that starts at least
//! `index_interval_bytes` after the previous entry's frame:
//!
//! ```text
//! byte  size  field
//!    0     4  relative offset (u32): frame base offset - segment base offset
//!    4     4  file position (u32) of the frame
//!    8     8  min timestamp (i64) over the segment's frames up to and including this one
//!   16     8  max timestamp (i64) over the segment's frames up to and including this one
//!   24     8  Raft index + 1 (u64) of the frame's entry; 0: the frame is not an entry
//! ```
//!
//! One file serves three lookups: by offset (binary search on the relative offset), by time
//! (the running max is non-decreasing, so binary search for the last entry whose running max
//! is below the target) and by Raft index. A control frame takes no offset, so two entries
//! may share a relative offset; positions strictly grow. Positions and relative offsets are
//! u32, so the log rolls a segment before either would overflow. An index without the magic
//! (the 24-byte entries of before) is rebuilt like any unusable one.
//!
//! The index is a **cache**. The active segment's index lives in memory and is written to
//! disk when the segment is closed (roll or [`crate::PartitionLog::close`]); recovery rebuilds
//! it from the frames. A closed segment's index is checked on open (well-formed, positions
//! inside the file, the last entry pointing at a frame with the expected offset) and then
//! completed by scanning frame headers after its last entry; a missing, short or
//! inconsistent index is rebuilt from the segment and rewritten.

/// Size of one index entry on disk.
pub(crate) const ENTRY_LEN: usize = 32;
/// The first bytes of an index file.
const MAGIC: &[u8; 8] = b"EDDYIX02";

/// One index entry, as described in the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    /// The running bounds of event time up to and including this entry's batch; before any
    /// data (only control frames so far) `(i64::MAX, i64::MIN)`, an empty range.
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// The Raft index of the frame's entry, if it belongs to one.
    pub index: Option<u64>,
}

/// Serialises entries in file order, after the magic.
pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * ENTRY_LEN);
    out.extend_from_slice(MAGIC);
    for e in entries {
        out.extend_from_slice(&e.relative_offset.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.min_timestamp.to_le_bytes());
        out.extend_from_slice(&e.max_timestamp.to_le_bytes());
        out.extend_from_slice(&e.index.map_or(0, |i| i + 1).to_le_bytes());
    }
    out
}

/// Parses an index file and checks that it is well formed for a segment file of
/// `segment_len` bytes. The error says why the index cannot be used (it is then rebuilt).
pub(crate) fn decode(bytes: &[u8], segment_len: u64) -> Result<Vec<IndexEntry>, &'static str> {
    let Some(bytes) = bytes.strip_prefix(MAGIC) else {
        return Err("index is of an older format or damaged");
    };
    if bytes.is_empty() {
        return Err("index is empty");
    }
    if !bytes.len().is_multiple_of(ENTRY_LEN) {
        return Err("index length is not a whole number of entries");
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    for chunk in bytes.chunks_exact(ENTRY_LEN) {
        let mut u32s = [[0u8; 4]; 2];
        u32s[0].copy_from_slice(&chunk[0..4]);
        u32s[1].copy_from_slice(&chunk[4..8]);
        let mut u64s = [[0u8; 8]; 3];
        u64s[0].copy_from_slice(&chunk[8..16]);
        u64s[1].copy_from_slice(&chunk[16..24]);
        u64s[2].copy_from_slice(&chunk[24..32]);
        let entry = IndexEntry {
            relative_offset: u32::from_le_bytes(u32s[0]),
            position: u32::from_le_bytes(u32s[1]),
            min_timestamp: i64::from_le_bytes(u64s[0]),
            max_timestamp: i64::from_le_bytes(u64s[1]),
            index: u64::from_le_bytes(u64s[2]).checked_sub(1),
        };
        if u64::from(entry.position) >= segment_len {
            return Err("index entry points past the end of the segment");
        }
        // (i64::MAX, i64::MIN): no event time yet — only control frames before this entry.
        let timeless = (entry.min_timestamp, entry.max_timestamp) == (i64::MAX, i64::MIN);
        if entry.min_timestamp > entry.max_timestamp && !timeless {
            return Err("index entry has min timestamp above max timestamp");
        }
        match entries.last() {
            None if entry.relative_offset != 0 || entry.position != 0 => {
                return Err("first index entry is not the segment's first frame");
            }
            Some(prev)
                if entry.relative_offset < prev.relative_offset
                    || entry.position <= prev.position
                    || entry.index < prev.index
                    || entry.min_timestamp > prev.min_timestamp
                    || entry.max_timestamp < prev.max_timestamp =>
            {
                return Err("index entries are out of order");
            }
            _ => {}
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The entry to start scanning from to find the batch holding `relative_offset`: the last
/// entry at or below it (the first entry if the index is empty of such).
pub(crate) fn lookup_offset(entries: &[IndexEntry], relative_offset: u64) -> Option<IndexEntry> {
    let n = entries.partition_point(|e| u64::from(e.relative_offset) <= relative_offset);
    entries.get(n.saturating_sub(1)).copied()
}

/// The entry to start scanning from to find the first frame of Raft index `index`: the last
/// entry below it. Not one *at* it: an entry of several frames may have an index entry for a
/// later frame of it, and starting there would skip its first.
pub(crate) fn lookup_index(entries: &[IndexEntry], index: u64) -> Option<IndexEntry> {
    // Frames that are not entries precede the Raft log.
    let n = entries.partition_point(|e| e.index.is_none_or(|i| i < index));
    entries.get(n.saturating_sub(1)).copied()
}

/// The entry to start scanning from to find the first batch whose max timestamp is at least
/// `ts`: every batch up to the last entry whose running max is below `ts` cannot match.
pub(crate) fn lookup_timestamp(entries: &[IndexEntry], ts: i64) -> Option<IndexEntry> {
    let n = entries.partition_point(|e| e.max_timestamp < ts);
    entries.get(n.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: u32, pos: u32, min: i64, max: i64) -> IndexEntry {
        IndexEntry {
            relative_offset: rel,
            position: pos,
            min_timestamp: min,
            max_timestamp: max,
            index: Some(u64::from(pos)),
        }
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            entry(0, 0, 5, 9),
            entry(10, 4100, 1, 20),
            entry(25, 9000, 1, 20),
            // A control frame takes no offset: the next frame may share it.
            entry(25, 9100, 1, 20),
        ];
        assert_eq!(decode(&encode(&entries), 10_000).unwrap(), entries);
    }

    #[test]
    fn malformed_indexes_are_rejected() {
        let good = encode(&[entry(0, 0, 5, 9), entry(10, 4100, 1, 20)]);
        assert!(
            decode(&good[..good.len() - 1], 10_000).is_err(),
            "torn entry"
        );
        assert!(decode(&good, 4100).is_err(), "points past the segment");
        assert!(decode(&[], 10).is_err(), "empty");
        let unordered = encode(&[
            entry(0, 0, 5, 9),
            entry(10, 4100, 1, 20),
            entry(5, 5000, 1, 20),
        ]);
        assert!(decode(&unordered, 10_000).is_err());
        let not_first = encode(&[entry(3, 0, 5, 9)]);
        assert!(decode(&not_first, 10_000).is_err());
        let older = &good[MAGIC.len()..];
        assert!(decode(older, 10_000).is_err(), "no magic");
        let mut index_back = [entry(0, 0, 5, 9), entry(10, 4100, 1, 20)];
        index_back[1].index = None;
        index_back[0].index = Some(7);
        assert!(decode(&encode(&index_back), 10_000).is_err());
        let max_shrinks = encode(&[entry(0, 0, 5, 9), entry(10, 4100, 5, 8)]);
        assert!(decode(&max_shrinks, 10_000).is_err());
    }

    #[test]
    fn a_raft_index_lookup_starts_before_the_entrys_first_frame() {
        let mut entries: Vec<IndexEntry> = (0..5).map(|i| entry(i, i * 100, 0, 0)).collect();
        for (e, index) in entries
            .iter_mut()
            .zip([None, Some(3), Some(5), Some(5), Some(6)])
        {
            e.index = index;
        }
        let at = |index| lookup_index(&entries, index).unwrap().position;
        assert_eq!(
            at(5),
            100,
            "entry 5's first frame may lie before its first index entry"
        );
        assert_eq!(at(6), 300);
        assert_eq!(at(3), 0);
        assert_eq!(at(0), 0);
        assert_eq!(at(99), 400);
    }

    #[test]
    fn lookups_pick_the_last_entry_that_cannot_overshoot() {
        let entries = vec![
            entry(0, 0, 5, 9),
            entry(10, 4100, 1, 20),
            entry(25, 9000, 1, 30),
        ];
        assert_eq!(lookup_offset(&entries, 0).unwrap().relative_offset, 0);
        assert_eq!(lookup_offset(&entries, 9).unwrap().relative_offset, 0);
        assert_eq!(lookup_offset(&entries, 10).unwrap().relative_offset, 10);
        assert_eq!(lookup_offset(&entries, 1000).unwrap().relative_offset, 25);
        assert_eq!(lookup_timestamp(&entries, 9).unwrap().relative_offset, 0);
        assert_eq!(lookup_timestamp(&entries, 10).unwrap().relative_offset, 0);
        assert_eq!(lookup_timestamp(&entries, 21).unwrap().relative_offset, 10);
        assert_eq!(lookup_timestamp(&entries, 31).unwrap().relative_offset, 25);
        assert!(lookup_offset(&[], 3).is_none());
    }
}
