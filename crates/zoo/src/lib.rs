//! The CrypTFlow paper's benchmark networks as ONNX models with seeded random weights, so that
//! benchmarks need neither Python nor downloads.
//!
//! | name | dataset | what |
//! | --- | --- | --- |
//! | `logistic-regression` | MNIST | dense 784 -> 10 (paper Fig. 2, Table V) |
//! | `secureml` | MNIST | 784-128-128-10 with ReLU (Table V) |
//! | `minionn-mnist` | MNIST | MiniONN's 2-conv network (Table V) |
//! | `minionn-cifar` | CIFAR-10 | MiniONN's 7-conv network |
//! | `lenet` | MNIST | SecureNN's LeNet (Table V) |
//! | `squeezenet` | ImageNet | SqueezeNet v1.1 |
//! | `resnet18` ... `resnet200` | ImageNet | ResNet-n, n in {18, 34, 50, 101, 152, 200} (Table IV, Fig. 10) |
//! | `densenet121` | ImageNet | DenseNet-121 (Table IV) |
//! | `unet3d` | 3D CT | a 3-level 3D-UNet, size and width chosen by the caller |
//! | `bert-tiny`, `bert-mini`, `bert-base` | GLUE | BERT encoders (2/128/2, 4/256/4, 12/768/12 layers/width/heads) with a 2-class sequence classifier |
//! | `gpt2` | WebText | GPT-2 small (12 layers, 768 wide, 12 heads) with its tied language-model head |
//!
//! The transformers are written as HuggingFace `transformers` and `torch.onnx.export` write them
//! at opset 14 (see [`transformer`]), with HuggingFace's initialisation, for a sequence length
//! chosen by [`Options::seq`]; [`write`] streams their 0.4-0.5 GB of weights to a file.
//!
//! The other models use opset 13. Weights are drawn from a [`StdRng`](rand::rngs::StdRng) seeded by the
//! seed and the weight's name (a layer's weights do not depend on the other layers), so a
//! (name, options) pair always gives the same model with this crate's locked `rand` version:
//! convolutions and dense layers He-normal (`N(0, 2 / fan_in)`), biases `N(0, 0.01^2)`, batch
//! norms with scale `U(0.2, 0.5)`, shift `N(0, 0.05^2)` and running statistics set near the
//! statistics the layer's input is expected to have (tracked analytically through the graph
//! for standard-normal inputs), so that activations stay O(1) through deep networks instead of
//! shrinking or growing geometrically with depth. [`random_input`] draws such an input.
//!
//! Parameter counts ([`parameter_count`], computed from the architecture without drawing any
//! weight) follow the usual convention: weights, biases and batch-norm scale and shift, not
//! the running statistics. With 1000 classes they are torchvision's.

mod builder;
mod nets;
pub mod transformer;

use cryptflow_onnx::proto::ModelProto;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use builder::{IR_VERSION, OPSET};
pub use transformer::{Family, Transformer, TransformerConfig, TRANSFORMER_OPSET};

/// What the zoo knows about a network.
#[derive(Clone, Copy, Debug)]
pub struct NetworkInfo {
    pub name: &'static str,
    pub dataset: &'static str,
    pub description: &'static str,
}

