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
    /// A model input the client supplies as integers (token ids, masks): encoded exactly,
    /// not as fixed point. No inputs.
    IntegerInput,
    /// An elementwise function of one input.
    Unary(UnaryFn),
    /// Elementwise maximum / minimum with NumPy broadcasting. Inputs: a, b.
    Max,
    Min,
    /// Elementwise `a / b` with NumPy broadcasting, `b` computed or a weight. Inputs: a, b.
    Div,
    /// Maximum / minimum over sorted distinct `axes`.
    ReduceMax { axes: Vec<usize>, keep_dims: bool },
    ReduceMin { axes: Vec<usize>, keep_dims: bool },
    /// Softmax along `axis`.
    Softmax { axis: usize },
    LogSoftmax { axis: usize },
    /// `(x - mean) / sqrt(var + epsilon)`, mean and biased variance over sorted distinct
    /// `axes`: the core of layer, instance and group normalisation. Inputs: x.
    Normalize { axes: Vec<usize>, epsilon: f32 },
    /// `x >= 0 ? x : slope * x`, the slope broadcast to x's shape. Inputs: x, slope.
    Prelu,
    /// `x * c` elementwise for a public constant tensor `c` broadcast to x's shape (resize
    /// coefficients: part of the architecture, not a weight). Inputs: x.
    MulConst(FloatTensor),
    /// `[.., depth]` rows of 0/1 marking each integer of an `IntegerInput` (negative values
    /// count from the end, as ONNX `Gather` indices do). The client knows its integers, so it
    /// encodes the rows itself: a lookup in a table (token embeddings) becomes a product with
    /// no truncation. Inputs: an `IntegerInput`.
    OneHot { depth: usize },
}

/// An elementwise function (of `cryptflow-math`, for the secure backends).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryFn {
    Exp,
    Log,
    Sigmoid,
    Tanh,
    Erf,
    /// `x Phi(x)`, the exact (erf) form.
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
    /// `x sigmoid(x)` (swish).
    Silu,
    Softplus,
    Elu { alpha: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
    Reciprocal,
    Sqrt,
    Rsqrt,
    Abs,
}

