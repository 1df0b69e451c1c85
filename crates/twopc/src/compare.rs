//! Comparison (CrypTFlow2's millionaires' protocol on OT), AND gates from OT-made Beaver bit
//! triples, and the multiplexer that turns a shared bit and a shared value into their product.
//!
//! # DReLU
//! For `x = x_0 + x_1 mod 2^64`, write `x_j = m_j 2^63 + x_j'`. Then
//! `MSB(x) = m_0 ^ m_1 ^ carry` with `carry = [x_0' + x_1' >= 2^63] = [a < b]`,
//! `a = 2^63 - 1 - x_0'` (party 0) and `b = x_1'` (party 1), both below `2^63`, and
//! `DReLU(x) = [x >= 0] = 1 ^ MSB(x)`: exact over all of Z_2^64 read as signed.
//!
//! `[a < b]` is the millionaires' protocol of CrypTFlow2 (Rathee et al., CCS 2020, Algorithm
//! 1): split the 63 bits into 16 chunks (15 of 4 bits, the top one of 3); for each chunk a
//! 1-out-of-16 (1-out-of-8 for the top) OT from party 0 to party 1 gives boolean shares of
//! `lt_c = [a_c < b_c]` and `eq_c = [a_c = b_c]`; then a tree of 4 levels combines neighbours,
//! `LT = lt_hi ^ (eq_hi & lt_lo)`, `EQ = eq_hi & eq_lo` (`EQ` only where a later level needs
//! it: 26 ANDs per comparison).
//!
//! The 1-out-of-`2^k` OT is Naor and Pinkas' reduction to `k` random 1-out-of-2 OTs: with
//! 128-bit random OT keys `K_{l,0}, K_{l,1}` (hashed IKNP rows), message `v` (2 bits) is masked
//! with the XOR over `l` of bits `[2v, 2v + 2)` of `K_{l, v_l}`. Every message uses its own bit
//! positions of every key, so all messages but the chosen one stay uniformly masked. The
//! chooser's bits are the bits of `b` (64 OTs per element, the 64th unused since `b < 2^63`).
//! Party 0's 16 masked 2-bit messages of a chunk fill 32 bits: 8 words per element.
//!
//! # AND
//! Beaver bit triples come from two random OTs in opposite directions: from a random OT where
//! party `j` sends `(m_0, m_1)` and party `1 - j` chooses `c` and gets `m_c`, `m_c ^ m_0` =
//! `c (m_0 ^ m_1)`, a sharing of the product of `a_j = m_0 ^ m_1` and `b_{1-j} = c`. Each party
//! takes `a` from the OTs it sends, `b` as its (random) choices, and
//! `c = a b ^ m_0 ^ m_c`. Opening `d = x ^ a`, `e = y ^ b` costs 2 bits per AND per party,
//! packed.
//!
//! # Multiplexer
//! `d x` for a boolean-shared bit `d` and an additively shared `x`: party `j` adds `d_j x_j`
//! locally, and the cross terms `d_{1-j} (1 - 2 d_j) x_j` come from one correlated OT per
//! element in each direction (chooser bit `d_{1-j}`, correlation `(1 - 2 d_j) x_j`, one word
//! of correction).

use crate::bits::{pack, unpack};
use crate::ot::{self, ReceiverRows, SenderRows};
use crate::{Result, TwoPc, MODEL_OWNER};

/// Chunks of the 63-bit millionaires' inputs.
pub const CHUNKS: usize = 16;
/// Levels of the combination tree (`log2 CHUNKS`).
const LEVELS: usize = 4;
/// OTs per element for the leaves (one per bit of `b`, the top one unused).
pub const LEAF_OTS: usize = 64;

fn chunk_bits(c: usize) -> usize {
    if c == CHUNKS - 1 {
        3
    } else {
        4
    }
}

/// `need[l][i]`: whether `EQ` of node `i` of level `l` (level 0 = leaves) is used later.
fn eq_needed() -> Vec<Vec<bool>> {
    let mut need: Vec<Vec<bool>> = (0..=LEVELS).map(|l| vec![false; CHUNKS >> l]).collect();
    for l in (0..LEVELS).rev() {
        for i in 0..(CHUNKS >> l) {
            need[l][i] = (i % 2 == 1) || need[l + 1][i / 2];
        }
    }
    need
}

/// ANDs per comparison: one per combination for `LT`, one more where `EQ` is needed.
pub fn ands_per_comparison() -> usize {
    let need = eq_needed();
    (1..=LEVELS).map(|l| need[l].len() + need[l].iter().filter(|&&b| b).count()).sum()
}

/// Beaver bit triples held by one party (one bit per byte), consumed in order.
pub(crate) struct Triples {
    a: Vec<u8>,
    b: Vec<u8>,
    c: Vec<u8>,
    pos: usize,
}

