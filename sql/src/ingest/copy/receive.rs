//! A COPY FROM STDIN while its data arrives: text, CSV and binary data is cut into blocks of
//! whole rows (a newline inside CSV quotes ends no row; a binary tuple ends where its field
//! lengths say) that are decoded, routed to partitions and encoded as log frames on blocking
//! threads while the connection keeps receiving, so that work overlaps the network instead of
//! following it. JSON lines are decoded whole when the data ends.
//!
//! Nothing is appended until every block has decoded: a bad row anywhere fails the whole
//! statement, naming its line in the whole payload. This module owns that ordering; it never
//! writes to the log itself (that is [`crate::ingest::txn::Writes::append`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

use super::CopyIn;
use super::binary::{self, Stop};
use super::csv_format::{self, RowEnds};
use super::text::{self, TextOptions};
use super::{CopyFormat, decode};
use crate::ingest::txn::Writes;
use crate::ingest::{Encoded, MAX_FRAME_ROWS, encode};
use crate::{Engine, Error, Result};

/// A block is cut after this many rows (one stored frame's worth)...
const BLOCK_ROWS: usize = MAX_FRAME_ROWS;
/// ...or once this many bytes of whole rows are waiting, for long rows.
const BLOCK_BYTES: usize = 8 << 20;
/// Blocks decoding at once: one per core the machine offers (the connection needs little).
fn max_decoding() -> usize {
    // Asked once: the standard library reads the cgroup files on every call.
    static CORES: std::sync::LazyLock<usize> =
        std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    *CORES
}

/// The encoded frames of one block, and whether an end marker (`\.`) ended the data.
type Decoded = (Encoded, bool);

/// How received data is cut into blocks of whole rows.
enum Cutting {
    /// Text: every newline ends a row.
    Text,
    /// CSV: newlines outside quotes end rows.
    Csv(RowEnds),
    /// Binary: tuples end where their field lengths say, after the file header.
    Binary(BinaryState),
    /// JSON lines: decoded whole when the data ends.
    Never,
}

/// Where a binary COPY's data stands.
#[derive(Default)]
struct BinaryState {
    /// The file header was read (and taken off `pending`).
    header: bool,
    /// The trailer arrived: the data is over.
    trailer: bool,
    /// Data came after the trailer (an error once the rows before it decoded).
    after_trailer: bool,
    /// A malformed tuple was handed to a decoder, which names the fault; the rest is ignored.
    stopped: bool,
}

/// Receives the data of one COPY FROM STDIN; [`CopyReceiver::finish`] appends it, all or nothing.
pub struct CopyReceiver {
    copy: Arc<CopyIn>,
    engine: Arc<Engine>,
    /// The session's writes: the rows go to the log, or into its open transaction block.
    writes: Arc<Writes>,
    cutting: Cutting,
    /// Data received and not yet handed to a decoder; it starts at a row.
    pending: BytesMut,
    /// Bytes of `pending` already searched for row ends, and the rows and newlines (quoted
    /// ones too) found in them.
    scanned: usize,
    scanned_rows: usize,
    scanned_newlines: usize,
    /// Lines of the payload before `pending`.
    lines_before: usize,
    /// Blocks being decoded, oldest first, at most `max_decoding` of them.
    decoding: VecDeque<JoinHandle<Result<Decoded>>>,
    max_decoding: usize,
    /// Frames of the blocks decoded so far, in payload order.
    decoded: Encoded,
    /// The data ended (end marker) or failed (`failed` holds why): later data is ignored.
    ended: bool,
    failed: Option<Error>,
    received: usize,
    started: Instant,
}

impl CopyReceiver {
    /// Starts receiving the data of `copy`.
    pub fn new(engine: Arc<Engine>, copy: CopyIn, writes: Arc<Writes>) -> Self {
        let partitions = copy.topic.partitions().len();
        let cutting = match &copy.format {
            CopyFormat::Text { .. } => Cutting::Text,
            CopyFormat::Csv { quote, escape, .. } => Cutting::Csv(RowEnds::new(*quote, *escape)),
            CopyFormat::Json => Cutting::Never,
            CopyFormat::Binary => Cutting::Binary(BinaryState::default()),
        };
        CopyReceiver {
            copy: Arc::new(copy),
            engine,
            writes,
            cutting,
            pending: BytesMut::new(),
            scanned: 0,
            scanned_rows: 0,
            scanned_newlines: 0,
            lines_before: 0,
            decoding: VecDeque::new(),
            max_decoding: max_decoding(),
            decoded: Encoded::new(partitions),
            ended: false,
            failed: None,
            received: 0,
            started: Instant::now(),
        }
    }

