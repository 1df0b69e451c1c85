//! Imports every ONNX fixture of `fixtures/onnx/` (made by `fixtures/generate_onnx.py` with
//! onnxruntime), checks the HLIL shapes against the manifest, and evaluates the graph with a
//! minimal float evaluator against the expected outputs. Also imports the trained models of
//! `fixtures/models/`. No Python needed: the fixtures are committed files.

use std::collections::HashMap;

use cryptflow_frontend::testing::{fixtures_root, read_npy, softmax_last_axis};
use cryptflow_ir::hlil::{eval_op, Graph, Op};
use cryptflow_onnx::{import_file, ImportOptions, Imported, OnnxError};
use cryptflow_tensor::{FloatTensor, Tensor};

/// Evaluates the graph on the given inputs (in `graph.inputs` order).
fn evaluate(graph: &Graph, inputs: &[FloatTensor]) -> Vec<FloatTensor> {
    let mut values: Vec<Option<FloatTensor>> = vec![None; graph.nodes.len()];
    for (&id, x) in graph.inputs.iter().zip(inputs) {
        assert_eq!(graph.nodes[id].shape, x.shape(), "input `{}`", graph.nodes[id].name);
        values[id] = Some(x.clone());
    }
    for (id, node) in graph.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input) {
            continue;
        }
        let args: Vec<&FloatTensor> = node.inputs.iter().map(|&i| values[i].as_ref().unwrap()).collect();
        let y = eval_op(node, &args).unwrap_or_else(|e| panic!("evaluating `{}`: {e}", node.name));
        values[id] = Some(y);
    }
    graph.outputs.iter().map(|&o| values[o].clone().unwrap()).collect()
}

