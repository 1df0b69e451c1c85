//! Unit tests on small models built directly as prost values.

use cryptflow_ir::hlil::{eval_op, Graph, Op};
use cryptflow_tensor::{FloatTensor, Tensor};
use prost::Message;

use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::type_proto;
use crate::proto::*;
use crate::{import_bytes, ImportOptions, Imported, OnnxError};

// ---- model builder -----------------------------------------------------------------------

#[derive(Clone)]
struct B {
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

fn tensor_type(dims: Option<&[i64]>, elem: i32) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem),
            shape: dims.map(|dims| TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| Dimension {
                        denotation: None,
                        value: Some(if d < 0 {
                            dimension::Value::DimParam("N".into())
                        } else {
                            dimension::Value::DimValue(d)
                        }),
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

fn tf(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(1), float_data: data, ..Default::default() }
}

fn ti(name: &str, dims: &[i64], data: Vec<i64>) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(7), int64_data: data, ..Default::default() }
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(ty as i32), ..Default::default() }
}
fn ai(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}
fn ais(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}
fn af(name: &str, v: f32) -> AttributeProto {
    AttributeProto { f: Some(v), ..attr(name, AttributeType::Float) }
}
fn afs(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { floats: v.to_vec(), ..attr(name, AttributeType::Floats) }
}
fn astr(name: &str, v: &str) -> AttributeProto {
    AttributeProto { s: Some(v.as_bytes().to_vec()), ..attr(name, AttributeType::String) }
}
fn at(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { t: Some(t), ..attr(name, AttributeType::Tensor) }
}

impl B {
    fn new(opset: i64) -> Self {
        B { opset, nodes: vec![], inits: vec![], inputs: vec![], outputs: vec![] }
    }
    /// A float input; negative dims are symbolic.
    fn input(mut self, name: &str, dims: &[i64]) -> Self {
        self.inputs.push(ValueInfoProto { name: Some(name.into()), r#type: Some(tensor_type(Some(dims), 1)), ..Default::default() });
        self
    }
    fn init(mut self, t: TensorProto) -> Self {
        self.inits.push(t);
        self
    }
    fn f(self, name: &str, dims: &[i64], data: Vec<f32>) -> Self {
        self.init(tf(name, dims, data))
    }
    fn i(self, name: &str, dims: &[i64], data: Vec<i64>) -> Self {
        self.init(ti(name, dims, data))
    }
    fn node(mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> Self {
        let n = self.nodes.len();
        self.nodes.push(NodeProto {
            name: Some(format!("n{n}_{op}")),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }
    fn output(mut self, name: &str) -> Self {
        self.outputs.push(ValueInfoProto { name: Some(name.into()), ..Default::default() });
        self
    }
    fn model(&self) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            graph: Some(GraphProto {
                node: self.nodes.clone(),
                name: Some("g".into()),
                initializer: self.inits.clone(),
                input: self.inputs.clone(),
                output: self.outputs.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn bytes(&self) -> Vec<u8> {
        self.model().encode_to_vec()
    }
    fn import(&self) -> Result<Imported, OnnxError> {
        import_bytes(&self.bytes(), &ImportOptions::default())
    }
    fn ok(&self) -> Imported {
        self.import().unwrap_or_else(|e| panic!("import failed: {e}"))
    }
    fn err(&self) -> String {
        match self.import() {
            Ok(i) => panic!("import unexpectedly succeeded:\n{}", i.graph),
            Err(e) => e.to_string(),
        }
    }
}

fn run(g: &Graph, inputs: &[FloatTensor]) -> Vec<FloatTensor> {
    let mut values: Vec<Option<FloatTensor>> = vec![None; g.nodes.len()];
    for (&id, x) in g.inputs.iter().zip(inputs) {
        assert_eq!(g.nodes[id].shape, x.shape());
        values[id] = Some(x.clone());
    }
    for (id, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input | Op::IntegerInput) {
            continue;
        }
        let args: Vec<&FloatTensor> = node.inputs.iter().map(|&i| values[i].as_ref().unwrap()).collect();
        values[id] = Some(eval_op(node, &args).unwrap());
    }
    g.outputs.iter().map(|&o| values[o].clone().unwrap()).collect()
}

/// Deterministic test data: small distinct values.
fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + 3) % 17) as f32 * 0.25 - 2.0).collect()
}

fn t(shape: &[usize], v: Vec<f32>) -> FloatTensor {
    Tensor::new(shape.to_vec(), v).unwrap()
}

fn run1(imp: &Imported, x: Vec<f32>) -> FloatTensor {
    let g = &imp.graph;
    let shape = g.nodes[g.inputs[0]].shape.clone();
    run(g, &[t(&shape, x)]).remove(0)
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

fn out_shape(imp: &Imported) -> Vec<usize> {
    imp.graph.nodes[imp.graph.outputs[0]].shape.clone()
}

/// Naive `[M, K] x [K, N]`.
fn mm(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
        }
    }
    out
}

// ---- model-level errors --------------------------------------------------------------------

#[test]
fn malformed_protobuf_is_a_decode_error() {
    let e = import_bytes(&[0x0a, 0xff, 0xff, 0x01], &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::Decode(_)), "{e}");
    let e = import_bytes(b"not a model at all", &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::Decode(_) | OnnxError::UnsupportedOpset(_)), "{e}");
    // An empty buffer decodes to an empty model, which has no opset.
    let e = import_bytes(&[], &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::UnsupportedOpset(_)), "{e}");
}

#[test]
fn opsets_outside_7_to_28_are_rejected() {
    for v in [1, 6, 29, 100] {
        let m = B::new(v).input("x", &[1, 2]).node("Relu", &["x"], &["y"], vec![]).output("y");
        let e = m.import().unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedOpset(_)), "{e}");
        assert!(e.to_string().contains(&format!("opset {v}")) && e.to_string().contains("7 to 28"), "{e}");
    }
    let mut model = B::new(13).input("x", &[1, 2]).node("Relu", &["x"], &["y"], vec![]).output("y").model();
    model.opset_import[0].domain = Some("com.microsoft".into());
    let e = crate::import_model(&model, &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::UnsupportedOpset(_)), "{e}");
}

