//! Faithful truncation (`Truncation::Faithful`): exact over adversarial values and crafted
//! shares, its communication as formulas, and the failure of the local truncation.

mod common;

use common::*;
use cryptflow_backend::cleartext::arithmetic_shift;
use cryptflow_backend::{Backend, Owner, RingTensor, Traffic, Truncation};
use cryptflow_twopc::TwoPc;

/// Words per party of a faithful truncation of `n`: a DReLU of `n`, a multiplexer of `2 n`.
fn faithful_words(n: u64) -> [u64; 2] {
    let d = drelu(n);
    [d[0] + select(2 * n), d[1] + select(2 * n)]
}

fn adversarial(n: usize, seed: u64) -> Vec<u64> {
    let mut v = comparison_values(&mut rng(seed), n, 1i128 << 62);
    let fixed: [i64; 8] = [(1 << 62) - 1, -(1 << 62), 1 << 61, -(1 << 61), (1 << 40) + 1, -(1 << 40) - 1, 4095, -4097];
    for (slot, &f) in v.iter_mut().zip(fixed.iter()) {
        *slot = f as u64;
    }
    v
}

/// Crafted shares `(x - s, s)`; returns the opened result and each party's traffic.
fn on_shares(mode: Truncation, x: &[u64], s: &[u64], shift: u32) -> (Vec<u64>, Vec<Traffic>) {
    let out = run(|p: &mut TwoPc| {
        p.set_truncation(mode);
        let share: Vec<u64> =
            if p.party_id() == 0 { x.iter().zip(s).map(|(&x, &s)| x.wrapping_sub(s)).collect() } else { s.to_vec() };
        let t = RingTensor::new(vec![x.len()], share).unwrap();
        let before = p.traffic();
        let z = p.scale_down(&t, shift).unwrap();
        (z, p.traffic() - before)
    });
    let opened = out[0].0.data().iter().zip(out[1].0.data()).map(|(a, b)| a.wrapping_add(*b)).collect();
    (opened, out.into_iter().map(|o| o.1).collect())
}

#[test]
fn faithful_scale_down_is_exact_over_the_whole_range() {
    let x = adversarial(500, 5);
    let xt = RingTensor::new(vec![x.len()], x.clone()).unwrap();
    for shift in [1u32, 12, 13, 24, 40, 62, 63] {
        let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
        let (got, bytes) = secure_eval(&[(Owner::Client, xt.clone())], |p, s| {
            p.set_truncation(Truncation::Faithful);
            p.scale_down(&s[0], shift).unwrap()
        });
        assert_eq!(got.data(), &expect[..], "shift {shift}");
        assert_eq!(bytes, bytes_of(faithful_words(x.len() as u64)), "shift {shift}");
    }
    let (got, bytes) = secure_eval(&[(Owner::Client, xt.clone())], |p, s| {
        p.set_truncation(Truncation::Faithful);
        p.scale_down(&s[0], 0).unwrap()
    });
    assert_eq!((got.data(), bytes), (&x[..], [0, 0]));
}

fn bytes_of(w: [u64; 2]) -> [u64; 2] {
    bytes(w)
}

#[test]
fn faithful_truncation_is_exact_for_shares_at_the_wrap_point() {
    let xs: [i64; 6] = [(1 << 62) - 1, -(1 << 62), 1 << 50, -(1 << 50), 3, -3];
    let (mut x, mut s) = (Vec::new(), Vec::new());
    for &v in &xs {
        for base in [0u64, 1 << 63, u64::MAX, 1 << 12, (1 << 12) - 1] {
            for delta in [0i64, 1, -1, v, -v, v / 2, -(v / 2), v - 1, 1 - v] {
                x.push(v as u64);
                s.push(base.wrapping_add(delta as u64));
            }
        }
    }
    let n = x.len() as u64;
    for shift in [1u32, 12, 13, 24, 62] {
        let expect: Vec<u64> = x.iter().map(|&v| arithmetic_shift(v, shift)).collect();
        let (got, t) = on_shares(Truncation::Faithful, &x, &s, shift);
        assert_eq!(got, expect, "shift {shift}");
        assert_eq!([t[0].bytes_sent, t[1].bytes_sent], bytes(faithful_words(n)));
        assert_eq!([t[0].rounds, t[1].rounds], [7, 7], "a DReLU (5) and a multiplexer (2)");
        let (local, _) = on_shares(Truncation::Local, &x, &s, shift);
        let broken = local.iter().zip(&expect).filter(|(g, e)| !matches!(g.wrapping_sub(**e), 0 | 1)).count();
        assert!(broken > 0, "shift {shift}: the crafted shares should break the local truncation");
    }
}

#[test]
fn local_truncation_fails_at_the_predicted_rate_and_faithful_never() {
    let n = 6000;
    let shift = 12;
    for mag in [(1i64 << 62) - 1, -(1i64 << 62)] {
        let x = RingTensor::new(vec![n], vec![mag as u64; n]).unwrap();
        let expect = arithmetic_shift(mag as u64, shift);
        let wrong = |mode: Truncation| {
            let (got, _) = secure_eval(&[(Owner::Client, x.clone())], |p, s| {
                p.set_truncation(mode);
                p.scale_down(&s[0], shift).unwrap()
            });
            (got.data().iter().filter(|&&g| !matches!(g.wrapping_sub(expect), 0 | 1)).count(), got.data().iter().filter(|&&g| g != expect).count())
        };
        let p = mag.unsigned_abs() as f64 / 2f64.powi(64);
        let (mean, sd) = (p * n as f64, (n as f64 * p * (1.0 - p)).sqrt());
        let failed = wrong(Truncation::Local).0 as f64;
        assert!((failed - mean).abs() < 6.0 * sd, "x = {mag}: {failed} failures, predicted {mean:.0} +- {sd:.0}");
        assert_eq!(wrong(Truncation::Faithful), (0, 0), "x = {mag}: the faithful truncation is exact");
    }
}
