//! Real trained transformers as HuggingFace + torch.onnx export them
//! (`fixtures/train_transformer_models.py`, described in `fixtures/models/transformers.json`):
//!
//! * `tiny_bert_cls.onnx` (opset 14): a 2-layer BERT classifier with token ids, an attention
//!   mask and token types as int64 client inputs, decomposed LayerNorm, erf GELU, pooler and
//!   classifier; 32 held-out sentence pairs with real padding.
//! * `tiny_gpt.onnx` (opset 17): a 2-layer GPT-2 with `LayerNormalization`, tanh GELU, fused
//!   qkv, the causal mask as a `Where` over a bool buffer, the padding mask and the lm_head tied
//!   to the token embeddings; 8 right-padded prompts.
//!
//! The float executor matches onnxruntime within 1e-4; the cleartext executor and Porthos give
//! float's class on every BERT input and float's next token (the argmax at position len-1) on
//! every GPT prompt; a greedy 4-token continuation, one fixed-length forward per token as
//! `--generate K` does it, equals onnxruntime's in float, cleartext and Porthos, both by hand
//! (one `run` of the logits program per token) and with `compile --next-token` + `run --generate 4`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const SCALE: &str = "12";
const L: usize = 16;

fn model(name: &str) -> PathBuf {
    fixtures().join(format!("models/{name}"))
}

/// Compiles fixture `name`; every graph input (token ids, masks, token types) is an integer
/// client input.
fn compile(work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    cryptflow_ok(&["compile", path_str(&model(&format!("{name}.onnx"))), "-o", path_str(&dir), "--scale", SCALE]);
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    for input in program["program"]["inputs"].as_array().unwrap() {
        assert_eq!(input["integer"], true, "{name}: {input}");
    }
    dir
}

/// Runs the compiled `dir` on `inputs` (graph input name, .npy file) and returns the outputs.
fn run(dir: &Path, backend: &str, inputs: &[(&str, PathBuf)], out: &Path) -> Vec<f32> {
    let specs: Vec<String> = inputs.iter().map(|(n, p)| format!("{n}={}", path_str(p))).collect();
    let mut args = vec!["run", path_str(dir), "--backend", backend];
    for s in &specs {
        args.extend(["--input", s.as_str()]);
    }
    args.extend(["-o", path_str(out)]);
    cryptflow_ok(&args);
    read_npy(out).1
}

/// Float within 1e-4 of onnxruntime, element by element.
fn assert_matches_onnxruntime(name: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{name}: output size");
    let mut worst = 0.0f32;
    for (i, (a, e)) in got.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= 1e-4, "{name}: float element {i}: {a} vs onnxruntime {e}");
        worst = worst.max((a - e).abs());
    }
    eprintln!("{name}: float vs onnxruntime, largest difference {worst}");
}

#[test]
fn a_trained_bert_classifier_keeps_its_predictions_under_porthos() {
    let work = tempfile::tempdir().unwrap();
    let dir = compile(work.path(), "tiny_bert_cls");
    let inputs: Vec<(&str, PathBuf)> = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|&n| (n, model(&format!("tiny_bert_cls.{n}.npy"))))
        .collect();
    let (shape, expected) = read_npy(&model("tiny_bert_cls.expected_logits.npy"));
    let labels = read_labels(&model("tiny_bert_cls.labels.npy"));
    let (n, classes) = (shape[0], shape[1]);
    assert_eq!(labels.len(), n);
    let top = |logits: &[f32]| logits.chunks(classes).map(argmax).collect::<Vec<_>>();

    let float = run(&dir, "float", &inputs, &work.path().join("float.npy"));
    assert_matches_onnxruntime("tiny_bert_cls", &float, &expected);
    let reference = top(&float);
    assert_eq!(reference, top(&expected), "float's classes are onnxruntime's");
    let correct = reference.iter().zip(&labels).filter(|(p, &y)| **p as i64 == y).count();
    eprintln!("tiny_bert_cls: float classifies {correct}/{n} correctly");
    for backend in ["cleartext", "porthos"] {
        let got = run(&dir, backend, &inputs, &work.path().join(format!("{backend}.npy")));
        let worst = got.iter().zip(&float).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
        eprintln!("tiny_bert_cls {backend}: largest logit error against float {worst}");
        assert_eq!(top(&got), reference, "tiny_bert_cls {backend}: classes differ from float's");
        assert!(worst <= 0.05, "tiny_bert_cls {backend}: largest logit error against float {worst}");
    }
}

