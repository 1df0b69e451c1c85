//! AES-128 in counter mode as the PRF behind all correlated randomness.
//!
//! A [`Prf`] is a keyed keystream that two (or three) parties expand identically: every party
//! holding the key draws the same values as long as they make the same sequence of draws with
//! the same sizes, which the protocols guarantee by running the same code on every party. The
//! keystream is produced in bulk (`ctr`: VAES or AES-NI) and, for large requests, in parallel
//! chunks that seek to their own counter position. Draws of Z_p elements ([`ZpDraw`]) reserve
//! their part of the stream and are computed in any order, by any thread.
//!
//! Values are read from the keystream little-endian, so parties on machines of different
//! endianness agree.

use rayon::prelude::*;

use crate::ctr::Cipher;

use crate::ring::{P, ZL1_MODULUS};

/// Keystream bytes produced per parallel task (a multiple of the block size).
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

/// A keystream: AES-128-CTR under one key, with a position (blocks consumed so far). Block
/// `i` of the stream is `AES_k(i)` (the counter as a 128-bit little-endian integer); every
/// request consumes whole blocks.
pub struct Prf {
    cipher: Cipher,
    block: u128,
}

impl std::fmt::Debug for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prf").field("block", &self.block).finish_non_exhaustive()
    }
}

impl Prf {
    pub fn new(key: PrfKey) -> Prf {
        Prf { cipher: Cipher::new(&key.0), block: 0 }
    }

    /// Bytes of keystream consumed so far.
    pub fn position(&self) -> u64 {
        (self.block * 16) as u64
    }

    /// The next `out.len()` keystream bytes (rounded up to whole blocks consumed).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        let _p = crate::prof::scope("prf.keystream");
        let start = self.block;
        if out.len() <= CHUNK {
            self.cipher.keystream(start, out);
        } else {
            let cipher = &self.cipher;
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
                cipher.keystream(start + (i * CHUNK / 16) as u128, chunk);
            });
        }
        self.block += out.len().div_ceil(16) as u128;
    }

    /// Uniform elements of Z_2^64.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        let _p = crate::prof::scope("prf.u64");
        // SAFETY: u8 has alignment 1 and every byte pattern is a valid u64; the view covers
        // exactly the memory of `out`.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 8) };
        self.fill_bytes(bytes);
        for v in out.iter_mut() {
            *v = u64::from_le(*v);
        }
    }

    /// `n` uniform elements of Z_2^64, in a recycled buffer (see `pool`).
    pub fn u64s(&mut self, n: usize) -> Vec<u64> {
        let mut v = crate::pool::take(n);
        self.fill_u64(&mut v);
        v
    }

    /// Uniform elements of Z_{2^64 - 1} (see [`WordDraw`]).
    pub fn fill_zl1(&mut self, out: &mut [u64]) {
        self.fill_u64(out);
        let draw = WordDraw { cipher: self.cipher.clone(), start: self.block - (out.len() * 8).div_ceil(16) as u128, len: out.len(), zl1: true };
        draw.fix_zl1(0, out);
    }

    /// Reserves the keystream for `len` uniform elements of Z_2^64 (or of Z_{2^64 - 1} with
    /// `zl1`), to be computed in any order with [`WordDraw::fill`]: the same elements as
    /// [`Prf::fill_u64`] (or [`Prf::fill_zl1`]) would give at this position.
    pub fn draw_words(&mut self, len: usize, zl1: bool) -> WordDraw {
        assert!((len as u64) < SPILL_SLOTS, "draw of {len} words");
        let draw = WordDraw { cipher: self.cipher.clone(), start: self.block, len, zl1 };
        self.block += (8 * len).div_ceil(16) as u128;
        draw
    }

    pub fn zl1s(&mut self, n: usize) -> Vec<u64> {
        let mut v = crate::pool::take(n);
        self.fill_zl1(&mut v);
        v
    }

    /// Uniform elements of Z_p (p = 67); see [`ZpDraw`] for the sampling.
    pub fn fill_zp(&mut self, out: &mut [u8]) {
        self.draw_zp(out.len(), false).fill_par(out);
    }

    /// Uniform elements of Z_p^* = {1..p-1}; see [`ZpDraw`].
    pub fn fill_zp_nonzero(&mut self, out: &mut [u8]) {
        self.draw_zp(out.len(), true).fill_par(out);
    }

    /// Reserves the keystream for `len` uniform elements of Z_p (or of Z_p^* with `nonzero`),
    /// to be computed in any order, by any thread, with [`ZpDraw::fill`].
    pub fn draw_zp(&mut self, len: usize, nonzero: bool) -> ZpDraw {
        assert!((len as u64) < SPILL_SLOTS, "Z_p draw of {len} elements");
        let draw = ZpDraw { cipher: self.cipher.clone(), start: self.block, len, nonzero };
        self.block += (2 * len).div_ceil(16) as u128;
        draw
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
}

