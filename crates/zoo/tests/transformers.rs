//! The zoo's transformers: parameter counts against the formulas of the architectures, graph
//! inputs and outputs, the exporter's node patterns, option checks, streamed writing, and the
//! tiny configurations of `fixtures/zoo_transformers/` in our float executor against
//! onnxruntime's logits.

use std::collections::HashMap;
use std::path::PathBuf;

use cryptflow_onnx::proto::tensor_proto::DataType;
use cryptflow_onnx::proto::ModelProto;
use cryptflow_tensor::{FloatTensor, Tensor};
use cryptflow_zoo::{build, encode, info, inputs, names, parameter_count, transformer_config, write, Options, ZooError};

fn seq(l: usize) -> Options {
    Options { seq: Some(l), ..Default::default() }
}

/// The parameters of BertForSequenceClassification, from HuggingFace's module definitions.
fn bert_formula(layers: u64, h: u64, inter: u64, vocab: u64, positions: u64, types: u64, classes: u64) -> u64 {
    let linear = |i: u64, o: u64| i * o + o;
    let layer_norm = 2 * h;
    let embeddings = (vocab + positions + types) * h + layer_norm;
    let layer = 4 * linear(h, h) + layer_norm + linear(h, inter) + linear(inter, h) + layer_norm;
    embeddings + layers * layer + linear(h, h) + linear(h, classes)
}

/// The parameters of GPT2LMHeadModel (lm_head tied to wte: counted once).
fn gpt2_formula(layers: u64, h: u64, inter: u64, vocab: u64, positions: u64) -> u64 {
    let conv1d = |i: u64, o: u64| i * o + o;
    let layer_norm = 2 * h;
    let layer = layer_norm + conv1d(h, 3 * h) + conv1d(h, h) + layer_norm + conv1d(h, inter) + conv1d(inter, h);
    (vocab + positions) * h + layers * layer + layer_norm
}

#[test]
fn parameter_counts_match_the_formulas() {
    let cases = [
        ("bert-tiny", bert_formula(2, 128, 512, 30522, 512, 2, 2)),
        ("bert-mini", bert_formula(4, 256, 1024, 30522, 512, 2, 2)),
        ("bert-base", bert_formula(12, 768, 3072, 30522, 512, 2, 2)),
        ("gpt2", gpt2_formula(12, 768, 3072, 50257, 1024)),
    ];
    for (name, expected) in cases {
        assert_eq!(parameter_count(name, &Options::default()).unwrap(), expected, "{name}");
        // The sequence length changes no parameter.
        assert_eq!(parameter_count(name, &seq(5)).unwrap(), expected, "{name}");
    }
    // The published figures: BERT-base 109.48 M with the pooler (110 M in the paper), GPT-2
    // small 124.44 M.
    assert_eq!(parameter_count("bert-base", &Options::default()).unwrap(), 109_483_778);
    assert_eq!(parameter_count("gpt2", &Options::default()).unwrap(), 124_439_808);
    assert_eq!(parameter_count("bert-tiny", &Options::default()).unwrap(), 4_386_178);
    assert_eq!(parameter_count("bert-mini", &Options::default()).unwrap(), 11_171_074);
    // Overrides follow the same formulas.
    let small = Options {
        layers: Some(3),
        hidden: Some(48),
        heads: Some(6),
        intermediate: Some(100),
        vocab: Some(77),
        classes: Some(5),
        ..Default::default()
    };
    assert_eq!(parameter_count("bert-base", &small).unwrap(), bert_formula(3, 48, 100, 77, 512, 2, 5));
    let small = Options { classes: None, ..small };
    assert_eq!(parameter_count("gpt2", &small).unwrap(), gpt2_formula(3, 48, 100, 77, 1024));
}

