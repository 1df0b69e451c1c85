//! ShareConvert, ComputeMSB, DReLU/ReLU, MaxPool and ArgMax against cleartext, with the
//! communication of Table III asserted byte for byte for both variants.
//!
//! Bytes are counted by the sessions (8 per 64-bit word; Z_p elements packed 8 to a word) and
//! summed over the three parties; Table III counts bits with l = 64 and log p = 8.

#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, Owner, PoolGeometry, RingTensor};
use cryptflow_porthos::ring::{add_zl1, sub_zl1, ZL1_MODULUS};
use cryptflow_porthos::ProtocolVariant;
use cryptflow_tensor::Layout;
use rand::Rng;

/// Per comparison of MaxPool_n (times n - 1).
fn maxpool_bits(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos => 6 * L * LOG_P + 24 * L,
        ProtocolVariant::SecureNN => 8 * L * LOG_P + 29 * L,
        ProtocolVariant::Compact => drelu_compact_bits() + 6 * L,
    }
}

#[test]
fn table_iii_per_element_figures() {
    // The bytes per element the protocols must send (Table III / 8).
    assert_eq!(share_convert_bits(ProtocolVariant::Porthos) / 8, 232);
    assert_eq!(share_convert_bits(ProtocolVariant::SecureNN) / 8, 304);
    assert_eq!(compute_msb_bits(ProtocolVariant::Porthos) / 8, 264);
    assert_eq!(compute_msb_bits(ProtocolVariant::SecureNN) / 8, 360);
    assert_eq!(relu_bits(ProtocolVariant::Porthos) / 8, 536);
    assert_eq!(relu_bits(ProtocolVariant::SecureNN) / 8, 704);
    assert_eq!(maxpool_bits(ProtocolVariant::Porthos) / 8, 576);
    assert_eq!(maxpool_bits(ProtocolVariant::SecureNN) / 8, 744);
}

/// Splits `values` into two additive shares over Z_L.
fn split_zl(rng: &mut rand::rngs::StdRng, values: &[u64]) -> [Vec<u64>; 2] {
    let s0: Vec<u64> = values.iter().map(|_| rng.random()).collect();
    let s1 = values.iter().zip(&s0).map(|(&v, &s)| v.wrapping_sub(s)).collect();
    [s0, s1]
}

#[test]
fn share_convert_is_correct_and_costs_table_iii() {
    for variant in VARIANTS {
        for n in [1usize, 2, 37] {
            let mut r = rng(20 + n as u64);
            let mut values: Vec<u64> = (0..n).map(|_| r.random::<u64>()).collect();
            for (i, special) in [0u64, ZL1_MODULUS - 1, 1, 1 << 63].into_iter().enumerate() {
                if i < n {
                    values[i] = special;
                }
            }
            // Also shares that wrap and shares that do not.
            let shares = split_zl(&mut r, &values);
            let out = run(variant, |p| {
                let me = p.party_id();
                let mine = if me < 2 { shares[me].clone() } else { vec![0; n] };
                measured(p, |p| p.share_convert(&mine).unwrap())
            });
            let bytes: u64 = out.iter().map(|o| o.1).sum();
            assert_eq!(bytes * 8, n as u64 * share_convert_bits(variant), "{variant:?} ShareConvert bytes, n = {n}");
            assert!(out[2].0.iter().all(|&v| v == 0));
            for i in 0..n {
                let y = add_zl1(out[0].0[i], out[1].0[i]);
                assert_eq!(y, values[i] % ZL1_MODULUS, "{variant:?} ShareConvert of {}", values[i]);
                assert!(out[0].0[i] < ZL1_MODULUS && out[1].0[i] < ZL1_MODULUS);
            }
        }
    }
}

