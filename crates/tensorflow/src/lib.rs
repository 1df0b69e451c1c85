//! TensorFlow front end: reads a frozen TensorFlow `GraphDef` (`.pb`) and produces an HLIL
//! graph with static shapes (paper Section III-A, "Frontend"), the same HLIL the ONNX front end
//! produces for the same model, except that activations stay channels-last (NHWC / NDHWC).
//!
//! - Accepts TF1-style graphs (`tf.compat.v1.graph_util.convert_variables_to_constants`) and
//!   TF2 / Keras 3 graphs frozen with `convert_variables_to_constants_v2`.
//! - Inference only: `Identity`-like nodes, `NoOp`, `Assert`, control-dependency inputs
//!   (`^name`) and everything reachable only through them are dropped; `Switch`/`Merge` on a
//!   constant predicate (a `PlaceholderWithDefault` training flag) keep the live branch.
//! - Everything that depends only on constants is evaluated at import time, including
//!   `Shape -> StridedSlice -> Pack -> Reshape` shape arithmetic and the `Rsqrt/Mul/Sub/AddV2`
//!   chains into which Keras 3 decomposes batch normalisation. The per-channel `Mul` + `AddV2`
//!   such a batch norm leaves becomes an HLIL `BatchNorm` (so Athos folds it into the conv).
//! - Layouts: NHWC/NDHWC activations use [`Layout::ChannelsLast`] geometries, so no transposes
//!   are inserted. Filters are permuted once at import from TensorFlow's `HWIO` (`DHWIO`) into
//!   the ONNX layout `[C_out, C_in/groups, K...]` HLIL uses (transposed convolutions:
//!   `[C_in, C_out/groups, K...]`). `SAME` padding is computed as TensorFlow does (the extra
//!   pad goes at the end).
//! - Graph outputs are the nodes no other node reads (ignoring `NoOp`, `Assert`, constants and
//!   dead branches). `Softmax` and `LogSoftmax` (over the last axis) are computed wherever they
//!   are; one whose result only reaches outputs is compiled away, with a notice, only with
//!   [`ImportOptions::strip_output_softmax`] and a tensor of rank 2 or more (it then preserves
//!   the prediction; outputs are logits).
//! - Non-linear operations of computed tensors lower to the secure math library's HLIL
//!   operations: `Sigmoid`, `Tanh`, `Erf`, `Erfc`, `Exp`, `Log`, `Rsqrt`, `Sqrt`,
//!   `Reciprocal`/`Inv`, `Abs`, `Softplus`, `Elu`, `Selu`, `Softsign` (HLIL `Unary`, with
//!   scalar arithmetic where needed); `Pow` by a constant scalar (integers up to 16 by repeated
//!   multiplication, a negative one then a reciprocal; 0.5 `Sqrt`, -0.5 `Rsqrt`);
//!   `SquaredDifference`; `Maximum`/`Minimum` and `RealDiv`/`Div` of two computed tensors
//!   (`Max`/`Min`/`Div`; `c / x` for a scalar `c` is a scaled reciprocal); `Max`/`Min`
//!   reductions (`ReduceMax`/`ReduceMin`; over all NHWC spatial axes, global max pooling);
//!   `BatchMatMul`/`V2`/`V3` with `adj_x`/`adj_y` and batched operands on either side (one
//!   batched HLIL `MatMul`); `ResizeNearestNeighbor` and `ResizeBilinear` with TensorFlow's
//!   `align_corners`, `half_pixel_centers` and legacy coordinate mappings (gathers of rows and
//!   columns, and public interpolation weights: `MulConst` + `Add`); `Tile`/`BroadcastTo` of
//!   computed tensors (gathers; `tf.repeat`, as Keras' nearest `UpSampling2D` writes it).
//! - Keras' composite activations become one math-library function: chains of elementwise
//!   operations of one tensor (GELU in its erf(c) and tanh forms, swish/SiLU, hard sigmoid,
//!   hard swish) are identified by evaluating them against the candidate functions; PReLU's
//!   `relu(x) - alpha * relu(-x)` becomes `Prelu`; ELU with `alpha != 1`
//!   (`select(x > 0, elu(x), alpha * elu(x))`) becomes one `Elu`. Layer normalisation as Keras
//!   freezes it (`Mean`, `SquaredDifference`, `Mean`, `AddV2`, `Rsqrt`, `Mul`, `Neg`, ...) is
//!   imported operation by operation.
//! - Nothing here panics on malformed input: every problem is a [`TfError`] naming the node
//!   (name and op type) involved.
//!
//! [`Layout::ChannelsLast`]: cryptflow_tensor::Layout::ChannelsLast

use std::path::{Path, PathBuf};

mod attrs;
mod consts;
mod fuse;
mod import;
mod math;
mod ops;

/// The generated protobuf types of TensorFlow's `graph.proto` and its imports (TensorFlow
/// 2.21, from `proto/tensorflow_graph.desc`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
}

