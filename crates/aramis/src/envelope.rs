//! The Aramis envelope: what travels with every protocol message, and what is signed.
//!
//! Every message of the protocol goes out as two frames on the link: an envelope of
//! [`ENVELOPE_WORDS`] words, then the payload exactly as the protocol produced it (never copied
//! or re-encoded). All integers little-endian:
//!
//! | word | contents |
//! |---|---|
//! | 0 | magic `"AR"` (u16), version (u8), kind (u8), sender (u16), receiver (u16) |
//! | 1 | counter: index of this message on the link sender -> receiver, from 0 |
//! | 2 | payload length in words |
//! | 3-4 | session id (16 bytes) |
//! | 5-12 | Ed25519 signature (64 bytes) over the [statement](Envelope::statement) |
//!
//! The statement is `"cryptflow-aramis/msg/v1\0"`, words 0-2, the session id, and the BLAKE3
//! digest of the payload bytes. The digest is not sent: the receiver recomputes it from what
//! it received, so any change to the payload, header or session fails the signature check.

use ed25519_dalek::Signature;

use crate::attest::SessionId;

pub const ENVELOPE_WORDS: usize = 13;
pub const MAGIC: u16 = u16::from_le_bytes(*b"AR");
pub const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"cryptflow-aramis/msg/v1\0";
/// Length of a statement.
pub const STATEMENT_LEN: usize = DOMAIN.len() + 24 + 16 + 32;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A message of the protocol (the payload is the protocol's).
    Data = 1,
    /// The output gate: "everything I received from you so far verified" (count and
    /// transcript digest in the payload).
    Confirm = 2,
    /// An abort notice: the sender detected a failure and stops (reason in the payload).
    Abort = 3,
}

impl Kind {
    fn from_u8(k: u8) -> Option<Kind> {
        match k {
            1 => Some(Kind::Data),
            2 => Some(Kind::Confirm),
            3 => Some(Kind::Abort),
            _ => None,
        }
    }
}

/// A decoded envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub from: u16,
    pub to: u16,
    pub counter: u64,
    pub len: u64,
    pub session: SessionId,
    pub signature: [u8; 64],
}

impl Envelope {
    fn word0(&self) -> u64 {
        (MAGIC as u64) | (VERSION as u64) << 16 | (self.kind as u64) << 24 | (self.from as u64) << 32 | (self.to as u64) << 48
    }

    /// The bytes signed for this envelope and a payload with BLAKE3 digest `digest`.
    pub fn statement(&self, digest: &[u8; 32]) -> [u8; STATEMENT_LEN] {
        let mut s = [0u8; STATEMENT_LEN];
        let mut at = 0;
        for part in [DOMAIN, &self.word0().to_le_bytes(), &self.counter.to_le_bytes(), &self.len.to_le_bytes(), &self.session.0, digest] {
            s[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        debug_assert_eq!(at, STATEMENT_LEN);
        s
    }

    pub fn encode(&self) -> Vec<u64> {
        let mut w = Vec::with_capacity(ENVELOPE_WORDS);
        w.push(self.word0());
        w.push(self.counter);
        w.push(self.len);
        w.extend(self.session.0.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())));
        w.extend(self.signature.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())));
        w
    }

    pub fn decode(w: &[u64]) -> Result<Envelope, String> {
        if w.len() != ENVELOPE_WORDS {
            return Err(format!("an envelope is {ENVELOPE_WORDS} words, got {}", w.len()));
        }
        let w0 = w[0];
        if (w0 & 0xffff) as u16 != MAGIC || ((w0 >> 16) & 0xff) as u8 != VERSION {
            return Err(format!("not an Aramis envelope (first word {w0:#018x})"));
        }
        let kind = Kind::from_u8(((w0 >> 24) & 0xff) as u8).ok_or_else(|| format!("unknown message kind {}", (w0 >> 24) & 0xff))?;
        let mut session = [0u8; 16];
        session[..8].copy_from_slice(&w[3].to_le_bytes());
        session[8..].copy_from_slice(&w[4].to_le_bytes());
        let mut signature = [0u8; 64];
        for (i, word) in w[5..13].iter().enumerate() {
            signature[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
        }
        Ok(Envelope {
            kind,
            from: (w0 >> 32) as u16,
            to: (w0 >> 48) as u16,
            counter: w[1],
            len: w[2],
            session: SessionId(session),
            signature,
        })
    }

    pub fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }
}

/// BLAKE3 of the payload's little-endian bytes, without copying it on little-endian machines.
pub fn payload_digest(payload: &[u64]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if cfg!(target_endian = "little") {
        h.update(bytemuck::cast_slice(payload));
    } else {
        for chunk in payload.chunks(1024) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|w| w.to_le_bytes()).collect();
            h.update(&bytes);
        }
    }
    *h.finalize().as_bytes()
}

/// Packs text into words (length first) for abort notices.
pub fn text_to_words(text: &str) -> Vec<u64> {
    let b = text.as_bytes();
    let mut w = vec![b.len() as u64];
    w.extend(b.chunks(8).map(|c| {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(a)
    }));
    w
}

pub fn words_to_text(w: &[u64]) -> Option<String> {
    let (&len, rest) = w.split_first()?;
    let bytes: Vec<u8> = rest.iter().flat_map(|x| x.to_le_bytes()).collect();
    let text = bytes.get(..usize::try_from(len).ok()?)?;
    Some(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_statements_bind_every_field() {
        let e = Envelope {
            kind: Kind::Data,
            from: 2,
            to: 1,
            counter: 77,
            len: 12345,
            session: SessionId([5; 16]),
            signature: std::array::from_fn(|i| i as u8),
        };
        assert_eq!(Envelope::decode(&e.encode()), Ok(e));
        let d = [9u8; 32];
        let s = e.statement(&d);
        for changed in [
            Envelope { kind: Kind::Abort, ..e },
            Envelope { from: 0, ..e },
            Envelope { to: 0, ..e },
            Envelope { counter: 78, ..e },
            Envelope { len: 1, ..e },
            Envelope { session: SessionId([6; 16]), ..e },
        ] {
            assert_ne!(changed.statement(&d), s, "{changed:?}");
        }
        assert_ne!(e.statement(&[8; 32]), s);
        let mut bad = e.encode();
        bad[0] ^= 1;
        assert!(Envelope::decode(&bad).is_err());
        assert!(Envelope::decode(&bad[..5]).is_err());
    }

    #[test]
    fn text_packs_into_words() {
        for t in ["", "a", "party 0 failed the signature check", "ünïcode"] {
            assert_eq!(words_to_text(&text_to_words(t)).as_deref(), Some(t));
        }
        assert_eq!(words_to_text(&[100, 0]), None);
    }

    #[test]
    fn digests_cover_every_bit() {
        let mut p = vec![1u64, 2, 3];
        let d = payload_digest(&p);
        p[2] ^= 1 << 63;
        assert_ne!(payload_digest(&p), d);
    }
}
