//! The evaluator of constants: elementwise arithmetic and comparisons with broadcasting,
//! casts, activations, reductions, `Range`, `Select`, and the shape arithmetic of reshapes
//! and squeezes. It only needs to be exact on small shape vectors and correct on weights.
//!
//! `limit` arguments are the front end's largest constant computed at import time when it is
//! larger than its inputs.

use cryptflow_ir::hlil::Op;
use cryptflow_tensor::{num_elements, strides_of};

use crate::consts::{broadcast_shapes, check_shape, checked_elements, Const, Data, MAX_DIM};
use crate::context::NodeContext;

fn broadcast_f32(c: &Const, shape: &[usize]) -> Result<Vec<f32>, String> {
    Ok(c.as_float().broadcast_to(shape)?.to_f32())
}

fn broadcast_i64(c: &Const, shape: &[usize]) -> Result<Vec<i64>, String> {
    Ok(c.as_int().broadcast_to(shape)?.to_i64())
}

/// Elementwise binary operation with broadcasting; float if either side is float.
pub fn binary(
    a: &Const,
    b: &Const,
    limit: usize,
    ff: impl Fn(f32, f32) -> f32,
    fi: impl Fn(i64, i64) -> Result<i64, String>,
) -> Result<Const, String> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let n = check_shape(&shape)?;
    if n > limit.max(a.len()).max(b.len()) {
        return Err(format!("constant of shape {shape:?} is too large to evaluate"));
    }
    if a.is_float() || b.is_float() {
        let x = broadcast_f32(a, &shape)?;
        let y = broadcast_f32(b, &shape)?;
        Ok(Const::new_f(shape, x.iter().zip(&y).map(|(&p, &q)| ff(p, q)).collect()))
    } else {
        let x = broadcast_i64(a, &shape)?;
        let y = broadcast_i64(b, &shape)?;
        let data = x.iter().zip(&y).map(|(&p, &q)| fi(p, q)).collect::<Result<Vec<_>, _>>()?;
        Ok(Const::new_i(shape, data))
    }
}

/// A comparison or logical connective.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cmp {
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    And,
    Or,
}

impl Cmp {
    fn floats(self, p: f32, q: f32) -> bool {
        match self {
            Cmp::Equal => p == q,
            Cmp::NotEqual => p != q,
            Cmp::Less => p < q,
            Cmp::LessEqual => p <= q,
            Cmp::Greater => p > q,
            Cmp::GreaterEqual => p >= q,
            Cmp::And => p != 0.0 && q != 0.0,
            Cmp::Or => p != 0.0 || q != 0.0,
        }
    }

    fn ints(self, p: i64, q: i64) -> bool {
        match self {
            Cmp::Equal => p == q,
            Cmp::NotEqual => p != q,
            Cmp::Less => p < q,
            Cmp::LessEqual => p <= q,
            Cmp::Greater => p > q,
            Cmp::GreaterEqual => p >= q,
            Cmp::And => p != 0 && q != 0,
            Cmp::Or => p != 0 || q != 0,
        }
    }
}

/// A comparison, giving 0/1 integers.
pub fn compare(a: &Const, b: &Const, op: Cmp, limit: usize) -> Result<Const, String> {
    if a.is_float() || b.is_float() {
        let r = binary(a, b, limit, |p, q| if op.floats(p, q) { 1.0 } else { 0.0 }, |_, _| Ok(0))?;
        Ok(r.as_int())
    } else {
        binary(a, b, limit, |_, _| 0.0, |p, q| Ok(op.ints(p, q) as i64))
    }
}

/// Integer floor division (TensorFlow's FloorDiv).
pub fn floor_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        return Err("integer division by zero".into());
    }
    let q = a.wrapping_div(b);
    Ok(if (a % b != 0) && ((a < 0) != (b < 0)) { q.wrapping_sub(1) } else { q })
}

/// Integer floor modulo (TensorFlow's FloorMod): the sign of the divisor.
pub fn floor_mod(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        return Err("integer division by zero".into());
    }
    let r = a.wrapping_rem(b);
    Ok(if r != 0 && ((r < 0) != (b < 0)) { r.wrapping_add(b) } else { r })
}

