//! `--truncation exact`: a secure run computes what the cleartext executor computes, bit for
//! bit, on models that exercise every kind of truncation (convolutions, average pools and
//! squeeze-excite divisions, layer norms, GELU and softmax approximations, attention), under
//! each protocol; where a backend cannot divide exactly it says so.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const L: usize = 16;

/// Compiles fixture model `name` and returns its directory and the command-line inputs for
/// its first samples.
fn setup(work: &Path, name: &str) -> (PathBuf, Vec<String>) {
    let dir = work.join(name);
    cryptflow_ok(&["compile", path_str(&fixtures().join(format!("models/{name}.onnx"))), "-o", path_str(&dir)]);
    let inputs = if name == "tiny_bert_cls" {
        let n = 2;
        ["input_ids", "attention_mask", "token_type_ids"]
            .iter()
            .map(|&input| {
                let all = read_labels(&fixtures().join(format!("models/tiny_bert_cls.{input}.npy")));
                let path = work.join(format!("{input}.npy"));
                write_npy(&path, &[n, L], &all[..n * L]);
                format!("{input}={}", path_str(&path))
            })
            .collect()
    } else if name == "attention_block" {
        vec![path_str(&fixtures().join("models/attention_block.input.npy")).to_string()]
    } else {
        vec![path_str(&fixtures().join("data/mnist_samples_x.npy")).to_string()]
    };
    (dir, inputs)
}

/// The output file's bytes of a run with `args`.
fn output(work: &Path, dir: &Path, inputs: &[String], tag: &str, args: &[&str]) -> Vec<u8> {
    let y = work.join(format!("{tag}.npy"));
    let mut all = vec!["run", path_str(dir), "-o", path_str(&y)];
    for input in inputs {
        all.extend(["--input", input.as_str()]);
    }
    all.extend(args);
    cryptflow_ok(&all);
    std::fs::read(&y).unwrap()
}

#[test]
fn exact_truncation_makes_every_porthos_protocol_compute_what_cleartext_does() {
    let work = tempfile::tempdir().unwrap();
    for name in ["lenet_mnist", "cnn_se_hswish_mnist", "mlp_ln_gelu_mnist", "attention_block", "tiny_bert_cls"] {
        let (dir, inputs) = setup(work.path(), name);
        let clear = output(work.path(), &dir, &inputs, &format!("{name}-cleartext"), &["--backend", "cleartext"]);
        for protocol in ["compact", "porthos", "securenn"] {
            let tag = format!("{name}-{protocol}");
            let got = output(work.path(), &dir, &inputs, &tag, &["--backend", "porthos", "--protocol", protocol, "--truncation", "exact"]);
            assert!(got == clear, "{tag}: the exact secure outputs differ from cleartext's");
        }
        // Faithful truncation rounds up at random: the same models differ in the last places.
        if name != "lenet_mnist" {
            let faithful = output(work.path(), &dir, &inputs, &format!("{name}-faithful"), &["--backend", "porthos"]);
            assert!(faithful != clear, "{name}: faithful truncation was expected to round some value up");
        }
    }
}

#[test]
fn exact_truncation_under_aramis_and_2pc() {
    let work = tempfile::tempdir().unwrap();
    let (dir, inputs) = setup(work.path(), "mlp_ln_gelu_mnist");
    let clear = output(work.path(), &dir, &inputs, "cleartext", &["--backend", "cleartext"]);
    for backend in ["aramis", "2pc"] {
        let got = output(work.path(), &dir, &inputs, backend, &["--backend", backend, "--truncation", "exact"]);
        assert!(got == clear, "{backend}: the exact secure outputs differ from cleartext's");
    }
    // 2PC's exact division covers powers of two only: the squeeze-excite CNN's average pool
    // divides by 49 and is refused, naming the cause.
    let (dir, inputs) = setup(work.path(), "cnn_se_hswish_mnist");
    let mut args = vec!["run".to_string(), path_str(&dir).to_string(), "--backend".into(), "2pc".into(), "--truncation".into(), "exact".into()];
    for input in &inputs {
        args.extend(["--input".to_string(), input.clone()]);
    }
    args.extend(["-o".to_string(), path_str(&work.path().join("refused.npy")).to_string()]);
    let out = cryptflow(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean_failure(&out, "2pc exact division");
    assert!(stderr(&out).contains("exact division"), "{}", stderr(&out));
}
