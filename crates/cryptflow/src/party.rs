//! `cryptflow party` (one party of a distributed secure run) and `cryptflow keygen`.
//!
//! Roles: party 0 is the model owner (needs `DIR/model-owner`), party 1 the client (gives
//! `--input X.npy` and receives `-o Y.npy`), party 2 the helper (needs only the public program).
//! Every link is TLS 1.3 with both ends authenticated against the certificates made by
//! `cryptflow keygen`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cryptflow_backend::Backend;
use cryptflow_ir::artifact::{read_public, FixedWeightsFile, PublicProgram};
use cryptflow_net::{NetworkConfig, Security, Session, TlsIdentity};
use cryptflow_porthos::Porthos;
use cryptflow_runtime::{decode_output, RunError};
use cryptflow_tensor::FloatTensor;

use crate::inputs::{ClientInputs, InputSpec};
use crate::run::Metrics;
use crate::secure::{Fault, FaultKind, Roles, ROLE_NAMES, THREE_PARTIES};
use crate::{npy, ProtocolName};

#[derive(Args)]
pub struct KeygenArgs {
    /// Directory for the party{i}.key (private, mode 0600) and party{i}.crt (public) files.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Make only this party's key and certificate (the way to deploy: each party runs this on
    /// its own machine, keeps party{ID}.key, and copies party{ID}.crt to the other parties'
    /// folders, checking the printed fingerprint with them). Without --id, every party's key
    /// is written into one folder: for tests and single-machine runs only, since whoever holds
    /// that folder can impersonate any party.
    #[arg(long, value_name = "ID")]
    pub id: Option<usize>,
    /// Number of parties (3; 2 for --backend 2pc).
    #[arg(long, default_value_t = 3)]
    pub parties: usize,
    /// With --id: also write a software attestation authority shared by every party
    /// (authority.key/authority.pub, copied to all). Not needed: keygen --id writes the party's
    /// own authority (party{ID}.authority.key, party{ID}.authority.pub), which --backend aramis
    /// uses; a shared one lets whoever holds it endorse any party's code.
    #[arg(long, requires = "id")]
    pub authority: bool,
    /// Replace private keys that already exist in the folder (their certificates then stop
    /// working at the other parties).
    #[arg(long)]
    pub force: bool,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    if !(2..=3).contains(&args.parties) {
        bail!("--parties must be 2 or 3");
    }
    let dir = &args.output;
    if let Some(id) = args.id {
        if id >= args.parties {
            bail!("--id {id}: the ids of {} parties are 0 to {}", args.parties, args.parties - 1);
        }
    }
    let ids: Vec<usize> = match args.id {
        Some(id) => vec![id],
        None => (0..args.parties).collect(),
    };
    let mut keys: Vec<PathBuf> = ids.iter().map(|&i| cryptflow_net::key_path(dir, i)).collect();
    let authority = args.authority;
    if authority {
        keys.push(dir.join("authority.key"));
    }
    keys.extend(ids.iter().map(|&i| cryptflow_aramis::software::party_authority_key_path(dir, i)));
    let existing: Vec<String> = keys.iter().filter(|k| k.exists()).map(|k| k.display().to_string()).collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already exist{}: not overwriting private keys (the certificates the other parties hold would stop \
             working); pass --force to replace them, or choose another -o folder",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match args.id {
        Some(id) => {
            let fingerprint = cryptflow_net::keygen_party(dir, id)?;
            cryptflow_aramis::software::generate_party_authority(dir, id)?;
            if authority {
                crate::aramis::write_authority(dir)?;
            }
            println!("{fingerprint}");
            eprintln!(
                "party {id}: wrote {key} (private, mode 0600: it never leaves this machine) and {crt}\n\
                 certificate SHA-256 fingerprint: {fingerprint}\n\
                 Give party{id}.crt to every other party, who copy it into their --keys folder and compare this \
                 fingerprint with you over a channel you trust (in person, by phone); copy their party{{j}}.crt \
                 files into {dir} the same way. `cryptflow party --id {id} --keys {dir}` then needs party{id}.key \
                 and every party{{j}}.crt.\n\
                 For --backend aramis it also wrote {akey} (this party's software attestation authority, private) \
                 and {apub}: give party{id}.authority.pub to the other parties with party{id}.crt, and copy theirs in.{aramis}",
                key = cryptflow_net::key_path(dir, id).display(),
                crt = cryptflow_net::cert_path(dir, id).display(),
                dir = dir.display(),
                akey = cryptflow_aramis::software::party_authority_key_path(dir, id).display(),
                apub = cryptflow_aramis::software::party_authority_pub_path(dir, id).display(),
                aramis = if authority {
                    "\nAlso wrote authority.key and authority.pub, an authority shared by every party (--authority): \
                     whoever holds authority.key can endorse any party's code; --backend aramis uses the per-party files when present."
                } else {
                    ""
                }
            );
        }
        None => {
            cryptflow_net::keygen(dir, args.parties)?;
            for id in 0..args.parties {
                cryptflow_aramis::software::generate_party_authority(dir, id)?;
            }
            eprintln!(
                "wrote {} key pairs to {} (and, for --backend aramis, each party's software attestation authority, \
                 party{{i}}.authority.key and party{{i}}.authority.pub)\n\
                 FOR LOCAL TESTS ONLY: this folder holds every party's private key, so whoever has it can impersonate \
                 any party. To deploy, each party runs `cryptflow keygen --id I -o DIR` on its own machine and the \
                 parties exchange only their party{{i}}.crt files.",
                args.parties,
                dir.display()
            );
        }
    }
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
    #[arg(long, value_enum, default_value_t)]
    pub protocol: ProtocolName,
    /// Truncation of the secure backends (every party must choose the same).
    #[arg(long, value_enum, default_value_t)]
    pub truncation: crate::TruncationName,
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
    /// The client, with a decoder compiled with `--next-token`: generate K tokens greedily
    /// after the prompt in `input_ids` (as `cryptflow run --generate`); -o gets them (int64
    /// [1, K]). The other parties need no flag: the client announces the number of steps.
    #[arg(long, value_name = "K")]
    pub generate: Option<usize>,
    /// With --generate: the prompt's length (default: the leading ones of `attention_mask`).
    #[arg(long, value_name = "N", requires = "generate")]
    pub prompt_length: Option<usize>,
    /// How the run reports progress (the command line: a bar when standard error is a terminal).
    #[arg(skip)]
    pub progress: crate::secure::Progress,
}

