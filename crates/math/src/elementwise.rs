//! Elementwise activations.
//!
//! # Method
//! Every smooth function is a Chebyshev series on `[-T, T]` (in `u = x / T`) glued to its
//! asymptote outside by two comparisons made in one DReLU call, `b_hi = [x >= T]` and
//! `b_lo = [x >= -T]`, and two multiplexers made in one call, arranged so that whatever the
//! series gives outside `[-T, T]` (it grows there, and wraps around the ring for huge inputs)
//! cancels exactly in the ring or is multiplied by a 0 bit:
//! - odd saturating (`sigmoid`, `tanh`, `erf`): `f = offset + o(x)`, `o` odd, `o -> +-c`:
//!   `offset - c + mux(b_lo, c + q) + mux(b_hi, c - q)` is `offset + q` inside, exactly
//!   `offset + c` above and `offset - c` below;
//! - even tail (`gelu`, `silu`, `softplus`): `f = x/2 + g(x)`, `g` even, `g -> |x|/2`: with
//!   `lo = round(x/2 + g)` and `hi = x - lo`, `mux(b_lo, lo) + mux(b_hi, hi)` is `lo` inside,
//!   exactly `x` above and exactly `0` below; `g` is a series in `w = 2 u^2 - 1` (one product);
//! - `elu`: `[x >= 0]` and `[x >= -T]`; the series of `alpha (e^x - 1)` on `[-T, 0]`.
//!
//! Coefficients are computed when a function is called
//! ([`fixed::chebyshev_coefficients`]: the discrete Chebyshev transform of the f64 function,
//! near the best uniform approximation); the polynomials `T_k(u)` come from
//! [`fixed::chebyshev`] in `ceil(log2 degree)` rounds of batched products, at 18 fractional
//! bits (or the scale plus 2 if more), where `|T_k(u)| <= 1` keeps every product below
//! `2^36` (a local truncation fails with probability about `2^-28` per product element;
//! monomials would need coefficients of `(1 + sqrt 2)^degree`). Results are rounded to the
//! nearest at the scale (half an ulp added before the last truncation). The half-widths `T`
//! and degrees were chosen by the `sweep` test at the end of this file.
//!
//! # Range
//! The asymptotes are exact for every input whose comparisons `x - T`, `x + T` (at the
//! scale) do not wrap around the ring: on the cleartext backend and 2PC every input but the
//! `T 2^scale` ulps nearest to `+-2^63`; under Porthos, whose DReLU is exact on
//! `[-2^62, 2^62)`, inputs with `|x| < 2^62 - T 2^scale`. The polynomials' products are far
//! from any bound only inside `[-T, T]`: outside, their garbage cancels.
//!
//! # Errors and costs
//! Measured by `tests/elementwise.rs` (cleartext, scale 12, every representable input of
//! `[-T - 2, T + 2]`; the exact asymptote outside). At another scale `s` the bound is the one
//! given plus `2^-s`; secure backends may add one ulp (local truncations). Porthos bytes per
//! element (summed over the three parties; DReLU 496, product and multiplexer 40) and rounds
//! (5 per DReLU call, 1 per product or multiplexer call), asserted by the same test:
//!
//! | function | T | degree | max error | DReLU | products + mux | bytes | x ReLU | rounds |
//! |---|---|---|---|---|---|---|---|---|
//! | abs | - | - | exact | 1 | 0 + 1 | 536 | 1.00 | 6 |
//! | prelu | - | - | 1 ulp (truncation) | 1 | 1 + 1 | 576 | 1.07 | 7 |
//! | sigmoid | 10 | 27 (odd) | 2.3e-4 | 2 | 17 + 2 | 1752 | 3.27 | 11 |
//! | tanh | 5 | 27 (odd) | 3.5e-4 | 2 | 17 + 2 | 1752 | 3.27 | 11 |
//! | erf | 3.5 | 19 (odd) | 1.7e-4 | 2 | 13 + 2 | 1592 | 2.97 | 11 |
//! | gelu (both forms) | 4 | 16 (even) | 1.8e-4 | 2 | 8 + 2 | 1392 | 2.60 | 10 |
//! | silu | 12 | 40 (even) | 2.4e-4 | 2 | 20 + 2 | 1872 | 3.49 | 12 |
//! | softplus | 10 | 32 (even) | 1.6e-4 | 2 | 16 + 2 | 1712 | 3.19 | 11 |
//! | elu | 12 | 12 | 1.4e-4 | 2 | 11 + 2 | 1512 | 2.82 | 10 |
//! | hard_sigmoid | - | - | 1.3e-4 (rounding) | 2 | 0 + 2 | 1072 | 2.00 | 6 |
//! | hard_swish | - | - | 1.3e-4 (rounding) | 2 | 1 + 2 | 1112 | 2.07 | 7 |