impl UnaryFn {
    pub fn name(&self) -> &'static str {
        match self {
            UnaryFn::Exp => "Exp",
            UnaryFn::Log => "Log",
            UnaryFn::Sigmoid => "Sigmoid",
            UnaryFn::Tanh => "Tanh",
            UnaryFn::Erf => "Erf",
            UnaryFn::Gelu => "Gelu",
            UnaryFn::GeluTanh => "GeluTanh",
            UnaryFn::Silu => "Silu",
            UnaryFn::Softplus => "Softplus",
            UnaryFn::Elu { .. } => "Elu",
            UnaryFn::HardSigmoid { .. } => "HardSigmoid",
            UnaryFn::HardSwish => "HardSwish",
            UnaryFn::Reciprocal => "Reciprocal",
            UnaryFn::Sqrt => "Sqrt",
            UnaryFn::Rsqrt => "Rsqrt",
            UnaryFn::Abs => "Abs",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UnaryFn::Elu { alpha } => format!("alpha={alpha}"),
            UnaryFn::HardSigmoid { alpha, beta } => format!("alpha={alpha}, beta={beta}"),
            _ => String::new(),
        }
    }

    /// The function in f32 (the float executor's semantics).
    pub fn eval(&self, v: f32) -> f32 {
        let x = v as f64;
        let y = match *self {
            UnaryFn::Exp => x.exp(),
            UnaryFn::Log => x.ln(),
            UnaryFn::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::Erf => libm::erf(x),
            UnaryFn::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            UnaryFn::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
            UnaryFn::Silu => x / (1.0 + (-x).exp()),
            UnaryFn::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            UnaryFn::Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x.exp_m1()
                }
            }
            UnaryFn::HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
            UnaryFn::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryFn::Reciprocal => 1.0 / x,
            UnaryFn::Sqrt => x.sqrt(),
            UnaryFn::Rsqrt => 1.0 / x.sqrt(),
            UnaryFn::Abs => x.abs(),
        };
        y as f32
    }
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
            Op::IntegerInput => "IntegerInput",
            Op::Unary(f) => f.name(),
            Op::Max => "Max",
            Op::Min => "Min",
            Op::Div => "Div",
            Op::ReduceMax { .. } => "ReduceMax",
            Op::ReduceMin { .. } => "ReduceMin",
            Op::Softmax { .. } => "Softmax",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::Normalize { .. } => "Normalize",
            Op::Prelu => "Prelu",
            Op::MulConst(_) => "MulConst",
            Op::OneHot { .. } => "OneHot",
        }
    }

    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        match self {
            Op::Input | Op::IntegerInput | Op::Weight(_) => 0..=0,
            Op::Conv(_) | Op::ConvTranspose(_) => 2..=3,
            Op::MatMul | Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min | Op::Div | Op::Prelu => 2..=2,
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

    /// Adds a model input that the client supplies as integers.
    pub fn integer_input(&mut self, name: impl Into<String>, shape: Vec<usize>) -> NodeId {
        let id = self.push(Node { name: name.into(), op: Op::IntegerInput, inputs: vec![], shape });
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
        if matches!(op, Op::OneHot { .. }) && inputs.len() == 1 && self.nodes[inputs[0]].op != Op::IntegerInput {
            return Err(ShapeError::new(format!("OneHot `{name}`: `{}` is not an integer input", self.nodes[inputs[0]].name)));
        }
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
            if matches!(node.op, Op::Weight(_) | Op::Input | Op::IntegerInput) {
                // Sources carry their declared shape (a weight's even when its value is stripped).
                continue;
            }
            if matches!(node.op, Op::OneHot { .. }) && self.nodes[node.inputs[0]].op != Op::IntegerInput {
                return Err(ShapeError::new(format!("OneHot `{}` reads `{}`, which is not an integer input", node.name, self.nodes[node.inputs[0]].name)));
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
        Op::Input | Op::IntegerInput => return Err(ShapeError::new("inputs are added with Graph::input")),
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
            if b.len() < 2 {
                return Err(ShapeError::new(format!("MatMul right operand {b:?} must have rank 2 or more")));
            }
            let (bk, bn) = (b[b.len() - 2], b[b.len() - 1]);
            if a[a.len() - 1] != bk {
                return Err(ShapeError::new(format!("MatMul of {a:?} by {b:?}: inner extents differ")));
            }
            if b.len() == 2 {
                let mut out = a.to_vec();
                *out.last_mut().unwrap() = bn;
                out
            } else {
                // Batched: [..., M, K] x [..., K, N], batch axes broadcast NumPy-style.
                if a.len() < 2 {
                    return Err(ShapeError::new(format!("batched MatMul of {a:?} by {b:?}: the left operand needs rank 2 or more")));
                }
                let mut out = movement::broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])?;
                out.extend([a[a.len() - 2], bn]);
                out
            }
        }
        Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min | Op::Div => movement::broadcast_shapes(inputs[0], inputs[1])?,
        Op::Unary(_) => inputs[0].to_vec(),
        Op::Prelu => {
            let out = movement::broadcast_shapes(inputs[0], inputs[1])?;
            if out != inputs[0] {
                return Err(ShapeError::new(format!("PRelu slope {:?} does not broadcast to the input {:?}", inputs[1], inputs[0])));
            }
            out
        }
        Op::MulConst(c) => {
            let out = movement::broadcast_shapes(inputs[0], c.shape())?;
            if out != inputs[0] {
                return Err(ShapeError::new(format!("constant {:?} does not broadcast to the input {:?}", c.shape(), inputs[0])));
            }
            out
        }
        Op::OneHot { depth } => {
            if *depth == 0 {
                return Err(ShapeError::new("one-hot depth 0"));
            }
            let mut out = inputs[0].to_vec();
            out.push(*depth);
            out
        }
        Op::ReduceMax { axes, keep_dims } | Op::ReduceMin { axes, keep_dims } => {
            let x = inputs[0];
            check_axes(axes, x)?;
            reduced_shape(x, axes, *keep_dims)
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            if *axis >= inputs[0].len() {
                return Err(ShapeError::new(format!("softmax axis {axis} out of range for {:?}", inputs[0])));
            }
            inputs[0].to_vec()
        }
        Op::Normalize { axes, epsilon } => {
            check_axes(axes, inputs[0])?;
            if !(epsilon.is_finite() && *epsilon >= 0.0) {
                return Err(ShapeError::new(format!("normalisation epsilon {epsilon} must be finite and non-negative")));
            }
            inputs[0].to_vec()
        }
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
            check_axes(axes, x)?;
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

