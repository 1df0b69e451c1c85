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
use cryptflow_runtime::{decode_output, encode_input, RunError, Runner};
use cryptflow_tensor::RingTensor;
use cryptflow_twopc::{TwoPc, CLIENT, MODEL_OWNER};

use crate::npy;
use crate::party::PartyArgs;
use crate::run::{accumulate, Metrics};
use crate::secure::{error_chain, run_local_parties, run_party, session_setup_entry, summarize, Fault, FaultKind, Roles, SecureRun};

pub const ROLE_NAMES: [&str; 2] = ["model owner", "client"];

const TWO_PARTIES: Roles = Roles { names: &ROLE_NAMES, model_owner: MODEL_OWNER, client: CLIENT };

fn check_fault(fault: Option<Fault>) -> Result<()> {
    if let Some(f) = fault {
        if f.party > 1 {
            bail!("--inject-fault {}: the 2pc backend has parties 0 (model owner) and 1 (client)", f.party);
        }
    }
    Ok(())
}

/// Runs `inputs` (already encoded) with both parties in this process.
pub fn run_local(program: &Program, weights: &[RingTensor], inputs: &[RingTensor], fault: Option<Fault>) -> Result<SecureRun> {
    check_fault(fault)?;
    let count = inputs.len();
    let (parties, seconds) = run_local_parties(&TWO_PARTIES, weights, inputs, fault, error_chain, |_, session, w, x, crash, progress| {
        let backend = TwoPc::new(session).map_err(|e| anyhow!("setting up the session: {e}"))?;
        Ok(run_party(program, backend, w, x, count, crash, progress)?)
    })?;
    Ok(summarize(&TWO_PARTIES, &parties, seconds))
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
    metrics.layers.splice(0..0, [session_setup_entry(setup), sharing]);
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
