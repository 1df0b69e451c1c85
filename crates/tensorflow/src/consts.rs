//! Values known at import time (initializers, `Constant` nodes and everything computed from
//! them) and a small evaluator for them. Floats are kept as `f32`, every integer or boolean
//! type as `i64`. The evaluator is independent of the tensor kernels on purpose: it only needs
//! to be exact on small shape vectors and correct on weights.

use crate::proto::{DataType, TensorProto, TensorShapeProto};

/// Largest extent of one axis, and largest attribute value (pads, strides, ...) accepted.
pub const MAX_DIM: usize = 1 << 31;
/// Largest number of elements of any tensor shape.
pub const MAX_ELEMENTS: usize = 1 << 40;
/// Largest number of elements a constant computed at import time may have when it is larger
/// than its inputs (Expand, ConstantOfShape, Range, Tile, Pad, broadcasting).
pub const MAX_GENERATED: usize = 1 << 24;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

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

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f(offset_in_input)` for every output position of a strided view. `out_shape` is the
/// view's shape; `in_strides[i]` how far one step along output axis `i` moves in the input;
/// `base` the input offset of the first element.
fn for_each_view(out_shape: &[usize], in_strides: &[isize], base: isize, mut f: impl FnMut(usize)) {
    if out_shape.contains(&0) {
        return;
    }
    let rank = out_shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = base;
    loop {
        f(off as usize);
        let mut axis = rank;
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            idx[axis] += 1;
            off += in_strides[axis];
            if idx[axis] < out_shape[axis] {
                break;
            }
            off -= in_strides[axis] * out_shape[axis] as isize;
            idx[axis] = 0;
        }
    }
}

fn gather_view<T: Copy>(data: &[T], out_shape: &[usize], in_strides: &[isize], base: isize) -> Vec<T> {
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_view(out_shape, in_strides, base, |o| out.push(data[o]));
    out
}

/// NumPy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Input strides for reading a tensor of `shape` broadcast to `out` (0 on broadcast axes).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<isize> {
    let st = strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| if i < lead || shape[i - lead] == 1 { 0 } else { st[i - lead] as isize })
        .collect()
}

pub fn broadcast_to<T: Copy>(shape: &[usize], data: &[T], out: &[usize]) -> Vec<T> {
    gather_view(data, out, &broadcast_strides(shape, out), 0)
}

pub fn transpose<T: Copy>(shape: &[usize], data: &[T], perm: &[usize]) -> Vec<T> {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_strides: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    gather_view(data, &out_shape, &in_strides, 0)
}

/// Slice with normalised parameters (see `movement::slice`); `out_shape` precomputed.
pub fn slice<T: Copy>(shape: &[usize], data: &[T], starts: &[i64], steps: &[i64], out_shape: &[usize]) -> Vec<T> {
    let st = strides(shape);
    let base: isize = (0..shape.len()).map(|i| starts[i] as isize * st[i] as isize).sum();
    let in_strides: Vec<isize> = (0..shape.len()).map(|i| steps[i] as isize * st[i] as isize).collect();
    gather_view(data, out_shape, &in_strides, base)
}

pub fn gather<T: Copy>(shape: &[usize], data: &[T], axis: usize, indices: &[usize]) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let extent = shape[axis];
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let start = (o * extent + i) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    out
}

pub fn concat<T: Copy>(parts: &[(&[usize], &[T])], axis: usize) -> Vec<T> {
    let outer: usize = parts[0].0[..axis].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for (shape, data) in parts {
            let chunk: usize = shape[axis..].iter().product();
            out.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

pub fn pad<T: Copy>(shape: &[usize], data: &[T], begin: &[usize], end: &[usize], value: T) -> Vec<T> {
    let out_shape: Vec<usize> = (0..shape.len()).map(|i| shape[i] + begin[i] + end[i]).collect();
    let n: usize = out_shape.iter().product();
    let mut out = vec![value; n];
    let ost = strides(&out_shape);
    let base: isize = (0..shape.len()).map(|i| (begin[i] * ost[i]) as isize).sum();
    let out_strides: Vec<isize> = ost.iter().map(|&s| s as isize).collect();
    let mut k = 0;
    for_each_view(shape, &out_strides, base, |o| {
        out[o] = data[k];
        k += 1;
    });
    out
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

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
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

    pub fn map_data(&self, out_shape: Vec<usize>, f: impl MovementFn) -> Const {
        let data = match &self.data {
            Data::F(v) => Data::F(f.apply(&self.shape, v)),
            Data::I(v) => Data::I(f.apply(&self.shape, v)),
        };
        Const { shape: out_shape, data }
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

/// A movement operation, applied to either element type.
pub trait MovementFn {
    fn apply<T: Copy + Default>(&self, shape: &[usize], data: &[T]) -> Vec<T>;
}

pub struct Transpose<'a>(pub &'a [usize]);
impl MovementFn for Transpose<'_> {
    fn apply<T: Copy + Default>(&self, shape: &[usize], data: &[T]) -> Vec<T> {
        transpose(shape, data, self.0)
    }
}

pub struct SliceFn<'a> {
    pub starts: &'a [i64],
    pub steps: &'a [i64],
    pub out_shape: &'a [usize],
}
impl MovementFn for SliceFn<'_> {
    fn apply<T: Copy + Default>(&self, shape: &[usize], data: &[T]) -> Vec<T> {
        slice(shape, data, self.starts, self.steps, self.out_shape)
    }
}

pub struct GatherFn<'a> {
    pub axis: usize,
    pub indices: &'a [usize],
}
impl MovementFn for GatherFn<'_> {
    fn apply<T: Copy + Default>(&self, shape: &[usize], data: &[T]) -> Vec<T> {
        gather(shape, data, self.axis, self.indices)
    }
}

pub struct BroadcastFn<'a>(pub &'a [usize]);
impl MovementFn for BroadcastFn<'_> {
    fn apply<T: Copy + Default>(&self, shape: &[usize], data: &[T]) -> Vec<T> {
        broadcast_to(shape, data, self.0)
    }
}

/// Pads with `value` (converted to the element type by the caller through `T::default()`
/// for integers, or the float value).
pub struct PadFn<'a> {
    pub begin: &'a [usize],
    pub end: &'a [usize],
    pub value_f: f32,
}
impl PadFn<'_> {
    pub fn run(&self, c: &Const) -> Const {
        let shape: Vec<usize> = (0..c.shape.len()).map(|i| c.shape[i] + self.begin[i] + self.end[i]).collect();
        let data = match &c.data {
            Data::F(v) => Data::F(pad(&c.shape, v, self.begin, self.end, self.value_f)),
            Data::I(v) => Data::I(pad(&c.shape, v, self.begin, self.end, float_to_i64(self.value_f))),
        };
        Const { shape, data }
    }
}

/// Concatenates constants (promoting to float if any is float).
pub fn concat_consts(parts: &[&Const], axis: usize) -> Const {
    let mut shape = parts[0].shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    if parts.iter().any(|p| p.is_float()) {
        let datas: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
        let views: Vec<(&[usize], &[f32])> = parts.iter().zip(&datas).map(|(p, d)| (p.shape.as_slice(), d.as_slice())).collect();
        Const::new_f(shape, concat(&views, axis))
    } else {
        let views: Vec<(&[usize], &[i64])> =
            parts.iter().map(|p| (p.shape.as_slice(), p.ints().unwrap_or(&[]))).collect();
        Const::new_i(shape, concat(&views, axis))
    }
}

/// Elementwise binary operation with broadcasting; float if either side is float.
pub fn binary(
    a: &Const,
    b: &Const,
    ff: impl Fn(f32, f32) -> f32,
    fi: impl Fn(i64, i64) -> Result<i64, String>,
) -> Result<Const, String> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let n = check_shape(&shape)?;
    if n > MAX_GENERATED.max(a.len()).max(b.len()) {
        return Err(format!("constant of shape {shape:?} is too large to evaluate"));
    }
    if a.is_float() || b.is_float() {
        let x = broadcast_to(&a.shape, &a.to_f32(), &shape);
        let y = broadcast_to(&b.shape, &b.to_f32(), &shape);
        Ok(Const::new_f(shape, x.iter().zip(&y).map(|(&p, &q)| ff(p, q)).collect()))
    } else {
        let x = broadcast_to(&a.shape, a.ints().unwrap_or(&[]), &shape);
        let y = broadcast_to(&b.shape, b.ints().unwrap_or(&[]), &shape);
        let data = x.iter().zip(&y).map(|(&p, &q)| fi(p, q)).collect::<Result<Vec<_>, _>>()?;
        Ok(Const::new_i(shape, data))
    }
}

/// A comparison, giving 0/1 integers.
pub fn compare(a: &Const, b: &Const, ff: impl Fn(f32, f32) -> bool, fi: impl Fn(i64, i64) -> bool) -> Result<Const, String> {
    if a.is_float() || b.is_float() {
        let r = binary(a, b, |p, q| if ff(p, q) { 1.0 } else { 0.0 }, |_, _| Ok(0))?;
        Ok(r.as_int())
    } else {
        binary(a, b, |_, _| 0.0, |p, q| Ok(fi(p, q) as i64))
    }
}

fn f16_to_f32(h: u16) -> f32 {
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

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn raw_chunks<const N: usize>(raw: &[u8], n: usize, what: &str) -> Result<Vec<[u8; N]>, String> {
    if raw.len() != n.checked_mul(N).ok_or("tensor too large")? {
        return Err(format!("raw_data holds {} bytes, but {} {what} elements need {}", raw.len(), n, n * N));
    }
    Ok(raw.chunks_exact(N).map(|c| c.try_into().expect("chunk of N bytes")).collect())
}


/// Largest number of elements a `TensorProto` may describe with fewer stored values than
/// elements (TensorFlow repeats the last value; splat constants such as zeros).
const MAX_FILLED: usize = 1 << 24;

/// The dimensions of a fully known shape.
pub fn shape_from_proto(s: &TensorShapeProto) -> Result<Vec<usize>, String> {
    if s.unknown_rank {
        return Err("the shape has unknown rank".into());
    }
    let mut shape = Vec::with_capacity(s.dim.len());
    for d in &s.dim {
        if d.size < 0 {
            return Err(format!("dimension {} is unknown", d.size));
        }
        shape.push(usize::try_from(d.size).map_err(|_| format!("dimension {} is too large", d.size))?);
    }
    check_shape(&shape)?;
    Ok(shape)
}

/// Values stored in a typed field: exactly `n`, or fewer (the last one is repeated; none
/// means zeros), as TensorFlow reads them.
fn filled<T: Copy + Default>(v: &[T], n: usize, field: &str) -> Result<Vec<T>, String> {
    if v.len() == n {
        return Ok(v.to_vec());
    }
    if v.len() > n {
        return Err(format!("{field} holds {} values, but the shape has {n} elements", v.len()));
    }
    if n > MAX_FILLED {
        return Err(format!("a filled constant of {n} elements is too large"));
    }
    let last = v.last().copied().unwrap_or_default();
    let mut out = v.to_vec();
    out.resize(n, last);
    Ok(out)
}

/// The name of a `DataType` for messages.
pub fn dtype_name(dtype: i32) -> String {
    match DataType::try_from(dtype) {
        Ok(d) => d.as_str_name().to_string(),
        Err(_) => format!("data type {dtype}"),
    }
}

/// Whether a `DataType` is a floating-point type the importer accepts.
pub fn is_float_dtype(dtype: i32) -> bool {
    matches!(
        DataType::try_from(dtype),
        Ok(DataType::DtFloat | DataType::DtDouble | DataType::DtHalf | DataType::DtBfloat16)
    )
}

/// Decodes a TensorFlow `TensorProto` (the `value` of a `Const`) into a constant.
pub fn from_tensor_proto(t: &TensorProto) -> Result<Const, String> {
    let shape = match &t.tensor_shape {
        Some(s) => shape_from_proto(s)?,
        None => vec![],
    };
    let n = check_shape(&shape)?;
    let raw = (!t.tensor_content.is_empty()).then_some(t.tensor_content.as_slice());
    let dt = DataType::try_from(t.dtype).map_err(|_| format!("unknown data type {}", t.dtype))?;
    let data = match dt {
        DataType::DtFloat => Data::F(match raw {
            Some(r) => raw_chunks::<4>(r, n, "DT_FLOAT")?.into_iter().map(f32::from_le_bytes).collect(),
            None => filled(&t.float_val, n, "float_val")?,
        }),
        DataType::DtDouble => Data::F(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_DOUBLE")?.into_iter().map(|b| f64::from_le_bytes(b) as f32).collect(),
            None => filled(&t.double_val, n, "double_val")?.into_iter().map(|x| x as f32).collect(),
        }),
        DataType::DtHalf | DataType::DtBfloat16 => {
            let conv = if dt == DataType::DtHalf { f16_to_f32 } else { bf16_to_f32 };
            Data::F(match raw {
                Some(r) => raw_chunks::<2>(r, n, "16-bit float")?.into_iter().map(|b| conv(u16::from_le_bytes(b))).collect(),
                None => filled(&t.half_val, n, "half_val")?.into_iter().map(|x| conv(x as u16)).collect(),
            })
        }
        DataType::DtInt64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_INT64")?.into_iter().map(i64::from_le_bytes).collect(),
            None => filled(&t.int64_val, n, "int64_val")?,
        }),
        DataType::DtInt32 | DataType::DtInt16 | DataType::DtInt8 | DataType::DtUint8 | DataType::DtUint16 => {
            let from_raw = |r: &[u8]| -> Result<Vec<i64>, String> {
                Ok(match dt {
                    DataType::DtInt32 => raw_chunks::<4>(r, n, "DT_INT32")?.into_iter().map(|b| i32::from_le_bytes(b) as i64).collect(),
                    DataType::DtInt16 => raw_chunks::<2>(r, n, "DT_INT16")?.into_iter().map(|b| i16::from_le_bytes(b) as i64).collect(),
                    DataType::DtUint16 => raw_chunks::<2>(r, n, "DT_UINT16")?.into_iter().map(|b| u16::from_le_bytes(b) as i64).collect(),
                    DataType::DtInt8 => raw_chunks::<1>(r, n, "DT_INT8")?.into_iter().map(|b| b[0] as i8 as i64).collect(),
                    _ => raw_chunks::<1>(r, n, "DT_UINT8")?.into_iter().map(|b| b[0] as i64).collect(),
                })
            };
            Data::I(match raw {
                Some(r) => from_raw(r)?,
                None => {
                    let narrow = |x: i32| -> i64 {
                        match dt {
                            DataType::DtInt16 => x as i16 as i64,
                            DataType::DtInt8 => x as i8 as i64,
                            DataType::DtUint8 => x as u8 as i64,
                            DataType::DtUint16 => x as u16 as i64,
                            _ => x as i64,
                        }
                    };
                    filled(&t.int_val, n, "int_val")?.into_iter().map(narrow).collect()
                }
            })
        }
        DataType::DtUint32 => Data::I(match raw {
            Some(r) => raw_chunks::<4>(r, n, "DT_UINT32")?.into_iter().map(|b| u32::from_le_bytes(b) as i64).collect(),
            None => filled(&t.uint32_val, n, "uint32_val")?.into_iter().map(|x| x as i64).collect(),
        }),
        DataType::DtUint64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_UINT64")?.into_iter().map(|b| u64::from_le_bytes(b) as i64).collect(),
            None => filled(&t.uint64_val, n, "uint64_val")?.into_iter().map(|x| x as i64).collect(),
        }),
        DataType::DtBool => Data::I(match raw {
            Some(r) => raw_chunks::<1>(r, n, "DT_BOOL")?.into_iter().map(|b| (b[0] != 0) as i64).collect(),
            None => filled(&t.bool_val, n, "bool_val")?.into_iter().map(|b| b as i64).collect(),
        }),
        other => return Err(format!("constants of type {} are not supported", other.as_str_name())),
    };
    Ok(Const { shape, data })
}
