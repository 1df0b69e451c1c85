//! `pi*` at the message layer: the attested start-up, then every message signed by the sender's
//! attested execution and checked by the receiver before the protocol sees it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptflow_net::{EmulatedClock, MessageLayer, NetError, Session, Traffic, WireTraffic};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::attest::{hex, Attestor, Execution, Measurement, SessionId, Token};
use crate::envelope::{payload_digest, text_to_words, words_to_text, Envelope, Kind, ENVELOPE_WORDS};
use crate::failure::{Check, Failure};
use crate::host::{Host, Outgoing};
use crate::software::os_random32;

/// How an Aramis session is set up.
pub struct Options {
    /// The protocol configuration that enters the measurement together with the code (the
    /// compiled program's digest, protocol, variant, number of parties...). Every party must
    /// pass the same bytes.
    pub configuration: Vec<u8>,
    /// How to name each party in messages (`party 0 (model owner)`...); `party i` if empty.
    pub names: Vec<String>,
    /// The host carrying this party's messages ([`crate::HonestHost`] unless injecting faults).
    pub host: Box<dyn Host>,
    /// After a link breaks, how long to wait for another party's abort notice explaining it.
    pub explain_grace: Duration,
}

impl Options {
    pub fn new(configuration: impl Into<Vec<u8>>) -> Options {
        Options { configuration: configuration.into(), names: Vec::new(), host: Box::new(crate::HonestHost), explain_grace: Duration::from_secs(2) }
    }
}

/// Counters of the Aramis layer of one party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages this party's execution signed (protocol messages, confirmations, notices).
    pub messages_signed: u64,
    /// Messages whose signature this party verified.
    pub messages_verified: u64,
    /// Output gates passed.
    pub confirm_rounds: u64,
    /// Traffic of the attested start-up (nonces and tokens).
    pub handshake: Traffic,
}

pub(crate) struct Core {
    me: usize,
    n: usize,
    wire: Session,
    host: Box<dyn Host>,
    execution: Box<dyn Execution>,
    session: SessionId,
    measurement: Measurement,
    keys: Vec<Option<VerifyingKey>>,
    names: Vec<String>,
    /// Next counter on the link to / from each party.
    sent: Vec<u64>,
    received: Vec<u64>,
    /// Running digests of the statements sent to / received from each party (the transcript).
    sent_log: Vec<blake3::Hasher>,
    recv_log: Vec<blake3::Hasher>,
    failure: Option<Failure>,
    explain_grace: Duration,
    stats: Stats,
}

fn name_of(names: &[String], i: usize) -> String {
    names.get(i).cloned().unwrap_or_else(|| format!("party {i}"))
}

fn words_of(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks(8).map(|c| {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(a)
    }).collect()
}