fn graph_inputs(model: &ModelProto) -> Vec<(String, i32, Vec<i64>)> {
    let g = model.graph.as_ref().unwrap();
    g.input
        .iter()
        .chain(&g.output)
        .map(|vi| {
            let Some(cryptflow_onnx::proto::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                panic!("not a tensor")
            };
            let dims = t
                .shape
                .as_ref()
                .unwrap()
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(cryptflow_onnx::proto::tensor_shape_proto::dimension::Value::DimValue(v)) => v,
                    _ => panic!("symbolic"),
                })
                .collect();
            (vi.name().to_string(), t.elem_type(), dims)
        })
        .collect()
}

/// The model's structure (no weights drawn): `parameter_count` builds it unmaterialised; the
/// tests below materialise only small configurations.
fn tiny() -> Options {
    Options { layers: Some(2), hidden: Some(32), heads: Some(4), vocab: Some(100), seq: Some(8), seed: 12, ..Default::default() }
}

#[test]
fn graph_inputs_and_outputs() {
    let int64 = DataType::Int64 as i32;
    let float = DataType::Float as i32;
    for (name, l) in [("bert-tiny", 128i64), ("bert-mini", 128), ("bert-base", 128), ("gpt2", 32)] {
        let listed = inputs(name, &Options::default()).unwrap();
        let shapes: Vec<_> = listed.iter().map(|(n, t, s)| (n.as_str(), *t, s.clone())).collect();
        let mut expected = vec![("input_ids", "int64", vec![1, l as usize]), ("attention_mask", "int64", vec![1, l as usize])];
        if name != "gpt2" {
            expected.push(("token_type_ids", "int64", vec![1, l as usize]));
        }
        assert_eq!(shapes, expected, "{name}");
    }
    let bert = build("bert-tiny", &tiny()).unwrap();
    assert_eq!(
        graph_inputs(&bert),
        vec![
            ("input_ids".into(), int64, vec![1, 8]),
            ("attention_mask".into(), int64, vec![1, 8]),
            ("token_type_ids".into(), int64, vec![1, 8]),
            ("logits".into(), float, vec![1, 2]),
        ]
    );
    let gpt2 = build("gpt2", &tiny()).unwrap();
    assert_eq!(
        graph_inputs(&gpt2),
        vec![
            ("input_ids".into(), int64, vec![1, 8]),
            ("attention_mask".into(), int64, vec![1, 8]),
            ("logits".into(), float, vec![1, 8, 100]),
        ]
    );
    for m in [&bert, &gpt2] {
        assert_eq!(m.opset_import[0].version, Some(14));
        assert_eq!(m.ir_version, Some(8));
    }
    let three = Options { classes: Some(3), seq: Some(4), ..tiny() };
    assert_eq!(graph_inputs(&build("bert-tiny", &three).unwrap())[3].2, vec![1, 3]);
}

