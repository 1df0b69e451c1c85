//! Runs the two parties of a session in threads over `Session::local(2)`, and the
//! communication formulas of the crate docs.
#![allow(dead_code)]

use cryptflow_backend::{Backend, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_twopc::TwoPc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs `f` on both parties (index = party id).
pub fn run<T: Send>(f: impl Fn(&mut TwoPc) -> T + Sync) -> Vec<T> {
    let sessions = Session::local(2);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    let mut p = TwoPc::new(session).expect("session setup");
                    f(&mut p)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("party thread panicked")).collect()
    })
}

/// Shares `inputs` (each from its owner), runs `op` on the shares, reveals the result to the
/// client. Returns the revealed value and the bytes each party sent during `op` only.
pub fn secure_eval(inputs: &[(Owner, RingTensor)], op: impl Fn(&mut TwoPc, &[RingTensor]) -> RingTensor + Sync) -> (RingTensor, [u64; 2]) {
    let out = run(|p| {
        let me = p.party_id();
        let shares: Vec<RingTensor> = inputs
            .iter()
            .map(|(owner, v)| {
                let mine = match owner {
                    Owner::ModelOwner => me == 0,
                    Owner::Client => me == 1,
                };
                p.share(*owner, v.shape(), if mine { Some(v) } else { None }).expect("share")
            })
            .collect();
        let before = p.traffic().bytes_sent;
        let z = op(p, &shares);
        let bytes = p.traffic().bytes_sent - before;
        (p.reveal(&z, Owner::Client).expect("reveal"), bytes)
    });
    let bytes = [out[0].1, out[1].1];
    assert!(out[0].0.is_none(), "only the client gets the output");
    (out.into_iter().nth(1).unwrap().0.unwrap(), bytes)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_tensor(rng: &mut StdRng, shape: &[usize]) -> RingTensor {
    let n = shape.iter().product();
    RingTensor::new(shape.to_vec(), (0..n).map(|_| rng.random::<u64>()).collect()).unwrap()
}

pub fn signed_tensor(rng: &mut StdRng, shape: &[usize], bound: i64) -> RingTensor {
    let n = shape.iter().product();
    RingTensor::new(shape.to_vec(), (0..n).map(|_| rng.random_range(-bound..bound) as u64).collect()).unwrap()
}

/// Values in `[-limit, limit)` (as i128 bounds, so that `limit = 2^63` covers the whole ring):
/// the limits and their neighbours, zero, +-1, small fixed-point values, uniform values.
pub fn comparison_values(rng: &mut StdRng, n: usize, limit: i128) -> Vec<u64> {
    let mut v: Vec<i128> = vec![0, 1, -1, -limit, -limit + 1, limit - 1, limit - 2, 2, -2, 4096, -4096];
    while v.len() < n {
        match v.len() % 3 {
            0 => v.push(rng.random_range(-limit..limit)),
            1 => v.push(rng.random_range(-(1 << 20)..(1 << 20))),
            _ => v.push(if rng.random::<bool>() { limit - rng.random_range(1..1000) } else { -limit + rng.random_range(0..1000) }),
        }
    }
    v.truncate(n);
    v.into_iter().map(|x| x as i64 as u64).collect()
}

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
