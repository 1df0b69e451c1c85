//! Puts back together the activations that Keras and `tf.nn` write as chains of
//! elementwise operations, so the secure backends evaluate one function of the math library
//! instead of several approximations and products:
//!
//! - an elementwise chain of a single tensor `x` (GELU as `0.5 x erfc(-x / sqrt 2)` or
//!   `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, swish as `x * sigmoid(x)`, hard
//!   sigmoid as `relu6(x + 3) / 6`, hard swish as `x * relu6(x + 3) / 6`) becomes the one
//!   HLIL `Unary` it computes. The chain is identified by evaluating it: it must agree with the
//!   function to 1e-5 at every sample point of `[-12, 12]`, where the candidates differ by far
//!   more.
//! - Keras' PReLU, `relu(x) + (-alpha) * relu(-x)`, becomes an HLIL `Prelu`.
//!
//! The chain's intermediate nodes are left to pruning (other readers keep them).

use cryptflow_ir::hlil::{Graph, NodeId, Op, UnaryFn};

/// Largest number of nodes of a chain that is looked at.
const MAX_CHAIN: usize = 16;

/// The functions a chain may be recognised as.
const CANDIDATES: &[UnaryFn] = &[
    UnaryFn::Gelu,
    UnaryFn::GeluTanh,
    UnaryFn::Silu,
    UnaryFn::HardSwish,
    UnaryFn::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 },
    UnaryFn::Sigmoid,
    UnaryFn::Tanh,
    UnaryFn::Softplus,
];

/// Whether a node is an elementwise function of its inputs of the same shape (no
/// broadcasting).
fn elementwise(g: &Graph, id: NodeId) -> bool {
    let n = &g.nodes[id];
    let same = n.inputs.iter().all(|&i| g.nodes[i].shape == n.shape);
    same && matches!(
        n.op,
        Op::Unary(_)
            | Op::MulScalar(_)
            | Op::DivScalar(_)
            | Op::AddScalar(_)
            | Op::Neg
            | Op::Relu
            | Op::Clip { .. }
            | Op::LeakyRelu { .. }
            | Op::Mul
            | Op::Add
            | Op::Sub
            | Op::Div
            | Op::Max
            | Op::Min
    )
}

/// Whether every path from `id` up its inputs reaches `leaf` through elementwise nodes only;
/// counts the nodes visited.
fn function_of(g: &Graph, id: NodeId, leaf: NodeId, budget: &mut usize) -> bool {
    if id == leaf {
        return true;
    }
    if *budget == 0 || !elementwise(g, id) {
        return false;
    }
    *budget -= 1;
    g.nodes[id].inputs.iter().all(|&i| function_of(g, i, leaf, budget))
}

/// The chain's value at `id` for the leaf value `t` (f32, as the float executor computes).
fn value(g: &Graph, id: NodeId, leaf: NodeId, t: f32) -> f32 {
    if id == leaf {
        return t;
    }
    let n = &g.nodes[id];
    let a = value(g, n.inputs[0], leaf, t);
    let b = || value(g, n.inputs[1], leaf, t);
    match n.op {
        Op::Unary(f) => f.eval(a),
        Op::MulScalar(c) => a * c,
        Op::DivScalar(c) => a / c,
        Op::AddScalar(c) => a + c,
        Op::Neg => -a,
        Op::Relu => a.max(0.0),
        Op::Clip { min, max } => a.max(min).min(max),
        Op::LeakyRelu { alpha } => {
            if a >= 0.0 {
                a
            } else {
                alpha * a
            }
        }
        Op::Mul => a * b(),
        Op::Add => a + b(),
        Op::Sub => a - b(),
        Op::Div => a / b(),
        Op::Max => a.max(b()),
        Op::Min => a.min(b()),
        _ => f32::NAN,
    }
}

/// The function among [`CANDIDATES`] that the chain from `root` down to `leaf` computes.
fn recognise(g: &Graph, root: NodeId, leaf: NodeId) -> Option<UnaryFn> {
    let samples: Vec<f32> = (-48..=48).map(|i| i as f32 * 0.25).chain([-0.01, 0.01, 0.3, -0.7]).collect();
    let got: Vec<f32> = samples.iter().map(|&t| value(g, root, leaf, t)).collect();
    CANDIDATES.iter().copied().find(|f| {
        samples.iter().zip(&got).all(|(&t, &y)| {
            let want = f.eval(t);
            (y - want).abs() <= 1e-5 * want.abs().max(1.0)
        })
    })
}

/// Nodes feeding `root` through elementwise nodes, nearest first (the candidate leaves).
fn candidate_leaves(g: &Graph, root: NodeId) -> Vec<NodeId> {
    let mut seen = vec![root];
    let mut out = Vec::new();
    let mut i = 0;
    while i < seen.len() && seen.len() <= MAX_CHAIN {
        let id = seen[i];
        i += 1;
        if id != root && !elementwise(g, id) {
            continue;
        }
        for &p in &g.nodes[id].inputs {
            if !seen.contains(&p) {
                seen.push(p);
                out.push(p);
            }
        }
    }
    out
}

/// Rewrites recognised chains in place (each root keeps its id, name and shape).
pub fn fuse_activations(g: &mut Graph) {
    for root in 0..g.nodes.len() {
        if !elementwise(g, root) {
            continue;
        }
        if let Some((x, slope)) = prelu(g, root) {
            g.nodes[root].op = Op::Prelu;
            g.nodes[root].inputs = vec![x, slope];
            continue;
        }
        for leaf in candidate_leaves(g, root) {
            let mut budget = MAX_CHAIN;
            if !function_of(g, root, leaf, &mut budget) || MAX_CHAIN - budget < 2 {
                continue;
            }
            if let Some(f) = recognise(g, root, leaf) {
                g.nodes[root].op = Op::Unary(f);
                g.nodes[root].inputs = vec![leaf];
                break;
            }
        }
    }
}

/// `relu(x) + relu(-x) * w` (in any order) with a weight `w` read only there: `Prelu(x, -w)`
/// (the weight is negated in place).
fn prelu(g: &mut Graph, root: NodeId) -> Option<(NodeId, NodeId)> {
    let n = &g.nodes[root];
    if n.op != Op::Add {
        return None;
    }
    let (a, b) = (n.inputs[0], n.inputs[1]);
    for (pos, neg) in [(a, b), (b, a)] {
        if g.nodes[pos].op != Op::Relu || g.nodes[neg].op != Op::Mul {
            continue;
        }
        let x = g.nodes[pos].inputs[0];
        let m = &g.nodes[neg];
        for (r, w) in [(m.inputs[0], m.inputs[1]), (m.inputs[1], m.inputs[0])] {
            let relu_neg = g.nodes[r].op == Op::Relu && {
                let q = g.nodes[r].inputs[0];
                g.nodes[q].op == Op::Neg && g.nodes[q].inputs[0] == x
            };
            let readers = g.nodes.iter().filter(|n| n.inputs.contains(&w)).count();
            if !relu_neg || readers != 1 || g.outputs.contains(&w) || g.nodes[x].shape != g.nodes[root].shape {
                continue;
            }
            let Op::Weight(t) = &g.nodes[w].op else { continue };
            let negated = t.map(|v| -v);
            g.nodes[w].op = Op::Weight(negated);
            return Some((x, w));
        }
    }
    None
}
