//! AES-128 in counter mode: the keystream behind [`crate::prf`].
//!
//! Block `i` of the keystream under key `k` is `AES_k(i)`, the counter `i` written as a
//! 128-bit little-endian integer. On CPUs with VAES and AVX-512 the blocks are encrypted 32 at
//! a time with 512-bit AES rounds (four blocks per instruction, eight registers in flight);
//! otherwise by the `aes` crate (AES-NI, eight blocks pipelined, or its constant-time software
//! implementation). Both give the same bytes (tested); the environment variable
//! `CRYPTFLOW_NO_VAES` makes keys set up afterwards use the `aes` crate's path (to compare).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};

/// Blocks encrypted per call of the `aes` crate.
const BATCH: usize = 64;

/// An expanded AES-128 key.
#[derive(Clone)]
pub(crate) struct Cipher {
    aes: Aes128,
    /// The 11 round keys, when the VAES path is used.
    round_keys: Option<[[u8; 16]; 11]>,
}

impl Cipher {
    pub(crate) fn new(key: &[u8; 16]) -> Cipher {
        Cipher { aes: Aes128::new(key.into()), round_keys: x86::round_keys(key) }
    }

    /// The same key without the VAES path (for tests).
    #[cfg(test)]
    pub(crate) fn portable(&self) -> Cipher {
        Cipher { aes: self.aes.clone(), round_keys: None }
    }

    pub(crate) fn encrypt_block(&self, block: &mut [u8; 16]) {
        let b: &mut Block = block.into();
        self.aes.encrypt_block(b);
    }

    /// Writes the keystream from block `first` on into `out` (whole blocks, the last one
    /// truncated to what `out` holds).
    pub(crate) fn keystream(&self, first: u128, out: &mut [u8]) {
        if let Some(rk) = &self.round_keys {
            // The counters' low 64 bits must not wrap within the request (they never do:
            // stream positions stay far below 2^64 blocks, spill counters' low words are small).
            let blocks = out.len().div_ceil(16) as u64;
            if (first as u64).checked_add(blocks).is_some() {
                // SAFETY: `round_keys` is only set when the CPU has VAES and AVX-512F.
                unsafe { x86::keystream_vaes(rk, first, out) };
                return;
            }
        }
        self.keystream_aes(first, out);
    }

    /// Groups of 64 elements of Z_q sampled from the keystream from block `first` on (one
    /// 16-bit word per element, 8 blocks per group; see `prf::ZpDraw`): element `j` is
    /// `(w_j q) >> 16` plus `add`, the word rejected when `(w_j q) mod 2^16 < reject_below`.
    /// Sets `rejected[g]` to the mask of the rejected words of group `g` (their outputs are
    /// garbage) and returns whether there was any; `None` where this CPU has no VAES/AVX-512BW
    /// path (nothing written).
    pub(crate) fn zp_groups(&self, first: u128, out: &mut [u8], q: u16, reject_below: u16, add: u8, rejected: &mut [u64]) -> Option<bool> {
        let rk = self.round_keys.as_ref()?;
        assert!(out.len() % 64 == 0 && rejected.len() >= out.len() / 64);
        if !x86::has_avx512bw() || (first as u64).checked_add(out.len() as u64 / 8).is_none() {
            return None;
        }
        // SAFETY: VAES, AVX-512F (with the round keys) and AVX-512BW are present.
        Some(unsafe { x86::zp_groups_vaes(rk, first, out, q, reject_below, add, rejected) })
    }

