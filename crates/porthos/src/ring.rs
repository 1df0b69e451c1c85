//! The three rings of SecureNN: Z_L (L = 2^64, wrapping `u64`), Z_{L-1} (odd modulus
//! 2^64 - 1, `u64` in `0..2^64-1`) and Z_p (p = 67, one `u8` per element), and how their
//! elements travel on the wire.
//!
//! Wire format: Z_L and Z_{L-1} elements are one `u64` word each (l = 64 bits). Z_p elements
//! are packed eight to a word, one byte each (log p = 8 bits, as Table III counts them); a
//! message of `k` Z_p elements is `ceil(k / 8)` words. Every Z_p message of the protocols
//! carries whole 64-element bit decompositions, so `k` is a multiple of 64 and the packing
//! wastes nothing: the bytes the net layer counts are exactly `k` (= `k * log p / 8`).

use crate::prf::Prf;

/// The prime of PrivateCompare.
pub const P: u8 = 67;
/// The odd modulus L - 1 = 2^64 - 1 (as a `u64`, also the one value that is not an element).
pub const ZL1_MODULUS: u64 = u64::MAX;

/// `a + b` in Z_{L-1}; also correct when an input is the non-canonical `2^64 - 1` (= 0).
#[inline(always)]
pub fn add_zl1(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // a + b = s + 2^64 * carry and 2^64 = 1 (mod 2^64 - 1); s + 1 cannot overflow when carry.
    let s = s + carry as u64;
    if s == ZL1_MODULUS {
        0
    } else {
        s
    }
}

/// `-a` in Z_{L-1}.
#[inline(always)]
pub fn neg_zl1(a: u64) -> u64 {
    if a == 0 || a == ZL1_MODULUS {
        0
    } else {
        ZL1_MODULUS - a
    }
}

#[inline(always)]
pub fn sub_zl1(a: u64, b: u64) -> u64 {
    add_zl1(a, neg_zl1(b))
}

/// Reduces a Z_L element into Z_{L-1}.
#[inline(always)]
pub fn to_zl1(a: u64) -> u64 {
    if a == ZL1_MODULUS {
        0
    } else {
        a
    }
}

#[inline(always)]
pub fn add_p(a: u8, b: u8) -> u8 {
    let s = a as u16 + b as u16;
    (if s >= P as u16 { s - P as u16 } else { s }) as u8
}

#[inline(always)]
pub fn neg_p(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        P - a
    }
}

#[inline(always)]
pub fn sub_p(a: u8, b: u8) -> u8 {
    add_p(a, neg_p(b))
}

#[inline(always)]
pub fn mul_p(a: u8, b: u8) -> u8 {
    ((a as u16 * b as u16) % P as u16) as u8
}

/// Whether `a + b` wraps around 2^64 (SecureNN's `wrap(a, b, L)`).
#[inline(always)]
pub fn wraps(a: u64, b: u64) -> bool {
    a.overflowing_add(b).1
}

/// Packs Z_p elements (bytes) eight to a little-endian word; the last word is zero-padded.
pub fn pack_bytes(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// Inverse of [`pack_bytes`]; `None` if an element is not below p.
pub fn unpack_zp(words: &[u64], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(len);
    if out.iter().any(|&b| b >= P) {
        return None;
    }
    Some(out)
}

pub fn packed_words(len: usize) -> usize {
    len.div_ceil(8)
}

/// A ring whose elements the helper deals as fresh additive shares.
pub trait Ring {
    type E: Copy + Default + Send + Sync + 'static;
    const NAME: &'static str;
    /// Whether word draws of this ring avoid 2^64 - 1 (`Prf::draw_words`; Z_{L-1}).
    const WORDS_ZL1: bool = false;
    fn random(prf: &mut Prf, out: &mut [Self::E]);
    fn sub(a: Self::E, b: Self::E) -> Self::E;
    fn encode(v: &[Self::E]) -> Vec<u64>;
    /// Number of words that carry `len` elements.
    fn words(len: usize) -> usize;
    fn decode(words: Vec<u64>, len: usize) -> Option<Vec<Self::E>>;
}

/// Z_L = Z_2^64.
pub struct ZL;
/// Z_{L-1}.
pub struct ZL1;
/// Z_p.
pub struct Zp;

impl Ring for ZL {
    type E = u64;
    const NAME: &'static str = "Z_L";
    fn random(prf: &mut Prf, out: &mut [u64]) {
        prf.fill_u64(out)
    }
    fn sub(a: u64, b: u64) -> u64 {
        a.wrapping_sub(b)
    }
    fn encode(v: &[u64]) -> Vec<u64> {
        v.to_vec()
    }
    fn words(len: usize) -> usize {
        len
    }
    fn decode(words: Vec<u64>, _len: usize) -> Option<Vec<u64>> {
        Some(words)
    }
}

impl Ring for ZL1 {
    type E = u64;
    const NAME: &'static str = "Z_{L-1}";
    const WORDS_ZL1: bool = true;
    fn random(prf: &mut Prf, out: &mut [u64]) {
        prf.fill_zl1(out)
    }
    fn sub(a: u64, b: u64) -> u64 {
        sub_zl1(a, b)
    }
    fn encode(v: &[u64]) -> Vec<u64> {
        v.to_vec()
    }
    fn words(len: usize) -> usize {
        len
    }
    fn decode(words: Vec<u64>, _len: usize) -> Option<Vec<u64>> {
        if words.contains(&ZL1_MODULUS) {
            return None;
        }
        Some(words)
    }
}

impl Ring for Zp {
    type E = u8;
    const NAME: &'static str = "Z_p";
    fn random(prf: &mut Prf, out: &mut [u8]) {
        prf.fill_zp(out)
    }
    fn sub(a: u8, b: u8) -> u8 {
        sub_p(a, b)
    }
    fn encode(v: &[u8]) -> Vec<u64> {
        pack_bytes(v)
    }
    fn words(len: usize) -> usize {
        packed_words(len)
    }
    fn decode(words: Vec<u64>, len: usize) -> Option<Vec<u8>> {
        unpack_zp(&words, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zl1_arithmetic_matches_u128() {
        let m = ZL1_MODULUS as u128;
        let samples = [0u64, 1, 2, 5, 1 << 63, (1 << 63) + 7, u64::MAX - 1, u64::MAX - 2, 12345678901234567];
        for &a in &samples {
            for &b in &samples {
                let a = to_zl1(a);
                let b = to_zl1(b);
                assert_eq!(add_zl1(a, b) as u128, (a as u128 + b as u128) % m);
                assert_eq!(sub_zl1(a, b) as u128, (a as u128 + m - b as u128) % m);
            }
        }
        assert_eq!(add_zl1(u64::MAX, 3), 3);
    }

    #[test]
    fn zp_arithmetic_and_packing() {
        for a in 0..P {
            for b in 0..P {
                assert_eq!(add_p(a, b) as u16, (a as u16 + b as u16) % 67);
                assert_eq!(sub_p(a, b) as i16, (a as i16 - b as i16).rem_euclid(67));
                assert_eq!(mul_p(a, b) as u16, (a as u16 * b as u16) % 67);
            }
        }
        let v: Vec<u8> = (0..131).map(|i| (i * 7 % 67) as u8).collect();
        let w = pack_bytes(&v);
        assert_eq!(w.len(), 17);
        assert_eq!(unpack_zp(&w, v.len()).unwrap(), v);
        assert!(unpack_zp(&[u64::MAX], 8).is_none());
    }
}
