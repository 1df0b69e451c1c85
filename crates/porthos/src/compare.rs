//! The Z_p part of the comparisons: the helper's dealing of shared bit decompositions and
//! PrivateCompare, fused and vectorised.
//!
//! Every Z_p message of these protocols is `64 n` bytes (one byte per element, eight to a
//! word, as in [`crate::ring`]); it is written straight into the words that go on the wire and
//! read straight out of the words that came in (their bytes are the elements on a
//! little-endian machine; big-endian ones reorder each word), with no intermediate vectors of
//! elements. The keystream elements involved are not materialised either: they are sampled
//! from [`ZpDraw`]s next to where they are used, a few thousand at a time, in parallel chunks.

use rayon::prelude::*;

use crate::prf::ZpDraw;
use crate::pool;
use crate::ring::P;
use crate::simd::{self, run_best, Level};
use crate::{pack, prof, BackendError, Porthos, ProtocolVariant, Result, CLIENT, HELPER, MODEL_OWNER};

/// Bits per value at full width (the lanes of one value's PrivateCompare vector).
pub(crate) const W: usize = 64;
/// Bits per value of a narrowed comparison (see [`Porthos::compare_compact_thresholds`]).
pub(crate) const NARROW: usize = 32;
/// Bits per value of the exact truncation's carry comparison for divisors up to `2^16`
/// ([`Porthos::exact_divide`]; the portable kernel only).
pub(crate) const SHORT: usize = 16;
/// Values per parallel task (even, so that alternating items split evenly between tasks).
const CHUNK: usize = 128;
const P16: u16 = P as u16;
/// Values per message of the Z_p protocols (1 MiB of elements for PrivateCompare; a multiple
/// of `CHUNK`, even): the helper's dealt bit shares and PrivateCompare's messages travel as a
/// stream of such blocks, so that computing, sending and the receiver's work overlap, and
/// PrivateCompare's helper never holds a whole layer's 128 bytes per value. Blocks go one way
/// without answers in between: the stream costs no extra rounds.
const STREAM: usize = 1 << 14;

/// A share-holder's Z_p shares of the low `lanes` bits (64, [`NARROW`] or [`SHORT`]) of `n` secret
/// values, as the helper dealt them. The received shares arrive as a stream of messages, one
/// per block of [`STREAM`] values, and are kept as they came.
pub(crate) struct BitShares {
    lanes: usize,
    source: Source,
}

#[allow(clippy::large_enum_variant)] // one per comparison
enum Source {
    /// Porthos: the items `i` with `i % 2 == mine` are elements `lanes (i / 2)..` of `drawn`
    /// (from the key this party shares with the helper); the others were received, item `i`
    /// being item `(i % STREAM) / 2` of block `i / STREAM` of `got`.
    Halved { drawn: ZpDraw, mine: usize, got: Vec<Vec<u64>> },
    /// SecureNN: every item was received, item `i` being item `i % STREAM` of block
    /// `i / STREAM`.
    Full(Vec<Vec<u64>>),
}

impl Drop for BitShares {
    fn drop(&mut self) {
        let (Source::Halved { got, .. } | Source::Full(got)) = &mut self.source;
        for block in got.drain(..) {
            pool::give(block);
        }
    }
}

impl BitShares {
    /// The shares of items `first..first + out.len() / lanes` (`first` even; the items lie in
    /// one block, as a `CHUNK` never straddles two).
    fn fill(&self, first: usize, out: &mut [u8]) {
        let w = self.lanes;
        let block = first / STREAM;
        debug_assert_eq!((first + out.len() / w - 1) / STREAM, block);
        match &self.source {
            Source::Full(got) => {
                let at = (first % STREAM) * w;
                out.copy_from_slice(&bytes(&got[block])[at..at + out.len()])
            }
            Source::Halved { drawn, mine, got } => {
                let got = bytes(&got[block]);
                let end = first + out.len() / w;
                // Items first.. alternate; the drawn ones are a contiguous run of `drawn`, and
                // so are the received ones.
                let first_mine = first + (first % 2 != *mine) as usize;
                let first_got = first + (first % 2 == *mine) as usize;
                let n_mine = end.saturating_sub(first_mine).div_ceil(2);
                let mut tmp = [0u8; CHUNK / 2 * W];
                drawn.fill(first_mine / 2 * w, &mut tmp[..n_mine * w]);
                let (mut a, mut b) = (0, (first_got % STREAM) / 2 * w);
                for (k, item) in out.chunks_exact_mut(w).enumerate() {
                    if (first + k) % 2 == *mine {
                        item.copy_from_slice(&tmp[a..a + w]);
                        a += w;
                    } else {
                        item.copy_from_slice(&got[b..b + w]);
                        b += w;
                    }
                }
            }
        }
    }
}

/// The number of values `i` in `start..start + m` with `i % 2 == parity`.
fn with_parity(start: usize, m: usize, parity: usize) -> usize {
    let first = start + (start % 2 != parity) as usize;
    (start + m).saturating_sub(first).div_ceil(2)
}

thread_local! {
    /// Per-thread scratch for the chunks of PrivateCompare (three arrays of `CHUNK` values'
    /// 64 elements), allocated and zeroed once rather than on every chunk.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 3 * CHUNK * W]);
}

fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The bytes of a message (the Z_p elements it carries, on a little-endian machine).
fn bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and every byte of a u64 is initialised; same memory.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) }
}

fn bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: as in `bytes`; any byte pattern is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) }
}

/// A message of `len` Z_p elements as received: byte order fixed up and every element
/// checked to be below p.
fn check_zp(words: &mut [u64]) -> bool {
    from_wire(words);
    bytes(words).par_chunks(1 << 16).all(|c| run_best(|| c.iter().fold(0u8, |m, &b| m.max(b))) < P)
}

/// Puts the bytes of a received message in element order (a no-op on little-endian machines).
fn from_wire(words: &mut [u64]) {
    if cfg!(target_endian = "big") {
        for w in words.iter_mut() {
            *w = u64::from_le(*w);
        }
    }
}

/// Makes a message written through [`bytes_mut`] little-endian on the wire.
fn to_wire(mut words: Vec<u64>) -> Vec<u64> {
    if cfg!(target_endian = "big") {
        for w in words.iter_mut() {
            *w = w.to_le();
        }
    }
    words
}

#[inline(always)]
fn sub_p(a: u8, b: u8) -> u8 {
    let d = a + P - b;
    if d >= P {
        d - P
    } else {
        d
    }
}

impl Porthos {
    /// Whether Z_p messages travel seven bits per element ([`pack`]; the compact variant).
    fn packs_zp(&self) -> bool {
        self.variant == ProtocolVariant::Compact
    }

    /// Sends a Z_p message written through [`bytes_mut`].
    fn send_zp(&mut self, to: usize, words: Vec<u64>) -> Result<()> {
        let words = to_wire(words);
        if !self.packs_zp() {
            return self.send(to, words);
        }
        let packed = {
            let _p = prof::scope("wire.pack");
            pack::pack(&words)
        };
        pool::give(words);
        self.send(to, packed)
    }

    /// Receives a Z_p message of `words` words, in wire order (see [`from_wire`]).
    fn recv_zp_words(&mut self, from: usize, words: usize) -> Result<Vec<u64>> {
        if !self.packs_zp() {
            return self.recv(from, words);
        }
        let packed = self.recv(from, pack::packed_words(words))?;
        let _p = prof::scope("wire.unpack");
        pack::unpack(&packed, words).ok_or_else(|| BackendError::Peer { peer: from, reason: "sent a packed Z_p message with nonzero padding".into() })
    }

    fn recv_zp(&mut self, from: usize, elements: usize) -> Result<Vec<u64>> {
        let mut words = self.recv_zp_words(from, elements / 8)?;
        let _p = prof::scope("wire.check");
        if !check_zp(&mut words) {
            return Err(BackendError::Peer { peer: from, reason: "sent an element outside Z_p".into() });
        }
        Ok(words)
    }

