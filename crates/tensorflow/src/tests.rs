//! Unit tests on hand-built GraphDefs: graph plumbing (control inputs, dead branches, outputs),
//! errors, padding and filter layouts.

use std::collections::HashMap;

use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_tensor::{FloatTensor, Layout, Tensor};
use prost::Message;

use crate::proto::{attr_value, tensor_shape_proto, AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto};
use crate::{import_bytes, import_graph_def, ImportOptions, Imported, TfError};

fn attr(v: attr_value::Value) -> AttrValue {
    AttrValue { value: Some(v) }
}

fn shape_proto(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    }
}

fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, attr_value::Value)>) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), attr(v))).collect(),
        ..Default::default()
    }
}

fn placeholder(name: &str, dims: &[i64]) -> NodeDef {
    node(
        name,
        "Placeholder",
        &[],
        vec![("dtype", attr_value::Value::Type(DataType::DtFloat as i32)), ("shape", attr_value::Value::Shape(shape_proto(dims)))],
    )
}

fn const_f(name: &str, dims: &[i64], values: &[f32]) -> NodeDef {
    let t = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape_proto(dims)),
        tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    };
    node(name, "Const", &[], vec![("dtype", attr_value::Value::Type(1)), ("value", attr_value::Value::Tensor(t))])
}

fn const_i(name: &str, dims: &[i64], values: &[i32]) -> NodeDef {
    let t = TensorProto { dtype: DataType::DtInt32 as i32, tensor_shape: Some(shape_proto(dims)), int_val: values.to_vec(), ..Default::default() };
    node(name, "Const", &[], vec![("dtype", attr_value::Value::Type(3)), ("value", attr_value::Value::Tensor(t))])
}

fn const_b(name: &str, v: bool) -> NodeDef {
    let t = TensorProto { dtype: DataType::DtBool as i32, tensor_shape: Some(shape_proto(&[])), bool_val: vec![v], ..Default::default() };
    node(name, "Const", &[], vec![("dtype", attr_value::Value::Type(10)), ("value", attr_value::Value::Tensor(t))])
}

fn s(v: &str) -> attr_value::Value {
    attr_value::Value::S(v.as_bytes().to_vec())
}

fn ints(v: &[i64]) -> attr_value::Value {
    attr_value::Value::List(attr_value::ListValue { i: v.to_vec(), ..Default::default() })
}

fn import(nodes: Vec<NodeDef>) -> Result<Imported, TfError> {
    import_graph_def(&GraphDef { node: nodes, ..Default::default() }, &ImportOptions::default())
}

fn eval(g: &Graph, x: &FloatTensor) -> Vec<FloatTensor> {
    let mut values: Vec<Option<FloatTensor>> = vec![None; g.nodes.len()];
    values[g.inputs[0]] = Some(x.clone());
    for (id, n) in g.nodes.iter().enumerate() {
        if matches!(n.op, Op::Input) {
            continue;
        }
        let args: Vec<&FloatTensor> = n.inputs.iter().map(|&i| values[i].as_ref().unwrap()).collect();
        values[id] = Some(cryptflow_ir::hlil::eval_op(n, &args).unwrap());
    }
    g.outputs.iter().map(|&o| values[o].clone().unwrap()).collect()
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().filter(|n| !matches!(n.op, Op::Weight(_) | Op::Input)).map(|n| n.op.name()).collect()
}

#[test]
fn identity_noop_assert_and_control_inputs_are_dropped() {
    let imported = import(vec![
        placeholder("x", &[1, 3]),
        const_f("w", &[3, 2], &[1., 2., 3., 4., 5., 6.]),
        node("w/read", "Identity", &["w"], vec![]),
        node("check", "Assert", &["x"], vec![]),
        node("mm", "MatMul", &["x", "w/read", "^check"], vec![]),
        node("NoOp", "NoOp", &["^w/read", "^mm"], vec![]),
        node("out", "Identity", &["mm", "^NoOp"], vec![]),
    ])
    .unwrap();
    let g = &imported.graph;
    assert_eq!(ops(g), ["MatMul"]);
    assert_eq!(g.nodes[g.outputs[0]].name, "out");
    let y = eval(g, &Tensor::new(vec![1, 3], vec![1., 1., 1.]).unwrap());
    assert_eq!(y[0].data(), &[9., 12.]);
}

