//! A small ONNX graph builder that tracks shapes and the expected mean and variance of every
//! channel (for standard-normal inputs, over the random weights), so that batch norms can be
//! given running statistics that really normalise, and activations stay O(1) at any depth.

use cryptflow_onnx::proto::attribute_proto::AttributeType;
use cryptflow_onnx::proto::tensor_proto::DataType;
use cryptflow_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use cryptflow_onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The ONNX opset the zoo writes.
pub const OPSET: i64 = 13;
/// IR version matching opset 13 (ONNX 1.8).
pub const IR_VERSION: i64 = 7;

/// Expected mean and variance of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub mean: f64,
    pub var: f64,
}

impl Moments {
    const STANDARD: Moments = Moments { mean: 0.0, var: 1.0 };

    fn m2(self) -> f64 {
        self.mean * self.mean + self.var
    }

    /// Moments of `max(z, 0)` for `z ~ N(mean, var)`.
    fn relu(self) -> Moments {
        let s = self.var.max(1e-12).sqrt();
        let a = self.mean / s;
        let (pdf, cdf) = ((-0.5 * a * a).exp() / (std::f64::consts::TAU).sqrt(), 0.5 * (1.0 + erf(a / std::f64::consts::SQRT_2)));
        let mean = self.mean * cdf + s * pdf;
        let m2 = (self.mean * self.mean + self.var) * cdf + self.mean * s * pdf;
        Moments { mean, var: (m2 - mean * mean).max(0.0) }
    }
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// A tensor of the graph under construction: its name, shape and the expected moments of each
/// channel (axis 1; one entry for rank-2 values).
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    pub moments: Vec<Moments>,
}

impl Value {
    pub fn channels(&self) -> usize {
        self.shape[1]
    }

    fn spatial(&self) -> &[usize] {
        &self.shape[2..]
    }

    fn mean_m2(&self) -> f64 {
        self.moments.iter().map(|m| m.m2()).sum::<f64>() / self.moments.len().max(1) as f64
    }

    /// The moments of a zero-mean linear map of this value with He-normal weights.
    fn he_output(&self, channels: usize) -> Vec<Moments> {
        vec![Moments { mean: 0.0, var: 2.0 * self.mean_m2() }; channels]
    }
}

/// Weight initialisation and parameter accounting.
pub struct Builder {
    seed: u64,
    /// Draw weight values (false: only count parameters and build the graph structure).
    materialize: bool,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    /// Trainable parameters: convolution and dense weights and biases, batch-norm scale and
    /// shift (the convention of torchvision and of the paper's parameter counts).
    pub parameters: u64,
    /// Batch-norm running statistics (stored in the model, not trained).
    pub buffers: u64,
    /// Values that are int64 indices (ArgMax results), not float.
    indices: Vec<String>,
}

pub(crate) fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(ty as i32), ..Default::default() }
}
pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}
pub(crate) fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto { ints: v.iter().map(|&x| x as i64).collect(), ..attr(name, AttributeType::Ints) }
}
pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { f: Some(v), ..attr(name, AttributeType::Float) }
}

fn tensor_type(dims: &[usize]) -> TypeProto {
    typed_tensor(DataType::Float, dims)
}

fn typed_tensor(elem_type: DataType, dims: &[usize]) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem_type as i32),
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| Dimension { denotation: None, value: Some(dimension::Value::DimValue(d as i64)) })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

/// FNV-1a, to give every weight tensor its own random stream (a weight's values do not depend
/// on which other layers the network has).
pub(crate) fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Spatial output extent of a convolution or pooling window.
fn window_out(input: usize, kernel: usize, stride: usize, pad: usize, ceil: bool) -> usize {
    let span = input + 2 * pad - kernel;
    if ceil {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    }
}

impl Builder {
    pub fn new(seed: u64, materialize: bool) -> Builder {
        Builder { seed, materialize, nodes: vec![], inits: vec![], inputs: vec![], parameters: 0, buffers: 0, indices: vec![] }
    }

