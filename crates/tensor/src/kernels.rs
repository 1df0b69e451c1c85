//! Linear algebra, convolution and pooling kernels, generic over [`Element`].
//!
//! For `u64` every operation is exact arithmetic in Z_2^64 (wrapping); for `f32` it is ordinary
//! float arithmetic. Convolution and matrix product are bilinear, which is what lets a
//! secret-sharing protocol evaluate them on masked shares.
//!
//! How they run:
//! - `matmul`, `conv` and `conv_transpose` all end in one GEMM engine (`gemm.rs`): for `u64` a
//!   packed, cache-blocked GEMM with a register tile in Winograd's inner-product form (half
//!   the 64-bit multiplies) for AVX-512 or AVX2 (64-bit products from three 32-bit ones),
//!   picked at run time ([`crate::simd`], capped by `CRYPTFLOW_SIMD`), a portable tile
//!   otherwise, and matrix-vector paths for products with under 4 rows or columns; for `f32`
//!   `matrixmultiply::sgemm`. Both split C over rayon threads.
//! - `conv`: per (batch, group), im2col (channels-first: `[Cin_g*kvol, out]`; channels-last:
//!   patches `[out, Cin_g*kvol]` with the filter read as a transposed view) and one GEMM written
//!   straight into the output; 1x1 stride-1 unpadded convolutions read the input in place;
//!   depthwise convolutions (`Cin_g == 1`) run as direct loops (their u64 multiply-adds
//!   compiled per SIMD level).
//! - `conv_transpose`: a GEMM into columns, then col2im (a scatter per output plane,
//!   channels-first; a gather per output position, channels-last).
//! - Every spatial problem is normalised to 3 spatial axes, so ranks 1 and 2 share the code.
//! - Shapes and geometries are checked up front: a mismatch is a [`ShapeError`], never a panic.

use crate::gemm::{axpy, gemm, mul_add, MatRef};
use crate::par::for_each_chunk;
use crate::{shape_bail, ConvGeometry, Element, Layout, PoolGeometry, ShapeError, Tensor};

/// `[M, K] x [K, N] -> [M, N]`.
pub fn matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>, ShapeError> {
    if a.rank() != 2 || b.rank() != 2 || a.shape()[1] != b.shape()[0] {
        shape_bail!("matmul: cannot multiply {:?} by {:?}", a.shape(), b.shape());
    }
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let mut out = Tensor::zeros(vec![m, n]);
    gemm(m, n, k, MatRef::row_major(a.data(), 0, k), MatRef::row_major(b.data(), 0, n), out.data_mut(), n);
    Ok(out)
}

