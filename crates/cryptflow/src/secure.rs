//! Secure runs with all parties in this process (local mode): one thread per party, linked by
//! in-memory channels, each running the same program through its own backend.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use cryptflow_backend::{Backend, Truncation};
use cryptflow_ir::llil::{Program, WeightSource};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::{LayerMetrics, RunError, Runner};
use cryptflow_tensor::RingTensor;

/// Party roles of the 3-party protocols.
pub const ROLE_NAMES: [&str; 3] = ["model owner", "client", "helper"];

/// `--inject-fault PARTY:KIND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The party that fails.
    pub party: usize,
    /// How it fails.
    pub kind: FaultKind,
}

/// A kind of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The party stops abruptly in the middle of the first inference.
    Crash,
    /// The party's host flips a bit of a message after it was signed.
    Tamper,
    /// The party's host sends a message its code did not compute, signed with its own key.
    Forge,
    /// The party's host sends an earlier message again.
    Replay,
    /// The party's host swaps two consecutive messages to one peer.
    Reorder,
    /// The party's host drops a message.
    Drop,
    /// The party runs code whose measurement differs (aramis only).
    WrongCode,
}

impl FaultKind {
    /// The spelling of `--inject-fault PARTY:KIND`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Tamper => "tamper",
            FaultKind::Forge => "forge",
            FaultKind::Replay => "replay",
            FaultKind::Reorder => "reorder",
            FaultKind::Drop => "drop",
            FaultKind::WrongCode => "wrong-code",
        }
    }
}

pub fn parse_fault(text: &str) -> Result<Fault, String> {
    let (party, kind) = text.split_once(':').ok_or_else(|| format!("`{text}`: expected PARTY:KIND, e.g. 2:crash"))?;
    let party: usize = party.parse().map_err(|_| format!("`{party}` is not a party id (0, 1 or 2)"))?;
    if party > 2 {
        return Err(format!("party {party} does not exist: ids are 0 (model owner), 1 (client), 2 (helper)"));
    }
    let kind = match kind {
        "crash" => FaultKind::Crash,
        "tamper" => FaultKind::Tamper,
        "forge" => FaultKind::Forge,
        "replay" => FaultKind::Replay,
        "reorder" => FaultKind::Reorder,
        "drop" => FaultKind::Drop,
        "wrong-code" => FaultKind::WrongCode,
        other => return Err(format!("unknown fault `{other}`: supported: crash, tamper, forge, replay, reorder, drop, wrong-code")),
    };
    Ok(Fault { party, kind })
}

/// What a local secure run produced.
pub struct SecureRun {
    /// Revealed outputs of every inference (client's view), in program output order.
    pub outputs: Vec<Vec<RingTensor>>,
    pub seconds: f64,
    pub bytes_sent: Vec<u64>,
    pub rounds: Vec<u64>,
    pub peak_live_bytes: Vec<u64>,
    /// Per-layer metrics summed over inferences; bytes summed over parties, rounds and
    /// seconds the largest over parties.
    pub layers: Vec<LayerMetrics>,
}

/// One party's share of a run: what it revealed, its per-layer metrics (session set-up and
/// weight sharing first), and its backend, for the counters it keeps.
pub struct PartyRun<B> {
    pub outputs: Vec<Vec<RingTensor>>,
    pub layers: Vec<LayerMetrics>,
    pub peak_live_bytes: u64,
    pub backend: B,
}

/// One inference's encoded client inputs, in `program.inputs` order.
pub type Inputs = Vec<RingTensor>;

/// Makes inference `k`'s inputs from the outputs revealed so far (one entry per earlier
/// inference).
pub type NextInputs<'a> = &'a (dyn Fn(usize, &[Vec<RingTensor>]) -> Result<Inputs, String> + Sync);