    /// The helper deals fresh shares over Z_p of the low `lanes` bits (64, [`NARROW`], [`SHORT`]) of
    /// every value of `x` (the helper passes `Some(x)`, the others `None` and `n`); the
    /// share-holders get their [`BitShares`], the helper `None`. In the Porthos variant item
    /// `i` has one share drawn from a key the helper shares with a party (P0 for even
    /// `i + parity`, P1 otherwise) and the other one sent (`lanes n` elements on the wire in
    /// all); in SecureNN both are sent, the first drawn from the helper's private randomness.
    pub(crate) fn deal_bits(&mut self, x: Option<&[u64]>, n: usize, lanes: usize) -> Result<Option<BitShares>> {
        assert!(matches!(lanes, W | NARROW | SHORT));
        let w = lanes;
        let _p = prof::scope(if self.id == HELPER { "deal_bits (helper)" } else { "deal_bits (receive)" });
        if self.porthos() {
            let parity = self.parity;
            self.parity = (parity + n) % 2;
            let n0 = if parity == 0 { n.div_ceil(2) } else { n / 2 };
            let n1 = n - n0;
            match self.id {
                HELPER => {
                    let x = x.expect("the helper deals its own values");
                    let r0 = self.helper_key(MODEL_OWNER).draw_zp(n0 * w, false);
                    let r1 = self.helper_key(CLIENT).draw_zp(n1 * w, false);
                    // Block by block (see `STREAM`): item i goes to P1 (P0's share drawn) when
                    // i = parity (mod 2), else to P0.
                    for start in (0..n).step_by(STREAM) {
                        let m = STREAM.min(n - start);
                        let to_p1 = with_parity(start, m, parity);
                        let mut for_p0 = pool::take((m - to_p1) * w / 8);
                        let mut for_p1 = pool::take(to_p1 * w / 8);
                        {
                            let blocks = m.div_ceil(CHUNK);
                            let mut p0_parts: Vec<&mut [u8]> = bytes_mut(&mut for_p0).chunks_mut(CHUNK / 2 * w).collect();
                            let mut p1_parts: Vec<&mut [u8]> = bytes_mut(&mut for_p1).chunks_mut(CHUNK / 2 * w).collect();
                            p0_parts.resize_with(blocks, Default::default);
                            p1_parts.resize_with(blocks, Default::default);
                            x[start..start + m].par_chunks(CHUNK).zip(p0_parts.into_par_iter().zip(p1_parts)).enumerate().for_each(
                                |(b, (xs, (p0, p1)))| {
                                    let first = start + b * CHUNK;
                                    let mut r = [0u8; CHUNK / 2 * W];
                                    r0.fill(first / 2 * w, &mut r[..p1.len()]);
                                    run_best(|| subtract_bits(xs.iter().copied().skip(parity).step_by(2), &r, p1, w));
                                    r1.fill(first / 2 * w, &mut r[..p0.len()]);
                                    run_best(|| subtract_bits(xs.iter().copied().skip(1 - parity).step_by(2), &r, p0, w));
                                },
                            );
                        }
                        self.send_zp(MODEL_OWNER, for_p0)?;
                        self.send_zp(CLIENT, for_p1)?;
                    }
                    Ok(None)
                }
                j => {
                    let drawn = if j == MODEL_OWNER { n0 } else { n1 };
                    let drawn = self.with_helper().draw_zp(drawn * w, false);
                    let mine = if j == MODEL_OWNER { parity } else { 1 - parity };
                    let mut got = Vec::with_capacity(n.div_ceil(STREAM));
                    for start in (0..n).step_by(STREAM) {
                        let m = STREAM.min(n - start);
                        got.push(self.recv_zp(HELPER, with_parity(start, m, 1 - mine) * w)?);
                    }
                    Ok(Some(BitShares { lanes, source: Source::Halved { drawn, mine, got } }))
                }
            }
        } else {
            match self.id {
                HELPER => {
                    let x = x.expect("the helper deals its own values");
                    let r = self.own.draw_zp(n * w, false);
                    for start in (0..n).step_by(STREAM) {
                        let m = STREAM.min(n - start);
                        let mut first = pool::take(m * w / 8);
                        let mut second = pool::take(m * w / 8);
                        bytes_mut(&mut first)
                            .par_chunks_mut(CHUNK * w)
                            .zip(bytes_mut(&mut second).par_chunks_mut(CHUNK * w))
                            .zip(x[start..start + m].par_chunks(CHUNK))
                            .enumerate()
                            .for_each(|(b, ((r_out, v_out), xs))| {
                                r.fill((start + b * CHUNK) * w, r_out);
                                run_best(|| subtract_bits(xs.iter().copied(), r_out, v_out, w));
                            });
                        self.send_zp(MODEL_OWNER, first)?;
                        self.send_zp(CLIENT, second)?;
                    }
                    Ok(None)
                }
                _ => {
                    let mut got = Vec::with_capacity(n.div_ceil(STREAM));
                    for start in (0..n).step_by(STREAM) {
                        got.push(self.recv_zp(HELPER, STREAM.min(n - start) * w)?);
                    }
                    Ok(Some(BitShares { lanes, source: Source::Full(got) }))
                }
            }
        }
    }

    /// PrivateCompare (SecureNN Algorithm 3). P0 and P1 hold [`BitShares`] `xbits` of the
    /// `lanes` bits of `n` secrets `x`, public values `r` (below `2^lanes`) and common bits
    /// `beta`; the helper learns `beta XOR (x > r)` (returned to it; P0 and P1 get an empty
    /// vector). Communication: `lanes` Z_p elements from each of P0 and P1 per value.
    ///
    /// The messages are masked with common random shares of zero before they leave P0 and P1,
    /// so the helper sees only the reconstructed (multiplicatively blinded, rotated) vector
    /// and not the pair of shares. The common permutation is a uniformly random rotation of
    /// the `lanes` positions: the blinded vector has at most one zero and independent uniform
    /// nonzero entries elsewhere, so a uniform rotation already puts the zero at a uniform
    /// position.
    pub(crate) fn private_compare(&mut self, xbits: Option<&BitShares>, r: &[u64], beta: &[u8], n: usize, lanes: usize) -> Result<Vec<u8>> {
        assert!(matches!(lanes, W | NARROW | SHORT));
        let w = lanes;
        let _p = prof::scope("private_compare");
        if self.id == HELPER {
            // Block by block, as they arrive (see `STREAM`); checked for elements outside Z_p in
            // the same pass as the comparison.
            let mut out = vec![0u8; n];
            for (block, out) in out.chunks_mut(STREAM).enumerate() {
                let m = out.len();
                let mut d0 = self.recv_zp_words(MODEL_OWNER, m * w / 8)?;
                let mut d1 = self.recv_zp_words(CLIENT, m * w / 8)?;
                let _p = prof::scope("private_compare (helper)");
                from_wire(&mut d0);
                from_wire(&mut d1);
                let (max0, max1) = out
                    .par_chunks_mut(CHUNK)
                    .zip(bytes(&d0).par_chunks(CHUNK * w).zip(bytes(&d1).par_chunks(CHUNK * w)))
                    .map(|(out, (a, b))| helper_chunk(simd::level(), w, out, a, b))
                    .reduce(|| (0, 0), |x, y| (x.0.max(y.0), x.1.max(y.1)));
                for (peer, max) in [(MODEL_OWNER, max0), (CLIENT, max1)] {
                    if max >= P {
                        return Err(BackendError::Peer { peer, reason: format!("sent an element outside Z_p (comparison block {block})") });
                    }
                }
                pool::give(d0);
                pool::give(d1);
            }
            return Ok(out);
        }
        let xbits = xbits.expect("share-holders pass their bit shares");
        assert_eq!(xbits.lanes, lanes, "bit shares dealt for another width");
        let lead = self.id == MODEL_OWNER;
        let s = self.common().draw_zp(n * w, true);
        let z = self.common().draw_zp(n * w, false);
        let mut rot = vec![0u8; n];
        self.common().fill_bytes(&mut rot);
        // Sent block by block: the helper compares one block (and the link carries the next)
        // while this party computes the one after.
        for start in (0..n).step_by(STREAM) {
            let m = STREAM.min(n - start);
            let mut d = pool::take(m * w / 8);
            {
                let _p = prof::scope("private_compare (compute)");
                bytes_mut(&mut d).par_chunks_mut(CHUNK * w).enumerate().for_each(|(b, out)| {
                    let first = start + b * CHUNK;
                    let count = out.len() / w;
                    with_scratch(|scratch| {
                        let (xs, rest) = scratch.split_at_mut(CHUNK * W);
                        let (ss, zs) = rest.split_at_mut(CHUNK * W);
                        xbits.fill(first, &mut xs[..count * w]);
                        s.fill(first * w, &mut ss[..count * w]);
                        z.fill(first * w, &mut zs[..count * w]);
                        let at = first..first + count;
                        let args = (&xs[..count * w], &r[at.clone()], &beta[at.clone()], &ss[..count * w], &zs[..count * w], &rot[at]);
                        if lead {
                            compare_chunk::<true>(w, args.0, args.1, args.2, args.3, args.4, args.5, out);
                        } else {
                            compare_chunk::<false>(w, args.0, args.1, args.2, args.3, args.4, args.5, out);
                        }
                    })
                });
            }
            self.send_zp(HELPER, d)?;
        }
        Ok(Vec::new())
    }
}

/// Byte `k` of `BIT_BYTES[v]` is bit `k` of `v` (0 or 1): expands 8 bits at a time.
static BIT_BYTES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut v = 0;
    while v < 256 {
        let mut k = 0;
        while k < 8 {
            t[v] |= (((v >> k) & 1) as u64) << (8 * k);
            k += 1;
        }
        v += 1;
    }
    t
};

/// The 64 bits of `x` (least significant first), one byte each.
#[inline(always)]
fn bits_of(x: u64) -> [u8; W] {
    let mut out = [0u8; W];
    for (k, o) in out.chunks_exact_mut(8).enumerate() {
        o.copy_from_slice(&BIT_BYTES[((x >> (8 * k)) & 0xFF) as usize].to_le_bytes());
    }
    out
}

/// The helper's message elements for some items: for each value `x` of `xs` (in order) and
/// its `lanes` drawn shares in `r`, the `lanes` elements `bit_k(x) - r_k` (mod p).
#[inline]
pub(crate) fn subtract_bits(xs: impl Iterator<Item = u64>, r: &[u8], out: &mut [u8], lanes: usize) {
    for ((o, r), x) in out.chunks_exact_mut(lanes).zip(r.chunks_exact(lanes)).zip(xs) {
        let bits = bits_of(x);
        for k in 0..lanes {
            o[k] = sub_p(bits[k], r[k]);
        }
    }
}

