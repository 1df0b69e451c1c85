//! Runs the three parties of a session in threads over `Session::local(3)`.
#![allow(dead_code, unused_imports)]

use cryptflow_backend::{testing, Backend, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};

pub const VARIANTS: [ProtocolVariant; 3] = [ProtocolVariant::Porthos, ProtocolVariant::SecureNN, ProtocolVariant::Compact];

/// Runs `f` on every party (index = party id) and returns the three results.
pub fn run<T: Send>(variant: ProtocolVariant, f: impl Fn(&mut Porthos) -> T + Sync) -> Vec<T> {
    testing::run_parties(Session::local(3), |session| Porthos::new(session, variant).expect("session setup"), f)
}

/// Bytes this party sends while running `op`.
pub fn measured<T>(p: &mut Porthos, op: impl FnOnce(&mut Porthos) -> T) -> (T, u64) {
    let before = p.traffic().bytes_sent;
    let r = op(p);
    (r, p.traffic().bytes_sent - before)
}

/// Shares `values` (owned by the model owner or the client), runs `op` on the shares, reveals
/// the result to the client. Returns the revealed result and the bytes sent by all three
/// parties during `op` only.
pub fn secure_eval(
    variant: ProtocolVariant,
    inputs: &[(Owner, RingTensor)],
    op: impl Fn(&mut Porthos, &[RingTensor]) -> RingTensor + Sync,
) -> (RingTensor, u64) {
    let out = run(variant, |p| testing::evaluate(p, inputs, &op));
    assert!(out[2].1.data().iter().all(|&v| v == 0), "the helper's share must be zero");
    (testing::client_output(&out), out.iter().map(|o| o.2).sum())
}

pub use cryptflow_backend::testing::{comparison_values, peer_of, rng, random_tensor, signed_tensor};

// Table III: bits per element (l = 64, log p = 8).
pub const L: u64 = 64;
pub const LOG_P: u64 = 8;

pub fn share_convert_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 3 * L * LOG_P + 5 * L,
        // The same algorithm, its Z_p messages at 7 bits per element.
        ProtocolVariant::Compact => 3 * L * LOG_P_PACKED + 5 * L,
        ProtocolVariant::SecureNN => 4 * L * LOG_P + 6 * L,
    }
}

pub fn compute_msb_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 3 * L * LOG_P + 9 * L,
        ProtocolVariant::Compact => 3 * L * LOG_P_PACKED + 9 * L,
        ProtocolVariant::SecureNN => 4 * L * LOG_P + 13 * L,
    }
}

pub fn relu_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 6 * L * LOG_P + 19 * L,
        ProtocolVariant::SecureNN => 8 * L * LOG_P + 24 * L,
        // The compact DReLU (bits of r', the opening, PrivateCompare, gamma) and the fused
        // selection (the masked value from P0 and P1, the helper's share of gamma (v + m)).
        ProtocolVariant::Compact => drelu_compact_bits() + 3 * L,
    }
}


/// Bits per Z_p element on the wire under the compact variant (p = 67 < 2^7).
pub const LOG_P_PACKED: u64 = 7;

/// The compact DReLU (`Porthos::drelu_compact`): `l log p` for the dealt bits, `2 l` for the
/// opening, `2 l log p` for PrivateCompare and `l` for the dealt result, at 7 bits per Z_p
/// element.
pub fn drelu_compact_bits() -> u64 {
    L * LOG_P_PACKED + 2 * L + 2 * L * LOG_P_PACKED + L
}

/// A further threshold of the same secret under the compact variant: PrivateCompare and the
/// result.
pub fn further_threshold_compact_bits() -> u64 {
    2 * L * LOG_P_PACKED + L
}
