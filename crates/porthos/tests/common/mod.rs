//! Runs the three parties of a session in threads over `Session::local(3)`.
#![allow(dead_code)]

use cryptflow_backend::{Backend, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const VARIANTS: [ProtocolVariant; 2] = [ProtocolVariant::Porthos, ProtocolVariant::SecureNN];

/// Runs `f` on every party (index = party id) and returns the three results.
pub fn run<T: Send>(variant: ProtocolVariant, f: impl Fn(&mut Porthos) -> T + Sync) -> Vec<T> {
    let sessions = Session::local(3);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    let mut p = Porthos::new(session, variant).expect("session setup");
                    f(&mut p)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("party thread panicked")).collect()
    })
}

/// Bytes this party sends while running `op`.
pub fn measured<T>(p: &mut Porthos, op: impl FnOnce(&mut Porthos) -> T) -> (T, u64) {
    let before = p.traffic().bytes_sent;
    let r = op(p);
    (r, p.traffic().bytes_sent - before)
}

/// Shares `values` (owned by the model owner or the client, alternately), runs `op` on the
/// shares, reveals the result to the client. Returns the revealed result and the bytes sent
/// by all three parties during `op` only.
pub fn secure_eval(
    variant: ProtocolVariant,
    inputs: &[(Owner, RingTensor)],
    op: impl Fn(&mut Porthos, &[RingTensor]) -> RingTensor + Sync,
) -> (RingTensor, u64) {
    let out = run(variant, |p| {
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
        let (z, bytes) = measured(p, |p| op(p, &shares));
        if me == 2 {
            assert!(z.data().iter().all(|&v| v == 0), "the helper's share must be zero");
        }
        let revealed = p.reveal(&z, Owner::Client).expect("reveal");
        (revealed, bytes)
    });
    let bytes = out.iter().map(|(_, b)| b).sum();
    let mut revealed = None;
    for (i, (r, _)) in out.into_iter().enumerate() {
        assert_eq!(r.is_some(), i == 1, "only the client gets the output");
        if i == 1 {
            revealed = r;
        }
    }
    (revealed.unwrap(), bytes)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform ring elements.
pub fn random_tensor(rng: &mut StdRng, shape: &[usize]) -> RingTensor {
    let n = shape.iter().product();
    RingTensor::new(shape.to_vec(), (0..n).map(|_| rng.random::<u64>()).collect()).unwrap()
}

/// Signed values in `[-bound, bound)`.
pub fn signed_tensor(rng: &mut StdRng, shape: &[usize], bound: i64) -> RingTensor {
    let n = shape.iter().product();
    RingTensor::new(shape.to_vec(), (0..n).map(|_| rng.random_range(-bound..bound) as u64).collect()).unwrap()
}

/// Values for comparisons in `[-limit, limit)`: the limits themselves and their neighbours,
/// zero, +-1, small fixed-point values, and uniform values over the whole range.
pub fn comparison_values(rng: &mut StdRng, n: usize, limit: i64) -> Vec<u64> {
    let mut v: Vec<i64> = vec![0, 1, -1, -limit, -limit + 1, limit - 1, limit - 2, 2, -2, 4096, -4096];
    while v.len() < n {
        match v.len() % 3 {
            0 => v.push(rng.random_range(-limit..limit)),
            1 => v.push(rng.random_range(-(1 << 20)..(1 << 20))),
            _ => v.push(if rng.random::<bool>() { limit - rng.random_range(1..1000) } else { -limit + rng.random_range(0..1000) }),
        }
    }
    v.truncate(n);
    v.into_iter().map(|x| x as u64).collect()
}

// Table III: bits per element (l = 64, log p = 8).
pub const L: u64 = 64;
pub const LOG_P: u64 = 8;

pub fn share_convert_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 3 * L * LOG_P + 5 * L,
        ProtocolVariant::SecureNN => 4 * L * LOG_P + 6 * L,
    }
}

pub fn compute_msb_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 3 * L * LOG_P + 9 * L,
        ProtocolVariant::SecureNN => 4 * L * LOG_P + 13 * L,
    }
}

pub fn relu_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 6 * L * LOG_P + 19 * L,
        ProtocolVariant::SecureNN => 8 * L * LOG_P + 24 * L,
    }
}

