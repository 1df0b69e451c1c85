//! The secure math library's ops end to end through Athos: each HLIL op compiled at the default
//! scale and run by the cleartext executor (the math library over the cleartext backend) against
//! the float executor, over inputs spanning the functions' documented domains.

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::{Graph, NodeId, Op, UnaryFn};
use cryptflow_ir::llil::LOp;
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{FloatTensor, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, shape: Vec<usize>, lo: f32, hi: f32) -> FloatTensor {
    let n = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| rng.random_range(lo..hi)).collect()).unwrap()
}

/// Compiles `graph` (inputs in order), runs the cleartext executor on `inputs` and the float
/// executor, and returns the largest absolute difference of the first output.
fn cleartext_error(graph: &Graph, inputs: &[FloatTensor]) -> f32 {
    let options = CompileOptions::default();
    let compiled = compile(graph.clone(), &options).unwrap();
    let encoded: Vec<_> = inputs.iter().map(|x| encode_input(x, options.scale)).collect();
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let (outputs, _) = runner.infer(Some(&encoded)).unwrap();
    let secure = decode_output(&outputs.unwrap()[0], compiled.program.outputs[0].encoding);
    let expected = float::run(&compiled.hlil, inputs).unwrap().remove(0);
    assert_eq!(secure.shape(), expected.shape());
    secure.data().iter().zip(expected.data()).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max)
}

fn unary_graph(f: UnaryFn, shape: &[usize]) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", shape.to_vec());
    let y = g.add("y", Op::Unary(f), &[x]).unwrap();
    g.outputs.push(y);
    g
}

#[test]
fn activations_match_the_float_executor() {
    let mut rng = StdRng::seed_from_u64(1);
    let cases: &[(UnaryFn, f32, f32)] = &[
        (UnaryFn::Sigmoid, -12.0, 12.0),
        (UnaryFn::Tanh, -6.0, 6.0),
        (UnaryFn::Erf, -4.0, 4.0),
        (UnaryFn::Gelu, -8.0, 8.0),
        (UnaryFn::GeluTanh, -8.0, 8.0),
        (UnaryFn::Silu, -12.0, 12.0),
        (UnaryFn::Softplus, -12.0, 12.0),
        (UnaryFn::Elu { alpha: 1.0 }, -8.0, 4.0),
        (UnaryFn::HardSigmoid { alpha: 0.2, beta: 0.5 }, -6.0, 6.0),
        (UnaryFn::HardSwish, -6.0, 6.0),
        (UnaryFn::Abs, -50.0, 50.0),
    ];
    for &(f, lo, hi) in cases {
        let x = random(&mut rng, vec![4, 64], lo, hi);
        let err = cleartext_error(&unary_graph(f, &[4, 64]), &[x]);
        assert!(err <= 1e-2, "{}: largest error {err}", f.name());
    }
}

#[test]
fn exp_reciprocal_and_roots_match_within_their_relative_bounds() {
    let mut rng = StdRng::seed_from_u64(2);
    for (f, lo, hi) in [(UnaryFn::Exp, -6.0f32, 4.0f32), (UnaryFn::Reciprocal, 0.1, 50.0), (UnaryFn::Sqrt, 0.01, 100.0), (UnaryFn::Rsqrt, 0.05, 100.0)] {
        let x = random(&mut rng, vec![256], lo, hi);
        let g = unary_graph(f, &[256]);
        let compiled = compile(g.clone(), &CompileOptions::default()).unwrap();
        let mut runner = Runner::new(&compiled.program, Cleartext::new());
        runner.share_weights(Some(&compiled.weights)).unwrap();
        let (out, _) = runner.infer(Some(&[encode_input(&x, 12)])).unwrap();
        let y = decode_output(&out.unwrap()[0], compiled.program.outputs[0].encoding);
        for (xv, yv) in x.data().iter().zip(y.data()) {
            let e = f.eval(*xv);
            assert!((yv - e).abs() <= 1e-2 * e.abs() + 4.0 / 4096.0, "{}({xv}) = {yv}, expected {e}", f.name());
        }
    }
}

fn binary_graph(op: Op, a_shape: &[usize], b_shape: &[usize]) -> Graph {
    let mut g = Graph::new();
    let a = g.input("a", a_shape.to_vec());
    let b = g.input("b", b_shape.to_vec());
    let y = g.add("y", op, &[a, b]).unwrap();
    g.outputs.push(y);
    g
}

#[test]
fn max_min_and_division_of_two_secrets() {
    let mut rng = StdRng::seed_from_u64(3);
    let a = random(&mut rng, vec![3, 8], -20.0, 20.0);
    let b = random(&mut rng, vec![8], -20.0, 20.0);
    for op in [Op::Max, Op::Min] {
        let err = cleartext_error(&binary_graph(op.clone(), &[3, 8], &[8]), &[a.clone(), b.clone()]);
        assert!(err <= 1.0 / 4096.0, "{}: {err}", op.name());
    }
    let d = random(&mut rng, vec![8], 0.5, 8.0);
    let err = cleartext_error(&binary_graph(Op::Div, &[3, 8], &[8]), &[a, d]);
    assert!(err <= 0.05, "Div: {err}");
}

