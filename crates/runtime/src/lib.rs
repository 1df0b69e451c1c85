//! Running compiled programs.
//!
//! - [`Runner`]: one party's interpreter of an LLIL program over any [`Backend`]. Library
//!   operations run locally on the party's shares; backend calls go to the protocol. It follows
//!   the program's memory plan (frees after last use) and records per-layer time and traffic.
//! - [`float`]: the float reference executor over HLIL.

pub mod float;
pub mod limits;
mod runner;
pub mod slab;

use cryptflow_ir::hlil::{Op, UnaryFn};
use cryptflow_ir::llil::{LOp, Program};
use cryptflow_math::Domain;

pub use runner::{decode_output, encode_input, encode_integer_input, encode_one_hot_input, LayerMetrics, Runner, RunError, KEPT_WEIGHT_BYTES};

/// For an HLIL operation whose secure evaluation approximates a function only over a domain
/// (beyond it the documented clamp of `cryptflow-math`): the operand that must stay in the
/// domain, the domain at `scale`, and the function's name. Calibration checks a model's data
/// against it.
pub fn secure_domain(op: &Op, scale: u32) -> Option<(usize, Domain, &'static str)> {
    match op {
        Op::Unary(UnaryFn::Exp) => Some((0, cryptflow_math::exp_domain(), "Exp")),
        Op::Unary(UnaryFn::Reciprocal) => Some((0, cryptflow_math::reciprocal_domain(), "Reciprocal")),
        Op::Div => Some((1, cryptflow_math::reciprocal_domain(), "the divisor of Div")),
        Op::Unary(UnaryFn::Sqrt) => Some((0, cryptflow_math::root_domain(scale), "Sqrt")),
        Op::Unary(UnaryFn::Rsqrt) => Some((0, cryptflow_math::root_domain(scale), "Rsqrt")),
        Op::Unary(UnaryFn::Log) => Some((0, cryptflow_math::log_domain(scale), "Log")),
        _ => None,
    }
}

/// Whether every function of the secure math library that `program` calls supports its scale
/// (`cryptflow_math::SCALES`); the error names the first layer that does not.
pub fn check_math_scale(program: &Program) -> Result<(), String> {
    if cryptflow_math::SCALES.contains(&program.scale) {
        return Ok(());
    }
    let needs_scale = |op: &LOp| matches!(op, LOp::Unary(_) | LOp::Div | LOp::Prelu | LOp::Softmax { .. } | LOp::LogSoftmax { .. } | LOp::Normalize { .. });
    match program.body.iter().find(|i| needs_scale(&i.op)) {
        Some(i) => Err(format!(
            "scale {} is outside {}..={}, the scales the secure math functions support ({} in layer `{}`)",
            program.scale,
            cryptflow_math::SCALES.start(),
            cryptflow_math::SCALES.end(),
            i.op.name(),
            i.layer
        )),
        None => Ok(()),
    }
}
