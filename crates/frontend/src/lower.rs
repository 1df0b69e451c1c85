//! Building HLIL: the operations on values that both front ends lower the same way. A value
//! of the model is known at import time (a [`Const`]) or computed by an HLIL node; each
//! operation below evaluates constants with [`crate::eval`] and emits HLIL nodes, guarded by
//! [`emit`], for computed values. A front end implements [`Lowering`] for its importer and
//! [`ValueKind`] for its values (which may have more kinds, e.g. TensorFlow's dead branches:
//! such values pass through unchanged).

use std::rc::Rc;

use cryptflow_ir::hlil::{infer_shape, Graph, NodeId, Op};
use cryptflow_tensor::{num_elements, FloatTensor, Tensor};

use crate::consts::{broadcast_shapes, check_shape, concat_consts, Const};
use crate::context::NodeContext;
use crate::eval::{binary, cast_const, floor_div, floor_mod, reduce_const, CastTarget, Reduce, Reduction};
use crate::geometry::precheck;

/// Largest tensor the importers let `Graph::add` constant-fold (it evaluates the kernels).
pub const MAX_FOLD: usize = 1 << 24;

/// Adds an HLIL node after checking, without panicking, everything `Graph::add` assumes.
/// Errors are shape errors of the node being imported.
pub fn emit(graph: &mut Graph, name: String, op: Op, inputs: &[NodeId]) -> Result<NodeId, String> {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|&i| graph.nodes[i].shape.clone()).collect();
    for s in &shapes {
        check_shape(s)?;
        if s.contains(&0) {
            return Err(format!("{} `{name}` would read an empty tensor of shape {s:?}", op.name()));
        }
    }
    precheck(&op, &shapes).map_err(|e| format!("{} `{name}`: {e}", op.name()))?;
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let out = infer_shape(&op, &refs).map_err(|e| format!("{} `{name}`: {e}", op.name()))?;
    let n = check_shape(&out)?;
    if out.contains(&0) {
        return Err(format!("{} `{name}` would produce an empty tensor of shape {out:?}", op.name()));
    }
    let folds = inputs.iter().all(|&i| matches!(graph.nodes[i].op, Op::Weight(_)));
    if folds && n > MAX_FOLD {
        return Err(format!("constant result of shape {out:?} is too large to fold"));
    }
    graph.add(name, op, inputs).map_err(|e| e.to_string())
}

/// Adds a weight node holding a constant (converted to float).
pub fn weight(graph: &mut Graph, name: String, c: &Const) -> Result<NodeId, String> {
    check_shape(&c.shape)?;
    let t: FloatTensor = Tensor::new(c.shape.clone(), c.to_f32()).map_err(|e| e.to_string())?;
    Ok(graph.weight(name, t))
}

/// The message for a Softmax (`op`) whose result `tensor` feeds a node other than a graph
/// output.
pub fn softmax_not_at_output(op: &str, tensor: &str, consumer: &str, consumer_op: &str) -> String {
    format!(
        "{op} is supported only when its result is a graph output (it is then compiled away, since it \
         preserves the argmax); here `{tensor}` feeds node `{consumer}` ({consumer_op})"
    )
}

/// The notice for a Softmax (`op`) compiled away at the output `tensor`.
pub fn softmax_compiled_away(op: &str, tensor: &str) -> String {
    format!("{op} `{tensor}` at the output compiled away: it preserves the argmax, so predictions are unchanged (outputs are logits)")
}

/// A value of the model as the shared lowering sees it.
pub trait ValueKind: Clone {
    fn constant(c: Rc<Const>) -> Self;
    fn node(id: NodeId) -> Self;
    fn as_const(&self) -> Option<&Rc<Const>>;
    fn as_node(&self) -> Option<NodeId>;
}

/// Elementwise binary arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    FloorMod,
    Maximum,
    Minimum,
}

/// The shapes of a NumPy-style matrix product (a rank-1 operand is a row, resp. column,
/// vector whose axis the result drops).
#[derive(Clone, Debug)]
pub struct MatMulShapes {
    pub a: Vec<usize>,
    pub b: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The result's shape.
    pub out: Vec<usize>,
    a_batch_trivial: bool,
    b_batch_trivial: bool,
}

