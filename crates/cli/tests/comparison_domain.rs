//! The program's comparison domain: the compiler records it (33 bits at scale 12), `--comparison-bits`
//! sets it, calibration data beyond it widen it to 64 bits, and the compact protocol compares on
//! it: cheaper inside, the documented wrap outside.

mod common;

use common::onnx::*;
use common::*;

fn program_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("program.json")).unwrap()).unwrap()
}

/// The program's comparison domain as written (a program comparing all 64 bits omits it).
fn comparison_bits(dir: &std::path::Path) -> u64 {
    program_json(dir)["program"].get("comparison_bits").map_or(64, |b| b.as_u64().unwrap())
}

fn metrics(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// LeNet compiled with the default domain and with 64 bits: the same predictions as
/// cleartext, and each ReLU layer costs exactly 132 bytes per element against 216.
#[test]
fn the_compiled_domain_narrows_lenets_comparisons() {
    let work = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/lenet_mnist.onnx");
    let (narrow, full) = (work.path().join("narrow"), work.path().join("full"));
    let out = cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&narrow), "--strip-output-softmax"]);
    assert!(stderr(&out).contains("comparisons: on 33-bit values (exact for magnitudes below 2^20 at scale 12"), "{}", stderr(&out));
    cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&full), "--strip-output-softmax", "--comparison-bits", "64"]);
    assert_eq!(comparison_bits(&narrow), 33);
    assert_eq!(comparison_bits(&full), 64);
    assert!(program_json(&full)["program"].get("comparison_bits").is_none(), "64 bits is written as before the field existed");
    for bad in ["0", "65", "x"] {
        let out = cryptflow(&["compile", path_str(&model), "-o", path_str(&work.path().join("bad")), "--comparison-bits", bad]);
        assert!(!out.status.success() && stderr(&out).contains("invalid value") && stderr(&out).contains("--comparison-bits"), "{}", stderr(&out));
    }
    let samples = fixtures().join("data/mnist_samples_x.npy");
    let run = |dir: &std::path::Path, backend: &str| {
        let (y, m) = (dir.join(format!("{backend}.npy")), dir.join(format!("{backend}.json")));
        cryptflow_ok(&["run", path_str(dir), "--backend", backend, "--input", path_str(&samples), "-o", path_str(&y), "--metrics", path_str(&m)]);
        (read_npy(&y).1, metrics(&m))
    };
    let (clear, _) = run(&narrow, "cleartext");
    let (y_narrow, m_narrow) = run(&narrow, "porthos");
    let (y_full, m_full) = run(&full, "porthos");
    assert_near_cleartext(&y_narrow, &clear);
    assert_near_cleartext(&y_full, &clear);
    let relu_bytes = |m: &serde_json::Value| -> Vec<u64> {
        m["layers"].as_array().unwrap().iter().filter(|l| l["calls"] == serde_json::json!(["ReLU"])).map(|l| l["bytes_sent"].as_u64().unwrap()).collect()
    };
    let (a, b) = (relu_bytes(&m_narrow), relu_bytes(&m_full));
    assert!(!a.is_empty() && a.len() == b.len());
    for (n, f) in a.iter().zip(&b) {
        assert_eq!(n * 216, f * 132, "a ReLU layer: {n} bytes narrowed, {f} on 64 bits");
    }
    assert!(m_narrow["bytes_total"].as_u64() < m_full["bytes_total"].as_u64());
}

/// y = ReLU(1e6 x): calibration data reaching 1.5e6 (beyond 2^20) widen the domain to 64 bits
/// and the secure ReLU is exact; forced to 33 bits at scale 12, +-1.5e6 are compared by their
/// residues mod 2^33 as documented (1.5e6 as negative, -1.5e6 as positive), while values
/// inside the domain stay exact.
#[test]
fn calibration_beyond_the_domain_widens_it_and_a_forced_domain_wraps_as_documented() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("relu.onnx");
    write_onnx(
        &model,
        vec![value_info("x", &[1, 4], FLOAT)],
        vec![node("Mul", &["x", "big"], "scaled"), node("Relu", &["scaled"], "y")],
        vec![float_tensor("big", &[], &[1.0e6])],
        "y",
    );
    let x = work.path().join("x.npy");
    write_npy(&x, &[1, 4], &[1.5f32, -1.5, 0.25, -0.25]);
    let calibration = work.path().join("calibration.npy");
    write_npy(&calibration, &[2, 1, 4], &[1.5f32, -1.5, 0.25, -0.25, 1.0, -1.0, 0.5, -0.5]);
    let widened = work.path().join("widened");
    let out = cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&widened), "--calibrate", path_str(&calibration)]);
    assert!(stderr(&out).contains("comparisons widened to 64 bits"), "{}", stderr(&out));
    assert_eq!(comparison_bits(&widened), 64);
    let forced = work.path().join("forced");
    cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&forced), "--scale", "12", "--comparison-bits", "33"]);
    let run = |dir: &std::path::Path| {
        let y = dir.join("y.npy");
        cryptflow_ok(&["run", path_str(dir), "--backend", "porthos", "--input", path_str(&x), "-o", path_str(&y)]);
        read_npy(&y).1
    };
    let exact = run(&widened);
    assert!((exact[0] - 1.5e6).abs() < 1.0 && exact[1..].iter().zip([0.0, 2.5e5, 0.0]).all(|(a, b)| (a - b).abs() < 1.0), "{exact:?}");
    // Outside the domain 1.5e6 is compared as negative and -1.5e6 (residue 2^33 - 1.5e6 2^12
    // < 2^32) as positive; inside it, exact.
    let wrapped = run(&forced);
    assert!(wrapped.iter().zip([0.0, -1.5e6, 2.5e5, 0.0]).all(|(a, b)| (a - b).abs() < 1.0), "{wrapped:?}");
}
