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
//! step are made in one call on their concatenation, so they share its rounds. Three calls
//! name patterns of these that a protocol may do more cheaply, with defaults made of them:
//! [`Backend::select_by_sign`] and [`Backend::select_above`] (a comparison whose bit only
//! selects), [`Backend::mul_pairs`] (products whose operands recur: squares, powers, Chebyshev
//! steps); and [`Backend::exact_truncation`] says when a sum of large products may be
//! truncated once ([`fixed::series`]).
//!
//! # Comparison domain
//! The program declares the range of the values it compares
//! ([`Backend::set_comparison_bits`]; 33 bits at Athos' default scale, so magnitudes below
//! 2^20), and a backend may compare more cheaply inside it. The functions compare values at
//! the program's scale (their input, the input minus a public threshold, differences of two
//! inputs), which that domain bounds; comparisons of internal values that it does not bound
//! (a reciprocal's or square root's normalisation, at internal precision) run on all 64 bits
//! ([`fixed::full_width`]).
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
//! measured by the tests (`tests/elementwise.rs`, `tests/division.rs`, `tests/rows.rs`:
//! cleartext, every scale the library supports), which with `tests/secure.rs` and
//! `tests/elementwise.rs` also assert the exact bytes and rounds per element under Porthos and
//! the accuracy under Porthos and 2PC. The README's table lists them; the examples
//! `activation_table` and `rows_table` print them.

mod elementwise;
mod exp;
pub mod fixed;
mod recip;
mod reduce;
mod softmax;
mod norm;

pub use cryptflow_backend::{Backend, BackendError, Result, RingTensor, SharedBits};

/// The program scales (fractional bits) every function of the library supports.
pub const SCALES: std::ops::RangeInclusive<u32> = 8..=20;

/// Fractional bits inside the functions that need more precision than the program's scale.
pub const INTERNAL_BITS: u32 = 16;

/// The inputs over which a function's approximation holds; beyond them it returns its
/// documented clamp, which differs from the true function (calibration warns when a model's
/// data leaves a domain). The bounds apply to `|x|` when `of_magnitude` is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Domain {
    pub lo: f64,
    pub hi: f64,
    pub of_magnitude: bool,
}

impl Domain {
    pub fn contains(&self, x: f64) -> bool {
        let v = if self.of_magnitude { x.abs() } else { x };
        (self.lo..=self.hi).contains(&v)
    }
}

/// [`exp`]'s domain.
pub fn exp_domain() -> Domain {
    Domain { lo: exp::EXP_LO, hi: exp::EXP_HI, of_magnitude: false }
}

/// The domain of [`reciprocal`] and of [`div`]'s divisor (magnitudes).
pub fn reciprocal_domain() -> Domain {
    Domain { lo: 2f64.powi(recip::RECIP_MIN_EXP), hi: 2f64.powi(recip::RECIP_MAX_EXP), of_magnitude: true }
}

/// The domain of [`sqrt`] and [`rsqrt`] at `scale`.
pub fn root_domain(scale: u32) -> Domain {
    Domain { lo: 2f64.powi(-2 * (scale as i32 / 2)), hi: 2f64.powi(2 * recip::ROOT_MAX_EXP), of_magnitude: false }
}

/// The domain of [`log`] at `scale`.
pub fn log_domain(scale: u32) -> Domain {
    Domain { lo: 2f64.powi(-(scale as i32)), hi: 2f64.powi(recip::LOG_MAX_EXP), of_magnitude: false }
}

/// The largest standard deviation of a group that [`normalize`] handles exactly.
pub const NORMALIZE_MAX_STD: f64 = 64.0;

/// Which form of GELU a model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluForm {
    /// `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`.
    Erf,
    /// `x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2`.
    Tanh,
}

// ---- comparisons and selections ----------------------------------------------------------

/// `max(x, y)` elementwise (same shapes): one comparison of `x - y` and one multiplexer. Exact
/// for `|x - y| < 2^62`. Porthos: `n (496 + 40)` bytes, 6 rounds.
pub fn max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    reduce::max(b, x, y)
}

/// `min(x, y)` elementwise (same shapes): as [`max`], exact, same cost.
pub fn min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor) -> Result<RingTensor> {
    reduce::min(b, x, y)
}

/// `|x|`: one comparison and one multiplexer.
pub fn abs<B: Backend + ?Sized>(b: &mut B, x: &RingTensor) -> Result<RingTensor> {
    elementwise::abs(b, x)
}

