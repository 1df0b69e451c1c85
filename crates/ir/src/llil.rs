//! LLIL: a fixed-point program over Z_2^64 (paper Fig. 6 and Table II).
//!
//! A program is a straight-line list of instructions over numbered slots. Each instruction is
//! either a *library* operation, which every party applies to its own share without talking to
//! anyone (data movement, additions, multiplication by a public integer), or a *backend call*,
//! one of the share-manipulating functions a protocol must implement. [`LOp::is_backend_call`]
//! tells them apart; that split is the whole contract between Athos and a protocol.
//!
//! All values use one public scale `s`: the real `r` is held as `floor(r * 2^s)` (see
//! [`encode`]). The compiler inserts `ScaleDown` after multiplications; a program is therefore
//! runnable by any party that knows only this public description plus its own inputs.

use std::fmt;

use cryptflow_tensor::{ConvGeometry, PoolGeometry, RingTensor};
use serde::{Deserialize, Serialize};

use crate::hlil::{describe_conv, describe_pool};
pub use crate::hlil::UnaryFn;

/// Version of the program format written into compiled artifacts.
pub const FORMAT_VERSION: u32 = 1;

/// The largest scale of a valid program: a product at `2s` of values below 16 must fit in 64
/// bits with its sign (`cryptflow-athos` refuses larger scales for the same reason).
pub const MAX_SCALE: u32 = 29;
/// The most elements a slot of a valid program may have: the one cap of
/// [`crate::limits::MAX_TENSOR_ELEMENTS`], which the runtime applies too.
pub const MAX_SLOT_ELEMENTS: u64 = crate::limits::MAX_TENSOR_ELEMENTS;
/// The most bytes all the slots of a valid program may take together (one party, no frees).
pub const MAX_TOTAL_BYTES: u64 = 1 << 40;
/// The largest rank of a slot.
pub const MAX_RANK: usize = 16;

fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(&f, &t)| f == t || f == 1)
}

fn expect_shape(out: &[usize], expected: &[usize]) -> Result<(), String> {
    if out != expected {
        return Err(format!("the output slot has shape {out:?}, the operation gives {expected:?}"));
    }
    Ok(())
}

