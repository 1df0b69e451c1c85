//! One handler per TensorFlow operation. Each returns the values of the node's outputs
//! (the driver binds them and gives new HLIL nodes the node's name, `name:k` for output k).
//! Handlers that fuse a node with its consumer (a bias after a convolution, the per-channel
//! affine map Keras 3 batch norm leaves, a dilated convolution written as
//! `SpaceToBatchND -> Conv2D -> BatchToSpaceND`) bind the consumer's value and mark it done.

use std::rc::Rc;

use cryptflow_ir::hlil::{NodeId, Op};
use cryptflow_tensor::{ConvGeometry, Layout, PoolGeometry};

use crate::attrs::Cx;
use crate::consts::{
    self, binary, broadcast_shapes, check_shape, compare, concat_consts, BroadcastFn, Const, Data, GatherFn, PadFn,
    SliceFn, Transpose, MAX_DIM, MAX_GENERATED,
};
use crate::import::{Importer, Value, PASS_THROUGH};
use crate::TfError;

type R<T> = Result<T, TfError>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    FloorMod,
    Maximum,
    Minimum,
}

fn elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn one(v: Value) -> R<Vec<Value>> {
    Ok(vec![v])
}

/// Spatial axes of an activation of rank `rank` in a layout.
fn spatial_axes(layout: Layout, rank: usize) -> Vec<usize> {
    match layout {
        Layout::ChannelsLast => (1..rank - 1).collect(),
        Layout::ChannelsFirst => (2..rank).collect(),
    }
}

fn channel_axis(layout: Layout, rank: usize) -> usize {
    match layout {
        Layout::ChannelsLast => rank - 1,
        Layout::ChannelsFirst => 1,
    }
}

/// The single axis along which a constant of shape `c` varies when broadcast against `x`
/// (shape `[.., C, ..]` with ones elsewhere, extent equal to `x`'s), if there is one.
fn per_channel_axis(c: &[usize], x: &[usize]) -> Option<usize> {
    if c.len() > x.len() {
        return None;
    }
    let offset = x.len() - c.len();
    let mut axis = None;
    for (j, &d) in c.iter().enumerate() {
        if d != 1 {
            if axis.is_some() || d != x[j + offset] {
                return None;
            }
            axis = Some(j + offset);
        }
    }
    axis
}

/// Integer floor division and modulo (TensorFlow's FloorDiv/FloorMod).
fn floor_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        return Err("integer division by zero".into());
    }
    let q = a.wrapping_div(b);
    Ok(if (a % b != 0) && ((a < 0) != (b < 0)) { q.wrapping_sub(1) } else { q })
}

fn floor_mod(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        return Err("integer division by zero".into());
    }
    let r = a.wrapping_rem(b);
    Ok(if r != 0 && ((r < 0) != (b < 0)) { r.wrapping_add(b) } else { r })
}

