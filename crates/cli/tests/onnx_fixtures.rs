//! Every ONNX fixture, compiled and run through the real binary: the float executor against
//! onnxruntime's outputs, the cleartext (fixed-point) executor against float.
//!
//! Tolerances: float vs onnxruntime 1e-4 relative (with a 1e-5 absolute floor for values near
//! zero); cleartext at scale 12 vs float: |a - b| <= 0.02 + 0.01 |b| — a real at scale 12 is
//! rounded to 2^-12 ~ 2.4e-4 and every truncation may lose another unit, so a few layers of
//! accumulation stay well inside it.

mod common;

use common::*;
use serde_json::Value;

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("onnx/manifest.json")).expect("fixtures/onnx/manifest.json");
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn expects_error(entry: &Value) -> bool {
    entry["name"].as_str().is_some_and(|n| n.starts_with("unsupported"))
}

/// A Softmax at the output is compiled away (outputs are logits): compare predictions.
fn ends_in_softmax(entry: &Value) -> bool {
    entry["ops"].as_array().is_some_and(|ops| ops.iter().any(|o| o == "Softmax"))
}

/// Row-wise argmax over the last axis.
fn predictions(shape: &[usize], data: &[f32]) -> Vec<usize> {
    let n = *shape.last().unwrap();
    data.chunks(n).map(argmax).collect()
}

#[test]
fn float_and_cleartext_executors_match_onnxruntime_on_every_fixture() {
    let work = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in manifest() {
        let name = entry["name"].as_str().unwrap();
        if expects_error(&entry) {
            continue;
        }
        let onnx = fixtures().join(format!("onnx/{name}.onnx"));
        let input = fixtures().join(format!("onnx/{name}.input.npy"));
        let expected_path = fixtures().join(format!("onnx/{name}.output.npy"));
        let dir = work.path().join(name);
        let mut compile_args = vec!["compile".to_string(), path_str(&onnx).into(), "-o".into(), path_str(&dir).into()];
        if let Some(shape) = entry["input_shape"].as_array() {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            compile_args.push("--input-shape".into());
            compile_args.push(format!("{}={}", entry["input_name"].as_str().unwrap(), dims.join(",")));
        }
        let args: Vec<&str> = compile_args.iter().map(|s| s.as_str()).collect();
        let out = cryptflow(&args);
        if !out.status.success() {
            failures.push(format!("{name}: compile failed: {}", stderr(&out)));
            continue;
        }
        let (expected_shape, expected) = read_npy(&expected_path);
        let mut float_out = Vec::new();
        for backend in ["float", "cleartext"] {
            let y = dir.join(format!("{backend}.npy"));
            let out = cryptflow(&["run", path_str(&dir), "--backend", backend, "--input", path_str(&input), "-o", path_str(&y)]);
            if !out.status.success() {
                failures.push(format!("{name}: run --backend {backend} failed: {}", stderr(&out)));
                continue;
            }
            let (shape, got) = read_npy(&y);
            if shape != expected_shape {
                failures.push(format!("{name} ({backend}): shape {shape:?}, onnxruntime {expected_shape:?}"));
                continue;
            }
            let (reference, rel, abs) = if backend == "float" { (&expected, 1e-4f32, 1e-5f32) } else { (&float_out, 0.01, 0.02) };
            if ends_in_softmax(&entry) && backend == "float" {
                if predictions(&shape, &got) != predictions(&shape, &expected) {
                    failures.push(format!("{name} ({backend}): predictions differ from onnxruntime's"));
                }
                float_out = got;
                continue;
            }
            if let Some((i, (a, b))) = got.iter().zip(reference.iter()).enumerate().find(|(_, (a, b))| (*a - *b).abs() > abs + rel * b.abs()) {
                failures.push(format!("{name} ({backend}): element {i}: {a} vs {b}"));
            }
            if backend == "float" {
                float_out = got;
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), checked, failures.join("\n"));
    assert!(checked >= 30, "only {checked} fixtures were checked");
}

#[test]
fn unsupported_op_names_the_node_its_type_and_the_supported_list() {
    let entry = manifest().into_iter().find(expects_error).expect("a fixture with an unsupported op");
    let name = entry["name"].as_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let onnx = fixtures().join(format!("onnx/{name}.onnx"));
    let out = cryptflow(&["compile", path_str(&onnx), "-o", path_str(work.path())]);
    assert_clean_failure(&out, "unsupported op");
    let err = stderr(&out);
    let ops: Vec<&str> = entry["ops"].as_array().unwrap().iter().filter_map(|o| o.as_str()).collect();
    assert!(ops.iter().any(|op| err.contains(op)), "the op type is not named: {err}");
    assert!(err.contains("Conv") && err.contains("MaxPool"), "the supported list is not given: {err}");
}