/// Whether `op` can run on arguments of shapes `args` and give `out`: argument count, the
/// operation's parameters, and every shape.
fn check_instr(op: &LOp, args: &[&[usize]], out: &[usize]) -> Result<(), String> {
    let arity: std::ops::RangeInclusive<usize> = match op {
        LOp::Concat { .. } => 1..=usize::MAX,
        LOp::Add | LOp::Sub | LOp::MatMul | LOp::Conv(_) | LOp::ConvTranspose(_) | LOp::Mul | LOp::BatchMatMul | LOp::Max | LOp::Min | LOp::Div | LOp::Prelu => 2..=2,
        _ => 1..=1,
    };
    if !arity.contains(&args.len()) {
        return Err(format!("takes {arity:?} arguments, not {}", args.len()));
    }
    let x = args[0];
    let same = |shapes: &[&[usize]]| -> Result<(), String> {
        if shapes.iter().any(|s| *s != x) {
            return Err(format!("arguments of shapes {shapes:?} must have one shape"));
        }
        expect_shape(out, x)
    };
    match op {
        LOp::Reshape => {
            if cryptflow_tensor::num_elements(x) != cryptflow_tensor::num_elements(out) {
                return Err(format!("cannot reshape {x:?} into {out:?}"));
            }
        }
        LOp::Transpose { perm } => {
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("{perm:?} is not a permutation of the axes of {x:?}"));
            }
            expect_shape(out, &perm.iter().map(|&p| x[p]).collect::<Vec<_>>())?;
        }
        LOp::Pad { pads_begin, pads_end } => {
            if pads_begin.len() != x.len() || pads_end.len() != x.len() {
                return Err(format!("pads {pads_begin:?} / {pads_end:?} do not fit rank {}", x.len()));
            }
            let padded: Option<Vec<usize>> = (0..x.len()).map(|i| x[i].checked_add(pads_begin[i])?.checked_add(pads_end[i])).collect();
            expect_shape(out, &padded.ok_or("pads overflow")?)?;
        }
        LOp::Slice { starts, ends, steps } => {
            if starts.len() != x.len() || ends.len() != x.len() || steps.len() != x.len() {
                return Err(format!("starts {starts:?}, ends {ends:?}, steps {steps:?} do not fit rank {}", x.len()));
            }
            let mut shape = Vec::with_capacity(x.len());
            for axis in 0..x.len() {
                let (start, end, step) = (starts[axis] as i128, ends[axis] as i128, steps[axis] as i128);
                let extent = match step {
                    0 => return Err(format!("slice step of axis {axis} is zero")),
                    st if st > 0 => if end > start { (end - start + st - 1) / st } else { 0 },
                    st => if start > end { (start - end - st - 1) / -st } else { 0 },
                };
                if extent > 0 {
                    let last = start + (extent - 1) * step;
                    let dim = x[axis] as i128;
                    if start < 0 || start >= dim || last < 0 || last >= dim {
                        return Err(format!("slice of axis {axis} (extent {dim}) addresses {start}..={last}"));
                    }
                }
                shape.push(extent as usize);
            }
            expect_shape(out, &shape)?;
        }
        LOp::Concat { axis } => {
            if *axis >= x.len() {
                return Err(format!("concat axis {axis} out of range for {x:?}"));
            }
            let mut shape = x.to_vec();
            shape[*axis] = 0;
            for a in args {
                if a.len() != x.len() || (0..x.len()).any(|i| i != *axis && a[i] != x[i]) {
                    return Err(format!("cannot concatenate {x:?} and {a:?} on axis {axis}"));
                }
                shape[*axis] += a[*axis];
            }
            expect_shape(out, &shape)?;
        }
        LOp::Gather { axis, indices } => {
            if *axis >= x.len() {
                return Err(format!("gather axis {axis} out of range for {x:?}"));
            }
            if let Some(bad) = indices.iter().find(|&&i| i >= x[*axis]) {
                return Err(format!("gather index {bad} out of range for axis {axis} of {x:?}"));
            }
            let mut shape = x.to_vec();
            shape[*axis] = indices.len();
            expect_shape(out, &shape)?;
        }
        LOp::BroadcastTo => {
            if !broadcasts_to(x, out) {
                return Err(format!("cannot broadcast {x:?} to {out:?}"));
            }
        }
        LOp::Add | LOp::Sub | LOp::Mul | LOp::Max | LOp::Min | LOp::Prelu => same(args)?,
        LOp::Neg | LOp::MulPublic { .. } | LOp::Relu | LOp::Unary(_) => expect_shape(out, x)?,
        LOp::ScaleDown { shift } => {
            if !(1..64).contains(shift) {
                return Err(format!("shift {shift} is out of range 1..=63"));
            }
            expect_shape(out, x)?;
        }
        LOp::AddPublic { value: c } | LOp::MulPublicTensor { values: c } => {
            if !broadcasts_to(c.shape(), x) {
                return Err(format!("public constants of shape {:?} do not broadcast to {x:?}", c.shape()));
            }
            expect_shape(out, x)?;
        }
        LOp::Divide { divisors } => {
            if !broadcasts_to(divisors.shape(), x) {
                return Err(format!("divisors of shape {:?} do not broadcast to {x:?}", divisors.shape()));
            }
            if let Some(bad) = divisors.data().iter().find(|&&d| d == 0 || d > 1 << 62) {
                return Err(format!("divisor {bad} is not a positive integer below 2^62"));
            }
            expect_shape(out, x)?;
        }
        LOp::SumPool(g) | LOp::MaxPool(g) => {
            const LIMIT: usize = MAX_SLOT_ELEMENTS as usize;
            if g.input.iter().chain(&g.window).chain(&g.strides).chain(&g.pads_begin).chain(&g.pads_end).any(|&v| v > LIMIT) || g.batch > LIMIT || g.channels > LIMIT {
                return Err("pooling extents are implausibly large".into());
            }
            crate::hlil::validate_pool(g).map_err(|e| e.to_string())?;
            if x != g.input_shape().as_slice() {
                return Err(format!("input {x:?} does not match the pooling geometry's {:?}", g.input_shape()));
            }
            expect_shape(out, &g.output_shape())?;
        }
        LOp::ReduceSum { axes, keep_dims } | LOp::ReduceMax { axes, keep_dims } | LOp::ReduceMin { axes, keep_dims } => {
            crate::hlil::check_axes(axes, x).map_err(|e| e.to_string())?;
            if axes.iter().any(|&a| x[a] == 0) {
                return Err(format!("reduction over an empty axis of {x:?}"));
            }
            expect_shape(out, &crate::hlil::reduced_shape(x, axes, *keep_dims))?;
        }
        LOp::MatMul => {
            let b = args[1];
            if x.len() != 2 || b.len() != 2 || x[1] != b[0] {
                return Err(format!("MatMul of {x:?} by {b:?}: expected [M, K] and [K, N]"));
            }
            expect_shape(out, &[x[0], b[1]])?;
        }
        LOp::BatchMatMul => {
            let b = args[1];
            if x.len() != 3 || b.len() != 3 || x[0] != b[0] || x[2] != b[1] {
                return Err(format!("BatchMatMul of {x:?} by {b:?}: expected [B, M, K] and [B, K, N]"));
            }
            expect_shape(out, &[x[0], x[1], b[2]])?;
        }
        LOp::Conv(g) | LOp::ConvTranspose(g) => {
            let transposed = matches!(op, LOp::ConvTranspose(_));
            const SMALL: usize = 1 << 20;
            const LARGE: usize = MAX_SLOT_ELEMENTS as usize;
            if g.kernel.iter().chain(&g.strides).chain(&g.dilations).chain(&g.pads_begin).chain(&g.pads_end).chain(&g.output_padding).any(|&v| v > SMALL)
                || g.input.iter().chain([&g.batch, &g.in_channels, &g.out_channels]).any(|&v| v > LARGE)
            {
                return Err("convolution extents are implausibly large".into());
            }
            crate::hlil::validate_conv(g, transposed).map_err(|e| e.to_string())?;
            let filter = if transposed { g.conv_transpose_filter_shape() } else { g.conv_filter_shape() };
            if x != g.input_shape().as_slice() || args[1] != filter.as_slice() {
                return Err(format!(
                    "input {x:?} and filter {:?} do not match the geometry's {:?} and {filter:?}",
                    args[1],
                    g.input_shape()
                ));
            }
            expect_shape(out, &if transposed { g.conv_transpose_output_shape() } else { g.conv_output_shape() })?;
        }
        LOp::ArgMax { axis, keep_dims } => {
            if *axis >= x.len() || x[*axis] == 0 {
                return Err(format!("argmax axis {axis} out of range (or empty) for {x:?}"));
            }
            expect_shape(out, &crate::hlil::reduced_shape(x, &[*axis], *keep_dims))?;
        }
        LOp::Div => {
            let b = args[1];
            if b.len() != x.len() || !broadcasts_to(b, x) {
                return Err(format!("divisor {b:?} does not broadcast to {x:?} at the same rank"));
            }
            expect_shape(out, x)?;
        }
        LOp::Softmax { axis } | LOp::LogSoftmax { axis } => {
            if *axis >= x.len() || x[*axis] == 0 {
                return Err(format!("softmax axis {axis} out of range (or empty) for {x:?}"));
            }
            expect_shape(out, x)?;
        }
        LOp::Normalize { axes, epsilon } => {
            crate::hlil::check_axes(axes, x).map_err(|e| e.to_string())?;
            if !(epsilon.is_finite() && *epsilon >= 0.0) {
                return Err(format!("epsilon {epsilon} must be finite and non-negative"));
            }
            expect_shape(out, x)?;
        }
    }
    Ok(())
}

