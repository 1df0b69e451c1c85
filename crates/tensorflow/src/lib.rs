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
//!   dead branches). A `Softmax` whose result only reaches outputs is compiled away, as in the
//!   ONNX front end (it preserves the argmax; outputs are then logits).
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
/// particular forms: `Max` over all spatial axes (global max pooling), `Maximum`/`Minimum`
/// with a scalar constant (a clip), `SpaceToBatchND`/`BatchToSpaceND` around a convolution
/// (a dilated convolution), `Switch` with a constant predicate, `Softmax` at the output.
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
