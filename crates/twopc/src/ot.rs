//! Oblivious transfer: base OT (Chou-Orlandi "simplest OT" over Ristretto255) and IKNP OT
//! extension with a fixed-key-AES tweakable correlation-robust hash.
//!
//! # Protocols
//! * **Base OT** ([`base_sender_start`], [`base_receiver`], [`base_sender_finish`]): Chou and
//!   Orlandi, "The Simplest Protocol for Oblivious Transfer" (LATINCRYPT 2015), semi-honest,
//!   in the prime-order group Ristretto255 (`curve25519-dalek`). The sender sends `A = aG`;
//!   for choice bit `c_i` the receiver sends `B_i = b_i G + c_i A` and keeps
//!   `k_i = H(i, A, B_i, b_i A)`; the sender derives `k_i^0 = H(i, A, B_i, a B_i)` and
//!   `k_i^1 = H(i, A, B_i, a (B_i - A))`. `H` is SHA-256 truncated to 128 bits. A point that
//!   does not decode is a protocol error.
//! * **OT extension** ([`IknpSender`], [`IknpReceiver`]): Ishai, Kilian, Nissim, Petrank,
//!   "Extending Oblivious Transfers Efficiently" (CRYPTO 2003), in its correlated form. 128
//!   base OTs with the extension *sender* as base receiver, choice bits `s` (the global
//!   correlation `Delta`). For `m` extended OTs with choice bits `r`, the receiver expands
//!   both seeds of column `i` into `t_i = G(k_i^0)`, `G(k_i^1)` (`m` bits, AES-128-CTR) and
//!   sends `u_i = t_i ^ G(k_i^1) ^ r`; the sender computes `q_i = G(k_i^{s_i}) ^ s_i u_i`.
//!   Transposed, row `j` gives `q_j = t_j ^ r_j Delta`: a random correlated OT. Messages and
//!   random OTs come from hashing rows with the TCCR hash of Guo, Katz, Wang, Yu (S&P 2020),
//!   `H(tweak, x) = pi(pi(x) ^ tweak) ^ pi(x)` with `pi` AES-128 under a fixed public key; the
//!   tweak holds the direction, the OT's index in the session and the output block, so no two
//!   hashes in a session share a tweak.
//!
//! # Both directions from one set of base OTs
//! Each party is extension sender in one direction and receiver in the other. Only the first
//! direction (party 0 holds `Delta_0`) runs public-key base OTs; its first 128 extended OTs,
//! with party 1 choosing the bits of its own `Delta_1`, are hashed into random OTs that serve
//! as the base OTs of the second direction (party 1 holds `Delta_1`).
//!
//! # Communication
//! Extending `m` OTs costs the receiver `128 * ceil(m / 64)` words (columns are padded to whole
//! words; the padding bits are dropped). Base OT: 4 words from the sender, `4 * 128` from the
//! receiver (compressed points are 32 bytes).

use std::sync::OnceLock;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use cryptflow_porthos::prf::{Prf, PrfKey};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Number of base OTs (the computational security parameter).
pub const KAPPA: usize = 128;

/// Words of the receiver's message when extending `m` OTs.
pub fn extension_words(m: usize) -> usize {
    KAPPA * m.div_ceil(64)
}

/// Why an OT step failed: the peer sent something that is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum OtError {
    #[error("malformed base OT message: {0}")]
    Malformed(&'static str),
    #[error("operating system randomness unavailable: {0}")]
    Randomness(String),
}

// ----- fixed-key AES hash -----------------------------------------------------------------

fn pi() -> &'static Aes128 {
    static PI: OnceLock<Aes128> = OnceLock::new();
    // A fixed public key ("nothing up my sleeve": the first 16 bytes of SHA-256 of a label).
    PI.get_or_init(|| {
        let digest = Sha256::digest(b"cryptflow-twopc fixed-key AES for the TCCR hash");
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Aes128::new(&key.into())
    })
}

fn to_block(x: u128) -> Block {
    x.to_le_bytes().into()
}

fn from_block(b: &Block) -> u128 {
    u128::from_le_bytes((*b).into())
}

/// `pi(x)` for every element, in place (pipelined AES-NI over the whole slice).
pub fn permute(xs: &mut [u128]) {
    let mut buf: Vec<Block> = xs.iter().map(|&x| to_block(x)).collect();
    pi().encrypt_blocks(&mut buf);
    for (x, b) in xs.iter_mut().zip(&buf) {
        *x = from_block(b);
    }
}