/// The client's inputs of a run: all given up front, or each made from the outputs of the
/// inferences before it (greedy decoding: step `k`'s prompt holds the tokens of steps
/// `0..k`). The other parties need only the number of inferences.
#[derive(Clone, Copy)]
pub enum ClientFeed<'a> {
    Fixed(&'a [Inputs]),
    Generated { steps: usize, next: NextInputs<'a> },
}

impl ClientFeed<'_> {
    /// The number of inferences.
    pub fn len(&self) -> usize {
        match self {
            ClientFeed::Fixed(x) => x.len(),
            ClientFeed::Generated { steps, .. } => *steps,
        }
    }

    /// No inference.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the program for one party: weight sharing, then `inferences` inferences (the client
/// passes each inference's encoded inputs), with the backend set to `truncation` first (every
/// party of a session must pass the same).
#[allow(clippy::too_many_arguments)]
pub fn run_party<B: Backend>(
    program: &Program,
    backend: B,
    truncation: Truncation,
    weights: Option<&dyn WeightSource>,
    inputs: Option<ClientFeed<'_>>,
    inferences: usize,
    crash: bool,
    progress: Option<&Reporter>,
) -> Result<PartyRun<B>, RunError> {
    let mut backend = backend;
    backend.set_truncation(truncation).map_err(|source| RunError::Backend { layer: "(session setup)".into(), op: "truncation", source })?;
    // A decoder's session runs one forward pass per generated token with the same weights:
    // their masks are kept from the first pass (every party sees the same program).
    if program.keeps_weight_masks() {
        backend.set_weight_mask_reuse(true).map_err(|source| RunError::Backend { layer: "(session setup)".into(), op: "weight masks", source })?;
    }
    let setup = backend.traffic();
    let mut runner = Runner::new(program, backend);
    if let Some(reporter) = progress {
        reporter.start_program(program, inferences);
        runner.observe_progress(move |instr| reporter.step(&instr.layer));
    }
    if crash {
        runner.crash_before_instruction(program.body.len() / 2);
    }
    let sharing = runner.share_weights(weights)?;
    let mut outputs = Vec::new();
    let mut layers: Vec<LayerMetrics> = Vec::new();
    for k in 0..inferences {
        let made;
        let input = match inputs {
            None => None,
            Some(ClientFeed::Fixed(x)) => Some(x[k].as_slice()),
            Some(ClientFeed::Generated { next, .. }) => {
                made = next(k, &outputs).map_err(RunError::Input)?;
                Some(made.as_slice())
            }
        };
        let (revealed, inference_layers) = runner.infer(input)?;
        crate::run::accumulate(&mut layers, inference_layers);
        if let Some(y) = revealed {
            outputs.push(y);
        }
    }
    layers.splice(0..0, [session_setup_entry(setup), sharing]);
    let peak_live_bytes = runner.peak_live_bytes();
    Ok(PartyRun { outputs, layers, peak_live_bytes, backend: runner.into_backend() })
}

/// The pseudo-layer that accounts for a session's set-up traffic (key agreement, attestation).
pub fn session_setup_entry(setup: cryptflow_backend::Traffic) -> LayerMetrics {
    LayerMetrics {
        layer: "(session setup)".into(),
        bytes_sent: setup.bytes_sent,
        bytes_received: setup.bytes_received,
        rounds: setup.rounds,
        ..Default::default()
    }
}

/// Who is who in a session.
pub struct Roles {
    pub names: &'static [&'static str],
    pub model_owner: usize,
    pub client: usize,
}

pub const THREE_PARTIES: Roles = Roles { names: &ROLE_NAMES, model_owner: 0, client: 1 };

/// Runs one thread per party over in-memory links: `party(id, session, weights, inputs,
/// crash, progress)` runs party `id` (the model owner gets the weights, the client the inputs
/// and the progress bar). Fails, naming every failed party, if any party failed.
pub fn run_local_parties<T: Send>(
    roles: &Roles,
    weights: &dyn WeightSource,
    inputs: ClientFeed<'_>,
    fault: Option<Fault>,
    timeout: std::time::Duration,
    progress: &Progress,
    describe_error: impl Fn(&anyhow::Error) -> String + Sync,
    party: impl Fn(usize, Session, Option<&dyn WeightSource>, Option<ClientFeed<'_>>, bool, Option<&Reporter>) -> Result<T> + Sync,
) -> Result<(Vec<T>, f64)> {
    let started = Instant::now();
    let reporter = progress.reporter();
    let bar = reporter.as_ref();
    let party = &party;
    let results: Vec<Result<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = Session::local(roles.names.len())
            .into_iter()
            .enumerate()
            .map(|(id, mut session)| {
                session.set_timeout(timeout);
                let crash = fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash);
                let weights = (id == roles.model_owner).then_some(weights);
                let inputs = (id == roles.client).then_some(inputs);
                let progress = if id == roles.client { bar } else { None };
                scope.spawn(move || party(id, session, weights, inputs, crash, progress))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the party thread panicked")))).collect()
    });
    if let Some(bar) = bar {
        bar.finish();
    }
    let seconds = started.elapsed().as_secs_f64();
    let errors: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("party {id} ({}): {}", roles.names[id], describe_error(e))))
        .collect();
    if !errors.is_empty() {
        bail!("the secure computation failed (no output was released):\n  {}", errors.join("\n  "));
    }
    Ok((results.into_iter().map(|r| r.expect("errors were handled")).collect(), seconds))
}

