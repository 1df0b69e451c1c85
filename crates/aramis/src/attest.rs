//! The attestation interface: the ideal functionality F_attest of the paper's Figure 7.
//!
//! F_attest^(vk, sk) offers two commands:
//!
//! * **Commit(g)**: fix the function `g` the hardware will run (here `pi*`, the next-message
//!   function of the semi-honest protocol with the Aramis checks), and return a token
//!   `T_g = Sign(H(g))` that anyone can check. [`Attestor::commit`] measures the code
//!   ([`Measurement`], `H(g)`), draws a fresh signing key inside the attested environment and
//!   returns the [`Token`] binding the measurement to that key (and to the session and party,
//!   so that a token cannot be replayed into another session or for another party).
//! * **Compute(w)**: run `g` on input `w` and return the output `y` signed under `sk`.
//!   [`Execution`] is the committed instance; [`compute`] runs a step of the committed code and
//!   signs its output.
//!
//! As in the paper, nothing here is confidential: the state, inputs and randomness of the
//! computation are visible to the host. The only assumption is *integrity*: whatever the
//! execution signs was produced by the measured code, and the signing key cannot be used by
//! anything else. That is what real hardware must provide (`docs/aramis.md` says how SGX, SEV-SNP
//! and TDX would); [`crate::software::SoftwareAttestor`] implements the interface without any
//! hardware, to exercise the mechanism, and guarantees nothing of the kind.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};

/// `H(g)`: the digest identifying the code of `pi*` and its configuration. Parties proceed only
/// if every token carries the measurement they compute for themselves.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 32]);

impl Measurement {
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for Measurement {
    /// The first 8 bytes in hex, enough to tell measurements apart in a message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.hex()[..16])
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({})", self.hex())
    }
}

/// A session identifier: 16 bytes derived from a fresh OS-random contribution of every party.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub [u8; 16]);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", hex(&self.0))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex(&self.0))
    }
}

/// What a token asserts: the code measurement, the verification key of the execution that runs
/// it, and the session and party the execution was committed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub measurement: Measurement,
    /// Ed25519 verification key of the execution (the `vk` of F_attest^(vk, sk)).
    pub key: [u8; 32],
    pub session: SessionId,
    pub party: u32,
    pub parties: u32,
}

impl Claims {
    /// The bytes an endorsement signs (domain-separated, fixed layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(b"cryptflow-aramis/claims/v1\0");
        b.extend_from_slice(&self.party.to_le_bytes());
        b.extend_from_slice(&self.parties.to_le_bytes());
        b.extend_from_slice(&self.session.0);
        b.extend_from_slice(&self.measurement.0);
        b.extend_from_slice(&self.key);
        b
    }
}

/// `T_g`: claims plus the evidence that vouches for them (for the software attestor, the
/// attestation authority's Ed25519 signature; for hardware, a quote or attestation report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub claims: Claims,
    pub evidence: Vec<u8>,
}

