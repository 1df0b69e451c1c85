//! `cryptflow run`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::artifact::{read_float_graph, FixedWeightsFile, PublicProgram};
use cryptflow_ir::hlil::Graph;
use cryptflow_ir::llil::WeightSource;
use cryptflow_runtime::{decode_output, float, LayerMetrics, Runner};
use cryptflow_tensor::FloatTensor;
use serde::Serialize;

use crate::inputs::{ClientInputs, InputSpec};
use crate::secure::ClientFeed;
use crate::{npy, BackendName, ProtocolName};

#[derive(Args)]
pub struct RunArgs {
    /// A directory written by `cryptflow compile -o`.
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub backend: BackendName,
    /// Input .npy: one input of the model's input shape, or a stack [N, ...] of them. Give
    /// `NAME=X.npy` once per graph input (plain `X.npy` for a one-input model). float32 or
    /// int64 (float64 and int32 are converted); an integer input must hold integers.
    #[arg(long, value_name = "[NAME=]X.npy", required = true)]
    pub input: Vec<String>,
    /// Output .npy (float32): the dequantised outputs, stacked like the inputs.
    #[arg(short = 'o', long = "output", value_name = "Y.npy")]
    pub output: PathBuf,
    /// Protocol variant of the porthos backend.
    #[arg(long, value_enum, default_value_t)]
    pub protocol: ProtocolName,
    /// Truncation of the secure backends (every party must choose the same).
    #[arg(long, value_enum, default_value_t)]
    pub truncation: crate::TruncationName,
    /// Make a party fail on purpose, to see the failure behaviour: PARTY:KIND with KIND one of
    /// crash, tamper, forge, replay, reorder, drop (porthos, aramis) and wrong-code (aramis).
    #[arg(long = "inject-fault", value_name = "PARTY:KIND", value_parser = crate::secure::parse_fault)]
    pub inject_fault: Option<crate::secure::Fault>,
    /// Seconds a party of this in-process run may wait for a message before the peer counts
    /// as stalled. The parties are threads of this process: one that fails is noticed at once,
    /// so this only ends a run whose party is stuck; a party computing a large layer on a
    /// loaded machine is silent meanwhile (raise it for such networks, e.g. BERT-base under 2pc).
    #[arg(long, value_name = "S", default_value_t = LOCAL_PEER_TIMEOUT_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub peer_timeout: u64,
    /// Write run metrics (time, communication, per-layer breakdown) as JSON.
    #[arg(long, value_name = "M.json")]
    pub metrics: Option<PathBuf>,
    /// Greedy decoding with a decoder compiled with `--next-token`: K tokens after the prompt
    /// in `input_ids`, each from one secure forward pass in one session (the weights are
    /// shared once); only each step's token is revealed, to the client. Writes the K tokens
    /// (int64 [1, K]) to -o.
    #[arg(long, value_name = "K")]
    pub generate: Option<usize>,
    /// With --generate: the prompt's length (default: the number of leading ones of
    /// `attention_mask`).
    #[arg(long, value_name = "N", requires = "generate")]
    pub prompt_length: Option<usize>,
    /// Run backend calls whose input and output hold more than N elements in slabs (bounded
    /// memory; see the README's "Large volumes"). Default 2^24. Only `run` has it: its parties
    /// share this process, and every party of a session must cut alike.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub slab_elements: Option<u64>,
}

