//! Handlers of the non-linear and secret-by-secret operations: elementwise functions
//! (`Sigmoid`, `Tanh`, `Erf`, `Exp`, ...), `Pow` by a constant, `SquaredDifference`,
//! `Maximum`/`Minimum`/`RealDiv` of two computed tensors, `Max`/`Min` reductions, `Softmax`
//! and `LogSoftmax` anywhere, image resizing, and `Tile`/`BroadcastTo` of computed tensors.
//! Constants are evaluated at import time; computed tensors become the HLIL operations of the
//! secure math library (`Op::Unary`, `Op::Max`, `Op::Div`, `Op::Softmax`, ...).

use std::rc::Rc;

use cryptflow_frontend::consts::{broadcast_shapes, check_shape, MAX_DIM};
use cryptflow_frontend::eval::binary;
use cryptflow_frontend::{Arith, Const, Lowering, NodeContext};
use cryptflow_ir::hlil::{NodeId, Op, UnaryFn};
use cryptflow_tensor::{num_elements as elements, Tensor};

use crate::attrs::Cx;
use crate::consts::MAX_GENERATED;
use crate::import::{Importer, Value};
use crate::TfError;

type R<T> = Result<T, TfError>;

/// `tf.nn.selu`'s constants.
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

/// The largest integer exponent `Pow` is lowered for (by repeated squaring).
const MAX_INTEGER_EXPONENT: f32 = 16.0;

/// The elementwise function a TensorFlow operation computes.
fn unary_fn(op: &str) -> Option<UnaryFn> {
    Some(match op {
        "Sigmoid" => UnaryFn::Sigmoid,
        "Tanh" => UnaryFn::Tanh,
        "Erf" => UnaryFn::Erf,
        "Exp" => UnaryFn::Exp,
        "Log" => UnaryFn::Log,
        "Rsqrt" => UnaryFn::Rsqrt,
        "Sqrt" => UnaryFn::Sqrt,
        "Reciprocal" | "Inv" => UnaryFn::Reciprocal,
        "Abs" => UnaryFn::Abs,
        "Softplus" => UnaryFn::Softplus,
        "Elu" => UnaryFn::Elu { alpha: 1.0 },
        _ => return None,
    })
}

