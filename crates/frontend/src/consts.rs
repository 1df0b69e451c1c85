//! Values known at import time (initializers, constant nodes and everything computed from
//! them). Floats are kept as `f32`, every integer or boolean type as `i64`. Data movement
//! (transpose, slice, gather, broadcast, pad, concat) runs on the kernels of
//! [`cryptflow_tensor::movement`]; integers pass through them as the bits of a `u64`, which
//! the kernels only copy. The arithmetic of the evaluator is in [`crate::eval`].

use cryptflow_tensor::{movement, Element, ShapeError, Tensor};

/// Largest extent of one axis, and largest attribute value (pads, strides, ...) accepted.
pub const MAX_DIM: usize = 1 << 31;
/// Largest number of elements of any tensor shape.
pub const MAX_ELEMENTS: usize = 1 << 40;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

/// Constants at or below this (and `-inf`) added to, multiplied with or selected into computed
/// values are attention masks: see [`Const::with_tame_masks`].
pub const MASK_SENTINEL: f32 = -1e30;
/// What a mask value becomes: exact in fixed point at any scale up to 29, far below the
/// domain of exp (so the masked softmax weight is exactly 0, as in float), and small enough
/// that sums of several masks and the scores stay far inside the ring.
pub const MASK_FILL: f32 = -32768.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Number of elements of a shape, if it is within [`MAX_ELEMENTS`] and every axis within
/// [`MAX_DIM`].
pub fn checked_elements(shape: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &d in shape {
        if d > MAX_DIM {
            return None;
        }
        n = n.checked_mul(d)?;
        if n > MAX_ELEMENTS {
            return None;
        }
    }
    Some(n)
}

pub fn check_shape(shape: &[usize]) -> Result<usize, String> {
    checked_elements(shape).ok_or_else(|| format!("shape {shape:?} is too large"))
}

/// NumPy broadcast of two shapes ([`movement::broadcast_shapes`], with the front ends' message).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    movement::broadcast_shapes(a, b).map_err(|_| format!("shapes {a:?} and {b:?} do not broadcast"))
}

