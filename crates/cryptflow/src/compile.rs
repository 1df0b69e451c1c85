//! `cryptflow compile`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryptflow_athos::{compile as athos_compile, CompileOptions, HeadroomSeverity, ScaleDownPlacement, DEFAULT_SCALE};
use cryptflow_ir::artifact::{strip_weights, write_artifact, PublicProgram};

use crate::{calibrate, model, npy, Emit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoundingArg {
    Floor,
    Nearest,
}

#[derive(Args)]
pub struct CompileArgs {
    /// The model: an ONNX file (.onnx) or a frozen TensorFlow GraphDef (.pb).
    pub model: PathBuf,
    /// Output directory for the compiled program (public) and the model owner's weights.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Fixed-point scale s: reals r are held as round(r * 2^s) (see --rounding).
    #[arg(long, conflicts_with = "calibrate")]
    pub scale: Option<u32>,
    /// Choose the scale by sweeping it on the cleartext executor over these inputs (.npy):
    /// `NAME=X.npy` once per graph input (plain `X.npy` for a one-input model), like
    /// `cryptflow run --input`.
    #[arg(long, value_name = "[NAME=]X.npy")]
    pub calibrate: Vec<String>,
    /// Labels for the calibration inputs (.npy of integers): score by accuracy, not by
    /// agreement with the float executor.
    #[arg(long, value_name = "Y.npy", requires = "calibrate")]
    pub labels: Option<PathBuf>,
    /// Static shape of an input: NAME=D0,D1,... (symbolic dimensions default to 1).
    #[arg(long = "input-shape", value_name = "NAME=D0,D1,...", value_parser = crate::input_shape)]
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Print the intermediate program to standard output.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Place a ScaleDown right after every multiplication (the paper's rule) instead of lazily.
    #[arg(long)]
    pub eager_scale_down: bool,
    /// Turn off the ReLU/MaxPool switching pass.
    #[arg(long)]
    pub no_relu_maxpool_switch: bool,
    /// Encode the model's constants with round-to-nearest (the default: no systematic bias on
    /// wide and deep layers) or floor (the paper's rho_s, to reproduce its figures).
    #[arg(long, value_enum, default_value = "nearest")]
    pub rounding: RoundingArg,
    /// Turn off batch-norm folding (every batch norm becomes a secret multiply-add).
    #[arg(long)]
    pub no_batch_norm_folding: bool,
    /// Turn off liveness analysis (no tensor is freed before the end of an inference).
    #[arg(long)]
    pub no_liveness: bool,
    /// Compile a Softmax (or LogSoftmax) at a graph output away, leaving the logits (the
    /// prediction is the same, the secure cost much lower). Off by default: outputs are
    /// computed as the model says.
    #[arg(long)]
    pub strip_output_softmax: bool,
    /// For a decoder (logits [1, L, V]): reveal only the greedy next token at a position the
    /// client names (a new integer input `next_position` [1]; output `next_token` [1]), as
    /// `cryptflow run --generate K` needs. The logits stay secret.
    #[arg(long)]
    pub next_token: bool,
    /// The range of the values the program compares (ReLU, pooling, argmax, the secure math
    /// functions): two's complement integers of N bits at the scale. Default: scale + 21 (33
    /// at scale 12: magnitudes below 2^20), widened to 64 when calibration data exceed it.
    /// Under the compact protocol a comparison costs 120 bytes at up to 33 bits, 216 above;
    /// 64 compares exactly on the whole ring.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub comparison_bits: Option<u32>,
}

pub fn compile(args: CompileArgs) -> Result<()> {
    if args.output.is_none() && args.emit.is_none() {
        bail!("nothing to do: give -o DIR to write the compiled program, or --emit hlil|llil to print it");
    }
    let started = Instant::now();
    let loaded = model::load(&args.model, &args.input_shapes, args.strip_output_softmax)?;
    let model_name = args.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let calibration = (!args.calibrate.is_empty()).then(|| Calibration {
        inputs: Box::new(|specs: &[crate::inputs::InputSpec]| crate::inputs::read("--calibrate", &args.calibrate, specs)),
        labels: Box::new(|| args.labels.as_deref().map(npy::read_labels).transpose()),
    });
    let settings = Settings::of(&args);
    let compiled = compile_model(loaded, &model_name, &args.model.display().to_string(), &settings, calibration, started, &mut |line| eprintln!("{line}"))?;
    if let Some(dir) = &args.output {
        write_artifact(dir, &compiled.public, &compiled.weights, &compiled.float_weights)?;
        eprintln!("wrote {} (public program) and {} (model owner's private weights)", dir.join("program.json").display(), dir.join("model-owner").display());
    }
    Ok(())
}

/// The compiler's settings (`cryptflow compile`'s flags other than files).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--scale` (None: the default, or calibration's choice).
    pub scale: Option<u32>,
    /// `--emit`.
    pub emit: Option<Emit>,
    /// `--eager-scale-down`.
    pub eager_scale_down: bool,
    /// Not `--no-relu-maxpool-switch`.
    pub relu_maxpool_switch: bool,
    /// `--rounding`.
    pub rounding: RoundingArg,
    /// Not `--no-batch-norm-folding`.
    pub batch_norm_folding: bool,
    /// Not `--no-liveness`.
    pub liveness: bool,
    /// `--next-token`.
    pub next_token: bool,
    /// `--comparison-bits` (None: the compiler's choice).
    pub comparison_bits: Option<u32>,
}

impl Settings {
    /// The settings of `cryptflow compile`'s arguments.
    pub fn of(args: &CompileArgs) -> Settings {
        Settings {
            scale: args.scale,
            emit: args.emit,
            eager_scale_down: args.eager_scale_down,
            relu_maxpool_switch: !args.no_relu_maxpool_switch,
            rounding: args.rounding,
            batch_norm_folding: !args.no_batch_norm_folding,
            liveness: !args.no_liveness,
            next_token: args.next_token,
            comparison_bits: args.comparison_bits,
        }
    }
}

/// Reads a calibration set for the given graph inputs.
pub type ReadInputs<'a> = Box<dyn Fn(&[crate::inputs::InputSpec]) -> Result<crate::inputs::ClientInputs> + 'a>;

/// Calibration inputs (`--calibrate`), read once the optimised graph's inputs are known, and
/// labels (`--labels`).
pub struct Calibration<'a> {
    /// Reads the calibration set for the graph's inputs.
    pub inputs: ReadInputs<'a>,
    /// Reads the labels, if any.
    pub labels: Box<dyn Fn() -> Result<Option<Vec<i64>>> + 'a>,
}