impl Importer<'_> {
    /// Emits an HLIL node named `name`, or evaluates it when its input is a weight (constant
    /// folding happens in `Graph::add`).
    fn emit_value(&mut self, cx: &Cx, name: String, op: Op, inputs: &[NodeId]) -> R<Value> {
        Ok(Value::Node(self.emit(cx, name, op, inputs)?))
    }

    /// `f` of a value: constants evaluated, computed tensors an HLIL `Unary` node `name`.
    fn apply_unary(&mut self, cx: &Cx, name: String, x: &Value, f: UnaryFn) -> R<Value> {
        match x {
            Value::Const(c) => {
                Ok(Value::Const(Rc::new(Const::new_f(c.shape.clone(), c.to_f32().into_iter().map(|v| f.eval(v)).collect()))))
            }
            Value::Node(id) => self.emit_value(cx, name, Op::Unary(f), &[*id]),
            Value::Dead => Ok(Value::Dead),
        }
    }

    /// `Sigmoid`, `Tanh`, `Erf`, `Erfc`, `Exp`, `Log`, `Rsqrt`, `Sqrt`, `Reciprocal`/`Inv`,
    /// `Abs`, `Softplus`, `Elu`, `Selu`, `Softsign` of a computed tensor (or of a floating-point
    /// constant).
    pub(crate) fn unary(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(1)?;
        let x = self.input(cx, 0)?;
        let name = cx.name.clone();
        match cx.op.as_str() {
            "Selu" => {
                // scale * elu(x, alpha)
                let e = self.apply_unary(cx, format!("{name}/elu"), &x, UnaryFn::Elu { alpha: SELU_ALPHA })?;
                self.scale_value(cx, name, e, SELU_SCALE)
            }
            "Erfc" => {
                // 1 - erf(x)
                let e = self.apply_unary(cx, format!("{name}/erf"), &x, UnaryFn::Erf)?;
                let n = self.activation_value(cx, format!("{name}/neg"), e, Op::Neg)?;
                self.offset_value(cx, name, n, 1.0)
            }
            "Softsign" => {
                // x / (1 + |x|)
                let a = self.apply_unary(cx, format!("{name}/abs"), &x, UnaryFn::Abs)?;
                let d = self.offset_value(cx, format!("{name}/denominator"), a, 1.0)?;
                let xn = cx.input_name(0);
                self.divide(cx, &name, (&xn, &x), (&format!("{name}/denominator"), &d))
            }
            op => {
                let f = unary_fn(op).ok_or_else(|| cx.invalid("internal: not an elementwise function"))?;
                self.apply_unary(cx, name, &x, f)
            }
        }
    }

    /// `x * c` for a public scalar.
    fn scale_value(&mut self, cx: &Cx, name: String, x: Value, c: f32) -> R<Value> {
        match x {
            Value::Const(k) => Ok(Value::Const(Rc::new(Const::new_f(k.shape.clone(), k.to_f32().into_iter().map(|v| v * c).collect())))),
            Value::Node(id) if c == 1.0 => Ok(Value::Node(id)),
            Value::Node(id) => self.emit_value(cx, name, Op::MulScalar(c), &[id]),
            Value::Dead => Ok(Value::Dead),
        }
    }

    /// `x + c` for a public scalar.
    fn offset_value(&mut self, cx: &Cx, name: String, x: Value, c: f32) -> R<Value> {
        match x {
            Value::Const(k) => Ok(Value::Const(Rc::new(Const::new_f(k.shape.clone(), k.to_f32().into_iter().map(|v| v + c).collect())))),
            Value::Node(id) if c == 0.0 => Ok(Value::Node(id)),
            Value::Node(id) => self.emit_value(cx, name, Op::AddScalar(c), &[id]),
            Value::Dead => Ok(Value::Dead),
        }
    }

    /// `a / b` for named values: with a computed divisor an HLIL `Div` (`c / b` for a scalar
    /// constant `c` is `c * reciprocal(b)`); otherwise as [`Lowering::arith_values`] does it.
    pub(crate) fn divide(&mut self, cx: &Cx, base: &str, a: (&str, &Value), b: (&str, &Value)) -> R<Value> {
        let Value::Node(d) = b.1 else {
            return self.arith_values(cx, Arith::Div, a, b, base);
        };
        let d = *d;
        let out = broadcast_shapes(&self.shape(a.1), &self.shape(b.1)).map_err(|e| cx.shape_err(e))?;
        let scalar = a.1.as_const_scalar();
        let y = match (a.1, scalar) {
            (Value::Dead, _) => return Ok(Value::Dead),
            (Value::Const(_), Some(c)) => {
                let r = self.emit(cx, format!("{base}/reciprocal"), Op::Unary(UnaryFn::Reciprocal), &[d])?;
                if c == 1.0 {
                    r
                } else {
                    self.emit(cx, format!("{base}/scale"), Op::MulScalar(c), &[r])?
                }
            }
            _ => {
                let n = self.node_of(cx, a.0, a.1)?;
                self.emit(cx, format!("{base}/div"), Op::Div, &[n, d])?
            }
        };
        self.reshape_value(cx, format!("{base}/broadcast"), &Value::Node(y), out)
    }

    /// `Maximum`/`Minimum` of two values: a clip when one is a scalar constant, else an HLIL
    /// `Max`/`Min` (a constant tensor operand becomes a weight).
    pub(crate) fn extremum(&mut self, cx: &Cx, kind: Arith, a: (&str, &Value), b: (&str, &Value)) -> R<Value> {
        let computed = matches!(a.1, Value::Node(_)) || matches!(b.1, Value::Node(_));
        let scalar = a.1.as_const_scalar().is_some() || b.1.as_const_scalar().is_some();
        if !computed || scalar || matches!(a.1, Value::Dead) || matches!(b.1, Value::Dead) {
            return self.arith_values(cx, kind, a, b, &cx.name.clone());
        }
        let x = self.node_of(cx, a.0, a.1)?;
        let y = self.node_of(cx, b.0, b.1)?;
        let op = if kind == Arith::Maximum { Op::Max } else { Op::Min };
        let name = format!("{}/{}", cx.name, op.name().to_lowercase());
        self.emit_value(cx, name, op, &[x, y])
    }

    /// `Pow(x, p)` with a constant scalar exponent: integers by repeated multiplication (a
    /// negative one then takes the reciprocal), 0.5 `Sqrt`, -0.5 `Rsqrt`.
    pub(crate) fn pow(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let e = self.input(cx, 1)?;
        if let (Value::Const(a), Value::Const(b)) = (&x, &e) {
            let r = binary(a, b, MAX_GENERATED, f32::powf, |p, q| {
                u32::try_from(q).map(|q| p.wrapping_pow(q)).map_err(|_| "negative integer exponent".to_string())
            });
            return Ok(Value::Const(Rc::new(r.map_err(|e| cx.shape_err(e))?)));
        }
        let Value::Const(ec) = &e else {
            return Err(cx.unsupported(format!(
                "the exponent `{}` is computed from the graph inputs; only constant exponents are supported",
                cx.input_name(1)
            )));
        };
        let Some(p) = e.as_const_scalar() else {
            return Err(cx.unsupported(format!("the exponent must be a single constant, not a tensor of shape {:?}", ec.shape)));
        };
        let Value::Node(id) = x else { return Ok(x) };
        let out = broadcast_shapes(&self.graph.nodes[id].shape, &ec.shape).map_err(|e| cx.shape_err(e))?;
        let name = cx.name.clone();
        let y = self.power(cx, &name, id, p)?;
        self.reshape_value(cx, format!("{name}/broadcast"), &y, out)
    }

    /// `x^p` of a computed tensor for a constant `p`.
    fn power(&mut self, cx: &Cx, name: &str, x: NodeId, p: f32) -> R<Value> {
        let unary = |f| Op::Unary(f);
        if p == 1.0 {
            return Ok(Value::Node(x));
        }
        if p == 0.0 {
            let s = self.graph.nodes[x].shape.clone();
            self.check_generated(cx, &s, elements(&s), 0)?;
            return Ok(Value::Const(Rc::new(Const::new_f(s.clone(), vec![1.0; elements(&s)]))));
        }
        if p == 0.5 {
            return self.emit_value(cx, name.to_string(), unary(UnaryFn::Sqrt), &[x]);
        }
        if p == -0.5 {
            return self.emit_value(cx, name.to_string(), unary(UnaryFn::Rsqrt), &[x]);
        }
        if p.fract() != 0.0 || p.abs() > MAX_INTEGER_EXPONENT {
            return Err(cx.unsupported(format!(
                "Pow with the exponent {p} is not supported (only integers in [-{m}, {m}], 0.5 and -0.5)",
                m = MAX_INTEGER_EXPONENT
            )));
        }
        // Square-and-multiply.
        let mut n = p.abs() as u32;
        let mut base = x;
        let mut acc: Option<NodeId> = None;
        let mut step = 0;
        while n > 0 {
            if n & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.emit(cx, format!("{name}/mul{step}"), Op::Mul, &[a, base])?,
                });
            }
            n >>= 1;
            if n > 0 {
                base = self.emit(cx, format!("{name}/square{step}"), Op::Mul, &[base, base])?;
            }
            step += 1;
        }
        let acc = acc.unwrap_or(x);
        if p < 0.0 {
            return self.emit_value(cx, format!("{name}/reciprocal"), unary(UnaryFn::Reciprocal), &[acc]);
        }
        Ok(Value::Node(acc))
    }

    /// `(a - b)^2`.
    pub(crate) fn squared_difference(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let a = self.input(cx, 0)?;
        let b = self.input(cx, 1)?;
        let (an, bn) = (cx.input_name(0), cx.input_name(1));
        let name = cx.name.clone();
        let d = self.arith_values(cx, Arith::Sub, (&an, &a), (&bn, &b), &format!("{name}/difference"))?;
        self.activation_value(cx, name, d, Op::Mul)
    }

    /// `Softmax` and `LogSoftmax` over the last axis. At a graph output with
    /// `strip_output_softmax`, compiled away (with a notice) when the last axis is not the
    /// batch axis, since the prediction is then unchanged.
    pub(crate) fn softmax(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(1)?;
        let x = self.input(cx, 0)?;
        let rank = self.shape(&x).len();
        if rank == 0 {
            return Err(cx.invalid(format!("{} of a scalar", cx.op)));
        }
        let Value::Node(id) = x else {
            // A constant (rare): evaluated by the float semantics of the HLIL operation.
            if let Value::Const(_) = &x {
                let w = self.node_of(cx, &cx.input_name(0), &x)?;
                return self.softmax_node(cx, w, rank);
            }
            return Ok(x);
        };
        if self.strip_output_softmax && rank >= 2 && self.only_reaches_outputs(cx.index).is_ok() {
            self.notices.push(format!(
                "{} `{}` at the output compiled away: it preserves the argmax, so predictions are unchanged (outputs are {})",
                cx.op,
                cx.name,
                if cx.op == "Softmax" { "logits" } else { "logits, not log-probabilities" }
            ));
            return Ok(x);
        }
        self.softmax_node(cx, id, rank)
    }

    fn softmax_node(&mut self, cx: &Cx, x: NodeId, rank: usize) -> R<Value> {
        let axis = rank - 1;
        let op = if cx.op == "LogSoftmax" { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
        self.emit_value(cx, cx.name.clone(), op, &[x])
    }

    /// `ResizeNearestNeighbor` and `ResizeBilinear` of an NHWC tensor with TensorFlow's
    /// coordinate mappings (`align_corners`, `half_pixel_centers`, or the legacy
    /// `out * in / out_size`): gathers of rows and columns and, for bilinear, the public
    /// interpolation weights (`lo + (hi - lo) * lerp`, columns first as TensorFlow does).
    pub(crate) fn resize(&mut self, cx: &Cx) -> R<Value> {
        cx.need_inputs(2)?;
        let x = self.input(cx, 0)?;
        let xs = self.shape(&x);
        if xs.len() != 4 || xs.contains(&0) {
            return Err(cx.shape_err(format!("images of shape {xs:?} must be a non-empty NHWC tensor of rank 4")));
        }
        let size = self.ints_input(cx, 1, "size")?;
        if size.len() != 2 {
            return Err(cx.invalid(format!("size {size:?} must have 2 entries (height, width)")));
        }
        let size: Vec<usize> = size
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0 && d <= MAX_DIM))
            .collect::<Option<_>>()
            .ok_or_else(|| cx.invalid(format!("size {size:?} must be positive")))?;
        let align = cx.bool_or("align_corners", false)?;
        let half = cx.bool_or("half_pixel_centers", false)?;
        if align && half {
            return Err(cx.invalid("align_corners and half_pixel_centers cannot both be true"));
        }
        let mut out = xs.clone();
        out[1] = size[0];
        out[2] = size[1];
        check_shape(&out).map_err(|e| cx.shape_err(e))?;
        let nearest = cx.op == "ResizeNearestNeighbor";
        let name = cx.name.clone();
        let mut v = x;
        for axis in [2, 1] {
            let (i, o) = (xs[axis], out[axis]);
            if i == o {
                continue; // every mapping is the identity then
            }
            let tag = if axis == 1 { "rows" } else { "columns" };
            if nearest {
                let idx = nearest_indices(i, o, align, half);
                v = self.gather_value(cx, format!("{name}/{tag}"), &v, axis, idx)?;
                continue;
            }
            let (lo, hi, lerp) = bilinear_weights(i, o, align, half);
            if lerp.iter().all(|&l| l == 0.0) {
                v = self.gather_value(cx, format!("{name}/{tag}"), &v, axis, lo)?;
                continue;
            }
            let (lo_n, hi_n) = (format!("{name}/{tag}_lo"), format!("{name}/{tag}_hi"));
            let g_lo = self.gather_value(cx, lo_n.clone(), &v, axis, lo)?;
            let g_hi = self.gather_value(cx, hi_n.clone(), &v, axis, hi)?;
            let dn = format!("{name}/{tag}_diff");
            let diff = self.arith_values(cx, Arith::Sub, (&hi_n, &g_hi), (&lo_n, &g_lo), &dn)?;
            let mut shape = vec![1; 4];
            shape[axis] = o;
            let scaled = match &diff {
                Value::Node(d) => {
                    let t = Tensor::new(shape, lerp).map_err(|e| cx.shape_err(e.to_string()))?;
                    self.emit_value(cx, format!("{name}/{tag}_lerp"), Op::MulConst(t), &[*d])?
                }
                _ => {
                    let c = Value::Const(Rc::new(Const::new_f(shape, lerp)));
                    self.arith_values(cx, Arith::Mul, (&dn, &diff), ("lerp", &c), &format!("{name}/{tag}_lerp"))?
                }
            };
            let sn = format!("{name}/{tag}_lerp");
            v = self.arith_values(cx, Arith::Add, (&lo_n, &g_lo), (&sn, &scaled), &format!("{name}/{tag}_sum"))?;
        }
        Ok(v)
    }

    /// `Tile` of a computed tensor: a gather of each repeated axis.
    pub(crate) fn tile_computed(&mut self, cx: &Cx, x: Value, reps: &[usize]) -> R<Value> {
        let s = self.shape(&x);
        let mut out = s.clone();
        for (a, &t) in reps.iter().enumerate() {
            out[a] = out[a].saturating_mul(t);
        }
        check_shape(&out).map_err(|e| cx.shape_err(e))?;
        let mut v = x;
        for (axis, &t) in reps.iter().enumerate() {
            if t == 1 {
                continue;
            }
            if t == 0 || s[axis] == 0 {
                return Err(cx.shape_err(format!("Tile to the empty shape {out:?}")));
            }
            let idx: Vec<usize> = (0..t).flat_map(|_| 0..s[axis]).collect();
            v = self.gather_value(cx, format!("{}/tile{axis}", cx.name), &v, axis, idx)?;
        }
        Ok(v)
    }

    /// `BroadcastTo` of a computed tensor: a reshape to the target's rank, then gathers of the
    /// axes of extent 1 that grow.
    pub(crate) fn broadcast_computed(&mut self, cx: &Cx, x: Value, target: &[usize]) -> R<Value> {
        let s = self.shape(&x);
        let mut padded = vec![1; target.len() - s.len()];
        padded.extend_from_slice(&s);
        let mut v = self.reshape_value(cx, format!("{}/rank", cx.name), &x, padded.clone())?;
        for axis in 0..target.len() {
            if padded[axis] == target[axis] {
                continue;
            }
            v = self.gather_value(cx, format!("{}/broadcast{axis}", cx.name), &v, axis, vec![0; target[axis]])?;
        }
        Ok(v)
    }
}