#[test]
fn a_constant_switch_keeps_the_live_branch() {
    for (flag, expected) in [(false, 2.0f32), (true, 3.0)] {
        let imported = import(vec![
            placeholder("x", &[2]),
            const_b("training", flag),
            node("sw", "Switch", &["x", "training"], vec![]),
            // The pivot of a tf.compat.v1.cond: a constant, or dead; never an output.
            node("pivot", "Switch", &["training", "training"], vec![]),
            node("sw_t", "Identity", &["pivot:1"], vec![]),
            const_f("two", &[], &[2.0]),
            const_f("three", &[], &[3.0]),
            node("false_branch", "Mul", &["sw", "two"], vec![]),
            node("true_branch", "Mul", &["sw:1", "three"], vec![]),
            node("merge", "Merge", &["false_branch", "true_branch"], vec![]),
        ])
        .unwrap();
        let g = &imported.graph;
        assert_eq!(g.outputs.len(), 1, "the pivot `sw_t` is not an output");
        assert_eq!(g.nodes[g.outputs[0]].name, "merge");
        let y = eval(g, &Tensor::new(vec![2], vec![1., -1.]).unwrap());
        assert_eq!(y[0].data(), &[expected, -expected]);
    }
    let err = import(vec![
        placeholder("x", &[2]),
        placeholder("p", &[]),
        node("sw", "Switch", &["x", "p"], vec![]),
        node("merge", "Merge", &["sw", "sw:1"], vec![]),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("predicate must be known at import time"), "{err}");
}

#[test]
fn unsupported_operations_name_the_node_its_type_and_the_supported_list() {
    let err = import(vec![placeholder("x", &[1, 4]), node("my_fft", "FFT", &["x"], vec![])]).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("node `my_fft` (FFT): unsupported operation; supported TensorFlow operations: "), "{text}");
    for op in ["Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3", "StridedSlice", "Softmax"] {
        assert!(text.contains(op), "{text}");
    }
    assert!(matches!(err, TfError::UnsupportedOp { .. }));
    let err = import(vec![placeholder("x", &[1, 4]), node("v", "VarHandleOp", &[], vec![]), node("r", "ReadVariableOp", &["v"], vec![]), node("y", "AddV2", &["x", "r"], vec![])])
        .unwrap_err();
    assert!(err.to_string().contains("freeze it first"), "{err}");
}

#[test]
fn softmax_is_computed_unless_stripped_at_the_output() {
    let nodes = || {
        vec![
            placeholder("x", &[1, 4]),
            node("probs", "Softmax", &["x"], vec![]),
            node("Identity", "Identity", &["probs"], vec![]),
        ]
    };
    // By default the model's outputs are computed as the model says.
    let imported = import(nodes()).unwrap();
    assert!(imported.notices.is_empty(), "{:?}", imported.notices);
    assert!(imported.graph.nodes.iter().any(|n| n.op == Op::Softmax { axis: 1 }), "{}", imported.graph);
    // With strip_output_softmax, compiled away with a notice.
    let options = ImportOptions { strip_output_softmax: true, ..Default::default() };
    let imported = import_graph_def(&GraphDef { node: nodes(), ..Default::default() }, &options).unwrap();
    assert_eq!(
        imported.notices,
        ["Softmax `probs` at the output compiled away: it preserves the argmax, so predictions are unchanged (outputs are logits)"]
    );
    assert!(!imported.graph.nodes.iter().any(|n| matches!(n.op, Op::Softmax { .. })));
    // Inside the graph, and on a rank-1 tensor (whose axis may be the batch), always computed.
    let inner = vec![
        placeholder("x", &[1, 4]),
        node("probs", "Softmax", &["x"], vec![]),
        node("relu", "LogSoftmax", &["probs"], vec![]),
    ];
    let imported = import_graph_def(&GraphDef { node: inner, ..Default::default() }, &options).unwrap();
    let ops: Vec<&str> = imported.graph.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Input", "Softmax"], "LogSoftmax at the output is compiled away: {}", imported.graph);
    let rank1 = vec![placeholder("x", &[4]), node("probs", "Softmax", &["x"], vec![])];
    let imported = import_graph_def(&GraphDef { node: rank1, ..Default::default() }, &options).unwrap();
    assert!(imported.graph.nodes.iter().any(|n| n.op == Op::Softmax { axis: 0 }), "{}", imported.graph);
}

