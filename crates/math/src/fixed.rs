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

/// Runs `f` with the backend comparing on all 64 bits, then restores the declared comparison
/// domain ([`Backend::set_comparison_bits`]): for comparisons of internal values (at
/// internal precision, or sums of squares) that the program's domain does not bound.
pub fn full_width<B: Backend + ?Sized, T>(b: &mut B, f: impl FnOnce(&mut B) -> Result<T>) -> Result<T> {
    let declared = b.comparison_bits();
    if declared >= 64 {
        return f(b);
    }
    b.set_comparison_bits(64)?;
    let out = f(b);
    b.set_comparison_bits(declared)?;
    out
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

/// `[x >= t_i] * v_i` for public thresholds `t_i` (reals, encoded at `bits`), in one call.
pub fn select_above<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, pairs: &[(f64, &RingTensor)], bits: u32) -> Result<Vec<RingTensor>> {
    let items: Vec<(u64, &RingTensor)> = pairs.iter().map(|&(t, v)| (encode(t, bits), v)).collect();
    b.select_above(x, &items)
}

/// `bit_i * x_i` for several pairs in one [`Backend::mux`] call.
pub fn mux_many<B: Backend + ?Sized>(b: &mut B, pairs: &[(&SharedBits, &RingTensor)]) -> Result<Vec<RingTensor>> {
    let shapes: Vec<&[usize]> = pairs.iter().map(|p| p.1.shape()).collect();
    let bit_parts: Vec<&RingTensor> = pairs.iter().map(|p| &p.0 .0).collect();
    let val_parts: Vec<&RingTensor> = pairs.iter().map(|p| p.1).collect();
    let z = b.mux(&SharedBits(concat(&bit_parts)?), &concat(&val_parts)?)?;
    split(z, &shapes)
}

/// `x * x` (no truncation), by [`Backend::mul_pairs`]: protocols open one mask, not two.
pub fn square<B: Backend + ?Sized>(b: &mut B, x: &RingTensor) -> Result<RingTensor> {
    Ok(b.mul_pairs(&[x], &[(0, 0)])?.remove(0))
}

/// The products `have[top] * have[k - top]` for each `k` of `ks` (one step of a doubling
/// construction: powers, Chebyshev polynomials), in one [`Backend::mul_pairs`] call over
/// the distinct operands.
fn doubling_products<B: Backend + ?Sized>(b: &mut B, have: &[Option<RingTensor>], top: usize, ks: &[usize]) -> Result<Vec<RingTensor>> {
    let mut index: Vec<usize> = vec![top];
    for &k in ks {
        if !index.contains(&(k - top)) {
            index.push(k - top);
        }
    }
    let operands: Vec<&RingTensor> = index.iter().map(|&i| have[i].as_ref().expect("a needed operand is made before it is used")).collect();
    let at = |i: usize| index.iter().position(|&j| j == i).expect("indexed above");
    let pairs: Vec<(usize, usize)> = ks.iter().map(|&k| (0, at(k - top))).collect();
    b.mul_pairs(&operands, &pairs)
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
    Ok(powers_with(b, u, degree, want, bits, false)?.0)
}

