//! Frontend messages read exactly by their declared length, before pgwire decodes them.
//!
//! pgwire 0.42 decodes a message's body from the whole read buffer, not from the `length`
//! bytes the message declares: a Query's string runs to the first NUL wherever that is (so
//! the bytes after an embedded NUL, or after a too-short declared length, are read as further
//! messages), a Sync of length 10 leaves 6 bytes to be read as new messages, and a Bind whose
//! parameter length passes the end of the message panics the connection task.
//!
//! [`FrameChecker`] is a sans-IO state machine over the bytes of one connection as they
//! arrive: it frames them by their header (type byte + `i32` length; the start-up packets
//! have no type byte), checks each body field by field — C strings end with their NUL inside
//! the message, counts and lengths fit in what is left, format codes are 0 or 1, nothing is
//! left over — and says how many of the bytes may go on to pgwire. `Checked` (in
//! `connection.rs`) puts it
//! between the socket and pgwire's codec: pgwire only ever sees whole messages the checker
//! accepted, so its decoders read exactly the declared bytes. Bytes stream through as they
//! arrive (nothing is buffered a second time); the one byte held back is the last one of a
//! message that fails its check, so pgwire never holds a complete bad message.
//!
//! A malformed message is a [`Violation`]: the connection gets a FATAL ErrorResponse
//! (SQLSTATE in [`super::errors`]) and is closed, as PostgreSQL does when it cannot trust
//! the framing. Invalid UTF-8 in a string is not a framing error: the message is accepted
//! with a [`Verdict::InvalidUtf8`] the connection loop answers with `22021`, and the session
//! goes on.

use std::collections::VecDeque;

/// PostgreSQL's limit for the start-up packet and for messages that carry no data
/// (`PQ_SMALL_MESSAGE_LIMIT`); pgwire enforces the same for the message types it treats as small.
pub const SMALL_MESSAGE_LIMIT: usize = 10_000;

/// The largest message PostgreSQL (and pgwire) accepts: 1 GB less two bytes
/// (`PQ_LARGE_MESSAGE_LIMIT`). The default and the upper bound of `--max-message-bytes`.
pub const LARGE_MESSAGE_LIMIT: usize = 0x3fff_ffff - 1;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Why a connection's byte stream cannot be read as PostgreSQL frontend messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A start-up packet length below 8 or above [`SMALL_MESSAGE_LIMIT`].
    #[error("invalid length of startup packet: {0}")]
    StartupLength(i64),
    /// A start-up packet with a protocol version other than 3.x.
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.2")]
    UnsupportedProtocol(u16, u16),
    /// A message type byte that is not a frontend message.
    #[error("invalid frontend message type {0} ({1:?})")]
    UnknownType(u8, char),
    /// A declared length below 4, negative, or above the limit of a message without data.
    #[error("invalid message length {len} for message type '{kind}'")]
    Length {
        /// The message type.
        kind: char,
        /// The declared length.
        len: i64,
    },
    /// A declared length above `--max-message-bytes`.
    #[error(
        "message of {len} bytes exceeds the maximum message size of {max} bytes \
         (--max-message-bytes / EDDY_MAX_MESSAGE_BYTES)"
    )]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// The body does not have the structure its type requires.
    #[error("invalid message format for message type '{kind}': {what}")]
    Format {
        /// The message type (`'0'` for a start-up packet).
        kind: char,
        /// What is wrong.
        what: &'static str,
    },
    /// Bytes after a CancelRequest, which ends its connection.
    #[error("unexpected data after a CancelRequest")]
    AfterCancel,
}

/// What the checker says of a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Well formed.
    Ok,
    /// Well formed, but a string holds bytes that are not UTF-8 (the first such sequence).
    InvalidUtf8(Vec<u8>),
}

/// Where the connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Untyped packets: SSLRequest, GSSENCRequest, StartupMessage, CancelRequest.
    Startup,
    /// Typed messages.
    Messages,
    /// After a CancelRequest: nothing more may come.
    Closed,
}