/// Maximum over `axes` (sorted, distinct) as a knock-out tree: `ceil(log2 n)` levels, each one
/// comparison call on all pairs and one multiplexer call (odd candidates pass through). Exact.
/// Porthos: `(n - 1) outs (496 + 40)` bytes, `6 ceil(log2 n)` rounds. Empty `axes`: the input.
pub fn reduce_max<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce::reduce_max(b, x, axes, keep_dims)
}

/// Minimum over `axes` (sorted, distinct): as [`reduce_max`].
pub fn reduce_min<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], keep_dims: bool) -> Result<RingTensor> {
    reduce::reduce_min(b, x, axes, keep_dims)
}

/// PReLU with a secret slope (same shape as `x`): `x >= 0 ? x : slope * x`.
pub fn prelu<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, slope: &RingTensor, scale: u32) -> Result<RingTensor> {
    elementwise::prelu(b, x, slope, scale)
}

// ---- elementwise functions -----------------------------------------------------------------

/// `e^x`. Method: clamp to `[-16, 8]` (two comparisons in one call, one multiplexer call),
/// `t = x/32` at 16 bits, a degree-4 Chebyshev interpolant of `e^t` on `[-1/2, 1/4]`, then 5
/// squarings. Domain `[-16, 8]`; below: `e^-16` (0 up to an ulp), above: `e^8`. Error
/// (cleartext, scale 12, `tests/rows.rs`): relative `2.0e-3` where `e^x >= 1/4`, and within
/// `1e-2 e^x + 2 ulp` everywhere at scales 8..20. Porthos: `2*496 + 10*40 = 1392` bytes per
/// element, 13 rounds.
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

/// `1 / x`. Method: sign by one comparison (`|x|`, `+-1` by one multiplexer call), the 25
/// bits `[|x| >= 2^j]`, `j = -8..=16`, in one comparison call, `x' = |x| 2^-k` in `[1/2, 1]` and
/// `+-2^-k` from them in one multiplexer call, then `y0 = 48/17 - 32/17 x'` (`|e| <= 1/17`)
/// and `1/x' = y0 (1 + e)(1 + e^2)` in 3 product rounds. Domain `|x|` in `[2^-8, 2^16]`;
/// below (and 0): `+-2^8` (0 counts positive); above: `+-2^-16`. Error (scale 12): relative
/// `9.8e-4` where `|1/x| >= 1/4`, and within `1e-2 |1/x| + 2 ulp` at scales 8..20. Porthos:
/// `26*496 + 57*40 = 15176` bytes per element, 15 rounds.
pub fn reciprocal<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::reciprocal(b, x, scale)
}

/// `x / y` of two secrets of one shape: [`reciprocal`]'s method with `x` multiplied into
/// `+-2^-k` before the Newton factors (so the quotient keeps its relative precision). Domain:
/// `|y|` as [`reciprocal`], `|x / y| <= 2^13` at scale 12 (`2^(45 - q - 16)`, `q =
/// clamp(scale + 4, 17, 21)`); `y` outside: clamped as in [`reciprocal`]. Error (scale 12):
/// within `1e-3 |x/y| + 1.1 ulp`. Porthos: `15216` bytes per element, 16 rounds.
/// `y` may have fewer elements than `x` if it broadcasts to `x`'s shape (a per-row divisor):
/// its normalisation is then computed once per element of `y`, and only the products that
/// carry `x` are of `x`'s size.
pub fn div<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, y: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::div(b, x, y, scale)
}

/// `sqrt(x)` = `[x >= 4^j_min] x * rsqrt(x)` (the gate is the first comparison bit, in the same
/// multiplexer call). Domain as [`rsqrt`]; `x <= 0` (and below the domain): 0; above `2^16`:
/// `x 2^-8` (not a root: documented clamp of the inverse root). Error (scale 12): relative
/// `1.0e-3`. Porthos: `15*496 + 40*40 = 9040` bytes per element at scale 12, 12 rounds.
pub fn sqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::sqrt(b, x, scale)
}

/// `1 / sqrt(x)`. Method: the bits `[x >= 4^j]`, `j = -floor(s/2)..=8`, in one comparison
/// call (15 at scale 12), `x' = x 4^-k` in `[1/4, 1]` and `2^-k` in one multiplexer call, a
/// linear Chebyshev start and 2 Newton steps `y (3 - x' y^2) / 2` (the factor `2^-k` carried
/// along). Domain `[2^-2floor(s/2), 2^16]`; below (and `x <= 0`): `2^floor(s/2)`; above:
/// `2^-8`. Error (scale 12): relative `1.1e-3`. Porthos: `15*496 + 38*40 = 8960` bytes per
/// element at scale 12, 12 rounds.
pub fn rsqrt<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::rsqrt(b, x, scale)
}

