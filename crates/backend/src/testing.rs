//! Test support for backends (feature `testing`): the parties of a session as threads, and a
//! secure evaluation from plaintext inputs to the revealed result. Shared by the protocol
//! crates' tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Backend, BackendError, Owner, RingTensor};

/// Runs `f` on every party, each in its own thread with the backend `make` builds from its
/// session (index = party id), and returns the results in party order.
pub fn run_parties<S: Send, B, T: Send>(sessions: Vec<S>, make: impl Fn(S) -> B + Sync, f: impl Fn(&mut B) -> T + Sync) -> Vec<T> {
    run_parties_by_value(sessions, make, |_, mut backend| f(&mut backend))
}

/// [`run_parties`] with `f` given the party id and the backend itself (to drop it, as a party
/// that crashes would).
pub fn run_parties_by_value<S: Send, B, T: Send>(sessions: Vec<S>, make: impl Fn(S) -> B + Sync, f: impl Fn(usize, B) -> T + Sync) -> Vec<T> {
    let (make, f) = (&make, &f);
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(id, session)| s.spawn(move || f(id, make(session))))
            .collect();
        handles.into_iter().map(|h| h.join().expect("party thread panicked")).collect()
    })
}

/// The peer a protocol error names; any other error is a test failure.
pub fn peer_of(e: &BackendError) -> usize {
    match e {
        BackendError::Peer { peer, .. } => *peer,
        other => panic!("expected a peer error, got {other}"),
    }
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

/// Values for comparisons in `[-limit, limit)` (i128 bounds, so that `limit = 2^63` covers the
/// whole ring): the limits and their neighbours, zero, +-1, small fixed-point values, and
/// uniform values.
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

/// One party's part of a secure evaluation: shares `inputs` (each from its owner), runs `op` on
/// the shares and reveals the result to the client. Returns what the party got revealed and
/// the bytes it sent during `op` alone.
pub fn evaluate<B: Backend>(
    backend: &mut B,
    inputs: &[(Owner, RingTensor)],
    op: impl Fn(&mut B, &[RingTensor]) -> RingTensor,
) -> (Option<RingTensor>, RingTensor, u64) {
    let me = backend.party_id();
    let shares: Vec<RingTensor> = inputs
        .iter()
        .map(|(owner, v)| {
            let mine = match owner {
                Owner::ModelOwner => me == 0,
                Owner::Client => me == 1,
            };
            backend.share(*owner, v.shape(), mine.then_some(v)).expect("share")
        })
        .collect();
    let before = backend.traffic().bytes_sent;
    let z = op(backend, &shares);
    let bytes = backend.traffic().bytes_sent - before;
    let revealed = backend.reveal(&z, Owner::Client).expect("reveal");
    (revealed, z, bytes)
}

/// The client's revealed value among the parties' results of [`evaluate`], checking that no
/// other party got one.
pub fn client_output(results: &[(Option<RingTensor>, RingTensor, u64)]) -> RingTensor {
    for (i, (r, _, _)) in results.iter().enumerate() {
        assert_eq!(r.is_some(), i == 1, "only the client (party 1) gets the output");
    }
    results[1].0.clone().expect("the client's output")
}
