//! Slab-wise execution of large backend calls (issue #13: a 64x256x256 3D-UNet in bounded
//! memory).
//!
//! A backend call's working memory grows with its operands: a Porthos convolution holds
//! several copies of its input and output (masks, openings, the helper's product) and the
//! kernel's patches, a comparison its bit decompositions. For a 32 x 64 x 256 x 256
//! activation (1 GiB per share) that is far beyond the machine. So the runtime splits a call
//! whose input plus output exceed a budget of elements into *slabs* and calls the backend once
//! per slab, writing each slab's result into the whole output tensor:
//! - elementwise calls (ReLU, ScaleDown, Divide, Mul) are cut into runs of elements;
//! - a convolution or transposed convolution is cut along its first spatial axis (depth):
//!   each slab computes a range of output planes from the input planes that reach them (the
//!   halo a kernel of extent 3 needs: one plane on each side), with the padding of the
//!   sub-problem set so that every output element is computed exactly as in the whole call;
//! - an ArgMax is cut along another axis than the one it reduces.
//!
//! The protocol sees smaller calls of the same kinds, nothing else: no protocol code knows of
//! slabs. Results are bit-identical to the whole call on the cleartext backend (the ring is
//! exact; tested in `tests/slabs.rs`). Communication: elementwise calls cost per element, so
//! their bytes are unchanged; a convolution slab costs Table III's formula for its own
//! operands, so the halo planes are masked and opened once more per slab and the filter once
//! per slab ([`conv_calls`] lists the calls so that the extra bytes are known before running).
//! Rounds: those of one call, once per slab. Every party cuts identically: the slabs depend on
//! the public program and the budget alone, and every party of a session must use the same
//! budget (in-process runs share it; `cryptflow party` uses the default).

use cryptflow_backend::{Backend, BackendError, ConvGeometry, RingTensor};
use cryptflow_ir::llil::{Instr, LOp, Program};
use cryptflow_tensor::{num_elements, Layout};

/// The default budget: a convolution whose input and output hold more elements than this
/// (summed) is run in slabs of at most this many, an elementwise call in runs of a quarter
/// ([`elementwise_ranges`]). 2^25 elements are 256 MiB per share: with the working memory of
/// a Porthos call ([`working_set_bytes`]) a party of the full-size 3D-UNet is predicted to
/// need 5.8 GB (its live tensors 4.6 GB; measured: 4.0 GiB), and a level-0 convolution (32 x 64 x 256 x 256) is
/// cut into 10 slabs of 6 or 7 planes, which open 18 halo planes again (28% of its input).
pub const DEFAULT_SLAB_ELEMENTS: usize = 1 << 25;

/// The budget of the runners created from now on in this process (see [`set_default_budget`]).
static DEFAULT_BUDGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(DEFAULT_SLAB_ELEMENTS);

/// Sets the slab budget of the runners this process creates from now on (`cryptflow run
/// --slab-elements`: its parties are threads of one process, so they cut alike). Parties in
/// different processes keep [`DEFAULT_SLAB_ELEMENTS`].
pub fn set_default_budget(elements: usize) {
    DEFAULT_BUDGET.store(elements.max(1), std::sync::atomic::Ordering::SeqCst);
}

/// The slab budget of a runner created now.
pub fn default_budget() -> usize {
    DEFAULT_BUDGET.load(std::sync::atomic::Ordering::SeqCst)
}

/// The operand sizes of one backend call of a slabbed instruction (elements of its secret
/// input and of its result; for a convolution, the filter is opened whole by every call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabCall {
    pub input_elements: usize,
    pub output_elements: usize,
}

/// Position of the first spatial axis (depth for a 3D convolution) in an activation.
fn depth_axis(layout: Layout) -> usize {
    match layout {
        Layout::ChannelsFirst => 2,
        Layout::ChannelsLast => 1,
    }
}