/// Natural logarithm. Method: the bits `[x >= 2^j]`, `j = -s..=16`, in one comparison call
/// (29 at scale 12), `x' = x 2^-k` in `[1/2, 1]` and `k ln 2` in one multiplexer call, a
/// degree-5 Chebyshev interpolant of `ln` on `[1/2, 1]` (3 product rounds). Domain
/// `[2^-s, 2^16]`; below (and `x <= 0`): `-s ln 2`; above: `16 ln 2`. Error (scale 12):
/// absolute `2.9e-4`. Porthos: `29*496 + 62*40 = 16864` bytes per element at scale 12, 9 rounds.
pub fn log<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, scale: u32) -> Result<RingTensor> {
    recip::log(b, x, scale)
}

// ---- rows ---------------------------------------------------------------------------------

/// Softmax along `axis` (the row maximum subtracted first); rows are computed in parallel.
/// Method: max tree, `e = e^(x - max)` (one comparison clamps at -16, degree-4 polynomial of
/// `e^(z/16)`, 4 squarings, at 16 bits), row sum `s` in `[1, n]`, `1/s` without comparisons
/// (linear start on `[1, n]`, `m(n)` error-squaring factors, `m(10) = 4`, `m(128) = 8`), then
/// `e / s`. Any input (differences below 2^62). Error (scale 12, rows of 10 and 128 in
/// ranges up to +-100): absolute `7.0e-4`. Porthos per row: `(2n - 1)(496 + 40) + (8n + 2m) 40`
/// bytes (n=10: 1370 B = 2.56 ReLU per element; n=128: 1393 B = 2.60 ReLU), rounds
/// `6 ceil(log2 n) + 14 + m(n)` (42 for n=10, 64 for n=128).
pub fn softmax<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axis: usize, scale: u32) -> Result<RingTensor> {
    softmax::softmax(b, x, axis, scale, false)
}

/// Log-softmax along `axis`: `x - max - ln(s)`, `s` as in [`softmax`], `ln s` by the
/// `ceil(log2 n) + 1` bits `[s >= 2^j]` and a degree-5 polynomial. Error (scale 12): absolute
/// `7.2e-4`. Porthos per row: `(2n-1)(496+40) + 7n 40 + (L+1)(496 + 80) + 160` bytes
/// (`L = ceil(log2 n)`; n=10: 2.99 ReLU per element; n=128: 2.58), rounds `6L + 21`.
pub fn log_softmax<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axis: usize, scale: u32) -> Result<RingTensor> {
    softmax::softmax(b, x, axis, scale, true)
}

/// `(x - mean) / sqrt(var + epsilon)` with mean and (biased) variance over `axes` (sorted,
/// distinct): the core of LayerNormalization, InstanceNormalization, GroupNormalization and
/// batch norms that cannot be folded.
///
/// Method: `D = n x - sum` exactly (a constant group gives exactly 0 for any epsilon), the
/// variance as an exact integer sum of squares of `D >> w` (`d` at `p = var_bits` fractional
/// bits), `+ epsilon` at that precision (an epsilon below it adds nothing; `var + eps = 0`
/// only for constant groups, whose output is 0), `1/sqrt` per group by 23 powers of 4 in one
/// comparison call and 2 Newton steps, `D 2^-k` carried through the steps. Domain: standard
/// deviation up to `2^6` (the variance integer `V = c^2 2^2p n var < 2^44`); above, `V` is
/// clamped to `2^44` (outputs too large by `sqrt(V / 2^44)`), and `V >= 2^62` wraps (garbage:
/// not guarded, to keep the per-element cost at products only). Error (scale 12, n=768, eps
/// 1e-5 and 1e-12, std 0.1..10): absolute `6.8e-4`. Porthos: `5*40` bytes per element plus
/// `23*496 + 51*40` per group (n=768: 217.5 B = 0.41 ReLU per element), 13 rounds.
pub fn normalize<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, axes: &[usize], epsilon: f32, scale: u32) -> Result<RingTensor> {
    norm::normalize(b, x, axes, epsilon, scale)
}