fn bytes_of(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Longest token accepted at start-up, in words (hardware quotes are a few KiB).
const MAX_TOKEN_WORDS: u64 = 1 << 16;

/// The attested start-up of Figure 8: fresh session id, Commit, exchange and check of tokens.
/// Returns the protected session (for the protocol) and the handle on its Aramis layer.
pub fn protect(mut wire: Session, attestor: &dyn Attestor, options: Options) -> Result<(Session, Handle), Failure> {
    let me = wire.id();
    let n = wire.parties();
    let names = options.names;
    let peers: Vec<usize> = (0..n).filter(|&j| j != me).collect();
    let fail = |culprit: Option<usize>, check: Check, message: String| Failure { culprit, check, detected_by: me, message };
    let link = |j: usize, e: NetError| fail(Some(j), Check::Link, format!("during the attested start-up: {e}"));
    let local = |e: crate::attest::AttestError| fail(None, Check::Endorsement, format!("{} cannot attest: {e}", name_of(&names, me)));
    let before = wire.traffic();

    // 1. Session id from a fresh OS-random contribution of every party.
    let nonce = os_random32().map_err(local)?;
    for &j in &peers {
        wire.send(j, words_of(&nonce)).map_err(|e| link(j, e))?;
    }
    let mut nonces = vec![[0u8; 32]; n];
    nonces[me] = nonce;
    for &j in &peers {
        let w = wire.recv(j, 4).map_err(|e| link(j, e))?;
        nonces[j].copy_from_slice(&bytes_of(&w));
    }
    let mut h = Sha256::new();
    h.update(b"cryptflow-aramis/session/v1\0");
    h.update((n as u64).to_le_bytes());
    for nonce in &nonces {
        h.update(nonce);
    }
    let session = SessionId(h.finalize()[..16].try_into().unwrap());

    // 2. Commit: measure pi*, fresh key, token; send ours to everyone before checking theirs.
    let measurement = attestor.measure(&options.configuration).map_err(local)?;
    let (execution, token) = attestor.commit(&options.configuration, session, me, n).map_err(local)?;
    let words = token.to_words();
    for &j in &peers {
        wire.send(j, vec![words.len() as u64]).map_err(|e| link(j, e))?;
        wire.send(j, words.clone()).map_err(|e| link(j, e))?;
    }
    let mut keys: Vec<Option<VerifyingKey>> = vec![None; n];
    keys[me] = Some(execution.verifying_key());
    let mut tokens = Vec::new();
    for &j in &peers {
        let len = wire.recv(j, 1).map_err(|e| link(j, e))?[0];
        if len > MAX_TOKEN_WORDS {
            return Err(fail(Some(j), Check::Endorsement, format!("{} sent a token of {len} words", name_of(&names, j))));
        }
        let w = wire.recv(j, len as usize).map_err(|e| link(j, e))?;
        tokens.push((j, w));
    }

    // 3. Check every token: endorsement, binding to this session and party, same measurement
    //    as ours (same code, same configuration), fresh key.
    for (j, w) in tokens {
        let who = name_of(&names, j);
        let token = Token::from_words(&w).ok_or_else(|| fail(Some(j), Check::Endorsement, format!("{who} sent a malformed token")))?;
        let claims = attestor
            .verify(&token)
            .map_err(|e| fail(Some(j), Check::Endorsement, format!("{who} failed the attestation endorsement check: {e}")))?;
        if claims.party as usize != j || claims.parties as usize != n {
            return Err(fail(
                Some(j),
                Check::TokenBinding,
                format!("{who} failed the token binding check: its token is for party {} of {}", claims.party, claims.parties),
            ));
        }
        if claims.session != session {
            return Err(fail(
                Some(j),
                Check::TokenBinding,
                format!("{who} failed the token binding check: its token is for session {}, not this one ({session}): replayed", claims.session),
            ));
        }
        if claims.measurement != measurement {
            return Err(fail(
                Some(j),
                Check::Measurement,
                format!(
                    "{who} failed the measurement check: it runs different code or configuration (measurement {}, ours {})",
                    claims.measurement, measurement
                ),
            ));
        }
        let key = VerifyingKey::from_bytes(&claims.key)
            .ok()
            .filter(|k| !k.is_weak())
            .ok_or_else(|| fail(Some(j), Check::FreshKey, format!("{who} failed the fresh key check: its key is not a usable Ed25519 key")))?;
        if let Some(other) = keys.iter().position(|k| *k == Some(key)) {
            return Err(fail(
                Some(j),
                Check::FreshKey,
                format!("{who} failed the fresh key check: its key is the one of {}", name_of(&names, other)),
            ));
        }
        keys[j] = Some(key);
    }
    let handshake = minus(wire.traffic(), before);
    let timeout = wire.timeout();
    let core = Core {
        me,
        n,
        wire,
        host: options.host,
        execution,
        session,
        measurement,
        keys,
        names,
        sent: vec![0; n],
        received: vec![0; n],
        sent_log: (0..n).map(|_| blake3::Hasher::new()).collect(),
        recv_log: (0..n).map(|_| blake3::Hasher::new()).collect(),
        failure: None,
        explain_grace: options.explain_grace,
        stats: Stats { handshake, ..Stats::default() },
    };
    let handle = Handle(Arc::new(Mutex::new(core)));
    let session = Session::layered(me, n, timeout, Box::new(Layer(handle.clone())));
    Ok((session, handle))
}

fn minus(a: Traffic, b: Traffic) -> Traffic {
    Traffic { bytes_sent: a.bytes_sent - b.bytes_sent, bytes_received: a.bytes_received - b.bytes_received, rounds: a.rounds - b.rounds }
}

/// A received message that passed every check.
struct Received {
    kind: Kind,
    payload: Vec<u64>,
}

impl Core {
    fn name(&self, i: usize) -> String {
        name_of(&self.names, i)
    }

    fn failure(&self, culprit: Option<usize>, check: Check, message: String) -> Failure {
        Failure { culprit, check, detected_by: self.me, message }
    }

    /// Records `f` (the first failure wins), tells every other party, and returns the error the
    /// protocol sees.
    fn abort(&mut self, f: Failure) -> NetError {
        if self.failure.is_none() {
            self.failure = Some(f.clone());
            let notice = {
                let mut w = vec![f.culprit.map_or(u64::MAX, |c| c as u64), f.check.code()];
                w.extend(text_to_words(&f.message));
                w
            };
            for j in 0..self.n {
                if j != self.me {
                    // Best effort: the link may be the one that broke.
                    let _ = self.seal_and_send(j, Kind::Abort, notice.clone());
                }
            }
        }
        self.error()
    }

    /// The recorded failure as the error the protocol sees.
    fn error(&self) -> NetError {
        let f = self.failure.as_ref().expect("a failure is recorded");
        NetError::Protocol { peer: f.culprit.unwrap_or(f.detected_by), reason: f.to_string() }
    }

    fn seal_and_send(&mut self, to: usize, kind: Kind, payload: Vec<u64>) -> Result<(), NetError> {
        let mut env = Envelope {
            kind,
            from: self.me as u16,
            to: to as u16,
            counter: self.sent[to],
            len: payload.len() as u64,
            session: self.session,
            signature: [0; 64],
        };
        // Compute(w) of F_attest: the statement is the committed code's output, signed.
        let statement = env.statement(&payload_digest(&payload));
        env.signature = self.execution.sign_output(&statement).to_bytes();
        self.sent[to] += 1;
        self.sent_log[to].update(&statement);
        self.stats.messages_signed += 1;
        self.host.forward(&mut self.wire, to, Outgoing { envelope: Some(env.encode()), payload })
    }

    /// Receives and checks the next message from `from`. Any failure aborts the session.
    fn receive(&mut self, from: usize) -> Result<Received, NetError> {
        if self.failure.is_some() {
            return Err(self.error());
        }
        if let Err(e) = self.host.before_recv(&mut self.wire) {
            return Err(self.link_failure(from, e));
        }
        match self.receive_checked(from) {
            Ok(r) => Ok(r),
            Err(Err(e)) => Err(self.link_failure(from, e)),
            Err(Ok(f)) if f.check == Check::Link && f.detected_by != self.me => {
                // `from` only knows that a link broke; another party may know why.
                let better = self.look_for_notice(None, Some(from)).filter(|g| g.check != Check::Link);
                Err(self.abort(better.unwrap_or(f)))
            }
            Err(Ok(f)) => Err(self.abort(f)),
        }
    }

    /// `Err(Ok(failure))` for a failed check, `Err(Err(e))` for a broken link.
    fn receive_checked(&mut self, from: usize) -> Result<Received, Result<Failure, NetError>> {
        let who = self.name(from);
        let words = match self.wire.recv(from, ENVELOPE_WORDS) {
            Ok(w) => w,
            Err(NetError::WrongLength { got, .. }) => {
                return Err(Ok(self.failure(
                    Some(from),
                    Check::Envelope,
                    format!("{who} failed the envelope check: a {got}-word frame arrived where an envelope was expected (an unsigned message)"),
                )))
            }
            Err(e) => return Err(Err(e)),
        };
        let env = Envelope::decode(&words)
            .map_err(|e| Ok(self.failure(Some(from), Check::Envelope, format!("{who} failed the envelope check: {e}"))))?;
        if env.from as usize != from || env.to as usize != self.me {
            return Err(Ok(self.failure(
                Some(from),
                Check::Addressing,
                format!("{who} failed the sender/receiver check: a message from party {} to party {} arrived on the link from {who}", env.from, env.to),
            )));
        }
        if env.session != self.session {
            return Err(Ok(self.failure(
                Some(from),
                Check::SessionId,
                format!("{who} failed the session id check: message of session {} in session {}", env.session, self.session),
            )));
        }
        let payload = match self.wire.recv(from, env.len as usize) {
            Ok(p) => p,
            Err(NetError::WrongLength { expected, got, .. }) => {
                return Err(Ok(self.failure(
                    Some(from),
                    Check::Envelope,
                    format!("{who} failed the envelope check: the envelope announced {expected} words, {got} arrived"),
                )))
            }
            Err(e) => return Err(Err(e)),
        };
        let statement = env.statement(&payload_digest(&payload));
        let key = self.keys[from].expect("every peer has an attested key");
        if key.verify_strict(&statement, &Signature::from_bytes(&env.signature)).is_err() {
            return Err(Ok(self.failure(
                Some(from),
                Check::Signature,
                format!(
                    "{who} failed the signature check: message {} ({} words) is not signed by {who}'s attested key (altered or forged by its host)",
                    env.counter, env.len
                ),
            )));
        }
        self.stats.messages_verified += 1;
        let expected = self.received[from];
        if env.kind == Kind::Abort {
            // Final whatever its position: the sender's attested code stopped.
            let text = words_to_text(payload.get(2..).unwrap_or(&[])).unwrap_or_default();
            let culprit = payload.first().copied().filter(|&c| (c as usize) < self.n).map(|c| c as usize);
            let check = Check::from_code(payload.get(1).copied().unwrap_or(u64::MAX));
            return Err(Ok(Failure { culprit, check, detected_by: from, message: format!("{who} aborted: {text}") }));
        }
        if env.counter != expected {
            let what = if env.counter < expected {
                format!("message {} was already received (replayed)", env.counter)
            } else {
                format!(
                    "message {} arrived where message {expected} was expected (message {expected} was dropped or reordered)",
                    env.counter
                )
            };
            return Err(Ok(self.failure(Some(from), Check::Counter, format!("{who} failed the counter check: {what}"))));
        }
        self.received[from] += 1;
        self.recv_log[from].update(&statement);
        Ok(Received { kind: env.kind, payload })
    }

    /// A link to `from` broke: look for an abort notice explaining why (a party that caught a
    /// cheater tells everyone, and its notice may be waiting on this very link if a send
    /// failed), then abort.
    fn link_failure(&mut self, from: usize, e: NetError) -> NetError {
        if self.failure.is_some() {
            return self.error();
        }
        // A link that timed out has nothing more to say; one that closed may have queued a notice.
        let first = matches!(e, NetError::Disconnected { .. }).then_some(from);
        let f = self.look_for_notice(first, Some(from)).unwrap_or_else(|| {
            let who = self.name(from);
            self.failure(Some(from), Check::Link, format!("the link to {who} failed before the computation ended: {e}"))
        });
        self.abort(f)
    }

    /// Reads what the other parties sent (`first` first, then everyone but `skip`) for at most
    /// the explanation grace period, looking for an abort notice. A notice that names a
    /// failed check is preferred to one that only reports a broken link.
    fn look_for_notice(&mut self, first: Option<usize>, skip: Option<usize>) -> Option<Failure> {
        let deadline = Instant::now() + self.explain_grace;
        let timeout = self.wire.timeout();
        let me = self.me;
        let order: Vec<usize> = first.into_iter().chain((0..self.n).filter(|&j| j != me && Some(j) != skip)).collect();
        let mut found: Option<Failure> = None;
        for j in order {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.wire.set_timeout(left.max(Duration::from_millis(1)));
                match self.receive_checked(j) {
                    Ok(_) => continue, // a message the protocol would have read later
                    Err(Ok(f)) => {
                        if found.as_ref().is_none_or(|g| g.check == Check::Link) {
                            found = Some(f);
                        }
                        break;
                    }
                    Err(Err(_)) => break,
                }
            }
            if found.as_ref().is_some_and(|f| f.check != Check::Link) {
                break;
            }
        }
        self.wire.set_timeout(timeout);
        found
    }

    fn send_data(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError> {
        if self.failure.is_some() {
            return Err(self.error());
        }
        match self.seal_and_send(to, Kind::Data, data) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.link_failure(to, e)),
        }
    }

    fn recv_data(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        let r = self.receive(from)?;
        let who = self.name(from);
        if r.kind != Kind::Data {
            let f = self.failure(Some(from), Check::Protocol, format!("{who} sent a {:?} message where the protocol expects data", r.kind));
            return Err(self.abort(f));
        }
        if r.payload.len() != len {
            let f = self.failure(
                Some(from),
                Check::Protocol,
                format!("{who} sent {} elements where the protocol expects {len}", r.payload.len()),
            );
            return Err(self.abort(f));
        }
        Ok(r.payload)
    }

    /// The output gate: every party tells every other how many messages it received from it
    /// and the digest of their statements, and checks the others' accounts against what it
    /// sent. Passes only if no party has aborted and all transcripts agree.
    fn confirm(&mut self) -> Result<(), Failure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let snapshot: Vec<(u64, [u8; 32])> = (0..self.n).map(|j| (self.sent[j], *self.sent_log[j].finalize().as_bytes())).collect();
        let me = self.me;
        for j in (0..self.n).filter(|&j| j != me) {
            let mut w = vec![self.received[j]];
            w.extend(words_of(self.recv_log[j].finalize().as_bytes()));
            if let Err(e) = self.seal_and_send(j, Kind::Confirm, w) {
                self.link_failure(j, e);
                return Err(self.failure.clone().unwrap());
            }
        }
        for j in (0..self.n).filter(|&j| j != me) {
            let who = self.name(j);
            let r = match self.receive(j) {
                Ok(r) => r,
                Err(_) => return Err(self.failure.clone().unwrap()),
            };
            if r.kind != Kind::Confirm || r.payload.len() != 5 {
                let f = self.failure(Some(j), Check::Protocol, format!("{who} sent a {:?} message at the output gate", r.kind));
                self.abort(f);
                return Err(self.failure.clone().unwrap());
            }
            let (count, digest) = (r.payload[0], bytes_of(&r.payload[1..]));
            if count != snapshot[j].0 || digest[..] != snapshot[j].1[..] {
                let f = self.failure(
                    Some(j),
                    Check::Transcript,
                    format!(
                        "{who} failed the transcript check: it received {count} messages from {}, which sent {} (digests {} and {})",
                        self.name(self.me),
                        snapshot[j].0,
                        &hex(&digest)[..16],
                        &hex(&snapshot[j].1)[..16]
                    ),
                );
                self.abort(f);
                return Err(self.failure.clone().unwrap());
            }
        }
        self.stats.confirm_rounds += 1;
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.host.close(&mut self.wire);
    }
}

