//! The Aramis envelope: what travels with the protocol's messages, and what is signed.
//!
//! A party signs once per **flight**: all the messages it sends between two receives (to any
//! number of peers) go out together, when it next waits for a message (or passes an output
//! gate, or the flight reaches 1 MiB), under one signature. For each peer the flight has
//! messages for, the link carries an envelope frame and those messages' payloads exactly as the
//! protocol produced them (see the framing below). All integers little-endian; `n` is the
//! number of parties.
//!
//! | word | contents |
//! |---|---|
//! | 0 | magic `"AR"` (u16), version (u8), kind (u8), sender (u16), receiver (u16) |
//! | 1 | counter of the first message: its index on the link sender -> receiver, from 0 |
//! | 2 | `m`, the number of messages for this receiver (u32), receiver mask of the flight (u32) |
//! | 3-4 | session id (16 bytes) |
//! | then `ceil(m / 2)` | payload lengths in words (u32 each) |
//! | then `4` per other receiver | the part digests of the flight's other receivers, by id |
//! | last 8 | Ed25519 signature (64 bytes) over the [`statement`] |
//!
//! A single message to a single peer costs a 14-word (112-byte) envelope.
//!
//! **Framing.** When a peer's messages in a flight total at most [`INLINE_WORDS`], they travel
//! in the envelope's frame, after the signature (copied: a frame of its own costs the receiver a
//! wake-up, more than copying a few kilobytes); larger ones follow the envelope, a frame each.
//! The receiver tells the two apart by the frame's length; the signature covers the contents
//! either way, not the framing.
//!
//! **What is signed.** The *part digest* of receiver `k` is BLAKE3 over a domain tag, `k`, the
//! first counter, `m` and, for each message, its length and the BLAKE3 digest of its bytes. The
//! statement is a domain tag, sender, kind, `n`, the session id, the receiver mask and the part
//! digests of all receivers in id order. A receiver recomputes its own part digest from what it
//! received and takes the others' from the envelope, so it checks its messages, their order,
//! counters, lengths, the session and the sender with one verification, without seeing the other
//! receivers' payloads.

use ed25519_dalek::Signature;

use crate::attest::SessionId;

pub const MAGIC: u16 = u16::from_le_bytes(*b"AR");
pub const VERSION: u8 = 2;
const STATEMENT_DOMAIN: &[u8] = b"cryptflow-aramis/flight/v2\0";
const PART_DOMAIN: &[u8] = b"cryptflow-aramis/part/v2\0";
/// Words of an envelope before the lengths.
pub const FIXED_WORDS: usize = 5;
/// A peer's messages of a flight up to this many words in all travel in the envelope's frame.
pub const INLINE_WORDS: usize = 4096;
/// Most messages one flight carries (a sender flushes its flight when it holds this many): an
/// envelope announcing more is refused before anything is allocated for them, since the count
/// comes from the peer before its signature can be checked.
pub const MAX_FLIGHT_MESSAGES: usize = 4096;

/// What a flight carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Messages of the protocol (the payloads are the protocol's).
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

/// A decoded envelope (one receiver's view of a flight).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub from: u16,
    pub to: u16,
    /// Counter of the first message on the link.
    pub first: u64,
    /// Lengths of this receiver's messages, in words.
    pub lens: Vec<u64>,
    /// Bit `k` set if the flight has messages for party `k`.
    pub mask: u32,
    pub session: SessionId,
    /// Part digests of the other receivers (`mask` without `to`), by id.
    pub others: Vec<[u8; 32]>,
    pub signature: [u8; 64],
}

fn word0(kind: Kind, from: u16, to: u16) -> u64 {
    (MAGIC as u64) | (VERSION as u64) << 16 | (kind as u64) << 24 | (from as u64) << 32 | (to as u64) << 48
}

