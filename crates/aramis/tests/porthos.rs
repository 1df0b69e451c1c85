//! Aramis around Porthos, all parties in this process: an honest run gives Porthos' result with
//! Porthos' own traffic plus a small overhead; every kind of cheating host and every bad token
//! is caught, by every honest party, naming the cheater and the check, before any output.

use std::time::{Duration, Instant};

use cryptflow_aramis::{
    protect, Aramis, Attestor, Cheat, CheatingHost, Claims, Execution, HostLayer, Measurement, Options, SessionId, Token,
};
use cryptflow_aramis::attest::AttestError;
use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_backend::{Backend, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use ed25519_dalek::SigningKey;

const N: usize = 16;

fn a() -> RingTensor {
    RingTensor::new(vec![N, N], (0..N * N).map(|i| ((i % 7) as i64 - 3) as u64).collect()).unwrap()
}

fn b() -> RingTensor {
    RingTensor::new(vec![N, N], (0..N * N).map(|i| ((i % 5) as i64 - 2) as u64).collect()).unwrap()
}

/// relu((A B) B) in the clear.
fn expected() -> Vec<u64> {
    let mul = |x: &[u64], y: &[u64]| {
        let mut z = vec![0u64; N * N];
        for i in 0..N {
            for k in 0..N {
                for j in 0..N {
                    z[i * N + j] = z[i * N + j].wrapping_add(x[i * N + k].wrapping_mul(y[k * N + j]));
                }
            }
        }
        z
    };
    let z = mul(&mul(a().data(), b().data()), b().data());
    z.into_iter().map(|v| if (v as i64) < 0 { 0 } else { v }).collect()
}

/// The model owner shares A and B, the parties compute relu((A B) B) (two products in a row,
/// so that the helper sends two consecutive messages to the client), the client gets it; twice,
/// like two inferences (the first output is returned).
fn program<B: Backend>(backend: &mut B) -> cryptflow_backend::Result<Option<RingTensor>> {
    let owner = backend.party_id() == 0;
    let (av, bv) = (a(), b());
    let mut y = None;
    for _ in 0..2 {
        let a = backend.share(Owner::ModelOwner, &[N, N], owner.then_some(&av))?;
        let b = backend.share(Owner::ModelOwner, &[N, N], owner.then_some(&bv))?;
        let ab = backend.matmul(&a, &b)?;
        let abb = backend.matmul(&ab, &b)?;
        let r = backend.relu(&abb)?;
        let out = backend.reveal(&r, Owner::Client)?;
        y = y.or(out); // the first inference's output
    }
    Ok(y)
}

struct PartyRun {
    output: Result<Option<Vec<u64>>, String>,
    payload_bytes: u64,
    total_bytes: u64,
    signed: u64,
}

type AttestorFor = dyn Fn(usize) -> Box<dyn Attestor> + Sync;

fn run(attestor: &AttestorFor, cheat: Option<(usize, Cheat)>) -> Vec<PartyRun> {
    run_with(attestor, cheat, false)
}

fn run_with(attestor: &AttestorFor, cheat: Option<(usize, Cheat)>, background: bool) -> Vec<PartyRun> {
    let sessions = Session::local(3);
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(id, session)| {
                s.spawn(move || {
                    let mut options = Options::new(b"test configuration".to_vec());
                    options.background_verification = background;
                    options.names = vec!["party 0 (model owner)".into(), "party 1 (client)".into(), "party 2 (helper)".into()];
                    if let Some((p, c)) = cheat {
                        if p == id {
                            options.host = Box::new(CheatingHost::new(id, 3, c));
                        }
                    }
                    let attestor = attestor(id);
                    let (session, handle) = match protect(session, attestor.as_ref(), options) {
                        Ok(x) => x,
                        Err(f) => return PartyRun { output: Err(f.to_string()), payload_bytes: 0, total_bytes: 0, signed: 0 },
                    };
                    let porthos = match Porthos::new(session, ProtocolVariant::Porthos) {
                        Ok(p) => p,
                        Err(e) => {
                            let e = handle.failure().map_or_else(|| e.to_string(), |f| f.to_string());
                            return PartyRun { output: Err(e), payload_bytes: 0, total_bytes: 0, signed: 0 };
                        }
                    };
                    let mut backend = Aramis::new(porthos, handle);
                    let output = program(&mut backend).map(|y| y.map(|t| t.data().to_vec())).map_err(|e| e.to_string());
                    PartyRun {
                        output,
                        payload_bytes: backend.payload_traffic().bytes_sent,
                        total_bytes: backend.traffic().bytes_sent,
                        signed: backend.handle().stats().signatures,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn shared_authority() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn honest(_: usize) -> Box<dyn Attestor> {
    Box::new(SoftwareAttestor::new(shared_authority(), [7; 32]))
}

fn plain_porthos() -> (Vec<u64>, Vec<u64>) {
    let sessions = Session::local(3);
    let runs: Vec<(Option<Vec<u64>>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    let mut p = Porthos::new(session, ProtocolVariant::Porthos).unwrap();
                    let y = program(&mut p).unwrap().map(|t| t.data().to_vec());
                    (y, p.traffic().bytes_sent)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (runs[1].0.clone().unwrap(), runs.iter().map(|r| r.1).collect())
}

#[test]
fn an_honest_run_matches_porthos_with_the_same_protocol_traffic() {
    let (plain, plain_bytes) = plain_porthos();
    assert_eq!(plain, expected());
    for background in [false, true] {
        let runs = run_with(&honest, None, background);
        assert_eq!(runs[1].output.as_ref().unwrap().as_ref().unwrap(), &expected(), "background {background}");
    }
    let runs = run(&honest, None);
    for r in &runs {
        assert!(r.output.is_ok(), "{:?}", r.output);
    }
    assert_eq!(runs[1].output.as_ref().unwrap().as_ref().unwrap(), &expected());
    assert!(runs[0].output.as_ref().unwrap().is_none() && runs[2].output.as_ref().unwrap().is_none());
    for (i, r) in runs.iter().enumerate() {
        // The protocol sends exactly what it sends without Aramis...
        assert_eq!(r.payload_bytes, plain_bytes[i], "party {i}");
        // ...and Aramis adds an envelope of at least 112 bytes per flight and receiver, the
        // start-up (nonces, tokens) and the output gate.
        assert!(r.signed > 0);
        let overhead = r.total_bytes - r.payload_bytes;
        assert!(overhead >= 112 * r.signed, "party {i}: overhead {overhead} for {} flights", r.signed);
        assert!(overhead < 2 * (112 + 40) * r.signed + 2 * (32 + 8 + 8 * 20), "party {i}: overhead {overhead}");
    }
}

/// Every honest party fails, naming the cheater and the check; nobody gets an output.
fn assert_caught(runs: &[PartyRun], cheater: usize, check: &str) {
    for (i, r) in runs.iter().enumerate() {
        let err = match &r.output {
            Ok(y) => panic!("party {i} succeeded ({}) although party {cheater} cheated", if y.is_some() { "with an output" } else { "no output" }),
            Err(e) => e,
        };
        if i != cheater {
            assert!(err.contains(&format!("party {cheater}")), "party {i} does not name party {cheater}: {err}");
            assert!(err.contains(check), "party {i} does not name the {check} check: {err}");
        }
    }
}

#[test]
fn every_cheating_host_is_caught_by_every_honest_party() {
    let cases = [
        (Cheat::Tamper, 0, "signature check"),
        (Cheat::Tamper, 1, "signature check"),
        (Cheat::Tamper, 2, "signature check"),
        (Cheat::Forge, 0, "signature check"),
        (Cheat::Forge, 2, "signature check"),
        (Cheat::Replay, 0, "counter check"),
        (Cheat::Replay, 2, "counter check"),
        (Cheat::Reorder, 0, "signature check"),
        (Cheat::Reorder, 2, "signature check"),
        (Cheat::Drop, 0, "signature check"),
        (Cheat::Drop, 2, "signature check"),
    ];
    for background in [false, true] {
        for (cheat, party, check) in cases {
            let started = Instant::now();
            let runs = run_with(&honest, Some((party, cheat)), background);
            assert!(started.elapsed() < Duration::from_secs(4), "{cheat:?} by {party}: {:?}", started.elapsed());
            assert_caught(&runs, party, check);
        }
    }
}

#[test]
fn a_party_running_other_code_is_caught_at_start_up() {
    let attestor = |id: usize| -> Box<dyn Attestor> {
        let a = SoftwareAttestor::new(shared_authority(), [7; 32]);
        Box::new(if id == 1 { a.simulating_different_code() } else { a })
    };
    let runs = run(&attestor, None);
    assert_caught(&runs, 1, "measurement check");
}

#[test]
fn a_token_endorsed_by_another_authority_is_refused() {
    let attestor = |id: usize| -> Box<dyn Attestor> {
        if id == 2 {
            // Right code, but its own "authority": it can verify nobody and nobody verifies it.
            Box::new(SoftwareAttestor::new(SigningKey::from_bytes(&[1; 32]), [7; 32]))
        } else {
            honest(id)
        }
    };
    let runs = run(&attestor, None);
    for i in [0, 1] {
        let err = runs[i].output.as_ref().unwrap_err();
        assert!(err.contains("party 2") && err.contains("attestation endorsement"), "{err}");
    }
}

/// An attestor that replays one token (one session, one key) in every session.
struct Replaying {
    inner: SoftwareAttestor,
    first: std::sync::Mutex<Option<Token>>,
    same_key_as_party: Option<usize>,
}

struct NoKey;

impl Execution for NoKey {
    fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        SigningKey::from_bytes(&[9; 32]).verifying_key()
    }
    fn sign_output(&mut self, y: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer;
        SigningKey::from_bytes(&[9; 32]).sign(y)
    }
}

impl Attestor for Replaying {
    fn describe(&self) -> String {
        "replaying".into()
    }
    fn measure(&self, c: &[u8]) -> Result<Measurement, AttestError> {
        self.inner.measure(c)
    }
    fn commit(&self, c: &[u8], s: SessionId, party: usize, parties: usize) -> Result<(Box<dyn Execution>, Token), AttestError> {
        if self.same_key_as_party.is_some() {
            // A token for this session, endorsed, but for a key another party uses too.
            use ed25519_dalek::Signer;
            let claims = Claims { measurement: self.measure(c)?, key: NoKey.verifying_key().to_bytes(), session: s, party: party as u32, parties: parties as u32 };
            let evidence = shared_authority().sign(&claims.to_bytes()).to_bytes().to_vec();
            return Ok((Box::new(NoKey), Token { claims, evidence }));
        }
        let mut first = self.first.lock().unwrap();
        let (exec, token) = self.inner.commit(c, s, party, parties)?;
        let t = first.get_or_insert(token).clone();
        Ok((exec, t))
    }
    fn verify(&self, t: &Token) -> Result<Claims, AttestError> {
        self.inner.verify(t)
    }
}

#[test]
fn a_token_from_an_earlier_session_is_refused() {
    let replaying = Replaying { inner: SoftwareAttestor::new(shared_authority(), [7; 32]), first: Default::default(), same_key_as_party: None };
    // First session: fine (and the token is recorded).
    let _ = replaying.commit(b"test configuration", SessionId([1; 16]), 0, 3).unwrap();
    let replaying = std::sync::Arc::new(replaying);
    let r = replaying.clone();
    let attestor = move |id: usize| -> Box<dyn Attestor> {
        if id == 0 {
            Box::new(Forward(r.clone()))
        } else {
            honest(id)
        }
    };
    let runs = run(&attestor, None);
    for i in [1, 2] {
        let err = runs[i].output.as_ref().unwrap_err();
        assert!(err.contains("party 0") && err.contains("token binding"), "{err}");
    }
}

#[test]
fn a_key_that_is_not_fresh_is_refused() {
    // Parties 0 and 2 present tokens (properly endorsed here, since the host holds the
    // software authority key) for one and the same key.
    let attestor = |id: usize| -> Box<dyn Attestor> {
        if id == 1 {
            honest(id)
        } else {
            Box::new(Replaying { inner: SoftwareAttestor::new(shared_authority(), [7; 32]), first: Default::default(), same_key_as_party: Some(0) })
        }
    };
    let runs = run(&attestor, None);
    let err = runs[1].output.as_ref().unwrap_err();
    assert!(err.contains("fresh key"), "{err}");
}

struct Forward(std::sync::Arc<Replaying>);

impl Attestor for Forward {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn measure(&self, c: &[u8]) -> Result<Measurement, AttestError> {
        self.0.measure(c)
    }
    fn commit(&self, c: &[u8], s: SessionId, p: usize, n: usize) -> Result<(Box<dyn Execution>, Token), AttestError> {
        self.0.commit(c, s, p, n)
    }
    fn verify(&self, t: &Token) -> Result<Claims, AttestError> {
        self.0.verify(t)
    }
}

/// Without Aramis the same tampering goes unnoticed: Porthos "succeeds" with a wrong result.
#[test]
fn porthos_alone_swallows_a_tampered_message() {
    let sessions = Session::local(3);
    let outputs: Vec<Result<Option<Vec<u64>>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(id, session)| {
                s.spawn(move || {
                    let session = if id == 0 { HostLayer::session(session, Box::new(CheatingHost::new(0, 3, Cheat::Tamper))) } else { session };
                    let mut p = Porthos::new(session, ProtocolVariant::Porthos).map_err(|e| e.to_string())?;
                    program(&mut p).map(|y| y.map(|t| t.data().to_vec())).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outputs {
        assert!(o.is_ok(), "{o:?}");
    }
    let y = outputs[1].as_ref().unwrap().as_ref().unwrap();
    assert_ne!(y, &expected(), "the tampered run should give a wrong result");
}


