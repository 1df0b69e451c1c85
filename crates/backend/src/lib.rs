//! The backend interface: the share-manipulating functions of the paper's Table II.
//!
//! A secure protocol plugs into cryptflow by implementing [`Backend`]; the runtime then runs any
//! compiled model on it without knowing anything about the protocol. Every party of a session
//! runs the same program and calls the same methods in the same order; what a party holds for
//! a secret tensor (its *share*) is a [`RingTensor`] of the tensor's shape whose meaning is the
//! backend's business:
//! - [`cleartext::Cleartext`]: the value itself (the reference semantics);
//! - additive 2-out-of-2 sharing (Porthos, 2PC): `x = share_0 + share_1 mod 2^64`, and a helper
//!   party that holds no share holds zeros.
//!
//! Library operations (data movement, additions, multiplication by public integers) act on each
//! share locally and are done by the runtime. Those are correct for any *linear* sharing; a
//! backend whose sharing is not linear must not use this interface.
//!
//! # Semantics every backend must reproduce
//! Values are elements of Z_2^64 read as signed fixed-point numbers. `matmul`, `conv`,
//! `conv_transpose` and `mul` are exact ring operations. `scale_down` is an arithmetic shift
//! (floor division by 2^k) and `divide` a floor division by public positive integers: secure
//! backends may be off by one unit in the last place there (local truncation), nowhere else.
//! `relu`, `max_pool`, `argmax` and `drelu` use the signed order and are exact.
//!
//! # Shared bits
//! [`Backend::drelu`] yields the bit `[x >= 0]` per element as [`SharedBits`], whose content is
//! the backend's own representation (arithmetic shares of 0/1 in Porthos, XOR shares in 2PC,
//! the bit itself in the cleartext backend). Only data movement applies to it, element by
//! element (reshape, slice, concat, broadcast, gather), and [`Backend::mux`] consumes it.
//! With `b` a shared bit, `mux(b, x) = b * x`; every selection is built from it locally:
//! `b ? x : y = y + mux(b, x - y)`, `!b ? x : 0 = x - mux(b, x)`. That comparison, the
//! multiplexer and the products are the whole non-linear vocabulary: the secure math library
//! (`cryptflow-math`) composes every activation, normalisation and softmax from them once, for
//! every protocol.

pub mod cleartext;
#[cfg(feature = "testing")]
pub mod testing;

pub use cryptflow_tensor::{ConvGeometry, PoolGeometry, RingTensor};

/// One shared bit per element (see the crate docs): the backend's representation, opaque to
/// everyone else, in a tensor of the bits' shape.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedBits(pub RingTensor);

/// [`Backend::select_above`] as one [`Backend::select_by_sign`] of the copies `x - t` side by
/// side (the public shift applied by the party that adds public constants).
pub fn select_above<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, items: &[(u64, &RingTensor)]) -> Result<Vec<RingTensor>> {
    if let Some((_, v)) = items.iter().find(|(_, v)| v.shape() != x.shape()) {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("select_above: compared {:?}, selected {:?}", x.shape(), v.shape()))));
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let n = x.len();
    let shifts = b.adds_public_constants();
    let mut compared = Vec::with_capacity(n * items.len());
    let mut values = Vec::with_capacity(n * items.len());
    for &(t, v) in items {
        compared.extend(x.data().iter().map(|&e| if shifts { e.wrapping_sub(t) } else { e }));
        values.extend_from_slice(v.data());
    }
    let flat = vec![n * items.len()];
    let z = b.select_by_sign(&RingTensor::new(flat.clone(), compared)?, &[&RingTensor::new(flat, values)?])?.remove(0);
    (0..items.len()).map(|k| Ok(RingTensor::new(x.shape().to_vec(), z.data()[k * n..(k + 1) * n].to_vec())?)).collect()
}

/// Checks the operands and pairs of [`Backend::mul_pairs`].
pub fn check_pairs(operands: &[&RingTensor], pairs: &[(usize, usize)]) -> Result<()> {
    if let Some(&(i, j)) = pairs.iter().find(|&&(i, j)| i >= operands.len() || j >= operands.len()) {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("mul_pairs: pair ({i}, {j}) of {} operands", operands.len()))));
    }
    if let Some(o) = operands.iter().find(|o| o.shape() != operands[0].shape()) {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("mul_pairs: operands {:?} and {:?}", operands[0].shape(), o.shape()))));
    }
    Ok(())
}

