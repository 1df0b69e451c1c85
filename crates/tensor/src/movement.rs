//! Data movement: operations that copy elements around without computing new values.
//! They act on any element type, so they run unchanged on float values, fixed-point values
//! and secret shares (the "share-agnostic library" of the paper, Section III-C).

use crate::{num_elements, shape_bail, strides_of, Element, ShapeError, Tensor};

/// Copies the strided view `(offset, shape, strides)` of `src` into a new row-major buffer.
///
/// Element `idx` of the view is `src[offset + sum(idx[i] * strides[i])]`; strides may be zero
/// (broadcasting) or negative (reversed slices). Every addressed element must lie in `src`
/// (indexing is checked, so a wrong view panics rather than reads out of bounds; callers
/// validate first).
pub(crate) fn strided_copy<T: Copy>(src: &[T], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<T> {
    debug_assert_eq!(shape.len(), strides.len());
    let total = num_elements(shape);
    if total == 0 {
        return Vec::new();
    }
    // Drop unit axes and merge axes that are contiguous with their inner neighbour, so that a
    // plain copy becomes one memcpy and e.g. a transpose keeps its longest contiguous runs.
    let mut dims: Vec<(usize, isize)> = Vec::with_capacity(shape.len());
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        dims.push((n, s));
    }
    let mut merged: Vec<(usize, isize)> = Vec::with_capacity(dims.len());
    for &(n, s) in dims.iter().rev() {
        if let Some(last) = merged.last_mut() {
            if s == last.1 * last.0 as isize {
                last.0 *= n;
                continue;
            }
        }
        merged.push((n, s));
    }
    merged.reverse();
    let mut out = Vec::with_capacity(total);
    if merged.is_empty() {
        out.push(src[offset]);
        return out;
    }
    let rank = merged.len();
    let (inner_n, inner_s) = merged[rank - 1];
    if inner_s != 1 && inner_s != 0 {
        // A transpose-like copy: if some outer axis is contiguous in the source, copy tiles of
        // (that axis x the inner axis) so that both sides stay in cache.
        if let Some(j) = merged[..rank - 1].iter().position(|&(_, s)| s == 1) {
            return tiled_copy(src, offset, &merged, j);
        }
    }
    let outer = &merged[..rank - 1];
    let mut index = vec![0usize; outer.len()];
    let mut base = offset as isize;
    loop {
        match inner_s {
            1 => {
                let b = base as usize;
                out.extend_from_slice(&src[b..b + inner_n]);
            }
            0 => {
                let v = src[base as usize];
                out.extend(std::iter::repeat_n(v, inner_n));
            }
            s => {
                let mut p = base;
                for _ in 0..inner_n {
                    out.push(src[p as usize]);
                    p += s;
                }
            }
        }
        // Advance the odometer over the outer axes.
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            base += outer[axis].1;
            if index[axis] < outer[axis].0 {
                break;
            }
            base -= outer[axis].1 * outer[axis].0 as isize;
            index[axis] = 0;
        }
    }
}

/// [`strided_copy`] of merged `dims` whose axis `j` has source stride 1 and whose inner axis
/// does not: 2-D tiles of (axis j, inner axis) for every index of the other axes.
fn tiled_copy<T: Copy>(src: &[T], offset: usize, dims: &[(usize, isize)], j: usize) -> Vec<T> {
    const TILE: usize = 32;
    let rank = dims.len();
    let total: usize = dims.iter().map(|d| d.0).product();
    let mut out_strides = vec![0usize; rank];
    let mut acc = 1;
    for a in (0..rank).rev() {
        out_strides[a] = acc;
        acc *= dims[a].0;
    }
    let mut out = vec![src[offset]; total];
    let (nj, oj) = (dims[j].0, out_strides[j]);
    let (ni, si) = dims[rank - 1];
    let others: Vec<usize> = (0..rank - 1).filter(|&a| a != j).collect();
    let mut index = vec![0usize; others.len()];
    loop {
        let sbase = offset as isize + others.iter().zip(&index).map(|(&a, &i)| i as isize * dims[a].1).sum::<isize>();
        let obase: usize = others.iter().zip(&index).map(|(&a, &i)| i * out_strides[a]).sum();
        for jb in (0..nj).step_by(TILE) {
            for ib in (0..ni).step_by(TILE) {
                let iend = (ib + TILE).min(ni);
                for jj in jb..(jb + TILE).min(nj) {
                    let s0 = sbase + jj as isize;
                    let o0 = obase + jj * oj;
                    for (ii, d) in out[o0 + ib..o0 + iend].iter_mut().enumerate() {
                        *d = src[(s0 + (ib + ii) as isize * si) as usize];
                    }
                }
            }
        }
        let mut axis = others.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < dims[others[axis]].0 {
                break;
            }
            index[axis] = 0;
        }
    }
}

