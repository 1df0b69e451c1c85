//! The wire format of networked sessions.
//!
//! Public so that tools and tests can speak it; all integers are little-endian.
//!
//! **Set-up.** The connecting party (the higher id) opens a TCP connection and sends a
//! [`Hello`] of [`HELLO_LEN`] bytes in the clear: `"CFLOWNET"`, version, `from`, `to`, the number
//! of parties and the security mode. In TLS mode the TLS 1.3 handshake follows; the accepting
//! party then sends [`ACK`] (inside TLS in TLS mode), and the link is up. The hello is only a
//! claim: in TLS mode the handshake checks it against the pinned certificate of `from`.
//!
//! **Messages.** Each `send` becomes one frame: a [`FrameHeader`] of [`FRAME_HEADER_LEN`] bytes
//! (magic `"CFN1"`, kind, sequence number from 0, length in elements) followed by the elements as
//! little-endian `u64`, written in chunks of [`CHUNK_BYTES`]. In TLS mode the same bytes are the
//! TLS application data.

/// First bytes of a [`Hello`].
pub const HELLO_MAGIC: [u8; 8] = *b"CFLOWNET";
/// Version of this wire format; both ends must agree.
pub const VERSION: u32 = 1;
/// Length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 28;
/// The accepting party's answer once it has accepted a link.
pub const ACK: [u8; 8] = *b"CFLOWACK";
/// Magic number opening every frame (`"CFN1"`).
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"CFN1");
/// Frame kind of a message of ring elements.
pub const FRAME_DATA: u32 = 1;
/// Frame kind of a party's last word when it gives up on a session: one element naming the
/// party it blames ([`encode_blame`]), sent to every other peer before it closes the links, so
/// that a party waiting on a peer that left because a third party stalled names the third party.
/// A claim by an authenticated peer, no more.
pub const FRAME_ABORT: u32 = 2;

/// The payload of a [`FRAME_ABORT`]: the blamed party in the low 32 bits; the high 32 bits are 0
/// for a disconnection, or 1 + the seconds it stayed silent for a timeout.
pub fn encode_blame(blamed: usize, timeout_seconds: Option<u64>) -> u64 {
    (blamed as u64 & 0xFFFF_FFFF) | (timeout_seconds.map_or(0, |s| s.min(0xFFFF_FFFE) + 1) << 32)
}

/// The blamed party and, for a timeout, its seconds.
pub fn decode_blame(v: u64) -> (usize, Option<u64>) {
    let high = v >> 32;
    ((v & 0xFFFF_FFFF) as usize, (high > 0).then(|| high - 1))
}
/// Length of an encoded [`FrameHeader`].
pub const FRAME_HEADER_LEN: usize = 24;
/// Payloads are written and read in pieces of this many bytes, so memory for staging and
/// encryption stays bounded whatever the size of a message.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Default bound on the elements of one message (8 GiB); a longer frame is a protocol error.
pub const DEFAULT_MAX_MESSAGE_ELEMENTS: usize = 1 << 30;

/// Security mode byte in a [`Hello`].
pub const MODE_INSECURE_PLAINTEXT: u32 = 0;
/// Security mode byte in a [`Hello`].
pub const MODE_TLS13_PINNED: u32 = 1;

/// The clear-text opening of a link, sent by the connecting party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub from: u32,
    pub to: u32,
    pub parties: u32,
    /// [`MODE_TLS13_PINNED`] or [`MODE_INSECURE_PLAINTEXT`].
    pub mode: u32,
}

impl Hello {
    pub fn new(from: usize, to: usize, parties: usize, mode: u32) -> Hello {
        Hello { version: VERSION, from: from as u32, to: to as u32, parties: parties as u32, mode }
    }

    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(&HELLO_MAGIC);
        for (i, v) in [self.version, self.from, self.to, self.parties, self.mode].into_iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// `None` when the bytes do not start with [`HELLO_MAGIC`] (not one of ours).
    pub fn decode(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        if b[..8] != HELLO_MAGIC {
            return None;
        }
        let w = |i: usize| u32::from_le_bytes(b[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        Some(Hello { version: w(0), from: w(1), to: w(2), parties: w(3), mode: w(4) })
    }
}

/// The header of one message frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u32,
    pub seq: u64,
    /// Payload length in elements (8 bytes each).
    pub len: u64,
}

impl FrameHeader {
    pub fn data(seq: u64, len: usize) -> FrameHeader {
        FrameHeader { kind: FRAME_DATA, seq, len: len as u64 }
    }

    pub fn abort(seq: u64) -> FrameHeader {
        FrameHeader { kind: FRAME_ABORT, seq, len: 1 }
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.kind.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Checks the magic number only; the reader checks kind, sequence and length.
    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, String> {
        let magic = u32::from_le_bytes(b[..4].try_into().unwrap());
        if magic != FRAME_MAGIC {
            return Err(format!("bad frame header (magic {magic:#010x}, expected {FRAME_MAGIC:#010x})"));
        }
        Ok(FrameHeader {
            kind: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            seq: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            len: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_header_round_trip() {
        let h = Hello::new(2, 0, 3, MODE_TLS13_PINNED);
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        assert_eq!(Hello::decode(&[0; HELLO_LEN]), None);
        let f = FrameHeader::data(7, 123_456);
        assert_eq!(FrameHeader::decode(&f.encode()), Ok(f));
        let mut bad = f.encode();
        bad[0] ^= 1;
        assert!(FrameHeader::decode(&bad).is_err());
    }
}