impl Envelope {
    pub fn encode(&self) -> Vec<u64> {
        let m = self.lens.len();
        let mut w = Vec::with_capacity(FIXED_WORDS + m.div_ceil(2) + 4 * self.others.len() + 8);
        w.push(word0(self.kind, self.from, self.to));
        w.push(self.first);
        w.push(m as u64 | (self.mask as u64) << 32);
        w.extend(words_of(&self.session.0));
        for pair in self.lens.chunks(2) {
            w.push(pair[0] | pair.get(1).map_or(0, |&b| b << 32));
        }
        for d in &self.others {
            w.extend(words_of(d));
        }
        w.extend(words_of(&self.signature));
        w
    }

    /// Decodes an envelope of a session of `n` parties.
    pub fn decode(w: &[u64], n: usize) -> Result<Envelope, String> {
        match Envelope::decode_frame(w, n)? {
            (env, None) => Ok(env),
            (env, Some([])) => Ok(env),
            (_, Some(_)) => Err(format!("a {}-word frame where an envelope was expected", w.len())),
        }
    }

    /// Decodes a frame that starts with an envelope of a session of `n` parties: the envelope,
    /// and the words of its messages if they came in the same frame (see the module's framing).
    pub fn decode_frame(w: &[u64], n: usize) -> Result<(Envelope, Option<&[u64]>), String> {
        if w.len() < FIXED_WORDS + 8 {
            return Err(format!("a {}-word frame where an envelope was expected", w.len()));
        }
        let w0 = w[0];
        if (w0 & 0xffff) as u16 != MAGIC || ((w0 >> 16) & 0xff) as u8 != VERSION {
            return Err(format!("a frame that is not an Aramis envelope (first word {w0:#018x})"));
        }
        let kind = Kind::from_u8(((w0 >> 24) & 0xff) as u8).ok_or_else(|| format!("unknown flight kind {}", (w0 >> 24) & 0xff))?;
        let (from, to) = ((w0 >> 32) as u16, (w0 >> 48) as u16);
        let m = (w[2] & 0xffff_ffff) as usize;
        let mask = (w[2] >> 32) as u32;
        if n > 32 || (to as usize) >= n || (from as usize) >= n || from == to {
            return Err(format!("an envelope from party {from} to party {to} in a session of {n}"));
        }
        if mask >> to & 1 == 0 || mask >> n != 0 || mask >> from & 1 != 0 || m == 0 {
            return Err(format!("inconsistent envelope (receiver {to}, mask {mask:#b}, {m} messages)"));
        }
        if m > MAX_FLIGHT_MESSAGES {
            return Err(format!("an envelope announcing {m} messages (a flight carries at most {MAX_FLIGHT_MESSAGES})"));
        }
        let others = mask.count_ones() as usize - 1;
        let expected = FIXED_WORDS + m.div_ceil(2) + 4 * others + 8;
        if w.len() < expected {
            return Err(format!("an envelope for {m} messages and {others} other receivers is {expected} words, got {}", w.len()));
        }
        let mut at = FIXED_WORDS;
        let mut lens = Vec::with_capacity(m);
        for i in 0..m {
            let word = w[at + i / 2];
            lens.push(if i % 2 == 0 { word & 0xffff_ffff } else { word >> 32 });
        }
        at += m.div_ceil(2);
        let others = (0..others).map(|k| bytes32(&w[at + 4 * k..at + 4 * k + 4])).collect();
        at += 4 * (mask.count_ones() as usize - 1);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes_of(&w[at..at + 8]));
        let mut session = [0u8; 16];
        session.copy_from_slice(&bytes_of(&w[3..5]));
        let total = lens.iter().try_fold(0usize, |t, &l| t.checked_add(l as usize));
        let inline = match (w.len() - expected, total) {
            (0, Some(t)) if t > 0 => None,
            (extra, Some(t)) if extra == t => Some(&w[expected..]),
            (extra, _) => {
                return Err(format!(
                    "an envelope for {m} messages and {} other receivers is {expected} words, followed by its messages or nothing; got {extra} more words",
                    mask.count_ones() - 1
                ))
            }
        };
        Ok((Envelope { kind, from, to, first: w[1], lens, mask, session: SessionId(session), others, signature }, inline))
    }

    pub fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }

    /// The statement this envelope's signature must cover, given this receiver's part digest.
    pub fn statement(&self, n: usize, own_part: &[u8; 32]) -> Vec<u8> {
        let mut parts = Vec::with_capacity(self.mask.count_ones() as usize);
        let mut others = self.others.iter();
        for k in 0..n {
            if self.mask >> k & 1 == 1 {
                parts.push(if k == self.to as usize { *own_part } else { *others.next().expect("decoded envelope") });
            }
        }
        statement(self.from, self.kind, n, &self.session, self.mask, &parts)
    }
}

