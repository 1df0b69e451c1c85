//! The secure math library: every non-linear function a model needs beyond ReLU and pooling,
//! written once over the backend interface ([`cryptflow_backend::Backend`]) so that every
//! protocol (Porthos and SecureNN, 2PC, Aramis around either, the cleartext reference) evaluates
//! the same computation, the way swanky's fancy-garbling evaluates one circuit under many
//! schemes.
//!
//! # Vocabulary
//! Only these backend calls are used: [`Backend::drelu`] (a shared comparison bit),
//! [`Backend::mux`] (bit times value), [`Backend::mul`] (product of two secrets),
//! [`Backend::scale_down`] (truncation), [`Backend::batch_matmul`] where a reduction is a
//! product, and the local operations every linear sharing allows (additions, negation,
//! multiplication by public integers, public constants added by the one party whose share
//! carries them: [`Backend::adds_public_constants`]). Several comparisons or products of one
//! step are made in one call on their concatenation, so they share its rounds.
//!
//! # Fixed point
//! A tensor holds ring elements with `scale` fractional bits (the program's public scale `s`,
//! Athos' default 12): `r` is held as `round(r * 2^s)` read as a signed integer. Every function
//! takes and returns values at `scale`. Where one scale is not precise enough (polynomial
//! coefficients, Newton iterations) a function raises its operand to an internal precision
//! ([`INTERNAL_BITS`]) and brings the result back; intermediates are kept small enough that
//! a product at twice the internal precision stays far below 2^63 (local truncation fails with
//! probability about `|x| / 2^63` per element).
//!
//! # Domains
//! Each function documents its method, its input domain, what it does outside it (a clamp to
//! the domain's edge, or the asymptote), and its largest error against f64 over the domain as
//! measured by `tests/accuracy.rs`, which also asserts its bytes and rounds per element under
//! Porthos. The README's table lists them.

mod elementwise;
mod exp;
pub mod fixed;
mod recip;
mod reduce;
mod softmax;
mod norm;

pub use cryptflow_backend::{Backend, BackendError, Result, RingTensor, SharedBits};

/// Fractional bits inside the functions that need more precision than the program's scale.
pub const INTERNAL_BITS: u32 = 16;

/// Which form of GELU a model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluForm {
    /// `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`.
    Erf,
    /// `x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2`.
    Tanh,
}

// ---- comparisons and selections ----------------------------------------------------------

/// `max(x, y)` elementwise (same shapes): one comparison and one multiplexer.
pub fn max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    reduce::max(b, x, y)
}

/// `min(x, y)` elementwise (same shapes).
pub fn min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    reduce::min(b, x, y)
}

/// `|x|`: one comparison and one multiplexer.
pub fn abs<B: Backend + ?Sized>(b: &mut B, x: &RingTensor) -> Result<RingTensor> {
    elementwise::abs(b, x)
}

/// Maximum over `axes` (sorted, distinct) as a knock-out tree: `ceil(log2 n)` levels.
pub fn reduce_max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce::reduce_max(b, x, axes, keep_dims)
}

/// Minimum over `axes` (sorted, distinct).
pub fn reduce_min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce::reduce_min(b, x, axes, keep_dims)
}

/// PReLU with a secret slope (same shape as `x`): `x >= 0 ? x : slope * x`.
pub fn prelu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, slope: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::prelu(b, x, slope, scale)
}

// ---- elementwise functions -----------------------------------------------------------------

pub fn exp<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    exp::exp(b, x, scale)
}

pub fn sigmoid<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::sigmoid(b, x, scale)
}

pub fn tanh<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::tanh(b, x, scale)
}

pub fn erf<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::erf(b, x, scale)
}

pub fn gelu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, form: GeluForm) -> Result<RingTensor> {
    elementwise::gelu(b, x, scale, form)
}

/// SiLU / swish: `x sigmoid(x)`.
pub fn silu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::silu(b, x, scale)
}

pub fn softplus<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::softplus(b, x, scale)
}

/// `x >= 0 ? x : alpha (e^x - 1)` for a public `alpha`.
pub fn elu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, alpha: f32) -> Result<RingTensor> {
    elementwise::elu(b, x, scale, alpha)
}

/// `max(0, min(1, alpha x + beta))` for public `alpha`, `beta`: exact up to the rounding of
/// `alpha x`.
pub fn hard_sigmoid<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32, alpha: f32, beta: f32) -> Result<RingTensor> {
    elementwise::hard_sigmoid(b, x, scale, alpha, beta)
}

/// `x hard_sigmoid(x)` with `alpha = 1/6`, `beta = 1/2`.
pub fn hard_swish<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::hard_swish(b, x, scale)
}

// ---- division and roots ---------------------------------------------------------------------

/// `1 / x`.
pub fn reciprocal<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::reciprocal(b, x, scale)
}

/// `x / y` of two secrets of one shape.
pub fn div<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::div(b, x, y, scale)
}

pub fn sqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::sqrt(b, x, scale)
}

/// `1 / sqrt(x)`.
pub fn rsqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::rsqrt(b, x, scale)
}

/// Natural logarithm.
pub fn log<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::log(b, x, scale)
}

// ---- rows ---------------------------------------------------------------------------------

/// Softmax along `axis` (the row maximum subtracted first); rows are computed in parallel.
pub fn softmax<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axis: usize, scale: u32) -> Result<RingTensor> {
    softmax::softmax(b, x, axis, scale, false)
}

/// Log-softmax along `axis`.
pub fn log_softmax<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axis: usize, scale: u32) -> Result<RingTensor> {
    softmax::softmax(b, x, axis, scale, true)
}

/// `(x - mean) / sqrt(var + epsilon)` with mean and (biased) variance over `axes` (sorted,
/// distinct): the core of LayerNormalization, InstanceNormalization, GroupNormalization and
/// batch norms that cannot be folded.
pub fn normalize<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], epsilon: f32, scale: u32) -> Result<RingTensor> {
    norm::normalize(b, x, axes, epsilon, scale)
}