    fn rng(&self, name: &str) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ fnv(name))
    }

    /// `n` draws from N(0, std^2) (Box-Muller).
    fn normal(&self, name: &str, n: usize, std: f64) -> Vec<f32> {
        if !self.materialize {
            return Vec::new();
        }
        let mut rng = self.rng(name);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            out.push((r * c) as f32);
            if out.len() < n {
                out.push((r * s) as f32);
            }
        }
        out
    }

    fn uniform(&self, name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        if !self.materialize {
            return Vec::new();
        }
        let mut rng = self.rng(name);
        (0..n).map(|_| rng.random_range(lo..hi) as f32).collect()
    }

    fn init(&mut self, name: &str, dims: &[usize], data: Vec<f32>, trainable: bool) -> String {
        let count: usize = dims.iter().product();
        if trainable {
            self.parameters += count as u64;
        } else {
            self.buffers += count as u64;
        }
        if self.materialize {
            debug_assert_eq!(data.len(), count);
            self.inits.push(TensorProto {
                name: Some(name.into()),
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: Some(DataType::Float as i32),
                float_data: data,
                ..Default::default()
            });
        }
        name.to_string()
    }

    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            name: Some(name.into()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            attribute: attributes,
            ..Default::default()
        });
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> Value {
        self.inputs.push(ValueInfoProto { name: Some(name.into()), r#type: Some(tensor_type(shape)), ..Default::default() });
        let moments = vec![Moments::STANDARD; if shape.len() > 1 { shape[1] } else { 1 }];
        Value { name: name.into(), shape: shape.to_vec(), moments }
    }

    /// Convolution (2D or 3D after the input's rank), He-normal weights, optional bias.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(&mut self, x: &Value, name: &str, out: usize, kernel: usize, stride: usize, pad: usize, bias: bool) -> Value {
        let r = x.shape.len() - 2;
        let mut wdims = vec![out, x.channels()];
        wdims.extend(std::iter::repeat_n(kernel, r));
        let fan_in = x.channels() * kernel.pow(r as u32);
        let w = self.normal(&format!("{name}.weight"), out * fan_in, (2.0 / fan_in as f64).sqrt());
        let w = self.init(&format!("{name}.weight"), &wdims, w, true);
        let mut inputs = vec![x.name.clone(), w];
        if bias {
            let b = self.normal(&format!("{name}.bias"), out, 0.01);
            inputs.push(self.init(&format!("{name}.bias"), &[out], b, true));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node(
            "Conv",
            name,
            &refs,
            vec![
                attr_ints("kernel_shape", &vec![kernel; r]),
                attr_ints("strides", &vec![stride; r]),
                attr_ints("pads", &vec![pad; 2 * r]),
            ],
        );
        let mut shape = vec![x.shape[0], out];
        shape.extend(x.spatial().iter().map(|&d| window_out(d, kernel, stride, pad, false)));
        Value { name: name.into(), shape, moments: x.he_output(out) }
    }

    /// Transposed convolution (kernel = stride: non-overlapping upsampling; kernel 4, stride
    /// 2, padding 1: InnerEye's), He-normal weights over the taps that reach each output, and
    /// a bias.
    pub fn conv_transpose(&mut self, x: &Value, name: &str, out: usize, kernel: usize, stride: usize, pad: usize) -> Value {
        let r = x.shape.len() - 2;
        let mut wdims = vec![x.channels(), out];
        wdims.extend(std::iter::repeat_n(kernel, r));
        let taps = (kernel.div_ceil(stride)).pow(r as u32);
        let fan_in = x.channels() * taps;
        let count = x.channels() * out * kernel.pow(r as u32);
        let w = self.normal(&format!("{name}.weight"), count, (2.0 / fan_in as f64).sqrt());
        let w = self.init(&format!("{name}.weight"), &wdims, w, true);
        let b = self.normal(&format!("{name}.bias"), out, 0.01);
        let b = self.init(&format!("{name}.bias"), &[out], b, true);
        self.node(
            "ConvTranspose",
            name,
            &[&x.name, &w, &b],
            vec![attr_ints("kernel_shape", &vec![kernel; r]), attr_ints("strides", &vec![stride; r]), attr_ints("pads", &vec![pad; 2 * r])],
        );
        let mut shape = vec![x.shape[0], out];
        shape.extend(x.spatial().iter().map(|&d| (d - 1) * stride + kernel - 2 * pad));
        Value { name: name.into(), shape, moments: x.he_output(out) }
    }

    /// Batch normalisation (inference form). The running statistics are the expected
    /// statistics of the input (mean jittered by 5% of the deviation, variance by U(0.8, 1.2)),
    /// so it does normalise, as a trained one would; scale ~ U(0.2, 0.5), shift ~ N(0, 0.05).
    pub fn batch_norm(&mut self, x: &Value, name: &str) -> Value {
        let c = x.channels();
        let gamma = self.uniform(&format!("{name}.weight"), c, 0.2, 0.5);
        let beta = self.normal(&format!("{name}.bias"), c, 0.05);
        let (mean, var) = if self.materialize {
            let jitter = self.uniform(&format!("{name}.running_var"), c, 0.8, 1.2);
            let noise = self.normal(&format!("{name}.running_mean"), c, 0.05);
            let var: Vec<f32> = x.moments.iter().zip(&jitter).map(|(m, &j)| (m.var * j as f64) as f32).collect();
            let mean: Vec<f32> =
                x.moments.iter().zip(&noise).map(|(m, &n)| (m.mean + m.var.sqrt() * n as f64) as f32).collect();
            (mean, var)
        } else {
            (vec![], vec![])
        };
        let moments: Vec<Moments> = if self.materialize {
            (0..c)
                .map(|k| {
                    let scale = gamma[k] as f64 / (var[k] as f64 + 1e-5).sqrt();
                    let m = x.moments[k];
                    Moments { mean: scale * (m.mean - mean[k] as f64) + beta[k] as f64, var: scale * scale * m.var }
                })
                .collect()
        } else {
            vec![Moments { mean: 0.0, var: 0.35f64.powi(2) }; c]
        };
        let g = self.init(&format!("{name}.weight"), &[c], gamma, true);
        let b = self.init(&format!("{name}.bias"), &[c], beta, true);
        let m = self.init(&format!("{name}.running_mean"), &[c], mean, false);
        let v = self.init(&format!("{name}.running_var"), &[c], var, false);
        self.node("BatchNormalization", name, &[&x.name, &g, &b, &m, &v], vec![attr_float("epsilon", 1e-5)]);
        Value { name: name.into(), shape: x.shape.clone(), moments }
    }

    /// The index of the largest value along `axis` (dropped from the shape): int64 indices,
    /// e.g. a segmentation's class per voxel.
    pub fn argmax(&mut self, x: &Value, name: &str, axis: usize) -> Value {
        self.node("ArgMax", name, &[&x.name], vec![attr_int("axis", axis as i64), attr_int("keepdims", 0)]);
        self.indices.push(name.to_string());
        let mut shape = x.shape.clone();
        shape.remove(axis);
        Value { name: name.into(), shape, moments: Vec::new() }
    }

    pub fn relu(&mut self, x: &Value, name: &str) -> Value {
        self.node("Relu", name, &[&x.name], vec![]);
        Value { name: name.into(), shape: x.shape.clone(), moments: x.moments.iter().map(|m| m.relu()).collect() }
    }

    #[allow(clippy::too_many_arguments)]
    fn pool(&mut self, op: &str, x: &Value, name: &str, kernel: usize, stride: usize, pad: usize, ceil: bool) -> Value {
        let r = x.shape.len() - 2;
        let mut attributes = vec![
            attr_ints("kernel_shape", &vec![kernel; r]),
            attr_ints("strides", &vec![stride; r]),
            attr_ints("pads", &vec![pad; 2 * r]),
        ];
        if ceil {
            attributes.push(attr_int("ceil_mode", 1));
        }
        self.node(op, name, &[&x.name], attributes);
        let mut shape = x.shape[..2].to_vec();
        shape.extend(x.spatial().iter().map(|&d| window_out(d, kernel, stride, pad, ceil)));
        // Rough: the maximum of a window sits about a deviation above the mean and varies less;
        // an average of (spatially correlated) activations keeps most of their variance.
        let moments = x
            .moments
            .iter()
            .map(|m| match op {
                "MaxPool" => Moments { mean: m.mean + m.var.sqrt(), var: m.var / 2.0 },
                _ => Moments { mean: m.mean, var: m.var * 0.7 },
            })
            .collect();
        Value { name: name.into(), shape, moments }
    }

    pub fn max_pool(&mut self, x: &Value, name: &str, kernel: usize, stride: usize, pad: usize, ceil: bool) -> Value {
        self.pool("MaxPool", x, name, kernel, stride, pad, ceil)
    }

    pub fn avg_pool(&mut self, x: &Value, name: &str, kernel: usize, stride: usize) -> Value {
        self.pool("AveragePool", x, name, kernel, stride, 0, false)
    }

    pub fn global_avg_pool(&mut self, x: &Value, name: &str) -> Value {
        self.node("GlobalAveragePool", name, &[&x.name], vec![]);
        let mut shape = x.shape[..2].to_vec();
        shape.extend(std::iter::repeat_n(1, x.shape.len() - 2));
        Value { name: name.into(), shape, moments: x.moments.iter().map(|m| Moments { mean: m.mean, var: m.var * 0.1 }).collect() }
    }

    pub fn flatten(&mut self, x: &Value, name: &str) -> Value {
        self.node("Flatten", name, &[&x.name], vec![attr_int("axis", 1)]);
        let features: usize = x.shape[1..].iter().product();
        let mean = x.moments.iter().map(|m| m.mean).sum::<f64>() / x.moments.len() as f64;
        Value { name: name.into(), shape: vec![x.shape[0], features], moments: vec![Moments { mean, var: x.mean_m2() - mean * mean }] }
    }

    /// Fully connected layer `y = x W^T + b` (Gemm, W stored [out, in] as in PyTorch).
    pub fn dense(&mut self, x: &Value, name: &str, out: usize) -> Value {
        let fan_in = x.shape[1];
        let w = self.normal(&format!("{name}.weight"), out * fan_in, (2.0 / fan_in as f64).sqrt());
        let w = self.init(&format!("{name}.weight"), &[out, fan_in], w, true);
        let b = self.normal(&format!("{name}.bias"), out, 0.01);
        let b = self.init(&format!("{name}.bias"), &[out], b, true);
        self.node("Gemm", name, &[&x.name, &w, &b], vec![attr_int("transB", 1)]);
        Value { name: name.into(), shape: vec![x.shape[0], out], moments: x.he_output(1) }
    }

    pub fn add(&mut self, a: &Value, b: &Value, name: &str) -> Value {
        assert_eq!(a.shape, b.shape, "{name}: Add of mismatched shapes");
        self.node("Add", name, &[&a.name, &b.name], vec![]);
        let moments =
            a.moments.iter().zip(&b.moments).map(|(x, y)| Moments { mean: x.mean + y.mean, var: x.var + y.var }).collect();
        Value { name: name.into(), shape: a.shape.clone(), moments }
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, parts: &[&Value], name: &str) -> Value {
        let names: Vec<&str> = parts.iter().map(|v| v.name.as_str()).collect();
        self.node("Concat", name, &names, vec![attr_int("axis", 1)]);
        let mut shape = parts[0].shape.clone();
        shape[1] = parts.iter().map(|v| v.channels()).sum();
        Value { name: name.into(), shape, moments: parts.iter().flat_map(|v| v.moments.iter().copied()).collect() }
    }

    /// The finished model, with `output` as its only graph output.
    pub fn finish(self, graph_name: &str, output: &Value, doc: String, metadata: Vec<(String, String)>) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
            producer_name: Some("cryptflow-zoo".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(doc),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key: Some(key), value: Some(value) })
                .collect(),
            graph: Some(GraphProto {
                name: Some(graph_name.into()),
                node: self.nodes,
                initializer: self.inits,
                input: self.inputs,
                output: vec![ValueInfoProto {
                    name: Some(output.name.clone()),
                    r#type: Some(if self.indices.contains(&output.name) { typed_tensor(DataType::Int64, &output.shape) } else { tensor_type(&output.shape) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
