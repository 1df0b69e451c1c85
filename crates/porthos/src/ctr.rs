//! AES-128 in counter mode: the keystream behind [`crate::prf`].
//!
//! Block `i` of the keystream under key `k` is `AES_k(i)`, the counter `i` written as a
//! 128-bit little-endian integer. One description of counter mode ([`keystream_with`], generic
//! over a small trait of AES lanes, [`AesLanes`], whose implementations hold the only
//! instruction-set-specific code: loads, counters and the AES rounds) is compiled per register
//! width and architecture, and the key picks one when it is set up, from the dispatch level
//! ([`crate::simd::level`], `CRYPTFLOW_SIMD`):
//! - `avx512` with VAES: 512-bit AES rounds (four blocks per instruction, eight registers, 32
//!   blocks in flight);
//! - `avx2` with VAES: 256-bit rounds (two blocks per instruction, 16 in flight); `avx2`
//!   without VAES but with AES-NI: 128-bit rounds, eight blocks in flight;
//! - `neon` (aarch64) with the ARMv8 AES instructions: `AESE`/`AESMC` on 128-bit registers,
//!   eight blocks in flight (the round keys expanded with `AESE` as the S-box);
//! - `scalar` (or no AES instructions): the `aes` crate (AES-NI on x86-64 when the CPU has it;
//!   on aarch64 its constant-time software implementation: version 0.8 uses the ARMv8
//!   instructions only when built with `--cfg aes_armv8`).
//!
//! All give the same bytes (tested at every level the CPU has); the environment variable
//! `CRYPTFLOW_NO_VAES` makes keys set up afterwards use the `aes` crate's path (to compare).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};

/// Blocks encrypted per call of the `aes` crate.
const BATCH: usize = 64;

/// How a key encrypts its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each architecture constructs its own engines and the crate's
pub(crate) enum Engine {
    /// The `aes` crate.
    Crate,
    /// AES-NI, 128-bit registers.
    AesNi,
    /// VAES with AVX2, 256-bit registers.
    Vaes256,
    /// VAES with AVX-512, 512-bit registers (and the fused Z_p sampler with AVX-512BW/VBMI).
    Vaes512,
    /// The ARMv8 AES instructions (aarch64), 128-bit registers.
    ArmAes,
}

impl Engine {
    /// The engine for a dispatch level on this CPU.
    pub(crate) fn at(level: crate::simd::Level) -> Engine {
        hw::engine(level)
    }
}

/// An expanded AES-128 key.
#[derive(Clone)]
pub(crate) struct Cipher {
    aes: Aes128,
    /// The 11 round keys, when an engine of ours (not the crate's) is used.
    round_keys: Option<[[u8; 16]; 11]>,
    engine: Engine,
}

impl Cipher {
    pub(crate) fn new(key: &[u8; 16]) -> Cipher {
        let engine = if std::env::var_os("CRYPTFLOW_NO_VAES").is_some() { Engine::Crate } else { Engine::at(crate::simd::level()) };
        Cipher::with_engine(key, engine)
    }

    /// The key with a given engine (which the CPU must support).
    pub(crate) fn with_engine(key: &[u8; 16], engine: Engine) -> Cipher {
        let round_keys = if engine == Engine::Crate { None } else { Some(hw::round_keys(key)) };
        Cipher { aes: Aes128::new(key.into()), round_keys, engine }
    }

