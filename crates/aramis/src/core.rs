//! `pi*` at the message layer: the attested start-up, then every message signed by the sender's
//! attested execution and checked by the receiver before the protocol sees it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptflow_net::{EmulatedClock, MessageLayer, NetError, Session, Traffic, WireTraffic};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::attest::{hex, Attestor, Execution, Measurement, SessionId, Token};
use crate::envelope::{part_digest, payload_digest, statement, text_to_words, words_to_text, Envelope, Kind, MAX_FLIGHT_MESSAGES};
use crate::failure::{Check, Failure};
use crate::host::{Host, Outgoing};
use crate::software::os_random32;
use crate::verify::{Job, Verifier};

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
    /// Verify signatures on a background thread, in batches, waiting for them before anything
    /// leaves this party; `false` (the default) verifies each flight on receipt. The background
    /// thread pays off when a core is idle; on a busy machine the hand-offs cost more.
    pub background_verification: bool,
}

impl Options {
    pub fn new(configuration: impl Into<Vec<u8>>) -> Options {
        Options {
            configuration: configuration.into(),
            names: Vec::new(),
            host: Box::new(crate::HonestHost),
            explain_grace: Duration::from_secs(2),
            background_verification: false,
        }
    }
}

/// Counters of the Aramis layer of one party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Protocol messages sent and received (confirmations and notices not included).
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Flights this party's execution signed (one signature each).
    pub signatures: u64,
    /// Flight signatures this party verified.
    pub verifications: u64,
    /// Batches the background verifier ran (0 when verifying inline).
    pub verify_batches: u64,
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
    /// Running digests of the part digests sent to / received from each party (the transcript).
    sent_log: Vec<blake3::Hasher>,
    recv_log: Vec<blake3::Hasher>,
    /// The flight being assembled: (receiver, payload, payload digest), in send order.
    pending: Vec<(usize, Vec<u64>, [u8; 32])>,
    /// Received data messages not yet taken by the protocol, per sender.
    inbox: Vec<VecDeque<Vec<u64>>>,
    failure: Option<Failure>,
    explain_grace: Duration,
    /// While collecting notices: the time-out for the frames after a flight's first.
    next_frame_timeout: Option<Duration>,
    stats: Stats,
    verifier: Option<Verifier>,
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

/// A flight leaves as soon as it holds this many words (1 MiB), without waiting for the next
/// receive: over a real link, a streamed message then overlaps its sender's computation.
const FLUSH_WORDS: usize = 1 << 17;

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
        pending: Vec::new(),
        inbox: (0..n).map(|_| VecDeque::new()).collect(),
        failure: None,
        explain_grace: options.explain_grace,
        next_frame_timeout: None,
        stats: Stats { handshake, ..Stats::default() },
        verifier: if options.background_verification { Verifier::start() } else { None },
    };
    let handle = Handle(Arc::new(Mutex::new(core)));
    let session = Session::layered(me, n, timeout, Box::new(Layer(handle.clone())));
    Ok((session, handle))
}

fn minus(a: Traffic, b: Traffic) -> Traffic {
    Traffic { bytes_sent: a.bytes_sent - b.bytes_sent, bytes_received: a.bytes_received - b.bytes_received, rounds: a.rounds - b.rounds }
}

/// A received flight (this party's part of it) that passed every check made so far.
struct Flight {
    kind: Kind,
    payloads: Vec<Vec<u64>>,
}

/// `Err(Ok(failure))` for a failed check, `Err(Err(e))` for a broken link.
type Checked<T> = Result<T, Result<Failure, NetError>>;

impl Core {
    fn name(&self, i: usize) -> String {
        name_of(&self.names, i)
    }

    fn failure(&self, culprit: Option<usize>, check: Check, message: String) -> Failure {
        Failure { culprit, check, detected_by: self.me, message }
    }

    /// Records `f` (the first failure wins), tells every other party with one signed notice
    /// flight, and returns the error the protocol sees. Unsent messages are discarded.
    fn abort(&mut self, f: Failure) -> NetError {
        if self.failure.is_none() {
            self.failure = Some(f);
            self.pending.clear();
            self.notify();
        }
        self.error()
    }

