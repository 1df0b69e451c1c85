//! Athos, the compiler: HLIL passes, float-to-fixed conversion, LLIL generation and analyses
//! (paper Section III).
//!
//! ```text
//! HLIL --fold batch norms--> --ReLU/MaxPool switch--> --lower(scale, placement)--> LLIL
//!      --liveness (memory plan)--> --scale-down counting--> program + fixed-point weights
//! ```
//! The compiler knows nothing of cryptography: its output is the public [`Program`] every
//! party runs and the model owner's private fixed-point weights.

pub mod analysis;
mod headroom;
mod lower;
pub mod passes;

use std::collections::BTreeMap;

use cryptflow_ir::hlil::Graph;
use cryptflow_ir::llil::Program;
pub use cryptflow_ir::llil::Rounding;
use cryptflow_tensor::RingTensor;
use serde::{Deserialize, Serialize};

pub use analysis::ScaleDownCount;
pub use headroom::{
    check_headroom, comparison_bits, fits_comparison_domain, truncation_risk, HeadroomIssue, HeadroomSeverity, TruncationRisk, ASSUMED_MAGNITUDE_BITS, MAX_EXPECTED_TRUNCATION_FAILURES,
    MAX_SCALE, MIN_HEADROOM_BITS,
};
pub use lower::{lower, Lowered, ScaleDownPlacement};

/// The paper's default scale.
pub const DEFAULT_SCALE: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot compile {op} `{node}`: {reason}")]
    Lowering { node: String, op: &'static str, reason: String },
    #[error("invalid model graph: {0}")]
    Graph(#[from] cryptflow_tensor::ShapeError),
    #[error("scale {0} is out of range: choose 1 to {max} (a product of two values at scale s holds 2s fractional bits; with the sign and {mag} bits of magnitude it must fit in 64-bit integers)", max = headroom::MAX_SCALE, mag = headroom::ASSUMED_MAGNITUDE_BITS)]
    BadScale(u32),
    /// A weight does not fit in 64-bit fixed point at the chosen scale.
    #[error("{0}")]
    WeightOverflow(String),
    #[error("internal compiler error: {0}")]
    Internal(String),
}

/// Compiler switches. Every pass can be turned off.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub scale: u32,
    pub placement: ScaleDownPlacement,
    pub relu_maxpool_switch: bool,
    /// Fold batch norms into the preceding convolution or matrix product (otherwise every
    /// batch norm becomes a secret multiply-add).
    pub fold_batch_norms: bool,
    pub liveness: bool,
    /// Fixed-point encoding of the model's constants: round to nearest by default; `Floor` is
    /// the paper's rho_s.
    pub rounding: Rounding,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            scale: DEFAULT_SCALE,
            placement: ScaleDownPlacement::Lazy,
            relu_maxpool_switch: true,
            fold_batch_norms: true,
            liveness: true,
            rounding: Rounding::Nearest,
        }
    }
}

/// What the HLIL passes did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HlilPassStats {
    pub batch_norms_folded: usize,
    pub batch_norms_as_multiply_add: usize,
    pub relu_maxpool_switched: usize,
    /// Normalisations written out op by op, fused into one `Normalize` each.
    #[serde(default)]
    pub normalizations_fused: usize,
    /// Activations written out elementwise (GELU, swish), fused into one function each.
    #[serde(default)]
    pub activations_fused: usize,
}

/// The compile report: what `cryptflow compile` prints and stores with the artifact.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompileReport {
    pub scale: u32,
    pub placement: String,
    pub parameters: usize,
    pub hlil_nodes: usize,
    pub llil_instructions: usize,
    /// Backend calls by function name.
    pub backend_calls: BTreeMap<String, usize>,
    pub passes: HlilPassStats,
    pub scale_downs_eager: ScaleDownCount,
    pub scale_downs_lazy: ScaleDownCount,
    pub peak_live_bytes_with_liveness: u64,
    pub peak_live_bytes_without_liveness: u64,
    /// What local truncation risks per inference (see [`TruncationRisk`]), at the assumed
    /// magnitudes; `cryptflow compile --calibrate` replaces it with the measured ones.
    #[serde(default)]
    pub truncation_risk: TruncationRisk,
    /// What the user should know: the front end's notices and the compiler's low-headroom
    /// warnings.
    pub notices: Vec<String>,
}