use crate::fixed::{self, add_public, encode, mul_int, mul_many, rescale, select_above};
use crate::{Backend, BackendError, GeluForm, Result, RingTensor};

/// A polynomial piece: Chebyshev series of `degree` in `u = x / half_width` on `[-1, 1]`,
/// evaluated at `bits` fractional bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fit {
    pub half_width: f64,
    pub degree: usize,
    pub bits: u32,
}

// Chosen by the `sweep` test below (cleartext, scale 12, grid over [-1.5 T, 1.5 T]): the
// cheapest degree within a few 1e-5 of the best error reachable for that function, with the
// half-width T past which the asymptote is closer than about 1e-4. 18 internal bits: products
// stay below 2^36 (a local truncation fails with probability about 2^-28 per element and
// product), within 3e-5 of what 20 bits give.
pub(crate) const SIGMOID: Fit = Fit { half_width: 10.0, degree: 27, bits: 18 };
pub(crate) const TANH: Fit = Fit { half_width: 5.0, degree: 27, bits: 18 };
pub(crate) const ERF: Fit = Fit { half_width: 3.5, degree: 19, bits: 18 };
pub(crate) const GELU_ERF: Fit = Fit { half_width: 4.0, degree: 16, bits: 18 };
pub(crate) const GELU_TANH: Fit = Fit { half_width: 4.0, degree: 16, bits: 18 };
pub(crate) const SILU: Fit = Fit { half_width: 12.0, degree: 40, bits: 18 };
pub(crate) const SOFTPLUS: Fit = Fit { half_width: 10.0, degree: 32, bits: 18 };
pub(crate) const ELU: Fit = Fit { half_width: 12.0, degree: 12, bits: 18 };

/// `erf` in f64: `2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1))`, a series of
/// positive terms (no cancellation), relative error near 1e-15; `+-1` past `|x| = 6`
/// (`1 - erf(6) < 3e-17`).
pub(crate) fn erf_f64(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    let x2 = x * x;
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum
}

fn gelu_tanh_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// `u = x / half_width` at `bits` fractional bits (`x` at `scale`): an exact multiplication
/// when that is a power of two that fits, a truncation otherwise.
fn normalise<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, half_width: f64, bits: u32) -> Result<RingTensor> {
    let log = half_width.log2();
    if log.fract() == 0.0 {
        let shift = bits as i64 - scale as i64 - log as i64;
        if (0..62).contains(&shift) {
            return Ok(mul_int(x, 1i64 << shift));
        }
        if (-63..0).contains(&shift) {
            return b.scale_down(x, (-shift) as u32);
        }
    }
    // x * m with m = round(2^(bits - scale + k) / half_width) near 2^20 (relative rounding
    // 2^-21), truncated by k: for |x| <= half_width the product is about 2^(bits + k).
    let k = (20 + half_width.log2().ceil() as i32 - (bits as i32 - scale as i32)).max(1);
    let m = (2f64.powi(bits as i32 - scale as i32 + k) / half_width).round();
    if !(1.0..(1u64 << 40) as f64).contains(&m) {
        return Err(BackendError::Aborted(format!("cannot normalise by {half_width} from scale {scale} to {bits} bits")));
    }
    b.scale_down(&mul_int(x, m as i64), k as u32)
}