fn op_counts(model: &ModelProto) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in &model.graph.as_ref().unwrap().node {
        *counts.entry(n.op_type().to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn the_graphs_have_the_exporters_node_patterns() {
    let bert = build("bert-tiny", &tiny()).unwrap();
    let ops = op_counts(&bert);
    let layers = 2;
    // No fused ops below opset 17/20: LayerNorm and GELU decomposed.
    assert!(!ops.contains_key("LayerNormalization") && !ops.contains_key("Gelu"));
    assert_eq!(ops["Softmax"], layers);
    assert_eq!(ops["Erf"], layers);
    assert_eq!(ops["Sqrt"], 2 * layers + 1, "LayerNorms: two per layer and the embeddings'");
    assert_eq!(ops["Pow"], 2 * layers + 1);
    assert_eq!(ops["Gemm"], 2, "pooler and classifier");
    assert_eq!(ops["Tanh"], 1);
    assert_eq!(ops["MatMul"], layers * (6 + 2), "q, k, v, output, intermediate, output; two attention products");
    assert_eq!(ops["Cast"], 1);
    assert!(ops["Shape"] >= 1 && ops["Concat"] >= 1, "reshapes take shapes assembled from Shape");
    let g = bert.graph.as_ref().unwrap();
    let node = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("no node {name}"));
    assert_eq!(node("/bert/embeddings/word_embeddings/Gather").input, ["bert.embeddings.word_embeddings.weight", "input_ids"]);
    assert_eq!(node("/bert/embeddings/token_type_embeddings/Gather").input[1], "token_type_ids");
    assert_eq!(node("/bert/embeddings/Slice").input[0], "bert.embeddings.position_ids");
    let mul = node("/bert/Mul");
    let min = g.node.iter().find(|n| n.output[0] == mul.input[1]).unwrap();
    let t = min.attribute[0].t.as_ref().unwrap();
    assert_eq!(f32::from_le_bytes(t.raw_data().try_into().unwrap()), f32::MIN, "finfo(float32).min");
    assert_eq!(node("/bert/encoder/layer.0/attention/self/Softmax").attribute[0].i, Some(-1));
    // The classifier's output is the graph output.
    assert_eq!(node("/classifier/Gemm").output, ["logits"]);

    let gpt2 = build("gpt2", &tiny()).unwrap();
    let ops = op_counts(&gpt2);
    assert_eq!(ops["Where"], layers);
    assert_eq!(ops["Split"], layers);
    assert_eq!(ops["Range"], 1);
    assert_eq!(ops["Tanh"], layers, "gelu_new");
    assert_eq!(ops["Softmax"], layers);
    assert_eq!(ops["Pow"], 2 * layers + 1 + layers, "LayerNorms and x^3 of gelu_new");
    assert!(!ops.contains_key("Erf") && !ops.contains_key("Gemm"));
    let g = gpt2.graph.as_ref().unwrap();
    let node = |name: &str| g.node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("no node {name}"));
    assert_eq!(node("/transformer/wte/Gather").input, ["transformer.wte.weight", "input_ids"]);
    assert_eq!(node("/lm_head/Transpose").input, ["transformer.wte.weight"]);
    assert_eq!(node("/lm_head/MatMul").output, ["logits"]);
    let causal = g.initializer.iter().find(|t| t.name() == "transformer.h.0.attn.bias").unwrap();
    assert_eq!(causal.dims, [1, 1, 1024, 1024]);
    assert_eq!(causal.data_type, Some(DataType::Bool as i32));
    let bits = causal.raw_data();
    assert_eq!((bits[0], bits[1], bits[1024], bits[1025], bits[1024 * 1024 - 1]), (1, 0, 1, 1, 1), "lower-triangular");
    // Tied: the table is stored once, and no lm_head weight exists.
    assert!(!g.initializer.iter().any(|t| t.name().starts_with("lm_head")));
    assert_eq!(g.initializer.iter().filter(|t| t.dims == [100, 32]).count(), 1);
}

#[test]
fn materialised_weights_are_the_counted_parameters_plus_the_buffers() {
    for name in ["bert-tiny", "gpt2"] {
        let options = tiny();
        let model = build(name, &options).unwrap();
        let g = model.graph.as_ref().unwrap();
        let floats: usize = g.initializer.iter().filter(|t| t.data_type() == DataType::Float as i32).map(|t| t.raw_data().len() / 4).sum();
        assert_eq!(floats as u64, parameter_count(name, &options).unwrap(), "{name}");
        let buffers: Vec<&str> = g.initializer.iter().filter(|t| t.data_type() != DataType::Float as i32).map(|t| t.name()).collect();
        if name == "gpt2" {
            assert_eq!(buffers, ["transformer.h.0.attn.bias", "transformer.h.1.attn.bias"]);
        } else {
            assert_eq!(buffers, ["bert.embeddings.position_ids"]);
        }
    }
}