/// Elementwise `cond ? x : y` with broadcasting; the condition is read with shape `cshape`
/// (its own, or with trailing unit axes added).
pub fn select(cond: &Const, cshape: &[usize], x: &Const, y: &Const, limit: usize) -> Result<Const, String> {
    let s = broadcast_shapes(cshape, &x.shape).and_then(|s| broadcast_shapes(&s, &y.shape))?;
    let n = check_shape(&s)?;
    if n > limit.max(cond.len()).max(x.len()).max(y.len()) {
        return Err(format!("constant of shape {s:?} is too large"));
    }
    let c = broadcast_i64(&cond.with_shape(cshape.to_vec()), &s)?;
    Ok(if x.is_float() || y.is_float() {
        let xs = broadcast_f32(x, &s)?;
        let ys = broadcast_f32(y, &s)?;
        Const::new_f(s, (0..n).map(|i| if c[i] != 0 { xs[i] } else { ys[i] }).collect())
    } else {
        let xs = broadcast_i64(x, &s)?;
        let ys = broadcast_i64(y, &s)?;
        Const::new_i(s, (0..n).map(|i| if c[i] != 0 { xs[i] } else { ys[i] }).collect())
    })
}

/// `Range(start, limit, delta)` of scalar constants: float if any of them is.
pub fn range<C: NodeContext>(cx: &C, s: &Const, l: &Const, d: &Const, limit: usize) -> Result<Const, C::Error> {
    if s.len() != 1 || l.len() != 1 || d.len() != 1 {
        return Err(cx.invalid("start, limit and delta must be scalars"));
    }
    if s.is_float() || l.is_float() || d.is_float() {
        let (s, l, d) = (s.to_f32()[0] as f64, l.to_f32()[0] as f64, d.to_f32()[0] as f64);
        let n = ((l - s) / d).ceil();
        if !n.is_finite() || d == 0.0 {
            return Err(cx.invalid("Range with a zero or non-finite delta"));
        }
        let n = n.max(0.0);
        if n > limit as f64 {
            return Err(cx.shape_err(format!("Range of {n} elements is too large")));
        }
        let n = n as usize;
        let v: Vec<f32> = (0..n).map(|i| (s + i as f64 * d) as f32).collect();
        Ok(Const::new_f(vec![n], v))
    } else {
        let (s, l, d) = (s.to_i64()[0] as i128, l.to_i64()[0] as i128, d.to_i64()[0] as i128);
        if d == 0 {
            return Err(cx.invalid("Range with delta 0"));
        }
        let diff = l - s;
        let n = if (diff > 0) == (d > 0) && diff != 0 { (diff.abs() + d.abs() - 1) / d.abs() } else { 0 };
        if n > limit as i128 {
            return Err(cx.shape_err(format!("Range of {n} elements is too large")));
        }
        let v: Vec<i64> = (0..n).map(|i| (s + i * d) as i64).collect();
        Ok(Const::new_i(vec![n as usize], v))
    }
}

/// The element type a cast converts to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CastTarget {
    Float,
    Int,
    Bool,
}

impl CastTarget {
    /// The target of a cast to a float, integer or boolean type; None for other types.
    pub fn of(float: bool, int: bool, bool: bool) -> Option<CastTarget> {
        if float {
            Some(CastTarget::Float)
        } else if bool {
            Some(CastTarget::Bool)
        } else if int {
            Some(CastTarget::Int)
        } else {
            None
        }
    }
}

pub fn cast_const(c: &Const, to: CastTarget) -> Const {
    match to {
        CastTarget::Float => c.as_float(),
        CastTarget::Int => c.as_int(),
        CastTarget::Bool => {
            let d = match &c.data {
                Data::F(v) => v.iter().map(|&x| (x != 0.0) as i64).collect(),
                Data::I(v) => v.iter().map(|&x| (x != 0) as i64).collect(),
            };
            Const::new_i(c.shape.clone(), d)
        }
    }
}

/// An activation (`Neg`, `Relu`, `LeakyRelu`, `Clip`, or `Mul` of the value by itself) of a
/// constant. Integers stay integers under `Neg`, `Relu` and squaring.
pub fn activation_const(c: &Const, op: &Op) -> Const {
    let f: Box<dyn Fn(f32) -> f32> = match *op {
        Op::Neg => Box::new(|v| -v),
        Op::Relu => Box::new(|v| v.max(0.0)),
        Op::Mul => Box::new(|v| v * v),
        Op::LeakyRelu { alpha } => Box::new(move |v| if v >= 0.0 { v } else { alpha * v }),
        Op::Clip { min, max } => Box::new(move |v| v.max(min).min(max)),
        _ => Box::new(|v| v),
    };
    let data = match (&c.data, op) {
        (Data::I(v), Op::Neg) => Data::I(v.iter().map(|x| x.wrapping_neg()).collect()),
        (Data::I(v), Op::Relu) => Data::I(v.iter().map(|&x| x.max(0)).collect()),
        (Data::I(v), Op::Mul) => Data::I(v.iter().map(|&x| x.wrapping_mul(x)).collect()),
        _ => Data::F(c.to_f32().into_iter().map(f).collect()),
    };
    Const { shape: c.shape.clone(), data }
}

/// A reduction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reduce {
    Sum,
    /// The sum divided by `divisor` (the number of reduced elements; TensorFlow divides an
    /// empty mean by 1).
    Mean {
        divisor: usize,
    },
    Prod,
    Max,
    Min,
    All,
    Any,
}

