//! The primitives the secure math library is built from: the millionaires' DReLU (XOR-shared
//! bits), the OT multiplexer and the batched matrix product, against the cleartext backend,
//! with communication asserted word for word against the crate docs' formulas (per party).

#![allow(clippy::needless_range_loop)]

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, BackendError, Owner, RingTensor, SharedBits, Traffic};
use cryptflow_tensor::kernels;
use cryptflow_twopc::TwoPc;
use rand::Rng;

/// The trait's DReLU (`TwoPc` has an inherent `drelu` on share vectors of the same name, which
/// method-call syntax would pick).
fn drelu(p: &mut TwoPc, x: &RingTensor) -> cryptflow_backend::Result<SharedBits> {
    Backend::drelu(p, x)
}

/// A public 1 as a share: the party that adds public constants holds it, the other zero.
fn ones(p: &TwoPc, shape: &[usize]) -> RingTensor {
    RingTensor::filled(shape.to_vec(), p.adds_public_constants() as u64)
}

fn mine(p: &TwoPc, owner: Owner) -> bool {
    (owner == Owner::ModelOwner) == (p.party_id() == 0)
}

/// Bytes sent and rounds between two readings of one party's counters.
fn delta(before: Traffic, after: Traffic) -> (u64, u64) {
    (after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
}

/// Per-party bytes and rounds of the runs' measurement `f`.
fn per_party<T>(out: &[T], f: impl Fn(&T) -> (u64, u64)) -> ([u64; 2], [u64; 2]) {
    let (a, b) = (f(&out[0]), f(&out[1]));
    ([a.0, b.0], [a.1, b.1])
}

#[test]
fn drelu_is_exact_on_the_whole_ring_and_costs_the_documented_words() {
    for (shape, owner, seed) in [
        (vec![1usize], Owner::Client, 1u64),
        (vec![200], Owner::Client, 2),
        (vec![5, 7, 3], Owner::ModelOwner, 3),
        (vec![64], Owner::ModelOwner, 4),
    ] {
        let n: usize = shape.iter().product();
        let x = RingTensor::new(shape.clone(), comparison_values(&mut rng(seed), n, 1i128 << 63)).unwrap();
        let expected = Cleartext.drelu(&x).unwrap();
        let out = run(|p| {
            let xs = p.share(owner, &shape, mine(p, owner).then_some(&x)).unwrap();
            let t0 = p.traffic();
            let bits = drelu(p, &xs).unwrap();
            let t1 = p.traffic();
            let one = ones(p, &shape);
            let vals = p.mux(&bits, &one).unwrap();
            let t2 = p.traffic();
            (p.reveal(&vals, Owner::Client).unwrap(), bits, delta(t0, t1), delta(t1, t2))
        });
        let what = format!("DReLU {shape:?} from {owner:?}");
        assert_eq!(out[1].0.as_ref().unwrap(), &expected.0, "{what}");
        // XOR shares: one bit per ring element.
        assert_eq!(out[0].1.shape(), &shape[..]);
        for i in 0..n {
            let (b0, b1) = (out[0].1 .0.data()[i], out[1].1 .0.data()[i]);
            assert!(b0 <= 1 && b1 <= 1, "{what}: bit shares are 0 or 1");
            assert_eq!(b0 ^ b1, expected.0.data()[i], "{what}: element {i}");
        }
        let n = n as u64;
        let (bytes, rounds) = per_party(&out, |o| o.2);
        assert_eq!(bytes, common::bytes(common::drelu(n)), "{what} bytes");
        assert_eq!(rounds, [5, 5], "{what} rounds");
        let (bytes, rounds) = per_party(&out, |o| o.3);
        assert_eq!(bytes, [8 * select(n); 2], "{what}: multiplexer bytes");
        assert_eq!(rounds, [2, 2], "{what}: multiplexer rounds");
    }
}

#[test]
fn drelu_then_mux_is_relu_at_relus_cost() {
    let n = 77;
    let x = RingTensor::new(vec![n], comparison_values(&mut rng(10), n, 1i128 << 63)).unwrap();
    let expected = Cleartext.relu(&x).unwrap();
    let out = run(|p| {
        let xs = p.share(Owner::Client, &[n], mine(p, Owner::Client).then_some(&x)).unwrap();
        // Same counter state before both measurements: each follows a ReLU.
        p.relu(&xs).unwrap();
        let t0 = p.traffic();
        let bits = drelu(p, &xs).unwrap();
        let y = p.mux(&bits, &xs).unwrap();
        let t1 = p.traffic();
        let z = p.relu(&xs).unwrap();
        let t2 = p.traffic();
        (p.reveal(&y, Owner::Client).unwrap(), p.reveal(&z, Owner::Client).unwrap(), delta(t0, t1), delta(t1, t2))
    });
    assert_eq!(out[1].0.as_ref().unwrap(), &expected);
    assert_eq!(out[1].1.as_ref().unwrap(), &expected);
    let composed = per_party(&out, |o| o.2);
    let relu = per_party(&out, |o| o.3);
    assert_eq!(composed, relu, "mux(drelu(x), x) costs what relu(x) costs");
    assert_eq!(relu, (relu_bytes(n as u64), [7, 7]));
}

#[test]
fn drelu_bits_follow_data_movement() {
    let x = RingTensor::new(vec![2, 3], [5i64, -1, 0, -7, 3, i64::MIN].iter().map(|&v| v as u64).collect()).unwrap();
    let y = RingTensor::new(vec![3, 2], (1..=6u64).map(|v| v * 100).collect()).unwrap();
    let bits_t = cryptflow_tensor::movement::transpose(&Cleartext.drelu(&x).unwrap().0, &[1, 0]).unwrap();
    let expected = Cleartext.mux(&SharedBits(bits_t), &y).unwrap();
    assert_eq!(expected.data(), &[100, 0, 0, 400, 500, 0]);
    let (got, _) = secure_eval(&[(Owner::Client, x), (Owner::ModelOwner, y)], |p, s| {
        let bits = drelu(p, &s[0]).unwrap();
        let moved = bits.moved(|t| cryptflow_tensor::movement::transpose(t, &[1, 0])).unwrap();
        p.mux(&moved, &s[1]).unwrap()
    });
    assert_eq!(got, expected);
}

#[test]
fn mux_is_exact_on_random_bits_and_uniform_values() {
    for (shape, owner, seed) in [(vec![1usize], Owner::Client, 20u64), (vec![4, 9], Owner::ModelOwner, 21), (vec![130], Owner::Client, 22)] {
        let n: usize = shape.iter().product();
        let mut r = rng(seed);
        let b: Vec<u64> = (0..n).map(|_| r.random_range(0..2u64)).collect();
        let masks: Vec<u64> = (0..n).map(|_| r.random_range(0..2u64)).collect();
        let x = random_tensor(&mut r, &shape);
        let expected = Cleartext.mux(&SharedBits(RingTensor::new(shape.clone(), b.clone()).unwrap()), &x).unwrap();
        let out = run(|p| {
            let xs = p.share(owner, &shape, mine(p, owner).then_some(&x)).unwrap();
            // 2PC's representation: XOR shares, P0 `b ^ r`, P1 `r`.
            let data = if p.party_id() == 0 { b.iter().zip(&masks).map(|(&b, &r)| b ^ r).collect() } else { masks.clone() };
            let bits = SharedBits(RingTensor::new(shape.clone(), data).unwrap());
            let t0 = p.traffic();
            let z = p.mux(&bits, &xs).unwrap();
            let t1 = p.traffic();
            (p.reveal(&z, Owner::Client).unwrap(), delta(t0, t1))
        });
        assert_eq!(out[1].0.as_ref().unwrap(), &expected, "mux {shape:?} from {owner:?}");
        let (bytes, rounds) = per_party(&out, |o| o.1);
        assert_eq!(bytes, [8 * select(n as u64); 2], "mux {shape:?} bytes");
        assert_eq!(rounds, [2, 2], "mux {shape:?} rounds");
    }
}

#[test]
fn empty_drelu_and_mux_cost_nothing() {
    let out = run(|p| {
        let x = RingTensor::zeros(vec![0, 4]);
        let t0 = p.traffic();
        let bits = drelu(p, &x).unwrap();
        let z = p.mux(&bits, &x).unwrap();
        (bits.shape().to_vec(), z.shape().to_vec(), p.traffic() == t0)
    });
    for o in out {
        assert_eq!(o, (vec![0, 4], vec![0, 4], true));
    }
}

const OWNERS: [(Owner, Owner); 4] = [
    (Owner::Client, Owner::ModelOwner),
    (Owner::Client, Owner::Client),
    (Owner::ModelOwner, Owner::Client),
    (Owner::ModelOwner, Owner::ModelOwner),
];

/// `(B, M, K, N)`: one entry, several (bits of `A` and of `B`), K = 1, M = N = 1, and the
/// zero-size edges.
const SHAPES: [(usize, usize, usize, usize); 10] = [
    (1, 3, 4, 5),
    (4, 2, 3, 2),
    (3, 5, 1, 4),
    (5, 1, 7, 1),
    (2, 6, 2, 3),
    (3, 4, 2, 1),
    (0, 3, 4, 5),
    (2, 0, 3, 4),
    (2, 3, 0, 4),
    (2, 3, 4, 0),
];

/// Words per party of `[B,M,K] x [B,K,N]`: `cross_grouped` with one group per entry, i.e. one
/// OT product over all entries: bits of `A` (`s = BMK`, `w = N`) when `MK <= KN`, else of `B`
/// (`s = BKN`, `w = M`). Nothing at all when the result is empty or `K = 0`.
fn batch_matmul_words(owners: (Owner, Owner), b: usize, m: usize, k: usize, n: usize) -> [u64; 2] {
    if b * m * n == 0 || k == 0 {
        return [0, 0];
    }
    let dec_a = m * k <= k * n;
    let (s, w) = if dec_a { (b * m * k, n) } else { (b * k * n, m) };
    product_words(owners, s as u64, w as u64, dec_a)
}

#[test]
fn batch_matmul_matches_cleartext_with_the_rounds_of_one_matmul() {
    for owners in OWNERS {
        for (t, &(b, m, k, n)) in SHAPES.iter().enumerate() {
            let mut r = rng(30 + t as u64);
            let x = random_tensor(&mut r, &[b, m, k]);
            let y = random_tensor(&mut r, &[b, k, n]);
            let expected = kernels::batch_matmul(&x, &y).unwrap();
            let out = run(|p| {
                let xs = p.share(owners.0, &[b, m, k], mine(p, owners.0).then_some(&x)).unwrap();
                let ys = p.share(owners.1, &[b, k, n], mine(p, owners.1).then_some(&y)).unwrap();
                // One MatMul of the first entry, then the batch, each after the same reveal.
                let entry = if b > 0 {
                    let x0 = RingTensor::new(vec![m, k], xs.data()[..m * k].to_vec()).unwrap();
                    let y0 = RingTensor::new(vec![k, n], ys.data()[..k * n].to_vec()).unwrap();
                    p.reveal(&RingTensor::zeros(vec![1]), Owner::Client).unwrap();
                    let t0 = p.traffic();
                    p.matmul(&x0, &y0).unwrap();
                    delta(t0, p.traffic())
                } else {
                    (0, 0)
                };
                p.reveal(&RingTensor::zeros(vec![1]), Owner::Client).unwrap();
                let t0 = p.traffic();
                let z = p.batch_matmul(&xs, &ys).unwrap();
                let batched = delta(t0, p.traffic());
                (p.reveal(&z, Owner::Client).unwrap(), batched, entry)
            });
            let what = format!("{owners:?} batch_matmul [{b},{m},{k}] x [{b},{k},{n}]");
            assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{what}");
            let (bytes, rounds) = per_party(&out, |o| o.1);
            assert_eq!(bytes, common::bytes(batch_matmul_words(owners, b, m, k, n)), "{what}");
            let (one_matmul_bytes, one_matmul_rounds) = per_party(&out, |o| o.2);
            assert_eq!(rounds, one_matmul_rounds, "{what}: the rounds of one MatMul");
            if b * m * n == 0 || k == 0 {
                assert_eq!(rounds, [0, 0], "{what}");
            } else {
                assert!(rounds[0] >= 1 && rounds.iter().all(|&r| r <= 3), "{what}: {rounds:?}");
                // The words of B separate MatMuls but for their B - 1 extra flag words.
                let b = b as u64;
                assert_eq!([b * one_matmul_bytes[0], b * one_matmul_bytes[1]], [bytes[0], bytes[1] + 8 * (b - 1)], "{what}");
            }
        }
    }
}

#[test]
fn batch_matmul_in_small_ot_batches_is_exact_with_the_same_bytes() {
    // Batches of OT-product rows that cut through batch entries (entries of 3 rows).
    let (b, m, k, n) = (4, 3, 2, 5);
    let mut r = rng(40);
    let x = random_tensor(&mut r, &[b, m, k]);
    let y = random_tensor(&mut r, &[b, k, n]);
    let expected = kernels::batch_matmul(&x, &y).unwrap();
    for owners in [(Owner::Client, Owner::Client), (Owner::Client, Owner::ModelOwner)] {
        let out = run(|p| {
            p.set_batch_words(2 * k * 163);
            let xs = p.share(owners.0, &[b, m, k], mine(p, owners.0).then_some(&x)).unwrap();
            let ys = p.share(owners.1, &[b, k, n], mine(p, owners.1).then_some(&y)).unwrap();
            let t0 = p.traffic();
            let z = p.batch_matmul(&xs, &ys).unwrap();
            let d = delta(t0, p.traffic());
            (p.reveal(&z, Owner::Client).unwrap(), d)
        });
        assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{owners:?}");
        let (bytes, rounds) = per_party(&out, |o| o.1);
        assert_eq!(bytes, common::bytes(batch_matmul_words(owners, b, m, k, n)), "{owners:?}");
        assert!(rounds[1] >= 6, "{owners:?}: {rounds:?} (six batches of two rows)");
    }
}

fn is_shape_error<T: std::fmt::Debug>(r: &cryptflow_backend::Result<T>) -> bool {
    matches!(r, Err(BackendError::Shape(_)))
}

#[test]
fn malformed_mux_and_batch_matmul_fail_on_both_parties_before_any_message() {
    let out = run(|p| {
        let before = p.traffic();
        let bits = SharedBits(RingTensor::zeros(vec![2, 3]));
        let mux_shape = is_shape_error(&p.mux(&bits, &RingTensor::zeros(vec![3, 2])));
        let mux_len = is_shape_error(&p.mux(&bits, &RingTensor::zeros(vec![6])));
        let z = |s: &[usize]| RingTensor::zeros(s.to_vec());
        let bad_products = [
            (z(&[2, 3, 4]), z(&[3, 4, 5])), // batch sizes differ
            (z(&[2, 3, 4]), z(&[2, 5, 6])), // inner dimensions differ
            (z(&[3, 4]), z(&[4, 5])),       // rank 2
            (z(&[1, 2, 3, 4]), z(&[1, 2, 4, 5])),
            (z(&[2, 3, 4]), z(&[2, 4])),
            (z(&[0, 3, 4]), z(&[0, 5, 6])), // empty, but still mismatched
        ];
        let products = bad_products.iter().all(|(a, b)| is_shape_error(&p.batch_matmul(a, b)));
        let quiet = p.traffic() == before;
        // The parties are still in step: a valid product follows.
        let ok = p.batch_matmul(&z(&[2, 2, 2]), &z(&[2, 2, 2])).is_ok();
        (mux_shape, mux_len, products, quiet, ok)
    });
    assert!(out.iter().all(|&o| o == (true, true, true, true, true)), "{out:?}");
}
