//! Running compiled programs.
//!
//! - [`Runner`]: one party's interpreter of an LLIL program over any [`Backend`]. Library
//!   operations run locally on the party's shares; backend calls go to the protocol. It follows
//!   the program's memory plan (frees after last use) and records per-layer time and traffic.
//! - [`float`]: the float reference executor over HLIL.

pub mod float;
mod runner;

pub use runner::{decode_output, encode_input, encode_integer_input, LayerMetrics, Runner, RunError, KEPT_WEIGHT_BYTES};