/// A reduction of a tensor over some of its axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reduction {
    /// The reduced axes, sorted and distinct.
    pub axes: Vec<usize>,
    pub keep_dims: bool,
    /// The result's shape.
    pub out: Vec<usize>,
    /// How many elements each result element reduces.
    pub count: usize,
}

impl Reduction {
    /// The reduction of a tensor of `shape` over the (normalised) `axes`.
    pub fn new(shape: &[usize], mut axes: Vec<usize>, keep_dims: bool) -> Self {
        axes.sort_unstable();
        axes.dedup();
        let mut out: Vec<usize> = Vec::new();
        for (i, &d) in shape.iter().enumerate() {
            if axes.contains(&i) {
                if keep_dims {
                    out.push(1);
                }
            } else {
                out.push(d);
            }
        }
        let count = axes.iter().map(|&a| shape[a]).product();
        Reduction { axes, keep_dims, out, count }
    }
}

/// Reduction of a constant over sorted distinct `axes`, giving shape `out`. Integers stay
/// integers except for a mean.
pub fn reduce_const(c: &Const, axes: &[usize], out: Vec<usize>, op: Reduce) -> Const {
    let s = &c.shape;
    // Output strides in the keep-dims layout, 0 on reduced axes.
    let kept: Vec<usize> = s.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let kst = strides_of(&kept);
    let n_out: usize = kept.iter().product();
    let target = |mut flat: usize| -> usize {
        let mut o = 0;
        for i in (0..s.len()).rev() {
            let idx = flat % s[i].max(1);
            flat /= s[i].max(1);
            if !axes.contains(&i) {
                o += idx * kst[i];
            }
        }
        o
    };
    match &c.data {
        Data::I(v) if !matches!(op, Reduce::Mean { .. }) => {
            let (init, f): (i64, fn(i64, i64) -> i64) = match op {
                Reduce::Sum | Reduce::Mean { .. } => (0, |a, b| a.wrapping_add(b)),
                Reduce::Prod => (1, |a, b| a.wrapping_mul(b)),
                Reduce::Max => (i64::MIN, |a, b| a.max(b)),
                Reduce::Min => (i64::MAX, |a, b| a.min(b)),
                Reduce::All => (1, |a, b| (a != 0 && b != 0) as i64),
                Reduce::Any => (0, |a, b| (a != 0 || b != 0) as i64),
            };
            let mut acc = vec![init; n_out];
            for (i, &x) in v.iter().enumerate() {
                let t = target(i);
                acc[t] = f(acc[t], x);
            }
            Const::new_i(out, acc)
        }
        _ => {
            let v = c.to_f32();
            let (init, f): (f32, fn(f32, f32) -> f32) = match op {
                Reduce::Sum | Reduce::Mean { .. } => (0.0, |a, b| a + b),
                Reduce::Prod => (1.0, |a, b| a * b),
                Reduce::Max => (f32::NEG_INFINITY, f32::max),
                Reduce::Min => (f32::INFINITY, f32::min),
                Reduce::All => (1.0, |a, b| ((a != 0.0) && (b != 0.0)) as i32 as f32),
                Reduce::Any => (0.0, |a, b| ((a != 0.0) || (b != 0.0)) as i32 as f32),
            };
            let mut acc = vec![init; n_out];
            for (i, &x) in v.iter().enumerate() {
                let t = target(i);
                acc[t] = f(acc[t], x);
            }
            if let Reduce::Mean { divisor } = op {
                acc.iter_mut().for_each(|a| *a /= divisor as f32);
            }
            Const::new_f(out, acc)
        }
    }
}

