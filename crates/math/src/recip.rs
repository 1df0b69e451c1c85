//! Reciprocal, division, square roots and the logarithm.
//!
//! All but the row-sum reciprocal of softmax start with a *normalisation by powers of two*:
//! the bits `b_i = [a >= beta^(j_min + i - 1)]` (`beta` = 2 or 4) for every power of the
//! domain, in ONE comparison call, say how many powers `c` lie below `a`; then, in ONE
//! multiplexer call, local linear combinations of the bits give `x' = a beta^-k` in
//! `[1/beta, 1]` (`k = j_min + c`) and any factor that depends on `k` only (`2^-k`,
//! `k ln 2`). The combination telescopes: `x' = 1 + b_1 (A_1 - 1) - sum_i b_i (A_(i-1) - A_i)
//! - b_J (A_(J-1) - 1/beta)` with `A_i = a beta^-(j_min + i)` computed exactly in the ring at a
//! precision where every `A_i` is an integer (so no truncation error accumulates, and terms
//! that wrap around cancel exactly), and a factor `v(c)` is `v(0) + sum_i b_i (v(i) - v(i-1))`.
//! Values below the domain clamp to `a = beta^j_min` (`x' = 1`), values above to `a = beta^j_max`.

use crate::exp::chebyshev_fit;
use crate::fixed::{self, compare_with, encode, mul_int, mul_many, mux_many, public, rescale};
use crate::{Backend, Result, RingTensor, SharedBits, INTERNAL_BITS};

const F: u32 = INTERNAL_BITS;

/// Domain of [`reciprocal`] and [`div`]'s divisor: `|x|` in `[2^RECIP_MIN_EXP, 2^RECIP_MAX_EXP]`.
pub const RECIP_MIN_EXP: i32 = -8;
pub const RECIP_MAX_EXP: i32 = 16;
/// Upper end of [`sqrt`] / [`rsqrt`]'s domain: `x <= 4^ROOT_MAX_EXP = 2^16`.
pub const ROOT_MAX_EXP: i32 = 8;
/// Upper end of [`log`]'s domain: `x <= 2^LOG_MAX_EXP`.
pub const LOG_MAX_EXP: i32 = 16;
/// Degree of the polynomial for `log` on `[1/2, 1]`.
const LOG_DEGREE: usize = 5;
/// Newton iterations of the inverse square root (relative error after 2: `< 4e-4`).
const RSQRT_ITERS: usize = 2;

/// Lowest power of four of [`rsqrt`]'s domain at `scale`: `4^j >= 2^-scale`.
pub fn root_min_exp(scale: u32) -> i32 {
    -((scale / 2) as i32)
}

/// One linear combination of comparison bits: `base + sum_i bits_i * weights_i`.
pub(crate) struct Combo {
    pub base: RingTensor,
    pub weights: Vec<Option<RingTensor>>,
}

/// The bits `[a >= 2^(e j)]` for `j = j_min..=j_max`, in one comparison call.
pub(crate) fn pow_bits<B: Backend + ?Sized>(b: &mut B, a: &RingTensor, a_bits: u32, e: u32, j_min: i32, j_max: i32) -> Result<Vec<SharedBits>> {
    let thresholds: Vec<f64> = (j_min..=j_max).map(|j| 2f64.powi(e as i32 * j)).collect();
    // `a` is an internal value (a sum of squares, a normaliser's argument at internal
    // precision): the program's comparison domain does not bound it.
    fixed::full_width(b, |b| compare_with(b, a, &thresholds, a_bits))
}

/// Evaluates several combinations of the same bits in one multiplexer call.
pub(crate) fn combine<B: Backend + ?Sized>(b: &mut B, bits: &[SharedBits], combos: &[Combo]) -> Result<Vec<RingTensor>> {
    let mut pairs: Vec<(&SharedBits, &RingTensor)> = Vec::new();
    for c in combos {
        for (bit, w) in bits.iter().zip(&c.weights) {
            if let Some(w) = w {
                pairs.push((bit, w));
            }
        }
    }
    let products = mux_many(b, &pairs)?;
    let mut at = 0;
    let mut out = Vec::with_capacity(combos.len());
    for c in combos {
        let mut acc = c.base.clone();
        for w in &c.weights {
            if w.is_some() {
                acc = acc.add(&products[at])?;
                at += 1;
            }
        }
        out.push(acc);
    }
    Ok(out)
}

