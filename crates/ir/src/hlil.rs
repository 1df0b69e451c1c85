//! HLIL: a statically shaped graph of float tensor operations (paper Fig. 5).
//!
//! Nodes are kept in topological order; a node's id is its index. Every node has exactly one
//! output whose shape is known when the node is added ([`Graph::add`] infers it), so later
//! passes never meet an unknown shape. Multi-output model operations (Split) are expressed by
//! the front ends as several single-output nodes.

use std::fmt;

use cryptflow_tensor::{
    kernels, movement, num_elements, ConvGeometry, FloatTensor, Layout, PoolGeometry, ShapeError, Tensor,
};
use serde::{Deserialize, Serialize};

pub type NodeId = usize;

/// An HLIL operation. Inputs are listed per variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A model input, supplied by the client at inference time. No inputs.
    Input,
    /// A model parameter, private to the model owner. No inputs.
    Weight(FloatTensor),
    /// Inputs: x, filter, optional bias `[C_out]`.
    Conv(ConvGeometry),
    /// Inputs: x, filter, optional bias `[C_out]`.
    ConvTranspose(ConvGeometry),
    /// Inputs: a `[.., M, K]`, b `[K, N]`.
    MatMul,
    /// Elementwise with NumPy broadcasting. Inputs: a, b.
    Add,
    Sub,
    Mul,
    /// Elementwise negation. Inputs: x.
    Neg,
    /// `x * c` for a public scalar `c` (part of the architecture, not a weight). Inputs: x.
    MulScalar(f32),
    /// `x / c` for a public scalar `c`. Inputs: x.
    DivScalar(f32),
    /// `x + c` for a public scalar `c`. Inputs: x.
    AddScalar(f32),
    Relu,
    /// Bounds may be infinite (a missing bound).
    Clip {
        #[serde(with = "float_or_infinity")]
        min: f32,
        #[serde(with = "float_or_infinity")]
        max: f32,
    },
    LeakyRelu { alpha: f32 },
    MaxPool(PoolGeometry),
    AvgPool(PoolGeometry),
    /// Inference batch normalisation over `channel_axis`.
    /// Inputs: x, scale, bias, mean, variance (each `[C]`).
    BatchNorm { epsilon: f32, channel_axis: usize },
    /// Same elements, the node's shape.
    Reshape { shape: Vec<usize> },
    Transpose { perm: Vec<usize> },
    Pad { pads_begin: Vec<usize>, pads_end: Vec<usize>, value: f32 },
    /// Inputs: two or more tensors.
    Concat { axis: usize },
    /// Normalised per-axis slice (see [`movement::slice`]).
    Slice { starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64> },
    /// Picks constant `indices` along `axis`; the axis keeps extent `indices.len()`.
    Gather { axis: usize, indices: Vec<usize> },
    /// Mean over sorted distinct `axes`.
    ReduceMean { axes: Vec<usize>, keep_dims: bool },
    /// Index of the maximum along `axis`.
    ArgMax { axis: usize, keep_dims: bool },
}

impl Op {
    /// The operation's name as printed in `--emit hlil`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Weight(_) => "Weight",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Neg => "Neg",
            Op::MulScalar(_) => "MulScalar",
            Op::DivScalar(_) => "DivScalar",
            Op::AddScalar(_) => "AddScalar",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::MaxPool(_) => "MaxPool",
            Op::AvgPool(_) => "AvgPool",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::ArgMax { .. } => "ArgMax",
        }
    }

    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        match self {
            Op::Input | Op::Weight(_) => 0..=0,
            Op::Conv(_) | Op::ConvTranspose(_) => 2..=3,
            Op::MatMul | Op::Add | Op::Sub | Op::Mul => 2..=2,
            Op::BatchNorm { .. } => 5..=5,
            Op::Concat { .. } => 1..=usize::MAX,
            _ => 1..=1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name from the model (node or tensor name), used in reports and error messages.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
}

