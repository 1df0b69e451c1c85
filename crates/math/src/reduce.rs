//! Maxima and minima: one comparison of the difference and one multiplexer per pair, and
//! knock-out trees for reductions.
//!
//! Costs under Porthos (bytes summed over the three parties, `D = 496` per DReLU element,
//! `M = 40` per multiplexer element): `max`/`min` of two tensors of `n` elements cost
//! `n (D + M)` bytes in 6 rounds; `reduce_max`/`reduce_min` of `outs` groups of `n` candidates
//! cost `(n - 1) outs (D + M)` bytes in `6 ceil(log2 n)` rounds. All are exact (comparisons
//! are exact for differences in `[-2^62, 2^62)`).

use cryptflow_tensor::movement;
use cryptflow_tensor::ShapeError;

use crate::{Backend, BackendError, Result, RingTensor};

fn shape_err(msg: String) -> BackendError {
    BackendError::Shape(ShapeError::new(msg))
}

/// `max(x, y)`: `y + [x - y >= 0] (x - y)`.
pub fn max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    if x.shape() != y.shape() {
        return Err(shape_err(format!("max: shapes {:?} and {:?} differ", x.shape(), y.shape())));
    }
    let d = x.sub(y)?;
    Ok(y.add(&b.select_by_sign(&d, &[&d])?.remove(0))?)
}

/// `min(x, y)`: `x - [x - y >= 0] (x - y)`.
pub fn min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    if x.shape() != y.shape() {
        return Err(shape_err(format!("min: shapes {:?} and {:?} differ", x.shape(), y.shape())));
    }
    let d = x.sub(y)?;
    Ok(x.sub(&b.select_by_sign(&d, &[&d])?.remove(0))?)
}

/// The maximum (`largest`) or minimum of each column of `rows` (`n` rows of `outs` values,
/// row-major): a knock-out tree, each level one DReLU call on all pairs' differences and one
/// multiplexer call; an odd candidate out goes to the next level as it is.
pub(crate) fn tree<B: Backend + ?Sized>(b: &mut B, rows: &[u64], n: usize, outs: usize, largest: bool) -> Result<Vec<u64>> {
    if n == 0 {
        return Err(shape_err("reduction over an empty axis".into()));
    }
    let mut vals = rows[..n * outs].to_vec();
    let mut m = n;
    while m > 1 {
        let pairs = m / 2;
        let p = pairs * outs;
        // d = left - right (largest) or right - left: the bit [d >= 0] says "left wins".
        let mut diff = Vec::with_capacity(p);
        for k in 0..pairs {
            let (l, r) = (2 * k * outs, (2 * k + 1) * outs);
            for o in 0..outs {
                diff.push(vals[l + o].wrapping_sub(vals[r + o]));
            }
        }
        let d = RingTensor::new(vec![p], diff)?;
        let sel = if largest { b.select_by_sign(&d, &[&d])? } else { b.select_by_sign(&d.neg(), &[&d])? }.remove(0);
        let mut next = Vec::with_capacity((pairs + m % 2) * outs);
        for k in 0..pairs {
            let r = (2 * k + 1) * outs;
            for o in 0..outs {
                next.push(vals[r + o].wrapping_add(sel.data()[k * outs + o]));
            }
        }
        if m % 2 == 1 {
            next.extend_from_slice(&vals[(m - 1) * outs..m * outs]);
        }
        vals = next;
        m = pairs + m % 2;
    }
    Ok(vals)
}

/// `x` with the (sorted, distinct) `axes` moved first, as `(n, outs, reduced output shape)`.
pub(crate) fn axes_first(x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<(RingTensor, usize, usize, Vec<usize>)> {
    let rank = x.rank();
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        return Err(shape_err(format!("reduction axes {axes:?} are not sorted distinct axes of {:?}", x.shape())));
    }
    let mut perm: Vec<usize> = axes.to_vec();
    perm.extend((0..rank).filter(|a| !axes.contains(a)));
    let t = movement::transpose(x, &perm)?;
    let n: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let outs: usize = (0..rank).filter(|a| !axes.contains(a)).map(|a| x.shape()[a]).product();
    let out_shape: Vec<usize> = (0..rank)
        .filter_map(|a| match (axes.contains(&a), keep_dims) {
            (false, _) => Some(x.shape()[a]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    Ok((t, n, outs, out_shape))
}

fn reduce<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool, largest: bool) -> Result<RingTensor> {
    if axes.is_empty() {
        return Ok(x.clone());
    }
    let (t, n, outs, out_shape) = axes_first(x, axes, keep_dims)?;
    if outs == 0 {
        return Ok(RingTensor::zeros(out_shape));
    }
    let vals = tree(b, t.data(), n, outs, largest)?;
    Ok(RingTensor::new(out_shape, vals)?)
}

pub fn reduce_max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce(b, x, axes, keep_dims, true)
}

pub fn reduce_min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce(b, x, axes, keep_dims, false)
}
