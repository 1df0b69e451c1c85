//! Layer normalisation written out op by op (ReduceMean, Sub, Pow 2, ReduceMean, Add eps,
//! Sqrt, Div: what exporters emit below opset 17) is fused into one `Normalize`, which keeps
//! the float semantics and is far more accurate in fixed point on small activations.

use cryptflow_athos::{compile, optimize_hlil, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::{Graph, Op, UnaryFn};
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{FloatTensor, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `(x - mean) / sqrt(mean((x - mean)^2) + eps)` over the last axis, written out; `reciprocal`
/// multiplies by `1 / sqrt(..)` instead of dividing.
fn written_out(shape: &[usize], eps: f32, reciprocal: bool) -> Graph {
    let mut g = Graph::new();
    let last = shape.len() - 1;
    let x = g.input("x", shape.to_vec());
    let mean = g.add("mean", Op::ReduceMean { axes: vec![last], keep_dims: true }, &[x]).unwrap();
    let d = g.add("d", Op::Sub, &[x, mean]).unwrap();
    let sq = g.add("sq", Op::Mul, &[d, d]).unwrap();
    let var = g.add("var", Op::ReduceMean { axes: vec![last], keep_dims: true }, &[sq]).unwrap();
    let plus = g.add("plus", Op::AddScalar(eps), &[var]).unwrap();
    let root = g.add("root", Op::Unary(UnaryFn::Sqrt), &[plus]).unwrap();
    let y = if reciprocal {
        let r = g.add("recip", Op::Unary(UnaryFn::Reciprocal), &[root]).unwrap();
        g.add("y", Op::Mul, &[r, d]).unwrap()
    } else {
        g.add("y", Op::Div, &[d, root]).unwrap()
    };
    g.outputs.push(y);
    g
}

fn random(rng: &mut StdRng, shape: &[usize], std: f32) -> FloatTensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|_| rng.random_range(-1.7f32..1.7) * std).collect()).unwrap()
}

