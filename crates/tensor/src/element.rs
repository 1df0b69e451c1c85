use std::fmt::Debug;

/// A tensor element: `f32` with ordinary arithmetic, or `u64` as Z_2^64 with wrapping arithmetic.
pub trait Element: Copy + Default + Debug + PartialEq + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    fn neg(self) -> Self;
    /// Ordering used by max-pooling and argmax: the signed (two's complement) order for ring
    /// elements, so that fixed-point negatives compare as negatives.
    fn greater_than(self, other: Self) -> bool;
    fn from_usize(n: usize) -> Self;
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        self - other
    }
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        self * other
    }
    #[inline(always)]
    fn neg(self) -> Self {
        -self
    }
    #[inline(always)]
    fn greater_than(self, other: Self) -> bool {
        self > other
    }
    fn from_usize(n: usize) -> Self {
        n as f32
    }
}

impl Element for u64 {
    const ZERO: Self = 0;
    const ONE: Self = 1;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        self.wrapping_mul(other)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
    #[inline(always)]
    fn greater_than(self, other: Self) -> bool {
        (self as i64) > (other as i64)
    }
    fn from_usize(n: usize) -> Self {
        n as u64
    }
}
