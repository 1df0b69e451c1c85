//! Whole trained models built from the secure math library's functions (`fixtures/
//! train_activation_models.py`): a LayerNorm/GELU/SiLU MLP and a MobileNetV3-style CNN with
//! hard-swish, squeeze-excite gates, tanh and a softmax output. The float executor matches
//! onnxruntime; the cleartext executor and Porthos give the float top-1 on at least 99.5% of
//! the 250 held-out validation digits, and their probabilities stay close to float's; 2PC
//! agrees on four digits.

mod common;

use common::*;

const MODELS: [&str; 2] = ["mlp_ln_gelu_mnist", "cnn_se_hswish_mnist"];

fn top1(probs: &[f32]) -> Vec<usize> {
    probs.chunks(10).map(argmax).collect()
}

/// Compiles fixture model `name` in `work` and returns a runner of it on `x` by backend.
fn compiled(work: &std::path::Path, name: &str, x: std::path::PathBuf) -> impl Fn(&str) -> Vec<f32> {
    let dir = work.join(name);
    cryptflow_ok(&["compile", path_str(&fixtures().join(format!("models/{name}.onnx"))), "-o", path_str(&dir)]);
    let (work, name) = (work.to_path_buf(), name.to_string());
    move |backend: &str| {
        let y = work.join(format!("{name}-{backend}.npy"));
        cryptflow_ok(&["run", path_str(&dir), "--backend", backend, "--input", path_str(&x), "-o", path_str(&y)]);
        read_npy(&y).1
    }
}

#[test]
fn trained_activation_models_keep_their_predictions_under_porthos() {
    let work = tempfile::tempdir().unwrap();
    for name in MODELS {
        let run = compiled(work.path(), name, fixtures().join("data/mnist_val_x.npy"));
        let (_, expected) = read_npy(&fixtures().join(format!("models/{name}.expected_probs.npy")));
        let float = run("float");
        let worst = float.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
        assert!(worst <= 1e-4, "{name}: float executor vs onnxruntime {worst}");
        let reference = top1(&float);
        for backend in ["cleartext", "porthos"] {
            let probs = run(backend);
            let agree = top1(&probs).iter().zip(&reference).filter(|(a, b)| a == b).count();
            let worst = probs.iter().zip(&float).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
            eprintln!("{name} {backend}: top-1 agrees with float on {agree}/250, largest probability error {worst}");
            assert!(agree * 1000 >= 995 * reference.len(), "{name} {backend}: top-1 agrees on {agree} of {}", reference.len());
            assert!(worst <= 0.05, "{name} {backend}: largest probability error {worst}");
        }
    }
}

#[test]
fn trained_activation_models_under_2pc() {
    let work = tempfile::tempdir().unwrap();
    for name in MODELS {
        let run = compiled(work.path(), name, fixtures().join("data/mnist_samples_x.npy"));
        let float = run("float");
        let twopc = run("2pc");
        assert_eq!(top1(&twopc), top1(&float), "{name}");
        let worst = twopc.iter().zip(&float).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
        assert!(worst <= 0.05, "{name} 2pc: largest probability error {worst}");
    }
}

/// A transformer encoder block as PyTorch exports it (`fixtures/attention_block.py`: batched
/// products of two computed tensors, a causal mask, softmax, LayerNormalization, decomposed
/// GELU, residuals): float within 1e-4 of onnxruntime, every secure backend close to float.
#[test]
fn an_attention_block_runs_on_every_backend() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("attention");
    let model = fixtures().join("models/attention_block.onnx");
    let llil = cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&dir), "--emit", "llil"]);
    let text = String::from_utf8_lossy(&llil.stdout);
    assert_eq!(text.matches("call BatchMatMul(").count(), 2, "Q K^T and P V are one batched product each:\n{text}");
    assert!(text.contains("call Softmax(") && text.contains("call Normalize("), "{text}");
    let x = fixtures().join("models/attention_block.input.npy");
    let (_, expected) = read_npy(&fixtures().join("models/attention_block.expected.npy"));
    let run = |backend: &str| {
        let y = work.path().join(format!("{backend}.npy"));
        cryptflow_ok(&["run", path_str(&dir), "--backend", backend, "--input", path_str(&x), "-o", path_str(&y)]);
        read_npy(&y).1
    };
    let float = run("float");
    for (i, (a, e)) in float.iter().zip(&expected).enumerate() {
        assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "float element {i}: {a} vs onnxruntime {e}");
    }
    for backend in ["cleartext", "porthos", "2pc"] {
        let got = run(backend);
        let worst = got.iter().zip(&float).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
        eprintln!("attention block {backend}: largest error against float {worst}");
        assert!(worst <= 0.05, "{backend}: largest error against float {worst}");
    }
}