#[test]
fn unsupported_op_names_node_and_lists_supported_ops() {
    let e = B::new(13).input("x", &[1, 4]).node("LpNormalization", &["x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("n0_LpNormalization") && e.contains("(LpNormalization)"), "{e}");
    assert!(e.contains("supported operators") && e.contains("Conv") && e.contains("MatMul") && e.contains("Gemm"), "{e}");
    let mut m = B::new(13).input("x", &[1, 4]).node("FusedConv", &["x"], &["y"], vec![]).output("y");
    m.nodes[0].domain = Some("com.microsoft".into());
    let e = m.err();
    assert!(e.contains("com.microsoft") && e.contains("FusedConv") && e.contains("supported operators"), "{e}");
}

#[test]
fn wrong_attribute_type_is_an_error_naming_the_node() {
    let m = B::new(13)
        .input("x", &[1, 1, 4, 4])
        .f("w", &[1, 1, 3, 3], vec![1.0; 9])
        .node("Conv", &["x", "w"], &["y"], vec![afs("strides", &[1.0, 1.0])])
        .output("y");
    let e = m.err();
    assert!(e.contains("n0_Conv") && e.contains("strides") && e.contains("INTS") && e.contains("FLOATS"), "{e}");
    let m = B::new(13).input("x", &[2, 3]).node("Flatten", &["x"], &["y"], vec![astr("axis", "1")]).output("y");
    let e = m.err();
    assert!(e.contains("n0_Flatten") && e.contains("axis") && e.contains("STRING"), "{e}");
}

#[test]
fn conv_with_a_rank_1_weight_is_a_shape_error() {
    let m = B::new(13)
        .input("x", &[1, 1, 4, 4])
        .f("w", &[9], vec![1.0; 9])
        .node("Conv", &["x", "w"], &["y"], vec![])
        .output("y");
    let e = m.import().unwrap_err();
    assert!(matches!(e, OnnxError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("n0_Conv") && e.to_string().contains("rank 4"), "{e}");
}

#[test]
fn reshape_to_an_incompatible_shape_is_a_shape_error() {
    let m = B::new(13)
        .input("x", &[1, 6])
        .i("s", &[2], vec![4, -1])
        .node("Reshape", &["x", "s"], &["y"], vec![])
        .output("y");
    let e = m.import().unwrap_err();
    assert!(matches!(e, OnnxError::Shape { .. }) && e.to_string().contains("n0_Reshape"), "{e}");
    let m = B::new(13)
        .input("x", &[1, 6])
        .i("s", &[2], vec![5, 1])
        .node("Reshape", &["x", "s"], &["y"], vec![])
        .output("y");
    assert!(m.err().contains("cannot reshape"));
    let m = B::new(13)
        .input("x", &[1, 6])
        .i("s", &[2], vec![-1, -1])
        .node("Reshape", &["x", "s"], &["y"], vec![])
        .output("y");
    assert!(m.err().contains("more than one -1"));
}

#[test]
fn reference_to_an_undefined_tensor_is_an_error() {
    let m = B::new(13).input("x", &[1, 4]).node("Add", &["x", "nowhere"], &["y"], vec![]).output("y");
    let e = m.import().unwrap_err();
    assert!(matches!(e, OnnxError::UndefinedTensor { .. }), "{e}");
    assert!(e.to_string().contains("nowhere") && e.to_string().contains("n0_Add"), "{e}");
    let m = B::new(13).input("x", &[1, 4]).node("Relu", &["x"], &["y"], vec![]).output("z");
    assert!(m.err().contains("`z`"));
}

#[test]
fn cycles_and_duplicate_producers_are_errors_and_unsorted_graphs_are_sorted() {
    let m = B::new(13)
        .input("x", &[1, 4])
        .node("Add", &["x", "b"], &["a"], vec![])
        .node("Relu", &["a"], &["b"], vec![])
        .output("b");
    assert!(m.err().contains("cycle"));
    let m = B::new(13)
        .input("x", &[1, 4])
        .node("Relu", &["x"], &["a"], vec![])
        .node("Neg", &["x"], &["a"], vec![])
        .output("a");
    assert!(m.err().contains("more than one node"));
    let m = B::new(13)
        .input("x", &[1, 4])
        .node("Neg", &["a"], &["y"], vec![])
        .node("Relu", &["x"], &["a"], vec![])
        .output("y");
    let imp = m.ok();
    assert_eq!(ops(&imp.graph), ["Input", "Relu", "Neg"]);
    close(run1(&imp, vec![-1.0, 2.0, -3.0, 4.0]).data(), &[0.0, -2.0, 0.0, -4.0]);
}

#[test]
fn external_data_is_rejected() {
    let mut w = tf("w", &[2], vec![]);
    w.data_location = Some(1);
    w.external_data = vec![StringStringEntryProto { key: Some("location".into()), value: Some("w.bin".into()) }];
    let m = B::new(13).input("x", &[1, 2]).init(w).node("Add", &["x", "w"], &["y"], vec![]).output("y");
    let e = m.import().unwrap_err();
    assert!(matches!(e, OnnxError::ExternalData { .. }), "{e}");
    assert!(e.to_string().contains("`w`") && e.to_string().contains("external"), "{e}");
}

#[test]
fn graphs_without_inputs_or_outputs_are_errors() {
    let e = B::new(13).f("c", &[1], vec![1.0]).node("Identity", &["c"], &["y"], vec![]).output("y").err();
    assert!(e.contains("no inputs"), "{e}");
    let e = B::new(13).input("x", &[1]).err();
    assert!(e.contains("no outputs"), "{e}");
    // No nodes at all: the output is the input.
    let imp = B::new(13).input("x", &[1, 3]).output("x").ok();
    assert_eq!(imp.graph.outputs, imp.graph.inputs);
}

// ---- inputs --------------------------------------------------------------------------------

#[test]
fn symbolic_dims_default_to_1_and_input_shapes_override() {
    let m = B::new(13).input("x", &[-1, 3]).node("Relu", &["x"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 3]);
    assert!(imp.notices.iter().any(|n| n.contains("symbolic")), "{:?}", imp.notices);
    let mut o = ImportOptions::default();
    o.input_shapes.insert("x".into(), vec![5, 3]);
    let imp = import_bytes(&m.bytes(), &o).unwrap();
    assert_eq!(out_shape(&imp), [5, 3]);
    o.input_shapes.insert("x".into(), vec![5, 3, 1]);
    let e = import_bytes(&m.bytes(), &o).unwrap_err();
    assert!(matches!(e, OnnxError::Input { .. }) && e.to_string().contains("rank"), "{e}");
    let mut o = ImportOptions::default();
    o.input_shapes.insert("nope".into(), vec![1]);
    let e = import_bytes(&m.bytes(), &o).unwrap_err();
    assert!(matches!(e, OnnxError::UnknownInputShapeName { .. }) && e.to_string().contains("nope"), "{e}");
    o.input_shapes.clear();
    o.input_shapes.insert("x".into(), vec![0, 3]);
    assert!(import_bytes(&m.bytes(), &o).is_err());
}

#[test]
fn inputs_without_shapes_need_input_shapes_and_non_float_inputs_are_rejected() {
    let mut m = B::new(13).input("x", &[1]).node("Relu", &["x"], &["y"], vec![]).output("y");
    m.inputs[0].r#type = Some(tensor_type(None, 1));
    assert!(m.err().contains("--input-shape"));
    let mut o = ImportOptions::default();
    o.input_shapes.insert("x".into(), vec![2, 2]);
    assert_eq!(out_shape(&import_bytes(&m.bytes(), &o).unwrap()), [2, 2]);
    m.inputs[0].r#type = Some(tensor_type(Some(&[1, 2]), 9));
    assert!(m.err().contains("BOOL"));
}

#[test]
fn initializers_listed_as_inputs_are_weights() {
    let mut m = B::new(8)
        .input("x", &[1, 2])
        .input("w", &[2, 2])
        .f("w", &[2, 2], vec![1.0, 2.0, 3.0, 4.0])
        .node("MatMul", &["x", "w"], &["y"], vec![])
        .output("y");
    m.opset = 8;
    let imp = m.ok();
    assert_eq!(imp.graph.inputs.len(), 1);
    assert_eq!(ops(&imp.graph), ["Input", "Weight", "MatMul"]);
    close(run1(&imp, vec![1.0, 1.0]).data(), &[4.0, 6.0]);
}

// ---- outputs -------------------------------------------------------------------------------

#[test]
fn graph_outputs_keep_their_onnx_names() {
    let m = B::new(13)
        .input("x", &[1, 2])
        .node("Relu", &["x"], &["r"], vec![])
        .node("Identity", &["r"], &["out1"], vec![])
        .node("Identity", &["r"], &["out2"], vec![])
        .node("Identity", &["x"], &["out3"], vec![])
        .output("out1")
        .output("out2")
        .output("r")
        .output("out3")
        .output("x");
    let imp = m.ok();
    let g = &imp.graph;
    let names: Vec<&str> = g.outputs.iter().map(|&o| g.nodes[o].name.as_str()).collect();
    assert_eq!(names, ["out1", "out2", "r", "out3", "x"]);
    let outs = run(g, &[t(&[1, 2], vec![-1.0, 2.0])]);
    for o in &outs[..3] {
        close(o.data(), &[0.0, 2.0]);
    }
    close(outs[3].data(), &[-1.0, 2.0]);
}

// ---- arithmetic ------------------------------------------------------------------------------

#[test]
fn scalar_constants_are_public_and_tensors_are_weights() {
    let m = B::new(13)
        .input("x", &[1, 2, 1, 1])
        .f("c", &[], vec![3.0])
        .f("one", &[1], vec![1.0])
        .f("w", &[2, 1, 1], vec![2.0, 4.0])
        .node("Sub", &["x", "c"], &["a"], vec![]) // x - 3
        .node("Sub", &["c", "a"], &["b"], vec![]) // 3 - a
        .node("Mul", &["b", "one"], &["m"], vec![]) // elided
        .node("Div", &["m", "c"], &["d"], vec![]) // DivScalar
        .node("Div", &["d", "w"], &["e"], vec![]) // Mul by reciprocal weight
        .node("Add", &["c", "e"], &["f"], vec![]) // AddScalar
        .node("Mul", &["f", "w"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    let g = &imp.graph;
    assert_eq!(
        ops(g).into_iter().filter(|o| !matches!(*o, "Weight" | "Input")).collect::<Vec<_>>(),
        ["AddScalar", "Neg", "AddScalar", "DivScalar", "Mul", "AddScalar", "Mul"]
    );
    assert!(g.nodes.iter().any(|n| matches!(n.op, Op::AddScalar(c) if c == -3.0)));
    let x = [1.0f32, 5.0];
    let want: Vec<f32> = x
        .iter()
        .zip([2.0f32, 4.0])
        .map(|(&x, w)| ((3.0 - (x - 3.0)) / 3.0 / w + 3.0) * w)
        .collect();
    close(run1(&imp, x.to_vec()).data(), &want);
}

#[test]
fn scalar_broadcast_that_grows_the_rank_reshapes() {
    let m = B::new(13).input("x", &[3]).f("c", &[1, 1], vec![2.0]).node("Mul", &["x", "c"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 3]);
    close(run1(&imp, vec![1.0, 2.0, 3.0]).data(), &[2.0, 4.0, 6.0]);
}

#[test]
fn division_by_computed_values() {
    // Two computed tensors: HLIL Div, with broadcasting.
    let imp = B::new(13).input("x", &[2, 2]).f("w", &[2, 1], vec![1.0, 2.0]).node("Add", &["x", "w"], &["d"], vec![])
        .node("Div", &["x", "d"], &["y"], vec![]).output("y").ok();
    assert!(ops(&imp.graph).contains(&"Div"), "{:?}", ops(&imp.graph));
    let x = [1.0f32, 2.0, 3.0, 4.0];
    close(run1(&imp, x.to_vec()).data(), &[1.0 / 2.0, 2.0 / 3.0, 3.0 / 5.0, 4.0 / 6.0]);
    // A constant tensor divided by a computed one: the weight is the dividend.
    let imp = B::new(13).input("x", &[1, 2]).f("c", &[1, 2], vec![3.0, 4.0]).node("Div", &["c", "x"], &["y"], vec![]).output("y").ok();
    close(run1(&imp, vec![2.0, 8.0]).data(), &[1.5, 0.5]);
    // A scalar constant divided by a computed tensor: a public multiple of the reciprocal.
    let imp = B::new(13).input("x", &[1, 2]).f("c", &[], vec![3.0]).node("Div", &["c", "x"], &["y"], vec![]).output("y").ok();
    assert_eq!(ops(&imp.graph), ["Input", "Reciprocal", "MulScalar"]);
    close(run1(&imp, vec![2.0, -4.0]).data(), &[1.5, -0.75]);
    let e = B::new(13).input("x", &[1, 2]).f("c", &[], vec![0.0]).node("Div", &["x", "c"], &["y"], vec![]).output("y").err();
    assert!(e.contains("division by the constant 0"), "{e}");
    let e = B::new(13).input("x", &[1, 2]).input("z", &[1, 3]).node("Div", &["x", "z"], &["y"], vec![]).output("y").err();
    assert!(e.contains("shape error"), "{e}");
}

#[test]
fn activations_and_two_activation_arithmetic() {
    let m = B::new(13)
        .input("x", &[1, 4])
        .node("LeakyRelu", &["x"], &["l"], vec![af("alpha", 0.5)])
        .node("Mul", &["l", "x"], &["m"], vec![])
        .node("Sub", &["m", "x"], &["s"], vec![])
        .node("Sum", &["s", "x", "l"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    let x = [-2.0f32, -1.0, 1.0, 3.0];
    let want: Vec<f32> = x
        .iter()
        .map(|&x| {
            let l = if x >= 0.0 { x } else { 0.5 * x };
            l * x - x + x + l
        })
        .collect();
    close(run1(&imp, x.to_vec()).data(), &want);
}

#[test]
fn clip_forms() {
    // Opset 9: attributes; Clip(0, inf) is a Relu.
    let imp = B::new(9).input("x", &[1, 3]).node("Clip", &["x"], &["y"], vec![af("min", 0.0)]).output("y").ok();
    assert_eq!(ops(&imp.graph), ["Input", "Relu"]);
    // Opset 13: inputs from constants, max only; no bounds at all is the identity.
    let imp = B::new(13)
        .input("x", &[1, 3])
        .f("hi", &[], vec![1.0])
        .node("Clip", &["x", "", "hi"], &["c"], vec![])
        .node("Clip", &["c"], &["y"], vec![])
        .output("y")
        .ok();
    assert!(matches!(imp.graph.nodes[1].op, Op::Clip { min, max } if min == f32::NEG_INFINITY && max == 1.0));
    close(run1(&imp, vec![-5.0, 0.5, 5.0]).data(), &[-5.0, 0.5, 1.0]);
    let e = B::new(13).input("x", &[1, 3]).node("Clip", &["x", "x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("constant"), "{e}");
}

// ---- convolutions ----------------------------------------------------------------------------

#[test]
fn conv_auto_pad_and_groups_geometry() {
    let m = B::new(13)
        .input("x", &[1, 4, 7, 7])
        .f("w", &[8, 1, 3, 3], vec![0.1; 72])
        .f("b", &[8], vec![0.0; 8])
        .node(
            "Conv",
            &["x", "w", "b"],
            &["y"],
            vec![astr("auto_pad", "SAME_LOWER"), ais("strides", &[2, 2]), ai("group", 4), ais("kernel_shape", &[3, 3])],
        )
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 8, 4, 4]);
    let Op::Conv(g) = &imp.graph.nodes[imp.graph.outputs[0]].op else { panic!() };
    // out 4, total padding (4-1)*2+3-7 = 2: one on each side.
    assert_eq!((g.pads_begin.clone(), g.pads_end.clone(), g.groups), (vec![1, 1], vec![1, 1], 4));
    // A wrong kernel_shape, a group count that does not divide, a kernel larger than the input.
    let e = B::new(13)
        .input("x", &[1, 4, 7, 7])
        .f("w", &[8, 1, 3, 3], vec![0.1; 72])
        .node("Conv", &["x", "w"], &["y"], vec![ai("group", 3)])
        .output("y")
        .err();
    assert!(e.contains("groups"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 1, 2, 2])
        .f("w", &[1, 1, 3, 3], vec![0.1; 9])
        .node("Conv", &["x", "w"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("exceeds"), "{e}");
}

/// 1-D ConvTranspose, x = [1, 2, 3], w = ones(3); expected values from onnxruntime 1.32.
#[test]
fn conv_transpose_output_shape_and_auto_pad_match_onnxruntime() {
    let case = |stride: i64, attrs: Vec<AttributeProto>| {
        let mut a = vec![ais("strides", &[stride])];
        a.extend(attrs);
        let m = B::new(17)
            .input("x", &[1, 1, 3])
            .f("w", &[1, 1, 3], vec![1.0; 3])
            .node("ConvTranspose", &["x", "w"], &["y"], a)
            .output("y");
        run1(&m.ok(), vec![1.0, 2.0, 3.0]).data().to_vec()
    };
    close(&case(2, vec![]), &[1., 1., 3., 2., 5., 3., 3.]);
    close(&case(2, vec![ais("output_shape", &[6])]), &[1., 3., 2., 5., 3., 3.]);
    close(&case(2, vec![ais("output_shape", &[6]), astr("auto_pad", "SAME_UPPER")]), &[1., 1., 3., 2., 5., 3.]);
    close(&case(2, vec![ais("output_shape", &[6]), astr("auto_pad", "SAME_LOWER")]), &[1., 3., 2., 5., 3., 3.]);
    close(&case(2, vec![ais("output_shape", &[5])]), &[1., 3., 2., 5., 3.]);
    close(&case(2, vec![ais("output_shape", &[8])]), &[1., 1., 3., 2., 5., 3., 3., 0.]);
    close(&case(2, vec![astr("auto_pad", "SAME_UPPER")]), &[1., 1., 3., 2., 5., 3.]);
    close(&case(2, vec![astr("auto_pad", "SAME_LOWER")]), &[1., 3., 2., 5., 3., 3.]);
    close(&case(2, vec![ais("output_padding", &[1]), ais("pads", &[1, 0])]), &[1., 3., 2., 5., 3., 3., 0.]);
    close(&case(3, vec![ais("output_shape", &[11])]), &[1., 1., 1., 2., 2., 2., 3., 3., 3., 0., 0.]);
    let e = B::new(17)
        .input("x", &[1, 1, 3])
        .f("w", &[1, 1, 3], vec![1.0; 3])
        .node("ConvTranspose", &["x", "w"], &["y"], vec![ais("strides", &[3]), ais("output_shape", &[12])])
        .output("y")
        .err();
    assert!(e.contains("inconsistent"), "{e}");
    let e = B::new(17)
        .input("x", &[1, 1, 3])
        .f("w", &[1, 1, 3], vec![1.0; 3])
        .node("ConvTranspose", &["x", "w"], &["y"], vec![ais("pads", &[4, 4])])
        .output("y")
        .err();
    assert!(e.contains("no output"), "{e}");
}

// ---- pooling ---------------------------------------------------------------------------------

fn pool1d(op: &str, n: i64, k: i64, s: i64, pads: &[i64], extra: Vec<AttributeProto>) -> Result<Vec<f32>, String> {
    let mut a = vec![ais("kernel_shape", &[k]), ais("strides", &[s]), ais("pads", pads), ai("ceil_mode", 1)];
    a.extend(extra);
    let m = B::new(17).input("x", &[1, 1, n]).node(op, &["x"], &["y"], a).output("y");
    let imp = m.import().map_err(|e| e.to_string())?;
    Ok(run1(&imp, (0..n).map(|i| i as f32).collect()).data().to_vec())
}

/// Expected values from onnxruntime 1.32 on x = arange(n).
#[test]
fn ceil_mode_pooling_matches_onnxruntime() {
    close(&pool1d("MaxPool", 5, 2, 2, &[1, 1], vec![]).unwrap(), &[0., 2., 4.]);
    close(&pool1d("MaxPool", 6, 2, 2, &[1, 1], vec![]).unwrap(), &[0., 2., 4., 5.]);
    close(&pool1d("MaxPool", 5, 3, 2, &[0, 0], vec![]).unwrap(), &[2., 4.]);
    close(&pool1d("MaxPool", 5, 3, 2, &[0, 1], vec![]).unwrap(), &[2., 4., 4.]);
    let inc = || vec![ai("count_include_pad", 1)];
    close(&pool1d("AveragePool", 6, 2, 2, &[1, 1], inc()).unwrap(), &[0., 1.5, 3.5, 2.5]);
    close(&pool1d("AveragePool", 5, 3, 2, &[1, 1], inc()).unwrap(), &[1. / 3., 2., 7. / 3.]);
    close(&pool1d("AveragePool", 5, 3, 2, &[0, 1], inc()).unwrap(), &[1., 3., 2.]);
    close(&pool1d("AveragePool", 5, 2, 2, &[0, 1], inc()).unwrap(), &[0.5, 2.5, 2.0]);
    close(&pool1d("AveragePool", 5, 3, 2, &[0, 1], vec![]).unwrap(), &[1., 3., 4.]);
    close(&pool1d("AveragePool", 6, 2, 2, &[1, 1], vec![]).unwrap(), &[0., 1.5, 3.5, 5.]);
}

#[test]
fn pooling_errors() {
    let e = pool1d("MaxPool", 6, 2, 2, &[0, 0], vec![ais("dilations", &[2])]).unwrap_err();
    assert!(e.contains("dilations") && e.contains("MaxPool"), "{e}");
    let m = B::new(13)
        .input("x", &[1, 1, 4])
        .node("MaxPool", &["x"], &["y", "idx"], vec![ais("kernel_shape", &[2])])
        .node("Cast", &["idx"], &["z"], vec![ai("to", 1)])
        .output("y")
        .output("z");
    assert!(m.err().contains("Indices"));
    // An unused Indices output is fine.
    let m = B::new(13).input("x", &[1, 1, 4]).node("MaxPool", &["x"], &["y", "idx"], vec![ais("kernel_shape", &[2])]).output("y");
    assert_eq!(out_shape(&m.ok()), [1, 1, 3]);
    let e = B::new(13).input("x", &[1, 1, 4]).node("MaxPool", &["x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("kernel_shape"), "{e}");
}

#[test]
fn global_pools() {
    let m = B::new(13)
        .input("x", &[1, 2, 2, 2])
        .node("GlobalAveragePool", &["x"], &["a"], vec![])
        .node("GlobalMaxPool", &["x"], &["m"], vec![])
        .node("Add", &["a", "m"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 2, 1, 1]);
    close(run1(&imp, vec![1., 2., 3., 6., -1., -2., -3., -6.]).data(), &[3.0 + 6.0, -3.0 - 1.0]);
}

// ---- batch norm, dropout, argmax, softmax ----------------------------------------------------

#[test]
fn batch_norm_and_its_errors() {
    let bn = |opset: i64, attrs: Vec<AttributeProto>, outs: &[&str]| {
        B::new(opset)
            .input("x", &[1, 2, 1, 1])
            .f("s", &[2], vec![1.0, 2.0])
            .f("b", &[2], vec![0.5, 0.0])
            .f("m", &[2], vec![1.0, -1.0])
            .f("v", &[2], vec![4.0, 1.0])
            .node("BatchNormalization", &["x", "s", "b", "m", "v"], outs, attrs)
            .output("y")
    };
    let imp = bn(15, vec![af("epsilon", 0.0)], &["y"]).ok();
    close(run1(&imp, vec![3.0, 1.0]).data(), &[1.0 * (3.0 - 1.0) / 2.0 + 0.5, 2.0 * (1.0 + 1.0)]);
    let e = bn(15, vec![ai("training_mode", 1)], &["y"]).err();
    assert!(e.contains("training_mode"), "{e}");
    let mut m = bn(9, vec![], &["y", "rm"]);
    m = m.node("Identity", &["rm"], &["z"], vec![]).output("z");
    assert!(m.err().contains("training statistics"));
}

#[test]
fn dropout_argmax_and_cast() {
    let m = B::new(13)
        .input("x", &[2, 3])
        .f("r", &[], vec![0.5])
        .node("Dropout", &["x", "r"], &["d", "mask"], vec![])
        .node("ArgMax", &["d"], &["a"], vec![ai("axis", -1), ai("keepdims", 0)])
        .node("Cast", &["a"], &["y"], vec![ai("to", 7)])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2]);
    close(run1(&imp, vec![1., 3., 2., 5., 4., 0.]).data(), &[1.0, 0.0]);
    let e = B::new(13).input("x", &[2, 3]).node("ArgMax", &["x"], &["y"], vec![ai("select_last_index", 1)]).output("y").err();
    assert!(e.contains("select_last_index"), "{e}");
    let e = B::new(13).input("x", &[2, 3]).node("Cast", &["x"], &["y"], vec![ai("to", 7)]).output("y").err();
    assert!(e.contains("Cast"), "{e}");
    let t = TensorProto { data_type: Some(9), dims: vec![], int32_data: vec![1], ..Default::default() };
    let e = B::new(13)
        .input("x", &[2, 3])
        .node("Constant", &[], &["tm"], vec![at("value", t)])
        .node("Dropout", &["x", "", "tm"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("training_mode"), "{e}");
    let e = B::new(7)
        .input("x", &[2, 3])
        .node("Dropout", &["x"], &["y", "mask"], vec![])
        .node("Cast", &["mask"], &["z"], vec![ai("to", 1)])
        .output("y")
        .output("z")
        .err();
    assert!(e.contains("mask"), "{e}");
}

fn softmax_rows(x: &[f32], n: usize, log: bool) -> Vec<f32> {
    x.chunks(n)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = r.iter().map(|v| (v - m).exp()).sum();
            r.iter().map(move |v| if log { v - m - s.ln() } else { (v - m).exp() / s }).collect::<Vec<_>>()
        })
        .collect()
}

fn strip() -> ImportOptions {
    ImportOptions { strip_output_softmax: true, ..Default::default() }
}

#[test]
fn softmax_is_computed_unless_stripped_at_the_output() {
    let m = B::new(13)
        .input("x", &[1, 4])
        .node("Softmax", &["x"], &["p"], vec![])
        .node("Identity", &["p"], &["prob"], vec![])
        .output("prob");
    // By default the output is computed.
    let imp = m.ok();
    assert!(imp.notices.is_empty(), "{:?}", imp.notices);
    assert!(ops(&imp.graph).contains(&"Softmax"));
    let g = &imp.graph;
    assert_eq!(g.nodes[g.outputs[0]].name, "prob");
    close(run1(&imp, vec![1., 2., 3., 4.]).data(), &softmax_rows(&[1., 2., 3., 4.], 4, false));
    // Stripped on request, with a notice.
    let imp = import_bytes(&m.bytes(), &strip()).unwrap();
    assert_eq!(
        imp.notices,
        ["Softmax `p` at the output compiled away: it preserves the argmax, so predictions are unchanged (outputs are logits)"]
    );
    assert_eq!(imp.graph.nodes[imp.graph.outputs[0]].name, "prob");
    close(run1(&imp, vec![1., 2., 3., 4.]).data(), &[1., 2., 3., 4.]);
    // Over the batch axis (axis 0 of [4, 1]) or a rank-1 output: computed, with a notice.
    for (shape, axis) in [(&[4i64, 1][..], 0), (&[4][..], 0)] {
        let m = B::new(13).input("x", shape).node("Softmax", &["x"], &["p"], vec![ai("axis", axis)]).output("p");
        let imp = import_bytes(&m.bytes(), &strip()).unwrap();
        assert!(imp.notices.iter().any(|n| n.contains("is computed")), "{:?}", imp.notices);
        close(run1(&imp, vec![1., 2., 3., 4.]).data(), &softmax_rows(&[1., 2., 3., 4.], 4, false));
    }
    // Anywhere in a graph: computed, also with strip_output_softmax.
    let m = B::new(13)
        .input("x", &[2, 3])
        .node("LogSoftmax", &["x"], &["p"], vec![])
        .node("Relu", &["p"], &["y"], vec![])
        .node("Softmax", &["p"], &["z"], vec![ai("axis", 0)])
        .output("y")
        .output("z");
    for options in [ImportOptions::default(), strip()] {
        let imp = import_bytes(&m.bytes(), &options).unwrap();
        let x = data(6);
        let outs = run(&imp.graph, &[t(&[2, 3], x.clone())]);
        let ls = softmax_rows(&x, 3, true);
        close(outs[0].data(), &ls.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
        // Softmax over axis 0 of the [2, 3] log-probabilities.
        let lt = [ls[0], ls[3], ls[1], ls[4], ls[2], ls[5]];
        let st = softmax_rows(&lt, 2, false);
        close(outs[1].data(), &[st[0], st[2], st[4], st[1], st[3], st[5]]);
    }
}

#[test]
fn softmax_before_opset_13_coerces_to_2d() {
    // [2, 3, 2] with axis 1: softmax over the 6 values of each sample.
    for (op, log) in [("Softmax", false), ("LogSoftmax", true)] {
        let imp = B::new(11).input("x", &[2, 3, 2]).node(op, &["x"], &["y"], vec![]).output("y").ok();
        let x = data(12);
        close(run1(&imp, x.clone()).data(), &softmax_rows(&x, 6, log));
        // axis 2 (the last): one axis.
        let imp = B::new(11).input("x", &[2, 3, 2]).node(op, &["x"], &["y"], vec![ai("axis", 2)]).output("y").ok();
        close(run1(&imp, x.clone()).data(), &softmax_rows(&x, 2, log));
        // Opset 13: the default axis is -1.
        let imp = B::new(13).input("x", &[2, 3, 2]).node(op, &["x"], &["y"], vec![]).output("y").ok();
        close(run1(&imp, x.clone()).data(), &softmax_rows(&x, 2, log));
    }
    // The coerced form over axis 0 mixes the batch: computed even when stripping is asked.
    let m = B::new(11).input("x", &[2, 3]).node("Softmax", &["x"], &["y"], vec![ai("axis", 0)]).output("y");
    let imp = import_bytes(&m.bytes(), &strip()).unwrap();
    close(run1(&imp, data(6)).data(), &softmax_rows(&data(6), 6, false));
    let e = B::new(13).input("x", &[2, 3]).node("Softmax", &["x"], &["y"], vec![ai("axis", 2)]).output("y").err();
    assert!(e.contains("out of range"), "{e}");
}

// ---- shape manipulation --------------------------------------------------------------------

#[test]
fn pytorch_shape_subgraph_is_evaluated_at_import() {
    // y = x.reshape(x.shape[0], -1) through Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
    // plus Range/ConstantOfShape/Equal/Where/Expand/ReduceProd/Cast/Div arithmetic on shapes.
    let m = B::new(13)
        .input("x", &[-1, 2, 3])
        .i("zero", &[], vec![0])
        .i("minus1", &[1], vec![-1])
        .i("ax0", &[1], vec![0])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Gather", &["s", "zero"], &["n"], vec![ai("axis", 0)])
        .node("Unsqueeze", &["n", "ax0"], &["n1"], vec![])
        .node("Concat", &["n1", "minus1"], &["target"], vec![ai("axis", 0)])
        .node("Reshape", &["x", "target"], &["flat"], vec![])
        .node("ReduceProd", &["s"], &["total"], vec![ai("keepdims", 0)])
        .node("Cast", &["total"], &["totalf"], vec![ai("to", 1)])
        .node("Div", &["totalf", "totalf"], &["onef"], vec![])
        .node("Cast", &["onef"], &["one"], vec![ai("to", 7)])
        .node("Add", &["one", "one"], &["two"], vec![])
        .node("Range", &["one", "two", "one"], &["r"], vec![])
        .node("ConstantOfShape", &["r"], &["cos"], vec![at("value", ti("", &[1], vec![6]))])
        .node("Equal", &["cos", "total"], &["eq"], vec![])
        .node("Where", &["eq", "n1", "minus1"], &["w"], vec![])
        .node("Expand", &["w", "r"], &["e"], vec![])
        .node("Mul", &["flat", "e"], &["y"], vec![]) // a single-element constant: MulScalar(1) elided
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 6]);
    assert_eq!(ops(&imp.graph), ["Input", "Reshape"]);
}

#[test]
fn flatten_squeeze_unsqueeze_transpose_concat() {
    let m = B::new(11)
        .input("x", &[1, 2, 1, 3])
        .f("c", &[1, 2], vec![7.0, 8.0])
        .node("Squeeze", &["x"], &["s"], vec![ais("axes", &[-2])])
        .node("Unsqueeze", &["s"], &["u"], vec![ais("axes", &[0, 4])])
        .node("Flatten", &["u"], &["f"], vec![ai("axis", -2)])
        .node("Transpose", &["f"], &["tr"], vec![])
        .node("Concat", &["tr", "c"], &["y"], vec![ai("axis", -2)])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [4, 2]);
    close(run1(&imp, (0..6).map(|i| i as f32).collect()).data(), &[0., 3., 1., 4., 2., 5., 7., 8.]);
    // Opset 13 input forms; squeezing an axis that is not 1 is an error.
    let m = B::new(13)
        .input("x", &[1, 2, 1, 3])
        .i("a", &[1], vec![1])
        .node("Squeeze", &["x", "a"], &["y"], vec![])
        .output("y");
    assert!(m.err().contains("cannot squeeze"));
    let m = B::new(13)
        .input("x", &[2, 3])
        .i("a", &[2], vec![-1, 0])
        .node("Unsqueeze", &["x", "a"], &["y"], vec![])
        .output("y");
    assert_eq!(out_shape(&m.ok()), [1, 2, 3, 1]);
    let e = B::new(13).input("x", &[2, 3]).node("Transpose", &["x"], &["y"], vec![ais("perm", &[0, 0])]).output("y").err();
    assert!(e.contains("permutation"), "{e}");
    let e = B::new(13).input("x", &[2, 3]).node("Concat", &["x", "x"], &["y"], vec![ai("axis", 2)]).output("y").err();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn slice_forms() {
    let x: Vec<f32> = (0..20).map(|i| i as f32).collect(); // [4, 5]
    let sl = |opset: i64, b: B| {
        let _ = opset;
        run1(&b.ok(), x.clone()).data().to_vec()
    };
    // Attribute form (opset 9), no axes, clamped ends.
    let m = B::new(9).input("x", &[4, 5]).node("Slice", &["x"], &["y"], vec![ais("starts", &[1, -2]), ais("ends", &[100, 5])]).output("y");
    close(&sl(9, m), &[8., 9., 13., 14., 18., 19.]);
    // Input form: negative step from the end through index 0, i64 extremes.
    let m = B::new(13)
        .input("x", &[4, 5])
        .i("s", &[1], vec![i64::MAX])
        .i("e", &[1], vec![i64::MIN])
        .i("a", &[1], vec![-1])
        .i("st", &[1], vec![-2])
        .node("Slice", &["x", "s", "e", "a", "st"], &["y"], vec![])
        .output("y");
    close(&sl(13, m), &[4., 2., 0., 9., 7., 5., 14., 12., 10., 19., 17., 15.]);
    let m = B::new(13)
        .input("x", &[4, 5])
        .i("s", &[2], vec![3, 1])
        .i("e", &[2], vec![0, 4])
        .i("a", &[2], vec![0, 1])
        .i("st", &[2], vec![-1, 2])
        .node("Slice", &["x", "s", "e", "a", "st"], &["y"], vec![])
        .output("y");
    close(&sl(13, m), &[16., 18., 11., 13., 6., 8.]);
    // An empty slice is a trivial constant: fine when concatenated, an error when computed on.
    let m = B::new(13)
        .input("x", &[4, 5])
        .i("s", &[1], vec![3])
        .i("e", &[1], vec![1])
        .node("Slice", &["x", "s", "e"], &["empty"], vec![])
        .node("Concat", &["x", "empty"], &["y"], vec![ai("axis", 0)])
        .output("y");
    assert_eq!(out_shape(&m.ok()), [4, 5]);
    let m = B::new(13)
        .input("x", &[4, 5])
        .i("s", &[1], vec![3])
        .i("e", &[1], vec![1])
        .node("Slice", &["x", "s", "e"], &["empty"], vec![])
        .node("Relu", &["empty"], &["y"], vec![])
        .output("y");
    assert!(m.err().contains("empty"));
    let m = B::new(13)
        .input("x", &[4, 5])
        .i("s", &[1], vec![0])
        .i("e", &[1], vec![1])
        .i("a", &[1], vec![0])
        .i("st", &[1], vec![0])
        .node("Slice", &["x", "s", "e", "a", "st"], &["y"], vec![])
        .output("y");
    assert!(m.err().contains("step 0"));
}

#[test]
fn split_forms() {
    let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
    // Opset 18 num_outputs with an uneven split: 4, 4, 2.
    let m = B::new(18)
        .input("x", &[1, 10])
        .node("Split", &["x"], &["a", "b", "c"], vec![ai("axis", 1), ai("num_outputs", 3)])
        .output("a")
        .output("b")
        .output("c");
    let imp = m.ok();
    let outs = run(&imp.graph, &[t(&[1, 10], x.clone())]);
    close(outs[0].data(), &[0., 1., 2., 3.]);
    close(outs[1].data(), &[4., 5., 6., 7.]);
    close(outs[2].data(), &[8., 9.]);
    let names: Vec<&str> = imp.graph.outputs.iter().map(|&o| imp.graph.nodes[o].name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Opset 13 split input; opset 11 attribute.
    let m = B::new(13)
        .input("x", &[1, 10])
        .i("sp", &[2], vec![3, 7])
        .node("Split", &["x", "sp"], &["a", "b"], vec![ai("axis", -1)])
        .output("b");
    close(run1(&m.ok(), x.clone()).data(), &[3., 4., 5., 6., 7., 8., 9.]);
    let m = B::new(11).input("x", &[1, 10]).node("Split", &["x"], &["a", "b"], vec![ai("axis", 1), ais("split", &[3, 6])]).output("b");
    assert!(m.err().contains("add up"));
}

#[test]
fn gather_scalar_vector_and_matrix_indices() {
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect(); // [3, 4]
    let m = B::new(13).input("x", &[3, 4]).i("i", &[], vec![-1]).node("Gather", &["x", "i"], &["y"], vec![ai("axis", 1)]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [3]);
    close(run1(&imp, x.clone()).data(), &[3., 7., 11.]);
    let m = B::new(13).input("x", &[3, 4]).i("i", &[2, 2], vec![2, 0, 1, 1]).node("Gather", &["x", "i"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2, 2, 4]);
    close(
        run1(&imp, x.clone()).data(),
        &[8., 9., 10., 11., 0., 1., 2., 3., 4., 5., 6., 7., 4., 5., 6., 7.],
    );
    let m = B::new(13).input("x", &[3, 4]).i("i", &[1], vec![3]).node("Gather", &["x", "i"], &["y"], vec![]).output("y");
    assert!(m.err().contains("out of range"));
    let m = B::new(13).input("x", &[3, 4]).node("Gather", &["x", "x"], &["y"], vec![]).output("y");
    assert!(m.err().contains("constant"));
}

#[test]
fn pad_forms() {
    let x = vec![1.0, 2.0, 3.0, 4.0]; // [1, 4]
    let m = B::new(2 + 7).input("x", &[1, 4]).node("Pad", &["x"], &["y"], vec![ais("pads", &[0, 1, 0, 2]), af("value", 9.0)]).output("y");
    close(run1(&m.ok(), x.clone()).data(), &[9., 1., 2., 3., 4., 9., 9.]);
    // Opset 13: negative pads crop.
    let m = B::new(13)
        .input("x", &[1, 4])
        .i("p", &[4], vec![0, -1, 0, 1])
        .f("v", &[], vec![-1.0])
        .node("Pad", &["x", "p", "v"], &["y"], vec![])
        .output("y");
    close(run1(&m.ok(), x.clone()).data(), &[2., 3., 4., -1.]);
    // Opset 18 axes input.
    let m = B::new(18)
        .input("x", &[1, 4])
        .i("p", &[2], vec![1, 0])
        .i("a", &[1], vec![-1])
        .node("Pad", &["x", "p", "", "a"], &["y"], vec![])
        .output("y");
    close(run1(&m.ok(), x.clone()).data(), &[0., 1., 2., 3., 4.]);
    let m = B::new(13)
        .input("x", &[1, 4])
        .i("p", &[4], vec![0, 1, 0, 1])
        .node("Pad", &["x", "p"], &["y"], vec![astr("mode", "reflect")])
        .output("y");
    assert!(m.err().contains("reflect"));
}

#[test]
fn expand_and_tile_of_activations() {
    let m = B::new(13)
        .input("x", &[2, 1])
        .i("s", &[3], vec![2, 1, 3])
        .i("r", &[3], vec![1, 2, 1])
        .node("Expand", &["x", "s"], &["e"], vec![])
        .node("Tile", &["e", "r"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2, 4, 3]);
    let y = run1(&imp, vec![1.0, 2.0]);
    let row1 = [1.0f32; 3];
    let row2 = [2.0f32; 3];
    let one: Vec<f32> = [row1, row2, row1, row2].concat();
    close(y.data(), &[one.clone(), one].concat());
}

#[test]
fn reductions() {
    let x: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [1, 2, 3]
    let m = B::new(13).input("x", &[1, 2, 3]).node("ReduceMean", &["x"], &["y"], vec![ais("axes", &[-1]), ai("keepdims", 0)]).output("y");
    close(run1(&m.ok(), x.clone()).data(), &[1.0, 4.0]);
    let m = B::new(18)
        .input("x", &[1, 2, 3])
        .i("a", &[2], vec![2, 1])
        .node("ReduceMean", &["x", "a"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 1, 1]);
    close(run1(&imp, x.clone()).data(), &[2.5]);
    let m = B::new(18).input("x", &[1, 2, 3]).node("ReduceMean", &["x"], &["y"], vec![ai("noop_with_empty_axes", 1)]).output("y");
    assert_eq!(out_shape(&m.ok()), [1, 2, 3]);
    let m = B::new(13)
        .input("x", &[1, 2, 3])
        .i("a", &[1], vec![1])
        .node("ReduceSum", &["x", "a"], &["y"], vec![])
        .output("y");
    close(run1(&m.ok(), x.clone()).data(), &[3., 5., 7.]);
    // ReduceMax/ReduceMin of computed tensors (axes an attribute before opset 18, an input
    // from 18).
    let m = B::new(13).input("x", &[1, 2, 3]).node("ReduceMax", &["x"], &["y"], vec![]).output("y");
    close(run1(&m.ok(), x.clone()).data(), &[5.0]);
    let m = B::new(13).input("x", &[1, 2, 3]).node("ReduceMin", &["x"], &["y"], vec![ais("axes", &[2]), ai("keepdims", 0)]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 2]);
    close(run1(&imp, x.clone()).data(), &[0.0, 3.0]);
    let m = B::new(18).input("x", &[1, 2, 3]).i("a", &[1], vec![-2]).node("ReduceMax", &["x", "a"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [1, 1, 3]);
    close(run1(&imp, x.clone()).data(), &[3.0, 4.0, 5.0]);
    let m = B::new(18).input("x", &[1, 2, 3]).i("a", &[1], vec![3]).node("ReduceMin", &["x", "a"], &["y"], vec![]).output("y");
    assert!(m.err().contains("out of range"));
}

// ---- matrix products -------------------------------------------------------------------------

#[test]
fn gemm_variants() {
    let a = data(6); // [2, 3]
    let b = data(12); // [3, 4] (or [4, 3] transposed)
    let c = vec![0.5, -1.0, 2.0, 1.5];
    // transA with A = [3, 2] input, transB, alpha, beta, 1-D C.
    let m = B::new(13)
        .input("a", &[3, 2])
        .f("b", &[4, 3], b.clone())
        .f("c", &[4], c.clone())
        .node("Gemm", &["a", "b", "c"], &["y"], vec![ai("transA", 1), ai("transB", 1), af("alpha", 2.0), af("beta", 0.5)])
        .output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2, 4]);
    // No Transpose of the weight remains: it was folded.
    assert_eq!(imp.graph.nodes.iter().filter(|n| matches!(n.op, Op::Transpose { .. })).count(), 1);
    let at: Vec<f32> = (0..6).map(|i| a[(i % 3) * 2 + i / 3]).collect(); // [2, 3] = a^T
    let bt: Vec<f32> = (0..12).map(|i| b[(i % 4) * 3 + i / 4]).collect(); // [3, 4] = b^T
    let want: Vec<f32> = mm(&at, &bt, 2, 3, 4).iter().enumerate().map(|(i, v)| 2.0 * v + 0.5 * c[i % 4]).collect();
    close(run1(&imp, a.clone()).data(), &want);
    // A constant, B computed; scalar C is a public AddScalar.
    let m = B::new(13)
        .input("b", &[3, 4])
        .f("a", &[2, 3], a.clone())
        .f("c", &[], vec![1.0])
        .node("Gemm", &["a", "b", "c"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    assert!(imp.graph.nodes.iter().any(|n| matches!(n.op, Op::AddScalar(v) if v == 1.0)));
    let want: Vec<f32> = mm(&a, &b, 2, 3, 4).iter().map(|v| v + 1.0).collect();
    close(run1(&imp, b.clone()).data(), &want);
    let e = B::new(13).input("a", &[1, 2, 3]).f("b", &[3, 4], b.clone()).node("Gemm", &["a", "b"], &["y"], vec![]).output("y").err();
    assert!(e.contains("matrices"), "{e}");
}

#[test]
fn matmul_variants() {
    let a = data(24); // [2, 3, 4]
    let w = data(20); // [4, 5]
    let m = B::new(13).input("x", &[2, 3, 4]).f("w", &[4, 5], w.clone()).node("MatMul", &["x", "w"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2, 3, 5]);
    close(run1(&imp, a.clone()).data(), &mm(&a, &w, 6, 4, 5));
    // 1-D operands.
    let m = B::new(13).input("x", &[4]).f("w", &[4, 5], w.clone()).node("MatMul", &["x", "w"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [5]);
    close(run1(&imp, data(4)).data(), &mm(&data(4), &w, 1, 4, 5));
    let m = B::new(13).input("x", &[3, 4]).f("v", &[4], data(4)).node("MatMul", &["x", "v"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [3]);
    close(run1(&imp, data(12)).data(), &mm(&data(12), &data(4), 3, 4, 1));
    // Constant left operand: W [5, 4] x X [2, 4, 3] -> [2, 5, 3].
    let wl = data(20);
    let x = data(24);
    let m = B::new(13).input("x", &[2, 4, 3]).f("w", &[5, 4], wl.clone()).node("MatMul", &["w", "x"], &["y"], vec![]).output("y");
    let imp = m.ok();
    assert_eq!(out_shape(&imp), [2, 5, 3]);
    let want: Vec<f32> = [mm(&wl, &x[..12], 5, 4, 3), mm(&wl, &x[12..], 5, 4, 3)].concat();
    close(run1(&imp, x.clone()).data(), &want);
    // Batched computed right operand: one batched HLIL MatMul.
    let imp = B::new(13).input("x", &[2, 3, 3]).node("MatMul", &["x", "x"], &["y"], vec![]).output("y").ok();
    assert_eq!(ops(&imp.graph), ["Input", "MatMul"]);
    let x = data(18);
    let want: Vec<f32> = [mm(&x[..9], &x[..9], 3, 3, 3), mm(&x[9..], &x[9..], 3, 3, 3)].concat();
    close(run1(&imp, x.clone()).data(), &want);
    let e = B::new(13).input("x", &[2, 3]).f("w", &[4, 5], w).node("MatMul", &["x", "w"], &["y"], vec![]).output("y").err();
    assert!(e.contains("inner extents"), "{e}");
}

// ---- constants -------------------------------------------------------------------------------

#[test]
fn constant_forms_and_tensor_encodings() {
    let sparse = SparseTensorProto {
        values: Some(tf("sv", &[2], vec![5.0, 6.0])),
        indices: Some(ti("si", &[2], vec![0, 3])),
        dims: vec![4],
    };
    let raw16 = TensorProto {
        dims: vec![4],
        data_type: Some(10),
        raw_data: Some([0x3c00u16, 0xc000, 0x3800, 0].iter().flat_map(|h| h.to_le_bytes()).collect()),
        ..Default::default()
    };
    let raw64 = TensorProto {
        dims: vec![4],
        data_type: Some(11),
        raw_data: Some([1.0f64, 2.0, 3.0, 4.0].iter().flat_map(|h| h.to_le_bytes()).collect()),
        ..Default::default()
    };
    let m = B::new(13)
        .input("x", &[4])
        .node("Constant", &[], &["a"], vec![AttributeProto { sparse_tensor: Some(sparse), ..attr("sparse_value", AttributeType::SparseTensor) }])
        .node("Constant", &[], &["b"], vec![at("value", raw16)])
        .node("Constant", &[], &["c"], vec![afs("value_floats", &[1.0, 1.0, 1.0, 1.0])])
        .node("Constant", &[], &["d"], vec![at("value", raw64)])
        .node("Constant", &[], &["k"], vec![ai("value_int", 2)])
        .node("Constant", &[], &["f"], vec![af("value_float", 0.5)])
        .node("Add", &["x", "a"], &["s1"], vec![])
        .node("Add", &["s1", "b"], &["s2"], vec![])
        .node("Add", &["s2", "c"], &["s3"], vec![])
        .node("Mul", &["s3", "d"], &["s4"], vec![])
        .node("Mul", &["s4", "k"], &["s5"], vec![])
        .node("Mul", &["s5", "f"], &["y"], vec![])
        .output("y");
    let imp = m.ok();
    let x = [1.0f32, 1.0, 1.0, 1.0];
    let a = [5.0, 0.0, 0.0, 6.0];
    let b = [1.0, -2.0, 0.5, 0.0];
    let d = [1.0, 2.0, 3.0, 4.0];
    let want: Vec<f32> = (0..4).map(|i| (x[i] + a[i] + b[i] + 1.0) * d[i] * 2.0 * 0.5).collect();
    close(run1(&imp, x.to_vec()).data(), &want);
    // Weight data that does not match its dims.
    let e = B::new(13).input("x", &[2]).f("w", &[3], vec![1.0, 2.0]).node("Add", &["x", "w"], &["y"], vec![]).output("y").err();
    assert!(e.contains("`w`") && e.contains("float_data"), "{e}");
    let e = B::new(13).input("x", &[2]).node("Constant", &[], &["y"], vec![]).output("y").err();
    assert!(e.contains("without a value"), "{e}");
}

// ---- robustness ------------------------------------------------------------------------------

#[test]
fn huge_dimensions_are_errors_not_panics() {
    let big = 1i64 << 40;
    let e = B::new(13).input("x", &[big, big]).node("Relu", &["x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("too large"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 4])
        .i("s", &[3], vec![1 << 30, 1 << 30, 1 << 30])
        .node("Reshape", &["x", "s"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("n0_Reshape"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 4])
        .i("s", &[2], vec![1 << 20, 1 << 20])
        .node("ConstantOfShape", &["s"], &["c"], vec![])
        .node("Add", &["x", "c"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("too large"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 4])
        .i("s", &[3], vec![1 << 20, 1 << 20, 4])
        .node("Expand", &["x", "s"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("n0_Expand"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 4])
        .i("p", &[4], vec![0, 0, 1 << 40, 0])
        .node("Pad", &["x", "p"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("n0_Pad"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 1, 4])
        .f("w", &[1, 1, 1], vec![1.0])
        .node("ConvTranspose", &["x", "w"], &["y"], vec![ais("strides", &[1 << 30]), ais("dilations", &[1 << 30])])
        .output("y")
        .err();
    assert!(e.contains("n0_ConvTranspose"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 1, 4])
        .f("w", &[1, 1, 1], vec![1.0])
        .node("Conv", &["x", "w"], &["y"], vec![ais("pads", &[i64::MAX, 0])])
        .output("y")
        .err();
    assert!(e.contains("n0_Conv"), "{e}");
    let e = B::new(13)
        .input("x", &[1, 4])
        .i("s", &[], vec![0])
        .i("l", &[], vec![i64::MAX])
        .i("d", &[], vec![1])
        .node("Range", &["s", "l", "d"], &["r"], vec![])
        .node("Add", &["x", "r"], &["y"], vec![])
        .output("y")
        .err();
    assert!(e.contains("too large"), "{e}");
}

/// A small CNN touching many code paths, used as the seed of the mutation test.
fn seed_model() -> Vec<u8> {
    B::new(13)
        .input("x", &[-1, 2, 6, 6])
        .f("w", &[4, 2, 3, 3], data(72))
        .f("b", &[4], data(4))
        .f("bn_s", &[4], vec![1.0, 0.5, 2.0, 1.5])
        .f("bn_b", &[4], data(4))
        .f("bn_m", &[4], data(4))
        .f("bn_v", &[4], vec![1.0, 2.0, 0.5, 1.0])
        .f("fc", &[10, 16], data(160))
        .f("fcb", &[10], data(10))
        .i("zero", &[], vec![0])
        .i("m1", &[1], vec![-1])
        .i("ax0", &[1], vec![0])
        .f("half", &[], vec![0.5])
        .node("Conv", &["x", "w", "b"], &["c"], vec![ais("pads", &[1, 1, 1, 1]), ais("strides", &[1, 1])])
        .node("BatchNormalization", &["c", "bn_s", "bn_b", "bn_m", "bn_v"], &["bn"], vec![])
        .node("Relu", &["bn"], &["r"], vec![])
        .node("MaxPool", &["r"], &["p"], vec![ais("kernel_shape", &[2, 2]), ais("strides", &[3, 3]), ai("ceil_mode", 1)])
        .node("Mul", &["p", "half"], &["ph"], vec![])
        .node("Shape", &["ph"], &["s"], vec![])
        .node("Gather", &["s", "zero"], &["n"], vec![])
        .node("Unsqueeze", &["n", "ax0"], &["n1"], vec![])
        .node("Concat", &["n1", "m1"], &["shp"], vec![ai("axis", 0)])
        .node("Reshape", &["ph", "shp"], &["flat"], vec![])
        .node("Gemm", &["flat", "fc", "fcb"], &["logits"], vec![ai("transB", 1)])
        .node("Softmax", &["logits"], &["prob"], vec![])
        .output("prob")
        .bytes()
}

#[test]
fn seed_model_imports() {
    let imp = import_bytes(&seed_model(), &ImportOptions::default()).unwrap();
    assert_eq!(out_shape(&imp), [1, 10]);
    imp.graph.validate().unwrap();
}

/// Mutated models must give Ok or Err, never a panic.
#[test]
fn mutated_models_never_panic() {
    let seed = seed_model();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut mutants: Vec<Vec<u8>> = Vec::new();
    // Truncation at every length.
    for len in 0..seed.len() {
        mutants.push(seed[..len].to_vec());
    }
    // Random bit flips, byte replacements with interesting values, insertions and deletions.
    let specials = [0x00u8, 0xff, 0x7f, 0x80, 0x01, 0x08, 0x10, 0x12, 0x1a, 0x22];
    for round in 0..6000 {
        let mut m = seed.clone();
        let edits = 1 + (next() % 4) as usize;
        for _ in 0..edits {
            let pos = (next() as usize) % m.len();
            match round % 4 {
                0 => m[pos] ^= 1 << (next() % 8),
                1 => m[pos] = specials[(next() as usize) % specials.len()],
                2 => m.insert(pos, next() as u8),
                _ => {
                    m.remove(pos);
                }
            }
        }
        mutants.push(m);
    }
    let mut panics = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for (i, m) in mutants.iter().enumerate() {
        match std::panic::catch_unwind(|| import_bytes(m, &ImportOptions::default())) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                err += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push(format!("mutant {i}: {msg}"));
            }
        }
    }
    assert!(panics.is_empty(), "{} panics (ok {ok}, err {err}):\n{}", panics.len(), panics[..panics.len().min(20)].join("\n"));
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}

/// Semantic mutations of a valid model: every attribute replaced by values of other types
/// and extreme values, every input renamed, nodes dropped.
#[test]
fn semantically_mutated_models_never_panic() {
    use prost::Message as _;
    let base = ModelProto::decode(&seed_model()[..]).unwrap();
    let extremes = [i64::MIN, -1, 0, 1, 2, 3, 7, 1 << 31, i64::MAX];
    let mut variants: Vec<ModelProto> = Vec::new();
    let g = base.graph.as_ref().unwrap();
    for (ni, node) in g.node.iter().enumerate() {
        // Drop the node.
        let mut m = base.clone();
        m.graph.as_mut().unwrap().node.remove(ni);
        variants.push(m);
        // Replace each input by every other tensor name (and the empty name).
        let names: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).chain(g.initializer.iter().filter_map(|t| t.name.clone())).chain([String::new(), "x".into()]).collect();
        for ii in 0..node.input.len() {
            for name in &names {
                let mut m = base.clone();
                m.graph.as_mut().unwrap().node[ni].input[ii] = name.clone();
                variants.push(m);
            }
        }
        // Attribute mutations.
        for ai_ in 0..node.attribute.len() {
            for &v in &extremes {
                let mut m = base.clone();
                let a = &mut m.graph.as_mut().unwrap().node[ni].attribute[ai_];
                if a.i.is_some() {
                    a.i = Some(v);
                } else {
                    a.ints.iter_mut().for_each(|x| *x = v);
                }
                variants.push(m.clone());
                let a = &mut m.graph.as_mut().unwrap().node[ni].attribute[ai_];
                a.ints.push(v);
                variants.push(m);
            }
            let mut m = base.clone();
            let a = &mut m.graph.as_mut().unwrap().node[ni].attribute[ai_];
            a.r#type = Some(AttributeType::Float as i32);
            a.f = Some(1.5);
            variants.push(m);
        }
        // Extra unknown attributes with known names but wrong types.
        for name in ["axis", "pads", "strides", "perm", "axes", "keepdims", "auto_pad", "group", "to", "value"] {
            let mut m = base.clone();
            m.graph.as_mut().unwrap().node[ni].attribute.push(astr(name, "SAME_UPPER"));
            variants.push(m);
        }
    }
    // Initializer mutations: wrong dims, values, types.
    for ii in 0..g.initializer.len() {
        for dims in [vec![], vec![0], vec![-1], vec![1 << 40, 1 << 40], vec![2, 3]] {
            let mut m = base.clone();
            m.graph.as_mut().unwrap().initializer[ii].dims = dims;
            variants.push(m);
        }
        for ty in [0, 2, 6, 8, 9, 10, 11, 14, 100] {
            let mut m = base.clone();
            m.graph.as_mut().unwrap().initializer[ii].data_type = Some(ty);
            variants.push(m);
        }
        for &v in &extremes {
            let mut m = base.clone();
            let t = &mut m.graph.as_mut().unwrap().initializer[ii];
            t.int64_data.iter_mut().for_each(|x| *x = v);
            t.float_data.iter_mut().for_each(|x| *x = v as f32);
            variants.push(m);
        }
    }
    let mut panics = Vec::new();
    for (i, m) in variants.iter().enumerate() {
        if let Err(p) = std::panic::catch_unwind(|| crate::import_model(m, &ImportOptions::default())) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panics.push(format!("variant {i}: {msg}"));
        }
    }
    assert!(panics.is_empty(), "{} of {} variants panicked:\n{}", panics.len(), variants.len(), panics[..panics.len().min(20)].join("\n"));
}

/// The HLIL evaluation of transposes of activations agrees with the import-time evaluator
/// (the same model with the input as a constant) for every permutation of ranks 2 to 4.
#[test]
fn transposes_of_activations_and_constants_agree() {
    fn perms(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in perms(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }
    let mut failures = Vec::new();
    for shape in [vec![2usize, 3], vec![2, 3, 4], vec![2, 3, 1, 4]] {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        for perm in perms(shape.len()) {
            let p: Vec<i64> = perm.iter().map(|&v| v as i64).collect();
            let act = B::new(13).input("x", &dims).node("Transpose", &["x"], &["y"], vec![ais("perm", &p)]).output("y").ok();
            let got = run1(&act, x.clone());
            let konst = B::new(13)
                .input("unused", &[1])
                .f("x", &dims, x.clone())
                .node("Transpose", &["x"], &["y"], vec![ais("perm", &p)])
                .output("y")
                .ok();
            let g = &konst.graph;
            let want = g.weight_value(g.outputs[0]).unwrap();
            if got.data() != want.data() || got.shape() != want.shape() {
                failures.push(format!("{shape:?} perm {perm:?}: {:?} vs {:?}", got.data(), want.data()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- operators of the math library ------------------------------------------------------------

#[test]
fn integer_inputs_are_integer_client_inputs() {
    let mut m = B::new(13)
        .input("ids", &[1, 3])
        .f("w", &[1, 3], vec![0.5, 1.0, 2.0])
        .node("Cast", &["ids"], &["f"], vec![ai("to", 1)])
        .node("Mul", &["f", "w"], &["y"], vec![])
        .output("y");
    for elem in [6, 7] {
        m.inputs[0].r#type = Some(tensor_type(Some(&[1, 3]), elem));
        let imp = m.ok();
        let g = &imp.graph;
        assert!(matches!(g.nodes[g.inputs[0]].op, Op::IntegerInput), "{g}");
        // The cast to float is the identity.
        assert_eq!(ops(g), ["IntegerInput", "Weight", "Mul"]);
        close(run1(&imp, vec![1.0, 2.0, 3.0]).data(), &[0.5, 2.0, 6.0]);
    }
    // CastLike of an integer input to a float constant: also the identity.
    m.opset = 15;
    m.nodes[0] = NodeProto { op_type: Some("CastLike".into()), input: vec!["ids".into(), "w".into()], attribute: vec![], ..m.nodes[0].clone() };
    assert_eq!(ops(&m.ok().graph), ["IntegerInput", "Weight", "Mul"]);
    // A computed float cast (or CastLike) to an integer type is still rejected.
    let e = B::new(15).input("x", &[1, 2]).i("t", &[1], vec![0]).node("CastLike", &["x", "t"], &["y"], vec![]).output("y").err();
    assert!(e.contains("integer type"), "{e}");
}

#[test]
fn elementwise_functions_of_computed_and_constant_tensors() {
    let x = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
    type Case = (&'static str, Vec<AttributeProto>, i64, Box<dyn Fn(f32) -> f32>);
    let cases: Vec<Case> = vec![
        ("Sigmoid", vec![], 13, Box::new(|v| 1.0 / (1.0 + (-v).exp()))),
        ("Tanh", vec![], 13, Box::new(f32::tanh)),
        ("Exp", vec![], 13, Box::new(f32::exp)),
        ("Abs", vec![], 13, Box::new(f32::abs)),
        ("Softplus", vec![], 13, Box::new(|v| (1.0 + v.exp()).ln())),
        ("Softsign", vec![], 13, Box::new(|v| v / (1.0 + v.abs()))),
        ("Mish", vec![], 18, Box::new(|v| v * (1.0 + v.exp()).ln().tanh())),
        ("Elu", vec![af("alpha", 0.5)], 13, Box::new(|v| if v >= 0.0 { v } else { 0.5 * (v.exp() - 1.0) })),
        ("Selu", vec![af("alpha", 2.0), af("gamma", 3.0)], 13, Box::new(|v| 3.0 * if v >= 0.0 { v } else { 2.0 * (v.exp() - 1.0) })),
        ("HardSigmoid", vec![], 13, Box::new(|v| (0.2 * v + 0.5).clamp(0.0, 1.0))),
        ("HardSwish", vec![], 14, Box::new(|v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0))),
        ("Gelu", vec![astr("approximate", "tanh")], 20, Box::new(|v| {
            0.5 * v * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
        })),
    ];
    for (op, attrs, opset, f) in cases {
        let want: Vec<f32> = x.iter().map(|&v| f(v)).collect();
        let imp = B::new(opset).input("x", &[1, 5]).node(op, &["x"], &["y"], attrs.clone()).output("y").ok();
        assert_eq!(imp.graph.nodes[imp.graph.outputs[0]].name, "y", "{op}");
        close(run1(&imp, x.to_vec()).data(), &want);
        // Of a constant: evaluated at import time (the graph adds the input to it).
        let imp = B::new(opset)
            .input("x", &[1, 5])
            .f("c", &[1, 5], x.to_vec())
            .node(op, &["c"], &["fc"], attrs)
            .node("Add", &["x", "fc"], &["y"], vec![])
            .output("y")
            .ok();
        assert_eq!(ops(&imp.graph), ["Input", "Weight", "Add"], "{op}");
        close(run1(&imp, vec![0.0; 5]).data(), &want);
    }
    // Log, Sqrt and Reciprocal of positive values.
    let p = [0.25f32, 1.0, 4.0];
    for (op, f) in [("Log", f32::ln as fn(f32) -> f32), ("Sqrt", f32::sqrt), ("Reciprocal", f32::recip)] {
        let imp = B::new(13).input("x", &[3]).node(op, &["x"], &["y"], vec![]).output("y").ok();
        close(run1(&imp, p.to_vec()).data(), &p.iter().map(|&v| f(v)).collect::<Vec<_>>());
    }
    let e = B::new(20).input("x", &[2]).node("Gelu", &["x"], &["y"], vec![astr("approximate", "erf")]).output("y").err();
    assert!(e.contains("approximate"), "{e}");
    let e = B::new(17).input("x", &[2]).node("Gelu", &["x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("from opset 20"), "{e}");
}

#[test]
fn pow_with_constant_exponents() {
    let x = [0.5f32, 1.5, 2.0, 3.0];
    for (e, expect_ops) in [
        (2.0f32, vec!["Input", "Mul"]),
        (5.0, vec!["Input", "Mul", "Mul", "Mul"]),
        (-3.0, vec!["Input", "Mul", "Mul", "Reciprocal"]),
        (0.5, vec!["Input", "Sqrt"]),
        (-0.5, vec!["Input", "Rsqrt"]),
        (-1.0, vec!["Input", "Reciprocal"]),
        // The identity (the output, an input, gets its name from a reshape).
        (1.0, vec!["Input", "Reshape"]),
    ] {
        let imp = B::new(15).input("x", &[4]).f("e", &[], vec![e]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").ok();
        assert_eq!(ops(&imp.graph), expect_ops, "exponent {e}");
        close(run1(&imp, x.to_vec()).data(), &x.iter().map(|v| v.powf(e)).collect::<Vec<_>>());
    }
    // A [1, 1] exponent broadcasts the rank.
    let imp = B::new(15).input("x", &[4]).f("e", &[1, 1], vec![2.0]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").ok();
    assert_eq!(out_shape(&imp), [1, 4]);
    let e = B::new(15).input("x", &[4]).f("e", &[], vec![1.5]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").err();
    assert!(e.contains("exponent 1.5 is not supported"), "{e}");
    // Elementwise exponents: each distinct power once, selected by public masks.
    let imp = B::new(15).input("x", &[4]).f("e", &[4], vec![2.0, 3.0, 2.0, -1.0]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").ok();
    assert_eq!(ops(&imp.graph).iter().filter(|&&o| o == "MulConst").count(), 3);
    close(run1(&imp, x.to_vec()).data(), &[0.25, 3.375, 4.0, 1.0 / 3.0]);
    // Broadcast both ways ([2, 1] ^ [3] -> [2, 3]), with a zero exponent and a square root.
    let imp = B::new(15).input("x", &[2, 1]).f("e", &[3], vec![0.0, 0.5, 2.0]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").ok();
    assert_eq!(out_shape(&imp), [2, 3]);
    close(run1(&imp, vec![4.0, 9.0]).data(), &[1.0, 2.0, 16.0, 1.0, 3.0, 81.0]);
    let e = B::new(15).input("x", &[4]).f("e", &[4], vec![2.0, 3.0, 2.5, 2.0]).node("Pow", &["x", "e"], &["y"], vec![]).output("y").err();
    assert!(e.contains("exponent 2.5 is not supported"), "{e}");
    let e = B::new(15).input("x", &[10]).f("e", &[10], (0..10).map(|v| v as f32).collect()).node("Pow", &["x", "e"], &["y"], vec![]).output("y").err();
    assert!(e.contains("10 distinct values"), "{e}");
    let e = B::new(15).input("x", &[4]).node("Pow", &["x", "x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("only constant exponents"), "{e}");
}

#[test]
fn max_min_prelu_of_computed_tensors() {
    let x = [-2.0f32, -0.5, 1.0, 3.0];
    // Max with a scalar constant stays a public clip; Min of two computed tensors is HLIL Min.
    let imp = B::new(13)
        .input("x", &[1, 4])
        .f("c", &[], vec![0.5])
        .node("Max", &["x", "c"], &["m"], vec![])
        .node("Neg", &["x"], &["n"], vec![])
        .node("Min", &["m", "n"], &["y"], vec![])
        .output("y")
        .ok();
    assert_eq!(ops(&imp.graph), ["Input", "Clip", "Neg", "Min"]);
    close(run1(&imp, x.to_vec()).data(), &x.iter().map(|&v| v.max(0.5).min(-v)).collect::<Vec<_>>());
    // PRelu with a per-channel slope on [N, C, W], and with a computed slope.
    let imp = B::new(16)
        .input("x", &[1, 2, 2])
        .f("s", &[2, 1], vec![0.1, 0.2])
        .node("PRelu", &["x", "s"], &["y"], vec![])
        .output("y")
        .ok();
    close(run1(&imp, x.to_vec()).data(), &[-0.2, -0.05, 1.0, 3.0]);
    let imp = B::new(16).input("x", &[4]).node("Abs", &["x"], &["a"], vec![]).node("PRelu", &["x", "a"], &["y"], vec![]).output("y").ok();
    close(run1(&imp, x.to_vec()).data(), &[-4.0, -0.25, 1.0, 3.0]);
    // The slope must broadcast to the input (unidirectionally).
    let e = B::new(16).input("x", &[1, 2, 2]).f("s", &[3], vec![0.1; 3]).node("PRelu", &["x", "s"], &["y"], vec![]).output("y").err();
    assert!(e.contains("does not broadcast"), "{e}");
    let e = B::new(16).input("x", &[2]).f("s", &[2, 2], vec![0.1; 4]).node("PRelu", &["x", "s"], &["y"], vec![]).output("y").err();
    assert!(e.contains("does not broadcast"), "{e}");
}

#[test]
fn layer_norm_mean_and_inv_std_dev_outputs() {
    // [2, 2, 3], axis 1: statistics over the last two axes, kept dims [2, 1, 1].
    let x = data(12);
    let (scale, bias) = (vec![0.5f32, 1.0, 1.5, 2.0, 2.5, 3.0], vec![0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]);
    let m = B::new(17)
        .input("x", &[2, 2, 3])
        .f("s", &[2, 3], scale.clone())
        .f("b", &[2, 3], bias.clone())
        .node("LayerNormalization", &["x", "s", "b"], &["y", "mean", "inv"], vec![ai("axis", 1), af("epsilon", 0.01)])
        .output("y")
        .output("mean")
        .output("inv");
    let imp = m.ok();
    assert!(!ops(&imp.graph).contains(&"Normalize"));
    let shapes: Vec<Vec<usize>> = imp.graph.outputs.iter().map(|&o| imp.graph.nodes[o].shape.clone()).collect();
    assert_eq!(shapes, [vec![2, 2, 3], vec![2, 1, 1], vec![2, 1, 1]]);
    let got = run(&imp.graph, &[t(&[2, 2, 3], x.clone())]);
    let (mut y, mut means, mut invs) = (vec![], vec![], vec![]);
    for row in x.chunks(6) {
        let mu = row.iter().sum::<f32>() / 6.0;
        let inv = 1.0 / (row.iter().map(|v| (v - mu).powi(2)).sum::<f32>() / 6.0 + 0.01).sqrt();
        y.extend(row.iter().enumerate().map(|(i, v)| (v - mu) * inv * scale[i] + bias[i]));
        means.push(mu);
        invs.push(inv);
    }
    close(got[0].data(), &y);
    close(got[1].data(), &means);
    close(got[2].data(), &invs);
    // Only InvStdDev used (Mean's name empty), default axis -1.
    let imp = B::new(17)
        .input("x", &[3, 4])
        .f("s", &[4], vec![1.0; 4])
        .node("LayerNormalization", &["x", "s"], &["y", "", "inv"], vec![])
        .output("inv")
        .ok();
    assert_eq!(out_shape(&imp), [3, 1]);
    let x = data(12);
    let want: Vec<f32> = x
        .chunks(4)
        .map(|r| {
            let mu = r.iter().sum::<f32>() / 4.0;
            1.0 / (r.iter().map(|v| (v - mu).powi(2)).sum::<f32>() / 4.0 + 1e-5).sqrt()
        })
        .collect();
    close(run1(&imp, x).data(), &want);
}

#[test]
fn normalisation_errors() {
    // An unused Mean output is fine (and the normalisation stays one Normalize).
    let m = B::new(17).input("x", &[2, 4]).f("s", &[4], vec![1.0; 4]).node("LayerNormalization", &["x", "s"], &["y", "mean"], vec![]).output("y");
    let x = [1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 0.0, 1.0];
    let norm = |r: &[f32]| {
        let mu = r.iter().sum::<f32>() / 4.0;
        let var = r.iter().map(|v| (v - mu).powi(2)).sum::<f32>() / 4.0;
        r.iter().map(|v| (v - mu) / (var + 1e-5).sqrt()).collect::<Vec<_>>()
    };
    let imp = m.ok();
    assert!(ops(&imp.graph).contains(&"Normalize"));
    close(run1(&imp, x.to_vec()).data(), &[norm(&x[..4]), norm(&x[4..])].concat());
    let e = B::new(17).input("x", &[2, 4]).f("s", &[3], vec![1.0; 3]).node("LayerNormalization", &["x", "s"], &["y"], vec![]).output("y").err();
    assert!(e.contains("Scale of shape [3]"), "{e}");
    let e = B::new(13).input("x", &[2, 4]).f("s", &[4], vec![1.0; 4]).node("LayerNormalization", &["x", "s"], &["y"], vec![]).output("y").err();
    assert!(e.contains("from opset 17"), "{e}");
    let gn = |opset: i64, groups: i64, params: usize| {
        B::new(opset)
            .input("x", &[1, 6, 2])
            .f("s", &[params as i64], vec![1.0; params])
            .f("b", &[params as i64], vec![0.0; params])
            .node("GroupNormalization", &["x", "s", "b"], &["y"], vec![ai("num_groups", groups)])
            .output("y")
    };
    assert!(gn(21, 4, 6).err().contains("does not divide"));
    assert!(gn(21, 3, 3).err().contains("one per channel"));
    assert!(gn(18, 3, 6).err().contains("one per group"));
    gn(18, 3, 3).ok();
    gn(21, 3, 6).ok();
    let e = B::new(13).input("x", &[1, 3]).f("s", &[3], vec![1.0; 3]).node("InstanceNormalization", &["x", "s", "s"], &["y"], vec![]).output("y").err();
    assert!(e.contains("rank 3 or more"), "{e}");
}

#[test]
fn resize_forms_and_errors() {
    // tf_half_pixel_for_nn, nearest x2 on [1, 3]: source index floor((i + 0.5) / 2) rounded.
    let imp = B::new(11)
        .input("x", &[1, 3])
        .f("roi", &[0], vec![])
        .f("sc", &[2], vec![1.0, 2.0])
        .node("Resize", &["x", "roi", "sc"], &["y"], vec![astr("coordinate_transformation_mode", "tf_half_pixel_for_nn")])
        .output("y")
        .ok();
    assert_eq!(ops(&imp.graph), ["Input", "Gather"]);
    // (i + 0.5) / 2 = 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, rounded (ties to floor), clamped.
    close(run1(&imp, vec![1.0, 2.0, 3.0]).data(), &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
    let resize = |attrs: Vec<AttributeProto>, scales: Option<Vec<f32>>, sizes: Option<Vec<i64>>| {
        let mut m = B::new(19).input("x", &[1, 1, 2, 2]);
        let mut inputs = vec!["x", ""];
        if let Some(s) = scales {
            m = m.f("sc", &[s.len() as i64], s);
            inputs.push("sc");
        } else {
            inputs.push("");
        }
        if let Some(s) = sizes {
            m = m.i("sz", &[s.len() as i64], s);
            inputs.push("sz");
        }
        m.node("Resize", &inputs, &["y"], attrs).output("y")
    };
    let e = resize(vec![astr("coordinate_transformation_mode", "tf_crop_and_resize")], Some(vec![1.0, 1.0, 2.0, 2.0]), None).err();
    assert!(e.contains("roi"), "{e}");
    let e = resize(vec![astr("mode", "nearest"), ai("antialias", 1)], Some(vec![1.0, 1.0, 0.5, 0.5]), None).err();
    assert!(e.contains("antialias"), "{e}");
    let e = resize(vec![], Some(vec![1.0, 1.0, 2.0, 2.0]), Some(vec![1, 1, 4, 4])).err();
    assert!(e.contains("both scales and sizes"), "{e}");
    let e = resize(vec![], None, None).err();
    assert!(e.contains("neither scales nor sizes"), "{e}");
    let e = resize(vec![], Some(vec![2.0, 2.0]), None).err();
    assert!(e.contains("4 entries"), "{e}");
    let e = resize(vec![], Some(vec![1.0, 1.0, 0.0, 2.0]), None).err();
    assert!(e.contains("positive"), "{e}");
    let e = resize(vec![astr("nearest_mode", "round")], Some(vec![1.0, 1.0, 2.0, 2.0]), None).err();
    assert!(e.contains("nearest_mode"), "{e}");
    // Linear x2 along the last axis of [1, 1, 2, 2] (half_pixel): public coefficients.
    let imp = resize(vec![astr("mode", "linear")], Some(vec![1.0, 1.0, 1.0, 2.0]), None).ok();
    assert!(imp.graph.nodes.iter().any(|n| matches!(n.op, Op::MulConst(_))));
    // x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1.
    close(run1(&imp, vec![1.0, 2.0, 3.0, 5.0]).data(), &[1.0, 1.25, 1.75, 2.0, 3.0, 3.5, 4.5, 5.0]);
}

#[test]
fn resize_taps_follow_the_onnx_reference() {
    // One resized axis of [1, 1, 1, W]; expected values from onnx.reference.ops.op_resize.
    let resize = |w: i64, attrs: Vec<AttributeProto>, roi: Option<Vec<f32>>, scale: Option<f32>, size: Option<i64>| {
        let mut m = B::new(19).input("x", &[1, 1, 1, w]);
        let mut inputs = vec!["x"];
        match roi {
            Some(r) => {
                m = m.f("roi", &[8], r);
                inputs.push("roi");
            }
            None => inputs.push(""),
        }
        if let Some(s) = scale {
            m = m.f("sc", &[4], vec![1.0, 1.0, 1.0, s]);
            inputs.push("sc");
        } else {
            m = m.i("sz", &[4], vec![1, 1, 1, size.unwrap()]);
            inputs.extend(["", "sz"]);
        }
        m.node("Resize", &inputs, &["y"], attrs).output("y").ok()
    };
    let x = vec![1.0, 2.0, 3.0, 5.0];
    // Cubic (A = -0.75, half_pixel) x2: four taps of public coefficients.
    let imp = resize(4, vec![astr("mode", "cubic")], None, Some(2.0), None);
    assert_eq!(ops(&imp.graph).iter().filter(|&&o| o == "MulConst").count(), 4);
    close(run1(&imp, x.clone()).data(), &[0.894_531_3, 1.191_406_3, 1.667_968_8, 2.261_718_8, 2.597_656_3, 3.558_593_8, 4.582_031_3, 5.210_937_5]);
    // Cubic, A = -0.5, exclude_outside: the taps outside the input dropped and renormalised.
    let imp = resize(4, vec![astr("mode", "cubic"), af("cubic_coeff_a", -0.5), ai("exclude_outside", 1)], None, Some(2.0), None);
    close(
        run1(&imp, x.clone()).data(),
        &[0.911_764_7, 1.167_883_2, 1.709_923_6, 2.226_562_5, 2.679_687_5, 3.511_450_4, 4.642_336, 5.176_470_6],
    );
    // Antialiased downsampling: linear x0.5 (4 taps), cubic to 4 of 6 (a wider kernel).
    let x6 = vec![1.0, 2.0, 3.0, 5.0, 8.0, 13.0];
    let imp = resize(6, vec![astr("mode", "linear"), ai("antialias", 1)], None, Some(0.5), None);
    close(run1(&imp, x6.clone()).data(), &[1.625, 4.25, 10.125]);
    let imp = resize(6, vec![astr("mode", "cubic"), ai("antialias", 1)], None, None, Some(4));
    close(run1(&imp, x6).data(), &[1.233_796_3, 2.645_061_7, 5.604_938_3, 11.599_537]);
    // tf_crop_and_resize: roi [0.5, 1.5] of the last axis; outside the input, the extrapolation value.
    let roi = vec![0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.5];
    let attrs = vec![astr("mode", "linear"), astr("coordinate_transformation_mode", "tf_crop_and_resize"), af("extrapolation_value", -1.0)];
    let imp = resize(4, attrs, Some(roi), None, Some(3));
    close(run1(&imp, x).data(), &[2.5, 5.0, -1.0]);
    // align_corners with a scale that does not give a whole extent: the unrounded extent
    // 4 * 0.6 = 2.4 places the second sample at 3 / 1.4 (3.142857 for 1, 2, 3, 4), not at 3.
    let imp = resize(4, vec![astr("mode", "linear"), astr("coordinate_transformation_mode", "align_corners")], None, Some(0.6), None);
    close(run1(&imp, vec![1.0, 2.0, 3.0, 4.0]).data(), &[1.0, 3.142_857]);
}

#[test]
fn einsum_ellipses_and_diagonals() {
    let x = data(18);
    // Batch diagonal "...ii ->...i" of [2, 3, 3] (spaces are ignored).
    let imp = B::new(12).input("x", &[2, 3, 3]).node("Einsum", &["x"], &["y"], vec![astr("equation", "...ii ->...i")]).output("y").ok();
    assert_eq!(out_shape(&imp), [2, 3]);
    let want: Vec<f32> = (0..2).flat_map(|b| (0..3).map(move |i| b * 9 + i * 4)).map(|k| x[k]).collect();
    close(run1(&imp, x.clone()).data(), &want);
    // The trace (implicit output: the repeated letter is summed).
    let imp = B::new(12).input("x", &[3, 3]).node("Einsum", &["x"], &["y"], vec![astr("equation", "ii")]).output("y").ok();
    assert_eq!(out_shape(&imp), Vec::<usize>::new());
    close(run1(&imp, x[..9].to_vec()).data(), &[x[0] + x[4] + x[8]]);
    // Batched products with ellipses; the implicit output puts the ellipsis first.
    let imp = B::new(12)
        .input("a", &[2, 2, 3])
        .f("b", &[3, 2], data(6))
        .node("Einsum", &["a", "b"], &["y"], vec![astr("equation", "...ij,jk")])
        .output("y")
        .ok();
    assert_eq!(out_shape(&imp), [2, 2, 2]);
    let a = data(12);
    let want = [mm(&a[..6], &data(6), 2, 3, 2), mm(&a[6..], &data(6), 2, 3, 2)].concat();
    close(run1(&imp, a).data(), &want);
}

#[test]
fn depth_space_and_einsum_errors_and_forms() {
    // SpaceToDepth CRD (opset 28) is the inverse of DepthToSpace CRD.
    let imp = B::new(28)
        .input("x", &[1, 2, 2, 4])
        .node("SpaceToDepth", &["x"], &["s"], vec![ai("blocksize", 2), astr("mode", "CRD")])
        .node("DepthToSpace", &["s"], &["y"], vec![ai("blocksize", 2), astr("mode", "CRD")])
        .output("y")
        .ok();
    let x = data(16);
    close(run1(&imp, x.clone()).data(), &x);
    // DCR: channel c of the output block (i, j) comes from input channel (i * 2 + j) * C' + c.
    let imp = B::new(13).input("x", &[1, 4, 1, 1]).node("DepthToSpace", &["x"], &["y"], vec![ai("blocksize", 2)]).output("y").ok();
    assert_eq!(out_shape(&imp), [1, 1, 2, 2]);
    close(run1(&imp, vec![1.0, 2.0, 3.0, 4.0]).data(), &[1.0, 2.0, 3.0, 4.0]);
    let e = B::new(13).input("x", &[1, 3, 2, 2]).node("DepthToSpace", &["x"], &["y"], vec![ai("blocksize", 2)]).output("y").err();
    assert!(e.contains("not a multiple"), "{e}");
    let e = B::new(13).input("x", &[1, 3, 3, 2]).node("SpaceToDepth", &["x"], &["y"], vec![ai("blocksize", 2)]).output("y").err();
    assert!(e.contains("not multiples"), "{e}");
    let e = B::new(13).input("x", &[1, 4, 2]).node("DepthToSpace", &["x"], &["y"], vec![ai("blocksize", 2)]).output("y").err();
    assert!(e.contains("rank 4"), "{e}");
    // Einsum: "ij,jk" (implicit output ik) of two computed matrices is one MatMul.
    let imp = B::new(12).input("x", &[2, 2]).node("Einsum", &["x", "x"], &["y"], vec![astr("equation", "ij,jk")]).output("y").ok();
    assert_eq!(ops(&imp.graph), ["Input", "MatMul"]);
    close(run1(&imp, vec![1.0, 2.0, 3.0, 4.0]).data(), &[7.0, 10.0, 15.0, 22.0]);
    let einsum = |eq: &str, shapes: &[&[i64]]| {
        let mut m = B::new(12);
        let names = ["a", "b", "c"];
        for (i, s) in shapes.iter().enumerate() {
            m = m.input(names[i], s);
        }
        m.node("Einsum", &names[..shapes.len()], &["y"], vec![astr("equation", eq)]).output("y").err()
    };
    assert!(einsum("...ij,...jk->...ik", &[&[1, 2, 2], &[3, 2, 2]]).contains("broadcasting is not supported"));
    assert!(einsum("ij,jk,kl->il", &[&[2, 2], &[2, 2], &[2, 2]]).contains("3 operands"));
    assert!(einsum("ii->i", &[&[2, 3]]).contains("letter `i`"));
    assert!(einsum("i...i.->i", &[&[2, 2]]).contains("letters and at most one ellipsis"));
    assert!(einsum("ij,jk->ik", &[&[2, 3], &[2, 2]]).contains("letter `j`"));
    assert!(einsum("ij->ik", &[&[2, 2]]).contains("in no input term"));
    assert!(einsum("ijk->i", &[&[2, 2]]).contains("does not match"));
}

// ---- transformers: lookups by token ids, masks --------------------------------------------------

#[test]
fn gather_by_token_ids_is_a_product_with_the_clients_one_hot_rows() {
    // A [4, 3] table; ids [1, 2] as the client's integer input; axis 0 (embeddings).
    let table: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect();
    let mut m = B::new(14).input("ids", &[1, 2]).f("table", &[4, 3], table.clone()).node("Gather", &["table", "ids"], &["y"], vec![]).output("y");
    m.inputs[0].r#type = Some(tensor_type(Some(&[1, 2]), 7));
    let imp = m.ok();
    let g = &imp.graph;
    assert!(ops(g).contains(&"OneHot") && ops(g).contains(&"MatMul"), "{g}");
    assert_eq!(g.nodes[g.outputs[0]].shape, [1, 2, 3]);
    // Row 3 and row -4 (= row 0), as onnxruntime reads negative indices.
    close(run1(&imp, vec![3.0, -4.0]).data(), &[table[9], table[10], table[11], table[0], table[1], table[2]]);
    // Out of range: a clear error, not a wrong row.
    let args: Vec<FloatTensor> = vec![t(&[1, 2], vec![4.0, 0.0])];
    let onehot = g.nodes.iter().position(|n| matches!(n.op, Op::OneHot { .. })).unwrap();
    let e = eval_op(&g.nodes[onehot], &[&args[0]]).unwrap_err().to_string();
    assert!(e.contains("outside -4..4"), "{e}");

    // Along axis 1 of a computed tensor ([2, 3] -> columns), ids of shape [2]: ONNX's layout
    // data.shape[:axis] + ids.shape + data.shape[axis+1:].
    let mut m = B::new(14)
        .input("x", &[2, 3])
        .input("ids", &[2])
        .node("Gather", &["x", "ids"], &["y"], vec![ai("axis", 1)])
        .output("y");
    m.inputs[1].r#type = Some(tensor_type(Some(&[2]), 7));
    let imp = m.ok();
    let g = &imp.graph;
    assert_eq!(g.nodes[g.outputs[0]].shape, [2, 2]);
    let y = run(g, &[t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), t(&[2], vec![2.0, 0.0])]).remove(0);
    close(y.data(), &[3.0, 1.0, 6.0, 4.0]);

    // Indices computed by the model (not the client's integers): refused, naming them.
    let e = B::new(14).input("x", &[4]).f("table", &[4, 3], table).node("Gather", &["table", "x"], &["y"], vec![]).output("y").err();
    assert!(e.contains("only indices the client supplies"), "{e}");
}

#[test]
fn attention_masks_of_minus_infinity_become_a_large_finite_fill() {
    // HF's extended mask: (1 - m) * finfo(float32).min, added to the scores; and a decoder's
    // causal mask: Where(tril, scores, finfo.min). Both import, and the masked softmax weights
    // are exactly those of float.
    let min = f32::MIN;
    let mut m = B::new(14)
        .input("s", &[1, 3, 3])
        .input("mask", &[1, 3])
        .f("one", &[], vec![1.0])
        .f("min", &[], vec![min])
        .i("tril", &[1, 3, 3], vec![1, 0, 0, 1, 1, 0, 1, 1, 1])
        .node("Cast", &["tril"], &["c"], vec![ai("to", 9)])
        .node("Where", &["c", "s", "min"], &["causal"], vec![])
        .node("Cast", &["mask"], &["mf"], vec![ai("to", 1)])
        .node("Sub", &["one", "mf"], &["inv"], vec![])
        .node("Mul", &["inv", "min"], &["add"], vec![])
        .node("Add", &["causal", "add"], &["masked"], vec![])
        .node("Softmax", &["masked"], &["p"], vec![ai("axis", -1)])
        .output("p");
    m.inputs[1].r#type = Some(tensor_type(Some(&[1, 3]), 7));
    let imp = m.ok();
    let g = &imp.graph;
    let s: Vec<f32> = vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.5, 3.0, 1.0, 0.0];
    let p = run(g, &[t(&[1, 3, 3], s.clone()), t(&[1, 3], vec![1.0, 1.0, 0.0])]).remove(0);
    // Row 0 sees key 0; row 1 keys 0-1; row 2 keys 0-1 (key 2 is padding).
    let e = |a: f32, b: f32| (a.exp() / (a.exp() + b.exp()), b.exp() / (a.exp() + b.exp()));
    let (r1a, r1b) = e(1.5, 0.25);
    let (r2a, r2b) = e(3.0, 1.0);
    close(p.data(), &[1.0, 0.0, 0.0, r1a, r1b, 0.0, r2a, r2b, 0.0]);
    // The constants the compiler sees are finite and small.
    for n in &g.nodes {
        if let Op::MulScalar(c) | Op::AddScalar(c) = n.op {
            assert!(c.abs() <= 32768.0, "{n:?}");
        }
    }
}

#[test]
fn masked_mean_pooling_of_looked_up_tokens() {
    // sum(E[ids] * mask) / max(sum(mask), 1e-9): sentence-embedding pooling over real tokens.
    let table: Vec<f32> = (0..15).map(|v| v as f32 * 0.25 - 1.0).collect();
    let mut m = B::new(14)
        .input("ids", &[1, 4])
        .input("mask", &[1, 4])
        .f("table", &[5, 3], table.clone())
        .i("last", &[1], vec![-1])
        .i("one", &[1], vec![1])
        .i("shape", &[3], vec![1, 4, 3])
        .f("tiny", &[], vec![1e-9])
        .node("Gather", &["table", "ids"], &["e"], vec![])
        .node("Unsqueeze", &["mask", "last"], &["m3"], vec![])
        .node("Cast", &["m3"], &["mf"], vec![ai("to", 1)])
        .node("Expand", &["mf", "shape"], &["me"], vec![])
        .node("Mul", &["e", "me"], &["em"], vec![])
        .node("ReduceSum", &["em", "one"], &["s"], vec![ai("keepdims", 0)])
        .node("ReduceSum", &["me", "one"], &["c"], vec![ai("keepdims", 0)])
        .node("Clip", &["c", "tiny"], &["cc"], vec![])
        .node("Div", &["s", "cc"], &["pooled"], vec![])
        .output("pooled");
    for k in 0..2 {
        m.inputs[k].r#type = Some(tensor_type(Some(&[1, 4]), 7));
    }
    let imp = m.ok();
    let y = run(&imp.graph, &[t(&[1, 4], vec![4.0, 1.0, 2.0, 0.0]), t(&[1, 4], vec![1.0, 1.0, 0.0, 0.0])]).remove(0);
    let expected: Vec<f32> = (0..3).map(|c| (table[12 + c] + table[3 + c]) / 2.0).collect();
    close(y.data(), &expected);
}
