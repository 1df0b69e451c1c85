//! `cryptflow compile` refuses what cannot work instead of writing a program that silently
//! computes wrong answers: scales at which products cannot fit, non-integer calibration labels,
//! hand-edited programs; and encodes weights with round-to-nearest by default.

mod common;

use common::*;

fn lenet() -> std::path::PathBuf {
    fixtures().join("models/lenet_mnist.onnx")
}

/// An error exit with a message, not a panic (the front end's notices may come first).
fn assert_refused(out: &std::process::Output, context: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{context}: succeeded:\n{err}");
    assert!(!err.contains("panicked"), "{context}: panicked:\n{err}");
    assert!(err.lines().any(|l| l.starts_with("error:")), "{context}: no error line:\n{err}");
}

/// Scale 30: products hold 60 fractional bits and LeNet's accuracy falls to 9.6%. Refused.
#[test]
fn a_scale_at_which_products_cannot_fit_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let out = cryptflow(&["compile", path_str(&lenet()), "-o", path_str(&work.path().join("l")), "--scale", "30"]);
    assert_refused(&out, "--scale 30");
    assert!(stderr(&out).contains("scale 30 is out of range: choose 1 to 29"), "{}", stderr(&out));
    assert!(!work.path().join("l/program.json").exists());
    // 22 and above compile with a warning (logits: the secure softmax supports scales up to 20).
    let out = cryptflow_ok(&["compile", path_str(&lenet()), "-o", path_str(&work.path().join("l")), "--scale", "24", "--strip-output-softmax"]);
    assert!(stderr(&out).contains("warning: low headroom at scale 24"), "{}", stderr(&out));
}

#[test]
fn rounding_defaults_to_nearest() {
    let out = cryptflow_ok(&["compile", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: nearest]"), "{help}");
}

/// Labels must be whole numbers, as many as the calibration inputs.
#[test]
fn calibration_labels_must_be_integers_and_match_the_inputs() {
    let work = tempfile::tempdir().unwrap();
    let x = fixtures().join("data/mnist_samples_x.npy");
    let n = read_npy(&x).0[0];
    let labels = work.path().join("y.npy");
    let mut values: Vec<f32> = (0..n).map(|i| (i % 10) as f32).collect();
    values[n - 1] = 2.5;
    write_npy(&labels, &[n], &values);
    let out = cryptflow(&["compile", path_str(&lenet()), "-o", path_str(&work.path().join("l")), "--calibrate", path_str(&x), "--labels", path_str(&labels)]);
    assert_refused(&out, "fractional labels");
    assert!(stderr(&out).contains("labels must be whole numbers") && stderr(&out).contains("2.5"), "{}", stderr(&out));
    values[n - 1] = f32::NAN;
    write_npy(&labels, &[n], &values);
    let out = cryptflow(&["compile", path_str(&lenet()), "-o", path_str(&work.path().join("l")), "--calibrate", path_str(&x), "--labels", path_str(&labels)]);
    assert_refused(&out, "NaN label");
    assert!(stderr(&out).contains("labels must be whole numbers"), "{}", stderr(&out));
    write_npy(&labels, &[n + 1], &vec![1i64; n + 1]);
    let out = cryptflow(&["compile", path_str(&lenet()), "-o", path_str(&work.path().join("l")), "--calibrate", path_str(&x), "--labels", path_str(&labels)]);
    assert_refused(&out, "label count");
    assert!(stderr(&out).contains(&format!("{} labels for {n} calibration inputs", n + 1)), "{}", stderr(&out));
}

/// A hand-edited program.json is refused before anything runs.
#[test]
fn a_hand_edited_program_is_refused_by_run() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("l");
    cryptflow_ok(&["compile", path_str(&lenet()), "-o", path_str(&dir)]);
    let path = dir.join("program.json");
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["program"]["scale"] = 1000.into();
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    let x = fixtures().join("data/mnist_samples_x.npy");
    let out = cryptflow(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&work.path().join("y.npy"))]);
    assert_clean_failure(&out, "scale 1000");
    assert!(stderr(&out).contains("scale 1000 is out of range"), "{}", stderr(&out));
}