/// `sum_k a_k T_k(u)` at the program's `scale`, for the coefficients of `f` on `[-1, 1]`
/// (only the wanted ones kept nonzero).
fn chebyshev_sum<B: Backend + ?Sized>(b: &mut B, u: &RingTensor, coeffs: &[f64], bits: u32, scale: u32) -> Result<RingTensor> {
    let p = fixed::series(b, u, coeffs, bits, true)?;
    round_to(b, &p, bits, scale)
}

/// `x` at `from` fractional bits rounded to the nearest at `to <= from` (half an ulp added,
/// then a truncation).
fn round_to<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, from: u32, to: u32) -> Result<RingTensor> {
    if from <= to {
        return rescale(b, x, from, to);
    }
    let half = add_public(b, x, 1u64 << (from - to - 1));
    b.scale_down(&half, from - to)
}

/// The internal precision of a fit at the program's `scale`: the fit's, or two bits more
/// than the scale if that is more.
fn internal_bits(fit: &Fit, scale: u32) -> u32 {
    fit.bits.max(scale + 2)
}

fn check_scale(scale: u32) -> Result<()> {
    if !(1..=30).contains(&scale) {
        return Err(BackendError::Aborted(format!("activations support scales 1..=30, not {scale}")));
    }
    Ok(())
}

/// `offset + o(x)` for an odd `o` that saturates at `+-c`: `o` by an odd Chebyshev series `q`
/// on `[-T, T]`, the asymptote outside. With `b_hi = [x >= T]`, `b_lo = [x >= -T]` (one
/// comparison call) the result is `offset - c + mux(b_lo, c + q) + mux(b_hi, c - q)`: `q`
/// inside, exactly `offset + c` above and `offset - c` below whatever `q` is there.
fn odd_saturating<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, fit: &Fit, f: impl Fn(f64) -> f64, offset: f64, c: f64) -> Result<RingTensor> {
    check_scale(scale)?;
    let t = fit.half_width;
    let mut coeffs = fixed::chebyshev_coefficients(|u| f(u * t) - offset, fit.degree);
    for (k, a) in coeffs.iter_mut().enumerate() {
        if k % 2 == 0 {
            *a = 0.0;
        }
    }
    let f_bits = internal_bits(fit, scale);
    let u = normalise(b, x, scale, t, f_bits)?;
    let q = chebyshev_sum(b, &u, &coeffs, f_bits, scale)?;
    let c_enc = encode(c, scale);
    let plus = add_public(b, &q, c_enc);
    let minus = add_public(b, &q.neg(), c_enc);
    let m = select_above(b, x, &[(-t, &plus), (t, &minus)], scale)?;
    let out = m[0].add(&m[1])?;
    Ok(add_public(b, &out, encode(offset, scale).wrapping_sub(c_enc)))
}

/// `x / 2 + g(x)` for an even `g` with `g(x) -> |x| / 2`: `g` by a Chebyshev series in
/// `w = 2 (x/T)^2 - 1` on `[-T, T]`. With the same two bits, `h = trunc(x / 2)` and
/// `h' = x - h`: `mux(b_lo, h + g) + mux(b_hi, h' - g)`, which is `x / 2 + g` inside, exactly
/// `x` above and exactly `0` below.
fn even_tail<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, fit: &Fit, g: impl Fn(f64) -> f64) -> Result<RingTensor> {
    check_scale(scale)?;
    let t = fit.half_width;
    let m = fit.degree / 2;
    let coeffs = fixed::chebyshev_coefficients(|w| g(t * ((w + 1.0) / 2.0).max(0.0).sqrt()), m);
    let f_bits = internal_bits(fit, scale);
    let u = normalise(b, x, scale, t, f_bits)?;
    let sq = fixed::square(b, &u)?;
    let twice = b.scale_down(&sq, f_bits - 1)?;
    let w = add_public(b, &twice, encode(-1.0, f_bits));
    let g = fixed::series(b, &w, &coeffs, f_bits, true)?;
    // lo = x/2 + g rounded once to the scale (f_bits >= scale + 2), hi = x - lo.
    let half_x = mul_int(x, 1i64 << (f_bits - scale - 1));
    let lo = round_to(b, &half_x.add(&g)?, f_bits, scale)?;
    let hi = x.sub(&lo)?;
    let z = select_above(b, x, &[(-t, &lo), (t, &hi)], scale)?;
    Ok(z[0].add(&z[1])?)
}