/// Unsupported forms of the non-linear operations are clear errors.
#[test]
fn nonlinear_operation_errors() {
    let err = |nodes: Vec<NodeDef>| import(nodes).unwrap_err().to_string();
    let e = err(vec![placeholder("x", &[1, 4]), const_f("p", &[], &[0.3]), node("y", "Pow", &["x", "p"], vec![])]);
    assert!(e.contains("Pow with the exponent 0.3 is not supported"), "{e}");
    let e = err(vec![placeholder("x", &[1, 4]), const_f("b", &[], &[2.0]), node("y", "Pow", &["b", "x"], vec![])]);
    assert!(e.contains("only constant exponents"), "{e}");
    let e = err(vec![placeholder("x", &[1, 4]), const_f("p", &[2], &[2.0, 3.0]), node("y", "Pow", &["x", "p"], vec![])]);
    assert!(e.contains("the exponent must be a single constant"), "{e}");
    let e = err(vec![
        placeholder("x", &[1, 2, 2, 1]),
        const_i("size", &[2], &[4, 4]),
        node("y", "ResizeBilinear", &["x", "size"], vec![("align_corners", attr_value::Value::B(true)), ("half_pixel_centers", attr_value::Value::B(true))]),
    ]);
    assert!(e.contains("align_corners and half_pixel_centers cannot both be true"), "{e}");
    let e = err(vec![placeholder("x", &[1, 2, 2]), const_i("size", &[2], &[4, 4]), node("y", "ResizeNearestNeighbor", &["x", "size"], vec![])]);
    assert!(e.contains("NHWC tensor of rank 4"), "{e}");
    let e = err(vec![
        placeholder("x", &[1, 4]),
        const_f("z", &[], &[0.0]),
        node("g", "Greater", &["x", "z"], vec![]),
        node("y", "SelectV2", &["g", "x", "z"], vec![]),
    ]);
    assert!(e.contains("comparisons of computed tensors are not supported"), "{e}");
    let e = err(vec![placeholder("x", &[1, 4]), const_i("a", &[1], &[1]), node("y", "Prod", &["x", "a"], vec![])]);
    assert!(e.contains("Prod of a computed tensor is not supported"), "{e}");
}

/// `Pow` by integers is repeated multiplication, by -1 a reciprocal; `RealDiv` by a computed
/// tensor an HLIL `Div`, `2 / x` a scaled reciprocal; `Maximum` of two tensors an HLIL `Max`.
#[test]
fn pow_division_and_extrema_lower_to_the_math_library() {
    let imported = import(vec![
        placeholder("x", &[1, 4]),
        const_f("p5", &[], &[5.0]),
        node("x5", "Pow", &["x", "p5"], vec![]),
        const_f("m1", &[1, 1], &[-1.0]),
        node("r", "Pow", &["x5", "m1"], vec![]),
        node("d", "RealDiv", &["r", "x"], vec![]),
        const_f("two", &[], &[2.0]),
        node("q", "RealDiv", &["two", "d"], vec![]),
        node("y", "Maximum", &["q", "x"], vec![]),
    ])
    .unwrap();
    let g = &imported.graph;
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Input", "Mul", "Mul", "Mul", "Reciprocal", "Div", "Reciprocal", "MulScalar", "Max"], "{g}");
    let x = Tensor::new(vec![1, 4], vec![0.5, 1.5, -2.0, 3.0]).unwrap();
    let y = eval(g, &x).remove(0);
    for (i, &v) in x.data().iter().enumerate() {
        let want = (2.0 / (v.powi(-5) / v)).max(v);
        assert!((y.data()[i] - want).abs() <= 1e-4 * want.abs().max(1.0), "{i}: {} vs {want}", y.data()[i]);
    }
}

