//! Normalisation over axes: `(x - mean) / sqrt(var + epsilon)` per group.
//!
//! For a group of `N` values: `D = N x - sum` (local and exact, so that a constant group gives
//! exactly 0 whatever the truncations), `D' = D >> w = c d 2^p` (`d = x - mean`, `c = N / 2^floor(log2 N)`
//! in `[1, 2)`, `p` from [`var_bits`]), `V = sum D'^2 + E` with `E = c^2 2^(2p) N epsilon`
//! (an exact integer sum of exact products: `V = c^2 2^(2p) N (var + epsilon)`), then
//! `1/sqrt(V)` per group by normalising `V` with the powers `4^0..4^22` (one comparison call,
//! one multiplexer call) and two Newton steps on the groups, which give the group's factor
//! `K 2^-k y` (`K = c 2^p / sqrt N`) at `r` bits; each element is then `D` times its group's
//! factor, one product and one truncation (the steps cost per group, not per element).

use cryptflow_tensor::movement;

use crate::fixed::{add_public, encode, rescale};
use crate::recip::{combine, mantissa_combo, pow_bits, rsqrt_newton, steps_combo, Carry};
use crate::{Backend, BackendError, Result, RingTensor, INTERNAL_BITS};

const F: u32 = INTERNAL_BITS;
/// Largest power of four of the normalisation: `V` above `4^22 = 2^44` is clamped to it.
pub(crate) const NORM_MAX_EXP: i32 = 22;
/// Fractional bits `p` of `d` in the variance of groups of `n`: as many as the scale has, but
/// at most so many that `V = c^2 2^(2p) n var` stays below `2^44` for standard deviations up
/// to `2^6` (so `p = 10` for `n = 768`, `p = scale` for `n <= 32` at scale 12).
pub(crate) fn var_bits(scale: u32, n: usize) -> u32 {
    let lg = usize::BITS - 1 - n.leading_zeros();
    let c = n as f64 / 2f64.powi(lg as i32);
    let room = ((32.0 - (c * c * n as f64).log2()) / 2.0).floor().max(0.0) as u32;
    scale.min(room)
}

pub fn normalize<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], epsilon: f32, scale: u32) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    let rank = x.rank();
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("normalize: axes {axes:?} are not sorted distinct axes of {:?}", x.shape()))));
    }
    if !(epsilon >= 0.0) {
        return Err(BackendError::Aborted(format!("normalize: epsilon {epsilon} is negative")));
    }
    let n: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let groups = if n == 0 { 0 } else { x.len() / n };
    if x.is_empty() {
        return Ok(x.clone());
    }
    let mut perm: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    perm.extend_from_slice(axes);
    let xt = movement::transpose(x, &perm)?;
    let data = xt.data();
    // D = N x - sum, exact.
    let mut d = Vec::with_capacity(data.len());
    for g in 0..groups {
        let row = &data[g * n..(g + 1) * n];
        let s = row.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        d.extend(row.iter().map(|&v| v.wrapping_mul(n as u64).wrapping_sub(s)));
    }
    let dt = RingTensor::new(vec![groups * n], d)?;
    let p = var_bits(scale, n);
    let lg = usize::BITS - 1 - n.leading_zeros();
    let w = scale - p + lg;
    let c = n as f64 / 2f64.powi(lg as i32);
    let dw = b.scale_down(&dt, w)?;
    let sq = crate::fixed::square(b, &dw)?;
    let mut v = vec![0u64; groups];
    for (i, &s) in sq.data().iter().enumerate() {
        v[i / n] = v[i / n].wrapping_add(s);
    }
    let e = (c * c * 2f64.powi(2 * p as i32) * n as f64 * epsilon as f64).round().min(2f64.powi(62));
    let v = add_public(b, &RingTensor::new(vec![groups], v)?, e as u64);
    // 1/sqrt(V) = 2^-k / sqrt(x'), x' = V 4^-k in [1/4, 1].
    let r = (40 - scale).min(24);
    let k_factor = c * 2f64.powi(p as i32) / (n as f64).sqrt();
    let bits = pow_bits(b, &v, 0, 2, 0, NORM_MAX_EXP)?;
    let (xc, xbits) = mantissa_combo(b, &v, 0, 2, 0, NORM_MAX_EXP);
    let values: Vec<u64> = (0..=(NORM_MAX_EXP + 1)).map(|k| encode(k_factor * 2f64.powi(-k), r)).collect();
    let fc = steps_combo(b, &[groups], &values, None);
    let comb = combine(b, &bits, &[xc, fc])?;
    let xp = rescale(b, &comb[0], xbits, F)?;
    // The per-group factor K 2^-k / sqrt(x') at r bits (Newton's steps on the groups alone),
    // then one product per element: D times its group's factor, truncated once to the scale.
    let factor = rsqrt_newton(b, &xp, Carry::Ready(&comb[1]), &|h: &RingTensor| Ok(h.clone()))?;
    let expanded = RingTensor::new(vec![groups * n], (0..groups * n).map(|i| factor.data()[i / n]).collect())?;
    let out = b.mul(&dt, &expanded)?;
    let out = b.scale_down(&out, r)?;
    crate::fixed::untranspose(out, x.shape(), &perm)
}