#[test]
fn written_out_layer_norms_become_one_normalize() {
    let shape = [2, 5, 64];
    let mut rng = StdRng::seed_from_u64(3);
    for reciprocal in [false, true] {
        let g = written_out(&shape, 1e-12, reciprocal);
        let (fused, stats) = optimize_hlil(g.clone(), &CompileOptions::default()).unwrap();
        assert_eq!(stats.normalizations_fused, 1);
        let ops: Vec<&str> = fused.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(ops, ["Input", "Normalize"], "reciprocal {reciprocal}");
        // Same float semantics as the written-out graph.
        let x = random(&mut rng, &shape, 1.0);
        let a = float::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let b = float::run(&fused, &[x]).unwrap().remove(0);
        let err = a.data().iter().zip(b.data()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(err < 1e-4, "float disagrees by {err}");
    }
    // BERT-sized embeddings (std 0.02, hidden 768): the secure result stays accurate.
    let shape = [1, 8, 768];
    let g = written_out(&shape, 1e-12, false);
    let x = random(&mut rng, &shape, 0.02);
    let options = CompileOptions::default();
    let compiled = compile(g.clone(), &options).unwrap();
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let y = runner.infer(Some(&[encode_input(&x, options.scale)])).unwrap().0.unwrap().remove(0);
    let y = decode_output(&y, compiled.program.outputs[0].encoding);
    let expected = float::run(&g, &[x]).unwrap().remove(0);
    let err = y.data().iter().zip(expected.data()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
    assert!(err < 0.05, "largest error {err} on unit-variance outputs");
}

#[test]
fn near_misses_are_left_alone() {
    // The variance over a different axis than the mean: not a normalisation.
    let mut g = Graph::new();
    let x = g.input("x", vec![4, 6]);
    let mean = g.add("mean", Op::ReduceMean { axes: vec![1], keep_dims: true }, &[x]).unwrap();
    let d = g.add("d", Op::Sub, &[x, mean]).unwrap();
    let sq = g.add("sq", Op::Mul, &[d, d]).unwrap();
    let var = g.add("var", Op::ReduceMean { axes: vec![0], keep_dims: true }, &[sq]).unwrap();
    let root = g.add("root", Op::Unary(UnaryFn::Sqrt), &[var]).unwrap();
    let y = g.add("y", Op::Div, &[d, root]).unwrap();
    g.outputs.push(y);
    let (out, stats) = optimize_hlil(g, &CompileOptions::default()).unwrap();
    assert_eq!(stats.normalizations_fused, 0);
    assert!(!out.nodes.iter().any(|n| matches!(n.op, Op::Normalize { .. })));
}

/// GELU and swish as exporters write them: fused into one math-library function each, with
/// float semantics kept; a bias addition before them stays outside the fused function.
#[test]
fn written_out_gelu_and_swish_become_one_function() {
    use cryptflow_athos::passes::fuse_activations;
    let shape = vec![2, 16];
    let build = |form: &str| -> (Graph, cryptflow_ir::hlil::NodeId) {
        let mut g = Graph::new();
        let x0 = g.input("x", shape.clone());
        let bias = g.weight("b", Tensor::new(vec![16], (0..16).map(|k| k as f32 * 0.1 - 0.8).collect()).unwrap());
        let x = g.add("biased", Op::Add, &[x0, bias]).unwrap();
        let y = match form {
            // HF BERT: x * 0.5 * (1 + erf(x / 1.4142135))
            "erf" => {
                let a = g.add("div", Op::DivScalar(std::f32::consts::SQRT_2), &[x]).unwrap();
                let e = g.add("erf", Op::Unary(UnaryFn::Erf), &[a]).unwrap();
                let p = g.add("plus", Op::AddScalar(1.0), &[e]).unwrap();
                let h = g.add("half", Op::MulScalar(0.5), &[x]).unwrap();
                g.add("y", Op::Mul, &[h, p]).unwrap()
            }
            // GPT-2: 0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x^3)))
            "tanh" => {
                let sq = g.add("sq", Op::Mul, &[x, x]).unwrap();
                let cube = g.add("cube", Op::Mul, &[x, sq]).unwrap();
                let c = g.add("c", Op::MulScalar(0.044715), &[cube]).unwrap();
                let s = g.add("s", Op::Add, &[x, c]).unwrap();
                let k = g.add("k", Op::MulScalar(0.797_884_6), &[s]).unwrap();
                let t = g.add("t", Op::Unary(UnaryFn::Tanh), &[k]).unwrap();
                let p = g.add("plus", Op::AddScalar(1.0), &[t]).unwrap();
                let h = g.add("half", Op::MulScalar(0.5), &[x]).unwrap();
                g.add("y", Op::Mul, &[h, p]).unwrap()
            }
            _ => {
                let s = g.add("sig", Op::Unary(UnaryFn::Sigmoid), &[x]).unwrap();
                g.add("y", Op::Mul, &[x, s]).unwrap()
            }
        };
        g.outputs.push(y);
        (g, x)
    };
    let mut rng = StdRng::seed_from_u64(9);
    for (form, f) in [("erf", UnaryFn::Gelu), ("tanh", UnaryFn::GeluTanh), ("swish", UnaryFn::Silu)] {
        let (g, biased) = build(form);
        let mut fused = g.clone();
        assert_eq!(fuse_activations(&mut fused), 1, "{form}");
        fused.prune();
        let root = fused.outputs[0];
        assert_eq!(fused.nodes[root].op, Op::Unary(f), "{form}");
        assert_eq!(fused.nodes[root].inputs, [biased], "{form}: the bias addition is the function's input");
        let x = random(&mut rng, &shape, 3.0);
        let a = float::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let b = float::run(&fused, &[x]).unwrap().remove(0);
        let err = a.data().iter().zip(b.data()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(err < 1e-4, "{form}: float disagrees by {err}");
    }
    // x * tanh(x) is not one of them: left alone.
    let mut g = Graph::new();
    let x = g.input("x", shape.clone());
    let t = g.add("t", Op::Unary(UnaryFn::Tanh), &[x]).unwrap();
    let p = g.add("p", Op::AddScalar(1.0), &[t]).unwrap();
    let y = g.add("y", Op::Mul, &[x, p]).unwrap();
    g.outputs.push(y);
    assert_eq!(fuse_activations(&mut g), 0);
}