/// The message kinds the checker knows; `Startup` is any untyped start-up packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Query,
    Parse,
    Bind,
    Execute,
    Describe,
    Close,
    Empty,
    CopyFail,
    Opaque,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        Some(match byte {
            b'Q' => Kind::Query,
            b'P' => Kind::Parse,
            b'B' => Kind::Bind,
            b'E' => Kind::Execute,
            b'D' => Kind::Describe,
            b'C' => Kind::Close,
            b'S' | b'H' | b'X' | b'c' => Kind::Empty,
            b'f' => Kind::CopyFail,
            b'd' | b'p' => Kind::Opaque,
            _ => return None,
        })
    }

    /// Messages that may carry user data up to `--max-message-bytes`; the others are limited
    /// to [`SMALL_MESSAGE_LIMIT`] as in PostgreSQL (and pgwire, which refuses them above it).
    fn is_large(self) -> bool {
        matches!(self, Kind::Query | Kind::Parse | Kind::Bind | Kind::Opaque)
    }
}

/// What the next bytes of a body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A string up to and including its NUL; `len` bytes of it seen so far.
    CStr { len: usize },
    /// A big-endian integer of `width` bytes (1, 2 or 4), `have` of them seen.
    Int { width: u8, have: u8, value: u32 },
    /// Bytes whose content does not matter.
    Skip(usize),
    /// The end of the message.
    End,
}

impl Field {
    fn int(width: u8) -> Field {
        Field::Int {
            width,
            have: 0,
            value: 0,
        }
    }
}

/// What a completed field held.
#[derive(Debug, Clone, Copy)]
enum Done {
    Str { empty: bool },
    Int(u32),
    Skipped,
}

/// Incremental UTF-8 validation of a string that arrives in pieces.
#[derive(Debug, Default)]
struct Utf8Check {
    /// The start of a sequence cut by the end of the previous piece (at most 3 bytes).
    pending: Vec<u8>,
    /// The first invalid sequence.
    bad: Option<Vec<u8>>,
}

impl Utf8Check {
    fn feed(&mut self, mut piece: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        while !self.pending.is_empty() {
            let Some((&b, rest)) = piece.split_first() else {
                return;
            };
            piece = rest;
            self.pending.push(b);
            match std::str::from_utf8(&self.pending) {
                Ok(_) => self.pending.clear(),
                Err(e) if e.error_len().is_some() => {
                    self.bad = Some(std::mem::take(&mut self.pending));
                    return;
                }
                Err(_) => {}
            }
        }
        if let Err(e) = std::str::from_utf8(piece) {
            let start = e.valid_up_to();
            match e.error_len() {
                Some(n) => self.bad = Some(piece[start..start + n].to_vec()),
                None => self.pending.extend_from_slice(&piece[start..]),
            }
        }
    }

    /// Called at the string's NUL: a sequence still open there is invalid.
    fn end(&mut self) {
        if self.bad.is_none() && !self.pending.is_empty() {
            self.bad = Some(std::mem::take(&mut self.pending));
        }
        self.pending.clear();
    }
}

/// The body of the message being read.
#[derive(Debug)]
struct Body {
    kind: Kind,
    /// The type byte, for messages (`'0'` for start-up packets).
    type_byte: char,
    /// The declared length.
    len: usize,
    /// Body bytes not yet seen.
    left: usize,
    field: Field,
    /// Position in the message's grammar.
    step: u8,
    /// Items left in a counted list.
    count: u32,
    /// Parameter format codes of a Bind (checked against its parameter count).
    formats: u32,
    /// Check strings for UTF-8 (typed messages only).
    check_utf8: bool,
    utf8: Utf8Check,
    /// The phase after this message.
    next_phase: Phase,
}

#[derive(Debug)]
enum Frame {
    Header { bytes: [u8; 5], have: usize },
    Body(Body),
}

/// Frames and checks the frontend byte stream of one connection (see the module docs).
#[derive(Debug)]
pub struct FrameChecker {
    max_message_bytes: usize,
    phase: Phase,
    frame: Frame,
    verdicts: VecDeque<Verdict>,
}

