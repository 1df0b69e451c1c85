//! `--backend aramis`: Porthos made secure against malicious parties by Aramis (crate
//! `cryptflow-aramis`): attested start-up, every message signed by the sender's attested
//! execution and checked by the receiver, output gate before every reveal. Locally
//! (`cryptflow run`, the three parties in this process, a throw-away attestation authority) or
//! distributed (`cryptflow party --backend aramis`, TLS 1.3 between the parties, each party's
//! own attestation authority `party{I}.authority.key` and every `party{J}.authority.pub`,
//! written by `cryptflow keygen --id`; a shared `authority.key` only where those are absent).
//!
//! Also the host-level faults (`tamper`, `forge`, `replay`, `reorder`, `drop`) for the
//! semi-honest `--backend porthos`, whose messages then go through a cheating host unsigned.
//!
//! The attestor is the software one: it shows the mechanism and guarantees no hardware
//! integrity (see `cryptflow_aramis::software`).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_aramis::{protect, Aramis, Cheat, CheatingHost, Failure, HostLayer, Options};
use cryptflow_backend::{Backend, Truncation};
use cryptflow_ir::llil::{Program, WeightSource};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use serde::Serialize;

use crate::party::{self, PartyArgs};
use crate::secure::{self, Fault, FaultKind, PartyRun, SecureRun, ROLE_NAMES};
use crate::{BackendName, ProtocolName};

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
        (other, kind) => bail!(
            "--inject-fault {}:{} applies to --backend porthos and aramis, not {}",
            f.party,
            kind.name(),
            crate::party::backend_flag(other)
        ),
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

/// The software attestor of party `id` in a distributed run: its own authority
/// (`party{id}.authority.key` and every `party{j}.authority.pub`, written by `cryptflow keygen
/// --id`) by default; an authority shared by all parties (`authority.key`) only where the
/// per-party files are absent, with a warning.
fn load_attestor(keys: &Path, id: usize) -> Result<SoftwareAttestor> {
    use cryptflow_aramis::software::{authority_key_path, party_authority_key_path};
    if party_authority_key_path(keys, id).exists() || !authority_key_path(keys).exists() {
        return SoftwareAttestor::load_party(keys, id, 3).with_context(|| {
            format!(
                "party {id}'s software attestor needs party{id}.authority.key and party{{0,1,2}}.authority.pub in {} \
                 (`cryptflow keygen --id {id}` writes this party's; copy the others' .pub files in)",
                keys.display()
            )
        });
    }
    eprintln!(
        "warning: party {id}: using the shared attestation authority {}: whoever holds it can endorse any party's code; \
         `cryptflow keygen --id {id}` gives each party its own",
        authority_key_path(keys).display()
    );
    SoftwareAttestor::load(keys).with_context(|| format!("the shared software attestation authority in {}", keys.display()))
}

/// Writes the software attestation authority's key pair (`authority.key`, `authority.pub`).
pub fn write_authority(dir: &Path) -> Result<()> {
    cryptflow_aramis::software::generate_authority(dir)?;
    Ok(())
}

/// What enters the measurement besides the binary: the protocol and the public program.
fn configuration(dir: &Path, variant: ProtocolVariant) -> Result<Vec<u8>> {
    Ok(configuration_of(&program_json(dir)?, variant))
}