    /// Sends the recorded failure to every other party as a signed notice: culprit, check, how
    /// many messages this party's code sent on each link (so that a receiver can tell whether
    /// any were withheld on the way), explanation.
    fn notify(&mut self) {
        let f = self.failure.clone().expect("a failure is recorded");
        let mut notice = vec![f.culprit.map_or(u64::MAX, |c| c as u64), f.check.code()];
        notice.extend_from_slice(&self.sent);
        notice.extend(text_to_words(&f.message));
        let d = payload_digest(&notice);
        let items = (0..self.n).filter(|&j| j != self.me).map(|j| (j, notice.clone(), d)).collect();
        // Best effort: a link may be the one that broke.
        let _ = self.seal_flight(Kind::Abort, items);
    }

    /// Replaces a report of silence by a better account and tells the others (once).
    fn refine(&mut self, better: Failure) {
        let was_silence = self.failure.as_ref().is_some_and(|f| f.check == Check::Link);
        let news = better.check != Check::Link && self.failure.as_ref() != Some(&better);
        self.failure = Some(better);
        if was_silence && news {
            self.notify();
        }
    }

    /// The recorded failure as the error the protocol sees.
    fn error(&self) -> NetError {
        let f = self.failure.as_ref().expect("a failure is recorded");
        NetError::Protocol { peer: f.culprit.unwrap_or(f.detected_by), reason: f.to_string() }
    }