impl Importer<'_> {
    pub fn dispatch(&mut self, cx: &Cx) -> R<Vec<Value>> {
        let op = cx.op.as_str();
        match op {
            "Const" => {
                let c = cx.tensor("value")?.ok_or_else(|| cx.invalid("Const without a `value` attribute"))?;
                one(Value::Const(Rc::new(c)))
            }
            "Placeholder" => Err(cx.invalid("internal: Placeholder reached as an operation")),
            "PlaceholderWithDefault" => one(self.input(cx, 0)?),
            p if PASS_THROUGH.contains(&p) => one(self.input(cx, 0)?),
            "IdentityN" => (0..cx.inputs.len()).map(|i| self.input(cx, i)).collect(),
            "NoOp" | "Assert" => Ok(vec![]),
            "Switch" => self.switch(cx),
            "Merge" => self.merge(cx),
            "Shape" | "Size" | "Rank" => {
                let s = self.shape(&self.input(cx, 0)?);
                let c = match op {
                    "Shape" => Const::new_i(vec![s.len()], s.iter().map(|&d| d as i64).collect()),
                    "Size" => Const::scalar_i(elements(&s) as i64),
                    _ => Const::scalar_i(s.len() as i64),
                };
                one(Value::Const(Rc::new(c)))
            }
            "Cast" => one(self.cast(cx)?),
            "Add" | "AddV2" => one(self.arith(cx, Arith::Add)?),
            "Sub" => one(self.arith(cx, Arith::Sub)?),
            "Mul" => one(self.arith(cx, Arith::Mul)?),
            "RealDiv" | "Div" => one(self.arith(cx, Arith::Div)?),
            "FloorDiv" => one(self.arith(cx, Arith::FloorDiv)?),
            "FloorMod" => one(self.arith(cx, Arith::FloorMod)?),
            "Maximum" => one(self.arith(cx, Arith::Maximum)?),
            "Minimum" => one(self.arith(cx, Arith::Minimum)?),
            "AddN" => one(self.add_n(cx)?),
            "BiasAdd" => one(self.bias_add(cx)?),
            "Neg" | "Relu" | "Relu6" | "LeakyRelu" | "Square" => one(self.activation(cx)?),
            "ClipByValue" => one(self.clip_by_value(cx)?),
            "Rsqrt" | "Sqrt" | "Reciprocal" | "Floor" | "Ceil" | "Abs" | "LogicalNot" => one(self.const_unary(cx)?),
            "Equal" | "NotEqual" | "Less" | "LessEqual" | "Greater" | "GreaterEqual" | "LogicalAnd" | "LogicalOr" => {
                one(self.const_compare(cx)?)
            }
            "Select" | "SelectV2" => one(self.select(cx)?),
            "Fill" => one(self.fill(cx)?),
            "ZerosLike" | "OnesLike" => {
                let x = self.input(cx, 0)?;
                let s = self.shape(&x);
                let n = elements(&s);
                let v = if op == "ZerosLike" { 0 } else { 1 };
                let c = match &x {
                    Value::Const(c) if !c.is_float() => Const::new_i(s, vec![v; n]),
                    _ => {
                        if n > MAX_GENERATED {
                            return Err(cx.shape_err(format!("constant of shape {s:?} is too large")));
                        }
                        Const::new_f(s, vec![v as f32; n])
                    }
                };
                one(Value::Const(Rc::new(c)))
            }
            "Range" => one(self.range(cx)?),
            "Tile" => one(self.tile(cx)?),
            "BroadcastTo" => one(self.broadcast_to(cx)?),
            "GatherV2" => one(self.gather(cx)?),
            "Reshape" => one(self.reshape(cx)?),
            "Squeeze" => one(self.squeeze(cx)?),
            "ExpandDims" => one(self.expand_dims(cx)?),
            "Transpose" => one(self.transpose(cx)?),
            "ConcatV2" | "Concat" => one(self.concat(cx)?),
            "Pack" => one(self.pack(cx)?),
            "Unpack" => self.unpack(cx),
            "Slice" => one(self.slice(cx)?),
            "StridedSlice" => one(self.strided_slice(cx)?),
            "Split" | "SplitV" => self.split(cx),
            "Pad" | "PadV2" => one(self.pad(cx)?),
            "Mean" | "Sum" | "Max" | "Min" | "Prod" | "All" | "Any" => one(self.reduce(cx)?),
            "ArgMax" => one(self.argmax(cx)?),
            "Softmax" => one(self.softmax(cx)?),
            "Conv2D" | "Conv3D" | "DepthwiseConv2dNative" => {
                let x = self.node(cx, 0)?;
                let f = self.input(cx, 1)?;
                one(self.conv_core(cx, x, f, &cx.input_name(1), None)?)
            }
            "Conv2DBackpropInput" | "Conv3DBackpropInputV2" => one(self.conv_transpose(cx)?),
            "MaxPool" | "AvgPool" | "MaxPool3D" | "AvgPool3D" => one(self.pool(cx)?),
            "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => one(self.fused_batch_norm(cx)?),
            "MatMul" => one(self.matmul(cx)?),
            "BatchMatMul" | "BatchMatMulV2" | "BatchMatMulV3" => one(self.batch_matmul(cx)?),
            "SpaceToBatchND" => one(self.space_to_batch(cx)?),
            "BatchToSpaceND" => Err(cx.unsupported(
                "BatchToSpaceND is supported only as the end of a dilated convolution \
                 (SpaceToBatchND -> Conv2D/DepthwiseConv2dNative -> BatchToSpaceND, as tf.nn.convolution emits)",
            )),
            "VarHandleOp" | "ReadVariableOp" | "VariableV2" | "Variable" | "VarIsInitializedOp" => Err(cx.unsupported(
                "the graph still reads variables: freeze it first (TF2: convert_variables_to_constants_v2; \
                 TF1: tf.compat.v1.graph_util.convert_variables_to_constants)",
            )),
            "StatefulPartitionedCall" | "PartitionedCall" => Err(cx.unsupported(
                "the graph calls a function: freeze it with convert_variables_to_constants_v2, which inlines function calls",
            )),
            "While" | "StatelessWhile" | "If" | "StatelessIf" | "Enter" | "Exit" | "NextIteration" | "LoopCond" => {
                Err(cx.unsupported("control flow other than a Switch on a constant predicate is not supported"))
            }
            _ => Err(TfError::UnsupportedOp { node: cx.name.clone(), op_type: cx.op.clone(), reason: None }),
        }
    }

    // ---- control flow ----------------------------------------------------------------------

    fn switch(&mut self, cx: &Cx) -> R<Vec<Value>> {
        cx.need_inputs(2)?;
        let data = self.input(cx, 0)?;
        let pred = self.const_input(cx, 1, "pred").map_err(|_| {
            cx.unsupported("the predicate must be known at import time (e.g. a training flag with a constant default)")
        })?;
        if pred.len() != 1 {
            return Err(cx.invalid("the predicate must be a scalar"));
        }
        let p = pred.to_f32()[0] != 0.0;
        Ok(if p { vec![Value::Dead, data] } else { vec![data, Value::Dead] })
    }

    fn merge(&mut self, cx: &Cx) -> R<Vec<Value>> {
        let mut live = Vec::new();
        for i in 0..cx.inputs.len() {
            match self.input(cx, i)? {
                Value::Dead => {}
                v => live.push((i, v)),
            }
        }
        match live.len() {
            0 => Ok(vec![Value::Dead, Value::Dead]),
            1 => {
                let (i, v) = live.remove(0);
                Ok(vec![v, Value::Const(Rc::new(Const::scalar_i(i as i64)))])
            }
            n => Err(cx.unsupported(format!("{n} of its inputs are live; only one branch may be taken at import time"))),
        }
    }

    // ---- elementary value operations (constant or HLIL) ---------------------------------

    fn reshape_value(&mut self, cx: &Cx, name: String, v: &Value, shape: Vec<usize>) -> R<Value> {
        check_shape(&shape).map_err(|e| cx.shape_err(e))?;
        let from = self.shape(v);
        if elements(&from) != elements(&shape) {
            return Err(cx.shape_err(format!("cannot reshape {from:?} into {shape:?}")));
        }
        Ok(match v {
            Value::Const(c) => Value::Const(Rc::new(c.with_shape(shape))),
            Value::Node(id) if from == shape => Value::Node(*id),
            Value::Node(id) => Value::Node(self.emit(cx, name, Op::Reshape { shape }, &[*id])?),
            Value::Dead => Value::Dead,
        })
    }

    fn transpose_value(&mut self, cx: &Cx, name: String, v: &Value, perm: Vec<usize>) -> R<Value> {
        let shape = self.shape(v);
        let mut seen = vec![false; shape.len()];
        if perm.len() != shape.len() || perm.iter().any(|&p| p >= shape.len() || std::mem::replace(&mut seen[p], true)) {
            return Err(cx.invalid(format!("perm {perm:?} is not a permutation of the axes of {shape:?}")));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(v.clone());
        }
        Ok(match v {
            Value::Const(c) => {
                let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
                Value::Const(Rc::new(c.map_data(out, Transpose(&perm))))
            }
            Value::Node(id) => Value::Node(self.emit(cx, name, Op::Transpose { perm }, &[*id])?),
            Value::Dead => Value::Dead,
        })
    }

    /// Slice with normalised parameters (one per axis).
    fn slice_value(&mut self, cx: &Cx, name: String, v: &Value, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>) -> R<Value> {
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
        Ok(match v {
            Value::Const(c) => {
                Value::Const(Rc::new(c.map_data(out.clone(), SliceFn { starts: &starts, steps: &steps, out_shape: &out })))
            }
            Value::Node(id) => {
                if out.contains(&0) {
                    return Err(cx.shape_err(format!("slice of {shape:?} would be empty ({out:?})")));
                }
                Value::Node(self.emit(cx, name, Op::Slice { starts, ends, steps }, &[*id])?)
            }
            Value::Dead => Value::Dead,
        })
    }

    fn gather_value(&mut self, cx: &Cx, name: String, v: &Value, axis: usize, indices: Vec<usize>) -> R<Value> {
        Ok(match v {
            Value::Const(c) => {
                let mut out = c.shape.clone();
                out[axis] = indices.len();
                Value::Const(Rc::new(c.map_data(out, GatherFn { axis, indices: &indices })))
            }
            Value::Node(id) => {
                if indices.is_empty() {
                    return Err(cx.shape_err("gather of no indices would be empty"));
                }
                Value::Node(self.emit(cx, name, Op::Gather { axis, indices }, &[*id])?)
            }
            Value::Dead => Value::Dead,
        })
    }

    /// Concatenation of named values (names are used for constants turned into weights).
    fn concat_values(&mut self, cx: &Cx, name: String, parts: &[(String, Value)], axis: usize) -> R<Value> {
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
        if parts.iter().all(|(_, v)| matches!(v, Value::Const(_))) {
            let consts: Vec<&Const> = parts
                .iter()
                .filter_map(|(_, v)| match v {
                    Value::Const(c) => Some(c.as_ref()),
                    _ => None,
                })
                .collect();
            return Ok(Value::Const(Rc::new(concat_consts(&consts, axis))));
        }
        let mut ids = Vec::new();
        for ((pname, v), s) in parts.iter().zip(&shapes) {
            if elements(s) == 0 {
                continue; // empty pieces contribute nothing
            }
            ids.push(self.node_of(cx, pname, v)?);
        }
        if ids.len() == 1 {
            return Ok(Value::Node(ids[0]));
        }
        Ok(Value::Node(self.emit(cx, name, Op::Concat { axis }, &ids)?))
    }

    fn pad_value(&mut self, cx: &Cx, name: String, v: &Value, begin: Vec<usize>, end: Vec<usize>, value: f32) -> R<Value> {
        if begin.iter().chain(&end).all(|&p| p == 0) {
            return Ok(v.clone());
        }
        let shape = self.shape(v);
        Ok(match v {
            Value::Const(c) => {
                let out: Vec<usize> = (0..shape.len()).map(|i| shape[i] + begin[i] + end[i]).collect();
                let n = check_shape(&out).map_err(|e| cx.shape_err(e))?;
                if n > MAX_GENERATED.max(c.len()) {
                    return Err(cx.shape_err(format!("constant of shape {out:?} is too large")));
                }
                Value::Const(Rc::new(PadFn { begin: &begin, end: &end, value_f: value }.run(c)))
            }
            Value::Node(id) => Value::Node(self.emit(cx, name, Op::Pad { pads_begin: begin, pads_end: end, value }, &[*id])?),
            Value::Dead => Value::Dead,
        })
    }

    /// A scalar op on a node, reshaped to `out` when broadcasting with the scalar grows the rank.
    fn scalar_op(&mut self, cx: &Cx, base: &str, x: NodeId, op: Op, out: &[usize]) -> R<Value> {
        let xs = self.graph.nodes[x].shape.clone();
        let skip = match op {
            Op::MulScalar(c) | Op::DivScalar(c) => c == 1.0,
            Op::AddScalar(c) => c == 0.0,
            _ => false,
        };
        let y = if skip { x } else { self.emit(cx, format!("{base}/scalar"), op, &[x])? };
        if xs.as_slice() != out {
            return self.reshape_value(cx, format!("{base}/broadcast"), &Value::Node(y), out.to_vec());
        }
        Ok(Value::Node(y))
    }

    // ---- simple ops ------------------------------------------------------------------------

    fn cast(&mut self, cx: &Cx) -> R<Value> {
        let to = cx.dtype("DstT")?.ok_or_else(|| cx.invalid("missing attribute `DstT`"))?;
        let float_target = consts::is_float_dtype(to);
        // INT32, UINT8, INT16, INT8, INT64, UINT16, UINT32, UINT64
        let int_target = matches!(to, 3 | 4 | 5 | 6 | 9 | 17 | 22 | 23);
        let bool_target = to == 10;
        if !(float_target || int_target || bool_target) {
            return Err(cx.unsupported(format!("Cast to {} is not supported", consts::dtype_name(to))));
        }
        Ok(match self.input(cx, 0)? {
            Value::Const(c) => Value::Const(Rc::new(if float_target {
                c.as_float()
            } else if bool_target {
                let d = match &c.data {
                    Data::F(v) => v.iter().map(|&x| (x != 0.0) as i64).collect(),
                    Data::I(v) => v.iter().map(|&x| (x != 0) as i64).collect(),
                };
                Const::new_i(c.shape.clone(), d)
            } else {
                c.as_int()
            })),
            Value::Node(id) => {
                if float_target || self.int_nodes.contains(&id) {
                    Value::Node(id)
                } else {
                    return Err(cx.unsupported("Cast of a computed floating-point tensor to an integer type is not supported"));
                }
            }
            Value::Dead => Value::Dead,
        })
    }

    fn arith(&mut self, cx: &Cx, kind: Arith) -> R<Value> {
        cx.need_inputs(2)?;
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        if kind == Arith::Mul {
            // Keras 3 batch norm: x * scale + shift with per-channel constants.
            let fused = match (&a, &b) {
                (Value::Node(x), Value::Const(c)) => self.fuse_affine(cx, *x, c, 1)?,
                (Value::Const(c), Value::Node(x)) => self.fuse_affine(cx, *x, c, 0)?,
                _ => None,
            };
            if let Some(v) = fused {
                return Ok(v);
            }
        }
        let an = cx.input_name(0);
        let bn = cx.input_name(1);
        self.arith_values(cx, kind, (&an, &a), (&bn, &b), &cx.name.clone())
    }

    fn arith_values(&mut self, cx: &Cx, kind: Arith, a: (&str, &Value), b: (&str, &Value), base: &str) -> R<Value> {
        let (an, a) = a;
        let (bn, b) = b;
        let out_shape = broadcast_shapes(&self.shape(a), &self.shape(b)).map_err(|e| cx.shape_err(e))?;
        check_shape(&out_shape).map_err(|e| cx.shape_err(e))?;
        if let (Value::Const(x), Value::Const(y)) = (a, b) {
            let r = match kind {
                Arith::Add => binary(x, y, |p, q| p + q, |p, q| Ok(p.wrapping_add(q))),
                Arith::Sub => binary(x, y, |p, q| p - q, |p, q| Ok(p.wrapping_sub(q))),
                Arith::Mul => binary(x, y, |p, q| p * q, |p, q| Ok(p.wrapping_mul(q))),
                Arith::Div => binary(x, y, |p, q| p / q, |p, q| {
                    if q == 0 {
                        Err("integer division by zero".to_string())
                    } else {
                        Ok(p.wrapping_div(q))
                    }
                }),
                Arith::FloorDiv => binary(x, y, |p, q| (p / q).floor(), floor_div),
                Arith::FloorMod => binary(x, y, |p, q| p - (p / q).floor() * q, floor_mod),
                Arith::Maximum => binary(x, y, f32::max, |p, q| Ok(p.max(q))),
                Arith::Minimum => binary(x, y, f32::min, |p, q| Ok(p.min(q))),
            };
            return Ok(Value::Const(Rc::new(r.map_err(|e| cx.shape_err(e))?)));
        }
        let scalar = |v: &Value| match v {
            Value::Const(c) if c.len() == 1 => c.single_f32(),
            _ => None,
        };
        match (kind, a, b) {
            // Public scalar constants.
            (Arith::Add, Value::Node(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, *x, Op::AddScalar(scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Add, _, Value::Node(x)) if scalar(a).is_some() => {
                self.scalar_op(cx, base, *x, Op::AddScalar(scalar(a).unwrap_or_default()), &out_shape)
            }
            (Arith::Mul, Value::Node(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, *x, Op::MulScalar(scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Mul, _, Value::Node(x)) if scalar(a).is_some() => {
                self.scalar_op(cx, base, *x, Op::MulScalar(scalar(a).unwrap_or_default()), &out_shape)
            }
            (Arith::Sub, Value::Node(x), _) if scalar(b).is_some() => {
                self.scalar_op(cx, base, *x, Op::AddScalar(-scalar(b).unwrap_or_default()), &out_shape)
            }
            (Arith::Sub, _, Value::Node(x)) if scalar(a).is_some() => {
                let c = scalar(a).unwrap_or_default();
                let neg = self.emit(cx, format!("{base}/neg"), Op::Neg, &[*x])?;
                self.scalar_op(cx, base, neg, Op::AddScalar(c), &out_shape)
            }
            (Arith::Div, Value::Node(x), _) if scalar(b).is_some() => {
                let c = scalar(b).unwrap_or_default();
                if c == 0.0 || !c.is_finite() {
                    return Err(cx.invalid(format!("division by the constant {c}")));
                }
                self.scalar_op(cx, base, *x, Op::DivScalar(c), &out_shape)
            }
            (Arith::Div, Value::Node(x), Value::Const(c)) => {
                // Division by a constant tensor: multiplication by its reciprocal (a weight).
                let data = c.to_f32();
                if data.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                    return Err(cx.invalid(format!("division by a constant tensor `{bn}` containing zero or non-finite values")));
                }
                let recip = Const::new_f(c.shape.clone(), data.iter().map(|&v| 1.0 / v).collect());
                let w = self.weight(format!("{bn}/reciprocal"), &recip).map_err(|e| cx.shape_err(e))?;
                Ok(Value::Node(self.emit(cx, format!("{base}/mul"), Op::Mul, &[*x, w])?))
            }
            (Arith::Div, _, _) => Err(cx.unsupported(format!(
                "division by `{bn}`, which is computed from the graph inputs, is not supported (only division by constants)"
            ))),
            (Arith::Maximum | Arith::Minimum, Value::Node(x), _) | (Arith::Maximum | Arith::Minimum, _, Value::Node(x))
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
                let y = self.emit(cx, format!("{base}/clip"), op, &[*x])?;
                self.reshape_value(cx, format!("{base}/broadcast"), &Value::Node(y), out_shape)
            }
            (Arith::Maximum | Arith::Minimum, _, _) => Err(cx.unsupported(format!(
                "{} of a computed tensor is supported only with a scalar constant (a clip)",
                cx.op
            ))),
            (Arith::FloorDiv | Arith::FloorMod, _, _) => {
                Err(cx.unsupported(format!("{} of a computed tensor is not supported (only of constants)", cx.op)))
            }
            _ => {
                let x = self.node_of(cx, an, a)?;
                let y = self.node_of(cx, bn, b)?;
                let op = match kind {
                    Arith::Add => Op::Add,
                    Arith::Sub => Op::Sub,
                    _ => Op::Mul,
                };
                Ok(Value::Node(self.emit(cx, format!("{base}/{}", op.name().to_lowercase()), op, &[x, y])?))
            }
        }
    }

    /// `x * scale` followed (as the product's only use) by `+ shift` or `- shift`, with
    /// per-channel constants: an HLIL BatchNorm (mean 0, variance 1, epsilon 0, so exactly
    /// `x * scale + shift`), which Athos folds into a preceding convolution. This is what
    /// Keras 3 batch normalisation leaves once its constant Rsqrt/Mul/Sub chain is evaluated.
    fn fuse_affine(&mut self, cx: &Cx, x: NodeId, scale: &Rc<Const>, scale_pos: usize) -> R<Option<Value>> {
        let xs = self.graph.nodes[x].shape.clone();
        let Some(axis) = per_channel_axis(&scale.shape, &xs) else { return Ok(None) };
        if xs.len() < 2 || !(axis == xs.len() - 1 || axis == 1) {
            return Ok(None);
        }
        let Some((c, pos)) = self.sole_consumer(cx.index) else { return Ok(None) };
        let nodes = self.nodes;
        let consumer = &nodes[c];
        let negate = match consumer.op.as_str() {
            "Add" | "AddV2" => false,
            "Sub" if pos == 0 => true,
            "BiasAdd" if pos == 0 => false,
            _ => return Ok(None),
        };
        let Some(shift) = self.const_operand(c, 1 - pos) else { return Ok(None) };
        let channels = xs[axis];
        let shift_values: Vec<f32> = if shift.len() == 1 {
            vec![shift.to_f32()[0]; channels]
        } else if per_channel_axis(&shift.shape, &xs) == Some(axis)
            && (consumer.op != "BiasAdd" || (shift.shape.len() == 1 && axis == xs.len() - 1))
        {
            shift.to_f32()
        } else {
            return Ok(None);
        };
        if consumer.op == "BiasAdd" {
            let ccx = Cx::new(consumer, c);
            if channel_axis(bias_format(&ccx)?, xs.len()) != axis {
                return Ok(None);
            }
        }
        let consumer_name = consumer.name.clone();
        let shift_name = {
            let ccx = Cx::new(consumer, c);
            ccx.input_name(1 - pos)
        };
        let scale_name = cx.input_name(scale_pos);
        let scale_w = self.materialize(&scale_name, scale, "bn_scale").map_err(|e| cx.shape_err(e))?;
        let scale_w = if self.graph.nodes[scale_w].shape != [channels] {
            let flat = Rc::new(scale.with_shape(vec![channels]));
            self.materialize(&scale_name, &flat, "bn_scale").map_err(|e| cx.shape_err(e))?
        } else {
            scale_w
        };
        let shift_c = Const::new_f(vec![channels], shift_values.iter().map(|&v| if negate { -v } else { v }).collect());
        let shift_w = self.weight(shift_name, &shift_c).map_err(|e| cx.shape_err(e))?;
        let mean = self.weight(format!("{consumer_name}/mean"), &Const::new_f(vec![channels], vec![0.0; channels])).map_err(|e| cx.shape_err(e))?;
        let var = self
            .weight(format!("{consumer_name}/variance"), &Const::new_f(vec![channels], vec![1.0; channels]))
            .map_err(|e| cx.shape_err(e))?;
        let id = self.emit(cx, consumer_name.clone(), Op::BatchNorm { epsilon: 0.0, channel_axis: axis }, &[x, scale_w, shift_w, mean, var])?;
        self.pending_names.push((id, consumer_name));
        self.bind(c, 0, Value::Node(id));
        self.done.insert(c);
        Ok(Some(Value::Dead))
    }

    fn add_n(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(1)?;
        let mut acc_name = cx.input_name(0);
        let mut acc = self.input(cx, 0)?;
        for i in 1..cx.inputs.len() {
            let v = self.input(cx, i)?;
            let vn = cx.input_name(i);
            let base = format!("{}/sum{i}", cx.name);
            acc = self.arith_values(cx, Arith::Add, (&acc_name, &acc), (&vn, &v), &base)?;
            acc_name = base;
        }
        Ok(acc)
    }

    fn bias_add(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let xs = self.shape(&x);
        let bs = self.shape(&b);
        if xs.len() < 2 {
            return Err(cx.shape_err(format!("input of shape {xs:?} must have rank 2 or more")));
        }
        let axis = channel_axis(bias_format(cx)?, xs.len());
        if bs.len() != 1 || bs[0] != xs[axis] {
            return Err(cx.shape_err(format!("bias of shape {bs:?} does not match input {xs:?} on axis {axis}")));
        }
        let mut shape = vec![bs[0]];
        shape.extend(std::iter::repeat_n(1, xs.len() - 1 - axis));
        let bn = cx.input_name(1);
        let b = self.reshape_value(cx, format!("{bn}/reshape"), &b, shape)?;
        let xn = cx.input_name(0);
        self.arith_values(cx, Arith::Add, (&xn, &x), (&bn, &b), &cx.name.clone())
    }

    fn activation(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let op = match cx.op.as_str() {
            "Neg" => Op::Neg,
            "Relu" => Op::Relu,
            "Relu6" => Op::Clip { min: 0.0, max: 6.0 },
            "Square" => Op::Mul,
            _ => {
                let alpha = cx.float_or("alpha", 0.2)?;
                if !alpha.is_finite() {
                    return Err(cx.invalid(format!("invalid alpha {alpha}")));
                }
                Op::LeakyRelu { alpha }
            }
        };
        Ok(match x {
            Value::Const(c) => {
                let f: Box<dyn Fn(f32) -> f32> = match op {
                    Op::Neg => Box::new(|v| -v),
                    Op::Relu => Box::new(|v| v.max(0.0)),
                    Op::Mul => Box::new(|v| v * v),
                    Op::LeakyRelu { alpha } => Box::new(move |v| if v >= 0.0 { v } else { alpha * v }),
                    Op::Clip { min, max } => Box::new(move |v| v.max(min).min(max)),
                    _ => Box::new(|v| v),
                };
                let data = match (&c.data, &op) {
                    (Data::I(v), Op::Neg) => Data::I(v.iter().map(|x| x.wrapping_neg()).collect()),
                    (Data::I(v), Op::Relu) => Data::I(v.iter().map(|&x| x.max(0)).collect()),
                    (Data::I(v), Op::Mul) => Data::I(v.iter().map(|&x| x.wrapping_mul(x)).collect()),
                    _ => Data::F(c.to_f32().into_iter().map(f).collect()),
                };
                Value::Const(Rc::new(Const { shape: c.shape.clone(), data }))
            }
            Value::Node(id) => {
                let inputs: Vec<NodeId> = if op == Op::Mul { vec![id, id] } else { vec![id] };
                Value::Node(self.emit(cx, cx.name.clone(), op, &inputs)?)
            }
            Value::Dead => Value::Dead,
        })
    }

    fn clip_by_value(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let x = self.input(cx, 0)?;
        let lo = self.const_input(cx, 1, "clip_value_min")?;
        let hi = self.const_input(cx, 2, "clip_value_max")?;
        if let Value::Const(c) = &x {
            let t = binary(c, &lo, f32::max, |p, q| Ok(p.max(q))).map_err(|e| cx.shape_err(e))?;
            let t = binary(&t, &hi, f32::min, |p, q| Ok(p.min(q))).map_err(|e| cx.shape_err(e))?;
            return Ok(Value::Const(Rc::new(t)));
        }
        let (Some(min), Some(max)) = (lo.single_f32(), hi.single_f32()) else {
            return Err(cx.unsupported("clip bounds of a computed tensor must be scalars"));
        };
        if min.is_nan() || max.is_nan() || min > max {
            return Err(cx.invalid(format!("invalid clip bounds [{min}, {max}]")));
        }
        let id = self.node(cx, 0)?;
        let xs = self.graph.nodes[id].shape.clone();
        let y = self.emit(cx, cx.name.clone(), Op::Clip { min, max }, &[id])?;
        let out = broadcast_shapes(&xs, &broadcast_shapes(&lo.shape, &hi.shape).map_err(|e| cx.shape_err(e))?)
            .map_err(|e| cx.shape_err(e))?;
        self.reshape_value(cx, format!("{}/broadcast", cx.name), &Value::Node(y), out)
    }

    fn const_unary(&mut self, cx: &Cx) -> R<Value> {
        let c = self.const_input(cx, 0, "x")?;
        let f: fn(f32) -> f32 = match cx.op.as_str() {
            "Rsqrt" => |x| 1.0 / x.sqrt(),
            "Sqrt" => f32::sqrt,
            "Reciprocal" => |x| 1.0 / x,
            "Floor" => f32::floor,
            "Ceil" => f32::ceil,
            "Abs" => f32::abs,
            _ => |x| if x == 0.0 { 1.0 } else { 0.0 },
        };
        let out = match (cx.op.as_str(), &c.data) {
            ("LogicalNot", _) => Const::new_i(c.shape.clone(), c.to_i64().iter().map(|&v| (v == 0) as i64).collect()),
            ("Floor" | "Ceil", Data::I(_)) => (*c).clone(),
            ("Abs", Data::I(v)) => Const::new_i(c.shape.clone(), v.iter().map(|x| x.wrapping_abs()).collect()),
            ("Reciprocal", Data::I(v)) => Const::new_i(
                c.shape.clone(),
                v.iter().map(|&x| if x == 0 { 0 } else { 1i64.wrapping_div(x) }).collect(),
            ),
            _ => Const::new_f(c.shape.clone(), c.to_f32().into_iter().map(f).collect()),
        };
        Ok(Value::Const(Rc::new(out)))
    }

    fn const_compare(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let a = self.const_input(cx, 0, "x")?;
        let b = self.const_input(cx, 1, "y")?;
        let r = match cx.op.as_str() {
            "Equal" => compare(&a, &b, |p, q| p == q, |p, q| p == q),
            "NotEqual" => compare(&a, &b, |p, q| p != q, |p, q| p != q),
            "Less" => compare(&a, &b, |p, q| p < q, |p, q| p < q),
            "LessEqual" => compare(&a, &b, |p, q| p <= q, |p, q| p <= q),
            "Greater" => compare(&a, &b, |p, q| p > q, |p, q| p > q),
            "GreaterEqual" => compare(&a, &b, |p, q| p >= q, |p, q| p >= q),
            "LogicalAnd" => compare(&a, &b, |p, q| p != 0.0 && q != 0.0, |p, q| p != 0 && q != 0),
            _ => compare(&a, &b, |p, q| p != 0.0 || q != 0.0, |p, q| p != 0 || q != 0),
        };
        Ok(Value::Const(Rc::new(r.map_err(|e| cx.shape_err(e))?)))
    }

    fn select(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let c = self.const_input(cx, 0, "condition")?;
        let x = self.const_input(cx, 1, "t")?;
        let y = self.const_input(cx, 2, "e")?;
        let mut cshape = c.shape.clone();
        if cx.op == "Select" && c.shape.len() == 1 && x.shape.len() > 1 {
            // Select with a vector condition picks whole rows.
            cshape.extend(std::iter::repeat_n(1, x.shape.len() - 1));
        }
        let s = broadcast_shapes(&cshape, &x.shape)
            .and_then(|s| broadcast_shapes(&s, &y.shape))
            .map_err(|e| cx.shape_err(e))?;
        let n = check_shape(&s).map_err(|e| cx.shape_err(e))?;
        if n > MAX_GENERATED.max(c.len()).max(x.len()).max(y.len()) {
            return Err(cx.shape_err(format!("constant of shape {s:?} is too large")));
        }
        let cond = consts::broadcast_to(&cshape, &c.to_i64(), &s);
        let out = if x.is_float() || y.is_float() {
            let xs = consts::broadcast_to(&x.shape, &x.to_f32(), &s);
            let ys = consts::broadcast_to(&y.shape, &y.to_f32(), &s);
            Const::new_f(s, (0..n).map(|i| if cond[i] != 0 { xs[i] } else { ys[i] }).collect())
        } else {
            let xs = consts::broadcast_to(&x.shape, &x.to_i64(), &s);
            let ys = consts::broadcast_to(&y.shape, &y.to_i64(), &s);
            Const::new_i(s, (0..n).map(|i| if cond[i] != 0 { xs[i] } else { ys[i] }).collect())
        };
        Ok(Value::Const(Rc::new(out)))
    }

    fn target_shape(&self, cx: &Cx, dims: &[i64]) -> R<Vec<usize>> {
        let shape = dims
            .iter()
            .map(|&d| {
                if d < 0 || d as u64 > MAX_DIM as u64 {
                    Err(cx.invalid(format!("shape {dims:?} has an invalid dimension {d}")))
                } else {
                    Ok(d as usize)
                }
            })
            .collect::<R<Vec<_>>>()?;
        check_shape(&shape).map_err(|e| cx.shape_err(e))?;
        Ok(shape)
    }

    fn fill(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let dims = self.ints_input(cx, 0, "dims")?;
        let shape = self.target_shape(cx, &dims)?;
        let n = elements(&shape);
        if n > MAX_GENERATED {
            return Err(cx.shape_err(format!("constant of shape {shape:?} is too large")));
        }
        let value = self.const_input(cx, 1, "value")?;
        if value.len() != 1 {
            return Err(cx.invalid("value must be a scalar"));
        }
        let data = match &value.data {
            Data::F(v) => Data::F(vec![v[0]; n]),
            Data::I(v) => Data::I(vec![v[0]; n]),
        };
        Ok(Value::Const(Rc::new(Const { shape, data })))
    }

    fn range(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let s = self.const_input(cx, 0, "start")?;
        let l = self.const_input(cx, 1, "limit")?;
        let d = self.const_input(cx, 2, "delta")?;
        if s.len() != 1 || l.len() != 1 || d.len() != 1 {
            return Err(cx.invalid("start, limit and delta must be scalars"));
        }
        if s.is_float() || l.is_float() || d.is_float() {
            let (s, l, d) = (s.to_f32()[0] as f64, l.to_f32()[0] as f64, d.to_f32()[0] as f64);
            let n = ((l - s) / d).ceil();
            if !n.is_finite() || d == 0.0 {
                return Err(cx.invalid("Range with a zero or non-finite delta"));
            }
            let n = n.max(0.0);
            if n > MAX_GENERATED as f64 {
                return Err(cx.shape_err(format!("Range of {n} elements is too large")));
            }
            let n = n as usize;
            let v: Vec<f32> = (0..n).map(|i| (s + i as f64 * d) as f32).collect();
            Ok(Value::Const(Rc::new(Const::new_f(vec![n], v))))
        } else {
            let (s, l, d) = (s.to_i64()[0] as i128, l.to_i64()[0] as i128, d.to_i64()[0] as i128);
            if d == 0 {
                return Err(cx.invalid("Range with delta 0"));
            }
            let diff = l - s;
            let n = if (diff > 0) == (d > 0) && diff != 0 { (diff.abs() + d.abs() - 1) / d.abs() } else { 0 };
            if n > MAX_GENERATED as i128 {
                return Err(cx.shape_err(format!("Range of {n} elements is too large")));
            }
            let v: Vec<i64> = (0..n).map(|i| (s + i * d) as i64).collect();
            Ok(Value::Const(Rc::new(Const::new_i(vec![n as usize], v))))
        }
    }

    fn tile(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.const_input(cx, 0, "input")?;
        let reps = self.ints_input(cx, 1, "multiples")?;
        if reps.len() != x.shape.len() {
            return Err(cx.invalid(format!("multiples {reps:?} do not match rank {}", x.shape.len())));
        }
        let reps = cx.dims(&reps, "multiple")?;
        let mut c = (*x).clone();
        for (axis, &t) in reps.iter().enumerate() {
            if t == 1 {
                continue;
            }
            let mut shape = c.shape.clone();
            shape[axis] = shape[axis].saturating_mul(t);
            let n = check_shape(&shape).map_err(|e| cx.shape_err(e))?;
            if n > MAX_GENERATED.max(c.len()) {
                return Err(cx.shape_err(format!("constant of shape {shape:?} is too large")));
            }
            let mut s1 = c.shape.clone();
            s1.insert(axis, 1);
            let mut s2 = c.shape.clone();
            s2.insert(axis, t);
            c = c.with_shape(s1).map_data(s2.clone(), BroadcastFn(&s2)).with_shape(shape);
        }
        Ok(Value::Const(Rc::new(c)))
    }

    fn broadcast_to(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.const_input(cx, 0, "input")?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let target = self.target_shape(cx, &dims)?;
        let out = broadcast_shapes(&x.shape, &target).map_err(|e| cx.shape_err(e))?;
        if out != target {
            return Err(cx.shape_err(format!("cannot broadcast {:?} to {target:?}", x.shape)));
        }
        let n = elements(&out);
        if n > MAX_GENERATED.max(x.len()) {
            return Err(cx.shape_err(format!("constant of shape {out:?} is too large")));
        }
        Ok(Value::Const(Rc::new(x.map_data(out.clone(), BroadcastFn(&out)))))
    }

    fn gather(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        if shape.is_empty() {
            return Err(cx.invalid("GatherV2 from a scalar"));
        }
        let idx = self.const_input(cx, 1, "indices")?;
        let raw = idx.ints().ok_or_else(|| cx.invalid("indices must be integers"))?.to_vec();
        let axis = self.ints_input(cx, 2, "axis")?;
        if axis.len() != 1 {
            return Err(cx.invalid("axis must be a scalar"));
        }
        if cx.int("batch_dims")?.unwrap_or(0) != 0 {
            return Err(cx.unsupported("batch_dims other than 0 is not supported"));
        }
        let axis = cx.axis(axis[0], shape.len(), "axis")?;
        let dim = shape[axis] as i64;
        let indices = raw
            .iter()
            .map(|&i| {
                if i < 0 || i >= dim {
                    Err(cx.invalid(format!("index {i} out of range for axis {axis} of extent {dim}")))
                } else {
                    Ok(i as usize)
                }
            })
            .collect::<R<Vec<_>>>()?;
        let mut out: Vec<usize> = shape[..axis].to_vec();
        out.extend_from_slice(&idx.shape);
        out.extend_from_slice(&shape[axis + 1..]);
        check_shape(&out).map_err(|e| cx.shape_err(e))?;
        let g = self.gather_value(cx, format!("{}/gather", cx.name), &x, axis, indices)?;
        self.reshape_value(cx, format!("{}/reshape", cx.name), &g, out)
    }

    // ---- shape manipulation ----------------------------------------------------------------

    fn reshape(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let from = self.shape(&x);
        let n = elements(&from);
        let mut out = Vec::with_capacity(dims.len());
        let mut infer = None;
        for (i, &d) in dims.iter().enumerate() {
            match d {
                -1 => {
                    if infer.replace(i).is_some() {
                        return Err(cx.shape_err(format!("shape {dims:?} has more than one -1")));
                    }
                    out.push(1);
                }
                d if d < 0 || d as u64 > MAX_DIM as u64 => {
                    return Err(cx.shape_err(format!("shape {dims:?} has an invalid dimension {d}")))
                }
                d => out.push(d as usize),
            }
        }
        let known = consts::checked_elements(&out).ok_or_else(|| cx.shape_err(format!("shape {dims:?} is too large")))?;
        if let Some(i) = infer {
            if known == 0 || n % known != 0 {
                return Err(cx.shape_err(format!("cannot reshape {from:?} ({n} elements) into {dims:?}")));
            }
            out[i] = n / known;
        }
        if elements(&out) != n {
            return Err(cx.shape_err(format!("cannot reshape {from:?} ({n} elements) into {dims:?}")));
        }
        self.reshape_value(cx, cx.name.clone(), &x, out)
    }

    fn squeeze(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let axes = cx.ints("squeeze_dims")?.filter(|a| !a.is_empty());
        let out: Vec<usize> = match axes {
            None => s.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let mut drop = vec![false; s.len()];
                for a in axes {
                    let a = cx.axis(a, s.len(), "axis")?;
                    if s[a] != 1 {
                        return Err(cx.shape_err(format!("cannot squeeze axis {a} of extent {} in {s:?}", s[a])));
                    }
                    drop[a] = true;
                }
                s.iter().zip(&drop).filter(|(_, &d)| !d).map(|(&v, _)| v).collect()
            }
        };
        self.reshape_value(cx, cx.name.clone(), &x, out)
    }

    fn expand_dims(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let mut s = self.shape(&x);
        let axis = self.ints_input(cx, 1, "axis")?;
        if axis.len() != 1 {
            return Err(cx.invalid("axis must be a scalar"));
        }
        let a = cx.axis(axis[0], s.len() + 1, "axis")?;
        s.insert(a, 1);
        self.reshape_value(cx, cx.name.clone(), &x, s)
    }

    fn transpose(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let p = self.ints_input(cx, 1, "perm")?;
        let perm = p
            .iter()
            .map(|&a| usize::try_from(a).map_err(|_| cx.invalid(format!("perm {p:?} is not a permutation"))))
            .collect::<R<Vec<_>>>()?;
        self.transpose_value(cx, cx.name.clone(), &x, perm)
    }

    fn concat(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let n = cx.inputs.len();
        let (axis_pos, range) = if cx.op == "ConcatV2" { (n - 1, 0..n - 1) } else { (0, 1..n) };
        let axis = self.ints_input(cx, axis_pos, "axis")?;
        if axis.len() != 1 {
            return Err(cx.invalid("axis must be a scalar"));
        }
        let mut parts = Vec::new();
        for i in range {
            parts.push((cx.input_name(i), self.input(cx, i)?));
        }
        let rank = self.shape(&parts[0].1).len();
        let axis = cx.axis(axis[0], rank, "axis")?;
        self.concat_values(cx, cx.name.clone(), &parts, axis)
    }

    fn pack(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(1)?;
        let first = self.input(cx, 0)?;
        let s = self.shape(&first);
        let axis = cx.axis(cx.int("axis")?.unwrap_or(0), s.len() + 1, "axis")?;
        let mut expanded = s.clone();
        expanded.insert(axis, 1);
        let mut parts = Vec::new();
        for i in 0..cx.inputs.len() {
            let v = self.input(cx, i)?;
            if self.shape(&v) != s {
                return Err(cx.shape_err(format!("cannot stack {s:?} and {:?}", self.shape(&v))));
            }
            let name = format!("{}/expand{i}", cx.name);
            let v = self.reshape_value(cx, name.clone(), &v, expanded.clone())?;
            let pname = if matches!(v, Value::Const(_)) { cx.input_name(i) } else { name };
            parts.push((pname, v));
        }
        self.concat_values(cx, cx.name.clone(), &parts, axis)
    }

    fn unpack(&mut self, cx: &Cx) -> R<Vec<Value>> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        if s.is_empty() {
            return Err(cx.invalid("Unpack of a scalar"));
        }
        let axis = cx.axis(cx.int("axis")?.unwrap_or(0), s.len(), "axis")?;
        let num = s[axis];
        if let Some(n) = cx.int("num")? {
            if n != num as i64 {
                return Err(cx.shape_err(format!("num {n} does not match extent {num} of axis {axis}")));
            }
        }
        if num > 1 << 16 {
            return Err(cx.shape_err(format!("Unpack into {num} outputs is not supported")));
        }
        let mut out_shape = s.clone();
        out_shape.remove(axis);
        let mut outs = Vec::with_capacity(num);
        for k in 0..num {
            let name = if k == 0 { cx.name.clone() } else { format!("{}:{k}", cx.name) };
            let mut starts = vec![0i64; s.len()];
            let mut ends: Vec<i64> = s.iter().map(|&d| d as i64).collect();
            starts[axis] = k as i64;
            ends[axis] = k as i64 + 1;
            let v = self.slice_value(cx, format!("{name}/slice"), &x, starts, ends, vec![1; s.len()])?;
            outs.push(self.reshape_value(cx, name, &v, out_shape.clone())?);
        }
        Ok(outs)
    }

    fn slice(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        let begin = self.ints_input(cx, 1, "begin")?;
        let size = self.ints_input(cx, 2, "size")?;
        let r = shape.len();
        if begin.len() != r || size.len() != r {
            return Err(cx.invalid(format!("begin {begin:?} and size {size:?} must have {r} entries")));
        }
        let mut starts = vec![0i64; r];
        let mut ends = vec![0i64; r];
        for i in 0..r {
            let dim = shape[i] as i64;
            let b = begin[i];
            let e = if size[i] == -1 { dim } else { b.saturating_add(size[i]) };
            if b < 0 || b > dim || size[i] < -1 || e > dim || e < b {
                return Err(cx.invalid(format!("slice begin {begin:?} size {size:?} out of range for {shape:?}")));
            }
            starts[i] = b;
            ends[i] = e;
        }
        self.slice_value(cx, cx.name.clone(), &x, starts, ends, vec![1; r])
    }

    fn strided_slice(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(4)?;
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        let begin = self.ints_input(cx, 1, "begin")?;
        let end = self.ints_input(cx, 2, "end")?;
        let strides = self.ints_input(cx, 3, "strides")?;
        let mask = |name: &str| -> R<i64> { Ok(cx.int(name)?.unwrap_or(0)) };
        let spec = StridedSpec {
            begin_mask: mask("begin_mask")?,
            end_mask: mask("end_mask")?,
            ellipsis_mask: mask("ellipsis_mask")?,
            new_axis_mask: mask("new_axis_mask")?,
            shrink_axis_mask: mask("shrink_axis_mask")?,
        };
        let (starts, ends, steps, final_shape) =
            spec.normalise(&shape, &begin, &end, &strides).map_err(|e| cx.invalid(e))?;
        let sliced = self.slice_value(cx, format!("{}/slice", cx.name), &x, starts, ends, steps)?;
        let sliced_shape = self.shape(&sliced);
        if elements(&sliced_shape) != elements(&final_shape) {
            return Err(cx.shape_err(format!("internal: slice {sliced_shape:?} vs {final_shape:?}")));
        }
        self.reshape_value(cx, cx.name.clone(), &sliced, final_shape)
    }

    fn split(&mut self, cx: &Cx) -> R<Vec<Value>> {
        let (x, axis, sizes) = if cx.op == "Split" {
            cx.need_inputs(2)?;
            let axis = self.ints_input(cx, 0, "axis")?;
            let x = self.input(cx, 1)?;
            (x, axis, None)
        } else {
            cx.need_inputs(3)?;
            let x = self.input(cx, 0)?;
            let sizes = self.ints_input(cx, 1, "size_splits")?;
            let axis = self.ints_input(cx, 2, "axis")?;
            (x, axis, Some(sizes))
        };
        if axis.len() != 1 {
            return Err(cx.invalid("axis must be a scalar"));
        }
        let shape = self.shape(&x);
        let axis = cx.axis(axis[0], shape.len(), "axis")?;
        let dim = shape[axis];
        let n = cx.int("num_split")?.ok_or_else(|| cx.invalid("missing attribute `num_split`"))?;
        if n <= 0 || n > 1 << 16 {
            return Err(cx.invalid(format!("num_split {n} is out of range")));
        }
        let n = n as usize;
        let sizes: Vec<usize> = match sizes {
            None => {
                if dim % n != 0 {
                    return Err(cx.shape_err(format!("cannot split extent {dim} into {n} equal parts")));
                }
                vec![dim / n; n]
            }
            Some(s) => {
                if s.len() != n {
                    return Err(cx.invalid(format!("size_splits {s:?} does not have num_split = {n} entries")));
                }
                let inferred: Vec<usize> = (0..n).filter(|&i| s[i] == -1).collect();
                if inferred.len() > 1 {
                    return Err(cx.invalid(format!("size_splits {s:?} has more than one -1")));
                }
                let known: i64 = s.iter().filter(|&&v| v != -1).try_fold(0i64, |acc, &v| {
                    if v < 0 || v as u64 > MAX_DIM as u64 {
                        None
                    } else {
                        Some(acc + v)
                    }
                })
                .ok_or_else(|| cx.invalid(format!("size_splits {s:?} has an invalid size")))?;
                let mut sizes: Vec<usize> = s.iter().map(|&v| v.max(0) as usize).collect();
                if let Some(&i) = inferred.first() {
                    if known as u64 > dim as u64 {
                        return Err(cx.shape_err(format!("size_splits {s:?} exceed extent {dim}")));
                    }
                    sizes[i] = dim - known as usize;
                }
                if sizes.iter().sum::<usize>() != dim {
                    return Err(cx.shape_err(format!("size_splits {s:?} do not add up to extent {dim} of axis {axis}")));
                }
                sizes
            }
        };
        let mut offset = 0usize;
        let mut outs = Vec::with_capacity(n);
        for (k, &size) in sizes.iter().enumerate() {
            let name = if k == 0 { cx.name.clone() } else { format!("{}:{k}", cx.name) };
            let mut starts = vec![0i64; shape.len()];
            let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            starts[axis] = offset as i64;
            ends[axis] = (offset + size) as i64;
            let start = self.graph.nodes.len();
            let v = self.slice_value(cx, name.clone(), &x, starts, ends, vec![1; shape.len()])?;
            if let Value::Node(id) = v {
                if id >= start {
                    self.pending_names.push((id, name));
                }
            }
            outs.push(v);
            offset += size;
        }
        Ok(outs)
    }

    fn pad(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let r = s.len();
        let pads_c = self.const_input(cx, 1, "paddings")?;
        let pads = pads_c.ints().ok_or_else(|| cx.invalid("paddings must be integers"))?;
        if pads_c.shape != [r, 2] {
            return Err(cx.invalid(format!("paddings of shape {:?} must be [{r}, 2]", pads_c.shape)));
        }
        let value = if cx.op == "PadV2" && cx.inputs.len() > 2 {
            let c = self.const_input(cx, 2, "constant_values")?;
            c.single_f32().ok_or_else(|| cx.invalid("constant_values must be a scalar"))?
        } else {
            0.0
        };
        let mut begin = vec![0usize; r];
        let mut end = vec![0usize; r];
        for i in 0..r {
            begin[i] = cx.dim(pads[2 * i], "padding")?;
            end[i] = cx.dim(pads[2 * i + 1], "padding")?;
        }
        self.pad_value(cx, cx.name.clone(), &x, begin, end, value)
    }

    fn reduce(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let op = cx.op.clone();
        let raw = self.ints_input(cx, 1, "reduction_indices")?;
        let keep = cx.bool_or("keep_dims", false)?;
        let mut axes: Vec<usize> = raw.iter().map(|&a| cx.axis(a, s.len(), "axis")).collect::<R<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        let mut out: Vec<usize> = Vec::new();
        for (i, &d) in s.iter().enumerate() {
            if axes.contains(&i) {
                if keep {
                    out.push(1);
                }
            } else {
                out.push(d);
            }
        }
        let count: usize = axes.iter().map(|&a| s[a]).product();
        match x {
            Value::Const(c) => Ok(Value::Const(Rc::new(reduce_const(&c, &axes, out, &op)))),
            Value::Dead => Ok(Value::Dead),
            Value::Node(id) => {
                if axes.is_empty() {
                    return Ok(Value::Node(id));
                }
                if count == 0 {
                    return Err(cx.shape_err("reduction over an empty axis"));
                }
                let name = cx.name.clone();
                match op.as_str() {
                    "Mean" | "Sum" => {
                        let m = self.emit(cx, format!("{name}/mean"), Op::ReduceMean { axes, keep_dims: keep }, &[id])?;
                        if op == "Sum" && count != 1 {
                            Ok(Value::Node(self.emit(cx, format!("{name}/sum"), Op::MulScalar(count as f32), &[m])?))
                        } else {
                            Ok(Value::Node(m))
                        }
                    }
                    "Max" if (3..=5).contains(&s.len())
                        && (axes == spatial_axes(Layout::ChannelsLast, s.len())
                            || axes == spatial_axes(Layout::ChannelsFirst, s.len())) =>
                    {
                        // Global max pooling.
                        let layout = if axes[0] == 1 { Layout::ChannelsLast } else { Layout::ChannelsFirst };
                        let ca = channel_axis(layout, s.len());
                        let input: Vec<usize> = axes.iter().map(|&a| s[a]).collect();
                        let r = input.len();
                        let g = PoolGeometry {
                            layout,
                            batch: s[0],
                            channels: s[ca],
                            window: input.clone(),
                            input,
                            strides: vec![1; r],
                            pads_begin: vec![0; r],
                            pads_end: vec![0; r],
                            count_include_pad: false,
                        };
                        let m = self.emit(cx, format!("{name}/maxpool"), Op::MaxPool(g), &[id])?;
                        self.reshape_value(cx, name, &Value::Node(m), out)
                    }
                    _ => Err(cx.unsupported(format!(
                        "{op} of a computed tensor is not supported (only of constants{})",
                        if op == "Max" { ", and Max over all spatial axes as global max pooling" } else { "" }
                    ))),
                }
            }
        }
    }

    fn argmax(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let xv = self.input(cx, 0)?;
        let r = self.shape(&xv).len();
        let axis = self.ints_input(cx, 1, "dimension")?;
        if axis.len() != 1 {
            return Err(cx.invalid("dimension must be a scalar"));
        }
        if r == 0 {
            return Err(cx.invalid("ArgMax of a scalar"));
        }
        let axis = cx.axis(axis[0], r, "dimension")?;
        let x = self.node(cx, 0)?;
        let id = self.emit(cx, cx.name.clone(), Op::ArgMax { axis, keep_dims: false }, &[x])?;
        self.int_nodes.insert(id);
        Ok(Value::Node(id))
    }

    fn softmax(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        if let Err((node, op)) = self.only_reaches_outputs(cx.index) {
            return Err(cx.unsupported(format!(
                "Softmax is supported only when its result is a graph output (it is then compiled away, since it \
                 preserves the argmax); here `{}` feeds node `{node}` ({op})",
                cx.name
            )));
        }
        if matches!(x, Value::Node(_)) {
            self.notices.push(format!(
                "Softmax `{}` at the output compiled away: it preserves the argmax, so predictions are unchanged (outputs are logits)",
                cx.name
            ));
        }
        Ok(x)
    }

    // ---- convolutions and pooling --------------------------------------------------------

    /// Strides, kernel sizes or dilations given for every axis of the activation: the
    /// spatial entries (the batch and channel entries must be 1).
    fn per_axis_attr(&self, cx: &Cx, name: &str, rank: usize, layout: Layout, required: bool) -> R<Vec<usize>> {
        let sp = spatial_axes(layout, rank);
        let v = match cx.ints(name)? {
            Some(v) if !v.is_empty() => v,
            _ if required => return Err(cx.invalid(format!("missing attribute `{name}`"))),
            _ => return Ok(vec![1; sp.len()]),
        };
        if v.len() != rank {
            return Err(cx.invalid(format!("{name} {v:?} must have {rank} entries")));
        }
        let ca = channel_axis(layout, rank);
        if v[0] != 1 || v[ca] != 1 {
            return Err(cx.unsupported(format!("{name} {v:?} other than 1 on the batch or channel axis")));
        }
        let out = sp.iter().map(|&a| cx.dim(v[a], name)).collect::<R<Vec<_>>>()?;
        if out.contains(&0) {
            return Err(cx.invalid(format!("{name} {v:?} must be positive")));
        }
        Ok(out)
    }

    /// Padding of each spatial axis from `padding` (`SAME`, `VALID`, `EXPLICIT`), as
    /// TensorFlow computes it: `SAME` puts the odd pad at the end.
    fn tf_pads(&self, cx: &Cx, input: &[usize], span: &[usize], strides: &[usize], layout: Layout) -> R<(Vec<usize>, Vec<usize>)> {
        let r = input.len();
        let padding = cx.string("padding")?.ok_or_else(|| cx.invalid("missing attribute `padding`"))?;
        match padding.as_str() {
            "VALID" => Ok((vec![0; r], vec![0; r])),
            "SAME" => {
                let mut b = vec![0; r];
                let mut e = vec![0; r];
                for i in 0..r {
                    let out = input[i].div_ceil(strides[i]);
                    let total = ((out.max(1) - 1) * strides[i] + span[i]).saturating_sub(input[i]);
                    b[i] = total / 2;
                    e[i] = total - total / 2;
                }
                Ok((b, e))
            }
            "EXPLICIT" => {
                let rank = r + 2;
                let p = cx.ints("explicit_paddings")?.unwrap_or_default();
                if p.len() != 2 * rank {
                    return Err(cx.invalid(format!("explicit_paddings {p:?} must have {} entries", 2 * rank)));
                }
                let ca = channel_axis(layout, rank);
                if p[0] != 0 || p[1] != 0 || p[2 * ca] != 0 || p[2 * ca + 1] != 0 {
                    return Err(cx.unsupported("padding of the batch or channel axis"));
                }
                let sp = spatial_axes(layout, rank);
                let b = sp.iter().map(|&a| cx.dim(p[2 * a], "padding")).collect::<R<Vec<_>>>()?;
                let e = sp.iter().map(|&a| cx.dim(p[2 * a + 1], "padding")).collect::<R<Vec<_>>>()?;
                Ok((b, e))
            }
            other => Err(cx.invalid(format!("unknown padding `{other}`"))),
        }
    }

    /// The HLIL node of a filter permuted into the ONNX layout. `perm` reorders the
    /// TensorFlow filter; `reshape` (depthwise) merges `[C_in, M]` into `[C_in * M, 1]`.
    fn filter_node(&mut self, cx: &Cx, name: &str, f: &Value, perm: Vec<usize>, reshape: Option<Vec<usize>>, tag: &'static str) -> R<NodeId> {
        match f {
            Value::Const(c) => {
                let mut out: Vec<usize> = perm.iter().map(|&p| c.shape[p]).collect();
                let mut t = c.map_data(out.clone(), Transpose(&perm));
                if let Some(s) = reshape {
                    out = s;
                    t = t.with_shape(out);
                }
                let t = Rc::new(t);
                // Cache under the original constant so a filter used twice is one weight.
                self.materialize_derived(name, c, tag, t).map_err(|e| cx.shape_err(e))
            }
            Value::Node(_) => {
                let t = self.transpose_value(cx, format!("{name}/{tag}"), f, perm)?;
                let t = match reshape {
                    Some(s) => self.reshape_value(cx, format!("{name}/{tag}/reshape"), &t, s)?,
                    None => t,
                };
                self.node_of(cx, name, &t)
            }
            Value::Dead => Err(cx.invalid("reads a dead value")),
        }
    }

    /// Conv2D, Conv3D and DepthwiseConv2dNative. `dilated` overrides dilations and pads (the
    /// `SpaceToBatchND` form); the result's value is bound to the node (or to the bias add
    /// fused into it) and returned.
    fn conv_core(&mut self, cx: &Cx, x: NodeId, f: Value, fname: &str, dilated: Option<Dilated>) -> R<Value> {
        let depthwise = cx.op == "DepthwiseConv2dNative";
        let rank = if cx.op == "Conv3D" { 5 } else { 4 };
        let xs = self.graph.nodes[x].shape.clone();
        if xs.len() != rank {
            return Err(cx.shape_err(format!("input of shape {xs:?} must have rank {rank}")));
        }
        if xs.contains(&0) {
            return Err(cx.shape_err(format!("input of shape {xs:?} is empty")));
        }
        let layout = data_format(cx, rank)?;
        let r = rank - 2;
        let sp = spatial_axes(layout, rank);
        let ca = channel_axis(layout, rank);
        let input: Vec<usize> = sp.iter().map(|&a| xs[a]).collect();
        let cin = xs[ca];
        let fs = self.shape(&f);
        if fs.len() != rank || fs.contains(&0) {
            return Err(cx.shape_err(format!(
                "filter of shape {fs:?} must have rank {rank} ([k_1..k_{r}, C_in{}, {}])",
                if depthwise { "" } else { "/groups" },
                if depthwise { "multiplier" } else { "C_out" }
            )));
        }
        let kernel = fs[..r].to_vec();
        let mut perm: Vec<usize> = vec![r + 1, r];
        perm.extend(0..r);
        let (out_channels, groups, filter) = if depthwise {
            if fs[r] != cin {
                return Err(cx.shape_err(format!("depthwise filter {fs:?} does not match {cin} input channels")));
            }
            let mult = fs[r + 1];
            let out = cin.checked_mul(mult).ok_or_else(|| cx.shape_err("too many channels"))?;
            let mut perm: Vec<usize> = vec![r, r + 1];
            perm.extend(0..r);
            let mut merged = vec![out, 1];
            merged.extend_from_slice(&kernel);
            (out, cin, self.filter_node(cx, fname, &f, perm, Some(merged), "depthwise_oihw")?)
        } else {
            let fin = fs[r];
            if cin % fin != 0 || fs[r + 1] % (cin / fin) != 0 {
                return Err(cx.shape_err(format!("filter {fs:?} does not fit input {xs:?} ({cin} input channels)")));
            }
            (fs[r + 1], cin / fin, self.filter_node(cx, fname, &f, perm, None, "oihw")?)
        };
        let strides = self.per_axis_attr(cx, "strides", rank, layout, true)?;
        let (dilations, pads_begin, pads_end) = match dilated {
            Some(d) => (d.dilations, d.pads_begin, d.pads_end),
            None => {
                let dilations = self.per_axis_attr(cx, "dilations", rank, layout, false)?;
                let span: Vec<usize> = (0..r).map(|i| dilations[i] * (kernel[i] - 1) + 1).collect();
                let (b, e) = self.tf_pads(cx, &input, &span, &strides, layout)?;
                (dilations, b, e)
            }
        };
        let g = ConvGeometry {
            layout,
            batch: xs[0],
            in_channels: cin,
            out_channels,
            groups,
            input,
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            output_padding: vec![0; r],
        };
        self.emit_with_bias(cx, Op::Conv(g), x, filter, out_channels, ca, rank)
    }

    /// Emits a convolution, fusing a bias add that is its only use (BiasAdd, or Add/AddV2 of
    /// a per-channel constant) into it. The node whose output the convolution is, is `cx`.
    #[allow(clippy::too_many_arguments)]
    fn emit_with_bias(&mut self, cx: &Cx, op: Op, x: NodeId, filter: NodeId, channels: usize, ca: usize, rank: usize) -> R<Value> {
        let mut inputs = vec![x, filter];
        let mut name = cx.name.clone();
        let mut fused = None;
        if let Some((c, pos)) = self.sole_consumer(cx.index) {
            let nodes = self.nodes;
            let consumer = &nodes[c];
            let ccx = Cx::new(consumer, c);
            let bias = match consumer.op.as_str() {
                "BiasAdd" if pos == 0 => {
                    let fmt = bias_format(&ccx).ok();
                    self.const_operand(c, 1)
                        .filter(|b| b.shape == [channels] && fmt.map(|l| channel_axis(l, rank)) == Some(ca))
                }
                "Add" | "AddV2" => self.const_operand(c, 1 - pos).filter(|b| {
                    b.len() == channels && b.shape.len() <= rank && {
                        let mut out = vec![1; rank];
                        out[ca] = channels;
                        per_channel_axis(&b.shape, &out) == Some(ca) || (channels == 1 && b.len() == 1)
                    }
                }),
                _ => None,
            };
            if let Some(b) = bias {
                let flat = Rc::new(b.with_shape(vec![channels]));
                let w = self.materialize_derived(&ccx.input_name(1 - pos), &b, "bias", flat).map_err(|e| cx.shape_err(e))?;
                inputs.push(w);
                name = consumer.name.clone();
                fused = Some(c);
            }
        }
        let id = self.emit(cx, name.clone(), op, &inputs)?;
        if let Some(c) = fused {
            self.pending_names.push((id, name));
            self.bind(c, 0, Value::Node(id));
            self.done.insert(c);
            return Ok(Value::Dead);
        }
        Ok(Value::Node(id))
    }

    /// `SpaceToBatchND -> Conv2D/DepthwiseConv2dNative (VALID, stride 1) -> BatchToSpaceND`,
    /// which `tf.nn.convolution` emits for dilated convolutions: one dilated convolution with
    /// pads `paddings - crops`.
    fn space_to_batch(&mut self, cx: &Cx) -> R<Value> {
        let unsupported = || {
            cx.unsupported(
                "SpaceToBatchND is supported only as part of a dilated convolution \
                 (SpaceToBatchND -> Conv2D/DepthwiseConv2dNative -> BatchToSpaceND, as tf.nn.convolution emits)",
            )
        };
        cx.need_inputs(3)?;
        let x = self.node(cx, 0)?;
        let block = self.ints_input(cx, 1, "block_shape")?;
        let paddings = self.ints_input(cx, 2, "paddings")?;
        let xs = self.graph.nodes[x].shape.clone();
        if xs.len() != 4 || block.len() != 2 || paddings.len() != 4 {
            return Err(unsupported());
        }
        let Some((c, 0)) = self.sole_consumer(cx.index) else { return Err(unsupported()) };
        let nodes = self.nodes;
        let conv = &nodes[c];
        let ccx = Cx::new(conv, c);
        if !matches!(conv.op.as_str(), "Conv2D" | "DepthwiseConv2dNative") || ccx.inputs.len() < 2 {
            return Err(unsupported());
        }
        if data_format(&ccx, 4)? != Layout::ChannelsLast
            || ccx.string("padding")?.as_deref() != Some("VALID")
            || self.per_axis_attr(&ccx, "strides", 4, Layout::ChannelsLast, true)? != [1, 1]
            || self.per_axis_attr(&ccx, "dilations", 4, Layout::ChannelsLast, false)? != [1, 1]
        {
            return Err(unsupported());
        }
        let Some((b, 0)) = self.sole_consumer(c) else { return Err(unsupported()) };
        if self.nodes[b].op != "BatchToSpaceND" {
            return Err(unsupported());
        }
        let block2 = self.const_operand(b, 1).and_then(|v| v.ints().map(<[i64]>::to_vec));
        let crops = self.const_operand(b, 2).and_then(|v| v.ints().map(<[i64]>::to_vec));
        let (Some(block2), Some(crops)) = (block2, crops) else { return Err(unsupported()) };
        if block2 != block || crops.len() != 4 {
            return Err(unsupported());
        }
        let mut d = Dilated { dilations: vec![], pads_begin: vec![], pads_end: vec![] };
        for j in 0..2 {
            let pb = paddings[2 * j] - crops[2 * j];
            let pe = paddings[2 * j + 1] - crops[2 * j + 1];
            if pb < 0 || pe < 0 || paddings[2 * j] < 0 || crops[2 * j] < 0 || crops[2 * j + 1] < 0 {
                return Err(unsupported());
            }
            d.dilations.push(cx.dim(block[j], "block size")?);
            d.pads_begin.push(cx.dim(pb, "padding")?);
            d.pads_end.push(cx.dim(pe, "padding")?);
        }
        if d.dilations.contains(&0) {
            return Err(cx.invalid("block sizes must be positive"));
        }
        // The filter must be known already (a constant, or computed before).
        let filter = self.input(&ccx, 1).map_err(|_| unsupported())?;
        let fname = ccx.input_name(1);
        // The dilated convolution stands for the BatchToSpaceND node.
        let bnode = &nodes[b];
        let mut bcx = Cx::new(bnode, b);
        bcx.op = conv.op.clone();
        bcx.node = conv;
        self.done.insert(c);
        let v = self.conv_core(&bcx, x, filter, &fname, Some(d))?;
        if let Value::Node(id) = v {
            self.pending_names.push((id, bnode.name.clone()));
            self.bind(b, 0, v);
        }
        self.done.insert(b);
        Ok(Value::Dead)
    }

    fn conv_transpose(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let rank = if cx.op == "Conv3DBackpropInputV2" { 5 } else { 4 };
        let r = rank - 2;
        let sizes = self.ints_input(cx, 0, "input_sizes")?;
        let f = self.input(cx, 1)?;
        let x = self.node(cx, 2)?;
        let xs = self.graph.nodes[x].shape.clone();
        if xs.len() != rank || xs.contains(&0) {
            return Err(cx.shape_err(format!("out_backprop of shape {xs:?} must be a non-empty tensor of rank {rank}")));
        }
        let layout = data_format(cx, rank)?;
        let sp = spatial_axes(layout, rank);
        let ca = channel_axis(layout, rank);
        let fs = self.shape(&f);
        if fs.len() != rank || fs.contains(&0) {
            return Err(cx.shape_err(format!("filter of shape {fs:?} must have rank {rank} ([k_1..k_{r}, C_out, C_in])")));
        }
        if fs[r + 1] != xs[ca] {
            return Err(cx.shape_err(format!("filter {fs:?} does not match the {} channels of out_backprop {xs:?}", xs[ca])));
        }
        let out_channels = fs[r];
        let output: Vec<usize> = if sizes.len() == rank {
            if sizes[0] as u64 != xs[0] as u64 || sizes[ca] as u64 != out_channels as u64 {
                return Err(cx.shape_err(format!(
                    "input_sizes {sizes:?} do not match batch {} and filter channels {out_channels}",
                    xs[0]
                )));
            }
            sp.iter().map(|&a| cx.dim(sizes[a], "input size")).collect::<R<_>>()?
        } else if sizes.len() == r {
            cx.dims(&sizes, "input size")?
        } else {
            return Err(cx.invalid(format!("input_sizes {sizes:?} must have {rank} (or {r}) entries")));
        };
        if output.contains(&0) {
            return Err(cx.shape_err(format!("input_sizes {sizes:?} has an empty dimension")));
        }
        let kernel = fs[..r].to_vec();
        let strides = self.per_axis_attr(cx, "strides", rank, layout, true)?;
        let dilations = self.per_axis_attr(cx, "dilations", rank, layout, false)?;
        let span: Vec<usize> = (0..r).map(|i| dilations[i] * (kernel[i] - 1) + 1).collect();
        // Pads of the forward convolution from `output` to `xs`.
        let (pads_begin, pads_end) = self.tf_pads(cx, &output, &span, &strides, layout)?;
        let input: Vec<usize> = sp.iter().map(|&a| xs[a]).collect();
        let mut output_padding = vec![0; r];
        for i in 0..r {
            let padded = output[i] + pads_begin[i] + pads_end[i];
            let forward = if padded >= span[i] { (padded - span[i]) / strides[i] + 1 } else { 0 };
            if forward != input[i] {
                return Err(cx.shape_err(format!(
                    "input_sizes {sizes:?} are inconsistent with out_backprop {xs:?}, the filter and the strides \
                     (a convolution of the result would give extent {forward}, not {}, on spatial axis {i})",
                    input[i]
                )));
            }
            output_padding[i] = (padded - span[i]) % strides[i];
        }
        let mut perm: Vec<usize> = vec![r + 1, r];
        perm.extend(0..r);
        let filter = self.filter_node(cx, &cx.input_name(1), &f, perm, None, "iohw")?;
        let g = ConvGeometry {
            layout,
            batch: xs[0],
            in_channels: xs[ca],
            out_channels,
            groups: 1,
            input,
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            output_padding,
        };
        self.emit_with_bias(cx, Op::ConvTranspose(g), x, filter, out_channels, ca, rank)
    }

    fn pool(&mut self, cx: &Cx) -> R<Value> {
        let is_max = cx.op.starts_with("MaxPool");
        let rank = if cx.op.ends_with("3D") { 5 } else { 4 };
        let x = self.node(cx, 0)?;
        let xs = self.graph.nodes[x].shape.clone();
        if xs.len() != rank || xs.contains(&0) {
            return Err(cx.shape_err(format!("input of shape {xs:?} must be a non-empty tensor of rank {rank}")));
        }
        let layout = data_format(cx, rank)?;
        let sp = spatial_axes(layout, rank);
        let window = self.per_axis_attr(cx, "ksize", rank, layout, true)?;
        let strides = self.per_axis_attr(cx, "strides", rank, layout, true)?;
        let input: Vec<usize> = sp.iter().map(|&a| xs[a]).collect();
        let (pads_begin, pads_end) = self.tf_pads(cx, &input, &window, &strides, layout)?;
        for i in 0..input.len() {
            if input[i] + pads_begin[i] + pads_end[i] < window[i] {
                return Err(cx.shape_err(format!(
                    "pooling window {window:?} exceeds the padded input extent on spatial axis {i}"
                )));
            }
            if pads_begin[i] >= window[i] || pads_end[i] >= window[i] {
                return Err(cx.unsupported(format!("padding as wide as the pooling window {window:?}")));
            }
        }
        let g = PoolGeometry {
            layout,
            batch: xs[0],
            channels: xs[channel_axis(layout, rank)],
            input,
            window,
            strides,
            pads_begin,
            pads_end,
            // TensorFlow averages over the window's elements inside the input only.
            count_include_pad: false,
        };
        let op = if is_max { Op::MaxPool(g) } else { Op::AvgPool(g) };
        Ok(Value::Node(self.emit(cx, cx.name.clone(), op, &[x])?))
    }

    fn fused_batch_norm(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(5)?;
        if cx.bool_or("is_training", true)? {
            return Err(cx.unsupported("is_training=true (batch statistics) is not supported (inference only)"));
        }
        if let Some(k) = self.extra_output_used(cx.index) {
            return Err(cx.unsupported(format!("its output {k} (batch statistics) is used, which is not supported")));
        }
        let x = self.node(cx, 0)?;
        let xs = self.graph.nodes[x].shape.clone();
        if !(4..=5).contains(&xs.len()) {
            return Err(cx.shape_err(format!("input of shape {xs:?} must have rank 4 or 5")));
        }
        let axis = channel_axis(data_format(cx, xs.len())?, xs.len());
        let epsilon = cx.float_or("epsilon", 1e-4)?;
        if !(epsilon >= 0.0 && epsilon.is_finite()) {
            return Err(cx.invalid(format!("invalid epsilon {epsilon}")));
        }
        let c = xs[axis];
        let mut inputs = vec![x];
        for (i, what) in [(1, "scale"), (2, "offset"), (3, "mean"), (4, "variance")] {
            let v = self.input(cx, i)?;
            let s = self.shape(&v);
            if s != [c] {
                return Err(cx.shape_err(format!("{what} of shape {s:?} does not match {c} channels of input {xs:?}")));
            }
            inputs.push(self.node(cx, i)?);
        }
        Ok(Value::Node(self.emit(cx, cx.name.clone(), Op::BatchNorm { epsilon, channel_axis: axis }, &inputs)?))
    }

    // ---- matrix products -------------------------------------------------------------------

    fn matmul(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let mut a = self.input(cx, 0)?;
        let mut b = self.input(cx, 1)?;
        let (sa, sb) = (self.shape(&a), self.shape(&b));
        if sa.len() != 2 || sb.len() != 2 {
            return Err(cx.shape_err(format!("MatMul operands must be matrices, got {sa:?} and {sb:?}")));
        }
        let mut an = cx.input_name(0);
        let mut bn = cx.input_name(1);
        if cx.bool_or("transpose_a", false)? {
            an = format!("{an}/transposed");
            a = self.transpose_value(cx, an.clone(), &a, vec![1, 0])?;
        }
        if cx.bool_or("transpose_b", false)? {
            bn = format!("{bn}/transposed");
            b = self.transpose_value(cx, bn.clone(), &b, vec![1, 0])?;
        }
        let name = cx.name.clone();
        self.matmul_values(cx, &name, (&an, &a), (&bn, &b))
    }

    fn batch_matmul(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let mut a = self.input(cx, 0)?;
        let mut b = self.input(cx, 1)?;
        let mut an = cx.input_name(0);
        let mut bn = cx.input_name(1);
        for (v, n, attr) in [(&mut a, &mut an, "adj_x"), (&mut b, &mut bn, "adj_y")] {
            if cx.bool_or(attr, false)? {
                let r = self.shape(v).len();
                if r < 2 {
                    return Err(cx.shape_err("BatchMatMul operands must have rank 2 or more"));
                }
                let mut perm: Vec<usize> = (0..r).collect();
                perm.swap(r - 1, r - 2);
                *n = format!("{n}/adjoint");
                *v = self.transpose_value(cx, n.clone(), v, perm)?;
            }
        }
        if self.shape(&a).len() < 2 || self.shape(&b).len() < 2 {
            return Err(cx.shape_err("BatchMatMul operands must have rank 2 or more"));
        }
        let name = cx.name.clone();
        self.matmul_values(cx, &name, (&an, &a), (&bn, &b))
    }

    /// NumPy-style matrix product of two values, lowered to HLIL MatMul (whose right operand
    /// is 2-D).
    fn matmul_values(&mut self, cx: &Cx, base: &str, a: (&str, &Value), b: (&str, &Value)) -> R<Value> {
        let (an, a) = a;
        let (bn, b) = b;
        let sa = self.shape(a);
        let sb = self.shape(b);
        if sa.len() < 2 || sb.len() < 2 {
            return Err(cx.shape_err("MatMul operands must have rank 2 or more"));
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(cx.shape_err(format!("MatMul of {sa:?} by {sb:?}: inner extents differ")));
        }
        let batch = broadcast_shapes(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).map_err(|e| cx.shape_err(e))?;
        let mut expected = batch.clone();
        expected.push(m);
        expected.push(n);
        check_shape(&expected).map_err(|e| cx.shape_err(e))?;
        if let (Value::Const(x), Value::Const(y)) = (a, b) {
            if sa.len() != 2 || sb.len() != 2 {
                return Err(cx.unsupported("batched products of constants are not supported"));
            }
            if m.saturating_mul(n).saturating_mul(k) > MAX_GENERATED {
                return Err(cx.shape_err("constant product is too large to evaluate"));
            }
            let (xv, yv) = (x.to_f32(), y.to_f32());
            let mut out = vec![0f32; m * n];
            for i in 0..m {
                for l in 0..k {
                    let p = xv[i * k + l];
                    for j in 0..n {
                        out[i * n + j] += p * yv[l * n + j];
                    }
                }
            }
            return Ok(Value::Const(Rc::new(Const::new_f(vec![m, n], out))));
        }
        let b_batch_trivial = sb[..sb.len() - 2].iter().all(|&d| d == 1);
        let a_batch_trivial = sa[..sa.len() - 2].iter().all(|&d| d == 1);
        let result = if matches!(a, Value::Node(_)) || matches!(b, Value::Const(_)) {
            if !b_batch_trivial {
                return Err(cx.unsupported(format!(
                    "MatMul of {sa:?} by {sb:?}: the right operand must be a matrix (batched right operands are not supported)"
                )));
            }
            let bm = self.reshape_value(cx, format!("{bn}/matrix"), b, vec![k, n])?;
            let ai = self.node_of(cx, an, a)?;
            let bi = self.node_of(cx, &format!("{bn}/matrix"), &bm)?;
            self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[ai, bi])?
        } else {
            // Constant left operand, computed right operand: (A B)^T = B^T A^T.
            if !a_batch_trivial {
                return Err(cx.unsupported(format!(
                    "MatMul of a constant {sa:?} by a computed {sb:?}: batched constant left operands are not supported"
                )));
            }
            let at = {
                let am = self.reshape_value(cx, format!("{an}/matrix"), a, vec![m, k])?;
                self.transpose_value(cx, format!("{an}/transposed"), &am, vec![1, 0])?
            };
            let rb = sb.len();
            let mut perm: Vec<usize> = (0..rb).collect();
            perm.swap(rb - 1, rb - 2);
            let bt = self.transpose_value(cx, format!("{base}/rhs_transposed"), b, perm)?;
            let bi = self.node_of(cx, bn, &bt)?;
            let ai = self.node_of(cx, &format!("{an}/transposed"), &at)?;
            let y = self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[bi, ai])?;
            let ys = self.graph.nodes[y].shape.clone();
            let mut perm: Vec<usize> = (0..ys.len()).collect();
            perm.swap(ys.len() - 1, ys.len() - 2);
            match self.transpose_value(cx, format!("{base}/transpose"), &Value::Node(y), perm)? {
                Value::Node(id) => id,
                _ => return Err(cx.invalid("internal: transpose of a node")),
            }
        };
        self.reshape_value(cx, format!("{base}/reshape"), &Value::Node(result), expected)
    }
}

