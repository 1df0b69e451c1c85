//! Lowering of the operations of networks beyond ReLU CNNs (elementwise functions, division
//! by computed tensors, elementwise maxima, softmax, normalisation), shared by the front
//! ends as the [`NnLowering`] extension of [`Lowering`]: every importer that implements
//! `Lowering` has these methods. Constants are evaluated at import time with the float
//! semantics of HLIL ([`UnaryFn::eval`]); computed values become the HLIL operations that
//! the secure math library implements.

use std::rc::Rc;

use cryptflow_ir::hlil::{Op, UnaryFn};

use crate::consts::{broadcast_shapes, check_shape, Const};
use crate::context::NodeContext;
use crate::eval::binary;
use crate::lower::{Arith, Lowering, ValueKind};

/// Whether stripping a softmax over `axes` of a tensor of `shape` at a graph output
/// preserves the prediction: the argmax over those axes is unchanged, but only if the
/// softmax does not mix the batch axis (axis 0 of a tensor of rank 2 or more; a rank-1
/// output may well be over the batch).
pub fn softmax_strip_preserves_prediction(shape: &[usize], axes: &[usize]) -> bool {
    shape.len() >= 2 && !axes.is_empty() && !axes.contains(&0)
}

/// The notice for an output Softmax (`op`) that `strip_output_softmax` asked to compile away
/// but that is computed because stripping it could change the prediction.
pub fn softmax_kept_at_output(op: &str, tensor: &str, why: &str) -> String {
    format!("{op} `{tensor}` at the output is computed although stripping output softmaxes was asked for: {why}")
}

/// The extension of [`Lowering`] with the operations of non-ReLU networks.
pub trait NnLowering: Lowering {
    /// An elementwise function of a value: a constant is evaluated (as float), a computed
    /// tensor becomes the HLIL node `name`.
    fn unary_value(&mut self, cx: &Self::Cx<'_>, name: String, x: &Self::Value, f: UnaryFn) -> Result<Self::Value, Self::Error> {
        if let Some(c) = x.as_const() {
            let data = c.to_f32().into_iter().map(|v| f.eval(v)).collect();
            return Ok(Self::Value::constant(Rc::new(Const::new_f(c.shape.clone(), data))));
        }
        match x.as_node() {
            Some(id) => Ok(Self::Value::node(self.emit(cx, name, Op::Unary(f), &[id])?)),
            None => Ok(x.clone()),
        }
    }

    /// `a / b` of named values. Constants are evaluated and a constant divisor is handled by
    /// [`Lowering::arith_values`] (a public scalar, or the product by the reciprocal weight);
    /// a computed divisor gives HLIL `Div` (`c / x` for a scalar constant `c` is the public
    /// `c * Reciprocal(x)`). New nodes are named after `base`.
    fn div_values(&mut self, cx: &Self::Cx<'_>, a: (&str, &Self::Value), b: (&str, &Self::Value), base: &str) -> Result<Self::Value, Self::Error> {
        let (an, av) = a;
        let bv = b.1;
        let Some(y) = bv.as_node() else { return self.arith_values(cx, Arith::Div, a, b, base) };
        let out = broadcast_shapes(&self.shape(av), &self.shape(bv)).map_err(|e| cx.shape_err(e))?;
        check_shape(&out).map_err(|e| cx.shape_err(e))?;
        if let Some(c) = av.as_const().filter(|c| c.len() == 1).and_then(|c| c.single_f32()) {
            let r = self.emit(cx, format!("{base}/reciprocal"), Op::Unary(UnaryFn::Reciprocal), &[y])?;
            let r = if c == 1.0 { r } else { self.emit(cx, format!("{base}/scale"), Op::MulScalar(c), &[r])? };
            return self.reshape_value(cx, format!("{base}/broadcast"), &Self::Value::node(r), out);
        }
        let x = self.node_of(cx, an, av)?;
        Ok(Self::Value::node(self.emit(cx, format!("{base}/div"), Op::Div, &[x, y])?))
    }