/// `|x| = 2 mux([x >= 0], x) - x`: exact (on the whole ring but `-2^63`; under Porthos on
/// its comparison range `[-2^62, 2^62)`). One DReLU and one multiplexer: 536 bytes per
/// element, 6 rounds under Porthos.
pub fn abs<B: Backend + ?Sized>(b: &mut B, x: &RingTensor) -> Result<RingTensor> {
    let pos = b.select_by_sign(x, &[x])?.remove(0);
    Ok(mul_int(&pos, 2).sub(x)?)
}

/// `x >= 0 ? x : slope x` with a secret slope: `sx = trunc(slope x / 2^scale)` (one product),
/// `sx + mux([x >= 0], x - sx)`. `x` exactly for `x >= 0`, `floor(slope x)` at the scale
/// (secure: or one ulp more) below. One DReLU, one product, one multiplexer: 576 bytes per
/// element, 7 rounds under Porthos.
pub fn prelu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, slope: &RingTensor, scale: u32) -> Result<RingTensor> {
    if x.shape() != slope.shape() {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!(
            "prelu: input {:?}, slope {:?}",
            x.shape(),
            slope.shape()
        ))));
    }
    let sx = b.mul(slope, x)?;
    let sx = b.scale_down(&sx, scale)?;
    let d = b.select_by_sign(x, &[&x.sub(&sx)?])?.remove(0);
    Ok(sx.add(&d)?)
}

/// `1 / (1 + e^-x)` = `1/2 + tanh(x/2)/2`: odd saturating form with an odd Chebyshev series
/// of degree 27 on `[-10, 10]`; exactly 1 for `x >= 10`, exactly 0 for `x < -10`. Max error
/// 2.3e-4 at scale 12 (bound 2.4e-4; the asymptote is within 4.6e-5). Porthos: 2 DReLU +
/// 17 products + 2 mux = 1752 bytes per element (3.27 ReLUs), 5 + 5 + 1 = 11 rounds.
pub fn sigmoid<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    odd_saturating(b, x, scale, &SIGMOID, |v| 0.5 + 0.5 * (v / 2.0).tanh(), 0.5, 0.5)
}

/// `tanh x`: odd saturating form, odd Chebyshev series of degree 27 on `[-5, 5]`; exactly
/// `+-1` past `+-5`. Max error 3.5e-4 at scale 12 (bound 3.6e-4). Porthos: 2 DReLU + 17
/// products + 2 mux = 1752 bytes per element, 11 rounds.
pub fn tanh<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    odd_saturating(b, x, scale, &TANH, f64::tanh, 0.0, 1.0)
}

/// `erf x`: odd saturating form, odd Chebyshev series of degree 19 on `[-3.5, 3.5]`; exactly
/// `+-1` past `+-3.5` (`1 - erf 3.5 = 7.4e-7`). Max error 1.7e-4 at scale 12. Porthos: 2 DReLU
/// + 13 products + 2 mux = 1592 bytes per element, 11 rounds.
pub fn erf<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    odd_saturating(b, x, scale, &ERF, erf_f64, 0.0, 1.0)
}

/// GELU, either form: even-tail form, `x/2 + g(x)` with `g` (`x erf(x/sqrt 2) / 2`, or
/// `x tanh(sqrt(2/pi)(x + 0.044715 x^3)) / 2`) an even Chebyshev series of degree 16 on
/// `[-4, 4]`; exactly `x` for `x >= 4` and exactly 0 for `x < -4` (the erf form's tail there is
/// below 1.3e-4). Max error at scale 12: 1.7e-4 (erf form), 1.8e-4 (tanh form). Porthos:
/// 2 DReLU + 1 square + 7 products + 2 mux = 1392 bytes per element (2.60 ReLUs), 5 + 4 + 1 = 10
/// rounds.
pub fn gelu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, form: GeluForm) -> Result<RingTensor> {
    match form {
        GeluForm::Erf => even_tail(b, x, scale, &GELU_ERF, |v| 0.5 * v * erf_f64(v / std::f64::consts::SQRT_2)),
        GeluForm::Tanh => even_tail(b, x, scale, &GELU_TANH, |v| gelu_tanh_f64(v) - 0.5 * v),
    }
}

