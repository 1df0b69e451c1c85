//! Athos end to end on hand-built graphs: the cleartext executor (exact fixed point) against
//! the float executor, the paper's worked example, and the passes' effects.

use cryptflow_athos::{compile, CompileOptions, ScaleDownPlacement};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::LOp;
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{ConvGeometry, FloatTensor, Layout, PoolGeometry, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, shape: Vec<usize>, scale: f32) -> FloatTensor {
    let n = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()).unwrap()
}

fn run_cleartext(graph: &Graph, options: &CompileOptions, x: &FloatTensor) -> (FloatTensor, cryptflow_athos::Compiled) {
    let compiled = compile(graph.clone(), options).unwrap();
    let out = {
        let mut runner = Runner::new(&compiled.program, Cleartext::new());
        runner.share_weights(Some(&compiled.weights)).unwrap();
        let (outputs, _) = runner.infer(Some(&[encode_input(x, options.scale)])).unwrap();
        decode_output(&outputs.unwrap()[0], compiled.program.outputs[0].encoding)
    };
    (out, compiled)
}

fn assert_close(actual: &FloatTensor, expected: &FloatTensor, tolerance: f32) {
    assert_eq!(actual.shape(), expected.shape());
    for (i, (a, e)) in actual.data().iter().zip(expected.data()).enumerate() {
        assert!((a - e).abs() <= tolerance * (1.0 + e.abs()), "element {i}: {a} vs {e} (tolerance {tolerance})");
    }
}

fn conv_geometry(c_in: usize, c_out: usize, hw: usize, k: usize, pad: usize) -> ConvGeometry {
    ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: c_in,
        out_channels: c_out,
        groups: 1,
        input: vec![hw, hw],
        kernel: vec![k, k],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads_begin: vec![pad, pad],
        pads_end: vec![pad, pad],
        output_padding: vec![0, 0],
    }
}

fn pool_geometry(c: usize, hw: usize) -> PoolGeometry {
    PoolGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        channels: c,
        input: vec![hw, hw],
        window: vec![2, 2],
        strides: vec![2, 2],
        pads_begin: vec![0, 0],
        pads_end: vec![0, 0],
        count_include_pad: true,
    }
}

/// Paper III-B: [400.1, 200.1] . [0.3, 0.1]^T at s = 24 computes
/// (6712564224 * 5033165 + 3357121024 * 1677721) >> 24 = 2349481329.
#[test]
fn paper_worked_example_is_exact() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 2]);
    let w = g.weight("w", Tensor::new(vec![2, 1], vec![0.3, 0.1]).unwrap());
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    g.outputs = vec![y];
    // The paper's rho_s rounds down (round-to-nearest, the default, would give 1677722).
    let options =
        CompileOptions { scale: 24, placement: ScaleDownPlacement::Eager, rounding: cryptflow_athos::Rounding::Floor, ..Default::default() };
    let compiled = compile(g, &options).unwrap();
    assert_eq!(compiled.weights[0].data(), &[5033165, 1677721]);
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let input = encode_input(&Tensor::new(vec![1, 2], vec![400.1, 200.1]).unwrap(), 24);
    assert_eq!(input.data(), &[6712564224, 3357121024]);
    let (outputs, _) = runner.infer(Some(&[input])).unwrap();
    let raw = outputs.unwrap()[0].data()[0];
    assert_eq!(raw, 2349481329);
    let real = decode_output(&outputs_tensor(raw), compiled.program.outputs[0].encoding).data()[0];
    assert!((real - 140.04).abs() < 1e-4);
}

fn outputs_tensor(v: u64) -> cryptflow_tensor::RingTensor {
    Tensor::new(vec![1], vec![v]).unwrap()
}

/// Paper III-B: at s = 2 the same product collapses to 100 (0.1 rounds to zero).
#[test]
fn paper_low_scale_example_loses_precision() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 2]);
    let w = g.weight("w", Tensor::new(vec![2, 1], vec![0.3, 0.1]).unwrap());
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    g.outputs = vec![y];
    let options = CompileOptions { scale: 2, placement: ScaleDownPlacement::Eager, ..Default::default() };
    let (out, _) = run_cleartext(&g, &options, &Tensor::new(vec![1, 2], vec![400.1, 200.1]).unwrap());
    assert_eq!(out.data()[0], 100.0);
}

