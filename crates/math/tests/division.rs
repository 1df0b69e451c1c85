//! Cleartext accuracy of reciprocal, div, sqrt, rsqrt and log against f64 over their
//! documented domains, at scale 12 and other scales, and their out-of-domain clamps.

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_math as math;

fn both_signs(v: Vec<f64>) -> Vec<f64> {
    let mut out = v.clone();
    out.extend(v.iter().map(|x| -x));
    out
}

/// 1/x for |x| in [2^-8, 2^16]: relative 1e-2 plus 2 ulps; 0 -> +2^8; beyond: the clamp.
#[test]
fn reciprocal_meets_its_bound_and_clamps() {
    let mut b = Cleartext::new();
    for s in [8u32, 12, 16, 20] {
        let mut xs = both_signs(log_grid(2f64.powi(-8), 2f64.powi(16), 8000));
        xs.extend(uniform(&mut rng(s as u64), 2000, -20.0, 20.0).into_iter().filter(|v| v.abs() >= 2f64.powi(-8)));
        let y = dec(&math::reciprocal(&mut b, &enc(&[xs.len()], &xs, s), s).unwrap(), s);
        let (rel, _) = errors(&xs, &y, |x| 1.0 / x, s, 2f64.powi(10 - s as i32));
        assert!(rel < 1e-2, "scale {s}: relative error {rel}");
        assert!(excess_ulps(&xs, &y, |x| 1.0 / x, s, 1e-2) <= 2.0, "scale {s}");
        if s == 12 {
            assert!(rel < 2e-3, "scale 12: relative error {rel}");
        }
        let out = [0.0, 2f64.powi(-10), -2f64.powi(-10), 2f64.powi(17), -2f64.powi(30), 2f64.powi(30)];
        // (-2^-10 is 0 at scale 8, so +256 there.)
        let want: Vec<f64> = out.iter().map(|&v| if v.abs() < 1.0 { if q(v, s) < 0.0 { -256.0 } else { 256.0 } } else { v.signum() * 2f64.powi(-16) }).collect();
        let y = dec(&math::reciprocal(&mut b, &enc(&[6], &out, s), s).unwrap(), s);
        for i in 0..6 {
            assert!((y[i] - want[i]).abs() <= 1e-2 * want[i].abs() + 2.0 * 2f64.powi(-(s as i32)), "scale {s}: 1/{} = {}", out[i], y[i]);
        }
    }
}

/// x / y for |y| in [2^-8, 2^16] and |x / y| up to 2^10: error within 1e-2 |x/y| + 2 ulps.
#[test]
fn div_meets_its_bound() {
    let mut b = Cleartext::new();
    let mut r = rng(3);
    for s in [12u32, 16] {
        let ys = both_signs(log_grid(2f64.powi(-8), 2f64.powi(16), 3000));
        let xs: Vec<f64> = ys.iter().map(|&y| y.abs().min(1000.0) * (r.random_range(-1.0f64..1.0))).collect();
        let got = dec(&math::div(&mut b, &enc(&[xs.len()], &xs, s), &enc(&[ys.len()], &ys, s), s).unwrap(), s);
        for i in 0..xs.len() {
            let want = q(xs[i], s) / q(ys[i], s);
            let e = (got[i] - want).abs();
            assert!(e <= 1e-2 * want.abs() + 2.0 * 2f64.powi(-(s as i32)), "scale {s}: {} / {} = {} (want {want})", xs[i], ys[i], got[i]);
        }
    }
}

use rand::Rng;

