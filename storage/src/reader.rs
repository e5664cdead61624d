//! [`LogReader`]: a lazy, snapshot-bounded iterator over stored batches.

use std::sync::Arc;

use crate::error::Result;
use crate::log::{Shared, StoredBatch};
use crate::segment::Segment;
use crate::segment::index::lookup_offset;

/// Reads batches holding offsets in `[start, end)` one at a time, where `end` was at most the
/// high watermark when the reader was created. Created by
/// [`PartitionLog::reader`](crate::PartitionLog::reader) and
/// [`PartitionLog::reader_range`](crate::PartitionLog::reader_range).
///
/// It holds one segment open at a time and finds the next one in the log's current segment
/// list, so a segment deleted by retention before the reader reaches it is skipped (offsets
/// jump to the new log start) and one deleted while being read is finished from the open
/// file. After an error the iterator ends.
#[derive(Debug)]
pub struct LogReader {
    shared: Arc<Shared>,
    start: u64,
    end: u64,
    time_range: Option<(i64, i64)>,
    /// Where the next segment lookup starts, when `cursor` is `None`.
    next_offset: u64,
    cursor: Option<Cursor>,
    done: bool,
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
        LogReader {
            shared,
            start,
            end,
            time_range,
            next_offset: start,
            cursor: None,
            done: empty,
        }
    }

    /// The exclusive end offset of this reader's snapshot.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Positions a cursor at the frame holding `next_offset` (or the first frame after it
    /// that still exists and may match the time range). `None` when nothing is left.
    fn seek(&mut self) -> Option<Cursor> {
        let segments = self.shared.segments.read();
        for segment in segments.iter() {
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
            if header.next_offset() <= self.start {
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