impl Triples {
    /// From this party's sender-side rows (it gives `(m_0, m_1)`) and receiver-side rows (it
    /// chose the random bits `choices`), `count` triples each.
    fn from_ots(sent: &SenderRows, received: &ReceiverRows, choices: &[u64], count: usize) -> Triples {
        let (m0, m1) = ot::rot_bits_sender(sent);
        let mc = ot::rot_bits_receiver(received);
        let a_w: Vec<u64> = m0.iter().zip(&m1).map(|(x, y)| x ^ y).collect();
        let c_w: Vec<u64> = (0..a_w.len()).map(|i| (a_w[i] & choices[i]) ^ m0[i] ^ mc[i]).collect();
        Triples { a: unpack(&a_w, count), b: unpack(choices, count), c: unpack(&c_w, count), pos: 0 }
    }
}

impl TwoPc {
    /// Boolean shares (one bit per byte) of `[x >= 0]`, `x` read as a signed 64-bit value.
    pub fn drelu(&mut self, x: &[u64]) -> Result<Vec<u8>> {
        let n = x.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        const LOW: u64 = (1 << 63) - 1;
        let lead = self.id == MODEL_OWNER;
        let t_count = ands_per_comparison() * n;
        // Random choices for the triple OTs this party receives.
        let mut tri_choices = self.own.u64s(t_count.div_ceil(64));
        if t_count % 64 != 0 {
            let last = tri_choices.len() - 1;
            tri_choices[last] &= (1u64 << (t_count % 64)) - 1;
        }
        let leaf_m = LEAF_OTS * n;
        // Party 1 receives the leaf OTs and its triple OTs in one batch; party 0 its triple OTs.
        let (rr, sr) = if lead {
            self.extend_both(&tri_choices, t_count, leaf_m + t_count)?
        } else {
            let b: Vec<u64> = x.iter().map(|&v| v & LOW).collect();
            let mut choices = b;
            choices.extend_from_slice(&tri_choices);
            self.extend_both(&choices, leaf_m + t_count, t_count)?
        };
        // Triples: the part of the batch past the leaves.
        let mut triples = if lead {
            Triples::from_ots(&sr.slice(leaf_m, leaf_m + t_count), &rr, &tri_choices, t_count)
        } else {
            Triples::from_ots(&sr, &rr.slice(leaf_m, leaf_m + t_count), &tri_choices, t_count)
        };

        // Leaves: lt and eq shares per element and chunk.
        let mut lt = vec![0u8; n * CHUNKS];
        let mut eq = vec![0u8; n * CHUNKS];
        let peer = self.peer();
        if lead {
            let leaves = sr.slice(0, leaf_m);
            let k0 = ot::hash_rows(&leaves.rows, 0, leaves.dir, leaves.first);
            let k1 = ot::hash_rows(&leaves.rows, leaves.delta, leaves.dir, leaves.first);
            let shares = self.own.u64s(n.div_ceil(2));
            let mut msg = vec![0u64; n * CHUNKS / 2];
            for i in 0..n {
                let a = LOW - (x[i] & LOW);
                // 32 random bits per element: (lt, eq) share for each chunk.
                let r = (shares[i / 2] >> (32 * (i % 2))) as u32;
                for c in 0..CHUNKS {
                    let k = chunk_bits(c);
                    let ac = ((a >> (4 * c)) & ((1 << k) - 1)) as u32;
                    let (r_lt, r_eq) = ((r >> (2 * c)) & 1, (r >> (2 * c + 1)) & 1);
                    lt[i * CHUNKS + c] = r_lt as u8;
                    eq[i * CHUNKS + c] = r_eq as u8;
                    let mut table = 0u64;
                    for v in 0..(1u32 << k) {
                        let mut pad = 0u64;
                        for l in 0..k {
                            let j = i * LEAF_OTS + 4 * c + l;
                            let key = if (v >> l) & 1 == 1 { k1[j] } else { k0[j] };
                            pad ^= ((key >> (2 * v)) & 3) as u64;
                        }
                        let m = (((ac < v) as u32 ^ r_lt) | (((ac == v) as u32 ^ r_eq) << 1)) as u64;
                        table |= (m ^ pad) << (2 * v);
                    }
                    msg[i * CHUNKS / 2 + c / 2] |= table << (32 * (c % 2));
                }
            }
            self.send(peer, msg)?;
        } else {
            let leaves = rr.slice(0, leaf_m);
            let kc = ot::hash_rows(&leaves.rows, 0, leaves.dir, leaves.first);
            let msg = self.recv(peer, n * CHUNKS / 2)?;
            for i in 0..n {
                let b = x[i] & LOW;
                for c in 0..CHUNKS {
                    let k = chunk_bits(c);
                    let v = ((b >> (4 * c)) & ((1 << k) - 1)) as usize;
                    let mut pad = 0u64;
                    for l in 0..k {
                        pad ^= ((kc[i * LEAF_OTS + 4 * c + l] >> (2 * v)) & 3) as u64;
                    }
                    let table = (msg[i * CHUNKS / 2 + c / 2] >> (32 * (c % 2))) & 0xFFFF_FFFF;
                    let m = ((table >> (2 * v)) & 3) ^ pad;
                    lt[i * CHUNKS + c] = (m & 1) as u8;
                    eq[i * CHUNKS + c] = (m >> 1) as u8;
                }
            }
        }

        // The tree.
        let need = eq_needed();
        let mut size = CHUNKS;
        for level in 1..=LEVELS {
            let half = size / 2;
            let needed: Vec<usize> = (0..half).filter(|&p| need[level][p]).collect();
            let mut xs = Vec::with_capacity(n * (half + needed.len()));
            let mut ys = Vec::with_capacity(xs.capacity());
            for i in 0..n {
                for p in 0..half {
                    xs.push(eq[i * size + 2 * p + 1]);
                    ys.push(lt[i * size + 2 * p]);
                }
            }
            for i in 0..n {
                for &p in &needed {
                    xs.push(eq[i * size + 2 * p + 1]);
                    ys.push(eq[i * size + 2 * p]);
                }
            }
            let z = self.and(&xs, &ys, &mut triples)?;
            let mut lt2 = vec![0u8; n * half];
            let mut eq2 = vec![0u8; n * half];
            for i in 0..n {
                for p in 0..half {
                    lt2[i * half + p] = lt[i * size + 2 * p + 1] ^ z[i * half + p];
                }
                for (q, &p) in needed.iter().enumerate() {
                    eq2[i * half + p] = z[n * half + i * needed.len() + q];
                }
            }
            lt = lt2;
            eq = eq2;
            size = half;
        }
        debug_assert_eq!(triples.pos, t_count);
        Ok((0..n)
            .map(|i| {
                let msb = (x[i] >> 63) as u8;
                lt[i] ^ msb ^ lead as u8
            })
            .collect())
    }