pub(crate) fn check_axes(axes: &[usize], x: &[usize]) -> Result<(), ShapeError> {
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= x.len()) {
        return Err(ShapeError::new(format!("bad reduction axes {axes:?} for {x:?}")));
    }
    Ok(())
}

pub(crate) fn reduced_shape(x: &[usize], axes: &[usize], keep_dims: bool) -> Vec<usize> {
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

pub(crate) fn validate_conv(g: &ConvGeometry, transposed: bool) -> Result<(), ShapeError> {
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

pub(crate) fn validate_pool(g: &PoolGeometry) -> Result<(), ShapeError> {
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
        Op::Input | Op::IntegerInput => return Err(ShapeError::new(format!("input `{}` has no value", node.name))),
        Op::Weight(t) => t.clone(),
        Op::Conv(g) => {
            let y = kernels::conv(x(), inputs[1], g)?;
            add_channel_bias(y, inputs.get(2).copied(), g.layout)?
        }
        Op::ConvTranspose(g) => {
            let y = kernels::conv_transpose(x(), inputs[1], g)?;
            add_channel_bias(y, inputs.get(2).copied(), g.layout)?
        }
        Op::MatMul if inputs[1].rank() == 2 => {
            let a = x();
            let k = *a.shape().last().unwrap();
            let rows = a.len() / k.max(1);
            let flat = a.clone().reshape(vec![rows, k])?;
            kernels::matmul(&flat, inputs[1])?.reshape(node.shape.clone())?
        }
        Op::MatMul => {
            let (a, b) = batched_operands(inputs[0], inputs[1], &node.shape)?;
            kernels::batch_matmul(&a, &b)?.reshape(node.shape.clone())?
        }
        Op::Unary(f) => x().map(|v| f.eval(v)),
        Op::Max => broadcast_zip(inputs[0], inputs[1], &node.shape, f32::max)?,
        Op::Min => broadcast_zip(inputs[0], inputs[1], &node.shape, f32::min)?,
        Op::Div => broadcast_zip(inputs[0], inputs[1], &node.shape, |a, b| a / b)?,
        Op::Prelu => broadcast_zip(inputs[0], inputs[1], &node.shape, |a, s| if a >= 0.0 { a } else { s * a })?,
        Op::MulConst(c) => broadcast_zip(x(), c, &node.shape, |a, b| a * b)?,
        Op::OneHot { depth } => one_hot_f32(x(), *depth).map_err(|e| ShapeError::new(format!("`{}`: {e}", node.name)))?,
        Op::ReduceMax { axes, keep_dims } => reduce_extreme(x(), axes, *keep_dims, f32::max)?,
        Op::ReduceMin { axes, keep_dims } => reduce_extreme(x(), axes, *keep_dims, f32::min)?,
        Op::Softmax { axis } => softmax_f32(x(), *axis, false)?,
        Op::LogSoftmax { axis } => softmax_f32(x(), *axis, true)?,
        Op::Normalize { axes, epsilon } => normalize_f32(x(), axes, *epsilon)?,
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

/// The operands of a batched MatMul broadcast to the output's batch axes and flattened to
/// `[B, M, K]` and `[B, K, N]`.
pub fn batched_operands<T: cryptflow_tensor::Element>(a: &Tensor<T>, b: &Tensor<T>, out: &[usize]) -> Result<(Tensor<T>, Tensor<T>), ShapeError> {
    let r = out.len();
    let batch = &out[..r - 2];
    let (m, n) = (out[r - 2], out[r - 1]);
    let k = *a.shape().last().unwrap();
    let nb = num_elements(batch);
    let mut a_full = batch.to_vec();
    a_full.extend([m, k]);
    let mut b_full = batch.to_vec();
    b_full.extend([k, n]);
    let a = if a.shape() == a_full.as_slice() { a.clone() } else { movement::broadcast_to(a, &a_full)? };
    let b = if b.shape() == b_full.as_slice() { b.clone() } else { movement::broadcast_to(b, &b_full)? };
    Ok((a.reshape(vec![nb, m, k])?, b.reshape(vec![nb, k, n])?))
}

/// Moves `axes` last and flattens: `[outer, inner]` rows, and the permutation used.
fn rows_over_axes(x: &FloatTensor, axes: &[usize]) -> Result<(FloatTensor, Vec<usize>), ShapeError> {
    let mut perm: Vec<usize> = (0..x.rank()).filter(|a| !axes.contains(a)).collect();
    perm.extend_from_slice(axes);
    let inner: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let moved = movement::transpose(x, &perm)?;
    let outer = moved.len() / inner.max(1);
    Ok((moved.reshape(vec![outer, inner])?, perm))
}

/// Undoes [`rows_over_axes`] for a tensor of the moved shape.
fn rows_back(rows: FloatTensor, x_shape: &[usize], perm: &[usize]) -> Result<FloatTensor, ShapeError> {
    let moved_shape: Vec<usize> = perm.iter().map(|&p| x_shape[p]).collect();
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    movement::transpose(&rows.reshape(moved_shape)?, &inverse)
}

fn reduce_extreme(x: &FloatTensor, axes: &[usize], keep_dims: bool, f: fn(f32, f32) -> f32) -> Result<FloatTensor, ShapeError> {
    let (rows, _) = rows_over_axes(x, axes)?;
    let inner = rows.shape()[1];
    let data: Vec<f32> = rows.data().chunks(inner.max(1)).map(|r| r.iter().copied().reduce(f).unwrap_or(0.0)).collect();
    Tensor::new(reduced_shape(x.shape(), axes, keep_dims), data)
}

/// The 0/1 rows of [`Op::OneHot`]; an integer outside `-depth..depth` is an error.
pub fn one_hot_f32(x: &FloatTensor, depth: usize) -> Result<FloatTensor, ShapeError> {
    let mut out = vec![0f32; x.len() * depth];
    for (k, &v) in x.data().iter().enumerate() {
        let column = one_hot_column(v as i64, depth).filter(|_| v.fract() == 0.0).ok_or_else(|| {
            ShapeError::new(format!("index {v} (element {k}) is outside -{depth}..{depth}"))
        })?;
        out[k * depth + column] = 1.0;
    }
    let mut shape = x.shape().to_vec();
    shape.push(depth);
    FloatTensor::new(shape, out)
}

/// The column [`Op::OneHot`] marks for the integer `v`: `v`, or `depth + v` for negative `v`.
pub fn one_hot_column(v: i64, depth: usize) -> Option<usize> {
    let d = i64::try_from(depth).ok()?;
    match v {
        0.. if v < d => Some(v as usize),
        _ if v < 0 && v >= -d => Some((d + v) as usize),
        _ => None,
    }
}

fn softmax_f32(x: &FloatTensor, axis: usize, log: bool) -> Result<FloatTensor, ShapeError> {
    let (mut rows, perm) = rows_over_axes(x, &[axis])?;
    let inner = rows.shape()[1].max(1);
    for row in rows.data_mut().chunks_mut(inner) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        for v in row.iter_mut() {
            *v = if log { ((*v - m) as f64 - sum.ln()) as f32 } else { (((*v - m) as f64).exp() / sum) as f32 };
        }
    }
    rows_back(rows, x.shape(), &perm)
}

fn normalize_f32(x: &FloatTensor, axes: &[usize], epsilon: f32) -> Result<FloatTensor, ShapeError> {
    let (mut rows, perm) = rows_over_axes(x, axes)?;
    let inner = rows.shape()[1].max(1);
    for row in rows.data_mut().chunks_mut(inner) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / inner as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
        let r = 1.0 / (var + epsilon as f64).sqrt();
        for v in row.iter_mut() {
            *v = ((*v as f64 - mean) * r) as f32;
        }
    }
    rows_back(rows, x.shape(), &perm)
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
        Op::IntegerInput | Op::Max | Op::Min | Op::Div | Op::Prelu => String::new(),
        Op::Unary(f) => f.describe(),
        Op::ReduceMax { axes, keep_dims } | Op::ReduceMin { axes, keep_dims } => format!("axes={axes:?}, keep_dims={keep_dims}"),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => format!("axis={axis}"),
        Op::Normalize { axes, epsilon } => format!("axes={axes:?}, epsilon={epsilon}"),
        Op::MulConst(c) => format!("c=<{} public values>", c.len()),
        Op::OneHot { depth } => format!("depth={depth}"),
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
