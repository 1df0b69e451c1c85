//! Faithful truncation (`Truncation::Faithful`): exactness over adversarial values and shares,
//! its communication as formulas, and the failure of the local truncation it replaces; the
//! exact truncation (`Truncation::Exact`): the floor, whatever the shares, and its cost.

mod common;

use common::*;
use cryptflow_backend::cleartext::{arithmetic_shift, floor_divide};
use cryptflow_backend::{Backend, Owner, RingTensor, Truncation};
use cryptflow_porthos::{Porthos, ProtocolVariant};

/// Words per element of the faithful truncation: P0 and P1 one each (the opening of
/// `x + r`), the helper two (the shares of `A` and `S`, halved in Porthos, in full in SecureNN).
fn faithful_words(v: ProtocolVariant) -> u64 {
    match v {
        ProtocolVariant::Porthos | ProtocolVariant::Compact => 1 + 1 + 2,
        ProtocolVariant::SecureNN => 1 + 1 + 4,
    }
}

/// Values of `[-2^62, 2^62)` that stress the wrap: the ends of the range and their
/// neighbours, zero, small values, powers of two and uniform values.
fn adversarial(n: usize, seed: u64) -> Vec<u64> {
    let lim = 1i128 << 62;
    let mut v: Vec<u64> = comparison_values(&mut rng(seed), n, lim);
    let fixed: [i64; 8] = [(1 << 62) - 1, -(1 << 62), (1 << 61), -(1 << 61), (1 << 40) + 1, -(1 << 40) - 1, 4095, -4097];
    for (slot, &f) in v.iter_mut().zip(fixed.iter()) {
        *slot = f as u64;
    }
    v
}

/// [`adversarial`] values kept in the documented range of a division by each of `divisors`:
/// `|x| <= 2^62 - d`.
fn adversarial_for(divisors: &[u64], seed: u64) -> Vec<u64> {
    let mut x = adversarial(divisors.len(), seed);
    for (v, &d) in x.iter_mut().zip(divisors) {
        let lim = (1i64 << 62) - d as i64;
        *v = (*v as i64).clamp(-lim, lim) as u64;
    }
    x
}

/// Checks `got` is `expect` or `expect + 1` elementwise; returns how many are `+ 1`.
fn within_one(got: &[u64], expect: &[u64], what: &str) -> usize {
    let mut ups = 0;
    for (i, (&g, &e)) in got.iter().zip(expect).enumerate() {
        let d = g.wrapping_sub(e) as i64;
        assert!(d == 0 || d == 1, "{what}, element {i}: got {} expected {}", g as i64, e as i64);
        ups += d as usize;
    }
    ups
}

/// Runs `op` on crafted shares `(x - s, s)` (P0, P1; the helper holds zeros) with the truncation
/// `mode`, returns the opened result and each party's traffic during `op`.
fn on_shares(
    variant: ProtocolVariant,
    mode: Truncation,
    x: &[u64],
    s: &[u64],
    op: impl Fn(&mut Porthos, &RingTensor) -> RingTensor + Sync,
) -> (Vec<u64>, Vec<cryptflow_backend::Traffic>) {
    let n = x.len();
    let out = run(variant, |p| {
        p.set_truncation(mode);
        let share: Vec<u64> = match p.party_id() {
            0 => x.iter().zip(s).map(|(&x, &s)| x.wrapping_sub(s)).collect(),
            1 => s.to_vec(),
            _ => vec![0; n],
        };
        let t = RingTensor::new(vec![n], share).unwrap();
        let before = p.traffic();
        let z = op(p, &t);
        (z, p.traffic() - before)
    });
    assert!(out[2].0.data().iter().all(|&v| v == 0), "the helper's share must be zero");
    let opened = out[0].0.data().iter().zip(out[1].0.data()).map(|(a, b)| a.wrapping_add(*b)).collect();
    (opened, out.into_iter().map(|o| o.1).collect())
}