impl Importer<'_> {
    /// The node and output read by data input `pos` of node `c`.
    fn producer(&self, c: usize, pos: usize) -> Option<(usize, usize)> {
        let s = self.nodes[c].input.iter().filter(|s| !s.starts_with('^')).nth(pos)?;
        let r = crate::attrs::parse_input(s).ok()??;
        Some((*self.index.get(r.node)?, r.output))
    }

    /// `Greater(x, 0)` of a computed `x`: supported only as the condition of Keras' ELU with
    /// `alpha != 1`, `select(x > 0, elu(x), alpha * elu(x))`, which becomes one HLIL `Elu`.
    pub(crate) fn elu_condition(&mut self, cx: &Cx) -> R<Value> {
        let unsupported = || {
            cx.unsupported(
                "comparisons of computed tensors are not supported (except `x > 0` selecting between elu(x) \
                 and alpha * elu(x), Keras' ELU with alpha != 1)",
            )
        };
        cx.need_inputs(2)?;
        let Value::Node(x) = self.input(cx, 0)? else { return Err(unsupported()) };
        let zero = self.const_operand(cx.index, 1).and_then(|c| if c.len() == 1 { c.single_f32() } else { None });
        if cx.op != "Greater" || zero != Some(0.0) {
            return Err(unsupported());
        }
        let Some((sel, 0)) = self.sole_consumer(cx.index) else { return Err(unsupported()) };
        if !matches!(self.nodes[sel].op.as_str(), "Select" | "SelectV2") {
            return Err(unsupported());
        }
        let source = self.producer(cx.index, 0);
        let Some((elu, 0)) = self.producer(sel, 1) else { return Err(unsupported()) };
        if self.nodes[elu].op != "Elu" || self.producer(elu, 0) != source {
            return Err(unsupported());
        }
        let Some((mul, 0)) = self.producer(sel, 2) else { return Err(unsupported()) };
        if self.nodes[mul].op != "Mul" {
            return Err(unsupported());
        }
        let alpha = (0..2).find_map(|k| {
            let other = self.producer(mul, 1 - k)?;
            let c = self.const_operand(mul, k)?;
            (other == (elu, 0) && c.len() == 1).then(|| c.single_f32()).flatten()
        });
        let Some(alpha) = alpha.filter(|a| a.is_finite()) else { return Err(unsupported()) };
        self.elu_selects.insert(sel, (x, alpha));
        // Read only by the Select, which ignores it.
        Ok(Value::Node(x))
    }

    /// The Select of a recognised ELU (see [`Self::elu_condition`]).
    pub(crate) fn elu_select(&mut self, cx: &Cx) -> Option<R<Value>> {
        let &(x, alpha) = self.elu_selects.get(&cx.index)?;
        Some(self.emit_value(cx, cx.name.clone(), Op::Unary(UnaryFn::Elu { alpha }), &[x]))
    }
}