/// Under 2PC the token-id lookups are products of the client's one-hot rows, held by the client
/// alone, with the owner's tables at one OT per entry: per inference the client sends
/// `ext(L V) = 128 ceil(L V / 64)` words of OT extension and the owner `L V H` words of
/// corrections (`cryptflow-twopc`'s docs, "One-hot product"), and the outputs are those of the
/// cleartext backend (faithful truncation: every truncation exact; the attention's division by
/// 4 stays local, within one unit in the last place).
#[test]
fn a_trained_bert_classifier_under_2pc_looks_up_its_embeddings_at_one_ot_per_entry() {
    let work = tempfile::tempdir().unwrap();
    let dir = compile(work.path(), "tiny_bert_cls");
    // The first 4 sentence pairs (2PC takes about a second per inference).
    let n = 4;
    let inputs: Vec<(&str, PathBuf)> = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|&name| {
            let all = read_labels(&model(&format!("tiny_bert_cls.{name}.npy")));
            let path = work.path().join(format!("{name}.npy"));
            write_npy(&path, &[n, L], &all[..n * L]);
            (name, path)
        })
        .collect();
    let clear = run(&dir, "cleartext", &inputs, &work.path().join("cleartext.npy"));
    let metrics = work.path().join("2pc.json");
    let out = work.path().join("2pc.npy");
    let mut args = vec!["run", path_str(&dir), "--backend", "2pc", "--truncation", "faithful", "--metrics", path_str(&metrics), "-o", path_str(&out)];
    let specs: Vec<String> = inputs.iter().map(|(name, p)| format!("{name}={}", path_str(p))).collect();
    for s in &specs {
        args.extend(["--input", s.as_str()]);
    }
    cryptflow_ok(&args);
    let got = read_npy(&out).1;
    let classes = clear.len() / n;
    let top = |logits: &[f32]| logits.chunks(classes).map(argmax).collect::<Vec<_>>();
    assert_eq!(top(&got), top(&clear), "2PC classes differ from cleartext's");
    let worst = got.iter().zip(&clear).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
    assert!(worst <= 0.01, "2PC logits differ from cleartext's by {worst}");
    eprintln!("tiny_bert_cls 2pc: largest logit difference from cleartext {worst}");

    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    let ext = |ots: u64| 128 * ots.div_ceil(64);
    let layer = |name: &str| m["layers"].as_array().unwrap().iter().find(|l| l["layer"] == name).unwrap_or_else(|| panic!("no layer {name}")).clone();
    // (layer, one-hot input, table width H): the table's height V is the input's depth.
    for (name, input, h) in [
        ("/bert/embeddings/word_embeddings/Gather_output_0", "input_ids", 32u64),
        ("/bert/embeddings/token_type_embeddings/Gather_output_0", "token_type_ids", 32),
    ] {
        let spec = program["program"]["inputs"].as_array().unwrap().iter().find(|i| i["name"] == input && i["one_hot"] == true).unwrap();
        let shape: Vec<u64> = spec["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        let (l, v) = (shape[..shape.len() - 1].iter().product::<u64>(), shape[shape.len() - 1]);
        let words = ext(l * v) + l * v * h;
        let l = layer(name);
        assert_eq!(l["bytes_sent"].as_u64().unwrap(), 8 * words * n as u64, "{name}: bytes of {n} lookups");
        assert_eq!(l["rounds"].as_u64().unwrap(), n as u64, "{name}: one round per lookup");
    }
}

struct Prompts {
    ids: Vec<i64>,
    mask: Vec<i64>,
    lengths: Vec<usize>,
}

impl Prompts {
    fn fixture() -> Self {
        let ids = read_labels(&model("tiny_gpt.input_ids.npy"));
        let mask = read_labels(&model("tiny_gpt.attention_mask.npy"));
        let lengths = read_labels(&model("tiny_gpt.lengths.npy")).iter().map(|&n| n as usize).collect();
        Prompts { ids, mask, lengths }
    }

    fn write(&self, work: &Path, tag: &str) -> Vec<(&'static str, PathBuf)> {
        let n = self.lengths.len();
        let ids = work.join(format!("ids-{tag}.npy"));
        let mask = work.join(format!("mask-{tag}.npy"));
        write_npy(&ids, &[n, L], &self.ids);
        write_npy(&mask, &[n, L], &self.mask);
        vec![("input_ids", ids), ("attention_mask", mask)]
    }