#[test]
fn faithful_scale_down_is_floor_or_one_more_over_the_whole_range() {
    for variant in VARIANTS {
        let x = adversarial(600, 7);
        let xt = RingTensor::new(vec![x.len()], x.clone()).unwrap();
        for shift in [1u32, 12, 13, 24, 40, 61, 62] {
            let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
            let (got, bytes) = secure_eval(variant, &[(Owner::Client, xt.clone())], |p, s| {
                p.set_truncation(Truncation::Faithful);
                p.scale_down(&s[0], shift).unwrap()
            });
            within_one(got.data(), &expect, &format!("{variant:?} shift {shift}"));
            assert_eq!(bytes, 8 * faithful_words(variant) * x.len() as u64, "{variant:?} shift {shift}");
        }
        // Shift 0 is the identity and free; 63 runs as 62.
        for (shift, expect, cost) in [(0u32, x.clone(), 0), (63, x.iter().map(|&v| arithmetic_shift(v, 63)).collect(), faithful_words(variant))] {
            let (got, bytes) = secure_eval(variant, &[(Owner::Client, xt.clone())], |p, s| {
                p.set_truncation(Truncation::Faithful);
                p.scale_down(&s[0], shift).unwrap()
            });
            within_one(got.data(), &expect, &format!("{variant:?} shift {shift}"));
            assert_eq!(bytes, 8 * cost * x.len() as u64);
        }
    }
}

/// Shares placed where the local truncation breaks: the client's share at and around the
/// wrap-around points (0, 2^63, 2^64 - 1) and within `|x|` of them.
#[test]
fn faithful_truncation_survives_shares_at_the_wrap_point() {
    let xs: [i64; 6] = [(1 << 62) - 1, -(1 << 62), 1 << 50, -(1 << 50), 3, -3];
    let mut x = Vec::new();
    let mut s = Vec::new();
    for &v in &xs {
        for base in [0u64, 1 << 63, u64::MAX] {
            for delta in [0i64, 1, -1, v, -v, v / 2, -(v / 2), v - 1, 1 - v] {
                x.push(v as u64);
                s.push(base.wrapping_add(delta as u64));
            }
        }
    }
    let n = x.len() as u64;
    for variant in VARIANTS {
        for shift in [1u32, 13, 24, 62] {
            let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
            let (got, traffic) = on_shares(variant, Truncation::Faithful, &x, &s, |p, t| p.scale_down(t, shift).unwrap());
            within_one(&got, &expect, &format!("{variant:?} shift {shift}"));
            let helper_words = faithful_words(variant) - 2;
            assert_eq!(traffic[0].bytes_sent, 8 * n);
            assert_eq!(traffic[1].bytes_sent, 8 * n);
            assert_eq!(traffic[2].bytes_sent, 8 * helper_words * n);
            assert_eq!([traffic[0].rounds, traffic[1].rounds, traffic[2].rounds], [1, 1, 0], "{variant:?}");
            // The same shares break the local truncation (by about 2^(64 - shift)).
            let (local, traffic) = on_shares(variant, Truncation::Local, &x, &s, |p, t| p.scale_down(t, shift).unwrap());
            assert!(traffic.iter().all(|t| t.bytes_sent == 0));
            let broken = local.iter().zip(&expect).filter(|(g, e)| !matches!(g.wrapping_sub(**e), 0 | 1)).count();
            assert!(broken > 0, "{variant:?} shift {shift}: the crafted shares should break the local truncation");
        }
    }
}

#[test]
fn faithful_divide_is_floor_or_one_more() {
    for variant in VARIANTS {
        let n = 400;
        let divisors: Vec<u64> = (0..n as u64).map(|i| [1, 2, 3, 7, 9, 49, 1000, (1 << 20) + 3, (1 << 40) - 1][i as usize % 9]).collect();
        let x = adversarial_for(&divisors, 11);
        let expect: Vec<u64> = x.iter().zip(&divisors).map(|(&v, &d)| floor_divide(v, d)).collect();
        let dt = RingTensor::new(vec![n], divisors.clone()).unwrap();
        let xt = RingTensor::new(vec![n], x.clone()).unwrap();
        let (got, bytes) = secure_eval(variant, &[(Owner::ModelOwner, xt)], |p, s| {
            p.set_truncation(Truncation::Faithful);
            p.divide(&s[0], &dt).unwrap()
        });
        within_one(got.data(), &expect, &format!("{variant:?} divide"));
        assert_eq!(bytes, 8 * faithful_words(variant) * n as u64);
        // By 1 the division is exact (B rounds the residue of 2^64 - r up, and it is 0).
        let ones = RingTensor::new(vec![n], vec![1; n]).unwrap();
        let (got, _) = on_shares(variant, Truncation::Faithful, &x, &x.iter().map(|v| v.rotate_left(7)).collect::<Vec<_>>(), |p, t| {
            p.divide(t, &ones).unwrap()
        });
        assert_eq!(got, x);
    }
}