/// Every TensorFlow operation the importer accepts. Those in [`CONSTANT_ONLY_OPS`] are
/// accepted only when all their inputs are known at import time (shape arithmetic, weight
/// preprocessing); `Softmax` only when its result is a graph output.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AddN",
    "AddV2",
    "All",
    "Any",
    "ArgMax",
    "Assert",
    "AvgPool",
    "AvgPool3D",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "BatchToSpaceND",
    "BiasAdd",
    "BroadcastTo",
    "Cast",
    "Ceil",
    "CheckNumerics",
    "ClipByValue",
    "ConcatV2",
    "Const",
    "Conv2D",
    "Conv2DBackpropInput",
    "Conv3D",
    "Conv3DBackpropInputV2",
    "DepthwiseConv2dNative",
    "Elu",
    "Equal",
    "Erf",
    "Erfc",
    "Exp",
    "ExpandDims",
    "Fill",
    "Floor",
    "FloorDiv",
    "FloorMod",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "FusedBatchNormV3",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "Identity",
    "IdentityN",
    "Inv",
    "LeakyRelu",
    "Less",
    "LessEqual",
    "Log",
    "LogSoftmax",
    "LogicalAnd",
    "LogicalNot",
    "LogicalOr",
    "MatMul",
    "Max",
    "MaxPool",
    "MaxPool3D",
    "Maximum",
    "Mean",
    "Merge",
    "Min",
    "Minimum",
    "Mul",
    "Neg",
    "NoOp",
    "NotEqual",
    "OnesLike",
    "Pack",
    "Pad",
    "PadV2",
    "Placeholder",
    "PlaceholderWithDefault",
    "Pow",
    "PreventGradient",
    "Prod",
    "Range",
    "Rank",
    "RealDiv",
    "Reciprocal",
    "Relu",
    "Relu6",
    "Reshape",
    "ResizeBilinear",
    "ResizeNearestNeighbor",
    "Rsqrt",
    "Select",
    "SelectV2",
    "Selu",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Snapshot",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToBatchND",
    "Split",
    "SplitV",
    "Sqrt",
    "Square",
    "SquaredDifference",
    "Squeeze",
    "StopGradient",
    "StridedSlice",
    "Sub",
    "Sum",
    "Switch",
    "Tanh",
    "Tile",
    "Transpose",
    "Unpack",
    "ZerosLike",
];

/// Operations of [`SUPPORTED_OPS`] accepted only when every input is a constant known at
/// import time (they are evaluated then). Some others accept computed tensors only in
/// particular forms: `SpaceToBatchND`/`BatchToSpaceND` around a convolution (a dilated
/// convolution), `Switch` with a constant predicate, `Pow` with a constant scalar exponent,
/// `Greater` of a computed tensor only as the condition of Keras' ELU (`x > 0` selecting
/// between `elu(x)` and `alpha * elu(x)`), `Select`/`SelectV2` only there.
pub const CONSTANT_ONLY_OPS: &[&str] = &[
    "All",
    "Any",
    "Ceil",
    "Equal",
    "Fill",
    "Floor",
    "FloorDiv",
    "FloorMod",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "Less",
    "LessEqual",
    "LogicalAnd",
    "LogicalNot",
    "LogicalOr",
    "NotEqual",
    "OnesLike",
    "Prod",
    "Range",
    "Select",
    "SelectV2",
    "ZerosLike",
];

/// Options and result of an import, shared by the front ends.
pub use cryptflow_frontend::{ImportOptions, Imported};

/// Why a graph could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum TfError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid TensorFlow GraphDef (malformed or truncated protobuf): {0}")]
    Decode(String),
    #[error(
        "node `{node}` ({op_type}): {}; supported TensorFlow operations: {}",
        reason.as_deref().unwrap_or("unsupported operation"),
        SUPPORTED_OPS.join(", ")
    )]
    UnsupportedOp { node: String, op_type: String, reason: Option<String> },
    #[error("node `{node}` ({op_type}): {reason}")]
    Invalid { node: String, op_type: String, reason: String },
    #[error("node `{node}` ({op_type}): shape error: {reason}")]
    Shape { node: String, op_type: String, reason: String },
    #[error("node `{node}` ({op_type}): reads tensor `{tensor}`, which no node of the graph produces")]
    UndefinedTensor { node: String, op_type: String, tensor: String },
    #[error("--input-shape names `{name}`, which is not a Placeholder of the graph (placeholders: {})", inputs.join(", "))]
    UnknownInputShapeName { name: String, inputs: Vec<String> },
    #[error("graph input `{input}`: {reason}")]
    Input { input: String, reason: String },
    #[error("invalid graph: {0}")]
    Model(String),
}

/// Reads and imports a frozen TensorFlow GraphDef (`.pb`) file.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported, TfError> {
    let bytes = std::fs::read(path).map_err(|source| TfError::Io { path: path.to_path_buf(), source })?;
    import_bytes(&bytes, options)
}

/// Imports a serialized `GraphDef`.
pub fn import_bytes(bytes: &[u8], options: &ImportOptions) -> Result<Imported, TfError> {
    use prost::Message;
    let graph = proto::GraphDef::decode(bytes).map_err(|e| TfError::Decode(e.to_string()))?;
    import_graph_def(&graph, options)
}

/// Imports an already decoded `GraphDef`.
pub fn import_graph_def(graph: &proto::GraphDef, options: &ImportOptions) -> Result<Imported, TfError> {
    import::import(graph, options)
}

#[cfg(test)]
mod tests;