#[test]
fn graph_errors() {
    let undefined = import(vec![placeholder("x", &[1]), node("r", "Relu", &["nope"], vec![])]).unwrap_err();
    assert!(matches!(undefined, TfError::UndefinedTensor { ref tensor, .. } if tensor == "nope"), "{undefined}");
    let twice = import(vec![placeholder("x", &[1]), placeholder("x", &[1])]).unwrap_err();
    assert!(twice.to_string().contains("used by more than one node"), "{twice}");
    let cycle = import(vec![
        placeholder("x", &[1]),
        node("a", "AddV2", &["x", "b"], vec![]),
        node("b", "Relu", &["a"], vec![]),
        node("out", "Relu", &["b"], vec![]),
    ])
    .unwrap_err();
    assert!(cycle.to_string().contains("cycle"), "{cycle}");
    let constant_only = import(vec![
        placeholder("x", &[1]),
        const_f("c", &[1], &[1.0]),
        node("y", "Neg", &["c"], vec![]),
    ])
    .unwrap_err();
    assert!(constant_only.to_string().contains("no Placeholder input reaches an output"), "{constant_only}");
    let bad_output = import(vec![placeholder("x", &[2, 2]), node("sp", "Split", &["x"], vec![]), node("r", "Relu", &["sp:1"], vec![])])
        .unwrap_err();
    assert!(matches!(bad_output, TfError::Invalid { .. }), "{bad_output}");
    assert!(matches!(import_bytes(&[0xff, 0xff], &ImportOptions::default()), Err(TfError::Decode(_))));
    assert!(matches!(import(vec![]), Err(TfError::Model(_))));
}

#[test]
fn input_shapes() {
    let g = GraphDef { node: vec![placeholder("x", &[-1, 3]), node("y", "Relu", &["x"], vec![])], ..Default::default() };
    let imported = import_graph_def(&g, &ImportOptions::default()).unwrap();
    assert_eq!(imported.graph.nodes[0].shape, [1, 3]);
    assert!(imported.notices[0].contains("[?, 3]"), "{:?}", imported.notices);
    let options = ImportOptions { input_shapes: HashMap::from([("x".to_string(), vec![4, 3])]), ..Default::default() };
    assert_eq!(import_graph_def(&g, &options).unwrap().graph.nodes[0].shape, [4, 3]);
    let options = ImportOptions { input_shapes: HashMap::from([("z".to_string(), vec![4, 3])]), ..Default::default() };
    let err = import_graph_def(&g, &options).unwrap_err();
    assert_eq!(err.to_string(), "--input-shape names `z`, which is not a Placeholder of the graph (placeholders: x)");
    let options = ImportOptions { input_shapes: HashMap::from([("x".to_string(), vec![4])]), ..Default::default() };
    assert!(import_graph_def(&g, &options).unwrap_err().to_string().contains("rank"));
    let mut int_input = placeholder("x", &[2]);
    int_input.attr.insert("dtype".into(), attr(attr_value::Value::Type(DataType::DtInt32 as i32)));
    let err = import(vec![int_input, node("y", "Relu", &["x"], vec![])]).unwrap_err();
    assert!(err.to_string().contains("only floating-point inputs"), "{err}");
    let mut unknown_rank = placeholder("x", &[]);
    unknown_rank.attr.insert("shape".into(), attr(attr_value::Value::Shape(TensorShapeProto { dim: vec![], unknown_rank: true })));
    let err = import(vec![unknown_rank, node("y", "Relu", &["x"], vec![])]).unwrap_err();
    assert!(err.to_string().contains("give it with --input-shape"), "{err}");
}