/// Per-layer metrics of all parties as one list: bytes summed over parties, rounds and
/// seconds the largest over parties.
pub fn merge_layers(per_party: &[&[LayerMetrics]]) -> Vec<LayerMetrics> {
    let mut layers = per_party[0].to_vec();
    for (k, layer) in layers.iter_mut().enumerate() {
        layer.bytes_sent = per_party.iter().map(|p| p[k].bytes_sent).sum();
        layer.bytes_received = per_party.iter().map(|p| p[k].bytes_received).sum();
        layer.rounds = per_party.iter().map(|p| p[k].rounds).max().unwrap_or(0);
        layer.seconds = per_party.iter().map(|p| p[k].seconds).fold(0.0, f64::max);
    }
    layers
}

/// A local run's summary from every party's [`PartyRun`].
pub fn summarize<B: Backend>(roles: &Roles, parties: &[PartyRun<B>], seconds: f64) -> SecureRun {
    let layers: Vec<&[LayerMetrics]> = parties.iter().map(|p| p.layers.as_slice()).collect();
    SecureRun {
        outputs: parties[roles.client].outputs.clone(),
        seconds,
        bytes_sent: parties.iter().map(|p| p.backend.traffic().bytes_sent).collect(),
        rounds: parties.iter().map(|p| p.backend.traffic().rounds).collect(),
        peak_live_bytes: parties.iter().map(|p| p.peak_live_bytes).collect(),
        layers: merge_layers(&layers),
    }
}

/// An error and its causes, each once (a cause whose text is already shown is left out).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

/// Runs `inputs` (already encoded, one entry per inference) through Porthos with the three
/// parties in this process.
pub fn run_porthos_local(
    program: &Program,
    weights: &dyn WeightSource,
    inputs: ClientFeed<'_>,
    variant: ProtocolVariant,
    truncation: Truncation,
    fault: Option<Fault>,
    timeout: std::time::Duration,
    progress: &Progress,
) -> Result<SecureRun> {
    let count = inputs.len();
    let (parties, seconds) = run_local_parties(&THREE_PARTIES, weights, inputs, fault, timeout, progress, error_chain, |_, session, w, x, crash, progress| {
        let session = crate::aramis::semi_honest_host(session, fault);
        let backend = Porthos::new(session, variant).map_err(|e| anyhow!("setting up the session: {e}"))?;
        Ok(run_party(program, backend, truncation, w, x, count, crash, progress)?)
    })?;
    Ok(summarize(&THREE_PARTIES, &parties, seconds))
}

/// A progress callback: `callback(done, total, layer)`.
pub type ProgressCallback = std::sync::Arc<dyn Fn(u64, u64, &str) + Send + Sync>;

/// How a run reports its progress: one step per instruction of the program per inference
/// (the client's count; with all parties in this process, the client's thread reports).
#[derive(Clone, Default)]
pub enum Progress {
    /// A per-layer progress bar with the estimated time left on standard error when it is a
    /// terminal; otherwise (a log file, a pipe) a line every [`PROGRESS_LINE_SECONDS`] naming
    /// the layer, the share of the work done and the estimated time left (the command line's).
    #[default]
    Terminal,
    /// No report.
    Silent,
    /// `callback(done, total, layer)` after every instruction; `total` is known from the first
    /// call on. Called from the thread that runs the client's party.
    Callback(ProgressCallback),
}

/// Seconds between two progress lines when standard error is not a terminal (runs shorter
/// than this print none).
pub const PROGRESS_LINE_SECONDS: u64 = 15;

impl Progress {
    /// What reports one run's progress, if anything does.
    pub fn reporter(&self) -> Option<Reporter> {
        let kind = match self {
            Progress::Terminal => match progress_bar() {
                Some(bar) => ReporterKind::Bar(bar),
                None => ReporterKind::Lines,
            },
            Progress::Silent => return None,
            Progress::Callback(f) => ReporterKind::Callback(f.clone()),
        };
        Some(Reporter { kind, work: std::sync::Arc::new(std::sync::Mutex::new(Work::new())), ticker: std::sync::Mutex::new(None) })
    }
}