/// `pi` applied to blocks in place.
pub fn pi_blocks(blocks: &mut [Block]) {
    pi().encrypt_blocks(blocks);
}

/// Tweak domains.
const DIR_SHIFT: u32 = 126;
/// Tweaks of the bootstrap hash (base OTs of the second direction).
const BOOTSTRAP: u128 = 3 << DIR_SHIFT;

/// The tweak of block `block` of the hash of OT `index` in direction `dir` (0 or 1).
#[inline]
pub fn tweak(dir: u8, index: u64, block: u64) -> u128 {
    debug_assert!(block < 1 << 40);
    ((dir as u128) << DIR_SHIFT) | ((index as u128) << 40) | block as u128
}

/// Expands `y = pi(x)` into `out.len()` words of `H(tweak0 + b, x)` (block `b` gives words
/// `2b` and `2b + 1`). `buf` is scratch space.
#[inline]
pub fn expand(y: u128, tweak0: u128, out: &mut [u64], buf: &mut Vec<Block>) {
    let blocks = out.len().div_ceil(2);
    buf.clear();
    buf.extend((0..blocks).map(|b| to_block(y ^ (tweak0 + b as u128))));
    pi().encrypt_blocks(buf);
    for (pair, blk) in out.chunks_mut(2).zip(buf.iter()) {
        let h = from_block(blk) ^ y;
        pair[0] = h as u64;
        if pair.len() > 1 {
            pair[1] = (h >> 64) as u64;
        }
    }
}

/// `H(tweak, x)` for one value.
pub fn hash1(x: u128, tweak: u128) -> u128 {
    let mut y = [x];
    permute(&mut y);
    let mut z = [y[0] ^ tweak];
    permute(&mut z);
    z[0] ^ y[0]
}

// ----- bit matrix transpose ---------------------------------------------------------------

/// Transposes a 128x128 bit matrix in place: bit `c` of row `r` moves to bit `r` of row `c`
/// (Eklundh's recursive block swap, 7 rounds of 64 word operations).
pub fn transpose128(a: &mut [u128; 128]) {
    let mut j = 64usize;
    let mut m: u128 = u64::MAX as u128;
    while j != 0 {
        let mut k = 0usize;
        while k < 128 {
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Rows of the `m x 128` matrix whose columns are `cols[i]` (`ceil(m / 64)` words each).
fn columns_to_rows(cols: &[Vec<u64>], m: usize) -> Vec<u128> {
    let blocks = m.div_ceil(128);
    let mut rows = vec![0u128; blocks * 128];
    rows.par_chunks_mut(128).enumerate().for_each(|(b, out)| {
        let mut a = [0u128; 128];
        for (i, col) in cols.iter().enumerate() {
            let lo = col.get(2 * b).copied().unwrap_or(0) as u128;
            let hi = col.get(2 * b + 1).copied().unwrap_or(0) as u128;
            a[i] = lo | (hi << 64);
        }
        transpose128(&mut a);
        out.copy_from_slice(&a);
    });
    rows.truncate(m);
    rows
}

// ----- randomness -------------------------------------------------------------------------

pub fn os_bytes<const N: usize>() -> Result<[u8; N], OtError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| OtError::Randomness(e.to_string()))?;
    Ok(b)
}

fn random_scalar() -> Result<Scalar, OtError> {
    Ok(Scalar::from_bytes_mod_order_wide(&os_bytes::<64>()?))
}

fn key_from(bytes: [u8; 16]) -> PrfKey {
    let w = [u64::from_le_bytes(bytes[..8].try_into().unwrap()), u64::from_le_bytes(bytes[8..].try_into().unwrap())];
    PrfKey::from_words(&w).expect("two words")
}

fn u128_key(x: u128) -> [u8; 16] {
    x.to_le_bytes()
}

// ----- base OT (Chou-Orlandi) -------------------------------------------------------------

fn point_words(b: &[u8; 32]) -> [u64; 4] {
    std::array::from_fn(|i| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap()))
}