/// [`Backend::mul_pairs`] as one [`Backend::mul`] of the pairs' operands side by side.
pub fn mul_pairs<B: Backend + ?Sized>(b: &mut B, operands: &[&RingTensor], pairs: &[(usize, usize)]) -> Result<Vec<RingTensor>> {
    check_pairs(operands, pairs)?;
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let shape = operands[0].shape();
    let n = operands[0].len();
    let mut left = Vec::with_capacity(n * pairs.len());
    let mut right = Vec::with_capacity(n * pairs.len());
    for &(i, j) in pairs {
        left.extend_from_slice(operands[i].data());
        right.extend_from_slice(operands[j].data());
    }
    let flat = vec![n * pairs.len()];
    let z = b.mul(&RingTensor::new(flat.clone(), left)?, &RingTensor::new(flat, right)?)?;
    (0..pairs.len()).map(|k| Ok(RingTensor::new(shape.to_vec(), z.data()[k * n..(k + 1) * n].to_vec())?)).collect()
}

/// [`Backend::select_by_sign`] as one [`Backend::drelu`] of `x` and one [`Backend::mux`] of
/// its bit (repeated once per value) with all the values side by side.
pub fn select_by_sign<B: Backend + ?Sized>(b: &mut B, x: &RingTensor, values: &[&RingTensor]) -> Result<Vec<RingTensor>> {
    if let Some(v) = values.iter().find(|v| v.shape() != x.shape()) {
        return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!("select_by_sign: compared {:?}, selected {:?}", x.shape(), v.shape()))));
    }
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let bits = b.drelu(x)?;
    if values.len() == 1 {
        return Ok(vec![b.mux(&bits, values[0])?]);
    }
    let n = x.len();
    let mut all_bits = Vec::with_capacity(n * values.len());
    let mut all_values = Vec::with_capacity(n * values.len());
    for v in values {
        all_bits.extend_from_slice(bits.0.data());
        all_values.extend_from_slice(v.data());
    }
    let flat = vec![n * values.len()];
    let z = b.mux(&SharedBits(RingTensor::new(flat.clone(), all_bits)?), &RingTensor::new(flat, all_values)?)?;
    values.iter().enumerate().map(|(k, v)| Ok(RingTensor::new(v.shape().to_vec(), z.data()[k * n..(k + 1) * n].to_vec())?)).collect()
}

impl SharedBits {
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    /// The same bits laid out by a data movement applied to the representation.
    pub fn moved(&self, f: impl FnOnce(&RingTensor) -> std::result::Result<RingTensor, cryptflow_tensor::ShapeError>) -> Result<SharedBits> {
        Ok(SharedBits(f(&self.0)?))
    }
}

/// Which party provides a secret value. Mirrors the compiled program's owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    ModelOwner,
    Client,
}

/// Communication counters of one party (bytes it sent, rounds it took part in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Number of message flights this party waited on (sequential communication rounds).
    pub rounds: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            rounds: self.rounds - earlier.rounds,
        }
    }
}

