//! Handlers of the operators of networks beyond ReLU CNNs: elementwise functions, `Pow` with
//! a constant exponent, division by computed tensors, `Max`/`Min`/`Mean` of computed tensors,
//! `PRelu`, `Softmax`/`LogSoftmax` anywhere, layer/instance/group normalisation, `CastLike`.
//! The shared lowering is [`NnLowering`].

use std::rc::Rc;

use cryptflow_frontend::consts::broadcast_shapes;
use cryptflow_frontend::eval::{binary, CastTarget};
use cryptflow_frontend::lower::softmax_compiled_away;
use cryptflow_frontend::nn::{softmax_kept_at_output, softmax_strip_preserves_prediction};
use cryptflow_frontend::{Arith, Const, Lowering, NnLowering, NodeContext, ValueKind};
use cryptflow_ir::hlil::{NodeId, Op, UnaryFn};
use cryptflow_tensor::num_elements as elements;

use crate::attrs::Cx;
use crate::consts::MAX_GENERATED;
use crate::import::{Importer, Value};
use crate::OnnxError;

type R<T> = Result<T, OnnxError>;

/// Largest integer exponent `Pow` expands into products.
const MAX_INTEGER_EXPONENT: u32 = 64;

/// Most distinct values an elementwise `Pow` exponent may hold (each is one power).
const MAX_DISTINCT_EXPONENTS: usize = 8;

/// Whether `Pow` computes `x^p` of a computed `x`: integers up to [`MAX_INTEGER_EXPONENT`]
/// in magnitude, 0.5 and -0.5.
fn supported_exponent(p: f32) -> bool {
    (p.fract() == 0.0 && p.abs() <= MAX_INTEGER_EXPONENT as f32) || p == 0.5 || p == -0.5
}

/// The opset that introduced an operator added with the math library, when it is above 7.
pub fn introduced_in(op: &str) -> Option<i64> {
    Some(match op {
        "Erf" => 9,
        "Einsum" => 12,
        "HardSwish" => 14,
        "CastLike" => 15,
        "LayerNormalization" => 17,
        "GroupNormalization" | "Mish" => 18,
        "Gelu" => 20,
        "Resize" => 10,
        _ => return None,
    })
}

fn scalar(v: f32) -> Value {
    Value::Const(Rc::new(Const::new_f(vec![], vec![v])))
}

