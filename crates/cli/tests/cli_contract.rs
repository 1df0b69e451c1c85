//! The command-line contract: flags, file formats, metrics fields, batching, and clean errors
//! on bad input.

mod common;

use common::*;

fn lenet() -> std::path::PathBuf {
    fixtures().join("models/lenet_mnist.onnx")
}

#[test]
fn batched_inputs_give_stacked_outputs_and_metrics() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    cryptflow_ok(&["compile", path_str(&lenet()), "-o", path_str(&dir)]);
    let samples = fixtures().join("data/mnist_samples_x.npy");
    let labels = read_labels(&fixtures().join("data/mnist_samples_y.npy"));
    let y = work.path().join("y.npy");
    let m = work.path().join("m.json");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&samples), "-o", path_str(&y), "--metrics", path_str(&m)]);
    let (shape, data) = read_npy(&y);
    assert_eq!(shape, vec![labels.len(), 10], "a [N,1,28,28] stack for a batch-1 model stacks along the batch axis");
    let expected = read_npy(&fixtures().join("models/lenet_mnist.expected_logits.npy")).1;
    for (k, &label) in labels.iter().enumerate() {
        let row = &data[k * 10..(k + 1) * 10];
        assert_eq!(argmax(row) as i64, label, "sample {k}");
        assert_eq!(argmax(row), argmax(&expected[k * 10..(k + 1) * 10]));
    }
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    assert_eq!(metrics["backend"], "cleartext");
    assert_eq!(metrics["inferences"], labels.len());
    for field in ["seconds", "bytes_sent", "bytes_total", "rounds", "layers"] {
        assert!(!metrics[field].is_null(), "metrics lack `{field}`");
    }
    assert!(metrics["layers"].as_array().unwrap().len() >= 5);

    // One input of exactly the model's shape gives one output of exactly its shape; a stack
    // along a new leading axis gives outputs stacked the same way.
    let (xshape, xdata) = read_npy(&samples);
    let one = work.path().join("one.npy");
    write_npy(&one, &[1, 1, 28, 28], &xdata[..xdata.len() / xshape[0]]);
    let stacked = work.path().join("stacked.npy");
    write_npy(&stacked, &[xshape[0], 1, 1, 28, 28], &xdata);
    let ys = work.path().join("ys.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "float", "--input", path_str(&stacked), "-o", path_str(&ys)]);
    assert_eq!(read_npy(&ys).0, vec![xshape[0], 1, 10]);
    let y1 = work.path().join("y1.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "float", "--input", path_str(&one), "-o", path_str(&y1)]);
    assert_eq!(read_npy(&y1).0, vec![1, 10]);
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    cryptflow_ok(&["compile", path_str(&lenet()), "-o", path_str(&dir)]);
    let x = work.path().join("x.npy");
    write_npy(&x, &[1, 1, 27, 28], &vec![0.0; 27 * 28]);
    let out = cryptflow(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&work.path().join("y.npy"))]);
    assert_clean_failure(&out, "wrong input shape");
    assert!(stderr(&out).contains("[1, 1, 27, 28]") && stderr(&out).contains("[1, 1, 28, 28]"), "{}", stderr(&out));
    std::fs::write(&x, b"not an npy file").unwrap();
    let out = cryptflow(&["run", path_str(&dir), "--backend", "float", "--input", path_str(&x), "-o", path_str(&work.path().join("y.npy"))]);
    assert_clean_failure(&out, "bad npy");
}

/// Truncated, random and bit-flipped model files: an error exit, never a panic.
#[test]
fn malformed_model_files_give_errors_not_panics() {
    let work = tempfile::tempdir().unwrap();
    let original = std::fs::read(lenet()).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut variants: Vec<Vec<u8>> = vec![Vec::new(), b"garbage".to_vec(), (0..4096).map(|_| next() as u8).collect()];
    for cut in [1, 10, 100, 1000, original.len() / 2, original.len() - 1] {
        variants.push(original[..cut].to_vec());
    }
    for _ in 0..12 {
        let mut damaged = original.clone();
        for _ in 0..8 {
            let i = (next() as usize) % damaged.len();
            damaged[i] = next() as u8;
        }
        variants.push(damaged);
    }
    for (k, bytes) in variants.iter().enumerate() {
        let path = work.path().join(format!("bad{k}.onnx"));
        std::fs::write(&path, bytes).unwrap();
        let out = cryptflow(&["compile", path_str(&path), "-o", path_str(&work.path().join(format!("out{k}")))]);
        // A random flip may leave a valid model (e.g. inside a weight): then it must compile.
        if !out.status.success() {
            assert_clean_failure(&out, &format!("variant {k}"));
        }
    }
}

#[test]
fn emit_prints_hlil_and_llil() {
    let out = cryptflow_ok(&["compile", path_str(&lenet()), "--emit", "hlil"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Conv(") && text.contains("MaxPool("), "{text}");
    let out = cryptflow_ok(&["compile", path_str(&lenet()), "--emit", "llil", "--strip-output-softmax"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("call Conv(") && text.contains("call ScaleDown(") && text.contains("reveal"), "{text}");
    assert!(stderr(&out).contains("Softmax"), "the softmax notice is missing: {}", stderr(&out));
}

#[test]
fn calibration_prints_the_sweep_and_picks_a_scale_on_the_best_plateau() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    let x = fixtures().join("data/mnist_val_x.npy");
    let y = fixtures().join("data/mnist_val_y.npy");
    let out = cryptflow_ok(&["compile", path_str(&lenet()), "-o", path_str(&dir), "--calibrate", path_str(&x), "--labels", path_str(&y)]);
    let err = stderr(&out);
    assert!(err.contains("<- chosen"), "{err}");
    let chosen: u32 = err.lines().find(|l| l.contains("<- chosen")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((6..=24).contains(&chosen), "implausible scale {chosen}:\n{err}");
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    assert_eq!(program["program"]["scale"], chosen);
    // Scales too small to represent the weights lose accuracy; the table shows it.
    assert!(err.lines().any(|l| l.trim_start().starts_with("1 ")), "{err}");
}

/// The same trained LeNet as a frozen TensorFlow graph (NHWC) compiles and classifies the
/// samples like TensorFlow did.
#[test]
fn tensorflow_graphs_compile_and_run() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet_pb");
    let out = cryptflow_ok(&["compile", path_str(&fixtures().join("models/lenet_mnist.pb")), "-o", path_str(&dir), "--strip-output-softmax"]);
    assert!(stderr(&out).contains("Softmax"), "{}", stderr(&out));
    let y = work.path().join("y.npy");
    let x = fixtures().join("data/mnist_samples_x_nhwc.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&y)]);
    let (_, got) = read_npy(&y);
    let (_, expected) = read_npy(&fixtures().join("models/lenet_mnist_pb.expected_logits.npy"));
    for k in 0..4 {
        assert_eq!(argmax(&got[k * 10..(k + 1) * 10]), argmax(&expected[k * 10..(k + 1) * 10]));
    }
    let bad = work.path().join("model.tflite");
    std::fs::write(&bad, b"x").unwrap();
    let out = cryptflow(&["compile", path_str(&bad), "-o", path_str(&work.path().join("o"))]);
    assert_clean_failure(&out, "unknown format");
    assert!(stderr(&out).contains(".pb"), "{}", stderr(&out));
}