fn assert_close(name: &str, got: &FloatTensor, want: &FloatTensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("{name}: shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let tol = 1e-4 * w.abs().max(1.0) + 1e-5;
        if (g - w).abs() > tol || g.is_nan() != w.is_nan() {
            return Err(format!("{name}: element {i}: got {g}, expected {w}"));
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Entry {
    name: String,
    input_name: String,
    input_shape: Vec<usize>,
    output_name: String,
    output_shape: Vec<usize>,
    symbolic: bool,
}

fn manifest() -> Option<Vec<Entry>> {
    let path = fixtures_root().join("onnx/manifest.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json parses");
    let dims = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
    };
    Some(
        json.as_array()
            .unwrap()
            .iter()
            .map(|e| Entry {
                name: e["name"].as_str().unwrap().to_string(),
                input_name: e["input_name"].as_str().unwrap().to_string(),
                input_shape: dims(&e["input_shape"]),
                output_name: e["output_name"].as_str().unwrap().to_string(),
                output_shape: dims(&e["output_shape"]),
                symbolic: e.get("symbolic_dims").is_some(),
            })
            .collect(),
    )
}

fn import_fixture(e: &Entry) -> Result<Imported, OnnxError> {
    let mut options = ImportOptions::default();
    if e.symbolic {
        options.input_shapes.insert(e.input_name.clone(), e.input_shape.clone());
    }
    import_file(&fixtures_root().join(format!("onnx/{}.onnx", e.name)), &options)
}

/// Whether a fixture must be refused with an unsupported-operator error.
fn must_be_refused(name: &str) -> bool {
    name.starts_with("unsupported_")
}

#[test]
fn every_fixture_imports_with_the_manifest_shapes() {
    let Some(entries) = manifest() else {
        eprintln!("fixtures/onnx/manifest.json not found; skipping");
        return;
    };
    let mut failures = Vec::new();
    for e in &entries {
        let result = import_fixture(e);
        if must_be_refused(&e.name) {
            match result {
                Err(err @ OnnxError::UnsupportedOp { .. }) => {
                    let msg = err.to_string();
                    assert!(msg.contains("supported operators"), "{msg}");
                }
                other => failures.push(format!("{}: expected an UnsupportedOp error, got {other:?}", e.name)),
            }
            continue;
        }
        let imported = match result {
            Ok(i) => i,
            Err(err) => {
                failures.push(format!("{}: {err}", e.name));
                continue;
            }
        };
        let g = &imported.graph;
        if let Err(err) = g.validate() {
            failures.push(format!("{}: invalid graph: {err}", e.name));
        }
        let checks = [
            (g.inputs.len() == 1, "one input".to_string()),
            (g.outputs.len() == 1, "one output".to_string()),
            (
                g.inputs.first().is_some_and(|&i| g.nodes[i].shape == e.input_shape && g.nodes[i].name == e.input_name),
                format!("input {} {:?}", e.input_name, e.input_shape),
            ),
            (
                g.outputs.first().is_some_and(|&o| g.nodes[o].shape == e.output_shape && g.nodes[o].name == e.output_name),
                format!("output {} {:?}", e.output_name, e.output_shape),
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                failures.push(format!("{}: expected {what}; graph:\n{g}", e.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// True once the tensor kernels the evaluator needs are implemented (they were `todo!()` while
/// this crate was written); until then the numeric comparison is skipped.
fn kernels_available() -> bool {
    std::panic::catch_unwind(|| {
        let a = Tensor::new(vec![1, 1], vec![1.0f32]).unwrap();
        cryptflow_tensor::kernels::matmul(&a, &a).is_ok()
    })
    .unwrap_or(false)
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let Some(entries) = manifest() else {
        eprintln!("fixtures/onnx/manifest.json not found; skipping");
        return;
    };
    if !kernels_available() {
        eprintln!("tensor kernels not implemented yet; skipping numeric comparison");
        return;
    }
    let dir = fixtures_root().join("onnx");
    let mut failures = Vec::new();
    let mut compared = 0;
    for e in entries.iter().filter(|e| !must_be_refused(&e.name)) {
        let Ok(imported) = import_fixture(e) else { continue }; // reported by the shape test
        let x = read_npy(&dir.join(format!("{}.input.npy", e.name)));
        let want = read_npy(&dir.join(format!("{}.output.npy", e.name)));
        let graph = imported.graph.clone();
        let result = std::panic::catch_unwind(move || evaluate(&graph, &[x]));
        let mut got = match result {
            Ok(mut outs) => outs.remove(0),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: evaluation panicked: {msg}", e.name));
                continue;
            }
        };
        if imported.notices.iter().any(|n| n.contains("Softmax") && n.contains("compiled away")) {
            got = softmax_last_axis(&got);
        }
        compared += 1;
        if let Err(err) = assert_close(&e.name, &got, &want) {
            failures.push(format!("{err}\n{}", imported.graph));
        }
    }
    assert!(failures.is_empty(), "{} of {compared} differ:\n{}", failures.len(), failures.join("\n\n"));
    eprintln!("{compared} fixtures match onnxruntime");
    assert!(compared + 2 >= entries.len(), "only {compared} of {} fixtures were compared", entries.len());
}

#[test]
fn softmax_fixtures_compute_softmax_or_strip_it_on_request() {
    let Some(entries) = manifest() else { return };
    // The models whose last node is a Softmax over the last axis of [N, classes].
    let names = ["softmax", "softmax_opset13", "softmax_opset7_default_axis", "residual_cnn"];
    for e in entries.iter().filter(|e| names.contains(&e.name.as_str())) {
        let imported = import_fixture(e).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert!(imported.notices.is_empty(), "{}: notices {:?}", e.name, imported.notices);
        assert!(imported.graph.nodes.iter().any(|n| matches!(n.op, Op::Softmax { .. })), "{}", e.name);
        let path = fixtures_root().join(format!("onnx/{}.onnx", e.name));
        let options = ImportOptions { strip_output_softmax: true, ..Default::default() };
        let stripped = import_file(&path, &options).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert!(
            stripped.notices.iter().any(|n| n.contains("at the output compiled away") && n.contains("logits")),
            "{}: notices {:?}",
            e.name,
            stripped.notices
        );
        assert!(!stripped.graph.nodes.iter().any(|n| matches!(n.op, Op::Softmax { .. })), "{}", e.name);
        // The stripped logits give the fixture's probabilities back.
        let dir = fixtures_root().join("onnx");
        let x = read_npy(&dir.join(format!("{}.input.npy", e.name)));
        let want = read_npy(&dir.join(format!("{}.output.npy", e.name)));
        let got = softmax_last_axis(&evaluate(&stripped.graph, &[x]).remove(0));
        assert_close(&e.name, &got, &want).unwrap();
    }
}

#[test]
fn trained_models_import_and_match_expected_probabilities_or_logits() {
    let dir = fixtures_root().join("models");
    let samples = fixtures_root().join("data/mnist_samples_x.npy");
    if !samples.exists() {
        eprintln!("trained models not found; skipping");
        return;
    }
    let x = read_npy(&samples);
    let batch = x.shape()[0];
    let check_numbers = kernels_available();
    for (model, strip) in [("lenet_mnist", false), ("mlp_mnist", false), ("lenet_mnist", true), ("mlp_mnist", true)] {
        let path = dir.join(format!("{model}.onnx"));
        let options = ImportOptions::default();
        let imported = import_file(&path, &options).unwrap_or_else(|e| panic!("{model}: {e}"));
        let g = &imported.graph;
        assert_eq!(g.outputs.len(), 1);
        let in_shape = g.nodes[g.inputs[0]].shape.clone();
        // The output Softmax is computed (probabilities) unless stripped (logits).
        let expected = if strip { "logits" } else { "probs" };
        let want = read_npy(&dir.join(format!("{model}.expected_{expected}.npy")));
        if !check_numbers {
            continue;
        }
        // The models may declare batch 1 (symbolic batch set to 1): evaluate image by image.
        let per_image: usize = in_shape[1..].iter().product();
        let classes = *want.shape().last().unwrap();
        let mut logits = Vec::new();
        for b in 0..batch {
            let mut shape = in_shape.clone();
            shape[0] = 1;
            let xi = Tensor::new(shape, x.data()[b * per_image..(b + 1) * per_image].to_vec()).unwrap();
            let options = ImportOptions {
                input_shapes: HashMap::from([(g.nodes[g.inputs[0]].name.clone(), xi.shape().to_vec())]),
                strip_output_softmax: strip,
            };
            let gi = import_file(&path, &options).unwrap().graph;
            let y = evaluate(&gi, &[xi]).remove(0);
            assert_eq!(y.len(), classes, "{model}");
            logits.extend_from_slice(y.data());
        }
        let got = Tensor::new(want.shape().to_vec(), logits).unwrap();
        assert_close(model, &got, &want).unwrap();
    }
}