    /// The elementwise maximum (`max`) or minimum of named values: constants are evaluated,
    /// a scalar constant bound is a public clip ([`Lowering::arith_values`]), otherwise HLIL
    /// `Max`/`Min` (a constant tensor becoming a weight). New nodes are named after `base`.
    fn extreme_values(&mut self, cx: &Self::Cx<'_>, max: bool, a: (&str, &Self::Value), b: (&str, &Self::Value), base: &str) -> Result<Self::Value, Self::Error> {
        let (an, av) = a;
        let (bn, bv) = b;
        let kind = if max { Arith::Maximum } else { Arith::Minimum };
        let scalar = |v: &Self::Value| v.as_const().is_some_and(|c| c.len() == 1);
        if (av.as_const().is_some() && bv.as_const().is_some()) || scalar(av) || scalar(bv) {
            return self.arith_values(cx, kind, a, b, base);
        }
        broadcast_shapes(&self.shape(av), &self.shape(bv)).map_err(|e| cx.shape_err(e))?;
        let x = self.node_of(cx, an, av)?;
        let y = self.node_of(cx, bn, bv)?;
        let (op, suffix) = if max { (Op::Max, "max") } else { (Op::Min, "min") };
        Ok(Self::Value::node(self.emit(cx, format!("{base}/{suffix}"), op, &[x, y])?))
    }

    /// PReLU of named values: `x >= 0 ? x : slope * x`, the slope (a weight or computed)
    /// broadcast to x's shape. Two constants are evaluated.
    fn prelu_values(&mut self, cx: &Self::Cx<'_>, x: (&str, &Self::Value), slope: (&str, &Self::Value), name: String) -> Result<Self::Value, Self::Error> {
        let (xn, xv) = x;
        let (sn, sv) = slope;
        let (xs, ss) = (self.shape(xv), self.shape(sv));
        match broadcast_shapes(&xs, &ss) {
            Ok(out) if out == xs => {}
            _ => return Err(cx.shape_err(format!("slope of shape {ss:?} does not broadcast to the input's shape {xs:?}"))),
        }
        if let (Some(p), Some(q)) = (xv.as_const(), sv.as_const()) {
            let r = binary(p, q, Self::MAX_GENERATED, |a, s| if a >= 0.0 { a } else { s * a }, |a, s| {
                Ok(if a >= 0 { a } else { a.wrapping_mul(s) })
            });
            return Ok(Self::Value::constant(Rc::new(r.map_err(|e| cx.shape_err(e))?)));
        }
        let xi = self.node_of(cx, xn, xv)?;
        let si = self.node_of(cx, sn, sv)?;
        Ok(Self::Value::node(self.emit(cx, name, Op::Prelu, &[xi, si])?))
    }

    /// Softmax (or, with `log`, log-softmax) of a value along `axis`: HLIL node `name` (a
    /// constant is materialised as the weight `tensor` and folded).
    fn softmax_value(&mut self, cx: &Self::Cx<'_>, name: String, tensor: &str, x: &Self::Value, axis: usize, log: bool) -> Result<Self::Value, Self::Error> {
        let id = self.node_of(cx, tensor, x)?;
        let op = if log { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
        Ok(Self::Value::node(self.emit(cx, name, op, &[id])?))
    }

    /// `(x - mean) / sqrt(var + epsilon)` over sorted distinct `axes`: HLIL node `name` (a
    /// constant is materialised as the weight `tensor` and folded).
    fn normalize_value(&mut self, cx: &Self::Cx<'_>, name: String, tensor: &str, x: &Self::Value, axes: Vec<usize>, epsilon: f32) -> Result<Self::Value, Self::Error> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(cx.invalid(format!("invalid epsilon {epsilon}")));
        }
        let id = self.node_of(cx, tensor, x)?;
        Ok(Self::Value::node(self.emit(cx, name, Op::Normalize { axes, epsilon }, &[id])?))
    }
}

impl<T: Lowering + ?Sized> NnLowering for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_strip_rule() {
        assert!(softmax_strip_preserves_prediction(&[1, 10], &[1]));
        assert!(softmax_strip_preserves_prediction(&[2, 3, 4], &[1, 2]));
        assert!(!softmax_strip_preserves_prediction(&[4, 10], &[0]));
        assert!(!softmax_strip_preserves_prediction(&[10], &[0]));
    }
}