#[test]
fn compute_msb_is_correct_and_costs_table_iii() {
    for variant in VARIANTS {
        for n in [1usize, 3, 40] {
            let mut r = rng(30 + n as u64);
            let mut values: Vec<u64> = (0..n).map(|_| r.random_range(0..ZL1_MODULUS)).collect();
            for (i, special) in [0u64, ZL1_MODULUS - 1, (1 << 63) - 1, 1 << 63].into_iter().enumerate() {
                if i < n {
                    values[i] = special;
                }
            }
            let s0: Vec<u64> = values.iter().map(|_| r.random_range(0..ZL1_MODULUS)).collect();
            let s1: Vec<u64> = values.iter().zip(&s0).map(|(&v, &s)| sub_zl1(v, s)).collect();
            let shares = [s0, s1];
            let out = run(variant, |p| {
                let me = p.party_id();
                let mine = if me < 2 { shares[me].clone() } else { vec![0; n] };
                measured(p, |p| p.compute_msb(&mine).unwrap())
            });
            let bytes: u64 = out.iter().map(|o| o.1).sum();
            assert_eq!(bytes * 8, n as u64 * compute_msb_bits(variant), "{variant:?} ComputeMSB bytes, n = {n}");
            for i in 0..n {
                let msb = out[0].0[i].wrapping_add(out[1].0[i]);
                assert_eq!(msb, values[i] >> 63, "{variant:?} MSB of {}", values[i]);
            }
        }
    }
}

#[test]
fn drelu_over_the_whole_range() {
    for variant in VARIANTS {
        let n = 300;
        let mut r = rng(40);
        let values = comparison_values(&mut r, n, 1 << 62);
        let shares = split_zl(&mut r, &values);
        let out = run(variant, |p| {
            let me = p.party_id();
            let mine = if me < 2 { shares[me].clone() } else { vec![0; n] };
            p.drelu(&mine).unwrap()
        });
        for i in 0..n {
            let d = out[0][i].wrapping_add(out[1][i]);
            assert_eq!(d, ((values[i] as i64) >= 0) as u64, "{variant:?} DReLU({})", values[i] as i64);
        }
    }
}

#[test]
fn relu_matches_cleartext_and_costs_table_iii() {
    for variant in VARIANTS {
        for (n, seed) in [(1usize, 50u64), (64, 51), (257, 52)] {
            let mut r = rng(seed);
            let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 62)).unwrap();
            let expected = Cleartext.relu(&x).unwrap();
            let (got, bytes) = secure_eval(variant, &[(Owner::Client, x)], |p, s| p.relu(&s[0]).unwrap());
            assert_eq!(got, expected, "{variant:?} ReLU");
            assert_eq!(bytes * 8, n as u64 * relu_bits(variant), "{variant:?} ReLU bytes, n = {n}");
        }
    }
}

#[test]
fn relu_keeps_shape() {
    let mut r = rng(53);
    let x = signed_tensor(&mut r, &[2, 3, 4], 1 << 30);
    let expected = Cleartext.relu(&x).unwrap();
    let (got, _) = secure_eval(ProtocolVariant::Porthos, &[(Owner::ModelOwner, x)], |p, s| p.relu(&s[0]).unwrap());
    assert_eq!(got, expected);
}

fn pool(layout: Layout, batch: usize, c: usize, input: &[usize], window: &[usize], strides: &[usize], pads: (&[usize], &[usize])) -> PoolGeometry {
    PoolGeometry {
        layout,
        batch,
        channels: c,
        input: input.to_vec(),
        window: window.to_vec(),
        strides: strides.to_vec(),
        pads_begin: pads.0.to_vec(),
        pads_end: pads.1.to_vec(),
        count_include_pad: false,
    }
}

#[test]
fn max_pool_matches_cleartext_and_costs_table_iii() {
    let cases = [
        pool(Layout::ChannelsFirst, 1, 2, &[4, 4], &[2, 2], &[2, 2], (&[0, 0], &[0, 0])),
        pool(Layout::ChannelsLast, 2, 3, &[5, 5], &[3, 3], &[2, 2], (&[1, 1], &[1, 1])),
        pool(Layout::ChannelsFirst, 1, 1, &[3, 4, 4], &[2, 2, 2], &[1, 2, 2], (&[0, 0, 0], &[0, 0, 0])),
        pool(Layout::ChannelsLast, 1, 2, &[7], &[3], &[2], (&[1], &[0])),
    ];
    for variant in VARIANTS {
        for (t, g) in cases.iter().enumerate() {
            let mut r = rng(60 + t as u64);
            let x = RingTensor::new(g.input_shape(), comparison_values(&mut r, cryptflow_tensor::num_elements(&g.input_shape()), 1 << 61))
                .unwrap();
            let expected = Cleartext.max_pool(&x, g).unwrap();
            let (got, bytes) = secure_eval(variant, &[(Owner::ModelOwner, x)], |p, s| p.max_pool(&s[0], g).unwrap());
            assert_eq!(got, expected, "{variant:?} MaxPool {g:?}");
            let outputs = expected.len() as u64;
            let n = g.window_size() as u64;
            assert_eq!(bytes * 8, outputs * (n - 1) * maxpool_bits(variant), "{variant:?} MaxPool_{n} bytes");
        }
    }
}