fn words_of(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()))
}

fn bytes_of(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn bytes32(words: &[u64]) -> [u8; 32] {
    bytes_of(words).try_into().unwrap()
}

/// The part digest of receiver `to`: its messages starting at link counter `first`, given
/// as (length in words, BLAKE3 digest of the payload).
pub fn part_digest(to: usize, first: u64, messages: &[(u64, [u8; 32])]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(PART_DOMAIN);
    h.update(&(to as u16).to_le_bytes());
    h.update(&first.to_le_bytes());
    h.update(&(messages.len() as u64).to_le_bytes());
    for (len, digest) in messages {
        h.update(&len.to_le_bytes());
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

/// The signed statement of a flight: `parts` are the part digests of the receivers in `mask`,
/// in id order.
pub fn statement(from: u16, kind: Kind, n: usize, session: &SessionId, mask: u32, parts: &[[u8; 32]]) -> Vec<u8> {
    let mut s = Vec::with_capacity(STATEMENT_DOMAIN.len() + 24 + 16 + 32 * parts.len());
    s.extend_from_slice(STATEMENT_DOMAIN);
    s.extend_from_slice(&from.to_le_bytes());
    s.push(kind as u8);
    s.extend_from_slice(&(n as u16).to_le_bytes());
    s.extend_from_slice(&session.0);
    s.extend_from_slice(&mask.to_le_bytes());
    for p in parts {
        s.extend_from_slice(p);
    }
    s
}

/// BLAKE3 of the payload's little-endian bytes, without copying it on little-endian machines.
/// Payload size from which hashing is split across the rayon pool.
const PARALLEL_HASH_BYTES: usize = 1 << 18;

pub fn payload_digest(payload: &[u64]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if cfg!(target_endian = "little") {
        let bytes: &[u8] = bytemuck::cast_slice(payload);
        // Large payloads (convolution and comparison traffic of ImageNet networks) are hashed
        // on all cores: the receiver usually hashes while its peers wait for its next message.
        if bytes.len() >= PARALLEL_HASH_BYTES {
            h.update_rayon(bytes);
        } else {
            h.update(bytes);
        }
    } else {
        for chunk in payload.chunks(1024) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|w| w.to_le_bytes()).collect();
            h.update(&bytes);
        }
    }
    *h.finalize().as_bytes()
}

/// The statement an envelope and its payloads (as received) must carry a signature on.
pub fn statement_for(env: &Envelope, payloads: &[Vec<u64>], n: usize) -> Vec<u8> {
    let messages: Vec<(u64, [u8; 32])> = payloads.iter().map(|p| (p.len() as u64, payload_digest(p))).collect();
    env.statement(n, &part_digest(env.to as usize, env.first, &messages))
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

    fn sample(m: usize, mask: u32, to: u16) -> Envelope {
        Envelope {
            kind: Kind::Data,
            from: 2,
            to,
            first: 77,
            lens: (0..m as u64).map(|i| 1000 + i).collect(),
            mask,
            session: SessionId([5; 16]),
            others: (1..mask.count_ones()).map(|k| [k as u8; 32]).collect(),
            signature: std::array::from_fn(|i| i as u8),
        }
    }

    #[test]
    fn envelopes_round_trip() {
        for (m, mask, to) in [(1, 0b010, 1), (2, 0b011, 0), (3, 0b011, 1), (5, 0b001, 0)] {
            let e = sample(m, mask, to);
            let w = e.encode();
            assert_eq!(Envelope::decode(&w, 3), Ok(e.clone()));
            if m == 1 && mask.count_ones() == 1 {
                assert_eq!(w.len(), 14, "112 bytes for one message to one peer");
            }
        }
        let mut bad = sample(1, 0b010, 1).encode();
        bad[0] ^= 1;
        assert!(Envelope::decode(&bad, 3).is_err());
        let good = sample(2, 0b011, 0).encode();
        assert!(Envelope::decode(&good[..good.len() - 1], 3).is_err());
        // The receiver must be in the mask, the sender must not, and the mask must fit n.
        assert!(Envelope::decode(&sample(1, 0b010, 0).encode(), 3).is_err());
        assert!(Envelope::decode(&sample(1, 0b100, 2).encode(), 3).is_err());
        assert!(Envelope::decode(&sample(1, 0b1000, 3).encode(), 3).is_err());
        // The message count is capped before anything is allocated for it, whatever the frame.
        let most = sample(MAX_FLIGHT_MESSAGES, 0b010, 1);
        assert_eq!(Envelope::decode(&most.encode(), 3), Ok(most));
        let mut huge = sample(1, 0b010, 1).encode();
        huge[2] = (4 << 20) | (0b010u64 << 32);
        huge.resize(FIXED_WORDS + (2 << 20) + 8, 0);
        let e = Envelope::decode_frame(&huge, 3).unwrap_err();
        assert!(e.contains("4194304 messages"), "{e}");
        huge[2] = u32::MAX as u64 | (0b010u64 << 32);
        assert!(Envelope::decode_frame(&huge, 3).is_err());
    }

    #[test]
    fn messages_may_travel_in_the_envelope_frame() {
        let e = sample(2, 0b011, 0);
        let alone = e.encode();
        assert_eq!(Envelope::decode_frame(&alone, 3), Ok((e.clone(), None)));
        let mut with_messages = alone.clone();
        with_messages.extend(0..2001u64);
        assert_eq!(Envelope::decode_frame(&with_messages, 3), Ok((e.clone(), Some(&with_messages[alone.len()..]))));
        // Anything else after the envelope is malformed; `decode` wants the envelope alone.
        assert!(Envelope::decode_frame(&with_messages[..with_messages.len() - 1], 3).is_err());
        assert!(Envelope::decode(&with_messages, 3).is_err());
        // Empty messages always travel inline: the bare envelope then carries them.
        let mut empty = e.clone();
        empty.lens = vec![0, 0];
        let w = empty.encode();
        assert_eq!(Envelope::decode_frame(&w, 3), Ok((empty, Some(&w[w.len()..]))));
    }

    #[test]
    fn statements_bind_every_field() {
        let e = sample(2, 0b011, 0);
        let payloads = vec![vec![1u64; 1000], vec![2u64; 1001]];
        let s = statement_for(&e, &payloads, 3);
        let mut changed_payload = payloads.clone();
        changed_payload[1][3] ^= 1 << 40;
        let mut swapped = payloads.clone();
        swapped.swap(0, 1);
        assert_ne!(statement_for(&e, &changed_payload, 3), s);
        assert_ne!(statement_for(&e, &swapped, 3), s);
        assert_ne!(statement_for(&e, &payloads[..1], 3), s);
        for changed in [
            Envelope { kind: Kind::Abort, ..e.clone() },
            Envelope { from: 1, ..e.clone() },
            Envelope { first: 78, ..e.clone() },
            Envelope { session: SessionId([6; 16]), ..e.clone() },
            Envelope { others: vec![[9; 32]], ..e.clone() },
        ] {
            assert_ne!(statement_for(&changed, &payloads, 3), s, "{changed:?}");
        }
        // The receiver is bound: the same messages as party 1's part give another statement.
        let as_other = Envelope { to: 1, ..e.clone() };
        assert_ne!(statement_for(&as_other, &payloads, 3), s);
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
