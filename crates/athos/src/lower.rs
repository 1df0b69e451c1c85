//! Float-to-fixed conversion and LLIL generation (paper III-B and III-C).
//!
//! Every HLIL value becomes a slot holding ring elements with a known number of fractional
//! bits: `s` for inputs and weights, `2s` right after a multiplication. Where the two kinds
//! meet, the compiler either truncates (`ScaleDown`, a backend call that costs communication
//! or accuracy in most protocols) or raises the smaller scale by a public power of two (free
//! and exact).
//!
//! Placement of `ScaleDown`:
//! - **eager** (the paper's rule `F(MatMul) = MatMul; ScaleDown`): right after every product;
//! - **lazy** (default): a `2s` value is truncated only when it reaches the next multiplication
//!   (or a non-linear call that does not commute with truncation). Additions raise their other
//!   operand instead, biases are encoded at `2s`, and ReLU, MaxPool, average pooling and
//!   ArgMax run on the `2s` value directly because they commute with an arithmetic shift:
//!   `max(a >> s, b >> s) = max(a, b) >> s`. Residual additions and pooling then need one
//!   truncation where eager placement needs two, or truncate after pooling on fewer elements.

use std::collections::HashMap;

use cryptflow_ir::hlil::{Graph, NodeId, Op};
use cryptflow_ir::llil::{encode_with, Encoding, Rounding, Instr, LOp, Output, Owner, Program, SecretInput, Slot, SlotInfo};
use cryptflow_tensor::{kernels, movement, num_elements, Layout, RingTensor, Tensor};

use crate::CompileError;

/// Where ScaleDowns go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleDownPlacement {
    Eager,
    Lazy,
}

/// Fixed-point encoding of one lowered value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enc {
    /// Fixed point with this many fractional bits.
    Fixed(u32),
    /// A plain integer (an ArgMax index).
    Integer,
}

#[derive(Clone, Copy, Debug)]
struct Value {
    slot: Slot,
    enc: Enc,
}

/// The LLIL program, the model owner's fixed-point weights (in `program.weights` order), and
/// the number of fractional bits of every HLIL node's value (for headroom analysis).
pub struct Lowered {
    pub program: Program,
    pub weights: Vec<RingTensor>,
    pub fractional_bits: Vec<Option<u32>>,
    /// Low-headroom warnings about the weights and the scale (see [`crate::headroom`]): the
    /// program works, but secure truncation may fail on some elements.
    pub warnings: Vec<String>,
}

pub fn lower(graph: &Graph, scale: u32, placement: ScaleDownPlacement, rounding: Rounding) -> Result<Lowered, CompileError> {
    crate::headroom::check_scale(scale)?;
    let mut l = Lowering {
        graph,
        s: scale,
        placement,
        rounding,
        slots: Vec::new(),
        body: Vec::new(),
        weights: Vec::new(),
        weight_values: Vec::new(),
        inputs: Vec::new(),
        values: vec![None; graph.nodes.len()],
        weight_slots: HashMap::new(),
        weight_reach: Vec::new(),
        layer: String::new(),
    };
    for (id, node) in graph.nodes.iter().enumerate() {
        l.layer = node.name.clone();
        let value = l.lower_node(id).map_err(|reason| CompileError::Lowering {
            node: node.name.clone(),
            op: node.op.name(),
            reason,
        })?;
        l.values[id] = value;
    }
    let mut outputs = Vec::new();
    for &o in &graph.outputs {
        let node = &graph.nodes[o];
        let value = l.values[o].ok_or_else(|| CompileError::Lowering {
            node: node.name.clone(),
            op: node.op.name(),
            reason: "a model output that does not depend on the input is not supported".into(),
        })?;
        outputs.push(Output {
            name: node.name.clone(),
            slot: value.slot,
            shape: node.shape.clone(),
            encoding: match value.enc {
                Enc::Fixed(bits) => Encoding::Fixed { scale: bits },
                Enc::Integer => Encoding::Integer,
            },
        });
    }
    let fractional_bits = l
        .values
        .iter()
        .map(|v| match v {
            Some(Value { enc: Enc::Fixed(bits), .. }) => Some(*bits),
            _ => None,
        })
        .collect();
    let mut warnings = crate::headroom::scale_warnings(scale);
    warnings.extend(crate::headroom::check_weights(&l.weight_reach, scale)?);
    let comparison_bits = crate::headroom::comparison_bits(scale);
    let program = Program { scale, slots: l.slots, weights: l.weights, inputs: l.inputs, body: l.body, outputs, comparison_bits };
    program.validate().map_err(CompileError::Internal)?;
    Ok(Lowered { program, weights: l.weight_values, fractional_bits, warnings })
}