/// Runs one party of a distributed session; returns this party's metrics (also written to
/// `--metrics`, when given).
pub fn party(args: PartyArgs) -> Result<Metrics> {
    match args.backend {
        crate::BackendName::TwoPc => {
            crate::aramis::check_fault(crate::BackendName::TwoPc, args.inject_fault)?;
            return crate::twopc::party(args);
        }
        crate::BackendName::Aramis => return crate::aramis::party(args),
        crate::BackendName::Porthos => {}
        other => bail!(
            "--backend {}: `cryptflow party` runs the secure backends porthos, aramis and 2pc (use `cryptflow run` for {0})",
            crate::party::backend_flag(other)
        ),
    }
    crate::aramis::check_fault(crate::BackendName::Porthos, args.inject_fault)?;
    let files = prepare(&args, &THREE_PARTIES)?;
    let mut session = connect(&args, THREE_PARTIES.names.len(), "")?;
    agree_on_program(&mut session, &THREE_PARTIES, &args, &files.public)?;
    let mut session = crate::aramis::semi_honest_host(session, args.inject_fault);
    let started = Instant::now();
    let count = announce_count(&mut session, &THREE_PARTIES, args.id, &files)?;
    let backend = Porthos::new(session, args.protocol.variant()).context("setting up the session")?;
    let name = backend.name().to_string();
    let (metrics, _) = drive(&args, &files, backend, count, started, &name)?;
    finish(&args, &THREE_PARTIES, metrics, "")
}

