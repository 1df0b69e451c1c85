//! The exponential: a clamp, `e^x = (e^{x / 2^k})^{2^k}` with a Chebyshev-fitted polynomial
//! for `e^{x / 2^k}` at the internal precision, then `k` squarings.

use crate::fixed::{self, encode, rescale, select_above};
use crate::{Backend, BackendError, Result, RingTensor, INTERNAL_BITS};

/// Lower end of [`exp`]'s domain.
pub const EXP_LO: f64 = -16.0;
/// Upper end of [`exp`]'s domain.
pub const EXP_HI: f64 = 8.0;
/// Squarings of [`exp`].
const EXP_SQUARINGS: u32 = 5;
/// Degree of [`exp`]'s polynomial for `e^t`, `t` in `[-0.5, 0.25]`.
const EXP_DEGREE: usize = 4;
/// [`exp_nonpositive`]: clamp at `-16`, 4 squarings of a degree-4 polynomial on `[-1, 0]`.
pub(crate) const EXPN_LO: f64 = -16.0;
const EXPN_SQUARINGS: u32 = 4;
const EXPN_DEGREE: usize = 4;

/// Coefficients (in powers of `t`) of the polynomial of `degree` interpolating `f` at the
/// Chebyshev nodes of `[lo, hi]` (computed in f64; public).
pub(crate) fn chebyshev_fit(f: impl Fn(f64) -> f64, lo: f64, hi: f64, degree: usize) -> Vec<f64> {
    let n = degree + 1;
    let nodes: Vec<f64> = (0..n)
        .map(|i| {
            let c = ((2 * i + 1) as f64 * std::f64::consts::PI / (2 * n) as f64).cos();
            (lo + hi) / 2.0 + (hi - lo) / 2.0 * c
        })
        .collect();
    // Vandermonde system, Gaussian elimination with partial pivoting.
    let mut a: Vec<Vec<f64>> = nodes.iter().map(|&t| (0..n).map(|k| t.powi(k as i32)).chain(std::iter::once(f(t))).collect()).collect();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, piv);
        for row in 0..n {
            if row != col {
                let r = a[row][col] / a[col][col];
                for k in col..=n {
                    a[row][k] -= r * a[col][k];
                }
            }
        }
    }
    (0..n).map(|i| a[i][n] / a[i][i]).collect()
}

/// `e^x` for `x` already in `[lo, hi]` (at `in_bits`): `t = x / 2^k` at the internal precision,
/// `p(t)` of `degree`, then `k` squarings, the last one truncated to `out_bits`.
/// Products: `degree - 1 + k` per element, in `ceil(log2 degree) + k` rounds.
pub(crate) fn exp_core<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, in_bits: u32, lo: f64, hi: f64, k: u32, degree: usize, out_bits: u32) -> Result<RingTensor> {
    let f = INTERNAL_BITS;
    let scale_k = 2f64.powi(k as i32);
    let t = rescale(b, x, in_bits + k, f)?;
    let coeffs = chebyshev_fit(f64::exp, lo / scale_k, hi / scale_k, degree);
    let mut y = fixed::series(b, &t, &coeffs, f, false)?;
    if k == 0 {
        return rescale(b, &y, f, out_bits);
    }
    for j in 0..k {
        let sq = fixed::square(b, &y)?;
        y = if j + 1 == k { rescale(b, &sq, 2 * f, out_bits)? } else { b.scale_down(&sq, f)? };
    }
    Ok(y)
}

/// `e^x` on `[-16, 8]`; see [`crate::exp`].
pub fn exp<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    check_scale(scale)?;
    // Clamp: -16 + [x >= -16](x + 16) - [x >= 8](x - 8), one comparison call, one mux call.
    let lo_part = fixed::add_public(b, x, encode(-EXP_LO, scale));
    let hi_part = fixed::add_public(b, x, encode(-EXP_HI, scale));
    let sel = select_above(b, x, &[(EXP_LO, &lo_part), (EXP_HI, &hi_part)], scale)?;
    let xc = fixed::add_public(b, &sel[0].sub(&sel[1])?, encode(EXP_LO, scale));
    exp_core(b, &xc, scale, EXP_LO, EXP_HI, EXP_SQUARINGS, EXP_DEGREE, scale)
}

/// `e^z` for `z <= 0` (softmax's `x - max`), clamped below at `-16` (`e^-16 < 2^-16`), at
/// `out_bits`: one comparison, one multiplexer, 7 products per element (12 rounds).
pub(crate) fn exp_nonpositive<B: Backend + ?Sized>(b: &mut B, z: &RingTensor, scale: u32, out_bits: u32) -> Result<RingTensor> {
    let shifted = fixed::add_public(b, z, encode(-EXPN_LO, scale));
    let kept = b.select_by_sign(&shifted, &[&shifted])?.remove(0);
    let zc = fixed::add_public(b, &kept, encode(EXPN_LO, scale));
    exp_core(b, &zc, scale, EXPN_LO, 0.0, EXPN_SQUARINGS, EXPN_DEGREE, out_bits)
}

pub(crate) fn check_scale(scale: u32) -> Result<()> {
    if !crate::SCALES.contains(&scale) {
        return Err(BackendError::Aborted(format!(
            "scale {scale} is outside the {}..={} fractional bits the secure math functions support",
            crate::SCALES.start(),
            crate::SCALES.end()
        )));
    }
    Ok(())
}
