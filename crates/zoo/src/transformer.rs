//! Transformers as HuggingFace `transformers` + `torch.onnx.export` (opset 14, eval mode,
//! constant folding on) write them: BERT encoders with a sequence-classification head
//! (`BertForSequenceClassification`) and GPT-2 with its language-model head
//! (`GPT2LMHeadModel`), so that the importer sees the node patterns of a real export.
//!
//! What the exporter writes and this module reproduces:
//! - token ids, attention mask (and BERT's token types) as int64 graph inputs `[1, L]`;
//! - embedding lookups `Gather(table, ids)`; BERT's position ids are the `position_ids` buffer
//!   `[1, 512]` sliced to `L` (the end computed by `Shape`/`Gather`/`Unsqueeze`), GPT-2's a
//!   `Range(0, Shape(input_ids)[-1], 1)` unsqueezed;
//! - the extended attention mask `Unsqueeze(mask, 1)`, `Unsqueeze(.., 2)`, `Cast` to float,
//!   `(1.0 - m) * finfo(float32).min`, added to the attention scores;
//! - `nn.Linear` on `[1, L, in]` as `MatMul` by the folded transpose of the weight (an
//!   initializer `onnx::MatMul_N` of shape `[in, out]`) and `Add(bias, ..)`; on `[1, in]` (the
//!   pooler and the classifier) as `Gemm(transB = 1)`; GPT-2's `Conv1D` as `MatMul` by its
//!   `[in, out]` weight and `Add`, the fused `c_attn` output cut by `Split` into q, k, v;
//! - heads split by `Reshape` to a shape assembled by `Shape`/`Gather`/`Unsqueeze`/`Concat`
//!   and `Transpose(0, 2, 1, 3)`; scores `MatMul(q, Transpose(k, 0, 1, 3, 2))`, `Div` by a
//!   constant `sqrt(d)`, GPT-2's causal mask (the `attn.bias` buffer, a lower-triangular bool
//!   `[1, 1, P, P]`, sliced by two `Slice` to `[1, 1, L, L]`) applied as
//!   `Where(mask, scores, finfo(float32).min)`, the extended mask added, `Softmax(axis = -1)`,
//!   `MatMul` with v, `Transpose` back and `Reshape` to `[1, L, H]`;
//! - LayerNorm decomposed as below opset 17 (`ReduceMean(axes = [-1])`, `Sub`, `Pow 2`,
//!   `ReduceMean`, `Add eps`, `Sqrt`, `Div`, `Mul gamma`, `Add beta`); BERT's exact GELU
//!   (`Div 1.4142135`, `Erf`, `Add 1`, `Mul x`, `Mul 0.5`), GPT-2's `gelu_new` (tanh form);
//! - BERT's pooler `Gather(hidden, 0, axis = 1)`, `Gemm`, `Tanh`, the classifier `Gemm`;
//!   GPT-2's `lm_head` tied to `wte`: `MatMul(h, Transpose(transformer.wte.weight))`, so the
//!   table is stored once. The output is called `logits`.
//!
//! Weights follow HuggingFace's initialisation: `N(0, 0.02^2)` for linear and embedding
//! weights, zero biases, LayerNorm gamma 1 and beta 0, each tensor drawn from its own stream
//! seeded by the seed and the PyTorch parameter name (as the CNNs of this crate). Node names
//! and outputs follow the exporter (`/bert/encoder/layer.0/attention/self/query/MatMul`,
//! `..._output_0`). Initializers hold `raw_data`, as the exporter writes them. Models can be
//! written tensor by tensor ([`Transformer::write`]): the largest buffer is a chunk, not the
//! 500 MB of GPT-2's weights.

use std::collections::HashMap;
use std::io::{self, Write};

use cryptflow_onnx::proto::attribute_proto::AttributeType;
use cryptflow_onnx::proto::tensor_proto::DataType;
use cryptflow_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use cryptflow_onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::builder::{attr, attr_int, attr_ints, fnv};

/// The opset the transformers are written at (what `torch.onnx.export(opset_version=14)` writes).
pub const TRANSFORMER_OPSET: i64 = 14;
/// The IR version torch 2.x writes.
pub const TRANSFORMER_IR_VERSION: i64 = 8;
/// `torch.finfo(torch.float32).min`, the value masked scores are set to.
pub const FLOAT32_MIN: f32 = f32::MIN;
/// HuggingFace's `initializer_range`: the deviation of linear and embedding weights.
pub const INITIALIZER_RANGE: f64 = 0.02;

/// BERT (encoder + sequence classifier) or GPT-2 (decoder + language-model head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Bert,
    Gpt2,
}

