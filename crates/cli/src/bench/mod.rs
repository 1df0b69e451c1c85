//! `cryptflow bench`: builds networks from the zoo, compiles them, runs them on the chosen
//! backends and writes `DIR/report.md`, `DIR/report.json` (and `DIR/figure10.svg` when ResNets
//! ran), with the CrypTFlow paper's figures beside ours. Secure runs use the paper's local
//! truncation (`cryptflow run` and `party` default to faithful truncation; see the README).
//!
//! Network emulation: secure runs go through local sessions whose links carry `--bandwidth`
//! MBps and add `--latency` ms to every message (`cryptflow_net::LinkShape`). With
//! `--emulation simulated` (the default) nobody sleeps: each party keeps an emulated clock that
//! runs with real time while it computes and jumps to a message's arrival time when it waits,
//! so one run gives both the loopback figures (real time) and the emulated ones. With
//! `--emulation delay` receivers really sleep until arrival; each secure backend then runs
//! twice (loopback, then delayed).
//!
//! Memory: with the parties as threads of the bench, only the process's peak is known. With
//! `--party-processes` every secure backend also runs once as three `cryptflow party`
//! processes over TLS on 127.0.0.1 (see [`processes`]), which gives each party's peak RSS.

mod paper;
mod processes;
mod report;
pub(crate) mod runs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cryptflow_athos::{compile, CompileOptions, DEFAULT_SCALE};
use cryptflow_net::{LinkShape, ShapeMode};
use cryptflow_porthos::ProtocolVariant;
use cryptflow_runtime::{decode_output, encode_input, float};
use cryptflow_tensor::{FloatTensor, RingTensor, Tensor};

use crate::zoo::ZooOptions;
pub use report::{NetworkReport, Report, RunReport};

/// The four MNIST networks of the paper's Table V.
pub const DEFAULT_NETWORKS: &str = "logistic-regression,secureml,minionn-mnist,lenet";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// The float reference executor (plaintext, f32).
    Float,
    /// The cleartext fixed-point reference executor.
    Cleartext,
    /// Porthos, 3 parties in this process.
    Porthos,
    /// SecureNN (Porthos without its optimisations), 3 parties in this process.
    Securenn,
    /// Porthos with compact comparisons (`run --protocol compact`, the run default), 3
    /// parties in this process. The bench's `porthos` stays the paper's protocol.
    Compact,
}

impl BenchBackend {
    pub fn name(self) -> &'static str {
        match self {
            BenchBackend::Float => "float",
            BenchBackend::Cleartext => "cleartext",
            BenchBackend::Porthos => "porthos",
            BenchBackend::Securenn => "securenn",
            BenchBackend::Compact => "compact",
        }
    }

    fn variant(self) -> Option<ProtocolVariant> {
        match self {
            BenchBackend::Porthos => Some(ProtocolVariant::Porthos),
            BenchBackend::Securenn => Some(ProtocolVariant::SecureNN),
            BenchBackend::Compact => Some(ProtocolVariant::Compact),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emulation {
    /// Emulated clocks, no sleeping: loopback and emulated figures from one run.
    Simulated,
    /// Receivers sleep until messages arrive; secure backends run twice.
    Delay,
    /// No network emulation: loopback figures only.
    Off,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Networks of the zoo, comma-separated (`cryptflow zoo --list`).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_NETWORKS)]
    pub networks: Vec<String>,
    /// Backends, comma-separated; cleartext runs first and is the reference for agreement.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cleartext,porthos,securenn")]
    pub backends: Vec<BenchBackend>,
    /// Inferences per network and backend (random inputs, one session per backend).
    #[arg(long, default_value_t = 5)]
    pub inferences: usize,
    /// Emulated bandwidth of every link, MB/s (default: the paper's LAN, 377 MBps).
    #[arg(long, value_name = "MBps", default_value_t = 377.0)]
    pub bandwidth: f64,
    /// Emulated one-way latency of every message, ms (the paper: sub-millisecond).
    #[arg(long, value_name = "ms", default_value_t = 0.3)]
    pub latency: f64,
    /// How the network is emulated.
    #[arg(long, value_enum, default_value = "simulated")]
    pub emulation: Emulation,
    /// Fixed-point scale.
    #[arg(long, default_value_t = DEFAULT_SCALE)]
    pub scale: u32,
    /// Output directory for report.md, report.json and figure10.svg.
    #[arg(short = 'o', long = "output", default_value = "bench-out/bench")]
    pub output: PathBuf,
    /// Also run every secure backend (porthos, securenn) once as three `cryptflow party`
    /// processes over TLS on 127.0.0.1 (no network emulation), to report peak memory per party;
    /// their outputs must agree with the in-process run's.
    #[arg(long)]
    pub party_processes: bool,
    /// With --party-processes: seconds after which party processes still running are killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, requires = "party_processes")]
    pub party_timeout: u64,
    #[command(flatten)]
    pub zoo: ZooOptions,
}