/// Input planes `lo..hi` and the geometry over them that give output planes `o0..o1` of the
/// (transposed, with `transpose`) convolution `g` along its first spatial axis; `None` when no
/// input plane reaches them (the slab's outputs are zeros: padding only).
pub fn conv_slab(g: &ConvGeometry, transpose: bool, o0: usize, o1: usize) -> Option<(usize, usize, ConvGeometry)> {
    let (d, s, pb) = (g.input[0] as isize, g.strides[0] as isize, g.pads_begin[0] as isize);
    let span = (g.dilations[0] * (g.kernel[0] - 1) + 1) as isize;
    let (o0, o1) = (o0 as isize, o1 as isize);
    let mut sub = g.clone();
    if !transpose {
        // Output o reads input planes o s - pb + (0..span).
        let first = o0 * s - pb;
        let end = (o1 - 1) * s + span - pb;
        let (lo, hi) = (first.max(0), end.min(d));
        if lo >= hi {
            return None;
        }
        sub.input[0] = (hi - lo) as usize;
        sub.pads_begin[0] = (lo - first) as usize;
        sub.pads_end[0] = (end - hi) as usize;
        return Some((lo as usize, hi as usize, sub));
    }
    // Input plane i writes output planes i s - pb + (0..span); the planes that reach o0..o1.
    let lo = (o0 + pb - span + 1).max(0);
    let lo = (lo + s - 1) / s;
    let hi = ((o1 - 1 + pb) / s + 1).min(d);
    if lo >= hi {
        return None;
    }
    // The sub-problem's output o' is the global o0 + o': its leading padding is o0 + pb - lo s,
    // which the planes chosen keep non-negative when the kernel spans a stride; otherwise one
    // more plane in front (it reaches no output of the slab) keeps it so.
    let lo = lo.min((o0 + pb) / s);
    let full = s * (hi - lo - 1) + span;
    let pads_begin = o0 + pb - lo * s;
    let extent = o1 - o0;
    let (pads_end, output_padding) = if full - pads_begin >= extent { (full - pads_begin - extent, 0) } else { (0, extent - (full - pads_begin)) };
    sub.input[0] = (hi - lo) as usize;
    sub.pads_begin[0] = pads_begin as usize;
    sub.pads_end[0] = pads_end as usize;
    // Other axes keep theirs; the cut axis needs its own.
    sub.output_padding.resize(g.input.len(), 0);
    sub.output_padding[0] = output_padding as usize;
    Some((lo as usize, hi as usize, sub))
}

/// Output planes of a convolution along its first spatial axis.
fn output_planes(g: &ConvGeometry, transpose: bool) -> usize {
    if transpose {
        g.conv_transpose_output()[0]
    } else {
        g.conv_output()[0]
    }
}

/// The output plane ranges a (transposed) convolution is cut into under `budget`: one range
/// for the whole call when its input and output fit, otherwise the fewest slabs of nearly equal
/// thickness whose input (halo included) and output fit; slabs of one plane when even those do
/// not (the working set is then that of one plane).
pub fn conv_ranges(g: &ConvGeometry, transpose: bool, budget: usize) -> Vec<(usize, usize)> {
    let planes = output_planes(g, transpose);
    let input = num_elements(&g.input_shape());
    let output = output_elements(g, transpose);
    if g.input.is_empty() || g.input[0] == 0 || planes == 0 || input + output <= budget {
        return vec![(0, planes)];
    }
    let (s, span) = (g.strides[0], g.dilations[0] * (g.kernel[0] - 1) + 1);
    // At most this many input planes reach `t` consecutive output planes (conv_slab's choice).
    let in_planes = |t: usize| if transpose { (t + span - 2) / s + 2 } else { (t - 1) * s + span };
    let fits = |t: usize| in_planes(t).min(g.input[0]) * (input / g.input[0]) + t * (output / planes) <= budget;
    // The thickest slab that fits (monotone in t), by bisection: plans are made for hostile
    // programs' shapes too, before anything runs.
    let (mut lo, mut hi) = (1, planes);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    split(planes, planes.div_ceil(lo))
}

