//! Layer normalisation written out op by op (what exporters emit below opset 17, and Keras
//! graphs): `d = x - mean(x)`, `y = d / sqrt(mean(d * d) + eps)` over the same axes, becomes
//! one `Normalize`.
//!
//! Same float semantics; in fixed point the written-out form loses the variance of small
//! values (`d * d` of `d ~ 0.02` is below one unit at scale 12) and pays a general elementwise
//! square root and division, while `Normalize` computes the variance from exact integer
//! differences and one reciprocal square root per group (see `cryptflow-math`).

use cryptflow_ir::hlil::{Graph, NodeId, Op, UnaryFn};

/// Rewrites every written-out normalisation; returns how many.
pub fn fuse_normalizations(graph: &mut Graph) -> usize {
    let mut fused = 0;
    for id in 0..graph.nodes.len() {
        if let Some((x, axes, epsilon)) = match_normalization(graph, id) {
            let node = &mut graph.nodes[id];
            node.op = Op::Normalize { axes, epsilon };
            node.inputs = vec![x];
            fused += 1;
        }
    }
    fused
}

/// `(x, axes, epsilon)` if node `id` computes `(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`
/// (a division by the root, or a product with its reciprocal).
fn match_normalization(g: &Graph, id: NodeId) -> Option<(NodeId, Vec<usize>, f32)> {
    let node = &g.nodes[id];
    let (d, root_input) = match node.op {
        Op::Div => (node.inputs[0], root_of(g, node.inputs[1], false)?),
        Op::Mul => {
            let [a, b] = [node.inputs[0], node.inputs[1]];
            match root_of(g, b, true) {
                Some(r) => (a, r),
                None => (b, root_of(g, a, true)?),
            }
        }
        _ => return None,
    };
    // root_input = mean(d * d) [+ eps]
    let (variance, epsilon) = match g.nodes[root_input].op {
        Op::AddScalar(eps) if eps >= 0.0 && eps.is_finite() => (g.nodes[root_input].inputs[0], eps),
        _ => (root_input, 0.0),
    };
    let Op::ReduceMean { axes, keep_dims: true } = &g.nodes[variance].op else { return None };
    let square = g.nodes[variance].inputs[0];
    if g.nodes[square].op != Op::Mul || g.nodes[square].inputs != [d, d] {
        return None;
    }
    // d = x - mean(x) over the same axes.
    if g.nodes[d].op != Op::Sub {
        return None;
    }
    let [x, mean] = [g.nodes[d].inputs[0], g.nodes[d].inputs[1]];
    match &g.nodes[mean].op {
        Op::ReduceMean { axes: mean_axes, keep_dims: true } if mean_axes == axes && g.nodes[mean].inputs[0] == x => {}
        _ => return None,
    }
    let shape = &g.nodes[x].shape;
    if &g.nodes[d].shape != shape || &node.shape != shape || axes.is_empty() {
        return None;
    }
    Some((x, axes.clone(), epsilon))
}

/// The input of `sqrt(v)` at node `s` (or, with `reciprocal`, of `1 / sqrt(v)`).
fn root_of(g: &Graph, s: NodeId, reciprocal: bool) -> Option<NodeId> {
    let node = &g.nodes[s];
    match (&node.op, reciprocal) {
        (Op::Unary(UnaryFn::Sqrt), false) | (Op::Unary(UnaryFn::Rsqrt), true) => Some(node.inputs[0]),
        (Op::Unary(UnaryFn::Reciprocal), true) => root_of(g, node.inputs[0], false),
        _ => None,
    }
}
