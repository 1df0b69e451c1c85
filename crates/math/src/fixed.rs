//! Fixed-point building blocks shared by the functions: public constants, rescaling, batched
//! comparisons, multiplexers and products (several in one backend call, so that they share its
//! rounds), powers in logarithmic depth and polynomials with public coefficients.

use cryptflow_backend::{Backend, BackendError, Result, RingTensor, SharedBits};
use cryptflow_tensor::ShapeError;

/// `round(r * 2^bits)` as a ring element (saturating at the ring's ends).
pub fn encode(r: f64, bits: u32) -> u64 {
    let v = (r * 2f64.powi(bits as i32)).round();
    (v.clamp(i64::MIN as f64, i64::MAX as f64) as i64) as u64
}

/// The real value of a ring element with `bits` fractional bits (for tests and errors).
pub fn decode(v: u64, bits: u32) -> f64 {
    (v as i64) as f64 / 2f64.powi(bits as i32)
}

/// `x + c` for a public ring constant `c` (added by the one party whose share carries public
/// terms).
pub fn add_public<B: Backend + ?Sized>(b: &B, x: &RingTensor, c: u64) -> RingTensor {
    if b.adds_public_constants() {
        x.map(|v| v.wrapping_add(c))
    } else {
        x.clone()
    }
}

/// A public constant as a shared tensor of `shape` (its value on the party that adds public
/// terms, zero elsewhere).
pub fn public<B: Backend + ?Sized>(b: &B, shape: &[usize], c: u64) -> RingTensor {
    RingTensor::filled(shape.to_vec(), if b.adds_public_constants() { c } else { 0 })
}

/// `x * c` for a public integer `c` (local and exact in the ring).
pub fn mul_int(x: &RingTensor, c: i64) -> RingTensor {
    x.map(|v| v.wrapping_mul(c as u64))
}

/// Moves `x` from `from` to `to` fractional bits: an exact multiplication by a power of two
/// upwards, a truncation downwards.
pub fn rescale<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, from: u32, to: u32) -> Result<RingTensor> {
    if to > from {
        if to - from >= 63 {
            return Err(BackendError::Aborted(format!("cannot raise a value from {from} to {to} fractional bits")));
        }
        Ok(mul_int(x, 1i64 << (to - from)))
    } else if to < from {
        b.scale_down(x, from - to)
    } else {
        Ok(x.clone())
    }
}

/// `x * c` for a public real `c`: the product with `round(c * 2^bits)`, truncated by `bits`,
/// so the result keeps `x`'s scale.
pub fn mul_real<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, c: f64, bits: u32) -> Result<RingTensor> {
    if c.fract() == 0.0 && c.abs() < (1u64 << 40) as f64 {
        return Ok(mul_int(x, c as i64));
    }
    b.scale_down(&mul_int(x, encode(c, bits) as i64), bits)
}

fn concat(parts: &[&RingTensor]) -> Result<RingTensor> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let mut data = Vec::with_capacity(n);
    for p in parts {
        data.extend_from_slice(p.data());
    }
    Ok(RingTensor::new(vec![n], data)?)
}

fn split(whole: RingTensor, shapes: &[&[usize]]) -> Result<Vec<RingTensor>> {
    let data = whole.into_data();
    let mut out = Vec::with_capacity(shapes.len());
    let mut at = 0;
    for shape in shapes {
        let n: usize = shape.iter().product();
        if at + n > data.len() {
            return Err(BackendError::Shape(ShapeError::new("a batched call returned too few elements")));
        }
        out.push(RingTensor::new(shape.to_vec(), data[at..at + n].to_vec())?);
        at += n;
    }
    Ok(out)
}

/// The comparison bits `[x_i >= 0]` of several tensors in one [`Backend::drelu`] call.
pub fn drelu_many<B: Backend + ?Sized>(b: &mut B, xs: &[&RingTensor]) -> Result<Vec<SharedBits>> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    let bits = b.drelu(&concat(xs)?)?;
    Ok(split(bits.0, &shapes)?.into_iter().map(SharedBits).collect())
}

/// `[x >= t]` for each public threshold `t` (a real, encoded at `bits`), in one call.
pub fn compare_with<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, thresholds: &[f64], bits: u32) -> Result<Vec<SharedBits>> {
    let shifted: Vec<RingTensor> = thresholds.iter().map(|&t| add_public(b, x, encode(-t, bits))).collect();
    let refs: Vec<&RingTensor> = shifted.iter().collect();
    drelu_many(b, &refs)
}