    /// The argmax of each prompt's logits at its last real position.
    fn next_tokens(&self, logits: &[f32], vocab: usize) -> Vec<usize> {
        self.lengths.iter().enumerate().map(|(i, &len)| argmax(&logits[(i * L + len - 1) * vocab..][..vocab])).collect()
    }

    /// Writes `tokens` at each prompt's next position and extends its mask.
    fn push(&mut self, tokens: &[usize]) {
        for (i, &t) in tokens.iter().enumerate() {
            let at = i * L + self.lengths[i];
            self.ids[at] = t as i64;
            self.mask[at] = 1;
            self.lengths[i] += 1;
        }
    }
}

#[test]
fn a_trained_gpt_predicts_the_next_token_under_porthos() {
    let work = tempfile::tempdir().unwrap();
    let dir = compile(work.path(), "tiny_gpt");
    let prompts = Prompts::fixture();
    let inputs = prompts.write(work.path(), "prompt");
    let (shape, expected) = read_npy(&model("tiny_gpt.expected_logits.npy"));
    let vocab = shape[2];
    let expected_next: Vec<usize> = read_labels(&model("tiny_gpt.expected_next.npy")).iter().map(|&t| t as usize).collect();

    let float = run(&dir, "float", &inputs, &work.path().join("float.npy"));
    assert_matches_onnxruntime("tiny_gpt", &float, &expected);
    let reference = prompts.next_tokens(&float, vocab);
    assert_eq!(reference, expected_next, "float's next tokens are onnxruntime's");
    for backend in ["cleartext", "porthos"] {
        let got = run(&dir, backend, &inputs, &work.path().join(format!("{backend}.npy")));
        let worst = prompts
            .lengths
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| (0..len * vocab).map(move |j| i * L * vocab + j))
            .map(|j| (got[j] - float[j]).abs())
            .fold(0.0, f32::max);
        eprintln!("tiny_gpt {backend}: largest logit error against float over the prompts' positions {worst}");
        assert_eq!(prompts.next_tokens(&got, vocab), reference, "tiny_gpt {backend}: next tokens differ from float's");
        // Logits reach ~25 and the top-1/top-2 gap is at least 12 at every prompt's last position.
        assert!(worst <= 0.5, "tiny_gpt {backend}: largest logit error against float {worst}");
    }
}

/// Greedy decoding of 4 tokens the way `--generate K` does it: a full fixed-length forward per
/// token, the token at position len taken from the argmax at len-1.
#[test]
fn a_trained_gpt_continues_its_prompts_greedily() {
    let work = tempfile::tempdir().unwrap();
    let dir = compile(work.path(), "tiny_gpt");
    let expected = read_labels(&model("tiny_gpt.expected_continuation.npy"));
    let k = expected.len() / Prompts::fixture().lengths.len();
    let vocab = read_npy(&model("tiny_gpt.expected_logits.npy")).0[2];
    for backend in ["float", "cleartext", "porthos"] {
        let mut prompts = Prompts::fixture();
        let mut generated = vec![Vec::new(); prompts.lengths.len()];
        for step in 0..k {
            let inputs = prompts.write(work.path(), &format!("{backend}-{step}"));
            let logits = run(&dir, backend, &inputs, &work.path().join(format!("{backend}-{step}.npy")));
            let next = prompts.next_tokens(&logits, vocab);
            for (g, &t) in generated.iter_mut().zip(&next) {
                g.push(t as i64);
            }
            prompts.push(&next);
        }
        let got: Vec<i64> = generated.concat();
        assert_eq!(got, expected, "{backend}: greedy continuations differ from onnxruntime's");
    }
}

/// The GPT fixture compiled with `--next-token`, its prompts, onnxruntime's greedy
/// continuations and their length K.
fn next_token_setup() -> (tempfile::TempDir, PathBuf, Prompts, Vec<i64>, usize) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tiny_gpt-next");
    cryptflow_ok(&["compile", path_str(&model("tiny_gpt.onnx")), "-o", path_str(&dir), "--scale", SCALE, "--next-token"]);
    let prompts = Prompts::fixture();
    let expected = read_labels(&model("tiny_gpt.expected_continuation.npy"));
    let k = expected.len() / prompts.lengths.len();
    (work, dir, prompts, expected, k)
}