#[test]
fn max_pool_ties_and_equal_values() {
    let g = pool(Layout::ChannelsFirst, 1, 1, &[4, 4], &[2, 2], &[2, 2], (&[0, 0], &[0, 0]));
    let vals: Vec<i64> = vec![5, 5, -3, -3, 5, 5, -3, -3, -7, 0, 9, 9, 0, -7, 9, -1];
    let x = RingTensor::new(vec![1, 1, 4, 4], vals.iter().map(|&v| v as u64).collect()).unwrap();
    let (got, _) = secure_eval(ProtocolVariant::Porthos, &[(Owner::Client, x.clone())], |p, s| p.max_pool(&s[0], &g).unwrap());
    assert_eq!(got, Cleartext.max_pool(&x, &g).unwrap());
}

#[test]
fn argmax_matches_cleartext() {
    for variant in VARIANTS {
        let mut r = rng(70);
        let shape = [3, 5, 4];
        let mut data = comparison_values(&mut r, 60, 1 << 61);
        // Ties: the first index wins.
        data[0] = 7;
        data[4] = 7;
        let x = RingTensor::new(shape.to_vec(), data).unwrap();
        for axis in 0..3 {
            for keep_dims in [false, true] {
                let expected = Cleartext.argmax(&x, axis, keep_dims).unwrap();
                let (got, bytes) =
                    secure_eval(variant, &[(Owner::Client, x.clone())], |p, s| p.argmax(&s[0], axis, keep_dims).unwrap());
                assert_eq!(got, expected, "{variant:?} argmax axis {axis}");
                let n = shape[axis] as u64;
                assert_eq!(bytes * 8, (60 / n) * (n - 1) * maxpool_bits(variant));
            }
        }
    }
}

#[test]
fn argmax_ties_between_maxima_pick_the_first() {
    let vals: Vec<i64> = vec![3, 9, 9, 1, -5, -5, -5, -5, 0, 2, 2, 0, -(1 << 60), 1 << 60, 1 << 60, -1];
    let x = RingTensor::new(vec![4, 4], vals.iter().map(|&v| v as u64).collect()).unwrap();
    for variant in VARIANTS {
        for axis in 0..2 {
            let (got, _) = secure_eval(variant, &[(Owner::Client, x.clone())], |p, s| p.argmax(&s[0], axis, false).unwrap());
            assert_eq!(got, Cleartext.argmax(&x, axis, false).unwrap(), "{variant:?} axis {axis}");
        }
        let (got, _) = secure_eval(variant, &[(Owner::Client, x.clone())], |p, s| p.argmax(&s[0], 1, false).unwrap());
        assert_eq!(got.data(), &[1, 0, 1, 1]);
    }
}

/// The maximum of `n` candidates takes `ceil(log2 n)` levels of comparisons (a knock-out tree),
/// each costing the rounds of one comparison, and `n - 1` comparisons' bytes.
#[test]
fn argmax_rounds_grow_with_the_log_of_the_candidates() {
    let rounds_and_bytes = |variant, n: usize| -> (u64, u64) {
        let x = RingTensor::new(vec![3, n], comparison_values(&mut rng(70 + n as u64), 3 * n, 1 << 61)).unwrap();
        let out = run(variant, |p| {
            let me = p.party_id();
            let share = p.share(Owner::Client, &[3, n], (me == 1).then_some(&x)).unwrap();
            let before = p.traffic();
            p.argmax(&share, 1, false).unwrap();
            let after = p.traffic();
            (after.rounds - before.rounds, after.bytes_sent - before.bytes_sent)
        });
        (out.iter().map(|o| o.0).max().unwrap(), out.iter().map(|o| o.1).sum())
    };
    for variant in VARIANTS {
        let (one, one_bytes) = rounds_and_bytes(variant, 2);
        for (n, levels) in [(4usize, 2u64), (8, 3), (9, 4)] {
            let (rounds, bytes) = rounds_and_bytes(variant, n);
            assert_eq!(rounds, levels * one, "{variant:?}, {n} candidates");
            assert_eq!(bytes, (n as u64 - 1) * one_bytes, "{variant:?}, {n} candidates");
        }
    }
}