pub type Slot = usize;

/// Who provides a secret value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Owner {
    /// The model owner: holds the weights.
    ModelOwner,
    /// The client: holds the input and receives the output.
    Client,
}

/// How an output's ring elements are read back as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Fixed-point at this scale: the value is `signed(v) / 2^scale`.
    Fixed { scale: u32 },
    /// A plain signed integer (ArgMax indices).
    Integer,
}

impl Encoding {
    pub fn decode(self, v: u64) -> f32 {
        match self {
            Encoding::Fixed { scale } => (v as i64) as f64 as f32 / (2f64.powi(scale as i32)) as f32,
            Encoding::Integer => (v as i64) as f32,
        }
    }
}

/// `rho_s(r) = floor(r * 2^s)` (paper III-B), as a ring element. Values beyond the ring
/// saturate instead of wrapping, so that an overflow is visible rather than garbage.
pub fn encode(r: f32, scale: u32) -> u64 {
    encode_with(r, scale, Rounding::Floor)
}

/// How the compiler turns the model's real constants into fixed point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// `floor(r * 2^s)`, the paper's rho_s.
    Floor,
    /// `round(r * 2^s)` (the default): the same precision without floor's systematic bias of
    /// half a unit, which adds up over the many terms of a wide layer.
    #[default]
    Nearest,
}

