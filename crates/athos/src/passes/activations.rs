//! Activations written out elementwise (what exporters emit for GELU and swish: `x * 0.5 *
//! (1 + erf(x / sqrt 2))`, GPT-2's `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`,
//! `x * sigmoid(x)`) become one `Unary` op of the math library: one approximation instead of
//! an inner function plus products of two secrets (and, for the tanh form, a cube).
//!
//! Matching is numeric, as the TensorFlow front end's Keras patterns are: the elementwise cone
//! of a node (scalar arithmetic, products and sums, erf/tanh/sigmoid) over one tensor `x` is
//! evaluated at sample points and compared with each candidate, so reorderings and constant
//! spellings of the same formula all match.

use std::collections::HashMap;

use cryptflow_ir::hlil::{Graph, NodeId, Op, UnaryFn};

/// The functions a written-out cone may turn into.
const CANDIDATES: [UnaryFn; 3] = [UnaryFn::Gelu, UnaryFn::GeluTanh, UnaryFn::Silu];
/// Largest cone considered.
const MAX_CONE: usize = 24;

/// Rewrites every written-out GELU (both forms) and swish; returns how many.
pub fn fuse_activations(graph: &mut Graph) -> usize {
    let points: Vec<f64> = (0..=96).map(|k| -8.0 + k as f64 / 6.0).collect();
    let mut fused = 0;
    let consumers = graph.consumers();
    for id in 0..graph.nodes.len() {
        let Some((x, cone)) = cone_of(graph, id) else { continue };
        // Only the root may be used outside the cone.
        if cone.iter().any(|&n| n != id && (graph.outputs.contains(&n) || consumers[n].iter().any(|c| !cone.contains(c)))) {
            continue;
        }
        let Some(values) = evaluate(graph, id, x, &points) else { continue };
        let matched = CANDIDATES.into_iter().find(|f| {
            values.iter().zip(&points).all(|(&v, &p)| {
                let want = f.eval(p as f32) as f64;
                (v - want).abs() <= 1e-4 * want.abs().max(1.0)
            })
        });
        if let Some(f) = matched {
            let node = &mut graph.nodes[id];
            node.op = Op::Unary(f);
            node.inputs = vec![x];
            fused += 1;
        }
    }
    fused
}

/// Whether a node may sit inside a cone (elementwise over tensors of one shape).
fn is_inner(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(UnaryFn::Erf | UnaryFn::Tanh | UnaryFn::Sigmoid)
            | Op::Mul
            | Op::Add
            | Op::Sub
            | Op::Div
            | Op::MulScalar(_)
            | Op::AddScalar(_)
            | Op::DivScalar(_)
            | Op::Neg
    )
}

/// The single computed input `x` of node `id`'s elementwise cone and the cone's nodes, if the
/// cone is elementwise over `x` alone (with the shape of `x`) and holds a transcendental. The
/// nearest such `x` is taken (`x` may itself be elementwise, e.g. a bias addition).
fn cone_of(g: &Graph, id: NodeId) -> Option<(NodeId, Vec<NodeId>)> {
    if !is_inner(&g.nodes[id].op) {
        return None;
    }
    // Candidate sources: the elementwise ancestors of the root and their inputs.
    let mut seen = vec![id];
    let mut k = 0;
    while k < seen.len() && seen.len() <= 4 * MAX_CONE {
        let n = seen[k];
        k += 1;
        if is_inner(&g.nodes[n].op) {
            for &i in &g.nodes[n].inputs {
                if !seen.contains(&i) {
                    seen.push(i);
                }
            }
        }
    }
    let mut candidates: Vec<NodeId> = seen.into_iter().filter(|&n| n != id && !matches!(g.nodes[n].op, Op::Weight(_))).collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates.into_iter().find_map(|x| cone_with_source(g, id, x).map(|cone| (x, cone)))
}

/// The nodes between `x` and the root `id`, if every path from the root ends at `x` or at a
/// scalar weight through elementwise nodes of `x`'s shape, with a transcendental among them.
fn cone_with_source(g: &Graph, id: NodeId, x: NodeId) -> Option<Vec<NodeId>> {
    let shape = &g.nodes[x].shape;
    let mut cone = Vec::new();
    let mut stack = vec![id];
    let mut transcendental = false;
    while let Some(n) = stack.pop() {
        if n == x || cone.contains(&n) {
            continue;
        }
        let node = &g.nodes[n];
        match &node.op {
            Op::Weight(w) if w.len() == 1 => {}
            op if is_inner(op) && &node.shape == shape => {
                transcendental |= matches!(op, Op::Unary(_));
                stack.extend(node.inputs.iter().copied());
            }
            _ => return None,
        }
        cone.push(n);
        if cone.len() > MAX_CONE {
            return None;
        }
    }
    (transcendental && cone.len() >= 2).then_some(cone)
}

/// Node `id` as a function of `x` at `points` (None if the cone holds something else).
fn evaluate(g: &Graph, id: NodeId, x: NodeId, points: &[f64]) -> Option<Vec<f64>> {
    fn value(g: &Graph, n: NodeId, x: NodeId, p: f64, memo: &mut HashMap<NodeId, f64>) -> Option<f64> {
        if n == x {
            return Some(p);
        }
        if let Some(&v) = memo.get(&n) {
            return Some(v);
        }
        let node = &g.nodes[n];
        let mut arg = |k: usize| value(g, node.inputs[k], x, p, memo);
        let v = match &node.op {
            Op::Weight(w) => w.data()[0] as f64,
            Op::Unary(f) => f.eval(arg(0)? as f32) as f64,
            Op::Mul => arg(0)? * arg(1)?,
            Op::Add => arg(0)? + arg(1)?,
            Op::Sub => arg(0)? - arg(1)?,
            Op::Div => arg(0)? / arg(1)?,
            Op::MulScalar(c) => arg(0)? * *c as f64,
            Op::DivScalar(c) => arg(0)? / *c as f64,
            Op::AddScalar(c) => arg(0)? + *c as f64,
            Op::Neg => -arg(0)?,
            _ => return None,
        };
        memo.insert(n, v);
        Some(v)
    }
    points
        .iter()
        .map(|&p| {
            let mut memo = HashMap::new();
            value(g, id, x, p, &mut memo).filter(|v| v.is_finite())
        })
        .collect()
}
