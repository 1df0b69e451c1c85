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
}

impl Program {
    pub fn slot_shape(&self, slot: Slot) -> &[usize] {
        &self.slots[slot].shape
    }

    /// Checks that every slot is written before it is read, exactly once, and that every
    /// output exists: the invariants a party relies on before it starts a session.
    pub fn validate(&self) -> Result<(), String> {
        let mut defined = vec![false; self.slots.len()];
        let check_slot = |slot: Slot| -> Result<(), String> {
            if slot >= self.slots.len() {
                Err(format!("slot %{slot} does not exist"))
            } else {
                Ok(())
            }
        };
        for input in self.weights.iter().chain(&self.inputs) {
            check_slot(input.slot)?;
            if self.slots[input.slot].shape != input.shape {
                return Err(format!("input `{}` disagrees with its slot's shape", input.name));
            }
            defined[input.slot] = true;
        }
        for (k, instr) in self.body.iter().enumerate() {
            for &a in &instr.args {
                check_slot(a)?;
                if !defined[a] {
                    return Err(format!("instruction {k} ({}) reads %{a} before it is written", instr.op.name()));
                }
            }
            check_slot(instr.out)?;
            if std::mem::replace(&mut defined[instr.out], true) {
                return Err(format!("instruction {k} ({}) writes %{} a second time", instr.op.name(), instr.out));
            }
        }
        for output in &self.outputs {
            check_slot(output.slot)?;
            if !defined[output.slot] {
                return Err(format!("output `{}` is never computed", output.name));
            }
        }
        Ok(())
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
            let kind = if i.integer { "integer input" } else { "input" };
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