/// What a run measured (`cryptflow run --metrics` writes it as JSON).
#[derive(Serialize, Default, Clone, Debug)]
pub struct Metrics {
    /// The backend (`porthos`, `porthos-securenn`, `2pc`, ...).
    pub backend: String,
    /// Inferences run.
    pub inferences: usize,
    /// Wall-clock seconds of the run (weight sharing included).
    pub seconds: f64,
    /// `seconds / inferences`.
    pub seconds_per_inference: f64,
    /// Bytes each party sent.
    pub bytes_sent: Vec<u64>,
    /// Bytes sent by all parties.
    pub bytes_total: u64,
    /// Communication rounds (the largest count over the parties).
    pub rounds: u64,
    /// Largest bytes of live tensors each party held.
    pub peak_live_bytes: Vec<u64>,
    /// Peak resident memory (VmHWM): of each party's process in `cryptflow party`; with all
    /// parties in one process (`cryptflow run`), one entry for the whole process.
    pub peak_rss_bytes: Vec<u64>,
    /// Per layer (session set-up and weight sharing first): bytes summed over the parties,
    /// rounds and seconds the largest over them.
    pub layers: Vec<LayerMetrics>,
    /// `--backend aramis`: protocol payload and Aramis overhead apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aramis: Option<crate::aramis::AramisMetrics>,
    /// The CPU and the SIMD level the kernels ran at (`cpu_model`, `simd_level`, ...).
    #[serde(flatten)]
    pub cpu: CpuMetrics,
}

/// Which CPU measured a run and at which SIMD level its kernels ran (filled in by `Default`).
#[derive(Serialize, Clone, Debug)]
pub struct CpuMetrics {
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// The dispatch level in use: `scalar`, `avx2` or `avx512` (the best the CPU has, capped by
    /// `CRYPTFLOW_SIMD`).
    pub simd_level: &'static str,
    /// The best level this CPU has.
    pub simd_level_detected: &'static str,
    /// The CPU features the kernels look for that the CPU has.
    pub cpu_features: Vec<&'static str>,
}

impl Default for CpuMetrics {
    fn default() -> CpuMetrics {
        use cryptflow_tensor::simd;
        CpuMetrics {
            cpu_model: simd::cpu_model(),
            simd_level: simd::level().name(),
            simd_level_detected: simd::detected().name(),
            cpu_features: simd::cpu_features(),
        }
    }
}

/// Adds one inference's per-layer metrics into the running totals.
pub fn accumulate(total: &mut Vec<LayerMetrics>, inference: Vec<LayerMetrics>) {
    if total.is_empty() {
        *total = inference;
        return;
    }
    for (t, l) in total.iter_mut().zip(inference) {
        t.seconds += l.seconds;
        t.bytes_sent += l.bytes_sent;
        t.bytes_received += l.bytes_received;
        t.rounds += l.rounds;
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.inject_fault.is_some() && !matches!(args.backend, BackendName::Porthos | BackendName::TwoPc | BackendName::Aramis) {
        bail!("--inject-fault applies to secure backends");
    }
    crate::aramis::check_fault(args.backend, args.inject_fault)?;
    crate::party::check_output_not_input(&args.output, &args.input)?;
    let public = crate::party::read_program(&args.dir)?;
    if let Some(steps) = args.generate {
        return crate::generate::generate(&args, &public, steps);
    }
    let program = &public.program;
    if program.outputs.len() > 1 {
        eprintln!(
            "notice: the model has {} outputs; {} holds the first, `{}`",
            program.outputs.len(),
            args.output.display(),
            program.outputs[0].name
        );
    }
    let inputs = crate::inputs::read("--input", &args.input, &InputSpec::of_program(program))?;
    if let Some(warning) = crate::secure::local_truncation_warning(&public, args.backend, args.truncation.mode()) {
        eprintln!("warning: {warning}");
    }
    let stacked = inputs.stacking;
    if let Some(n) = args.slab_elements {
        cryptflow_runtime::slab::set_default_budget(n as usize);
    }
    let options = RunOptions {
        backend: args.backend,
        protocol: args.protocol,
        truncation: args.truncation,
        fault: args.inject_fault,
        peer_timeout: std::time::Duration::from_secs(args.peer_timeout),
        progress: crate::secure::Progress::Terminal,
    };
    let (outputs, metrics) = execute(&Artifacts::Dir(&args.dir), &public, &inputs, &options)?;
    npy::write_output(&args.output, &npy::stack(&outputs, stacked), program.outputs[0].encoding)?;
    eprintln!(
        "{} inference(s) on the {} backend in {:.3} s; wrote {}",
        inputs.len(),
        metrics.backend,
        metrics.seconds,
        args.output.display()
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(&metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Where a program's private parts are: a compiled folder (`program.json`, `model-owner/`) or
/// memory (a program compiled in this process).
pub enum Artifacts<'a> {
    /// A folder written by `cryptflow compile -o`.
    Dir(&'a Path),
    /// In memory: the model owner's fixed-point weights and the float graph with its weights.
    Memory {
        /// Fixed-point weights, in `program.weights` order.
        weights: &'a Vec<cryptflow_tensor::RingTensor>,
        /// The HLIL graph with its weights (what the float executor runs).
        graph: &'a Graph,
    },
}

impl Artifacts<'_> {
    /// The model owner's weights (from memory: borrowed, not copied).
    pub fn weights(&self, public: &PublicProgram) -> Result<Weights<'_>> {
        Ok(match self {
            Artifacts::Dir(dir) => Weights::File(FixedWeightsFile::open(dir, public)?),
            Artifacts::Memory { weights, .. } => Weights::Memory(weights),
        })
    }

    /// The float graph, weights included.
    pub fn float_graph(&self, public: &PublicProgram) -> Result<std::borrow::Cow<'_, Graph>> {
        Ok(match self {
            Artifacts::Dir(dir) => std::borrow::Cow::Owned(read_float_graph(dir, public)?),
            Artifacts::Memory { graph, .. } => std::borrow::Cow::Borrowed(*graph),
        })
    }

    /// The bytes of `program.json` (Aramis measures them).
    pub fn program_json(&self, public: &PublicProgram) -> Result<Vec<u8>> {
        match self {
            Artifacts::Dir(dir) => crate::aramis::program_json(dir),
            Artifacts::Memory { .. } => Ok(serde_json::to_vec_pretty(public)?),
        }
    }
}

/// The model owner's weights of a run: read from the folder as they are needed, or borrowed.
pub enum Weights<'a> {
    /// `DIR/model-owner/weights.fixed`.
    File(FixedWeightsFile),
    /// In memory.
    Memory(&'a Vec<cryptflow_tensor::RingTensor>),
}

impl Weights<'_> {
    /// As the runtime's weight source.
    pub fn source(&self) -> &dyn WeightSource {
        match self {
            Weights::File(f) => f,
            Weights::Memory(w) => *w,
        }
    }
}

