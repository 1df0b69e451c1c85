//! `cryptflow party` (one party of a distributed secure run) and `cryptflow keygen`.
//!
//! Roles: party 0 is the model owner (needs `DIR/model-owner`), party 1 the client (gives
//! `--input X.npy` and receives `-o Y.npy`), party 2 the helper (needs only the public program).
//! Every link is TLS 1.3 with both ends authenticated against the certificates made by
//! `cryptflow keygen`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use cryptflow_backend::Backend;
use cryptflow_ir::artifact::{read_public, FixedWeightsFile, PublicProgram};
use cryptflow_net::{NetworkConfig, Security, Session, TlsIdentity};
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::{decode_output, RunError};
use cryptflow_tensor::FloatTensor;

use crate::inputs::{ClientInputs, InputSpec};
use crate::run::Metrics;
use crate::secure::{Fault, FaultKind, Roles, ROLE_NAMES, THREE_PARTIES};
use crate::{npy, ProtocolName};

#[derive(Args)]
pub struct KeygenArgs {
    /// Directory for party{i}.key (private, mode 0600) and party{i}.crt (public) files.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Number of parties.
    #[arg(long, default_value_t = 3)]
    pub parties: usize,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    if !(2..=3).contains(&args.parties) {
        bail!("--parties must be 2 or 3");
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    cryptflow_net::keygen(&args.output, args.parties)?;
    crate::aramis::write_authority(&args.output)?;
    eprintln!(
        "wrote {} key pairs to {}: give party i its party{{i}}.key and every party all party*.crt files \
         (and, for --backend aramis, authority.pub and the software attestor's authority.key)",
        args.parties,
        args.output.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct PartyArgs {
    /// This party's id: 0 = model owner, 1 = client, 2 = helper.
    #[arg(long)]
    pub id: usize,
    /// Every party's address, in id order: HOST0:PORT,HOST1:PORT,HOST2:PORT.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// The compiled program (`cryptflow compile -o DIR`); the model owner's copy has its weights.
    pub dir: PathBuf,
    /// Client only: the input .npy; `NAME=X.npy` once per graph input (plain `X.npy` for a
    /// one-input model), as for `cryptflow run`.
    #[arg(long, value_name = "[NAME=]X.npy")]
    pub input: Vec<String>,
    /// Client only: where to write the outputs.
    #[arg(short = 'o', long = "output", value_name = "Y.npy")]
    pub output: Option<PathBuf>,
    /// Directory holding this party's key and all parties' certificates (from `cryptflow keygen`).
    #[arg(long, default_value = "keys")]
    pub keys: PathBuf,
    #[arg(long, value_enum, default_value = "porthos")]
    pub protocol: ProtocolName,
    /// The secure backend: porthos (3 parties), aramis (porthos secure against malicious
    /// parties) or 2pc (model owner and client only).
    #[arg(long, value_enum, default_value = "porthos")]
    pub backend: crate::BackendName,
    /// Seconds to wait for the other parties to come up.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout: u64,
    /// Seconds of silence after which a peer is declared dead.
    #[arg(long, default_value_t = 10)]
    pub peer_timeout: u64,
    #[arg(long = "inject-fault", value_name = "PARTY:KIND", value_parser = crate::secure::parse_fault)]
    pub inject_fault: Option<Fault>,
    #[arg(long, value_name = "M.json")]
    pub metrics: Option<PathBuf>,
}

pub fn party(args: PartyArgs) -> Result<()> {
    match args.backend {
        crate::BackendName::TwoPc => {
            crate::aramis::check_fault(crate::BackendName::TwoPc, args.inject_fault)?;
            return crate::twopc::party(args);
        }
        crate::BackendName::Aramis => return crate::aramis::party(args),
        crate::BackendName::Porthos => {}
        other => bail!("--backend {other:?}: `cryptflow party` runs the secure backends porthos, aramis and 2pc"),
    }
    crate::aramis::check_fault(crate::BackendName::Porthos, args.inject_fault)?;
    let files = prepare(&args, &THREE_PARTIES)?;
    let session = connect(&args, THREE_PARTIES.names.len(), "")?;
    let mut session = crate::aramis::semi_honest_host(session, args.inject_fault);
    let started = Instant::now();
    let count = announce_count(&mut session, &THREE_PARTIES, args.id, &files)?;
    let variant = match args.protocol {
        ProtocolName::Porthos => ProtocolVariant::Porthos,
        ProtocolName::Securenn => ProtocolVariant::SecureNN,
    };
    let backend = Porthos::new(session, variant).context("setting up the session")?;
    let (metrics, _) = drive(&args, &files, backend, count, started, &format!("{variant:?}").to_lowercase())?;
    finish(&args, &THREE_PARTIES, &metrics, "")
}

/// What a party process holds before it connects.
pub struct PartyFiles {
    pub public: PublicProgram,
    /// The model owner's weights (checked, then read as the inferences need them).
    pub weights: Option<FixedWeightsFile>,
    /// The client's inputs (with how to stack its outputs).
    pub client_inputs: Option<ClientInputs>,
}

/// Checks the arguments against the session's roles and reads this party's files.
pub fn prepare(args: &PartyArgs, roles: &Roles) -> Result<PartyFiles> {
    let (id, parties) = (args.id, roles.names.len());
    if id >= parties {
        let ids: Vec<String> = roles.names.iter().enumerate().map(|(i, n)| format!("{i} ({n})")).collect();
        bail!("--id {id}: this backend's ids are {}", ids.join(", "));
    }
    if args.peers.len() != parties {
        let example: Vec<String> = (0..parties).map(|i| format!("HOST{i}:PORT")).collect();
        bail!("--peers needs {parties} addresses ({}), got {}", example.join(","), args.peers.len());
    }
    if (id == roles.client) == args.input.is_empty() || (id == roles.client) != args.output.is_some() {
        bail!("--input and -o are given to the client (party {}) and only to it", roles.client);
    }
    let public = read_public(&args.dir)?;
    let weights = if id == roles.model_owner { Some(FixedWeightsFile::open(&args.dir, &public)?) } else { None };
    let program = &public.program;
    let client_inputs = if args.input.is_empty() {
        None
    } else {
        Some(crate::inputs::read("--input", &args.input, &InputSpec::of_program(program))?)
    };
    Ok(PartyFiles { public, weights, client_inputs })
}

/// Joins the session over mutually authenticated TLS.
pub fn connect(args: &PartyArgs, parties: usize, detail: &str) -> Result<Session> {
    let identity = TlsIdentity::load(&args.keys, args.id, parties)?;
    let mut config = NetworkConfig::new(args.id, args.peers.clone(), Security::Tls(identity));
    config.connect_deadline = Duration::from_secs(args.connect_timeout);
    config.timeout = Duration::from_secs(args.peer_timeout);
    let role = ROLE_NAMES.get(args.id).copied().unwrap_or("party");
    eprintln!("party {} ({role}): connecting to {}{detail}", args.id, args.peers.join(", "));
    Ok(Session::connect(config)?)
}

/// The number of inferences is public: the client announces it to every other party.
pub fn announce_count(session: &mut Session, roles: &Roles, id: usize, files: &PartyFiles) -> Result<usize, cryptflow_net::NetError> {
    if id == roles.client {
        let n = files.client_inputs.as_ref().map_or(0, |x| x.len());
        for peer in (0..roles.names.len()).filter(|&p| p != id) {
            session.send(peer, vec![n as u64])?;
        }
        Ok(n)
    } else {
        Ok(session.recv(roles.client, 1)?[0] as usize)
    }
}

/// Runs this party's share of `count` inferences over its backend; the client writes the
/// outputs. An injected crash ends the process at once, as a real crash would.
pub fn drive<B: Backend>(
    args: &PartyArgs,
    files: &PartyFiles,
    backend: B,
    count: usize,
    started: Instant,
    name: &str,
) -> Result<(Metrics, B)> {
    let id = args.id;
    let program = &files.public.program;
    let inputs: Option<Vec<crate::secure::Inputs>> = files.client_inputs.as_ref().map(|x| x.encoded(program)).transpose()?;
    let crash = args.inject_fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash);
    let bar = crate::secure::progress_bar();
    let run = crate::secure::run_party(program, backend, files.weights.as_ref().map(|w| w as &dyn cryptflow_ir::llil::WeightSource), inputs.as_deref(), count, crash, bar.as_ref());
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let run = match run {
        Err(RunError::InjectedCrash { .. }) => {
            eprintln!("party {id}: crashing on purpose (--inject-fault)");
            // Exit at once, without closing anything: the operating system drops the links.
            std::process::exit(70);
        }
        other => other?,
    };
    let traffic = run.backend.traffic();
    let metrics = Metrics {
        backend: name.into(),
        inferences: count,
        seconds: started.elapsed().as_secs_f64(),
        seconds_per_inference: started.elapsed().as_secs_f64() / count.max(1) as f64,
        bytes_sent: vec![traffic.bytes_sent],
        bytes_total: traffic.bytes_sent,
        rounds: traffic.rounds,
        peak_live_bytes: vec![run.peak_live_bytes],
        peak_rss_bytes: crate::bench::runs::peak_rss().into_iter().collect(),
        layers: run.layers,
        ..Default::default()
    };
    if let (Some(path), Some(inputs)) = (&args.output, &files.client_inputs) {
        let outputs: Vec<FloatTensor> = run.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect();
        npy::write_f32(path, &npy::stack(&outputs, inputs.stacking))?;
        eprintln!("party {id} (client): wrote {}", path.display());
    }
    Ok((metrics, run.backend))
}

/// Prints the party's summary and writes `--metrics`.
pub fn finish(args: &PartyArgs, roles: &Roles, metrics: &Metrics, detail: &str) -> Result<()> {
    eprintln!(
        "party {} ({}): {} inference(s) in {:.3} s, sent {} bytes{detail} in {} rounds",
        args.id, roles.names[args.id], metrics.inferences, metrics.seconds, metrics.bytes_total, metrics.rounds
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
