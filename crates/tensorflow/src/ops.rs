//! One handler per TensorFlow operation. Each returns the values of the node's outputs
//! (the driver binds them and gives new HLIL nodes the node's name, `name:k` for output k).
//! Handlers that fuse a node with its consumer (a bias after a convolution, the per-channel
//! affine map Keras 3 batch norm leaves, a dilated convolution written as
//! `SpaceToBatchND -> Conv2D -> BatchToSpaceND`) bind the consumer's value and mark it done.

use std::rc::Rc;

use cryptflow_frontend::consts::{broadcast_shapes, check_shape, MAX_DIM};
use cryptflow_frontend::eval::{
    binary, compare, gather_indices, gathered_shape, range, reshape_target, select, squeeze_shape, CastTarget, Cmp, Reduce,
    Reduction,
};
use cryptflow_frontend::geometry::{global_max_pool, kernel_span, same_pads};
use cryptflow_frontend::lower::matmul_shapes;
use cryptflow_frontend::{Arith, Const, Data, Lowering, NodeContext};
use cryptflow_ir::hlil::{NodeId, Op};
use cryptflow_tensor::{num_elements as elements, ConvGeometry, Layout, PoolGeometry};

use crate::attrs::Cx;
use crate::consts::{self, MAX_GENERATED};
use crate::import::{Importer, Value, PASS_THROUGH};
use crate::TfError;