/// A movement kernel of `cryptflow-tensor`, applied to either element type.
enum Move<'a> {
    Transpose(&'a [usize]),
    Slice { starts: &'a [i64], ends: &'a [i64], steps: &'a [i64] },
    Gather { axis: usize, indices: &'a [usize] },
    Broadcast(&'a [usize]),
    Pad { begin: &'a [usize], end: &'a [usize] },
}

impl Move<'_> {
    /// `fill` is the padding value (unused by the other kernels).
    fn apply<T: Element>(&self, x: &Tensor<T>, fill: T) -> Result<Tensor<T>, ShapeError> {
        match *self {
            Move::Transpose(perm) => movement::transpose(x, perm),
            Move::Slice { starts, ends, steps } => movement::slice(x, starts, ends, steps),
            Move::Gather { axis, indices } => movement::gather(x, axis, indices),
            Move::Broadcast(shape) => movement::broadcast_to(x, shape),
            Move::Pad { begin, end } => movement::pad(x, begin, end, fill),
        }
    }
}

fn int_tensor(shape: &[usize], v: &[i64]) -> Result<Tensor<u64>, ShapeError> {
    Tensor::new(shape.to_vec(), v.iter().map(|&x| x as u64).collect())
}

impl Const {
    pub fn new_f(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Const { shape, data: Data::F(data) }
    }

    pub fn new_i(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Const { shape, data: Data::I(data) }
    }

    pub fn scalar_i(v: i64) -> Self {
        Const::new_i(vec![], vec![v])
    }

    /// `value`'s single element repeated over `shape`.
    pub fn splat(shape: Vec<usize>, value: &Const) -> Self {
        let n = shape.iter().product();
        let data = match &value.data {
            Data::F(v) => Data::F(vec![v[0]; n]),
            Data::I(v) => Data::I(vec![v[0]; n]),
        };
        Const { shape, data }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F(_))
    }

    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F(v) => v.iter().map(|&x| float_to_i64(x)).collect(),
            Data::I(v) => v.clone(),
        }
    }

    /// The elements as integers, or None for float data.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I(v) => Some(v),
            Data::F(_) => None,
        }
    }

    /// This constant with every "minus infinity" mask value (`-inf`, or at most
    /// [`MASK_SENTINEL`]: `finfo(float32).min`, `-1e30`) replaced by [`MASK_FILL`], if it has
    /// any. Exporters write such values where attention scores are masked before a softmax;
    /// fixed point cannot hold them, and any score below exp's domain gives the same zero
    /// weight.
    pub fn with_tame_masks(&self) -> Option<Const> {
        let Data::F(v) = &self.data else { return None };
        if !v.iter().any(|&x| x <= MASK_SENTINEL) {
            return None;
        }
        Some(Const::new_f(self.shape.clone(), v.iter().map(|&x| if x <= MASK_SENTINEL { MASK_FILL } else { x }).collect()))
    }

    /// The single element as f32, if there is exactly one.
    pub fn single_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }

    pub fn with_shape(&self, shape: Vec<usize>) -> Const {
        Const { shape, data: self.data.clone() }
    }

    pub fn as_float(&self) -> Const {
        Const::new_f(self.shape.clone(), self.to_f32())
    }

    pub fn as_int(&self) -> Const {
        Const::new_i(self.shape.clone(), self.to_i64())
    }

    fn moved(&self, m: Move, fill_f: f32) -> Result<Const, String> {
        let err = |e: ShapeError| e.to_string();
        Ok(match &self.data {
            Data::F(v) => {
                let t = Tensor::new(self.shape.clone(), v.clone()).map_err(err)?;
                let out = m.apply(&t, fill_f).map_err(err)?;
                Const { shape: out.shape().to_vec(), data: Data::F(out.into_data()) }
            }
            Data::I(v) => {
                let t = int_tensor(&self.shape, v).map_err(err)?;
                let out = m.apply(&t, float_to_i64(fill_f) as u64).map_err(err)?;
                let shape = out.shape().to_vec();
                Const { shape, data: Data::I(out.into_data().into_iter().map(|x| x as i64).collect()) }
            }
        })
    }

    /// Output axis `i` is axis `perm[i]`.
    pub fn transpose(&self, perm: &[usize]) -> Result<Const, String> {
        self.moved(Move::Transpose(perm), 0.0)
    }

    /// Strided slice with normalised parameters (one per axis, see [`movement::slice`]).
    pub fn slice(&self, starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<Const, String> {
        self.moved(Move::Slice { starts, ends, steps }, 0.0)
    }

    /// `indices` (normalised) along `axis`.
    pub fn gather(&self, axis: usize, indices: &[usize]) -> Result<Const, String> {
        self.moved(Move::Gather { axis, indices }, 0.0)
    }

    /// NumPy broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Const, String> {
        self.moved(Move::Broadcast(shape), 0.0)
    }

    /// Pads with `value` (converted as a cast does for integer constants).
    pub fn pad(&self, begin: &[usize], end: &[usize], value: f32) -> Result<Const, String> {
        self.moved(Move::Pad { begin, end }, value)
    }

    /// Repeats the constant `times` along `axis` (the whole axis, as Tile does): a new axis
    /// after `axis` broadcast to `times`, then merged into it.
    pub fn tile_axis(&self, axis: usize, times: usize) -> Result<Const, String> {
        let mut shape = self.shape.clone();
        shape[axis] = shape[axis].saturating_mul(times);
        let mut s1 = self.shape.clone();
        s1.insert(axis, 1);
        let mut s2 = self.shape.clone();
        s2.insert(axis, times);
        Ok(self.with_shape(s1).broadcast_to(&s2)?.with_shape(shape))
    }
}

/// Concatenates constants along `axis` (promoting to float if any is float); their shapes
/// must agree off that axis.
pub fn concat_consts(parts: &[&Const], axis: usize) -> Result<Const, String> {
    let err = |e: ShapeError| e.to_string();
    if parts.iter().any(|p| p.is_float()) {
        let tensors: Vec<Tensor<f32>> =
            parts.iter().map(|p| Tensor::new(p.shape.clone(), p.to_f32())).collect::<Result<_, _>>().map_err(err)?;
        let out = movement::concat(&tensors.iter().collect::<Vec<_>>(), axis).map_err(err)?;
        Ok(Const::new_f(out.shape().to_vec(), out.into_data()))
    } else {
        let tensors: Vec<Tensor<u64>> =
            parts.iter().map(|p| int_tensor(&p.shape, p.ints().unwrap_or(&[]))).collect::<Result<_, _>>().map_err(err)?;
        let out = movement::concat(&tensors.iter().collect::<Vec<_>>(), axis).map_err(err)?;
        Ok(Const::new_i(out.shape().to_vec(), out.into_data().into_iter().map(|x| x as i64).collect()))
    }
}