fn output_elements(g: &ConvGeometry, transpose: bool) -> usize {
    num_elements(&if transpose { g.conv_transpose_output_shape() } else { g.conv_output_shape() })
}

/// `n` ranges of nearly equal length covering `0..len`, the longer first.
fn split(len: usize, n: usize) -> Vec<(usize, usize)> {
    let n = n.clamp(1, len.max(1));
    let (base, extra) = (len / n, len % n);
    let mut start = 0;
    (0..n)
        .map(|k| {
            let end = start + base + usize::from(k < extra);
            let r = (start, end);
            start = end;
            r
        })
        .collect()
}

/// The backend calls of one (transposed) convolution under `budget`, in order (slabs whose
/// outputs only padding reaches make none).
pub fn conv_calls(g: &ConvGeometry, transpose: bool, budget: usize) -> Vec<SlabCall> {
    let ranges = conv_ranges(g, transpose, budget);
    if ranges.len() == 1 {
        return vec![SlabCall { input_elements: num_elements(&g.input_shape()), output_elements: output_elements(g, transpose) }];
    }
    ranges
        .iter()
        .filter_map(|&(o0, o1)| conv_slab(g, transpose, o0, o1))
        .map(|(_, _, sub)| SlabCall { input_elements: num_elements(&sub.input_shape()), output_elements: output_elements(&sub, transpose) })
        .collect()
}

/// The element runs an elementwise call over `len` elements is cut into under `budget`: input
/// and output of a run together within a quarter of it. A comparison needs more working memory
/// per element than a convolution ([`COMPARISON_WORKING_BYTES`]) and cutting it costs no
/// bytes, only rounds, while a convolution's slabs open their halo again: the convolutions get
/// the whole budget, the elementwise calls a quarter.
pub fn elementwise_ranges(len: usize, budget: usize) -> Vec<(usize, usize)> {
    let per_call = (budget / 8).max(1);
    split(len, len.div_ceil(per_call).max(1))
}

/// Copies `lo..hi` of `axis` of `x`.
fn take_range(x: &RingTensor, axis: usize, lo: usize, hi: usize) -> Result<RingTensor, BackendError> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut data = Vec::with_capacity(outer * (hi - lo) * inner);
    for o in 0..outer {
        let base = (o * shape[axis] + lo) * inner;
        data.extend_from_slice(&x.data()[base..base + (hi - lo) * inner]);
    }
    let mut sub = shape.to_vec();
    sub[axis] = hi - lo;
    Ok(RingTensor::new(sub, data)?)
}

/// Writes `part` into `out` at `lo..` of `axis` (all other extents equal).
fn put_range(out: &mut RingTensor, axis: usize, lo: usize, part: &RingTensor) {
    let shape = out.shape().to_vec();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let run = part.shape()[axis] * inner;
    for o in 0..outer {
        let base = (o * shape[axis] + lo) * inner;
        out.data_mut()[base..base + run].copy_from_slice(&part.data()[o * run..(o + 1) * run]);
    }
}

fn wrong_shape(what: &str, got: &[usize], want: &[usize]) -> BackendError {
    BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("{what}: the backend returned {got:?} for a slab of {want:?}")))
}