/// Overrides of a convolution written as `SpaceToBatchND -> conv -> BatchToSpaceND`.
struct Dilated {
    dilations: Vec<usize>,
    pads_begin: Vec<usize>,
    pads_end: Vec<usize>,
}

/// The layout of a BiasAdd's `data_format`: `NHWC` adds along the last axis and `NCHW`
/// along axis 1, whatever the rank.
fn bias_format(cx: &Cx) -> R<Layout> {
    match cx.string("data_format")?.as_deref() {
        None | Some("") | Some("NHWC") => Ok(Layout::ChannelsLast),
        Some("NCHW") => Ok(Layout::ChannelsFirst),
        Some(s) => Err(cx.unsupported(format!("data_format `{s}` is not supported"))),
    }
}

/// The activation layout of a node's `data_format` (default NHWC / NDHWC).
fn data_format(cx: &Cx, rank: usize) -> R<Layout> {
    let f = cx.string("data_format")?;
    match f.as_deref() {
        None | Some("") => Ok(Layout::ChannelsLast),
        Some(s @ ("NHWC" | "NDHWC" | "NWC")) if s.len() == rank => Ok(Layout::ChannelsLast),
        Some(s @ ("NCHW" | "NCDHW" | "NCW")) if s.len() == rank => Ok(Layout::ChannelsFirst),
        Some(s) => Err(cx.unsupported(format!("data_format `{s}` is not supported for a rank-{rank} input"))),
    }
}

