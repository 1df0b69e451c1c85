//! cryptflow as a library: compile a TensorFlow or ONNX model into a fixed-point program (Athos)
//! and run it in float, in fixed point in the clear, or securely (Porthos, 2PC, Aramis), with
//! all parties in this process or as one party of a distributed session.
//!
//! The `cryptflow` command and the Python package (`python/`) are built on this crate.
//!
//! ```
//! # fn main() -> Result<(), cryptflow::Error> {
//! let program = cryptflow::compile("../../fixtures/models/lenet_mnist.onnx", &cryptflow::CompileOptions::default())?;
//! let x = cryptflow::Array::f32(vec![1, 1, 28, 28], vec![0.5; 784])?;
//! let result = program.run(x, &cryptflow::RunOptions::new(cryptflow::BackendName::Porthos))?;
//! println!("{:?} in {} s, {} bytes", result.outputs[0].shape(), result.metrics.seconds, result.metrics.bytes_total);
//! # Ok(())
//! # }
//! ```
//!
//! Entry points: [`compile`] (a path, bytes or an HLIL graph; [`CompileOptions`] are the
//! command's), [`Program::load`] / [`Program::save`], [`Program::run`] (any backend, all parties
//! in this process; [`RunOptions`], [`Progress`]; returns the outputs and [`Metrics`]) and
//! [`run_party`] (one party of a distributed session over TLS; [`keygen`] for its keys).
//! Errors are [`Error`]s by kind, with the messages the command prints.
//!
//! The hidden modules are the command line's file-based layer, moved here whole from the
//! `cryptflow` binary so that the command and the library share one implementation: the
//! `cryptflow compile`, `run` and `party` argument structs (the binary parses straight into
//! them), the functions that read `--input` files, write `-o` and `--metrics` files and report
//! on standard error, and the orchestration they share with the API (`run::execute`,
//! `compile::compile_model`, `secure`, `twopc`, `aramis`, `party`). A library user needs only
//! the items at the crate root.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod aramis;
#[doc(hidden)]
pub mod calibrate;
#[doc(hidden)]
pub mod compile;
#[doc(hidden)]
pub mod generate;
#[doc(hidden)]
pub mod inputs;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod npy;
#[doc(hidden)]
pub mod party;
#[doc(hidden)]
pub mod run;
#[doc(hidden)]
pub mod secure;
#[doc(hidden)]
pub mod twopc;

mod api;

pub use api::{
    backend, compile, fault, keygen, protocol, run_party, truncation, Array, ArrayData, CompileOptions, Error, Inputs, KeygenOptions,
    ModelSource, PartyOptions, Port, Program, Rounding, RunResult,
};
pub use aramis::AramisMetrics;
pub use cryptflow_runtime::LayerMetrics;
pub use run::{CpuMetrics, Metrics, RunOptions};
pub use secure::{Fault, FaultKind, Progress, ProgressCallback};

use clap::ValueEnum;

/// What `cryptflow compile --emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// The float graph.
    Hlil,
    /// The fixed-point program.
    Llil,
}

/// A backend of `cryptflow run --backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendName {
    /// The float reference executor (HLIL in f32; needs the model owner's weights).
    Float,
    /// The cleartext fixed-point reference executor (needs the model owner's weights).
    Cleartext,
    /// Porthos: semi-honest 3-party secure inference (all parties in this process).
    Porthos,
    /// Two-party secure inference: model owner and client alone, no helper (OT-based).
    #[value(name = "2pc")]
    TwoPc,
    /// Aramis: Porthos made secure against malicious parties (attested code, every message
    /// signed and checked; software attestor, see the README).
    Aramis,
}

/// How secure backends truncate (`ScaleDown`, division by public integers). Every party of a
/// session must choose the same. Faithful is the default: measured on LeNet and ResNet-18 it
/// costs 1-3% more bytes and 4-21 more rounds under Porthos, while local truncation fails with
/// probability |x|/2^64 per element (ResNet-18: about 2^-15 per inference at scale 12) and
/// lets a party predict the rounding bit (README, "Truncation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TruncationName {
    /// Local truncation (SecureML, the paper's): free, but off by about 2^64/d with probability
    /// |x|/2^64 per element, and a party can predict the rounding bit from its own share.
    Local,
    /// Faithful truncation (the default): the floor or one more (Porthos; 2PC: the floor) for
    /// |x| < 2^62 whatever the shares (Porthos: helper-dealt masks, one round per call; 2PC:
    /// one comparison per element).
    #[default]
    Faithful,
    /// Exact truncation: the floor, so that a secure run computes bit for bit what the
    /// cleartext executor does (Porthos: faithful plus a 16-lane comparison of the residues,
    /// 82 bytes per element at scale 12 instead of 32, two more flights; 2PC: as faithful,
    /// which is already the floor, for power-of-two divisors).
    Exact,
}

impl TruncationName {
    /// The backends' mode.
    pub fn mode(self) -> cryptflow_backend::Truncation {
        match self {
            TruncationName::Local => cryptflow_backend::Truncation::Local,
            TruncationName::Faithful => cryptflow_backend::Truncation::Faithful,
            TruncationName::Exact => cryptflow_backend::Truncation::Exact,
        }
    }
}

/// The protocol of the porthos and aramis backends (`--protocol`). Every party of a session
/// must choose the same. Compact is the default: its comparisons cost 192 bytes and 2 rounds
/// per element where the paper's cost 496 and 5, with the same security and exact on all of
/// Z_2^64; 108 bytes on a program's 33-bit comparison domain (the default at scale 12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProtocolName {
    /// Porthos as in the paper (Table III's communication).
    Porthos,
    /// SecureNN: the same protocols without Porthos' optimisations (paper Table VIII).
    Securenn,
    /// Porthos with compact comparisons (the default): DReLU from one PrivateCompare on a
    /// masked opening instead of ShareConvert and ComputeMSB.
    #[default]
    Compact,
}

impl ProtocolName {
    /// The Porthos protocol variant.
    pub fn variant(self) -> cryptflow_porthos::ProtocolVariant {
        use cryptflow_porthos::ProtocolVariant;
        match self {
            ProtocolName::Porthos => ProtocolVariant::Porthos,
            ProtocolName::Securenn => ProtocolVariant::SecureNN,
            ProtocolName::Compact => ProtocolVariant::Compact,
        }
    }
}


/// Peak resident memory of this process (VmHWM, Linux), in bytes; `None` where unknown.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses `--input-shape` values.
#[doc(hidden)]
pub fn input_shape(text: &str) -> Result<(String, Vec<usize>), String> {
    model::parse_input_shape(text).map_err(|e| e.to_string())
}
