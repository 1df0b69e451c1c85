//! AES-128 in counter mode as the PRF behind all correlated randomness.
//!
//! A [`Prf`] is a keyed keystream that two (or three) parties expand identically: every party
//! holding the key draws the same values as long as they make the same sequence of draws with
//! the same sizes, which the protocols guarantee by running the same code on every party. The
//! keystream is produced in bulk (`apply_keystream` over whole buffers, AES-NI when the CPU has
//! it) and, for large requests, in parallel chunks that seek to their own counter position.
//!
//! Values are read from the keystream little-endian, so parties on machines of different
//! endianness agree.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rayon::prelude::*;

use crate::ring::{P, ZL1_MODULUS};

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Keystream bytes produced per parallel task.
const CHUNK: usize = 1 << 16;

/// A 128-bit PRF key. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct PrfKey(pub(crate) [u8; 16]);

impl std::fmt::Debug for PrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrfKey(<redacted>)")
    }
}

impl PrfKey {
    /// A fresh key from the operating system's randomness.
    pub fn random() -> Result<PrfKey, getrandom::Error> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key)?;
        Ok(PrfKey(key))
    }

    /// The key as two ring elements, to send it over a link.
    pub fn to_words(&self) -> Vec<u64> {
        vec![
            u64::from_le_bytes(self.0[..8].try_into().unwrap()),
            u64::from_le_bytes(self.0[8..].try_into().unwrap()),
        ]
    }

    pub fn from_words(words: &[u64]) -> Option<PrfKey> {
        if words.len() != 2 {
            return None;
        }
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&words[0].to_le_bytes());
        key[8..].copy_from_slice(&words[1].to_le_bytes());
        Some(PrfKey(key))
    }
}

/// A keystream: AES-128-CTR under one key, with a position (bytes consumed so far).
pub struct Prf {
    key: PrfKey,
    pos: u64,
}

impl std::fmt::Debug for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prf").field("pos", &self.pos).finish_non_exhaustive()
    }
}

impl Prf {
    pub fn new(key: PrfKey) -> Prf {
        Prf { key, pos: 0 }
    }

    /// Bytes of keystream consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn cipher_at(&self, pos: u64) -> Aes128Ctr {
        let mut c = Aes128Ctr::new(&self.key.0.into(), &[0u8; 16].into());
        c.seek(pos);
        c
    }

    /// The next `out.len()` keystream bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        out.fill(0);
        let start = self.pos;
        if out.len() <= CHUNK {
            self.cipher_at(start).apply_keystream(out);
        } else {
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
                self.cipher_at(start + (i * CHUNK) as u64).apply_keystream(chunk);
            });
        }
        self.pos += out.len() as u64;
    }

    /// Uniform elements of Z_2^64.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        // SAFETY: u8 has alignment 1 and every byte pattern is a valid u64; the view covers
        // exactly the memory of `out`.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 8) };
        self.fill_bytes(bytes);
        for v in out.iter_mut() {
            *v = u64::from_le(*v);
        }
    }

    pub fn u64s(&mut self, n: usize) -> Vec<u64> {
        let mut v = vec![0u64; n];
        self.fill_u64(&mut v);
        v
    }

    /// Uniform elements of Z_{2^64 - 1} (the rare draw of 2^64 - 1 is replaced by a redraw).
    pub fn fill_zl1(&mut self, out: &mut [u64]) {
        self.fill_u64(out);
        for v in out.iter_mut() {
            while *v == ZL1_MODULUS {
                let mut one = [0u64];
                self.fill_u64(&mut one);
                *v = one[0];
            }
        }
    }

    pub fn zl1s(&mut self, n: usize) -> Vec<u64> {
        let mut v = vec![0u64; n];
        self.fill_zl1(&mut v);
        v
    }

    /// Uniform elements of Z_p (p = 67) by rejection sampling of keystream bytes: a byte
    /// below 201 = 3p gives `byte mod p`, exactly uniform; about 1.27 bytes per element.
    pub fn fill_zp(&mut self, out: &mut [u8]) {
        self.fill_rejecting(out, 3 * P, |b| b % P);
    }

    /// Uniform elements of Z_p^* = {1..p-1} (a byte below 198 = 3(p-1) gives 1 + byte mod 66).
    pub fn fill_zp_nonzero(&mut self, out: &mut [u8]) {
        self.fill_rejecting(out, 3 * (P - 1), |b| 1 + b % (P - 1));
    }

    /// Uniform bits (one per byte, from the byte's low bit).
    pub fn fill_bits(&mut self, out: &mut [u8]) {
        self.fill_bytes(out);
        for b in out.iter_mut() {
            *b &= 1;
        }
    }

    pub fn bits(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill_bits(&mut v);
        v
    }

    /// Fills `out` with `map(b)` for the keystream bytes `b < bound`, in order, skipping the
    /// others. Deterministic in the request size, so every holder of the key gets the same.
    fn fill_rejecting(&mut self, out: &mut [u8], bound: u8, map: impl Fn(u8) -> u8 + Sync) {
        let mut filled = 0;
        let mut buf = Vec::new();
        while filled < out.len() {
            let missing = out.len() - filled;
            // Enough for the expected acceptance rate (> 3/4) plus slack; loop for the rest.
            buf.resize(missing + missing / 3 + 64, 0);
            self.fill_bytes(&mut buf);
            for &b in &buf {
                if b < bound {
                    out[filled] = map(b);
                    filled += 1;
                    if filled == out.len() {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_chunking_is_invisible() {
        let key = PrfKey::random().unwrap();
        let mut a = Prf::new(key.clone());
        let mut b = Prf::new(key.clone());
        let big = a.u64s(3 * CHUNK / 8 + 5);
        let mut small = Vec::new();
        for part in [7usize, CHUNK / 8, 2 * CHUNK / 8 - 2] {
            small.extend(b.u64s(part));
        }
        assert_eq!(big, small);
        assert_eq!(a.position(), b.position());
        let c = Prf::new(PrfKey::random().unwrap()).u64s(4);
        assert_ne!(c, Prf::new(key).u64s(4));
    }

    #[test]
    fn zp_draws_are_in_range_and_roughly_uniform() {
        let mut prf = Prf::new(PrfKey::random().unwrap());
        let mut v = vec![0u8; 67 * 2000];
        prf.fill_zp(&mut v);
        let mut counts = [0usize; 67];
        for &x in &v {
            counts[x as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 1500 && c < 2500), "{counts:?}");
        prf.fill_zp_nonzero(&mut v);
        assert!(v.iter().all(|&x| (1..67).contains(&x)));
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = PrfKey::random().unwrap();
        assert_eq!(format!("{key:?}"), "PrfKey(<redacted>)");
        let words = key.to_words();
        assert_eq!(PrfKey::from_words(&words).unwrap().0, key.0);
    }
}
