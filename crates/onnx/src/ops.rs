//! One handler per ONNX operator. Each returns the value of the node's first output (the
//! dispatcher binds it and gives the HLIL node the output's name), or binds its outputs
//! itself and returns None.

use std::rc::Rc;

use cryptflow_frontend::consts::{broadcast_shapes, check_shape, MAX_DIM};
use cryptflow_frontend::eval::{
    compare, gather_indices, gathered_shape, range, reshape_target, select, squeeze_shape, CastTarget, Cmp, Reduce,
    Reduction,
};
use cryptflow_frontend::geometry::{global_max_pool, kernel_span, same_pads};
use cryptflow_frontend::lower::matmul_shapes;
use cryptflow_frontend::{Arith, Const, Data, Lowering, NodeContext};
use cryptflow_ir::hlil::{NodeId, Op};
use cryptflow_tensor::{num_elements as elements, ConvGeometry, Layout, PoolGeometry};

use crate::attrs::Cx;
use crate::consts::MAX_GENERATED;
use crate::import::{Importer, Value};
use crate::OnnxError;

type R<T> = Result<T, OnnxError>;

const MAX_REPEATS: usize = 1 << 12;

fn is_default_domain(d: Option<&str>) -> bool {
    matches!(d, None | Some("") | Some("ai.onnx"))
}

