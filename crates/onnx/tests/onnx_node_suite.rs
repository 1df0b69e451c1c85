//! Optional check against the ONNX backend node test cases (`onnx.backend.test.case.node`),
//! which are not shipped as files: dump them first, e.g. with a script that writes, for each
//! case, `DIR/NAME/model.onnx`, `input_J.npy`, `output_J.npy` and a `DIR/index.json` list of
//! `{"name", "float_inputs"}`. Then run
//!
//! ```sh
//! ONNX_NODE_TESTS=DIR cargo test -p cryptflow-onnx --test onnx_node_suite -- --ignored --nocapture
//! ```
//!
//! It reports which cases import, which match the expected outputs, and why the others fail.
//! The only hard failures are panics and mismatches of imported models.

use std::path::Path;

use cryptflow_frontend::testing::c_order;
use cryptflow_ir::hlil::{eval_op, Graph, Op};
use cryptflow_onnx::{import_file, ImportOptions};
use cryptflow_tensor::{FloatTensor, Tensor};

fn read_npy(path: &Path) -> Option<FloatTensor> {
    let bytes = std::fs::read(path).ok()?;
    let npy = npyz::NpyFile::new(&bytes[..]).ok()?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let data: Vec<f32> = npy.into_vec::<f32>().ok()?;
    Tensor::new(shape.clone(), c_order(&shape, data, fortran)).ok()
}


fn evaluate(graph: &Graph, inputs: &[FloatTensor]) -> Result<Vec<FloatTensor>, String> {
    let mut values: Vec<Option<FloatTensor>> = vec![None; graph.nodes.len()];
    for (&id, x) in graph.inputs.iter().zip(inputs) {
        if graph.nodes[id].shape != x.shape() {
            return Err(format!("input shape {:?} vs data {:?}", graph.nodes[id].shape, x.shape()));
        }
        values[id] = Some(x.clone());
    }
    for (id, node) in graph.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input) {
            continue;
        }
        let args: Vec<&FloatTensor> = node.inputs.iter().map(|&i| values[i].as_ref().unwrap()).collect();
        values[id] = Some(eval_op(node, &args).map_err(|e| e.to_string())?);
    }
    Ok(graph.outputs.iter().map(|&o| values[o].clone().unwrap()).collect())
}

#[test]
#[ignore = "needs ONNX_NODE_TESTS (dumped onnx backend node cases)"]
fn onnx_backend_node_cases() {
    let Ok(dir) = std::env::var("ONNX_NODE_TESTS") else {
        eprintln!("ONNX_NODE_TESTS not set");
        return;
    };
    let dir = Path::new(&dir);
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let (mut matched, mut rejected, mut skipped) = (0, 0, 0);
    let mut mismatches = Vec::new();
    for case in index.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let d = dir.join(name);
        let imported = std::panic::catch_unwind(|| import_file(&d.join("model.onnx"), &ImportOptions::default()));
        let imported = match imported {
            Err(_) => {
                mismatches.push(format!("{name}: import PANICKED"));
                continue;
            }
            Ok(Err(e)) => {
                rejected += 1;
                println!("REJECTED {name}: {e:.200}");
                continue;
            }
            Ok(Ok(i)) => i,
        };
        let n_in = imported.graph.inputs.len();
        let inputs: Option<Vec<FloatTensor>> = (0..n_in).map(|j| read_npy(&d.join(format!("input_{j}.npy")))).collect();
        let Some(inputs) = inputs else {
            skipped += 1;
            continue;
        };
        let softmax_away = imported.notices.iter().any(|n| n.contains("compiled away"));
        match evaluate(&imported.graph, &inputs) {
            Err(e) => mismatches.push(format!("{name}: evaluation failed: {e}")),
            Ok(outs) => {
                let mut bad = None;
                for (j, got) in outs.iter().enumerate() {
                    let Some(want) = read_npy(&d.join(format!("output_{j}.npy"))) else { continue };
                    if softmax_away {
                        continue;
                    }
                    if got.shape() != want.shape() {
                        bad = Some(format!("output {j}: shape {:?} vs {:?}", got.shape(), want.shape()));
                        break;
                    }
                    if let Some((i, (g, w))) = got
                        .data()
                        .iter()
                        .zip(want.data())
                        .enumerate()
                        .find(|(_, (g, w))| (*g - *w).abs() > 1e-3 * w.abs().max(1.0) && !(g.is_nan() && w.is_nan()))
                    {
                        bad = Some(format!("output {j} element {i}: {g} vs {w}"));
                        break;
                    }
                }
                match bad {
                    None => matched += 1,
                    Some(b) => mismatches.push(format!("{name}: {b}")),
                }
            }
        }
    }
    println!("matched {matched}, rejected {rejected}, skipped {skipped}, mismatched {}", mismatches.len());
    for m in &mismatches {
        println!("MISMATCH {m}");
    }
    assert!(mismatches.is_empty());
}