/// A whole HLIL program: inputs, a topologically ordered node list, outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub inputs: Vec<NodeId>,
    pub outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model input of a static shape.
    pub fn input(&mut self, name: impl Into<String>, shape: Vec<usize>) -> NodeId {
        let id = self.push(Node { name: name.into(), op: Op::Input, inputs: vec![], shape });
        self.inputs.push(id);
        id
    }

    /// Adds a model parameter.
    pub fn weight(&mut self, name: impl Into<String>, value: FloatTensor) -> NodeId {
        let shape = value.shape().to_vec();
        self.push(Node { name: name.into(), op: Op::Weight(value), inputs: vec![], shape })
    }

    /// Adds an operation, inferring its output shape. When every input is a weight, the
    /// operation is evaluated now and a weight is added in its place (constant folding).
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> Result<NodeId, ShapeError> {
        let name = name.into();
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.nodes[i].shape.as_slice()).collect();
        let shape = infer_shape(&op, &shapes).map_err(|e| ShapeError::new(format!("{} `{}`: {}", op.name(), name, e)))?;
        let all_weights = !inputs.is_empty() && inputs.iter().all(|&i| matches!(self.nodes[i].op, Op::Weight(_)));
        if all_weights {
            let values: Vec<&FloatTensor> = inputs
                .iter()
                .map(|&i| match &self.nodes[i].op {
                    Op::Weight(t) => t,
                    _ => unreachable!("checked above"),
                })
                .collect();
            let node = Node { name: name.clone(), op, inputs: inputs.to_vec(), shape };
            let value = eval_op(&node, &values)?;
            return Ok(self.weight(name, value));
        }
        Ok(self.push(Node { name, op, inputs: inputs.to_vec(), shape }))
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// The value of a weight node, if it is one.
    pub fn weight_value(&self, id: NodeId) -> Option<&FloatTensor> {
        match &self.nodes[id].op {
            Op::Weight(t) => Some(t),
            _ => None,
        }
    }

    /// For each node, the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            for &input in &node.inputs {
                users[input].push(id);
            }
        }
        users
    }

    /// Removes nodes that no output depends on (inputs are always kept) and renumbers.
    pub fn prune(&mut self) {
        let mut live = vec![false; self.nodes.len()];
        for &o in &self.outputs {
            live[o] = true;
        }
        for &i in &self.inputs {
            live[i] = true;
        }
        for id in (0..self.nodes.len()).rev() {
            if live[id] {
                for &input in &self.nodes[id].inputs {
                    live[input] = true;
                }
            }
        }
        let mut new_id = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (id, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if live[id] {
                new_id[id] = nodes.len();
                let mut node = node;
                node.inputs.iter_mut().for_each(|i| *i = new_id[*i]);
                nodes.push(node);
            }
        }
        self.nodes = nodes;
        self.inputs.iter_mut().for_each(|i| *i = new_id[*i]);
        self.outputs.iter_mut().for_each(|i| *i = new_id[*i]);
    }

    /// Number of weight parameters (elements of all weight nodes).
    pub fn parameter_count(&self) -> usize {
        self.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Weight(t) => Some(t.len()),
                _ => None,
            })
            .sum()
    }

    /// Checks the invariants every pass relies on: topological order, arities, shapes.
    pub fn validate(&self) -> Result<(), ShapeError> {
        for (id, node) in self.nodes.iter().enumerate() {
            if !node.op.arity().contains(&node.inputs.len()) {
                return Err(ShapeError::new(format!(
                    "{} `{}` has {} inputs",
                    node.op.name(),
                    node.name,
                    node.inputs.len()
                )));
            }
            if let Some(&bad) = node.inputs.iter().find(|&&i| i >= id) {
                return Err(ShapeError::new(format!("node `{}` reads node {} that comes after it", node.name, bad)));
            }
            if matches!(node.op, Op::Weight(_) | Op::Input) {
                // Sources carry their declared shape (a weight's even when its value is stripped).
                continue;
            }
            let shapes: Vec<&[usize]> = node.inputs.iter().map(|&i| self.nodes[i].shape.as_slice()).collect();
            let shape = infer_shape(&node.op, &shapes)?;
            if shape != node.shape {
                return Err(ShapeError::new(format!(
                    "node `{}` is declared {:?} but computes {:?}",
                    node.name, node.shape, shape
                )));
            }
        }
        for &o in self.outputs.iter().chain(&self.inputs) {
            if o >= self.nodes.len() {
                return Err(ShapeError::new(format!("graph names node {o}, which does not exist")));
            }
        }
        Ok(())
    }
}

