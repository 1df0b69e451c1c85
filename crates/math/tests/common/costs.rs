//! Porthos communication of the math functions, derived from their composition: every DReLU
//! element costs `D = 496` bytes (summed over the three parties) and a call 5 rounds; every
//! multiplexer or product element `M = 40` bytes and a call 1 round. Local operations
//! (additions, public constants, truncations, public divisions) cost nothing.
#![allow(dead_code)]

pub const D: u64 = 496;
pub const M: u64 = 40;
pub const RELU: u64 = D + M;

/// (bytes, rounds) of a composition: DReLU elements and calls, mux/mul elements and calls.
pub fn cost(drelu_elems: u64, drelu_calls: u64, mul_elems: u64, mul_calls: u64) -> (u64, u64) {
    (drelu_elems * D + mul_elems * M, 5 * drelu_calls + mul_calls)
}

pub fn ceil_log2(n: u64) -> u64 {
    if n <= 1 { 0 } else { 64 - (n - 1).leading_zeros() as u64 }
}

/// `max`/`min` of `n` pairs.
pub fn max(n: u64) -> (u64, u64) {
    cost(n, 1, n, 1)
}

/// `reduce_max` of `outs` groups of `n`: a tree of `ceil(log2 n)` levels, `n - 1` pairs each.
pub fn reduce(n: u64, outs: u64) -> (u64, u64) {
    let l = ceil_log2(n);
    cost((n - 1) * outs, l, (n - 1) * outs, l)
}

/// `exp` of `n` elements: clamp (2 comparisons, 2 muxes), degree-4 powers (3 products in 2
/// calls), 5 squarings.
pub fn exp(n: u64) -> (u64, u64) {
    cost(2 * n, 1, 2 * n + 3 * n + 5 * n, 1 + 2 + 5)
}

/// Comparisons of the reciprocal's normalisation: powers 2^-8 ..= 2^16.
pub const RECIP_J: u64 = 25;

/// `reciprocal`: sign (1 comparison, 2 muxes), normalisation (25 comparisons, 25 + 25 muxes),
/// 5 products in 3 calls.
pub fn reciprocal(n: u64) -> (u64, u64) {
    cost((1 + RECIP_J) * n, 2, 2 * n + 2 * RECIP_J * n + 5 * n, 1 + 1 + 3)
}

/// `div`: as the reciprocal with 6 products in 4 calls.
pub fn div(n: u64) -> (u64, u64) {
    cost((1 + RECIP_J) * n, 2, 2 * n + 2 * RECIP_J * n + 6 * n, 1 + 1 + 4)
}

/// Comparisons of the roots' normalisation at `scale`: powers 4^-floor(s/2) ..= 4^8.
pub fn root_j(scale: u32) -> u64 {
    8 + (scale / 2) as u64 + 1
}

/// `rsqrt`: J comparisons, 2J muxes, 8 products in 6 calls.
pub fn rsqrt(n: u64, scale: u32) -> (u64, u64) {
    let j = root_j(scale);
    cost(j * n, 1, 2 * j * n + 8 * n, 1 + 6)
}

/// `sqrt`: J comparisons, 2J + 1 muxes, 9 products in 6 calls.
pub fn sqrt(n: u64, scale: u32) -> (u64, u64) {
    let j = root_j(scale);
    cost(j * n, 1, (2 * j + 1) * n + 9 * n, 1 + 6)
}

/// `log`: powers 2^-s ..= 2^16 (s + 17 comparisons), 2J muxes, degree-5 powers (4 products,
/// 3 calls).
pub fn log(n: u64, scale: u32) -> (u64, u64) {
    let j = scale as u64 + 17;
    cost(j * n, 1, 2 * j * n + 4 * n, 1 + 3)
}

/// Factors of softmax's row-sum reciprocal on `[1, n]` (see `recip_range`).
pub fn recip_factors(n: u64) -> u64 {
    let (lo, hi) = (1.0f64, n as f64);
    let lambda = 2.0 / (lo * hi + (lo + hi) * (lo + hi) / 4.0);
    let e0 = 1.0 - lambda * lo * hi;
    let mut m = 1;
    while e0.powi(1 << m) > 2f64.powi(-15) {
        m += 1;
    }
    m
}

/// `softmax` of `rows` rows of `n`: max tree, exp_nonpositive (1 comparison, 1 mux, 7 products
/// in 6 calls), the row reciprocal (`2m` products per row in `m + 1` calls), the final product.
pub fn softmax(n: u64, rows: u64) -> (u64, u64) {
    let (tb, tr) = reduce(n, rows);
    let m = recip_factors(n);
    let (b, r) = cost(n * rows, 1, n * rows + 7 * n * rows + 2 * m * rows + n * rows, 1 + 6 + (m + 1) + 1);
    (tb + b, tr + r)
}

/// `log_softmax`: max tree, exp_nonpositive, the log of the row sum (powers 2^0 ..= 2^ceil(log2 n):
/// L + 1 comparisons, 2(L + 1) muxes, 4 products in 3 calls).
pub fn log_softmax(n: u64, rows: u64) -> (u64, u64) {
    let (tb, tr) = reduce(n, rows);
    let j = ceil_log2(n) + 1;
    let (b, r) = cost(n * rows + j * rows, 2, n * rows + 7 * n * rows + 2 * j * rows + 4 * rows, 1 + 6 + 1 + 3);
    (tb + b, tr + r)
}

/// Comparisons of normalize's variance normalisation: powers 4^0 ..= 4^22.
pub const NORM_J: u64 = 23;

/// `normalize` of `groups` groups of `n`: one square per element, 23 comparisons and 46 muxes
/// per group, the group's factor by 8 products per group (y0^2 and the factor times y0, x' y0^2,
/// the first Newton step's 4, the second's 1) in 6 calls, then one product per element.
pub fn normalize(n: u64, groups: u64) -> (u64, u64) {
    cost(NORM_J * groups, 1, n * groups + 2 * NORM_J * groups + 8 * groups + n * groups, 1 + 1 + 6 + 1)
}