pub fn encode_with(r: f32, scale: u32, rounding: Rounding) -> u64 {
    let scaled = r as f64 * 2f64.powi(scale as i32);
    let v = match rounding {
        Rounding::Floor => scaled.floor(),
        Rounding::Nearest => scaled.round(),
    };
    (v.clamp(i64::MIN as f64, i64::MAX as f64) as i64) as u64
}

/// An LLIL operation. `args` of the instruction are listed per variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LOp {
    // ---- Library: share-agnostic, local to every party -----------------------------------
    /// args: x. Same elements, the output slot's shape.
    Reshape,
    /// args: x.
    Transpose { perm: Vec<usize> },
    /// args: x. Pads with zero.
    Pad { pads_begin: Vec<usize>, pads_end: Vec<usize> },
    /// args: x.
    Slice { starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64> },
    /// args: two or more tensors.
    Concat { axis: usize },
    /// args: x.
    Gather { axis: usize, indices: Vec<usize> },
    /// args: x. NumPy broadcast to the output slot's shape.
    BroadcastTo,
    /// args: a, b of one shape.
    Add,
    Sub,
    /// args: x.
    Neg,
    /// args: x. Multiplies by a public integer (the product has the scale of `x` plus the
    /// constant's own scale, which the compiler accounts for).
    MulPublic { value: i64 },
    /// args: x. Adds a public fixed-point constant (a scalar, or the output shape). Only the
    /// parties whose share carries public terms add it ([`LOp::is_backend_call`] is false, but
    /// the runtime asks the backend which parties those are).
    AddPublic { value: RingTensor },
    /// args: x. Sum over every pooling window (padding contributes zero).
    SumPool(PoolGeometry),
    /// args: x. Sum over `axes`.
    ReduceSum { axes: Vec<usize>, keep_dims: bool },
    /// args: x. Elementwise product with public fixed-point constants (broadcast to x's
    /// shape); the product has x's scale plus the constants' own, as with `MulPublic`.
    MulPublicTensor { values: RingTensor },

    // ---- Backend calls: the share-manipulating functions of Table II ----------------------
    /// args: a `[M, K]`, b `[K, N]`. Result at scale 2s.
    MatMul,
    /// args: x, filter.
    Conv(ConvGeometry),
    /// args: x, filter.
    ConvTranspose(ConvGeometry),
    /// args: a, b of one shape. Elementwise product.
    Mul,
    /// args: x. `max(x, 0)` in the signed order.
    Relu,
    /// args: x.
    MaxPool(PoolGeometry),
    /// args: x. Index of the maximum, as a plain integer.
    ArgMax { axis: usize, keep_dims: bool },
    /// args: x. Arithmetic shift right by `shift` bits (floor division by 2^shift).
    ScaleDown { shift: u32 },
    /// args: x. Floor division by public positive integers: one divisor, or one per element
    /// of `x` (then `divisors` has x's shape).
    Divide { divisors: RingTensor },
    /// args: a `[B, M, K]`, b `[B, K, N]`: a batch of products of two secrets. Result at 2s.
    BatchMatMul,

    // ---- Secure math (`cryptflow-math`, composed of the backend calls above plus DReLU and
    // the multiplexer): operands and result at the program's scale `s` unless said otherwise.
    /// args: x.
    Unary(UnaryFn),
    /// args: a, b of one shape (any common scale: max and min commute with the scale).
    Max,
    Min,
    /// args: x (any scale). Over sorted distinct `axes`.
    ReduceMax { axes: Vec<usize>, keep_dims: bool },
    ReduceMin { axes: Vec<usize>, keep_dims: bool },
    /// args: a, b (of a's shape, or of a's rank broadcasting to it): `a / b`.
    Div,
    /// args: x, slope of one shape.
    Prelu,
    /// args: x.
    Softmax { axis: usize },
    LogSoftmax { axis: usize },
    /// args: x. `(x - mean) / sqrt(var + epsilon)` over `axes`.
    Normalize { axes: Vec<usize>, epsilon: f32 },
}