fn check_rank(shape: &[usize], rank: usize, what: &str) -> Result<(), ShapeError> {
    if shape.len() != rank {
        return Err(ShapeError::new(format!("{what} must have rank {rank}, got shape {shape:?}")));
    }
    Ok(())
}

fn check_shape(actual: &[usize], expected: &[usize], what: &str) -> Result<(), ShapeError> {
    if actual != expected {
        return Err(ShapeError::new(format!("{what} has shape {actual:?}, expected {expected:?}")));
    }
    Ok(())
}

/// The output shape of `op` applied to inputs of the given shapes, or why it cannot be applied.
pub fn infer_shape(op: &Op, inputs: &[&[usize]]) -> Result<Vec<usize>, ShapeError> {
    if !op.arity().contains(&inputs.len()) {
        return Err(ShapeError::new(format!("{} cannot take {} inputs", op.name(), inputs.len())));
    }
    Ok(match op {
        Op::Input => return Err(ShapeError::new("inputs are added with Graph::input")),
        Op::Weight(t) => t.shape().to_vec(),
        Op::Conv(g) => {
            validate_conv(g, false)?;
            check_shape(inputs[0], &g.input_shape(), "input")?;
            check_shape(inputs[1], &g.conv_filter_shape(), "filter")?;
            if let Some(bias) = inputs.get(2) {
                check_shape(bias, &[g.out_channels], "bias")?;
            }
            g.conv_output_shape()
        }
        Op::ConvTranspose(g) => {
            validate_conv(g, true)?;
            check_shape(inputs[0], &g.input_shape(), "input")?;
            check_shape(inputs[1], &g.conv_transpose_filter_shape(), "filter")?;
            if let Some(bias) = inputs.get(2) {
                check_shape(bias, &[g.out_channels], "bias")?;
            }
            g.conv_transpose_output_shape()
        }
        Op::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            if a.is_empty() {
                return Err(ShapeError::new("MatMul of a scalar"));
            }
            check_rank(b, 2, "MatMul right operand")?;
            if a[a.len() - 1] != b[0] {
                return Err(ShapeError::new(format!("MatMul of {a:?} by {b:?}: inner extents differ")));
            }
            let mut out = a.to_vec();
            *out.last_mut().unwrap() = b[1];
            out
        }
        Op::Add | Op::Sub | Op::Mul => movement::broadcast_shapes(inputs[0], inputs[1])?,
        Op::Neg | Op::MulScalar(_) | Op::AddScalar(_) | Op::Relu | Op::Clip { .. } | Op::LeakyRelu { .. } => {
            inputs[0].to_vec()
        }
        Op::DivScalar(c) => {
            if *c == 0.0 || !c.is_finite() {
                return Err(ShapeError::new(format!("division by the constant {c}")));
            }
            inputs[0].to_vec()
        }
        Op::MaxPool(g) | Op::AvgPool(g) => {
            validate_pool(g)?;
            check_shape(inputs[0], &g.input_shape(), "input")?;
            g.output_shape()
        }
        Op::BatchNorm { channel_axis, .. } => {
            let x = inputs[0];
            if *channel_axis >= x.len() {
                return Err(ShapeError::new(format!("channel axis {channel_axis} out of range for {x:?}")));
            }
            for (k, what) in ["scale", "bias", "mean", "variance"].iter().enumerate() {
                check_shape(inputs[k + 1], &[x[*channel_axis]], what)?;
            }
            x.to_vec()
        }
        Op::Reshape { shape } => {
            let target = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if target != Some(num_elements(inputs[0])) {
                return Err(ShapeError::new(format!("cannot reshape {:?} into {:?}", inputs[0], shape)));
            }
            shape.clone()
        }
        Op::Transpose { perm } => {
            let x = inputs[0];
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(ShapeError::new(format!("{perm:?} is not a permutation of the axes of {x:?}")));
            }
            perm.iter().map(|&p| x[p]).collect()
        }
        Op::Pad { pads_begin, pads_end, .. } => {
            let x = inputs[0];
            if pads_begin.len() != x.len() || pads_end.len() != x.len() {
                return Err(ShapeError::new(format!("pads {pads_begin:?}/{pads_end:?} do not match rank of {x:?}")));
            }
            (0..x.len()).map(|i| x[i] + pads_begin[i] + pads_end[i]).collect()
        }
        Op::Concat { axis } => {
            let first = inputs[0];
            if *axis >= first.len() {
                return Err(ShapeError::new(format!("concat axis {axis} out of range for {first:?}")));
            }
            let mut out = first.to_vec();
            out[*axis] = 0;
            for s in inputs {
                if s.len() != first.len() || (0..first.len()).any(|i| i != *axis && s[i] != first[i]) {
                    return Err(ShapeError::new(format!("cannot concatenate {first:?} and {s:?} on axis {axis}")));
                }
                out[*axis] += s[*axis];
            }
            out
        }
        Op::Slice { starts, ends, steps } => {
            let x = inputs[0];
            if starts.len() != x.len() || ends.len() != x.len() || steps.len() != x.len() {
                return Err(ShapeError::new(format!("slice parameters do not match rank of {x:?}")));
            }
            (0..x.len())
                .map(|i| {
                    let (s, e, st) = (starts[i], ends[i], steps[i]);
                    if st == 0 {
                        return Err(ShapeError::new("slice step 0"));
                    }
                    let n = if st > 0 { (e - s + st - 1) / st } else { (s - e + (-st) - 1) / (-st) };
                    Ok(n.max(0) as usize)
                })
                .collect::<Result<_, _>>()?
        }
        Op::Gather { axis, indices } => {
            let x = inputs[0];
            if *axis >= x.len() {
                return Err(ShapeError::new(format!("gather axis {axis} out of range for {x:?}")));
            }
            if let Some(bad) = indices.iter().find(|&&i| i >= x[*axis]) {
                return Err(ShapeError::new(format!("gather index {bad} out of range for axis of extent {}", x[*axis])));
            }
            let mut out = x.to_vec();
            out[*axis] = indices.len();
            out
        }
        Op::ReduceMean { axes, keep_dims } => {
            let x = inputs[0];
            if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= x.len()) {
                return Err(ShapeError::new(format!("bad reduction axes {axes:?} for {x:?}")));
            }
            reduced_shape(x, axes, *keep_dims)
        }
        Op::ArgMax { axis, keep_dims } => {
            let x = inputs[0];
            if *axis >= x.len() {
                return Err(ShapeError::new(format!("argmax axis {axis} out of range for {x:?}")));
            }
            reduced_shape(x, &[*axis], *keep_dims)
        }
    })
}

