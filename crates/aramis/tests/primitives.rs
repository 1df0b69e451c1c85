//! Aramis around Porthos runs the math library's primitives (DReLU, the multiplexer, the
//! batched product) with plain Porthos' results and exactly plain Porthos' protocol payload,
//! operation by operation and party by party; malformed calls fail with the shape error on
//! every party without aborting the session.

use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_aramis::{protect, Aramis, Options};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, BackendError, Owner, RingTensor, SharedBits};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use ed25519_dalek::SigningKey;

/// Deterministic ring elements (splitmix64).
fn values(seed: u64, n: usize) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

const N: usize = 50;
/// The batched products: `[B, M, K] x [B, K, NN]`.
const B: usize = 3;
const M: usize = 2;
const K: usize = 4;
const NN: usize = 5;

/// Inputs: `x` for comparisons (the client's, in Porthos' range `[-2^62, 2^62)`, with the
/// edges), `y` uniform (the model owner's), `a` (client) and `b`, `c` (model owner, client).
fn inputs() -> [RingTensor; 5] {
    let mut x: Vec<u64> = values(1, N).into_iter().map(|v| ((v as i64) >> 2) as u64).collect();
    x[..6].copy_from_slice(&[0, 1, u64::MAX, (-(1i64 << 62)) as u64, ((1i64 << 62) - 1) as u64, 4096]);
    [
        RingTensor::new(vec![N], x).unwrap(),
        RingTensor::new(vec![N], values(2, N)).unwrap(),
        RingTensor::new(vec![B, M, K], values(3, B * M * K)).unwrap(),
        RingTensor::new(vec![B, K, NN], values(4, B * K * NN)).unwrap(),
        RingTensor::new(vec![B, K, NN], values(5, B * K * NN)).unwrap(),
    ]
}

/// The client's outputs in the clear: `[x >= 0]`, `[x >= 0] * y`, `a b`, `a c`.
fn expected() -> Vec<RingTensor> {
    let [x, y, a, b, c] = inputs();
    let mut clear = Cleartext;
    let bits = clear.drelu(&x).unwrap();
    vec![bits.0.clone(), clear.mux(&bits, &y).unwrap(), clear.batch_matmul(&a, &b).unwrap(), clear.batch_matmul(&a, &c).unwrap()]
}

/// What one party observes: the client's outputs, the protocol payload bytes it sent in each
/// operation (drelu, mux by ones, mux by y, batch_matmul twice), and whether the malformed
/// calls failed with a shape error and no payload.
#[derive(Debug, PartialEq)]
struct Observed {
    outputs: Vec<Option<RingTensor>>,
    payload_per_op: Vec<u64>,
    malformed_rejected: bool,
}

fn program<P: Backend>(p: &mut P, payload: impl Fn(&P) -> u64) -> cryptflow_backend::Result<Observed> {
    let [x, y, a, b, c] = inputs();
    let owner = p.party_id() == 0;
    let client = p.party_id() == 1;
    let xs = p.share(Owner::Client, &[N], client.then_some(&x))?;
    let ys = p.share(Owner::ModelOwner, &[N], owner.then_some(&y))?;
    let as_ = p.share(Owner::Client, &[B, M, K], client.then_some(&a))?;
    let bs = p.share(Owner::ModelOwner, &[B, K, NN], owner.then_some(&b))?;
    let cs = p.share(Owner::Client, &[B, K, NN], client.then_some(&c))?;
    let mut per_op = Vec::new();
    let mut measure = |p: &mut P, f: &mut dyn FnMut(&mut P) -> cryptflow_backend::Result<RingTensor>| {
        let before = payload(p);
        let r = f(p);
        per_op.push(payload(p) - before);
        r
    };
    let mut bits = None;
    let ones = RingTensor::filled(vec![N], p.adds_public_constants() as u64);
    measure(p, &mut |p| {
        bits = Some(p.drelu(&xs)?);
        Ok(RingTensor::zeros(vec![0]))
    })?;
    let bits = bits.unwrap();
    let d = measure(p, &mut |p| p.mux(&bits, &ones))?;
    let s = measure(p, &mut |p| p.mux(&bits, &ys))?;
    let ab = measure(p, &mut |p| p.batch_matmul(&as_, &bs))?;
    let ac = measure(p, &mut |p| p.batch_matmul(&as_, &cs))?;
    // Malformed calls: a shape error on every party, nothing sent, the session goes on.
    let before = payload(p);
    let shape = |r: cryptflow_backend::Result<RingTensor>| matches!(r, Err(BackendError::Shape(_)));
    let rejected = shape(p.mux(&SharedBits(RingTensor::zeros(vec![N + 1])), &ys))
        && shape(p.batch_matmul(&as_, &as_))
        && shape(p.batch_matmul(&RingTensor::zeros(vec![2, M, K]), &bs))
        && payload(p) == before;
    let mut outputs = Vec::new();
    for t in [d, s, ab, ac] {
        outputs.push(p.reveal(&t, Owner::Client)?);
    }
    Ok(Observed { outputs, payload_per_op: per_op, malformed_rejected: rejected })
}

/// Each party's observation and total protocol payload, with Aramis or without.
fn run(aramis: bool) -> Vec<(Observed, u64)> {
    let sessions = Session::local(3);
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    if !aramis {
                        let mut p = Porthos::new(session, ProtocolVariant::Porthos).unwrap();
                        let o = program(&mut p, |p| p.traffic().bytes_sent).unwrap();
                        return (o, p.traffic().bytes_sent);
                    }
                    let attestor = SoftwareAttestor::new(SigningKey::from_bytes(&[42; 32]), [7; 32]);
                    let (session, handle) = protect(session, &attestor, Options::new(b"primitives".to_vec())).unwrap();
                    let mut p = Aramis::new(Porthos::new(session, ProtocolVariant::Porthos).unwrap(), handle);
                    let o = program(&mut p, |p| p.payload_traffic().bytes_sent).unwrap();
                    assert!(p.traffic().bytes_sent > p.payload_traffic().bytes_sent, "Aramis adds its envelopes");
                    (o, p.payload_traffic().bytes_sent)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn primitives_under_aramis_match_porthos_with_the_same_payload() {
    let plain = run(false);
    let protected = run(true);
    let expected = expected();
    for (label, runs) in [("porthos", &plain), ("aramis", &protected)] {
        let outputs: Vec<RingTensor> = runs[1].0.outputs.iter().map(|o| o.clone().expect("the client's output")).collect();
        assert_eq!(outputs, expected, "{label}");
        assert!(runs[0].0.outputs.iter().chain(&runs[2].0.outputs).all(Option::is_none), "{label}: only the client gets outputs");
        assert!(runs.iter().all(|r| r.0.malformed_rejected), "{label}");
        // Summed over the parties: DReLU 496 bytes per element, the multiplexer 40, each
        // batched product one Beaver product 8 (2|A| + 2|B| + |Z|).
        let total = |op: usize| runs.iter().map(|r| r.0.payload_per_op[op]).sum::<u64>();
        let product = 8 * (2 * B * M * K + 2 * B * K * NN + B * M * NN) as u64;
        assert_eq!((0..5).map(total).collect::<Vec<_>>(), vec![496 * N as u64, 40 * N as u64, 40 * N as u64, product, product], "{label}");
    }
    for i in 0..3 {
        assert_eq!(protected[i].0, plain[i].0, "party {i}: outputs and payload per operation");
        assert_eq!(protected[i].1, plain[i].1, "party {i}: total payload");
    }
}