/// The helper's side of PrivateCompare for some values: `out[k]` is whether the sum of the
/// two received vectors `a`, `b` of value `k` (`lanes` bytes each) has a zero mod p; returns
/// the largest element of `a` and of `b` (for the range check). One portable loop, vectorised
/// by LLVM for the level (the byte compares and maxima need nothing else), except on aarch64
/// ([`neon::helper`]: LLVM vectorised the 32-lane loop across values, with byte loads).
pub(crate) fn helper_chunk(level: Level, lanes: usize, out: &mut [u8], a: &[u8], b: &[u8]) -> (u8, u8) {
    match lanes {
        W => helper_chunk_of::<W>(level, out, a, b),
        NARROW => helper_chunk_of::<NARROW>(level, out, a, b),
        SHORT => helper_chunk_of::<SHORT>(level, out, a, b),
        _ => unreachable!("PrivateCompare runs on {W}, {NARROW} or {SHORT} lanes"),
    }
}

fn helper_chunk_of<const L: usize>(level: Level, out: &mut [u8], a: &[u8], b: &[u8]) -> (u8, u8) {
    #[cfg(target_arch = "aarch64")]
    if level >= Level::Neon && (L == W || L == NARROW) {
        return neon::helper::<L>(out, a, b);
    }
    simd::run(level, || {
        let (mut m0, mut m1) = (0u8, 0u8);
        for (o, (a, b)) in out.iter_mut().zip(a.chunks_exact(L).zip(b.chunks_exact(L))) {
            let (a, b): (&[u8; L], &[u8; L]) = (a.try_into().unwrap(), b.try_into().unwrap());
            *o = has_zero(a, b) as u8;
            m0 = m0.max(a.iter().fold(0, |m, &v| m.max(v)));
            m1 = m1.max(b.iter().fold(0, |m, &v| m.max(v)));
        }
        (m0, m1)
    })
}

/// Whether the blinded vector of one value has a zero: `a_i + b_i = 0 (mod p)` for some `i`.
#[inline]
fn has_zero<const L: usize>(a: &[u8; L], b: &[u8; L]) -> bool {
    let mut hit = 0u8;
    for i in 0..L {
        let s = a[i].wrapping_add(b[i]);
        hit |= (s == 0) as u8 | (s == P) as u8;
    }
    hit != 0
}

/// `a + b mod p` for `a, b < p` (a byte lane: `min(s, s - p)` picks the reduced sum).
#[inline(always)]
fn add_mod(a: u8, b: u8) -> u8 {
    let s = a + b;
    s.min(s.wrapping_sub(P))
}

/// Reduces `v < 2p` mod p.
#[inline(always)]
fn reduce(v: u8) -> u8 {
    v.min(v.wrapping_sub(P))
}

/// A generator of Z_p^* (2 has order 66 mod 67).
const G: u8 = 2;

/// `EXP[k] = G^k mod p` for `k < 66`; the rest zero (128 entries: a two-register VBMI table).
static EXP: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut k = 0;
    let mut v = 1u32;
    while k < 66 {
        t[k] = v as u8;
        v = v * G as u32 % P as u32;
        k += 1;
    }
    t
};

/// `LOG[v] = k` with `G^k = v` for `0 < v < p`; the rest zero.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the VBMI kernel's
static LOG: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut k = 0;
    while k < 66 {
        t[EXP[k] as usize] = k as u8;
        k += 1;
    }
    t
};

/// PrivateCompare's messages for `r.len()` values (see [`compare_element`]): `lanes` bytes
/// each of `xs`, `s`, `z` and `out`.
#[inline]
#[allow(clippy::too_many_arguments)]
fn compare_chunk<const LEAD: bool>(lanes: usize, xs: &[u8], r: &[u64], beta: &[u8], s: &[u8], z: &[u8], rot: &[u8], out: &mut [u8]) {
    compare_chunk_at::<LEAD>(simd::level(), lanes, xs, r, beta, s, z, rot, out)
}