fn reduced_shape(x: &[usize], axes: &[usize], keep_dims: bool) -> Vec<usize> {
    (0..x.len())
        .filter_map(|i| {
            if axes.contains(&i) {
                keep_dims.then_some(1)
            } else {
                Some(x[i])
            }
        })
        .collect()
}

fn validate_conv(g: &ConvGeometry, transposed: bool) -> Result<(), ShapeError> {
    let r = g.spatial_rank();
    if !(1..=3).contains(&r) {
        return Err(ShapeError::new(format!("convolutions have 1 to 3 spatial axes, not {r}")));
    }
    for (what, v) in [
        ("kernel", &g.kernel),
        ("strides", &g.strides),
        ("dilations", &g.dilations),
        ("pads_begin", &g.pads_begin),
        ("pads_end", &g.pads_end),
        ("output_padding", &g.output_padding),
    ] {
        if v.len() != r {
            return Err(ShapeError::new(format!("{what} {v:?} does not have {r} entries")));
        }
    }
    if g.groups == 0 || !g.in_channels.is_multiple_of(g.groups) || !g.out_channels.is_multiple_of(g.groups) {
        return Err(ShapeError::new(format!(
            "{} groups do not divide {} input and {} output channels",
            g.groups, g.in_channels, g.out_channels
        )));
    }
    if g.kernel.iter().chain(&g.strides).chain(&g.dilations).any(|&v| v == 0) {
        return Err(ShapeError::new("kernel, strides and dilations must be positive"));
    }
    const LIMIT: usize = 1 << 40;
    if g.input.iter().chain(&g.kernel).chain(&g.strides).chain(&g.dilations).chain(&g.pads_begin).chain(&g.pads_end).chain(&g.output_padding).any(|&v| v > LIMIT)
        || g.batch > LIMIT
        || g.in_channels > LIMIT
        || g.out_channels > LIMIT
    {
        return Err(ShapeError::new("convolution extents are implausibly large"));
    }
    for i in 0..r {
        let span = g.dilations[i] * (g.kernel[i] - 1) + 1;
        if transposed {
            let full = g.strides[i] * g.input[i].saturating_sub(1) + g.output_padding[i] + span;
            if g.input[i] == 0 || g.pads_begin[i] + g.pads_end[i] >= full {
                return Err(ShapeError::new(format!(
                    "transposed convolution pads {}+{} leave no output on axis {i} (full extent {full})",
                    g.pads_begin[i], g.pads_end[i]
                )));
            }
        } else {
            if g.input[i] + g.pads_begin[i] + g.pads_end[i] < span {
                return Err(ShapeError::new(format!("kernel span {span} exceeds padded input extent on axis {i}")));
            }
            if g.output_padding[i] != 0 {
                return Err(ShapeError::new("output_padding applies to transposed convolutions only"));
            }
        }
    }
    Ok(())
}