/// Checks the operands of a matrix product.
pub fn matmul_shapes<C: NodeContext>(cx: &C, sa: Vec<usize>, sb: Vec<usize>) -> Result<MatMulShapes, C::Error> {
    if sa.is_empty() || sb.is_empty() {
        return Err(cx.shape_err("MatMul of a scalar"));
    }
    let a2: Vec<usize> = if sa.len() == 1 { vec![1, sa[0]] } else { sa.clone() };
    let b2: Vec<usize> = if sb.len() == 1 { vec![sb[0], 1] } else { sb.clone() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(cx.shape_err(format!("MatMul of {sa:?} by {sb:?}: inner extents differ")));
    }
    let batch = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).map_err(|e| cx.shape_err(e))?;
    let mut out = batch;
    if sa.len() > 1 {
        out.push(m);
    }
    if sb.len() > 1 {
        out.push(n);
    }
    check_shape(&out).map_err(|e| cx.shape_err(e))?;
    let a_batch_trivial = a2[..a2.len() - 2].iter().all(|&d| d == 1);
    let b_batch_trivial = b2[..b2.len() - 2].iter().all(|&d| d == 1);
    Ok(MatMulShapes { a: sa, b: sb, m, k, n, out, a_batch_trivial, b_batch_trivial })
}

/// The shared lowering of a front end's importer. Errors are the front end's, built by its
/// node context `Cx`.
pub trait Lowering {
    type Value: ValueKind;
    type Error;
    type Cx<'a>: NodeContext<Error = Self::Error>;

    /// Largest number of elements a constant computed at import time may have when it is
    /// larger than its inputs (broadcasting, padding, tiling, filling, ranges).
    const MAX_GENERATED: usize;
    /// What messages call the model's run-time inputs ("model inputs", "graph inputs").
    const INPUTS: &'static str;
    /// Whether slicing or gathering nothing out of a computed tensor gives an empty
    /// constant (else it is a shape error).
    const EMPTY_IS_CONSTANT: bool;