/// SiLU `x sigmoid(x) = x/2 + x tanh(x/2)/2`: even-tail form, series of degree 40 on
/// `[-12, 12]`; exactly `x` for `x >= 12`, exactly 0 for `x < -12` (tail below 7.4e-5). Max
/// error 2.4e-4 at scale 12 (bound 2.5e-4). Porthos: 2 DReLU + 1 square + 19 products + 2 mux =
/// 1872 bytes per element, 12 rounds.
pub fn silu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    even_tail(b, x, scale, &SILU, |v| 0.5 * v * (v / 2.0).tanh())
}

/// `log(1 + e^x) = x/2 + log(2 cosh(x/2))`: even-tail form, series of degree 32 on
/// `[-10, 10]`; exactly `x` for `x >= 10`, exactly 0 for `x < -10` (tail below 4.6e-5). Max
/// error 1.6e-4 at scale 12 (bound 1.7e-4). Porthos: 2 DReLU + 1 square + 15 products + 2 mux =
/// 1712 bytes per element, 11 rounds.
pub fn softplus<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    // log(1 + e^x) - x/2 = log(2 cosh(x/2)) = |x|/2 + log(1 + e^-|x|).
    even_tail(b, x, scale, &SOFTPLUS, |v| 0.5 * v.abs() + (-v.abs()).exp().ln_1p())
}

/// ELU: with `b0 = [x >= 0]`, `b_lo = [x >= -12]` and `p` a Chebyshev series of degree 12 of
/// `alpha (e^x - 1)` in `u = (x + 6) / 6` on `[-12, 0]`:
/// `mux(b0, x - p) + mux(b_lo, p + alpha) - alpha`, which is exactly `x` for `x >= 0`, `p` on `[-12, 0)` and exactly `-alpha` below
/// (tail `alpha e^-12 = alpha 6e-6`). Max error 1.4e-4 at scale 12 for `alpha` 1 and 0.5 (the
/// series' error scales with `alpha`). Porthos: 2 DReLU + 11 products + 2 mux = 1512 bytes per
/// element, 5 + 4 + 1 = 10 rounds.
pub fn elu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, alpha: f32) -> Result<RingTensor> {
    elu_with(b, x, scale, alpha, ELU)
}

fn elu_with<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, alpha: f32, fit: Fit) -> Result<RingTensor> {
    check_scale(scale)?;
    let alpha = alpha as f64;
    let t = fit.half_width;
    let half = t / 2.0;
    // p(u) = alpha (e^x - 1) for x = (u - 1) T/2, u in [-1, 1] <=> x in [-T, 0].
    let coeffs = fixed::chebyshev_coefficients(|u| alpha * ((u - 1.0) * half).exp_m1(), fit.degree);
    let f_bits = internal_bits(&fit, scale);
    let u = normalise(b, x, scale, half, f_bits)?;
    let u = add_public(b, &u, encode(1.0, f_bits));
    let p = chebyshev_sum(b, &u, &coeffs, f_bits, scale)?;
    let a = encode(alpha, scale);
    let above = x.sub(&p)?;
    let inside = add_public(b, &p, a);
    let z = select_above(b, x, &[(0.0, &above), (-t, &inside)], scale)?;
    Ok(add_public(b, &z[0].add(&z[1])?, a.wrapping_neg()))
}

/// Bits of the multiplier of `alpha` in [`hard_sigmoid`].
const ALPHA_BITS: u32 = 20;