#[test]
fn reductions_softmax_and_normalisation() {
    let mut rng = StdRng::seed_from_u64(4);
    let x = random(&mut rng, vec![2, 5, 10], -8.0, 8.0);
    let ops = [
        (Op::ReduceMax { axes: vec![1, 2], keep_dims: true }, 1.0 / 4096.0),
        (Op::ReduceMin { axes: vec![0], keep_dims: false }, 1.0 / 4096.0),
        (Op::Softmax { axis: 2 }, 1e-2),
        (Op::Softmax { axis: 1 }, 1e-2),
        (Op::LogSoftmax { axis: 2 }, 2e-2),
        (Op::Normalize { axes: vec![2], epsilon: 1e-5 }, 2e-2),
        (Op::Normalize { axes: vec![1, 2], epsilon: 1e-5 }, 2e-2),
    ];
    for (op, tolerance) in ops {
        let mut g = Graph::new();
        let i = g.input("x", vec![2, 5, 10]);
        let y = g.add("y", op.clone(), &[i]).unwrap();
        g.outputs.push(y);
        let err = cleartext_error(&g, &[x.clone()]);
        assert!(err <= tolerance, "{} {op:?}: largest error {err}", op.name());
    }
}

#[test]
fn prelu_with_a_secret_slope() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut g = Graph::new();
    let x = g.input("x", vec![2, 3, 4]);
    let slope = g.weight("slope", random(&mut rng, vec![3, 1], 0.0, 0.5));
    let y = g.add("y", Op::Prelu, &[x, slope]).unwrap();
    g.outputs.push(y);
    let err = cleartext_error(&g, &[random(&mut rng, vec![2, 3, 4], -4.0, 4.0)]);
    assert!(err <= 3.0 / 4096.0, "{err}");
}

/// Attention's products: both operands computed from the client's data, batch axes broadcast.
#[test]
fn batched_matmul_of_two_secrets_is_one_backend_call() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut g = Graph::new();
    let q = g.input("q", vec![2, 3, 4, 8]);
    let k = g.input("k", vec![2, 3, 8, 5]);
    let s = g.add("scores", Op::MatMul, &[q, k]).unwrap();
    g.outputs.push(s);
    let compiled = compile(g.clone(), &CompileOptions::default()).unwrap();
    let calls: Vec<&LOp> = compiled.program.body.iter().map(|i| &i.op).filter(|op| op.is_backend_call()).collect();
    assert_eq!(calls.iter().filter(|op| matches!(op, LOp::BatchMatMul)).count(), 1, "{calls:?}");
    let err = cleartext_error(&g, &[random(&mut rng, vec![2, 3, 4, 8], -2.0, 2.0), random(&mut rng, vec![2, 3, 8, 5], -2.0, 2.0)]);
    // Inputs are encoded by flooring (error below 2^-12 each): 8 terms of |a| + |b| <= 4 units.
    assert!(err <= 33.0 / 4096.0, "{err}");

    // A right operand broadcast over the left one's batch.
    let mut g = Graph::new();
    let a = g.input("a", vec![3, 4, 6]);
    let w = g.weight("w", random(&mut rng, vec![1, 6, 2], -1.0, 1.0));
    let y = g.add("y", Op::MatMul, &[a, w]).unwrap();
    g.outputs.push(y);
    let err = cleartext_error(&g, &[random(&mut rng, vec![3, 4, 6], -2.0, 2.0)]);
    assert!(err <= 25.0 / 4096.0, "{err}");
}

#[test]
fn public_constant_tensors_and_integer_inputs() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut g = Graph::new();
    let x = g.input("x", vec![2, 6]);
    let mask = g.integer_input("mask", vec![2, 6]);
    let c = random(&mut rng, vec![6], -1.0, 1.0);
    let scaled: NodeId = g.add("scaled", Op::MulConst(c), &[x]).unwrap();
    let penalty = g.add("penalty", Op::MulScalar(-100.0), &[mask]).unwrap();
    let y = g.add("y", Op::Add, &[scaled, penalty]).unwrap();
    g.outputs.push(y);
    let compiled = compile(g.clone(), &CompileOptions::default()).unwrap();
    assert!(!compiled.program.inputs[0].integer && compiled.program.inputs[1].integer);
    let xv = random(&mut rng, vec![2, 6], -3.0, 3.0);
    let mv = Tensor::new(vec![2, 6], (0..12).map(|i| (i % 2) as f32).collect()).unwrap();
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let ints = mv.map(|v| v as i64 as u64);
    let (out, _) = runner.infer(Some(&[encode_input(&xv, 12), ints])).unwrap();
    let y = decode_output(&out.unwrap()[0], compiled.program.outputs[0].encoding);
    let expected = float::run(&compiled.hlil, &[xv, mv]).unwrap().remove(0);
    for (a, e) in y.data().iter().zip(expected.data()) {
        assert!((a - e).abs() <= 2.0 / 4096.0, "{a} vs {e}");
    }
}
