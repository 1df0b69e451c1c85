//! The primitives the secure math library is built from: DReLU (shared comparison bits), the
//! multiplexer and the batched matrix product, against the cleartext backend and with their
//! communication asserted exactly, for both variants.
//!
//! Bytes are summed over the three parties (as in Table III); rounds are those of the session
//! counters of the two share-holders (P0 and P1: see "Rounds" in the crate docs).

#![allow(clippy::needless_range_loop)]

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, BackendError, Owner, RingTensor, SharedBits, Traffic};
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_tensor::kernels;
use rand::Rng;

/// DReLU per element: ReLU's Table III bits minus one SelectShare (`5 l`); the compact one's.
fn drelu_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Compact => drelu_compact_bits(),
        v => relu_bits(v) - 5 * L,
    }
}

/// DReLU's rounds: ShareConvert 2 and ComputeMSB 3; the compact one's opening and
/// PrivateCompare.
fn drelu_rounds(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Compact => 2,
        _ => 5,
    }
}

/// The multiplexer (SelectShare): one elementwise product, `5 l` bits per element.
const MUX_BITS: u64 = 5 * L;

/// The batched product `[B,M,K] x [B,K,N]`: one Beaver product, `8 (2|A| + 2|B| + |Z|)`.
fn batch_matmul_bytes(b: usize, m: usize, k: usize, n: usize) -> u64 {
    8 * (2 * b * m * k + 2 * b * k * n + b * m * n) as u64
}

/// A public 1 as a share: the party that adds public constants holds it, the others zero.
fn ones(p: &Porthos, shape: &[usize]) -> RingTensor {
    RingTensor::filled(shape.to_vec(), p.adds_public_constants() as u64)
}

/// The bits as arithmetic values (`mux(bits, 1)`), to be revealed.
fn bits_as_values(p: &mut Porthos, bits: &SharedBits) -> RingTensor {
    let one = ones(p, bits.shape());
    p.mux(bits, &one).expect("mux")
}

fn mine(p: &Porthos, owner: Owner) -> bool {
    match owner {
        Owner::ModelOwner => p.party_id() == 0,
        Owner::Client => p.party_id() == 1,
    }
}

/// The trait's DReLU (`Porthos` has an inherent `drelu` on share vectors of the same name,
/// which method-call syntax would pick).
fn drelu(p: &mut Porthos, x: &RingTensor) -> cryptflow_backend::Result<SharedBits> {
    Backend::drelu(p, x)
}