/// The compact DReLU on the whole ring (both ends, zero, -1, values whose opening wraps and
/// values whose low 63 bits tie with the mask's), its bytes from the formula and its rounds.
#[test]
fn compact_drelu_is_exact_on_the_whole_ring_at_192_bytes_and_2_rounds() {
    assert_eq!(drelu_compact_bits() / 8, 192);
    let n = 4000;
    let mut r = rng(41);
    let mut values: Vec<u64> = (0..n).map(|_| r.random::<u64>()).collect();
    let specials = [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1, (1 << 63) + 1, 1 << 62, (1 << 62) - 1, 0u64.wrapping_sub(1 << 62)];
    values[..specials.len()].copy_from_slice(&specials);
    for (k, v) in values[specials.len()..100].iter_mut().enumerate() {
        *v = (k as u64).wrapping_sub(45); // small values of both signs
    }
    let shares = split_zl(&mut r, &values);
    let out = run(ProtocolVariant::Compact, |p| {
        let me = p.party_id();
        let mine = if me < 2 { shares[me].clone() } else { vec![0; n] };
        let before = p.traffic();
        let d = p.drelu(&mine).unwrap();
        let after = p.traffic();
        (d, after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
    });
    for i in 0..n {
        let d = out[0].0[i].wrapping_add(out[1].0[i]);
        assert_eq!(d, ((values[i] as i64) >= 0) as u64, "compact DReLU({})", values[i] as i64);
    }
    assert!(out[2].0.iter().all(|&v| v == 0), "the helper holds zeros");
    let bytes: u64 = out.iter().map(|o| o.1).sum();
    assert_eq!(bytes * 8, n as u64 * drelu_compact_bits());
    // P0 and P1: the opening, then PrivateCompare (the dealt bits and gamma come from the
    // helper without a flight of their own).
    assert_eq!((out[0].2, out[1].2), (2, 2), "rounds of P0 and P1");
}

/// Under the compact variant ReLU and MaxPool cost the compact DReLU plus their selections.
#[test]
fn compact_relu_costs_its_formula_and_under_half_of_porthos() {
    let per = |v| relu_bits(v) / 8;
    assert_eq!(per(ProtocolVariant::Compact), 192 + 24);
    assert_eq!(maxpool_bits(ProtocolVariant::Compact) / 8, 192 + 2 * 24);
    assert!(per(ProtocolVariant::Compact) * 2 < per(ProtocolVariant::Porthos));
}

/// `select_by_sign` under the compact variant: `[x >= 0] v` for several values at once, equal
/// to the cleartext's, at 192 bytes per comparison plus 24 per selected value, in the 2 rounds
/// of the comparison; the other variants take their DReLU and one SelectShare.
#[test]
fn compact_selections_are_fused_into_the_comparison() {
    let n = 777;
    let mut r = rng(42);
    let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 62)).unwrap();
    let v = RingTensor::new(vec![n], (0..n).map(|_| r.random::<u64>()).collect()).unwrap();
    let w = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 40)).unwrap();
    let expected = cryptflow_backend::select_by_sign(&mut Cleartext, &x, &[&v, &w]).unwrap();
    for variant in VARIANTS {
        let out = run(variant, |p| {
            let inputs = [(Owner::Client, x.clone()), (Owner::ModelOwner, v.clone()), (Owner::Client, w.clone())];
            let rounds = std::cell::Cell::new(0);
            let got = cryptflow_backend::testing::evaluate(p, &inputs, |p, s| {
                let before = p.traffic().rounds;
                let z = p.select_by_sign(&s[0], &[&s[1], &s[2]]).unwrap();
                rounds.set(p.traffic().rounds - before);
                let mut both = z[0].data().to_vec();
                both.extend_from_slice(z[1].data());
                RingTensor::new(vec![2 * n], both).unwrap()
            });
            (got, rounds.get())
        });
        let results: Vec<_> = out.iter().map(|o| o.0.clone()).collect();
        let mut want = expected[0].data().to_vec();
        want.extend_from_slice(expected[1].data());
        assert_eq!(cryptflow_backend::testing::client_output(&results).data(), &want[..], "{variant:?}");
        let bytes: u64 = out.iter().map(|o| o.0 .2).sum();
        let (per_element, rounds) = match variant {
            ProtocolVariant::Compact => (drelu_compact_bits() + 2 * 3 * L, 2),
            // DReLU (ReLU without its SelectShare), then one SelectShare per value.
            v => (relu_bits(v) - 5 * L + 2 * 5 * L, 5 + 1),
        };
        assert_eq!(bytes * 8, n as u64 * per_element, "{variant:?} bytes");
        assert_eq!((out[0].1, out[1].1), (rounds, rounds), "{variant:?} rounds of P0 and P1");
    }
}