/// The masks of a StridedSlice.
struct StridedSpec {
    begin_mask: i64,
    end_mask: i64,
    ellipsis_mask: i64,
    new_axis_mask: i64,
    shrink_axis_mask: i64,
}

impl StridedSpec {
    /// TensorFlow's StridedSlice semantics as a per-axis slice (starts, ends, steps over the
    /// input's axes) followed by a reshape to the final shape (shrunk axes removed, new axes
    /// inserted).
    #[allow(clippy::type_complexity)]
    fn normalise(
        &self,
        shape: &[usize],
        begin: &[i64],
        end: &[i64],
        strides: &[i64],
    ) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>, Vec<usize>), String> {
        let n = begin.len();
        if end.len() != n || strides.len() != n {
            return Err(format!("begin {begin:?}, end {end:?} and strides {strides:?} differ in length"));
        }
        if n > 64 {
            return Err(format!("{n} slice entries are too many"));
        }
        let bit = |m: i64, i: usize| (m >> i) & 1 == 1;
        let ellipses = (0..n).filter(|&i| bit(self.ellipsis_mask, i)).count();
        if ellipses > 1 {
            return Err("more than one ellipsis".into());
        }
        let r = shape.len();
        let real = (0..n).filter(|&i| !bit(self.ellipsis_mask, i) && !bit(self.new_axis_mask, i)).count();
        if real > r {
            return Err(format!("the slice indexes {real} axes of a tensor of rank {r}"));
        }
        let mut starts = vec![0i64; r];
        let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let mut steps = vec![1i64; r];
        let mut final_shape = Vec::new();
        let mut axis = 0;
        for i in 0..n {
            if bit(self.ellipsis_mask, i) {
                for _ in 0..r - real {
                    final_shape.push(shape[axis]);
                    axis += 1;
                }
                continue;
            }
            if bit(self.new_axis_mask, i) {
                final_shape.push(1);
                continue;
            }
            let dim = shape[axis] as i64;
            let s = strides[i];
            if s == 0 {
                return Err("stride 0".into());
            }
            let s = s.clamp(-(MAX_DIM as i64), MAX_DIM as i64);
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            if bit(self.shrink_axis_mask, i) {
                let idx = norm(begin[i]);
                if idx < 0 || idx >= dim {
                    return Err(format!("index {} out of range for axis {axis} of extent {dim}", begin[i]));
                }
                starts[axis] = idx;
                ends[axis] = idx + 1;
                steps[axis] = 1;
            } else {
                let (b, e) = if s > 0 {
                    (
                        if bit(self.begin_mask, i) { 0 } else { norm(begin[i]).clamp(0, dim) },
                        if bit(self.end_mask, i) { dim } else { norm(end[i]).clamp(0, dim) },
                    )
                } else {
                    (
                        if bit(self.begin_mask, i) { dim - 1 } else { norm(begin[i]).clamp(-1, dim - 1) },
                        if bit(self.end_mask, i) { -1 } else { norm(end[i]).clamp(-1, dim - 1) },
                    )
                };
                let len = if s > 0 {
                    if e > b { (e - b + s - 1) / s } else { 0 }
                } else if b > e {
                    (b - e - s - 1) / (-s)
                } else {
                    0
                };
                starts[axis] = b;
                ends[axis] = e;
                steps[axis] = s;
                final_shape.push(len as usize);
            }
            axis += 1;
        }
        while axis < r {
            final_shape.push(shape[axis]);
            axis += 1;
        }
        Ok((starts, ends, steps, final_shape))
    }
}