impl LOp {
    /// Whether this operation is a call into the backend interface (it manipulates shares and
    /// may communicate), as opposed to a share-agnostic library operation.
    pub fn is_backend_call(&self) -> bool {
        matches!(
            self,
            LOp::MatMul
                | LOp::Conv(_)
                | LOp::ConvTranspose(_)
                | LOp::Mul
                | LOp::Relu
                | LOp::MaxPool(_)
                | LOp::ArgMax { .. }
                | LOp::ScaleDown { .. }
                | LOp::Divide { .. }
                | LOp::BatchMatMul
                | LOp::Unary(_)
                | LOp::Max
                | LOp::Min
                | LOp::ReduceMax { .. }
                | LOp::ReduceMin { .. }
                | LOp::Div
                | LOp::Prelu
                | LOp::Softmax { .. }
                | LOp::LogSoftmax { .. }
                | LOp::Normalize { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            LOp::Reshape => "Reshape",
            LOp::Transpose { .. } => "Transpose",
            LOp::Pad { .. } => "Pad",
            LOp::Slice { .. } => "Slice",
            LOp::Concat { .. } => "Concat",
            LOp::Gather { .. } => "Gather",
            LOp::BroadcastTo => "BroadcastTo",
            LOp::Add => "Add",
            LOp::Sub => "Sub",
            LOp::Neg => "Neg",
            LOp::MulPublic { .. } => "MulPublic",
            LOp::AddPublic { .. } => "AddPublic",
            LOp::SumPool(_) => "SumPool",
            LOp::ReduceSum { .. } => "ReduceSum",
            LOp::MatMul => "MatMul",
            LOp::Conv(_) => "Conv",
            LOp::ConvTranspose(_) => "ConvTranspose",
            LOp::Mul => "Mul",
            LOp::Relu => "ReLU",
            LOp::MaxPool(_) => "MaxPool",
            LOp::ArgMax { .. } => "ArgMax",
            LOp::ScaleDown { .. } => "ScaleDown",
            LOp::Divide { .. } => "Divide",
            LOp::MulPublicTensor { .. } => "MulPublicTensor",
            LOp::BatchMatMul => "BatchMatMul",
            LOp::Unary(f) => f.name(),
            LOp::Max => "Max",
            LOp::Min => "Min",
            LOp::ReduceMax { .. } => "ReduceMax",
            LOp::ReduceMin { .. } => "ReduceMin",
            LOp::Div => "Div",
            LOp::Prelu => "Prelu",
            LOp::Softmax { .. } => "Softmax",
            LOp::LogSoftmax { .. } => "LogSoftmax",
            LOp::Normalize { .. } => "Normalize",
        }
    }

    fn describe(&self) -> String {
        match self {
            LOp::Transpose { perm } => format!("perm={perm:?}"),
            LOp::Pad { pads_begin, pads_end } => format!("begin={pads_begin:?}, end={pads_end:?}"),
            LOp::Slice { starts, ends, steps } => format!("starts={starts:?}, ends={ends:?}, steps={steps:?}"),
            LOp::Concat { axis } => format!("axis={axis}"),
            LOp::Gather { axis, indices } => format!("axis={axis}, indices={indices:?}"),
            LOp::MulPublic { value } => format!("c={value}"),
            LOp::AddPublic { value } => {
                if value.len() == 1 {
                    format!("c={}", value.data()[0] as i64)
                } else {
                    format!("c=<{} public values>", value.len())
                }
            }
            LOp::SumPool(g) | LOp::MaxPool(g) => describe_pool(g),
            LOp::ReduceSum { axes, keep_dims } | LOp::ReduceMax { axes, keep_dims } | LOp::ReduceMin { axes, keep_dims } => {
                format!("axes={axes:?}, keep_dims={keep_dims}")
            }
            LOp::MulPublicTensor { values } => format!("c=<{} public values>", values.len()),
            LOp::Unary(f) => f.describe(),
            LOp::Softmax { axis } | LOp::LogSoftmax { axis } => format!("axis={axis}"),
            LOp::Normalize { axes, epsilon } => format!("axes={axes:?}, epsilon={epsilon}"),
            LOp::Conv(g) | LOp::ConvTranspose(g) => describe_conv(g),
            LOp::ArgMax { axis, keep_dims } => format!("axis={axis}, keep_dims={keep_dims}"),
            LOp::ScaleDown { shift } => format!("shift={shift}"),
            LOp::Divide { divisors } => {
                if divisors.len() == 1 {
                    format!("by={}", divisors.data()[0])
                } else {
                    format!("by=<{} public divisors>", divisors.len())
                }
            }
            _ => String::new(),
        }
    }
}

/// One instruction: `out = op(args...)`, then the slots in `free_after` are released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instr {
    pub op: LOp,
    pub args: Vec<Slot>,
    pub out: Slot,
    /// The HLIL node (model layer) this instruction implements, for per-layer reports.
    pub layer: String,
    /// Slots whose last use is this instruction (filled in by the liveness pass).
    #[serde(default)]
    pub free_after: Vec<Slot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub shape: Vec<usize>,
}