const NETWORKS: &[NetworkInfo] = &[
    NetworkInfo { name: "logistic-regression", dataset: "MNIST", description: "logistic regression, dense 784->10" },
    NetworkInfo { name: "secureml", dataset: "MNIST", description: "SecureML 3-layer MLP 784-128-128-10, ReLU" },
    NetworkInfo { name: "minionn-mnist", dataset: "MNIST", description: "MiniONN: 2x (Conv5x5x16-ReLU-MaxPool2), FC100-ReLU, FC10" },
    NetworkInfo { name: "minionn-cifar", dataset: "CIFAR-10", description: "MiniONN: 7 convolutions with ReLU, 2 mean pools, FC10" },
    NetworkInfo { name: "lenet", dataset: "MNIST", description: "LeNet: Conv5x5x20-MaxPool-Conv5x5x50-MaxPool-FC500-FC10, ReLU" },
    NetworkInfo { name: "squeezenet", dataset: "ImageNet", description: "SqueezeNet v1.1" },
    NetworkInfo { name: "resnet18", dataset: "ImageNet", description: "ResNet-18 (basic blocks)" },
    NetworkInfo { name: "resnet34", dataset: "ImageNet", description: "ResNet-34 (basic blocks)" },
    NetworkInfo { name: "resnet50", dataset: "ImageNet", description: "ResNet-50 (bottlenecks)" },
    NetworkInfo { name: "resnet101", dataset: "ImageNet", description: "ResNet-101 (bottlenecks)" },
    NetworkInfo { name: "resnet152", dataset: "ImageNet", description: "ResNet-152 (bottlenecks)" },
    NetworkInfo { name: "resnet200", dataset: "ImageNet", description: "ResNet-200 (bottlenecks)" },
    NetworkInfo { name: "densenet121", dataset: "ImageNet", description: "DenseNet-121, growth 32, blocks 6-12-24-16" },
    NetworkInfo { name: "unet3d", dataset: "3D CT", description: "3-level 3D-UNet (3D convolutions, 3D transposed convolutions, skip concatenations)" },
    NetworkInfo { name: "unet3d-innereye", dataset: "3D CT", description: "InnerEye's UNet3D (prostate): 5 levels of residual Conv3d, stride-2 downsampling, ConvTranspose3d k4 s2 p1, added skips, 8 classes; [1, 1, 64, 256, 256] by default" },
    NetworkInfo { name: "bert-tiny", dataset: "GLUE", description: "BERT-tiny (2 layers, hidden 128, 2 heads) + pooler + 2-class classifier; int64 ids/mask/types" },
    NetworkInfo { name: "bert-mini", dataset: "GLUE", description: "BERT-mini (4 layers, hidden 256, 4 heads) + pooler + 2-class classifier; int64 ids/mask/types" },
    NetworkInfo { name: "bert-base", dataset: "GLUE", description: "BERT-base (12 layers, hidden 768, 12 heads) + pooler + 2-class classifier; int64 ids/mask/types" },
    NetworkInfo { name: "gpt2", dataset: "WebText", description: "GPT-2 small (12 layers, 768, 12 heads), causal, lm_head tied to wte; int64 ids/mask" },
];

/// Default spatial size of the 3D-UNet input (a cube), scaled down to run securely on a small
/// machine; `--input-size` chooses another.
pub const UNET_DEFAULT_SIZE: usize = 16;
/// Default base width (channels of the first level) of the 3D-UNet.
pub const UNET_DEFAULT_WIDTH: usize = 4;

/// How to build a network. `Default` gives the standard network with seed 0.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub seed: u64,
    /// Spatial input size: `[H, W]` for the ImageNet networks (default 224x224), `[D, H, W]`
    /// for the 3D-UNet; one value means a square (cube). The MNIST and CIFAR networks have a
    /// fixed input size.
    pub input_size: Option<Vec<usize>>,
    /// Base width of the 3D-UNet (default [`UNET_DEFAULT_WIDTH`]).
    pub width: Option<usize>,
    /// Output classes (default 10 for MNIST and CIFAR, 1000 for ImageNet, 2 for the 3D-UNet
    /// and the BERT classifiers).
    pub classes: Option<usize>,
    /// Sequence length of the transformers (default 128 for BERT, 32 for GPT-2).
    pub seq: Option<usize>,
    /// Overrides of the transformers' configuration (layers, hidden size, heads,
    /// intermediate size, vocabulary), for small test models.
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub heads: Option<usize>,
    pub intermediate: Option<usize>,
    pub vocab: Option<usize>,
    /// InnerEye's 3D-UNet: end with the per-voxel class scores (logits) instead of the
    /// segmentation map (the class of each voxel, an ArgMax over the classes).
    pub output_logits: bool,
}