impl FrameChecker {
    /// A checker for a new connection; messages above `max_message_bytes` are refused.
    pub fn new(max_message_bytes: usize) -> Self {
        FrameChecker {
            max_message_bytes,
            phase: Phase::Startup,
            frame: Frame::Header {
                bytes: [0; 5],
                have: 0,
            },
            verdicts: VecDeque::new(),
        }
    }

    /// The verdict on the oldest accepted message not asked about yet.
    pub fn pop_verdict(&mut self) -> Option<Verdict> {
        self.verdicts.pop_front()
    }

    /// Reads `input`. On a violation, returns it with the number of leading bytes of `input`
    /// that may still be passed on: everything before the byte that showed the violation
    /// (never the last byte of the bad message, so it is never complete downstream).
    pub fn feed(&mut self, input: &[u8]) -> Result<(), (usize, Violation)> {
        let mut at = 0;
        while at < input.len() {
            at += self.step(&input[at..]).map_err(|(n, v)| (at + n, v))?;
        }
        Ok(())
    }

    /// Consumes a prefix of `input` (at least one byte); an error carries the index of the
    /// byte that showed the violation.
    fn step(&mut self, input: &[u8]) -> Result<usize, (usize, Violation)> {
        match &mut self.frame {
            Frame::Header { bytes, have } => {
                if self.phase == Phase::Closed {
                    return Err((0, Violation::AfterCancel));
                }
                let typed = self.phase == Phase::Messages;
                let size = if typed { 5 } else { 4 };
                let n = (size - *have).min(input.len());
                bytes[*have..*have + n].copy_from_slice(&input[..n]);
                if typed && *have == 0 && Kind::of(bytes[0]).is_none() {
                    return Err((0, Violation::UnknownType(bytes[0], bytes[0] as char)));
                }
                *have += n;
                if *have < size {
                    return Ok(n);
                }
                let header = *bytes;
                let body = self.header(&header).map_err(|v| (n - 1, v))?;
                self.frame = Frame::Body(body);
                // A message without a body (Sync, ...) is complete with its header.
                self.settle().map_err(|v| (n - 1, v))?;
                Ok(n)
            }
            Frame::Body(body) => {
                let avail = input.len().min(body.left);
                let (used, done) = match &mut body.field {
                    Field::CStr { len } => match memchr::memchr(0, &input[..avail]) {
                        Some(i) => {
                            if body.check_utf8 {
                                body.utf8.feed(&input[..i]);
                                body.utf8.end();
                            }
                            let empty = *len == 0 && i == 0;
                            (i + 1, Some(Done::Str { empty }))
                        }
                        None => {
                            if body.check_utf8 {
                                body.utf8.feed(&input[..avail]);
                            }
                            *len += avail;
                            (avail, None)
                        }
                    },
                    Field::Int { width, have, value } => {
                        let n = usize::from(*width - *have).min(avail);
                        for &b in &input[..n] {
                            *value = (*value << 8) | u32::from(b);
                        }
                        *have += n as u8;
                        let done = (*have == *width).then_some(Done::Int(*value));
                        (n, done)
                    }
                    Field::Skip(k) => {
                        let n = (*k).min(avail);
                        *k -= n;
                        (n, (*k == 0).then_some(Done::Skipped))
                    }
                    // `settle` never leaves a body at End.
                    Field::End => (0, None),
                };
                body.left -= used;
                let last = used.saturating_sub(1);
                if let Some(done) = done {
                    body.field = next_field(body, done).map_err(|v| (last, v))?;
                } else if body.left == 0 {
                    return Err((last, format(body, "the message ends inside a field")));
                }
                self.settle().map_err(|v| (last, v))?;
                Ok(used.max(1))
            }
        }
    }