/// TensorFlow SAME padding puts the odd pad at the end; filters become `[C_out, C_in, kh, kw]`.
#[test]
fn conv_same_padding_and_filter_layout() {
    // 1x6x6x1 input, 3x3 filter, stride 2: out 3, total pad (3-1)*2+3-6 = 1 -> (0, 1).
    let filter: Vec<f32> = (0..9 * 2).map(|v| v as f32).collect(); // [3, 3, 1, 2]
    let imported = import(vec![
        placeholder("x", &[1, 6, 6, 1]),
        const_f("f", &[3, 3, 1, 2], &filter),
        node(
            "conv",
            "Conv2D",
            &["x", "f"],
            vec![("strides", ints(&[1, 2, 2, 1])), ("padding", s("SAME")), ("data_format", s("NHWC"))],
        ),
    ])
    .unwrap();
    let g = &imported.graph;
    let conv = g.nodes.iter().find(|n| matches!(n.op, Op::Conv(_))).unwrap();
    let Op::Conv(geo) = &conv.op else { unreachable!() };
    assert_eq!(geo.layout, Layout::ChannelsLast);
    assert_eq!((geo.pads_begin.clone(), geo.pads_end.clone()), (vec![0, 0], vec![1, 1]));
    assert_eq!(conv.shape, [1, 3, 3, 2]);
    let w = g.weight_value(conv.inputs[1]).unwrap();
    assert_eq!(w.shape(), [2, 1, 3, 3]);
    // w[o, 0, i, j] = filter[i, j, 0, o] = (i * 3 + j) * 2 + o
    assert_eq!(w.data()[..9], [0., 2., 4., 6., 8., 10., 12., 14., 16.]);
    assert_eq!(w.data()[9..], [1., 3., 5., 7., 9., 11., 13., 15., 17.]);
}

/// A depthwise filter `[kh, kw, C, M]` becomes `[C * M, 1, kh, kw]` with output channel
/// `c * M + m`, and a following BiasAdd is fused into the convolution.
#[test]
fn depthwise_filter_layout_and_bias_fusion() {
    let filter: Vec<f32> = (0..2 * 2 * 2 * 3).map(|v| v as f32).collect(); // [2, 2, 2, 3]
    let imported = import(vec![
        placeholder("x", &[1, 4, 4, 2]),
        const_f("f", &[2, 2, 2, 3], &filter),
        const_f("b", &[6], &[1., 2., 3., 4., 5., 6.]),
        node("dw", "DepthwiseConv2dNative", &["x", "f"], vec![("strides", ints(&[1, 1, 1, 1])), ("padding", s("VALID"))]),
        node("bias", "BiasAdd", &["dw", "b"], vec![]),
        node("relu", "Relu", &["bias"], vec![]),
    ])
    .unwrap();
    let g = &imported.graph;
    assert_eq!(ops(g), ["Conv", "Relu"]);
    let conv = g.nodes.iter().find(|n| matches!(n.op, Op::Conv(_))).unwrap();
    assert_eq!(conv.name, "bias");
    let Op::Conv(geo) = &conv.op else { unreachable!() };
    assert_eq!((geo.groups, geo.in_channels, geo.out_channels), (2, 2, 6));
    let w = g.weight_value(conv.inputs[1]).unwrap();
    assert_eq!(w.shape(), [6, 1, 2, 2]);
    // Output channel c*3+m, tap (i, j) = filter[i, j, c, m] = ((i*2 + j)*2 + c)*3 + m.
    let want: Vec<f32> = (0..2)
        .flat_map(|c| (0..3).flat_map(move |m| (0..4).map(move |ij| ((ij * 2 + c) * 3 + m) as f32)))
        .collect();
    assert_eq!(w.data(), want.as_slice());
    assert_eq!(g.weight_value(conv.inputs[2]).unwrap().data(), &[1., 2., 3., 4., 5., 6.]);
}