/// The client input of a decoder's next-token head (`athos::passes::add_next_token_head`): a
/// program with it runs one forward pass per generated token over the same weights.
pub const NEXT_POSITION: &str = "next_position";

/// A secret input of the program: the client's data or one of the model owner's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretInput {
    pub name: String,
    pub owner: Owner,
    pub slot: Slot,
    pub shape: Vec<usize>,
    /// The client supplies this input as integers (token ids, masks), encoded exactly rather
    /// than at the program's scale.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer: bool,
    /// The client supplies integers of shape `shape[..rank-1]` (token ids, each in
    /// `-depth..depth` with `depth = shape[rank-1]`) and shares their one-hot rows (0/1 as
    /// exact integers, see `hlil::Op::OneHot`). Set together with `integer`; an input may
    /// appear twice under one name, once one-hot and once as plain integers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_hot: bool,
}

impl Program {
    /// Whether a session of this program keeps its weights' Beaver masks from the first
    /// inference (a decoder generating token by token: `Backend::set_weight_mask_reuse`).
    pub fn keeps_weight_masks(&self) -> bool {
        self.inputs.iter().any(|i| i.name == NEXT_POSITION)
    }

    /// Elements of the distinct weights that are a product's right operand: what kept masks
    /// hold (a mask share and the opened masked weight per element on P0 and P1, the mask on
    /// the helper).
    pub fn product_weight_elements(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        for instr in &self.body {
            if matches!(instr.op, LOp::MatMul) {
                if let Some(w) = instr.args.get(1).and_then(|&a| self.weights.iter().find(|w| w.slot == a)) {
                    seen.insert(w.slot);
                }
            }
        }
        self.weights.iter().filter(|w| seen.contains(&w.slot)).map(|w| cryptflow_tensor::num_elements(&w.shape) as u64).sum()
    }
}

impl SecretInput {
    /// The shape of the value the client supplies (a one-hot input's integers).
    pub fn value_shape(&self) -> &[usize] {
        if self.one_hot {
            &self.shape[..self.shape.len().saturating_sub(1)]
        } else {
            &self.shape
        }
    }

    /// A one-hot input's depth (the number of rows of the table it selects from).
    pub fn one_hot_depth(&self) -> Option<usize> {
        self.one_hot.then(|| self.shape.last().copied()).flatten()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub slot: Slot,
    pub shape: Vec<usize>,
    pub encoding: Encoding,
}

/// Where the model owner's fixed-point weights come from when a party needs one: memory, or
/// the compiled artifact read tensor by tensor (`artifact::FixedWeightsFile`), so that the
/// weights need not all be resident at once.
pub trait WeightSource: Sync {
    /// Number of weights (in `Program::weights` order).
    fn count(&self) -> usize;
    fn shape(&self, k: usize) -> &[usize];
    /// Weight `k`; an error names what went wrong (an unreadable or changed file).
    fn load(&self, k: usize) -> Result<std::borrow::Cow<'_, RingTensor>, String>;
}

impl WeightSource for Vec<RingTensor> {
    fn count(&self) -> usize {
        self.len()
    }
    fn shape(&self, k: usize) -> &[usize] {
        self[k].shape()
    }
    fn load(&self, k: usize) -> Result<std::borrow::Cow<'_, RingTensor>, String> {
        Ok(std::borrow::Cow::Borrowed(&self[k]))
    }
}

/// A complete LLIL program: what every party runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// The public fixed-point scale `s`.
    pub scale: u32,
    pub slots: Vec<SlotInfo>,
    /// The model owner's weights: shared when an inference first reads them and released
    /// after their last use (see `cryptflow_runtime::Runner`).
    pub weights: Vec<SecretInput>,
    /// The client's inputs: shared once per inference.
    pub inputs: Vec<SecretInput>,
    /// Instructions run once per inference.
    pub body: Vec<Instr>,
    /// Revealed to the client at the end of each inference.
    pub outputs: Vec<Output>,
    /// The domain of the values the program compares (ReLU, max pools, argmax and the secure
    /// math functions' comparisons of values at the program's scale): two's complement
    /// integers of this many bits, `1..=64`. Backends may compare more cheaply within it
    /// (`Backend::set_comparison_bits`); the compiler chooses it (see
    /// `cryptflow_athos::headroom::comparison_bits`). Programs written before it existed
    /// compare all 64 bits; a program comparing all 64 bits is written without the field, so
    /// that its JSON, and the digest binding its weights, are what they were before it existed.
    #[serde(default = "full_comparison_bits", skip_serializing_if = "compares_all_bits")]
    pub comparison_bits: u32,
}