/// A convolution (`transpose`: a transposed one) of `x` with `filter`, in slabs of output
/// planes under `budget` (see the module docs).
pub fn conv<B: Backend + ?Sized>(backend: &mut B, x: &RingTensor, filter: &RingTensor, g: &ConvGeometry, transpose: bool, budget: usize) -> Result<RingTensor, BackendError> {
    let call = |backend: &mut B, x: &RingTensor, g: &ConvGeometry| if transpose { backend.conv_transpose(x, filter, g) } else { backend.conv(x, filter, g) };
    let ranges = conv_ranges(g, transpose, budget);
    if ranges.len() == 1 || x.shape() != g.input_shape().as_slice() {
        // One call (a malformed operand is the backend's to report).
        return call(backend, x, g);
    }
    let axis = depth_axis(g.layout);
    let out_shape = if transpose { g.conv_transpose_output_shape() } else { g.conv_output_shape() };
    let mut out = RingTensor::zeros(out_shape);
    for (o0, o1) in ranges {
        let Some((lo, hi, sub)) = conv_slab(g, transpose, o0, o1) else { continue };
        let part = call(backend, &take_range(x, axis, lo, hi)?, &sub)?;
        if part.shape()[axis] != o1 - o0 {
            return Err(wrong_shape(if transpose { "conv_transpose" } else { "conv" }, part.shape(), &[o1 - o0]));
        }
        put_range(&mut out, axis, o0, &part);
    }
    Ok(out)
}

/// An elementwise call `f` (ReLU, ScaleDown, ...) over runs of `x`'s elements under `budget`.
pub fn elementwise<B: Backend + ?Sized>(
    backend: &mut B,
    x: &RingTensor,
    budget: usize,
    mut f: impl FnMut(&mut B, &RingTensor, std::ops::Range<usize>) -> Result<RingTensor, BackendError>,
) -> Result<RingTensor, BackendError> {
    let ranges = elementwise_ranges(x.len(), budget);
    if ranges.len() == 1 {
        return f(backend, x, 0..x.len());
    }
    let mut out = Vec::with_capacity(x.len());
    for (lo, hi) in ranges {
        let part = f(backend, &RingTensor::new(vec![hi - lo], x.data()[lo..hi].to_vec())?, lo..hi)?;
        if part.len() != hi - lo {
            return Err(wrong_shape("elementwise call", part.shape(), &[hi - lo]));
        }
        out.extend_from_slice(part.data());
    }
    Ok(RingTensor::new(x.shape().to_vec(), out)?)
}

/// The slabs of an ArgMax over `axis` of `shape` under `budget`: the axis it is cut along
/// (the first other axis longer than 1) and the ranges of that axis; `None`: one call.
pub fn argmax_ranges(shape: &[usize], axis: usize, budget: usize) -> Option<(usize, Vec<(usize, usize)>)> {
    let len = num_elements(shape);
    let out = len / shape.get(axis).copied().unwrap_or(1).max(1);
    if len + out <= budget {
        return None;
    }
    let cut = (0..shape.len()).find(|&a| a != axis && shape[a] > 1)?;
    let per_index = (len + out) / shape[cut];
    let n = (len + out).div_ceil(budget).min(shape[cut]);
    let mut n = n.max(1);
    while n < shape[cut] && split(shape[cut], n)[0].1 * per_index > budget {
        n += 1;
    }
    (n > 1).then(|| (cut, split(shape[cut], n)))
}