/// The rounding is unbiased: `floor + 1` with probability `(x mod 2^k) / 2^k` over the helper's
/// mask, whatever the client's share (so the share does not predict it).
#[test]
fn faithful_rounding_is_unbiased_and_not_predicted_by_the_share() {
    let n = 4000;
    let shift = 8;
    let x = vec![(5u64 << 20) + 64; n]; // x mod 2^8 = 64: rounds up with probability 1/4
    let s = vec![0x1234_5678_9abc_def0u64; n]; // one fixed client share for every element
    let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
    let (got, _) = on_shares(ProtocolVariant::Porthos, Truncation::Faithful, &x, &s, |p, t| p.scale_down(t, shift).unwrap());
    let ups = within_one(&got, &expect, "unbiased");
    // Binomial(4000, 1/4): mean 1000, sd 27.4; 6 sd either side.
    assert!((835..=1165).contains(&ups), "rounded up {ups} of {n} times, expected about 1000");
    // The local truncation with that fixed share rounds every element the same way.
    let (local, _) = on_shares(ProtocolVariant::Porthos, Truncation::Local, &x, &s, |p, t| p.scale_down(t, shift).unwrap());
    let lups = within_one(&local, &expect, "local");
    assert!(lups == 0 || lups == n, "the local rounding is a function of the client's share");
}

/// The local truncation fails (off by about 2^(64-k)) at the predicted rate `|x| / 2^64` per
/// element over uniformly random sharings; the faithful one never does.
#[test]
fn local_truncation_fails_at_the_predicted_rate_and_faithful_never() {
    let n = 8000;
    let shift = 12;
    for mag in [(1i64 << 62) - 1, -(1i64 << 62), 1i64 << 61] {
        let x = RingTensor::new(vec![n], vec![mag as u64; n]).unwrap();
        let expect = arithmetic_shift(mag as u64, shift);
        let count = |mode: Truncation| {
            let (got, _) = secure_eval(ProtocolVariant::Porthos, &[(Owner::Client, x.clone())], |p, s| {
                p.set_truncation(mode);
                p.scale_down(&s[0], shift).unwrap()
            });
            got.data().iter().filter(|&&g| !matches!(g.wrapping_sub(expect), 0 | 1)).count()
        };
        let p = mag.unsigned_abs() as f64 / 2f64.powi(64);
        let mean = p * n as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let failed = count(Truncation::Local) as f64;
        assert!((failed - mean).abs() < 6.0 * sd, "x = {mag}: {failed} failures, predicted {mean:.0} +- {sd:.0}");
        assert_eq!(count(Truncation::Faithful), 0, "x = {mag}");
    }
}

#[test]
fn the_backend_setting_selects_the_truncation() {
    let out = run(ProtocolVariant::Porthos, |p| {
        assert_eq!(p.truncation(), Truncation::Local);
        Backend::set_truncation(p, Truncation::Faithful).unwrap();
        p.truncation()
    });
    assert!(out.iter().all(|&t| t == Truncation::Faithful));
    let mut c = cryptflow_backend::cleartext::Cleartext;
    assert!(c.set_truncation(Truncation::Faithful).is_ok());
}

/// Bytes per element of the exact truncation beyond the faithful one, for a carry comparison
/// on `lanes` lanes and `sets` thresholds per element (1 for powers of two, 2 otherwise): per
/// threshold the dealt bits (halved but in SecureNN), PrivateCompare from P0 and P1, and the
/// dealt carry word (halved but in SecureNN). A Z_p element is 7 bits in the compact variant.
fn carry_bytes(v: ProtocolVariant, lanes: u64, sets: u64) -> u64 {
    let zp = if v == ProtocolVariant::Compact { lanes * 7 / 8 } else { lanes };
    let dealt = if v == ProtocolVariant::SecureNN { 2 } else { 1 };
    sets * (dealt * zp + 2 * zp + dealt * 8)
}

/// PrivateCompare's lanes for the carry of a division by up to `d`.
fn carry_lanes(d: u64) -> u64 {
    match 64 - (d - 1).leading_zeros() {
        0..=16 => 16,
        17..=32 => 32,
        _ => 64,
    }
}

