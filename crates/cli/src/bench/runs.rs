//! Measured runs of one compiled network on one backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, Traffic};
use cryptflow_ir::llil::{Program, WeightSource};
use cryptflow_net::{LinkShape, Session};
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::{LayerMetrics, Runner};
use cryptflow_tensor::RingTensor;
use serde::Serialize;

/// Time spent in one kind of LLIL instruction (backend call or local library operation).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpTime {
    pub op: String,
    /// Seconds per inference (model owner's view for secure runs).
    pub seconds: f64,
    /// Instructions of this kind per inference.
    pub count: u64,
}

/// What one backend run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Revealed outputs, one vector per inference (the client's view).
    pub outputs: Vec<Vec<RingTensor>>,
    /// Session set-up and weight sharing, real time.
    pub setup_seconds: f64,
    /// Real time of each inference.
    pub inference_seconds: Vec<f64>,
    /// The same on the emulated network (shaped secure runs).
    pub emulated_setup_seconds: Option<f64>,
    pub emulated_inference_seconds: Option<Vec<f64>>,
    /// Per party: traffic of the set-up (session keys, weight sharing) and of all inferences.
    pub setup_traffic: Vec<Traffic>,
    pub inference_traffic: Vec<Traffic>,
    pub peak_live_bytes: Vec<u64>,
    /// Per-layer metrics summed over inferences (secure runs: bytes summed over parties,
    /// rounds and seconds the largest over parties).
    pub layers: Vec<LayerMetrics>,
    pub ops: Vec<OpTime>,
}

/// Times every instruction through the runner's progress hook: the time between two
/// notifications is the instruction's (the first of an inference counts from `start`).
type OpTotals = BTreeMap<&'static str, (f64, u64)>;

#[derive(Clone)]
struct OpProfile(Arc<Mutex<(Instant, OpTotals)>>);

impl OpProfile {
    fn new() -> OpProfile {
        OpProfile(Arc::new(Mutex::new((Instant::now(), BTreeMap::new()))))
    }

    fn attach<B: Backend>(&self, runner: &mut Runner<'_, B>) {
        let profile = self.clone();
        runner.observe_progress(move |instr| {
            let mut state = profile.0.lock().unwrap();
            let now = Instant::now();
            let spent = now.duration_since(state.0).as_secs_f64();
            state.0 = now;
            let entry = state.1.entry(instr.op.name()).or_default();
            entry.0 += spent;
            entry.1 += 1;
        });
    }

    fn start(&self) {
        self.0.lock().unwrap().0 = Instant::now();
    }

    fn ops(&self, inferences: usize) -> Vec<OpTime> {
        let n = inferences.max(1) as f64;
        let state = self.0.lock().unwrap();
        let mut ops: Vec<OpTime> = state
            .1
            .iter()
            .map(|(op, (s, c))| OpTime { op: op.to_string(), seconds: s / n, count: (*c as f64 / n).round() as u64 })
            .collect();
        ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        ops
    }
}

/// The cleartext fixed-point reference backend.
pub fn cleartext(program: &Program, weights: &dyn WeightSource, inputs: &[RingTensor]) -> Result<Measured> {
    let started = Instant::now();
    let mut runner = Runner::new(program, Cleartext::new());
    let profile = OpProfile::new();
    profile.attach(&mut runner);
    runner.share_weights(Some(weights))?;
    let mut m = Measured { setup_seconds: started.elapsed().as_secs_f64(), ..Default::default() };
    for x in inputs {
        let t = Instant::now();
        profile.start();
        let (revealed, layers) = runner.infer(Some(std::slice::from_ref(x)))?;
        m.inference_seconds.push(t.elapsed().as_secs_f64());
        cryptflow::run::accumulate(&mut m.layers, layers);
        m.outputs.push(revealed.context("the cleartext backend reveals its outputs")?);
    }
    m.setup_traffic = vec![Traffic::default()];
    m.inference_traffic = vec![Traffic::default()];
    m.peak_live_bytes = vec![runner.peak_live_bytes()];
    m.ops = profile.ops(inputs.len());
    Ok(m)
}

struct PartyRun {
    outputs: Vec<Vec<RingTensor>>,
    layers: Vec<LayerMetrics>,
    setup_end: f64,
    ends: Vec<f64>,
    emulated_setup_end: Option<f64>,
    emulated_ends: Vec<f64>,
    setup_traffic: Traffic,
    end_traffic: Traffic,
    peak_live_bytes: u64,
    ops: Vec<OpTime>,
}

/// Largest of each party's times.
fn latest(parties: &[PartyRun], at: impl Fn(&PartyRun) -> f64) -> f64 {
    parties.iter().map(at).fold(0.0, f64::max)
}

/// Seconds a party of a bench's secure run may wait for one message.
pub const BENCH_PEER_TIMEOUT_SECONDS: u64 = 3600;