/// A compiled model, in memory.
pub struct Compiled {
    /// The public program (what `program.json` holds).
    pub public: PublicProgram,
    /// The model owner's fixed-point weights.
    pub weights: Vec<cryptflow_tensor::RingTensor>,
    /// The float weights (of the float executor).
    pub float_weights: Vec<(String, cryptflow_tensor::FloatTensor)>,
    /// The HLIL graph with its weights (what the float executor runs).
    pub hlil: cryptflow_ir::hlil::Graph,
}

/// Compiles an imported model: `model_name` goes into the program, `label` into the summary;
/// every line the command prints on standard error goes to `log`.
#[allow(clippy::too_many_arguments)]
pub fn compile_model(
    mut loaded: model::LoadedModel,
    model_name: &str,
    label: &str,
    settings: &Settings,
    calibration: Option<Calibration<'_>>,
    started: Instant,
    log: &mut dyn FnMut(&str),
) -> Result<Compiled> {
    if settings.next_token {
        cryptflow_athos::passes::add_next_token_head(&mut loaded.graph).map_err(|e| anyhow::anyhow!("--next-token: {e}"))?;
        loaded.notices.push(format!(
            "--next-token: outputs only `{}` (the argmax of the logits at the position given as `{}`)",
            cryptflow_athos::passes::NEXT_TOKEN,
            cryptflow_athos::passes::NEXT_POSITION
        ));
    }
    for notice in &loaded.notices {
        log(&format!("notice: {notice}"));
    }
    let mut options = CompileOptions {
        scale: settings.scale.unwrap_or(DEFAULT_SCALE),
        placement: if settings.eager_scale_down { ScaleDownPlacement::Eager } else { ScaleDownPlacement::Lazy },
        relu_maxpool_switch: settings.relu_maxpool_switch,
        fold_batch_norms: settings.batch_norm_folding,
        rounding: match settings.rounding {
            RoundingArg::Floor => cryptflow_athos::Rounding::Floor,
            RoundingArg::Nearest => cryptflow_athos::Rounding::Nearest,
        },
        liveness: settings.liveness,
    };
    let mut headroom_issues = Vec::new();
    let mut measured_risk = None;
    let mut domain_warnings = Vec::new();
    let mut largest = None;
    if let Some(calibration_set) = calibration {
        let (hlil, _) = cryptflow_athos::optimize_hlil(loaded.graph.clone(), &options)?;
        if hlil.inputs.is_empty() {
            bail!("--calibrate: the model has no input");
        }
        let inputs = (calibration_set.inputs)(&crate::inputs::InputSpec::of_graph(&hlil)).context("the calibration set")?;
        let labels = (calibration_set.labels)()?;
        log(&format!("calibrating the scale on {} inputs...", inputs.len()));
        let calibration = calibrate::calibrate(&hlil, &options, &inputs, labels.as_deref())?;
        calibrate::print_table(&calibration, log);
        options.scale = calibration.chosen;
        headroom_issues = calibration.headroom;
        measured_risk = Some(calibration.truncation_risk);
        domain_warnings = calibration.domain_warnings;
        largest = calibration.largest;
    }
    let mut compiled = athos_compile(loaded.graph, &options)?;
    let program = &mut compiled.program;
    match (settings.comparison_bits, &largest) {
        (Some(bits), _) if !(1..=64).contains(&bits) => bail!("a comparison domain of {bits} bits is outside 1..=64"),
        (Some(bits), _) => program.comparison_bits = bits,
        (None, Some((node, magnitude))) if !cryptflow_athos::fits_comparison_domain(*magnitude, program.scale, program.comparison_bits) => {
            domain_warnings.push(format!(
                "the calibration data reach {magnitude} at `{node}`, outside the {}-bit comparison domain at scale {}: comparisons widened to 64 bits",
                program.comparison_bits, program.scale
            ));
            program.comparison_bits = 64;
        }
        _ => {}
    }
    cryptflow_runtime::check_math_scale(&compiled.program).map_err(anyhow::Error::msg)?;
    let seconds = started.elapsed().as_secs_f64();
    match settings.emit {
        Some(Emit::Hlil) => print!("{}", compiled.hlil),
        Some(Emit::Llil) => print!("{}", compiled.program),
        None => {}
    }
    let mut report = compiled.report.clone();
    if let Some(risk) = measured_risk {
        report.truncation_risk = risk;
    }
    for warning in &compiled.report.notices {
        log(&format!("warning: {warning}"));
    }
    report.notices = loaded.notices.clone();
    report.notices.extend(compiled.report.notices.iter().cloned());
    for issue in &headroom_issues {
        let level = if issue.severity == HeadroomSeverity::Overflow { "error" } else { "warning" };
        log(&format!("{level}: {issue}"));
        report.notices.push(issue.to_string());
    }
    for warning in domain_warnings {
        log(&format!("warning: {warning}"));
        report.notices.push(warning);
    }
    let r = &report;
    log(&format!(
        "compiled {} in {:.2} s: scale {}, {} parameters, {} HLIL nodes, {} LLIL instructions",
        label,
        seconds,
        r.scale,
        r.parameters,
        r.hlil_nodes,
        r.llil_instructions
    ));
    log(&format!(
        "  passes: {} batch norms folded, {} as multiply-add, {} ReLU/MaxPool switched, {} normalisations and {} activations fused",
        r.passes.batch_norms_folded,
        r.passes.batch_norms_as_multiply_add,
        r.passes.relu_maxpool_switched,
        r.passes.normalizations_fused,
        r.passes.activations_fused
    ));
    log(&format!(
        "  ScaleDown ({} placement used): eager {} calls / {} elements, lazy {} calls / {} elements",
        r.placement, r.scale_downs_eager.calls, r.scale_downs_eager.elements, r.scale_downs_lazy.calls, r.scale_downs_lazy.elements
    ));
    log(&format!(
        "  peak live memory per party: {} with liveness, {} without",
        human_bytes(r.peak_live_bytes_with_liveness),
        human_bytes(r.peak_live_bytes_without_liveness)
    ));
    let plan = cryptflow_runtime::limits::MemoryPlan::of(&compiled.program, cryptflow_runtime::slab::default_budget());
    log(&format!(
        "  predicted memory per party at run time: {} (live tensors {}, working memory of the largest backend call {} in slabs of at most {} elements, {} overhead); {}",
        human_bytes(plan.total()),
        human_bytes(plan.live_bytes),
        human_bytes(plan.working_bytes),
        cryptflow_runtime::slab::default_budget(),
        human_bytes(cryptflow_runtime::limits::MEMORY_OVERHEAD_BYTES),
        match cryptflow_runtime::limits::machine_memory_bytes() {
            Some(m) if 3 * plan.total() <= m => format!("three parties fit this machine's {}", human_bytes(m)),
            Some(m) if plan.total() <= m => format!("one party fits this machine's {} but not three (`cryptflow run` refuses; run the parties on separate machines)", human_bytes(m)),
            Some(m) => format!("more than this machine's {}: a run here is refused", human_bytes(m)),
            None => "this machine's memory is unknown".to_string(),
        }
    ));
    log(&format!("  truncation: {}", r.truncation_risk.describe()));
    log(&format!("  comparisons: {}", describe_comparison_domain(compiled.program.comparison_bits, compiled.program.scale)));
    let calls: Vec<String> = r.backend_calls.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    log(&format!("  backend calls: {}", calls.join(", ")));
    if headroom_issues.iter().any(|i| i.severity == HeadroomSeverity::Overflow) {
        bail!("values overflow 64 bits at scale {}; choose a smaller --scale", options.scale);
    }
    let (architecture, float_weights) = strip_weights(&compiled.hlil);
    let mut report_json = serde_json::to_value(&report)?;
    report_json["compile_seconds"] = serde_json::json!(seconds);
    let public = PublicProgram::new(model_name.to_string(), compiled.program, architecture, report_json);
    Ok(Compiled { public, weights: compiled.weights, float_weights, hlil: compiled.hlil })
}

/// The comparison domain in a user's words.
pub fn describe_comparison_domain(bits: u32, scale: u32) -> String {
    if bits >= 64 {
        "on all 64 bits (exact for every value)".to_string()
    } else {
        let magnitude_bits = bits as i32 - 1 - scale as i32;
        format!("on {bits}-bit values (exact for magnitudes below 2^{magnitude_bits} at scale {scale}; --comparison-bits N to change)")
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