/// `select_above` under the compact variant: thresholds of one secret share its opening and
/// dealt bits (192 bytes for the first, 120 for each other, 24 per selection), equal to the
/// cleartext's; the other variants compare the shifted copies side by side.
#[test]
fn thresholds_of_one_secret_share_one_opening_under_the_compact_variant() {
    let n = 513;
    let mut r = rng(43);
    let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 40)).unwrap();
    let v = RingTensor::new(vec![n], (0..n).map(|_| r.random::<u64>()).collect()).unwrap();
    let w = RingTensor::new(vec![n], (0..n).map(|_| r.random::<u64>()).collect()).unwrap();
    let (t1, t2) = (x.data()[0], (-(1i64 << 30)) as u64); // a tie and a negative threshold
    let expected = cryptflow_backend::select_above(&mut Cleartext, &x, &[(t1, &v), (t2, &w), (0, &v)]).unwrap();
    for variant in VARIANTS {
        let (got, bytes) = secure_eval(variant, &[(Owner::Client, x.clone()), (Owner::ModelOwner, v.clone()), (Owner::Client, w.clone())], |p, s| {
            let z = p.select_above(&s[0], &[(t1, &s[1]), (t2, &s[2]), (0, &s[1])]).unwrap();
            RingTensor::new(vec![3 * n], z.iter().flat_map(|z| z.data().to_vec()).collect()).unwrap()
        });
        let want: Vec<u64> = expected.iter().flat_map(|z| z.data().to_vec()).collect();
        assert_eq!(got.data(), &want[..], "{variant:?}");
        let per_element = match variant {
            ProtocolVariant::Compact => drelu_compact_bits() + 2 * further_threshold_compact_bits() + 3 * 3 * L,
            v => 3 * (relu_bits(v)),
        };
        assert_eq!(bytes * 8, n as u64 * per_element, "{variant:?}");
    }
    assert_eq!(further_threshold_compact_bits() / 8, 120);
}

/// The compact DReLU when the values are declared to lie in 33-bit two's complement
/// (`set_comparison_bits(33)`): PrivateCompare on 32 lanes, `l/2 log p` dealt, `2 l` opening,
/// `l log p` PrivateCompare, `l` result (7 bits per Z_p element).
fn drelu_narrow_bits() -> u64 {
    L / 2 * LOG_P_PACKED + 2 * L + L * LOG_P_PACKED + L
}