/// Float to integer as a cast does: truncation, saturating, NaN to 0.
pub fn float_to_i64(x: f32) -> i64 {
    if x.is_nan() {
        0
    } else {
        x as i64
    }
}

/// IEEE 754 half precision to f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if frac == 0 {
            sign << 31
        } else {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign == 1 { -v } else { v };
        }
    } else if exp == 0x1f {
        (sign << 31) | 0x7f80_0000 | (frac << 13)
    } else {
        (sign << 31) | ((exp + 127 - 15) << 23) | (frac << 13)
    };
    f32::from_bits(bits)
}

/// bfloat16 to f32.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Splits little-endian raw tensor bytes into `n` elements of `N` bytes; `what` names the
/// element type in the error.
pub fn raw_chunks<const N: usize>(raw: &[u8], n: usize, what: &str) -> Result<Vec<[u8; N]>, String> {
    if raw.len() != n.checked_mul(N).ok_or("tensor too large")? {
        return Err(format!("raw_data holds {} bytes, but {} {what} elements need {}", raw.len(), n, n * N));
    }
    Ok(raw.chunks_exact(N).map(|c| c.try_into().expect("chunk of N bytes")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movement_helpers() {
        let x = Const::new_i(vec![2, 3], (0..6).collect());
        let ints = |c: Const| c.ints().unwrap().to_vec();
        assert_eq!(ints(x.transpose(&[1, 0]).unwrap()), vec![0, 3, 1, 4, 2, 5]);
        // Rows 0..2, columns 2 and 1 (step -1, out shape [2, 2]).
        assert_eq!(ints(x.slice(&[0, 2], &[2, 0], &[1, -1]).unwrap()), vec![2, 1, 5, 4]);
        assert_eq!(ints(x.gather(1, &[2, 0]).unwrap()), vec![2, 0, 5, 3]);
        assert_eq!(ints(Const::new_i(vec![3], vec![1, 2, 3]).broadcast_to(&[2, 3]).unwrap()), vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(ints(Const::new_i(vec![2, 1], vec![1, 2]).broadcast_to(&[2, 3]).unwrap()), vec![1, 1, 1, 2, 2, 2]);
        assert_eq!(ints(Const::new_i(vec![2], vec![1, 2]).pad(&[1], &[2], 0.0).unwrap()), vec![0, 1, 2, 0, 0]);
        assert_eq!(ints(Const::new_i(vec![1, 2], vec![1, 2]).pad(&[1, 0], &[0, 1], 9.0).unwrap()), vec![9, 9, 9, 1, 2, 9]);
        let a = Const::new_i(vec![2, 1], vec![1, 2]);
        let b = Const::new_i(vec![2, 2], vec![3, 4, 5, 6]);
        assert_eq!(ints(concat_consts(&[&a, &b], 1).unwrap()), vec![1, 3, 4, 2, 5, 6]);
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shapes(&[2], &[3]).is_err());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    }

    #[test]
    fn integers_keep_their_values_through_the_kernels() {
        let x = Const::new_i(vec![2, 2], vec![i64::MIN, -1, 0, i64::MAX]);
        assert_eq!(x.transpose(&[1, 0]).unwrap().ints().unwrap(), &[i64::MIN, 0, -1, i64::MAX]);
        assert_eq!(Const::new_i(vec![1], vec![-5]).pad(&[1], &[0], -2.7).unwrap().ints().unwrap(), &[-2, -5]);
        assert_eq!(Const::new_f(vec![1], vec![0.5]).tile_axis(0, 3).unwrap(), Const::new_f(vec![3], vec![0.5; 3]));
        assert!(x.gather(1, &[2]).is_err());
    }
}