    /// Boolean shares of `x & y` for boolean-shared `x`, `y` (one Beaver triple each).
    fn and(&mut self, x: &[u8], y: &[u8], t: &mut Triples) -> Result<Vec<u8>> {
        let l = x.len();
        let (a, b, c) = (&t.a[t.pos..t.pos + l], &t.b[t.pos..t.pos + l], &t.c[t.pos..t.pos + l]);
        t.pos += l;
        let mut de: Vec<u8> = x.iter().zip(a).map(|(&x, &a)| x ^ a).collect();
        de.extend(y.iter().zip(b).map(|(&y, &b)| y ^ b));
        let words = pack(&de);
        let peer = self.peer();
        let len = words.len();
        self.send(peer, words)?;
        let other = unpack(&self.recv(peer, len)?, 2 * l);
        let lead = self.id == MODEL_OWNER;
        Ok((0..l)
            .map(|i| {
                let d = de[i] ^ other[i];
                let e = de[l + i] ^ other[l + i];
                c[i] ^ (d & b[i]) ^ (e & a[i]) ^ if lead { d & e } else { 0 }
            })
            .collect())
    }

    /// Shares of `d x` for a boolean-shared bit `d` (one bit per byte) and a shared `x`.
    pub fn select(&mut self, d: &[u8], x: &[u64]) -> Result<Vec<u64>> {
        let n = x.len();
        debug_assert_eq!(d.len(), n);
        if n == 0 {
            return Ok(Vec::new());
        }
        let (rr, sr) = self.extend_both(&pack(d), n, n)?;
        let p0 = ot::hash_rows(&sr.rows, 0, sr.dir, sr.first);
        let p1 = ot::hash_rows(&sr.rows, sr.delta, sr.dir, sr.first);
        let mut out = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let corr = if d[i] == 1 { x[i].wrapping_neg() } else { x[i] };
            let (a, b) = (p0[i] as u64, p1[i] as u64);
            y.push(b.wrapping_sub(a).wrapping_sub(corr));
            let local = if d[i] == 1 { x[i] } else { 0 };
            out.push(local.wrapping_sub(a));
        }
        let peer = self.peer();
        self.send(peer, y)?;
        let y_peer = self.recv(peer, n)?;
        let p = ot::hash_rows(&rr.rows, 0, rr.dir, rr.first);
        for i in 0..n {
            let pc = p[i] as u64;
            let got = if d[i] == 1 { pc.wrapping_sub(y_peer[i]) } else { pc };
            out[i] = out[i].wrapping_add(got);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_needs_26_ands() {
        assert_eq!(ands_per_comparison(), 26);
        let need = eq_needed();
        assert!(!need[LEVELS][0]);
        assert!(!need[0][0], "the lowest chunk's eq is never used");
        assert!(need[0][1..].iter().all(|&b| b));
    }
}
