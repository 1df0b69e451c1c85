//! Calibration sees the secure math functions' domains: where the calibration data leave the
//! domain of an approximation (here exp's [-16, 8]), compile warns and names the node.

mod common;

use common::onnx::*;
use common::*;

#[test]
fn calibration_warns_where_the_data_leave_a_functions_domain() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("exp.onnx");
    // y = Exp(x * 4): calibration data in [-1, 3] reach 12, beyond exp's upper edge 8.
    write_onnx(
        &model,
        vec![value_info("x", &[1, 4], FLOAT)],
        vec![node("Mul", &["x", "four"], "scaled"), node("Exp", &["scaled"], "y")],
        vec![float_tensor("four", &[], &[4.0])],
        "y",
    );
    let inside = work.path().join("inside.npy");
    let outside = work.path().join("outside.npy");
    write_npy(&inside, &[2, 1, 4], &[-1.0f32, -0.5, 0.0, 0.5, 1.0, 1.5, 1.75, 1.9]);
    write_npy(&outside, &[2, 1, 4], &[-1.0f32, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]);
    let compile = |x: &std::path::Path, dir: &str| {
        let out = cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&work.path().join(dir)), "--calibrate", path_str(x)]);
        stderr(&out)
    };
    let err = compile(&inside, "a");
    assert!(!err.contains("beyond the secure approximation's domain"), "{err}");
    let err = compile(&outside, "b");
    assert!(err.contains("warning: `y`") && err.contains("beyond the secure approximation's domain [-16, 8]"), "{err}");
    // Scales the math functions do not support are skipped in the sweep, not run.
    assert!(err.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("skipped")), "{err}");
}