/// The architecture of a zoo transformer (HuggingFace's config fields) and the sequence length.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    pub family: Family,
    /// `num_hidden_layers` / `n_layer`.
    pub layers: usize,
    /// `hidden_size` / `n_embd`.
    pub hidden: usize,
    /// `num_attention_heads` / `n_head`.
    pub heads: usize,
    /// `intermediate_size` (GPT-2: `4 * n_embd`).
    pub intermediate: usize,
    pub vocab: usize,
    /// `max_position_embeddings` / `n_positions`.
    pub max_positions: usize,
    /// BERT's `type_vocab_size` (0 for GPT-2).
    pub type_vocab: usize,
    /// BERT classifier classes (0 for GPT-2, whose head is the language model).
    pub classes: usize,
    /// `layer_norm_eps` / `layer_norm_epsilon`.
    pub eps: f32,
    /// Sequence length L of the inputs `[1, L]`.
    pub seq: usize,
}

impl TransformerConfig {
    /// The standard configurations: `bert-tiny` (2 layers, 128 wide, 2 heads), `bert-mini`
    /// (4, 256, 4), `bert-base` (12, 768, 12) at L = 128 and `gpt2` (GPT-2 small) at L = 32.
    pub fn preset(name: &str) -> Option<TransformerConfig> {
        let bert = |layers, hidden, heads| TransformerConfig {
            family: Family::Bert,
            layers,
            hidden,
            heads,
            intermediate: 4 * hidden,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
            classes: 2,
            eps: 1e-12,
            seq: 128,
        };
        Some(match name {
            "bert-tiny" => bert(2, 128, 2),
            "bert-mini" => bert(4, 256, 4),
            "bert-base" => bert(12, 768, 12),
            "gpt2" => TransformerConfig {
                family: Family::Gpt2,
                layers: 12,
                hidden: 768,
                heads: 12,
                intermediate: 3072,
                vocab: 50257,
                max_positions: 1024,
                type_vocab: 0,
                classes: 0,
                eps: 1e-5,
                seq: 32,
            },
            _ => return None,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads.max(1)
    }

    /// Why the configuration cannot be built, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("layers", self.layers),
            ("hidden size", self.hidden),
            ("heads", self.heads),
            ("intermediate size", self.intermediate),
            ("vocabulary", self.vocab),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(format!("the {what} must be positive"));
            }
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!("the hidden size {} is not a multiple of the {} heads", self.hidden, self.heads));
        }
        if self.seq == 0 {
            return Err("the sequence length (--seq) must be at least 1".into());
        }
        if self.seq > self.max_positions {
            return Err(format!(
                "the sequence length (--seq) {} exceeds the model's {} positions",
                self.seq, self.max_positions
            ));
        }
        if self.family == Family::Bert && self.classes == 0 {
            return Err("classes must be positive".into());
        }
        // Every tensor must stay addressable (and a protobuf message below 2^63 bytes).
        let biggest = [self.vocab * self.hidden, self.hidden * self.intermediate, self.max_positions.pow(2)];
        if biggest.iter().any(|&n| n > 1 << 32) || [self.hidden, self.intermediate, self.vocab].iter().any(|&n| n > 1 << 24) {
            return Err("the configuration is too large".into());
        }
        Ok(())
    }
}

/// How an initializer's values are made.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// float32 `N(0, std^2)` from the tensor's own stream.
    Normal(f64),
    Zeros,
    Ones,
    /// int64 `0, 1, ..., n - 1` (BERT's `position_ids`).
    Arange,
    /// bool lower-triangular `n x n` (GPT-2's causal `attn.bias`).
    LowerTriangular(usize),
}

/// An initializer: the proto without its data, how to make the data and the stream's key.
#[derive(Clone, Debug)]
struct Init {
    proto: TensorProto,
    fill: Fill,
    key: String,
    elements: usize,
}

impl Init {
    fn bytes_per_element(&self) -> usize {
        match self.fill {
            Fill::Normal(_) | Fill::Zeros | Fill::Ones => 4,
            Fill::Arange => 8,
            Fill::LowerTriangular(_) => 1,
        }
    }

    fn data_len(&self) -> usize {
        self.elements * self.bytes_per_element()
    }

    /// Produces the little-endian data in chunks of at most 1 MiB.
    fn stream(&self, seed: u64, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        const CHUNK: usize = 1 << 18;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * self.bytes_per_element());
        let mut normal = match self.fill {
            Fill::Normal(std) => Some(NormalStream::new(StdRng::seed_from_u64(seed ^ fnv(&self.key)), std)),
            _ => None,
        };
        let mut done = 0usize;
        while done < self.elements {
            let n = CHUNK.min(self.elements - done);
            buf.clear();
            match self.fill {
                Fill::Normal(_) => {
                    let g = normal.as_mut().expect("made above");
                    for _ in 0..n {
                        buf.extend_from_slice(&g.next().to_le_bytes());
                    }
                }
                Fill::Zeros => buf.resize(4 * n, 0),
                Fill::Ones => {
                    for _ in 0..n {
                        buf.extend_from_slice(&1f32.to_le_bytes());
                    }
                }
                Fill::Arange => {
                    for i in done..done + n {
                        buf.extend_from_slice(&(i as i64).to_le_bytes());
                    }
                }
                Fill::LowerTriangular(p) => {
                    for i in done..done + n {
                        buf.push(((i % p) <= (i / p)) as u8);
                    }
                }
            }
            sink(&buf)?;
            done += n;
        }
        Ok(())
    }

    fn materialized(&self, seed: u64) -> TensorProto {
        let mut data = Vec::with_capacity(self.data_len());
        self.stream(seed, &mut |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })
        .expect("writing to memory does not fail");
        TensorProto { raw_data: Some(data), ..self.proto.clone() }
    }
}