/// `bit_i * x_i` for several pairs in one [`Backend::mux`] call.
pub fn mux_many<B: Backend + ?Sized>(b: &mut B, pairs: &[(&SharedBits, &RingTensor)]) -> Result<Vec<RingTensor>> {
    let shapes: Vec<&[usize]> = pairs.iter().map(|p| p.1.shape()).collect();
    let bit_parts: Vec<&RingTensor> = pairs.iter().map(|p| &p.0 .0).collect();
    let val_parts: Vec<&RingTensor> = pairs.iter().map(|p| p.1).collect();
    let z = b.mux(&SharedBits(concat(&bit_parts)?), &concat(&val_parts)?)?;
    split(z, &shapes)
}

/// `x_i * y_i` for several pairs in one [`Backend::mul`] call (no truncation).
pub fn mul_many<B: Backend + ?Sized>(b: &mut B, pairs: &[(&RingTensor, &RingTensor)]) -> Result<Vec<RingTensor>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let shapes: Vec<&[usize]> = pairs.iter().map(|p| p.0.shape()).collect();
    let xs: Vec<&RingTensor> = pairs.iter().map(|p| p.0).collect();
    let ys: Vec<&RingTensor> = pairs.iter().map(|p| p.1).collect();
    let z = b.mul(&concat(&xs)?, &concat(&ys)?)?;
    split(z, &shapes)
}

/// Fixed-point products `x_i * y_i` at `bits` (truncated back to `bits`), in one call each.
pub fn mul_fixed_many<B: Backend + ?Sized>(b: &mut B, pairs: &[(&RingTensor, &RingTensor)], bits: u32) -> Result<Vec<RingTensor>> {
    let z = mul_many(b, pairs)?;
    z.iter().map(|z| b.scale_down(z, bits)).collect()
}

/// `u^1 ..= u^degree` at `bits` fractional bits, in `ceil(log2 degree)` rounds of products:
/// round `r` computes every power in `(2^(r-1), 2^r]` from those already known.
/// `want` restricts which powers are returned (others are computed only if needed); the
/// result has `degree` entries, `None` for powers neither wanted nor needed.
pub fn powers<B: Backend + ?Sized>(b: &mut B, u: &RingTensor, degree: usize, want: impl Fn(usize) -> bool, bits: u32) -> Result<Vec<Option<RingTensor>>> {
    let mut have: Vec<Option<RingTensor>> = vec![None; degree + 1];
    if degree == 0 {
        return Ok(Vec::new());
    }
    // Which powers are needed: the wanted ones and, recursively, the halves they are made of.
    let mut needed = vec![false; degree + 1];
    for k in (1..=degree).rev() {
        if want(k) || needed[k] {
            needed[k] = true;
            if k > 1 {
                let hi = 1usize << (usize::BITS - 1 - (k - 1).leading_zeros()); // largest power of two < k
                needed[hi] = true;
                needed[k - hi] = true;
            }
        }
    }
    have[1] = Some(u.clone());
    let mut top = 1usize;
    while top < degree {
        let next = (2 * top).min(degree);
        let ks: Vec<usize> = (top + 1..=next).filter(|&k| needed[k]).collect();
        let pairs: Vec<(&RingTensor, &RingTensor)> =
            ks.iter().map(|&k| (have[top].as_ref().expect("power of two below k"), have[k - top].as_ref().expect("needed below"))).collect();
        let products = mul_fixed_many(b, &pairs, bits)?;
        for (k, p) in ks.into_iter().zip(products) {
            have[k] = Some(p);
        }
        top = next;
    }
    have.remove(0);
    Ok(have.into_iter().enumerate().map(|(i, p)| if want(i + 1) { p } else { None }).collect())
}

/// `sum_k coeffs[k] u^k` (public real coefficients; `powers[k-1]` is `u^k` at `bits`), at
/// `bits`: a local linear combination with one truncation.
pub fn polynomial<B: Backend + ?Sized>(b: &mut B, coeffs: &[f64], powers: &[Option<RingTensor>], shape: &[usize], bits: u32) -> Result<RingTensor> {
    let mut acc = RingTensor::zeros(shape.to_vec());
    for (k, &c) in coeffs.iter().enumerate().skip(1) {
        if c == 0.0 {
            continue;
        }
        let p = powers.get(k - 1).and_then(|p| p.as_ref()).ok_or_else(|| BackendError::Aborted(format!("power {k} was not computed")))?;
        let term = mul_int(p, encode(c, bits) as i64);
        acc = acc.add(&term)?;
    }
    let acc = b.scale_down(&acc, bits)?;
    Ok(add_public(b, &acc, encode(coeffs.first().copied().unwrap_or(0.0), bits)))
}
