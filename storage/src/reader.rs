//! [`LogReader`]: a lazy, snapshot-bounded iterator over stored batches.

use std::sync::Arc;

use crate::decisions::is_aborted;
use crate::error::Result;
use crate::log::{Shared, StoredBatch};
use crate::segment::Segment;
use crate::segment::index::lookup_offset;

/// Reads batches holding offsets in `[start, end)` one at a time, where `end` was at most the
/// high watermark when the reader was created. Created by
/// [`PartitionLog::reader`](crate::PartitionLog::reader) and
/// [`PartitionLog::reader_range`](crate::PartitionLog::reader_range).
///
/// It is a snapshot: it pins the segments that held its range when it was created, so a
/// segment deleted meanwhile (by retention, or by the cold tier after uploading it) is still
/// read from its open file. This is what lets a scan read the cold tier up to the manifest's
/// end and the hot tier from there without a gap; the price is that a deleted segment's disk
/// space is freed only when the last reader pinning it is done. After an error the iterator
/// ends.
#[derive(Debug)]
pub struct LogReader {
    /// The segments that may hold `[start, end)`, pinned at creation.
    segments: Vec<Arc<Segment>>,
    start: u64,
    end: u64,
    time_range: Option<(i64, i64)>,
    /// Where the next segment lookup starts, when `cursor` is `None`.
    next_offset: u64,
    cursor: Option<Cursor>,
    done: bool,
    /// Offset ranges of aborted transactions (a Raft log's), skipped.
    aborted: Arc<Vec<(u64, u64)>>,
}

#[derive(Debug)]
struct Cursor {
    segment: Arc<Segment>,
    /// File position of the next frame.
    position: u64,
    /// Base offset of the frame at `position`.
    frame_base: u64,
}

impl LogReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: u64,
        end: u64,
        time_range: Option<(i64, i64)>,
    ) -> Self {
        let empty = start >= end || time_range.is_some_and(|(lo, hi)| lo > hi);
        let segments = if empty {
            vec![]
        } else {
            shared
                .segments
                .read()
                .iter()
                .filter(|s| s.state.read().next_offset > start && s.base_offset < end)
                .cloned()
                .collect()
        };
        // Taken after the caller read `end`: every abort below it is in the snapshot.
        let aborted = shared
            .raft
            .as_ref()
            .map(|raft| raft.aborted.read().clone())
            .unwrap_or_default();
        LogReader {
            aborted,
            segments,
            start,
            end,
            time_range,
            next_offset: start,
            cursor: None,
            done: empty,
        }
    }

    /// Moves the start of a reader that has not been read yet to `offset` (when larger): the
    /// cold tier reads up to `offset`, this reader the rest of its pinned snapshot.
    pub fn advance_start(&mut self, offset: u64) {
        if offset > self.start && self.cursor.is_none() {
            self.start = offset;
            self.next_offset = offset;
            self.segments
                .retain(|s| s.state.read().next_offset > offset);
            if offset >= self.end {
                self.done = true;
            }
        }
    }

    /// The exclusive end offset of this reader's snapshot.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Positions a cursor at the frame holding `next_offset` (or the first frame after it
    /// that still exists and may match the time range). `None` when nothing is left.
    fn seek(&mut self) -> Option<Cursor> {
        for segment in &self.segments {
            let state = segment.state.read();
            if state.next_offset <= self.next_offset {
                continue;
            }
            let target = self.next_offset.max(segment.base_offset);
            if target >= self.end {
                return None;
            }
            if self
                .time_range
                .is_some_and(|range| !state.may_overlap(range))
            {
                self.next_offset = state.next_offset;
                continue;
            }
            let (position, frame_base) = lookup_offset(&state.index, target - segment.base_offset)
                .map_or((0, segment.base_offset), |e| {
                    (
                        u64::from(e.position),
                        segment.base_offset + u64::from(e.relative_offset),
                    )
                });
            return Some(Cursor {
                segment: Arc::clone(segment),
                position,
                frame_base,
            });
        }
        None
    }

    fn next_batch(&mut self) -> Result<Option<StoredBatch>> {
        loop {
            let cursor = match &mut self.cursor {
                Some(cursor) => cursor,
                None => match self.seek() {
                    Some(cursor) => self.cursor.insert(cursor),
                    None => return Ok(None),
                },
            };
            if cursor.frame_base >= self.end {
                return Ok(None);
            }
            if cursor.frame_base >= cursor.segment.state.read().next_offset {
                self.next_offset = cursor.frame_base;
                self.cursor = None;
                continue;
            }
            // Below `end`, hence durable, hence completely written.
            let position = cursor.position;
            let (header, header_bytes) = cursor
                .segment
                .read_header_expecting(position, cursor.frame_base)?;
            cursor.position += header.frame_len();
            cursor.frame_base = header.next_offset();
            if header.control()
                || header.next_offset() <= self.start
                || (header.txn() && is_aborted(&self.aborted, header.base_offset))
            {
                continue;
            }
            if let Some((lo, hi)) = self.time_range
                && (header.max_timestamp < lo || header.min_timestamp > hi)
            {
                continue;
            }
            let batch = cursor
                .segment
                .read_batch(position, &header, &header_bytes)?;
            return Ok(Some(StoredBatch {
                base_offset: header.base_offset,
                min_timestamp: header.min_timestamp,
                max_timestamp: header.max_timestamp,
                batch,
            }));
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<StoredBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_batch().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
            self.cursor = None;
        }
        next
    }
}