/// [`powers`]; with `raw_last` the last round's products are left at `2 bits` (marked in the
/// second vector) for a sum that truncates once.
fn powers_with<B: Backend + ?Sized>(
    b: &mut B,
    u: &RingTensor,
    degree: usize,
    want: impl Fn(usize) -> bool,
    bits: u32,
    raw_last: bool,
) -> Result<(Vec<Option<RingTensor>>, Vec<bool>)> {
    if degree == 0 {
        return Ok((Vec::new(), Vec::new()));
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
    doubling(b, u, &needed, want, raw_last, |b, _, _, _, p, raw| if raw { Ok(p) } else { b.scale_down(&p, bits) })
}

/// The doubling construction of [`powers`] and [`chebyshev`]: `have[1] = t`, then round by
/// round every needed `k` in `(top, 2 top]` from the product `have[top] have[k - top]` (one
/// [`Backend::mul_pairs`] call per round), made into `have[k]` by
/// `make(b, have, top, k, product, raw)`; `raw` is set in the last round when `raw_last`.
/// Returns the wanted entries (`None` for the others) and which of them are raw.
#[allow(clippy::type_complexity)]
fn doubling<B: Backend + ?Sized>(
    b: &mut B,
    t: &RingTensor,
    needed: &[bool],
    want: impl Fn(usize) -> bool,
    raw_last: bool,
    make: impl Fn(&mut B, &[Option<RingTensor>], usize, usize, RingTensor, bool) -> Result<RingTensor>,
) -> Result<(Vec<Option<RingTensor>>, Vec<bool>)> {
    let degree = needed.len() - 1;
    let mut raw = vec![false; degree];
    let mut have: Vec<Option<RingTensor>> = vec![None; degree + 1];
    have[1] = Some(t.clone());
    let mut top = 1usize;
    while top < degree {
        let next = (2 * top).min(degree);
        let last = raw_last && next == degree;
        let ks: Vec<usize> = (top + 1..=next).filter(|&k| needed[k]).collect();
        let products = doubling_products(b, &have, top, &ks)?;
        for (k, p) in ks.into_iter().zip(products) {
            have[k] = Some(make(b, &have, top, k, p, last)?);
            raw[k - 1] = last;
        }
        top = next;
    }
    have.remove(0);
    Ok((have.into_iter().enumerate().map(|(i, p)| if want(i + 1) { p } else { None }).collect(), raw))
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

// ---- Chebyshev polynomials (added for the activations) -------------------------------------

/// Coefficients `a_0 ..= a_degree` of the Chebyshev series of `f` on `[-1, 1]`, so that
/// `f(t) ~ sum_k a_k T_k(t)`: the discrete Chebyshev transform of `f` at
/// `N = max(64, 4 (degree + 1))` Chebyshev nodes (exact for polynomials of degree `< N`; for a
/// smooth `f` it is the truncated Chebyshev series up to aliasing of the terms past `N`, which
/// is within a small factor of the best uniform approximation of that degree). Computed in f64
/// when a function is called: a few thousand evaluations of `f`, nothing sent.
pub fn chebyshev_coefficients(f: impl Fn(f64) -> f64, degree: usize) -> Vec<f64> {
    use std::f64::consts::PI;
    let n = (4 * (degree + 1)).max(64);
    let theta = |j: usize| PI * (j as f64 + 0.5) / n as f64;
    let values: Vec<f64> = (0..n).map(|j| f(theta(j).cos())).collect();
    (0..=degree)
        .map(|k| {
            let s: f64 = values.iter().enumerate().map(|(j, v)| v * (k as f64 * theta(j)).cos()).sum();
            s * if k == 0 { 1.0 } else { 2.0 } / n as f64
        })
        .collect()
}

/// Which of `T_1 ..= T_degree` [`chebyshev`] computes to return the wanted ones: the wanted
/// and, recursively, the three it makes each of (`T_k = 2 T_h T_(k-h) - T_(2h-k)`, `h` the
/// largest power of two below `k`). Entry `k` of the result is for `T_k` (entry 0 unused).
pub fn chebyshev_needed(degree: usize, want: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut needed = vec![false; degree + 1];
    for k in (1..=degree).rev() {
        if want(k) || needed[k] {
            needed[k] = true;
            if k > 1 {
                let hi = 1usize << (usize::BITS - 1 - (k - 1).leading_zeros());
                needed[hi] = true;
                needed[k - hi] = true;
                if 2 * hi > k {
                    needed[2 * hi - k] = true;
                }
            }
        }
    }
    needed
}

/// The number of products (elements of [`Backend::mul`] per input element) [`chebyshev`]
/// makes for `degree` and `want`, and the number of its rounds (calls).
pub fn chebyshev_cost(degree: usize, want: impl Fn(usize) -> bool) -> (usize, usize) {
    let needed = chebyshev_needed(degree, want);
    let products = (2..=degree).filter(|&k| needed[k]).count();
    let mut rounds = 0;
    let mut top = 1;
    while top < degree {
        let next = (2 * top).min(degree);
        if (top + 1..=next).any(|k| needed[k]) {
            rounds += 1;
        }
        top = next;
    }
    (products, rounds)
}

/// The Chebyshev polynomials `T_1(t) ..= T_degree(t)` of `t` at `bits` fractional bits, in
/// `ceil(log2 degree)` rounds of products, like [`powers`]: round `r` computes every `T_k`
/// with `k` in `(2^(r-1), 2^r]` as `2 T_h T_(k-h) - T_(2h-k)` (`h = 2^(r-1)`, `T_0 = 1`).
/// For `|t| <= 1` every `T_k(t)` lies in `[-1, 1]`, so a sum `sum a_k T_k` with the decaying
/// coefficients of a smooth function is well conditioned in fixed point (unlike monomials,
/// whose coefficients grow like `(1 + sqrt 2)^degree`); products stay below `2^(2 bits)`.
/// Outside `[-1, 1]` the values grow (and wrap around the ring): callers must cancel them.
/// `want` and the result are as for [`powers`].
pub fn chebyshev<B: Backend + ?Sized>(b: &mut B, t: &RingTensor, degree: usize, want: impl Fn(usize) -> bool, bits: u32) -> Result<Vec<Option<RingTensor>>> {
    Ok(chebyshev_with(b, t, degree, want, bits, false)?.0)
}

/// [`chebyshev`]; with `raw_last` the last round's polynomials are left at `2 bits` (marked in
/// the second vector) for a sum that truncates once.
fn chebyshev_with<B: Backend + ?Sized>(
    b: &mut B,
    t: &RingTensor,
    degree: usize,
    want: impl Fn(usize) -> bool,
    bits: u32,
    raw_last: bool,
) -> Result<(Vec<Option<RingTensor>>, Vec<bool>)> {
    if degree == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    if bits == 0 {
        return Err(BackendError::Aborted("Chebyshev polynomials need fractional bits".into()));
    }
    let needed = chebyshev_needed(degree, &want);
    doubling(b, t, &needed, want, raw_last, |b, have, top, k, p, raw| {
        // 2 T_top T_(k-top) at `bits` (at `2 bits` when raw), minus T_(2 top - k).
        let (twice, at) = if raw { (mul_int(&p, 2), 2 * bits) } else { (b.scale_down(&p, bits - 1)?, bits) };
        if 2 * top == k {
            return Ok(add_public(b, &twice, encode(-1.0, at)));
        }
        let lower = have[2 * top - k].as_ref().expect("T_(2top-k) is needed");
        Ok(twice.sub(&if raw { mul_int(lower, 1i64 << bits) } else { lower.clone() })?)
    })
}

/// `sum_k coeffs[k] P_k(t)` at `bits` (`t` at `bits`, `|t| <= 1`), in the Chebyshev basis
/// (`P_k = T_k`) or the monomial one (`P_k = t^k`): [`chebyshev`] or [`powers`], then
/// [`polynomial`]. Where the backend's truncation is exact ([`Backend::exact_truncation`]) and
/// the sum at `3 bits` fits (`3 bits + log2(sum |a_k|) + 2 <= 62`), the last round of products
/// is not truncated: it enters the sum at `2 bits` and the sum is truncated once, which saves
/// one truncation per polynomial of that round (faithful truncations cost communication).
pub fn series<B: Backend + ?Sized>(b: &mut B, t: &RingTensor, coeffs: &[f64], bits: u32, chebyshev_basis: bool) -> Result<RingTensor> {
    let degree = coeffs.len().saturating_sub(1);
    let sum_abs: f64 = coeffs.iter().skip(1).map(|c| c.abs()).sum();
    let raw_last = b.exact_truncation() && degree >= 2 && 3.0 * bits as f64 + sum_abs.max(1.0).log2() + 2.0 <= 62.0;
    let (ps, raw) = if chebyshev_basis {
        chebyshev_with(b, t, degree, |k| coeffs[k] != 0.0, bits, raw_last)?
    } else {
        powers_with(b, t, degree, |_| true, bits, raw_last)?
    };
    if !raw.iter().any(|&r| r) {
        return polynomial(b, coeffs, &ps, t.shape(), bits);
    }
    let mut acc = RingTensor::zeros(t.shape().to_vec());
    for (k, &c) in coeffs.iter().enumerate().skip(1) {
        if c == 0.0 {
            continue;
        }
        let p = ps.get(k - 1).and_then(|p| p.as_ref()).ok_or_else(|| BackendError::Aborted(format!("term {k} was not computed")))?;
        let term = mul_int(p, encode(c, bits) as i64);
        acc = acc.add(&if raw[k - 1] { term } else { mul_int(&term, 1i64 << bits) })?;
    }
    let acc = b.scale_down(&acc, 2 * bits)?;
    Ok(add_public(b, &acc, encode(coeffs.first().copied().unwrap_or(0.0), bits)))
}

/// Undoes `transpose(x, perm)` for a result of the transposed layout (`out` holds as many
/// elements as `x`, in the order of `x` transposed by `perm`): the result in `x`'s layout.
pub(crate) fn untranspose(out: RingTensor, x_shape: &[usize], perm: &[usize]) -> Result<RingTensor> {
    let t_shape: Vec<usize> = perm.iter().map(|&a| x_shape[a]).collect();
    let out = out.reshape(t_shape)?;
    let mut inverse = vec![0; perm.len()];
    for (i, &a) in perm.iter().enumerate() {
        inverse[a] = i;
    }
    Ok(cryptflow_tensor::movement::transpose(&out, &inverse)?)
}