/// ArgMax over `axis` (see [`Backend::argmax`]) in slabs under `budget`.
pub fn argmax<B: Backend + ?Sized>(backend: &mut B, x: &RingTensor, axis: usize, keep_dims: bool, budget: usize) -> Result<RingTensor, BackendError> {
    let Some((cut, ranges)) = (axis < x.rank()).then(|| argmax_ranges(x.shape(), axis, budget)).flatten() else {
        return backend.argmax(x, axis, keep_dims);
    };
    let out_cut = if !keep_dims && cut > axis { cut - 1 } else { cut };
    let mut out_shape = x.shape().to_vec();
    if keep_dims {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    let mut out = RingTensor::zeros(out_shape);
    for (lo, hi) in ranges {
        let part = backend.argmax(&take_range(x, cut, lo, hi)?, axis, keep_dims)?;
        if part.shape().get(out_cut) != Some(&(hi - lo)) {
            return Err(wrong_shape("argmax", part.shape(), &[hi - lo]));
        }
        put_range(&mut out, out_cut, lo, &part);
    }
    Ok(out)
}

/// Working memory of a party during one linear call (convolution, elementwise product,
/// truncation) beyond its operands, in bytes per element of the call's input and output:
/// Porthos holds masks, the opened values, the helper's correlated product and the partial
/// products, each of the input's or the output's size. Measured with `examples/slab_memory.rs`
/// (see the README's "Large volumes").
pub const LINEAR_WORKING_BYTES: u64 = 32;
/// The same for a comparison (ReLU, ArgMax): bit decompositions, PrivateCompare's vectors.
pub const COMPARISON_WORKING_BYTES: u64 = 48;
/// A channels-first convolution's patches or columns are built at most `cryptflow-tensor`'s
/// chunk of 2^22 elements at a time, besides the above.
pub const PATCH_ELEMENTS: u64 = 1 << 22;

/// Elements of the patches (columns, for a transposed convolution) the kernel builds at once
/// for the largest call of a convolution: the call's positions times the filter's taps per
/// position, up to [`PATCH_ELEMENTS`].
fn patch_elements(g: &ConvGeometry, transpose: bool, budget: usize) -> u64 {
    let taps = g.kernel.iter().product::<usize>() as u64;
    conv_calls(g, transpose, budget)
        .iter()
        .map(|c| {
            let positions = if transpose { c.input_elements / g.in_channels.max(1) } else { c.output_elements / g.out_channels.max(1) };
            let per_position = if transpose { g.out_channels / g.groups.max(1) } else { g.in_channels / g.groups.max(1) };
            (positions as u64).saturating_mul(per_position as u64).saturating_mul(taps).min(PATCH_ELEMENTS)
        })
        .max()
        .unwrap_or(0)
}

/// Elements of input and output of the largest backend call `instr` makes under `budget`
/// (0 for instructions that make none, or that are not slab-wise).
pub fn largest_call_elements(program: &Program, instr: &Instr, budget: usize) -> usize {
    let elements = num_elements(program.slot_shape(instr.out));
    let input = instr.args.first().map_or(0, |&a| num_elements(program.slot_shape(a)));
    match &instr.op {
        LOp::Conv(g) | LOp::ConvTranspose(g) => {
            conv_calls(g, matches!(instr.op, LOp::ConvTranspose(_)), budget).iter().map(|c| c.input_elements + c.output_elements).max().unwrap_or(0)
        }
        LOp::Relu | LOp::ScaleDown { .. } | LOp::Divide { .. } | LOp::Mul => elementwise_ranges(elements, budget).first().map_or(0, |&(lo, hi)| 2 * (hi - lo)),
        LOp::ArgMax { axis, .. } => match argmax_ranges(program.slot_shape(instr.args[0]), *axis, budget) {
            Some((cut, ranges)) => (input + elements) / program.slot_shape(instr.args[0])[cut] * ranges[0].1,
            None => input + elements,
        },
        _ => 0,
    }
}

/// Predicted working memory of one party beyond its live tensors, in bytes: that of the
/// program's largest slab-wise backend call under `budget` (the calls run one at a time).
/// Calls that are not slab-wise (matrix products, pooling, the math library's functions) are
/// not counted.
pub fn working_set_bytes(program: &Program, budget: usize) -> u64 {
    program
        .body
        .iter()
        .map(|instr| {
            let n = largest_call_elements(program, instr, budget) as u64;
            match instr.op {
                LOp::Conv(ref g) => n * LINEAR_WORKING_BYTES + 8 * patch_elements(g, false, budget),
                LOp::ConvTranspose(ref g) => n * LINEAR_WORKING_BYTES + 8 * patch_elements(g, true, budget),
                LOp::Relu | LOp::ArgMax { .. } => n * COMPARISON_WORKING_BYTES,
                _ => n * LINEAR_WORKING_BYTES,
            }
        })
        .max()
        .unwrap_or(0)
}