/// Keras 3 batch norm leaves `x * scale + shift` with per-channel constants (after its
/// Rsqrt/Mul/Sub chain is evaluated): it becomes one BatchNorm node.
#[test]
fn keras_batch_norm_chain_becomes_batch_norm() {
    let imported = import(vec![
        placeholder("x", &[1, 2, 2, 2]),
        const_f("var", &[2], &[3.0, 0.0]),
        const_f("eps", &[], &[1.0]),
        const_f("gamma", &[2], &[2.0, 3.0]),
        const_f("beta", &[2], &[0.5, -0.5]),
        const_f("mean", &[2], &[1.0, 2.0]),
        node("bn/add", "AddV2", &["var", "eps"], vec![]),
        node("bn/Rsqrt", "Rsqrt", &["bn/add"], vec![]),
        node("bn/mul", "Mul", &["bn/Rsqrt", "gamma"], vec![]),
        node("bn/mul_1", "Mul", &["x", "bn/mul"], vec![]),
        node("bn/mul_2", "Mul", &["mean", "bn/mul"], vec![]),
        node("bn/sub", "Sub", &["beta", "bn/mul_2"], vec![]),
        node("bn/add_1", "AddV2", &["bn/mul_1", "bn/sub"], vec![]),
    ])
    .unwrap();
    let g = &imported.graph;
    assert_eq!(ops(g), ["BatchNorm"]);
    assert_eq!(g.nodes[g.outputs[0]].name, "bn/add_1");
    let x = Tensor::new(vec![1, 2, 2, 2], vec![1., 2., 3., 4., 5., 6., 7., 8.]).unwrap();
    let y = eval(g, &x);
    // channel 0: (x - 1) * 1 + 0.5; channel 1: (x - 2) * 3 - 0.5
    assert_eq!(y[0].data(), &[0.5, -0.5, 2.5, 5.5, 4.5, 11.5, 6.5, 17.5]);
}

#[test]
fn transposed_conv_same_padding_and_output_padding() {
    // Forward conv from 5 to 3 with k=3, s=2, SAME: total (3-1)*2+3-5 = 2 -> (1, 1); the
    // transposed conv gives 2*(3-1)+3-2 = 5 with output_padding 0. From 6: total 1 -> (0, 1),
    // full 7 - 1 = 6, output_padding 0. VALID from 8 (k=3,s=2 -> 3): 2*2+3 = 7, padding 1.
    for (out, pads, op) in [(5i64, (1usize, 1usize), 0usize), (6, (0, 1), 0), (8, (0, 0), 1)] {
        let padding = if out == 8 { "VALID" } else { "SAME" };
        let imported = import(vec![
            placeholder("x", &[1, 3, 3, 2]),
            const_i("sizes", &[4], &[1, out as i32, out as i32, 1]),
            const_f("f", &[3, 3, 1, 2], &[0.5; 18]),
            node(
                "up",
                "Conv2DBackpropInput",
                &["sizes", "f", "x"],
                vec![("strides", ints(&[1, 2, 2, 1])), ("padding", s(padding))],
            ),
        ])
        .unwrap();
        let g = &imported.graph;
        let n = g.nodes.iter().find(|n| matches!(n.op, Op::ConvTranspose(_))).unwrap();
        let Op::ConvTranspose(geo) = &n.op else { unreachable!() };
        assert_eq!((geo.pads_begin[0], geo.pads_end[0], geo.output_padding[0]), (pads.0, pads.1, op), "out {out}");
        assert_eq!(n.shape, [1, out as usize, out as usize, 1]);
    }
}