/// A compiled model.
pub struct Compiled {
    /// The HLIL after the passes (what the float executor runs).
    pub hlil: Graph,
    pub program: Program,
    /// The model owner's fixed-point weights, in `program.weights` order.
    pub weights: Vec<RingTensor>,
    /// Fractional bits of every node of `hlil` (None for weights and integer values).
    pub fractional_bits: Vec<Option<u32>>,
    pub report: CompileReport,
}

/// Runs the HLIL passes (batch norms are always removed: folded into weights if enabled,
/// multiply-adds otherwise; ReLU/MaxPool switching if enabled).
pub fn optimize_hlil(mut graph: Graph, options: &CompileOptions) -> Result<(Graph, HlilPassStats), CompileError> {
    graph.validate()?;
    let (folded, lowered) = passes::fold_batch_norms(&mut graph, options.fold_batch_norms)?;
    let switched = if options.relu_maxpool_switch { passes::switch_relu_maxpool(&mut graph) } else { 0 };
    let normalizations = passes::fuse_normalizations(&mut graph);
    let activations = passes::fuse_activations(&mut graph);
    graph.prune();
    graph.validate().map_err(|e| CompileError::Internal(format!("a pass broke the graph: {e}")))?;
    Ok((
        graph,
        HlilPassStats {
            batch_norms_folded: folded,
            batch_norms_as_multiply_add: lowered,
            relu_maxpool_switched: switched,
            normalizations_fused: normalizations,
            activations_fused: activations,
        },
    ))
}

/// Lowers an already optimised HLIL graph at one scale and runs the LLIL analyses.
pub fn lower_optimized(hlil: &Graph, options: &CompileOptions) -> Result<Lowered, CompileError> {
    headroom::check_scale(options.scale)?;
    let mut lowered = lower(hlil, options.scale, options.placement, options.rounding)?;
    if options.liveness {
        analysis::plan_frees(&mut lowered.program);
    }
    Ok(lowered)
}

/// The whole compiler: passes, lowering, analyses, report.
pub fn compile(graph: Graph, options: &CompileOptions) -> Result<Compiled, CompileError> {
    let (hlil, passes) = optimize_hlil(graph, options)?;
    let lowered = lower_optimized(&hlil, options)?;
    let other_placement = match options.placement {
        ScaleDownPlacement::Eager => ScaleDownPlacement::Lazy,
        ScaleDownPlacement::Lazy => ScaleDownPlacement::Eager,
    };
    let other = lower(&hlil, options.scale, other_placement, options.rounding)?;
    let (eager, lazy) = match options.placement {
        ScaleDownPlacement::Eager => (&lowered.program, &other.program),
        ScaleDownPlacement::Lazy => (&other.program, &lowered.program),
    };
    let mut with_frees = lowered.program.clone();
    analysis::plan_frees(&mut with_frees);
    let mut backend_calls = BTreeMap::new();
    for instr in lowered.program.body.iter().filter(|i| i.op.is_backend_call()) {
        *backend_calls.entry(instr.op.name().to_string()).or_insert(0) += 1;
    }
    let report = CompileReport {
        scale: options.scale,
        placement: format!("{:?}", options.placement).to_lowercase(),
        parameters: hlil.parameter_count(),
        hlil_nodes: hlil.nodes.len(),
        llil_instructions: lowered.program.body.len(),
        backend_calls,
        passes,
        scale_downs_eager: analysis::count_scale_downs(eager),
        scale_downs_lazy: analysis::count_scale_downs(lazy),
        peak_live_bytes_with_liveness: analysis::peak_live_bytes(&with_frees),
        peak_live_bytes_without_liveness: analysis::total_slot_bytes(&lowered.program),
        truncation_risk: headroom::truncation_risk(&lowered.program, None),
        notices: lowered.warnings.clone(),
    };
    Ok(Compiled { hlil, program: lowered.program, weights: lowered.weights, fractional_bits: lowered.fractional_bits, report })
}
