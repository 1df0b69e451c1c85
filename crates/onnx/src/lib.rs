//! ONNX front end: reads an ONNX model (opsets 7 to 28) and produces an HLIL graph with
//! static shapes (paper Section III-A, "Frontend", for ONNX instead of TensorFlow).
//!
//! Besides ReLU CNNs, the operators of transformers and modern CNNs are lowered to the HLIL
//! operations of the secure math library: elementwise functions (`Sigmoid`, `Tanh`, `Exp`,
//! `Log`, `Erf`, `Gelu`, `Elu`, `Selu`, `HardSigmoid`, `HardSwish`, `Softplus`, `Softsign`,
//! `Mish`, `Reciprocal`, `Sqrt`, `Abs`, `Pow` with a constant exponent), `Div`, `Max`, `Min`,
//! `ReduceMax`, `ReduceMin` of computed tensors, `PRelu`, `Softmax`/`LogSoftmax` anywhere
//! (opsets before 13 with their coerced-2-D semantics), layer, instance and group
//! normalisation (`Normalize` plus the affine part), batched `MatMul` and `Einsum` (as
//! transposes, reshapes and one product), `Resize`/`Upsample` (nearest, linear and cubic,
//! antialiased too, every coordinate transformation mode: gathers with public coefficients), `DepthToSpace`/`SpaceToDepth`. Integer graph inputs (token
//! ids, masks) are integer client inputs ([`Graph::integer_input`]).
//!
//! - A `Softmax`/`LogSoftmax` is computed, also at a graph output, unless
//!   [`ImportOptions::strip_output_softmax`] is set: then one whose result only reaches
//!   graph outputs is compiled away (with a notice) when that preserves the prediction (not
//!   over the batch axis, not a rank-1 output).
//! - Every tensor shape is resolved at import time. Symbolic input dimensions default to 1
//!   unless [`ImportOptions::input_shapes`] gives the shape.
//! - Integer shape computations (`Shape -> Gather -> Concat -> Reshape` and friends, as emitted
//!   by PyTorch and tf2onnx) are evaluated at import time by a small evaluator of our own.
//! - Float tensor constants reaching an operation become [`Graph::weight`] nodes (private model
//!   parameters); single-element float constants in `Add`/`Sub`/`Mul`/`Div` are public
//!   architecture constants (`AddScalar`, `MulScalar`, `DivScalar`).
//! - Nothing here panics on malformed input: every problem is an [`OnnxError`] that names the
//!   node (name and op type) involved.
//!
//! [`Graph::weight`]: cryptflow_ir::hlil::Graph::weight
//! [`Graph::integer_input`]: cryptflow_ir::hlil::Graph::integer_input

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::path::{Path, PathBuf};

mod attrs;
mod consts;
mod einsum;
mod import;
mod nn;
mod ops;
mod resize;

/// The generated protobuf types of the vendored `proto/onnx.proto` (ONNX 1.23.2).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// Lowest default-domain opset accepted.
pub const MIN_OPSET: i64 = 7;
/// Highest default-domain opset accepted.
pub const MAX_OPSET: i64 = 28;

/// Every ONNX operator (default domain) the importer accepts. Those in
/// [`CONSTANT_ONLY_OPS`] are accepted only when all their inputs are known at import time
/// (shape arithmetic).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "DepthToSpace",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Selu",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
];

/// Operators of [`SUPPORTED_OPS`] accepted only when every input is a constant (they are
/// evaluated at import time, typically as part of shape arithmetic).
pub const CONSTANT_ONLY_OPS: &[&str] = &[
    "And",
    "Ceil",
    "ConstantOfShape",
    "Equal",
    "Floor",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Not",
    "Or",
    "Range",
    "ReduceProd",
    "Where",
];

/// Options and result of an import, shared by the front ends.
pub use cryptflow_frontend::{ImportOptions, Imported};

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid ONNX model (malformed or truncated protobuf): {0}")]
    Decode(String),
    #[error("{0}")]
    UnsupportedOpset(String),
    #[error(
        "node `{node}` ({op_type}): {}; supported operators (default domain): {}",
        reason.as_deref().unwrap_or("unsupported operator"),
        SUPPORTED_OPS.join(", ")
    )]
    UnsupportedOp { node: String, op_type: String, reason: Option<String> },
    #[error("node `{node}` ({op_type}): {reason}")]
    Invalid { node: String, op_type: String, reason: String },
    #[error("node `{node}` ({op_type}): shape error: {reason}")]
    Shape { node: String, op_type: String, reason: String },
    #[error("node `{node}` ({op_type}): reads tensor `{tensor}`, which no node, initializer or graph input defines")]
    UndefinedTensor { node: String, op_type: String, tensor: String },
    #[error("tensor `{tensor}`: {reason}")]
    Tensor { tensor: String, reason: String },
    #[error("tensor `{tensor}` stores its data outside the model file (external data); this importer needs a self-contained model (re-save it with onnx.save(model, path, save_as_external_data=False))")]
    ExternalData { tensor: String },
    #[error("--input-shape names `{name}`, which is not a graph input (inputs: {})", inputs.join(", "))]
    UnknownInputShapeName { name: String, inputs: Vec<String> },
    #[error("graph input `{input}`: {reason}")]
    Input { input: String, reason: String },
    #[error("invalid model: {0}")]
    Model(String),
}

/// Reads and imports an ONNX model file.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })?;
    import_bytes(&bytes, options)
}

/// Imports a serialized ONNX `ModelProto`.
pub fn import_bytes(bytes: &[u8], options: &ImportOptions) -> Result<Imported, OnnxError> {
    use prost::Message;
    let model = proto::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    import_model(&model, options)
}

/// Imports an already decoded `ModelProto`.
pub fn import_model(model: &proto::ModelProto, options: &ImportOptions) -> Result<Imported, OnnxError> {
    import::import(model, options)
}

#[cfg(test)]
mod tests;