/// The spelling of `--backend NAME` (`2pc`, not `TwoPc`).
pub fn backend_flag(backend: crate::BackendName) -> String {
    use clap::ValueEnum;
    backend.to_possible_value().map_or_else(|| format!("{backend:?}").to_lowercase(), |v| v.get_name().to_string())
}

/// What a party process holds before it connects.
pub struct PartyFiles {
    pub public: PublicProgram,
    /// The model owner's weights (checked, then read as the inferences need them).
    pub weights: Option<FixedWeightsFile>,
    /// The client's inputs (with how to stack its outputs).
    pub client_inputs: Option<ClientInputs>,
    /// The client's prompt, with `--generate`.
    pub prompt: Option<crate::generate::Prompt>,
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
    if let Some(output) = &args.output {
        check_output_not_input(output, &args.input)?;
    }
    let public = read_program(&args.dir)?;
    let weights = if id == roles.model_owner {
        let owner = args.dir.join(cryptflow_ir::artifact::OWNER_DIR);
        if !owner.is_dir() {
            bail!(
                "party {id} is the model owner and needs the private weights {}, which this copy of the program \
                 does not have: run it on the folder `cryptflow compile` wrote (only the model owner's copy has \
                 model-owner/; the other parties need only program.json)",
                owner.display()
            );
        }
        Some(FixedWeightsFile::open(&args.dir, &public)?)
    } else {
        None
    };
    if let Some(warning) = crate::secure::local_truncation_warning(&public, args.backend, args.truncation.mode()) {
        eprintln!("warning: party {id}: {warning}");
    }
    let program = &public.program;
    if args.generate.is_some() && id != roles.client {
        bail!("--generate is the client's (party {}); the other parties learn the number of steps from it", roles.client);
    }
    let (client_inputs, prompt) = match (args.input.is_empty(), args.generate) {
        (true, _) => (None, None),
        (false, Some(steps)) => (None, Some(crate::generate::read_prompt(&args.input, args.prompt_length, program, steps)?)),
        (false, None) => (Some(crate::inputs::read("--input", &args.input, &InputSpec::of_program(program))?), None),
    };
    Ok(PartyFiles { public, weights, client_inputs, prompt })
}

/// Reads `DIR/program.json`, saying what to do when `dir` is not a compiled program: the model
/// file itself, a folder without a program, a path that does not exist.
pub fn read_program(dir: &Path) -> Result<PublicProgram> {
    let compile = "compile the model first with `cryptflow compile MODEL -o DIR` and pass DIR";
    if dir.is_file() {
        let model = dir.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "onnx" | "pb"));
        if model {
            bail!(
                "{} is a model file, not a compiled program: compile it first with `cryptflow compile {} -o DIR` and pass DIR",
                dir.display(),
                dir.display()
            );
        }
        bail!("{} is a file, not a compiled program (a folder holding program.json): {compile}", dir.display());
    }
    if !dir.exists() {
        bail!("{} does not exist: {compile}", dir.display());
    }
    if !dir.join(cryptflow_ir::artifact::PROGRAM_FILE).is_file() {
        bail!(
            "{} is not a compiled program (it has no {}): {compile}",
            dir.display(),
            cryptflow_ir::artifact::PROGRAM_FILE
        );
    }
    Ok(read_public(dir)?)
}