    /// Takes the next piece of data (any cut: rows and characters may span pieces).
    pub async fn push(&mut self, data: &[u8]) {
        if self.ended {
            return;
        }
        if let Cutting::Binary(state) = &mut self.cutting
            && (state.trailer || state.stopped)
        {
            state.after_trailer |= state.trailer && !data.is_empty();
            return;
        }
        self.received += data.len();
        self.pending.extend_from_slice(data);
        if !self.binary_header(false) {
            return;
        }
        // Dispatching may find the data ended (an end marker or a bad row in an older block).
        while !self.ended
            && let Some((cut, lines)) = self.next_cut()
        {
            let block = self.pending.split_to(cut).freeze();
            let first_line = self.lines_before;
            self.lines_before += lines;
            self.dispatch(block, first_line).await;
        }
    }

    /// For binary data, takes the file header off `pending` once it has arrived; false while
    /// it has not (`complete`: no more data will come) or when it is bad (the COPY failed).
    fn binary_header(&mut self, complete: bool) -> bool {
        let Cutting::Binary(state) = &mut self.cutting else {
            return true;
        };
        if state.header {
            return true;
        }
        match binary::header_len(&self.copy.def, &self.pending, complete) {
            Ok(Some(len)) => {
                let _ = self.pending.split_to(len);
                state.header = true;
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.failed = Some(e);
                self.end();
                false
            }
        }
    }

    /// For binary data: where the next block of whole tuples ends and how many it holds —
    /// a full block, the tuples before the trailer, or everything from a malformed tuple on.
    fn next_binary_cut(&mut self) -> Option<(usize, usize)> {
        let Cutting::Binary(state) = &mut self.cutting else {
            return None;
        };
        if state.trailer || state.stopped {
            return None;
        }
        let mut rows = self.scanned_rows;
        let stop = binary::scan_tuples(
            &self.pending,
            self.scanned,
            self.copy.columns.len(),
            |end| {
                rows += 1;
                rows < BLOCK_ROWS && end < BLOCK_BYTES
            },
        );
        let cut = match stop {
            Stop::Full(end) => end,
            Stop::NeedMore(at) => {
                (self.scanned, self.scanned_rows) = (at, rows);
                return None;
            }
            Stop::Trailer(at) => {
                state.trailer = true;
                state.after_trailer = self.pending.len() > at + 2;
                self.pending.truncate(at);
                at
            }
            Stop::Malformed => {
                state.stopped = true;
                rows += 1;
                self.pending.len()
            }
        };
        (self.scanned, self.scanned_rows) = (0, 0);
        (cut > 0).then_some((cut, rows))
    }

    /// Where the next full block of whole rows ends, if one has arrived, and how many lines
    /// (newlines; tuples for binary data) it holds.
    fn next_cut(&mut self) -> Option<(usize, usize)> {
        if matches!(self.cutting, Cutting::Binary(_)) {
            return self.next_binary_cut();
        }
        let from = self.scanned;
        let mut rows = self.scanned_rows;
        // The end of the block (position after its last newline), once full.
        let mut cut = None;
        let mut row_end = |end: usize| {
            rows += 1;
            if rows == BLOCK_ROWS || end >= BLOCK_BYTES {
                cut = Some(end);
            }
            cut.is_none()
        };
        let newlines = match &mut self.cutting {
            Cutting::Never | Cutting::Binary(_) => return None,
            Cutting::Text => {
                let mut newlines = 0;
                for pos in memchr::memchr_iter(b'\n', &self.pending[from..]) {
                    newlines += 1;
                    if !row_end(from + pos + 1) {
                        break;
                    }
                }
                newlines
            }
            Cutting::Csv(ends) => ends.scan(&self.pending, from, row_end),
        };
        let newlines = self.scanned_newlines + newlines;
        match cut {
            // The scan stopped at the block's end.
            Some(end) => {
                (self.scanned, self.scanned_rows, self.scanned_newlines) = (0, 0, 0);
                if let Cutting::Csv(ends) = &mut self.cutting {
                    ends.shift(end);
                }
                Some((end, newlines))
            }
            None => {
                (self.scanned, self.scanned_rows) = (self.pending.len(), rows);
                self.scanned_newlines = newlines;
                None
            }
        }
    }