/// [`compare_chunk`] at a level: AVX-512 with VBMI ([`vbmi`]: one value of 64 lanes, or two of
/// [`NARROW`], per register), AVX2 ([`avx2`]; also AVX-512 without VBMI), NEON ([`neon`]), or
/// the portable [`compare_element`] (the scalar reference).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn compare_chunk_at<const LEAD: bool>(level: Level, lanes: usize, xs: &[u8], r: &[u64], beta: &[u8], s: &[u8], z: &[u8], rot: &[u8], out: &mut [u8]) {
    assert!(level <= simd::detected());
    assert!(matches!(lanes, W | NARROW | SHORT), "PrivateCompare runs on {W}, {NARROW} or {SHORT} lanes");
    let narrow = lanes == NARROW;
    #[cfg(target_arch = "x86_64")]
    if lanes == SHORT && level >= Level::Avx2 {
        // SAFETY: the CPU has AVX2 (the level does not exceed the detected one).
        unsafe { avx2::compare_short::<LEAD>(xs, r, beta, s, z, rot, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if lanes != SHORT {
        if level >= Level::Avx512 && vbmi::available() {
            // SAFETY: the CPU has the features.
            unsafe {
                if narrow {
                    vbmi::compare_narrow::<LEAD>(xs, r, beta, s, z, rot, out)
                } else {
                    vbmi::compare_chunk::<LEAD>(xs, r, beta, s, z, rot, out)
                }
            };
            return;
        }
        if level >= Level::Avx2 {
            // SAFETY: the CPU has AVX2 (the level does not exceed the detected one).
            unsafe {
                if narrow {
                    avx2::compare_narrow::<LEAD>(xs, r, beta, s, z, rot, out)
                } else {
                    avx2::compare_chunk::<LEAD>(xs, r, beta, s, z, rot, out)
                }
            };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // Only the lane counts the NEON kernels have; any other one runs the portable path.
        if level >= Level::Neon && (lanes == W || lanes == NARROW) {
            if narrow {
                neon::compare::<LEAD, 2>(xs, r, beta, s, z, rot, out)
            } else {
                neon::compare::<LEAD, 4>(xs, r, beta, s, z, rot, out)
            }
            return;
        }
    }
    match lanes {
        NARROW => compare_portable::<LEAD, NARROW>(xs, r, beta, s, z, rot, out),
        SHORT => compare_portable::<LEAD, SHORT>(xs, r, beta, s, z, rot, out),
        _ => compare_portable::<LEAD, W>(xs, r, beta, s, z, rot, out),
    }
}

/// The portable [`compare_chunk_at`] on `L` lanes.
#[allow(clippy::too_many_arguments)]
fn compare_portable<const LEAD: bool, const L: usize>(xs: &[u8], r: &[u64], beta: &[u8], s: &[u8], z: &[u8], rot: &[u8], out: &mut [u8]) {
    for (k, out) in out.chunks_exact_mut(L).enumerate() {
        let at = k * L..(k + 1) * L;
        let (xs, s, z) = (xs[at.clone()].try_into().unwrap(), s[at.clone()].try_into().unwrap(), z[at].try_into().unwrap());
        compare_element::<LEAD, L>(xs, r[k], beta[k], s, z, rot[k] as usize % L, out.try_into().unwrap());
    }
}

/// One value of PrivateCompare on `L` lanes (64, [`NARROW`], [`SHORT`]; `x`, `r` below `2^L`) at a
/// share-holder: `xs` its shares of the bits of x, `r`,
/// `beta`, the common uniform multipliers `s` (in Z_p^*), zero-sharing masks `z` and rotation
/// `shift`; writes the `L` blinded elements to send.
///
/// `c_i = r_i - x_i + 1 + sum_{k > i} (x_k xor r_k)` for `beta = 0`, and with `t = r + 1`,
/// `c_i = x_i - t_i + 1 + sum_{k > i} (x_k xor t_k)` for `beta = 1` (SecureNN Algorithm 3;
/// for `beta = 1, r = 2^L - 1` a fixed vector with exactly one zero). Sent:
/// `d_{(i + shift) mod L} = s_i c_i +- z_i`. The sums over `k > i` are suffix sums,
/// taken mod p. (This is the portable version; [`vbmi::compare_chunk`] computes the same.)
#[inline(always)]
fn compare_element<const LEAD: bool, const L: usize>(xs: &[u8; L], r: u64, beta: u8, s: &[u8; L], z: &[u8; L], shift: usize, out: &mut [u8; L]) {
    let lead = LEAD as u8;
    let mut c = [0u8; L];
    let top = u64::MAX >> (W - L);
    debug_assert!(r <= top);
    if beta == 1 && r == top {
        // x > 2^L - 1 never holds, so beta' = 1: exactly one zero.
        if LEAD {
            for (i, ci) in c.iter_mut().enumerate() {
                *ci = (i != 0) as u8;
            }
        }
    } else {
        let t = if beta == 1 { r + 1 } else { r };
        let tbits = bits_of(t);
        // w_i: shares of x_i xor t_i; base_i: the other terms of c_i.
        let mut acc = 0u8;
        for i in (0..L).rev() {
            let (tb, x) = (tbits[i], xs[i]);
            let base = reduce(if beta == 0 { P - x + lead * (tb + 1) } else { x + lead * (1 - tb) });
            c[i] = add_mod(base, acc);
            acc = add_mod(acc, if tb == 0 { x } else { reduce(lead + P - x) });
        }
    }
    let mut d = [0u8; L];
    for i in 0..L {
        let zi = if LEAD { z[i] as u16 } else { P16 - z[i] as u16 };
        d[i] = ((s[i] as u16 * c[i] as u16 + zi) % P16) as u8;
    }
    out[shift..].copy_from_slice(&d[..L - shift]);
    out[..shift].copy_from_slice(&d[L - shift..]);
}

/// PrivateCompare in 512-bit registers (AVX-512BW and VBMI): one value per register, 64 byte
/// lanes. The suffix sums are six doubling steps of lane shifts (VPERMB with zeroing), the
/// products `s c` are `EXP[(LOG[s] + LOG[c]) mod 66]` by two-register table look-ups
/// (VPERMI2B), and the rotation is one more VPERMB.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

    use super::{EXP, LOG, P, W};

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vbmi")
    }

    static IOTA: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            t[i] = i as u8;
            i += 1;
        }
        t
    };

    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        _mm512_loadu_si512(p as *const __m512i)
    }

    /// `a + b mod p` for lanes below p.
    #[inline(always)]
    unsafe fn add_mod(a: __m512i, b: __m512i, p: __m512i) -> __m512i {
        let s = _mm512_add_epi8(a, b);
        _mm512_min_epu8(s, _mm512_sub_epi8(s, p))
    }

    /// Lane i of the result is lane i + SH of `v` (zero past the end).
    #[inline(always)]
    unsafe fn shift_down<const SH: u32>(v: __m512i, iota: __m512i) -> __m512i {
        let keep: __mmask64 = u64::MAX >> SH;
        _mm512_maskz_permutexvar_epi8(keep, _mm512_add_epi8(iota, _mm512_set1_epi8(SH as i8)), v)
    }

    /// As `super::compare_chunk` (the same bytes).
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn compare_chunk<const LEAD: bool>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        let count = out.len() / W;
        assert!(xs.len() >= count * W && s.len() >= count * W && z.len() >= count * W);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let p = _mm512_set1_epi8(P as i8);
        let p1 = _mm512_set1_epi8(P as i8 - 1);
        let one = _mm512_set1_epi8(1);
        let zero = _mm512_setzero_si512();
        let iota = load(IOTA.as_ptr());
        let (log_lo, log_hi) = (load(LOG.as_ptr()), load(LOG.as_ptr().add(64)));
        let (exp_lo, exp_hi) = (load(EXP.as_ptr()), load(EXP.as_ptr().add(64)));
        for k in 0..count {
            let x = load(xs.as_ptr().add(k * W));
            let (rv, b) = (r[k], beta[k]);
            let c = if b == 1 && rv == u64::MAX {
                if LEAD {
                    _mm512_maskz_mov_epi8(!1u64, one)
                } else {
                    zero
                }
            } else {
                let t: __mmask64 = if b == 1 { rv + 1 } else { rv };
                // lead + p - x (in 1..=68), reduced: the share of 1 - x.
                let lpx = _mm512_sub_epi8(if LEAD { _mm512_add_epi8(p, one) } else { p }, x);
                let w = _mm512_mask_blend_epi8(t, x, _mm512_min_epu8(lpx, _mm512_sub_epi8(lpx, p)));
                let base = if b == 0 {
                    // p - x + lead (t_i + 1)
                    if LEAD {
                        _mm512_mask_add_epi8(lpx, t, lpx, one)
                    } else {
                        lpx
                    }
                } else if LEAD {
                    // x + lead (1 - t_i)
                    _mm512_mask_add_epi8(x, !t, x, one)
                } else {
                    x
                };
                let base = _mm512_min_epu8(base, _mm512_sub_epi8(base, p));
                // e_i = sum_{k > i} w_k: shift by one, then inclusive suffix sums.
                let mut e = shift_down::<1>(w, iota);
                e = add_mod(e, shift_down::<1>(e, iota), p);
                e = add_mod(e, shift_down::<2>(e, iota), p);
                e = add_mod(e, shift_down::<4>(e, iota), p);
                e = add_mod(e, shift_down::<8>(e, iota), p);
                e = add_mod(e, shift_down::<16>(e, iota), p);
                e = add_mod(e, shift_down::<32>(e, iota), p);
                add_mod(base, e, p)
            };
            // s c = EXP[(LOG[s] + LOG[c]) mod 66], zero where c = 0.
            let ls = _mm512_permutex2var_epi8(log_lo, load(s.as_ptr().add(k * W)), log_hi);
            let sum = _mm512_add_epi8(ls, _mm512_permutex2var_epi8(log_lo, c, log_hi));
            let sum = _mm512_min_epu8(sum, _mm512_sub_epi8(sum, p1));
            let nonzero = _mm512_cmpneq_epi8_mask(c, zero);
            let prod = _mm512_maskz_permutex2var_epi8(nonzero, exp_lo, sum, exp_hi);
            let zv = load(z.as_ptr().add(k * W));
            let zv = if LEAD {
                zv
            } else {
                let m = _mm512_sub_epi8(p, zv);
                _mm512_min_epu8(m, _mm512_sub_epi8(m, p))
            };
            let d = add_mod(prod, zv, p);
            // out[(i + shift) mod 64] = d[i]: lane j takes lane j - shift (VPERMB reads the
            // low six index bits).
            let idx = _mm512_sub_epi8(iota, _mm512_set1_epi8((rot[k] as usize % W) as i8));
            _mm512_storeu_si512(out.as_mut_ptr().add(k * W) as *mut __m512i, _mm512_permutexvar_epi8(idx, d));
        }
    }

    /// Lane i of the result is lane i + SH of `v` within its half of 32 lanes (zero past the
    /// half's end).
    #[inline(always)]
    unsafe fn shift_down_half<const SH: u32>(v: __m512i, iota: __m512i) -> __m512i {
        let half = (u32::MAX >> SH) as u64;
        _mm512_maskz_permutexvar_epi8(half | half << 32, _mm512_add_epi8(iota, _mm512_set1_epi8(SH as i8)), v)
    }

    /// As `super::compare_chunk_at` on 32 lanes (the same bytes): two values of 32 lanes per register,
    /// their suffix sums kept within their halves, each rotated within its half.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn compare_narrow<const LEAD: bool>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        const L: usize = super::NARROW;
        let count = out.len() / L;
        assert!(xs.len() >= count * L && s.len() >= count * L && z.len() >= count * L);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let p = _mm512_set1_epi8(P as i8);
        let p1 = _mm512_set1_epi8(P as i8 - 1);
        let one = _mm512_set1_epi8(1);
        let zero = _mm512_setzero_si512();
        let iota = load(IOTA.as_ptr());
        let low5 = _mm512_set1_epi8(31);
        let half_base = _mm512_and_si512(iota, _mm512_set1_epi8(32));
        let (log_lo, log_hi) = (load(LOG.as_ptr()), load(LOG.as_ptr().add(64)));
        let (exp_lo, exp_hi) = (load(EXP.as_ptr()), load(EXP.as_ptr().add(64)));
        const HALF: u64 = u32::MAX as u64;
        let mut k = 0;
        while k < count {
            let pair = (count - k).min(2);
            let lanes: __mmask64 = if pair == 2 { u64::MAX } else { HALF };
            let at = k * L;
            let x = _mm512_maskz_loadu_epi8(lanes, xs.as_ptr().add(at) as *const i8);
            // Per half: the bits of t, whether beta = 1, whether it is the special case.
            let (mut t, mut beta1, mut special) = (0u64, 0u64, 0u64);
            let mut shifts = [0i8; 2];
            for h in 0..pair {
                let (rv, b) = (r[k + h], beta[k + h]);
                if b == 1 {
                    beta1 |= HALF << (32 * h);
                }
                if b == 1 && rv == HALF {
                    special |= HALF << (32 * h);
                } else {
                    let th = if b == 1 { rv + 1 } else { rv };
                    t |= (th & HALF) << (32 * h);
                }
                shifts[h] = (rot[k + h] as usize % L) as i8;
            }
            // lead + p - x (in 1..=68), reduced: the share of 1 - x.
            let lpx = _mm512_sub_epi8(if LEAD { _mm512_add_epi8(p, one) } else { p }, x);
            let w = _mm512_mask_blend_epi8(t, x, _mm512_min_epu8(lpx, _mm512_sub_epi8(lpx, p)));
            // beta = 0: p - x + lead (t_i + 1); beta = 1: x + lead (1 - t_i).
            let (base0, base1) = if LEAD { (_mm512_mask_add_epi8(lpx, t, lpx, one), _mm512_mask_add_epi8(x, !t, x, one)) } else { (lpx, x) };
            let base = _mm512_mask_blend_epi8(beta1, base0, base1);
            let base = _mm512_min_epu8(base, _mm512_sub_epi8(base, p));
            let mut e = shift_down_half::<1>(w, iota);
            e = add_mod(e, shift_down_half::<1>(e, iota), p);
            e = add_mod(e, shift_down_half::<2>(e, iota), p);
            e = add_mod(e, shift_down_half::<4>(e, iota), p);
            e = add_mod(e, shift_down_half::<8>(e, iota), p);
            e = add_mod(e, shift_down_half::<16>(e, iota), p);
            let c = add_mod(base, e, p);
            // The special case's fixed vector: the lead's share is 0 at lane 0 of its half and
            // 1 elsewhere, the other's 0.
            let fixed = if LEAD { _mm512_maskz_mov_epi8(!(1u64 | 1u64 << 32), one) } else { zero };
            let c = _mm512_mask_blend_epi8(special, c, fixed);
            // s c = EXP[(LOG[s] + LOG[c]) mod 66], zero where c = 0.
            let sv = _mm512_maskz_loadu_epi8(lanes, s.as_ptr().add(at) as *const i8);
            let ls = _mm512_permutex2var_epi8(log_lo, sv, log_hi);
            let sum = _mm512_add_epi8(ls, _mm512_permutex2var_epi8(log_lo, c, log_hi));
            let sum = _mm512_min_epu8(sum, _mm512_sub_epi8(sum, p1));
            let nonzero = _mm512_cmpneq_epi8_mask(c, zero);
            let prod = _mm512_maskz_permutex2var_epi8(nonzero, exp_lo, sum, exp_hi);
            let zv = _mm512_maskz_loadu_epi8(lanes, z.as_ptr().add(at) as *const i8);
            let zv = if LEAD {
                zv
            } else {
                let m = _mm512_sub_epi8(p, zv);
                _mm512_min_epu8(m, _mm512_sub_epi8(m, p))
            };
            let d = add_mod(prod, zv, p);
            // out[h 32 + (i + shift_h) mod 32] = d[h 32 + i].
            let shift = _mm512_mask_blend_epi8(HALF << 32, _mm512_set1_epi8(shifts[0]), _mm512_set1_epi8(shifts[1]));
            let idx = _mm512_or_si512(_mm512_and_si512(_mm512_sub_epi8(iota, shift), low5), half_base);
            _mm512_mask_storeu_epi8(out.as_mut_ptr().add(at) as *mut i8, lanes, _mm512_permutexvar_epi8(idx, d));
            k += pair;
        }
    }
}

