//! `--backend 2pc`: two-party secure inference between the model owner (party 0) and the client
//! (party 1), with no helper ([`cryptflow_twopc`]). Locally (`cryptflow run`, both parties in
//! this process over in-memory links) or distributed (`cryptflow party --backend 2pc`, TLS 1.3
//! between the two, keys from `cryptflow keygen --parties 2`).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_backend::Backend;
use cryptflow_ir::artifact::{read_fixed_weights, read_public};
use cryptflow_ir::llil::Program;
use cryptflow_net::{NetworkConfig, Security, Session, TlsIdentity};
use cryptflow_runtime::{decode_output, encode_input, LayerMetrics, RunError, Runner};
use cryptflow_tensor::RingTensor;
use cryptflow_twopc::{TwoPc, CLIENT, MODEL_OWNER};

use crate::npy;
use crate::party::PartyArgs;
use crate::run::{accumulate, Metrics};
use crate::secure::{Fault, FaultKind, SecureRun};

pub const ROLE_NAMES: [&str; 2] = ["model owner", "client"];

struct PartyResult {
    outputs: Vec<Vec<RingTensor>>,
    layers: Vec<LayerMetrics>,
    bytes_sent: u64,
    rounds: u64,
    peak_live_bytes: u64,
}

fn check_fault(fault: Option<Fault>) -> Result<()> {
    if let Some(f) = fault {
        if f.party > 1 {
            bail!("--inject-fault {}: the 2pc backend has parties 0 (model owner) and 1 (client)", f.party);
        }
    }
    Ok(())
}

fn setup_entry(setup: cryptflow_backend::Traffic) -> LayerMetrics {
    LayerMetrics {
        layer: "(session setup)".into(),
        bytes_sent: setup.bytes_sent,
        bytes_received: setup.bytes_received,
        rounds: setup.rounds,
        ..Default::default()
    }
}

fn run_party(program: &Program, backend: TwoPc, weights: Option<&[RingTensor]>, inputs: Option<&[RingTensor]>, inferences: usize, crash: bool) -> Result<PartyResult, RunError> {
    let setup = backend.traffic();
    let mut runner = Runner::new(program, backend);
    if crash {
        runner.crash_before_instruction(program.body.len() / 2);
    }
    let sharing = runner.share_weights(weights)?;
    let mut outputs = Vec::new();
    let mut layers: Vec<LayerMetrics> = Vec::new();
    for k in 0..inferences {
        let input = inputs.map(|x| std::slice::from_ref(&x[k]));
        let (revealed, inference_layers) = runner.infer(input)?;
        accumulate(&mut layers, inference_layers);
        if let Some(y) = revealed {
            outputs.push(y);
        }
    }
    layers.splice(0..0, [setup_entry(setup), sharing]);
    let traffic = runner.backend().traffic();
    Ok(PartyResult { outputs, layers, bytes_sent: traffic.bytes_sent, rounds: traffic.rounds, peak_live_bytes: runner.peak_live_bytes() })
}