type R<T> = Result<T, TfError>;

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
            "Pow" => one(self.pow(cx)?),
            "SquaredDifference" => one(self.squared_difference(cx)?),
            "FloorDiv" => one(self.arith(cx, Arith::FloorDiv)?),
            "FloorMod" => one(self.arith(cx, Arith::FloorMod)?),
            "Maximum" => one(self.arith(cx, Arith::Maximum)?),
            "Minimum" => one(self.arith(cx, Arith::Minimum)?),
            "AddN" => one(self.add_n(cx)?),
            "BiasAdd" => one(self.bias_add(cx)?),
            "Neg" | "Relu" | "Relu6" | "LeakyRelu" | "Square" => one(self.activation(cx)?),
            "ClipByValue" => one(self.clip_by_value(cx)?),
            "Rsqrt" | "Sqrt" | "Reciprocal" | "Abs" if matches!(self.input(cx, 0)?, Value::Node(_)) => one(self.unary(cx)?),
            "Rsqrt" | "Sqrt" | "Reciprocal" | "Floor" | "Ceil" | "Abs" | "LogicalNot" => one(self.const_unary(cx)?),
            "Sigmoid" | "Tanh" | "Erf" | "Erfc" | "Exp" | "Log" | "Inv" | "Softplus" | "Elu" | "Selu" | "Softsign" => {
                one(self.unary(cx)?)
            }
            "Greater" | "Less" if matches!(self.input(cx, 0)?, Value::Node(_)) => one(self.elu_condition(cx)?),
            "Equal" | "NotEqual" | "Less" | "LessEqual" | "Greater" | "GreaterEqual" | "LogicalAnd" | "LogicalOr" => {
                one(self.const_compare(cx)?)
            }
            "Select" | "SelectV2" => match self.elu_select(cx) {
                Some(v) => one(v?),
                None => one(self.select(cx)?),
            },
            "Fill" => one(self.fill(cx)?),
            "ZerosLike" | "OnesLike" => {
                let x = self.input(cx, 0)?;
                let s = self.shape(&x);
                let n = elements(&s);
                let v = if op == "ZerosLike" { 0 } else { 1 };
                let c = match &x {
                    Value::Const(c) if !c.is_float() => Const::new_i(s, vec![v; n]),
                    _ => {
                        self.check_generated(cx, &s, n, 0)?;
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
            "Softmax" | "LogSoftmax" => one(self.softmax(cx)?),
            "ResizeNearestNeighbor" | "ResizeBilinear" => one(self.resize(cx)?),
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

    // ---- simple ops ------------------------------------------------------------------------

    fn cast(&mut self, cx: &Cx) -> R<Value> {
        let to = cx.dtype("DstT")?.ok_or_else(|| cx.invalid("missing attribute `DstT`"))?;
        // Integers: INT32, UINT8, INT16, INT8, INT64, UINT16, UINT32, UINT64.
        let target = CastTarget::of(consts::is_float_dtype(to), matches!(to, 3 | 4 | 5 | 6 | 9 | 17 | 22 | 23), to == 10);
        let Some(to) = target else {
            return Err(cx.unsupported(format!("Cast to {} is not supported", consts::dtype_name(to))));
        };
        let x = self.input(cx, 0)?;
        self.cast_value(cx, x, to)
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
        match kind {
            Arith::Div => self.divide(cx, &cx.name.clone(), (&an, &a), (&bn, &b)),
            Arith::Maximum | Arith::Minimum => self.extremum(cx, kind, (&an, &a), (&bn, &b)),
            _ => self.arith_values(cx, kind, (&an, &a), (&bn, &b), &cx.name.clone()),
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
        self.sum_inputs(cx, cx.inputs.len(), &cx.name)
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
        self.activation_value(cx, cx.name.clone(), x, op)
    }

    fn clip_by_value(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let x = self.input(cx, 0)?;
        let lo = self.const_input(cx, 1, "clip_value_min")?;
        let hi = self.const_input(cx, 2, "clip_value_max")?;
        if let Value::Const(c) = &x {
            let t = binary(c, &lo, MAX_GENERATED, f32::max, |p, q| Ok(p.max(q))).map_err(|e| cx.shape_err(e))?;
            let t = binary(&t, &hi, MAX_GENERATED, f32::min, |p, q| Ok(p.min(q))).map_err(|e| cx.shape_err(e))?;
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
        let op = match cx.op.as_str() {
            "Equal" => Cmp::Equal,
            "NotEqual" => Cmp::NotEqual,
            "Less" => Cmp::Less,
            "LessEqual" => Cmp::LessEqual,
            "Greater" => Cmp::Greater,
            "GreaterEqual" => Cmp::GreaterEqual,
            "LogicalAnd" => Cmp::And,
            _ => Cmp::Or,
        };
        let r = compare(&a, &b, op, MAX_GENERATED);
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
        let out = select(&c, &cshape, &x, &y, MAX_GENERATED).map_err(|e| cx.shape_err(e))?;
        Ok(Value::Const(Rc::new(out)))
    }

    fn fill(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let dims = self.ints_input(cx, 0, "dims")?;
        let shape = self.generated_shape(cx, &dims)?;
        let value = self.const_input(cx, 1, "value")?;
        if value.len() != 1 {
            return Err(cx.invalid("value must be a scalar"));
        }
        Ok(Value::Const(Rc::new(Const::splat(shape, &value))))
    }

    fn range(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(3)?;
        let s = self.const_input(cx, 0, "start")?;
        let l = self.const_input(cx, 1, "limit")?;
        let d = self.const_input(cx, 2, "delta")?;
        Ok(Value::Const(Rc::new(range(cx, &s, &l, &d, MAX_GENERATED)?)))
    }

    fn tile(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let xv = self.input(cx, 0)?;
        let reps = self.ints_input(cx, 1, "multiples")?;
        let rank = self.shape(&xv).len();
        if reps.len() != rank {
            return Err(cx.invalid(format!("multiples {reps:?} do not match rank {rank}")));
        }
        let reps = cx.dims(&reps, "multiple")?;
        let x = match xv {
            Value::Const(c) => c,
            v => return self.tile_computed(cx, v, &reps),
        };
        let mut c = (*x).clone();
        for (axis, &t) in reps.iter().enumerate() {
            if t == 1 {
                continue;
            }
            let mut shape = c.shape.clone();
            shape[axis] = shape[axis].saturating_mul(t);
            let n = check_shape(&shape).map_err(|e| cx.shape_err(e))?;
            self.check_generated(cx, &shape, n, c.len())?;
            c = c.tile_axis(axis, t).map_err(|e| cx.shape_err(e))?;
        }
        Ok(Value::Const(Rc::new(c)))
    }

    fn broadcast_to(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let xv = self.input(cx, 0)?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let target = cx.target_shape(&dims)?;
        let xs = self.shape(&xv);
        let out = broadcast_shapes(&xs, &target).map_err(|e| cx.shape_err(e))?;
        if out != target {
            return Err(cx.shape_err(format!("cannot broadcast {xs:?} to {target:?}")));
        }
        let x = match xv {
            Value::Const(c) => c,
            v => return self.broadcast_computed(cx, v, &target),
        };
        self.check_generated(cx, &out, elements(&out), x.len())?;
        Ok(Value::Const(Rc::new(x.broadcast_to(&out).map_err(|e| cx.shape_err(e))?)))
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
        let indices = gather_indices(cx, &raw, axis, shape[axis], false)?;
        let out = gathered_shape(cx, &shape, axis, &idx.shape)?;
        let g = self.gather_value(cx, format!("{}/gather", cx.name), &x, axis, indices)?;
        self.reshape_value(cx, format!("{}/reshape", cx.name), &g, out)
    }

    // ---- shape manipulation ----------------------------------------------------------------

    fn reshape(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let out = reshape_target(cx, &self.shape(&x), &dims, false)?;
        self.reshape_value(cx, cx.name.clone(), &x, out)
    }

    fn squeeze(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let axes = cx.ints("squeeze_dims")?.filter(|a| !a.is_empty());
        let out = squeeze_shape(cx, &s, axes)?;
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
            let v = self.slice_axis(cx, format!("{name}/slice"), &x, axis, k, k + 1)?;
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
            let start = self.graph.nodes.len();
            let v = self.slice_axis(cx, name.clone(), &x, axis, offset, offset + size)?;
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
        let axes: Vec<usize> = raw.iter().map(|&a| cx.axis(a, s.len(), "axis")).collect::<R<_>>()?;
        let r = Reduction::new(&s, axes, keep);
        let kind = match op.as_str() {
            "Sum" => Reduce::Sum,
            "Mean" => Reduce::Mean { divisor: r.count.max(1) },
            "Prod" => Reduce::Prod,
            "Max" => Reduce::Max,
            "Min" => Reduce::Min,
            "All" => Reduce::All,
            _ => Reduce::Any,
        };
        self.reduce_value(cx, x, r, kind, |imp, id, r| {
            let name = cx.name.clone();
            let spatial = |layout| r.axes == spatial_axes(layout, s.len());
            match op.as_str() {
                "Mean" | "Sum" => imp.mean_or_sum(cx, &name, id, r, op == "Sum"),
                "Max" if (3..=5).contains(&s.len()) && spatial(Layout::ChannelsLast) => {
                    // Global max pooling (NHWC, as Keras' GlobalMaxPooling writes it).
                    let layout = Layout::ChannelsLast;
                    let ca = channel_axis(layout, s.len());
                    let input: Vec<usize> = r.axes.iter().map(|&a| s[a]).collect();
                    let g = global_max_pool(layout, s[0], s[ca], input);
                    let m = imp.emit(cx, format!("{name}/maxpool"), Op::MaxPool(g), &[id])?;
                    imp.reshape_value(cx, name, &Value::Node(m), r.out)
                }
                "Max" | "Min" => {
                    let (axes, keep_dims) = (r.axes, r.keep_dims);
                    let op = if op == "Max" { Op::ReduceMax { axes, keep_dims } } else { Op::ReduceMin { axes, keep_dims } };
                    Ok(Value::Node(imp.emit(cx, name, op, &[id])?))
                }
                _ => Err(cx.unsupported(format!("{op} of a computed tensor is not supported (only of constants)"))),
            }
        })
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
        self.argmax_value(cx, cx.name.clone(), x, axis, false)
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
            "SAME" => Ok(same_pads(input, span, strides)),
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
                let mut t = c.transpose(&perm).map_err(|e| cx.shape_err(e))?;
                if let Some(s) = reshape {
                    t = t.with_shape(s);
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
            if !cin.is_multiple_of(fin) || !fs[r + 1].is_multiple_of(cin / fin) {
                return Err(cx.shape_err(format!("filter {fs:?} does not fit input {xs:?} ({cin} input channels)")));
            }
            (fs[r + 1], cin / fin, self.filter_node(cx, fname, &f, perm, None, "oihw")?)
        };
        let strides = self.per_axis_attr(cx, "strides", rank, layout, true)?;
        let (dilations, pads_begin, pads_end) = match dilated {
            Some(d) => (d.dilations, d.pads_begin, d.pads_end),
            None => {
                let dilations = self.per_axis_attr(cx, "dilations", rank, layout, false)?;
                let span = kernel_span(&kernel, &dilations);
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
        let span = kernel_span(&kernel, &dilations);
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

    /// NumPy-style matrix product of two values of rank 2 or more: evaluated for constant
    /// matrices, else lowered to HLIL MatMul (whose right operand is 2-D).
    fn matmul_values(&mut self, cx: &Cx, base: &str, a: (&str, &Value), b: (&str, &Value)) -> R<Value> {
        let (sa, sb) = (self.shape(a.1), self.shape(b.1));
        if sa.len() < 2 || sb.len() < 2 {
            return Err(cx.shape_err("MatMul operands must have rank 2 or more"));
        }
        let s = matmul_shapes(cx, sa, sb)?;
        if let (Value::Const(x), Value::Const(y)) = (a.1, b.1) {
            if s.a.len() != 2 || s.b.len() != 2 {
                return Err(cx.unsupported("batched products of constants are not supported"));
            }
            let (m, k, n) = (s.m, s.k, s.n);
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
        let batched = |v: &[usize]| v.len() > 2 && v[..v.len() - 2].iter().any(|&d| d != 1);
        if s.a.len() >= 2 && (batched(&s.b) || (batched(&s.a) && matches!(a.1, Value::Const(_)))) {
            // A batched right operand (or a batched constant left one): one HLIL MatMul of
            // the two operands, whose batch axes broadcast.
            let x = self.node_of(cx, a.0, a.1)?;
            let y = self.node_of(cx, b.0, b.1)?;
            let id = self.emit(cx, format!("{base}/matmul"), Op::MatMul, &[x, y])?;
            return self.reshape_value(cx, format!("{base}/reshape"), &Value::Node(id), s.out);
        }
        self.matmul_lowered(cx, base, a, b, s)
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
    fn per_channel_axes() {
        assert_eq!(per_channel_axis(&[4], &[1, 5, 5, 4]), Some(3));
        assert_eq!(per_channel_axis(&[1, 1, 1, 4], &[1, 5, 5, 4]), Some(3));
        assert_eq!(per_channel_axis(&[4, 1, 1], &[1, 4, 5, 5]), Some(1));
        assert_eq!(per_channel_axis(&[5, 4], &[1, 5, 5, 4]), None);
        assert_eq!(per_channel_axis(&[1], &[1, 5, 5, 4]), None);
        assert_eq!(per_channel_axis(&[1, 1, 1, 1, 4], &[1, 5, 5, 4]), None);
    }
}
