//! Secure runs with all parties in this process (local mode): one thread per party, linked by
//! in-memory channels, each running the same program through its own backend.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use cryptflow_backend::Backend;
use cryptflow_ir::llil::Program;
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::{LayerMetrics, RunError, Runner};
use cryptflow_tensor::RingTensor;

/// Party roles of the 3-party protocols.
pub const ROLE_NAMES: [&str; 3] = ["model owner", "client", "helper"];

/// `--inject-fault PARTY:KIND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub party: usize,
    pub kind: FaultKind,
}

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

struct PartyResult {
    outputs: Vec<Vec<RingTensor>>,
    layers: Vec<LayerMetrics>,
    bytes_sent: u64,
    rounds: u64,
    peak_live_bytes: u64,
}

fn run_party<B: Backend>(
    program: &Program,
    backend: B,
    weights: Option<&[RingTensor]>,
    inputs: Option<&[RingTensor]>,
    inferences: usize,
    crash: bool,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<PartyResult, RunError> {
    let setup = backend.traffic();
    let mut runner = Runner::new(program, backend);
    if let Some(bar) = progress {
        bar.set_length((program.body.len() * inferences) as u64);
        runner.observe_progress(move |instr| {
            bar.set_message(instr.layer.clone());
            bar.inc(1);
        });
    }
    if crash {
        runner.crash_before_instruction(program.body.len() / 2);
    }
    let sharing = runner.share_weights(weights)?;
    let mut outputs = Vec::new();
    let mut layers: Vec<LayerMetrics> = Vec::new();
    for k in 0..inferences {
        let input = inputs.map(|x| std::slice::from_ref(&x[k]));
        let (revealed, inference_layers) = runner.infer(input)?;
        crate::run::accumulate(&mut layers, inference_layers);
        if let Some(y) = revealed {
            outputs.push(y);
        }
    }
    let session_setup = LayerMetrics {
        layer: "(session setup)".into(),
        bytes_sent: setup.bytes_sent,
        bytes_received: setup.bytes_received,
        rounds: setup.rounds,
        ..Default::default()
    };
    layers.splice(0..0, [session_setup, sharing]);
    let traffic = runner.backend().traffic();
    Ok(PartyResult { outputs, layers, bytes_sent: traffic.bytes_sent, rounds: traffic.rounds, peak_live_bytes: runner.peak_live_bytes() })
}

/// Runs `inputs` (already encoded) through Porthos with the three parties in this process.
pub fn run_porthos_local(
    program: &Program,
    weights: &[RingTensor],
    inputs: &[RingTensor],
    variant: ProtocolVariant,
    fault: Option<Fault>,
) -> Result<SecureRun> {
    let started = Instant::now();
    let count = inputs.len();
    let sessions = Session::local(3);
    let bar = progress_bar();
    let bar = bar.as_ref();
    let results: Vec<Result<PartyResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(id, session)| {
                let crash = fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash);
                scope.spawn(move || -> Result<PartyResult> {
                    let session = crate::aramis::semi_honest_host(session, fault);
                    let backend = Porthos::new(session, variant).map_err(|e| anyhow!("setting up the session: {e}"))?;
                    let weights = (id == cryptflow_porthos::MODEL_OWNER).then_some(weights);
                    let inputs = (id == cryptflow_porthos::CLIENT).then_some(inputs);
                    let progress = if id == cryptflow_porthos::CLIENT { bar } else { None };
                    Ok(run_party(program, backend, weights, inputs, count, crash, progress)?)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the party thread panicked")))).collect()
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut errors = Vec::new();
    for (id, r) in results.iter().enumerate() {
        if let Err(e) = r {
            errors.push(format!("party {id} ({}): {e:#}", ROLE_NAMES[id]));
        }
    }
    if !errors.is_empty() {
        bail!("the secure computation failed:\n  {}", errors.join("\n  "));
    }
    let results: Vec<PartyResult> = results.into_iter().map(|r| r.unwrap()).collect();
    let mut layers = results[0].layers.clone();
    for (k, layer) in layers.iter_mut().enumerate() {
        layer.bytes_sent = results.iter().map(|r| r.layers[k].bytes_sent).sum();
        layer.bytes_received = results.iter().map(|r| r.layers[k].bytes_received).sum();
        layer.rounds = results.iter().map(|r| r.layers[k].rounds).max().unwrap_or(0);
        layer.seconds = results.iter().map(|r| r.layers[k].seconds).fold(0.0, f64::max);
    }
    Ok(SecureRun {
        outputs: results[cryptflow_porthos::CLIENT].outputs.clone(),
        seconds,
        bytes_sent: results.iter().map(|r| r.bytes_sent).collect(),
        rounds: results.iter().map(|r| r.rounds).collect(),
        peak_live_bytes: results.iter().map(|r| r.peak_live_bytes).collect(),
        layers,
    })
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