/// The mantissa `x' = a beta^-k` (`beta = 2^e`) as a combination of the bits of
/// [`pow_bits`]`(a, a_bits, e, j_min, j_max)`, at the returned precision `a_bits + e j_max`.
pub(crate) fn mantissa_combo<B: Backend + ?Sized>(b: &B, a: &RingTensor, a_bits: u32, e: u32, j_min: i32, j_max: i32) -> (Combo, u32) {
    assert!(j_max >= 0 && j_max >= j_min);
    let p = e as i32 * j_max;
    let bits = a_bits + p as u32;
    let big_j = (j_max - j_min + 1) as usize;
    let shape = a.shape();
    let one = encode(1.0, bits);
    let inv_beta = encode(2f64.powi(-(e as i32)), bits);
    // A_i raw = a_raw 2^(p - e (j_min + i)), exact (a multiple of a power of two, mod 2^64).
    let a_i = |i: usize| -> RingTensor {
        let sh = p - e as i32 * (j_min + i as i32);
        debug_assert!(sh >= 0);
        if sh >= 64 {
            RingTensor::zeros(shape.to_vec())
        } else {
            a.map(|v| v.wrapping_shl(sh as u32))
        }
    };
    let mut weights = Vec::with_capacity(big_j);
    if big_j == 1 {
        weights.push(Some(public(b, shape, inv_beta.wrapping_sub(one))));
    } else {
        let mut prev = a_i(1);
        weights.push(Some(fixed::add_public(b, &prev, one.wrapping_neg())));
        for i in 2..big_j {
            let cur = a_i(i);
            weights.push(Some(cur.sub(&prev).expect("same shape")));
            prev = cur;
        }
        weights.push(Some(fixed::add_public(b, &prev.neg(), inv_beta)));
    }
    (Combo { base: public(b, shape, one), weights }, bits)
}

/// A factor `v(c)` of the number `c` of bits set (`values[c]`, `c = 0..=J`, public ring
/// constants), optionally times a secret integer `sign` (`+-1`).
pub(crate) fn steps_combo<B: Backend + ?Sized>(b: &B, shape: &[usize], values: &[u64], sign: Option<&RingTensor>) -> Combo {
    let make = |v: u64| -> RingTensor {
        match sign {
            Some(s) => mul_int(s, v as i64),
            None => public(b, shape, v),
        }
    };
    let weights = values.windows(2).map(|w| Some(make(w[1].wrapping_sub(w[0])))).collect();
    Combo { base: make(values[0]), weights }
}

/// `+-1/x` (or `numerator / x`) at `q` fractional bits, `|x|` clamped to `[2^-8, 2^16]`; see [`crate::reciprocal`].
/// With a numerator of a larger shape that `x` broadcasts to, `expand` broadcasts a value of
/// `x`'s shape to the numerator's: the normalisation and the Newton factors are computed once
/// per element of `x` (a per-row divisor costs per row, not per element).
type Expand<'a> = &'a dyn Fn(&RingTensor) -> Result<RingTensor>;