fn full_comparison_bits() -> u32 {
    64
}

fn compares_all_bits(bits: &u32) -> bool {
    *bits == 64
}

impl Program {
    pub fn slot_shape(&self, slot: Slot) -> &[usize] {
        &self.slots[slot].shape
    }

    /// Checks everything a party relies on before it starts a session, so that a hand-edited or
    /// corrupted program is an error, never a panic or a silently wrong answer: the scale and
    /// every ScaleDown shift in range; slot sizes sane ([`MAX_SLOT_ELEMENTS`],
    /// [`MAX_TOTAL_BYTES`]); weight and input slots distinct; every slot written exactly once
    /// before it is read and not read after it is freed; every instruction's arguments,
    /// parameters and output shape consistent with its operation; outputs computed from the
    /// client's inputs, live at the end, with a plausible encoding.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_SCALE).contains(&self.scale) {
            return Err(format!("scale {} is out of range 1..={MAX_SCALE}", self.scale));
        }
        if !(1..=64).contains(&self.comparison_bits) {
            return Err(format!("comparison domain of {} bits is out of range 1..=64", self.comparison_bits));
        }
        let mut total: u64 = 0;
        for (k, slot) in self.slots.iter().enumerate() {
            if slot.shape.len() > MAX_RANK {
                return Err(format!("slot %{k} has rank {} (at most {MAX_RANK})", slot.shape.len()));
            }
            let n = slot.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).filter(|&n| n <= MAX_SLOT_ELEMENTS);
            let Some(n) = n else {
                return Err(format!("slot %{k} of shape {:?} has more than 2^32 elements", slot.shape));
            };
            total += 8 * n;
        }
        if total > MAX_TOTAL_BYTES {
            return Err(format!("the program's tensors take {total} bytes (more than 2^40)"));
        }
        let check_slot = |slot: Slot| -> Result<(), String> {
            if slot >= self.slots.len() {
                Err(format!("slot %{slot} does not exist"))
            } else {
                Ok(())
            }
        };
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Unwritten,
            Live,
            Freed,
        }
        let mut state = vec![State::Unwritten; self.slots.len()];
        // Whether a slot's value depends on a client input (an output that does not would
        // reveal the model owner's weights).
        let mut from_input = vec![false; self.slots.len()];
        let mut is_weight = vec![false; self.slots.len()];
        let mut names = std::collections::HashSet::new();
        for (input, client) in self.weights.iter().map(|w| (w, false)).chain(self.inputs.iter().map(|i| (i, true))) {
            check_slot(input.slot)?;
            if self.slots[input.slot].shape != input.shape {
                return Err(format!("input `{}` disagrees with its slot's shape", input.name));
            }
            if state[input.slot] != State::Unwritten {
                return Err(format!("input `{}` shares slot %{} with another input or weight", input.name, input.slot));
            }
            if client && !names.insert((input.name.as_str(), input.one_hot)) {
                return Err(format!("two inputs are named `{}`", input.name));
            }
            if input.one_hot && (!client || !input.integer || input.shape.last().is_none_or(|&d| d == 0)) {
                return Err(format!("input `{}`: only a client's integer input of rank 1 or more with a positive depth can be one-hot", input.name));
            }
            state[input.slot] = State::Live;
            from_input[input.slot] = client;
            is_weight[input.slot] = !client;
        }
        for (k, instr) in self.body.iter().enumerate() {
            let at = || format!("instruction {k} ({}, layer `{}`)", instr.op.name(), instr.layer);
            for &a in &instr.args {
                check_slot(a)?;
                match state[a] {
                    State::Unwritten => return Err(format!("{} reads %{a} before it is written", at())),
                    // Weights are shared again when a freed one is read.
                    State::Freed if !is_weight[a] => return Err(format!("{} reads %{a} after it is freed", at())),
                    _ => {}
                }
            }
            check_slot(instr.out)?;
            if state[instr.out] != State::Unwritten {
                return Err(format!("{} writes %{} a second time", at(), instr.out));
            }
            let args: Vec<&[usize]> = instr.args.iter().map(|&a| self.slots[a].shape.as_slice()).collect();
            check_instr(&instr.op, &args, &self.slots[instr.out].shape).map_err(|e| format!("{}: {e}", at()))?;
            state[instr.out] = State::Live;
            from_input[instr.out] = instr.args.iter().any(|&a| from_input[a]);
            for &f in &instr.free_after {
                check_slot(f)?;
                if state[f] == State::Unwritten {
                    return Err(format!("{} frees %{f}, which is not written yet", at()));
                }
                state[f] = State::Freed;
            }
        }
        for output in &self.outputs {
            check_slot(output.slot)?;
            match state[output.slot] {
                State::Unwritten => return Err(format!("output `{}` is never computed", output.name)),
                State::Freed => return Err(format!("output `{}` is freed before it is revealed", output.name)),
                State::Live => {}
            }
            if !from_input[output.slot] {
                return Err(format!("output `{}` does not depend on the client's input (it would reveal the model owner's weights)", output.name));
            }
            if output.shape != self.slots[output.slot].shape {
                return Err(format!("output `{}` disagrees with its slot's shape", output.name));
            }
            if let Encoding::Fixed { scale } = output.encoding {
                if scale == 0 || scale > 2 * self.scale {
                    return Err(format!(
                        "output `{}` is declared at scale {scale}; a program at scale {} has values at 1 to {} fractional bits",
                        output.name,
                        self.scale,
                        2 * self.scale
                    ));
                }
            }
        }
        // The same caps as the runtime's, on convolution and pooling work sizes too.
        crate::limits::check_program(self)
    }

    /// Bytes of the tensors live at once at the worst moment of an inference, weights and
    /// inputs included, following the program's frees (`free_after`); saturating, so that a
    /// hostile program's shapes cannot overflow it.
    pub fn peak_live_bytes(&self) -> u64 {
        let bytes = |s: Slot| {
            self.slots[s].shape.iter().try_fold(8u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX)
        };
        let mut live: u64 = self.weights.iter().chain(&self.inputs).map(|i| bytes(i.slot)).fold(0, u64::saturating_add);
        let mut peak = live;
        for instr in &self.body {
            live = live.saturating_add(bytes(instr.out));
            peak = peak.max(live);
            for &f in &instr.free_after {
                live = live.saturating_sub(bytes(f));
            }
        }
        peak
    }

    /// Number of backend calls of each kind, and elements scaled down (paper III-D2).
    pub fn scale_down_elements(&self) -> usize {
        self.body
            .iter()
            .filter(|i| matches!(i.op, LOp::ScaleDown { .. }))
            .map(|i| cryptflow_tensor::num_elements(&self.slots[i.out].shape))
            .sum()
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "llil scale={} {{", self.scale)?;
        for w in &self.weights {
            writeln!(f, "  %{} = weight \"{}\" : i64{:?}  # model owner", w.slot, w.name, w.shape)?;
        }
        for i in &self.inputs {
            let kind = if i.one_hot {
                "one-hot integer input"
            } else if i.integer {
                "integer input"
            } else {
                "input"
            };
            writeln!(f, "  %{} = {kind} \"{}\" : i64{:?}  # client", i.slot, i.name, i.shape)?;
        }
        for instr in &self.body {
            let args: Vec<String> = instr.args.iter().map(|a| format!("%{a}")).collect();
            let attrs = instr.op.describe();
            writeln!(
                f,
                "  %{} = {}{}({}){} : i64{:?}  # {}",
                instr.out,
                if instr.op.is_backend_call() { "call " } else { "" },
                instr.op.name(),
                args.join(", "),
                if attrs.is_empty() { String::new() } else { format!(" {{{attrs}}}") },
                self.slots[instr.out].shape,
                instr.layer
            )?;
            if !instr.free_after.is_empty() {
                let freed: Vec<String> = instr.free_after.iter().map(|a| format!("%{a}")).collect();
                writeln!(f, "  free {}", freed.join(", "))?;
            }
        }
        for o in &self.outputs {
            writeln!(f, "  reveal %{} \"{}\" to client as {:?}", o.slot, o.name, o.encoding)?;
        }
        writeln!(f, "}}")
    }
}
