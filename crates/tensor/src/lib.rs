//! Dense row-major tensors and the kernels shared by every executor.
//!
//! Two element types matter: `f32` (the float reference executor and constant folding) and
//! `u64` read as the ring Z_2^64 (fixed-point values and additive secret shares). Ring
//! arithmetic wraps; that is the whole point of it, so the [`Element`] trait hides the
//! difference between `+` and `wrapping_add`.
//!
//! Nothing here knows about models, protocols or parties.

mod element;
mod error;
mod gemm;
pub mod geometry;
pub mod kernels;
pub mod movement;
pub mod simd;
mod par;
mod scratch;
mod tensor;

pub use element::Element;
pub use error::ShapeError;
pub use geometry::{ConvGeometry, Layout, PoolGeometry};
pub use tensor::{num_elements, strides_of, Tensor};

/// A tensor of ring elements: a fixed-point value, or one party's additive share of one.
pub type RingTensor = Tensor<u64>;
/// A float tensor of the reference executor.
pub type FloatTensor = Tensor<f32>;