    /// Signs a flight (Compute of F_attest: the statement is the committed code's output) and
    /// hands each receiver's envelope and payloads to the host. Tries every receiver; the first
    /// broken link is returned.
    fn seal_flight(&mut self, kind: Kind, items: Vec<(usize, Vec<u64>, [u8; 32])>) -> Result<(), (usize, NetError)> {
        let mut by_peer: Vec<Vec<(Vec<u64>, [u8; 32])>> = (0..self.n).map(|_| Vec::new()).collect();
        for (to, payload, digest) in items {
            by_peer[to].push((payload, digest));
        }
        let mut mask = 0u32;
        let mut parts = Vec::new();
        for (k, msgs) in by_peer.iter().enumerate() {
            if !msgs.is_empty() {
                mask |= 1 << k;
                let summary: Vec<(u64, [u8; 32])> = msgs.iter().map(|(p, d)| (p.len() as u64, *d)).collect();
                parts.push((k, part_digest(k, self.sent[k], &summary)));
            }
        }
        if mask == 0 {
            return Ok(());
        }
        let digests: Vec<[u8; 32]> = parts.iter().map(|p| p.1).collect();
        let statement = statement(self.me as u16, kind, self.n, &self.session, mask, &digests);
        let signature = self.execution.sign_output(&statement).to_bytes();
        self.stats.signatures += 1;
        let mut first_err = None;
        for (k, msgs) in by_peer.into_iter().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            let part = parts.iter().find(|p| p.0 == k).unwrap().1;
            let env = Envelope {
                kind,
                from: self.me as u16,
                to: k as u16,
                first: self.sent[k],
                lens: msgs.iter().map(|(p, _)| p.len() as u64).collect(),
                mask,
                session: self.session,
                others: parts.iter().filter(|p| p.0 != k).map(|p| p.1).collect(),
                signature,
            };
            self.sent[k] += msgs.len() as u64;
            self.sent_log[k].update(&part);
            let out = Outgoing { envelope: Some(env.encode()), payloads: msgs.into_iter().map(|(p, _)| p).collect() };
            if let Err(e) = self.host.forward(&mut self.wire, k, out) {
                first_err.get_or_insert((k, e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sends the flight assembled so far, once everything received so far is verified.
    fn flush(&mut self) -> Result<(), NetError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.sync()?;
        let items = std::mem::take(&mut self.pending);
        match self.seal_flight(Kind::Data, items) {
            Ok(()) => Ok(()),
            Err((k, e)) => Err(self.link_failure(k, e)),
        }
    }

    fn bad_signature(&self, from: usize, counter: u64, messages: u64) -> Failure {
        let who = self.name(from);
        self.failure(
            Some(from),
            Check::Signature,
            format!(
                "{who} failed the signature check: what arrived as its message(s) {counter}..{} is not what its attested code signed (altered, reordered, dropped or forged by its host)",
                counter + messages
            ),
        )
    }

    /// Waits until every signature received so far is verified; aborts on a bad one.
    fn sync(&mut self) -> Result<(), NetError> {
        if self.failure.is_some() {
            return Err(self.error());
        }
        let rejected = match &self.verifier {
            Some(v) => v.wait_all().err(),
            None => None,
        };
        match rejected {
            Some(r) => {
                let f = self.bad_signature(r.from, r.counter, r.len);
                Err(self.abort(f))
            }
            None => Ok(()),
        }
    }

    /// Receives and checks this party's part of the next flight from `from`. Any failure aborts
    /// the session. With `defer`, the signature of a data flight goes to the background
    /// verifier (if any).
    fn receive(&mut self, from: usize, defer: bool) -> Result<Flight, NetError> {
        if self.failure.is_some() {
            return Err(self.error());
        }
        if let Err(e) = self.host.before_recv(&mut self.wire) {
            return Err(self.link_failure(from, e));
        }
        match self.receive_checked(from, defer) {
            Ok(f) => Ok(f),
            Err(Err(e)) => Err(self.link_failure(from, e)),
            Err(Ok(f)) if f.check == Check::Link && f.detected_by != self.me => Err(self.silence_notice(from, f)),
            Err(Ok(f)) => Err(self.abort(f)),
        }
    }

    fn receive_checked(&mut self, from: usize, defer: bool) -> Checked<Flight> {
        let who = self.name(from);
        let words = self.wire.recv_any(from).map_err(Err)?;
        if let Some(t) = self.next_frame_timeout {
            self.wire.set_timeout(t);
        }
        let (env, inline) = Envelope::decode_frame(&words, self.n)
            .map_err(|e| Ok(self.failure(Some(from), Check::Envelope, format!("{who} failed the envelope check: {e}"))))?;
        let mut inline = inline.map(|words| {
            let mut at = 0;
            env.lens.iter().map(move |&len| {
                let p = words[at..at + len as usize].to_vec();
                at += len as usize;
                p
            })
        });
        // A sender flushes its flight once it holds FLUSH_WORDS, so all of this receiver's
        // messages but the last total less: refused before any of them is received (what is
        // buffered before the signature check is that plus one message).
        let but_last: u64 = env.lens[..env.lens.len() - 1].iter().sum();
        if but_last >= FLUSH_WORDS as u64 {
            return Err(Ok(self.failure(
                Some(from),
                Check::Envelope,
                format!("{who} failed the envelope check: its flight announces {but_last} words before its last message (a flight leaves once it holds {FLUSH_WORDS})"),
            )));
        }
        if env.from as usize != from || env.to as usize != self.me {
            return Err(Ok(self.failure(
                Some(from),
                Check::Addressing,
                format!("{who} failed the sender/receiver check: a flight from party {} to party {} arrived on the link from {who}", env.from, env.to),
            )));
        }
        if env.session != self.session {
            return Err(Ok(self.failure(
                Some(from),
                Check::SessionId,
                format!("{who} failed the session id check: a flight of session {} in session {}", env.session, self.session),
            )));
        }
        let mut payloads = Vec::with_capacity(env.lens.len());
        let mut summary = Vec::with_capacity(env.lens.len());
        for &len in &env.lens {
            if let Some(p) = inline.as_mut().and_then(Iterator::next) {
                summary.push((len, payload_digest(&p)));
                payloads.push(p);
                continue;
            }
            let p = match self.wire.recv(from, len as usize) {
                Ok(p) => p,
                Err(NetError::WrongLength { expected, got, .. }) => {
                    return Err(Ok(self.failure(
                        Some(from),
                        Check::Envelope,
                        format!("{who} failed the envelope check: its envelope announced a {expected}-word message, {got} words arrived"),
                    )))
                }
                Err(e) => return Err(Err(e)),
            };
            summary.push((len, payload_digest(&p)));
            payloads.push(p);
        }
        let part = part_digest(self.me, env.first, &summary);
        let job = Job {
            from,
            counter: env.first,
            len: env.lens.len() as u64,
            statement: env.statement(self.n, &part),
            signature: env.signature(),
            key: self.keys[from].expect("every peer has an attested key"),
        };
        self.stats.verifications += 1;
        match (&mut self.verifier, defer && env.kind == Kind::Data) {
            (Some(v), true) => v.submit(job),
            _ => {
                if !job.verify() {
                    return Err(Ok(self.bad_signature(from, env.first, env.lens.len() as u64)));
                }
            }
        }
        if env.kind == Kind::Abort {
            // Final whatever its position: the sender's attested code stopped.
            let notice = &payloads[0];
            let n = self.n;
            let sent_to_me = notice.get(2 + self.me).copied().unwrap_or(0);
            let arrived = self.received[from];
            self.received[from] += 1; // the notice itself
            if sent_to_me > arrived {
                // The link delivers in order, so everything sent before the notice has arrived:
                // the sender's host withheld the rest.
                let me = self.name(self.me);
                return Err(Ok(self.failure(
                    Some(from),
                    Check::Counter,
                    format!(
                        "{who} failed the counter check: its attested code sent {sent_to_me} messages to {me}, {arrived} arrived (its host withheld the rest)"
                    ),
                )));
            }
            let text = words_to_text(notice.get(2 + n..).unwrap_or(&[])).unwrap_or_default();
            let culprit = notice.first().copied().filter(|&c| (c as usize) < n).map(|c| c as usize);
            let check = Check::from_code(notice.get(1).copied().unwrap_or(u64::MAX));
            return Err(Ok(Failure { culprit, check, detected_by: from, message: format!("{who} aborted: {text}") }));
        }
        let expected = self.received[from];
        if env.first != expected {
            let what = if env.first < expected {
                format!("message {} was already received (replayed)", env.first)
            } else {
                format!("message {} arrived where message {expected} was expected (dropped or reordered)", env.first)
            };
            return Err(Ok(self.failure(Some(from), Check::Counter, format!("{who} failed the counter check: {what}"))));
        }
        self.received[from] += payloads.len() as u64;
        self.recv_log[from].update(&part);
        Ok(Flight { kind: env.kind, payloads })
    }

    /// A link to `from` broke (it closed, or nothing came for the time-out): tell the others
    /// at once, then read what they sent for a short while for a better explanation (a party
    /// that caught a cheater tells everyone; its notice may be waiting on this very link).
    fn link_failure(&mut self, from: usize, e: NetError) -> NetError {
        if self.failure.is_some() {
            return self.error();
        }
        let who = self.name(from);
        let mine = self.failure(Some(from), Check::Link, format!("{who} failed the link check: {e}"));
        self.abort(mine.clone());
        let notices = self.collect_notices(&[from]);
        let f = self.explain(mine, notices);
        self.refine(f);
        self.error()
    }

    /// `from`'s attested code stopped because some party sent it nothing (a withheld message
    /// stalls both ends of a link, and each may time out waiting for the other).
    fn silence_notice(&mut self, from: usize, notice: Failure) -> NetError {
        let who = self.name(from);
        let me = self.name(self.me);
        if notice.culprit == Some(self.me) {
            // Not us: we were waiting for `from` and got its notice instead of its message.
            let mine = self.failure(
                Some(from),
                Check::Link,
                format!("{who} failed the link check: it stopped, reporting that {me} sent nothing, while {me} was waiting for its message (a message between them was withheld)"),
            );
            self.abort(mine.clone());
            let notices = self.collect_notices(&[]);
            let f = self.explain(mine, notices);
            self.refine(f);
            return self.error();
        }
        self.abort(notice.clone());
        let notices = self.collect_notices(&[]);
        let accused = notice.culprit;
        // The accused party may say the same of the accuser: then a message between the two was
        // withheld and an outsider cannot tell by whom.
        let mutual = notices.iter().find(|n| n.check == Check::Link && Some(n.detected_by) == accused && n.culprit == Some(from));
        let definite = notices.iter().any(|n| n.check != Check::Link);
        let f = match (mutual, accused) {
            (Some(_), Some(y)) if !definite => self.failure(
                None,
                Check::Link,
                format!(
                    "{who} and {} failed the link check: each reports that the other sent nothing (a message between them was withheld by one of their hosts)",
                    self.name(y)
                ),
            ),
            _ => self.explain(notice, notices),
        };
        self.refine(f);
        self.error()
    }

    /// Chooses the account of an abort: a notice naming a failed check (a definite detection)
    /// over reports of silence; for silence, the account of the party found silent if it
    /// blames someone else (it was waiting too), else `mine`. Notices blaming this party for
    /// silence are set aside: it knows what it was waiting for.
    fn explain(&self, mine: Failure, notices: Vec<Failure>) -> Failure {
        if let Some(n) = notices.iter().find(|n| n.check != Check::Link) {
            return n.clone();
        }
        if mine.check == Check::Link {
            if let Some(n) = notices.iter().find(|n| Some(n.detected_by) == mine.culprit && n.culprit.is_some() && n.culprit != Some(self.me)) {
                return n.clone();
            }
        }
        mine
    }

    /// Reads what the other parties sent for at most the explanation grace period, going round
    /// the links in short slices (those in `first` first), and returns the abort notices found:
    /// one per party at most. Ends early once every party has sent a notice or closed its link,
    /// or a notice names a failed check.
    fn collect_notices(&mut self, first: &[usize]) -> Vec<Failure> {
        const SLICE: Duration = Duration::from_millis(20);
        let deadline = Instant::now() + self.explain_grace;
        let timeout = self.wire.timeout();
        let me = self.me;
        let mut open: Vec<usize> = first.to_vec();
        open.extend((0..self.n).filter(|&j| j != me && !first.contains(&j)));
        let mut found = Vec::new();
        while !open.is_empty() && Instant::now() < deadline {
            let mut still_open = Vec::new();
            for j in open {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    still_open.push(j);
                    continue;
                }
                match self.receive_checked_within(j, SLICE.min(left), left) {
                    Ok(_) => still_open.push(j), // messages the protocol would have read later
                    Err(Ok(f)) => {
                        // A report of silence may be followed by a definite account.
                        if f.check == Check::Link {
                            still_open.push(j);
                        }
                        found.push(f);
                    }
                    Err(Err(NetError::Timeout { .. })) => still_open.push(j),
                    Err(Err(_)) => {}
                }
            }
            if found.iter().any(|f: &Failure| f.check != Check::Link) {
                break;
            }
            // Parties that reported silence are worth waiting for only while the reports (and
            // this party's own) disagree on who was silent.
            let mut accused: Vec<Option<usize>> = found.iter().map(|f| f.culprit).collect();
            accused.extend(self.failure.as_ref().filter(|f| f.check == Check::Link).map(|f| f.culprit));
            accused.sort();
            accused.dedup();
            let reported: Vec<usize> = found.iter().map(|f| f.detected_by).collect();
            open = still_open.into_iter().filter(|j| accused.len() > 1 || !reported.contains(j)).collect();
        }
        self.wire.set_timeout(timeout);
        found
    }

    /// [`Core::receive_checked`] (inline verification) waiting at most `first` for the flight
    /// to start and `rest` for the rest of it.
    fn receive_checked_within(&mut self, from: usize, first: Duration, rest: Duration) -> Checked<Flight> {
        self.wire.set_timeout(first.max(Duration::from_millis(1)));
        self.next_frame_timeout = Some(rest.max(Duration::from_millis(1)));
        let r = self.receive_checked(from, false);
        self.next_frame_timeout = None;
        r
    }

    fn send_data(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError> {
        if self.failure.is_some() {
            return Err(self.error());
        }
        // Hashed now, while the payload is hot; it leaves with the flight, after every message
        // received so far has been verified.
        let digest = payload_digest(&data);
        self.pending.push((to, data, digest));
        self.stats.messages_sent += 1;
        // A protocol that streams a large message in blocks gets them on the links as they
        // come, each flight signed, instead of all at its next receive (everything received so
        // far is verified first, as before any flight).
        let pending: usize = self.pending.iter().map(|(_, p, _)| p.len()).sum();
        if pending >= FLUSH_WORDS || self.pending.len() >= MAX_FLIGHT_MESSAGES {
            self.flush()?;
        }
        Ok(())
    }

    /// A message that does not fit the protocol: if its signature (still being verified) is
    /// bad, that is the explanation; otherwise the sender's code diverged.
    fn misfit(&mut self, from: usize, what: String) -> NetError {
        if let Err(e) = self.sync() {
            return e;
        }
        let f = self.failure(Some(from), Check::Protocol, format!("{} failed the message kind/length check: {what}", self.name(from)));
        self.abort(f)
    }

    fn recv_data(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        self.flush()?;
        if self.inbox[from].is_empty() {
            let flight = self.receive(from, true)?;
            if flight.kind != Kind::Data {
                return Err(self.misfit(from, format!("a {:?} flight arrived where the protocol expects data", flight.kind)));
            }
            self.inbox[from].extend(flight.payloads);
        }
        let payload = self.inbox[from].pop_front().expect("a flight has at least one message");
        if payload.len() != len {
            return Err(self.misfit(from, format!("{} elements arrived where the protocol expects {len}", payload.len())));
        }
        self.stats.messages_received += 1;
        Ok(payload)
    }

    /// The output gate: every party tells every other how many messages it received from it
    /// and the digest of their part digests, and checks the others' accounts against what it
    /// sent. Passes only if no party has aborted and all transcripts agree.
    fn confirm(&mut self) -> Result<(), Failure> {
        let failed = |c: &Core| c.failure.clone().expect("a failure is recorded");
        if self.flush().is_err() || self.sync().is_err() {
            return Err(failed(self));
        }
        if let Some(j) = (0..self.n).find(|&j| !self.inbox[j].is_empty()) {
            let f = self.failure(Some(j), Check::Protocol, format!("{} sent messages the protocol did not read before the output gate", self.name(j)));
            self.abort(f);
            return Err(failed(self));
        }
        let me = self.me;
        let snapshot: Vec<(u64, [u8; 32])> = (0..self.n).map(|j| (self.sent[j], *self.sent_log[j].finalize().as_bytes())).collect();
        let items = (0..self.n)
            .filter(|&j| j != me)
            .map(|j| {
                let mut w = vec![self.received[j]];
                w.extend(self.recv_log[j].finalize().as_bytes().chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())));
                let d = payload_digest(&w);
                (j, w, d)
            })
            .collect();
        if let Err((k, e)) = self.seal_flight(Kind::Confirm, items) {
            self.link_failure(k, e);
            return Err(failed(self));
        }
        for j in (0..self.n).filter(|&j| j != me) {
            let who = self.name(j);
            let flight = match self.receive(j, false) {
                Ok(f) => f,
                Err(_) => return Err(failed(self)),
            };
            if flight.kind != Kind::Confirm || flight.payloads.len() != 1 || flight.payloads[0].len() != 5 {
                let f = self.failure(Some(j), Check::Protocol, format!("{who} sent a {:?} flight at the output gate", flight.kind));
                self.abort(f);
                return Err(failed(self));
            }
            let w = &flight.payloads[0];
            let digest: Vec<u8> = w[1..].iter().flat_map(|x| x.to_le_bytes()).collect();
            if w[0] != snapshot[j].0 || digest[..] != snapshot[j].1[..] {
                let f = self.failure(
                    Some(j),
                    Check::Transcript,
                    format!(
                        "{who} failed the transcript check: it received {} messages from {}, which sent {} (digests {} and {})",
                        w[0],
                        self.name(me),
                        snapshot[j].0,
                        &hex(&digest)[..16],
                        &hex(&snapshot[j].1)[..16]
                    ),
                );
                self.abort(f);
                return Err(failed(self));
            }
        }
        self.stats.confirm_rounds += 1;
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.failure.is_none() {
            let _ = self.flush();
        }
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

    /// Waits until every message received so far is verified and sends the messages not sent
    /// yet (after revealing an output); the abort if something fails.
    pub fn settle(&self) -> Result<(), Failure> {
        let mut c = self.lock();
        match c.sync().and_then(|()| c.flush()) {
            Ok(()) => Ok(()),
            Err(_) => Err(c.failure.clone().expect("a failure is recorded")),
        }
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
        let c = self.lock();
        Stats { verify_batches: c.verifier.as_ref().map_or(0, |v| v.batches()), ..c.stats }
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
