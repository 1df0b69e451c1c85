//! The host: what stands between a party's attested code and the network.
//!
//! In the Aramis threat model the host (operating system, everything outside the attested
//! environment) is the adversary's: it sees everything and carries every message, so it can
//! alter, forge, replay, reorder or drop them after the attested code has signed them. A
//! [`Host`] gets each outgoing message (envelope and payload) and puts it on the links;
//! [`HonestHost`] forwards it unchanged, [`CheatingHost`] misbehaves once, on purpose
//! (`--inject-fault PARTY:KIND`), so that tests and users can see Aramis catch it — and see
//! the semi-honest protocol, which has no envelope, swallow it ([`HostLayer`]).

use cryptflow_net::{EmulatedClock, MessageLayer, NetError, Session, WireTraffic};
use ed25519_dalek::{Signer, SigningKey};

use crate::envelope::{statement_for, Envelope, INLINE_WORDS};

/// What leaves the attested code for one peer at a time: under Aramis, a flight's envelope for
/// that peer and its payloads; under a semi-honest protocol, one message and no envelope.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub envelope: Option<Vec<u64>>,
    pub payloads: Vec<Vec<u64>>,
}

impl Outgoing {
    /// Index of the first payload of at least `min` words.
    fn target(&self, min: usize) -> Option<usize> {
        self.payloads.iter().position(|p| p.len() >= min)
    }
}

/// What a party's host does with the messages of its attested code.
pub trait Host: Send {
    /// Puts `message` for `to` on `wire` (or not).
    fn forward(&mut self, wire: &mut Session, to: usize, message: Outgoing) -> Result<(), NetError>;
    /// Called before the party waits for a message.
    fn before_recv(&mut self, _wire: &mut Session) -> Result<(), NetError> {
        Ok(())
    }
    /// Called when the session ends.
    fn close(&mut self, _wire: &mut Session) {}
}

pub(crate) fn send_message(wire: &mut Session, to: usize, message: Outgoing) -> Result<(), NetError> {
    let total: usize = message.payloads.iter().map(Vec::len).sum();
    match message.envelope {
        // Small flights: one frame (see `envelope`'s framing).
        Some(mut envelope) if total <= INLINE_WORDS => {
            envelope.reserve(total);
            for p in &message.payloads {
                envelope.extend_from_slice(p);
            }
            wire.send(to, envelope)
        }
        envelope => {
            if let Some(envelope) = envelope {
                wire.send(to, envelope)?;
            }
            for p in message.payloads {
                wire.send(to, p)?;
            }
            Ok(())
        }
    }
}

/// Forwards every message as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct HonestHost;

impl Host for HonestHost {
    fn forward(&mut self, wire: &mut Session, to: usize, message: Outgoing) -> Result<(), NetError> {
        send_message(wire, to, message)
    }
}

/// How a [`CheatingHost`] deviates (once per session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cheat {
    /// Flips bit 20 of the middle word of the first message of at least
    /// [`TARGET_MIN_WORDS`] words, after it was signed.
    Tamper,
    /// Sends a message the attested code did not compute: the first message of at least
    /// [`TARGET_MIN_WORDS`] words, altered, and signed with a key of the host's own.
    Forge,
    /// Sends the previous transmission to the same peer again, right before the first one with
    /// a message of at least [`TARGET_MIN_WORDS`] words.
    Replay,
    /// Swaps two messages to one peer: the first two of the first transmission that has
    /// several (under Aramis a transmission is a flight's envelope and messages for one peer;
    /// the host fixes the envelope's lengths up), or else holds the first transmission back,
    /// across receives, and delivers it after the next one to the same peer (if the peer
    /// needs it first, the run stalls until a time-out).
    Reorder,
    /// Drops a message: the first of the first transmission that has several (fixing the
    /// envelope's count and lengths up), or else the first transmission of at least
    /// [`TARGET_MIN_WORDS`] words (the peer notices a gap in the counters, or times out).
    Drop,
}

impl Cheat {
    pub fn name(self) -> &'static str {
        match self {
            Cheat::Tamper => "tamper",
            Cheat::Forge => "forge",
            Cheat::Replay => "replay",
            Cheat::Reorder => "reorder",
            Cheat::Drop => "drop",
        }
    }
}

/// Messages shorter than this (keys, counts) are not tampered with, forged or replayed, so that
/// the deviation hits a tensor of the computation.
pub const TARGET_MIN_WORDS: usize = 64;

/// A host that deviates once, as told by its [`Cheat`], and forwards everything else.
pub struct CheatingHost {
    party: usize,
    cheat: Cheat,
    done: bool,
    /// Reorder: a transmission held back, waiting for the next one to the same peer.
    held: Option<(usize, Outgoing)>,
    /// Replay: a copy of the last message to each peer (only until the replay happened).
    last: Vec<Option<Outgoing>>,
    /// Forge: the host's own key, which no token vouches for.
    own_key: SigningKey,
}

impl CheatingHost {
    pub fn new(party: usize, parties: usize, cheat: Cheat) -> CheatingHost {
        let mut seed = [0u8; 32];
        // Any key will do for a forger; fall back to a fixed one if the OS RNG is unavailable.
        let _ = getrandom::fill(&mut seed);
        CheatingHost {
            party,
            cheat,
            done: false,
            held: None,
            last: (0..parties).map(|_| None).collect(),
            own_key: SigningKey::from_bytes(&seed),
        }
    }

    /// Whether the deviation has happened yet.
    pub fn has_cheated(&self) -> bool {
        self.done
    }