/// The bytes of `DIR/program.json` (what the attested measurement covers).
pub fn program_json(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join("program.json");
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The configuration of [`configuration`] from the bytes of `program.json`.
fn configuration_of(program_json: &[u8], variant: ProtocolVariant) -> Vec<u8> {
    let mut c = format!("cryptflow aramis v1; protocol {variant:?}; parties 3; program.json:\n").into_bytes();
    c.extend_from_slice(program_json);
    c
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

/// The Aramis part of the metrics: the protocol's own payload and what Aramis adds.
#[derive(Serialize, Default, Clone, Debug)]
pub struct AramisMetrics {
    /// Bytes of protocol payload each party sent (what Porthos alone would send).
    pub payload_bytes_sent: Vec<u64>,
    /// Payload bytes of all parties.
    pub payload_bytes_total: u64,
    /// Bytes Aramis added per party: envelopes (header and signature), start-up (nonces,
    /// tokens), output gates.
    pub aramis_bytes_sent: Vec<u64>,
    /// Aramis bytes of all parties.
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
    /// Output gates (confirmation rounds).
    pub output_gates: u64,
    /// Bytes of the attested start-up, summed over the parties.
    pub startup_bytes_total: u64,
    /// The attestor.
    pub attestor: String,
    /// The measurement of the attested code and configuration (hex).
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
    truncation: Truncation,
    weights: Option<&dyn WeightSource>,
    inputs: Option<secure::ClientFeed<'_>>,
    inferences: usize,
    crash: bool,
    progress: Option<&secure::Reporter>,
) -> Result<(PartyRun<Aramis<Porthos>>, cryptflow_aramis::Stats)> {
    let (session, handle) = protect(session, attestor, options).map_err(|f| anyhow!("{f}"))?;
    let explain = |e: &dyn std::fmt::Display| handle.failure().map_or_else(|| anyhow!("{e}"), |f: Failure| anyhow!("{f}"));
    let porthos = Porthos::new(session, variant).map_err(|e| explain(&e).context("setting up the session"))?;
    let backend = Aramis::new(porthos, handle.clone());
    let run = secure::run_party(program, backend, truncation, weights, inputs, inferences, crash, progress).map_err(|e| explain(&e))?;
    Ok((run, handle.stats()))
}

/// Runs `inputs` (already encoded) through Aramis-protected Porthos, the three parties in this
/// process with a throw-away attestation authority.
#[allow(clippy::too_many_arguments)]
pub fn run_local(
    program_json: &[u8],
    program: &Program,
    weights: &dyn WeightSource,
    inputs: secure::ClientFeed<'_>,
    protocol: ProtocolName,
    truncation: Truncation,
    fault: Option<Fault>,
    timeout: std::time::Duration,
    progress: &secure::Progress,
) -> Result<(SecureRun, AramisMetrics)> {
    let variant = protocol.variant();
    let configuration = configuration_of(program_json, variant);
    let base = SoftwareAttestor::ephemeral()?;
    let count = inputs.len();
    let (results, seconds) =
        secure::run_local_parties(&secure::THREE_PARTIES, weights, inputs, fault, timeout, progress, secure::error_chain, |id, session, w, x, crash, progress| {
            let attestor = attestor_for(&base, id, fault);
            let options = options(id, &configuration, fault);
            run_party(program, session, &attestor, options, variant, truncation, w, x, count, crash, progress)
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
pub fn party(args: PartyArgs) -> Result<crate::run::Metrics> {
    check_fault(BackendName::Aramis, args.inject_fault)?;
    let roles = &secure::THREE_PARTIES;
    let files = party::prepare(&args, roles)?;
    let variant = args.protocol.variant();
    let configuration = configuration(&args.dir, variant)?;
    let attestor = load_attestor(&args.keys, args.id)?;
    let attestor = attestor_for(&attestor, args.id, args.inject_fault);
    let detail = format!(" (aramis, {})", cryptflow_aramis::Attestor::describe(&attestor));
    let mut session = party::connect(&args, roles.names.len(), &detail)?;
    // Before the attested start-up, whose measurement covers program.json too: a mismatch is
    // then reported as what it is rather than as different code.
    party::agree_on_program(&mut session, roles, &args, &files.public)?;
    let started = Instant::now();
    let (mut session, handle) = protect(session, &attestor, options(args.id, &configuration, args.inject_fault)).map_err(|f| anyhow!("{f}"))?;
    let explain = |e: anyhow::Error| handle.failure().map_or(e, |f| anyhow!("{f}"));
    // The count is signed, like every message.
    let count = party::announce_count(&mut session, roles, args.id, &files).map_err(|e| explain(e.into()))?;
    let porthos = Porthos::new(session, variant).map_err(|e| explain(anyhow!("setting up the session: {e}")))?;
    let backend = Aramis::new(porthos, handle.clone());
    let (mut metrics, backend) = party::drive(&args, &files, backend, count, started, "aramis").map_err(explain)?;
    let (total, payload) = (backend.traffic(), backend.payload_traffic());
    let measurement = attestor.measure_hex(&configuration);
    metrics.aramis =
        Some(AramisMetrics::from_parties(&[(payload, total, handle.stats())], cryptflow_aramis::Attestor::describe(&attestor), measurement));
    let detail = format!(" ({} protocol payload + {} Aramis)", payload.bytes_sent, total.bytes_sent - payload.bytes_sent);
    party::finish(&args, roles, metrics, &detail)
}