/// Porthos or SecureNN with the three parties as threads of this process, linked in memory,
/// optionally through an emulated network.
pub fn secure(
    program: &Program,
    weights: &dyn WeightSource,
    inputs: &[RingTensor],
    variant: ProtocolVariant,
    shape: Option<LinkShape>,
) -> Result<Measured> {
    let count = inputs.len();
    let start = Instant::now();
    let sessions = match shape {
        Some(shape) => Session::local_shaped(3, shape),
        None => Session::local(3),
    };
    let results: Vec<Result<PartyRun>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(id, session)| {
                scope.spawn(move || -> Result<PartyRun> {
                    let mut session = session;
                    // In-process parties that fail are noticed at once (their links close); the
                    // deadline only ends a stuck run. A party may wait on one computing a large
                    // layer for minutes (the full-size 3D-UNet's level-0 convolutions), which
                    // the links' default of 5 s took for a stall.
                    session.set_timeout(std::time::Duration::from_secs(BENCH_PEER_TIMEOUT_SECONDS));
                    let clock = session.emulated_clock();
                    let emulated = || clock.as_ref().map(|c| c.now().as_secs_f64());
                    let backend = Porthos::new(session, variant).map_err(|e| anyhow!("setting up the session: {e}"))?;
                    let mut runner = Runner::new(program, backend);
                    let profile = OpProfile::new();
                    profile.attach(&mut runner);
                    let weights = (id == cryptflow_porthos::MODEL_OWNER).then_some(weights);
                    runner.share_weights(weights)?;
                    let setup_traffic = runner.backend().traffic();
                    let setup_end = start.elapsed().as_secs_f64();
                    let emulated_setup_end = emulated();
                    let mut run = PartyRun {
                        outputs: Vec::new(),
                        layers: Vec::new(),
                        setup_end,
                        ends: Vec::new(),
                        emulated_setup_end,
                        emulated_ends: Vec::new(),
                        setup_traffic,
                        end_traffic: Traffic::default(),
                        peak_live_bytes: 0,
                        ops: Vec::new(),
                    };
                    for input in inputs {
                        let input = (id == cryptflow_porthos::CLIENT).then(|| std::slice::from_ref(input));
                        profile.start();
                        let (revealed, layers) = runner.infer(input)?;
                        run.ends.push(start.elapsed().as_secs_f64());
                        run.emulated_ends.extend(emulated());
                        cryptflow::run::accumulate(&mut run.layers, layers);
                        run.outputs.extend(revealed);
                    }
                    run.end_traffic = runner.backend().traffic();
                    run.peak_live_bytes = runner.peak_live_bytes();
                    run.ops = profile.ops(count);
                    Ok(run)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the party thread panicked")))).collect()
    });
    let mut errors = Vec::new();
    for (id, r) in results.iter().enumerate() {
        if let Err(e) = r {
            errors.push(format!("party {id} ({}): {e:#}", crate::secure::ROLE_NAMES[id]));
        }
    }
    if !errors.is_empty() {
        bail!("the secure computation failed:\n  {}", errors.join("\n  "));
    }
    let parties: Vec<PartyRun> = results.into_iter().map(|r| r.unwrap()).collect();

    let per_inference = |setup: f64, ends: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let mut previous = setup;
        (0..count)
            .map(|k| {
                let end = ends(k);
                let spent = end - previous;
                previous = end;
                spent
            })
            .collect()
    };
    let setup_seconds = latest(&parties, |p| p.setup_end);
    let inference_seconds = per_inference(setup_seconds, &|k| latest(&parties, |p| p.ends[k]));
    let (emulated_setup_seconds, emulated_inference_seconds) = if shape.is_some() {
        let setup = latest(&parties, |p| p.emulated_setup_end.unwrap_or(0.0));
        (Some(setup), Some(per_inference(setup, &|k| latest(&parties, |p| p.emulated_ends[k]))))
    } else {
        (None, None)
    };
    let mut layers = parties[0].layers.clone();
    for (k, layer) in layers.iter_mut().enumerate() {
        layer.bytes_sent = parties.iter().map(|r| r.layers[k].bytes_sent).sum();
        layer.bytes_received = parties.iter().map(|r| r.layers[k].bytes_received).sum();
        layer.rounds = parties.iter().map(|r| r.layers[k].rounds).max().unwrap_or(0);
        layer.seconds = parties.iter().map(|r| r.layers[k].seconds).fold(0.0, f64::max);
    }
    Ok(Measured {
        outputs: parties[cryptflow_porthos::CLIENT].outputs.clone(),
        setup_seconds,
        inference_seconds,
        emulated_setup_seconds,
        emulated_inference_seconds,
        setup_traffic: parties.iter().map(|p| p.setup_traffic).collect(),
        inference_traffic: parties.iter().map(|p| p.end_traffic - p.setup_traffic).collect(),
        peak_live_bytes: parties.iter().map(|p| p.peak_live_bytes).collect(),
        layers,
        ops: parties[cryptflow_porthos::MODEL_OWNER].ops.clone(),
    })
}

/// Peak resident memory of this process since the last [`reset_peak_rss`] (VmHWM), in bytes.
pub use cryptflow::peak_rss;

/// Resets the peak resident memory counter (Linux: `5` into /proc/self/clear_refs). Returns
/// false where that is not possible (the peak then covers everything before too).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
