//! Softmax and log-softmax along an axis, all rows in parallel.
//!
//! With the axis moved first (`n` candidates for each of `outs` rows): the row maximum `m` by a
//! knock-out tree, `z = x - m <= 0`, `e = e^z` by [`crate::exp::exp_nonpositive`] at the
//! internal precision, the row sum `s` in `[1, n]` (local), then
//! - softmax: `e * 1/s`, the reciprocal by [`crate::recip::recip_range`] (no comparisons: a
//!   linear start on `[1, n]` and `m(n)` error-squaring factors);
//! - log-softmax: `z - ln s`, the logarithm by normalising `s` with the powers `2^0..2^ceil(log2 n)`.

use cryptflow_tensor::movement;

use crate::exp::exp_nonpositive;
use crate::recip::{log_core, recip_range};
use crate::{Backend, BackendError, Result, RingTensor, INTERNAL_BITS};

const F: u32 = INTERNAL_BITS;

/// `ceil(log2 n)` (0 for `n <= 1`).
pub(crate) fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

pub fn softmax<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axis: usize, scale: u32, log: bool) -> Result<RingTensor> {
    crate::exp::check_scale(scale)?;
    let rank = x.rank();
    if axis >= rank || x.shape()[axis] == 0 {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("softmax over axis {axis} of shape {:?}", x.shape()))));
    }
    let n = x.shape()[axis];
    let outs = x.len() / n;
    if outs == 0 {
        return Ok(x.clone());
    }
    let mut perm = vec![axis];
    perm.extend((0..rank).filter(|&a| a != axis));
    let xt = movement::transpose(x, &perm)?;
    let m = crate::reduce::tree(b, xt.data(), n, outs, true)?;
    let z: Vec<u64> = xt.data().iter().enumerate().map(|(i, &v)| v.wrapping_sub(m[i % outs])).collect();
    let z = RingTensor::new(vec![n * outs], z)?;
    let e = exp_nonpositive(b, &z, scale, F)?;
    let mut sum = vec![0u64; outs];
    for (i, &v) in e.data().iter().enumerate() {
        sum[i % outs] = sum[i % outs].wrapping_add(v);
    }
    let sum = RingTensor::new(vec![outs], sum)?;
    let expand = |r: &RingTensor| -> Result<RingTensor> { Ok(RingTensor::new(vec![n * outs], (0..n * outs).map(|i| r.data()[i % outs]).collect())?) };
    let out = if log {
        let l = log_core(b, &sum, F, 0, ceil_log2(n) as i32, scale)?;
        z.sub(&expand(&l)?)?
    } else {
        let r = recip_range(b, &sum, 1.0, n as f64)?;
        let p = b.mul(&e, &expand(&r)?)?;
        b.scale_down(&p, 2 * F - scale)?
    };
    crate::fixed::untranspose(out, x.shape(), &perm)
}
