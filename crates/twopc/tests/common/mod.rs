//! Runs the two parties of a session in threads over `Session::local(2)`, and the
//! communication formulas of the crate docs.
#![allow(dead_code, unused_imports)]

use cryptflow_backend::{testing, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_twopc::TwoPc;

/// Runs `f` on both parties (index = party id).
pub fn run<T: Send>(f: impl Fn(&mut TwoPc) -> T + Sync) -> Vec<T> {
    testing::run_parties(Session::local(2), |session| TwoPc::new(session).expect("session setup"), f)
}

/// Shares `inputs` (each from its owner), runs `op` on the shares, reveals the result to the
/// client. Returns the revealed value and the bytes each party sent during `op` only.
pub fn secure_eval(inputs: &[(Owner, RingTensor)], op: impl Fn(&mut TwoPc, &[RingTensor]) -> RingTensor + Sync) -> (RingTensor, [u64; 2]) {
    let out = run(|p| testing::evaluate(p, inputs, &op));
    (testing::client_output(&out), [out[0].2, out[1].2])
}

pub use cryptflow_backend::testing::{comparison_values, peer_of, rng, random_tensor, signed_tensor};

// ----- communication formulas (words of 8 bytes, per party) ------------------------------

/// Receiving `m` extended OTs.
pub fn ext(m: u64) -> u64 {
    128 * m.div_ceil(64)
}

/// Corrections of an OT product of `s` scalars with vectors of width `w`.
pub fn corrections(s: u64, w: u64) -> u64 {
    s * (2080 * w).div_ceil(64)
}

/// A bilinear product whose operands come from `owners` (`A` and `B`): the client's flag word,
/// and for each cross term whose client-side share is not structurally zero (a model owner's
/// value has a zero client share), `ext(64 s)` from the chooser and the corrections from the
/// other party. `dec_a`: the bits of `A` are the choices (`A_0 B_1` has party 0 as chooser).
/// Words per party.
pub fn product_words(owners: (Owner, Owner), s: u64, w: u64, dec_a: bool) -> [u64; 2] {
    let za = owners.0 == Owner::ModelOwner;
    let zb = owners.1 == Owner::ModelOwner;
    let mut words = [0u64, 1];
    for (holder_of_a, active) in [(0usize, !zb), (1, !za)] {
        if active {
            let chooser = if dec_a { holder_of_a } else { 1 - holder_of_a };
            words[chooser] += ext(64 * s);
            words[1 - chooser] += corrections(s, w);
        }
    }
    words
}

pub fn bytes(words: [u64; 2]) -> [u64; 2] {
    [8 * words[0], 8 * words[1]]
}

/// DReLU of `n` values: (party 0, party 1).
pub fn drelu(n: u64) -> [u64; 2] {
    let l: u64 = [15u64, 7, 3, 1].iter().map(|a| (2 * a * n).div_ceil(64)).sum();
    [ext(26 * n) + 8 * n + l, ext(90 * n) + l]
}

/// Multiplexer of `n` values.
pub fn select(n: u64) -> u64 {
    ext(n) + n
}

/// ReLU of `n` values: (party 0, party 1), in bytes.
pub fn relu_bytes(n: u64) -> [u64; 2] {
    let d = drelu(n);
    [8 * (d[0] + select(n)), 8 * (d[1] + select(n))]
}

/// A tree of comparisons over `k` candidates for `o` outputs (`index`: ArgMax carries the
/// index), in bytes per party.
pub fn tournament_bytes(k: u64, o: u64, index: bool) -> [u64; 2] {
    let mut total = [0u64; 2];
    let mut left = k;
    while left > 1 {
        let p = left / 2;
        let d = drelu(p * o);
        let s = select(if index { 2 * p * o } else { p * o });
        total[0] += 8 * (d[0] + s);
        total[1] += 8 * (d[1] + s);
        left -= p;
    }
    total
}
