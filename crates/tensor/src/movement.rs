//! Data movement: operations that copy elements around without computing new values.
//! They act on any element type, so they run unchanged on float values, fixed-point values
//! and secret shares (the "share-agnostic library" of the paper, Section III-C).

use crate::{Element, ShapeError, Tensor};

/// Permutes axes: output axis `i` is input axis `perm[i]` (ONNX/NumPy `transpose`).
pub fn transpose<T: Element>(x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Pads every axis with `value`: `pads_begin[i]` elements before and `pads_end[i]` after.
pub fn pad<T: Element>(x: &Tensor<T>, pads_begin: &[usize], pads_end: &[usize], value: T) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Strided slice on every axis. `starts`, `ends`, `steps` have one entry per axis and are
/// already normalised (0 <= start, end clamped to the axis; for a negative step, `end` may be
/// -1 meaning "through index 0"). Output extent per axis: ceil((end - start) / step), or 0.
pub fn slice<T: Element>(x: &Tensor<T>, starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Concatenates tensors along `axis`; all other extents must agree.
pub fn concat<T: Element>(inputs: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Picks `indices` (already normalised to 0..extent) along `axis`. The output has the input's
/// shape with that axis' extent replaced by `indices.len()`.
pub fn gather<T: Element>(x: &Tensor<T>, axis: usize, indices: &[usize]) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// NumPy broadcasting of `x` to `shape` (ranks aligned at the right; extents equal or 1).
pub fn broadcast_to<T: Element>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// The NumPy broadcast of two shapes, or an error naming both.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    todo!()
}