/// sqrt and rsqrt on [2^-(2 floor(s/2)), 2^16]: relative 1e-2 plus 2 ulps; x <= 0:
/// sqrt -> 0, rsqrt -> 2^floor(s/2); above: the clamp.
#[test]
fn roots_meet_their_bounds_and_clamp() {
    let mut b = Cleartext::new();
    for s in [8u32, 12, 16, 20] {
        let lo = 2f64.powi(-2 * (s as i32 / 2));
        let xs = log_grid(lo, 2f64.powi(16), 8000);
        let x = enc(&[xs.len()], &xs, s);
        let y = dec(&math::rsqrt(&mut b, &x, s).unwrap(), s);
        let (rel, _) = errors(&xs, &y, |x| 1.0 / x.sqrt(), s, 2f64.powi(10 - s as i32));
        assert!(rel < 1e-2 && excess_ulps(&xs, &y, |x| 1.0 / x.sqrt(), s, 1e-2) <= 2.0, "rsqrt scale {s}: {rel}");
        let y = dec(&math::sqrt(&mut b, &x, s).unwrap(), s);
        let (rel, _) = errors(&xs, &y, f64::sqrt, s, 2f64.powi(10 - s as i32));
        assert!(rel < 1e-2 && excess_ulps(&xs, &y, f64::sqrt, s, 1e-2) <= 2.0, "sqrt scale {s}: {rel}");
        let out = [0.0, -1.0, -2f64.powi(30), 2f64.powi(17), 2f64.powi(30)];
        let got_r = dec(&math::rsqrt(&mut b, &enc(&[5], &out, s), s).unwrap(), s);
        let got_s = dec(&math::sqrt(&mut b, &enc(&[5], &out, s), s).unwrap(), s);
        let want_r = [1.0 / lo.sqrt(), 1.0 / lo.sqrt(), 1.0 / lo.sqrt(), 2f64.powi(-8), 2f64.powi(-8)];
        for i in 0..5 {
            assert!((got_r[i] - want_r[i]).abs() <= 1e-2 * want_r[i] + 2.0 * 2f64.powi(-(s as i32)), "scale {s}: rsqrt({}) = {}", out[i], got_r[i]);
        }
        // sqrt of x <= 0 is 0; above 2^16 it is x 2^-8 (x * the clamped rsqrt), i.e. grows
        // linearly: documented, not a root.
        for i in 0..3 {
            assert_eq!(got_s[i], 0.0, "scale {s}: sqrt({})", out[i]);
        }
    }
}

/// ln x on [2^-s, 2^16]: absolute error below 1e-2 (measured ~1e-3); x <= 0 -> -s ln 2,
/// above -> 16 ln 2.
#[test]
fn log_meets_its_bound_and_clamps() {
    let mut b = Cleartext::new();
    for s in [8u32, 12, 16, 20] {
        let xs = log_grid(2f64.powi(-(s as i32)), 2f64.powi(16), 8000);
        let y = dec(&math::log(&mut b, &enc(&[xs.len()], &xs, s), s).unwrap(), s);
        let (_, abs) = errors(&xs, &y, f64::ln, s, f64::INFINITY);
        assert!(abs < 1e-2, "scale {s}: {abs}");
        if s == 12 {
            assert!(abs < 2e-3, "scale 12: {abs}");
        }
        let out = [0.0, -3.0, -2f64.powi(30), 2f64.powi(17), 2f64.powi(30)];
        let got = dec(&math::log(&mut b, &enc(&[5], &out, s), s).unwrap(), s);
        let ln2 = std::f64::consts::LN_2;
        let want = [-(s as f64) * ln2, -(s as f64) * ln2, -(s as f64) * ln2, 16.0 * ln2, 16.0 * ln2];
        for i in 0..5 {
            assert!((got[i] - want[i]).abs() < 1e-2, "scale {s}: log({}) = {}", out[i], got[i]);
        }
    }
}

/// A per-row divisor broadcast over its row gives what the elementwise division of the
/// broadcast divisor gives, and the mismatched shapes are refused.
#[test]
fn div_by_a_broadcast_divisor() {
    let mut b = Cleartext::new();
    let mut r = rng(9);
    let s = 12;
    let (rows, cols) = (6, 10);
    let ys: Vec<f64> = (0..rows).map(|_| r.random_range(0.1f64..50.0) * if r.random::<bool>() { 1.0 } else { -1.0 }).collect();
    let xs: Vec<f64> = (0..rows * cols).map(|_| r.random_range(-20.0f64..20.0)).collect();
    let wide: Vec<f64> = (0..rows * cols).map(|i| ys[i / cols]).collect();
    let x = enc(&[rows, cols], &xs, s);
    let narrow = math::div(&mut b, &x, &enc(&[rows, 1], &ys, s), s).unwrap();
    let full = math::div(&mut b, &x, &enc(&[rows, cols], &wide, s), s).unwrap();
    assert_eq!(narrow.shape(), &[rows, cols]);
    assert_eq!(narrow, full, "broadcasting the divisor first or inside the division gives the same values");
    assert!(math::div(&mut b, &x, &enc(&[cols, 1], &vec![1.0; cols], s), s).is_err());
}