/// How a secure backend computes [`Backend::scale_down`] and [`Backend::divide`].
///
/// Both results are within the interface's one unit in the last place of the floor; they
/// differ in what can go wrong beyond that and in cost (each backend documents its own):
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Truncation {
    /// SecureML local truncation: no communication, but with probability about `|x| / 2^64`
    /// per element (a share within `|x|` of the wrap-around point) the result is off by about
    /// `2^64 / d`; and a party can predict the rounding bit from its own share.
    #[default]
    Local,
    /// Faithful truncation: correct (floor, or floor + 1 where the backend documents it) for
    /// every element of the documented range, whatever the shares; costs communication.
    Faithful,
    /// Exact truncation: `floor(x / d)` for every element of the documented range, whatever
    /// the shares, so that a secure run computes bit for bit what the cleartext executor does.
    /// Costs more than [`Truncation::Faithful`] where that one may round up.
    Exact,
}

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A peer disconnected, stalled past the deadline, or sent something malformed.
    #[error("party {peer}: {reason}")]
    Peer { peer: usize, reason: String },
    /// The computation was aborted (a check failed, a peer reported an error).
    #[error("aborted: {0}")]
    Aborted(String),
    /// The call's operands do not fit the operation.
    #[error("shape error: {0}")]
    Shape(#[from] cryptflow_tensor::ShapeError),
    /// The backend does not implement this function.
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The share-manipulating functions of Table II, as one party of a session sees them.
///
/// Methods are called by every party in the same order with the same public arguments.
pub trait Backend {
    /// A short name for reports (`cleartext`, `porthos`, ...).
    fn name(&self) -> &str;

    /// This party's index in the session (0 for a single-party backend).
    fn party_id(&self) -> usize;

    /// Whether this party's share receives public constants added by the runtime (exactly
    /// one share of an additive sharing does, so that the shared value moves by the constant).
    fn adds_public_constants(&self) -> bool;

    /// Shares a secret. The owner passes `Some(value)`, every other party `None`; all get their
    /// share of a tensor of `shape`.
    fn share(&mut self, owner: Owner, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor>;

    /// Reveals a secret to `to`: that party gets `Some(value)`, the others `None`.
    fn reveal(&mut self, x: &RingTensor, to: Owner) -> Result<Option<RingTensor>>;

    /// `[M, K] x [K, N] -> [M, N]`.
    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor>;

    /// [`Backend::matmul`] whose right operand is the model owner's weight number `weight`
    /// (its index in the program), the same value in every inference of the session (however
    /// it is re-shared). With [`Backend::set_weight_mask_reuse`] a protocol may keep what masks
    /// the weight between inferences instead of masking and opening it again; by default this
    /// is `matmul`.
    fn matmul_weight(&mut self, a: &RingTensor, b: &RingTensor, weight: usize) -> Result<RingTensor> {
        let _ = weight;
        self.matmul(a, b)
    }

    /// Shares the client's one-hot rows `value` (entries 0 or 1: token ids as rows of a
    /// table's height, see `llil::SecretInput::one_hot`); the client passes `Some`, the others
    /// `None`. The result may only be moved by data movement and then be the left operand of
    /// [`Backend::matmul_one_hot`]: the runtime calls it only for an input whose every use is
    /// such (decided from the public program). A protocol may then keep the rows with the
    /// client alone, since the product's cost depends on how the rows are held (2PC: one OT per
    /// entry instead of 64). By default this is `share(Owner::Client, ..)`.
    ///
    /// A protocol overrides both this and [`Backend::matmul_one_hot`] or neither, and a wrapper
    /// forwards both or neither: the product relies on the form this sharing gives.
    fn share_one_hot(&mut self, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        self.share(Owner::Client, shape, value)
    }

    /// `[M, K] x [K, N]` whose left operand is the result of [`Backend::share_one_hot`] after
    /// data movement only (so each entry is 0 or 1, known to the client). `weight` is the
    /// right operand's weight index when it is one of the model owner's weights (as for
    /// [`Backend::matmul_weight`]). The result is an ordinary share of the exact product. By
    /// default this is `matmul_weight` (with a weight) or `matmul`.
    fn matmul_one_hot(&mut self, a: &RingTensor, b: &RingTensor, weight: Option<usize>) -> Result<RingTensor> {
        match weight {
            Some(k) => self.matmul_weight(a, b, k),
            None => self.matmul(a, b),
        }
    }

    /// Keep each weight's mask for the session (see [`Backend::matmul_weight`]): later
    /// inferences then cost less communication and the parties more memory. Every party of a
    /// session must choose the same. By default nothing is kept.
    fn set_weight_mask_reuse(&mut self, reuse: bool) -> Result<()> {
        let _ = reuse;
        Ok(())
    }

    /// Convolution of a secret input with a secret filter (see [`ConvGeometry`] for layouts).
    fn conv(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor>;

    /// Transposed convolution of a secret input with a secret filter.
    fn conv_transpose(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor>;

    /// Elementwise product of two secrets of one shape.
    fn mul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor>;

    /// `max(x, 0)` elementwise.
    fn relu(&mut self, x: &RingTensor) -> Result<RingTensor>;

    /// Max pooling.
    fn max_pool(&mut self, x: &RingTensor, geom: &PoolGeometry) -> Result<RingTensor>;

    /// Index of the maximum along `axis` (a secret integer).
    fn argmax(&mut self, x: &RingTensor, axis: usize, keep_dims: bool) -> Result<RingTensor>;

    /// `[B, M, K] x [B, K, N] -> [B, M, N]`: a batch of matrix products of two secrets
    /// (attention's `Q K^T` and `softmax V`). The default makes one [`Backend::matmul`] per batch
    /// entry (one round each); protocols override it to take all in the rounds of one.
    fn batch_matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        if a.rank() != 3 || b.rank() != 3 || a.shape()[0] != b.shape()[0] || a.shape()[2] != b.shape()[1] {
            return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!(
                "batch_matmul: cannot multiply {:?} by {:?}",
                a.shape(),
                b.shape()
            ))));
        }
        let (batch, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
        let mut out = Vec::with_capacity(batch * m * n);
        for i in 0..batch {
            let ai = RingTensor::new(vec![m, k], a.data()[i * m * k..(i + 1) * m * k].to_vec())?;
            let bi = RingTensor::new(vec![k, n], b.data()[i * k * n..(i + 1) * k * n].to_vec())?;
            out.extend_from_slice(self.matmul(&ai, &bi)?.data());
        }
        Ok(RingTensor::new(vec![batch, m, n], out)?)
    }

    /// Shares of the bit `[x >= 0]` (signed order) of every element. Exact over the range the
    /// backend documents for its comparisons (at least `[-2^62, 2^62)`).
    fn drelu(&mut self, x: &RingTensor) -> Result<SharedBits>;

    /// `b * x` elementwise, for shared bits `b` and a secret `x` of the same shape.
    fn mux(&mut self, b: &SharedBits, x: &RingTensor) -> Result<RingTensor>;

    /// `[x >= 0] * v` elementwise for each of `values` (every one of `x`'s shape): a
    /// comparison whose bit is only used to select. The default is what it abbreviates, one
    /// [`Backend::drelu`] and one [`Backend::mux`] for all the values ([`select_by_sign`]); a
    /// protocol may fuse the selections into its comparison.
    fn select_by_sign(&mut self, x: &RingTensor, values: &[&RingTensor]) -> Result<Vec<RingTensor>> {
        select_by_sign(self, x, values)
    }

    /// `[x - t >= 0] * v` elementwise for each public threshold `t` (a ring element) and value
    /// `v` (of `x`'s shape) of `items`: comparisons of one secret with several public points,
    /// whose bits only select. The default compares the shifted copies side by side in one
    /// [`Backend::select_by_sign`] ([`select_above`]); a protocol may share one masked opening
    /// of `x` between the thresholds.
    fn select_above(&mut self, x: &RingTensor, items: &[(u64, &RingTensor)]) -> Result<Vec<RingTensor>> {
        select_above(self, x, items)
    }

    /// `operands[i] * operands[j]` elementwise for each `(i, j)` of `pairs` (all operands of
    /// one shape), in the rounds of one product: powers, Chebyshev polynomials and squares,
    /// whose operands enter several products. The default is one [`Backend::mul`] of the
    /// pairs side by side ([`mul_pairs`]); a protocol may mask and open each operand once
    /// however many products it enters.
    fn mul_pairs(&mut self, operands: &[&RingTensor], pairs: &[(usize, usize)]) -> Result<Vec<RingTensor>> {
        mul_pairs(self, operands, pairs)
    }

    /// Arithmetic shift right by `shift` bits.
    fn scale_down(&mut self, x: &RingTensor, shift: u32) -> Result<RingTensor>;

    /// Floor division by public positive integers, `divisors` of `x`'s shape.
    fn divide(&mut self, x: &RingTensor, divisors: &RingTensor) -> Result<RingTensor>;

    /// Chooses how `scale_down` and `divide` are computed from now on (every party must choose
    /// the same). The default accepts only [`Truncation::Local`]: a backend that offers the
    /// faithful truncation overrides it.
    fn set_truncation(&mut self, mode: Truncation) -> Result<()> {
        match mode {
            Truncation::Local => Ok(()),
            Truncation::Faithful => Err(BackendError::Unsupported("faithful truncation")),
            Truncation::Exact => Err(BackendError::Unsupported("exact truncation")),
        }
    }

    /// Whether [`Backend::scale_down`] is exact (the floor or one more) for every input in
    /// `[-2^62, 2^62)` whatever the shares, as faithful truncation is: a computation may then
    /// truncate a sum of large products once instead of each product. By default it is not
    /// (local truncation fails with probability `|x| / 2^64` per element).
    fn exact_truncation(&self) -> bool {
        false
    }

    /// Declares the domain of the values compared from now on (by [`Backend::drelu`],
    /// [`Backend::relu`], [`Backend::max_pool`], [`Backend::argmax`],
    /// [`Backend::select_by_sign`] and [`Backend::select_above`]; every party must declare the
    /// same): two's complement integers of `bits` bits, `1..=64`. Comparisons of values in
    /// `[-2^(bits-1), 2^(bits-1))` stay exact; a backend may use the declaration to compare
    /// more cheaply, and then documents what it computes outside the domain. By default
    /// comparisons stay exact on all of Z_2^64 whatever is declared.
    fn set_comparison_bits(&mut self, bits: u32) -> Result<()> {
        check_comparison_bits(bits)
    }

    /// The domain last declared with [`Backend::set_comparison_bits`] where the backend uses
    /// it; 64 where comparisons are exact on all of Z_2^64.
    fn comparison_bits(&self) -> u32 {
        64
    }

    /// Traffic of this party so far in the session.
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// Refuses a comparison domain outside `1..=64` bits.
pub fn check_comparison_bits(bits: u32) -> Result<()> {
    if (1..=64).contains(&bits) {
        Ok(())
    } else {
        Err(BackendError::Aborted(format!("a comparison domain of {bits} bits is outside 1..=64")))
    }
}