fn validate_pool(g: &PoolGeometry) -> Result<(), ShapeError> {
    let r = g.spatial_rank();
    if !(1..=3).contains(&r) || g.window.len() != r || g.strides.len() != r || g.pads_begin.len() != r || g.pads_end.len() != r {
        return Err(ShapeError::new(format!("inconsistent pooling geometry {g:?}")));
    }
    if g.window.iter().chain(&g.strides).any(|&v| v == 0) {
        return Err(ShapeError::new("pooling window and strides must be positive"));
    }
    for i in 0..r {
        if g.input[i] + g.pads_begin[i] + g.pads_end[i] < g.window[i] {
            return Err(ShapeError::new(format!("pooling window exceeds padded input on axis {i}")));
        }
        if g.pads_begin[i] >= g.window[i] || g.pads_end[i] >= g.window[i] {
            return Err(ShapeError::new(format!("padding on axis {i} is as wide as the pooling window")));
        }
    }
    Ok(())
}

/// Float semantics of one HLIL node, given its input values.
pub fn eval_op(node: &Node, inputs: &[&FloatTensor]) -> Result<FloatTensor, ShapeError> {
    let x = || inputs[0];
    let out = match &node.op {
        Op::Input => return Err(ShapeError::new(format!("input `{}` has no value", node.name))),
        Op::Weight(t) => t.clone(),
        Op::Conv(g) => {
            let y = kernels::conv(x(), inputs[1], g)?;
            add_channel_bias(y, inputs.get(2).copied(), g.layout)?
        }
        Op::ConvTranspose(g) => {
            let y = kernels::conv_transpose(x(), inputs[1], g)?;
            add_channel_bias(y, inputs.get(2).copied(), g.layout)?
        }
        Op::MatMul => {
            let a = x();
            let k = *a.shape().last().unwrap();
            let rows = a.len() / k.max(1);
            let flat = a.clone().reshape(vec![rows, k])?;
            kernels::matmul(&flat, inputs[1])?.reshape(node.shape.clone())?
        }
        Op::Add => broadcast_zip(inputs[0], inputs[1], &node.shape, |a, b| a + b)?,
        Op::Sub => broadcast_zip(inputs[0], inputs[1], &node.shape, |a, b| a - b)?,
        Op::Mul => broadcast_zip(inputs[0], inputs[1], &node.shape, |a, b| a * b)?,
        Op::Neg => x().map(|v| -v),
        Op::MulScalar(c) => x().map(|v| v * c),
        Op::DivScalar(c) => x().map(|v| v / c),
        Op::AddScalar(c) => x().map(|v| v + c),
        Op::Relu => x().map(|v| v.max(0.0)),
        Op::Clip { min, max } => x().map(|v| v.max(*min).min(*max)),
        Op::LeakyRelu { alpha } => x().map(|v| if v >= 0.0 { v } else { alpha * v }),
        Op::MaxPool(g) => kernels::max_pool(x(), g)?,
        Op::AvgPool(g) => {
            let sums = kernels::sum_pool(x(), g)?;
            let divisors = kernels::pool_divisors(g);
            sums.zip_with(&divisors.map(|d| d as f32), |s, d| s / d)?
        }
        Op::BatchNorm { epsilon, channel_axis } => {
            let (scale, bias) = batch_norm_affine(inputs[1], inputs[2], inputs[3], inputs[4], *epsilon);
            let mut shape = vec![1; node.shape.len()];
            shape[*channel_axis] = scale.len();
            let scale = Tensor::new(shape.clone(), scale)?;
            let bias = Tensor::new(shape, bias)?;
            let scaled = broadcast_zip(x(), &scale, &node.shape, |a, b| a * b)?;
            broadcast_zip(&scaled, &bias, &node.shape, |a, b| a + b)?
        }
        Op::Reshape { shape } => x().clone().reshape(shape.clone())?,
        Op::Transpose { perm } => movement::transpose(x(), perm)?,
        Op::Pad { pads_begin, pads_end, value } => movement::pad(x(), pads_begin, pads_end, *value)?,
        Op::Concat { axis } => movement::concat(inputs, *axis)?,
        Op::Slice { starts, ends, steps } => movement::slice(x(), starts, ends, steps)?,
        Op::Gather { axis, indices } => movement::gather(x(), *axis, indices)?,
        Op::ReduceMean { axes, keep_dims } => {
            let count: usize = axes.iter().map(|&a| x().shape()[a]).product();
            kernels::reduce_sum(x(), axes, *keep_dims)?.map(|v| v / count as f32)
        }
        Op::ArgMax { axis, keep_dims } => kernels::argmax(x(), *axis, *keep_dims)?,
    };
    if out.shape() != node.shape.as_slice() {
        return Err(ShapeError::new(format!(
            "{} `{}` produced {:?}, expected {:?}",
            node.op.name(),
            node.name,
            out.shape(),
            node.shape
        )));
    }
    Ok(out)
}