/// `clip(alpha x + beta, 0, 1)`: `y = round(alpha x) + beta` (alpha at 20 bits), compared by
/// `x` (not `y`, which overflows for huge `x`) with the edges `-beta/alpha`,
/// `(1 - beta)/alpha` encoded at the scale: `mux([y >= 0], y) - mux([y >= 1], y - 1)` (mirrored
/// for `alpha < 0`; a public constant for `alpha = 0`). Exactly 0 and 1 past the edges; within
/// half an ulp (1.3e-4 at scale 12) inside, one more ulp on secure backends. Porthos: 2 DReLU +
/// 2 mux = 1072 bytes per element, 6 rounds.
pub fn hard_sigmoid<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, alpha: f32, beta: f32) -> Result<RingTensor> {
    check_scale(scale)?;
    let (alpha, beta) = (alpha as f64, beta as f64);
    if alpha == 0.0 {
        return Ok(fixed::public(b, x.shape(), encode(beta.clamp(0.0, 1.0), scale)));
    }
    // y = alpha x + beta; y = 0 at x0 = -beta / alpha, y = 1 at x1 = (1 - beta) / alpha. The
    // regions are told by comparing x (not y, which overflows for huge x) with them.
    // y = round(x alpha) + beta: the product with alpha at ALPHA_BITS, half an ulp added,
    // truncated (below 2^(scale + ALPHA_BITS + 3) while y is in [0, 1] and |alpha| <= 8).
    let ax = fixed::mul_int(x, encode(alpha, ALPHA_BITS) as i64);
    let ax = add_public(b, &ax, 1u64 << (ALPHA_BITS - 1));
    let ax = b.scale_down(&ax, ALPHA_BITS)?;
    let y = add_public(b, &ax, encode(beta, scale));
    let (x0, x1) = (-beta / alpha, (1.0 - beta) / alpha);
    let one = encode(1.0, scale);
    let y_minus_1 = add_public(b, &y, one.wrapping_neg());
    if alpha > 0.0 {
        // x < x0: 0; x0 <= x < x1: y; x >= x1: 1 = mux(b0, y) - mux(b1, y - 1).
        let z = select_above(b, x, &[(x0, &y), (x1, &y_minus_1)], scale)?;
        Ok(z[0].sub(&z[1])?)
    } else {
        // x < x1: 1; x1 <= x < x0: y; x >= x0: 0 = 1 + mux(b1, y - 1) - mux(b0, y).
        let z = select_above(b, x, &[(x1, &y_minus_1), (x0, &y)], scale)?;
        Ok(add_public(b, &z[0].sub(&z[1])?, one))
    }
}