/// The encoding in the words and the point it decodes to.
fn words_point(w: &[u64]) -> Result<([u8; 32], RistrettoPoint), OtError> {
    let mut b = [0u8; 32];
    for (i, x) in w.iter().enumerate() {
        b[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
    }
    let p = CompressedRistretto(b).decompress().ok_or(OtError::Malformed("not a Ristretto255 point"))?;
    Ok((b, p))
}

/// `H(i, A, B, P)` over the canonical encodings (`A` and `B` given encoded: compressing a point
/// costs a field inversion, so each is encoded once).
fn base_hash(i: usize, a: &[u8; 32], b: &[u8; 32], p: &RistrettoPoint) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"cryptflow-twopc base OT");
    h.update((i as u64).to_le_bytes());
    h.update(a);
    h.update(b);
    h.update(p.compress().as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The base-OT sender's secret between its two messages.
pub struct BaseSender {
    a: Scalar,
    big_a: RistrettoPoint,
    a_bytes: [u8; 32],
}

/// Base OT, sender, first message: `A = aG` (4 words).
pub fn base_sender_start() -> Result<(BaseSender, Vec<u64>), OtError> {
    let a = random_scalar()?;
    let big_a = &a * RISTRETTO_BASEPOINT_TABLE;
    let a_bytes = big_a.compress().to_bytes();
    Ok((BaseSender { a, big_a, a_bytes }, point_words(&a_bytes).to_vec()))
}

/// Base OT, receiver: from the sender's `A` and 128 choice bits, the keys of the chosen
/// messages and the reply (`4 * 128` words).
pub fn base_receiver(choices: u128, msg_a: &[u64]) -> Result<(Vec<[u8; 16]>, Vec<u64>), OtError> {
    if msg_a.len() != 4 {
        return Err(OtError::Malformed("wrong length"));
    }
    let (a_bytes, big_a) = words_point(msg_a)?;
    // Every b_i A has the same base: a table for A makes them fixed-base multiplications.
    let table_a = RistrettoBasepointTable::create(&big_a);
    let scalars: Vec<Scalar> = (0..KAPPA).map(|_| random_scalar()).collect::<Result<_, _>>()?;
    let out: Vec<([u8; 16], [u64; 4])> = scalars
        .par_iter()
        .enumerate()
        .map(|(i, b)| {
            let mut big_b = b * RISTRETTO_BASEPOINT_TABLE;
            if (choices >> i) & 1 == 1 {
                big_b += big_a;
            }
            let b_bytes = big_b.compress().to_bytes();
            (base_hash(i, &a_bytes, &b_bytes, &(b * &table_a)), point_words(&b_bytes))
        })
        .collect();
    let keys = out.iter().map(|o| o.0).collect();
    let msg = out.iter().flat_map(|o| o.1).collect();
    Ok((keys, msg))
}

/// Both keys of one OT.
pub type KeyPair = ([u8; 16], [u8; 16]);

/// Base OT, sender, end: both keys of every OT from the receiver's reply.
pub fn base_sender_finish(s: &BaseSender, msg_b: &[u64]) -> Result<Vec<KeyPair>, OtError> {
    if msg_b.len() != 4 * KAPPA {
        return Err(OtError::Malformed("wrong length"));
    }
    let a_big_a = s.a * s.big_a;
    msg_b
        .par_chunks(4)
        .enumerate()
        .map(|(i, w)| {
            let (b_bytes, big_b) = words_point(w)?;
            let ab = s.a * big_b;
            Ok((base_hash(i, &s.a_bytes, &b_bytes, &ab), base_hash(i, &s.a_bytes, &b_bytes, &(ab - a_big_a))))
        })
        .collect()
}

// ----- IKNP -------------------------------------------------------------------------------

/// Correlated OTs as the extension sender sees them: rows `q_j` with `q_j ^ r_j Delta` the
/// receiver's row.
pub struct SenderRows {
    pub rows: Vec<u128>,
    pub delta: u128,
    /// Session index of the first OT (for tweaks).
    pub first: u64,
    pub dir: u8,
}

/// Correlated OTs as the receiver sees them: rows `t_j` and its choice bits.
pub struct ReceiverRows {
    pub rows: Vec<u128>,
    pub first: u64,
    pub dir: u8,
}

impl SenderRows {
    /// No OTs (a direction with nothing to extend).
    pub fn empty(dir: u8, delta: u128, first: u64) -> SenderRows {
        SenderRows { rows: Vec::new(), delta, first, dir }
    }

    /// OTs `a..b` of the batch.
    pub fn slice(&self, a: usize, b: usize) -> SenderRows {
        SenderRows { rows: self.rows[a..b].to_vec(), delta: self.delta, first: self.first + a as u64, dir: self.dir }
    }
}

impl ReceiverRows {
    pub fn empty(dir: u8, first: u64) -> ReceiverRows {
        ReceiverRows { rows: Vec::new(), first, dir }
    }

    pub fn slice(&self, a: usize, b: usize) -> ReceiverRows {
        ReceiverRows { rows: self.rows[a..b].to_vec(), first: self.first + a as u64, dir: self.dir }
    }
}

/// The extension sender: holds `Delta` and the seeds `k_i^{Delta_i}`.
pub struct IknpSender {
    delta: u128,
    prgs: Vec<Prf>,
    count: u64,
    dir: u8,
}

/// The extension receiver: holds both seeds of every base OT.
pub struct IknpReceiver {
    prgs: Vec<(Prf, Prf)>,
    count: u64,
    dir: u8,
}

impl std::fmt::Debug for IknpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IknpSender").field("count", &self.count).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IknpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IknpReceiver").field("count", &self.count).finish_non_exhaustive()
    }
}