/// A small CNN touching conv, bias, batch norm, ReLU, max pool, residual add, average pool,
/// clip, leaky ReLU, flatten and a dense layer.
fn small_cnn(rng: &mut StdRng) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 3, 8, 8]);
    let w1 = g.weight("w1", random(rng, vec![4, 3, 3, 3], 0.5));
    let b1 = g.weight("b1", random(rng, vec![4], 0.1));
    let c1 = g.add("conv1", Op::Conv(conv_geometry(3, 4, 8, 3, 1)), &[x, w1, b1]).unwrap();
    let gamma = g.weight("gamma", Tensor::new(vec![4], vec![1.2, 0.8, 1.0, 0.5]).unwrap());
    let beta = g.weight("beta", Tensor::new(vec![4], vec![0.1, -0.2, 0.0, 0.3]).unwrap());
    let mean = g.weight("mean", Tensor::new(vec![4], vec![0.05, -0.1, 0.2, 0.0]).unwrap());
    let var = g.weight("var", Tensor::new(vec![4], vec![1.0, 0.5, 2.0, 0.8]).unwrap());
    let bn = g.add("bn1", Op::BatchNorm { epsilon: 1e-5, channel_axis: 1 }, &[c1, gamma, beta, mean, var]).unwrap();
    let r1 = g.add("relu1", Op::Relu, &[bn]).unwrap();
    let w2 = g.weight("w2", random(rng, vec![4, 4, 3, 3], 0.4));
    let c2 = g.add("conv2", Op::Conv(conv_geometry(4, 4, 8, 3, 1)), &[r1, w2]).unwrap();
    let res = g.add("residual", Op::Add, &[c2, r1]).unwrap();
    let r2 = g.add("relu2", Op::Relu, &[res]).unwrap();
    let p = g.add("pool", Op::MaxPool(pool_geometry(4, 8)), &[r2]).unwrap();
    let clip = g.add("relu6", Op::Clip { min: 0.0, max: 6.0 }, &[p]).unwrap();
    let leaky = g.add("leaky", Op::LeakyRelu { alpha: 0.1 }, &[clip]).unwrap();
    let avg = g.add("avg", Op::AvgPool(pool_geometry(4, 4)), &[leaky]).unwrap();
    let flat = g.add("flatten", Op::Reshape { shape: vec![1, 16] }, &[avg]).unwrap();
    let wd = g.weight("dense", random(rng, vec![16, 5], 0.5));
    let bd = g.weight("dense_bias", random(rng, vec![5], 0.2));
    let d = g.add("logits_mm", Op::MatMul, &[flat, wd]).unwrap();
    let logits = g.add("logits", Op::Add, &[d, bd]).unwrap();
    g.outputs = vec![logits];
    g
}

#[test]
fn cleartext_matches_float_on_a_small_cnn_for_both_placements() {
    let mut rng = StdRng::seed_from_u64(7);
    let g = small_cnn(&mut rng);
    for trial in 0..5 {
        let x = random(&mut rng, vec![1, 3, 8, 8], 2.0);
        let expected = float::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        for placement in [ScaleDownPlacement::Eager, ScaleDownPlacement::Lazy] {
            let options = CompileOptions { scale: 12, placement, ..Default::default() };
            let (out, _) = run_cleartext(&g, &options, &x);
            assert_close(&out, &expected, 0.02);
            let _ = trial;
        }
    }
}

#[test]
fn lazy_placement_truncates_fewer_elements_and_passes_are_counted() {
    let mut rng = StdRng::seed_from_u64(8);
    let g = small_cnn(&mut rng);
    let compiled = compile(g, &CompileOptions::default()).unwrap();
    let r = &compiled.report;
    assert_eq!(r.passes.batch_norms_folded, 1);
    assert_eq!(r.passes.relu_maxpool_switched, 1, "relu2 feeds only the pool");
    // Eager: conv1 (4*64), conv2 (4*64), leaky (4*16), dense (5) = 581 elements.
    assert_eq!(r.scale_downs_eager.elements, 256 + 256 + 64 + 5);
    assert_eq!(r.scale_downs_eager.calls, 4);
    // Lazy: conv1's 2s output is truncated where it meets conv2 (256); the residual sum stays
    // at 2s through MaxPool, ReLU and the clip and is truncated on the pooled 64 elements
    // before the leaky ReLU's multiplication; the leaky ReLU's 2s product goes through the
    // average pool and is truncated on its 16 elements before the dense layer, whose output
    // is revealed at 2s.
    assert_eq!(r.scale_downs_lazy.elements, 256 + 64 + 16);
    assert_eq!(r.scale_downs_lazy.calls, 3);
    assert!(r.peak_live_bytes_with_liveness < r.peak_live_bytes_without_liveness);
}