    fn graph(&self) -> &Graph;
    fn graph_mut(&mut self) -> &mut Graph;
    /// The value of input `i` of the node.
    fn input(&self, cx: &Self::Cx<'_>, i: usize) -> Result<Self::Value, Self::Error>;
    /// The HLIL node of a value; a constant becomes a weight named `name` (the front end
    /// decides when a constant used twice is one weight).
    fn node_of(&mut self, cx: &Self::Cx<'_>, name: &str, v: &Self::Value) -> Result<NodeId, Self::Error>;
    /// Whether an HLIL node's values are integers (ArgMax results).
    fn is_int_node(&self, id: NodeId) -> bool;
    /// Records that an HLIL node's values are integers.
    fn mark_int_node(&mut self, id: NodeId);

    /// The shape of a value (empty for a value that is neither constant nor computed).
    fn shape(&self, v: &Self::Value) -> Vec<usize> {
        match (v.as_const(), v.as_node()) {
            (Some(c), _) => c.shape.clone(),
            (None, Some(id)) => self.graph().nodes[id].shape.clone(),
            (None, None) => vec![],
        }
    }

    /// Adds an HLIL node (see [`emit`]).
    fn emit(&mut self, cx: &Self::Cx<'_>, name: String, op: Op, inputs: &[NodeId]) -> Result<NodeId, Self::Error> {
        emit(self.graph_mut(), name, op, inputs).map_err(|e| cx.shape_err(e))
    }

    /// Adds a weight node holding a constant (see [`weight`]).
    fn weight(&mut self, name: String, c: &Const) -> Result<NodeId, String> {
        weight(self.graph_mut(), name, c)
    }

    /// The HLIL node of input `i` (a constant becomes a weight named after its tensor).
    fn node(&mut self, cx: &Self::Cx<'_>, i: usize) -> Result<NodeId, Self::Error> {
        let v = self.input(cx, i)?;
        let name = cx.input_label(i);
        self.node_of(cx, &name, &v)
    }

    /// Input `i`, which must be known at import time.
    fn const_input(&self, cx: &Self::Cx<'_>, i: usize, what: &str) -> Result<Rc<Const>, Self::Error> {
        let v = self.input(cx, i)?;
        v.as_const().cloned().ok_or_else(|| {
            cx.unsupported(format!(
                "input {i} ({what}) must be a constant known at import time, but `{}` is computed from the {}",
                cx.input_label(i),
                Self::INPUTS
            ))
        })
    }

    /// Integer constant input `i` (e.g. a shape or axes).
    fn ints_input(&self, cx: &Self::Cx<'_>, i: usize, what: &str) -> Result<Vec<i64>, Self::Error> {
        let c = self.const_input(cx, i, what)?;
        c.ints()
            .map(<[i64]>::to_vec)
            .ok_or_else(|| cx.invalid(format!("input {i} ({what}) must be an integer tensor")))
    }

    /// Errors if a constant of `shape` (`n` elements) computed from inputs of `inputs`
    /// elements exceeds [`Self::MAX_GENERATED`].
    fn check_generated(&self, cx: &Self::Cx<'_>, shape: &[usize], n: usize, inputs: usize) -> Result<(), Self::Error> {
        if n > Self::MAX_GENERATED.max(inputs) {
            return Err(cx.shape_err(format!("constant of shape {shape:?} is too large")));
        }
        Ok(())
    }

    /// The shape of a constant to generate from integer `dims` (ConstantOfShape, Fill).
    fn generated_shape(&self, cx: &Self::Cx<'_>, dims: &[i64]) -> Result<Vec<usize>, Self::Error> {
        let shape = cx.target_shape(dims)?;
        self.check_generated(cx, &shape, num_elements(&shape), 0)?;
        Ok(shape)
    }

    // ---- data movement -----------------------------------------------------------------

    fn reshape_value(&mut self, cx: &Self::Cx<'_>, name: String, v: &Self::Value, shape: Vec<usize>) -> Result<Self::Value, Self::Error> {
        check_shape(&shape).map_err(|e| cx.shape_err(e))?;
        let from = self.shape(v);
        if num_elements(&from) != num_elements(&shape) {
            return Err(cx.shape_err(format!("cannot reshape {from:?} into {shape:?}")));
        }
        if let Some(c) = v.as_const() {
            return Ok(Self::Value::constant(Rc::new(c.with_shape(shape))));
        }
        match v.as_node() {
            Some(id) if from == shape => Ok(Self::Value::node(id)),
            Some(id) => Ok(Self::Value::node(self.emit(cx, name, Op::Reshape { shape }, &[id])?)),
            None => Ok(v.clone()),
        }
    }

    fn transpose_value(&mut self, cx: &Self::Cx<'_>, name: String, v: &Self::Value, perm: Vec<usize>) -> Result<Self::Value, Self::Error> {
        let shape = self.shape(v);
        let mut seen = vec![false; shape.len()];
        if perm.len() != shape.len() || perm.iter().any(|&p| p >= shape.len() || std::mem::replace(&mut seen[p], true)) {
            return Err(cx.invalid(format!("perm {perm:?} is not a permutation of the axes of {shape:?}")));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(v.clone());
        }
        if let Some(c) = v.as_const() {
            return Ok(Self::Value::constant(Rc::new(c.transpose(&perm).map_err(|e| cx.shape_err(e))?)));
        }
        match v.as_node() {
            Some(id) => Ok(Self::Value::node(self.emit(cx, name, Op::Transpose { perm }, &[id])?)),
            None => Ok(v.clone()),
        }
    }

    /// Slice with normalised parameters (one per axis).
    fn slice_value(
        &mut self,
        cx: &Self::Cx<'_>,
        name: String,
        v: &Self::Value,
        starts: Vec<i64>,
        ends: Vec<i64>,
        steps: Vec<i64>,
    ) -> Result<Self::Value, Self::Error> {
        let shape = self.shape(v);
        let out: Vec<usize> = (0..shape.len())
            .map(|i| {
                let (s, e, st) = (starts[i], ends[i], steps[i]);
                let n = if st > 0 { (e - s + st - 1) / st } else { (s - e + (-st) - 1) / (-st) };
                n.max(0) as usize
            })
            .collect();
        if out == shape && steps.iter().all(|&s| s == 1) {
            return Ok(v.clone());
        }
        if let Some(c) = v.as_const() {
            return Ok(Self::Value::constant(Rc::new(c.slice(&starts, &ends, &steps).map_err(|e| cx.shape_err(e))?)));
        }
        let Some(id) = v.as_node() else { return Ok(v.clone()) };
        if out.contains(&0) {
            if Self::EMPTY_IS_CONSTANT {
                // An empty tensor has no elements to compute: it is a (trivial) constant.
                return Ok(Self::Value::constant(Rc::new(Const::new_f(out, vec![]))));
            }
            return Err(cx.shape_err(format!("slice of {shape:?} would be empty ({out:?})")));
        }
        Ok(Self::Value::node(self.emit(cx, name, Op::Slice { starts, ends, steps }, &[id])?))
    }

    /// Elements `start..end` of `v` along `axis` (all of the other axes).
    fn slice_axis(&mut self, cx: &Self::Cx<'_>, name: String, v: &Self::Value, axis: usize, start: usize, end: usize) -> Result<Self::Value, Self::Error> {
        let shape = self.shape(v);
        let mut starts = vec![0i64; shape.len()];
        let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        starts[axis] = start as i64;
        ends[axis] = end as i64;
        self.slice_value(cx, name, v, starts, ends, vec![1; shape.len()])
    }

    fn gather_value(&mut self, cx: &Self::Cx<'_>, name: String, v: &Self::Value, axis: usize, indices: Vec<usize>) -> Result<Self::Value, Self::Error> {
        if let Some(c) = v.as_const() {
            return Ok(Self::Value::constant(Rc::new(c.gather(axis, &indices).map_err(|e| cx.shape_err(e))?)));
        }
        let Some(id) = v.as_node() else { return Ok(v.clone()) };
        if indices.is_empty() {
            if Self::EMPTY_IS_CONSTANT {
                let mut out = self.graph().nodes[id].shape.clone();
                out[axis] = 0;
                return Ok(Self::Value::constant(Rc::new(Const::new_f(out, vec![]))));
            }
            return Err(cx.shape_err("gather of no indices would be empty"));
        }
        Ok(Self::Value::node(self.emit(cx, name, Op::Gather { axis, indices }, &[id])?))
    }

    /// The client's integer input a node was moved from (reshapes only: Unsqueeze, Flatten,
    /// a view), if it was.
    fn integer_source(&self, mut id: NodeId) -> Option<NodeId> {
        loop {
            let node = &self.graph().nodes[id];
            match node.op {
                Op::IntegerInput => return Some(id),
                Op::Reshape { .. } => id = node.inputs[0],
                _ => return None,
            }
        }
    }

    /// `Gather` along `axis` of `data` (a table of weights or a computed tensor) by indices
    /// the client supplies (`ids`, moved from one of its integer inputs): the client's
    /// one-hot rows of the ids times `data` laid out as `[rows, rest]`. The client knows its
    /// ids, so it makes the rows itself; the product needs no truncation (the rows are exact
    /// integers) and reveals nothing about which rows were picked.
    fn lookup_value(&mut self, cx: &Self::Cx<'_>, name: String, data: (&str, &Self::Value), axis: usize, ids: NodeId) -> Result<Self::Value, Self::Error> {
        let source = self.integer_source(ids).ok_or_else(|| {
            cx.unsupported(format!(
                "indices `{}` are computed by the model; only indices the client supplies as an integer input (token ids) or constants are supported",
                self.graph().nodes[ids].name
            ))
        })?;
        let shape = self.shape(data.1);
        let depth = shape[axis];
        if depth == 0 {
            return Err(cx.shape_err(format!("Gather from an empty axis of {shape:?}")));
        }
        let ids_shape = self.graph().nodes[ids].shape.clone();
        let source_name = self.graph().nodes[source].name.clone();
        let rows = self.emit(cx, format!("{name}/one_hot({source_name})"), Op::OneHot { depth }, &[source])?;
        let mut rows_shape = ids_shape.clone();
        rows_shape.push(depth);
        let rows = self.reshape_value(cx, format!("{name}/rows"), &Self::Value::node(rows), rows_shape)?;
        let rows = rows.as_node().expect("a reshape of a node is a node");
        // The table with the gathered axis first, flattened to [depth, rest].
        let mut perm = vec![axis];
        perm.extend((0..shape.len()).filter(|&a| a != axis));
        let table = self.transpose_value(cx, format!("{name}/table"), data.1, perm)?;
        let before = &shape[..axis];
        let after = &shape[axis + 1..];
        let rest = num_elements(before) * num_elements(after);
        let table = self.reshape_value(cx, format!("{name}/table2d"), &table, vec![depth, rest])?;
        let table = self.node_of(cx, data.0, &table)?;
        let picked = self.emit(cx, format!("{name}/lookup"), Op::MatMul, &[rows, table])?;
        // [ids.., before.., after..] -> [before.., ids.., after..] (ONNX Gather's layout).
        let mut picked_shape = ids_shape.clone();
        picked_shape.extend_from_slice(before);
        picked_shape.extend_from_slice(after);
        let picked = self.reshape_value(cx, format!("{name}/picked"), &Self::Value::node(picked), picked_shape)?;
        let (q, b) = (ids_shape.len(), before.len());
        let mut perm: Vec<usize> = (q..q + b).collect();
        perm.extend(0..q);
        perm.extend(q + b..q + b + after.len());
        self.transpose_value(cx, name, &picked, perm)
    }

    /// Concatenation of named values (names are used for constants turned into weights).
    fn concat_values(&mut self, cx: &Self::Cx<'_>, name: String, parts: &[(String, Self::Value)], axis: usize) -> Result<Self::Value, Self::Error> {
        if parts.is_empty() {
            return Err(cx.invalid("nothing to concatenate"));
        }
        let shapes: Vec<Vec<usize>> = parts.iter().map(|(_, v)| self.shape(v)).collect();
        let rank = shapes[0].len();
        if axis >= rank {
            return Err(cx.invalid(format!("axis {axis} out of range for rank {rank}")));
        }
        let mut out = shapes[0].clone();
        out[axis] = 0;
        for s in &shapes {
            if s.len() != rank || (0..rank).any(|i| i != axis && s[i] != shapes[0][i]) {
                return Err(cx.shape_err(format!("cannot concatenate {:?} and {s:?} on axis {axis}", shapes[0])));
            }
            out[axis] = out[axis].saturating_add(s[axis]);
        }
        check_shape(&out).map_err(|e| cx.shape_err(e))?;
        let consts: Vec<&Const> = parts.iter().filter_map(|(_, v)| v.as_const().map(Rc::as_ref)).collect();
        if consts.len() == parts.len() {
            return Ok(Self::Value::constant(Rc::new(concat_consts(&consts, axis).map_err(|e| cx.shape_err(e))?)));
        }
        let mut ids = Vec::new();
        for ((pname, v), s) in parts.iter().zip(&shapes) {
            if num_elements(s) == 0 {
                continue; // empty pieces contribute nothing
            }
            ids.push(self.node_of(cx, pname, v)?);
        }
        if ids.len() == 1 {
            return Ok(Self::Value::node(ids[0]));
        }
        Ok(Self::Value::node(self.emit(cx, name, Op::Concat { axis }, &ids)?))
    }

    fn pad_value(&mut self, cx: &Self::Cx<'_>, name: String, v: &Self::Value, begin: Vec<usize>, end: Vec<usize>, value: f32) -> Result<Self::Value, Self::Error> {
        if begin.iter().chain(&end).all(|&p| p == 0) {
            return Ok(v.clone());
        }
        let shape = self.shape(v);
        if let Some(c) = v.as_const() {
            let out: Vec<usize> = (0..shape.len()).map(|i| shape[i] + begin[i] + end[i]).collect();
            let n = check_shape(&out).map_err(|e| cx.shape_err(e))?;
            self.check_generated(cx, &out, n, c.len())?;
            return Ok(Self::Value::constant(Rc::new(c.pad(&begin, &end, value).map_err(|e| cx.shape_err(e))?)));
        }
        match v.as_node() {
            Some(id) => Ok(Self::Value::node(self.emit(cx, name, Op::Pad { pads_begin: begin, pads_end: end, value }, &[id])?)),
            None => Ok(v.clone()),
        }
    }

    // ---- arithmetic ----------------------------------------------------------------------

    /// A scalar op on a node, reshaped to `out` when broadcasting with the scalar grows the rank.
    fn scalar_op(&mut self, cx: &Self::Cx<'_>, base: &str, x: NodeId, op: Op, out: &[usize]) -> Result<Self::Value, Self::Error> {
        let xs = self.graph().nodes[x].shape.clone();
        let skip = match op {
            Op::MulScalar(c) | Op::DivScalar(c) => c == 1.0,
            Op::AddScalar(c) => c == 0.0,
            _ => false,
        };
        let y = if skip { x } else { self.emit(cx, format!("{base}/scalar"), op, &[x])? };
        if xs.as_slice() != out {
            return self.reshape_value(cx, format!("{base}/broadcast"), &Self::Value::node(y), out.to_vec());
        }
        Ok(Self::Value::node(y))
    }

    /// `a <kind> b` of named values: evaluated if both are constants; a single-element
    /// constant is a public scalar (`AddScalar`, `MulScalar`, `DivScalar`, a clip for
    /// `Maximum`/`Minimum`); division by a constant tensor multiplies by its reciprocal.
    /// New HLIL nodes are named after `base`.
    fn arith_values(&mut self, cx: &Self::Cx<'_>, kind: Arith, a: (&str, &Self::Value), b: (&str, &Self::Value), base: &str) -> Result<Self::Value, Self::Error> {
        let (an, a) = a;
        let (bn, b) = b;
        let out_shape = broadcast_shapes(&self.shape(a), &self.shape(b)).map_err(|e| cx.shape_err(e))?;
        check_shape(&out_shape).map_err(|e| cx.shape_err(e))?;
        if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
            let limit = Self::MAX_GENERATED;
            let r = match kind {
                Arith::Add => binary(x, y, limit, |p, q| p + q, |p, q| Ok(p.wrapping_add(q))),
                Arith::Sub => binary(x, y, limit, |p, q| p - q, |p, q| Ok(p.wrapping_sub(q))),
                Arith::Mul => binary(x, y, limit, |p, q| p * q, |p, q| Ok(p.wrapping_mul(q))),
                Arith::Div => binary(x, y, limit, |p, q| p / q, |p, q| {
                    if q == 0 {
                        Err("integer division by zero".to_string())
                    } else {
                        Ok(p.wrapping_div(q))
                    }
                }),
                Arith::FloorDiv => binary(x, y, limit, |p, q| (p / q).floor(), floor_div),
                Arith::FloorMod => binary(x, y, limit, |p, q| p - (p / q).floor() * q, floor_mod),
                Arith::Maximum => binary(x, y, limit, f32::max, |p, q| Ok(p.max(q))),
                Arith::Minimum => binary(x, y, limit, f32::min, |p, q| Ok(p.min(q))),
            };
            return Ok(Self::Value::constant(Rc::new(r.map_err(|e| cx.shape_err(e))?)));
        }
        // Attention masks of "minus infinity" added to or multiplied with computed scores
        // (subtracting one would add plus infinity: left alone, and refused by the compiler).
        let tamed = |v: &Self::Value| match (kind, v.as_const().and_then(|c| c.with_tame_masks())) {
            (Arith::Add | Arith::Mul, Some(c)) => Self::Value::constant(Rc::new(c)),
            _ => v.clone(),
        };
        let (a, b) = (&tamed(a), &tamed(b));
        let scalar = |v: &Self::Value| v.as_const().filter(|c| c.len() == 1).and_then(|c| c.single_f32());
        let (na, nb) = (a.as_node(), b.as_node());
        match (kind, na, nb) {
            // Public scalar constants.
            (Arith::Add, Some(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, x, Op::AddScalar(scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Add, _, Some(x)) if scalar(a).is_some() => {
                self.scalar_op(cx, base, x, Op::AddScalar(scalar(a).unwrap_or_default()), &out_shape)
            }
            (Arith::Mul, Some(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, x, Op::MulScalar(scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Mul, _, Some(x)) if scalar(a).is_some() => {
                self.scalar_op(cx, base, x, Op::MulScalar(scalar(a).unwrap_or_default()), &out_shape)
            }
            (Arith::Sub, Some(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, x, Op::AddScalar(-scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Sub, _, Some(x)) if scalar(a).is_some() => {
                let c = scalar(a).unwrap_or_default();
                let neg = self.emit(cx, format!("{base}/neg"), Op::Neg, &[x])?;
                self.scalar_op(cx, base, neg, Op::AddScalar(c), &out_shape)
            }
            (Arith::Div, Some(x), _) if scalar(b).is_some() => {
                let c = scalar(b).unwrap_or_default();
                if c == 0.0 || !c.is_finite() {
                    return Err(cx.invalid(format!("division by the constant {c}")));
                }
                self.scalar_op(cx, base, x, Op::DivScalar(c), &out_shape)
            }
            (Arith::Div, Some(x), _) if b.as_const().is_some() => {
                // Division by a constant tensor: multiplication by its reciprocal (a weight).
                let c = b.as_const().cloned().unwrap_or_else(|| unreachable!("checked above"));
                let data = c.to_f32();
                if data.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                    return Err(cx.invalid(format!("division by a constant tensor `{bn}` containing zero or non-finite values")));
                }
                let recip = Const::new_f(c.shape.clone(), data.iter().map(|&v| 1.0 / v).collect());
                let w = self.weight(format!("{bn}/reciprocal"), &recip).map_err(|e| cx.shape_err(e))?;
                Ok(Self::Value::node(self.emit(cx, format!("{base}/mul"), Op::Mul, &[x, w])?))
            }
            (Arith::Div, _, _) => Err(cx.unsupported(format!(
                "division by `{bn}`, which is computed from the {}, is not supported (only division by constants)",
                Self::INPUTS
            ))),
            (Arith::Maximum | Arith::Minimum, Some(x), _) | (Arith::Maximum | Arith::Minimum, _, Some(x))
                if scalar(a).or(scalar(b)).is_some() =>
            {
                let c = scalar(a).or(scalar(b)).unwrap_or_default();
                if c.is_nan() {
                    return Err(cx.invalid("a NaN bound"));
                }
                let op = match kind {
                    Arith::Maximum if c == 0.0 => Op::Relu,
                    Arith::Maximum => Op::Clip { min: c, max: f32::INFINITY },
                    _ => Op::Clip { min: f32::NEG_INFINITY, max: c },
                };
                let y = self.emit(cx, format!("{base}/clip"), op, &[x])?;
                self.reshape_value(cx, format!("{base}/broadcast"), &Self::Value::node(y), out_shape)
            }
            (Arith::Maximum | Arith::Minimum, _, _) => Err(cx.unsupported(format!(
                "{} of a computed tensor is supported only with a scalar constant (a clip)",
                cx.op_type()
            ))),
            (Arith::FloorDiv | Arith::FloorMod, _, _) => {
                Err(cx.unsupported(format!("{} of a computed tensor is not supported (only of constants)", cx.op_type())))
            }
            _ => {
                let x = self.node_of(cx, an, a)?;
                let y = self.node_of(cx, bn, b)?;
                let op = match kind {
                    Arith::Add => Op::Add,
                    Arith::Sub => Op::Sub,
                    _ => Op::Mul,
                };
                Ok(Self::Value::node(self.emit(cx, format!("{base}/{}", op.name().to_lowercase()), op, &[x, y])?))
            }
        }
    }

    /// The sum of the node's first `n` inputs, left to right; the partial sums are named
    /// `{base}/sum{i}`.
    fn sum_inputs(&mut self, cx: &Self::Cx<'_>, n: usize, base: &str) -> Result<Self::Value, Self::Error> {
        let mut acc_name = cx.input_label(0);
        let mut acc = self.input(cx, 0)?;
        for i in 1..n {
            let v = self.input(cx, i)?;
            let vn = cx.input_label(i);
            let name = format!("{base}/sum{i}");
            acc = self.arith_values(cx, Arith::Add, (&acc_name, &acc), (&vn, &v), &name)?;
            acc_name = name;
        }
        Ok(acc)
    }

    /// A cast: constants are converted; a computed tensor is floating point (or integer, for
    /// ArgMax results) and can only be "cast" to a type that keeps its values.
    fn cast_value(&mut self, cx: &Self::Cx<'_>, v: Self::Value, to: CastTarget) -> Result<Self::Value, Self::Error> {
        if let Some(c) = v.as_const() {
            return Ok(Self::Value::constant(Rc::new(cast_const(c, to))));
        }
        match v.as_node() {
            Some(id) if to != CastTarget::Float && !self.is_int_node(id) => {
                Err(cx.unsupported("Cast of a computed floating-point tensor to an integer type is not supported"))
            }
            _ => Ok(v),
        }
    }

    /// An activation (`Neg`, `Relu`, `LeakyRelu`, `Clip`, or `Mul` for squaring) of a value;
    /// a computed one becomes the HLIL node `name`.
    fn activation_value(&mut self, cx: &Self::Cx<'_>, name: String, x: Self::Value, op: Op) -> Result<Self::Value, Self::Error> {
        if let Some(c) = x.as_const() {
            return Ok(Self::Value::constant(Rc::new(crate::eval::activation_const(c, &op))));
        }
        match x.as_node() {
            Some(id) => {
                let inputs: Vec<NodeId> = if op == Op::Mul { vec![id, id] } else { vec![id] };
                Ok(Self::Value::node(self.emit(cx, name, op, &inputs)?))
            }
            None => Ok(x),
        }
    }

    /// A reduction of `x`: a constant is evaluated (`kind`); a computed tensor is itself when
    /// no axis is reduced, an error when it reduces empty axes, else what `computed` lowers
    /// it to.
    fn reduce_value(
        &mut self,
        cx: &Self::Cx<'_>,
        x: Self::Value,
        r: Reduction,
        kind: Reduce,
        computed: impl FnOnce(&mut Self, NodeId, Reduction) -> Result<Self::Value, Self::Error>,
    ) -> Result<Self::Value, Self::Error> {
        if let Some(c) = x.as_const() {
            return Ok(Self::Value::constant(Rc::new(reduce_const(c, &r.axes, r.out, kind))));
        }
        let Some(id) = x.as_node() else { return Ok(x) };
        if r.axes.is_empty() {
            return Ok(x);
        }
        if r.count == 0 {
            return Err(cx.shape_err("reduction over an empty axis"));
        }
        computed(self, id, r)
    }

    /// Mean (or sum, the mean times the count) of a computed tensor: HLIL nodes
    /// `{name}/mean` (and `{name}/sum`).
    fn mean_or_sum(&mut self, cx: &Self::Cx<'_>, name: &str, id: NodeId, r: Reduction, sum: bool) -> Result<Self::Value, Self::Error> {
        let m = self.emit(cx, format!("{name}/mean"), Op::ReduceMean { axes: r.axes, keep_dims: r.keep_dims }, &[id])?;
        if sum && r.count != 1 {
            Ok(Self::Value::node(self.emit(cx, format!("{name}/sum"), Op::MulScalar(r.count as f32), &[m])?))
        } else {
            Ok(Self::Value::node(m))
        }
    }

    /// The HLIL node `name` of the index of the largest element along `axis` of `x` (whose
    /// values are then integers).
    fn argmax_value(&mut self, cx: &Self::Cx<'_>, name: String, x: NodeId, axis: usize, keep_dims: bool) -> Result<Self::Value, Self::Error> {
        let id = self.emit(cx, name, Op::ArgMax { axis, keep_dims }, &[x])?;
        self.mark_int_node(id);
        Ok(Self::Value::node(id))
    }

    /// A matrix product of named values lowered to HLIL MatMul: `a x b` with `b` a matrix;
    /// for a constant left operand without batch axes and a computed right one,
    /// `(b^T a^T)^T` (a plain product by the weight); otherwise (batched right operands,
    /// computed or constant, or a batched constant left operand) one batched HLIL MatMul
    /// with NumPy batch broadcasting. The result is reshaped to `s.out`; new nodes are named
    /// after `base`.
    fn matmul_lowered(&mut self, cx: &Self::Cx<'_>, base: &str, a: (&str, &Self::Value), b: (&str, &Self::Value), s: MatMulShapes) -> Result<Self::Value, Self::Error> {
        let (an, a) = a;
        let (bn, b) = b;
        let MatMulShapes { a: sa, b: sb, m, k, n, out, a_batch_trivial, b_batch_trivial } = s;
        let plain = b_batch_trivial && (a.as_node().is_some() || b.as_const().is_some());
        let transposed = a_batch_trivial && a.as_const().is_some() && b.as_node().is_some();
        let result = if plain {
            let bm = self.reshape_value(cx, format!("{bn}/matrix"), b, vec![k, n])?;
            let ai = self.node_of(cx, an, a)?;
            let bi = self.node_of(cx, &format!("{bn}/matrix"), &bm)?;
            self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[ai, bi])?
        } else if transposed {
            // Constant left operand, computed right operand: (A B)^T = B^T A^T.
            let at = {
                let am = self.reshape_value(cx, format!("{an}/matrix"), a, vec![m, k])?;
                self.transpose_value(cx, format!("{an}/transposed"), &am, vec![1, 0])?
            };
            let rb = sb.len();
            let bt = if rb == 1 {
                b.clone()
            } else {
                let mut perm: Vec<usize> = (0..rb).collect();
                perm.swap(rb - 1, rb - 2);
                self.transpose_value(cx, format!("{base}/rhs_transposed"), b, perm)?
            };
            let bi = self.node_of(cx, bn, &bt)?;
            let ai = self.node_of(cx, &format!("{an}/transposed"), &at)?;
            let y = self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[bi, ai])?;
            let ys = self.graph().nodes[y].shape.clone();
            if ys.len() >= 2 {
                let mut perm: Vec<usize> = (0..ys.len()).collect();
                perm.swap(ys.len() - 1, ys.len() - 2);
                let t = self.transpose_value(cx, format!("{base}/transpose"), &Self::Value::node(y), perm)?;
                t.as_node().ok_or_else(|| cx.invalid("internal: transpose of a node"))?
            } else {
                y
            }
        } else {
            // Batched: HLIL MatMul broadcasts the batch axes of [..., M, K] x [..., K, N].
            let a2 = if sa.len() == 1 { self.reshape_value(cx, format!("{an}/row"), a, vec![1, k])? } else { a.clone() };
            let b2 = if sb.len() == 1 { self.reshape_value(cx, format!("{bn}/column"), b, vec![k, 1])? } else { b.clone() };
            let an2 = if sa.len() == 1 { format!("{an}/row") } else { an.to_string() };
            let bn2 = if sb.len() == 1 { format!("{bn}/column") } else { bn.to_string() };
            let ai = self.node_of(cx, &an2, &a2)?;
            let bi = self.node_of(cx, &bn2, &b2)?;
            self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[ai, bi])?
        };
        self.reshape_value(cx, format!("{base}/reshape"), &Self::Value::node(result), out)
    }
}
