//! `cryptflow zoo bert-tiny|bert-mini|bert-base|gpt2 [--seq L]`: listing, writing, option
//! errors, and the tiny fixture configurations compiled and run by the float backend against
//! onnxruntime's logits (fixtures/zoo_transformers/).

mod common;

use common::*;

#[test]
fn zoo_lists_the_transformers() {
    let out = cryptflow_ok(&["zoo", "--list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, parameters) in [("bert-tiny", "4386178"), ("bert-mini", "11171074"), ("bert-base", "109483778"), ("gpt2", "124439808")] {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("--list lacks {name}:\n{text}"));
        assert!(line.contains(parameters), "{name}: {line}");
    }
    assert!(text.contains("[1, 128]") && text.contains("[1, 32]"), "default sequence lengths:\n{text}");
}

#[test]
fn zoo_writes_the_transformers() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("bert-tiny.onnx");
    let out = cryptflow_ok(&["zoo", "bert-tiny", "-o", path_str(&model), "--seq", "16"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4386178 parameters (4.4 M)"), "{text}");
    assert!(
        text.contains("input_ids int64 [1, 16], attention_mask int64 [1, 16], token_type_ids int64 [1, 16]"),
        "{text}"
    );
    let bytes = std::fs::read(&model).unwrap();
    assert!(bytes.len() > 4 * 4_386_178, "{} bytes", bytes.len());
    let decoded: cryptflow_onnx::proto::ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.opset_import[0].version, Some(14));
    let graph = decoded.graph.unwrap();
    assert_eq!(graph.output[0].name(), "logits");
    assert!(!work.path().join("bert-tiny.onnx.partial").exists());

    // Same seed, same bytes.
    let again = work.path().join("again.onnx");
    cryptflow_ok(&["zoo", "BERT-tiny", "-o", path_str(&again), "--seq", "16"]);
    assert_eq!(bytes, std::fs::read(&again).unwrap());

    let gpt2 = work.path().join("gpt2.onnx");
    let out = cryptflow_ok(&["zoo", "gpt2", "-o", path_str(&gpt2), "--seq", "4", "--layers", "1", "--hidden", "48", "--vocab", "500"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 layers, hidden 48, 12 heads, sequence length 4"), "{text}");
    assert!(text.contains("inputs input_ids int64 [1, 4], attention_mask int64 [1, 4];"), "{text}");
}

#[test]
fn zoo_refuses_bad_transformer_options() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("m.onnx");
    let m = path_str(&model);
    let cases: [(&[&str], &str); 8] = [
        (&["zoo", "bert-base", "-o", m, "--seq", "0"], "at least 1"),
        (&["zoo", "bert-base", "-o", m, "--seq", "513"], "exceeds the model's 512 positions"),
        (&["zoo", "gpt2", "-o", m, "--seq", "1025"], "exceeds the model's 1024 positions"),
        (&["zoo", "gpt2", "-o", m, "--classes", "3"], "no classes option"),
        (&["zoo", "bert-tiny", "-o", m, "--input-size", "8"], "--seq"),
        (&["zoo", "bert-tiny", "-o", m, "--heads", "3"], "not a multiple of the 3 heads"),
        (&["zoo", "lenet", "-o", m, "--seq", "8"], "for the transformers"),
        (&["zoo", "bert-huge", "-o", m], "unknown network"),
    ];
    for (args, message) in cases {
        let out = cryptflow(args);
        assert_clean_failure(&out, &format!("{args:?}"));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(!model.exists() && !work.path().join("m.onnx.partial").exists(), "{args:?} left a file");
    }
    // A folder that does not exist: a clean error, no partial file.
    let missing = work.path().join("no/such/dir/m.onnx");
    assert_clean_failure(&cryptflow(&["zoo", "bert-tiny", "-o", path_str(&missing), "--seq", "4"]), "missing folder");
}

/// The fixture's tiny BERT and GPT-2 (see fixtures/zoo_transformers_check.py), compiled and run
/// by `cryptflow run --backend float` on the fixture's stacked inputs: the logits agree with
/// onnxruntime's within 1e-4. Needs the importer to take `Gather(table, input_ids)` with the ids
/// a client input, GPT-2's `Where(causal, scores, min)` with computed scores, and the compiler
/// to accept the extended mask's `(1 - m) * finfo(float32).min` (issue 12).
#[test]
fn zoo_transformer_fixtures_run_in_the_float_backend() {
    let work = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("zoo_transformers");
    let tiny = ["--layers", "2", "--hidden", "32", "--heads", "4", "--vocab", "100", "--seq", "8", "--seed", "12"];
    for (family, network) in [("bert", "bert-tiny"), ("gpt2", "gpt2")] {
        let model = work.path().join(format!("{family}.onnx"));
        let mut args = vec!["zoo", network, "-o", path_str(&model)];
        args.extend(tiny);
        cryptflow_ok(&args);
        let dir = work.path().join(family);
        cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&dir)]);
        let mut inputs = vec!["input_ids", "attention_mask"];
        if family == "bert" {
            inputs.push("token_type_ids");
        }
        let specs: Vec<String> =
            inputs.iter().map(|n| format!("{n}={}", fixture.join(format!("{family}.{n}.npy")).display())).collect();
        let y = work.path().join(format!("{family}.y.npy"));
        let mut args = vec!["run", path_str(&dir), "--backend", "float", "-o", path_str(&y)];
        for s in &specs {
            args.extend(["--input", s.as_str()]);
        }
        cryptflow_ok(&args);
        let (_, got) = read_npy(&y);
        let (_, want) = read_npy(&fixture.join(format!("{family}.logits.npy")));
        assert_eq!(got.len(), want.len(), "{family}");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{family}: the float backend differs from onnxruntime by {worst}");
    }
}