/// The handle on one party's Aramis layer: the output gate, the abort record, counters.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Core>>);

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the output gate (see the crate documentation); every party must call it at the same
    /// point of the protocol.
    pub fn confirm(&self) -> Result<(), Failure> {
        self.lock().confirm()
    }

    /// Why the session aborted, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure.clone()
    }

    /// Everything this party's links carried: protocol payloads, envelopes, the start-up, the
    /// output gates and notices (8 bytes per word, as [`Session::traffic`] counts).
    pub fn wire_level_traffic(&self) -> Traffic {
        self.lock().wire.traffic()
    }

    /// Bytes on the sockets (networked sessions).
    pub fn socket_traffic(&self) -> WireTraffic {
        self.lock().wire.wire_traffic()
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    pub fn measurement(&self) -> Measurement {
        self.lock().measurement
    }

    pub fn session_id(&self) -> SessionId {
        self.lock().session
    }

    pub fn party(&self) -> usize {
        self.lock().me
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        f.debug_struct("Handle").field("party", &c.me).field("session", &c.session).finish_non_exhaustive()
    }
}

/// The [`MessageLayer`] the protected session runs its messages through.
struct Layer(Handle);

impl MessageLayer for Layer {
    fn send(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError> {
        self.0.lock().send_data(to, data)
    }

    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        self.0.lock().recv_data(from, len)
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.0.lock().wire.set_timeout(timeout);
    }

    fn wire_traffic(&self) -> WireTraffic {
        self.0.socket_traffic()
    }

    fn emulated_clock(&self) -> Option<EmulatedClock> {
        self.0.lock().wire.emulated_clock()
    }
}