fn reciprocal_at<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, q: u32, numerator: Option<(&RingTensor, Expand<'_>)>) -> Result<RingTensor> {
    let shape = x.shape().to_vec();
    // Sign: a = |x|, sigma = +-1 (x = 0 counts as positive).
    let two = public(b, &shape, 2);
    let m = fixed::full_width(b, |b| b.select_by_sign(x, &[x, &two]))?;
    let a = mul_int(&m[0], 2).sub(x)?;
    let sigma = fixed::add_public(b, &m[1], 1u64.wrapping_neg());
    // Normalisation: x' = a 2^-k in [1/2, 1], g = sigma 2^-k at q bits.
    let (j_min, j_max) = (RECIP_MIN_EXP, RECIP_MAX_EXP);
    let bits = pow_bits(b, &a, scale, 1, j_min, j_max)?;
    let (xc, xbits) = mantissa_combo(b, &a, scale, 1, j_min, j_max);
    let values: Vec<u64> = (0..=(j_max - j_min + 1)).map(|c| encode(2f64.powi(-(j_min + c)), q)).collect();
    let gc = steps_combo(b, &shape, &values, Some(&sigma));
    let r = combine(b, &bits, &[xc, gc])?;
    let xp = rescale(b, &r[0], xbits, F)?;
    let g = &r[1];
    // 1/x' = y0 / (1 - e) = y0 (1 + e)(1 + e^2) (1 + O(e^4)) with y0 = 48/17 - 32/17 x',
    // e = 1 - x' y0, |e| <= 1/17.
    let t = fixed::mul_real(b, &xp, -32.0 / 17.0, F)?;
    let y0 = fixed::add_public(b, &t, encode(48.0 / 17.0, F));
    let one = encode(1.0, F);
    match numerator {
        None => {
            // Rounds: [x' y0, g y0], [e^2, G (1 + e)], [G (1 + e^2)].
            let p = mul_many(b, &[(&xp, &y0), (g, &y0)])?;
            let t = b.scale_down(&p[0], F)?.neg();
            let e = fixed::add_public(b, &t, one);
            let g0 = b.scale_down(&p[1], F)?;
            let one_e = fixed::add_public(b, &e, one);
            let p = mul_many(b, &[(&e, &e), (&g0, &one_e)])?;
            let e2 = b.scale_down(&p[0], F)?;
            let g1 = b.scale_down(&p[1], F)?;
            let one_e2 = fixed::add_public(b, &e2, one);
            mul_shift(b, &g1, &one_e2, F)
        }
        Some((num, expand)) => {
            // Rounds: [x' y0, num g], [e^2, N y0], [N (1 + e)], [N (1 + e^2)]: the numerator
            // enters before any rounding of 1/x, so the quotient keeps its relative precision.
            let p = mul_many(b, &[(&xp, &y0), (num, &expand(g)?)])?;
            let t = b.scale_down(&p[0], F)?.neg();
            let e = fixed::add_public(b, &t, one);
            let ng = b.scale_down(&p[1], scale)?;
            let p = mul_many(b, &[(&e, &e), (&ng, &expand(&y0)?)])?;
            let e2 = b.scale_down(&p[0], F)?;
            let g0 = b.scale_down(&p[1], F)?;
            let one_e = fixed::add_public(b, &e, one);
            let g1 = mul_shift(b, &g0, &expand(&one_e)?, F)?;
            let one_e2 = fixed::add_public(b, &e2, one);
            mul_shift(b, &g1, &expand(&one_e2)?, F)
        }
    }
}

/// Internal precision of the reciprocal: 4 bits beyond the scale and at least 17 (so that
/// `2^-k` is exact for every `k <= 17`), at most 21 (so that the largest product,
/// `2^8 * 2^q * 2^17`, stays below `2^46`).
fn recip_bits(scale: u32) -> u32 {
    (scale + 4).clamp(17, 21)
}

pub fn reciprocal<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    let q = recip_bits(scale);
    let r = reciprocal_at(b, x, scale, q, None)?;
    rescale(b, &r, q, scale)
}

pub fn div<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor, scale: u32) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    let broadcast = cryptflow_tensor::movement::broadcast_shapes(x.shape(), y.shape());
    if broadcast.as_deref().ok() != Some(x.shape()) {
        return Err(crate::BackendError::Shape(cryptflow_tensor::ShapeError::new(format!(
            "div: the divisor {:?} does not broadcast to the dividend {:?}",
            y.shape(),
            x.shape()
        ))));
    }
    let out_shape = x.shape().to_vec();
    let expand = move |v: &RingTensor| -> Result<RingTensor> {
        if v.shape() == out_shape.as_slice() {
            Ok(v.clone())
        } else {
            Ok(cryptflow_tensor::movement::broadcast_to(v, &out_shape)?)
        }
    };
    let q = recip_bits(scale);
    let r = reciprocal_at(b, y, scale, q, Some((x, &expand)))?;
    rescale(b, &r, q, scale)
}

/// What the inverse square root's Newton iterations carry along (multiplied by `y0` and every
/// correction factor): a per-element value, or the product of two (computed in the first
/// round).
pub(crate) enum Carry<'a> {
    Ready(&'a RingTensor),
    Product(&'a RingTensor, &'a RingTensor, u32),
}