/// The default of `run --peer-timeout` and [`RunOptions::peer_timeout`], in seconds.
pub const LOCAL_PEER_TIMEOUT_SECONDS: u64 = 60;

/// How to run: the backend and its settings.
#[derive(Clone)]
pub struct RunOptions {
    /// The backend.
    pub backend: BackendName,
    /// The protocol variant of Porthos (and of Aramis, which protects Porthos).
    pub protocol: ProtocolName,
    /// Truncation of the secure backends.
    pub truncation: crate::TruncationName,
    /// A fault to inject (secure backends).
    pub fault: Option<crate::secure::Fault>,
    /// How long a party waits for a message before its peer counts as stalled.
    pub peer_timeout: std::time::Duration,
    /// How progress is reported.
    pub progress: crate::secure::Progress,
}

/// Runs `inputs` through the program on `options.backend` (all parties in this process):
/// the dequantised first output of every inference, and the run's metrics.
pub fn execute(artifacts: &Artifacts<'_>, public: &PublicProgram, inputs: &ClientInputs, options: &RunOptions) -> Result<(Vec<FloatTensor>, Metrics)> {
    if options.fault.is_some() && !matches!(options.backend, BackendName::Porthos | BackendName::TwoPc | BackendName::Aramis) {
        bail!("--inject-fault applies to secure backends");
    }
    crate::aramis::check_fault(options.backend, options.fault)?;
    let program = &public.program;
    let started = Instant::now();
    let mut metrics = Metrics { backend: format!("{:?}", options.backend).to_lowercase(), inferences: inputs.len(), ..Default::default() };
    let outputs: Vec<FloatTensor> = match options.backend {
        BackendName::Float => {
            let graph = artifacts.float_graph(public)?;
            let mut outs = Vec::new();
            let reporter = options.progress.reporter();
            let items = inputs.floats(&graph)?;
            if let Some(r) = &reporter {
                r.start(items.len() as u64);
            }
            for x in items {
                outs.push(float::run(&graph, &x).context("float executor")?.swap_remove(0));
                if let Some(r) = &reporter {
                    r.step("(inference)");
                }
            }
            if let Some(r) = &reporter {
                r.finish();
            }
            metrics.bytes_sent = vec![0];
            metrics.peak_live_bytes = vec![];
            outs
        }
        BackendName::Cleartext => {
            let weights = artifacts.weights(public)?;
            let weights = weights.source();
            let reporter = options.progress.reporter();
            let mut runner = Runner::new(program, Cleartext::new());
            if let Some(r) = &reporter {
                r.start_program(program, inputs.len());
                runner.observe_progress(|instr| r.step(&instr.layer));
            }
            runner.share_weights(Some(weights))?;
            let mut outs = Vec::new();
            for x in inputs.encoded(program)? {
                let (revealed, layers) = runner.infer(Some(&x))?;
                accumulate(&mut metrics.layers, layers);
                let y = revealed.context("the cleartext backend reveals its outputs")?;
                outs.push(decode_output(&y[0], program.outputs[0].encoding));
            }
            metrics.bytes_sent = vec![0];
            metrics.peak_live_bytes = vec![runner.peak_live_bytes()];
            drop(runner);
            if let Some(r) = &reporter {
                r.finish();
            }
            outs
        }
        BackendName::Porthos => {
            let weights = artifacts.weights(public)?;
            let weights = weights.source();
            let encoded = inputs.encoded(program)?;
            let variant = options.protocol.variant();
            metrics.backend = match options.protocol {
                ProtocolName::Porthos => "porthos".into(),
                ProtocolName::Securenn => "porthos-securenn".into(),
                ProtocolName::Compact => "porthos-compact".into(),
            };
            let run = crate::secure::run_porthos_local(program, weights, ClientFeed::Fixed(&encoded), variant, options.truncation.mode(), options.fault, options.peer_timeout, &options.progress)?;
            metrics.bytes_sent = run.bytes_sent.clone();
            metrics.rounds = run.rounds.iter().copied().max().unwrap_or(0);
            metrics.peak_live_bytes = run.peak_live_bytes.clone();
            metrics.layers = run.layers;
            run.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect()
        }
        BackendName::Aramis => {
            let weights = artifacts.weights(public)?;
            let weights = weights.source();
            let encoded = inputs.encoded(program)?;
            let (run, aramis) = crate::aramis::run_local(&artifacts.program_json(public)?, program, weights, ClientFeed::Fixed(&encoded), options.protocol, options.truncation.mode(), options.fault, options.peer_timeout, &options.progress)?;
            metrics.bytes_sent = run.bytes_sent.clone();
            metrics.rounds = run.rounds.iter().copied().max().unwrap_or(0);
            metrics.peak_live_bytes = run.peak_live_bytes.clone();
            metrics.layers = run.layers;
            metrics.aramis = Some(aramis);
            run.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect()
        }
        BackendName::TwoPc => {
            let weights = artifacts.weights(public)?;
            let weights = weights.source();
            let encoded = inputs.encoded(program)?;
            metrics.backend = "2pc".into();
            let run = crate::twopc::run_local(program, weights, ClientFeed::Fixed(&encoded), options.truncation.mode(), options.fault, options.peer_timeout, &options.progress)?;
            metrics.bytes_sent = run.bytes_sent.clone();
            metrics.rounds = run.rounds.iter().copied().max().unwrap_or(0);
            metrics.peak_live_bytes = run.peak_live_bytes.clone();
            metrics.layers = run.layers;
            run.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect()
        }
    };
    metrics.seconds = started.elapsed().as_secs_f64();
    metrics.seconds_per_inference = metrics.seconds / inputs.len().max(1) as f64;
    metrics.bytes_total = metrics.bytes_sent.iter().sum();
    metrics.peak_rss_bytes = crate::peak_rss().into_iter().collect();
    Ok((outputs, metrics))
}