/// Runs `inputs` (already encoded) with both parties in this process.
pub fn run_local(program: &Program, weights: &[RingTensor], inputs: &[RingTensor], fault: Option<Fault>) -> Result<SecureRun> {
    check_fault(fault)?;
    let started = Instant::now();
    let count = inputs.len();
    let results: Vec<Result<PartyResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = Session::local(2)
            .into_iter()
            .enumerate()
            .map(|(id, session)| {
                let crash = fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash);
                scope.spawn(move || -> Result<PartyResult> {
                    let backend = TwoPc::new(session).map_err(|e| anyhow!("setting up the session: {e}"))?;
                    let weights = (id == MODEL_OWNER).then_some(weights);
                    let inputs = (id == CLIENT).then_some(inputs);
                    Ok(run_party(program, backend, weights, inputs, count, crash)?)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the party thread panicked")))).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let errors: Vec<String> =
        results.iter().enumerate().filter_map(|(id, r)| r.as_ref().err().map(|e| format!("party {id} ({}): {e:#}", ROLE_NAMES[id]))).collect();
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
        outputs: results[CLIENT].outputs.clone(),
        seconds,
        bytes_sent: results.iter().map(|r| r.bytes_sent).collect(),
        rounds: results.iter().map(|r| r.rounds).collect(),
        peak_live_bytes: results.iter().map(|r| r.peak_live_bytes).collect(),
        layers,
    })
}

/// `cryptflow party --backend 2pc`: one of the two parties over TLS.
pub fn party(args: PartyArgs) -> Result<()> {
    let id = args.id;
    if id > 1 {
        bail!("--id {id}: the 2pc backend has ids 0 (model owner) and 1 (client)");
    }
    if args.peers.len() != 2 {
        bail!("--peers needs 2 addresses for the 2pc backend (HOST0:PORT,HOST1:PORT), got {}", args.peers.len());
    }
    check_fault(args.inject_fault)?;
    if (id == CLIENT) != args.input.is_some() || (id == CLIENT) != args.output.is_some() {
        bail!("--input and -o are given to the client (party 1) and only to it");
    }
    let public = read_public(&args.dir)?;
    let program = &public.program;
    let weights = if id == MODEL_OWNER { Some(read_fixed_weights(&args.dir, &public)?) } else { None };
    let client_inputs = match &args.input {
        Some(path) => {
            if program.inputs.len() != 1 {
                bail!("this model has {} inputs; `cryptflow party` feeds one", program.inputs.len());
            }
            let x = npy::read_f32(path)?;
            Some(npy::split_batch(&x, &program.inputs[0].shape, &format!("input {}", path.display()))?)
        }
        None => None,
    };
    let identity = TlsIdentity::load(&args.keys, id, 2)?;
    let mut config = NetworkConfig::new(id, args.peers.clone(), Security::Tls(identity));
    config.connect_deadline = Duration::from_secs(args.connect_timeout);
    config.timeout = Duration::from_secs(args.peer_timeout);
    eprintln!("party {id} ({}): connecting to {}", ROLE_NAMES[id], args.peers.join(", "));
    let mut session = Session::connect(config)?;
    let started = Instant::now();
    // The number of inferences is public: the client announces it.
    let count = if id == CLIENT {
        let n = client_inputs.as_ref().map_or(0, |(x, _)| x.len()) as u64;
        session.send(MODEL_OWNER, vec![n])?;
        n as usize
    } else {
        session.recv(CLIENT, 1)?[0] as usize
    };
    let backend = TwoPc::new(session).context("setting up the session")?;
    let setup = backend.traffic();
    let mut runner = Runner::new(program, backend);
    if args.inject_fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash) {
        runner.crash_before_instruction(program.body.len() / 2);
    }
    let sharing = runner.share_weights(weights.as_deref())?;
    let mut metrics = Metrics { backend: "2pc".into(), inferences: count, ..Default::default() };
    let mut outputs = Vec::new();
    for k in 0..count {
        let input = client_inputs.as_ref().map(|(x, _)| [encode_input(&x[k], program.scale)]);
        let (revealed, layers) = match runner.infer(input.as_ref().map(|i| &i[..])) {
            Err(RunError::InjectedCrash { .. }) => {
                eprintln!("party {id}: crashing on purpose (--inject-fault)");
                std::process::exit(70);
            }
            other => other?,
        };
        accumulate(&mut metrics.layers, layers);
        if let Some(y) = revealed {
            outputs.push(decode_output(&y[0], program.outputs[0].encoding));
        }
    }
    metrics.layers.splice(0..0, [setup_entry(setup), sharing]);
    metrics.seconds = started.elapsed().as_secs_f64();
    metrics.seconds_per_inference = metrics.seconds / count.max(1) as f64;
    let traffic = runner.backend().traffic();
    metrics.bytes_sent = vec![traffic.bytes_sent];
    metrics.bytes_total = traffic.bytes_sent;
    metrics.rounds = traffic.rounds;
    metrics.peak_live_bytes = vec![runner.peak_live_bytes()];
    metrics.peak_rss_bytes = crate::bench::runs::peak_rss().into_iter().collect();
    if let (Some(path), Some((_, stacking))) = (&args.output, &client_inputs) {
        npy::write_f32(path, &npy::stack(&outputs, *stacking))?;
        eprintln!("party {id} (client): wrote {}", path.display());
    }
    eprintln!(
        "party {id} ({}): {count} inference(s) in {:.3} s, sent {} bytes in {} rounds",
        ROLE_NAMES[id], metrics.seconds, traffic.bytes_sent, traffic.rounds
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(&metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
