//! Imports every TensorFlow fixture of `fixtures/tensorflow/` (made by
//! `fixtures/tensorflow/generate.py` with TensorFlow 2.21), evaluates the HLIL with the float
//! executor against TensorFlow's outputs, then compiles it with Athos and checks the
//! cleartext (fixed-point) executor against the float one. Also the trained LeNet, both as
//! frozen GraphDef and as ONNX. No Python needed: the fixtures are committed files.

use std::collections::HashMap;

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_frontend::testing::{fixtures_root, read_npy, softmax_last_axis};
use cryptflow_ir::hlil::{Graph, Op, UnaryFn};
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{FloatTensor, Layout, Tensor};
use cryptflow_tensorflow::{import_file, ImportOptions, Imported};

/// Float executor vs TensorFlow: 1e-4 relative (absolute below 1).
fn check_float(name: &str, got: &FloatTensor, want: &FloatTensor) -> Result<f32, String> {
    if got.shape() != want.shape() {
        return Err(format!("{name}: shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    let mut worst = 0f32;
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let err = (g - w).abs();
        let tol = 1e-4 * w.abs().max(1.0) + 1e-5;
        if err.is_nan() || err > tol {
            return Err(format!("{name}: element {i}: got {g}, expected {w}"));
        }
        worst = worst.max(err / w.abs().max(1.0));
    }
    Ok(worst)
}

/// Cleartext fixed point vs float: |a - b| <= 0.02 + 0.01 |b|.
fn check_fixed(name: &str, got: &FloatTensor, want: &FloatTensor) -> Result<f32, String> {
    if got.shape() != want.shape() {
        return Err(format!("{name}: shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    let mut worst = 0f32;
    for (i, (&a, &b)) in got.data().iter().zip(want.data()).enumerate() {
        let err = (a - b).abs();
        if err.is_nan() || err > 0.02 + 0.01 * b.abs() {
            return Err(format!("{name}: element {i}: cleartext {a}, float {b}"));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

fn run_cleartext(graph: &Graph, x: &FloatTensor) -> Result<FloatTensor, String> {
    let options = CompileOptions::default();
    let compiled = compile(graph.clone(), &options).map_err(|e| format!("compile: {e}"))?;
    let mut runner = Runner::new(&compiled.program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).map_err(|e| format!("weights: {e}"))?;
    let (outputs, _) = runner.infer(Some(&[encode_input(x, options.scale)])).map_err(|e| format!("infer: {e}"))?;
    let outputs = outputs.ok_or("no outputs")?;
    Ok(decode_output(&outputs[0], compiled.program.outputs[0].encoding))
}

struct Entry {
    name: String,
    input_name: String,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    softmax: bool,
    argmax: bool,
    shape_option: bool,
}

fn manifest() -> Vec<Entry> {
    let path = fixtures_root().join("tensorflow/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json parses");
    let dims = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
    };
    let flag = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            name: e["name"].as_str().unwrap().to_string(),
            input_name: e["input_name"].as_str().unwrap().to_string(),
            input_shape: dims(&e["input_shape"]),
            output_shape: dims(&e["output_shape"]),
            softmax: flag(e, "softmax_output"),
            argmax: flag(e, "argmax_output"),
            shape_option: flag(e, "input_shape_option"),
        })
        .collect()
}

fn import_fixture(e: &Entry) -> Result<Imported, String> {
    import_fixture_with(e, false)
}

fn import_fixture_with(e: &Entry, strip_output_softmax: bool) -> Result<Imported, String> {
    let mut options = ImportOptions { strip_output_softmax, ..Default::default() };
    if e.shape_option {
        options.input_shapes.insert(e.input_name.clone(), e.input_shape.clone());
    }
    import_file(&fixtures_root().join(format!("tensorflow/{}.pb", e.name)), &options).map_err(|err| err.to_string())
}

/// Every fixture: import, float executor vs TensorFlow, cleartext vs float.
#[test]
fn every_fixture_matches_tensorflow_in_float_and_fixed_point() {
    let entries = manifest();
    assert!(entries.len() >= 15, "expected the full fixture set, found {}", entries.len());
    let mut failures = Vec::new();
    for e in &entries {
        let dir = fixtures_root().join("tensorflow");
        let result = (|| -> Result<String, String> {
            let imported = import_fixture(e)?;
            let g = &imported.graph;
            if g.inputs.len() != 1 || g.outputs.len() != 1 {
                return Err(format!("{} inputs and {} outputs", g.inputs.len(), g.outputs.len()));
            }
            if g.nodes[g.inputs[0]].shape != e.input_shape {
                return Err(format!("input shape {:?}, manifest {:?}", g.nodes[g.inputs[0]].shape, e.input_shape));
            }
            if g.nodes[g.outputs[0]].shape != e.output_shape {
                return Err(format!("output shape {:?}, manifest {:?}", g.nodes[g.outputs[0]].shape, e.output_shape));
            }
            // NHWC stays NHWC: no transposes of activations, channels-last geometries.
            for n in &g.nodes {
                match &n.op {
                    Op::Conv(geo) | Op::ConvTranspose(geo) if geo.layout != Layout::ChannelsLast => {
                        return Err(format!("conv `{}` is not channels-last", n.name))
                    }
                    Op::MaxPool(geo) | Op::AvgPool(geo) if geo.layout != Layout::ChannelsLast => {
                        return Err(format!("pool `{}` is not channels-last", n.name))
                    }
                    _ => {}
                }
            }
            let x = read_npy(&dir.join(format!("{}.input.npy", e.name)));
            let want = read_npy(&dir.join(format!("{}.output.npy", e.name)));
            let y = float::run(g, std::slice::from_ref(&x)).map_err(|err| format!("float run: {err}"))?.remove(0);
            // By default a final Softmax is computed; with strip_output_softmax it is compiled
            // away (the softmax of the logits is then TensorFlow's output).
            let float_err = check_float(&e.name, &y, &want)?;
            if e.softmax {
                if !g.nodes.iter().any(|n| matches!(n.op, Op::Softmax { .. })) {
                    return Err("the output Softmax is not computed by default".into());
                }
                let stripped = import_fixture_with(e, true)?;
                if !stripped.notices.iter().any(|n| n.contains("Softmax") && n.contains("compiled away")) {
                    return Err(format!("no Softmax notice in {:?}", stripped.notices));
                }
                let logits = float::run(&stripped.graph, std::slice::from_ref(&x)).map_err(|err| format!("float run: {err}"))?.remove(0);
                check_float(&e.name, &softmax_last_axis(&logits), &want)?;
                // The logits in fixed point.
                match run_cleartext(&stripped.graph, &x) {
                    Err(err) if err.contains("not supported by this backend") => {}
                    r => {
                        check_fixed(&e.name, &r?, &logits)?;
                    }
                }
            }
            let fixed = match run_cleartext(g, &x) {
                // The secure math library is written separately: operations the cleartext
                // backend does not run yet are reported, not failed.
                Err(err) if err.contains("not supported by this backend") => {
                    return Ok(format!("float rel err {float_err:.2e}, fixed point not run ({err}), {} HLIL nodes", g.nodes.len()));
                }
                r => r?,
            };
            let fixed_err = if e.argmax {
                if fixed.data() != y.data() {
                    return Err(format!("cleartext ArgMax {:?}, float {:?}", fixed.data(), y.data()));
                }
                0.0
            } else {
                check_fixed(&e.name, &fixed, &y)?
            };
            Ok(format!("float rel err {float_err:.2e}, fixed abs err {fixed_err:.2e}, {} HLIL nodes", g.nodes.len()))
        })();
        match result {
            Ok(summary) => eprintln!("{:24} ok: {summary}", e.name),
            Err(err) => {
                eprintln!("{:24} FAILED: {err}", e.name);
                failures.push(format!("{}: {err}", e.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), entries.len(), failures.join("\n"));
}

/// The fixtures exercise every operation the issue lists.
#[test]
fn fixtures_cover_the_required_operations() {
    let path = fixtures_root().join("tensorflow/manifest.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut ops: Vec<String> = Vec::new();
    for e in json.as_array().unwrap() {
        for op in e["ops"].as_array().unwrap() {
            ops.push(op.as_str().unwrap().to_string());
        }
    }
    let required = [
        "Conv2D", "DepthwiseConv2dNative", "Conv3D", "Conv2DBackpropInput", "Conv3DBackpropInputV2", "MatMul",
        "BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Neg", "Relu", "Relu6", "LeakyRelu", "MaxPool", "AvgPool",
        "MaxPool3D", "AvgPool3D", "FusedBatchNorm", "FusedBatchNormV3", "Mean", "Sum", "Pad", "PadV2", "ConcatV2",
        "Reshape", "Squeeze", "ExpandDims", "Transpose", "Slice", "StridedSlice", "Split", "SplitV", "Pack", "Identity",
        "Const", "Placeholder", "ArgMax", "Softmax", "Shape", "Rsqrt", "NoOp", "Switch", "Merge", "Assert",
        "StopGradient", "PlaceholderWithDefault", "Sigmoid", "Tanh", "Erf", "Erfc", "Exp", "Log", "Sqrt",
        "Reciprocal", "Inv", "Square", "Pow", "SquaredDifference", "Abs", "Elu", "Selu", "Softplus", "Softsign",
        "Maximum", "Minimum", "Div", "Max", "Min", "LogSoftmax", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
        "ResizeNearestNeighbor", "ResizeBilinear", "Tile", "BroadcastTo", "Relu6", "SelectV2", "Greater",
    ];
    let missing: Vec<&str> = required.iter().copied().filter(|r| !ops.iter().any(|o| o == r)).collect();
    assert!(missing.is_empty(), "no fixture uses {missing:?}");
}

fn lenet_samples(nhwc: bool) -> Vec<FloatTensor> {
    let file = if nhwc { "data/mnist_samples_x_nhwc.npy" } else { "data/mnist_samples_x.npy" };
    let x = read_npy(&fixtures_root().join(file));
    let per = x.len() / x.shape()[0];
    let mut shape = x.shape().to_vec();
    shape[0] = 1;
    x.data().chunks(per).map(|c| Tensor::new(shape.clone(), c.to_vec()).unwrap()).collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// The trained LeNet as a frozen GraphDef reproduces TensorFlow's logits, and compiles to
/// the same predictions and near-identical logits as the same model imported from ONNX.
#[test]
fn lenet_from_tensorflow_and_from_onnx_agree() {
    let root = fixtures_root();
    // Both with the output Softmax compiled away (the expected values are logits).
    let options = ImportOptions { strip_output_softmax: true, ..Default::default() };
    let tf = import_file(&root.join("models/lenet_mnist.pb"), &options).expect("TF LeNet imports");
    let onnx = cryptflow_onnx::import_file(&root.join("models/lenet_mnist.onnx"), &options)
        .expect("ONNX LeNet imports");
    assert!(tf.notices.iter().any(|n| n.contains("Softmax `probs` at the output compiled away")), "{:?}", tf.notices);
    let g = &tf.graph;
    assert_eq!(g.nodes[g.inputs[0]].shape, [1, 28, 28, 1]);
    assert_eq!(g.nodes[g.outputs[0]].shape, [1, 10]);
    // No activation transposes; conv biases fused; the same parameter count as ONNX.
    assert!(!g.nodes.iter().any(|n| matches!(n.op, Op::Transpose { .. })), "{g}");
    let convs: Vec<_> = g.nodes.iter().filter(|n| matches!(n.op, Op::Conv(_))).collect();
    assert_eq!(convs.len(), 2);
    assert!(convs.iter().all(|n| n.inputs.len() == 3), "conv biases are fused: {g}");
    assert_eq!(g.parameter_count(), 44_426);
    assert_eq!(onnx.graph.parameter_count(), 44_426);
    let ops = |g: &Graph| -> Vec<&'static str> {
        g.nodes.iter().filter(|n| !matches!(n.op, Op::Weight(_) | Op::Input)).map(|n| n.op.name()).collect()
    };
    assert_eq!(ops(g), ops(&onnx.graph), "TF:\n{g}\nONNX:\n{}", onnx.graph);

    let expected = read_npy(&root.join("models/lenet_mnist_pb.expected_logits.npy"));
    let options = CompileOptions::default();
    let tf_compiled = compile(tf.graph.clone(), &options).unwrap();
    let onnx_compiled = compile(onnx.graph.clone(), &options).unwrap();
    let run = |c: &cryptflow_athos::Compiled, x: &FloatTensor| -> FloatTensor {
        let mut runner = Runner::new(&c.program, Cleartext::new());
        runner.share_weights(Some(&c.weights)).unwrap();
        let (outputs, _) = runner.infer(Some(&[encode_input(x, options.scale)])).unwrap();
        decode_output(&outputs.unwrap()[0], c.program.outputs[0].encoding)
    };
    let (nhwc, nchw) = (lenet_samples(true), lenet_samples(false));
    assert_eq!(nhwc.len(), 4);
    for (k, (xt, xo)) in nhwc.iter().zip(&nchw).enumerate() {
        let ft = float::run(&tf.graph, std::slice::from_ref(xt)).unwrap().remove(0);
        let fo = float::run(&onnx.graph, std::slice::from_ref(xo)).unwrap().remove(0);
        let want = Tensor::new(vec![1, 10], expected.data()[k * 10..(k + 1) * 10].to_vec()).unwrap();
        check_float("lenet tf float vs TensorFlow", &ft, &want).unwrap();
        check_float("lenet tf float vs onnx float", &ft, &fo).unwrap();
        let ct = run(&tf_compiled, xt);
        let co = run(&onnx_compiled, xo);
        let diff = |a: &FloatTensor, b: &FloatTensor| a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!(
            "sample {k}: tf float vs TF {:.2e}, tf vs onnx float {:.2e}, tf vs onnx cleartext {:.2e}, tf cleartext vs float {:.2e}",
            diff(&ft, &want), diff(&ft, &fo), diff(&ct, &co), diff(&ct, &ft)
        );
        // Both programs compute the same integers (ring arithmetic is exact whatever the
        // summation order; the truncations sit at the same places).
        assert!(diff(&ct, &co) <= 1e-3, "sample {k}: TF and ONNX cleartext logits differ: {:?} vs {:?}", ct.data(), co.data());
        // The trained model's logits reach ~15; scale-12 truncation costs up to ~2 % there.
        for (a, b) in ct.data().iter().zip(ft.data()) {
            assert!((a - b).abs() <= 0.05 + 0.03 * b.abs(), "sample {k}: cleartext {a} vs float {b}");
        }
        assert_eq!(argmax(ct.data()), argmax(co.data()), "sample {k}");
        assert_eq!(argmax(ct.data()), argmax(want.data()), "sample {k}");
    }
}

/// `--input-shape` on an unknown batch dimension, and the default of 1 with a notice.
#[test]
fn unknown_dimensions_default_to_one_or_take_the_given_shape() {
    let path = fixtures_root().join("tensorflow/tf1_graph.pb");
    let imported = import_file(&path, &ImportOptions::default()).unwrap();
    assert!(
        imported.notices.iter().any(|n| n.contains("input `input` has symbolic or unknown dimensions ([?, 6, 6, 3])")),
        "{:?}",
        imported.notices
    );
    assert_eq!(imported.graph.nodes[imported.graph.inputs[0]].shape, [1, 6, 6, 3]);
    let path = fixtures_root().join("tensorflow/tf_shape_arith.pb");
    let options = ImportOptions { input_shapes: HashMap::from([("input".to_string(), vec![5, 2, 3, 2])]), ..Default::default() };
    let imported = import_file(&path, &options).unwrap();
    let g = &imported.graph;
    assert_eq!(g.nodes[g.inputs[0]].shape, [5, 2, 3, 2]);
    assert_eq!(g.nodes[g.outputs[0]].shape, [5, 3]);
}

fn import_named(name: &str) -> Imported {
    import_file(&fixtures_root().join(format!("tensorflow/{name}.pb")), &ImportOptions::default()).unwrap()
}

fn count(g: &Graph, op: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == op).count()
}

/// What Keras 3 graphs decompose is put back together: conv biases (Reshape -> Squeeze ->
/// BiasAdd) go into the Conv, batch norms (Rsqrt/Mul/Sub/AddV2) become BatchNorm nodes that
/// Athos folds into the convolutions, and dilated convolutions (SpaceToBatchND -> Conv2D ->
/// BatchToSpaceND) become one Conv with dilations.
#[test]
fn keras_patterns_become_single_hlil_operations() {
    let block = import_named("keras_resnet_block");
    let g = &block.graph;
    assert_eq!(count(g, "BatchNorm"), 3, "{g}");
    assert_eq!(count(g, "Mul") + count(g, "Sub"), 0, "{g}");
    let compiled = compile(g.clone(), &CompileOptions::default()).unwrap();
    assert_eq!(compiled.report.passes.batch_norms_folded, 3);

    let conv_bn = import_named("keras_conv_bn_relu");
    let conv = conv_bn.graph.nodes.iter().find(|n| matches!(n.op, Op::Conv(_))).unwrap();
    assert_eq!(conv.inputs.len(), 3, "bias fused: {}", conv_bn.graph);
    assert_eq!(conv.name, "keras_conv_bn_relu_1/conv_1/BiasAdd");

    let merge = import_named("keras_merge");
    let dilated: Vec<_> = merge
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::Conv(geo) if geo.dilations == [2, 2]))
        .collect();
    assert_eq!(dilated.len(), 1, "{}", merge.graph);
    assert_eq!(dilated[0].inputs.len(), 3);

    // Dense -> ReLU -> BatchNorm on a rank-2 tensor: one BatchNorm over the last axis (after
    // the ReLU there is nothing to fold it into, so Athos lowers it to a multiply-add).
    let dense = import_named("keras_dense");
    assert_eq!(count(&dense.graph, "BatchNorm"), 1, "{}", dense.graph);
    let compiled = compile(dense.graph.clone(), &CompileOptions::default()).unwrap();
    assert_eq!(compiled.report.passes.batch_norms_as_multiply_add, 1);
}

/// Keras activations written as chains of TensorFlow operations become the single function
/// of the secure math library they compute; batched products stay one HLIL MatMul.
#[test]
fn keras_activations_become_math_library_functions() {
    let act = import_named("keras_activations");
    let g = &act.graph;
    let has = |f: UnaryFn| g.nodes.iter().any(|n| n.op == Op::Unary(f));
    for f in [
        UnaryFn::Sigmoid,
        UnaryFn::Tanh,
        UnaryFn::Gelu,
        UnaryFn::GeluTanh,
        UnaryFn::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 },
        UnaryFn::HardSwish,
        UnaryFn::Silu,
        UnaryFn::Elu { alpha: 1.0 },
        UnaryFn::Elu { alpha: 0.5 },
        UnaryFn::Softplus,
        UnaryFn::Exp,
    ] {
        assert!(has(f), "no {f:?} in\n{g}");
    }
    assert_eq!(count(g, "Prelu"), 1, "{g}");
    assert_eq!(count(g, "LogSoftmax"), 1, "{g}");
    assert_eq!(count(g, "Softmax"), 1, "{g}");
    // What is left of the chains: Selu's scale, softsign's division.
    assert_eq!(count(g, "Mul"), 0, "{g}");
    assert_eq!(count(g, "Erf"), 0, "{g}");

    let ln = import_named("keras_layernorm");
    assert_eq!(count(&ln.graph, "Prelu"), 1, "{}", ln.graph);
    assert_eq!(count(&ln.graph, "Rsqrt"), 2, "{}", ln.graph);

    let bmm = import_named("tf_batch_matmul");
    let batched = bmm.graph.nodes.iter().filter(|n| n.op == Op::MatMul && bmm.graph.nodes[n.inputs[1]].shape.len() > 2).count();
    assert_eq!(batched, 6, "{}", bmm.graph); // five BatchMatMuls and the batched constant product
}