#[test]
fn relu_maxpool_switch_preserves_outputs_exactly() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 2, 6, 6]);
    let w = g.weight("w", random(&mut rng, vec![3, 2, 3, 3], 0.5));
    let c = g.add("conv", Op::Conv(conv_geometry(2, 3, 6, 3, 1)), &[x, w]).unwrap();
    let r = g.add("relu", Op::Relu, &[c]).unwrap();
    let p = g.add("pool", Op::MaxPool(pool_geometry(3, 6)), &[r]).unwrap();
    g.outputs = vec![p];
    let on = compile(g.clone(), &CompileOptions::default()).unwrap();
    let off = compile(g.clone(), &CompileOptions { relu_maxpool_switch: false, ..Default::default() }).unwrap();
    assert_eq!(on.report.passes.relu_maxpool_switched, 1);
    let relu_elements = |c: &cryptflow_athos::Compiled| -> usize {
        c.program.body.iter().filter(|i| i.op == LOp::Relu).map(|i| c.program.slots[i.out].shape.iter().product::<usize>()).sum()
    };
    assert_eq!(relu_elements(&on), 27);
    assert_eq!(relu_elements(&off), 108);
    let x = random(&mut rng, vec![1, 2, 6, 6], 1.0);
    let a = float::run(&on.hlil, std::slice::from_ref(&x)).unwrap();
    let b = float::run(&g, std::slice::from_ref(&x)).unwrap();
    assert_eq!(a, b);
    let (clear_on, _) = run_cleartext(&g, &CompileOptions::default(), &x);
    let (clear_off, _) = run_cleartext(&g, &CompileOptions { relu_maxpool_switch: false, ..Default::default() }, &x);
    assert_eq!(clear_on, clear_off, "ReLU and MaxPool commute exactly in fixed point too");
}

#[test]
fn liveness_changes_memory_not_results() {
    let mut rng = StdRng::seed_from_u64(10);
    let g = small_cnn(&mut rng);
    let x = random(&mut rng, vec![1, 3, 8, 8], 1.0);
    let (with, compiled_with) = run_cleartext(&g, &CompileOptions::default(), &x);
    let (without, compiled_without) = run_cleartext(&g, &CompileOptions { liveness: false, ..Default::default() }, &x);
    assert_eq!(with, without);
    assert!(compiled_with.program.body.iter().any(|i| !i.free_after.is_empty()));
    assert!(compiled_without.program.body.iter().all(|i| i.free_after.is_empty()));
    // Every freed slot is never read again.
    let body = &compiled_with.program.body;
    for (k, instr) in body.iter().enumerate() {
        for &freed in &instr.free_after {
            assert!(body[k + 1..].iter().all(|later| !later.args.contains(&freed)), "slot {freed} read after being freed");
        }
    }
}

#[test]
fn batch_norm_folding_can_be_turned_off_without_changing_results() {
    let mut rng = StdRng::seed_from_u64(11);
    let g = small_cnn(&mut rng);
    let x = random(&mut rng, vec![1, 3, 8, 8], 1.0);
    let expected = float::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
    let options = CompileOptions { fold_batch_norms: false, ..Default::default() };
    let (out, compiled) = run_cleartext(&g, &options, &x);
    assert_eq!(compiled.report.passes.batch_norms_folded, 0);
    assert_eq!(compiled.report.passes.batch_norms_as_multiply_add, 1);
    assert!(compiled.program.body.iter().any(|i| i.op == LOp::Mul));
    assert_close(&out, &expected, 0.02);
}

