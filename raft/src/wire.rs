//! The peers' envelope: what one message between two nodes is, as bytes (sans-IO).
//!
//! A connection carries length-delimited frames (`tokio_util`'s `LengthDelimitedCodec`: a
//! `u32` big-endian length, then that many bytes, at most [`MAX_MESSAGE_BYTES`]). Each frame
//! is one [`Envelope`]:
//!
//! ```text
//! byte  size  field
//!    0     8  request id (u64 LE): a request's, echoed by its reply
//!    8     1  kind (see `Kind`)
//!    9     8  group id (u64 LE): the Raft group the message is for
//!   17     …  body: postcard-encoded (a `Hello`'s node id, an openraft request, a reply)
//! ```
//!
//! Frames are read by their declared length, exactly; a frame shorter than the header, or of
//! an unknown kind, is a protocol error that closes the connection.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// The largest frame a node sends or accepts. A batch of Raft entries is sent in messages
/// below it (the groups' `max_payload_entries` and frame sizes keep them there).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Header bytes before the body.
const HEADER_LEN: usize = 17;

/// The bytes before an envelope's body on the wire: the frame's length prefix and the header
/// ([`Envelope::head`]).
pub const HEAD_LEN: usize = 4 + HEADER_LEN;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// First message of a connection, from the node that dialed: its node id.
    Hello = 1,
    /// openraft's AppendEntries request.
    AppendEntries = 2,
    /// openraft's Vote request.
    Vote = 3,
    /// openraft's InstallSnapshot request (one chunk).
    InstallSnapshot = 4,
    /// A client write for the group's leader: the entry's payload bytes.
    ClientWrite = 5,
    /// Asks the receiver for the last index of its log of the group (a node that starts with no
    /// files for the group asks its peers whether the group ever had a leader).
    Probe = 6,
    /// Asks the receiver for its standing in the group after the leader named in the body
    /// (a node id) was lost: `takeover.rs`.
    Standing = 7,
    /// The answer to the request with the same id; its body is the request kind's reply.
    Reply = 0x80,
    /// The receiver could not handle the request (unknown group, undecodable body): UTF-8
    /// text saying why.
    Failure = 0x81,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::AppendEntries,
            3 => Kind::Vote,
            4 => Kind::InstallSnapshot,
            5 => Kind::ClientWrite,
            6 => Kind::Probe,
            7 => Kind::Standing,
            0x80 => Kind::Reply,
            0x81 => Kind::Failure,
            _ => return None,
        })
    }

    /// Whether a message of this kind expects a reply.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Kind::AppendEntries
                | Kind::Vote
                | Kind::InstallSnapshot
                | Kind::ClientWrite
                | Kind::Probe
                | Kind::Standing
        )
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The request's id (a reply carries its request's).
    pub id: u64,
    /// What the message is.
    pub kind: Kind,
    /// The Raft group it is for.
    pub group: u64,
    /// The encoded body.
    pub body: Bytes,
}

impl Envelope {
    /// The frame's bytes (without the length prefix the codec adds).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.body.len());
        out.put_u64_le(self.id);
        out.put_u8(self.kind as u8);
        out.put_u64_le(self.group);
        out.extend_from_slice(&self.body);
        out.freeze()
    }

    /// What goes on the wire before the body: the frame's length (`u32` big-endian, as the
    /// reader's `LengthDelimitedCodec` expects) and the header. The body follows as it is,
    /// so a large one is never copied to be sent. Refused over [`MAX_MESSAGE_BYTES`].
    pub fn head(&self) -> Result<[u8; HEAD_LEN]> {
        let len = HEADER_LEN + self.body.len();
        if len > MAX_MESSAGE_BYTES {
            return Err(Error::Protocol(format!(
                "a message of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
            )));
        }
        let mut head = [0u8; HEAD_LEN];
        head[0..4].copy_from_slice(&(len as u32).to_be_bytes());
        head[4..12].copy_from_slice(&self.id.to_le_bytes());
        head[12] = self.kind as u8;
        head[13..21].copy_from_slice(&self.group.to_le_bytes());
        Ok(head)
    }

    /// Parses a frame's bytes.
    pub fn decode(mut frame: Bytes) -> Result<Envelope> {
        if frame.len() < HEADER_LEN {
            return Err(Error::Protocol(format!(
                "a message of {} bytes is shorter than its {HEADER_LEN}-byte header",
                frame.len()
            )));
        }
        let header = frame.split_to(HEADER_LEN);
        let id = u64::from_le_bytes(fixed(&header[0..8]));
        let kind = Kind::from_u8(header[8])
            .ok_or_else(|| Error::Protocol(format!("unknown message kind {}", header[8])))?;
        let group = u64::from_le_bytes(fixed(&header[9..17]));
        Ok(Envelope {
            id,
            kind,
            group,
            body: frame,
        })
    }
}

fn fixed(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(bytes);
    out
}

/// Encodes a body, into one allocation of its exact size (a growing buffer would copy and
/// fault in a large body's pages again at every doubling).
pub fn to_body<T: serde::Serialize>(value: &T) -> Result<Bytes> {
    let failed = |e: postcard::Error| Error::Protocol(format!("encoding a message body: {e}"));
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(failed)?;
    postcard::to_extend(value, Vec::with_capacity(size))
        .map(Bytes::from)
        .map_err(failed)
}

/// Decodes a body, naming what it should have been when it is not.
pub fn from_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(body).map_err(|e| Error::Protocol(format!("decoding {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips() {
        let envelope = Envelope {
            id: u64::MAX - 3,
            kind: Kind::AppendEntries,
            group: 42,
            body: Bytes::from_static(b"frame bytes"),
        };
        assert_eq!(Envelope::decode(envelope.encode()).unwrap(), envelope);
    }

    #[test]
    fn a_head_and_its_body_are_the_frame_the_codec_reads() {
        use tokio_util::codec::Decoder;
        let envelope = Envelope {
            id: 7,
            kind: Kind::ClientWrite,
            group: 65537,
            body: to_body(&(1u64, "body", vec![3u8; 300])).unwrap(),
        };
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&envelope.head().unwrap());
        wire.extend_from_slice(&envelope.body);
        let mut codec = tokio_util::codec::LengthDelimitedCodec::builder()
            .length_field_type::<u32>()
            .new_codec();
        let frame = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(Envelope::decode(frame.freeze()).unwrap(), envelope);
        assert!(wire.is_empty());
        let (n, text, bytes): (u64, String, Vec<u8>) =
            from_body(&envelope.body, "a test body").unwrap();
        assert_eq!((n, text.as_str(), bytes.len()), (1, "body", 300));
    }

    #[test]
    fn short_frames_and_unknown_kinds_are_protocol_errors() {
        let short = Envelope::decode(Bytes::from_static(&[0; 16])).unwrap_err();
        assert!(short.to_string().contains("shorter"), "{short}");
        let mut bytes = Envelope {
            id: 1,
            kind: Kind::Vote,
            group: 0,
            body: Bytes::new(),
        }
        .encode()
        .to_vec();
        bytes[8] = 9;
        let unknown = Envelope::decode(Bytes::from(bytes)).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown message kind 9"),
            "{unknown}"
        );
    }

    #[test]
    fn a_damaged_body_is_an_error_naming_what_was_expected() {
        let err = from_body::<(u64, String)>(&[0xff, 0xff], "a vote request").unwrap_err();
        assert!(err.to_string().contains("a vote request"), "{err}");
    }
}