/// What reports one run's progress (see [`Progress`]).
pub struct Reporter {
    kind: ReporterKind,
    work: std::sync::Arc<std::sync::Mutex<Work>>,
    /// Lines: the thread that reports a layer still running every [`PROGRESS_LINE_SECONDS`]
    /// (one convolution of a large volume runs for minutes), and its stop signal.
    ticker: std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

enum ReporterKind {
    /// A terminal progress bar.
    Bar(indicatif::ProgressBar),
    /// Lines on standard error every [`PROGRESS_LINE_SECONDS`].
    Lines,
    /// A callback.
    Callback(ProgressCallback),
}

/// Steps done and the estimated work behind them.
struct Work {
    /// Estimated work of each instruction of the program (empty: every step weighs one).
    weights: Vec<u64>,
    total_steps: u64,
    done_steps: u64,
    total_work: u64,
    done_work: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
    /// The last layer a step finished in, and when.
    last_layer: String,
    last_step: std::time::Instant,
    /// The estimated time left at the last step.
    last_left: Option<f64>,
}

impl Work {
    fn new() -> Work {
        let now = std::time::Instant::now();
        Work {
            weights: Vec::new(),
            total_steps: 0,
            done_steps: 0,
            total_work: 0,
            done_work: 0,
            started: now,
            last_line: now,
            last_layer: String::new(),
            last_step: now,
            last_left: None,
        }
    }

    /// One step done: the fraction of the work done so far and the estimated seconds left.
    fn step(&mut self) -> (f64, Option<f64>) {
        let weight = if self.weights.is_empty() { 1 } else { self.weights[self.done_steps as usize % self.weights.len()] };
        self.done_steps += 1;
        self.done_work += weight;
        let fraction = if self.total_work == 0 { 0.0 } else { (self.done_work as f64 / self.total_work as f64).min(1.0) };
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = (fraction > 0.0).then(|| elapsed * (1.0 - fraction) / fraction);
        (fraction, left)
    }
}

/// The estimated work of each instruction of `program`, for progress: its Porthos bytes by
/// Table III's formulas (comparisons 536 bytes per element, products `8 (2 |X| + 2 |W| + |Z|)`,
/// truncations 32) plus its multiply-accumulates (the two weigh alike on a 2-core machine:
/// a byte through the protocol and a 64-bit multiply-add take about a nanosecond each); local
/// data movement counts its elements. An estimate to share out the time, not a measurement.
pub fn work_estimates(program: &Program) -> Vec<u64> {
    use cryptflow_ir::llil::LOp;
    let elements = |slot: usize| cryptflow_tensor::num_elements(program.slot_shape(slot)) as u64;
    program
        .body
        .iter()
        .map(|instr| {
            let out = elements(instr.out);
            let arg = |k: usize| instr.args.get(k).map_or(0, |&a| elements(a));
            let product = 8 * (2 * arg(0) + 2 * arg(1) + out);
            match &instr.op {
                LOp::Conv(g) => product + out * (g.in_channels / g.groups.max(1)) as u64 * g.kernel.iter().product::<usize>() as u64,
                LOp::ConvTranspose(g) => product + arg(0) * (g.out_channels / g.groups.max(1)) as u64 * g.kernel.iter().product::<usize>() as u64,
                LOp::MatMul | LOp::BatchMatMul => {
                    let inner = program.slot_shape(instr.args[0]).last().copied().unwrap_or(1) as u64;
                    product + out * inner
                }
                LOp::Mul => 40 * out,
                LOp::Relu | LOp::ArgMax { .. } | LOp::MaxPool(_) => 536 * arg(0),
                LOp::ScaleDown { .. } | LOp::Divide { .. } => 32 * out,
                op if op.is_backend_call() => 536 * arg(0),
                _ => out,
            }
        })
        .collect()
}

/// `h:mm:ss` or `m:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

impl Reporter {
    /// Sets the number of steps of the run (each weighing alike).
    pub fn start(&self, total: u64) {
        {
            let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
            work.total_steps = total;
            work.total_work = total;
        }
        match &self.kind {
            ReporterKind::Bar(bar) => bar.set_length(total),
            ReporterKind::Lines | ReporterKind::Callback(_) => {}
        }
    }