    /// Starts the body a complete header announces.
    fn header(&self, header: &[u8; 5]) -> Result<Body, Violation> {
        if self.phase == Phase::Messages {
            let type_byte = header[0];
            let kind =
                Kind::of(type_byte).ok_or(Violation::UnknownType(type_byte, type_byte as char))?;
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let bad_length = Violation::Length {
                kind: type_byte as char,
                len: i64::from(len),
            };
            if len < 4 {
                return Err(bad_length);
            }
            let len = len as usize;
            if len > self.max_message_bytes {
                return Err(Violation::TooLarge {
                    len: len as u64,
                    max: self.max_message_bytes,
                });
            }
            if !kind.is_large() && len > SMALL_MESSAGE_LIMIT {
                return Err(bad_length);
            }
            Ok(Body::new(kind, type_byte as char, len, true))
        } else {
            let len = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            if !(8..=SMALL_MESSAGE_LIMIT as i32).contains(&len) {
                return Err(Violation::StartupLength(i64::from(len)));
            }
            Ok(Body::new(Kind::Startup, '0', len as usize, false))
        }
    }

    /// Completes the current message if its grammar is at its end: it must end exactly
    /// at its declared length.
    fn settle(&mut self) -> Result<(), Violation> {
        let Frame::Body(body) = &mut self.frame else {
            return Ok(());
        };
        while body.field == Field::Skip(0) {
            body.field = next_field(body, Done::Skipped)?;
        }
        if body.field != Field::End {
            if body.left == 0 {
                return Err(format(body, "the message ends inside a field"));
            }
            if let Field::Skip(k) = body.field
                && k > body.left
            {
                return Err(format(body, "a length runs past the end of the message"));
            }
            return Ok(());
        }
        if body.left != 0 {
            return Err(format(
                body,
                "bytes left over after the message's last field",
            ));
        }
        let verdict = match body.utf8.bad.take() {
            Some(bytes) => Verdict::InvalidUtf8(bytes),
            None => Verdict::Ok,
        };
        self.phase = body.next_phase;
        self.verdicts.push_back(verdict);
        self.frame = Frame::Header {
            bytes: [0; 5],
            have: 0,
        };
        Ok(())
    }
}

impl Body {
    fn new(kind: Kind, type_byte: char, len: usize, typed: bool) -> Body {
        let left = len - 4;
        let field = match kind {
            Kind::Startup => Field::int(4),
            Kind::Query | Kind::Parse | Kind::Bind | Kind::Execute | Kind::CopyFail => {
                Field::CStr { len: 0 }
            }
            Kind::Describe | Kind::Close => Field::int(1),
            Kind::Empty => Field::End,
            Kind::Opaque => Field::Skip(left),
        };
        Body {
            kind,
            type_byte,
            len,
            left,
            field,
            step: 0,
            count: 0,
            formats: 0,
            check_utf8: typed,
            utf8: Utf8Check::default(),
            next_phase: if typed {
                Phase::Messages
            } else {
                Phase::Startup
            },
        }
    }
}

fn format(body: &Body, what: &'static str) -> Violation {
    Violation::Format {
        kind: body.type_byte,
        what,
    }
}

/// The message's grammar: the field after `done`.
fn next_field(body: &mut Body, done: Done) -> Result<Field, Violation> {
    let step = body.step;
    body.step += 1;
    let int = match done {
        Done::Int(v) => v,
        _ => 0,
    };
    Ok(match (body.kind, step) {
        (Kind::Query | Kind::CopyFail, _) => Field::End,
        (Kind::Opaque | Kind::Empty, _) => Field::End,
        // Parse: name, query, parameter type count, the types.
        (Kind::Parse, 0) => Field::CStr { len: 0 },
        (Kind::Parse, 1) => Field::int(2),
        (Kind::Parse, 2) => Field::Skip(4 * int as usize),
        (Kind::Parse, _) => Field::End,
        // Execute: portal, row limit.
        (Kind::Execute, 0) => Field::int(4),
        (Kind::Execute, _) => Field::End,
        // Describe, Close: 'S' or 'P', then the name.
        (Kind::Describe | Kind::Close, 0) => {
            if int != u32::from(b'S') && int != u32::from(b'P') {
                return Err(format(body, "the target must be 'S' or 'P'"));
            }
            Field::CStr { len: 0 }
        }
        (Kind::Describe | Kind::Close, _) => Field::End,
        (Kind::Bind, _) => return bind_field(body, step, done),
        (Kind::Startup, _) => return startup_field(body, step, done),
    })
}