#[test]
fn options_are_checked() {
    let message = |name: &str, options: Options| -> String {
        match parameter_count(name, &options) {
            Err(e @ ZooError::BadOption { .. }) => e.to_string(),
            other => panic!("{name} {options:?}: expected a refusal, got {other:?}"),
        }
    };
    assert!(message("bert-base", seq(0)).contains("at least 1"));
    assert!(message("bert-tiny", seq(513)).contains("exceeds the model's 512 positions"));
    assert!(message("gpt2", seq(1025)).contains("exceeds the model's 1024 positions"));
    assert!(parameter_count("bert-base", &seq(512)).is_ok());
    assert!(parameter_count("gpt2", &seq(1024)).is_ok());
    assert_eq!(inputs("gpt2", &seq(1024)).unwrap()[0].2, vec![1, 1024]);
    assert!(message("gpt2", Options { classes: Some(3), ..Default::default() }).contains("no classes option"));
    assert!(message("bert-tiny", Options { classes: Some(0), ..Default::default() }).contains("classes"));
    assert!(message("bert-tiny", Options { heads: Some(3), ..Default::default() }).contains("not a multiple"));
    assert!(message("bert-tiny", Options { layers: Some(0), ..Default::default() }).contains("layers"));
    assert!(message("bert-tiny", Options { input_size: Some(vec![8]), ..Default::default() }).contains("--seq"));
    assert!(message("lenet", seq(8)).contains("for the transformers"));
    assert!(message("resnet50", Options { hidden: Some(8), ..Default::default() }).contains("for the transformers"));
    // Names as for the other networks.
    assert_eq!(info("BERT_base").unwrap().name, "bert-base");
    assert_eq!(info("GPT-2").unwrap().name, "gpt2");
    for name in ["bert-tiny", "bert-mini", "bert-base", "gpt2"] {
        assert!(names().contains(&name));
        assert!(transformer_config(name, &Options::default()).unwrap().is_some());
    }
    assert!(transformer_config("lenet", &Options::default()).unwrap().is_none());
    let c = transformer_config("bert-tiny", &Options::default()).unwrap().unwrap();
    assert_eq!((c.layers, c.hidden, c.heads, c.intermediate, c.vocab, c.max_positions, c.type_vocab, c.seq), (2, 128, 2, 512, 30522, 512, 2, 128));
    assert_eq!(c.eps, 1e-12);
    let c = transformer_config("gpt2", &Options::default()).unwrap().unwrap();
    assert_eq!((c.layers, c.hidden, c.heads, c.intermediate, c.vocab, c.max_positions, c.seq), (12, 768, 12, 3072, 50257, 1024, 32));
    assert_eq!(c.eps, 1e-5);
}

#[test]
fn writing_streams_the_same_model_and_is_deterministic_in_the_seed() {
    for name in ["bert-tiny", "gpt2", "lenet"] {
        let options = if name == "lenet" { Options { seed: 12, ..Default::default() } } else { tiny() };
        let mut streamed = Vec::new();
        let n = write(name, &options, &mut streamed).unwrap();
        assert_eq!(n as usize, streamed.len());
        let model = build(name, &options).unwrap();
        assert_eq!(<ModelProto as prost::Message>::decode(streamed.as_slice()).unwrap(), model, "{name}");
        if name == "lenet" {
            assert_eq!(streamed, encode(&model), "the CNNs are written as before");
        }
        let mut again = Vec::new();
        write(name, &options, &mut again).unwrap();
        assert_eq!(streamed, again);
        let mut other = Vec::new();
        write(name, &Options { seed: 13, ..options }, &mut other).unwrap();
        assert_ne!(streamed, other);
    }
}

#[test]
fn bert_base_is_written_in_seconds_without_holding_its_weights() {
    // 438 MB of weights, streamed into a sink that only counts: the builder never holds them.
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let started = std::time::Instant::now();
    let mut sink = Count(0);
    let n = write("bert-base", &Options::default(), &mut sink).unwrap();
    assert_eq!(n, sink.0);
    let weights = 109_483_778u64 * 4 + 512 * 8;
    assert!(n > weights && n < weights + 1_000_000, "{n} bytes");
    assert!(started.elapsed().as_secs() < 120, "took {:?}", started.elapsed());
}