impl IknpSender {
    /// `delta` is the base-OT choice vector, `seeds[i]` the key chosen in base OT `i`.
    pub fn new(dir: u8, delta: u128, seeds: &[[u8; 16]]) -> IknpSender {
        assert_eq!(seeds.len(), KAPPA);
        IknpSender { delta, prgs: seeds.iter().map(|&s| Prf::new(key_from(s))).collect(), count: 0, dir }
    }

    pub fn delta(&self) -> u128 {
        self.delta
    }

    /// OTs extended so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Rows of `m` correlated OTs from the receiver's message `u` (see [`extension_words`]).
    pub fn extend(&mut self, m: usize, u: &[u64]) -> Result<SenderRows, OtError> {
        let w = m.div_ceil(64);
        if u.len() != KAPPA * w {
            return Err(OtError::Malformed("OT extension message of the wrong length"));
        }
        let delta = self.delta;
        let cols: Vec<Vec<u64>> = self
            .prgs
            .par_iter_mut()
            .enumerate()
            .map(|(i, prg)| {
                let mut q = prg.u64s(w);
                if (delta >> i) & 1 == 1 {
                    for (q, &u) in q.iter_mut().zip(&u[i * w..(i + 1) * w]) {
                        *q ^= u;
                    }
                }
                q
            })
            .collect();
        let first = self.count;
        self.count += m as u64;
        Ok(SenderRows { rows: columns_to_rows(&cols, m), delta, first, dir: self.dir })
    }
}