impl Options {
    fn has_transformer_options(&self) -> bool {
        [self.seq, self.layers, self.hidden, self.heads, self.intermediate, self.vocab].iter().any(Option::is_some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown network `{0}`; the zoo has: {list}", list = names().join(", "))]
    UnknownNetwork(String),
    #[error("{network}: {reason}")]
    BadOption { network: &'static str, reason: String },
    #[error("cannot write the model: {0}")]
    Io(#[from] std::io::Error),
}

/// Names of every network, in the order of the paper's tables.
pub fn names() -> &'static [&'static str] {
    const NAMES: &[&str] = &[
        "logistic-regression",
        "secureml",
        "minionn-mnist",
        "minionn-cifar",
        "lenet",
        "squeezenet",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet200",
        "densenet121",
        "unet3d",
        "unet3d-innereye",
        "bert-tiny",
        "bert-mini",
        "bert-base",
        "gpt2",
    ];
    NAMES
}

fn normalise(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase()
}

/// The network called `name` (case, `-` and `_` are ignored: `LogisticRegression`,
/// `resnet-50` and `ResNet50` are accepted).
pub fn info(name: &str) -> Result<&'static NetworkInfo, ZooError> {
    let wanted = normalise(name);
    NETWORKS.iter().find(|n| normalise(n.name) == wanted).ok_or_else(|| ZooError::UnknownNetwork(name.to_string()))
}

/// Depth of a ResNet name (`resnet50` -> 50).
pub fn resnet_depth(name: &str) -> Option<usize> {
    info(name).ok()?.name.strip_prefix("resnet")?.parse().ok()
}

fn spatial<const N: usize>(network: &'static str, options: &Options, default: usize) -> Result<[usize; N], ZooError> {
    let size = match &options.input_size {
        None => vec![default; N],
        Some(v) if v.len() == 1 => vec![v[0]; N],
        Some(v) if v.len() == N => v.clone(),
        Some(v) => {
            return Err(ZooError::BadOption { network, reason: format!("input size {v:?}: give 1 or {N} values") });
        }
    };
    if size.contains(&0) {
        return Err(ZooError::BadOption { network, reason: "input sizes must be positive".into() });
    }
    Ok(size.try_into().expect("length checked"))
}

/// InnerEye's prostate input (depth, height, width) and classes (7 structures and background).
pub const INNEREYE_DEFAULT_SIZE: [usize; 3] = [64, 256, 256];
pub const INNEREYE_DEFAULT_WIDTH: usize = 32;
pub const INNEREYE_CLASSES: usize = 8;

fn innereye_size(network: &'static str, options: &Options) -> Result<[usize; 3], ZooError> {
    let size = match &options.input_size {
        None => INNEREYE_DEFAULT_SIZE,
        Some(_) => spatial::<3>(network, options, 0)?,
    };
    let unit = 1 << nets::INNEREYE_LEVELS;
    if size.iter().any(|&s| s % unit != 0) {
        return Err(ZooError::BadOption { network, reason: format!("every input dimension must be a positive multiple of {unit}, got {size:?}") });
    }
    Ok(size)
}

fn fixed_size(network: &'static str, options: &Options) -> Result<(), ZooError> {
    match &options.input_size {
        None => Ok(()),
        Some(_) => Err(ZooError::BadOption { network, reason: "this network has a fixed input size".into() }),
    }
}

/// The configuration of transformer `name` with the options applied and checked; `None` for
/// the other networks.
pub fn transformer_config(name: &str, options: &Options) -> Result<Option<TransformerConfig>, ZooError> {
    let info = info(name)?;
    let net = info.name;
    let Some(mut c) = TransformerConfig::preset(net) else { return Ok(None) };
    let bad = |reason: String| ZooError::BadOption { network: net, reason };
    if options.input_size.is_some() {
        return Err(bad("a transformer has no input size: give the sequence length with --seq".into()));
    }
    if options.width.is_some() {
        return Err(bad("only the 3D-UNet has a width option".into()));
    }
    if let Some(classes) = options.classes {
        if c.family == Family::Gpt2 {
            return Err(bad("GPT-2's output is the vocabulary's logits: it has no classes option".into()));
        }
        c.classes = classes;
    }
    let seq_default = c.seq;
    c.seq = options.seq.unwrap_or(seq_default);
    c.layers = options.layers.unwrap_or(c.layers);
    if let Some(h) = options.hidden {
        c.hidden = h;
        c.intermediate = 4 * h;
    }
    c.heads = options.heads.unwrap_or(c.heads);
    c.intermediate = options.intermediate.unwrap_or(c.intermediate);
    c.vocab = options.vocab.unwrap_or(c.vocab);
    c.validate().map_err(bad)?;
    Ok(Some(c))
}

fn transformer(info: &NetworkInfo, config: &TransformerConfig, options: &Options) -> Result<Transformer, ZooError> {
    let mut t = Transformer::new(config, options.seed).map_err(|reason| ZooError::BadOption { network: info.name, reason })?;
    let doc = format!(
        "{} ({}), sequence length {}, built by cryptflow-zoo with seed {} and random weights (HuggingFace initialisation): \
         for benchmarks, not for predictions",
        info.description, info.dataset, config.seq, options.seed
    );
    let metadata = vec![
        ("zoo.network".to_string(), info.name.to_string()),
        ("zoo.seed".to_string(), options.seed.to_string()),
        ("zoo.parameters".to_string(), t.parameters.to_string()),
        ("zoo.seq".to_string(), config.seq.to_string()),
        ("zoo.config".to_string(), format!("{config:?}")),
    ];
    t.describe(doc, metadata);
    Ok(t)
}

/// Builds the network; `materialize` false skips drawing the weights (the graph then has no
/// initializers, only the structure and the parameter counts).
fn construct(name: &str, options: &Options, materialize: bool) -> Result<(ModelProto, u64, u64), ZooError> {
    let info = info(name)?;
    let net = info.name;
    if options.output_logits && net != "unet3d-innereye" {
        return Err(ZooError::BadOption { network: net, reason: "--output-logits is for unet3d-innereye (whose default output is the segmentation map)".into() });
    }
    if let Some(config) = transformer_config(net, options)? {
        let t = transformer(info, &config, options)?;
        return Ok((t.model(materialize), t.parameters, t.buffers));
    }
    if options.has_transformer_options() {
        return Err(ZooError::BadOption {
            network: net,
            reason: "--seq, --layers, --hidden, --heads, --intermediate and --vocab are for the transformers".into(),
        });
    }
    let mut b = builder::Builder::new(options.seed, materialize);
    if options.width.is_some() && !net.starts_with("unet3d") {
        return Err(ZooError::BadOption { network: net, reason: "only the 3D-UNet has a width option".into() });
    }
    let classes = options.classes.unwrap_or(match info.dataset {
        "ImageNet" => 1000,
        "3D CT" => 2,
        _ => 10,
    });
    if classes == 0 {
        return Err(ZooError::BadOption { network: net, reason: "classes must be positive".into() });
    }
    let out = match net {
        "logistic-regression" => fixed_size(net, options).map(|_| nets::logistic_regression(&mut b, classes))?,
        "secureml" => fixed_size(net, options).map(|_| nets::secureml(&mut b, classes))?,
        "minionn-mnist" => fixed_size(net, options).map(|_| nets::minionn_mnist(&mut b, classes))?,
        "minionn-cifar" => fixed_size(net, options).map(|_| nets::minionn_cifar(&mut b, classes))?,
        "lenet" => fixed_size(net, options).map(|_| nets::lenet(&mut b, classes))?,
        "squeezenet" => {
            let size = spatial::<2>(net, options, 224)?;
            if size.iter().any(|&s| s < 17) {
                return Err(ZooError::BadOption { network: net, reason: "the input must be at least 17x17".into() });
            }
            nets::squeezenet(&mut b, classes, size)
        }
        "densenet121" => {
            let size = spatial::<2>(net, options, 224)?;
            if size.iter().any(|&s| s < 32) {
                return Err(ZooError::BadOption { network: net, reason: "the input must be at least 32x32".into() });
            }
            nets::densenet121(&mut b, classes, size)
        }
        "unet3d-innereye" => {
            let size = innereye_size(net, options)?;
            let width = options.width.unwrap_or(INNEREYE_DEFAULT_WIDTH);
            if width == 0 {
                return Err(ZooError::BadOption { network: net, reason: "width must be positive".into() });
            }
            let logits = nets::unet3d_innereye(&mut b, options.classes.unwrap_or(INNEREYE_CLASSES), size, width);
            // The client gets the segmentation map, not the scores (unless asked for them):
            // the ArgMax runs securely, over the classes of each voxel.
            if options.output_logits {
                logits
            } else {
                b.argmax(&logits, "segmentation", 1)
            }
        }
        "unet3d" => {
            let size = spatial::<3>(net, options, UNET_DEFAULT_SIZE)?;
            let unit = 1 << (nets::UNET_LEVELS - 1);
            if size.iter().any(|&s| s % unit != 0) {
                return Err(ZooError::BadOption {
                    network: net,
                    reason: format!("every input dimension must be a positive multiple of {unit}, got {size:?}"),
                });
            }
            let width = options.width.unwrap_or(UNET_DEFAULT_WIDTH);
            if width == 0 {
                return Err(ZooError::BadOption { network: net, reason: "width must be positive".into() });
            }
            nets::unet3d(&mut b, classes, size, width)
        }
        resnet => {
            let depth = resnet_depth(resnet).expect("every other name is a ResNet");
            let size = spatial::<2>(net, options, 224)?;
            if size.iter().any(|&s| s < 32) {
                return Err(ZooError::BadOption { network: net, reason: "the input must be at least 32x32".into() });
            }
            nets::resnet(&mut b, depth, classes, size)
        }
    };
    let (parameters, buffers) = (b.parameters, b.buffers);
    let doc = format!(
        "{} ({}), built by cryptflow-zoo with seed {} and random weights: for benchmarks, not for predictions",
        info.description, info.dataset, options.seed
    );
    let metadata = vec![
        ("zoo.network".to_string(), net.to_string()),
        ("zoo.seed".to_string(), options.seed.to_string()),
        ("zoo.parameters".to_string(), parameters.to_string()),
    ];
    Ok((b.finish(net, &out, doc, metadata), parameters, buffers))
}

/// Writes network `name` as ONNX bytes to `w`; returns the number of bytes. The transformers
/// are streamed one weight tensor at a time (the CNNs are built in memory, then written).
pub fn write(name: &str, options: &Options, w: &mut dyn std::io::Write) -> Result<u64, ZooError> {
    let info = info(name)?;
    if let Some(config) = transformer_config(info.name, options)? {
        return Ok(transformer(info, &config, options)?.write(w)?);
    }
    let bytes = encode(&build(name, options)?);
    w.write_all(&bytes)?;
    Ok(bytes.len() as u64)
}

/// A graph input: name, element type (`"float32"` or `"int64"`) and shape.
pub type InputSpec = (String, &'static str, Vec<usize>);

/// Names, ONNX element types and shapes of the network's inputs.
pub fn inputs(name: &str, options: &Options) -> Result<Vec<InputSpec>, ZooError> {
    let (model, _, _) = construct(name, options, false)?;
    let graph = model.graph.expect("built models have a graph");
    Ok(graph
        .input
        .iter()
        .map(|vi| {
            let Some(cryptflow_onnx::proto::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                unreachable!("inputs are tensors")
            };
            let dtype = if t.elem_type == Some(cryptflow_onnx::proto::tensor_proto::DataType::Int64 as i32) { "int64" } else { "float32" };
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(cryptflow_onnx::proto::tensor_shape_proto::dimension::Value::DimValue(v)) => v as usize,
                            _ => unreachable!("inputs have fixed shapes"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (vi.name.clone().unwrap_or_default(), dtype, dims)
        })
        .collect())
}

/// Builds network `name` as an ONNX model (opset 13; the transformers opset 14) with seeded
/// random weights.
pub fn build(name: &str, options: &Options) -> Result<ModelProto, ZooError> {
    Ok(construct(name, options, true)?.0)
}

/// Trainable parameters of network `name`, from its architecture (no weights are drawn).
pub fn parameter_count(name: &str, options: &Options) -> Result<u64, ZooError> {
    Ok(construct(name, options, false)?.1)
}

/// Shape of the network's (first) input, e.g. `[1, 3, 224, 224]` (a transformer's `[1, L]`).
pub fn input_shape(name: &str, options: &Options) -> Result<Vec<usize>, ZooError> {
    Ok(inputs(name, options)?.swap_remove(0).2)
}

/// `count` elements of standard-normal input (what the weight scales assume), from `seed`.
pub fn random_input(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1a7a_0000_0000);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * c) as f32);
        if out.len() < count {
            out.push((r * s) as f32);
        }
    }
    out
}

/// Serialises a model to ONNX bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