    /// The `aes` crate's path: counters written into `out` and encrypted in place.
    fn keystream_aes(&self, first: u128, out: &mut [u8]) {
        let whole = out.len() / 16 * 16;
        let (body, tail) = out.split_at_mut(whole);
        for (b, part) in body.chunks_mut(BATCH * 16).enumerate() {
            let base = first + (b * BATCH) as u128;
            for (k, block) in part.chunks_exact_mut(16).enumerate() {
                block.copy_from_slice(&(base + k as u128).to_le_bytes());
            }
            // SAFETY: `Block` is `GenericArray<u8, U16>`, a `repr(transparent)` wrapper of
            // `[u8; 16]` (alignment 1); the view covers exactly the whole blocks of `part`.
            let blocks = unsafe { std::slice::from_raw_parts_mut(part.as_mut_ptr() as *mut Block, part.len() / 16) };
            self.aes.encrypt_blocks(blocks);
        }
        if !tail.is_empty() {
            let mut block = (first + (whole / 16) as u128).to_le_bytes();
            self.encrypt_block(&mut block);
            let n = tail.len();
            tail.copy_from_slice(&block[..n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The round keys, if this CPU has VAES, AVX-512F and AES-NI.
    pub(super) fn round_keys(key: &[u8; 16]) -> Option<[[u8; 16]; 11]> {
        if std::env::var_os("CRYPTFLOW_NO_VAES").is_some() {
            return None;
        }
        if is_x86_feature_detected!("vaes") && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("aes") {
            // SAFETY: AES-NI is present.
            Some(unsafe { expand(key) })
        } else {
            None
        }
    }

    /// AES-128 key expansion (FIPS-197) with AESKEYGENASSIST.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand(key: &[u8; 16]) -> [[u8; 16]; 11] {
        #[inline(always)]
        unsafe fn step(k: __m128i, t: __m128i) -> __m128i {
            let t = _mm_shuffle_epi32::<0xFF>(t);
            let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            _mm_xor_si128(k, t)
        }
        let mut rk = [[0u8; 16]; 11];
        let mut k = _mm_loadu_si128(key.as_ptr() as *const __m128i);
        _mm_storeu_si128(rk[0].as_mut_ptr() as *mut __m128i, k);
        macro_rules! round {
            ($i:expr, $rcon:expr) => {
                k = step(k, _mm_aeskeygenassist_si128::<$rcon>(k));
                _mm_storeu_si128(rk[$i].as_mut_ptr() as *mut __m128i, k);
            };
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(7, 0x40);
        round!(8, 0x80);
        round!(9, 0x1B);
        round!(10, 0x36);
        rk
    }

    pub(super) fn has_avx512bw() -> bool {
        is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vbmi")
    }

    /// See `Cipher::zp_groups`: four groups (eight registers of four blocks) at a time, the
    /// keystream mapped to elements in registers.
    /// Byte indices 0, 2, .., 126: the low byte of every 16-bit lane of two registers.
    static EVENS: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            t[i] = 2 * i as u8;
            i += 1;
        }
        t
    };

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,vaes")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn zp_groups_vaes(
        rk: &[[u8; 16]; 11],
        first: u128,
        out: &mut [u8],
        q: u16,
        reject_below: u16,
        add: u8,
        rejected: &mut [u64],
    ) -> bool {
        let mut keys = [_mm512_setzero_si512(); 11];
        for (k, r) in keys.iter_mut().zip(rk) {
            *k = _mm512_broadcast_i32x4(_mm_loadu_si128(r.as_ptr() as *const __m128i));
        }
        let lo = first as u64 as i64;
        let hi = (first >> 64) as u64 as i64;
        let mut ctr = _mm512_add_epi64(_mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo), _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0));
        let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
        let qv = _mm512_set1_epi16(q as i16);
        let rbv = _mm512_set1_epi16(reject_below as i16);
        let addv = _mm512_set1_epi8(add as i8);
        let evens = _mm512_loadu_si512(EVENS.as_ptr() as *const __m512i);
        let mut any = 0u64;
        let groups = out.len() / 64;
        let mut tail = [0u8; 256];
        let mut g = 0;
        while g < groups {
            // Always four groups (registers stay registers); a short last batch goes through
            // `tail`.
            let n = (groups - g).min(4);
            let dst: *mut u8 = if n == 4 { out.as_mut_ptr().add(64 * g) } else { tail.as_mut_ptr() };
            let mut x = [_mm512_setzero_si512(); 8];
            for v in x.iter_mut() {
                *v = _mm512_xor_si512(ctr, keys[0]);
                ctr = _mm512_add_epi64(ctr, four);
            }
            for key in &keys[1..10] {
                for v in x.iter_mut() {
                    *v = _mm512_aesenc_epi128(*v, *key);
                }
            }
            for v in x.iter_mut() {
                *v = _mm512_aesenclast_epi128(*v, keys[10]);
            }
            let mut bad = [0u64; 4];
            for j in 0..4 {
                let (w0, w1) = (x[2 * j], x[2 * j + 1]);
                bad[j] = _mm512_cmplt_epu16_mask(_mm512_mullo_epi16(w0, qv), rbv) as u64
                    | (_mm512_cmplt_epu16_mask(_mm512_mullo_epi16(w1, qv), rbv) as u64) << 32;
                // The low bytes of the high halves, 32 from each register (one VPERMI2B).
                let h = _mm512_permutex2var_epi8(_mm512_mulhi_epu16(w0, qv), evens, _mm512_mulhi_epu16(w1, qv));
                _mm512_storeu_si512(dst.add(64 * j) as *mut __m512i, _mm512_add_epi8(h, addv));
            }
            if n < 4 {
                out[64 * g..].copy_from_slice(&tail[..64 * n]);
            }
            for j in 0..n {
                rejected[g + j] = bad[j];
                any |= bad[j];
            }
            g += n;
        }
        any != 0
    }

    /// Blocks per loop iteration: 8 registers of 4.
    const LANES: usize = 8;

    /// AES-128-CTR from block `first` into `out` (the low 64 bits of the counter must not wrap).
    #[target_feature(enable = "avx512f,vaes")]
    pub(super) unsafe fn keystream_vaes(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        let mut keys = [_mm512_setzero_si512(); 11];
        for (k, r) in keys.iter_mut().zip(rk) {
            *k = _mm512_broadcast_i32x4(_mm_loadu_si128(r.as_ptr() as *const __m128i));
        }
        let lo = first as u64 as i64;
        let hi = (first >> 64) as u64 as i64;
        // Four consecutive counters (lane pairs: low word, high word).
        let mut ctr = _mm512_add_epi64(_mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo), _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0));
        let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
        let mut chunks = out.chunks_exact_mut(LANES * 64);
        for chunk in &mut chunks {
            let mut x = [_mm512_setzero_si512(); LANES];
            for v in x.iter_mut() {
                *v = _mm512_xor_si512(ctr, keys[0]);
                ctr = _mm512_add_epi64(ctr, four);
            }
            for key in &keys[1..10] {
                for v in x.iter_mut() {
                    *v = _mm512_aesenc_epi128(*v, *key);
                }
            }
            for (j, v) in x.iter().enumerate() {
                let c = _mm512_aesenclast_epi128(*v, keys[10]);
                _mm512_storeu_si512(chunk.as_mut_ptr().add(64 * j) as *mut __m512i, c);
            }
        }
        let rest = chunks.into_remainder();
        for part in rest.chunks_mut(64) {
            let mut v = _mm512_xor_si512(ctr, keys[0]);
            ctr = _mm512_add_epi64(ctr, four);
            for key in &keys[1..10] {
                v = _mm512_aesenc_epi128(v, *key);
            }
            v = _mm512_aesenclast_epi128(v, keys[10]);
            let mut buf = [0u8; 64];
            _mm512_storeu_si512(buf.as_mut_ptr() as *mut __m512i, v);
            let n = part.len();
            part.copy_from_slice(&buf[..n]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub(super) fn round_keys(_key: &[u8; 16]) -> Option<[[u8; 16]; 11]> {
        None
    }

    pub(super) unsafe fn keystream_vaes(_rk: &[[u8; 16]; 11], _first: u128, _out: &mut [u8]) {
        unreachable!()
    }

    pub(super) fn has_avx512bw() -> bool {
        false
    }

    pub(super) unsafe fn zp_groups_vaes(_: &[[u8; 16]; 11], _: u128, _: &mut [u8], _: u16, _: u16, _: u8, _: &mut [u64]) -> bool {
        unreachable!()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_give_aes_of_the_counter() {
        let key = [7u8; 16];
        let c = Cipher::new(&key);
        let aes = Aes128::new(&key.into());
        for first in [0u128, 5, (1 << 64) - 3, (1u128 << 127) | (9 << 64) | 17] {
            for len in [0usize, 1, 16, 17, 63, 64, 65, 511, 512, 513, 4096 + 40] {
                let mut a = vec![0u8; len];
                let mut b = vec![1u8; len];
                c.keystream(first, &mut a);
                c.portable().keystream(first, &mut b);
                assert_eq!(a, b, "first {first}, len {len}");
                for (i, part) in a.chunks(16).enumerate() {
                    let mut block: Block = (first + i as u128).to_le_bytes().into();
                    aes.encrypt_block(&mut block);
                    assert_eq!(part, &block[..part.len()]);
                }
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p cryptflow-porthos --lib -- --ignored --nocapture ctr_speed`
    #[test]
    #[ignore]
    fn ctr_speed() {
        let c = Cipher::new(&[1u8; 16]);
        let mut buf = vec![0u8; 1 << 16];
        for (name, c) in [("default", c.clone()), ("aes crate", c.portable())] {
            let t = std::time::Instant::now();
            let reps = 4096;
            for i in 0..reps {
                c.keystream(i as u128 * 4096, &mut buf);
            }
            let secs = t.elapsed().as_secs_f64();
            println!("{name}: {:.2} GB/s on one thread", (reps << 16) as f64 / secs / 1e9);
        }
    }
}