#[test]
fn exact_scale_down_is_the_floor_over_the_whole_range() {
    for variant in VARIANTS {
        let x = adversarial(600, 7);
        let xt = RingTensor::new(vec![x.len()], x.clone()).unwrap();
        for shift in [1u32, 12, 13, 16, 17, 24, 32, 33, 40, 61, 62, 63] {
            let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
            let (got, bytes) = secure_eval(variant, &[(Owner::Client, xt.clone())], |p, s| {
                p.set_truncation(Truncation::Exact);
                p.scale_down(&s[0], shift).unwrap()
            });
            assert_eq!(got.data(), &expect[..], "{variant:?} shift {shift}");
            let per = 8 * faithful_words(variant) + carry_bytes(variant, carry_lanes(1 << shift.min(62)), 1);
            assert_eq!(bytes, per * x.len() as u64, "{variant:?} shift {shift}");
        }
        let (got, bytes) = secure_eval(variant, &[(Owner::Client, xt.clone())], |p, s| {
            p.set_truncation(Truncation::Exact);
            p.scale_down(&s[0], 0).unwrap()
        });
        assert_eq!((got.data(), bytes), (&x[..], 0));
    }
}

/// The shares that break the local truncation, and the rounding the faithful one leaves:
/// the exact truncation gives the floor for all of them, with the costs and flights stated.
#[test]
fn exact_truncation_is_the_floor_whatever_the_shares() {
    let xs: [i64; 8] = [(1 << 62) - 1, -(1 << 62), 1 << 50, -(1 << 50), 3, -3, 4095, -4097];
    let mut x = Vec::new();
    let mut s = Vec::new();
    for &v in &xs {
        for base in [0u64, 1 << 63, u64::MAX, 4095, 1 << 12] {
            for delta in [0i64, 1, -1, v, -v, v / 2, -(v / 2), v - 1, 1 - v] {
                x.push(v as u64);
                s.push(base.wrapping_add(delta as u64));
            }
        }
    }
    let n = x.len() as u64;
    for variant in VARIANTS {
        for shift in [1u32, 12, 13, 24, 62] {
            let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
            let (got, traffic) = on_shares(variant, Truncation::Exact, &x, &s, |p, t| p.scale_down(t, shift).unwrap());
            assert_eq!(got, expect, "{variant:?} shift {shift}");
            let lanes = carry_lanes(1 << shift);
            let zp = if variant == ProtocolVariant::Compact { lanes * 7 / 8 } else { lanes };
            assert_eq!(traffic[0].bytes_sent, (8 + zp) * n);
            assert_eq!(traffic[1].bytes_sent, (8 + zp) * n);
            assert_eq!(traffic[2].bytes_sent, (8 * (faithful_words(variant) - 2)) * n + carry_bytes(variant, lanes, 1) * n - 2 * zp * n);
            assert_eq!([traffic[0].rounds, traffic[1].rounds, traffic[2].rounds], [2, 2, 1], "{variant:?}");
        }
    }
}

#[test]
fn exact_divide_is_the_floor() {
    for variant in VARIANTS {
        let n = 400;
        for table in [&[1u64, 2, 3, 7, 9, 49, 1000, 4096, 65535][..], &[1, 3, 49, (1 << 20) + 3, (1 << 40) - 1, 1 << 62]] {
            let divisors: Vec<u64> = (0..n).map(|i| table[i % table.len()]).collect();
            let x = adversarial_for(&divisors, 11);
            let expect: Vec<u64> = x.iter().zip(&divisors).map(|(&v, &d)| floor_divide(v, d)).collect();
            let dt = RingTensor::new(vec![n], divisors.clone()).unwrap();
            let xt = RingTensor::new(vec![n], x.clone()).unwrap();
            let (got, bytes) = secure_eval(variant, &[(Owner::ModelOwner, xt)], |p, s| {
                p.set_truncation(Truncation::Exact);
                p.divide(&s[0], &dt).unwrap()
            });
            assert_eq!(got.data(), &expect[..], "{variant:?} divisors {table:?}");
            let lanes = carry_lanes(*table.iter().max().unwrap());
            assert_eq!(bytes, (8 * faithful_words(variant) + carry_bytes(variant, lanes, 2)) * n as u64);
            // Crafted shares around the wrap points.
            let s: Vec<u64> = (0..n).map(|i| [0u64, 1 << 63, u64::MAX, (1 << 63) - 1][i % 4].wrapping_add(x[i] / 3)).collect();
            let (got, _) = on_shares(variant, Truncation::Exact, &x, &s, |p, t| p.divide(t, &dt).unwrap());
            assert_eq!(got, expect, "{variant:?} divisors {table:?}, crafted shares");
        }
    }
}