struct Lowering<'g> {
    graph: &'g Graph,
    s: u32,
    placement: ScaleDownPlacement,
    rounding: Rounding,
    slots: Vec<SlotInfo>,
    body: Vec<Instr>,
    weights: Vec<SecretInput>,
    weight_values: Vec<RingTensor>,
    inputs: Vec<SecretInput>,
    values: Vec<Option<Value>>,
    /// A weight may be needed at several scales (a bias at `2s`, the same tensor elsewhere at `s`).
    weight_slots: HashMap<(NodeId, u32), Slot>,
    /// Every weight's largest magnitude and the fractional bits it reaches in the program.
    weight_reach: Vec<crate::headroom::WeightReach>,
    layer: String,
}

type Lower<T> = Result<T, String>;

impl Lowering<'_> {
    /// A public constant of the architecture in fixed point; NaN, infinities and values beyond
    /// the ring are refused rather than saturated.
    fn encode(&self, r: f32, bits: u32) -> Lower<u64> {
        if !r.is_finite() {
            return Err(format!("the constant {r} cannot be computed with (NaN or infinite)"));
        }
        let needed = crate::headroom::bits_needed(r.abs(), bits);
        if needed > 64 {
            return Err(format!(
                "the constant {r} needs {needed} bits at {bits} fractional bits: it overflows 64-bit integers; choose a smaller --scale"
            ));
        }
        Ok(encode_with(r, bits, self.rounding))
    }

    /// Checks a (secret) weight's values before encoding them: NaN and infinities are refused,
    /// and the largest magnitude is recorded with the fractional bits it will reach (`bits`,
    /// plus `s` if it is a factor of a product) for [`crate::headroom::check_weights`].
    fn note_weight(&mut self, name: &str, value: &cryptflow_tensor::FloatTensor, reach: u32) -> Lower<()> {
        if let Some((i, v)) = value.data().iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(format!(
                "weight `{name}` holds {v} at element {i} (of shape {:?}): NaN and infinities have no fixed-point value; fix the model",
                value.shape()
            ));
        }
        let max_abs = value.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        match self.weight_reach.iter_mut().find(|w| w.name == name) {
            Some(w) => w.reach_bits = w.reach_bits.max(reach),
            None => self.weight_reach.push(crate::headroom::WeightReach { name: name.to_string(), max_abs, reach_bits: reach, scale: self.s }),
        }
        Ok(())
    }

    fn new_slot(&mut self, shape: Vec<usize>) -> Slot {
        self.slots.push(SlotInfo { shape });
        self.slots.len() - 1
    }

    fn emit(&mut self, op: LOp, args: Vec<Slot>, shape: Vec<usize>) -> Slot {
        let out = self.new_slot(shape);
        self.body.push(Instr { op, args, out, layer: self.layer.clone(), free_after: vec![] });
        out
    }

    fn shape(&self, slot: Slot) -> Vec<usize> {
        self.slots[slot].shape.clone()
    }

    fn is_weight(&self, node: NodeId) -> bool {
        matches!(self.graph.nodes[node].op, Op::Weight(_))
    }

    /// A weight encoded with `bits` fractional bits, as a model-owner secret input; `factor`
    /// when it is multiplied (its products then carry `bits + s` fractional bits).
    fn weight_at(&mut self, node: NodeId, bits: u32, factor: bool) -> Lower<Slot> {
        let graph = self.graph;
        let n = &graph.nodes[node];
        let Op::Weight(t) = &n.op else { unreachable!("weight_at on a non-weight") };
        self.note_weight(&n.name, t, if factor { bits + self.s } else { bits })?;
        if let Some(&slot) = self.weight_slots.get(&(node, bits)) {
            return Ok(slot);
        }
        let slot = self.new_slot(n.shape.clone());
        let name = if bits == self.s { n.name.clone() } else { format!("{}@{}bits", n.name, bits) };
        self.weights.push(SecretInput { name, owner: Owner::ModelOwner, slot, shape: n.shape.clone(), integer: false, one_hot: false });
        let rounding = self.rounding;
        self.weight_values.push(t.map(|v| encode_with(v, bits, rounding)));
        self.weight_slots.insert((node, bits), slot);
        Ok(slot)
    }

    /// A weight the compiler derives from a model weight (e.g. the reciprocal of a divisor),
    /// encoded at `bits`, as a model-owner secret input.
    fn derived_weight(&mut self, name: String, value: cryptflow_tensor::FloatTensor, bits: u32) -> Lower<Slot> {
        self.note_weight(&name, &value, bits + self.s)?;
        let slot = self.new_slot(value.shape().to_vec());
        self.weights.push(SecretInput { name, owner: Owner::ModelOwner, slot, shape: value.shape().to_vec(), integer: false, one_hot: false });
        let rounding = self.rounding;
        self.weight_values.push(value.map(|v| encode_with(v, bits, rounding)));
        Ok(slot)
    }

    /// The lowered value of an activation node.
    fn activation(&self, node: NodeId) -> Lower<Value> {
        self.values[node].ok_or_else(|| format!("`{}` is not an activation", self.graph.nodes[node].name))
    }

    fn fixed_bits(&self, v: Value) -> Lower<u32> {
        match v.enc {
            Enc::Fixed(bits) => Ok(bits),
            Enc::Integer => Err("an ArgMax index cannot be used in arithmetic".into()),
        }
    }

    /// Brings a value to exactly `bits` fractional bits: truncate down, or raise exactly.
    fn rescale(&mut self, v: Value, bits: u32) -> Lower<Value> {
        let have = self.fixed_bits(v)?;
        let shape = self.shape(v.slot);
        let slot = if have > bits {
            self.emit(LOp::ScaleDown { shift: have - bits }, vec![v.slot], shape)
        } else if have < bits {
            if bits - have >= 62 {
                return Err(format!("cannot raise a value from {have} to {bits} fractional bits"));
            }
            self.emit(LOp::MulPublic { value: 1i64 << (bits - have) }, vec![v.slot], shape)
        } else {
            v.slot
        };
        Ok(Value { slot, enc: Enc::Fixed(bits) })
    }

    /// An operand of a multiplication: at scale `s`.
    fn factor(&mut self, node: NodeId) -> Lower<Value> {
        if self.is_weight(node) {
            return Ok(Value { slot: self.weight_at(node, self.s, true)?, enc: Enc::Fixed(self.s) });
        }
        let v = self.activation(node)?;
        self.rescale(v, self.s)
    }

    /// The two operands of a product and the fractional bits of the result: both at scale
    /// `s` (the product at `2s`), except one-hot rows, which stay exact integers (the product
    /// keeps the other operand's scale: a lookup costs no truncation).
    fn factors(&mut self, a: NodeId, b: NodeId) -> Lower<(Value, Value, u32)> {
        // Only one-hot rows (and data movement of them) have 0 fractional bits.
        let exact = |l: &Self, n: NodeId| !l.is_weight(n) && matches!(l.values[n], Some(Value { enc: Enc::Fixed(0), .. }));
        let fa = if exact(self, a) { self.activation(a)? } else { self.factor(a)? };
        let fb = if exact(self, b) { self.activation(b)? } else { self.factor(b)? };
        let bits = self.fixed_bits(fa)? + self.fixed_bits(fb)?;
        Ok((fa, fb, bits))
    }

    /// An operand of an addition at `bits` fractional bits.
    fn term(&mut self, node: NodeId, bits: u32) -> Lower<Value> {
        if self.is_weight(node) {
            return Ok(Value { slot: self.weight_at(node, bits, false)?, enc: Enc::Fixed(bits) });
        }
        let v = self.activation(node)?;
        self.rescale(v, bits)
    }

    /// After a product at `2s`: eager placement truncates at once.
    fn product(&mut self, slot: Slot, bits: u32) -> Lower<Value> {
        let v = Value { slot, enc: Enc::Fixed(bits) };
        match self.placement {
            ScaleDownPlacement::Eager => self.rescale(v, self.s),
            ScaleDownPlacement::Lazy => Ok(v),
        }
    }

    fn broadcast(&mut self, v: Value, shape: &[usize]) -> Value {
        if self.slots[v.slot].shape == shape {
            return v;
        }
        Value { slot: self.emit(LOp::BroadcastTo, vec![v.slot], shape.to_vec()), ..v }
    }

    /// Bits at which an addition of these operands happens: the larger scale of its
    /// activation operands (weights follow the activations).
    fn sum_bits(&self, operands: &[NodeId]) -> Lower<u32> {
        let mut bits = None;
        for &o in operands {
            if !self.is_weight(o) {
                let b = self.fixed_bits(self.activation(o)?)?;
                bits = Some(bits.map_or(b, |x: u32| x.max(b)));
            }
        }
        Ok(match self.placement {
            ScaleDownPlacement::Lazy => bits.unwrap_or(self.s),
            ScaleDownPlacement::Eager => self.s,
        })
    }

    fn add_channel_bias(&mut self, y: Value, bias: NodeId, layout: Layout) -> Lower<Value> {
        let bits = self.fixed_bits(y)?;
        let out_shape = self.shape(y.slot);
        let b = self.weight_at(bias, bits, false)?;
        let mut bias_shape = vec![1; out_shape.len()];
        let channels = self.graph.nodes[bias].shape[0];
        match layout {
            Layout::ChannelsFirst => bias_shape[1] = channels,
            Layout::ChannelsLast => *bias_shape.last_mut().unwrap() = channels,
        }
        let reshaped = self.emit(LOp::Reshape, vec![b], bias_shape);
        let full = self.emit(LOp::BroadcastTo, vec![reshaped], out_shape.clone());
        Ok(Value { slot: self.emit(LOp::Add, vec![y.slot, full], out_shape), enc: y.enc })
    }

    fn relu(&mut self, v: Value) -> Value {
        let shape = self.shape(v.slot);
        Value { slot: self.emit(LOp::Relu, vec![v.slot], shape), enc: v.enc }
    }

    fn add_public(&mut self, v: Value, c: f32) -> Lower<Value> {
        let bits = self.fixed_bits(v)?;
        let shape = self.shape(v.slot);
        let c = self.encode(c, bits)?;
        Ok(Value { slot: self.emit(LOp::AddPublic { value: Tensor::scalar(c) }, vec![v.slot], shape), enc: v.enc })
    }

    /// `v * c` for a public real `c`: exact when `c` is a small integer, else a fixed-point
    /// product with `rho_s(c)` (a multiplication, so it adds `s` fractional bits).
    fn mul_public(&mut self, v: Value, c: f32) -> Lower<Value> {
        let shape = self.shape(v.slot);
        if c.fract() == 0.0 && c.abs() < (1u64 << 20) as f32 {
            let slot = self.emit(LOp::MulPublic { value: c as i64 }, vec![v.slot], shape);
            return Ok(Value { slot, enc: v.enc });
        }
        let v = self.rescale(v, self.s)?;
        let c = self.encode(c, self.s)? as i64;
        let slot = self.emit(LOp::MulPublic { value: c }, vec![v.slot], shape);
        self.product(slot, 2 * self.s)
    }

    fn lower_node(&mut self, id: NodeId) -> Lower<Option<Value>> {
        let node = &self.graph.nodes[id];
        let shape = node.shape.clone();
        let inputs = node.inputs.clone();
        let s = self.s;
        let value = match &node.op {
            Op::Weight(_) => return Ok(None),
            Op::Input => {
                let slot = self.new_slot(shape.clone());
                self.inputs.push(SecretInput { name: node.name.clone(), owner: Owner::Client, slot, shape, integer: false, one_hot: false });
                Value { slot, enc: Enc::Fixed(s) }
            }
            Op::IntegerInput => {
                // Used only through one-hot rows: nothing to share as plain integers.
                let only_one_hot = self.graph.nodes.iter().filter(|n| n.inputs.contains(&id)).all(|n| matches!(n.op, Op::OneHot { .. }));
                if only_one_hot && !self.graph.outputs.contains(&id) {
                    return Ok(None);
                }
                // Shared exactly as integers, raised to the scale locally (exact).
                let slot = self.new_slot(shape.clone());
                self.inputs.push(SecretInput { name: node.name.clone(), owner: Owner::Client, slot, shape: shape.clone(), integer: true, one_hot: false });
                Value { slot: self.emit(LOp::MulPublic { value: 1i64 << s }, vec![slot], shape), enc: Enc::Fixed(s) }
            }
            Op::OneHot { .. } => {
                // The client shares the 0/1 rows as exact integers (0 fractional bits), so a
                // product with them (a table lookup) needs no truncation.
                let ids = &self.graph.nodes[inputs[0]];
                if ids.op != Op::IntegerInput {
                    return Err(format!("one-hot rows of `{}`, which is not an integer input", ids.name));
                }
                let slot = self.new_slot(shape.clone());
                self.inputs.push(SecretInput { name: ids.name.clone(), owner: Owner::Client, slot, shape, integer: true, one_hot: true });
                Value { slot, enc: Enc::Fixed(0) }
            }
            Op::Unary(f) => {
                let x = self.factor(inputs[0])?;
                Value { slot: self.emit(LOp::Unary(*f), vec![x.slot], shape), enc: Enc::Fixed(s) }
            }
            Op::Max | Op::Min => {
                // Both commute with the scale: compare at the operands' common scale.
                let bits = self.sum_bits(&inputs)?;
                let a = self.term(inputs[0], bits)?;
                let b = self.term(inputs[1], bits)?;
                let a = self.broadcast(a, &shape);
                let b = self.broadcast(b, &shape);
                let op = if node.op == Op::Max { LOp::Max } else { LOp::Min };
                Value { slot: self.emit(op, vec![a.slot, b.slot], shape), enc: Enc::Fixed(bits) }
            }
            Op::Div => {
                if let Some(d) = self.graph.weight_value(inputs[1]) {
                    // A weight divisor is known to its owner: multiply by its reciprocal.
                    let recip = d.map(|v| 1.0 / v);
                    if recip.data().iter().any(|v| !v.is_finite()) {
                        return Err("division by a weight with a zero element".into());
                    }
                    let name = format!("{}/reciprocal", self.graph.nodes[inputs[1]].name);
                    let w = self.derived_weight(name, recip, s)?;
                    let a = self.factor(inputs[0])?;
                    let a = self.broadcast(a, &shape);
                    let w = self.broadcast(Value { slot: w, enc: Enc::Fixed(s) }, &shape);
                    let y = self.emit(LOp::Mul, vec![a.slot, w.slot], shape);
                    self.product(y, 2 * s)?
                } else {
                    // The divisor stays at its own shape when it broadcasts to the result's
                    // (a per-row divisor): the secure division normalises it once per row.
                    let a = self.factor(inputs[0])?;
                    let b = self.factor(inputs[1])?;
                    let a = self.broadcast(a, &shape);
                    let b_shape = self.shape(b.slot);
                    let b = if b_shape.len() == shape.len() { b } else {
                        let mut padded = vec![1; shape.len() - b_shape.len()];
                        padded.extend(&b_shape);
                        Value { slot: self.emit(LOp::Reshape, vec![b.slot], padded), enc: b.enc }
                    };
                    Value { slot: self.emit(LOp::Div, vec![a.slot, b.slot], shape), enc: Enc::Fixed(s) }
                }
            }
            Op::ReduceMax { axes, keep_dims } | Op::ReduceMin { axes, keep_dims } => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                let op = if matches!(node.op, Op::ReduceMax { .. }) {
                    LOp::ReduceMax { axes: axes.clone(), keep_dims: *keep_dims }
                } else {
                    LOp::ReduceMin { axes: axes.clone(), keep_dims: *keep_dims }
                };
                Value { slot: self.emit(op, vec![x.slot], shape), enc: x.enc }
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let x = self.factor(inputs[0])?;
                let op = if matches!(node.op, Op::Softmax { .. }) { LOp::Softmax { axis: *axis } } else { LOp::LogSoftmax { axis: *axis } };
                Value { slot: self.emit(op, vec![x.slot], shape), enc: Enc::Fixed(s) }
            }
            Op::Normalize { axes, epsilon } => {
                let x = self.factor(inputs[0])?;
                Value { slot: self.emit(LOp::Normalize { axes: axes.clone(), epsilon: *epsilon }, vec![x.slot], shape), enc: Enc::Fixed(s) }
            }
            Op::Prelu => {
                let x = self.factor(inputs[0])?;
                let slope = self.factor(inputs[1])?;
                let slope = self.broadcast(slope, &shape);
                Value { slot: self.emit(LOp::Prelu, vec![x.slot, slope.slot], shape), enc: Enc::Fixed(s) }
            }
            Op::MulConst(c) => {
                let x = self.factor(inputs[0])?;
                let values = c.data().iter().map(|&v| self.encode(v, s)).collect::<Lower<Vec<u64>>>()?;
                let values = Tensor::new(c.shape().to_vec(), values).map_err(|e| e.to_string())?;
                let values = if values.shape() == shape.as_slice() {
                    values
                } else {
                    movement::broadcast_to(&values, &shape).map_err(|e| e.to_string())?
                };
                let y = self.emit(LOp::MulPublicTensor { values }, vec![x.slot], shape);
                self.product(y, 2 * s)?
            }
            Op::Conv(g) | Op::ConvTranspose(g) => {
                let x = self.factor(inputs[0])?;
                let w = self.factor(inputs[1])?;
                let op = match &node.op {
                    Op::Conv(_) => LOp::Conv(g.clone()),
                    _ => LOp::ConvTranspose(g.clone()),
                };
                let y = self.emit(op, vec![x.slot, w.slot], shape);
                let y = self.product(y, 2 * s)?;
                match inputs.get(2) {
                    Some(&bias) => self.add_channel_bias(y, bias, g.layout)?,
                    None => y,
                }
            }
            Op::MatMul if self.graph.nodes[inputs[1]].shape.len() > 2 => {
                // Batched: both operands broadcast to the batch axes, flattened to [B, M, K] and
                // [B, K, N], one batched product of two secrets.
                let (a, b, bits) = self.factors(inputs[0], inputs[1])?;
                let r = shape.len();
                let (m, n) = (shape[r - 2], shape[r - 1]);
                let k = *self.shape(a.slot).last().unwrap();
                let batch = num_elements(&shape[..r - 2]);
                let mut a_full = shape[..r - 2].to_vec();
                a_full.extend([m, k]);
                let mut b_full = shape[..r - 2].to_vec();
                b_full.extend([k, n]);
                let a = self.broadcast(a, &a_full);
                let b = self.broadcast(b, &b_full);
                let a3 = self.emit(LOp::Reshape, vec![a.slot], vec![batch, m, k]);
                let b3 = self.emit(LOp::Reshape, vec![b.slot], vec![batch, k, n]);
                let y = self.emit(LOp::BatchMatMul, vec![a3, b3], vec![batch, m, n]);
                let y = self.emit(LOp::Reshape, vec![y], shape);
                self.product(y, bits)?
            }
            Op::MatMul => {
                let (a, b, bits) = self.factors(inputs[0], inputs[1])?;
                let a_shape = self.shape(a.slot);
                let k = *a_shape.last().unwrap();
                let rows = num_elements(&a_shape) / k.max(1);
                let a2 = if a_shape.len() == 2 { a.slot } else { self.emit(LOp::Reshape, vec![a.slot], vec![rows, k]) };
                let n = self.shape(b.slot)[1];
                let y = self.emit(LOp::MatMul, vec![a2, b.slot], vec![rows, n]);
                let y = if shape.len() == 2 { y } else { self.emit(LOp::Reshape, vec![y], shape) };
                self.product(y, bits)?
            }
            Op::Add | Op::Sub => {
                let bits = self.sum_bits(&inputs)?;
                let a = self.term(inputs[0], bits)?;
                let b = self.term(inputs[1], bits)?;
                let a = self.broadcast(a, &shape);
                let b = self.broadcast(b, &shape);
                let op = if node.op == Op::Add { LOp::Add } else { LOp::Sub };
                Value { slot: self.emit(op, vec![a.slot, b.slot], shape), enc: Enc::Fixed(bits) }
            }
            Op::Mul => {
                let a = self.factor(inputs[0])?;
                let b = self.factor(inputs[1])?;
                let a = self.broadcast(a, &shape);
                let b = self.broadcast(b, &shape);
                let y = self.emit(LOp::Mul, vec![a.slot, b.slot], shape);
                self.product(y, 2 * s)?
            }
            Op::Neg => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                Value { slot: self.emit(LOp::Neg, vec![x.slot], shape), enc: x.enc }
            }
            Op::MulScalar(c) => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                self.mul_public(x, *c)?
            }
            Op::DivScalar(c) => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                if c.fract() == 0.0 && c.abs() < (1u64 << 40) as f32 {
                    let divisor = Tensor::scalar(c.abs() as u64);
                    let q = self.emit(LOp::Divide { divisors: divisor }, vec![x.slot], shape.clone());
                    let q = if *c < 0.0 { self.emit(LOp::Neg, vec![q], shape) } else { q };
                    Value { slot: q, enc: x.enc }
                } else {
                    self.mul_public(x, 1.0 / c)?
                }
            }
            Op::AddScalar(c) => {
                let x = self.activation(inputs[0])?;
                self.add_public(x, *c)?
            }
            Op::Relu => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                self.relu(x)
            }
            Op::Clip { min, max } => {
                // clip(x) = lo + relu(x - lo) - relu(x - hi): two comparisons, exact.
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                let (lo, hi) = (*min, *max);
                let lower = if lo.is_finite() {
                    let shifted = if lo == 0.0 { x } else { self.add_public(x, -lo)? };
                    Some(self.relu(shifted))
                } else {
                    None
                };
                let upper = if hi.is_finite() {
                    let shifted = self.add_public(x, -hi)?;
                    Some(self.relu(shifted))
                } else {
                    None
                };
                match (lower, upper) {
                    (Some(l), Some(u)) => {
                        let d = Value { slot: self.emit(LOp::Sub, vec![l.slot, u.slot], shape), enc: x.enc };
                        if lo == 0.0 { d } else { self.add_public(d, lo)? }
                    }
                    (Some(l), None) => if lo == 0.0 { l } else { self.add_public(l, lo)? },
                    (None, Some(u)) => Value { slot: self.emit(LOp::Sub, vec![x.slot, u.slot], shape), enc: x.enc },
                    (None, None) => x,
                }
            }
            Op::LeakyRelu { alpha } => {
                // leaky(x) = alpha * x + (1 - alpha) * relu(x), for 0 <= alpha <= 1.
                if !(0.0..=1.0).contains(alpha) {
                    return Err(format!("LeakyRelu alpha {alpha} outside [0, 1] is not supported"));
                }
                let x = self.activation(inputs[0])?;
                let x = self.rescale(x, s)?;
                let r = self.relu(x);
                let (a, b) = (self.encode(*alpha, s)? as i64, self.encode(1.0 - alpha, s)? as i64);
                let ax = self.emit(LOp::MulPublic { value: a }, vec![x.slot], shape.clone());
                let br = self.emit(LOp::MulPublic { value: b }, vec![r.slot], shape.clone());
                let sum = self.emit(LOp::Add, vec![ax, br], shape);
                self.product(sum, 2 * s)?
            }
            Op::MaxPool(g) => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                Value { slot: self.emit(LOp::MaxPool(g.clone()), vec![x.slot], shape), enc: x.enc }
            }
            Op::AvgPool(g) => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                let sums = self.emit(LOp::SumPool(g.clone()), vec![x.slot], shape.clone());
                let divisors = kernels::pool_divisors(g);
                let divisors = match divisors.data().first() {
                    Some(&d) if divisors.data().iter().all(|&v| v == d) => Tensor::scalar(d),
                    _ => divisors,
                };
                Value { slot: self.emit(LOp::Divide { divisors }, vec![sums], shape), enc: x.enc }
            }
            Op::BatchNorm { .. } => return Err("internal: batch norms are folded before lowering".into()),
            Op::Reshape { .. } => self.unary_movement(inputs[0], LOp::Reshape, shape)?,
            Op::Transpose { perm } => self.unary_movement(inputs[0], LOp::Transpose { perm: perm.clone() }, shape)?,
            Op::Slice { starts, ends, steps } => self.unary_movement(
                inputs[0],
                LOp::Slice { starts: starts.clone(), ends: ends.clone(), steps: steps.clone() },
                shape,
            )?,
            Op::Gather { axis, indices } => {
                self.unary_movement(inputs[0], LOp::Gather { axis: *axis, indices: indices.clone() }, shape)?
            }
            Op::Pad { pads_begin, pads_end, value } => {
                let x = self.activation(inputs[0])?;
                let padded = self.emit(LOp::Pad { pads_begin: pads_begin.clone(), pads_end: pads_end.clone() }, vec![x.slot], shape);
                let padded = Value { slot: padded, enc: x.enc };
                if *value == 0.0 {
                    padded
                } else {
                    let bits = self.fixed_bits(x)?;
                    let fill = self.encode(*value, bits)?;
                    let border = movement::pad(&RingTensor::zeros(self.shape(x.slot)), pads_begin, pads_end, fill)
                        .map_err(|e| e.to_string())?;
                    let out_shape = self.shape(padded.slot);
                    Value { slot: self.emit(LOp::AddPublic { value: border }, vec![padded.slot], out_shape), enc: x.enc }
                }
            }
            Op::Concat { axis } => {
                let bits = self.sum_bits(&inputs)?;
                let mut parts = Vec::new();
                for &i in &inputs {
                    parts.push(self.term(i, bits)?.slot);
                }
                Value { slot: self.emit(LOp::Concat { axis: *axis }, parts, shape), enc: Enc::Fixed(bits) }
            }
            Op::ReduceMean { axes, keep_dims } => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                let count: usize = axes.iter().map(|&a| self.graph.nodes[inputs[0]].shape[a]).product();
                let sums = self.emit(LOp::ReduceSum { axes: axes.clone(), keep_dims: *keep_dims }, vec![x.slot], shape.clone());
                let q = if count == 1 { sums } else { self.emit(LOp::Divide { divisors: Tensor::scalar(count as u64) }, vec![sums], shape) };
                Value { slot: q, enc: x.enc }
            }
            Op::ArgMax { axis, keep_dims } => {
                let x = self.activation(inputs[0])?;
                self.fixed_bits(x)?;
                Value { slot: self.emit(LOp::ArgMax { axis: *axis, keep_dims: *keep_dims }, vec![x.slot], shape), enc: Enc::Integer }
            }
        };
        Ok(Some(value))
    }

    fn unary_movement(&mut self, input: NodeId, op: LOp, shape: Vec<usize>) -> Lower<Value> {
        let x = self.activation(input)?;
        Ok(Value { slot: self.emit(op, vec![x.slot], shape), enc: x.enc })
    }
}