// ---- the fixture: our float executor against onnxruntime ------------------------------------

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/zoo_transformers").join(file)
}

fn read_npy<T: npyz::Deserialize>(file: &str) -> (Vec<usize>, Vec<T>) {
    let bytes = std::fs::read(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec().unwrap())
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The options of `fixtures/zoo_transformers_check.py` (TINY there).
fn fixture_options() -> Options {
    tiny()
}

#[test]
fn the_fixture_models_are_the_ones_this_zoo_builds() {
    let manifest = std::fs::read_to_string(fixture("manifest.json")).unwrap();
    for (family, name) in [("bert", "bert-tiny"), ("gpt2", "gpt2")] {
        let mut bytes = Vec::new();
        write(name, &fixture_options(), &mut bytes).unwrap();
        let hash = format!("{:016x}", fnv1a64(&bytes));
        assert!(
            manifest.contains(&hash) && manifest.contains(&format!("\"model_bytes\": {}", bytes.len())),
            "{family}: the zoo no longer builds the model of the fixture (hash {hash}, {} bytes); \
             rerun fixtures/zoo_transformers_check.py",
            bytes.len()
        );
    }
}

/// Imports the tiny BERT and GPT-2 of the fixture and runs them in the float executor on the
/// fixture's inputs: the logits must agree with onnxruntime's within 1e-4 (and 1e-3 of their
/// largest magnitude). Needs the importer to accept `Gather(table, input_ids)` with the ids a
/// graph input (issue 12).
#[test]
fn tiny_transformers_match_onnxruntime_in_the_float_executor() {
    for (family, name) in [("bert", "bert-tiny"), ("gpt2", "gpt2")] {
        let model = build(name, &fixture_options()).unwrap();
        let imported = cryptflow_onnx::import_model(&model, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = imported.graph;
        let mut feeds: Vec<(Vec<usize>, Vec<i64>)> = vec![read_npy(&format!("{family}.input_ids.npy")), read_npy(&format!("{family}.attention_mask.npy"))];
        if family == "bert" {
            feeds.push(read_npy("bert.token_type_ids.npy"));
        }
        let (shape, expected) = read_npy::<f32>(&format!("{family}.logits.npy"));
        let items = shape[0];
        let per_item = expected.len() / items;
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tolerance = 1e-4f32.min(1e-3 * scale);
        for item in 0..items {
            let inputs: Vec<FloatTensor> = feeds
                .iter()
                .map(|(s, data)| {
                    let row: Vec<f32> = data[item * s[1]..(item + 1) * s[1]].iter().map(|&v| v as f32).collect();
                    Tensor::new(vec![1, s[1]], row).unwrap()
                })
                .collect();
            let y = cryptflow_runtime::float::run(&graph, &inputs).unwrap_or_else(|e| panic!("{name}: {e}")).remove(0);
            let want = &expected[item * per_item..(item + 1) * per_item];
            assert_eq!(y.data().len(), want.len(), "{name}: output shape {:?}", y.shape());
            let worst = y.data().iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{name} item {item}: float executor differs from onnxruntime by {worst} (tolerance {tolerance})");
        }
    }
}

/// The standard networks at small sequence lengths import and compile (athos) as they are
/// written: bert-tiny and GPT-2's structure with two layers.
#[test]
fn zoo_transformers_import_and_compile() {
    let cases = [
        ("bert-tiny", Options { seq: Some(8), ..Default::default() }),
        ("gpt2", Options { seq: Some(8), layers: Some(2), ..Default::default() }),
    ];
    for (name, options) in cases {
        let model = build(name, &options).unwrap();
        let imported = cryptflow_onnx::import_model(&model, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        drop(model);
        let compiled = cryptflow_athos::compile(imported.graph, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(compiled.program.inputs.len(), if name == "gpt2" { 2 } else { 3 }, "{name}");
    }
}
