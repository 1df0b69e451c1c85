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
//!
//! Models use opset 13. Weights are drawn from a [`StdRng`](rand::rngs::StdRng) seeded by the
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

use cryptflow_onnx::proto::ModelProto;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use builder::{IR_VERSION, OPSET};

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
    /// Output classes (default 10 for MNIST and CIFAR, 1000 for ImageNet, 2 for the 3D-UNet).
    pub classes: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown network `{0}`; the zoo has: {list}", list = names().join(", "))]
    UnknownNetwork(String),
    #[error("{network}: {reason}")]
    BadOption { network: &'static str, reason: String },
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

fn fixed_size(network: &'static str, options: &Options) -> Result<(), ZooError> {
    match &options.input_size {
        None => Ok(()),
        Some(_) => Err(ZooError::BadOption { network, reason: "this network has a fixed input size".into() }),
    }
}

/// Builds the network; `materialize` false skips drawing the weights (the graph then has no
/// initializers, only the structure and the parameter counts).
fn construct(name: &str, options: &Options, materialize: bool) -> Result<(ModelProto, u64, u64), ZooError> {
    let info = info(name)?;
    let net = info.name;
    let mut b = builder::Builder::new(options.seed, materialize);
    if options.width.is_some() && net != "unet3d" {
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

/// Builds network `name` as an ONNX model (opset 13) with seeded random weights.
pub fn build(name: &str, options: &Options) -> Result<ModelProto, ZooError> {
    Ok(construct(name, options, true)?.0)
}

/// Trainable parameters of network `name`, from its architecture (no weights are drawn).
pub fn parameter_count(name: &str, options: &Options) -> Result<u64, ZooError> {
    Ok(construct(name, options, false)?.1)
}

/// Shape of the network's (only) input, e.g. `[1, 3, 224, 224]`.
pub fn input_shape(name: &str, options: &Options) -> Result<Vec<usize>, ZooError> {
    let (model, _, _) = construct(name, options, false)?;
    let graph = model.graph.expect("built models have a graph");
    let ty = graph.input[0].r#type.as_ref().and_then(|t| t.value.as_ref());
    let Some(cryptflow_onnx::proto::type_proto::Value::TensorType(t)) = ty else { unreachable!("inputs are tensors") };
    Ok(t.shape
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
        .unwrap_or_default())
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