/// `[B, M, K] x [B, K, N] -> [B, M, N]`: one matrix product per batch entry.
pub fn batch_matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>, ShapeError> {
    if a.rank() != 3 || b.rank() != 3 || a.shape()[0] != b.shape()[0] || a.shape()[2] != b.shape()[1] {
        shape_bail!("batch_matmul: cannot multiply {:?} by {:?}", a.shape(), b.shape());
    }
    let (batch, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
    let mut out = Tensor::zeros(vec![batch, m, n]);
    if m * n == 0 {
        return Ok(out);
    }
    for (i, z) in out.data_mut().chunks_mut(m * n).enumerate() {
        gemm(m, n, k, MatRef::row_major(a.data(), i * m * k, k), MatRef::row_major(b.data(), i * k * n, n), z, n);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Geometry checks. Every spatial problem is normalised to 3 spatial axes by prepending unit
// axes (extent 1, kernel 1, stride 1, no padding), so the loops below are written once.
// ---------------------------------------------------------------------------------------------

/// One spatial axis of a convolution or pooling window.
#[derive(Clone, Copy, Debug)]
struct Axis {
    /// Input extent.
    input: usize,
    /// Kernel (or window) extent.
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    /// Output extent.
    output: usize,
}

impl Axis {
    const UNIT: Axis = Axis { input: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0, output: 1 };

    /// For kernel tap `k` of a (non-transposed) window: the outputs `o` in `lo..hi` read input
    /// `o * stride + k * dilation - pad_begin`, which is in bounds exactly for those outputs.
    fn valid_outputs(&self, k: usize) -> (usize, usize) {
        let off = (k * self.dilation) as isize - self.pad_begin as isize;
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi = if self.input as isize - off <= 0 { 0 } else { (self.input as isize - off + s - 1) / s };
        let hi = (hi as usize).min(self.output);
        let lo = (lo as usize).min(hi);
        (lo, hi)
    }

    /// For output `o` of a pooling window: the in-bounds input range `lo..hi`.
    fn window_inputs(&self, o: usize) -> (usize, usize) {
        let start = (o * self.stride) as isize - self.pad_begin as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + self.kernel as isize).max(0) as usize).min(self.input);
        (lo.min(hi), hi)
    }
}

fn check_lengths(what: &str, r: usize, lists: &[(&str, usize)]) -> Result<(), ShapeError> {
    if r == 0 || r > 3 {
        shape_bail!("{what}: spatial rank {r} is not supported (1, 2 or 3)");
    }
    for &(name, len) in lists {
        if len != r {
            shape_bail!("{what}: {name} has {len} entries for spatial rank {r}");
        }
    }
    Ok(())
}

/// Checks a convolution geometry and returns its 3 normalised axes (output extents filled in).
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the workspace's MSRV
fn conv_axes(geom: &ConvGeometry, transposed: bool) -> Result<[Axis; 3], ShapeError> {
    let what = if transposed { "conv_transpose" } else { "conv" };
    let r = geom.input.len();
    check_lengths(
        what,
        r,
        &[
            ("kernel", geom.kernel.len()),
            ("strides", geom.strides.len()),
            ("dilations", geom.dilations.len()),
            ("pads_begin", geom.pads_begin.len()),
            ("pads_end", geom.pads_end.len()),
        ],
    )?;
    if transposed && !geom.output_padding.is_empty() && geom.output_padding.len() != r {
        shape_bail!("{what}: output_padding has {} entries for spatial rank {r}", geom.output_padding.len());
    }
    if geom.groups == 0 || geom.in_channels % geom.groups != 0 || geom.out_channels % geom.groups != 0 {
        shape_bail!(
            "{what}: {} groups do not divide {} input and {} output channels",
            geom.groups,
            geom.in_channels,
            geom.out_channels
        );
    }
    let mut axes = [Axis::UNIT; 3];
    for i in 0..r {
        let (d, k, s, dil) = (geom.input[i], geom.kernel[i], geom.strides[i], geom.dilations[i]);
        let (pb, pe) = (geom.pads_begin[i], geom.pads_end[i]);
        if k == 0 || s == 0 || dil == 0 {
            shape_bail!("{what}: kernel, stride and dilation must be positive on axis {i} (got {k}, {s}, {dil})");
        }
        let span = dil * (k - 1) + 1;
        let output = if transposed {
            let op = geom.output_padding.get(i).copied().unwrap_or(0);
            if d == 0 {
                shape_bail!("{what}: empty input axis {i}");
            }
            let full = s * (d - 1) + op + span;
            if full < pb + pe {
                shape_bail!("{what}: pads {pb}+{pe} exceed the full output extent {full} on axis {i}");
            }
            full - pb - pe
        } else {
            if d + pb + pe < span {
                shape_bail!("{what}: kernel span {span} exceeds the padded input {} on axis {i}", d + pb + pe);
            }
            (d + pb + pe - span) / s + 1
        };
        axes[3 - r + i] = Axis { input: d, kernel: k, stride: s, dilation: dil, pad_begin: pb, output };
    }
    Ok(axes)
}

fn check_operand<T: Element>(what: &str, name: &str, t: &Tensor<T>, want: &[usize]) -> Result<(), ShapeError> {
    if t.shape() != want {
        shape_bail!("{what}: {name} has shape {:?} but the geometry needs {:?}", t.shape(), want);
    }
    Ok(())
}

/// Checks a pooling geometry; returns the normalised axes (the window as the kernel).
fn pool_axes(geom: &PoolGeometry) -> Result<[Axis; 3], ShapeError> {
    let r = geom.input.len();
    check_lengths(
        "pool",
        r,
        &[
            ("window", geom.window.len()),
            ("strides", geom.strides.len()),
            ("pads_begin", geom.pads_begin.len()),
            ("pads_end", geom.pads_end.len()),
        ],
    )?;
    let mut axes = [Axis::UNIT; 3];
    for i in 0..r {
        let (d, w, s, pb, pe) = (geom.input[i], geom.window[i], geom.strides[i], geom.pads_begin[i], geom.pads_end[i]);
        if w == 0 || s == 0 {
            shape_bail!("pool: window and stride must be positive on axis {i} (got {w}, {s})");
        }
        if d + pb + pe < w {
            shape_bail!("pool: window {w} exceeds the padded input {} on axis {i}", d + pb + pe);
        }
        axes[3 - r + i] = Axis { input: d, kernel: w, stride: s, dilation: 1, pad_begin: pb, output: (d + pb + pe - w) / s + 1 };
    }
    Ok(axes)
}

/// Pooling whose windows must each hold an in-bounds element (max pooling, window gathering).
fn pool_axes_nonempty(geom: &PoolGeometry) -> Result<[Axis; 3], ShapeError> {
    let axes = pool_axes(geom)?;
    for (i, a) in axes.iter().enumerate() {
        for o in 0..a.output {
            let (lo, hi) = a.window_inputs(o);
            if lo >= hi {
                shape_bail!("pool: output {o} of axis {} has a window made only of padding", i + geom.input.len() - 3);
            }
        }
    }
    Ok(axes)
}

fn volume(axes: &[Axis; 3], f: impl Fn(&Axis) -> usize) -> usize {
    axes.iter().map(f).product()
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// Convolution (no bias) of `x` (shape `geom.input_shape()`) with filter `w`
/// (`geom.conv_filter_shape()`), giving `geom.conv_output_shape()`. ONNX `Conv` semantics:
/// strides, dilations, asymmetric zero padding, groups (depthwise when groups == channels).
pub fn conv<T: Element>(x: &Tensor<T>, w: &Tensor<T>, geom: &ConvGeometry) -> Result<Tensor<T>, ShapeError> {
    let axes = conv_axes(geom, false)?;
    check_operand("conv", "input", x, &geom.input_shape())?;
    check_operand("conv", "filter", w, &geom.conv_filter_shape())?;
    let mut out = Tensor::zeros(geom.conv_output_shape());
    if out.is_empty() {
        return Ok(out);
    }
    let p = ConvProblem::new(geom, axes);
    if p.cin_g == 1 {
        // Depthwise (with any channel multiplier): a GEMM per channel would have one row.
        match geom.layout {
            Layout::ChannelsFirst => depthwise_cf(&p, x.data(), w.data(), out.data_mut()),
            Layout::ChannelsLast => depthwise_cl(&p, x.data(), w.data(), out.data_mut()),
        }
    } else {
        match geom.layout {
            Layout::ChannelsFirst => conv_cf(&p, x.data(), w.data(), out.data_mut()),
            Layout::ChannelsLast => conv_cl(&p, x.data(), w.data(), out.data_mut()),
        }
    }
    Ok(out)
}

/// Sizes of a checked convolution.
struct ConvProblem {
    axes: [Axis; 3],
    batch: usize,
    groups: usize,
    cin: usize,
    cout: usize,
    cin_g: usize,
    cout_g: usize,
    /// Kernel taps `K_1 * .. * K_r`.
    kvol: usize,
    /// Input and output spatial sizes.
    isz: usize,
    osz: usize,
}

impl ConvProblem {
    fn new(geom: &ConvGeometry, axes: [Axis; 3]) -> Self {
        ConvProblem {
            axes,
            batch: geom.batch,
            groups: geom.groups,
            cin: geom.in_channels,
            cout: geom.out_channels,
            cin_g: geom.in_channels / geom.groups,
            cout_g: geom.out_channels / geom.groups,
            kvol: volume(&axes, |a| a.kernel),
            isz: volume(&axes, |a| a.input),
            osz: volume(&axes, |a| a.output),
        }
    }

    /// A 1x1 convolution with unit strides and no padding reads the input as it is.
    fn is_pointwise(&self) -> bool {
        self.axes.iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.output == a.input)
    }

    /// Kernel tap index -> (k0, k1, k2).
    fn tap(&self, t: usize) -> [usize; 3] {
        let (k1, k2) = (self.axes[1].kernel, self.axes[2].kernel);
        [t / (k1 * k2), (t / k2) % k1, t % k2]
    }
}

/// Input index of output `o`, tap `k` on an axis, if it is in bounds.
#[inline(always)]
fn input_index(a: &Axis, o: usize, k: usize) -> Option<usize> {
    let i = (o * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
    if i >= 0 && (i as usize) < a.input {
        Some(i as usize)
    } else {
        None
    }
}

/// Fills one im2col row: `row[o] = plane[input(o, tap)]` or zero, over the outputs `o` of the
/// output rows `rows` (a row: one index of the first two spatial axes, `a1.output * o0 + o1`).
fn im2col_row<T: Element>(p: &ConvProblem, plane: &[T], tap: [usize; 3], rows: std::ops::Range<usize>, row: &mut [T]) {
    let [a0, a1, a2] = &p.axes;
    let (lo2, hi2) = a2.valid_outputs(tap[2]);
    let off2 = (tap[2] * a2.dilation) as isize - a2.pad_begin as isize;
    let mut chunks = row.chunks_exact_mut(a2.output);
    for r in rows {
        let (o0, o1) = (r / a1.output, r % a1.output);
        let dst = chunks.next().unwrap();
        let (Some(i0), Some(i1)) = (input_index(a0, o0, tap[0]), input_index(a1, o1, tap[1])) else {
            dst.fill(T::ZERO);
            continue;
        };
        let src = &plane[(i0 * a1.input + i1) * a2.input..][..a2.input];
        dst[..lo2].fill(T::ZERO);
        dst[hi2..].fill(T::ZERO);
        if lo2 == hi2 {
            continue;
        }
        let first = (lo2 as isize * a2.stride as isize + off2) as usize;
        if a2.stride == 1 {
            dst[lo2..hi2].copy_from_slice(&src[first..first + (hi2 - lo2)]);
        } else {
            for (j, d) in dst[lo2..hi2].iter_mut().enumerate() {
                *d = src[first + j * a2.stride];
            }
        }
    }
}

/// Elements of patches (im2col) or columns (col2im) a channels-first (transposed) convolution
/// builds at once: larger problems are computed a range of output (input) rows at a time, so
/// that the buffer stays near this size whatever the volume (a 32-channel 3x3x3 convolution
/// over 64 x 256 x 256 would otherwise build 3.6 G elements of patches, 29 GB). 2^22 elements
/// keep the GEMM's panels wide (thousands of columns for any realistic filter).
const PATCH_CHUNK_ELEMENTS: usize = 1 << 22;

/// Row ranges of `rows` rows of `per_row` buffer elements each, chunked to
/// [`PATCH_CHUNK_ELEMENTS`] (at least one row a chunk).
fn row_chunks(rows: usize, per_row: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let step = (PATCH_CHUNK_ELEMENTS / per_row.max(1)).max(1);
    (0..rows).step_by(step).map(move |r| r..(r + step).min(rows))
}

/// Channels-first convolution: per (batch, group), im2col `[Cin_g * kvol, osz]` then
/// `out_g = W_g [Cout_g, Cin_g * kvol] x cols`.
fn conv_cf<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let kdim = p.cin_g * p.kvol;
    let pointwise = p.is_pointwise();
    let a2 = &p.axes[2];
    let out_rows = p.osz / a2.output;
    let chunk_len = if pointwise { 0 } else { kdim * row_chunks(out_rows, kdim * a2.output).next().map_or(0, |r| r.len() * a2.output) };
    let mut cols = crate::scratch::take::<T>(chunk_len);
    for b in 0..p.batch {
        for g in 0..p.groups {
            let x_off = (b * p.cin + g * p.cin_g) * p.isz;
            let amat = MatRef::row_major(w, g * p.cout_g * kdim, kdim);
            let c_off = (b * p.cout + g * p.cout_g) * p.osz;
            if pointwise {
                let bmat = MatRef::row_major(x, x_off, p.isz);
                gemm(p.cout_g, p.osz, kdim, amat, bmat, &mut out[c_off..c_off + p.cout_g * p.osz], p.osz);
                continue;
            }
            let xg = &x[x_off..x_off + p.cin_g * p.isz];
            for rows in row_chunks(out_rows, kdim * a2.output) {
                // Patches of these output rows only: [kdim, n], into the same rows of C.
                let (first, n) = (rows.start * a2.output, rows.len() * a2.output);
                let cols = &mut cols[..kdim * n];
                for_each_chunk(cols, n, kdim * n, |r, row| {
                    let (c, t) = (r / p.kvol, r % p.kvol);
                    im2col_row(p, &xg[c * p.isz..(c + 1) * p.isz], p.tap(t), rows.clone(), row);
                });
                let bmat = MatRef::row_major(cols, 0, n);
                gemm(p.cout_g, n, kdim, amat, bmat, &mut out[c_off + first..c_off + p.cout_g * p.osz], p.osz);
            }
        }
    }
}

/// Channels-last convolution: per (batch, group), patches `[osz, Cin_g * kvol]` times the
/// group's filter read as `[Cin_g * kvol, Cout_g]` (a transposed view), written straight into
/// the group's channels of `[osz, Cout]`.
///
/// Patch columns are in tap-major order (each tap's channels contiguous, copied as runs) when the
/// patches outweigh the filter, which is then permuted to match once; otherwise in the filter's
/// own (channel, tap) order, with no permutation.
fn conv_cl<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let kdim = p.cin_g * p.kvol;
    let pointwise = p.is_pointwise();
    let tap_major = !pointwise && p.kvol > 1 && p.cin_g > 1 && p.osz * p.batch > p.cout;
    let mut permuted = crate::scratch::take::<T>(if tap_major { w.len() } else { 0 });
    if tap_major {
        for_each_chunk(&mut permuted, kdim, w.len(), |j, row| {
            let src = &w[j * kdim..(j + 1) * kdim];
            for c in 0..p.cin_g {
                for t in 0..p.kvol {
                    row[t * p.cin_g + c] = src[c * p.kvol + t];
                }
            }
        });
    }
    let filter: &[T] = if tap_major { &permuted } else { w };
    let mut patches = crate::scratch::take::<T>(if pointwise { 0 } else { p.osz * kdim });
    let [a0, a1, a2] = p.axes;
    for b in 0..p.batch {
        let xb = &x[b * p.isz * p.cin..(b + 1) * p.isz * p.cin];
        for g in 0..p.groups {
            let amat = if pointwise {
                MatRef::new(xb, g * p.cin_g, p.cin, 1)
            } else {
                for_each_chunk(&mut patches, kdim, kdim * p.osz, |o, row| {
                    let o2 = o % a2.output;
                    let o1 = (o / a2.output) % a1.output;
                    let o0 = o / (a2.output * a1.output);
                    if tap_major {
                        // Taps along the last axis are consecutive in the row and, without
                        // dilation, their channel vectors are consecutive in the input: one run
                        // per (k0, k1).
                        let run = a2.kernel * p.cin_g;
                        let off2 = (o2 * a2.stride) as isize - a2.pad_begin as isize;
                        // Taps k2 in klo..khi are in bounds.
                        let klo = (0..a2.kernel).find(|&k2| input_index(&a2, o2, k2).is_some()).unwrap_or(a2.kernel);
                        let khi = (klo..a2.kernel).rev().find(|&k2| input_index(&a2, o2, k2).is_some()).map_or(klo, |k| k + 1);
                        for (kk, dst) in row.chunks_exact_mut(run).enumerate() {
                            let (k0, k1) = (kk / a1.kernel, kk % a1.kernel);
                            let (Some(i0), Some(i1)) = (input_index(&a0, o0, k0), input_index(&a1, o1, k1)) else {
                                dst.fill(T::ZERO);
                                continue;
                            };
                            let base = (i0 * a1.input + i1) * a2.input;
                            if a2.dilation == 1 {
                                dst[..klo * p.cin_g].fill(T::ZERO);
                                dst[khi * p.cin_g..].fill(T::ZERO);
                                if klo < khi {
                                    let i2 = (off2 + klo as isize) as usize;
                                    let s0 = (base + i2) * p.cin + g * p.cin_g;
                                    if g == 0 && p.groups == 1 {
                                        // The whole run is contiguous in the input.
                                        dst[klo * p.cin_g..khi * p.cin_g].copy_from_slice(&xb[s0..s0 + (khi - klo) * p.cin]);
                                    } else {
                                        for (j, d) in dst[klo * p.cin_g..khi * p.cin_g].chunks_exact_mut(p.cin_g).enumerate() {
                                            d.copy_from_slice(&xb[s0 + j * p.cin..][..p.cin_g]);
                                        }
                                    }
                                }
                            } else {
                                for (k2, d) in dst.chunks_exact_mut(p.cin_g).enumerate() {
                                    match input_index(&a2, o2, k2) {
                                        Some(i2) => d.copy_from_slice(&xb[(base + i2) * p.cin + g * p.cin_g..][..p.cin_g]),
                                        None => d.fill(T::ZERO),
                                    }
                                }
                            }
                        }
                        return;
                    }
                    for t in 0..p.kvol {
                        let k = p.tap(t);
                        let src = match (input_index(&a0, o0, k[0]), input_index(&a1, o1, k[1]), input_index(&a2, o2, k[2])) {
                            (Some(i0), Some(i1), Some(i2)) => {
                                let pos = (i0 * a1.input + i1) * a2.input + i2;
                                Some(&xb[pos * p.cin + g * p.cin_g..][..p.cin_g])
                            }
                            _ => None,
                        };
                        for c in 0..p.cin_g {
                            row[c * p.kvol + t] = src.map_or(T::ZERO, |s| s[c]);
                        }
                    }
                });
                MatRef::row_major(&patches, 0, kdim)
            };
            // B(r, j) = filter[g * Cout_g + j][r].
            let bmat = MatRef::new(filter, g * p.cout_g * kdim, 1, kdim);
            let c_off = b * p.osz * p.cout + g * p.cout_g;
            let c_end = (b + 1) * p.osz * p.cout;
            gemm(p.osz, p.cout_g, kdim, amat, bmat, &mut out[c_off..c_end], p.cout);
        }
    }
}

