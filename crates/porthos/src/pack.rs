//! Seven bits per Z_p element on the wire (the compact variant's Z_p messages).
//!
//! The comparisons' Z_p messages (the helper's dealt bit shares, PrivateCompare's blinded
//! vectors) hold elements below p = 67 < 2^7, one per byte, eight to a word (byte `k` of a
//! word's little-endian value is element `k`, as [`crate::compare`] puts them on the wire).
//! Packed, each word's eight elements become 56 bits and the 56-bit groups are laid back to
//! back: `ceil(7 words / 8)` words instead of `words`, an eighth less traffic. The paper's
//! variants keep one byte per element (Table III counts `log p = 8`).

/// Words a message of `words` unpacked words takes packed.
pub(crate) fn packed_words(words: usize) -> usize {
    (words * 56).div_ceil(64)
}

/// The 56 bits of a word's eight 7-bit elements (the top bit of each byte dropped).
#[inline(always)]
fn squeeze(w: u64) -> u64 {
    let x = w & 0x7F7F_7F7F_7F7F_7F7F;
    let x = (x & 0x007F_007F_007F_007F) | ((x & 0x7F00_7F00_7F00_7F00) >> 1);
    let x = (x & 0x0000_3FFF_0000_3FFF) | ((x & 0x3FFF_0000_3FFF_0000) >> 2);
    (x & 0x0000_0000_0FFF_FFFF) | ((x & 0x0FFF_FFFF_0000_0000) >> 4)
}

/// The inverse of [`squeeze`]: eight bytes below 128 from 56 bits.
#[inline(always)]
fn spread(x: u64) -> u64 {
    let x = (x & 0x0FFF_FFFF) | ((x << 4) & 0x0FFF_FFFF_0000_0000);
    let x = (x & 0x0000_3FFF_0000_3FFF) | ((x << 2) & 0x3FFF_0000_3FFF_0000);
    (x & 0x007F_007F_007F_007F) | ((x << 1) & 0x7F00_7F00_7F00_7F00)
}

/// Packs a message whose bytes are all below 128 (Z_p elements); see the module doc.
pub(crate) fn pack(words: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; packed_words(words.len())];
    let groups = words.len() / 8;
    // Eight words make exactly seven.
    for (o, w) in out.chunks_exact_mut(7).zip(words.chunks_exact(8)) {
        let c: [u64; 8] = std::array::from_fn(|k| squeeze(w[k]));
        for j in 0..7 {
            o[j] = c[j] >> (8 * j) | c[j + 1] << (56 - 8 * j);
        }
    }
    let mut acc: u128 = 0;
    let mut bits = 0;
    let mut at = 7 * groups;
    for &w in &words[8 * groups..] {
        acc |= (squeeze(w) as u128) << bits;
        bits += 56;
        if bits >= 64 {
            out[at] = acc as u64;
            at += 1;
            acc >>= 64;
            bits -= 64;
        }
    }
    if bits > 0 {
        out[at] = acc as u64;
    }
    out
}

/// Unpacks `words` words from a packed message; `None` if it has the wrong length or nonzero
/// padding.
pub(crate) fn unpack(packed: &[u64], words: usize) -> Option<Vec<u64>> {
    if packed.len() != packed_words(words) {
        return None;
    }
    let mut out = vec![0u64; words];
    let groups = words / 8;
    const LOW56: u64 = (1 << 56) - 1;
    for (w, p) in out.chunks_exact_mut(8).zip(packed.chunks_exact(7)) {
        w[0] = spread(p[0] & LOW56);
        for j in 1..7 {
            w[j] = spread((p[j - 1] >> (64 - 8 * j) | p[j] << (8 * j)) & LOW56);
        }
        w[7] = spread(p[6] >> 8);
    }
    let mut acc: u128 = 0;
    let mut bits = 0;
    let mut next = 7 * groups;
    for w in out[8 * groups..].iter_mut() {
        if bits < 56 {
            acc |= (packed[next] as u128) << bits;
            next += 1;
            bits += 64;
        }
        *w = spread(acc as u64 & LOW56);
        acc >>= 56;
        bits -= 56;
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_seven_eighths_and_inverts() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for words in [0usize, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1024, 1031] {
            let message: Vec<u64> = (0..words).map(|_| u64::from_le_bytes(std::array::from_fn(|_| (next() % 67) as u8))).collect();
            let packed = pack(&message);
            assert_eq!(packed.len(), (words * 7).div_ceil(8), "{words} words");
            assert_eq!(unpack(&packed, words).as_deref(), Some(&message[..]), "{words} words");
            // The packed stream is the elements' 7 bits back to back.
            for (i, e) in message.iter().flat_map(|w| w.to_le_bytes()).enumerate() {
                let bit = 7 * i;
                let v = (packed[bit / 64] as u128 | (packed.get(bit / 64 + 1).copied().unwrap_or(0) as u128) << 64) >> (bit % 64);
                assert_eq!((v & 0x7F) as u8, e, "element {i} of {words} words");
            }
        }
    }

    #[test]
    fn a_packed_message_of_the_wrong_length_or_padding_is_refused() {
        let message = vec![0x0101_0101_0101_0101u64; 3];
        let mut packed = pack(&message);
        assert!(unpack(&packed, 4).is_none());
        assert!(unpack(&packed[..2], 3).is_none());
        let last = packed.len() - 1;
        packed[last] |= 1 << 63; // a padding bit
        assert!(unpack(&packed, 3).is_none());
    }
}