/// `--input` values for prompt `i` (its ids and mask written to `work`).
fn prompt_inputs(work: &Path, prompts: &Prompts, i: usize) -> [String; 2] {
    let ids = work.join(format!("ids-{i}.npy"));
    let mask = work.join(format!("mask-{i}.npy"));
    write_npy(&ids, &[1, L], &prompts.ids[i * L..][..L]);
    write_npy(&mask, &[1, L], &prompts.mask[i * L..][..L]);
    [format!("input_ids={}", path_str(&ids)), format!("attention_mask={}", path_str(&mask))]
}

/// `run --generate 4` on the decoder compiled with `--next-token`: one session per prompt, only
/// each step's token revealed; the tokens are onnxruntime's greedy continuation on every backend.
#[test]
fn a_trained_gpt_generates_its_continuations_with_generate_k() {
    let (work, dir, prompts, expected, k) = next_token_setup();
    for (i, &len) in prompts.lengths.iter().enumerate() {
        let inputs = prompt_inputs(work.path(), &prompts, i);
        for backend in ["float", "cleartext", "porthos"] {
            let out = work.path().join(format!("gen-{i}-{backend}.npy"));
            let steps = k.to_string();
            cryptflow_ok(&[
                "run", path_str(&dir), "--backend", backend, "--input", &inputs[0], "--input", &inputs[1], "--generate", &steps, "-o",
                path_str(&out),
            ]);
            let got = read_labels(&out);
            assert_eq!(got, expected[i * k..][..k], "prompt {i} (length {len}) under {backend}: --generate {k}");
        }
    }
}