    /// The same key without the VAES path (for tests).
    #[cfg(test)]
    pub(crate) fn portable(&self) -> Cipher {
        Cipher { aes: self.aes.clone(), round_keys: None, engine: Engine::Crate }
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
                // SAFETY: `round_keys` is only set with an engine the CPU supports.
                unsafe { hw::keystream(self.engine, rk, first, out) };
                return;
            }
        }
        self.keystream_aes(first, out);
    }

    /// Groups of 64 elements of Z_q sampled from the keystream from block `first` on (one
    /// 16-bit word per element, 8 blocks per group; see `prf::ZpDraw`): element `j` is
    /// `(w_j q) >> 16` plus `add`, the word rejected when `(w_j q) mod 2^16 < reject_below`.
    /// Sets `rejected[g]` to the mask of the rejected words of group `g` (their outputs are
    /// garbage) and returns whether there was any; `None` where the key's engine has no such
    /// path (nothing written): there is one for VAES with AVX-512BW/VBMI and one for VAES with
    /// AVX2.
    pub(crate) fn zp_groups(&self, first: u128, out: &mut [u8], q: u16, reject_below: u16, add: u8, rejected: &mut [u64]) -> Option<bool> {
        let rk = self.round_keys.as_ref()?;
        assert!(out.len() % 64 == 0 && rejected.len() >= out.len() / 64);
        // (The counters' low 64 bits must not wrap within the request.)
        (first as u64).checked_add(out.len() as u64 / 8)?;
        match self.engine {
            // SAFETY: VAES, AVX-512F (with the round keys) and AVX-512BW/VBMI are present.
            Engine::Vaes512 if hw::has_avx512bw() => Some(unsafe { hw::zp_groups_vaes(rk, first, out, q, reject_below, add, rejected) }),
            // SAFETY: the engine is only chosen with VAES and AVX2.
            Engine::Vaes256 => Some(unsafe { hw::zp_groups_vaes256(rk, first, out, q, reject_below, add, rejected) }),
            _ => None,
        }
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

/// Registers in flight per loop iteration (eight hide the AES round latency).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const LANES: usize = 8;

/// A register of `BLOCKS` AES blocks: the little that counter mode needs. Implemented for
/// 128-bit (AES-NI), 256-bit (VAES + AVX2) and 512-bit (VAES + AVX-512F) registers on x86-64,
/// and for NEON registers with the ARMv8 AES instructions on aarch64; the methods are only
/// called from functions compiled with those features (they are `inline(always)`, or, for the
/// ARM rounds, `inline` with the AES feature, so they become those instructions there).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
trait AesLanes: Copy {
    const BLOCKS: usize;
    /// A round key in every block.
    unsafe fn key(rk: &[u8; 16]) -> Self;
    /// Counters `first, first + 1, ..` (the low 64 bits do not wrap).
    unsafe fn counters(first: u128) -> Self;
    /// `BLOCKS` added to every counter.
    unsafe fn next(self) -> Self;
    /// AES-128 of every block of every register of `x` under the round keys `keys`, the rounds
    /// interleaved across the registers.
    unsafe fn encrypt<const N: usize>(x: &mut [Self; N], keys: &[Self; 11]);
    unsafe fn store(self, p: *mut u8);
}

/// AES-128-CTR from block `first` into `out`, `LANES` registers of `V::BLOCKS` blocks at a
/// time (the one description of counter mode; see the module doc).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn keystream_with<V: AesLanes>(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
    // SAFETY (of the calls below): the caller compiled this with V's target features.
    unsafe {
        let keys: [V; 11] = std::array::from_fn(|i| V::key(&rk[i]));
        let mut ctr = V::counters(first);
        let width = 16 * V::BLOCKS;
        let mut chunks = out.chunks_exact_mut(LANES * width);
        for chunk in &mut chunks {
            let mut x = [ctr; LANES];
            for v in x.iter_mut() {
                *v = ctr;
                ctr = ctr.next();
            }
            V::encrypt(&mut x, &keys);
            for (j, v) in x.iter().enumerate() {
                // `chunk` holds LANES registers' bytes.
                v.store(chunk.as_mut_ptr().add(width * j));
            }
        }
        let rest = chunks.into_remainder();
        for part in rest.chunks_mut(width) {
            let mut x = [ctr];
            ctr = ctr.next();
            V::encrypt(&mut x, &keys);
            let mut buf = [0u8; 64];
            x[0].store(buf.as_mut_ptr());
            let n = part.len();
            part.copy_from_slice(&buf[..n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
use x86 as hw;
#[cfg(target_arch = "aarch64")]
use arm as hw;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use other as hw;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{keystream_with, AesLanes, Engine};
    use crate::simd::Level;

    /// The fastest engine of a level on this CPU.
    pub(super) fn engine(level: Level) -> Engine {
        let aes = is_x86_feature_detected!("aes") && is_x86_feature_detected!("sse2");
        let vaes = aes && is_x86_feature_detected!("vaes");
        match level {
            Level::Avx512 if vaes && is_x86_feature_detected!("avx512f") => Engine::Vaes512,
            Level::Avx512 | Level::Avx2 if vaes && is_x86_feature_detected!("avx2") => Engine::Vaes256,
            Level::Avx512 | Level::Avx2 if aes => Engine::AesNi,
            _ => Engine::Crate,
        }
    }

    /// The round keys (the CPU has AES-NI: every engine but the crate's needs it).
    pub(super) fn round_keys(key: &[u8; 16]) -> [[u8; 16]; 11] {
        assert!(is_x86_feature_detected!("aes"));
        // SAFETY: AES-NI is present.
        unsafe { expand(key) }
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

    /// See `Cipher::zp_groups`: with VAES on 256-bit registers (two blocks each), two groups
    /// (eight registers) at a time, the keystream mapped to elements in registers. AVX2 has no
    /// unsigned 16-bit compare (`lo < b` is `max(lo, b - 1) == b - 1`) and its packs work
    /// within 128-bit lanes (fixed by one `vpermq`).
    #[target_feature(enable = "avx2,vaes,aes")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn zp_groups_vaes256(
        rk: &[[u8; 16]; 11],
        first: u128,
        out: &mut [u8],
        q: u16,
        reject_below: u16,
        add: u8,
        rejected: &mut [u64],
    ) -> bool {
        let keys: [__m256i; 11] = std::array::from_fn(|i| <__m256i as AesLanes>::key(&rk[i]));
        let mut ctr = <__m256i as AesLanes>::counters(first);
        let qv = _mm256_set1_epi16(q as i16);
        let below = _mm256_set1_epi16(reject_below.wrapping_sub(1) as i16);
        let addv = _mm256_set1_epi8(add as i8);
        let mut any = 0u64;
        let groups = out.len() / 64;
        let mut tail = [0u8; 128];
        let mut g = 0;
        while g < groups {
            // Always two groups, with no branch between them (so that all eight registers are
            // in flight); a short last batch goes through `tail`.
            let n = (groups - g).min(2);
            let dst: *mut u8 = if n == 2 { out.as_mut_ptr().add(64 * g) } else { tail.as_mut_ptr() };
            // The round keys are read from memory in every round (volatile: not hoisted into
            // registers), which leaves the sixteen ymm registers to the eight blocks in flight;
            // with the keys in registers LLVM ran two of the eight as serial chains.
            let key = |r: usize| std::ptr::read_volatile(&keys[r]);
            let mut x = [keys[0]; 8];
            let k0 = key(0);
            for v in x.iter_mut() {
                *v = ctr.xor(k0);
                ctr = ctr.next();
            }
            for r in 1..10 {
                let k = key(r);
                for v in x.iter_mut() {
                    *v = v.round(k);
                }
            }
            let k10 = key(10);
            for v in x.iter_mut() {
                *v = v.last_round(k10);
            }
            let mut bad = [0u64; 2];
            for (j, bad) in bad.iter_mut().enumerate() {
                for h in 0..2 {
                    let (w0, w1) = (x[4 * j + 2 * h], x[4 * j + 2 * h + 1]);
                    let (l0, l1) = (_mm256_mullo_epi16(w0, qv), _mm256_mullo_epi16(w1, qv));
                    let r0 = _mm256_cmpeq_epi16(_mm256_max_epu16(l0, below), below);
                    let r1 = _mm256_cmpeq_epi16(_mm256_max_epu16(l1, below), below);
                    let r = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi16(r0, r1));
                    *bad |= (_mm256_movemask_epi8(r) as u32 as u64) << (32 * h);
                    let hi = _mm256_packus_epi16(_mm256_mulhi_epu16(w0, qv), _mm256_mulhi_epu16(w1, qv));
                    let hi = _mm256_add_epi8(_mm256_permute4x64_epi64::<0xD8>(hi), addv);
                    _mm256_storeu_si256(dst.add(64 * j + 32 * h) as *mut __m256i, hi);
                }
            }
            if n < 2 {
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

    /// AES-128-CTR from block `first` into `out` with `engine` (not the crate's; the low 64
    /// bits of the counter must not wrap).
    ///
    /// # Safety
    /// The CPU must support the engine.
    pub(super) unsafe fn keystream(engine: Engine, rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        match engine {
            Engine::Vaes512 => keystream_vaes512(rk, first, out),
            Engine::Vaes256 => keystream_vaes256(rk, first, out),
            Engine::AesNi => keystream_aesni(rk, first, out),
            Engine::Crate | Engine::ArmAes => unreachable!("the crate's engine has no round keys; no ARM engine here"),
        }
    }

    #[target_feature(enable = "avx512f,vaes,aes")]
    unsafe fn keystream_vaes512(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        keystream_with::<__m512i>(rk, first, out)
    }

    #[target_feature(enable = "avx2,vaes,aes")]
    unsafe fn keystream_vaes256(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        keystream_with::<__m256i>(rk, first, out)
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn keystream_aesni(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        keystream_with::<__m128i>(rk, first, out)
    }

    /// The x86 AES round structure (`AESENC` and `AESENCLAST` add the round key after the
    /// round), for [`AesLanes::encrypt`] and the fused Z_p sampler.
    trait Rounds: Copy {
        unsafe fn xor(self, k: Self) -> Self;
        unsafe fn round(self, k: Self) -> Self;
        unsafe fn last_round(self, k: Self) -> Self;
    }

    /// AES-128 of every register of `x`, each round interleaved across the registers.
    #[inline(always)]
    unsafe fn encrypt_rounds<V: Rounds, const N: usize>(x: &mut [V; N], keys: &[V; 11]) {
        for v in x.iter_mut() {
            *v = v.xor(keys[0]);
        }
        for key in &keys[1..10] {
            for v in x.iter_mut() {
                *v = v.round(*key);
            }
        }
        for v in x.iter_mut() {
            *v = v.last_round(keys[10]);
        }
    }

    impl AesLanes for __m128i {
        const BLOCKS: usize = 1;
        #[inline(always)]
        unsafe fn key(rk: &[u8; 16]) -> Self {
            _mm_loadu_si128(rk.as_ptr() as *const __m128i)
        }
        #[inline(always)]
        unsafe fn counters(first: u128) -> Self {
            _mm_set_epi64x((first >> 64) as u64 as i64, first as u64 as i64)
        }
        #[inline(always)]
        unsafe fn next(self) -> Self {
            _mm_add_epi64(self, _mm_set_epi64x(0, 1))
        }
        #[inline(always)]
        unsafe fn encrypt<const N: usize>(x: &mut [Self; N], keys: &[Self; 11]) {
            encrypt_rounds(x, keys)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            _mm_storeu_si128(p as *mut __m128i, self)
        }
    }

    impl Rounds for __m128i {
        #[inline(always)]
        unsafe fn xor(self, k: Self) -> Self {
            _mm_xor_si128(self, k)
        }
        #[inline(always)]
        unsafe fn round(self, k: Self) -> Self {
            _mm_aesenc_si128(self, k)
        }
        #[inline(always)]
        unsafe fn last_round(self, k: Self) -> Self {
            _mm_aesenclast_si128(self, k)
        }
    }

    impl AesLanes for __m256i {
        const BLOCKS: usize = 2;
        #[inline(always)]
        unsafe fn key(rk: &[u8; 16]) -> Self {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(rk.as_ptr() as *const __m128i))
        }
        #[inline(always)]
        unsafe fn counters(first: u128) -> Self {
            let (lo, hi) = (first as u64 as i64, (first >> 64) as u64 as i64);
            _mm256_add_epi64(_mm256_set_epi64x(hi, lo, hi, lo), _mm256_set_epi64x(0, 1, 0, 0))
        }
        #[inline(always)]
        unsafe fn next(self) -> Self {
            _mm256_add_epi64(self, _mm256_set_epi64x(0, 2, 0, 2))
        }
        #[inline(always)]
        unsafe fn encrypt<const N: usize>(x: &mut [Self; N], keys: &[Self; 11]) {
            encrypt_rounds(x, keys)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            _mm256_storeu_si256(p as *mut __m256i, self)
        }
    }

    impl Rounds for __m256i {
        #[inline(always)]
        unsafe fn xor(self, k: Self) -> Self {
            _mm256_xor_si256(self, k)
        }
        #[inline(always)]
        unsafe fn round(self, k: Self) -> Self {
            _mm256_aesenc_epi128(self, k)
        }
        #[inline(always)]
        unsafe fn last_round(self, k: Self) -> Self {
            _mm256_aesenclast_epi128(self, k)
        }
    }

    impl AesLanes for __m512i {
        const BLOCKS: usize = 4;
        #[inline(always)]
        unsafe fn key(rk: &[u8; 16]) -> Self {
            _mm512_broadcast_i32x4(_mm_loadu_si128(rk.as_ptr() as *const __m128i))
        }
        #[inline(always)]
        unsafe fn counters(first: u128) -> Self {
            let (lo, hi) = (first as u64 as i64, (first >> 64) as u64 as i64);
            _mm512_add_epi64(_mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo), _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0))
        }
        #[inline(always)]
        unsafe fn next(self) -> Self {
            _mm512_add_epi64(self, _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4))
        }
        #[inline(always)]
        unsafe fn encrypt<const N: usize>(x: &mut [Self; N], keys: &[Self; 11]) {
            encrypt_rounds(x, keys)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            _mm512_storeu_si512(p as *mut __m512i, self)
        }
    }

    impl Rounds for __m512i {
        #[inline(always)]
        unsafe fn xor(self, k: Self) -> Self {
            _mm512_xor_si512(self, k)
        }
        #[inline(always)]
        unsafe fn round(self, k: Self) -> Self {
            _mm512_aesenc_epi128(self, k)
        }
        #[inline(always)]
        unsafe fn last_round(self, k: Self) -> Self {
            _mm512_aesenclast_epi128(self, k)
        }
    }

}

/// aarch64: the ARMv8 AES instructions (`AESE` = add the round key, then SubBytes and
/// ShiftRows; `AESMC` = MixColumns), where the CPU has them, at [`Level::Neon`].
///
/// [`Level::Neon`]: crate::simd::Level::Neon
#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{keystream_with, AesLanes, Engine};
    use crate::simd::Level;

    fn has_aes() -> bool {
        std::arch::is_aarch64_feature_detected!("aes")
    }

    /// The engine of a level on this CPU.
    pub(super) fn engine(level: Level) -> Engine {
        if level >= Level::Neon && has_aes() {
            Engine::ArmAes
        } else {
            Engine::Crate
        }
    }

    /// The round keys (the CPU has the AES instructions: the only engine but the crate's).
    pub(super) fn round_keys(key: &[u8; 16]) -> [[u8; 16]; 11] {
        assert!(has_aes());
        // SAFETY: the AES instructions are present (NEON is baseline).
        unsafe { expand(key) }
    }

    /// AES-128 key expansion (FIPS-197), SubWord computed by `AESE` with a zero round key on
    /// the word repeated in all four columns (where ShiftRows moves nothing): constant time.
    #[target_feature(enable = "neon,aes")]
    unsafe fn expand(key: &[u8; 16]) -> [[u8; 16]; 11] {
        let sub_word = |w: u32| -> u32 {
            let s = vaeseq_u8(vreinterpretq_u8_u32(vdupq_n_u32(w)), vdupq_n_u8(0));
            vgetq_lane_u32::<0>(vreinterpretq_u32_u8(s))
        };
        let mut w = [0u32; 44];
        for (i, word) in key.chunks_exact(4).enumerate() {
            w[i] = u32::from_le_bytes(word.try_into().unwrap());
        }
        let mut rcon = 1u8;
        for i in 4..44 {
            let mut t = w[i - 1];
            if i % 4 == 0 {
                // RotWord on little-endian words is a rotation right by one byte.
                t = sub_word(t.rotate_right(8)) ^ rcon as u32;
                rcon = (rcon << 1) ^ if rcon & 0x80 != 0 { 0x1B } else { 0 };
            }
            w[i] = w[i - 4] ^ t;
        }
        let mut rk = [[0u8; 16]; 11];
        for (r, k) in rk.iter_mut().enumerate() {
            for (c, bytes) in k.chunks_exact_mut(4).enumerate() {
                bytes.copy_from_slice(&w[4 * r + c].to_le_bytes());
            }
        }
        rk
    }

    impl AesLanes for uint8x16_t {
        const BLOCKS: usize = 1;
        #[inline(always)]
        unsafe fn key(rk: &[u8; 16]) -> Self {
            vld1q_u8(rk.as_ptr())
        }
        #[inline(always)]
        unsafe fn counters(first: u128) -> Self {
            vld1q_u8(first.to_le_bytes().as_ptr())
        }
        #[inline(always)]
        unsafe fn next(self) -> Self {
            const ONE: [u64; 2] = [1, 0];
            vreinterpretq_u8_u64(vaddq_u64(vreinterpretq_u64_u8(self), vld1q_u64(ONE.as_ptr())))
        }
        /// `AESE` adds the round key first, so round `r` of FIPS-197 is `AESMC(AESE(x, k_r-1))`
        /// and the last one `AESE(x, k_9) ^ k_10`.
        #[inline]
        #[target_feature(enable = "neon,aes")]
        unsafe fn encrypt<const N: usize>(x: &mut [Self; N], keys: &[Self; 11]) {
            for key in &keys[..9] {
                for v in x.iter_mut() {
                    *v = vaesmcq_u8(vaeseq_u8(*v, *key));
                }
            }
            for v in x.iter_mut() {
                *v = veorq_u8(vaeseq_u8(*v, keys[9]), keys[10]);
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            vst1q_u8(p, self)
        }
    }

    /// AES-128-CTR from block `first` into `out` with `engine` (the low 64 bits of the counter
    /// must not wrap).
    ///
    /// # Safety
    /// The CPU must support the engine.
    pub(super) unsafe fn keystream(engine: Engine, rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        match engine {
            // SAFETY: the engine is only chosen with the AES instructions.
            Engine::ArmAes => unsafe { keystream_arm(rk, first, out) },
            _ => unreachable!("no such engine on aarch64"),
        }
    }

    #[target_feature(enable = "neon,aes")]
    unsafe fn keystream_arm(rk: &[[u8; 16]; 11], first: u128, out: &mut [u8]) {
        // SAFETY: compiled with the features of the lanes' instructions.
        unsafe { keystream_with::<uint8x16_t>(rk, first, out) }
    }

    pub(super) fn has_avx512bw() -> bool {
        false
    }

    pub(super) unsafe fn zp_groups_vaes(_: &[[u8; 16]; 11], _: u128, _: &mut [u8], _: u16, _: u16, _: u8, _: &mut [u64]) -> bool {
        unreachable!()
    }

    pub(super) unsafe fn zp_groups_vaes256(_: &[[u8; 16]; 11], _: u128, _: &mut [u8], _: u16, _: u16, _: u8, _: &mut [u64]) -> bool {
        unreachable!()
    }
}

/// Elsewhere: the `aes` crate.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod other {
    use super::Engine;

    pub(super) fn engine(_level: crate::simd::Level) -> Engine {
        Engine::Crate
    }

    pub(super) fn round_keys(_key: &[u8; 16]) -> [[u8; 16]; 11] {
        unreachable!("only the crate's engine exists here")
    }

    pub(super) unsafe fn keystream(_engine: Engine, _rk: &[[u8; 16]; 11], _first: u128, _out: &mut [u8]) {
        unreachable!()
    }

    pub(super) fn has_avx512bw() -> bool {
        false
    }

    pub(super) unsafe fn zp_groups_vaes(_: &[[u8; 16]; 11], _: u128, _: &mut [u8], _: u16, _: u16, _: u8, _: &mut [u64]) -> bool {
        unreachable!()
    }

    pub(super) unsafe fn zp_groups_vaes256(_: &[[u8; 16]; 11], _: u128, _: &mut [u8], _: u16, _: u16, _: u8, _: &mut [u64]) -> bool {
        unreachable!()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The engines of every level this CPU has.
    pub(crate) fn engines() -> Vec<Engine> {
        let mut v: Vec<Engine> = crate::simd::detected().up_to().into_iter().map(Engine::at).collect();
        #[cfg(target_arch = "x86_64")]
        if crate::simd::detected() >= crate::simd::Level::Avx2 && is_x86_feature_detected!("aes") {
            v.push(Engine::AesNi);
        }
        v.push(Engine::Crate);
        v.sort_by_key(|e| *e as u8);
        v.dedup();
        v
    }

    #[test]
    fn every_engine_gives_aes_of_the_counter() {
        let key = [7u8; 16];
        let aes = Aes128::new(&key.into());
        #[cfg(target_arch = "aarch64")]
        assert_eq!(engines().contains(&Engine::ArmAes), std::arch::is_aarch64_feature_detected!("aes"));
        for engine in engines() {
            let c = Cipher::with_engine(&key, engine);
            for first in [0u128, 5, (1 << 64) - 3, (1u128 << 127) | (9 << 64) | 17] {
                for len in [0usize, 1, 16, 17, 63, 64, 65, 511, 512, 513, 4096 + 40] {
                    let mut a = vec![0u8; len];
                    c.keystream(first, &mut a);
                    for (i, part) in a.chunks(16).enumerate() {
                        let mut block: Block = (first + i as u128).to_le_bytes().into();
                        aes.encrypt_block(&mut block);
                        assert_eq!(part, &block[..part.len()], "{engine:?}, first {first}, len {len}");
                    }
                }
            }
        }
    }

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
        let mut buf = vec![0u8; 1 << 16];
        for engine in tests::engines() {
            let (name, c) = (format!("{engine:?}"), Cipher::with_engine(&[1u8; 16], engine));
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
