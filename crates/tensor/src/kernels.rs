//! Linear algebra, convolution and pooling kernels, generic over [`Element`].
//!
//! For `u64` every operation is exact arithmetic in Z_2^64 (wrapping); for `f32` it is ordinary
//! float arithmetic. Convolution and matrix product are bilinear, which is what lets a
//! secret-sharing protocol evaluate them on masked shares.

use crate::gemm::{gemm, MatRef};
use crate::{shape_bail, ConvGeometry, Element, PoolGeometry, ShapeError, Tensor};

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

/// Convolution (no bias) of `x` (shape `geom.input_shape()`) with filter `w`
/// (`geom.conv_filter_shape()`), giving `geom.conv_output_shape()`. ONNX `Conv` semantics:
/// strides, dilations, asymmetric zero padding, groups (depthwise when groups == channels).
pub fn conv<T: Element>(x: &Tensor<T>, w: &Tensor<T>, geom: &ConvGeometry) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Transposed convolution (no bias) of `x` (`geom.input_shape()`) with filter `w`
/// (`geom.conv_transpose_filter_shape()`), giving `geom.conv_transpose_output_shape()`. ONNX
/// `ConvTranspose` semantics with explicit pads and output_padding.
pub fn conv_transpose<T: Element>(x: &Tensor<T>, w: &Tensor<T>, geom: &ConvGeometry) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Gathers every pooling window: returns `[window_size, outputs]` where `outputs` is the number
/// of elements of `geom.output_shape()` in row-major order, and row `k` holds the `k`-th window
/// element of each output. A padded position repeats the window's first in-bounds element, so
/// a maximum over the rows is the max-pool (padding never wins) without a "minus infinity".
pub fn pool_windows<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Max pooling in the element order of [`Element::greater_than`]; padding never wins.
pub fn max_pool<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Sum over each pooling window (padded positions contribute zero), shape `geom.output_shape()`.
pub fn sum_pool<T: Element>(x: &Tensor<T>, geom: &PoolGeometry) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// The divisor of every output element of an average pool, shape `geom.output_shape()`:
/// the window size, or with `count_include_pad == false` the number of in-bounds positions.
pub fn pool_divisors(geom: &PoolGeometry) -> Tensor<u64> {
    todo!()
}

/// Sum over `axes` (sorted, distinct); with `keep_dims` the reduced axes stay with extent 1.
pub fn reduce_sum<T: Element>(x: &Tensor<T>, axes: &[usize], keep_dims: bool) -> Result<Tensor<T>, ShapeError> {
    todo!()
}

/// Index of the maximum along `axis` (first one on ties, in the order of
/// [`Element::greater_than`]), as elements of `T`; with `keep_dims` the axis stays with extent 1.
pub fn argmax<T: Element>(x: &Tensor<T>, axis: usize, keep_dims: bool) -> Result<Tensor<T>, ShapeError> {
    todo!()
}
