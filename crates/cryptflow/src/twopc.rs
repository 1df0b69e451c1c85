//! `--backend 2pc`: two-party secure inference between the model owner (party 0) and the client
//! (party 1), with no helper ([`cryptflow_twopc`]). Locally (`cryptflow run`, both parties in
//! this process over in-memory links) or distributed (`cryptflow party --backend 2pc`, TLS 1.3
//! between the two, keys from `cryptflow keygen --parties 2`).

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_backend::Truncation;
use cryptflow_ir::llil::{Program, WeightSource};
use cryptflow_twopc::{TwoPc, CLIENT, MODEL_OWNER};

use crate::party::{self, PartyArgs};
use crate::secure::{error_chain, run_local_parties, run_party, summarize, ClientFeed, Fault, Progress, Roles, SecureRun};

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
pub fn run_local(
    program: &Program,
    weights: &dyn WeightSource,
    inputs: ClientFeed<'_>,
    truncation: Truncation,
    fault: Option<Fault>,
    timeout: std::time::Duration,
    progress: &Progress,
) -> Result<SecureRun> {
    check_fault(fault)?;
    let count = inputs.len();
    let (parties, seconds) = run_local_parties(&TWO_PARTIES, weights, inputs, fault, timeout, progress, error_chain, |_, session, w, x, crash, progress| {
        let backend = TwoPc::new(session).map_err(|e| anyhow!("setting up the session: {e}"))?;
        Ok(run_party(program, backend, truncation, w, x, count, crash, progress)?)
    })?;
    Ok(summarize(&TWO_PARTIES, &parties, seconds))
}

/// `cryptflow party --backend 2pc`: one of the two parties over TLS.
pub fn party(args: PartyArgs) -> Result<crate::run::Metrics> {
    check_fault(args.inject_fault)?;
    let files = party::prepare(&args, &TWO_PARTIES)?;
    let mut session = party::connect(&args, TWO_PARTIES.names.len(), "")?;
    party::agree_on_program(&mut session, &TWO_PARTIES, &args, &files.public)?;
    let started = Instant::now();
    let count = party::announce_count(&mut session, &TWO_PARTIES, args.id, &files)?;
    let backend = TwoPc::new(session).context("setting up the session")?;
    let (metrics, _) = party::drive(&args, &files, backend, count, started, "2pc")?;
    party::finish(&args, &TWO_PARTIES, metrics, "")
}
