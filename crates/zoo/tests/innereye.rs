//! InnerEye's UNet3D (the CrypTFlow medical paper's network, issue #13): the builder's
//! parameters, multiply-accumulates and ReLU elements against the architecture's formulas and
//! the figures (32.3 M weights, 1.065e12 MACs, 892 M ReLU elements at [1, 1, 64, 256,
//! 256]), and a reduced volume imported, compiled and run (float vs cleartext).

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::Op;
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{FloatTensor, Tensor};
use cryptflow_zoo::{build, input_shape, parameter_count, random_input, Options};

const NAME: &str = "unet3d-innereye";

/// (parameters, MACs, ReLU elements) of the architecture, written out from its description.
fn formulas(width: u64, classes: u64, size: [u64; 3]) -> (u64, u64, u64) {
    let v0: u64 = size.iter().product();
    let w = width;
    // Level 0: Conv 1 -> w and a residual Conv w -> w, each with BN (2 parameters per channel).
    let mut params = 27 * w + 2 * w + 27 * w * w + 2 * w;
    let mut macs = v0 * w * 27 + v0 * w * w * 27;
    let mut relu = 2 * v0 * w;
    for level in 1..=4u32 {
        let (c, v) = (w << level, v0 / 8u64.pow(level));
        params += 27 * (c / 2) * c + 2 * c + 27 * c * c + 2 * c;
        macs += v * c * 27 * (c / 2) + v * c * c * 27;
        relu += 2 * v * c;
    }
    for level in (0..4u32).rev() {
        let (c, v, below) = (w << level, v0 / 8u64.pow(level), v0 / 8u64.pow(level + 1));
        // ConvTranspose 2c -> c (4x4x4, bias) + BN; Conv(up) + Conv(skip), BN; residual + BN.
        params += 2 * c * c * 64 + c + 2 * c + 2 * 27 * c * c + 2 * c + 27 * c * c + 2 * c;
        macs += below * 2 * c * c * 64 + 3 * v * c * c * 27;
        relu += 3 * v * c;
    }
    params += w * classes + classes;
    macs += v0 * w * classes;
    (params, macs, relu)
}