/// `len` uniform 64-bit words reserved from a keystream by [`Prf::draw_words`]: word `j` is
/// keystream bytes `8j..8j + 8` (little-endian) from the draw's first block, computable in any
/// order, so that protocol loops generate the words they use next to their use (in cache)
/// rather than reading them from memory. For Z_{2^64 - 1} the value 2^64 - 1 (probability
/// 2^-64) is replaced by the first word other than 2^64 - 1 of the blocks
/// `AES_k(2^127 + S 2^64 + a 2^40 + j)`, `a = 0, 1, ...` (as for [`ZpDraw`]'s rejections).
#[derive(Clone)]
pub struct WordDraw {
    cipher: Cipher,
    start: u128,
    len: usize,
    zl1: bool,
}

impl std::fmt::Debug for WordDraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordDraw").field("start", &self.start).field("len", &self.len).finish_non_exhaustive()
    }
}

impl WordDraw {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Words `first..first + out.len()` of the draw (`first` even: whole AES blocks).
    pub fn fill(&self, first: usize, out: &mut [u64]) {
        assert!(first % 2 == 0 && first + out.len() <= self.len, "words {first}+{} of a draw of {}", out.len(), self.len);
        // SAFETY: u8 has alignment 1 and every byte pattern is a valid u64; same memory.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 8) };
        self.cipher.keystream(self.start + (first / 2) as u128, bytes);
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = u64::from_le(*v);
            }
        }
        if self.zl1 {
            self.fix_zl1(first, out);
        }
    }

    /// Replaces the words 2^64 - 1 (words `first..` of the draw in `out`).
    fn fix_zl1(&self, first: usize, out: &mut [u64]) {
        if !out.contains(&ZL1_MODULUS) {
            return;
        }
        let draw = self.start & ((1u128 << 63) - 1);
        for (k, v) in out.iter_mut().enumerate() {
            if *v == ZL1_MODULUS {
                'attempts: for attempt in 0u128.. {
                    let counter = (1u128 << 127) | (draw << 64) | (attempt << 40) | (first + k) as u128;
                    let mut block = counter.to_le_bytes();
                    self.cipher.encrypt_block(&mut block);
                    for w in block.chunks_exact(8) {
                        let w = u64::from_le_bytes(w.try_into().unwrap());
                        if w != ZL1_MODULUS {
                            *v = w;
                            break 'attempts;
                        }
                    }
                }
            }
        }
    }
}

/// Words generated per step of the fused loops ([`for_chunks`]).
pub(crate) const WORDS: usize = 2048;