/// `carry / sqrt(x')` for `x'` in `[1/4, 1]` at `F` bits: `y0` linear (Chebyshev), then
/// [`RSQRT_ITERS`] Newton steps `y <- y (3 - x' y^2) / 2`, the carry multiplied by `y0` and
/// every factor. `expand` broadcasts a value of `x'`'s shape to the carry's. `3 * iters`
/// rounds.
pub(crate) fn rsqrt_newton<B: Backend + ?Sized>(b: &mut B, xp: &RingTensor, carry: Carry<'_>, expand: &dyn Fn(&RingTensor) -> Result<RingTensor>) -> Result<RingTensor> {
    let c = chebyshev_fit(|t| 1.0 / t.sqrt(), 0.25, 1.0, 1);
    let t = fixed::mul_real(b, xp, c[1], F)?;
    let y0 = fixed::add_public(b, &t, encode(c[0], F));
    let y0e = expand(&y0)?;
    // Round 1: y0^2 and the carry (times y0 if it is ready); round 2: x' y0^2 (and the carry
    // times y0 if it was a product).
    let (g, ysq, second) = match carry {
        Carry::Ready(cv) => {
            let p = mul_many(b, &[(&y0, &y0), (cv, &y0e)])?;
            (b.scale_down(&p[1], F)?, b.scale_down(&p[0], F)?, None)
        }
        Carry::Product(u, v, sh) => {
            let p = mul_many(b, &[(&y0, &y0), (u, v)])?;
            (b.scale_down(&p[1], sh)?, b.scale_down(&p[0], F)?, Some(()))
        }
    };
    let (u, g) = if second.is_some() {
        let q = mul_many(b, &[(xp, &ysq), (&g, &y0e)])?;
        (b.scale_down(&q[0], F)?, b.scale_down(&q[1], F)?)
    } else {
        (mul_shift(b, xp, &ysq, F)?, g)
    };
    let h = fixed::add_public(b, &u.neg(), encode(3.0, F));
    finish_newton(b, xp, y0, g, h, expand)
}

/// The Newton steps from the first factor `h = 3 - x' y0^2` on.
fn finish_newton<B: Backend + ?Sized>(
    b: &mut B,
    xp: &RingTensor,
    mut y: RingTensor,
    mut g: RingTensor,
    mut h: RingTensor,
    expand: &dyn Fn(&RingTensor) -> Result<RingTensor>,
) -> Result<RingTensor> {
    for it in 0..RSQRT_ITERS {
        let he = expand(&h)?;
        let last = it + 1 == RSQRT_ITERS;
        if last {
            g = mul_shift(b, &g, &he, F + 1)?;
            break;
        }
        let p = mul_many(b, &[(&y, &h), (&g, &he)])?;
        y = b.scale_down(&p[0], F + 1)?;
        g = b.scale_down(&p[1], F + 1)?;
        let ysq = mul_shift(b, &y, &y, F)?;
        let u = mul_shift(b, xp, &ysq, F)?;
        h = fixed::add_public(b, &u.neg(), encode(3.0, F));
    }
    Ok(g)
}

/// Internal precision of the roots' results: the largest carry (`2^(1 - j_min)`) times a
/// factor at `F` bits stays below `2^45`.
fn root_bits(scale: u32) -> u32 {
    (scale + 4).min(45 - F - (1 - root_min_exp(scale)) as u32)
}

fn root<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, square: bool) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    let shape = x.shape().to_vec();
    let (j_min, j_max) = (root_min_exp(scale), ROOT_MAX_EXP);
    let q = root_bits(scale);
    let bits = pow_bits(b, x, scale, 2, j_min, j_max)?;
    let (xc, xbits) = mantissa_combo(b, x, scale, 2, j_min, j_max);
    let values: Vec<u64> = (0..=(j_max - j_min + 1)).map(|c| encode(2f64.powi(-(j_min + c)), q)).collect();
    let fc = steps_combo(b, &shape, &values, None);
    let mut combos = vec![xc, fc];
    if square {
        // x+ = [x >= 4^j_min] x: zero for x <= 0.
        let mut w = vec![None; bits.len()];
        w[0] = Some(x.clone());
        combos.push(Combo { base: RingTensor::zeros(shape.clone()), weights: w });
    }
    let r = combine(b, &bits, &combos)?;
    let xp = rescale(b, &r[0], xbits, F)?;
    let id = |t: &RingTensor| Ok(t.clone());
    let g = if square {
        // sqrt(x) = x+ 2^-k / sqrt(x'): the carry x+ * 2^-k at q bits.
        rsqrt_newton(b, &xp, Carry::Product(&r[2], &r[1], scale), &id)?
    } else {
        rsqrt_newton(b, &xp, Carry::Ready(&r[1]), &id)?
    };
    rescale(b, &g, q, scale)
}

