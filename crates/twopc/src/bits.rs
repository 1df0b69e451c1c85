//! Packing of variable-width values and single bits into 64-bit words (messages are vectors of
//! ring elements).

/// Writes values of up to 64 bits back to back, least significant bit first.
pub struct BitWriter<'a> {
    out: &'a mut [u64],
    pos: usize,
}

impl<'a> BitWriter<'a> {
    /// `out` must be zeroed.
    pub fn new(out: &'a mut [u64]) -> Self {
        BitWriter { out, pos: 0 }
    }

    /// Appends after the first `pos` bits of `out` (the bits from `pos` on must be zero).
    pub fn at(out: &'a mut [u64], pos: usize) -> Self {
        BitWriter { out, pos }
    }

    /// Appends the low `n` bits of `v` (`1 <= n <= 64`; `v` must be below `2^n`).
    #[inline]
    pub fn put(&mut self, v: u64, n: u32) {
        let (w, off) = (self.pos / 64, (self.pos % 64) as u32);
        self.out[w] |= v << off;
        if off + n > 64 {
            self.out[w + 1] |= v >> (64 - off);
        }
        self.pos += n as usize;
    }
}

/// Reads what [`BitWriter`] wrote.
pub struct BitReader<'a> {
    data: &'a [u64],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u64]) -> Self {
        BitReader { data, pos: 0 }
    }

    #[inline]
    pub fn get(&mut self, n: u32) -> u64 {
        let (w, off) = (self.pos / 64, (self.pos % 64) as u32);
        let mut v = self.data[w] >> off;
        if off + n > 64 {
            v |= self.data[w + 1] << (64 - off);
        }
        self.pos += n as usize;
        v & low_mask(n)
    }

    /// Skips `bits` bits.
    #[inline]
    pub fn skip(&mut self, bits: usize) {
        self.pos += bits;
    }
}

/// `2^n - 1` for `n <= 64`.
#[inline]
pub fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Bits (one per byte, 0 or 1) packed 64 to a word.
pub fn pack(bits: &[u8]) -> Vec<u64> {
    let mut out = vec![0u64; bits.len().div_ceil(64)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 64] |= ((b & 1) as u64) << (i % 64);
    }
    out
}

/// The first `n` bits of `words`, one per byte.
pub fn unpack(words: &[u64], n: usize) -> Vec<u8> {
    (0..n).map(|i| ((words[i / 64] >> (i % 64)) & 1) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_widths_round_trip() {
        let items: Vec<(u64, u32)> = (0..200u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), (i % 64 + 1) as u32)).collect();
        let bits: usize = items.iter().map(|&(_, n)| n as usize).sum();
        let mut buf = vec![0u64; bits.div_ceil(64)];
        let mut w = BitWriter::new(&mut buf);
        for &(v, n) in &items {
            w.put(v & low_mask(n), n);
        }
        let mut r = BitReader::new(&buf);
        for &(v, n) in &items {
            assert_eq!(r.get(n), v & low_mask(n));
        }
        let b = vec![1u8, 0, 1, 1, 0, 0, 0, 1, 1];
        assert_eq!(unpack(&pack(&b), b.len()), b);
    }
}