fn link_shape(args: &BenchArgs, mode: ShapeMode) -> Result<LinkShape> {
    let valid = args.bandwidth > 0.0 && args.latency >= 0.0 && args.latency.is_finite();
    if !valid {
        bail!("--bandwidth must be positive and --latency non-negative");
    }
    Ok(LinkShape { bandwidth: args.bandwidth * 1e6, latency: Duration::from_secs_f64(args.latency / 1000.0), mode })
}

/// Argmax over axis 1 at every other position (one prediction per row, or per voxel).
fn predictions(y: &FloatTensor) -> Vec<usize> {
    let shape = y.shape();
    if shape.len() < 2 {
        return vec![(0..y.data().len()).max_by(|&a, &b| y.data()[a].total_cmp(&y.data()[b])).unwrap_or(0)];
    }
    let classes = shape[1];
    let outer = shape[0];
    let inner: usize = shape[2..].iter().product();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for p in 0..inner {
            let at = |c: usize| y.data()[(o * classes + c) * inner + p];
            out.push((0..classes).max_by(|&a, &b| at(a).total_cmp(&at(b))).unwrap_or(0));
        }
    }
    out
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.inferences == 0 {
        bail!("--inferences must be at least 1");
    }
    let mut backends = args.backends.clone();
    backends.dedup();
    // The cleartext reference first (agreement of the others is measured against it).
    backends.sort_by_key(|b| *b != BenchBackend::Cleartext);
    let shape = match args.emulation {
        Emulation::Off => None,
        Emulation::Simulated => Some(link_shape(&args, ShapeMode::Simulated)?),
        Emulation::Delay => Some(link_shape(&args, ShapeMode::Delay)?),
    };
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let options = args.zoo.options();
    let mut report = Report::new(&args, &backends);
    for name in &args.networks {
        let info = cryptflow_zoo::info(name)?;
        if cryptflow_zoo::transformer_config(info.name, &options)?.is_some() {
            bail!(
                "{}: `bench` runs the single-input networks; write a transformer with `cryptflow zoo {} -o M.onnx`, \
                 compile it and run it with one --input NAME=FILE per input",
                info.name,
                info.name
            );
        }
        eprintln!("== {} ({})", info.name, info.dataset);
        let started = Instant::now();
        let model = cryptflow_zoo::build(info.name, &options)?;
        let build_seconds = started.elapsed().as_secs_f64();
        let parameters = cryptflow_zoo::parameter_count(info.name, &options)?;
        let input_shape = cryptflow_zoo::input_shape(info.name, &options)?;
        let started = Instant::now();
        let imported = cryptflow_onnx::import_model(&model, &Default::default())
            .with_context(|| format!("importing {}", info.name))?;
        drop(model);
        let compile_options = CompileOptions { scale: args.scale, ..Default::default() };
        let compiled = compile(imported.graph, &compile_options).with_context(|| format!("compiling {}", info.name))?;
        let compile_seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "   {parameters} parameters, input {input_shape:?}; built in {build_seconds:.2} s, imported and compiled in {compile_seconds:.2} s"
        );
        let program = &compiled.program;
        let inputs: Vec<FloatTensor> = (0..args.inferences)
            .map(|k| Tensor::new(input_shape.clone(), cryptflow_zoo::random_input(input_shape.iter().product(), 1 + k as u64)))
            .collect::<Result<_, _>>()?;
        let encoded: Vec<RingTensor> = inputs.iter().map(|x| encode_input(x, program.scale)).collect();
        let mut net = NetworkReport::new(info, parameters, input_shape.clone(), build_seconds, compile_seconds, &compiled.report);
        let mut reference: Option<Vec<FloatTensor>> = None;
        // --party-processes: the artifact, keys and inputs on disk (made at the first secure run).
        let mut workspace: Option<processes::Workspace> = None;
        for &backend in &backends {
            let emulated_runs: Vec<Option<LinkShape>> = match (backend.variant(), shape) {
                (None, _) => vec![None],
                (Some(_), Some(s)) if s.mode == ShapeMode::Delay => vec![None, Some(s)],
                (Some(_), s) => vec![s],
            };
            for (run_index, link) in emulated_runs.into_iter().enumerate() {
                let label = match link {
                    Some(s) if s.mode == ShapeMode::Delay => format!("{} (delayed links)", backend.name()),
                    _ => backend.name().to_string(),
                };
                eprintln!("   {label}: {} inference(s)...", args.inferences);
                let rss_reset = runs::reset_peak_rss();
                let (measured, outputs) = match backend {
                    BenchBackend::Float => {
                        let mut m = runs::Measured::default();
                        let mut outs = Vec::new();
                        for x in &inputs {
                            let t = Instant::now();
                            outs.push(float::run(&compiled.hlil, std::slice::from_ref(x))?.swap_remove(0));
                            m.inference_seconds.push(t.elapsed().as_secs_f64());
                        }
                        (m, outs)
                    }
                    BenchBackend::Cleartext => {
                        let m = runs::cleartext(program, &compiled.weights, &encoded)?;
                        let outs = m.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect();
                        (m, outs)
                    }
                    secure => {
                        let variant = secure.variant().expect("secure backend");
                        let m = runs::secure(program, &compiled.weights, &encoded, variant, link)?;
                        let outs = m.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect();
                        (m, outs)
                    }
                };
                let peak_rss = runs::peak_rss();
                let agreement = reference.as_ref().filter(|_| backend != BenchBackend::Cleartext).map(|reference| {
                    let mut agree = 0;
                    let mut total = 0;
                    let mut worst = 0f32;
                    for (r, y) in reference.iter().zip(&outputs) {
                        let (pr, py) = (predictions(r), predictions(y));
                        total += pr.len();
                        agree += pr.iter().zip(&py).filter(|(a, b)| a == b).count();
                        worst = r.data().iter().zip(y.data()).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
                    }
                    (agree, total, worst)
                });
                let mut run = RunReport::new(&label, backend, link, &measured, peak_rss, rss_reset, agreement);
                eprintln!("   {}", run.summary_line());
                if args.party_processes && backend.variant().is_some() && run_index == 0 {
                    let workspace = match &mut workspace {
                        Some(w) => w,
                        None => workspace.insert(
                            processes::Workspace::new(&args.output, info.name, &compiled, &inputs)
                                .with_context(|| format!("preparing {} for the party processes", info.name))?,
                        ),
                    };
                    eprintln!("   {}: 3 party processes over TLS, {} inference(s)...", backend.name(), args.inferences);
                    let measured = workspace
                        .run(backend.name(), &outputs, Duration::from_secs(args.party_timeout))
                        .with_context(|| format!("{} on {} as separate party processes", backend.name(), info.name))?;
                    run.set_party_processes(&measured);
                    eprintln!("   {}", run.party_processes_line().unwrap_or_default());
                }
                if backend == BenchBackend::Cleartext {
                    reference = Some(outputs);
                }
                net.runs.push(run);
            }
        }
        report.networks.push(net);
        // Written after every network, so that a long benchmark leaves partial results.
        report.write(&args.output)?;
    }
    report.finish();
    report.write(&args.output)?;
    eprintln!("wrote {}", args.output.join("report.md").display());
    println!("{}", std::fs::read_to_string(args.output.join("report.md"))?);
    Ok(())
}