pub fn sqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    root(b, x, scale, true)
}

pub fn rsqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    root(b, x, scale, false)
}

/// `ln a` at `out_bits` for `a` (at `a_bits`) clamped to `[2^j_min, 2^j_max]`:
/// `k ln 2 + p(x')`, `x' = a 2^-k` in `[1/2, 1]`, `p` of degree 5 on `[1/2, 1]`.
pub(crate) fn log_core<B: Backend + ?Sized>(b: &mut B, a: &RingTensor, a_bits: u32, j_min: i32, j_max: i32, out_bits: u32) -> Result<RingTensor> {
    let shape = a.shape().to_vec();
    let bits = pow_bits(b, a, a_bits, 1, j_min, j_max)?;
    let (xc, xbits) = mantissa_combo(b, a, a_bits, 1, j_min, j_max);
    let ln2 = std::f64::consts::LN_2;
    let values: Vec<u64> = (0..=(j_max - j_min + 1)).map(|c| encode((j_min + c) as f64 * ln2, F)).collect();
    let kc = steps_combo(b, &shape, &values, None);
    let r = combine(b, &bits, &[xc, kc])?;
    let xp = rescale(b, &r[0], xbits, F)?;
    let u = fixed::add_public(b, &xp, encode(-0.75, F));
    let coeffs = chebyshev_fit(|t| (0.75 + t).ln(), -0.25, 0.25, LOG_DEGREE);
    let p = fixed::series(b, &u, &coeffs, F, false)?;
    rescale(b, &p.add(&r[1])?, F, out_bits)
}

pub fn log<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    log_core(b, x, scale, -(scale as i32), LOG_MAX_EXP, scale)
}

/// `1/s` at `F` bits for `s` (at `F` bits) in `[lo, hi]`, without comparisons: the best
/// linear start `y0 = lambda (lo + hi - s)` (`|e| <= e0 = 1 - lambda lo hi` for
/// `e = 1 - s y0`), then `1/s = y0 (1 + e)(1 + e^2)(1 + e^4)...` with `m` factors, `m` the
/// least with `e0^(2^m) <= 2^-15`: `2m` products in `m + 1` rounds. Used for softmax's row
/// sums (in `[1, n]`), where `m` grows like `log2 n`.
pub(crate) fn recip_range<B: Backend + ?Sized>(b: &mut B, s: &RingTensor, lo: f64, hi: f64) -> Result<RingTensor> {
    let (lambda, m) = recip_range_params(lo, hi);
    let s2 = mul_shift(b, s, s, F)?;
    // e = 1 - lambda (lo + hi) s + lambda s^2; y0 = lambda (lo + hi) - lambda s.
    let t1 = fixed::mul_real(b, s, lambda * (lo + hi), F)?;
    let t2 = fixed::mul_real(b, &s2, lambda, F)?;
    let mut e = fixed::add_public(b, &t2.sub(&t1)?, encode(1.0, F));
    let t3 = fixed::mul_real(b, s, -lambda, F)?;
    let mut y = fixed::add_public(b, &t3, encode(lambda * (lo + hi), F));
    for i in 0..m {
        let one_e = fixed::add_public(b, &e, encode(1.0, F));
        if i + 1 < m {
            let p = mul_many(b, &[(&y, &one_e), (&e, &e)])?;
            y = b.scale_down(&p[0], F)?;
            e = b.scale_down(&p[1], F)?;
        } else {
            y = mul_shift(b, &y, &one_e, F)?;
        }
    }
    Ok(y)
}

/// `(lambda, m)` of [`recip_range`].
pub(crate) fn recip_range_params(lo: f64, hi: f64) -> (f64, usize) {
    let lambda = 2.0 / (lo * hi + (lo + hi) * (lo + hi) / 4.0);
    let e0 = 1.0 - lambda * lo * hi;
    let mut m = 1;
    while e0.powi(1 << m) > 2f64.powi(-15) {
        m += 1;
    }
    (lambda, m)
}

/// `(x * y) >> shift`: one product, one truncation.
pub(crate) fn mul_shift<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor, shift: u32) -> Result<RingTensor> {
    let p = b.mul(x, y)?;
    b.scale_down(&p, shift)
}