/// A single-element constant's value.
trait ConstScalar {
    fn as_const_scalar(&self) -> Option<f32>;
}

impl ConstScalar for Value {
    fn as_const_scalar(&self) -> Option<f32> {
        match self {
            Value::Const(c) if c.len() == 1 => c.single_f32(),
            _ => None,
        }
    }
}

/// TensorFlow's resize scale (`CalculateResizeScale`).
fn resize_scale(i: usize, o: usize, align: bool) -> f32 {
    if align && o > 1 {
        (i as f32 - 1.0) / (o as f32 - 1.0)
    } else {
        i as f32 / o as f32
    }
}

/// Source indices of `ResizeNearestNeighbor` along one axis (TensorFlow's
/// `resize_nearest_neighbor_op.cc`).
fn nearest_indices(i: usize, o: usize, align: bool, half: bool) -> Vec<usize> {
    let scale = resize_scale(i, o, align);
    (0..o)
        .map(|y| {
            let v = if half { (y as f32 + 0.5) * scale } else { y as f32 * scale };
            let idx = if align { v.round() } else { v.floor() } as i64;
            idx.min(i as i64 - 1).max(0) as usize
        })
        .collect()
}

/// Lower and upper source indices and interpolation weights of `ResizeBilinear` along one
/// axis (TensorFlow's `compute_interpolation_weights`).
fn bilinear_weights(i: usize, o: usize, align: bool, half: bool) -> (Vec<usize>, Vec<usize>, Vec<f32>) {
    let scale = resize_scale(i, o, align);
    let mut lo = Vec::with_capacity(o);
    let mut hi = Vec::with_capacity(o);
    let mut lerp = Vec::with_capacity(o);
    for y in 0..o {
        let v = if half { (y as f32 + 0.5) * scale - 0.5 } else { y as f32 * scale };
        let f = v.floor();
        lo.push((f as i64).clamp(0, i as i64 - 1) as usize);
        hi.push((v.ceil() as i64).clamp(0, i as i64 - 1) as usize);
        lerp.push(v - f);
    }
    (lo, hi, lerp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_coordinates_match_tensorflow() {
        // 2 -> 4, legacy: src 0, 0.5, 1, 1.5.
        assert_eq!(nearest_indices(2, 4, false, false), [0, 0, 1, 1]);
        assert_eq!(bilinear_weights(2, 4, false, false), (vec![0, 0, 1, 1], vec![0, 1, 1, 1], vec![0.0, 0.5, 0.0, 0.5]));
        // half-pixel centers: src -0.25, 0.25, 0.75, 1.25.
        assert_eq!(bilinear_weights(2, 4, false, true), (vec![0, 0, 0, 1], vec![0, 1, 1, 1], vec![0.75, 0.25, 0.75, 0.25]));
        assert_eq!(nearest_indices(2, 4, false, true), [0, 0, 1, 1]);
        // align corners: 3 -> 5, src 0, 0.5, 1, 1.5, 2 (nearest rounds half away from zero).
        assert_eq!(nearest_indices(3, 5, true, false), [0, 1, 1, 2, 2]);
        let (lo, hi, l) = bilinear_weights(3, 5, true, false);
        assert_eq!((lo, hi, l), (vec![0, 0, 1, 1, 2], vec![0, 1, 1, 2, 2], vec![0.0, 0.5, 0.0, 0.5, 0.0]));
        // Downsampling 5 -> 2.
        assert_eq!(nearest_indices(5, 2, false, false), [0, 2]);
        assert_eq!(nearest_indices(5, 2, false, true), [1, 3]);
    }
}