#[test]
fn standalone_batch_norm_becomes_multiply_add() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 2, 2, 2]);
    let r = g.add("relu", Op::Relu, &[x]).unwrap();
    let t = |v: [f32; 2]| Tensor::new(vec![2], v.to_vec()).unwrap();
    let gamma = g.weight("gamma", t([2.0, 0.5]));
    let beta = g.weight("beta", t([1.0, -1.0]));
    let mean = g.weight("mean", t([0.5, 0.0]));
    let var = g.weight("var", t([4.0, 1.0]));
    let bn = g.add("bn", Op::BatchNorm { epsilon: 0.0, channel_axis: 1 }, &[r, gamma, beta, mean, var]).unwrap();
    g.outputs = vec![bn];
    let x = Tensor::new(vec![1, 2, 2, 2], vec![1.0, -1.0, 2.0, 3.0, 0.5, 4.0, -2.0, 1.0]).unwrap();
    // channel 0: (relu(x) - 0.5) / 2 * 2 + 1 ; channel 1: relu(x) * 0.5 - 1
    let expected = Tensor::new(vec![1, 2, 2, 2], vec![1.5, 0.5, 2.5, 3.5, -0.75, 1.0, -1.0, -0.5]).unwrap();
    let (out, compiled) = run_cleartext(&g, &CompileOptions::default(), &x);
    assert_eq!(compiled.report.passes.batch_norms_as_multiply_add, 1);
    assert_close(&out, &expected, 1e-3);
    assert!(compiled.program.body.iter().any(|i| i.op == LOp::Mul));
}

#[test]
fn public_scalar_division_is_exact_floor_division() {
    let mut g = Graph::new();
    let x = g.input("x", vec![4]);
    let y = g.add("div", Op::DivScalar(4.0), &[x]).unwrap();
    g.outputs = vec![y];
    let x = Tensor::new(vec![4], vec![1.0, -1.0, 10.0, -0.25]).unwrap();
    let (out, compiled) = run_cleartext(&g, &CompileOptions::default(), &x);
    assert!(compiled.program.body.iter().any(|i| matches!(i.op, LOp::Divide { .. })));
    assert_eq!(out.data(), &[0.25, -0.25, 2.5, -0.0625]);
}

#[test]
fn bad_scale_is_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1]);
    let y = g.add("relu", Op::Relu, &[x]).unwrap();
    g.outputs = vec![y];
    let err = compile(g, &CompileOptions { scale: 40, ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("scale 40"), "{err}");
}

/// Floor encoding shifts every weight by half a unit on average; over a wide layer the shifts
/// add up. Round-to-nearest removes the bias.
#[test]
fn nearest_rounding_removes_floor_bias_on_a_wide_layer() {
    let mut rng = StdRng::seed_from_u64(12);
    let k = 4096;
    let mut g = Graph::new();
    let x = g.input("x", vec![1, k]);
    let w = g.weight("w", random(&mut rng, vec![k, 4], 0.05));
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    g.outputs = vec![y];
    let input = Tensor::new(vec![1, k], (0..k).map(|_| rng.random_range(0.5f32..1.0)).collect()).unwrap();
    let expected = float::run(&g, std::slice::from_ref(&input)).unwrap().remove(0);
    let error = |rounding| {
        let options = CompileOptions { scale: 10, rounding, ..Default::default() };
        let (out, _) = run_cleartext(&g, &options, &input);
        out.data().iter().zip(expected.data()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    };
    let floor = error(cryptflow_athos::Rounding::Floor);
    let nearest = error(cryptflow_athos::Rounding::Nearest);
    // Floor: about k * 0.75 * 2^-11 ~ 1.5 below; nearest: a random walk of ~sqrt(k) half-units.
    assert!(floor > 1.0, "floor error {floor}");
    assert!(nearest < floor / 8.0, "nearest {nearest} vs floor {floor}");
}

/// Round-to-nearest is the default encoding of weights; floor (the paper's) is an option.
#[test]
fn nearest_rounding_is_the_default() {
    assert_eq!(CompileOptions::default().rounding, cryptflow_athos::Rounding::Nearest);
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 1]);
    let w = g.weight("w", Tensor::new(vec![1, 1], vec![0.3f32]).unwrap());
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    g.outputs = vec![y];
    // At scale 4, 0.3 * 16 = 4.8: nearest encodes 5, floor 4.
    let compiled = compile(g.clone(), &CompileOptions { scale: 4, ..Default::default() }).unwrap();
    assert_eq!(compiled.weights[0].data()[0], 5);
    let floor = compile(g, &CompileOptions { scale: 4, rounding: cryptflow_athos::Rounding::Floor, ..Default::default() }).unwrap();
    assert_eq!(floor.weights[0].data()[0], 4);
}