/// Bind: portal, statement, parameter format codes, parameters (length + bytes, -1 for
/// NULL), result format codes. Steps: 0 portal done, 1 statement done, 2 format count,
/// 3 a format code, 4 parameter count, 5 a parameter length, 6 a parameter's bytes,
/// 7 result format count, 8 a result format code.
fn bind_field(body: &mut Body, step: u8, done: Done) -> Result<Field, Violation> {
    let int = match done {
        Done::Int(v) => v,
        _ => 0,
    };
    // Where to go once a counted list is exhausted.
    let after_formats = |body: &mut Body| {
        body.step = 4;
        Field::int(2)
    };
    let next_param = |body: &mut Body| {
        if body.count == 0 {
            body.step = 7;
            Field::int(2)
        } else {
            body.count -= 1;
            body.step = 5;
            Field::int(4)
        }
    };
    let next_result_format = |body: &mut Body| {
        if body.count == 0 {
            Field::End
        } else {
            body.count -= 1;
            body.step = 8;
            Field::int(2)
        }
    };
    Ok(match step {
        0 => Field::CStr { len: 0 },
        1 => Field::int(2),
        2 | 3 => {
            if step == 2 {
                body.formats = int;
                body.count = int;
            } else if int > 1 {
                return Err(format(body, "a parameter format code is neither 0 nor 1"));
            }
            if body.count == 0 {
                after_formats(body)
            } else {
                body.count -= 1;
                body.step = 3;
                Field::int(2)
            }
        }
        4 => {
            if body.formats > 1 && body.formats != int {
                return Err(format(
                    body,
                    "the number of parameter formats is neither 0, 1 nor the number of parameters",
                ));
            }
            body.count = int;
            next_param(body)
        }
        5 => {
            let len = int as i32;
            if len == -1 {
                next_param(body)
            } else if len < 0 {
                return Err(format(
                    body,
                    "a parameter length is negative (only -1, NULL, is)",
                ));
            } else if len as usize > body.left {
                return Err(format(
                    body,
                    "a parameter length runs past the end of the message",
                ));
            } else {
                body.step = 6;
                Field::Skip(len as usize)
            }
        }
        6 => next_param(body),
        7 => {
            body.count = int;
            next_result_format(body)
        }
        _ => {
            if int > 1 {
                return Err(format(body, "a result format code is neither 0 nor 1"));
            }
            next_result_format(body)
        }
    })
}

/// Start-up packets: the code, then for a StartupMessage name/value string pairs ending
/// with an empty name. Steps: 0 code, 1 a name, 2 a value.
fn startup_field(body: &mut Body, step: u8, done: Done) -> Result<Field, Violation> {
    Ok(match (step, done) {
        (0, Done::Int(code)) => match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                if body.len != 8 {
                    return Err(Violation::StartupLength(body.len as i64));
                }
                Field::End
            }
            CANCEL_REQUEST => {
                // Process id, then a secret key of 4 (protocol 3.0) to 256 bytes.
                if !(16..=12 + 256).contains(&body.len) {
                    return Err(Violation::StartupLength(body.len as i64));
                }
                body.next_phase = Phase::Closed;
                Field::Skip(body.left)
            }
            code if code >> 16 == 3 => {
                body.next_phase = Phase::Messages;
                Field::CStr { len: 0 }
            }
            code => {
                return Err(Violation::UnsupportedProtocol(
                    (code >> 16) as u16,
                    (code & 0xffff) as u16,
                ));
            }
        },
        (_, Done::Skipped) => Field::End,
        (1, Done::Str { empty: true }) => Field::End,
        (1, Done::Str { empty: false }) => Field::CStr { len: 0 },
        (_, _) => {
            body.step = 1;
            Field::CStr { len: 0 }
        }
    })
}