impl Importer<'_> {
    /// Errors if the model's opset predates the operator.
    pub(crate) fn check_introduced(&self, cx: &Cx) -> R<()> {
        match introduced_in(&cx.op) {
            Some(v) if cx.opset < v => Err(cx.invalid(format!(
                "{} exists from opset {v} on, but the model imports opset {}",
                cx.op, cx.opset
            ))),
            _ => Ok(()),
        }
    }

    /// Elementwise functions of one input.
    pub(crate) fn unary(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let name = cx.out0()?;
        let f = match cx.op.as_str() {
            "Sigmoid" => UnaryFn::Sigmoid,
            "Tanh" => UnaryFn::Tanh,
            "Exp" => UnaryFn::Exp,
            "Log" => UnaryFn::Log,
            "Erf" => UnaryFn::Erf,
            "Abs" => UnaryFn::Abs,
            "Reciprocal" => UnaryFn::Reciprocal,
            "Softplus" => UnaryFn::Softplus,
            "Sqrt" => UnaryFn::Sqrt,
            "HardSwish" => UnaryFn::HardSwish,
            "HardSigmoid" => UnaryFn::HardSigmoid { alpha: cx.float_or("alpha", 0.2)?, beta: cx.float_or("beta", 0.5)? },
            "Elu" => UnaryFn::Elu { alpha: cx.float_or("alpha", 1.0)? },
            "Gelu" => match cx.string("approximate")?.as_deref().unwrap_or("none") {
                "none" => UnaryFn::Gelu,
                "tanh" => UnaryFn::GeluTanh,
                other => return Err(cx.invalid(format!("unknown approximate `{other}` (none or tanh)"))),
            },
            "Selu" => {
                let alpha = cx.float_or("alpha", 1.673_263_2)?;
                let gamma = cx.float_or("gamma", 1.050_701)?;
                let e = self.unary_value(cx, format!("{name}/elu"), &x, UnaryFn::Elu { alpha })?;
                return self.arith_values(cx, Arith::Mul, (&format!("{name}/elu"), &e), ("gamma", &scalar(gamma)), &name);
            }
            "Softsign" => {
                // x / (1 + |x|)
                let a = self.unary_value(cx, format!("{name}/abs"), &x, UnaryFn::Abs)?;
                let d = self.arith_values(cx, Arith::Add, (&format!("{name}/abs"), &a), ("one", &scalar(1.0)), &format!("{name}/denominator"))?;
                let xn = cx.input_label(0);
                return self.div_values(cx, (&xn, &x), (&format!("{name}/denominator"), &d), &name);
            }
            "Mish" => {
                // x * tanh(softplus(x))
                let s = self.unary_value(cx, format!("{name}/softplus"), &x, UnaryFn::Softplus)?;
                let t = self.unary_value(cx, format!("{name}/tanh"), &s, UnaryFn::Tanh)?;
                let xn = cx.input_label(0);
                return self.arith_values(cx, Arith::Mul, (&xn, &x), (&format!("{name}/tanh"), &t), &name);
            }
            other => return Err(cx.invalid(format!("internal: {other} is not an elementwise function"))),
        };
        self.unary_value(cx, name, &x, f)
    }

    /// `Pow` with a constant exponent: products for integers, square roots for +-0.5. An
    /// elementwise exponent tensor with a few distinct such values computes each distinct
    /// power once and selects per element with public 0/1 masks (`MulConst`) and `Add`.
    pub(crate) fn pow(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let e = self.input(cx, 1)?;
        let name = cx.out0()?;
        let out = broadcast_shapes(&self.shape(&x), &self.shape(&e)).map_err(|err| cx.shape_err(err))?;
        if let (Some(a), Some(b)) = (x.as_const(), e.as_const()) {
            let r = binary(a, b, MAX_GENERATED, f32::powf, |p, q| {
                u32::try_from(q).map(|q| p.wrapping_pow(q)).map_err(|_| "integer Pow with a negative exponent".to_string())
            });
            return Ok(Value::Const(Rc::new(r.map_err(|err| cx.shape_err(err))?)));
        }
        let Some(ec) = e.as_const().cloned() else {
            return Err(cx.unsupported(format!(
                "the exponent `{}` is computed from the model inputs; only constant exponents are supported",
                cx.input_label(1)
            )));
        };
        let values = ec.to_f32();
        let mut distinct: Vec<f32> = Vec::new();
        for &v in &values {
            if !distinct.contains(&v) {
                distinct.push(v);
            }
        }
        for &p in &distinct {
            if !supported_exponent(p) {
                return Err(cx.unsupported(format!(
                    "Pow with exponent {p} is not supported (only integer exponents up to {MAX_INTEGER_EXPONENT} in magnitude, 0.5 and -0.5)"
                )));
            }
        }
        if distinct.len() > MAX_DISTINCT_EXPONENTS {
            return Err(cx.unsupported(format!(
                "an elementwise exponent with {} distinct values is not supported (at most {MAX_DISTINCT_EXPONENTS})",
                distinct.len()
            )));
        }
        let Value::Node(_) = x else { return Err(cx.invalid("internal: Pow of a constant")) };
        if let [p] = distinct[..] {
            if p == 0.0 {
                let ones = Const::new_f(out.clone(), vec![1.0; elements(&out)]);
                return Ok(Value::Const(Rc::new(ones)));
            }
            let Value::Node(xi) = x else { return Err(cx.invalid("internal: Pow of a constant")) };
            let y = self.power_node(cx, &name, xi, p)?;
            return self.reshape_value(cx, format!("{name}/broadcast"), &Value::Node(y), out);
        }
        // Elementwise: x broadcast to the output; the masks (of the exponent's shape) broadcast to it.
        let xb = if self.shape(&x) == out { x } else { self.broadcast_value(cx, &x, &cx.input_label(0), &out)? };
        let Value::Node(xi) = xb else { return Err(cx.invalid("internal: Pow of a constant")) };
        let mut acc: Option<NodeId> = None;
        let mut constant: Option<Vec<f32>> = None;
        for (k, &p) in distinct.iter().enumerate() {
            let mask: Vec<f32> = values.iter().map(|&v| if v == p { 1.0 } else { 0.0 }).collect();
            if p == 0.0 {
                constant = Some(mask);
                continue;
            }
            let base = format!("{name}/exponent{k}");
            let y = self.power_node(cx, &base, xi, p)?;
            let c = cryptflow_tensor::Tensor::new(ec.shape.clone(), mask).map_err(|err| cx.shape_err(err.to_string()))?;
            let term = self.emit(cx, format!("{base}/masked"), Op::MulConst(c), &[y])?;
            acc = Some(match acc {
                None => term,
                Some(a) => self.emit(cx, format!("{base}/sum"), Op::Add, &[a, term])?,
            });
        }
        let acc = Value::Node(acc.ok_or_else(|| cx.invalid("internal: no power"))?);
        match constant {
            // x^0 = 1 where the exponent is 0: add the public mask of those elements.
            Some(mask) => {
                let c = Value::Const(Rc::new(Const::new_f(ec.shape.clone(), mask)));
                self.arith_values(cx, Arith::Add, (&format!("{name}/powers"), &acc), (&format!("{name}/zero_exponents"), &c), &name)
            }
            None => Ok(acc),
        }
    }

    /// `x^p` of a computed tensor for a supported exponent `p` other than 0.
    fn power_node(&mut self, cx: &Cx, name: &str, xi: NodeId, p: f32) -> R<NodeId> {
        let unary = |imp: &mut Self, f: UnaryFn, x: NodeId, suffix: &str| imp.emit(cx, format!("{name}/{suffix}"), Op::Unary(f), &[x]);
        if p == 1.0 {
            Ok(xi)
        } else if p == 0.5 {
            unary(self, UnaryFn::Sqrt, xi, "sqrt")
        } else if p == -0.5 {
            unary(self, UnaryFn::Rsqrt, xi, "rsqrt")
        } else if p.fract() == 0.0 && p.abs() <= MAX_INTEGER_EXPONENT as f32 && p != 0.0 {
            let y = self.integer_power(cx, name, xi, p.abs() as u32)?;
            if p < 0.0 {
                unary(self, UnaryFn::Reciprocal, y, "reciprocal")
            } else {
                Ok(y)
            }
        } else {
            Err(cx.invalid(format!("internal: exponent {p}")))
        }
    }

    /// `x^n` (n >= 1) by square-and-multiply.
    fn integer_power(&mut self, cx: &Cx, name: &str, x: NodeId, mut n: u32) -> R<NodeId> {
        let mut acc: Option<NodeId> = None;
        let mut base = x;
        let mut step = 0;
        while n > 0 {
            if n & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => {
                        step += 1;
                        self.emit(cx, format!("{name}/mul{step}"), Op::Mul, &[a, base])?
                    }
                });
            }
            n >>= 1;
            if n > 0 {
                step += 1;
                base = self.emit(cx, format!("{name}/square{step}"), Op::Mul, &[base, base])?;
            }
        }
        acc.ok_or_else(|| cx.invalid("internal: power 0"))
    }

    /// `Div`: by constants as before, by computed tensors with HLIL `Div`.
    pub(crate) fn div(&mut self, cx: &Cx) -> R<Value> {
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let (an, bn) = (cx.input_label(0), cx.input_label(1));
        let out = cx.out0()?;
        self.div_values(cx, (&an, &a), (&bn, &b), &out)
    }

    /// Variadic `Max`/`Min` (broadcasting) and `Mean`.
    pub(crate) fn variadic(&mut self, cx: &Cx) -> R<Value> {
        let n = cx.node.input.len();
        if n == 0 || (0..n).any(|i| cx.input_name(i).is_none()) {
            return Err(cx.invalid(format!("{} needs one or more inputs, all present", cx.op)));
        }
        let out = cx.out0()?;
        if cx.op == "Mean" {
            let sum = self.sum_inputs(cx, n, &out)?;
            if n == 1 {
                return Ok(sum);
            }
            let count = Value::Const(Rc::new(Const::new_f(vec![], vec![n as f32])));
            return self.arith_values(cx, Arith::Div, (&format!("{out}/sum"), &sum), ("count", &count), &out);
        }
        let max = cx.op == "Max";
        let mut acc_name = cx.input_label(0);
        let mut acc = self.input(cx, 0)?;
        for i in 1..n {
            let v = self.input(cx, i)?;
            let vn = cx.input_label(i);
            let name = if i + 1 == n { out.clone() } else { format!("{out}/{i}") };
            acc = self.extreme_values(cx, max, (&acc_name, &acc), (&vn, &v), &name)?;
            acc_name = name;
        }
        Ok(acc)
    }

    /// `PRelu`: the slope (a weight or computed) broadcasts to the input (unidirectionally).
    pub(crate) fn prelu(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let slope = self.input(cx, 1)?;
        let (xn, sn) = (cx.input_label(0), cx.input_label(1));
        self.prelu_values(cx, (&xn, &x), (&sn, &slope), cx.out0()?)
    }

    /// `CastLike`: a cast to the element type of the second input.
    pub(crate) fn cast_like(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let target = self.input(cx, 1)?;
        let float = match &target {
            Value::Const(c) => c.is_float(),
            Value::Node(id) => !self.is_int_node(*id),
        };
        self.cast_value(cx, x, if float { CastTarget::Float } else { CastTarget::Int })
    }

    /// `Softmax`/`LogSoftmax`: from opset 13 over one axis (default -1); before, over the
    /// input coerced to 2-D at `axis` (default 1): all axes from `axis` on. Compiled away at a
    /// graph output only with `strip_output_softmax` and when that preserves the prediction.
    pub(crate) fn softmax(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let out = cx.out0()?;
        let s = self.shape(&x);
        let r = s.len();
        if r == 0 {
            return Err(cx.shape_err("softmax of a scalar"));
        }
        let log = cx.op == "LogSoftmax";
        let default = if cx.opset >= 13 { -1 } else { 1 };
        let axis = cx.axis(cx.int_or("axis", default)?, r, "axis")?;
        let axes: Vec<usize> = if cx.opset >= 13 { vec![axis] } else { (axis..r).collect() };
        if self.strip_output_softmax && self.reaches_an_output(&out) && self.only_reaches_outputs(&out).is_ok() {
            if softmax_strip_preserves_prediction(&s, &axes) {
                self.notices.push(softmax_compiled_away(&cx.op, &out));
                return Ok(x);
            }
            let why = if r == 1 { "a rank-1 output may be over the batch" } else { "it mixes the batch axis 0" };
            self.notices.push(softmax_kept_at_output(&cx.op, &out, why));
        }
        let tensor = cx.input_label(0);
        if axes.len() == 1 {
            return self.softmax_value(cx, out, &tensor, &x, axis, log);
        }
        let rows = vec![elements(&s[..axis]), elements(&s[axis..])];
        let flat = self.reshape_value(cx, format!("{out}/coerced"), &x, rows)?;
        let y = self.softmax_value(cx, format!("{out}/softmax"), &format!("{tensor}/coerced"), &flat, 1, log)?;
        self.reshape_value(cx, out, &y, s)
    }

    /// `x * scale + bias` with `scale`, `bias` per channel (`[C]`) on `channel_axis`.
    fn channel_affine(&mut self, cx: &Cx, name: &str, y: Value, channel_axis: usize, scale: usize, bias: Option<usize>) -> R<Value> {
        let ys = self.shape(&y);
        let c = ys[channel_axis];
        let mut per_channel = vec![1; ys.len() - channel_axis];
        per_channel[0] = c;
        let mut y = y;
        for (i, what, arith) in [(Some(scale), "scale", Arith::Mul), (bias, "bias", Arith::Add)] {
            let Some(i) = i else { continue };
            let v = self.input(cx, i)?;
            let vs = self.shape(&v);
            if elements(&vs) != c || vs.iter().filter(|&&d| d != 1).count() > 1 {
                return Err(cx.shape_err(format!("{what} of shape {vs:?} does not match the {c} channels of {ys:?}")));
            }
            let vn = format!("{}/per_channel", cx.input_label(i));
            let v = self.reshape_value(cx, vn.clone(), &v, per_channel.clone())?;
            let yn = format!("{name}/{}", if arith == Arith::Mul { "normalized" } else { "scaled" });
            let base = if arith == Arith::Add || bias.is_none() { name.to_string() } else { format!("{name}/scaled") };
            y = self.arith_values(cx, arith, (&yn, &y), (&vn, &v), &base)?;
        }
        Ok(y)
    }

    /// `LayerNormalization` (opset 17): normalisation over the axes from `axis` on, then
    /// `* Scale + B` (broadcast to the input).
    pub(crate) fn layer_norm(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let r = s.len();
        if r == 0 {
            return Err(cx.shape_err("LayerNormalization of a scalar"));
        }
        let axis = cx.axis(cx.int_or("axis", -1)?, r, "axis")?;
        let epsilon = cx.float_or("epsilon", 1e-5)?;
        let name = cx.out0()?;
        let tensor = cx.input_label(0);
        let stats: Vec<Option<String>> =
            (1..3).map(|i| cx.output_name(i).filter(|n| self.is_used(n)).map(str::to_string)).collect();
        let mut y = if stats.iter().any(Option::is_some) {
            self.layer_norm_with_statistics(cx, &name, &x, axis, epsilon, &stats)?
        } else {
            self.normalize_value(cx, format!("{name}/normalize"), &tensor, &x, (axis..r).collect(), epsilon)?
        };
        let mut yn = format!("{name}/normalize");
        for (i, what, arith) in [(1, "Scale", Arith::Mul), (2, "B", Arith::Add)] {
            let Some(v) = (if i == 1 { Some(self.input(cx, 1)?) } else { self.opt_input(cx, 2)? }) else { continue };
            let vs = self.shape(&v);
            if broadcast_shapes(&s, &vs).ok().as_deref() != Some(s.as_slice()) {
                return Err(cx.shape_err(format!("{what} of shape {vs:?} does not broadcast to the input's shape {s:?}")));
            }
            let last = i == 2 || cx.input_name(2).is_none();
            let base = if last { name.clone() } else { format!("{name}/scaled") };
            y = self.arith_values(cx, arith, (&yn, &y), (&cx.input_label(i), &v), &base)?;
            yn = base;
        }
        Ok(y)
    }

    /// The standardisation of `LayerNormalization` spelled out, for when its `Mean` or
    /// `InvStdDev` output is used (`stats`: their names when used): `Mean = ReduceMean(X)`,
    /// `D = X - Mean`, `InvStdDev = Rsqrt(ReduceMean(D * D) + epsilon)` (both with kept
    /// dims, shape `[d0, ..., d(axis-1), 1, ..., 1]`), `D * InvStdDev`. Binds the used
    /// statistics and returns the normalised tensor.
    fn layer_norm_with_statistics(&mut self, cx: &Cx, name: &str, x: &Value, axis: usize, epsilon: f32, stats: &[Option<String>]) -> R<Value> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(cx.invalid(format!("invalid epsilon {epsilon}")));
        }
        let r = self.shape(x).len();
        let xi = self.node_of(cx, &cx.input_label(0), x)?;
        let axes: Vec<usize> = (axis..r).collect();
        let mean = self.emit(cx, format!("{name}/mean"), Op::ReduceMean { axes: axes.clone(), keep_dims: true }, &[xi])?;
        let d = self.emit(cx, format!("{name}/centered"), Op::Sub, &[xi, mean])?;
        let dd = self.emit(cx, format!("{name}/squared"), Op::Mul, &[d, d])?;
        let var = self.emit(cx, format!("{name}/variance"), Op::ReduceMean { axes, keep_dims: true }, &[dd])?;
        let var_eps = if epsilon == 0.0 { var } else { self.emit(cx, format!("{name}/variance_eps"), Op::AddScalar(epsilon), &[var])? };
        let inv = self.emit(cx, format!("{name}/inv_std_dev"), Op::Unary(UnaryFn::Rsqrt), &[var_eps])?;
        for (stat, id) in stats.iter().zip([mean, inv]) {
            if let Some(s) = stat {
                self.graph.nodes[id].name = s.clone();
                self.bind(s.clone(), Value::Node(id));
            }
        }
        Ok(Value::Node(self.emit(cx, format!("{name}/normalized"), Op::Mul, &[d, inv])?))
    }

    /// `InstanceNormalization`: normalisation of each channel of each sample over the
    /// spatial axes, then the per-channel `scale` and `B`.
    pub(crate) fn instance_norm(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        if s.len() < 3 {
            return Err(cx.shape_err(format!("input of shape {s:?} must have rank 3 or more ([N, C, spatial...])")));
        }
        let epsilon = cx.float_or("epsilon", 1e-5)?;
        let name = cx.out0()?;
        let y = self.normalize_value(cx, format!("{name}/normalize"), &cx.input_label(0), &x, (2..s.len()).collect(), epsilon)?;
        self.channel_affine(cx, &name, y, 1, 1, Some(2))
    }

    /// `GroupNormalization`: the channels in `num_groups` groups, each normalised with the
    /// spatial axes; scale and bias per group (opset 18 to 20) or per channel (opset 21).
    pub(crate) fn group_norm(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        if s.len() < 2 {
            return Err(cx.shape_err(format!("input of shape {s:?} must have rank 2 or more ([N, C, ...])")));
        }
        let groups = cx.int("num_groups")?.ok_or_else(|| cx.invalid("missing attribute `num_groups`"))?;
        let groups = cx.dim(groups, "num_groups")?;
        let c = s[1];
        if groups == 0 || c % groups != 0 {
            return Err(cx.shape_err(format!("num_groups {groups} does not divide the {c} channels of {s:?}")));
        }
        let epsilon = cx.float_or("epsilon", 1e-5)?;
        let name = cx.out0()?;
        let grouped = vec![s[0], groups, elements(&s[1..]) / groups];
        let xg = self.reshape_value(cx, format!("{name}/grouped"), &x, grouped)?;
        let yg = self.normalize_value(cx, format!("{name}/normalize"), &format!("{}/grouped", cx.input_label(0)), &xg, vec![2], epsilon)?;
        let y = self.reshape_value(cx, format!("{name}/ungrouped"), &yg, s.clone())?;
        let per_group = cx.opset < 21;
        let mut y = y;
        let mut yn = format!("{name}/ungrouped");
        for (i, what, arith) in [(1, "scale", Arith::Mul), (2, "bias", Arith::Add)] {
            let v = self.input(cx, i)?;
            let vs = self.shape(&v);
            let want = if per_group { groups } else { c };
            if vs != [want] {
                let form = if per_group { "one per group (opset 18 to 20)" } else { "one per channel (opset 21)" };
                return Err(cx.shape_err(format!("{what} of shape {vs:?} must have {want} entries, {form}")));
            }
            let vn = format!("{}/per_channel", cx.input_label(i));
            let v = if per_group {
                let indices: Vec<usize> = (0..c).map(|ch| ch / (c / groups)).collect();
                self.gather_value(cx, vn.clone(), &v, 0, indices)?
            } else {
                v
            };
            let mut shape = vec![1; s.len() - 1];
            shape[0] = c;
            let v = self.reshape_value(cx, format!("{vn}/reshape"), &v, shape)?;
            let base = if i == 2 { name.clone() } else { format!("{name}/scaled") };
            y = self.arith_values(cx, arith, (&yn, &y), (&vn, &v), &base)?;
            yn = base;
        }
        Ok(y)
    }
}