#[test]
fn strided_slice_pack_and_shape_arithmetic() {
    let imported = import(vec![
        placeholder("x", &[2, 3, 4]),
        node("shape", "Shape", &["x"], vec![]),
        const_i("b", &[1], &[0]),
        const_i("e", &[1], &[1]),
        const_i("st", &[1], &[1]),
        node("batch", "StridedSlice", &["shape", "b", "e", "st"], vec![("shrink_axis_mask", attr_value::Value::I(1))]),
        const_i("minus_one", &[], &[-1]),
        node("target", "Pack", &["batch", "minus_one"], vec![]),
        node("flat", "Reshape", &["x", "target"], vec![]),
        const_i("b2", &[2], &[0, -1]),
        const_i("e2", &[2], &[0, -12]),
        const_i("st2", &[2], &[1, -2]),
        // flat[:, -1:-12:-2]: every other column, from the last one down to column 1.
        node(
            "rev",
            "StridedSlice",
            &["flat", "b2", "e2", "st2"],
            vec![("begin_mask", attr_value::Value::I(1)), ("end_mask", attr_value::Value::I(1))],
        ),
    ])
    .unwrap();
    let g = &imported.graph;
    assert_eq!(g.nodes[g.outputs[0]].shape, [2, 6]);
    let x = Tensor::new(vec![2, 3, 4], (0..24).map(|v| v as f32).collect()).unwrap();
    let y = eval(g, &x);
    assert_eq!(y[0].data(), &[11., 9., 7., 5., 3., 1., 23., 21., 19., 17., 15., 13.]);
}

#[test]
fn several_outputs_in_graph_order_and_a_serialized_round_trip() {
    let g = GraphDef {
        node: vec![
            placeholder("x", &[1, 2]),
            node("a", "Relu", &["x"], vec![]),
            node("b", "Neg", &["x"], vec![]),
            const_f("unused", &[1], &[1.0]),
        ],
        ..Default::default()
    };
    let imported = import_bytes(&g.encode_to_vec(), &ImportOptions::default()).unwrap();
    let names: Vec<&str> = imported.graph.outputs.iter().map(|&o| imported.graph.nodes[o].name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

/// NCHW graphs (as trained on GPUs) use channels-first geometries and give the same values
/// as the NHWC graph, transposed.
#[test]
fn nchw_data_format() {
    let filter: Vec<f32> = (0..3 * 3 * 2 * 4).map(|v| ((v * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let graph = |format: &str, x: &[i64], strides: &[i64], ksize: &[i64]| {
        import(vec![
            placeholder("x", x),
            const_f("f", &[3, 3, 2, 4], &filter),
            const_f("b", &[4], &[0.1, -0.2, 0.3, -0.4]),
            node("conv", "Conv2D", &["x", "f"], vec![("strides", ints(strides)), ("padding", s("SAME")), ("data_format", s(format))]),
            node("bias", "BiasAdd", &["conv", "b"], vec![("data_format", s(format))]),
            node(
                "pool",
                "MaxPool",
                &["bias"],
                vec![("ksize", ints(ksize)), ("strides", ints(ksize)), ("padding", s("VALID")), ("data_format", s(format))],
            ),
        ])
        .unwrap()
        .graph
    };
    let nhwc = graph("NHWC", &[1, 6, 6, 2], &[1, 1, 1, 1], &[1, 2, 2, 1]);
    let nchw = graph("NCHW", &[1, 2, 6, 6], &[1, 1, 1, 1], &[1, 1, 2, 2]);
    assert!(nchw.nodes.iter().any(|n| matches!(&n.op, Op::Conv(g) if g.layout == Layout::ChannelsFirst)));
    let x: Vec<f32> = (0..72).map(|v| ((v * 13 % 17) as f32 - 8.0) / 4.0).collect();
    let x_nhwc = Tensor::new(vec![1, 6, 6, 2], x).unwrap();
    let x_nchw = cryptflow_tensor::movement::transpose(&x_nhwc, &[0, 3, 1, 2]).unwrap();
    let y_nhwc = eval(&nhwc, &x_nhwc).remove(0);
    let y_nchw = eval(&nchw, &x_nchw).remove(0);
    let back = cryptflow_tensor::movement::transpose(&y_nchw, &[0, 2, 3, 1]).unwrap();
    assert_eq!(back.shape(), y_nhwc.shape());
    for (a, b) in back.data().iter().zip(y_nhwc.data()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}