/// Reduction of a constant over sorted distinct `axes`, giving shape `out`.
fn reduce_const(c: &Const, axes: &[usize], out: Vec<usize>, op: &str) -> Const {
    let s = &c.shape;
    let kept: Vec<usize> = s.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let kst = consts::strides(&kept);
    let n_out: usize = kept.iter().product();
    let count: usize = axes.iter().map(|&a| s[a]).product();
    let target = |mut flat: usize| -> usize {
        let mut o = 0;
        for i in (0..s.len()).rev() {
            let idx = flat % s[i].max(1);
            flat /= s[i].max(1);
            if !axes.contains(&i) {
                o += idx * kst[i];
            }
        }
        o
    };
    match &c.data {
        Data::I(v) if op != "Mean" => {
            let (init, f): (i64, fn(i64, i64) -> i64) = match op {
                "Sum" => (0, |a, b| a.wrapping_add(b)),
                "Prod" => (1, |a, b| a.wrapping_mul(b)),
                "Max" => (i64::MIN, |a, b| a.max(b)),
                "Min" => (i64::MAX, |a, b| a.min(b)),
                "All" => (1, |a, b| (a != 0 && b != 0) as i64),
                _ => (0, |a, b| (a != 0 || b != 0) as i64),
            };
            let mut acc = vec![init; n_out];
            for (i, &x) in v.iter().enumerate() {
                let t = target(i);
                acc[t] = f(acc[t], x);
            }
            Const::new_i(out, acc)
        }
        _ => {
            let v = c.to_f32();
            let (init, f): (f32, fn(f32, f32) -> f32) = match op {
                "Sum" | "Mean" => (0.0, |a, b| a + b),
                "Prod" => (1.0, |a, b| a * b),
                "Max" => (f32::NEG_INFINITY, f32::max),
                "Min" => (f32::INFINITY, f32::min),
                "All" => (1.0, |a, b| ((a != 0.0) && (b != 0.0)) as i32 as f32),
                _ => (0.0, |a, b| ((a != 0.0) || (b != 0.0)) as i32 as f32),
            };
            let mut acc = vec![init; n_out];
            for (i, &x) in v.iter().enumerate() {
                let t = target(i);
                acc[t] = f(acc[t], x);
            }
            if op == "Mean" {
                acc.iter_mut().for_each(|a| *a /= count.max(1) as f32);
            }
            Const::new_f(out, acc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(b: i64, e: i64, el: i64, na: i64, sh: i64) -> StridedSpec {
        StridedSpec { begin_mask: b, end_mask: e, ellipsis_mask: el, new_axis_mask: na, shrink_axis_mask: sh }
    }

    #[test]
    fn strided_slice_normalisation() {
        // x[:, 1:, ..., ::2] on [1, 6, 5, 4]
        let (s, e, st, f) = spec(0b1001, 0b1011, 0b100, 0, 0)
            .normalise(&[1, 6, 5, 4], &[0, 1, 0, 0], &[0, 0, 0, 0], &[1, 1, 1, 2])
            .unwrap();
        assert_eq!((s, e, st, f), (vec![0, 1, 0, 0], vec![1, 6, 5, 4], vec![1, 1, 1, 2], vec![1, 5, 5, 2]));
        // x[0, -1::-2] on [1, 6, 5]: shrink axis 0, reverse axis 1.
        let (s, e, st, f) = spec(0, 0b10, 0, 0, 0b1).normalise(&[1, 6, 5], &[0, -1], &[1, 0], &[1, -2]).unwrap();
        assert_eq!((s, e, st, f), (vec![0, 5, 0], vec![1, -1, 5], vec![1, -2, 1], vec![3, 5]));
        // x[:, tf.newaxis, 2] on [1, 6, 5]
        let (_, _, _, f) = spec(0b1, 0b1, 0, 0b10, 0b100).normalise(&[1, 6, 5], &[0, 0, 2], &[0, 0, 3], &[1, 1, 1]).unwrap();
        assert_eq!(f, vec![1, 1, 5]);
        assert!(spec(0, 0, 0b11, 0, 0).normalise(&[2, 2], &[0, 0], &[1, 1], &[1, 1]).is_err());
        assert!(spec(0, 0, 0, 0, 0b1).normalise(&[2], &[5], &[6], &[1]).is_err());
        assert!(spec(0, 0, 0, 0, 0).normalise(&[2], &[0], &[1], &[0]).is_err());
    }

    #[test]
    fn floor_division() {
        assert_eq!(floor_div(7, 2), Ok(3));
        assert_eq!(floor_div(-7, 2), Ok(-4));
        assert_eq!(floor_mod(-7, 2), Ok(1));
        assert_eq!(floor_mod(7, -2), Ok(-1));
        assert!(floor_div(1, 0).is_err());
    }

    #[test]
    fn per_channel_axes() {
        assert_eq!(per_channel_axis(&[4], &[1, 5, 5, 4]), Some(3));
        assert_eq!(per_channel_axis(&[1, 1, 1, 4], &[1, 5, 5, 4]), Some(3));
        assert_eq!(per_channel_axis(&[4, 1, 1], &[1, 4, 5, 5]), Some(1));
        assert_eq!(per_channel_axis(&[5, 4], &[1, 5, 5, 4]), None);
        assert_eq!(per_channel_axis(&[1], &[1, 5, 5, 4]), None);
        assert_eq!(per_channel_axis(&[1, 1, 1, 1, 4], &[1, 5, 5, 4]), None);
    }
}