#[test]
fn the_innereye_unet_has_the_papers_size() {
    let (params, macs, relu) = formulas(32, 8, [64, 256, 256]);
    assert_eq!(parameter_count(NAME, &Options::default()).unwrap(), params);
    assert_eq!(input_shape(NAME, &Options::default()).unwrap(), [1, 1, 64, 256, 256]);
    // The figures.
    assert!((params as f64 / 32.3e6 - 1.0).abs() < 0.01, "{params}");
    assert!((macs as f64 / 1.065e12 - 1.0).abs() < 0.01, "{macs}");
    assert!((relu as f64 / 892e6 - 1.0).abs() < 0.01, "{relu}");

    // The built graph does that much work: count it from the imported HLIL.
    let model = build(NAME, &Options::default()).unwrap();
    let graph = cryptflow_onnx::import_model(&model, &Default::default()).unwrap().graph;
    let (mut counted_macs, mut counted_relu) = (0u64, 0u64);
    for node in &graph.nodes {
        let elements = |shape: &[usize]| shape.iter().product::<usize>() as u64;
        match &node.op {
            Op::Conv(g) => {
                counted_macs += elements(&node.shape) * (g.in_channels / g.groups) as u64 * elements(&g.kernel);
            }
            Op::ConvTranspose(g) => {
                counted_macs += elements(&graph.nodes[node.inputs[0]].shape) * (g.out_channels / g.groups) as u64 * elements(&g.kernel);
            }
            Op::Relu => counted_relu += elements(&node.shape),
            _ => {}
        }
    }
    assert_eq!(counted_macs, macs);
    assert_eq!(counted_relu, relu);
    // The client gets the segmentation map: an ArgMax over the 8 classes of every voxel
    // (`--output-logits`: the scores themselves).
    let output = &graph.nodes[graph.outputs[0]];
    assert!(matches!(output.op, Op::ArgMax { axis: 1, keep_dims: false }), "{:?}", output.op);
    assert_eq!(output.shape, [1, 64, 256, 256]);
    let logits = build(NAME, &Options { output_logits: true, ..Default::default() }).unwrap();
    let graph = cryptflow_onnx::import_model(&logits, &Default::default()).unwrap().graph;
    assert_eq!(graph.nodes[graph.outputs[0]].shape, [1, 8, 64, 256, 256]);
    eprintln!("{NAME}: {params} parameters, {macs} MACs ({:.3} TFLOPs), {relu} ReLU elements", 2.0 * macs as f64 / 1e12);

    // Other widths, classes and volumes follow the same formulas; sizes must divide by 16.
    let options = Options { width: Some(8), classes: Some(3), input_size: Some(vec![16, 32, 48]), ..Default::default() };
    assert_eq!(parameter_count(NAME, &options).unwrap(), formulas(8, 3, [16, 32, 48]).0);
    let bad = Options { input_size: Some(vec![16, 32, 40]), ..Default::default() };
    let e = parameter_count(NAME, &bad).unwrap_err().to_string();
    assert!(e.contains("multiple of 16"), "{e}");
    let e = parameter_count(NAME, &Options { width: Some(0), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("width must be positive"), "{e}");
}

#[test]
fn a_reduced_innereye_unet_runs_in_fixed_point() {
    let options = Options { width: Some(4), input_size: Some(vec![16, 32, 32]), output_logits: true, ..Default::default() };
    let model = build(NAME, &options).unwrap();
    let imported = cryptflow_onnx::import_model(&model, &Default::default()).unwrap();
    let compiled = compile(imported.graph, &CompileOptions { scale: 12, ..Default::default() }).unwrap();
    let shape = input_shape(NAME, &options).unwrap();
    let x: FloatTensor = Tensor::new(shape.clone(), random_input(shape.iter().product(), 7)).unwrap();
    let y_float = float::run(&compiled.hlil, std::slice::from_ref(&x)).unwrap().remove(0);
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let (revealed, _) = runner.infer(Some(&[encode_input(&x, 12)])).unwrap();
    let y_fixed = decode_output(&revealed.unwrap()[0], compiled.program.outputs[0].encoding);
    assert_eq!(y_fixed.shape(), [1, 8, 16, 32, 32]);
    // Per-voxel segmentation (argmax over the 8 classes) agrees on 99% of the voxels.
    let voxels = 16 * 32 * 32;
    let argmax = |d: &[f32], p: usize| (0..8).max_by(|&a, &b| d[a * voxels + p].total_cmp(&d[b * voxels + p])).unwrap();
    let agree = (0..voxels).filter(|&p| argmax(y_float.data(), p) == argmax(y_fixed.data(), p)).count();
    assert!(agree as f64 >= 0.99 * voxels as f64, "segmentation agrees on {agree} of {voxels} voxels");
}

/// The runtime's slab-wise execution (issue #13: bounded memory at 64 x 256 x 256) changes
/// nothing in the result: the reduced network run with budgets that cut every convolution,
/// transposed convolution, ReLU, truncation and product into slabs gives the same ring values
/// as the run that cuts nothing, on the cleartext backend.
#[test]
fn slabbed_runs_of_the_innereye_unet_equal_whole_ones_exactly() {
    // The segmentation map's ArgMax is cut into slabs too.
    let options = Options { width: Some(4), input_size: Some(vec![16, 32, 32]), ..Default::default() };
    let model = build(NAME, &options).unwrap();
    let imported = cryptflow_onnx::import_model(&model, &Default::default()).unwrap();
    let compiled = compile(imported.graph, &CompileOptions { scale: 12, ..Default::default() }).unwrap();
    assert_eq!(compiled.program.outputs[0].shape, [1, 16, 32, 32]);
    let shape = input_shape(NAME, &options).unwrap();
    let x: FloatTensor = Tensor::new(shape.clone(), random_input(shape.iter().product(), 11)).unwrap();
    let run = |budget: usize| {
        let mut runner = Runner::new(&compiled.program, Cleartext::new());
        runner.set_slab_elements(budget);
        runner.share_weights(Some(&compiled.weights)).unwrap();
        runner.infer(Some(&[encode_input(&x, 12)])).unwrap().0.unwrap().remove(0)
    };
    let whole = run(usize::MAX);
    // The largest call holds 4 x 16 x 32 x 32 = 65,536 elements in and out: every budget
    // below cuts the level-0 calls, the smallest every call into slabs of one plane.
    for budget in [100_000, 20_000, 1] {
        let program = &compiled.program;
        let slabbed = program.body.iter().filter(|i| cryptflow_runtime::slab::largest_call_elements(program, i, budget) < cryptflow_runtime::slab::largest_call_elements(program, i, usize::MAX)).count();
        assert!(slabbed > 0, "budget {budget} cuts nothing");
        assert_eq!(run(budget), whole, "budget {budget}");
    }
}