thread_local! {
    /// The generated words of [`for_chunks`] (allocated once per thread, not zeroed per chunk).
    static WORD_SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f(first, out_chunk, words)` over chunks of `out` (in parallel for large ones), with
/// `words[d]` holding words `first..` of `draws[d]` for the chunk.
pub(crate) fn for_chunks<const D: usize>(out: &mut [u64], draws: [&WordDraw; D], f: impl Fn(usize, &mut [u64], &[&[u64]; D]) + Sync) {
    let body = |c: usize, out: &mut [u64]| {
        let first = c * WORDS;
        WORD_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < D * WORDS {
                scratch.resize(D * WORDS, 0);
            }
            let mut bufs = scratch.chunks_exact_mut(WORDS);
            let mut views: [&[u64]; D] = [&[]; D];
            for (v, d) in views.iter_mut().zip(draws.iter()) {
                let b = &mut bufs.next().expect("scratch for every draw")[..out.len()];
                d.fill(first, b);
                *v = b;
            }
            f(first, out, &views);
        })
    };
    if out.len() <= 4 * WORDS {
        for (c, chunk) in out.chunks_mut(WORDS).enumerate() {
            body(c, chunk);
        }
    } else {
        out.par_chunks_mut(WORDS).enumerate().for_each(|(c, chunk)| body(c, chunk));
    }
}

/// Slots of one draw that the spill counters can address (2^40).
const SPILL_SLOTS: u64 = 1 << 40;
/// Slots sampled per keystream call in [`ZpDraw::fill`].
const ZP_BATCH: usize = 1024; // at most 64 groups of 64 (a bit each in `fill`)

/// `len` uniform elements of Z_p (p = 67), or of Z_p^* = {1..p-1}, reserved from a keystream
/// by [`Prf::draw_zp`], computable in any order (so in parallel and fused into the protocol
/// loops): every holder of the key reserves the same draws and gets the same elements.
///
/// # Sampling (exactly uniform)
/// Element `j` of a draw starting at keystream block `S` is sampled from the 16-bit word
/// `w = ks[2j] + 256 ks[2j + 1]` (keystream bytes from block `S` on) by Lemire's multiply-shift
/// rejection method: with `m = w * q` (`q = 67` for Z_p; `q = 66` for Z_p^*, then plus one),
/// the element is `m >> 16` unless `m mod 2^16 < 2^16 mod q` (10 for q = 67, 64 for q = 66),
/// in which case `w` is rejected. Every accepted value in `0..q` comes from exactly
/// `floor(2^16 / q)` words, so the result is exactly uniform, not approximately (no modular
/// bias). A rejected slot (probability 10/65536 or 64/65536) is resampled from words of its
/// own: the 8 words of the block `AES_k(2^127 + S 2^64 + a 2^40 + j)` for attempts
/// `a = 0, 1, ...`, in order, with the same rule. These counters have the top bit set, so they
/// never meet the stream's own counters (below 2^64 in practice), and differ for every
/// (draw, slot, attempt); each element thus depends on AES outputs of its own, independent
/// of the others under the PRF assumption, as byte-wise rejection sampling was.
///
/// Each element costs 2 keystream bytes (byte-wise sampling took 1.27 on average, but its
/// output positions depended on all the earlier bytes, which serialises the work).
#[derive(Clone)]
pub struct ZpDraw {
    cipher: Cipher,
    start: u128,
    len: usize,
    nonzero: bool,
}

impl std::fmt::Debug for ZpDraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZpDraw").field("start", &self.start).field("len", &self.len).finish_non_exhaustive()
    }
}

impl ZpDraw {
    /// A draw from block `start` of a key's stream on a given AES engine (for tests and the
    /// per-level benchmark).
    #[cfg(test)]
    pub(crate) fn with_engine(key: &PrfKey, engine: crate::ctr::Engine, start: u128, len: usize, nonzero: bool) -> ZpDraw {
        ZpDraw { cipher: Cipher::with_engine(&key.0, engine), start, len, nonzero }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `first..first + out.len()` of the draw; `first` must be a multiple of 8 (the
    /// elements of one AES block).
    pub fn fill(&self, first: usize, out: &mut [u8]) {
        assert!(first % 8 == 0 && first + out.len() <= self.len, "slots {first}+{} of a draw of {}", out.len(), self.len);
        let (q, reject_below) = params(self.nonzero);
        // Whole groups of 64 in registers where the CPU allows (VAES, AVX-512BW); the rare
        // rejected words are then replaced one by one.
        let whole = out.len() / 64 * 64;
        let mut rejected = [0u64; 64];
        let mut done = 0;
        while done < whole {
            let len = (whole - done).min(64 * 64);
            let slot = first + done;
            let part = &mut out[done..done + len];
            let block = self.start + (slot / 8) as u128;
            match self.cipher.zp_groups(block, part, q as u16, reject_below as u16, self.nonzero as u8, &mut rejected) {
                Some(any) => {
                    if any {
                        for (g, &mask) in rejected[..len / 64].iter().enumerate() {
                            let mut mask = mask;
                            while mask != 0 {
                                let k = 64 * g + mask.trailing_zeros() as usize;
                                mask &= mask - 1;
                                part[k] = self.spill(slot + k);
                            }
                        }
                    }
                }
                None => break,
            }
            done += len;
        }
        self.fill_portable(first + done, &mut out[done..]);
    }

    /// `fill` with the keystream in a buffer and the map in (auto-vectorised) loops.
    fn fill_portable(&self, first: usize, out: &mut [u8]) {
        let mut words = [0u16; ZP_BATCH];
        for (c, part) in out.chunks_mut(ZP_BATCH).enumerate() {
            let slot = first + c * ZP_BATCH;
            let w = &mut words[..part.len()];
            // SAFETY: u8 has alignment 1 and any bytes are valid u16s; the view covers `w`.
            let bytes = unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 2) };
            self.cipher.keystream(self.start + (slot / 8) as u128, bytes);
            // Checked 64 elements at a time: a rejection (about 1 in 1000 words) re-examines
            // only its group.
            let nonzero = self.nonzero;
            let clean = crate::simd::run_best(|| {
                let mut clean = 0u64;
                for (g, (w, o)) in w.chunks(64).zip(part.chunks_mut(64)).enumerate() {
                    clean |= (map_words(w, o, nonzero) as u64) << g;
                }
                clean
            });
            let groups = part.len().div_ceil(64);
            if clean.count_ones() as usize != groups {
                for (g, (w, o)) in w.chunks(64).zip(part.chunks_mut(64)).enumerate() {
                    if (clean >> g) & 1 == 0 {
                        for (k, (o, &w)) in o.iter_mut().zip(w).enumerate() {
                            if sample(u16::from_le(w), nonzero).is_none() {
                                *o = self.spill(slot + 64 * g + k);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The whole draw, in parallel chunks for large ones.
    pub fn fill_par(&self, out: &mut [u8]) {
        let _p = crate::prof::scope("prf.zp");
        assert_eq!(out.len(), self.len);
        if out.len() <= CHUNK {
            self.fill(0, out);
        } else {
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, part)| self.fill(i * CHUNK, part));
        }
    }

    /// The replacement of the rejected element `slot`.
    #[cold]
    fn spill(&self, slot: usize) -> u8 {
        let draw = self.start & ((1u128 << 63) - 1);
        for attempt in 0u128.. {
            let counter = (1u128 << 127) | (draw << 64) | (attempt << 40) | slot as u128;
            let mut block = counter.to_le_bytes();
            self.cipher.encrypt_block(&mut block);
            for w in block.chunks_exact(2) {
                if let Some(v) = sample(u16::from_le_bytes([w[0], w[1]]), self.nonzero) {
                    return v;
                }
            }
        }
        unreachable!()
    }
}

/// The modulus of the sampled range and the rejection bound (`2^16 mod q`).
#[inline(always)]
fn params(nonzero: bool) -> (u32, u32) {
    let q = if nonzero { P as u32 - 1 } else { P as u32 };
    (q, (1u32 << 16) % q)
}

/// The element sampled from a 16-bit word, or `None` if the word is rejected (see [`ZpDraw`]).
#[inline(always)]
fn sample(w: u16, nonzero: bool) -> Option<u8> {
    let (q, reject_below) = params(nonzero);
    let m = w as u32 * q;
    if m & 0xFFFF < reject_below {
        None
    } else {
        Some((m >> 16) as u8 + nonzero as u8)
    }
}

/// Maps keystream words (little-endian) to elements; false if any word was rejected (whose
/// output is then garbage and must be replaced).
#[inline]
fn map_words(words: &[u16], out: &mut [u8], nonzero: bool) -> bool {
    #[inline(always)]
    fn go<const NONZERO: bool>(words: &[u16], out: &mut [u8]) -> bool {
        let (q, reject_below) = if NONZERO { (P as u32 - 1, (1u32 << 16) % (P as u32 - 1)) } else { (P as u32, (1u32 << 16) % P as u32) };
        let mut rejected = 0u8;
        for (o, &w) in out.iter_mut().zip(words) {
            let w = u16::from_le(w);
            // The high and low halves of w q (vpmulhuw, vpmullw).
            *o = ((w as u32 * q) >> 16) as u8 + NONZERO as u8;
            rejected |= (w.wrapping_mul(q as u16) < reject_below as u16) as u8;
        }
        rejected == 0
    }
    if nonzero {
        go::<true>(words, out)
    } else {
        go::<false>(words, out)
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
    fn zp_sampling_is_exactly_uniform() {
        // Every value is hit by exactly floor(2^16 / q) of the 2^16 words, the rest rejected.
        for nonzero in [false, true] {
            let q = if nonzero { 66 } else { 67 };
            let mut counts = [0u32; 67];
            let mut rejected = 0;
            for w in 0..=u16::MAX {
                match sample(w, nonzero) {
                    Some(v) => counts[v as usize] += 1,
                    None => rejected += 1,
                }
            }
            let lo = nonzero as usize;
            assert!(counts[lo..lo + q].iter().all(|&c| c == 65536 / q as u32), "{counts:?}");
            assert_eq!(counts.iter().sum::<u32>() + rejected, 65536);
            assert_eq!(rejected, 65536 % q as u32);
            // The vectorised map agrees with `sample` wherever it accepts.
            // At every SIMD level this CPU has.
            let words: Vec<u16> = (0..=u16::MAX).map(u16::to_le).collect();
            for level in crate::simd::detected().up_to() {
                let mut out = vec![0u8; words.len()];
                assert!(!crate::simd::run(level, || map_words(&words, &mut out, nonzero)));
                for (w, &o) in (0..=u16::MAX).zip(&out) {
                    if let Some(v) = sample(w, nonzero) {
                        assert_eq!(v, o, "{level}");
                    }
                }
                // Clean groups are reported clean.
                let clean: Vec<u16> = (0..64u16).map(|i| i.wrapping_mul(977).wrapping_add(4000).to_le()).collect();
                assert!(clean.iter().all(|&w| sample(u16::from_le(w), nonzero).is_some()));
                assert!(crate::simd::run(level, || map_words(&clean, &mut out[..64], nonzero)));
            }
        }
    }

    #[test]
    fn zp_draws_are_position_independent_and_deterministic() {
        let key = PrfKey::random().unwrap();
        let mut a = Prf::new(key.clone());
        let mut b = Prf::new(key);
        a.u64s(3);
        b.u64s(3);
        let n = 3 * CHUNK + 40;
        let (da, db) = (a.draw_zp(n, true), b.draw_zp(n, true));
        let mut whole = vec![0u8; n];
        da.fill_par(&mut whole);
        // Any 8-aligned pieces, in any order, give the same elements.
        let mut pieces = vec![0u8; n];
        for (first, len) in [(n - 40, 40), (8, 3000), (0, 8), (3008, n - 40 - 3008)] {
            db.fill(first, &mut pieces[first..first + len]);
        }
        assert_eq!(whole, pieces);
        assert!(whole.iter().all(|&v| (1..67).contains(&v)));
        // Rejections happen (about 1 in 1000 here) and are replaced deterministically.
        let spilled = (0..n).filter(|&j| da.spill(j) != db.spill(j)).count();
        assert_eq!(spilled, 0);
        assert_eq!(a.position(), b.position());
        assert_eq!(a.u64s(2), b.u64s(2));
    }

    #[test]
    fn register_and_portable_zp_paths_agree() {
        let mut prf = Prf::new(PrfKey::random().unwrap());
        for nonzero in [false, true] {
            let n = 300_000;
            let draw = prf.draw_zp(n, nonzero);
            let mut a = vec![0u8; n];
            let mut b = vec![0u8; n];
            draw.fill_portable(0, &mut a);
            for (first, len) in [(0, 64 * 64 * 3 + 64 * 5 + 24), (64 * 64 * 3 + 64 * 5 + 24, 8), (12_808, 100_000)] {
                draw.fill(first, &mut b[first..first + len]);
                assert_eq!(a[first..first + len], b[first..first + len], "nonzero {nonzero}, {first}+{len}");
            }
            draw.fill_par(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn zp_and_word_draws_agree_on_every_engine() {
        let key = PrfKey::random().unwrap();
        let engines = crate::ctr::tests::engines();
        let draw = |engine, nonzero| ZpDraw { cipher: Cipher::with_engine(&key.0, engine), start: 12_345, len: 200_000, nonzero };
        for nonzero in [false, true] {
            let mut want = vec![0u8; 200_000];
            draw(crate::ctr::Engine::Crate, nonzero).fill_portable(0, &mut want);
            for &engine in &engines {
                let d = draw(engine, nonzero);
                let mut got = vec![0u8; 200_000];
                d.fill_par(&mut got);
                assert_eq!(got, want, "{engine:?}, nonzero {nonzero}");
                d.fill(8 * 1001, &mut got[..5000]);
                assert_eq!(got[..5000], want[8 * 1001..8 * 1001 + 5000], "{engine:?}");
            }
        }
        let words = |engine| WordDraw { cipher: Cipher::with_engine(&key.0, engine), start: 99, len: 10_001, zl1: false };
        let mut want = vec![0u64; 10_001];
        words(crate::ctr::Engine::Crate).fill(0, &mut want);
        for &engine in &engines {
            let mut got = vec![0u64; 10_001];
            words(engine).fill(0, &mut got);
            assert_eq!(got, want, "{engine:?}");
        }
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
    use aes::cipher::{BlockEncrypt, KeyInit};
    use aes::{Aes128, Block};

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

#[cfg(test)]
mod zp_bench {
    use super::*;

    /// `cargo test --release -p cryptflow-porthos --lib -- --ignored --nocapture zp_speed`
    #[test]
    #[ignore]
    fn zp_speed() {
        let mut prf = Prf::new(PrfKey::random().unwrap());
        let draw = prf.draw_zp(1 << 30, true);
        let mut buf = vec![0u8; 1 << 16];
        for fused in [true, false, true, false] {
            let t = std::time::Instant::now();
            let reps = 2048;
            for i in 0..reps {
                if fused {
                    draw.fill(i << 16, &mut buf);
                } else {
                    draw.fill_portable(i << 16, &mut buf);
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!("fused {fused}: {:.2} ns per element on one thread", secs / (reps << 16) as f64 * 1e9);
        }
    }
}
