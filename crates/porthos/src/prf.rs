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

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use rayon::prelude::*;

use crate::ring::{P, ZL1_MODULUS};

/// Keystream bytes produced per parallel task (a multiple of the block size).
const CHUNK: usize = 1 << 16;
/// Blocks encrypted per call into a stack buffer.
const BATCH: usize = 64;

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

/// A keystream: AES-128-CTR under one key, with a position (blocks consumed so far). Block
/// `i` of the stream is `AES_k(i)` (the counter as a 128-bit little-endian integer); every
/// request consumes whole blocks.
pub struct Prf {
    cipher: Aes128,
    block: u128,
}

impl std::fmt::Debug for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prf").field("block", &self.block).finish_non_exhaustive()
    }
}

impl Prf {
    pub fn new(key: PrfKey) -> Prf {
        Prf { cipher: Aes128::new(&key.0.into()), block: 0 }
    }

    /// Bytes of keystream consumed so far.
    pub fn position(&self) -> u64 {
        (self.block * 16) as u64
    }

    /// Writes the keystream from block `first` on into `out` (whole blocks, the last one
    /// truncated to what `out` holds).
    fn keystream(cipher: &Aes128, first: u128, out: &mut [u8]) {
        let mut buf = [Block::default(); BATCH];
        for (b, part) in out.chunks_mut(BATCH * 16).enumerate() {
            let n = part.len().div_ceil(16);
            for (k, block) in buf[..n].iter_mut().enumerate() {
                *block = (first + (b * BATCH + k) as u128).to_le_bytes().into();
            }
            // encrypt_blocks pipelines AES-NI rounds over the whole batch.
            cipher.encrypt_blocks(&mut buf[..n]);
            for (dst, src) in part.chunks_mut(16).zip(&buf[..n]) {
                dst.copy_from_slice(&src[..dst.len()]);
            }
        }
    }

    /// The next `out.len()` keystream bytes (rounded up to whole blocks consumed).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        let start = self.block;
        if out.len() <= CHUNK {
            Self::keystream(&self.cipher, start, out);
        } else {
            let cipher = &self.cipher;
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
                Self::keystream(cipher, start + (i * CHUNK / 16) as u128, chunk);
            });
        }
        self.block += out.len().div_ceil(16) as u128;
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
    /// The keystream is generated in bulk and compacted in parallel chunks.
    fn fill_rejecting(&mut self, out: &mut [u8], bound: u8, map: impl Fn(u8) -> u8 + Sync) {
        // Lookup table: the mapped value, or 0xFF for a rejected byte.
        let mut table = [0xFFu8; 256];
        for b in 0..bound {
            table[b as usize] = map(b);
        }
        let mut filled = 0;
        let mut buf = Vec::new();
        while filled < out.len() {
            let missing = out.len() - filled;
            // Enough for the expected acceptance rate (> 3/4) plus slack; loop for the rest.
            buf.resize(missing + missing / 3 + 64, 0);
            self.fill_bytes(&mut buf);
            let parts: Vec<(Vec<u8>, usize)> = buf
                .par_chunks(CHUNK)
                .map(|chunk| {
                    let mut acc = vec![0u8; chunk.len()];
                    let mut k = 0;
                    for &b in chunk {
                        let v = table[b as usize];
                        acc[k] = v;
                        k += (v != 0xFF) as usize;
                    }
                    (acc, k)
                })
                .collect();
            for (acc, k) in parts {
                let take = k.min(out.len() - filled);
                out[filled..filled + take].copy_from_slice(&acc[..take]);
                filled += take;
                if filled == out.len() {
                    break;
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
        let big = a.u64s(3 * CHUNK / 8 + 6);
        let mut small = Vec::new();
        for part in [8usize, CHUNK / 8, 2 * CHUNK / 8 - 2] {
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

#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore]
    fn prf_speed() {
        let mut prf = Prf::new(PrfKey::random().unwrap());
        let mut v = vec![0u8; 64 << 20];
        let t = std::time::Instant::now();
        prf.fill_bytes(&mut v);
        println!("keystream: {:?} for 64 MiB", t.elapsed());
        let t = std::time::Instant::now();
        prf.fill_zp(&mut v);
        println!("Z_p: {:?} for 64 Mi elements", t.elapsed());
    }

    #[test]
    fn keystream_is_aes_of_the_counter() {
        let key = PrfKey([3u8; 16]);
        let mut prf = Prf::new(key.clone());
        let mut out = [0u8; 40];
        prf.fill_bytes(&mut out);
        let aes = Aes128::new(&key.0.into());
        for i in 0..3u128 {
            let mut b: Block = i.to_le_bytes().into();
            aes.encrypt_block(&mut b);
            let end = (16 * (i as usize + 1)).min(40);
            assert_eq!(&out[16 * i as usize..end], &b[..end - 16 * i as usize]);
        }
        assert_eq!(prf.position(), 48);
    }
}