/// Narrowed to 33 bits the compact DReLU costs 108 bytes (192 at 64 bits) in the same 2 rounds,
/// is exact on `[-2^32, 2^32)` (both ends, zero, -1, small values, ties of the low 32 bits with
/// the mask's) and outside it gives the sign of the residue mod 2^33 read as a 33-bit two's
/// complement integer, as documented. Declaring 34 bits or more keeps the 64-bit comparison;
/// the other variants compare all 64 bits whatever is declared.
#[test]
fn compact_drelu_narrowed_to_33_bits_is_exact_in_its_domain_at_108_bytes() {
    assert_eq!(drelu_narrow_bits() / 8, 108);
    let n = 4000;
    let mut r = rng(44);
    let top = 1u64 << 32;
    let mut values: Vec<u64> = (0..n).map(|_| (r.random::<u64>() % (2 * top)).wrapping_sub(top)).collect();
    let inside = [0u64, 1, u64::MAX, top - 1, top.wrapping_neg(), (top - 1).wrapping_neg(), 1 << 31, (1u64 << 31).wrapping_neg()];
    let outside = [top, top + 7, 3 * top, u64::MAX - top, 1 << 40, (1u64 << 40).wrapping_neg() + 3, 1 << 63, u64::MAX / 3];
    values[..inside.len()].copy_from_slice(&inside);
    values[inside.len()..inside.len() + outside.len()].copy_from_slice(&outside);
    for (k, v) in values[100..200].iter_mut().enumerate() {
        *v = (k as u64).wrapping_sub(50);
    }
    let in_domain = |v: u64| (v as i64) >= -(top as i64) && (v as i64) < top as i64;
    assert!(outside.iter().all(|&v| !in_domain(v)) && inside.iter().all(|&v| in_domain(v)));
    let shares = split_zl(&mut r, &values);
    for (variant, bits, per_element) in [
        (ProtocolVariant::Compact, 33, drelu_narrow_bits()),
        (ProtocolVariant::Compact, 20, drelu_narrow_bits()),
        (ProtocolVariant::Compact, 34, drelu_compact_bits()),
        (ProtocolVariant::Porthos, 33, relu_bits(ProtocolVariant::Porthos) - 5 * L),
    ] {
        let out = run(variant, |p| {
            p.set_comparison_bits(bits).unwrap();
            let me = p.party_id();
            let mine = if me < 2 { shares[me].clone() } else { vec![0; n] };
            let before = p.traffic();
            let d = p.drelu(&mine).unwrap();
            let after = p.traffic();
            (d, after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
        });
        let narrowed = variant == ProtocolVariant::Compact && bits <= 33;
        for i in 0..n {
            let d = out[0].0[i].wrapping_add(out[1].0[i]);
            let v = values[i];
            let want = if narrowed { (v >> 32) & 1 == 0 } else { (v as i64) >= 0 };
            // (Porthos' own DReLU has its domain, tested above: it is checked inside ours.)
            if variant == ProtocolVariant::Compact {
                assert_eq!(d, want as u64, "{variant:?} at {bits} bits: DReLU({})", v as i64);
            }
            if in_domain(v) {
                assert_eq!(d, ((v as i64) >= 0) as u64, "exact inside the domain");
            }
        }
        let bytes: u64 = out.iter().map(|o| o.1).sum();
        assert_eq!(bytes * 8, n as u64 * per_element, "{variant:?} at {bits} bits");
        if variant == ProtocolVariant::Compact {
            assert_eq!((out[0].2, out[1].2), (2, 2), "rounds of P0 and P1");
        }
    }
    let refused = run(ProtocolVariant::Compact, |p| (p.set_comparison_bits(0).is_err(), p.set_comparison_bits(65).is_err()));
    assert!(refused.iter().all(|&(a, b)| a && b), "domains outside 1..=64 bits are refused");
}

/// Narrowed thresholds and fused selections: each threshold after the first costs 64 bytes
/// (120 at 64 bits), each selection 24, results equal to the cleartext's inside the domain.
#[test]
fn narrowed_thresholds_and_selections_match_cleartext() {
    let n = 700;
    let mut r = rng(45);
    let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 31)).unwrap();
    let v = RingTensor::new(vec![n], (0..n).map(|_| r.random::<u64>()).collect()).unwrap();
    let w = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 40)).unwrap();
    let (t1, t2) = (x.data()[0], (-(1i64 << 30)) as u64);
    let expected = cryptflow_backend::select_above(&mut Cleartext, &x, &[(t1, &v), (t2, &w), (0, &v)]).unwrap();
    let (got, bytes) = secure_eval(ProtocolVariant::Compact, &[(Owner::Client, x.clone()), (Owner::ModelOwner, v.clone()), (Owner::Client, w.clone())], |p, s| {
        p.set_comparison_bits(33).unwrap();
        let z = p.select_above(&s[0], &[(t1, &s[1]), (t2, &s[2]), (0, &s[1])]).unwrap();
        RingTensor::new(vec![3 * n], z.iter().flat_map(|z| z.data().to_vec()).collect()).unwrap()
    });
    let want: Vec<u64> = expected.iter().flat_map(|z| z.data().to_vec()).collect();
    assert_eq!(got.data(), &want[..]);
    let further = L / 2 * LOG_P_PACKED * 2 + L;
    assert_eq!(further / 8, 64);
    assert_eq!(bytes * 8, n as u64 * (drelu_narrow_bits() + 2 * further + 3 * 3 * L));
}