impl Token {
    /// Ring words for a session message: party|parties, session (2), measurement (4), key (4),
    /// evidence length, evidence (zero-padded to whole words).
    pub fn to_words(&self) -> Vec<u64> {
        let c = &self.claims;
        let mut bytes = Vec::with_capacity(96 + self.evidence.len());
        bytes.extend_from_slice(&c.party.to_le_bytes());
        bytes.extend_from_slice(&c.parties.to_le_bytes());
        bytes.extend_from_slice(&c.session.0);
        bytes.extend_from_slice(&c.measurement.0);
        bytes.extend_from_slice(&c.key);
        bytes.extend_from_slice(&(self.evidence.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&self.evidence);
        bytes.resize(bytes.len().div_ceil(8) * 8, 0);
        bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    pub fn from_words(words: &[u64]) -> Option<Token> {
        const FIXED: usize = 8 + 16 + 32 + 32 + 8;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        if bytes.len() < FIXED {
            return None;
        }
        let arr = |r: std::ops::Range<usize>| bytes[r].to_vec();
        let evidence_len = u64::from_le_bytes(bytes[88..96].try_into().unwrap());
        if evidence_len > (bytes.len() - FIXED) as u64 || bytes.len() - FIXED - evidence_len as usize >= 8 {
            return None;
        }
        let claims = Claims {
            party: u32::from_le_bytes(bytes[0..4].try_into().unwrap()),
            parties: u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            session: SessionId(arr(8..24).try_into().unwrap()),
            measurement: Measurement(arr(24..56).try_into().unwrap()),
            key: arr(56..88).try_into().unwrap(),
        };
        Some(Token { claims, evidence: arr(FIXED..FIXED + evidence_len as usize) })
    }
}

/// Why attestation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The attestor could not measure the code or commit (missing binary, unreadable key...).
    #[error("attestation unavailable: {0}")]
    Unavailable(String),
    /// The token's evidence does not vouch for its claims.
    #[error("the token's endorsement is not valid: {0}")]
    BadEvidence(String),
}

/// An implementation of F_attest: software (no hardware guarantee) or a trusted execution
/// environment.
pub trait Attestor: Send + Sync {
    /// What this attestor is, for reports (e.g. `software (no hardware guarantee)`).
    fn describe(&self) -> String;

    /// `H(g)` for the code this attestor runs with the given protocol `configuration` (the
    /// compiled program's digest, the protocol and its parameters): what every party's token
    /// must carry.
    fn measure(&self, configuration: &[u8]) -> Result<Measurement, AttestError>;

    /// **Commit**: measures the code of `pi*` with `configuration`, creates an execution with a
    /// fresh signing key, and returns it with its token, bound to `session` and `party` of
    /// `parties`.
    fn commit(
        &self,
        configuration: &[u8],
        session: SessionId,
        party: usize,
        parties: usize,
    ) -> Result<(Box<dyn Execution>, Token), AttestError>;

    /// Checks the evidence of a token from any party (signature of the attestation authority,
    /// or the hardware vendor's certificate chain) and returns its claims. Whether the claims
    /// are the expected ones (measurement, session, party, freshness of the key) is the
    /// caller's check.
    fn verify(&self, token: &Token) -> Result<Claims, AttestError>;
}

/// F_attest after Commit: an execution of the committed code with its signing key.
pub trait Execution: Send {
    /// The verification key `vk` (also in the token).
    fn verifying_key(&self) -> VerifyingKey;

    /// Signs `y`, an output of the committed code. With hardware only code inside the
    /// attested environment can call this; the software attestor cannot enforce that.
    fn sign_output(&mut self, y: &[u8]) -> Signature;
}

/// **Compute(w)** of Figure 7: runs `g` (a step of the committed code) on `w` and returns its
/// output with the execution's signature on it. The state and randomness `g` uses are the
/// caller's and stay visible to the host, as in the paper.
pub fn compute<W, Y: AsRef<[u8]>>(execution: &mut dyn Execution, g: impl FnOnce(W) -> Y, w: W) -> (Y, Signature) {
    let y = g(w);
    let signature = execution.sign_output(y.as_ref());
    (y, signature)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_words() {
        let t = Token {
            claims: Claims {
                measurement: Measurement([7; 32]),
                key: [9; 32],
                session: SessionId([3; 16]),
                party: 2,
                parties: 3,
            },
            evidence: (0..64).collect(),
        };
        assert_eq!(Token::from_words(&t.to_words()), Some(t.clone()));
        let odd = Token { evidence: vec![1, 2, 3], ..t };
        assert_eq!(Token::from_words(&odd.to_words()), Some(odd.clone()));
        let mut w = odd.to_words();
        w[11] = 1000; // evidence length beyond the message
        assert_eq!(Token::from_words(&w), None);
        assert_eq!(Token::from_words(&[1, 2]), None);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