/// Integer gather indices checked against the extent `dim` of `axis`; with `from_end`,
/// negative indices count from the end (ONNX).
pub fn gather_indices<C: NodeContext>(cx: &C, raw: &[i64], axis: usize, dim: usize, from_end: bool) -> Result<Vec<usize>, C::Error> {
    let dim = dim as i64;
    raw.iter()
        .map(|&i| {
            let j = if i < 0 && from_end { i.saturating_add(dim) } else { i };
            if j < 0 || j >= dim {
                Err(cx.invalid(format!("index {i} out of range for axis {axis} of extent {dim}")))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

/// The shape of a gather along `axis` of `shape` with indices of shape `indices`: the
/// indices' axes replace `axis`.
pub fn gathered_shape<C: NodeContext>(cx: &C, shape: &[usize], axis: usize, indices: &[usize]) -> Result<Vec<usize>, C::Error> {
    let mut out: Vec<usize> = shape[..axis].to_vec();
    out.extend_from_slice(indices);
    out.extend_from_slice(&shape[axis + 1..]);
    check_shape(&out).map_err(|e| cx.shape_err(e))?;
    Ok(out)
}

/// The target shape of a reshape of `from` to `dims`: one `-1` is inferred; with
/// `copy_zero`, a `0` copies the input's dimension (ONNX without `allowzero`).
pub fn reshape_target<C: NodeContext>(cx: &C, from: &[usize], dims: &[i64], copy_zero: bool) -> Result<Vec<usize>, C::Error> {
    let n = num_elements(from);
    let mut out = Vec::with_capacity(dims.len());
    let mut infer = None;
    for (i, &d) in dims.iter().enumerate() {
        match d {
            0 if copy_zero => out.push(
                *from
                    .get(i)
                    .ok_or_else(|| cx.shape_err(format!("shape {dims:?} copies dimension {i} of {from:?}, which has none")))?,
            ),
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(cx.shape_err(format!("shape {dims:?} has more than one -1")));
                }
                out.push(1);
            }
            d if d < 0 || d as u64 > MAX_DIM as u64 => {
                return Err(cx.shape_err(format!("shape {dims:?} has an invalid dimension {d}")))
            }
            d => out.push(d as usize),
        }
    }
    let known = checked_elements(&out).ok_or_else(|| cx.shape_err(format!("shape {dims:?} is too large")))?;
    if let Some(i) = infer {
        if known == 0 || n % known != 0 {
            return Err(cx.shape_err(format!("cannot reshape {from:?} ({n} elements) into {dims:?}")));
        }
        out[i] = n / known;
    }
    if num_elements(&out) != n {
        return Err(cx.shape_err(format!("cannot reshape {from:?} ({n} elements) into {dims:?}")));
    }
    Ok(out)
}

/// The shape of `s` without the unit `axes` (all unit axes when None).
pub fn squeeze_shape<C: NodeContext>(cx: &C, s: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>, C::Error> {
    Ok(match axes {
        None => s.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let mut drop = vec![false; s.len()];
            for a in axes {
                let a = cx.axis(a, s.len(), "axis")?;
                if s[a] != 1 {
                    return Err(cx.shape_err(format!("cannot squeeze axis {a} of extent {} in {s:?}", s[a])));
                }
                drop[a] = true;
            }
            s.iter().zip(&drop).filter(|(_, &d)| !d).map(|(&v, _)| v).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_division() {
        assert_eq!(floor_div(7, 2), Ok(3));
        assert_eq!(floor_div(-7, 2), Ok(-4));
        assert_eq!(floor_mod(-7, 2), Ok(1));
        assert_eq!(floor_mod(7, -2), Ok(-1));
        assert!(floor_div(1, 0).is_err());
    }

    #[test]
    fn arithmetic_comparisons_and_reductions() {
        let a = Const::new_i(vec![2, 1], vec![1, 5]);
        let b = Const::new_i(vec![3], vec![1, 2, 3]);
        let sum = binary(&a, &b, 1 << 10, |p, q| p + q, |p, q| Ok(p + q)).unwrap();
        assert_eq!(sum, Const::new_i(vec![2, 3], vec![2, 3, 4, 6, 7, 8]));
        assert!(binary(&a, &b, 1, |p, q| p + q, |p, q| Ok(p + q)).unwrap_err().contains("too large"));
        let lt = compare(&a, &Const::new_f(vec![], vec![2.0]), Cmp::Less, 1 << 10).unwrap();
        assert_eq!(lt, Const::new_i(vec![2, 1], vec![1, 0]));
        let x = Const::new_f(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let r = Reduction::new(&x.shape, vec![1, 1], true);
        assert_eq!((r.axes.as_slice(), r.out.as_slice(), r.count), (&[1][..], &[2, 1][..], 2));
        let mean = reduce_const(&x, &r.axes, r.out, Reduce::Mean { divisor: r.count });
        assert_eq!(mean, Const::new_f(vec![2, 1], vec![1.5, 3.5]));
        assert_eq!(Reduction::new(&[2, 3], vec![], false).out, vec![2, 3]);
        let sel = select(&Const::new_i(vec![2], vec![1, 0]), &[2, 1], &x, &Const::new_f(vec![], vec![0.0]), 1 << 10).unwrap();
        assert_eq!(sel, Const::new_f(vec![2, 2], vec![1.0, 2.0, 0.0, 0.0]));
        assert_eq!(cast_const(&x, CastTarget::Bool).ints().unwrap(), &[1, 1, 1, 1]);
        assert_eq!(CastTarget::of(false, true, true), Some(CastTarget::Bool));
        assert_eq!(CastTarget::of(false, false, false), None);
        assert_eq!(activation_const(&Const::new_i(vec![2], vec![-3, 4]), &Op::Mul).ints().unwrap(), &[9, 16]);
    }
}