/// Batch normalisation as the per-channel affine map `x * scale + bias` it is at inference.
pub fn batch_norm_affine(
    gamma: &FloatTensor,
    beta: &FloatTensor,
    mean: &FloatTensor,
    var: &FloatTensor,
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.data().iter().zip(var.data()).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
    let bias = beta.data().iter().zip(mean.data()).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    (scale, bias)
}

fn broadcast_zip(
    a: &FloatTensor,
    b: &FloatTensor,
    shape: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Result<FloatTensor, ShapeError> {
    let a = if a.shape() == shape { a.clone() } else { movement::broadcast_to(a, shape)? };
    let b = if b.shape() == shape { b.clone() } else { movement::broadcast_to(b, shape)? };
    a.zip_with(&b, f)
}

fn add_channel_bias(y: FloatTensor, bias: Option<&FloatTensor>, layout: Layout) -> Result<FloatTensor, ShapeError> {
    let Some(bias) = bias else { return Ok(y) };
    let rank = y.rank();
    let mut shape = vec![1; rank];
    match layout {
        Layout::ChannelsFirst => shape[1] = bias.len(),
        Layout::ChannelsLast => shape[rank - 1] = bias.len(),
    }
    let bias = bias.clone().reshape(shape)?;
    let full = y.shape().to_vec();
    broadcast_zip(&y, &bias, &full, |a, b| a + b)
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hlil {{")?;
        for (id, node) in self.nodes.iter().enumerate() {
            let args: Vec<String> = node.inputs.iter().map(|i| format!("%{i}")).collect();
            let attrs = describe_op(&node.op);
            writeln!(
                f,
                "  %{id} = {}({}){} : f32{:?}  # {}",
                node.op.name(),
                args.join(", "),
                if attrs.is_empty() { String::new() } else { format!(" {{{attrs}}}") },
                node.shape,
                node.name
            )?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|i| format!("%{i}")).collect();
        writeln!(f, "  return {}", outs.join(", "))?;
        writeln!(f, "}}")
    }
}

/// The attributes of an operation in a compact, readable form.
pub fn describe_op(op: &Op) -> String {
    match op {
        Op::Input | Op::MatMul | Op::Add | Op::Sub | Op::Mul | Op::Neg | Op::Relu => String::new(),
        Op::Weight(t) => format!("{} params", t.len()),
        Op::Conv(g) | Op::ConvTranspose(g) => describe_conv(g),
        Op::MulScalar(c) | Op::DivScalar(c) | Op::AddScalar(c) => format!("c={c}"),
        Op::Clip { min, max } => format!("min={min}, max={max}"),
        Op::LeakyRelu { alpha } => format!("alpha={alpha}"),
        Op::MaxPool(g) | Op::AvgPool(g) => describe_pool(g),
        Op::BatchNorm { epsilon, channel_axis } => format!("epsilon={epsilon}, axis={channel_axis}"),
        Op::Reshape { shape } => format!("shape={shape:?}"),
        Op::Transpose { perm } => format!("perm={perm:?}"),
        Op::Pad { pads_begin, pads_end, value } => format!("begin={pads_begin:?}, end={pads_end:?}, value={value}"),
        Op::Concat { axis } => format!("axis={axis}"),
        Op::Slice { starts, ends, steps } => format!("starts={starts:?}, ends={ends:?}, steps={steps:?}"),
        Op::Gather { axis, indices } => format!("axis={axis}, indices={indices:?}"),
        Op::ReduceMean { axes, keep_dims } => format!("axes={axes:?}, keep_dims={keep_dims}"),
        Op::ArgMax { axis, keep_dims } => format!("axis={axis}, keep_dims={keep_dims}"),
    }
}

pub fn describe_conv(g: &ConvGeometry) -> String {
    let mut s = format!(
        "kernel={:?}, strides={:?}, pads={:?}/{:?}, dilations={:?}, groups={}, {:?}",
        g.kernel, g.strides, g.pads_begin, g.pads_end, g.dilations, g.groups, g.layout
    );
    if g.output_padding.iter().any(|&p| p != 0) {
        s.push_str(&format!(", output_padding={:?}", g.output_padding));
    }
    s
}

pub fn describe_pool(g: &PoolGeometry) -> String {
    format!(
        "window={:?}, strides={:?}, pads={:?}/{:?}, count_include_pad={}, {:?}",
        g.window, g.strides, g.pads_begin, g.pads_end, g.count_include_pad, g.layout
    )
}

/// JSON has no infinities: store them as the strings "inf" and "-inf".
mod float_or_infinity {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f32),
        Text(String),
    }

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            Repr::Number(*v).serialize(s)
        } else if v.is_nan() {
            Err(serde::ser::Error::custom("NaN bound"))
        } else {
            Repr::Text(if *v > 0.0 { "inf" } else { "-inf" }.into()).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) if t == "inf" => Ok(f32::INFINITY),
            Repr::Text(t) if t == "-inf" => Ok(f32::NEG_INFINITY),
            Repr::Text(t) => Err(serde::de::Error::custom(format!("`{t}` is not a bound"))),
        }
    }
}
