//! Why an Aramis session aborted.

use std::fmt;

/// The check that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// A token's measurement differs from ours: the party runs different code or configuration.
    Measurement,
    /// A token is malformed or not endorsed by the attestation authority.
    Endorsement,
    /// A token was made for another session or another party.
    TokenBinding,
    /// A token's key is not fresh (shared with another party, or weak).
    FreshKey,
    /// A frame where an envelope was expected is not one.
    Envelope,
    /// A message is addressed from or to the wrong party.
    Addressing,
    /// A message carries another session's id.
    SessionId,
    /// A message's signature does not verify under its sender's attested key.
    Signature,
    /// A message's counter is not the next one on its link (replayed, reordered or dropped).
    Counter,
    /// A message is not of the kind or length the protocol expects at this point.
    Protocol,
    /// At the output gate, a party's record of what it received differs from what was sent.
    Transcript,
    /// A link broke (disconnection, time-out) before the computation ended.
    Link,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Measurement => "measurement",
            Check::Endorsement => "attestation endorsement",
            Check::TokenBinding => "token binding",
            Check::FreshKey => "fresh key",
            Check::Envelope => "envelope",
            Check::Addressing => "sender/receiver",
            Check::SessionId => "session id",
            Check::Signature => "signature",
            Check::Counter => "counter",
            Check::Protocol => "message kind/length",
            Check::Transcript => "transcript",
            Check::Link => "link",
        }
    }

    pub(crate) fn code(self) -> u64 {
        self as u64
    }

    pub(crate) fn from_code(code: u64) -> Check {
        const ALL: [Check; 12] = [
            Check::Measurement,
            Check::Endorsement,
            Check::TokenBinding,
            Check::FreshKey,
            Check::Envelope,
            Check::Addressing,
            Check::SessionId,
            Check::Signature,
            Check::Counter,
            Check::Protocol,
            Check::Transcript,
            Check::Link,
        ];
        ALL.into_iter().find(|c| c.code() == code).unwrap_or(Check::Protocol)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An abort: which party deviated (when known), which check caught it, and a message that
/// names both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The party whose message or token failed the check (`None` if it cannot be told).
    pub culprit: Option<usize>,
    pub check: Check,
    /// The party whose attested code detected the failure.
    pub detected_by: usize,
    /// The full explanation, naming the culprit and the check.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aramis abort: {}", self.message)
    }
}

impl std::error::Error for Failure {}