/// Standard-normal draws by Box-Muller in pairs (the zoo's CNN weights use the same recipe).
struct NormalStream {
    rng: StdRng,
    std: f64,
    spare: Option<f32>,
}

impl NormalStream {
    fn new(rng: StdRng, std: f64) -> NormalStream {
        NormalStream { rng, std, spare: None }
    }

    fn next(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * self.std;
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some((r * s) as f32);
        (r * c) as f32
    }
}

fn value_info(name: &str, elem: DataType, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension { denotation: None, value: Some(dimension::Value::DimValue(d as i64)) })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { t: Some(t), ..attr(name, AttributeType::Tensor) }
}

fn attr_axes(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

/// A built transformer: the graph without its weights' values, the specifications of the
/// initializers, and the parameter counts.
pub struct Transformer {
    pub config: TransformerConfig,
    seed: u64,
    nodes: Vec<NodeProto>,
    inits: Vec<Init>,
    inputs: Vec<ValueInfoProto>,
    output: ValueInfoProto,
    node_names: HashMap<String, usize>,
    matmul_weights: usize,
    /// Trainable parameters (a tied weight counted once).
    pub parameters: u64,
    /// Buffers stored in the model that are not trained (`position_ids`, `attn.bias`).
    pub buffers: u64,
    doc: String,
    metadata: Vec<(String, String)>,
}

impl Transformer {
    /// Builds the graph of `config` (validated) with weights seeded by `seed`; no weight is
    /// drawn until the model is materialised or written.
    pub fn new(config: &TransformerConfig, seed: u64) -> Result<Transformer, String> {
        config.validate()?;
        let mut t = Transformer {
            config: config.clone(),
            seed,
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
            output: value_info("logits", DataType::Float, &[]),
            node_names: HashMap::new(),
            matmul_weights: 0,
            parameters: 0,
            buffers: 0,
            doc: String::new(),
            metadata: vec![],
        };
        match config.family {
            Family::Bert => t.bert(),
            Family::Gpt2 => t.gpt2(),
        }
        Ok(t)
    }

    /// Sets the model's doc string and metadata.
    pub fn describe(&mut self, doc: String, metadata: Vec<(String, String)>) {
        self.doc = doc;
        self.metadata = metadata;
    }

    /// Names, element types and shapes of the graph inputs.
    pub fn inputs(&self) -> Vec<(String, i32, Vec<usize>)> {
        self.inputs.iter().map(describe_value).collect()
    }

    /// Bytes of the initializers' data.
    pub fn weight_bytes(&self) -> u64 {
        self.inits.iter().map(|i| i.data_len() as u64).sum()
    }

    // ---- graph construction ----------------------------------------------------------------

    fn node(&mut self, scope: &str, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>, outputs: usize) -> Vec<String> {
        let base = format!("{scope}/{op}");
        let count = self.node_names.entry(base.clone()).or_insert(0);
        let name = if *count == 0 { base } else { format!("{base}_{count}") };
        *count += 1;
        let output: Vec<String> = (0..outputs).map(|k| format!("{name}_output_{k}")).collect();
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    fn op(&mut self, scope: &str, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.node(scope, op, inputs, attributes, 1).remove(0)
    }

    fn constant(&mut self, scope: &str, elem: DataType, dims: &[usize], raw: Vec<u8>) -> String {
        let t = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(elem as i32),
            raw_data: Some(raw),
            ..Default::default()
        };
        self.op(scope, "Constant", &[], vec![attr_tensor("value", t)])
    }

    /// A float32 scalar constant.
    fn const_f(&mut self, scope: &str, v: f32) -> String {
        self.constant(scope, DataType::Float, &[], v.to_le_bytes().to_vec())
    }

    /// An int64 constant, 1-D (or a scalar with `scalar`).
    fn const_i(&mut self, scope: &str, v: &[i64], scalar: bool) -> String {
        let dims = if scalar { vec![] } else { vec![v.len()] };
        self.constant(scope, DataType::Int64, &dims, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn initializer(&mut self, name: &str, key: &str, elem: DataType, dims: &[usize], fill: Fill, trainable: bool) -> String {
        let elements: usize = dims.iter().product();
        if trainable {
            self.parameters += elements as u64;
        } else {
            self.buffers += elements as u64;
        }
        let proto = TensorProto {
            name: Some(name.into()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(elem as i32),
            ..Default::default()
        };
        self.inits.push(Init { proto, fill, key: key.into(), elements });
        name.to_string()
    }

    fn param(&mut self, name: &str, dims: &[usize], fill: Fill) -> String {
        self.initializer(name, name, DataType::Float, dims, fill, true)
    }

    /// `nn.Linear` on `[1, L, in]`: MatMul by the folded transpose `[in, out]` of the weight
    /// (named `onnx::MatMul_N` like the exporter's, the PyTorch name in its doc string), then
    /// `Add(bias, ..)`.
    fn linear(&mut self, scope: &str, x: &str, module: &str, fan_in: usize, fan_out: usize) -> String {
        self.matmul_weights += 1;
        let wname = format!("onnx::MatMul_{}", 1000 + self.matmul_weights);
        let key = format!("{module}.weight");
        let w = self.initializer(&wname, &key, DataType::Float, &[fan_in, fan_out], Fill::Normal(INITIALIZER_RANGE), true);
        self.inits.last_mut().expect("just pushed").proto.doc_string = Some(format!("{key} transposed"));
        let b = self.param(&format!("{module}.bias"), &[fan_out], Fill::Zeros);
        let y = self.op(scope, "MatMul", &[x, &w], vec![]);
        self.op(scope, "Add", &[&b, &y], vec![])
    }

    /// GPT-2's `Conv1D`: `[in, out]` weight under its own name, MatMul and `Add(bias, ..)`.
    fn conv1d(&mut self, scope: &str, x: &str, module: &str, fan_in: usize, fan_out: usize) -> String {
        let w = self.param(&format!("{module}.weight"), &[fan_in, fan_out], Fill::Normal(INITIALIZER_RANGE));
        let b = self.param(&format!("{module}.bias"), &[fan_out], Fill::Zeros);
        let y = self.op(scope, "MatMul", &[x, &w], vec![]);
        self.op(scope, "Add", &[&b, &y], vec![])
    }

    /// `nn.Linear` on `[1, in]`: `Gemm(x, W [out, in], b, transB = 1)`.
    fn gemm(&mut self, scope: &str, x: &str, module: &str, fan_in: usize, fan_out: usize) -> String {
        let w = self.param(&format!("{module}.weight"), &[fan_out, fan_in], Fill::Normal(INITIALIZER_RANGE));
        let b = self.param(&format!("{module}.bias"), &[fan_out], Fill::Zeros);
        self.op(
            scope,
            "Gemm",
            &[x, &w, &b],
            vec![
                AttributeProto { f: Some(1.0), ..attr("alpha", AttributeType::Float) },
                AttributeProto { f: Some(1.0), ..attr("beta", AttributeType::Float) },
                attr_int("transB", 1),
            ],
        )
    }

    /// LayerNorm over the last axis, decomposed as the exporter writes it below opset 17.
    fn layer_norm(&mut self, scope: &str, x: &str, module: &str) -> String {
        let h = self.config.hidden;
        let eps = self.config.eps;
        let gamma = self.param(&format!("{module}.weight"), &[h], Fill::Ones);
        let beta = self.param(&format!("{module}.bias"), &[h], Fill::Zeros);
        let mean = self.op(scope, "ReduceMean", &[x], vec![attr_axes("axes", &[-1])]);
        let centred = self.op(scope, "Sub", &[x, &mean], vec![]);
        let two = self.const_f(scope, 2.0);
        let square = self.op(scope, "Pow", &[&centred, &two], vec![]);
        let var = self.op(scope, "ReduceMean", &[&square], vec![attr_axes("axes", &[-1])]);
        let e = self.const_f(scope, eps);
        let shifted = self.op(scope, "Add", &[&var, &e], vec![]);
        let std = self.op(scope, "Sqrt", &[&shifted], vec![]);
        let normed = self.op(scope, "Div", &[&centred, &std], vec![]);
        let scaled = self.op(scope, "Mul", &[&normed, &gamma], vec![]);
        self.op(scope, "Add", &[&scaled, &beta], vec![])
    }

    /// `(1.0 - mask[:, None, None, :].to(float32)) * finfo(float32).min`.
    fn extended_mask(&mut self, scope: &str, mask: &str) -> String {
        let one = self.const_i(scope, &[1], false);
        let u1 = self.op(scope, "Unsqueeze", &[mask, &one], vec![]);
        let two = self.const_i(scope, &[2], false);
        let u2 = self.op(scope, "Unsqueeze", &[&u1, &two], vec![]);
        let f = self.op(scope, "Cast", &[&u2], vec![attr_int("to", DataType::Float as i64)]);
        let one_f = self.const_f(scope, 1.0);
        let inverted = self.op(scope, "Sub", &[&one_f, &f], vec![]);
        let min = self.const_f(scope, FLOAT32_MIN);
        self.op(scope, "Mul", &[&inverted, &min], vec![])
    }

    /// `Unsqueeze(Gather(Shape(x), axis), 0)`: one dimension of `x` as a 1-D int64 tensor.
    fn dim(&mut self, scope: &str, x: &str, axis: i64) -> String {
        let shape = self.op(scope, "Shape", &[x], vec![]);
        let index = self.const_i(scope, &[axis], true);
        let d = self.op(scope, "Gather", &[&shape, &index], vec![attr_int("axis", 0)]);
        let zero = self.const_i(scope, &[0], false);
        self.op(scope, "Unsqueeze", &[&d, &zero], vec![])
    }

    /// `x.view(x.size()[:-1] + (heads, d)).permute(0, 2, 1, 3)`.
    fn split_heads(&mut self, scope: &str, x: &str) -> String {
        let (heads, d) = (self.config.heads as i64, self.config.head_dim() as i64);
        let d0 = self.dim(scope, x, 0);
        let d1 = self.dim(scope, x, 1);
        let ch = self.const_i(scope, &[heads], false);
        let cd = self.const_i(scope, &[d], false);
        let shape = self.op(scope, "Concat", &[&d0, &d1, &ch, &cd], vec![attr_int("axis", 0)]);
        let r = self.op(scope, "Reshape", &[x, &shape], vec![]);
        self.op(scope, "Transpose", &[&r], vec![attr_ints("perm", &[0, 2, 1, 3])])
    }

    /// `x.permute(0, 2, 1, 3).contiguous().view(x.size()[:-2] + (hidden,))`.
    fn merge_heads(&mut self, scope: &str, x: &str) -> String {
        let t = self.op(scope, "Transpose", &[x], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let d0 = self.dim(scope, &t, 0);
        let d1 = self.dim(scope, &t, 1);
        let ch = self.const_i(scope, &[self.config.hidden as i64], false);
        let shape = self.op(scope, "Concat", &[&d0, &d1, &ch], vec![attr_int("axis", 0)]);
        self.op(scope, "Reshape", &[&t, &shape], vec![])
    }

    /// Scores of q `[1, h, L, d]` against k, scaled by `1 / sqrt(d)`.
    fn scores(&mut self, scope: &str, q: &str, k: &str) -> String {
        let kt = self.op(scope, "Transpose", &[k], vec![attr_ints("perm", &[0, 1, 3, 2])]);
        let s = self.op(scope, "MatMul", &[q, &kt], vec![]);
        let root = self.const_f(scope, (self.config.head_dim() as f32).sqrt());
        self.op(scope, "Div", &[&s, &root], vec![])
    }

    fn input(&mut self, name: &str) -> String {
        self.inputs.push(value_info(name, DataType::Int64, &[1, self.config.seq]));
        name.to_string()
    }

    fn bert(&mut self) {
        let c = self.config.clone();
        let ids = self.input("input_ids");
        let mask = self.input("attention_mask");
        let types = self.input("token_type_ids");
        let ext = self.extended_mask("/bert", &mask);

        // Embeddings.
        let s = "/bert/embeddings";
        let positions =
            self.initializer("bert.embeddings.position_ids", "bert.embeddings.position_ids", DataType::Int64, &[1, c.max_positions], Fill::Arange, false);
        let word = self.param("bert.embeddings.word_embeddings.weight", &[c.vocab, c.hidden], Fill::Normal(INITIALIZER_RANGE));
        let pos = self.param("bert.embeddings.position_embeddings.weight", &[c.max_positions, c.hidden], Fill::Normal(INITIALIZER_RANGE));
        let typ = self.param("bert.embeddings.token_type_embeddings.weight", &[c.type_vocab, c.hidden], Fill::Normal(INITIALIZER_RANGE));
        let length = self.dim(s, &ids, 1);
        let start = self.const_i(s, &[0], false);
        let axis = self.const_i(s, &[1], false);
        let step = self.const_i(s, &[1], false);
        let position_ids = self.op(s, "Slice", &[&positions, &start, &length, &axis, &step], vec![]);
        let we = self.op(&format!("{s}/word_embeddings"), "Gather", &[&word, &ids], vec![]);
        let te = self.op(&format!("{s}/token_type_embeddings"), "Gather", &[&typ, &types], vec![]);
        let e = self.op(s, "Add", &[&we, &te], vec![]);
        let pe = self.op(&format!("{s}/position_embeddings"), "Gather", &[&pos, &position_ids], vec![]);
        let e = self.op(s, "Add", &[&e, &pe], vec![]);
        let mut x = self.layer_norm(&format!("{s}/LayerNorm"), &e, "bert.embeddings.LayerNorm");

        for l in 0..c.layers {
            let m = format!("bert.encoder.layer.{l}");
            let s = format!("/bert/encoder/layer.{l}");
            let sa = format!("{s}/attention/self");
            let q = self.linear(&format!("{sa}/query"), &x, &format!("{m}.attention.self.query"), c.hidden, c.hidden);
            let k = self.linear(&format!("{sa}/key"), &x, &format!("{m}.attention.self.key"), c.hidden, c.hidden);
            let k = self.split_heads(&sa, &k);
            let v = self.linear(&format!("{sa}/value"), &x, &format!("{m}.attention.self.value"), c.hidden, c.hidden);
            let v = self.split_heads(&sa, &v);
            let q = self.split_heads(&sa, &q);
            let scores = self.scores(&sa, &q, &k);
            let scores = self.op(&sa, "Add", &[&scores, &ext], vec![]);
            let probs = self.op(&sa, "Softmax", &[&scores], vec![attr_int("axis", -1)]);
            let context = self.op(&sa, "MatMul", &[&probs, &v], vec![]);
            let context = self.merge_heads(&sa, &context);
            let so = format!("{s}/attention/output");
            let d = self.linear(&format!("{so}/dense"), &context, &format!("{m}.attention.output.dense"), c.hidden, c.hidden);
            let r = self.op(&so, "Add", &[&d, &x], vec![]);
            let attention = self.layer_norm(&format!("{so}/LayerNorm"), &r, &format!("{m}.attention.output.LayerNorm"));
            let si = format!("{s}/intermediate");
            let h = self.linear(&format!("{si}/dense"), &attention, &format!("{m}.intermediate.dense"), c.hidden, c.intermediate);
            let h = self.gelu_erf(&format!("{si}/intermediate_act_fn"), &h);
            let so = format!("{s}/output");
            let d = self.linear(&format!("{so}/dense"), &h, &format!("{m}.output.dense"), c.intermediate, c.hidden);
            let r = self.op(&so, "Add", &[&d, &attention], vec![]);
            x = self.layer_norm(&format!("{so}/LayerNorm"), &r, &format!("{m}.output.LayerNorm"));
        }

        let s = "/bert/pooler";
        let zero = self.const_i(s, &[0], true);
        let first = self.op(s, "Gather", &[&x, &zero], vec![attr_int("axis", 1)]);
        let pooled = self.gemm(&format!("{s}/dense"), &first, "bert.pooler.dense", c.hidden, c.hidden);
        let pooled = self.op(&format!("{s}/activation"), "Tanh", &[&pooled], vec![]);
        let logits = self.gemm("/classifier", &pooled, "classifier", c.hidden, c.classes);
        self.set_output(&logits, &[1, c.classes]);
    }

    /// The exact GELU as the exporter writes `nn.functional.gelu` below opset 20.
    fn gelu_erf(&mut self, scope: &str, x: &str) -> String {
        let root2 = self.const_f(scope, std::f32::consts::SQRT_2);
        let d = self.op(scope, "Div", &[x, &root2], vec![]);
        let e = self.op(scope, "Erf", &[&d], vec![]);
        let one = self.const_f(scope, 1.0);
        let a = self.op(scope, "Add", &[&e, &one], vec![]);
        let m = self.op(scope, "Mul", &[x, &a], vec![]);
        let half = self.const_f(scope, 0.5);
        self.op(scope, "Mul", &[&m, &half], vec![])
    }

    /// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    fn gelu_tanh(&mut self, scope: &str, x: &str) -> String {
        let half = self.const_f(scope, 0.5);
        let m = self.op(scope, "Mul", &[x, &half], vec![]);
        let three = self.const_f(scope, 3.0);
        let cube = self.op(scope, "Pow", &[x, &three], vec![]);
        let k = self.const_f(scope, 0.044715);
        let kc = self.op(scope, "Mul", &[&cube, &k], vec![]);
        let inner = self.op(scope, "Add", &[x, &kc], vec![]);
        let root = self.const_f(scope, (2.0 / std::f64::consts::PI).sqrt() as f32);
        let scaled = self.op(scope, "Mul", &[&inner, &root], vec![]);
        let t = self.op(scope, "Tanh", &[&scaled], vec![]);
        let one = self.const_f(scope, 1.0);
        let a = self.op(scope, "Add", &[&t, &one], vec![]);
        self.op(scope, "Mul", &[&m, &a], vec![])
    }

    fn gpt2(&mut self) {
        let c = self.config.clone();
        let ids = self.input("input_ids");
        let mask = self.input("attention_mask");
        let s = "/transformer";
        let wte = self.param("transformer.wte.weight", &[c.vocab, c.hidden], Fill::Normal(INITIALIZER_RANGE));
        let wpe = self.param("transformer.wpe.weight", &[c.max_positions, c.hidden], Fill::Normal(INITIALIZER_RANGE));
        // position_ids = torch.arange(0, input_shape[-1]).unsqueeze(0)
        let shape = self.op(s, "Shape", &[&ids], vec![]);
        let last = self.const_i(s, &[-1], true);
        let length = self.op(s, "Gather", &[&shape, &last], vec![attr_int("axis", 0)]);
        let start = self.const_i(s, &[0], true);
        let delta = self.const_i(s, &[1], true);
        let range = self.op(s, "Range", &[&start, &length, &delta], vec![]);
        let zero = self.const_i(s, &[0], false);
        let position_ids = self.op(s, "Unsqueeze", &[&range, &zero], vec![]);
        // attention_mask.view(batch_size, -1), then the extended mask.
        let view = self.const_i(s, &[1, -1], false);
        let mask = self.op(s, "Reshape", &[&mask, &view], vec![]);
        let ext = self.extended_mask(s, &mask);
        let te = self.op(&format!("{s}/wte"), "Gather", &[&wte, &ids], vec![]);
        let pe = self.op(&format!("{s}/wpe"), "Gather", &[&wpe, &position_ids], vec![]);
        let mut x = self.op(s, "Add", &[&te, &pe], vec![]);

        for l in 0..c.layers {
            let m = format!("transformer.h.{l}");
            let s = format!("/transformer/h.{l}");
            let h = self.layer_norm(&format!("{s}/ln_1"), &x, &format!("{m}.ln_1"));
            let sa = format!("{s}/attn");
            let qkv = self.conv1d(&format!("{sa}/c_attn"), &h, &format!("{m}.attn.c_attn"), c.hidden, 3 * c.hidden);
            let sizes = self.const_i(&sa, &[c.hidden as i64; 3], false);
            let parts = self.node(&sa, "Split", &[&qkv, &sizes], vec![attr_int("axis", 2)], 3);
            let q = self.split_heads(&sa, &parts[0]);
            let k = self.split_heads(&sa, &parts[1]);
            let v = self.split_heads(&sa, &parts[2]);
            let scores = self.scores(&sa, &q, &k);
            // causal_mask = self.bias[:, :, key_length - query_length : key_length, :key_length]
            let p = c.max_positions;
            let bias = self.initializer(&format!("{m}.attn.bias"), &format!("{m}.attn.bias"), DataType::Bool, &[1, 1, p, p], Fill::LowerTriangular(p), false);
            let key_length = self.dim(&sa, &k, -2);
            let query_length = self.dim(&sa, &q, -2);
            let from = self.op(&sa, "Sub", &[&key_length, &query_length], vec![]);
            let axis2 = self.const_i(&sa, &[2], false);
            let step = self.const_i(&sa, &[1], false);
            let rows = self.op(&sa, "Slice", &[&bias, &from, &key_length, &axis2, &step], vec![]);
            let zero = self.const_i(&sa, &[0], false);
            let axis3 = self.const_i(&sa, &[3], false);
            let step = self.const_i(&sa, &[1], false);
            let causal = self.op(&sa, "Slice", &[&rows, &zero, &key_length, &axis3, &step], vec![]);
            let min = self.const_f(&sa, FLOAT32_MIN);
            let scores = self.op(&sa, "Where", &[&causal, &scores, &min], vec![]);
            let scores = self.op(&sa, "Add", &[&scores, &ext], vec![]);
            let probs = self.op(&sa, "Softmax", &[&scores], vec![attr_int("axis", -1)]);
            let context = self.op(&sa, "MatMul", &[&probs, &v], vec![]);
            let context = self.merge_heads(&sa, &context);
            let a = self.conv1d(&format!("{sa}/c_proj"), &context, &format!("{m}.attn.c_proj"), c.hidden, c.hidden);
            let r = self.op(&s, "Add", &[&a, &x], vec![]);
            let h = self.layer_norm(&format!("{s}/ln_2"), &r, &format!("{m}.ln_2"));
            let mlp = format!("{s}/mlp");
            let h = self.conv1d(&format!("{mlp}/c_fc"), &h, &format!("{m}.mlp.c_fc"), c.hidden, c.intermediate);
            let h = self.gelu_tanh(&format!("{mlp}/act"), &h);
            let h = self.conv1d(&format!("{mlp}/c_proj"), &h, &format!("{m}.mlp.c_proj"), c.intermediate, c.hidden);
            x = self.op(&s, "Add", &[&r, &h], vec![]);
        }
        let x = self.layer_norm("/transformer/ln_f", &x, "transformer.ln_f");
        // lm_head.weight is transformer.wte.weight (tied): stored once, transposed in the graph.
        let wt = self.op("/lm_head", "Transpose", &[&wte], vec![attr_ints("perm", &[1, 0])]);
        let logits = self.op("/lm_head", "MatMul", &[&x, &wt], vec![]);
        self.set_output(&logits, &[1, c.seq, c.vocab]);
    }

    /// Renames the value `name` to the graph output `logits` (the exporter's `output_names`).
    fn set_output(&mut self, name: &str, dims: &[usize]) {
        for n in &mut self.nodes {
            for o in &mut n.output {
                if o == name {
                    *o = "logits".into();
                }
            }
        }
        self.output = value_info("logits", DataType::Float, dims);
    }

    // ---- output ----------------------------------------------------------------------------

    /// The model without initializer data (`initializers` false: without initializers).
    fn skeleton(&self, initializers: bool) -> ModelProto {
        ModelProto {
            ir_version: Some(TRANSFORMER_IR_VERSION),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(TRANSFORMER_OPSET) }],
            producer_name: Some("cryptflow-zoo".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(self.doc.clone()),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: Some(k.clone()), value: Some(v.clone()) })
                .collect(),
            graph: Some(GraphProto {
                name: Some("main_graph".into()),
                node: self.nodes.clone(),
                initializer: if initializers { self.inits.iter().map(|i| i.proto.clone()).collect() } else { vec![] },
                input: self.inputs.clone(),
                output: vec![self.output.clone()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The whole model in memory (`materialize` false: no initializers, only the structure).
    pub fn model(&self, materialize: bool) -> ModelProto {
        let mut m = self.skeleton(false);
        if materialize {
            m.graph.as_mut().expect("has a graph").initializer = self.inits.iter().map(|i| i.materialized(self.seed)).collect();
        }
        m
    }

    /// Writes the model as ONNX bytes, one initializer at a time and each in chunks (memory
    /// stays at the graph's size plus 1 MiB). The bytes decode to [`Transformer::model`]`(true)`.
    /// Returns the number of bytes written.
    pub fn write(&self, w: &mut dyn Write) -> io::Result<u64> {
        // Protobuf fields may come in any order and repeated fields accumulate: the model's
        // other fields, then its graph (field 7) whose body is the graph without initializers
        // followed by the initializers (field 5), each its header fields and `raw_data` (9).
        let mut head = self.skeleton(false);
        let graph = head.graph.take().expect("has a graph");
        let head = head.encode_to_vec();
        let graph = graph.encode_to_vec();
        let tensors: Vec<(Vec<u8>, usize)> = self
            .inits
            .iter()
            .map(|i| {
                let header = i.proto.encode_to_vec();
                let data = i.data_len();
                (header, data)
            })
            .collect();
        let tensor_len = |header: &[u8], data: usize| header.len() + 1 + varint_len(data as u64) + data;
        let graph_len = graph.len()
            + tensors.iter().map(|(h, d)| {
                let n = tensor_len(h, *d);
                1 + varint_len(n as u64) + n
            }).sum::<usize>();
        let mut written = 0u64;
        let mut put = |w: &mut dyn Write, bytes: &[u8]| -> io::Result<()> {
            written += bytes.len() as u64;
            w.write_all(bytes)
        };
        put(w, &head)?;
        put(w, &key_and_len(7, graph_len))?;
        put(w, &graph)?;
        for (init, (header, data)) in self.inits.iter().zip(&tensors) {
            put(w, &key_and_len(5, tensor_len(header, *data)))?;
            put(w, header)?;
            put(w, &key_and_len(9, *data))?;
            init.stream(self.seed, &mut |chunk| put(w, chunk))?;
        }
        Ok(written)
    }
}

fn describe_value(v: &ValueInfoProto) -> (String, i32, Vec<usize>) {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        unreachable!("the zoo's values are tensors")
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(dimension::Value::DimValue(v)) => v as usize,
                    _ => unreachable!("the zoo's shapes are fixed"),
                })
                .collect()
        })
        .unwrap_or_default();
    (v.name.clone().unwrap_or_default(), t.elem_type.unwrap_or_default(), dims)
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

/// A length-delimited field's key and length.
fn key_and_len(field: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(len as u64, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(family: Family) -> TransformerConfig {
        let mut c = TransformerConfig::preset(if family == Family::Bert { "bert-tiny" } else { "gpt2" }).unwrap();
        c.layers = 1;
        c.hidden = 16;
        c.heads = 2;
        c.intermediate = 32;
        c.vocab = 50;
        c.max_positions = 20;
        c.seq = 5;
        c
    }

    #[test]
    fn the_streamed_bytes_decode_to_the_materialised_model() {
        for family in [Family::Bert, Family::Gpt2] {
            let t = Transformer::new(&tiny(family), 3).unwrap();
            let mut bytes = Vec::new();
            let n = t.write(&mut bytes).unwrap();
            assert_eq!(n as usize, bytes.len());
            let decoded = ModelProto::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded, t.model(true), "{family:?}");
        }
    }

    #[test]
    fn weights_follow_the_huggingface_initialisation() {
        let t = Transformer::new(&tiny(Family::Bert), 0).unwrap();
        let m = t.model(true);
        let g = m.graph.unwrap();
        let floats = |name: &str| -> Vec<f32> {
            let t = g.initializer.iter().find(|t| t.name() == name).unwrap();
            t.raw_data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        };
        let w = floats("bert.embeddings.word_embeddings.weight");
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(mean.abs() < 0.003 && (std - 0.02).abs() < 0.002, "mean {mean} std {std}");
        assert!(floats("bert.embeddings.LayerNorm.weight").iter().all(|&v| v == 1.0));
        assert!(floats("bert.embeddings.LayerNorm.bias").iter().all(|&v| v == 0.0));
        assert!(floats("classifier.bias").iter().all(|&v| v == 0.0));
        let positions = g.initializer.iter().find(|t| t.name() == "bert.embeddings.position_ids").unwrap();
        assert_eq!(positions.raw_data().len(), 8 * 20);
        assert_eq!(&positions.raw_data()[8..16], &1i64.to_le_bytes());
    }
}