/// The other secure backends generate the same tokens (two prompts: 2PC is slow), and one
/// session serves every step: the weights are shared once, and masked and opened for Porthos'
/// products in the first step only (bytes are deterministic: `bytes(K) = setup + first + (K -
/// 1) x later`, `first - later = 16 |weights of products|`).
#[test]
fn generation_under_2pc_and_aramis_and_its_cost_per_token() {
    let (work, dir, prompts, expected, k) = next_token_setup();
    let inputs_of = |i: usize| prompt_inputs(work.path(), &prompts, i);
    for i in 0..2 {
        let inputs = inputs_of(i);
        for backend in ["2pc", "aramis"] {
            let out = work.path().join(format!("gen-{i}-{backend}.npy"));
            let steps = k.to_string();
            cryptflow_ok(&[
                "run", path_str(&dir), "--backend", backend, "--input", &inputs[0], "--input", &inputs[1], "--generate", &steps, "-o",
                path_str(&out),
            ]);
            assert_eq!(read_labels(&out), expected[i * k..][..k], "prompt {i} under {backend}: --generate {k}");
        }
    }
    // Porthos bytes of 1 and of 3 steps, in the paper's variant and in the compact one.
    let inputs = inputs_of(0);
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    let program = &program["program"];
    let weight_elements: std::collections::BTreeMap<u64, u64> = program["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["slot"].as_u64().unwrap(), w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product()))
        .collect();
    let mut masked = std::collections::BTreeSet::new();
    for instr in program["body"].as_array().unwrap() {
        let right = instr["args"].get(1).and_then(|a| a.as_u64());
        if instr["op"] == "MatMul" && right.is_some_and(|r| weight_elements.contains_key(&r)) {
            masked.insert(right.unwrap());
        }
    }
    let opened: u64 = masked.iter().map(|slot| weight_elements[slot]).sum();
    assert!(opened > 0);
    // Beaver's F = W - B of each weight of a product, in the first step only: 8 bytes per
    // element from each of P0 and P1 (Porthos), from the owner alone (compact: the owner
    // holds its weights whole).
    for (protocol, bytes_per_weight) in [("porthos", 16), ("compact", 8)] {
        let bytes = |steps: usize| -> (u64, u64, u64) {
            let out = work.path().join(format!("cost-{protocol}-{steps}.npy"));
            let metrics = work.path().join(format!("cost-{protocol}-{steps}.json"));
            let steps = steps.to_string();
            cryptflow_ok(&[
                "run", path_str(&dir), "--backend", "porthos", "--protocol", protocol, "--input", &inputs[0], "--input", &inputs[1], "--generate",
                &steps, "-o", path_str(&out), "--metrics", path_str(&metrics),
            ]);
            assert_eq!(read_labels(&out), expected[..steps.parse::<usize>().unwrap()], "{protocol}: tokens");
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
            let layers = m["layers"].as_array().unwrap();
            let fixed: u64 = layers[..2].iter().map(|l| l["bytes_sent"].as_u64().unwrap()).sum();
            assert_eq!(layers[0]["layer"], "(session setup)");
            let total = m["bytes_total"].as_u64().unwrap();
            let per_layer: u64 = layers.iter().map(|l| l["bytes_sent"].as_u64().unwrap()).sum();
            assert_eq!(per_layer, total, "the per-layer breakdown adds up to the total");
            (total, fixed, m["rounds"].as_u64().unwrap())
        };
        let (one, fixed1, rounds1) = bytes(1);
        let (two, fixed2, rounds2) = bytes(2);
        let (three, fixed3, rounds3) = bytes(3);
        assert_eq!((fixed1, fixed2), (fixed3, fixed3), "{protocol}: set-up and weight sharing happen once per session");
        assert_eq!(rounds3 - rounds2, rounds2 - rounds1, "{protocol}: every step takes the rounds of one forward pass");
        // Every later step costs the same; the first also opens the masked weights, kept for
        // the session after it.
        let later = two - one;
        assert_eq!(three - two, later, "{protocol}");
        assert_eq!(one - fixed1 - later, bytes_per_weight * opened, "{protocol}: the first step alone opens the masked weights");
    }
}

/// Distributed generation: three `cryptflow party` processes over TLS; only the client passes
/// `--generate` (the others learn the number of steps from it) and gets onnxruntime's tokens.
/// A non-client party with `--generate` is refused.
#[test]
fn distributed_parties_generate_the_same_continuation() {
    use std::time::Duration;
    let (work, dir, prompts, expected, k) = next_token_setup();
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    let inputs = prompt_inputs(work.path(), &prompts, 0);
    let ports = free_ports(3);
    let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let out = work.path().join("tokens.npy");
    let steps = k.to_string();
    let owner = spawn_party("porthos", 0, &peers, &dir, &keys, &[]);
    let helper = spawn_party("porthos", 2, &peers, &dir, &keys, &[]);
    let client = spawn_party(
        "porthos",
        1,
        &peers,
        &dir,
        &keys,
        &["--input", &inputs[0], "--input", &inputs[1], "--generate", &steps, "-o", path_str(&out)],
    );
    for (name, child) in [("client", client), ("owner", owner), ("helper", helper)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert!(status.success(), "{name} failed: {err}");
    }
    assert_eq!(read_labels(&out), expected[..k], "distributed --generate {k}");
    let refused = cryptflow(&["party", "--id", "0", "--peers", &peers, path_str(&dir), "--keys", path_str(&keys), "--generate", "2"]);
    assert_clean_failure(&refused, "--generate on the model owner");
    assert!(stderr(&refused).contains("--generate is the client's"), "{}", stderr(&refused));
}

/// `--generate` refuses clearly: a program without the next-token head, zero steps, more steps
/// than the positions left after the prompt, a mask that is not ones then zeros.
#[test]
fn generate_refuses_what_it_cannot_do() {
    let (work, dir, prompts, _, _) = next_token_setup();
    let inputs = prompt_inputs(work.path(), &prompts, 0);
    let out = work.path().join("t.npy");
    let len = prompts.lengths[0];
    let run = |dir: &Path, steps: &str, inputs: &[String; 2]| {
        cryptflow(&[
            "run", path_str(dir), "--backend", "cleartext", "--input", &inputs[0], "--input", &inputs[1], "--generate", steps, "-o",
            path_str(&out),
        ])
    };
    let logits_dir = compile(work.path(), "tiny_gpt");
    let cases = [
        (run(&logits_dir, "2", &inputs), "--next-token".to_string()),
        (run(&dir, "0", &inputs), "nothing to generate".to_string()),
        (run(&dir, &(L - len + 1).to_string(), &inputs), format!("leaves room for {} new tokens", L - len)),
    ];
    for (output, expected) in cases {
        assert_clean_failure(&output, &expected);
        assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
        assert!(!out.exists());
    }
    let mut holes = prompts.mask[..L].to_vec();
    holes[0] = 0;
    let mask = work.path().join("holes.npy");
    write_npy(&mask, &[1, L], &holes);
    let bad = [inputs[0].clone(), format!("attention_mask={}", path_str(&mask))];
    let output = run(&dir, "1", &bad);
    assert_clean_failure(&output, "a mask with holes");
    assert!(stderr(&output).contains("ones over the prompt then zeros"), "{}", stderr(&output));
}
