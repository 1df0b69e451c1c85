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

use crate::envelope::{payload_digest, Envelope};

/// A message leaving the attested code: its Aramis envelope (none under a semi-honest
/// protocol) and the protocol's payload.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub envelope: Option<Vec<u64>>,
    pub payload: Vec<u64>,
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
    if let Some(envelope) = message.envelope {
        wire.send(to, envelope)?;
    }
    wire.send(to, message.payload)
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
    /// Sends the previous message to the same peer again, right before the first message of at
    /// least [`TARGET_MIN_WORDS`] words that has one.
    Replay,
    /// Swaps the first two consecutive messages to one peer (no receive in between).
    Reorder,
    /// Drops the first of two consecutive messages to one peer (no receive in between).
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
    /// Reorder and drop: a message held back, waiting for the next one to the same peer.
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
}

impl Host for CheatingHost {
    fn forward(&mut self, wire: &mut Session, to: usize, mut message: Outgoing) -> Result<(), NetError> {
        if self.done {
            return send_message(wire, to, message);
        }
        let n = message.payload.len();
        match self.cheat {
            Cheat::Tamper if n >= TARGET_MIN_WORDS => {
                let i = Self::flip(&mut message.payload);
                self.announce(format!("flipped bit 20 of word {i} of a {n}-word message to party {to} after it was signed"));
                send_message(wire, to, message)
            }
            Cheat::Forge if n >= TARGET_MIN_WORDS => {
                let i = Self::flip(&mut message.payload);
                if let Some(words) = &mut message.envelope {
                    if let Ok(mut env) = Envelope::decode(words) {
                        let statement = env.statement(&payload_digest(&message.payload));
                        env.signature = self.own_key.sign(&statement).to_bytes();
                        *words = env.encode();
                    }
                }
                self.announce(format!(
                    "altered word {i} of a {n}-word message to party {to} and signed it with a key of its own"
                ));
                send_message(wire, to, message)
            }
            Cheat::Replay => {
                if n >= TARGET_MIN_WORDS {
                    if let Some(previous) = self.last[to].take() {
                        self.last.clear();
                        self.announce(format!("replayed its previous {}-word message to party {to}", previous.payload.len()));
                        send_message(wire, to, previous)?;
                        return send_message(wire, to, message);
                    }
                }
                self.last[to] = Some(message.clone());
                send_message(wire, to, message)
            }
            Cheat::Reorder | Cheat::Drop => {
                match self.held.take() {
                    Some((held_to, held)) if held_to == to => {
                        if self.cheat == Cheat::Reorder {
                            self.announce(format!("swapped two consecutive messages to party {to}"));
                            send_message(wire, to, message)?;
                            send_message(wire, to, held)
                        } else {
                            self.announce(format!("dropped a {}-word message to party {to}", held.payload.len()));
                            send_message(wire, to, message)
                        }
                    }
                    Some((held_to, held)) => {
                        // Not a pair: deliver in order and try with the next message.
                        send_message(wire, held_to, held)?;
                        self.held = Some((to, message));
                        Ok(())
                    }
                    None => {
                        self.held = Some((to, message));
                        Ok(())
                    }
                }
            }
            _ => send_message(wire, to, message),
        }
    }

    fn before_recv(&mut self, wire: &mut Session) -> Result<(), NetError> {
        if let Some((to, held)) = self.held.take() {
            send_message(wire, to, held)?;
        }
        Ok(())
    }

    fn close(&mut self, wire: &mut Session) {
        let _ = self.before_recv(wire);
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
        self.host.forward(&mut self.wire, to, Outgoing { envelope: None, payload: data })
    }

    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        self.host.before_recv(&mut self.wire)?;
        self.wire.recv(from, len)
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