fn signed_strides(shape: &[usize]) -> Vec<isize> {
    strides_of(shape).into_iter().map(|s| s as isize).collect()
}

/// Permutes axes: output axis `i` is input axis `perm[i]` (ONNX/NumPy `transpose`).
pub fn transpose<T: Element>(x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if perm.len() != rank {
        shape_bail!("transpose: permutation {:?} does not fit a tensor of rank {} ({:?})", perm, rank, x.shape());
    }
    let mut seen = vec![false; rank];
    for &p in perm {
        if p >= rank || seen[p] {
            shape_bail!("transpose: {:?} is not a permutation of the {} axes of {:?}", perm, rank, x.shape());
        }
        seen[p] = true;
    }
    let in_strides = signed_strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| in_strides[p]).collect();
    let data = strided_copy(x.data(), 0, &shape, &strides);
    Tensor::new(shape, data)
}

/// Pads every axis with `value`: `pads_begin[i]` elements before and `pads_end[i]` after.
pub fn pad<T: Element>(x: &Tensor<T>, pads_begin: &[usize], pads_end: &[usize], value: T) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if pads_begin.len() != rank || pads_end.len() != rank {
        shape_bail!(
            "pad: pads {:?} / {:?} do not fit a tensor of rank {} ({:?})",
            pads_begin,
            pads_end,
            rank,
            x.shape()
        );
    }
    let shape: Vec<usize> = (0..rank).map(|i| x.shape()[i] + pads_begin[i] + pads_end[i]).collect();
    let mut out = Tensor::filled(shape.clone(), value);
    if x.is_empty() {
        return Ok(out);
    }
    if rank == 0 {
        out.data_mut()[0] = x.data()[0];
        return Ok(out);
    }
    let out_strides = strides_of(&shape);
    let inner = x.shape()[rank - 1];
    let rows = x.len() / inner;
    let outer_shape = &x.shape()[..rank - 1];
    let mut index = vec![0usize; rank - 1];
    let base0: usize = (0..rank).map(|i| pads_begin[i] * out_strides[i]).sum();
    let src = x.data();
    let dst = out.data_mut();
    for row in 0..rows {
        let dst_off = base0 + index.iter().zip(&out_strides).map(|(i, s)| i * s).sum::<usize>();
        dst[dst_off..dst_off + inner].copy_from_slice(&src[row * inner..(row + 1) * inner]);
        for axis in (0..rank - 1).rev() {
            index[axis] += 1;
            if index[axis] < outer_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(out)
}

/// Strided slice on every axis. `starts`, `ends`, `steps` have one entry per axis and are
/// already normalised (0 <= start, end clamped to the axis; for a negative step, `end` may be
/// -1 meaning "through index 0"). Output extent per axis: ceil((end - start) / step), or 0.
pub fn slice<T: Element>(x: &Tensor<T>, starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if starts.len() != rank || ends.len() != rank || steps.len() != rank {
        shape_bail!(
            "slice: starts {:?}, ends {:?}, steps {:?} do not fit a tensor of rank {} ({:?})",
            starts,
            ends,
            steps,
            rank,
            x.shape()
        );
    }
    let in_strides = signed_strides(x.shape());
    let mut shape = Vec::with_capacity(rank);
    let mut strides = Vec::with_capacity(rank);
    let mut offset: i64 = 0;
    for axis in 0..rank {
        let (start, end, step) = (starts[axis], ends[axis], steps[axis]);
        let dim = x.shape()[axis] as i64;
        if step == 0 {
            shape_bail!("slice: step of axis {} is zero", axis);
        }
        // In i128, so that extreme starts, ends and steps cannot overflow.
        let (start_w, end_w, step_w) = (start as i128, end as i128, step as i128);
        let extent: i128 = if step > 0 {
            if end_w > start_w {
                (end_w - start_w + step_w - 1) / step_w
            } else {
                0
            }
        } else if start_w > end_w {
            (start_w - end_w - step_w - 1) / -step_w
        } else {
            0
        };
        if extent > 0 {
            let last = start_w + (extent - 1) * step_w;
            if start < 0 || start >= dim || last < 0 || last >= dim as i128 {
                shape_bail!(
                    "slice: axis {} of {:?} has extent {} but start {}, end {}, step {} address index {}..={}",
                    axis,
                    x.shape(),
                    dim,
                    start,
                    end,
                    step,
                    start,
                    last
                );
            }
            offset += start * in_strides[axis] as i64;
        }
        shape.push(extent as usize);
        // A step that reaches past the axis only matters when the extent is at most 1.
        strides.push(if extent > 1 { step as isize * in_strides[axis] } else { 0 });
    }
    let data = if num_elements(&shape) == 0 { Vec::new() } else { strided_copy(x.data(), offset as usize, &shape, &strides) };
    Tensor::new(shape, data)
}

/// Concatenates tensors along `axis`; all other extents must agree.
pub fn concat<T: Element>(inputs: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>, ShapeError> {
    let Some(first) = inputs.first() else {
        shape_bail!("concat: no inputs");
    };
    let rank = first.rank();
    if axis >= rank {
        shape_bail!("concat: axis {} out of range for rank {} ({:?})", axis, rank, first.shape());
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for t in inputs {
        let ok = t.rank() == rank && (0..rank).all(|i| i == axis || t.shape()[i] == first.shape()[i]);
        if !ok {
            shape_bail!(
                "concat along axis {}: shape {:?} does not match {:?}",
                axis,
                t.shape(),
                first.shape()
            );
        }
        shape[axis] += t.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut data = Vec::with_capacity(num_elements(&shape));
    for o in 0..outer {
        for t in inputs {
            let chunk = t.shape()[axis] * inner;
            data.extend_from_slice(&t.data()[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor::new(shape, data)
}

/// Picks `indices` (already normalised to 0..extent) along `axis`. The output has the input's
/// shape with that axis' extent replaced by `indices.len()`.
pub fn gather<T: Element>(x: &Tensor<T>, axis: usize, indices: &[usize]) -> Result<Tensor<T>, ShapeError> {
    let rank = x.rank();
    if axis >= rank {
        shape_bail!("gather: axis {} out of range for rank {} ({:?})", axis, rank, x.shape());
    }
    let extent = x.shape()[axis];
    if let Some(&bad) = indices.iter().find(|&&i| i >= extent) {
        shape_bail!("gather: index {} out of range for axis {} of {:?}", bad, axis, x.shape());
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = indices.len();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut data = Vec::with_capacity(num_elements(&shape));
    let src = x.data();
    for o in 0..outer {
        let base = o * extent * inner;
        for &i in indices {
            data.extend_from_slice(&src[base + i * inner..base + (i + 1) * inner]);
        }
    }
    Tensor::new(shape, data)
}

/// NumPy broadcasting of `x` to `shape` (ranks aligned at the right; extents equal or 1).
pub fn broadcast_to<T: Element>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>, ShapeError> {
    let rank = shape.len();
    if x.rank() > rank {
        shape_bail!("cannot broadcast {:?} to {:?}: too many axes", x.shape(), shape);
    }
    let lead = rank - x.rank();
    let in_strides = signed_strides(x.shape());
    let mut strides = vec![0isize; rank];
    for (i, (&n, &s)) in x.shape().iter().zip(&in_strides).enumerate() {
        let target = shape[lead + i];
        if n == target {
            strides[lead + i] = if n == 1 { 0 } else { s };
        } else if n == 1 {
            strides[lead + i] = 0;
        } else {
            shape_bail!("cannot broadcast {:?} to {:?}", x.shape(), shape);
        }
    }
    let data = if num_elements(shape) == 0 { Vec::new() } else { strided_copy(x.data(), 0, shape, &strides) };
    Tensor::new(shape.to_vec(), data)
}

/// The NumPy broadcast of two shapes, or an error naming both.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
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
            shape_bail!("shapes {:?} and {:?} cannot be broadcast together", a, b);
        };
    }
    Ok(out)
}

/// Lays out a reduction over `axis` as rows: returns `x` with `axis` moved first (so row `k`
/// holds the `k`-th element of every reduced group, groups in row-major order of the other
/// axes) and the shape of the reduced result (`axis` removed, or kept with extent 1).
/// Protocols that reduce by a sequence of pairwise steps (argmax tournaments) start here.
pub fn axis_rows<T: Element>(x: &Tensor<T>, axis: usize, keep_dims: bool) -> Result<(Tensor<T>, Vec<usize>), ShapeError> {
    if axis >= x.rank() || x.shape()[axis] == 0 {
        crate::shape_bail!("reduction over axis {axis} of shape {:?}", x.shape());
    }
    let mut perm = vec![axis];
    perm.extend((0..x.rank()).filter(|&a| a != axis));
    let rows = transpose(x, &perm)?;
    let mut out_shape = x.shape().to_vec();
    if keep_dims {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    Ok((rows, out_shape))
}