    fn announce(&mut self, what: String) {
        self.done = true;
        eprintln!("injected fault: the host of party {} {what}", self.party);
    }

    fn flip(payload: &mut [u64]) -> usize {
        let i = payload.len() / 2;
        payload[i] ^= 1 << 20;
        i
    }

    /// When the session ends: a deviation that never found its opportunity is reported.
    fn report_unused(&self) {
        if !self.done {
            eprintln!(
                "injected fault: the host of party {} found no opportunity to {} (it needs {})",
                self.party,
                self.cheat.name(),
                match self.cheat {
                    Cheat::Reorder => "a transmission followed by another one to the same peer",
                    _ => "a message of at least 64 words",
                }
            );
        }
    }
}

impl Host for CheatingHost {
    fn forward(&mut self, wire: &mut Session, to: usize, mut message: Outgoing) -> Result<(), NetError> {
        if self.done {
            return send_message(wire, to, message);
        }
        let target = message.target(TARGET_MIN_WORDS);
        match (self.cheat, target) {
            (Cheat::Tamper, Some(t)) => {
                let n = message.payloads[t].len();
                let i = Self::flip(&mut message.payloads[t]);
                self.announce(format!("flipped bit 20 of word {i} of a {n}-word message to party {to} after it was signed"));
                send_message(wire, to, message)
            }
            (Cheat::Forge, Some(t)) => {
                let n = message.payloads[t].len();
                let i = Self::flip(&mut message.payloads[t]);
                if let Some(words) = &mut message.envelope {
                    let parties = wire.parties();
                    if let Ok(mut env) = Envelope::decode(words, parties) {
                        let statement = statement_for(&env, &message.payloads, parties);
                        env.signature = self.own_key.sign(&statement).to_bytes();
                        *words = env.encode();
                    }
                }
                self.announce(format!(
                    "altered word {i} of a {n}-word message to party {to} and signed it with a key of its own"
                ));
                send_message(wire, to, message)
            }
            (Cheat::Replay, _) => {
                if target.is_some() {
                    if let Some(previous) = self.last[to].take() {
                        self.last.clear();
                        self.announce(format!("sent its previous transmission to party {to} again"));
                        send_message(wire, to, previous)?;
                        return send_message(wire, to, message);
                    }
                }
                self.last[to] = Some(message.clone());
                send_message(wire, to, message)
            }
            (Cheat::Reorder | Cheat::Drop, _) if message.payloads.len() >= 2 => {
                let (a, b) = (message.payloads[0].len(), message.payloads[1].len());
                let what = if self.cheat == Cheat::Reorder {
                    message.payloads.swap(0, 1);
                    format!("swapped two messages ({a} and {b} words) of a transmission to party {to}")
                } else {
                    message.payloads.remove(0);
                    format!("dropped a {a}-word message of a transmission to party {to}")
                };
                if let Some(words) = &mut message.envelope {
                    // Keep the framing consistent so that the receiver reads what is there.
                    if let Ok(mut env) = Envelope::decode(words, wire.parties()) {
                        env.lens = message.payloads.iter().map(|p| p.len() as u64).collect();
                        *words = env.encode();
                    }
                }
                self.announce(what);
                send_message(wire, to, message)
            }
            (Cheat::Drop, Some(_)) => {
                let words: usize = message.payloads.iter().map(|p| p.len()).sum();
                self.announce(format!("dropped a transmission of {words} words to party {to}"));
                Ok(())
            }
            (Cheat::Reorder, _) => match self.held.take() {
                Some((held_to, held)) if held_to == to => {
                    self.announce(format!("delivered a transmission to party {to} after the one that followed it"));
                    send_message(wire, to, message)?;
                    send_message(wire, to, held)
                }
                Some(other) => {
                    self.held = Some(other);
                    send_message(wire, to, message)
                }
                None => {
                    self.held = Some((to, message));
                    Ok(())
                }
            },
            _ => send_message(wire, to, message),
        }
    }

    fn close(&mut self, wire: &mut Session) {
        if let Some((to, held)) = self.held.take() {
            let _ = send_message(wire, to, held);
        }
        self.report_unused();
    }
}

/// A semi-honest session with a host in the middle: the protocol's messages go through `host`
/// unsigned (`--backend porthos --inject-fault PARTY:tamper` and the like).
pub struct HostLayer {
    wire: Session,
    host: Box<dyn Host>,
}

impl HostLayer {
    /// `wire` with every outgoing message going through `host`, as a [`Session`] for the protocol.
    pub fn session(wire: Session, host: Box<dyn Host>) -> Session {
        let (id, parties, timeout) = (wire.id(), wire.parties(), wire.timeout());
        Session::layered(id, parties, timeout, Box::new(HostLayer { wire, host }))
    }
}

impl MessageLayer for HostLayer {
    fn send(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError> {
        self.host.forward(&mut self.wire, to, Outgoing { envelope: None, payloads: vec![data] })
    }

    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        self.host.before_recv(&mut self.wire)?;
        self.wire.recv(from, len)
    }

    fn recv_any(&mut self, from: usize) -> Result<Vec<u64>, NetError> {
        self.host.before_recv(&mut self.wire)?;
        self.wire.recv_any(from)
    }

    fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.wire.set_timeout(timeout);
    }

    fn wire_traffic(&self) -> WireTraffic {
        self.wire.wire_traffic()
    }

    fn emulated_clock(&self) -> Option<EmulatedClock> {
        self.wire.emulated_clock()
    }
}

impl Drop for HostLayer {
    fn drop(&mut self) {
        self.host.close(&mut self.wire);
    }
}