impl IknpReceiver {
    /// `pairs[i]` are both keys of base OT `i`.
    pub fn new(dir: u8, pairs: &[([u8; 16], [u8; 16])]) -> IknpReceiver {
        assert_eq!(pairs.len(), KAPPA);
        IknpReceiver { prgs: pairs.iter().map(|&(a, b)| (Prf::new(key_from(a)), Prf::new(key_from(b)))).collect(), count: 0, dir }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Extends `m` OTs with choice bits `choices` (bit `j % 64` of word `j / 64`; at least
    /// `ceil(m / 64)` words, bits past `m` ignored). Returns the rows and the message for the
    /// sender.
    pub fn extend(&mut self, m: usize, choices: &[u64]) -> (ReceiverRows, Vec<u64>) {
        let w = m.div_ceil(64);
        assert!(choices.len() >= w, "choice bits for {m} OTs");
        let parts: Vec<(Vec<u64>, Vec<u64>)> = self
            .prgs
            .par_iter_mut()
            .map(|(g0, g1)| {
                let t = g0.u64s(w);
                let mut u = g1.u64s(w);
                for ((u, &t), &r) in u.iter_mut().zip(&t).zip(choices) {
                    *u ^= t ^ r;
                }
                (t, u)
            })
            .collect();
        let mut msg = Vec::with_capacity(KAPPA * w);
        let mut cols = Vec::with_capacity(KAPPA);
        for (t, u) in parts {
            msg.extend_from_slice(&u);
            cols.push(t);
        }
        let first = self.count;
        self.count += m as u64;
        (ReceiverRows { rows: columns_to_rows(&cols, m), first, dir: self.dir }, msg)
    }
}

/// Random OTs of 128-bit strings from correlated rows, for the sender: `(H(q_j), H(q_j ^ Delta))`
/// under the bootstrap tweaks.
pub fn bootstrap_sender_keys(s: &SenderRows) -> Vec<([u8; 16], [u8; 16])> {
    let mut y0 = s.rows.clone();
    let mut y1: Vec<u128> = s.rows.iter().map(|&q| q ^ s.delta).collect();
    permute(&mut y0);
    permute(&mut y1);
    let mut z0: Vec<u128> = y0.iter().enumerate().map(|(j, &y)| y ^ (BOOTSTRAP | (s.first + j as u64) as u128)).collect();
    let mut z1: Vec<u128> = y1.iter().enumerate().map(|(j, &y)| y ^ (BOOTSTRAP | (s.first + j as u64) as u128)).collect();
    permute(&mut z0);
    permute(&mut z1);
    (0..s.rows.len()).map(|j| (u128_key(z0[j] ^ y0[j]), u128_key(z1[j] ^ y1[j]))).collect()
}

/// The receiver's side of [`bootstrap_sender_keys`]: `H(t_j)`.
pub fn bootstrap_receiver_keys(r: &ReceiverRows) -> Vec<[u8; 16]> {
    let mut y = r.rows.clone();
    permute(&mut y);
    let mut z: Vec<u128> = y.iter().enumerate().map(|(j, &y)| y ^ (BOOTSTRAP | (r.first + j as u64) as u128)).collect();
    permute(&mut z);
    z.iter().zip(&y).map(|(&z, &y)| u128_key(z ^ y)).collect()
}

/// Random OT bits: bit 0 of `H(tweak(dir, j, 0), x)` for each row, for the sender both
/// messages `(m0, m1)` packed as words (bit `j % 64` of word `j / 64`).
pub fn rot_bits_sender(s: &SenderRows) -> (Vec<u64>, Vec<u64>) {
    let h0 = hash_rows(&s.rows, 0, s.dir, s.first);
    let h1 = hash_rows(&s.rows, s.delta, s.dir, s.first);
    (pack_lsb(&h0), pack_lsb(&h1))
}

/// The receiver's random OT bits `m_{r_j}`.
pub fn rot_bits_receiver(r: &ReceiverRows) -> Vec<u64> {
    pack_lsb(&hash_rows(&r.rows, 0, r.dir, r.first))
}

/// `H(tweak(dir, first + j, 0), row_j ^ xor)` for every row.
pub fn hash_rows(rows: &[u128], xor: u128, dir: u8, first: u64) -> Vec<u128> {
    let mut out = vec![0u128; rows.len()];
    out.par_chunks_mut(1 << 12).zip(rows.par_chunks(1 << 12)).enumerate().for_each(|(c, (out, rows))| {
        let mut y: Vec<u128> = rows.iter().map(|&r| r ^ xor).collect();
        permute(&mut y);
        let base = first + (c << 12) as u64;
        let mut z: Vec<u128> = y.iter().enumerate().map(|(j, &y)| y ^ tweak(dir, base + j as u64, 0)).collect();
        permute(&mut z);
        for ((o, &z), &y) in out.iter_mut().zip(&z).zip(&y) {
            *o = z ^ y;
        }
    });
    out
}

fn pack_lsb(h: &[u128]) -> Vec<u64> {
    let mut out = vec![0u64; h.len().div_ceil(64)];
    for (j, &x) in h.iter().enumerate() {
        out[j / 64] |= ((x & 1) as u64) << (j % 64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_u128(seed: &mut u64) -> u128 {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        (next() as u128) | ((next() as u128) << 64)
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn transpose_moves_every_bit() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let orig: [u128; 128] = std::array::from_fn(|_| rand_u128(&mut s));
        let mut t = orig;
        transpose128(&mut t);
        for r in 0..128 {
            for c in 0..128 {
                assert_eq!((orig[r] >> c) & 1, (t[c] >> r) & 1, "row {r} col {c}");
            }
        }
        transpose128(&mut t);
        assert_eq!(t, orig);
    }

    #[test]
    fn base_ot_gives_the_chosen_key_only() {
        let choices = rand_u128(&mut 77u64.clone());
        let (s, a) = base_sender_start().unwrap();
        let (keys, b) = base_receiver(choices, &a).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(b.len(), 4 * KAPPA);
        let pairs = base_sender_finish(&s, &b).unwrap();
        for i in 0..KAPPA {
            let c = (choices >> i) & 1;
            let (k0, k1) = pairs[i];
            assert_ne!(k0, k1);
            assert_eq!(keys[i], if c == 1 { k1 } else { k0 }, "OT {i}");
        }
        // A malformed point is refused.
        let mut bad = b.clone();
        bad[0] = u64::MAX;
        bad[3] = u64::MAX;
        assert!(base_sender_finish(&s, &bad).is_err());
        assert!(base_receiver(choices, &[1, 2, 3]).is_err());
    }

    /// IKNP end to end: base OTs, extension, bootstrap of the reverse direction, and the
    /// correlation `q_j = t_j ^ r_j Delta` in both.
    #[test]
    fn iknp_rows_are_correlated_in_both_directions() {
        let mut seed = 99u64;
        let delta0 = rand_u128(&mut seed);
        let (s, a) = base_sender_start().unwrap();
        let (keys, b) = base_receiver(delta0, &a).unwrap();
        let pairs = base_sender_finish(&s, &b).unwrap();
        let mut snd = IknpSender::new(0, delta0, &keys);
        let mut rcv = IknpReceiver::new(0, &pairs);
        for m in [1usize, 64, 65, 300, 128] {
            let choices: Vec<u64> = (0..m.div_ceil(64)).map(|_| rand_u128(&mut seed) as u64).collect();
            let (rr, u) = rcv.extend(m, &choices);
            assert_eq!(u.len(), extension_words(m));
            let sr = snd.extend(m, &u).unwrap();
            assert_eq!(sr.rows.len(), m);
            assert_eq!(sr.first, rr.first);
            for j in 0..m {
                let r = (choices[j / 64] >> (j % 64)) & 1;
                assert_eq!(sr.rows[j] ^ rr.rows[j], if r == 1 { delta0 } else { 0 });
            }
            // Rows are not all equal (the columns are really pseudorandom).
            if m > 1 {
                assert_ne!(sr.rows[0], sr.rows[m - 1]);
            }
        }
        assert!(snd.extend(10, &[0; 5]).is_err());
        // Bootstrap the reverse direction.
        let delta1 = rand_u128(&mut seed);
        let (rr, u) = rcv.extend(KAPPA, &[delta1 as u64, (delta1 >> 64) as u64]);
        let sr = snd.extend(KAPPA, &u).unwrap();
        let keys1 = bootstrap_receiver_keys(&rr);
        let pairs1 = bootstrap_sender_keys(&sr);
        for i in 0..KAPPA {
            let c = (delta1 >> i) & 1;
            assert_eq!(keys1[i], if c == 1 { pairs1[i].1 } else { pairs1[i].0 });
        }
        let mut snd1 = IknpSender::new(1, delta1, &keys1);
        let mut rcv1 = IknpReceiver::new(1, &pairs1);
        let choices = vec![0xdead_beef_u64, 0x5555];
        let (rr, u) = rcv1.extend(100, &choices);
        let sr = snd1.extend(100, &u).unwrap();
        for j in 0..100 {
            let r = (choices[j / 64] >> (j % 64)) & 1;
            assert_eq!(sr.rows[j] ^ rr.rows[j], if r == 1 { delta1 } else { 0 });
        }
        // Random OT bits: the receiver gets the chosen one.
        let (m0, m1) = rot_bits_sender(&sr);
        let mr = rot_bits_receiver(&rr);
        for j in 0..100 {
            let r = (choices[j / 64] >> (j % 64)) & 1;
            let want = if r == 1 { m1[j / 64] } else { m0[j / 64] } >> (j % 64) & 1;
            assert_eq!((mr[j / 64] >> (j % 64)) & 1, want);
        }
        // Over many OTs, m0 ^ m1 is balanced (not constant).
        let ones: u32 = m0.iter().zip(&m1).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert!(ones > 20 && ones < 108, "{ones}");
    }

    #[test]
    fn expansion_matches_the_tccr_definition() {
        let x = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
        let mut y = [x];
        permute(&mut y);
        let mut out = [0u64; 5];
        let t0 = tweak(1, 42, 0);
        expand(y[0], t0, &mut out, &mut Vec::new());
        for b in 0..3 {
            let h = hash1(x, t0 + b as u128);
            assert_eq!(out[2 * b], h as u64);
            if 2 * b + 1 < 5 {
                assert_eq!(out[2 * b + 1], (h >> 64) as u64);
            }
        }
        assert_ne!(hash1(x, tweak(0, 42, 0)), hash1(x, tweak(1, 42, 0)));
    }
}
