//! What every model front end shares. The ONNX and TensorFlow front ends translate a model
//! into HLIL ([`cryptflow_ir::hlil`]) with static shapes in the same way once the format is
//! read; this crate holds that common part:
//!
//! - [`consts`] and [`eval`]: values known at import time and the evaluator of the shape
//!   arithmetic (and weight preprocessing) that models do with them; data movement runs on
//!   the kernels of [`cryptflow_tensor::movement`].
//! - [`lower`]: the [`Lowering`] trait, with which an importer lowers values (constant or
//!   computed) to HLIL: reshapes, transposes, slices, arithmetic with public scalars, matrix
//!   products, guarded node emission; and the Softmax-at-the-output messages.
//! - [`nn`]: the [`NnLowering`] extension of [`Lowering`] for networks beyond ReLU CNNs
//!   (elementwise functions, division by computed tensors, elementwise maxima, PReLU,
//!   softmax anywhere, normalisation) and when stripping an output softmax is safe.
//! - [`geometry`]: convolution and pooling geometry (`SAME` pads, spans, global pooling,
//!   pre-checks of HLIL parameters).
//! - [`io`]: input shapes (declared or given) with their notices, and output naming.
//! - [`context`]: error plumbing ([`NodeContext`]): front ends keep their own error types.
//!
//! The format-specific parts (protobuf types, attribute parsing, operator tables, layouts)
//! stay in the front ends. Nothing here panics on malformed input.

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::collections::HashMap;

use cryptflow_ir::hlil::Graph;

pub mod consts;
pub mod context;
pub mod eval;
pub mod geometry;
pub mod io;
pub mod lower;
pub mod nn;
#[cfg(feature = "test-support")]
pub mod testing;

pub use consts::{Const, Data};
pub use context::NodeContext;
pub use lower::{Arith, Lowering, ValueKind};
pub use nn::NnLowering;

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Static shapes of graph inputs (ONNX graph inputs, TensorFlow `Placeholder`s), from
    /// `--input-shape NAME=D0,D1,...`; they replace the shapes declared in the model. Inputs
    /// not listed get their declared shape with symbolic or unknown dimensions set to 1.
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Compile a Softmax (or LogSoftmax) whose result is a graph output away, leaving the
    /// logits, when it really preserves the prediction (not over the batch axis). Off by
    /// default: the model's outputs are computed as the model says.
    pub strip_output_softmax: bool,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    /// Things the user should know about (e.g. a Softmax compiled away at the output).
    pub notices: Vec<String>,
}
