//! `--backend aramis`: Porthos made secure against malicious parties by Aramis (crate
//! `cryptflow-aramis`): attested start-up, every message signed by the sender's attested
//! execution and checked by the receiver, output gate before every reveal. Locally
//! (`cryptflow run`, the three parties in this process, a throw-away attestation authority) or
//! distributed (`cryptflow party --backend aramis`, TLS 1.3 between the parties and the
//! authority key `authority.key`/`authority.pub` written by `cryptflow keygen`).
//!
//! Also the host-level faults (`tamper`, `forge`, `replay`, `reorder`, `drop`) for the
//! semi-honest `--backend porthos`, whose messages then go through a cheating host unsigned.
//!
//! The attestor is the software one: it shows the mechanism and guarantees no hardware
//! integrity (see `cryptflow_aramis::software`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_aramis::{protect, Aramis, Cheat, CheatingHost, Failure, HostLayer, Options};
use cryptflow_backend::Backend;
use cryptflow_ir::artifact::{read_fixed_weights, read_public};
use cryptflow_ir::llil::Program;
use cryptflow_net::{NetworkConfig, Security, Session, TlsIdentity};
use cryptflow_porthos::{Porthos, ProtocolVariant, CLIENT, HELPER, MODEL_OWNER};
use cryptflow_runtime::{decode_output, encode_input, RunError, Runner};
use cryptflow_tensor::RingTensor;
use serde::Serialize;

use crate::party::PartyArgs;
use crate::run::{accumulate, Metrics};
use crate::secure::{self, Fault, FaultKind, PartyRun, SecureRun, ROLE_NAMES};
use crate::{npy, BackendName, ProtocolName};

/// The host-level deviation of a fault kind, if it is one.
pub fn cheat_of(kind: FaultKind) -> Option<Cheat> {
    match kind {
        FaultKind::Tamper => Some(Cheat::Tamper),
        FaultKind::Forge => Some(Cheat::Forge),
        FaultKind::Replay => Some(Cheat::Replay),
        FaultKind::Reorder => Some(Cheat::Reorder),
        FaultKind::Drop => Some(Cheat::Drop),
        FaultKind::Crash | FaultKind::WrongCode => None,
    }
}

/// Faults other than `crash` need a backend whose messages go through a host we control.
pub fn check_fault(backend: BackendName, fault: Option<Fault>) -> Result<()> {
    let Some(f) = fault else { return Ok(()) };
    match (backend, f.kind) {
        (_, FaultKind::Crash) | (BackendName::Aramis, _) => Ok(()),
        (BackendName::Porthos, FaultKind::WrongCode) => {
            bail!("--inject-fault {}:wrong-code needs --backend aramis: Porthos does not attest code, so there is nothing to measure", f.party)
        }
        (BackendName::Porthos, _) => Ok(()),
        (other, kind) => bail!("--inject-fault {kind:?} applies to --backend porthos and aramis, not {other:?}"),
    }
}

/// A semi-honest session whose outgoing messages pass through a cheating host when `fault`
/// asks this party for a host-level deviation; otherwise `session` itself.
pub fn semi_honest_host(session: Session, fault: Option<Fault>) -> Session {
    let id = session.id();
    match fault.filter(|f| f.party == id).and_then(|f| cheat_of(f.kind)) {
        Some(cheat) => {
            let n = session.parties();
            HostLayer::session(session, Box::new(CheatingHost::new(id, n, cheat)))
        }
        None => session,
    }
}

/// Writes the software attestation authority's key pair (`authority.key`, `authority.pub`).
pub fn write_authority(dir: &Path) -> Result<()> {
    cryptflow_aramis::software::generate_authority(dir)?;
    Ok(())
}

/// What enters the measurement besides the binary: the protocol and the public program.
fn configuration(dir: &Path, variant: ProtocolVariant) -> Result<Vec<u8>> {
    let path = dir.join("program.json");
    let program = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut c = format!("cryptflow aramis v1; protocol {variant:?}; parties 3; program.json:\n").into_bytes();
    c.extend_from_slice(&program);
    Ok(c)
}