/// Depthwise channels-first convolution (`Cin_g == 1`): each output plane accumulates shifted
/// input rows scaled by one filter tap.
fn depthwise_cf<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let [a0, a1, a2] = p.axes;
    let work = out.len() * p.kvol;
    for_each_chunk(out, p.osz, work, |plane, dst| {
        let (b, oc) = (plane / p.cout, plane % p.cout);
        let ic = oc / p.cout_g;
        let src = &x[(b * p.cin + ic) * p.isz..][..p.isz];
        let taps = &w[oc * p.kvol..(oc + 1) * p.kvol];
        for (t, &wt) in taps.iter().enumerate() {
            let k = p.tap(t);
            let (lo2, hi2) = a2.valid_outputs(k[2]);
            if lo2 >= hi2 {
                continue;
            }
            let off2 = (k[2] * a2.dilation) as isize - a2.pad_begin as isize;
            let first = (lo2 as isize * a2.stride as isize + off2) as usize;
            for o0 in 0..a0.output {
                let Some(i0) = input_index(&a0, o0, k[0]) else { continue };
                for o1 in 0..a1.output {
                    let Some(i1) = input_index(&a1, o1, k[1]) else { continue };
                    let row = &src[(i0 * a1.input + i1) * a2.input..][..a2.input];
                    let d = &mut dst[(o0 * a1.output + o1) * a2.output..][lo2..hi2];
                    if a2.stride == 1 {
                        axpy(d, wt, &row[first..]);
                    } else {
                        for (j, d) in d.iter_mut().enumerate() {
                            *d = d.add(wt.mul(row[first + j * a2.stride]));
                        }
                    }
                }
            }
        }
    });
}