    /// Starts decoding a block of whole rows (its first line is `first_line + 1`).
    async fn dispatch(&mut self, block: Bytes, first_line: usize) {
        while self.decoding.len() >= self.max_decoding {
            self.collect_oldest().await;
            if self.ended {
                return;
            }
        }
        let (copy, engine) = (self.copy.clone(), self.engine.clone());
        self.decoding
            .push_back(tokio::task::spawn_blocking(move || {
                decode_block(&engine, &copy, &block, first_line)
            }));
    }

    /// Waits for the oldest block being decoded and keeps its frames.
    async fn collect_oldest(&mut self) {
        let Some(handle) = self.decoding.pop_front() else {
            return;
        };
        let result = handle
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("COPY decode task failed: {e}"))));
        match result {
            Ok((encoded, ended)) => {
                self.decoded.extend(encoded);
                if ended {
                    self.end();
                }
            }
            Err(e) => {
                self.failed = Some(e);
                self.end();
            }
        }
    }

    /// Ignores whatever is still pending or decoding.
    fn end(&mut self) {
        self.ended = true;
        self.decoding.clear(); // dropping a handle detaches the task; its result is unused
        self.pending = BytesMut::new();
        (self.scanned, self.scanned_rows, self.scanned_newlines) = (0, 0, 0);
    }

    /// Decodes the rest, then appends every row to the stream (durably) and returns how many.
    pub async fn finish(mut self) -> Result<u64> {
        let received = self.started.elapsed();
        if !self.ended {
            self.binary_header(true);
        }
        if !self.ended && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending).freeze();
            let (copy, engine) = (self.copy.clone(), self.engine.clone());
            let first_line = self.lines_before;
            self.decoding
                .push_back(tokio::task::spawn_blocking(move || {
                    decode_block(&engine, &copy, &rest, first_line)
                }));
        }
        while !self.decoding.is_empty() {
            self.collect_oldest().await;
        }
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Cutting::Binary(state) = &self.cutting
            && state.after_trailer
        {
            return Err(Error::BadCopyFormat(format!(
                "COPY {}: received copy data after EOF marker",
                self.copy.def.name
            )));
        }
        let decoded = self.started.elapsed() - received;
        let (copy, encoded, writes) = (self.copy, self.decoded, self.writes);
        let bytes = self.received;
        let start = Instant::now();
        let rows = writes.append(&self.engine, &copy.topic, encoded).await?;
        tracing::debug!(
            stream = %copy.def.name,
            rows,
            bytes,
            receive_us = received.as_micros() as u64,
            decode_wait_us = decoded.as_micros() as u64,
            append_us = start.elapsed().as_micros() as u64,
            "COPY appended"
        );
        Ok(rows)
    }
}

/// Decodes a block of data (whole lines for text and CSV, whole tuples for binary data, the
/// whole payload for JSON; its first line or tuple is `first_line + 1`) and encodes its rows
/// as frames.
fn decode_block(engine: &Engine, copy: &CopyIn, data: &[u8], first_line: usize) -> Result<Decoded> {
    let (batches, ended) = match &copy.format {
        CopyFormat::Text { delimiter, null } => {
            let options = TextOptions {
                delimiter: *delimiter,
                null,
            };
            text::decode_lines(&copy.def, &copy.columns, options, data, first_line)?
        }
        format @ CopyFormat::Csv { .. } => {
            csv_format::decode_lines(&copy.def, &copy.columns, format, data, first_line)?
        }
        format @ CopyFormat::Json => (decode(&copy.def, &copy.columns, format, data)?, false),
        CopyFormat::Binary => (
            binary::decode_tuples(&copy.def, &copy.columns, data, first_line)?,
            false,
        ),
    };
    let partitions = copy.topic.partitions().len();
    Ok((encode(engine, &copy.def, partitions, &batches)?, ended))
}