/// PrivateCompare in 256-bit registers (AVX2): one value in two registers of 32 byte lanes
/// (a narrowed value of 32 lanes in one register, [`avx2::compare_narrow`]).
/// AVX2 has no cross-lane byte permutes and 16-entry table look-ups only, so: the suffix sums
/// are four in-lane byte shifts (inclusive sums within each 16-byte group) plus the totals of
/// the higher groups; the products `s c` are computed directly, the 8 x 8-bit products by
/// `vpmaddubsw` (even and odd bytes apart) and the reduction mod p by a multiply-high by
/// `floor(2^16 / p)` (exact below 66^2: the remainder lands in `0..2p`, one more conditional
/// subtraction); and the rotation is two unaligned loads from the value stored twice. Values
/// of [`SHORT`] lanes go two to a register ([`avx2::compare_short`]).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{P, W};

    /// `[1, 2, 4, .., 128]` four times: the bit of each byte lane within its byte of `t`.
    static BITS: [u8; 32] = {
        let mut t = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = 1 << (i % 8);
            i += 1;
        }
        t
    };
    /// Byte `i` of a lane takes byte `i / 8` of the 32-bit word (lanes: bytes 0..16 -> 0, 1;
    /// 16..32 -> 2, 3).
    static SPREAD: [u8; 32] = {
        let mut t = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = (i / 8) as u8;
            i += 1;
        }
        t
    };
    /// The lead share of the special case's vector: 0 then 1s.
    static FIRST_ZERO: [u8; 32] = {
        let mut t = [1u8; 32];
        t[0] = 0;
        t
    };

    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }

    /// `v mod p` for `v < 2p`.
    #[inline(always)]
    unsafe fn reduce(v: __m256i, p: __m256i) -> __m256i {
        _mm256_min_epu8(v, _mm256_sub_epi8(v, p))
    }

    #[inline(always)]
    unsafe fn add_mod(a: __m256i, b: __m256i, p: __m256i) -> __m256i {
        reduce(_mm256_add_epi8(a, b), p)
    }

    #[inline(always)]
    unsafe fn sub_mod(a: __m256i, b: __m256i, p: __m256i) -> __m256i {
        reduce(_mm256_sub_epi8(_mm256_add_epi8(a, p), b), p)
    }

    /// 0xFF in byte lane `i` where bit `i` of `word` is set.
    #[inline(always)]
    unsafe fn bit_mask(word: u32, spread: __m256i, bits: __m256i) -> __m256i {
        let v = _mm256_shuffle_epi8(_mm256_set1_epi32(word as i32), spread);
        _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits)
    }

    /// 16-bit lanes `v < 66^2` reduced to `0..2p` (see the module doc).
    #[inline(always)]
    unsafe fn reduce16(v: __m256i) -> __m256i {
        let q = _mm256_mulhi_epu16(v, _mm256_set1_epi16((65536 / P as u32) as i16));
        _mm256_sub_epi16(v, _mm256_mullo_epi16(q, _mm256_set1_epi16(P as i16)))
    }

    /// One register of PrivateCompare's message: `s c +- z mod p` for the 32 elements of `c`
    /// and the 32 bytes of `s` and `z` at the pointers; `s c mod p` as even and odd bytes'
    /// 16-bit products (both factors below 67).
    #[inline(always)]
    unsafe fn blind<const LEAD: bool>(c: __m256i, s: *const u8, z: *const u8) -> __m256i {
        blind_loaded::<LEAD>(c, load(s), load(z))
    }

    /// [`blind`] of registers `m` (the multipliers) and `zv` (the masks).
    #[inline(always)]
    unsafe fn blind_loaded<const LEAD: bool>(c: __m256i, m: __m256i, zv: __m256i) -> __m256i {
        let p = _mm256_set1_epi8(P as i8);
        let even = reduce16(_mm256_maddubs_epi16(c, _mm256_and_si256(m, _mm256_set1_epi16(0x00FF))));
        let odd = reduce16(_mm256_maddubs_epi16(c, _mm256_and_si256(m, _mm256_set1_epi16(0xFF00u16 as i16))));
        let prod = reduce(_mm256_or_si256(even, _mm256_slli_epi16::<8>(odd)), p);
        let zv = if LEAD { zv } else { reduce(_mm256_sub_epi8(p, zv), p) };
        add_mod(prod, zv, p)
    }

    /// As `super::compare_chunk` (the same bytes).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compare_chunk<const LEAD: bool>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        let count = out.len() / W;
        assert!(xs.len() >= count * W && s.len() >= count * W && z.len() >= count * W);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let p = _mm256_set1_epi8(P as i8);
        let one = _mm256_set1_epi8(1);
        let zero = _mm256_setzero_si256();
        let lead_p = if LEAD { _mm256_add_epi8(p, one) } else { p };
        let (bits, spread) = (load(BITS.as_ptr()), load(SPREAD.as_ptr()));
        let mut twice = [0u8; 2 * W];
        for k in 0..count {
            let at = k * W;
            let (rv, b) = (r[k], beta[k]);
            let c: [__m256i; 2] = if b == 1 && rv == u64::MAX {
                if LEAD {
                    [load(FIRST_ZERO.as_ptr()), one]
                } else {
                    [zero, zero]
                }
            } else {
                let t = if b == 1 { rv + 1 } else { rv };
                let mut w = [zero; 2];
                let mut base = [zero; 2];
                let mut sums = [zero; 2];
                for h in 0..2 {
                    let x = load(xs.as_ptr().add(at + 32 * h));
                    let tm = bit_mask((t >> (32 * h)) as u32, spread, bits);
                    // lead + p - x (in 1..=68): the share of 1 - x, unreduced.
                    let lpx = _mm256_sub_epi8(lead_p, x);
                    w[h] = _mm256_blendv_epi8(x, reduce(lpx, p), tm);
                    let bs = if b == 0 {
                        // p - x + lead (t_i + 1)
                        if LEAD {
                            _mm256_add_epi8(lpx, _mm256_and_si256(tm, one))
                        } else {
                            lpx
                        }
                    } else if LEAD {
                        // x + lead (1 - t_i)
                        _mm256_add_epi8(x, _mm256_andnot_si256(tm, one))
                    } else {
                        x
                    };
                    base[h] = reduce(bs, p);
                    // Inclusive suffix sums within each 16-byte group.
                    let mut e = w[h];
                    e = add_mod(e, _mm256_bsrli_epi128::<1>(e), p);
                    e = add_mod(e, _mm256_bsrli_epi128::<2>(e), p);
                    e = add_mod(e, _mm256_bsrli_epi128::<4>(e), p);
                    e = add_mod(e, _mm256_bsrli_epi128::<8>(e), p);
                    sums[h] = e;
                }
                // Group totals (byte 0 of each group) broadcast over their group; then every
                // group adds the totals of the groups above it: groups 0, 1 (register 0) and
                // 2, 3 (register 1).
                let tot0 = _mm256_shuffle_epi8(sums[0], zero);
                let tot1 = _mm256_shuffle_epi8(sums[1], zero);
                let above1 = _mm256_permute2x128_si256::<0x81>(tot1, tot1); // [t3, 0]
                let t23 = add_mod(tot1, _mm256_permute2x128_si256::<0x01>(tot1, tot1), p); // [t2 + t3, t2 + t3]
                let above0 = add_mod(t23, _mm256_permute2x128_si256::<0x81>(tot0, tot0), p); // [t1 + t23, t23]
                let incl = [add_mod(sums[0], above0, p), add_mod(sums[1], above1, p)];
                // c_i = base_i + sum_{k > i} w_k = base_i + (inclusive sum - w_i).
                std::array::from_fn(|h| add_mod(base[h], sub_mod(incl[h], w[h], p), p))
            };
            for (h, &ch) in c.iter().enumerate() {
                let d = blind::<LEAD>(ch, s.as_ptr().add(at + 32 * h), z.as_ptr().add(at + 32 * h));
                _mm256_storeu_si256(twice.as_mut_ptr().add(32 * h) as *mut __m256i, d);
                _mm256_storeu_si256(twice.as_mut_ptr().add(W + 32 * h) as *mut __m256i, d);
            }
            // out[(i + shift) mod 64] = d[i]: out[j] = twice[64 + j - shift].
            let from = twice.as_ptr().add(W - rot[k] as usize % W);
            _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut __m256i, load(from));
            _mm256_storeu_si256(out.as_mut_ptr().add(at + 32) as *mut __m256i, load(from.add(32)));
        }
    }

    /// As `super::compare_chunk_at` on 32 lanes (the same bytes): one value of 32 lanes per register,
    /// the same steps as [`compare_chunk`] on one register.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compare_narrow<const LEAD: bool>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        const L: usize = super::NARROW;
        let count = out.len() / L;
        assert!(xs.len() >= count * L && s.len() >= count * L && z.len() >= count * L);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let p = _mm256_set1_epi8(P as i8);
        let one = _mm256_set1_epi8(1);
        let zero = _mm256_setzero_si256();
        let lead_p = if LEAD { _mm256_add_epi8(p, one) } else { p };
        let (bits, spread) = (load(BITS.as_ptr()), load(SPREAD.as_ptr()));
        let mut twice = [0u8; 2 * L];
        for k in 0..count {
            let at = k * L;
            let (rv, b) = (r[k], beta[k]);
            let c = if b == 1 && rv == u32::MAX as u64 {
                if LEAD {
                    load(FIRST_ZERO.as_ptr())
                } else {
                    zero
                }
            } else {
                let t = if b == 1 { rv + 1 } else { rv };
                let x = load(xs.as_ptr().add(at));
                let tm = bit_mask(t as u32, spread, bits);
                let lpx = _mm256_sub_epi8(lead_p, x);
                let w = _mm256_blendv_epi8(x, reduce(lpx, p), tm);
                let bs = if b == 0 {
                    if LEAD {
                        _mm256_add_epi8(lpx, _mm256_and_si256(tm, one))
                    } else {
                        lpx
                    }
                } else if LEAD {
                    _mm256_add_epi8(x, _mm256_andnot_si256(tm, one))
                } else {
                    x
                };
                let base = reduce(bs, p);
                let mut e = w;
                e = add_mod(e, _mm256_bsrli_epi128::<1>(e), p);
                e = add_mod(e, _mm256_bsrli_epi128::<2>(e), p);
                e = add_mod(e, _mm256_bsrli_epi128::<4>(e), p);
                e = add_mod(e, _mm256_bsrli_epi128::<8>(e), p);
                // The upper group's total added to the lower group.
                let tot = _mm256_shuffle_epi8(e, zero);
                let incl = add_mod(e, _mm256_permute2x128_si256::<0x81>(tot, tot), p);
                add_mod(base, sub_mod(incl, w, p), p)
            };
            let d = blind::<LEAD>(c, s.as_ptr().add(at), z.as_ptr().add(at));
            _mm256_storeu_si256(twice.as_mut_ptr() as *mut __m256i, d);
            _mm256_storeu_si256(twice.as_mut_ptr().add(L) as *mut __m256i, d);
            // out[(i + shift) mod 32] = d[i]: out[j] = twice[32 + j - shift].
            _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut __m256i, load(twice.as_ptr().add(L - rot[k] as usize % L)));
        }
    }

    /// `pair` values' 16 bytes each at `src` (one value: the upper lane zero).
    #[inline(always)]
    unsafe fn load_values(src: *const u8, pair: usize) -> __m256i {
        if pair == 2 {
            load(src)
        } else {
            _mm256_zextsi128_si256(_mm_loadu_si128(src as *const __m128i))
        }
    }

    /// As `super::compare_chunk_at` on [`super::SHORT`] lanes (the same bytes): two values per
    /// register, one per 128-bit lane, so that the suffix sums stay within a lane (four byte
    /// shifts) and each value's rotation is one in-lane byte shuffle.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compare_short<const LEAD: bool>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        const L: usize = super::SHORT;
        let count = out.len() / L;
        assert!(xs.len() >= count * L && s.len() >= count * L && z.len() >= count * L);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let p = _mm256_set1_epi8(P as i8);
        let one = _mm256_set1_epi8(1);
        let zero = _mm256_setzero_si256();
        let lead_p = if LEAD { _mm256_add_epi8(p, one) } else { p };
        let (bits, spread) = (load(BITS.as_ptr()), load(SPREAD.as_ptr()));
        let iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // The special case's fixed vector per value (see `super::compare_element`).
        let fixed = if LEAD { _mm256_min_epu8(iota, one) } else { zero };
        let lane_mask = |first: bool, second: bool| _mm256_set_epi64x(-(second as i64), -(second as i64), -(first as i64), -(first as i64));
        let mut k = 0;
        while k < count {
            let pair = (count - k).min(2);
            let at = k * L;
            let (b, rv) = ([beta[k], if pair == 2 { beta[k + 1] } else { 0 }], [r[k], if pair == 2 { r[k + 1] } else { 0 }]);
            let special = [b[0] == 1 && rv[0] == 0xFFFF, b[1] == 1 && rv[1] == 0xFFFF];
            let t = [0, 1].map(|j| (if b[j] == 1 { rv[j] + 1 } else { rv[j] }) as u32 & 0xFFFF);
            let x = load_values(xs.as_ptr().add(at), pair);
            let tm = bit_mask(t[0] | t[1] << 16, spread, bits);
            let lpx = _mm256_sub_epi8(lead_p, x);
            let w = _mm256_blendv_epi8(x, reduce(lpx, p), tm);
            // p - x + lead (t_i + 1) where beta = 0, x + lead (1 - t_i) where beta = 1.
            let (bs0, bs1) = if LEAD { (_mm256_add_epi8(lpx, _mm256_and_si256(tm, one)), _mm256_add_epi8(x, _mm256_andnot_si256(tm, one))) } else { (lpx, x) };
            let base = reduce(_mm256_blendv_epi8(bs0, bs1, lane_mask(b[0] == 1, b[1] == 1)), p);
            let mut e = w;
            e = add_mod(e, _mm256_bsrli_epi128::<1>(e), p);
            e = add_mod(e, _mm256_bsrli_epi128::<2>(e), p);
            e = add_mod(e, _mm256_bsrli_epi128::<4>(e), p);
            e = add_mod(e, _mm256_bsrli_epi128::<8>(e), p);
            let c = add_mod(base, sub_mod(e, w, p), p);
            let c = _mm256_blendv_epi8(c, fixed, lane_mask(special[0], special[1]));
            let d = blind_loaded::<LEAD>(c, load_values(s.as_ptr().add(at), pair), load_values(z.as_ptr().add(at), pair));
            // out[(i + shift) mod 16] = d[i]: lane j takes lane (j - shift) mod 16.
            let shift = _mm256_set_m128i(_mm_set1_epi8(if pair == 2 { (rot[k + 1] as usize % L) as i8 } else { 0 }), _mm_set1_epi8((rot[k] as usize % L) as i8));
            let idx = _mm256_and_si256(_mm256_sub_epi8(iota, shift), _mm256_set1_epi8(15));
            let o = _mm256_shuffle_epi8(d, idx);
            if pair == 2 {
                _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut __m256i, o);
            } else {
                _mm_storeu_si128(out.as_mut_ptr().add(at) as *mut __m128i, _mm256_castsi256_si128(o));
            }
            k += pair;
        }
    }
}