    /// Sets the steps of `inferences` runs of `program`, weighing each instruction by its
    /// estimated work ([`work_estimates`]) for the time left.
    pub fn start_program(&self, program: &Program, inferences: usize) {
        let total = (program.body.len() * inferences) as u64;
        self.start(total);
        {
            let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
            work.weights = work_estimates(program);
            work.total_work = work.weights.iter().sum::<u64>().saturating_mul(inferences as u64);
        }
        if matches!(self.kind, ReporterKind::Lines) {
            self.start_ticker();
        }
    }

    /// Lines: a thread that says which instruction is still running when no step has been
    /// reported for [`PROGRESS_LINE_SECONDS`].
    fn start_ticker(&self) {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let work = self.work.clone();
        let period = std::time::Duration::from_secs(PROGRESS_LINE_SECONDS);
        let handle = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                let mut work = work.lock().unwrap_or_else(|e| e.into_inner());
                if work.last_line.elapsed() < period || work.done_steps >= work.total_steps {
                    continue;
                }
                work.last_line = std::time::Instant::now();
                eprintln!(
                    "progress {}: instruction {} of {} running for {} (after layer `{}`); {:.1}% of the estimated work done before it, about {} left at that point",
                    clock(work.started.elapsed().as_secs_f64()),
                    work.done_steps + 1,
                    work.total_steps,
                    clock(work.last_step.elapsed().as_secs_f64()),
                    work.last_layer,
                    if work.total_work == 0 { 0.0 } else { 100.0 * work.done_work as f64 / work.total_work as f64 },
                    work.last_left.map_or_else(|| "?".to_string(), clock)
                );
            }
        });
        *self.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, handle));
    }

    /// One step done, in `layer`.
    pub fn step(&self, layer: &str) {
        let (fraction, left, steps, total, elapsed, line_due) = {
            let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
            let (fraction, left) = work.step();
            work.last_layer = layer.to_string();
            work.last_step = std::time::Instant::now();
            work.last_left = left;
            let due = work.last_line.elapsed().as_secs() >= PROGRESS_LINE_SECONDS;
            if due {
                work.last_line = std::time::Instant::now();
            }
            (fraction, left, work.done_steps, work.total_steps, work.started.elapsed().as_secs_f64(), due)
        };
        let left = left.map_or_else(|| "?".to_string(), clock);
        match &self.kind {
            ReporterKind::Bar(bar) => {
                bar.set_message(format!("{layer} ({:.0}% of the work, about {left} left)", 100.0 * fraction));
                bar.inc(1);
            }
            ReporterKind::Lines => {
                if line_due {
                    eprintln!("progress {}: instruction {steps} of {total}, layer `{layer}`; {:.1}% of the estimated work done, about {left} left", clock(elapsed), 100.0 * fraction);
                }
            }
            ReporterKind::Callback(f) => f(steps, total, layer),
        }
    }

    /// The run is over (a terminal bar is cleared, the line ticker stopped).
    pub fn finish(&self) {
        if let ReporterKind::Bar(bar) = &self.kind {
            bar.finish_and_clear();
        }
        self.stop_ticker();
    }

    fn stop_ticker(&self) {
        if let Some((stop, handle)) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            drop(stop);
            handle.join().ok();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// A per-layer progress bar on standard error, only when it is a terminal.
pub fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    Some(bar)
}

/// Under `--truncation local`, the warning to print when the program's expected truncation
/// failures per inference (the compile report's, measured when compiled with `--calibrate`;
/// otherwise computed from the program at the compiler's assumed magnitudes) exceed
/// [`cryptflow_athos::MAX_EXPECTED_TRUNCATION_FAILURES`]. `None` under faithful truncation,
/// which has no such failure, and for the float and cleartext executors, which truncate exactly.
pub fn local_truncation_warning(public: &cryptflow_ir::artifact::PublicProgram, backend: crate::BackendName, truncation: Truncation) -> Option<String> {
    use crate::BackendName::{Aramis, Porthos, TwoPc};
    if truncation != Truncation::Local || !matches!(backend, Porthos | TwoPc | Aramis) {
        return None;
    }
    let risk = serde_json::from_value::<cryptflow_athos::TruncationRisk>(public.report["truncation_risk"].clone())
        .ok()
        .filter(|r| r.elements > 0)
        .unwrap_or_else(|| cryptflow_athos::truncation_risk(&public.program, None));
    risk.too_high().then(|| {
        format!(
            "--truncation local: {}; a failed element is off by about 2^{} in real units and nothing reports it: drop --truncation local unless you accept that",
            risk.describe(),
            64i64 - 2 * i64::from(public.program.scale)
        )
    })
}