fn party_names() -> Vec<String> {
    ROLE_NAMES.iter().enumerate().map(|(i, r)| format!("party {i} ({r})")).collect()
}

fn options(id: usize, configuration: &[u8], fault: Option<Fault>) -> Options {
    let mut o = Options::new(configuration.to_vec());
    o.names = party_names();
    if let Some(cheat) = fault.filter(|f| f.party == id).and_then(|f| cheat_of(f.kind)) {
        o.host = Box::new(CheatingHost::new(id, 3, cheat));
    }
    o
}

fn attestor_for(base: &SoftwareAttestor, id: usize, fault: Option<Fault>) -> SoftwareAttestor {
    if fault.is_some_and(|f| f.party == id && f.kind == FaultKind::WrongCode) {
        eprintln!("injected fault: party {id} runs code whose measurement differs (simulated modified binary)");
        base.clone().simulating_different_code()
    } else {
        base.clone()
    }
}

fn variant_of(p: ProtocolName) -> ProtocolVariant {
    match p {
        ProtocolName::Porthos => ProtocolVariant::Porthos,
        ProtocolName::Securenn => ProtocolVariant::SecureNN,
    }
}

/// The Aramis part of the metrics: the protocol's own payload and what Aramis adds.
#[derive(Serialize, Default, Clone, Debug)]
pub struct AramisMetrics {
    /// Bytes of protocol payload each party sent (what Porthos alone would send).
    pub payload_bytes_sent: Vec<u64>,
    pub payload_bytes_total: u64,
    /// Bytes Aramis added per party: envelopes (header and signature), start-up (nonces,
    /// tokens), output gates.
    pub aramis_bytes_sent: Vec<u64>,
    pub aramis_bytes_total: u64,
    /// `aramis_bytes_total / payload_bytes_total`, in percent.
    pub overhead_percent: f64,
    /// Rounds of the protocol alone (the largest count over the parties).
    pub payload_rounds: u64,
    /// Protocol messages each party sent.
    pub messages_sent: Vec<u64>,
    /// Signatures each party made (one per flight: the messages sent between two receives).
    pub signatures: Vec<u64>,
    /// Signatures each party verified.
    pub verifications: Vec<u64>,
    pub output_gates: u64,
    /// Bytes of the attested start-up, summed over the parties.
    pub startup_bytes_total: u64,
    pub attestor: String,
    pub measurement: String,
}

impl AramisMetrics {
    fn from_parties(parts: &[(cryptflow_backend::Traffic, cryptflow_backend::Traffic, cryptflow_aramis::Stats)], attestor: String, measurement: String) -> AramisMetrics {
        let payload_bytes_sent: Vec<u64> = parts.iter().map(|p| p.0.bytes_sent).collect();
        let aramis_bytes_sent: Vec<u64> = parts.iter().map(|p| p.1.bytes_sent - p.0.bytes_sent).collect();
        let payload_bytes_total = payload_bytes_sent.iter().sum();
        let aramis_bytes_total = aramis_bytes_sent.iter().sum();
        AramisMetrics {
            overhead_percent: 100.0 * aramis_bytes_total as f64 / (payload_bytes_total as f64).max(1.0),
            payload_bytes_sent,
            payload_bytes_total,
            aramis_bytes_sent,
            aramis_bytes_total,
            payload_rounds: parts.iter().map(|p| p.0.rounds).max().unwrap_or(0),
            messages_sent: parts.iter().map(|p| p.2.messages_sent).collect(),
            signatures: parts.iter().map(|p| p.2.signatures).collect(),
            verifications: parts.iter().map(|p| p.2.verifications).collect(),
            output_gates: parts.iter().map(|p| p.2.confirm_rounds).max().unwrap_or(0),
            startup_bytes_total: parts.iter().map(|p| p.2.handshake.bytes_sent).sum(),
            attestor,
            measurement,
        }
    }
}