/// `-o` must not name one of the input files: the output would overwrite the input.
pub fn check_output_not_input(output: &Path, inputs: &[String]) -> Result<()> {
    let same = |candidate: &Path| match (std::fs::canonicalize(candidate), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => candidate == output,
    };
    for spec in inputs {
        // `NAME=FILE` or a plain path (which may itself contain `=`).
        let mut candidates = vec![Path::new(spec.as_str())];
        if let Some((_, file)) = spec.split_once('=') {
            candidates.push(Path::new(file));
        }
        if candidates.iter().any(|c| same(c)) {
            bail!("-o {} is also an --input: the output would overwrite the input; choose another output file", output.display());
        }
    }
    Ok(())
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

/// The parties agree on the compiled program before anything else: each sends the SHA-256
/// digest of its public program ([`PublicProgram::digest`], 32 bytes) to every other party and
/// checks what it gets. Parties running different programs (compiled at another scale, from
/// another model, with other options) would otherwise finish with garbage. The same message
/// carries the party's `--truncation` and `--protocol` (a word each: parties that truncate or
/// compare differently would fail in the middle of the first truncation or comparison). One
/// message per link and direction (48 bytes), counted in the session set-up.
pub fn agree_on_program(session: &mut Session, roles: &Roles, args: &PartyArgs, public: &PublicProgram) -> Result<()> {
    let (n, id) = (roles.names.len(), args.id);
    let mine = public.digest();
    let truncation = args.truncation as u64;
    let mut words: Vec<u64> = mine.chunks(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    words.push(truncation);
    let protocol = args.protocol as u64;
    words.push(protocol);
    for peer in (0..n).filter(|&p| p != id) {
        session.send(peer, words.clone()).context("sending the program digest")?;
    }
    let mut digests = vec![mine; n];
    let mut truncations = vec![truncation; n];
    let mut protocols = vec![protocol; n];
    for peer in (0..n).filter(|&p| p != id) {
        let w = session.recv(peer, words.len()).context("agreeing on the compiled program")?;
        let mut d = [0u8; 32];
        for (k, v) in w[..4].iter().enumerate() {
            d[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
        }
        digests[peer] = d;
        truncations[peer] = w[4];
        protocols[peer] = w[5];
    }
    if let Some(message) = program_mismatch(roles, id, &digests) {
        bail!("{message}");
    }
    if let Some(peer) = (0..n).find(|&p| truncations[p] != truncation) {
        let name = |t: u64| flag_value(crate::TruncationName::value_variants(), |v| *v as u64 == t, "truncation", t);
        bail!(
            "party {peer} ({}) runs --truncation {}, this party ({id}, {}) --truncation {}: every party must pass the same --truncation",
            roles.names[peer],
            name(truncations[peer]),
            roles.names[id],
            name(truncation)
        );
    }
    if let Some(peer) = (0..n).find(|&p| protocols[p] != protocol) {
        let name = |p: u64| flag_value(crate::ProtocolName::value_variants(), |v| *v as u64 == p, "protocol", p);
        bail!(
            "party {peer} ({}) runs --protocol {}, this party ({id}, {}) --protocol {}: every party must pass the same --protocol",
            roles.names[peer],
            name(protocols[peer]),
            roles.names[id],
            name(protocol)
        );
    }
    Ok(())
}

/// The command-line spelling of the variant a peer announced by its code.
fn flag_value<T: clap::ValueEnum>(variants: &[T], is: impl Fn(&T) -> bool, what: &str, code: u64) -> String {
    variants.iter().find(|v| is(v)).and_then(|v| v.to_possible_value()).map_or_else(|| format!("(unknown {what} {code})"), |v| v.get_name().to_string())
}

/// What to say when the parties' program digests differ (`None` when they all agree): names the
/// party that differs from the others, when one does.
pub fn program_mismatch(roles: &Roles, id: usize, digests: &[[u8; 32]]) -> Option<String> {
    if digests.iter().all(|d| *d == digests[0]) {
        return None;
    }
    let short = |d: &[u8; 32]| d[..6].iter().map(|b| format!("{b:02x}")).collect::<String>();
    let name = |p: usize| format!("party {p} ({})", roles.names[p]);
    let fix = "every party must run the same program.json: compile the model once and copy the folder's \
               program.json to every party (the model owner keeps model-owner/)";
    let n = digests.len();
    // The one party whose program differs from all the others (with 3 parties: the odd one out).
    let odd: Vec<usize> = (0..n).filter(|&p| (0..n).all(|q| q == p || digests[q] != digests[p])).collect();
    let others_agree = |p: usize| {
        let rest: Vec<usize> = (0..n).filter(|&q| q != p).collect();
        rest.iter().all(|&q| digests[q] == digests[rest[0]])
    };
    let text = match odd.iter().copied().find(|&p| n > 2 && others_agree(p)) {
        Some(p) if p == id => format!(
            "this party ({}) runs a different compiled program from the others: program digest {}..., theirs {}...",
            name(id),
            short(&digests[id]),
            short(&digests[(id + 1) % n])
        ),
        Some(p) => format!(
            "{} runs a different compiled program: program digest {}..., while this party ({}) and the others have {}...",
            name(p),
            short(&digests[p]),
            name(id),
            short(&digests[id])
        ),
        None if n == 2 => {
            let other = 1 - id;
            format!(
                "{} runs a different compiled program from this party ({}): its program digest is {}..., this party's {}...",
                name(other),
                name(id),
                short(&digests[other]),
                short(&digests[id])
            )
        }
        None => {
            let list: Vec<String> = (0..n).map(|p| format!("{} {}...", name(p), short(&digests[p]))).collect();
            format!("the parties run different compiled programs (program digests: {})", list.join(", "))
        }
    };
    Some(format!("{text}; {fix}"))
}

/// The number of inferences is public: the client announces it to every other party.
pub fn announce_count(session: &mut Session, roles: &Roles, id: usize, files: &PartyFiles) -> Result<usize, cryptflow_net::NetError> {
    if id == roles.client {
        let n = files.prompt.as_ref().map_or_else(|| files.client_inputs.as_ref().map_or(0, |x| x.len()), |p| p.steps);
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
    let bar = args.progress.reporter();
    let next = files.prompt.as_ref().map(|p| p.feeder(program));
    let feed = match (&next, inputs.as_deref()) {
        (Some(next), _) => Some(crate::secure::ClientFeed::Generated { steps: count, next }),
        (None, Some(x)) => Some(crate::secure::ClientFeed::Fixed(x)),
        (None, None) => None,
    };
    let weights = files.weights.as_ref().map(|w| w as &dyn cryptflow_ir::llil::WeightSource);
    let run = crate::secure::run_party(program, backend, args.truncation.mode(), weights, feed, count, crash, bar.as_ref());
    if let Some(bar) = &bar {
        bar.finish();
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
        peak_rss_bytes: crate::peak_rss().into_iter().collect(),
        layers: run.layers,
        ..Default::default()
    };
    if let (Some(path), Some(_)) = (&args.output, &files.prompt) {
        let tokens: Vec<i64> = run.outputs.iter().map(|o| crate::generate::token_of(o)).collect();
        npy::write_i64(path, &[1, tokens.len()], &tokens)?;
        let list: Vec<String> = tokens.iter().map(i64::to_string).collect();
        eprintln!("party {id} (client): generated {}; wrote {}", list.join(" "), path.display());
    }
    if let (Some(path), Some(inputs)) = (&args.output, &files.client_inputs) {
        let outputs: Vec<FloatTensor> = run.outputs.iter().map(|y| decode_output(&y[0], program.outputs[0].encoding)).collect();
        npy::write_output(path, &npy::stack(&outputs, inputs.stacking), program.outputs[0].encoding)?;
        eprintln!("party {id} (client): wrote {}", path.display());
    }
    Ok((metrics, run.backend))
}

/// Prints the party's summary and writes `--metrics`.
pub fn finish(args: &PartyArgs, roles: &Roles, metrics: Metrics, detail: &str) -> Result<Metrics> {
    let metrics = &metrics;
    eprintln!(
        "party {} ({}): {} inference(s) in {:.3} s, sent {} bytes{detail} in {} rounds",
        args.id, roles.names[args.id], metrics.inferences, metrics.seconds, metrics.bytes_total, metrics.rounds
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(metrics.clone())
}