/// Depthwise channels-last convolution (`Cin_g == 1`): each output position accumulates whole
/// channel vectors of the input positions under its taps.
fn depthwise_cl<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let [a0, a1, a2] = p.axes;
    // wt[t][oc] = w[oc][0][t]
    let mut wt = vec![T::ZERO; p.kvol * p.cout];
    for oc in 0..p.cout {
        for t in 0..p.kvol {
            wt[t * p.cout + oc] = w[oc * p.kvol + t];
        }
    }
    let work = out.len() * p.kvol;
    for_each_chunk(out, p.cout, work, |pos, dst| {
        let b = pos / p.osz;
        let o = pos % p.osz;
        let o2 = o % a2.output;
        let o1 = (o / a2.output) % a1.output;
        let o0 = o / (a2.output * a1.output);
        for t in 0..p.kvol {
            let k = p.tap(t);
            let (Some(i0), Some(i1), Some(i2)) = (input_index(&a0, o0, k[0]), input_index(&a1, o1, k[1]), input_index(&a2, o2, k[2])) else {
                continue;
            };
            let ipos = (i0 * a1.input + i1) * a2.input + i2;
            let src = &x[(b * p.isz + ipos) * p.cin..][..p.cin];
            let taps = &wt[t * p.cout..(t + 1) * p.cout];
            if p.cout_g == 1 {
                mul_add(dst, taps, src);
            } else {
                for (oc, (d, &wv)) in dst.iter_mut().zip(taps).enumerate() {
                    *d = d.add(wv.mul(src[oc / p.cout_g]));
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Transposed convolution
// ---------------------------------------------------------------------------------------------

/// Transposed convolution (no bias) of `x` (`geom.input_shape()`) with filter `w`
/// (`geom.conv_transpose_filter_shape()`), giving `geom.conv_transpose_output_shape()`. ONNX
/// `ConvTranspose` semantics with explicit pads and output_padding.
pub fn conv_transpose<T: Element>(x: &Tensor<T>, w: &Tensor<T>, geom: &ConvGeometry) -> Result<Tensor<T>, ShapeError> {
    let axes = conv_axes(geom, true)?;
    check_operand("conv_transpose", "input", x, &geom.input_shape())?;
    check_operand("conv_transpose", "filter", w, &geom.conv_transpose_filter_shape())?;
    let mut out = Tensor::zeros(geom.conv_transpose_output_shape());
    if out.is_empty() {
        return Ok(out);
    }
    let p = ConvProblem::new(geom, axes);
    match geom.layout {
        Layout::ChannelsFirst => conv_transpose_cf(&p, x.data(), w.data(), out.data_mut()),
        Layout::ChannelsLast => conv_transpose_cl(&p, x.data(), w.data(), out.data_mut()),
    }
    Ok(out)
}

/// Output index of input `i`, tap `k` of a transposed convolution, if it is in bounds.
#[inline(always)]
fn transposed_output_index(a: &Axis, i: usize, k: usize) -> Option<usize> {
    let o = (i * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
    if o >= 0 && (o as usize) < a.output {
        Some(o as usize)
    } else {
        None
    }
}

/// Channels-first: `cols [Cout_g * kvol, isz] = W_g^T x X_g`, then every column is scattered
/// (col2im) into the output planes, one plane per thread task.
fn conv_transpose_cf<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let [a0, a1, a2] = p.axes;
    let rows = p.cout_g * p.kvol;
    let in_rows = a0.input * a1.input;
    let chunk_len = rows * row_chunks(in_rows, rows * a2.input).next().map_or(0, |r| r.len() * a2.input);
    let mut cols = crate::scratch::take::<T>(chunk_len);
    for b in 0..p.batch {
        for g in 0..p.groups {
            // W_g^T (r, ic) = w[g * Cin_g + ic][r] with r = oc * kvol + t.
            let amat = MatRef::new(w, g * p.cin_g * rows, 1, rows);
            // The columns of a range of input rows at a time (see PATCH_CHUNK_ELEMENTS).
            for in_chunk in row_chunks(in_rows, rows * a2.input) {
                let (first, n) = (in_chunk.start * a2.input, in_chunk.len() * a2.input);
                let bmat = MatRef::row_major(x, (b * p.cin + g * p.cin_g) * p.isz + first, p.isz);
                let cols = &mut cols[..rows * n];
                gemm(rows, n, p.cin_g, amat, bmat, cols, n);
                let planes = &mut out[(b * p.cout + g * p.cout_g) * p.osz..][..p.cout_g * p.osz];
                let cols = &*cols;
                let in_chunk = &in_chunk;
                for_each_chunk(planes, p.osz, rows * n, |oc, dst| {
                    for t in 0..p.kvol {
                        let k = p.tap(t);
                        let src = &cols[(oc * p.kvol + t) * n..][..n];
                        for r in in_chunk.clone() {
                            let (i0, i1) = (r / a1.input, r % a1.input);
                            let Some(o0) = transposed_output_index(&a0, i0, k[0]) else { continue };
                            let Some(o1) = transposed_output_index(&a1, i1, k[1]) else { continue };
                            let row = &src[(r - in_chunk.start) * a2.input..][..a2.input];
                            let drow = &mut dst[(o0 * a1.output + o1) * a2.output..][..a2.output];
                            for (i2, &v) in row.iter().enumerate() {
                                if let Some(o2) = transposed_output_index(&a2, i2, k[2]) {
                                    drow[o2] = drow[o2].add(v);
                                }
                            }
                        }
                    }
                });
            }
        }
    }
}

/// Channels-last: `colsT [isz, kvol * Cout_g] = X_g x W_g` (filter permuted tap-major), then
/// every output position gathers the channel vectors of the inputs that reach it.
fn conv_transpose_cl<T: Element>(p: &ConvProblem, x: &[T], w: &[T], out: &mut [T]) {
    let [a0, a1, a2] = p.axes;
    let width = p.kvol * p.cout_g;
    // wp[g][ic][t * Cout_g + oc] = w[g * Cin_g + ic][oc][t]
    let mut wp = vec![T::ZERO; p.cin * width];
    for ic in 0..p.cin {
        for oc in 0..p.cout_g {
            for t in 0..p.kvol {
                wp[ic * width + t * p.cout_g + oc] = w[(ic * p.cout_g + oc) * p.kvol + t];
            }
        }
    }
    let mut cols = crate::scratch::take::<T>(p.isz * width);
    // For each axis and output o, the (input, tap) pairs with i * s + k * d - pad == o.
    let sources = |a: &Axis, o: usize| -> Vec<(usize, usize)> {
        (0..a.kernel)
            .filter_map(|k| {
                let num = o as isize + a.pad_begin as isize - (k * a.dilation) as isize;
                if num < 0 || num % a.stride as isize != 0 {
                    return None;
                }
                let i = (num / a.stride as isize) as usize;
                (i < a.input).then_some((i, k))
            })
            .collect()
    };
    let src0: Vec<Vec<(usize, usize)>> = (0..a0.output).map(|o| sources(&a0, o)).collect();
    let src1: Vec<Vec<(usize, usize)>> = (0..a1.output).map(|o| sources(&a1, o)).collect();
    let src2: Vec<Vec<(usize, usize)>> = (0..a2.output).map(|o| sources(&a2, o)).collect();
    for b in 0..p.batch {
        for g in 0..p.groups {
            let amat = MatRef::new(x, b * p.isz * p.cin + g * p.cin_g, p.cin, 1);
            let bmat = MatRef::row_major(&wp, g * p.cin_g * width, width);
            gemm(p.isz, width, p.cin_g, amat, bmat, &mut cols, width);
            let ob = &mut out[b * p.osz * p.cout..(b + 1) * p.osz * p.cout];
            let cols = &cols;
            for_each_chunk(ob, p.cout, p.isz * width, |o, dst| {
                let dst = &mut dst[g * p.cout_g..(g + 1) * p.cout_g];
                let o2 = o % a2.output;
                let o1 = (o / a2.output) % a1.output;
                let o0 = o / (a2.output * a1.output);
                for &(i0, k0) in &src0[o0] {
                    for &(i1, k1) in &src1[o1] {
                        for &(i2, k2) in &src2[o2] {
                            let i = (i0 * a1.input + i1) * a2.input + i2;
                            let t = (k0 * a1.kernel + k1) * a2.kernel + k2;
                            let src = &cols[i * width + t * p.cout_g..][..p.cout_g];
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = d.add(v);
                            }
                        }
                    }
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

/// Visits the output elements of a pool in row-major order of `geom.output_shape()`, in
/// parallel chunks: `f(out_chunk, b, [o0, o1, o2])` gets the `channels` outputs of one output
/// position (channels-last) or one output row `o2 = 0..O2` of one channel (channels-first).
/// Shared by the pooling kernels below.
fn pool_each<T: Element>(
    geom: &PoolGeometry,
    axes: &[Axis; 3],
    x: &[T],
    out: &mut [T],
    combine: impl Fn(T, T) -> T + Sync,
    init_zero: bool,
) {
    let [a0, a1, a2] = *axes;
    let isz = volume(axes, |a| a.input);
    let c = geom.channels;
    match geom.layout {
        Layout::ChannelsFirst => {
            // One task per (b, c, o0, o1) output row.
            let work = out.len() * volume(axes, |a| a.kernel);
            for_each_chunk(out, a2.output, work, |r, dst| {
                let o1 = r % a1.output;
                let o0 = (r / a1.output) % a0.output;
                let plane = r / (a1.output * a0.output);
                let src = &x[plane * isz..(plane + 1) * isz];
                let (lo0, hi0) = a0.window_inputs(o0);
                let (lo1, hi1) = a1.window_inputs(o1);
                for (o2, d) in dst.iter_mut().enumerate() {
                    let (lo2, hi2) = a2.window_inputs(o2);
                    let mut acc = if init_zero { T::ZERO } else { src[(lo0 * a1.input + lo1) * a2.input + lo2] };
                    for i0 in lo0..hi0 {
                        for i1 in lo1..hi1 {
                            let row = &src[(i0 * a1.input + i1) * a2.input..];
                            for &v in &row[lo2..hi2] {
                                acc = combine(acc, v);
                            }
                        }
                    }
                    *d = acc;
                }
            });
        }
        Layout::ChannelsLast => {
            let osz = volume(axes, |a| a.output);
            let work = out.len() * volume(axes, |a| a.kernel);
            for_each_chunk(out, c, work, |pos, dst| {
                let b = pos / osz;
                let o = pos % osz;
                let o2 = o % a2.output;
                let o1 = (o / a2.output) % a1.output;
                let o0 = o / (a2.output * a1.output);
                let src = &x[b * isz * c..(b + 1) * isz * c];
                let (lo0, hi0) = a0.window_inputs(o0);
                let (lo1, hi1) = a1.window_inputs(o1);
                let (lo2, hi2) = a2.window_inputs(o2);
                if init_zero {
                    dst.fill(T::ZERO);
                } else {
                    let first = ((lo0 * a1.input + lo1) * a2.input + lo2) * c;
                    dst.copy_from_slice(&src[first..first + c]);
                }
                for i0 in lo0..hi0 {
                    for i1 in lo1..hi1 {
                        for i2 in lo2..hi2 {
                            let s = ((i0 * a1.input + i1) * a2.input + i2) * c;
                            for (d, &v) in dst.iter_mut().zip(&src[s..s + c]) {
                                *d = combine(*d, v);
                            }
                        }
                    }
                }
            });
        }
    }
}

/// Gathers every pooling window: returns `[window_size, outputs]` where `outputs` is the number
/// of elements of `geom.output_shape()` in row-major order, and row `k` holds the `k`-th window
/// element of each output. A padded position repeats the window's first in-bounds element, so
/// a maximum over the rows is the max-pool (padding never wins) without a "minus infinity".
///
/// Every window must hold at least one in-bounds element (otherwise: `ShapeError`).
pub fn pool_windows<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    let axes = pool_axes_nonempty(geom)?;
    check_operand("pool_windows", "input", x, &geom.input_shape())?;
    let [a0, a1, a2] = axes;
    let wsize = volume(&axes, |a| a.kernel);
    let osz = volume(&axes, |a| a.output);
    let isz = volume(&axes, |a| a.input);
    let outputs = geom.batch * geom.channels * osz;
    let mut out = Tensor::zeros(vec![wsize, outputs]);
    if out.is_empty() {
        return Ok(out);
    }
    let c = geom.channels;
    let xd = x.data();
    // Spatial input offset read by tap t of output position o: the tap's position if it is in
    // bounds on every axis, else the window's first in-bounds position (in row-major window
    // order: the first in-bounds index of every axis).
    let mut source = vec![0usize; wsize * osz];
    for (t, row) in source.chunks_exact_mut(osz).enumerate() {
        let k = [t / (a1.kernel * a2.kernel), (t / a2.kernel) % a1.kernel, t % a2.kernel];
        let mut o = 0;
        for o0 in 0..a0.output {
            for o1 in 0..a1.output {
                for o2 in 0..a2.output {
                    let pos = match (input_index(&a0, o0, k[0]), input_index(&a1, o1, k[1]), input_index(&a2, o2, k[2])) {
                        (Some(i0), Some(i1), Some(i2)) => [i0, i1, i2],
                        _ => [a0.window_inputs(o0).0, a1.window_inputs(o1).0, a2.window_inputs(o2).0],
                    };
                    row[o] = (pos[0] * a1.input + pos[1]) * a2.input + pos[2];
                    o += 1;
                }
            }
        }
    }
    let source = &source;
    for_each_chunk(out.data_mut(), outputs, wsize * outputs, |t, row| {
        let src_t = &source[t * osz..(t + 1) * osz];
        match geom.layout {
            Layout::ChannelsFirst => {
                for (plane, dst) in row.chunks_exact_mut(osz).enumerate() {
                    let xp = &xd[plane * isz..(plane + 1) * isz];
                    for (d, &sp) in dst.iter_mut().zip(src_t) {
                        *d = xp[sp];
                    }
                }
            }
            Layout::ChannelsLast => {
                for (b, dst_b) in row.chunks_exact_mut(osz * c).enumerate() {
                    let xb = &xd[b * isz * c..(b + 1) * isz * c];
                    for (dst, &sp) in dst_b.chunks_exact_mut(c).zip(src_t) {
                        dst.copy_from_slice(&xb[sp * c..(sp + 1) * c]);
                    }
                }
            }
        }
    });
    Ok(out)
}

/// Max pooling in the element order of [`Element::greater_than`]; padding never wins.
///
/// Every window must hold at least one in-bounds element (otherwise: `ShapeError`).
pub fn max_pool<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    let axes = pool_axes_nonempty(geom)?;
    check_operand("max_pool", "input", x, &geom.input_shape())?;
    let mut out = Tensor::zeros(geom.output_shape());
    if !out.is_empty() {
        pool_each(geom, &axes, x.data(), out.data_mut(), |a, b| if b.greater_than(a) { b } else { a }, false);
    }
    Ok(out)
}

/// Sum over each pooling window (padded positions contribute zero), shape `geom.output_shape()`.
pub fn sum_pool<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    let axes = pool_axes(geom)?;
    check_operand("sum_pool", "input", x, &geom.input_shape())?;
    let mut out = Tensor::zeros(geom.output_shape());
    if !out.is_empty() {
        pool_each(geom, &axes, x.data(), out.data_mut(), T::add, true);
    }
    Ok(out)
}

/// The divisor of every output element of an average pool, shape `geom.output_shape()`:
/// the window size, or with `count_include_pad == false` the number of in-bounds positions.
///
/// This cannot fail, so an invalid geometry (one [`sum_pool`] rejects) gives an empty tensor
/// of shape `[0]` rather than a panic.
pub fn pool_divisors(geom: &PoolGeometry) -> Tensor<u64> {
    let Ok(axes) = pool_axes(geom) else {
        return Tensor::zeros(vec![0]);
    };
    let [a0, a1, a2] = axes;
    let wsize = volume(&axes, |a| a.kernel) as u64;
    let mut spatial = Vec::with_capacity(volume(&axes, |a| a.output));
    for o0 in 0..a0.output {
        let (l0, h0) = a0.window_inputs(o0);
        for o1 in 0..a1.output {
            let (l1, h1) = a1.window_inputs(o1);
            for o2 in 0..a2.output {
                let (l2, h2) = a2.window_inputs(o2);
                spatial.push(if geom.count_include_pad { wsize } else { ((h0 - l0) * (h1 - l1) * (h2 - l2)) as u64 });
            }
        }
    }
    let c = geom.channels;
    let mut data = Vec::with_capacity(geom.batch * c * spatial.len());
    for _ in 0..geom.batch {
        match geom.layout {
            Layout::ChannelsFirst => {
                for _ in 0..c {
                    data.extend_from_slice(&spatial);
                }
            }
            Layout::ChannelsLast => {
                for &d in &spatial {
                    data.extend(std::iter::repeat_n(d, c));
                }
            }
        }
    }
    Tensor::new(geom.output_shape(), data).expect("divisor count matches the output shape")
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

/// Sum over `axes` (sorted, distinct); with `keep_dims` the reduced axes stay with extent 1.
///
/// An empty `axes` reduces nothing (the sum over no axis is the input itself).
pub fn reduce_sum<T: Element>(x: &Tensor<T>, axes: &[usize], keep_dims: bool) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        shape_bail!("reduce_sum: axes {:?} are not sorted distinct axes of {:?}", axes, x.shape());
    }
    let reduced: Vec<bool> = (0..rank).map(|a| axes.contains(&a)).collect();
    let out_shape: Vec<usize> = (0..rank)
        .filter_map(|a| match (reduced[a], keep_dims) {
            (false, _) => Some(x.shape()[a]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let mut out = Tensor::zeros(out_shape);
    if x.is_empty() || out.is_empty() {
        return Ok(out);
    }
    if rank == 0 {
        return Ok(x.clone());
    }
    // Merge runs of axes with the same status: (extent, reduced).
    let mut runs: Vec<(usize, bool)> = Vec::new();
    for (&n, &red) in x.shape().iter().zip(&reduced) {
        match runs.last_mut() {
            Some(last) if last.1 == red => last.0 *= n,
            _ => runs.push((n, red)),
        }
    }
    // Output stride of every run (0 for reduced runs).
    let mut strides = vec![0usize; runs.len()];
    let mut s = 1;
    for (i, &(n, red)) in runs.iter().enumerate().rev() {
        if !red {
            strides[i] = s;
            s *= n;
        }
    }
    let (inner, inner_reduced) = *runs.last().unwrap();
    let outer = &runs[..runs.len() - 1];
    let mut index = vec![0usize; outer.len()];
    let (src, dst) = (x.data(), out.data_mut());
    for chunk in src.chunks_exact(inner) {
        let base: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        if inner_reduced {
            dst[base] = chunk.iter().fold(dst[base], |a, &v| a.add(v));
        } else {
            for (d, &v) in dst[base..base + inner].iter_mut().zip(chunk) {
                *d = d.add(v);
            }
        }
        for a in (0..outer.len()).rev() {
            index[a] += 1;
            if index[a] < outer[a].0 {
                break;
            }
            index[a] = 0;
        }
    }
    Ok(out)
}

/// Index of the maximum along `axis` (first one on ties, in the order of
/// [`Element::greater_than`]), as elements of `T`; with `keep_dims` the axis stays with extent 1.
pub fn argmax<T: Element>(x: &Tensor<T>, axis: usize, keep_dims: bool) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if axis >= rank {
        shape_bail!("argmax: axis {} out of range for {:?}", axis, x.shape());
    }
    let extent = x.shape()[axis];
    let mut out_shape = x.shape().to_vec();
    if keep_dims {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product();
    if extent == 0 {
        if outer * inner == 0 {
            return Ok(Tensor::zeros(out_shape));
        }
        shape_bail!("argmax: axis {} of {:?} is empty", axis, x.shape());
    }
    let mut data = Vec::with_capacity(outer * inner);
    let src = x.data();
    let mut best_val = vec![T::ZERO; inner];
    let mut best_idx = vec![0usize; inner];
    for o in 0..outer {
        let block = &src[o * extent * inner..(o + 1) * extent * inner];
        best_val.copy_from_slice(&block[..inner]);
        best_idx.fill(0);
        for e in 1..extent {
            for ((bv, bi), &v) in best_val.iter_mut().zip(best_idx.iter_mut()).zip(&block[e * inner..(e + 1) * inner]) {
                if v.greater_than(*bv) {
                    *bv = v;
                    *bi = e;
                }
            }
        }
        data.extend(best_idx.iter().map(|&i| T::from_usize(i)));
    }
    Tensor::new(out_shape, data)
}