/// One party over an attested session: start-up, Porthos' key agreement, then the program.
#[allow(clippy::too_many_arguments)]
fn run_party(
    program: &Program,
    session: Session,
    attestor: &SoftwareAttestor,
    options: Options,
    variant: ProtocolVariant,
    weights: Option<&[RingTensor]>,
    inputs: Option<&[RingTensor]>,
    inferences: usize,
    crash: bool,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<(PartyRun<Aramis<Porthos>>, cryptflow_aramis::Stats)> {
    let (session, handle) = protect(session, attestor, options).map_err(|f| anyhow!("{f}"))?;
    let explain = |e: &dyn std::fmt::Display| handle.failure().map_or_else(|| anyhow!("{e}"), |f: Failure| anyhow!("{f}"));
    let porthos = Porthos::new(session, variant).map_err(|e| explain(&e).context("setting up the session"))?;
    let backend = Aramis::new(porthos, handle.clone());
    let run = secure::run_party(program, backend, weights, inputs, inferences, crash, progress).map_err(|e| explain(&e))?;
    Ok((run, handle.stats()))
}

/// Runs `inputs` (already encoded) through Aramis-protected Porthos, the three parties in this
/// process with a throw-away attestation authority.
pub fn run_local(
    dir: &Path,
    program: &Program,
    weights: &[RingTensor],
    inputs: &[RingTensor],
    protocol: ProtocolName,
    fault: Option<Fault>,
) -> Result<(SecureRun, AramisMetrics)> {
    let variant = variant_of(protocol);
    let configuration = configuration(dir, variant)?;
    let base = SoftwareAttestor::ephemeral()?;
    let count = inputs.len();
    let (results, seconds) =
        secure::run_local_parties(&secure::THREE_PARTIES, weights, inputs, fault, secure::error_chain, |id, session, w, x, crash, progress| {
            let attestor = attestor_for(&base, id, fault);
            let options = options(id, &configuration, fault);
            run_party(program, session, &attestor, options, variant, w, x, count, crash, progress)
        })?;
    let measurement = base.measure_hex(&configuration);
    let parts: Vec<_> = results.iter().map(|(r, stats)| (r.backend.payload_traffic(), r.backend.traffic(), *stats)).collect();
    let aramis = AramisMetrics::from_parties(&parts, cryptflow_aramis::Attestor::describe(&base), measurement);
    let parties: Vec<PartyRun<Aramis<Porthos>>> = results.into_iter().map(|(r, _)| r).collect();
    Ok((secure::summarize(&secure::THREE_PARTIES, &parties, seconds), aramis))
}

trait MeasureHex {
    fn measure_hex(&self, configuration: &[u8]) -> String;
}

impl MeasureHex for SoftwareAttestor {
    fn measure_hex(&self, configuration: &[u8]) -> String {
        cryptflow_aramis::Attestor::measure(self, configuration).map(|m| m.hex()).unwrap_or_default()
    }
}

/// `cryptflow party --backend aramis`: one party over TLS, with the software attestor and the
/// authority key pair from the keys directory.
pub fn party(args: PartyArgs) -> Result<()> {
    let id = args.id;
    if id > 2 {
        bail!("--id {id}: ids are 0 (model owner), 1 (client), 2 (helper)");
    }
    if args.peers.len() != 3 {
        bail!("--peers needs 3 addresses (HOST0:PORT,HOST1:PORT,HOST2:PORT), got {}", args.peers.len());
    }
    if (id == CLIENT) != args.input.is_some() || (id == CLIENT) != args.output.is_some() {
        bail!("--input and -o are given to the client (party 1) and only to it");
    }
    check_fault(BackendName::Aramis, args.inject_fault)?;
    let public = read_public(&args.dir)?;
    let program = &public.program;
    let variant = variant_of(args.protocol);
    let configuration = configuration(&args.dir, variant)?;
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
    let attestor = SoftwareAttestor::load(&args.keys).with_context(|| {
        format!("the software attestor needs authority.key and authority.pub in {} (cryptflow keygen writes them)", args.keys.display())
    })?;
    let attestor = attestor_for(&attestor, id, args.inject_fault);
    let identity = TlsIdentity::load(&args.keys, id, 3)?;
    let mut config = NetworkConfig::new(id, args.peers.clone(), Security::Tls(identity));
    config.connect_deadline = Duration::from_secs(args.connect_timeout);
    config.timeout = Duration::from_secs(args.peer_timeout);
    eprintln!("party {id} ({}): connecting to {} (aramis, {})", ROLE_NAMES[id], args.peers.join(", "), cryptflow_aramis::Attestor::describe(&attestor));
    let session = Session::connect(config)?;
    let started = Instant::now();
    let (mut session, handle) = protect(session, &attestor, options(id, &configuration, args.inject_fault)).map_err(|f| anyhow!("{f}"))?;
    let explain = |e: anyhow::Error| handle.failure().map_or(e, |f| anyhow!("{f}"));
    // The number of inferences is public: the client announces it (signed, like every message).
    let count = if id == CLIENT {
        let n = client_inputs.as_ref().map_or(0, |(x, _)| x.len()) as u64;
        session.send(MODEL_OWNER, vec![n]).map_err(|e| explain(e.into()))?;
        session.send(HELPER, vec![n]).map_err(|e| explain(e.into()))?;
        n as usize
    } else {
        session.recv(CLIENT, 1).map_err(|e| explain(e.into()))?[0] as usize
    };
    let porthos = Porthos::new(session, variant).map_err(|e| explain(anyhow!("setting up the session: {e}")))?;
    let backend = Aramis::new(porthos, handle.clone());
    let setup = backend.traffic();
    let mut runner = Runner::new(program, backend);
    if args.inject_fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash) {
        runner.crash_before_instruction(program.body.len() / 2);
    }
    let bar = crate::secure::progress_bar();
    if let Some(bar) = bar.clone() {
        bar.set_length((program.body.len() * count) as u64);
        runner.observe_progress(move |instr| {
            bar.set_message(instr.layer.clone());
            bar.inc(1);
        });
    }
    let sharing = runner.share_weights(weights.as_deref())?;
    let mut metrics = Metrics { backend: "aramis".into(), inferences: count, ..Default::default() };
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
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    metrics.layers.splice(0..0, [secure::session_setup_entry(setup), sharing]);
    metrics.seconds = started.elapsed().as_secs_f64();
    metrics.seconds_per_inference = metrics.seconds / count.max(1) as f64;
    let backend = runner.backend();
    let (total, payload) = (backend.traffic(), backend.payload_traffic());
    metrics.bytes_sent = vec![total.bytes_sent];
    metrics.bytes_total = total.bytes_sent;
    metrics.rounds = total.rounds;
    metrics.peak_live_bytes = vec![runner.peak_live_bytes()];
    let measurement = attestor.measure_hex(&configuration);
    metrics.aramis = Some(AramisMetrics::from_parties(&[(payload, total, handle.stats())], cryptflow_aramis::Attestor::describe(&attestor), measurement));
    if let (Some(path), Some((_, stacking))) = (&args.output, &client_inputs) {
        npy::write_f32(path, &npy::stack(&outputs, *stacking))?;
        eprintln!("party {id} (client): wrote {}", path.display());
    }
    eprintln!(
        "party {id} ({}): {count} inference(s) in {:.3} s, sent {} bytes ({} protocol payload + {} Aramis) in {} rounds",
        ROLE_NAMES[id],
        metrics.seconds,
        total.bytes_sent,
        payload.bytes_sent,
        total.bytes_sent - payload.bytes_sent,
        total.rounds
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(&metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
