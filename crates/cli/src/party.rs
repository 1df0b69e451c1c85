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
use cryptflow_ir::artifact::{read_fixed_weights, read_public};
use cryptflow_net::{NetworkConfig, Security, Session, TlsIdentity};
use cryptflow_porthos::{Porthos, ProtocolVariant, CLIENT, HELPER, MODEL_OWNER};
use cryptflow_runtime::{decode_output, encode_input, Runner};

use crate::run::{accumulate, Metrics};
use crate::secure::{Fault, FaultKind, ROLE_NAMES};
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
    /// Client only: the input .npy.
    #[arg(long, value_name = "X.npy")]
    pub input: Option<PathBuf>,
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
    let identity = TlsIdentity::load(&args.keys, id, 3)?;
    let mut config = NetworkConfig::new(id, args.peers.clone(), Security::Tls(identity));
    config.connect_deadline = Duration::from_secs(args.connect_timeout);
    config.timeout = Duration::from_secs(args.peer_timeout);
    eprintln!("party {id} ({}): connecting to {}", ROLE_NAMES[id], args.peers.join(", "));
    crate::aramis::check_fault(crate::BackendName::Porthos, args.inject_fault)?;
    let mut session = crate::aramis::semi_honest_host(Session::connect(config)?, args.inject_fault);
    let started = Instant::now();
    // The number of inferences is public: the client announces it.
    let count = if id == CLIENT {
        let n = client_inputs.as_ref().map_or(0, |(x, _)| x.len()) as u64;
        session.send(MODEL_OWNER, vec![n])?;
        session.send(HELPER, vec![n])?;
        n as usize
    } else {
        session.recv(CLIENT, 1)?[0] as usize
    };
    let variant = match args.protocol {
        ProtocolName::Porthos => ProtocolVariant::Porthos,
        ProtocolName::Securenn => ProtocolVariant::SecureNN,
    };
    let backend = Porthos::new(session, variant).context("setting up the session")?;
    let setup = cryptflow_backend::Backend::traffic(&backend);
    let mut runner = Runner::new(program, backend);
    let crash = args.inject_fault.is_some_and(|f| f.party == id && f.kind == FaultKind::Crash);
    if crash {
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
    let mut metrics = Metrics { backend: format!("{variant:?}").to_lowercase(), inferences: count, ..Default::default() };
    let mut outputs = Vec::new();
    for k in 0..count {
        let input = client_inputs.as_ref().map(|(x, _)| [encode_input(&x[k], program.scale)]);
        let result = runner.infer(input.as_ref().map(|i| &i[..]));
        let (revealed, layers) = match result {
            Err(cryptflow_runtime::RunError::InjectedCrash { .. }) => {
                eprintln!("party {id}: crashing on purpose (--inject-fault)");
                // Exit at once, without closing anything: the operating system drops the links.
                std::process::exit(70);
            }
            other => other?,
        };
        accumulate(&mut metrics.layers, layers);
        if let Some(y) = revealed {
            outputs.push(decode_output(&y[0], program.outputs[0].encoding));
        }
    }
    let session_setup = cryptflow_runtime::LayerMetrics {
        layer: "(session setup)".into(),
        bytes_sent: setup.bytes_sent,
        bytes_received: setup.bytes_received,
        rounds: setup.rounds,
        ..Default::default()
    };
    metrics.layers.splice(0..0, [session_setup, sharing]);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    metrics.seconds = started.elapsed().as_secs_f64();
    metrics.seconds_per_inference = metrics.seconds / count.max(1) as f64;
    let traffic = cryptflow_backend::Backend::traffic(runner.backend());
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