/// What one party measured around one call.
fn delta(before: Traffic, after: Traffic) -> (u64, u64) {
    (after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
}

/// Total bytes over the parties and the rounds of P0 and P1 (which must agree).
fn totals(per_party: &[(u64, u64)]) -> (u64, u64) {
    assert_eq!(per_party[0].1, per_party[1].1, "P0 and P1 take the same rounds: {per_party:?}");
    (per_party.iter().map(|p| p.0).sum(), per_party[0].1)
}

#[test]
fn per_element_figures() {
    assert_eq!(drelu_bits(ProtocolVariant::Porthos) / 8, 496);
    assert_eq!(drelu_bits(ProtocolVariant::SecureNN) / 8, 664);
    assert_eq!(MUX_BITS / 8, 40);
    assert_eq!(drelu_bits(ProtocolVariant::Porthos) + MUX_BITS, relu_bits(ProtocolVariant::Porthos));
}

#[test]
fn drelu_is_exact_over_the_documented_range_and_costs_relu_minus_one_select() {
    for variant in VARIANTS {
        for (shape, owner, seed) in [(vec![1usize], Owner::Client, 1u64), (vec![300], Owner::Client, 2), (vec![5, 7, 3], Owner::ModelOwner, 3)] {
            let n: usize = shape.iter().product();
            let x = RingTensor::new(shape.clone(), comparison_values(&mut rng(seed), n, 1 << 62)).unwrap();
            let expected = Cleartext.drelu(&x).unwrap();
            let out = run(variant, |p| {
                let xs = p.share(owner, &shape, mine(p, owner).then_some(&x)).unwrap();
                let t0 = p.traffic();
                let bits = drelu(p, &xs).unwrap();
                let t1 = p.traffic();
                let vals = bits_as_values(p, &bits);
                let t2 = p.traffic();
                let revealed = p.reveal(&vals, Owner::Client).unwrap();
                (revealed, bits, delta(t0, t1), delta(t1, t2))
            });
            let got = out[1].0.clone().expect("the client's output");
            assert_eq!(got, expected.0, "{variant:?} DReLU {shape:?}");
            assert_eq!(out[1].1.shape(), &shape[..], "bits keep the shape");
            // The helper holds zeros, and P0 + P1 are arithmetic shares of the bit.
            assert!(out[2].1 .0.data().iter().all(|&v| v == 0), "{variant:?}: the helper's bits must be zero");
            for i in 0..n {
                assert_eq!(out[0].1 .0.data()[i].wrapping_add(out[1].1 .0.data()[i]), expected.0.data()[i]);
            }
            let (drelu_bytes, drelu_rounds) = totals(&out.iter().map(|o| o.2).collect::<Vec<_>>());
            assert_eq!(drelu_bytes * 8, n as u64 * drelu_bits(variant), "{variant:?} DReLU bytes, n = {n}");
            assert_eq!(drelu_rounds, self::drelu_rounds(variant), "{variant:?} DReLU rounds");
            let (mux_bytes, mux_rounds) = totals(&out.iter().map(|o| o.3).collect::<Vec<_>>());
            assert_eq!(mux_bytes * 8, n as u64 * MUX_BITS, "{variant:?} mux bytes, n = {n}");
            assert_eq!(mux_rounds, 1, "{variant:?} mux rounds");
        }
    }
}

#[test]
fn drelu_then_mux_is_relu_at_relus_cost() {
    for variant in VARIANTS {
        let n = 97;
        let x = RingTensor::new(vec![n], comparison_values(&mut rng(10), n, 1 << 62)).unwrap();
        let expected = Cleartext.relu(&x).unwrap();
        let out = run(variant, |p| {
            let xs = p.share(Owner::Client, &[n], mine(p, Owner::Client).then_some(&x)).unwrap();
            let t0 = p.traffic();
            let bits = drelu(p, &xs).unwrap();
            let y = p.mux(&bits, &xs).unwrap();
            let t1 = p.traffic();
            let z = p.relu(&xs).unwrap();
            let t2 = p.traffic();
            let (ry, rz) = (p.reveal(&y, Owner::Client).unwrap(), p.reveal(&z, Owner::Client).unwrap());
            (ry, rz, delta(t0, t1), delta(t1, t2))
        });
        assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{variant:?}");
        assert_eq!(out[1].1.as_ref().unwrap(), &expected, "{variant:?}");
        let composed = totals(&out.iter().map(|o| o.2).collect::<Vec<_>>());
        let relu = totals(&out.iter().map(|o| o.3).collect::<Vec<_>>());
        assert_eq!(relu, (n as u64 * relu_bits(variant) / 8, drelu_rounds(variant) + 1 - (variant == ProtocolVariant::Compact) as u64), "{variant:?}");
        if variant == ProtocolVariant::Compact {
            // ReLU fuses its selection into the comparison: cheaper than DReLU then SelectShare.
            assert_eq!(composed, (n as u64 * (drelu_bits(variant) + MUX_BITS) / 8, drelu_rounds(variant) + 1), "{variant:?}");
        } else {
            assert_eq!(composed, relu, "{variant:?}: mux(drelu(x), x) costs what relu(x) costs");
        }
    }
}

#[test]
fn drelu_bits_follow_data_movement() {
    // Bits computed on [2, 3], moved to [3, 2] (a transpose), select values of that shape.
    let x = RingTensor::new(vec![2, 3], [5i64, -1, 0, -7, 3, -(1 << 40)].iter().map(|&v| v as u64).collect()).unwrap();
    let y = RingTensor::new(vec![3, 2], (1..=6u64).map(|v| v * 100).collect()).unwrap();
    let bits_t = cryptflow_tensor::movement::transpose(&Cleartext.drelu(&x).unwrap().0, &[1, 0]).unwrap();
    let expected = Cleartext.mux(&SharedBits(bits_t), &y).unwrap();
    assert_eq!(expected.data(), &[100, 0, 0, 400, 500, 0]);
    for variant in VARIANTS {
        let (got, _) = secure_eval(variant, &[(Owner::Client, x.clone()), (Owner::ModelOwner, y.clone())], |p, s| {
            let bits = drelu(p, &s[0]).unwrap();
            let moved = bits.moved(|t| cryptflow_tensor::movement::transpose(t, &[1, 0])).unwrap();
            p.mux(&moved, &s[1]).unwrap()
        });
        assert_eq!(got, expected, "{variant:?}");
    }
}

/// Shares of the bits `b` in Porthos' representation: P0 `b - r`, P1 `r`, the helper zero.
fn share_bits(p: &Porthos, b: &[u64], r: &[u64], shape: &[usize]) -> SharedBits {
    let data = match p.party_id() {
        0 => b.iter().zip(r).map(|(&b, &r)| b.wrapping_sub(r)).collect(),
        1 => r.to_vec(),
        _ => vec![0; b.len()],
    };
    SharedBits(RingTensor::new(shape.to_vec(), data).unwrap())
}

#[test]
fn mux_is_exact_on_random_bits_and_uniform_values() {
    for variant in VARIANTS {
        for (shape, owner, seed) in [(vec![1usize], Owner::Client, 20u64), (vec![4, 9], Owner::ModelOwner, 21), (vec![513], Owner::Client, 22)] {
            let n: usize = shape.iter().product();
            let mut r = rng(seed);
            let b: Vec<u64> = (0..n).map(|_| r.random_range(0..2u64)).collect();
            let masks: Vec<u64> = (0..n).map(|_| r.random()).collect();
            let x = random_tensor(&mut r, &shape);
            let expected = Cleartext.mux(&SharedBits(RingTensor::new(shape.clone(), b.clone()).unwrap()), &x).unwrap();
            assert!(expected.data().iter().zip(&b).all(|(&e, &b)| b == 1 || e == 0));
            let out = run(variant, |p| {
                let xs = p.share(owner, &shape, mine(p, owner).then_some(&x)).unwrap();
                let bits = share_bits(p, &b, &masks, &shape);
                let t0 = p.traffic();
                let z = p.mux(&bits, &xs).unwrap();
                let t1 = p.traffic();
                (p.reveal(&z, Owner::Client).unwrap(), z, delta(t0, t1))
            });
            assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{variant:?} mux {shape:?}");
            assert!(out[2].1.data().iter().all(|&v| v == 0), "the helper's share must be zero");
            let (bytes, rounds) = totals(&out.iter().map(|o| o.2).collect::<Vec<_>>());
            assert_eq!(bytes, 40 * n as u64, "{variant:?} mux bytes, n = {n}");
            assert_eq!(rounds, 1, "{variant:?} mux rounds");
        }
    }
}

#[test]
fn empty_drelu_and_mux_cost_nothing() {
    for variant in VARIANTS {
        let out = run(variant, |p| {
            let x = RingTensor::zeros(vec![3, 0]);
            let t0 = p.traffic();
            let bits = drelu(p, &x).unwrap();
            let z = p.mux(&bits, &x).unwrap();
            (bits.shape().to_vec(), z.shape().to_vec(), p.traffic() == t0)
        });
        for o in out {
            assert_eq!(o, (vec![3, 0], vec![3, 0], true), "{variant:?}");
        }
    }
}

/// Both operands secret: from the client and the model owner, or both from the client.
const OWNERS: [(Owner, Owner); 2] = [(Owner::Client, Owner::ModelOwner), (Owner::Client, Owner::Client)];

/// `(B, M, K, N)`: one entry, several, K = 1, M = N = 1, and the zero-size edges.
const SHAPES: [(usize, usize, usize, usize); 9] =
    [(1, 3, 4, 5), (4, 2, 3, 2), (3, 5, 1, 4), (5, 1, 7, 1), (2, 6, 2, 3), (0, 3, 4, 5), (2, 0, 3, 4), (2, 3, 0, 4), (2, 3, 4, 0)];

#[test]
fn batch_matmul_matches_cleartext_in_one_beaver_product() {
    for variant in VARIANTS {
        for owners in OWNERS {
            for (t, &(b, m, k, n)) in SHAPES.iter().enumerate() {
                let mut r = rng(30 + t as u64);
                let x = random_tensor(&mut r, &[b, m, k]);
                let y = random_tensor(&mut r, &[b, k, n]);
                let expected = kernels::batch_matmul(&x, &y).unwrap();
                assert_eq!(Cleartext.batch_matmul(&x, &y).unwrap(), expected);
                let out = run(variant, |p| {
                    let xs = p.share(owners.0, &[b, m, k], mine(p, owners.0).then_some(&x)).unwrap();
                    let ys = p.share(owners.1, &[b, k, n], mine(p, owners.1).then_some(&y)).unwrap();
                    let t0 = p.traffic();
                    let z = p.batch_matmul(&xs, &ys).unwrap();
                    let t1 = p.traffic();
                    (p.reveal(&z, Owner::Client).unwrap(), z, delta(t0, t1))
                });
                let what = format!("{variant:?} {owners:?} batch_matmul [{b},{m},{k}] x [{b},{k},{n}]");
                assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{what}");
                assert!(out[2].1.data().iter().all(|&v| v == 0) && out[2].1.shape() == [b, m, n], "{what}: helper");
                let (bytes, rounds) = totals(&out.iter().map(|o| o.2).collect::<Vec<_>>());
                if b * m * n == 0 || k == 0 {
                    // The product is zeros of a public shape: nothing to communicate.
                    assert_eq!((bytes, rounds), (0, 0), "{what}");
                } else {
                    assert_eq!(bytes, batch_matmul_bytes(b, m, k, n), "{what}");
                    assert_eq!(rounds, 1, "{what}: the rounds of one MatMul");
                }
            }
        }
    }
}

#[test]
fn batch_matmul_takes_one_round_where_separate_products_take_one_each() {
    let (b, m, k, n) = (6, 3, 4, 2);
    let mut r = rng(40);
    let x = random_tensor(&mut r, &[b, m, k]);
    let y = random_tensor(&mut r, &[b, k, n]);
    let expected = kernels::batch_matmul(&x, &y).unwrap();
    for variant in VARIANTS {
        let out = run(variant, |p| {
            let xs = p.share(Owner::Client, &[b, m, k], mine(p, Owner::Client).then_some(&x)).unwrap();
            let ys = p.share(Owner::ModelOwner, &[b, k, n], mine(p, Owner::ModelOwner).then_some(&y)).unwrap();
            let t0 = p.traffic();
            let batched = p.batch_matmul(&xs, &ys).unwrap();
            let t1 = p.traffic();
            let mut separate = Vec::new();
            for i in 0..b {
                let xi = RingTensor::new(vec![m, k], xs.data()[i * m * k..(i + 1) * m * k].to_vec()).unwrap();
                let yi = RingTensor::new(vec![k, n], ys.data()[i * k * n..(i + 1) * k * n].to_vec()).unwrap();
                separate.extend_from_slice(p.matmul(&xi, &yi).unwrap().data());
            }
            let t2 = p.traffic();
            let separate = RingTensor::new(vec![b, m, n], separate).unwrap();
            let rb = p.reveal(&batched, Owner::Client).unwrap();
            let rs = p.reveal(&separate, Owner::Client).unwrap();
            (rb, rs, delta(t0, t1), delta(t1, t2))
        });
        assert_eq!(out[1].0.as_ref().unwrap(), &expected);
        assert_eq!(out[1].1.as_ref().unwrap(), &expected);
        let batched = totals(&out.iter().map(|o| o.2).collect::<Vec<_>>());
        let separate = totals(&out.iter().map(|o| o.3).collect::<Vec<_>>());
        assert_eq!(batched, (batch_matmul_bytes(b, m, k, n), 1), "{variant:?}");
        assert_eq!(separate, (batch_matmul_bytes(b, m, k, n), b as u64), "{variant:?}");
    }
}

fn is_shape_error<T: std::fmt::Debug>(r: &cryptflow_backend::Result<T>) -> bool {
    matches!(r, Err(BackendError::Shape(_)))
}

#[test]
fn malformed_mux_and_batch_matmul_fail_on_every_party_before_any_message() {
    for variant in VARIANTS {
        let out = run(variant, |p| {
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
        assert!(out.iter().all(|&o| o == (true, true, true, true, true)), "{variant:?}: {out:?}");
    }
}

/// `mul_pairs`: products of operands taken in pairs (squares included) equal the cleartext's;
/// the compact variant opens each operand once (`(2 k + pairs) n` words), the others pay one
/// Beaver product per pair (5 words per element).
#[test]
fn mul_pairs_open_each_operand_once_under_the_compact_variant() {
    let n = 301;
    let mut r = rng(77);
    let ops: Vec<RingTensor> = (0..3).map(|_| RingTensor::new(vec![n], (0..n).map(|_| r.random::<u64>()).collect()).unwrap()).collect();
    let pairs = [(0usize, 0usize), (0, 1), (2, 1), (1, 1)];
    let want: Vec<u64> = pairs.iter().flat_map(|&(i, j)| (0..n).map(move |t| (i, j, t))).map(|(i, j, t)| ops[i].data()[t].wrapping_mul(ops[j].data()[t])).collect();
    for variant in VARIANTS {
        let inputs = [(Owner::Client, ops[0].clone()), (Owner::ModelOwner, ops[1].clone()), (Owner::Client, ops[2].clone())];
        let (got, bytes) = secure_eval(variant, &inputs, |p, s| {
            let z = p.mul_pairs(&[&s[0], &s[1], &s[2]], &pairs).unwrap();
            RingTensor::new(vec![pairs.len() * n], z.iter().flat_map(|z| z.data().to_vec()).collect()).unwrap()
        });
        assert_eq!(got.data(), &want[..], "{variant:?}");
        let words = match variant {
            ProtocolVariant::Compact => (2 * 3 + pairs.len()) * n,
            _ => 5 * pairs.len() * n,
        };
        assert_eq!(bytes, 8 * words as u64, "{variant:?}");
    }
}

/// `matmul_weight`: under the compact variant the owner's weights are shared whole (the
/// client's share is zero) and the owner alone opens a weight's mask: `8 (2 |X| + |W| + |Z|)`
/// bytes against Porthos' `8 (2 |X| + 2 |W| + |Z|)`; with kept masks a later product opens
/// only `X`'s. Products equal the cleartext's in every case.
#[test]
fn weight_products_open_the_weight_from_the_owner_alone_under_the_compact_variant() {
    let (m, k, n) = (3usize, 17usize, 5usize);
    let mut r = rng(78);
    let x = RingTensor::new(vec![m, k], (0..m * k).map(|_| r.random::<u64>()).collect()).unwrap();
    let w = RingTensor::new(vec![k, n], (0..k * n).map(|_| r.random::<u64>()).collect()).unwrap();
    let want = Cleartext.matmul(&x, &w).unwrap();
    for variant in VARIANTS {
        for keep in [false, true] {
            let out = run(variant, |p| {
                p.set_weight_mask_reuse(keep).unwrap();
                let me = p.party_id();
                let ws = p.share(Owner::ModelOwner, &[k, n], (me == 0).then_some(&w)).unwrap();
                let xs = p.share(Owner::Client, &[m, k], (me == 1).then_some(&x)).unwrap();
                let mut bytes = Vec::new();
                let mut outs = Vec::new();
                for _ in 0..2 {
                    let before = p.traffic().bytes_sent;
                    let z = p.matmul_weight(&xs, &ws, 7).unwrap();
                    bytes.push(p.traffic().bytes_sent - before);
                    outs.push(p.reveal(&z, Owner::Client).unwrap());
                }
                (outs, bytes)
            });
            for step in 0..2 {
                assert_eq!(out[1].0[step].as_ref().unwrap(), &want, "{variant:?} keep {keep} step {step}");
            }
            let total = |step: usize| out.iter().map(|o| o.1[step]).sum::<u64>();
            let (x_len, w_len, z_len) = ((m * k) as u64, (k * n) as u64, (m * n) as u64);
            let w_words = match variant {
                ProtocolVariant::Compact => w_len,
                _ => 2 * w_len,
            };
            assert_eq!(total(0), 8 * (2 * x_len + w_words + z_len), "{variant:?} keep {keep} first product");
            let later = if keep { 0 } else { w_words };
            assert_eq!(total(1), 8 * (2 * x_len + later + z_len), "{variant:?} keep {keep} second product");
        }
    }
}