impl Importer<'_> {
    pub fn import_node(&mut self, cx: &Cx) -> R<()> {
        if !is_default_domain(cx.node.domain.as_deref()) {
            return Err(cx.unsupported(format!(
                "operators of domain `{}` are not supported (only the default ONNX domain)",
                cx.node.domain.as_deref().unwrap_or_default()
            )));
        }
        self.check_introduced(cx)?;
        let start = self.graph.nodes.len();
        let result = self.dispatch(cx)?;
        if let Some(v) = result {
            let name = cx.out0()?;
            if let Value::Node(id) = v {
                if id >= start {
                    self.graph.nodes[id].name = name.clone();
                }
            }
            self.bind(name, v);
        }
        Ok(())
    }

    fn dispatch(&mut self, cx: &Cx) -> R<Option<Value>> {
        let op = cx.op.as_str();
        let v = match op {
            "Identity" => self.input(cx, 0)?,
            "Dropout" => self.dropout(cx)?,
            "Cast" => self.cast(cx)?,
            "Constant" => self.constant(cx)?,
            "Shape" => self.shape_op(cx)?,
            "Size" => {
                let s = self.shape(&self.input(cx, 0)?);
                Value::Const(Rc::new(Const::scalar_i(elements(&s) as i64)))
            }
            "ConstantOfShape" => self.constant_of_shape(cx)?,
            "Range" => self.range(cx)?,
            "Add" => self.arith(cx, Arith::Add)?,
            "Sub" => self.arith(cx, Arith::Sub)?,
            "Mul" => self.arith(cx, Arith::Mul)?,
            "Div" => self.div(cx)?,
            "Sum" => self.sum(cx)?,
            "Neg" | "Relu" | "LeakyRelu" | "Clip" => self.activation(cx)?,
            "Floor" | "Ceil" | "Not" => self.const_unary(cx)?,
            "Sigmoid" | "Tanh" | "Exp" | "Log" | "Erf" | "Abs" | "Reciprocal" | "Softplus" | "Sqrt" | "HardSwish"
            | "HardSigmoid" | "Elu" | "Gelu" | "Selu" | "Softsign" | "Mish" => self.unary(cx)?,
            "Pow" => self.pow(cx)?,
            "PRelu" => self.prelu(cx)?,
            "CastLike" => self.cast_like(cx)?,
            "Min" | "Max" | "Mean" => self.variadic(cx)?,
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
                self.const_binary(cx)?
            }
            "Where" => self.where_op(cx)?,
            "Reshape" => self.reshape(cx)?,
            "Flatten" => self.flatten(cx)?,
            "Squeeze" => self.squeeze(cx)?,
            "Unsqueeze" => self.unsqueeze(cx)?,
            "Transpose" => self.transpose(cx)?,
            "Concat" => self.concat(cx)?,
            "Slice" => self.slice(cx)?,
            "Split" => {
                self.split(cx)?;
                return Ok(None);
            }
            "Gather" => self.gather(cx)?,
            "Expand" => self.expand(cx)?,
            "Tile" => self.tile(cx)?,
            "Pad" => self.pad(cx)?,
            "ReduceMean" | "ReduceSum" | "ReduceProd" | "ReduceMax" | "ReduceMin" => self.reduce(cx)?,
            "ArgMax" => self.argmax(cx)?,
            "Softmax" | "LogSoftmax" => self.softmax(cx)?,
            "LayerNormalization" => self.layer_norm(cx)?,
            "InstanceNormalization" => self.instance_norm(cx)?,
            "GroupNormalization" => self.group_norm(cx)?,
            "Resize" | "Upsample" => self.resize(cx)?,
            "DepthToSpace" | "SpaceToDepth" => self.depth_space(cx)?,
            "Einsum" => self.einsum(cx)?,
            "Conv" => self.conv(cx)?,
            "ConvTranspose" => self.conv_transpose(cx)?,
            "MaxPool" | "AveragePool" => self.pool(cx)?,
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(cx)?,
            "BatchNormalization" => self.batch_norm(cx)?,
            "Gemm" => self.gemm(cx)?,
            "MatMul" => self.matmul(cx)?,
            _ => {
                return Err(OnnxError::UnsupportedOp { node: cx.name.clone(), op_type: cx.op.clone(), reason: None });
            }
        };
        Ok(Some(v))
    }

    /// Errors if optional output `i` of the node is used.
    pub(crate) fn unused_output(&self, cx: &Cx, i: usize, what: &str) -> R<()> {
        if let Some(name) = cx.output_name(i) {
            if self.is_used(name) {
                return Err(cx.unsupported(format!("its {what} output `{name}` is used, which is not supported")));
            }
        }
        Ok(())
    }

    // ---- elementary value operations (constant or HLIL) ---------------------------------

    /// Repeats a value `times` along `axis` (Tile / Expand).
    fn repeat_value(&mut self, cx: &Cx, name: String, tensor: &str, v: &Value, axis: usize, times: usize) -> R<Value> {
        if times == 1 {
            return Ok(v.clone());
        }
        if times == 0 {
            return Err(cx.shape_err("repeating a tensor 0 times gives an empty tensor"));
        }
        if matches!(v, Value::Node(_)) && times > MAX_REPEATS {
            return Err(cx.shape_err(format!("repeating a computed tensor {times} times is not supported")));
        }
        let mut shape = self.shape(v);
        shape[axis] = shape[axis].saturating_mul(times);
        let n = check_shape(&shape).map_err(|e| cx.shape_err(e))?;
        if let Value::Const(c) = v {
            self.check_generated(cx, &shape, n, c.len())?;
            return Ok(Value::Const(Rc::new(c.tile_axis(axis, times).map_err(|e| cx.shape_err(e))?)));
        }
        let parts: Vec<(String, Value)> = (0..times).map(|_| (tensor.to_string(), v.clone())).collect();
        self.concat_values(cx, name, &parts, axis)
    }

    // ---- simple ops ------------------------------------------------------------------------

    fn dropout(&mut self, cx: &Cx) -> R<Value> {
        if cx.opset >= 12 {
            if let Some(name) = cx.input_name(2) {
                let c = self.const_input(cx, 2, "training_mode").map_err(|_| {
                    cx.unsupported(format!("training_mode `{name}` must be a constant false for inference"))
                })?;
                if c.to_i64().iter().any(|&v| v != 0) {
                    return Err(cx.unsupported("training_mode=true is not supported (inference only)"));
                }
            }
        }
        self.unused_output(cx, 1, "mask")?;
        self.input(cx, 0)
    }

    fn cast(&mut self, cx: &Cx) -> R<Value> {
        let to = cx.int("to")?.ok_or_else(|| cx.invalid("missing attribute `to`"))?;
        let Some(to) = CastTarget::of(matches!(to, 1 | 10 | 11 | 16), matches!(to, 2..=7 | 12 | 13), to == 9) else {
            return Err(cx.unsupported(format!("Cast to data type {to} is not supported")));
        };
        let x = self.input(cx, 0)?;
        self.cast_value(cx, x, to)
    }

    fn constant(&mut self, cx: &Cx) -> R<Value> {
        let c = if let Some(t) = cx.tensor("value")? {
            t
        } else if let Some(t) = cx.sparse_tensor("sparse_value")? {
            t
        } else if let Some(f) = cx.float("value_float")? {
            Const::new_f(vec![], vec![f])
        } else if let Some(v) = cx.floats("value_floats")? {
            Const::new_f(vec![v.len()], v)
        } else if let Some(i) = cx.int("value_int")? {
            Const::scalar_i(i)
        } else if let Some(v) = cx.ints("value_ints")? {
            Const::new_i(vec![v.len()], v)
        } else if cx.has_attr("value_string") || cx.has_attr("value_strings") {
            return Err(cx.unsupported("string constants are not supported"));
        } else {
            return Err(cx.invalid("Constant without a value attribute"));
        };
        Ok(Value::Const(Rc::new(c)))
    }

    fn shape_op(&mut self, cx: &Cx) -> R<Value> {
        let s = self.shape(&self.input(cx, 0)?);
        let r = s.len() as i64;
        let norm = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
        let start = norm(cx.int_or("start", 0)?) as usize;
        let end = norm(cx.int_or("end", r)?) as usize;
        let dims: Vec<i64> = if start < end { s[start..end].iter().map(|&d| d as i64).collect() } else { vec![] };
        Ok(Value::Const(Rc::new(Const::new_i(vec![dims.len()], dims))))
    }

    fn constant_of_shape(&mut self, cx: &Cx) -> R<Value> {
        let dims = self.ints_input(cx, 0, "shape")?;
        let shape = self.generated_shape(cx, &dims)?;
        let value = cx.tensor("value")?.unwrap_or_else(|| Const::new_f(vec![1], vec![0.0]));
        if value.len() != 1 {
            return Err(cx.invalid("attribute `value` must hold exactly one element"));
        }
        Ok(Value::Const(Rc::new(Const::splat(shape, &value))))
    }

    fn range(&mut self, cx: &Cx) -> R<Value> {
        let s = self.const_input(cx, 0, "start")?;
        let l = self.const_input(cx, 1, "limit")?;
        let d = self.const_input(cx, 2, "delta")?;
        Ok(Value::Const(Rc::new(range(cx, &s, &l, &d, MAX_GENERATED)?)))
    }

    // ---- arithmetic ------------------------------------------------------------------------

    fn arith(&mut self, cx: &Cx, kind: Arith) -> R<Value> {
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let an = cx.input_name(0).unwrap_or_default().to_string();
        let bn = cx.input_name(1).unwrap_or_default().to_string();
        let out = cx.out0()?;
        self.arith_values(cx, kind, (&an, &a), (&bn, &b), &out)
    }

    fn sum(&mut self, cx: &Cx) -> R<Value> {
        let n = cx.node.input.len();
        if n == 0 {
            return Err(cx.invalid("Sum of no inputs"));
        }
        let out = cx.out0()?;
        self.sum_inputs(cx, n, &out)
    }

    fn activation(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let op = match cx.op.as_str() {
            "Neg" => Op::Neg,
            "Relu" => Op::Relu,
            "LeakyRelu" => Op::LeakyRelu { alpha: cx.float_or("alpha", 0.01)? },
            _ => {
                let (min, max) = if cx.opset < 11 {
                    (cx.float_or("min", f32::NEG_INFINITY)?, cx.float_or("max", f32::INFINITY)?)
                } else {
                    let bound = |imp: &Self, i: usize, what: &str, default: f32| -> R<f32> {
                        match imp.opt_const_input(cx, i, what)? {
                            None => Ok(default),
                            Some(c) => c.single_f32().ok_or_else(|| cx.invalid(format!("{what} must be a scalar"))),
                        }
                    };
                    (bound(self, 1, "min", f32::NEG_INFINITY)?, bound(self, 2, "max", f32::INFINITY)?)
                };
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(cx.invalid(format!("invalid clip bounds [{min}, {max}]")));
                }
                if min == 0.0 && max == f32::INFINITY {
                    Op::Relu
                } else if min == f32::NEG_INFINITY && max == f32::INFINITY {
                    return Ok(x);
                } else {
                    Op::Clip { min, max }
                }
            }
        };
        let name = cx.out0()?;
        self.activation_value(cx, name, x, op)
    }

    fn const_unary(&mut self, cx: &Cx) -> R<Value> {
        let c = self.const_input(cx, 0, "x")?;
        let out = match (cx.op.as_str(), &c.data) {
            ("Not", _) => Const::new_i(c.shape.clone(), c.to_i64().iter().map(|&v| (v == 0) as i64).collect()),
            (_, Data::I(_)) => (*c).clone(),
            ("Sqrt", Data::F(v)) => Const::new_f(c.shape.clone(), v.iter().map(|x| x.sqrt()).collect()),
            ("Floor", Data::F(v)) => Const::new_f(c.shape.clone(), v.iter().map(|x| x.floor()).collect()),
            (_, Data::F(v)) => Const::new_f(c.shape.clone(), v.iter().map(|x| x.ceil()).collect()),
        };
        Ok(Value::Const(Rc::new(out)))
    }

    fn const_binary(&mut self, cx: &Cx) -> R<Value> {
        let op = cx.op.clone();
        let n = cx.node.input.len();
        if n != 2 {
            return Err(cx.invalid(format!("{op} has {n} inputs")));
        }
        let mut acc = (*self.const_input(cx, 0, "operand")?).clone();
        for i in 1..n {
            let y = self.const_input(cx, i, "operand")?;
            let cmp = |c| compare(&acc, &y, c, MAX_GENERATED);
            let r = match op.as_str() {
                "Equal" => cmp(Cmp::Equal),
                "Less" => cmp(Cmp::Less),
                "Greater" => cmp(Cmp::Greater),
                "LessOrEqual" => cmp(Cmp::LessEqual),
                "GreaterOrEqual" => cmp(Cmp::GreaterEqual),
                "And" => cmp(Cmp::And),
                _ => cmp(Cmp::Or),
            };
            acc = r.map_err(|e| cx.shape_err(e))?;
        }
        Ok(Value::Const(Rc::new(acc)))
    }

    /// `Where` with a constant condition: constants are selected now; a computed branch is
    /// kept where the condition holds by public 0/1 masks (`x * c + y * (1 - c)`), as the
    /// causal masks of decoders need. A condition computed from the inputs is not supported.
    fn where_op(&mut self, cx: &Cx) -> R<Value> {
        let c = self.const_input(cx, 0, "condition")?;
        let (x, y) = (self.input(cx, 1)?, self.input(cx, 2)?);
        if let (Value::Const(x), Value::Const(y)) = (&x, &y) {
            let out = select(&c, &c.shape, x, y, MAX_GENERATED).map_err(|e| cx.shape_err(e))?;
            return Ok(Value::Const(Rc::new(out)));
        }
        let name = cx.out0()?.to_string();
        let out = broadcast_shapes(&c.shape, &self.shape(&x))
            .and_then(|s| broadcast_shapes(&s, &self.shape(&y)))
            .map_err(|e| cx.shape_err(e))?;
        let n = check_shape(&out).map_err(|e| cx.shape_err(e))?;
        self.check_generated(cx, &out, n, c.len())?;
        let keep: Vec<f32> = c.broadcast_to(&out).map_err(|e| cx.shape_err(e))?.to_i64().iter().map(|&k| (k != 0) as i32 as f32).collect();
        let mut terms = Vec::new();
        for (k, branch, wanted) in [(1usize, &x, 1.0f32), (2, &y, 0.0)] {
            let mask: Vec<f32> = keep.iter().map(|&k| if k == wanted { 1.0 } else { 0.0 }).collect();
            if mask.iter().all(|&m| m == 0.0) {
                continue;
            }
            let label = cx.input_label(k);
            let term = match branch {
                Value::Const(v) => {
                    let v = v.with_tame_masks().unwrap_or_else(|| (**v).clone());
                    let v = v.broadcast_to(&out).map_err(|e| cx.shape_err(e))?.to_f32();
                    Value::Const(Rc::new(Const::new_f(out.clone(), v.iter().zip(&mask).map(|(v, m)| v * m).collect())))
                }
                Value::Node(_) => {
                    let full = self.broadcast_value(cx, branch, &label, &out)?;
                    if mask.iter().all(|&m| m == 1.0) {
                        full
                    } else {
                        let id = self.node_of(cx, &label, &full)?;
                        let m = cryptflow_tensor::Tensor::new(out.clone(), mask).map_err(|e| cx.shape_err(e.to_string()))?;
                        Value::Node(self.emit(cx, format!("{name}/{}", if k == 1 { "kept" } else { "filled" }), Op::MulConst(m), &[id])?)
                    }
                }
            };
            terms.push((label, term));
        }
        match terms.len() {
            2 => {
                let (b, a) = (terms.pop().expect("two"), terms.pop().expect("two"));
                self.arith_values(cx, Arith::Add, (&a.0, &a.1), (&b.0, &b.1), &name)
            }
            // No elements: nothing to compute.
            _ => Ok(terms.pop().map_or_else(|| Value::Const(Rc::new(Const::new_f(out, vec![]))), |t| t.1)),
        }
    }

    // ---- shape manipulation ----------------------------------------------------------------

    fn reshape(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let allowzero = cx.opset >= 14 && cx.int_or("allowzero", 0)? != 0;
        let out = reshape_target(cx, &self.shape(&x), &dims, !allowzero)?;
        self.reshape_value(cx, cx.out0()?, &x, out)
    }

    fn flatten(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let r = s.len() as i64;
        let axis = cx.int_or("axis", 1)?;
        if axis < -r || axis > r {
            return Err(cx.invalid(format!("axis {axis} out of range for rank {r}")));
        }
        let axis = if axis < 0 { axis + r } else { axis } as usize;
        let out = vec![elements(&s[..axis]), elements(&s[axis..])];
        self.reshape_value(cx, cx.out0()?, &x, out)
    }

    fn axes_arg(&self, cx: &Cx, input_since: i64, input: usize) -> R<Option<Vec<i64>>> {
        if cx.opset >= input_since {
            self.opt_ints_input(cx, input, "axes")
        } else {
            cx.ints("axes")
        }
    }

    fn squeeze(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let axes = self.axes_arg(cx, 13, 1)?;
        let out = squeeze_shape(cx, &s, axes)?;
        self.reshape_value(cx, cx.out0()?, &x, out)
    }

    fn unsqueeze(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let axes = self.axes_arg(cx, 13, 1)?.ok_or_else(|| cx.invalid("missing axes"))?;
        let rank = s.len() + axes.len();
        let mut new = vec![false; rank];
        for a in axes {
            let a = cx.axis(a, rank, "axis")?;
            if std::mem::replace(&mut new[a], true) {
                return Err(cx.invalid(format!("axis {a} given twice")));
            }
        }
        let mut it = s.iter();
        let out: Vec<usize> = new.iter().map(|&n| if n { 1 } else { *it.next().unwrap_or(&1) }).collect();
        self.reshape_value(cx, cx.out0()?, &x, out)
    }

    fn transpose(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let r = self.shape(&x).len();
        let perm = match cx.ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&a| usize::try_from(a).map_err(|_| cx.invalid(format!("perm {p:?} is not a permutation"))))
                .collect::<R<Vec<_>>>()?,
            None => (0..r).rev().collect(),
        };
        self.transpose_value(cx, cx.out0()?, &x, perm)
    }

    fn concat(&mut self, cx: &Cx) -> R<Value> {
        let n = cx.node.input.len();
        let mut parts = Vec::new();
        for i in 0..n {
            if cx.input_name(i).is_none() {
                continue;
            }
            parts.push((cx.input_name(i).unwrap_or_default().to_string(), self.input(cx, i)?));
        }
        if parts.is_empty() {
            return Err(cx.invalid("Concat of no inputs"));
        }
        let rank = self.shape(&parts[0].1).len();
        let axis = cx.int("axis")?.ok_or_else(|| cx.invalid("missing attribute `axis`"))?;
        let axis = cx.axis(axis, rank, "axis")?;
        self.concat_values(cx, cx.out0()?, &parts, axis)
    }

    /// Normalises ONNX slice parameters for the given axes into per-axis HLIL parameters.
    fn normalise_slice(
        &self,
        cx: &Cx,
        shape: &[usize],
        starts: &[i64],
        ends: &[i64],
        axes: Option<Vec<i64>>,
        steps: Option<Vec<i64>>,
    ) -> R<(Vec<i64>, Vec<i64>, Vec<i64>)> {
        let r = shape.len();
        let k = starts.len();
        if ends.len() != k {
            return Err(cx.invalid(format!("starts {starts:?} and ends {ends:?} differ in length")));
        }
        let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; k]);
        if axes.len() != k || steps.len() != k {
            return Err(cx.invalid("starts, ends, axes and steps differ in length"));
        }
        let mut s: Vec<i64> = vec![0; r];
        let mut e: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let mut st: Vec<i64> = vec![1; r];
        let mut seen = vec![false; r];
        for j in 0..k {
            let a = cx.axis(axes[j], r, "axis")?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(cx.invalid(format!("axis {a} is sliced twice")));
            }
            let dim = shape[a] as i64;
            let step = steps[j];
            if step == 0 {
                return Err(cx.invalid("slice step 0"));
            }
            if step == i64::MIN {
                return Err(cx.invalid("slice step out of range"));
            }
            let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (lo_s, hi_s, lo_e, hi_e) = if step > 0 { (0, dim, 0, dim) } else { (0, dim - 1, -1, dim - 1) };
            s[a] = fix(starts[j]).max(lo_s).min(hi_s);
            e[a] = fix(ends[j]).max(lo_e).min(hi_e);
            st[a] = step.clamp(-(MAX_DIM as i64), MAX_DIM as i64);
            if dim == 0 {
                s[a] = 0;
                e[a] = 0;
            }
        }
        Ok((s, e, st))
    }

    fn slice(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        let (starts, ends, axes, steps) = if cx.opset < 10 {
            let starts = cx.ints("starts")?.ok_or_else(|| cx.invalid("missing attribute `starts`"))?;
            let ends = cx.ints("ends")?.ok_or_else(|| cx.invalid("missing attribute `ends`"))?;
            (starts, ends, cx.ints("axes")?, None)
        } else {
            (
                self.ints_input(cx, 1, "starts")?,
                self.ints_input(cx, 2, "ends")?,
                self.opt_ints_input(cx, 3, "axes")?,
                self.opt_ints_input(cx, 4, "steps")?,
            )
        };
        let (s, e, st) = self.normalise_slice(cx, &shape, &starts, &ends, axes, steps)?;
        self.slice_value(cx, cx.out0()?, &x, s, e, st)
    }

    fn split(&mut self, cx: &Cx) -> R<()> {
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        let axis = cx.axis(cx.int_or("axis", 0)?, shape.len(), "axis")?;
        let dim = shape[axis];
        let n_out = cx.node.output.len();
        if n_out == 0 {
            return Err(cx.invalid("Split without outputs"));
        }
        let split = if cx.opset >= 13 { self.opt_ints_input(cx, 1, "split")? } else { cx.ints("split")? };
        let sizes: Vec<usize> = match split {
            Some(s) if !s.is_empty() => {
                if s.len() != n_out {
                    return Err(cx.invalid(format!("split {s:?} does not have one entry per output ({n_out})")));
                }
                let sizes = cx.dims(&s, "split size")?;
                if sizes.iter().sum::<usize>() != dim {
                    return Err(cx.shape_err(format!("split {s:?} does not add up to the extent {dim} of axis {axis}")));
                }
                sizes
            }
            _ => {
                let n = match cx.int("num_outputs")? {
                    Some(k) if cx.opset >= 18 => {
                        if k as u64 != n_out as u64 {
                            return Err(cx.invalid(format!("num_outputs {k} but {n_out} outputs")));
                        }
                        n_out
                    }
                    _ => n_out,
                };
                let chunk = dim.div_ceil(n);
                if chunk == 0 || chunk * (n - 1) >= dim {
                    return Err(cx.shape_err(format!("cannot split extent {dim} into {n} non-empty parts")));
                }
                let mut sizes = vec![chunk; n];
                sizes[n - 1] = dim - chunk * (n - 1);
                sizes
            }
        };
        let mut offset = 0usize;
        for (i, &size) in sizes.iter().enumerate() {
            let Some(name) = cx.output_name(i) else {
                offset += size;
                continue;
            };
            let start = self.graph.nodes.len();
            let v = self.slice_axis(cx, name.to_string(), &x, axis, offset, offset + size)?;
            if let Value::Node(id) = v {
                if id >= start {
                    self.graph.nodes[id].name = name.to_string();
                }
            }
            self.bind(name.to_string(), v);
            offset += size;
        }
        Ok(())
    }

    fn gather(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let shape = self.shape(&x);
        if shape.is_empty() {
            return Err(cx.invalid("Gather from a scalar"));
        }
        let axis = cx.axis(cx.int_or("axis", 0)?, shape.len(), "axis")?;
        if let Value::Node(ids) = self.input(cx, 1)? {
            let label = cx.input_label(0);
            return self.lookup_value(cx, cx.out0()?.to_string(), (&label, &x), axis, ids);
        }
        let idx = self.const_input(cx, 1, "indices")?;
        let raw = idx.ints().ok_or_else(|| cx.invalid("indices must be integers"))?;
        let indices = gather_indices(cx, raw, axis, shape[axis], true)?;
        let out = gathered_shape(cx, &shape, axis, &idx.shape)?;
        let name = cx.out0()?;
        let g = self.gather_value(cx, format!("{name}/gather"), &x, axis, indices)?;
        self.reshape_value(cx, format!("{name}/reshape"), &g, out)
    }

    fn expand(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let dims = self.ints_input(cx, 1, "shape")?;
        let target = cx.target_shape(&dims)?;
        let s = self.shape(&x);
        let out = broadcast_shapes(&s, &target).map_err(|e| cx.shape_err(e))?;
        self.broadcast_value(cx, &x, cx.input_name(0).unwrap_or_default(), &out)
    }

    /// Broadcasts a value to `out` (a valid broadcast of its shape) by reshaping and repeating.
    pub(crate) fn broadcast_value(&mut self, cx: &Cx, x: &Value, tensor: &str, out: &[usize]) -> R<Value> {
        let s = self.shape(x);
        let name = cx.out0()?;
        let n = check_shape(out).map_err(|e| cx.shape_err(e))?;
        if let Value::Const(c) = x {
            self.check_generated(cx, out, n, c.len())?;
            return Ok(Value::Const(Rc::new(c.broadcast_to(out).map_err(|e| cx.shape_err(e))?)));
        }
        let mut padded = vec![1; out.len() - s.len()];
        padded.extend_from_slice(&s);
        let mut v = self.reshape_value(cx, format!("{name}/reshape"), x, padded.clone())?;
        for axis in 0..out.len() {
            if padded[axis] != out[axis] {
                v = self.repeat_value(cx, format!("{name}/repeat{axis}"), tensor, &v, axis, out[axis])?;
            }
        }
        Ok(v)
    }

    fn tile(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let reps = self.ints_input(cx, 1, "repeats")?;
        let s = self.shape(&x);
        if reps.len() != s.len() {
            return Err(cx.invalid(format!("repeats {reps:?} do not match rank {}", s.len())));
        }
        let reps = cx.dims(&reps, "repeat count")?;
        let name = cx.out0()?;
        let mut v = x;
        for (axis, &t) in reps.iter().enumerate() {
            v = self.repeat_value(cx, format!("{name}/tile{axis}"), cx.input_name(0).unwrap_or_default(), &v, axis, t)?;
        }
        Ok(v)
    }

    fn pad(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let r = s.len();
        let mode = cx.string("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(cx.unsupported(format!("Pad mode `{mode}` is not supported (only constant)")));
        }
        let (pads, value, axes) = if cx.opset < 11 {
            let pads = cx.ints("pads")?.ok_or_else(|| cx.invalid("missing attribute `pads`"))?;
            (pads, cx.float_or("value", 0.0)?, None)
        } else {
            let pads = self.ints_input(cx, 1, "pads")?;
            let value = match self.opt_const_input(cx, 2, "constant_value")? {
                Some(c) => c.single_f32().ok_or_else(|| cx.invalid("constant_value must be a scalar"))?,
                None => 0.0,
            };
            let axes = if cx.opset >= 18 { self.opt_ints_input(cx, 3, "axes")? } else { None };
            (pads, value, axes)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&a| cx.axis(a, r, "axis")).collect::<R<_>>()?,
            None => (0..r).collect(),
        };
        let k = axes.len();
        if pads.len() != 2 * k {
            return Err(cx.invalid(format!("pads {pads:?} must have {} entries", 2 * k)));
        }
        let mut begin = vec![0i64; r];
        let mut end = vec![0i64; r];
        for (j, &a) in axes.iter().enumerate() {
            for (v, p) in [(&mut begin[a], pads[j]), (&mut end[a], pads[j + k])] {
                if p.unsigned_abs() > MAX_DIM as u64 {
                    return Err(cx.invalid(format!("pad {p} out of range")));
                }
                *v = p;
            }
        }
        let name = cx.out0()?;
        let pos = |v: &[i64]| v.iter().map(|&p| p.max(0) as usize).collect::<Vec<_>>();
        let padded = self.pad_value(cx, format!("{name}/pad"), &x, pos(&begin), pos(&end), value)?;
        if begin.iter().chain(&end).all(|&p| p >= 0) {
            return Ok(padded);
        }
        // Negative pads crop.
        let ps = self.shape(&padded);
        let starts: Vec<i64> = begin.iter().map(|&p| (-p).max(0)).collect();
        let ends: Vec<i64> = (0..r).map(|i| ps[i] as i64 - (-end[i]).max(0)).collect();
        if (0..r).any(|i| ends[i] <= starts[i]) {
            return Err(cx.shape_err(format!("pads {pads:?} crop {s:?} to nothing")));
        }
        self.slice_value(cx, format!("{name}/crop"), &padded, starts, ends, vec![1; r])
    }

    fn reduce(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let op = cx.op.clone();
        // ReduceSum takes axes as an input from opset 13, the others from opset 18.
        let since = if op == "ReduceSum" { 13 } else { 18 };
        let axes = self.axes_arg(cx, since, 1)?;
        let keep = cx.int_or("keepdims", 1)? != 0;
        let noop = cx.opset >= since && cx.int_or("noop_with_empty_axes", 0)? != 0;
        let axes: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a.iter().map(|&a| cx.axis(a, s.len(), "axis")).collect::<R<_>>()?,
            _ if noop => return Ok(x),
            _ => (0..s.len()).collect(),
        };
        let r = Reduction::new(&s, axes, keep);
        let kind = match op.as_str() {
            "ReduceSum" => Reduce::Sum,
            "ReduceMean" => Reduce::Mean { divisor: r.count },
            "ReduceProd" => Reduce::Prod,
            "ReduceMax" => Reduce::Max,
            _ => Reduce::Min,
        };
        self.reduce_value(cx, x, r, kind, |imp, id, r| match op.as_str() {
            "ReduceMean" | "ReduceSum" => {
                let name = cx.out0()?;
                imp.mean_or_sum(cx, &name, id, r, op == "ReduceSum")
            }
            "ReduceMax" => Ok(Value::Node(imp.emit(cx, cx.out0()?, Op::ReduceMax { axes: r.axes, keep_dims: r.keep_dims }, &[id])?)),
            "ReduceMin" => Ok(Value::Node(imp.emit(cx, cx.out0()?, Op::ReduceMin { axes: r.axes, keep_dims: r.keep_dims }, &[id])?)),
            _ => Err(cx.unsupported(format!("{op} of a computed tensor is not supported (only of constants)"))),
        })
    }

    fn argmax(&mut self, cx: &Cx) -> R<Value> {
        let x = self.node(cx, 0)?;
        let r = self.graph.nodes[x].shape.len();
        let axis = cx.axis(cx.int_or("axis", 0)?, r, "axis")?;
        let keep = cx.int_or("keepdims", 1)? != 0;
        if cx.int_or("select_last_index", 0)? != 0 {
            return Err(cx.unsupported("select_last_index=1 is not supported"));
        }
        self.argmax_value(cx, cx.out0()?, x, axis, keep)
    }

    // ---- convolutions and pooling --------------------------------------------------------

    /// Padding of each spatial axis from `auto_pad`/`pads` (convolutions and pools).
    fn spatial_pads(&self, cx: &Cx, input: &[usize], span: &[usize], strides: &[usize]) -> R<(Vec<usize>, Vec<usize>)> {
        let r = input.len();
        let auto_pad = cx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        match auto_pad.as_str() {
            "NOTSET" => {
                let pads = cx.ints("pads")?.unwrap_or_else(|| vec![0; 2 * r]);
                if pads.len() != 2 * r {
                    return Err(cx.invalid(format!("pads {pads:?} must have {} entries", 2 * r)));
                }
                let pads = cx.dims(&pads, "pad")?;
                Ok((pads[..r].to_vec(), pads[r..].to_vec()))
            }
            "VALID" => Ok((vec![0; r], vec![0; r])),
            "SAME_UPPER" | "SAME_LOWER" => {
                let (b, e) = same_pads(input, span, strides);
                Ok(if auto_pad == "SAME_UPPER" { (b, e) } else { (e, b) })
            }
            other => Err(cx.invalid(format!("unknown auto_pad `{other}`"))),
        }
    }

    fn spatial_attr(&self, cx: &Cx, name: &str, r: usize, default: usize) -> R<Vec<usize>> {
        match cx.ints(name)? {
            None => Ok(vec![default; r]),
            Some(v) if v.is_empty() => Ok(vec![default; r]),
            Some(v) => {
                if v.len() != r {
                    return Err(cx.invalid(format!("{name} {v:?} must have {r} entries")));
                }
                let v = cx.dims(&v, name)?;
                if v.contains(&0) {
                    return Err(cx.invalid(format!("{name} {v:?} must be positive")));
                }
                Ok(v)
            }
        }
    }

    fn activation_input(&mut self, cx: &Cx, min_rank: usize, max_rank: usize) -> R<(NodeId, Vec<usize>)> {
        let x = self.node(cx, 0)?;
        let s = self.graph.nodes[x].shape.clone();
        if s.contains(&0) {
            return Err(cx.shape_err(format!("input of shape {s:?} is empty")));
        }
        if s.len() < min_rank || s.len() > max_rank {
            return Err(cx.shape_err(format!(
                "input of shape {s:?} must have rank {min_rank} to {max_rank} ([N, C, spatial...])"
            )));
        }
        Ok((x, s))
    }

    fn bias_input(&mut self, cx: &Cx, channels: usize) -> R<Option<NodeId>> {
        let Some(v) = self.opt_input(cx, 2)? else { return Ok(None) };
        let s = self.shape(&v);
        if elements(&s) != channels || s.len() > 1 && s.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(cx.shape_err(format!("bias of shape {s:?} does not match {channels} output channels")));
        }
        let name = cx.input_name(2).unwrap_or_default().to_string();
        let v = match v {
            Value::Const(c) if s != [channels] => Value::Const(Rc::new(c.with_shape(vec![channels]))),
            Value::Node(id) if s != [channels] => {
                Value::Node(self.emit(cx, format!("{name}/reshape"), Op::Reshape { shape: vec![channels] }, &[id])?)
            }
            v => v,
        };
        Ok(Some(self.node_of(cx, &name, &v)?))
    }

    fn conv(&mut self, cx: &Cx) -> R<Value> {
        let (x, xs) = self.activation_input(cx, 3, 5)?;
        let r = xs.len() - 2;
        let w = self.node(cx, 1)?;
        let ws = self.graph.nodes[w].shape.clone();
        if ws.len() != xs.len() {
            return Err(cx.shape_err(format!(
                "weight of shape {ws:?} must have rank {} (input is {xs:?}: [C_out, C_in/groups, k_1..k_{r}])",
                xs.len()
            )));
        }
        let groups = cx.dim(cx.int_or("group", 1)?, "group")?;
        if groups == 0 {
            return Err(cx.invalid("group must be positive"));
        }
        let kernel = ws[2..].to_vec();
        if let Some(k) = cx.ints("kernel_shape")? {
            if !k.is_empty() && (k.len() != r || k.iter().zip(&kernel).any(|(&a, &b)| a != b as i64)) {
                return Err(cx.shape_err(format!("kernel_shape {k:?} does not match weight shape {ws:?}")));
            }
        }
        if ws[1].checked_mul(groups) != Some(xs[1]) || ws[0] % groups != 0 {
            return Err(cx.shape_err(format!(
                "weight {ws:?} with {groups} groups does not fit input {xs:?} ({} input channels)",
                xs[1]
            )));
        }
        if kernel.contains(&0) {
            return Err(cx.shape_err(format!("weight {ws:?} has an empty kernel")));
        }
        let strides = self.spatial_attr(cx, "strides", r, 1)?;
        let dilations = self.spatial_attr(cx, "dilations", r, 1)?;
        let span = kernel_span(&kernel, &dilations);
        let (pads_begin, pads_end) = self.spatial_pads(cx, &xs[2..], &span, &strides)?;
        let g = ConvGeometry {
            layout: Layout::ChannelsFirst,
            batch: xs[0],
            in_channels: xs[1],
            out_channels: ws[0],
            groups,
            input: xs[2..].to_vec(),
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            output_padding: vec![0; r],
        };
        let mut inputs = vec![x, w];
        inputs.extend(self.bias_input(cx, ws[0])?);
        Ok(Value::Node(self.emit(cx, cx.out0()?, Op::Conv(g), &inputs)?))
    }

    fn conv_transpose(&mut self, cx: &Cx) -> R<Value> {
        let (x, xs) = self.activation_input(cx, 3, 5)?;
        let r = xs.len() - 2;
        let w = self.node(cx, 1)?;
        let ws = self.graph.nodes[w].shape.clone();
        if ws.len() != xs.len() {
            return Err(cx.shape_err(format!(
                "weight of shape {ws:?} must have rank {} (input is {xs:?}: [C_in, C_out/groups, k_1..k_{r}])",
                xs.len()
            )));
        }
        let groups = cx.dim(cx.int_or("group", 1)?, "group")?;
        if groups == 0 || ws[0] != xs[1] || xs[1] % groups != 0 {
            return Err(cx.shape_err(format!("weight {ws:?} with {groups} groups does not fit input {xs:?}")));
        }
        let out_channels = ws[1].checked_mul(groups).ok_or_else(|| cx.shape_err("too many channels"))?;
        let kernel = ws[2..].to_vec();
        if kernel.contains(&0) {
            return Err(cx.shape_err(format!("weight {ws:?} has an empty kernel")));
        }
        if let Some(k) = cx.ints("kernel_shape")? {
            if !k.is_empty() && (k.len() != r || k.iter().zip(&kernel).any(|(&a, &b)| a != b as i64)) {
                return Err(cx.shape_err(format!("kernel_shape {k:?} does not match weight shape {ws:?}")));
            }
        }
        let strides = self.spatial_attr(cx, "strides", r, 1)?;
        let dilations = self.spatial_attr(cx, "dilations", r, 1)?;
        let mut output_padding = match cx.ints("output_padding")? {
            Some(v) if !v.is_empty() => {
                if v.len() != r {
                    return Err(cx.invalid(format!("output_padding {v:?} must have {r} entries")));
                }
                cx.dims(&v, "output_padding")?
            }
            _ => vec![0; r],
        };
        let input = xs[2..].to_vec();
        let full: Vec<usize> =
            (0..r).map(|i| strides[i] * (input[i] - 1) + output_padding[i] + dilations[i] * (kernel[i] - 1) + 1).collect();
        let auto_pad = cx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let wanted: Option<Vec<usize>> = match cx.ints("output_shape")? {
            Some(os) if !os.is_empty() => {
                let os = if os.len() == r + 2 { os[2..].to_vec() } else { os };
                if os.len() != r {
                    return Err(cx.invalid(format!("output_shape must have {r} entries")));
                }
                Some(cx.dims(&os, "output_shape")?)
            }
            _ if auto_pad.starts_with("SAME") => Some((0..r).map(|i| input[i] * strides[i]).collect()),
            _ => None,
        };
        let (pads_begin, pads_end) = match wanted {
            Some(os) => {
                let mut b = vec![0; r];
                let mut e = vec![0; r];
                for i in 0..r {
                    if os[i] == 0 {
                        return Err(cx.shape_err("output_shape has an empty dimension"));
                    }
                    if os[i] <= full[i] {
                        let total = full[i] - os[i];
                        let (small, big) = (total / 2, total - total / 2);
                        (b[i], e[i]) = if auto_pad == "SAME_UPPER" { (small, big) } else { (big, small) };
                    } else {
                        let deficit = os[i] - full[i];
                        if deficit + output_padding[i] >= strides[i].max(dilations[i]) {
                            return Err(cx.shape_err(format!(
                                "output_shape {os:?} is inconsistent with the input {xs:?}, kernel and strides"
                            )));
                        }
                        output_padding[i] += deficit;
                    }
                }
                (b, e)
            }
            None if auto_pad == "VALID" => (vec![0; r], vec![0; r]),
            None if auto_pad == "NOTSET" => {
                let pads = cx.ints("pads")?.unwrap_or_else(|| vec![0; 2 * r]);
                if pads.len() != 2 * r {
                    return Err(cx.invalid(format!("pads {pads:?} must have {} entries", 2 * r)));
                }
                let pads = cx.dims(&pads, "pad")?;
                (pads[..r].to_vec(), pads[r..].to_vec())
            }
            None => return Err(cx.invalid(format!("unknown auto_pad `{auto_pad}`"))),
        };
        let g = ConvGeometry {
            layout: Layout::ChannelsFirst,
            batch: xs[0],
            in_channels: xs[1],
            out_channels,
            groups,
            input,
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            output_padding,
        };
        let mut inputs = vec![x, w];
        inputs.extend(self.bias_input(cx, out_channels)?);
        Ok(Value::Node(self.emit(cx, cx.out0()?, Op::ConvTranspose(g), &inputs)?))
    }

    fn pool(&mut self, cx: &Cx) -> R<Value> {
        let is_max = cx.op == "MaxPool";
        let (x, xs) = self.activation_input(cx, 3, 5)?;
        let r = xs.len() - 2;
        if is_max {
            self.unused_output(cx, 1, "Indices")?;
        }
        let window = match cx.ints("kernel_shape")? {
            Some(k) if k.len() == r => cx.dims(&k, "kernel_shape")?,
            _ => return Err(cx.invalid(format!("kernel_shape must be given with {r} entries"))),
        };
        if window.contains(&0) {
            return Err(cx.invalid(format!("kernel_shape {window:?} must be positive")));
        }
        let dilations = self.spatial_attr(cx, "dilations", r, 1)?;
        if dilations.iter().any(|&d| d != 1) {
            return Err(cx.unsupported(format!("pooling with dilations {dilations:?} is not supported")));
        }
        let strides = self.spatial_attr(cx, "strides", r, 1)?;
        let input = xs[2..].to_vec();
        let (pads_begin, mut pads_end) = self.spatial_pads(cx, &input, &window, &strides)?;
        let ceil = cx.int_or("ceil_mode", 0)? != 0;
        let count_include_pad = !is_max && cx.int_or("count_include_pad", 0)? != 0;
        let mut extra = vec![0usize; r];
        for i in 0..r {
            let padded = input[i] + pads_begin[i] + pads_end[i];
            if padded < window[i] {
                return Err(cx.shape_err(format!(
                    "pooling window {window:?} exceeds the padded input extent {padded} on spatial axis {i}"
                )));
            }
            if ceil {
                let mut out = (padded - window[i]).div_ceil(strides[i]) + 1;
                // As onnxruntime and PyTorch: the last window must start inside the input or
                // the begin padding.
                if (out - 1) * strides[i] >= input[i] + pads_begin[i] {
                    out -= 1;
                }
                let needed = (out - 1) * strides[i] + window[i];
                extra[i] = needed.saturating_sub(padded);
            }
        }
        let name = cx.out0()?;
        let mut x = x;
        let mut pads_begin = pads_begin;
        let mut count_include_pad = count_include_pad;
        if count_include_pad && extra.iter().any(|&e| e > 0) {
            // onnxruntime counts the model's pads but not the extra ceil-mode padding in the
            // divisor: pad explicitly, then divide by the in-bounds count.
            let mut b = vec![0; 2];
            let mut e = vec![0; 2];
            b.extend_from_slice(&pads_begin);
            e.extend_from_slice(&pads_end);
            x = self.emit(cx, format!("{name}/pad"), Op::Pad { pads_begin: b, pads_end: e, value: 0.0 }, &[x])?;
            pads_begin = vec![0; r];
            pads_end = vec![0; r];
            count_include_pad = false;
        }
        let xs = self.graph.nodes[x].shape.clone();
        for i in 0..r {
            pads_end[i] += extra[i];
        }
        let g = PoolGeometry {
            layout: Layout::ChannelsFirst,
            batch: xs[0],
            channels: xs[1],
            input: xs[2..].to_vec(),
            window,
            strides,
            pads_begin,
            pads_end,
            count_include_pad,
        };
        let op = if is_max { Op::MaxPool(g) } else { Op::AvgPool(g) };
        Ok(Value::Node(self.emit(cx, name, op, &[x])?))
    }

    fn global_pool(&mut self, cx: &Cx) -> R<Value> {
        let (x, xs) = self.activation_input(cx, 3, 5)?;
        let name = cx.out0()?;
        let op = if cx.op == "GlobalAveragePool" {
            Op::ReduceMean { axes: (2..xs.len()).collect(), keep_dims: true }
        } else {
            Op::MaxPool(global_max_pool(Layout::ChannelsFirst, xs[0], xs[1], xs[2..].to_vec()))
        };
        Ok(Value::Node(self.emit(cx, name, op, &[x])?))
    }

    fn batch_norm(&mut self, cx: &Cx) -> R<Value> {
        let (x, xs) = self.activation_input(cx, 2, usize::MAX)?;
        if cx.opset >= 14 && cx.int_or("training_mode", 0)? != 0 {
            return Err(cx.unsupported("training_mode=1 is not supported (inference only)"));
        }
        if cx.opset < 9 && cx.int_or("spatial", 1)? == 0 {
            return Err(cx.unsupported("spatial=0 (per-activation statistics) is not supported"));
        }
        for i in 1..5 {
            self.unused_output(cx, i, "training statistics")?;
        }
        let epsilon = cx.float_or("epsilon", 1e-5)?;
        if !(epsilon >= 0.0 && epsilon.is_finite()) {
            return Err(cx.invalid(format!("invalid epsilon {epsilon}")));
        }
        let c = xs[1];
        let mut inputs = vec![x];
        for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
            let v = self.input(cx, i)?;
            let s = self.shape(&v);
            if s != [c] {
                if elements(&s) == c && s.iter().filter(|&&d| d != 1).count() <= 1 {
                    let name = format!("{}/reshape", cx.input_name(i).unwrap_or_default());
                    let v = self.reshape_value(cx, name.clone(), &v, vec![c])?;
                    inputs.push(self.node_of(cx, &name, &v)?);
                    continue;
                }
                return Err(cx.shape_err(format!("{what} of shape {s:?} does not match {c} channels of input {xs:?}")));
            }
            inputs.push(self.node(cx, i)?);
        }
        Ok(Value::Node(self.emit(cx, cx.out0()?, Op::BatchNorm { epsilon, channel_axis: 1 }, &inputs)?))
    }

    // ---- matrix products -------------------------------------------------------------------

    fn matmul(&mut self, cx: &Cx) -> R<Value> {
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let an = cx.input_name(0).unwrap_or_default().to_string();
        let bn = cx.input_name(1).unwrap_or_default().to_string();
        let out = cx.out0()?;
        self.matmul_values(cx, &out, (&an, &a), (&bn, &b))
    }

    /// ONNX MatMul of two values, lowered to HLIL MatMul (whose right operand is 2-D).
    pub(crate) fn matmul_values(&mut self, cx: &Cx, base: &str, a: (&str, &Value), b: (&str, &Value)) -> R<Value> {
        let shapes = matmul_shapes(cx, self.shape(a.1), self.shape(b.1))?;
        self.matmul_lowered(cx, base, a, b, shapes)
    }

    fn gemm(&mut self, cx: &Cx) -> R<Value> {
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let an = cx.input_name(0).unwrap_or_default().to_string();
        let bn = cx.input_name(1).unwrap_or_default().to_string();
        let out = cx.out0()?;
        let (sa, sb) = (self.shape(&a), self.shape(&b));
        if sa.len() != 2 || sb.len() != 2 {
            return Err(cx.shape_err(format!("Gemm operands must be matrices, got {sa:?} and {sb:?}")));
        }
        let alpha = cx.float_or("alpha", 1.0)?;
        let beta = cx.float_or("beta", 1.0)?;
        let a = if cx.int_or("transA", 0)? != 0 {
            self.transpose_value(cx, format!("{an}/transposed"), &a, vec![1, 0])?
        } else {
            a
        };
        let an = if cx.int_or("transA", 0)? != 0 { format!("{an}/transposed") } else { an };
        let b = if cx.int_or("transB", 0)? != 0 {
            self.transpose_value(cx, format!("{bn}/transposed"), &b, vec![1, 0])?
        } else {
            b
        };
        let bn = if cx.int_or("transB", 0)? != 0 { format!("{bn}/transposed") } else { bn };
        let (m, n) = (self.shape(&a)[0], self.shape(&b)[1]);
        let mut y = self.matmul_values(cx, &out, (&an, &a), (&bn, &b))?;
        if alpha != 1.0 {
            let id = self.node_of(cx, &out, &y)?;
            y = Value::Node(self.emit(cx, format!("{out}/alpha"), Op::MulScalar(alpha), &[id])?);
        }
        let Some(c) = self.opt_input(cx, 2)? else { return Ok(y) };
        if beta == 0.0 {
            return Ok(y);
        }
        let cn = cx.input_name(2).unwrap_or_default().to_string();
        let cs = self.shape(&c);
        match broadcast_shapes(&cs, &[m, n]) {
            Ok(s) if s == [m, n] => {}
            _ => return Err(cx.shape_err(format!("C of shape {cs:?} does not broadcast to [{m}, {n}]"))),
        }
        let (c, cn) = match c {
            Value::Const(cc) if beta != 1.0 => {
                let scaled = Const::new_f(cc.shape.clone(), cc.to_f32().iter().map(|&v| v * beta).collect());
                (Value::Const(Rc::new(scaled)), format!("{cn}/beta"))
            }
            Value::Node(id) if beta != 1.0 => {
                (Value::Node(self.emit(cx, format!("{out}/beta"), Op::MulScalar(beta), &[id])?), cn)
            }
            c => (c, cn),
        };
        let yn = format!("{out}/product");
        self.arith_values(cx, Arith::Add, (&yn, &y), (&cn, &c), &format!("{out}/bias"))
    }
}