/// PrivateCompare in NEON registers (aarch64): one value of 64 lanes in four registers of 16
/// byte lanes (a narrowed value of [`NARROW`] lanes in two), the steps of [`vbmi`] with NEON's
/// permutes: the suffix sums are doubling steps of lane shifts (`ext` of each register with the
/// next one, then whole registers), the products `s c` are `EXP[(LOG[s] + LOG[c]) mod 66]` by
/// table look-ups (`tbl` over four registers reaches 64 entries, one `tbx` over a fifth the
/// rest of the 67 used), and the rotation is one `tbl` over the value's registers.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{EXP, P, W};

    /// `LOG1[c] = LOG[c] - 1 mod 66` for `0 < c < p` and `SLOG[s] = LOG[s] + 1` for
    /// `0 < s < p`, so that `SLOG[s] + LOG1[c]` is `LOG[s] + LOG[c]` mod 66 with both terms in
    /// the ranges below. `LOG1[0]` sends the sum out of the EXP tables' range for every
    /// `SLOG[s]` in `1..=66` (151..=216, reduced 85..=150), where `tbl` and `tbx` give 0: the
    /// product with `c = 0` is 0 without a mask.
    static LOG1: [u8; 80] = {
        let mut t = [0u8; 80];
        let mut k = 0;
        while k < 66 {
            t[EXP[k] as usize] = ((k + 65) % 66) as u8;
            k += 1;
        }
        t[0] = 150;
        t
    };
    static SLOG: [u8; 80] = {
        let mut t = [0u8; 80];
        let mut k = 0;
        while k < 66 {
            t[EXP[k] as usize] = (k + 1) as u8;
            k += 1;
        }
        t
    };

    static IOTA: [u8; W] = {
        let mut t = [0u8; W];
        let mut i = 0;
        while i < W {
            t[i] = i as u8;
            i += 1;
        }
        t
    };
    /// Lane `i` takes byte `i / 8` of `t` (a register loaded with the bytes of `t` twice).
    static SPREAD: [u8; W] = {
        let mut t = [0u8; W];
        let mut i = 0;
        while i < W {
            t[i] = (i / 8) as u8;
            i += 1;
        }
        t
    };
    /// `[1, 2, 4, .., 128]` twice: the bit of each byte lane within its byte of `t`.
    static BITS: [u8; 16] = {
        let mut t = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = 1 << (i % 8);
            i += 1;
        }
        t
    };

    /// `v mod p` for `v < 2p`.
    #[inline(always)]
    unsafe fn reduce(v: uint8x16_t, p: uint8x16_t) -> uint8x16_t {
        vminq_u8(v, vsubq_u8(v, p))
    }

    #[inline(always)]
    unsafe fn add_mod(a: uint8x16_t, b: uint8x16_t, p: uint8x16_t) -> uint8x16_t {
        reduce(vaddq_u8(a, b), p)
    }

    /// Lane `i` of the result is lane `i + SH` of the `16 N` lanes of `v` (zero past the end).
    #[inline(always)]
    unsafe fn shift_down<const SH: i32, const N: usize>(v: [uint8x16_t; N]) -> [uint8x16_t; N] {
        std::array::from_fn(|h| vextq_u8::<SH>(v[h], if h + 1 < N { v[h + 1] } else { vdupq_n_u8(0) }))
    }

    /// `e_i = sum_{k > i} w_k mod p` over the `16 N` lanes (`N` = 2 or 4): shifted by one, then
    /// inclusive suffix sums by doubling, in-register shifts up to 8 lanes, then whole registers.
    #[inline(always)]
    unsafe fn suffix_sums<const N: usize>(w: [uint8x16_t; N], p: uint8x16_t) -> [uint8x16_t; N] {
        let mut e = shift_down::<1, N>(w);
        let add = |a: [uint8x16_t; N], b: [uint8x16_t; N]| -> [uint8x16_t; N] { std::array::from_fn(|h| add_mod(a[h], b[h], p)) };
        e = add(e, shift_down::<1, N>(e));
        e = add(e, shift_down::<2, N>(e));
        e = add(e, shift_down::<4, N>(e));
        e = add(e, shift_down::<8, N>(e));
        let mut regs = 1;
        while regs < N {
            let prev = e;
            for h in 0..N - regs {
                e[h] = add_mod(prev[h], prev[h + regs], p);
            }
            regs *= 2;
        }
        e
    }

    /// Lane `j` of the result is lane `idx_j` of the registers `d` (two or four).
    #[inline(always)]
    unsafe fn lookup(d: &[uint8x16_t], idx: uint8x16_t) -> uint8x16_t {
        match *d {
            [a, b, c, e] => vqtbl4q_u8(uint8x16x4_t(a, b, c, e), idx),
            [a, b] => vqtbl2q_u8(uint8x16x2_t(a, b), idx),
            _ => unreachable!("values of 32 or 64 lanes"),
        }
    }

    /// As `super::helper_chunk` on `L` lanes (64 or [`super::NARROW`]): one value at a time,
    /// in its own registers, the maxima kept in registers until the end.
    pub(super) fn helper<const L: usize>(out: &mut [u8], a: &[u8], b: &[u8]) -> (u8, u8) {
        assert!(L == W || L == super::NARROW);
        let count = out.len().min(a.len() / L).min(b.len() / L);
        // SAFETY: NEON is the aarch64 baseline; the loads are of 16 bytes at `16 h < L` past
        // the start of value `k < count`, inside `a` and `b`.
        unsafe {
            let p = vdupq_n_u8(P);
            let (mut m0, mut m1) = (vdupq_n_u8(0), vdupq_n_u8(0));
            for (k, o) in out[..count].iter_mut().enumerate() {
                let mut hit = vdupq_n_u8(0);
                for h in 0..L / 16 {
                    let av = vld1q_u8(a.as_ptr().add(k * L + 16 * h));
                    let bv = vld1q_u8(b.as_ptr().add(k * L + 16 * h));
                    m0 = vmaxq_u8(m0, av);
                    m1 = vmaxq_u8(m1, bv);
                    // As `has_zero`: the wrapping byte sum is 0 or p (out-of-range elements
                    // give the portable loop's answer too; the maxima reject them).
                    let sum = vaddq_u8(av, bv);
                    hit = vorrq_u8(hit, vorrq_u8(vceqzq_u8(sum), vceqq_u8(sum, p)));
                }
                *o = vmaxvq_u8(hit) & 1;
            }
            (vmaxvq_u8(m0), vmaxvq_u8(m1))
        }
    }

    /// As `super::compare_chunk_at` on `16 N` lanes (`N` = 4: 64 lanes, 2: [`super::NARROW`]):
    /// the same bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compare<const LEAD: bool, const N: usize>(
        xs: &[u8],
        r: &[u64],
        beta: &[u8],
        s: &[u8],
        z: &[u8],
        rot: &[u8],
        out: &mut [u8],
    ) {
        let l = 16 * N;
        assert!(N == 2 || N == 4);
        let count = out.len() / l;
        assert!(xs.len() >= count * l && s.len() >= count * l && z.len() >= count * l);
        assert!(r.len() >= count && beta.len() >= count && rot.len() >= count);
        let top = u64::MAX >> (W - l);
        // SAFETY: NEON is the aarch64 baseline; every load and store is of 16 bytes at
        // `16 h < l` past the start of a value `k < count`, inside the slices (asserted
        // above), or inside the static tables (EXP has 128 entries, LOG1 80).
        unsafe {
            let p = vdupq_n_u8(P);
            let one = vdupq_n_u8(1);
            let zero = vdupq_n_u8(0);
            let lead_p = vdupq_n_u8(P + LEAD as u8);
            let (n64, n66) = (vdupq_n_u8(64), vdupq_n_u8(66));
            let wrap = vdupq_n_u8(l as u8 - 1);
            let bits = vld1q_u8(BITS.as_ptr());
            let spread: [uint8x16_t; N] = std::array::from_fn(|h| vld1q_u8(SPREAD.as_ptr().add(16 * h)));
            let iota: [uint8x16_t; N] = std::array::from_fn(|h| vld1q_u8(IOTA.as_ptr().add(16 * h)));
            let (log, log_hi) = (vld1q_u8_x4(LOG1.as_ptr()), vld1q_u8(LOG1.as_ptr().add(64)));
            let (slog, slog_hi) = (vld1q_u8_x4(SLOG.as_ptr()), vld1q_u8(SLOG.as_ptr().add(64)));
            let (exp, exp_hi) = (vld1q_u8_x4(EXP.as_ptr()), vld1q_u8(EXP.as_ptr().add(64)));
            for k in 0..count {
                let at = k * l;
                let (rv, b) = (r[k], beta[k]);
                let c: [uint8x16_t; N] = if b == 1 && rv == top {
                    // The fixed vector of x > 2^l - 1 (never): the lead's share 0 then 1s.
                    if LEAD {
                        std::array::from_fn(|h| if h == 0 { vsetq_lane_u8::<0>(0, one) } else { one })
                    } else {
                        [zero; N]
                    }
                } else {
                    let t = if b == 1 { rv + 1 } else { rv };
                    // Loaded from bytes rather than reinterpreted: the lanes are in memory
                    // order on either endianness.
                    let tb = [t.to_le_bytes(), t.to_le_bytes()];
                    let tv = vld1q_u8(tb.as_ptr() as *const u8);
                    let mut w = [zero; N];
                    let mut base = [zero; N];
                    for h in 0..N {
                        let x = vld1q_u8(xs.as_ptr().add(at + 16 * h));
                        let tm = vtstq_u8(vqtbl1q_u8(tv, spread[h]), bits);
                        // lead + p - x (in 1..=68): the share of 1 - x, unreduced.
                        let lpx = vsubq_u8(lead_p, x);
                        w[h] = vbslq_u8(tm, reduce(lpx, p), x);
                        let bs = if b == 0 {
                            // p - x + lead (t_i + 1)
                            if LEAD {
                                vaddq_u8(lpx, vandq_u8(tm, one))
                            } else {
                                lpx
                            }
                        } else if LEAD {
                            // x + lead (1 - t_i)
                            vaddq_u8(x, vbicq_u8(one, tm))
                        } else {
                            x
                        };
                        base[h] = reduce(bs, p);
                    }
                    let e = suffix_sums(w, p);
                    std::array::from_fn(|h| add_mod(base[h], e[h], p))
                };
                let mut d = [zero; N];
                for h in 0..N {
                    // s c = EXP[(SLOG[s] + LOG1[c]) mod 66]: each table of 80 entries is a
                    // `tbl` of the first 64 and a `tbx` of the rest (indices below 64 wrap
                    // past 191 there and keep the first result).
                    let sv = vld1q_u8(s.as_ptr().add(at + 16 * h));
                    let sv = vqtbx1q_u8(vqtbl4q_u8(slog, sv), slog_hi, vsubq_u8(sv, n64));
                    let lg = vqtbx1q_u8(vqtbl4q_u8(log, c[h]), log_hi, vsubq_u8(c[h], n64));
                    let sum = vaddq_u8(sv, lg);
                    let j = vminq_u8(sum, vsubq_u8(sum, n66));
                    let prod = vqtbx1q_u8(vqtbl4q_u8(exp, j), exp_hi, vsubq_u8(j, n64));
                    let zv = vld1q_u8(z.as_ptr().add(at + 16 * h));
                    d[h] = if LEAD {
                        add_mod(prod, zv, p)
                    } else {
                        // prod - z mod p (= prod + p - z): a wrapped difference is above 2p.
                        let v = vsubq_u8(prod, zv);
                        vminq_u8(v, vaddq_u8(v, p))
                    };
                }
                // out[(i + shift) mod l] = d[i]: lane j takes lane (j - shift) mod l.
                let shift = vdupq_n_u8((rot[k] as usize % l) as u8);
                for (h, &lane) in iota.iter().enumerate() {
                    let idx = vandq_u8(vsubq_u8(lane, shift), wrap);
                    vst1q_u8(out.as_mut_ptr().add(at + 16 * h), lookup(&d, idx));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SecureNN's PrivateCompare message for one value, written out directly (u32 sums,
    /// reduced once).
    fn reference(lead: bool, xs: &[u8], r: u64, beta: u8, s: &[u8], z: &[u8], shift: usize) -> Vec<u8> {
        let l = xs.len();
        let p = P as u32;
        let mut c = vec![0u32; l];
        if beta == 1 && r == u64::MAX >> (64 - l) {
            if lead {
                for (i, ci) in c.iter_mut().enumerate() {
                    *ci = (i != 0) as u32;
                }
            }
        } else {
            let t = if beta == 1 { r + 1 } else { r };
            let mut acc = 0u32;
            for i in (0..l).rev() {
                let tb = ((t >> i) & 1) as u32;
                let xi = xs[i] as u32;
                c[i] = if beta == 0 { p - xi + acc + if lead { tb + 1 } else { 0 } } else { xi + acc + if lead { 1 - tb } else { 0 } };
                acc += if tb == 0 { xi } else if lead { 1 + p - xi } else { p - xi };
            }
        }
        let mut out = vec![0u8; l];
        for i in 0..l {
            let zi = if lead { z[i] as u32 } else { p - z[i] as u32 };
            let mult = s[i] as u32;
            out[(i + shift) % l] = ((mult * c[i] + zi) % p) as u8;
        }
        out
    }

    #[test]
    fn log_and_exp_tables_are_inverse() {
        for k in 0..66 {
            assert_eq!(LOG[EXP[k] as usize] as usize, k);
        }
        let mut seen: Vec<u8> = EXP[..66].to_vec();
        seen.sort();
        assert_eq!(seen, (1..67).collect::<Vec<u8>>());
    }

    #[test]
    fn compare_element_matches_the_reference() {
        compare_element_matches_the_reference_on::<W>();
        compare_element_matches_the_reference_on::<NARROW>();
    }

    fn compare_element_matches_the_reference_on<const L: usize>() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let top = u64::MAX >> (W - L);
        for case in 0..4000 {
            let mut xs = [0u8; L];
            let mut s = [0u8; L];
            let mut z = [0u8; L];
            for i in 0..L {
                xs[i] = (next() % 67) as u8;
                s[i] = 1 + (next() % 66) as u8;
                z[i] = (next() % 67) as u8;
            }
            let r = match case % 4 {
                0 => top,
                1 => (next() >> (next() % 64)) & top,
                _ => next() & top,
            };
            let beta = (next() & 1) as u8;
            let shift = (next() % L as u64) as usize;
            let mut out = [0u8; L];
            compare_element::<true, L>(&xs, r, beta, &s, &z, shift, &mut out);
            assert_eq!(out.to_vec(), reference(true, &xs, r, beta, &s, &z, shift));
            compare_element::<false, L>(&xs, r, beta, &s, &z, shift, &mut out);
            assert_eq!(out.to_vec(), reference(false, &xs, r, beta, &s, &z, shift));
            // The chunk kernel at every level this CPU has (VBMI, AVX2, portable) gives the
            // same bytes.
            let rot = [shift as u8 + L as u8 * (case % (256 / L)) as u8];
            for level in simd::detected().up_to() {
                compare_chunk_at::<true>(level, L, &xs, &[r], &[beta], &s, &z, &rot, &mut out);
                assert_eq!(out.to_vec(), reference(true, &xs, r, beta, &s, &z, shift), "{level}, {L} lanes");
                compare_chunk_at::<false>(level, L, &xs, &[r], &[beta], &s, &z, &rot, &mut out);
                assert_eq!(out.to_vec(), reference(false, &xs, r, beta, &s, &z, shift), "{level}, {L} lanes");
            }
        }
    }

    /// Random Z_p bytes (or nonzero ones) for the kernel tests.
    fn zp_bytes(next: &mut impl FnMut() -> u64, n: usize, nonzero: bool) -> Vec<u8> {
        (0..n).map(|_| if nonzero { 1 + (next() % 66) as u8 } else { (next() % 67) as u8 }).collect()
    }

    #[test]
    fn every_kernel_of_the_comparison_is_bit_exact_at_every_level() {
        for lanes in [W, NARROW, SHORT] {
            every_kernel_is_bit_exact_on(lanes);
        }
    }

    fn every_kernel_is_bit_exact_on(lanes: usize) {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let top = u64::MAX >> (W - lanes);
        for count in [1usize, 2, 3, 7, CHUNK - 1, CHUNK] {
            let xs = zp_bytes(&mut next, count * lanes, false);
            let s = zp_bytes(&mut next, count * lanes, true);
            let z = zp_bytes(&mut next, count * lanes, false);
            let r: Vec<u64> = (0..count).map(|i| if i % 5 == 0 { top } else { (next() >> (next() % 8)) & top }).collect();
            let beta: Vec<u8> = (0..count).map(|_| (next() & 1) as u8).collect();
            let rot: Vec<u8> = (0..count).map(|_| next() as u8).collect();
            let mut want = [vec![0u8; count * lanes], vec![0u8; count * lanes]];
            compare_chunk_at::<true>(Level::Scalar, lanes, &xs, &r, &beta, &s, &z, &rot, &mut want[0]);
            compare_chunk_at::<false>(Level::Scalar, lanes, &xs, &r, &beta, &s, &z, &rot, &mut want[1]);
            for k in 0..count {
                let at = k * lanes..(k + 1) * lanes;
                let shift = rot[k] as usize % lanes;
                assert_eq!(want[0][at.clone()], reference(true, &xs[at.clone()], r[k], beta[k], &s[at.clone()], &z[at.clone()], shift)[..]);
                assert_eq!(want[1][at.clone()], reference(false, &xs[at.clone()], r[k], beta[k], &s[at.clone()], &z[at.clone()], shift)[..]);
            }
            // The helper's view: the sum of the two messages has a zero where x > r xor beta.
            let mut want_helper = vec![0u8; count];
            let want_max = helper_chunk(Level::Scalar, lanes, &mut want_helper, &want[0], &want[1]);
            let mut dealt = vec![0u8; count * lanes];
            let mut want_dealt = vec![0u8; count * lanes];
            subtract_bits(r.iter().copied(), &z, &mut want_dealt, lanes);
            for level in simd::detected().up_to() {
                let mut out = vec![0u8; count * lanes];
                compare_chunk_at::<true>(level, lanes, &xs, &r, &beta, &s, &z, &rot, &mut out);
                assert_eq!(out, want[0], "lead, {level}, {count} values of {lanes} lanes");
                compare_chunk_at::<false>(level, lanes, &xs, &r, &beta, &s, &z, &rot, &mut out);
                assert_eq!(out, want[1], "other, {level}, {count} values of {lanes} lanes");
                let mut helper = vec![0u8; count];
                assert_eq!(helper_chunk(level, lanes, &mut helper, &want[0], &want[1]), want_max, "{level}");
                assert_eq!(helper, want_helper, "helper, {level}");
                simd::run(level, || subtract_bits(r.iter().copied(), &z, &mut dealt, lanes));
                assert_eq!(dealt, want_dealt, "dealing, {level}");
            }
        }
    }
}