/// `x relu6(x + 3) / 6`: `p = round(x (x + 3) / 6)` (one product, `(x + 3)/6` kept at a few
/// more bits than the scale), `mux([x >= -3], p) + mux([x >= 3], x - p)`: exactly `x` for
/// `x >= 3` and 0 for `x < -3`; within 1.3e-4 at scale 12 inside. Porthos: 2 DReLU + 1
/// product + 2 mux = 1112 bytes per element, 7 rounds.
pub fn hard_swish<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    check_scale(scale)?;
    // p = x (x + 3) / 6: (x + 3) / 6 at scale + e, the product at 2 scale + e, truncated.
    let e = 46u32.saturating_sub(2 * scale).min(8);
    let x3 = add_public(b, x, encode(3.0, scale));
    const G: u32 = 24;
    let sixth = b.scale_down(&mul_int(&x3, encode(1.0 / 6.0, G) as i64), G - e)?;
    let p = mul_many(b, &[(x, &sixth)])?.remove(0);
    let p = round_to(b, &p, 2 * scale + e, scale)?;
    let z = select_above(b, x, &[(-3.0, &p), (3.0, &x.sub(&p)?)], scale)?;
    Ok(z[0].add(&z[1])?)
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod sweep {
    use super::*;
    use cryptflow_backend::cleartext::Cleartext;

    fn grid(t: f64, scale: u32) -> RingTensor {
        let lim = (1.5 * t * (1u64 << scale) as f64) as i64;
        let step = ((2 * lim) / 20000).max(1);
        let v: Vec<u64> = (-lim..=lim).step_by(step as usize).map(|v| v as u64).collect();
        RingTensor::new(vec![v.len()], v).unwrap()
    }

    fn err(x: &RingTensor, y: &RingTensor, scale: u32, f: &dyn Fn(f64) -> f64) -> f64 {
        x.data().iter().zip(y.data()).map(|(&a, &b)| (fixed::decode(b, scale) - f(fixed::decode(a, scale))).abs()).fold(0.0, f64::max)
    }

    #[test]
    #[ignore]
    fn sweep() {
        let mut c = Cleartext::new();
        let s: u32 = std::env::var("SWEEP_SCALE").map(|v| v.parse().unwrap()).unwrap_or(12);
        for bits in [16u32, 18, 20] {
            for (name, ts, degs) in [
                ("tanh", vec![4.0, 5.0], vec![23usize, 27, 31]),
                ("sigmoid", vec![8.0, 10.0], vec![23, 27, 31]),
                ("erf", vec![3.5, 4.0], vec![17, 19, 21]),
            ] {
                for &t in &ts {
                    for &d in &degs {
                        let fit = Fit { half_width: t, degree: d, bits };
                        let x = grid(t, s);
                        let (f, off, cc): (Box<dyn Fn(f64) -> f64>, f64, f64) = match name {
                            "tanh" => (Box::new(f64::tanh), 0.0, 1.0),
                            "sigmoid" => (Box::new(|v: f64| 0.5 + 0.5 * (v / 2.0).tanh()), 0.5, 0.5),
                            _ => (Box::new(erf_f64), 0.0, 1.0),
                        };
                        let y = odd_saturating(&mut c, &x, s, &fit, &f, off, cc).unwrap();
                        let (p, r) = fixed::chebyshev_cost(d, |k| k % 2 == 1);
                        println!("{name} bits {bits} T {t} d {d}: err {:.2e} products {p} rounds {r}", err(&x, &y, s, &f));
                    }
                }
            }
            for (name, ts, degs) in [
                ("gelu", vec![4.0, 5.0], vec![16usize, 20, 24]),
                ("gelu_tanh", vec![4.0, 5.0], vec![16usize, 20, 24]),
                ("silu", vec![10.0, 12.0], vec![32usize, 40]),
                ("softplus", vec![10.0, 12.0], vec![32usize, 40]),
            ] {
                for &t in &ts {
                    for &d in &degs {
                        let fit = Fit { half_width: t, degree: d, bits };
                        let x = grid(t, s);
                        let (f, g): (Box<dyn Fn(f64) -> f64>, Box<dyn Fn(f64) -> f64>) = match name {
                            "gelu" => (Box::new(|v: f64| 0.5 * v * (1.0 + erf_f64(v / 2f64.sqrt()))), Box::new(|v: f64| 0.5 * v * erf_f64(v / 2f64.sqrt()))),
                            "gelu_tanh" => (Box::new(gelu_tanh_f64), Box::new(|v: f64| gelu_tanh_f64(v) - 0.5 * v)),
                            "silu" => (Box::new(|v: f64| v / (1.0 + (-v).exp())), Box::new(|v: f64| 0.5 * v * (v / 2.0).tanh())),
                            _ => (Box::new(|v: f64| v.exp().ln_1p()), Box::new(|v: f64| 0.5 * v.abs() + (-v.abs()).exp().ln_1p())),
                        };
                        let y = even_tail(&mut c, &x, s, &fit, &g).unwrap();
                        let (p, r) = fixed::chebyshev_cost(d / 2, |_| true);
                        println!("{name} bits {bits} T {t} d {d}: err {:.2e} products {} rounds {}", err(&x, &y, s, &f), p + 1, r + 1);
                    }
                }
            }
            for t in [8.0, 12.0, 16.0] {
                for d in [8usize, 12, 16, 20] {
                    let fit = Fit { half_width: t, degree: d, bits };
                    let x = grid(t, s);
                    let f = |v: f64| if v >= 0.0 { v } else { v.exp_m1() };
                    let y = elu_with(&mut c, &x, s, 1.0, fit).unwrap();
                    let (p, r) = fixed::chebyshev_cost(d, |_| true);
                    println!("elu bits {bits} T {t} d {d}: err {:.2e} products {p} rounds {r}", err(&x, &y, s, &f));
                }
            }
        }
    }
}
