//! The functions under Porthos (3 parties) and 2PC (2 parties): revealed results within the
//! documented error of f64, and under Porthos exactly the bytes (summed over the parties) and
//! rounds of the cost formulas of `common/costs.rs`.

mod common;
#[path = "common/costs.rs"]
mod costs;

use common::*;
use cryptflow_backend::{testing, Backend, Owner, RingTensor};
use cryptflow_math as math;
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_twopc::TwoPc;

const S: u32 = 12;

type Op<B> = dyn Fn(&mut B, &RingTensor) -> RingTensor + Sync;

fn party<B: Backend>(p: &mut B, x: &RingTensor, op: &Op<B>) -> (Option<RingTensor>, u64, u64) {
    let me = p.party_id();
    let share = p.share(Owner::Client, x.shape(), (me == 1).then_some(x)).unwrap();
    let before = p.traffic();
    let z = op(p, &share);
    let after = p.traffic();
    let out = p.reveal(&z, Owner::Client).unwrap();
    (out, after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
}

/// Revealed result, bytes summed over the three parties, rounds (the most any party took).
fn porthos(x: &RingTensor, op: &Op<Porthos>) -> (RingTensor, u64, u64) {
    porthos_variant(ProtocolVariant::Porthos, x, op)
}

fn porthos_variant(variant: ProtocolVariant, x: &RingTensor, op: &Op<Porthos>) -> (RingTensor, u64, u64) {
    let out = testing::run_parties(Session::local(3), |s| Porthos::new(s, variant).unwrap(), |p| party(p, x, op));
    let bytes = out.iter().map(|o| o.1).sum();
    let rounds = out.iter().map(|o| o.2).max().unwrap();
    (out[1].0.clone().unwrap(), bytes, rounds)
}

fn twopc(x: &RingTensor, op: &Op<TwoPc>) -> RingTensor {
    let out = testing::run_parties(Session::local(2), |s| TwoPc::new(s).unwrap(), |p| party(p, x, op));
    out[1].0.clone().unwrap()
}

fn check_elementwise(name: &str, xs: &[f64], got: &RingTensor, f: impl Fn(f64) -> f64, rel: f64, abs_ulps: f64) {
    let y = dec(got, S);
    for (i, &x) in xs.iter().enumerate() {
        let want = f(q(x, S));
        let e = (y[i] - want).abs();
        assert!(e <= rel * want.abs() + abs_ulps * 2f64.powi(-(S as i32)), "{name}({x}) = {} (want {want})", y[i]);
    }
}

#[test]
fn elementwise_functions_under_porthos_cost_their_formulas() {
    let mut r = rng(21);
    let n = 48usize;
    let nn = n as u64;
    // exp
    let mut xs = uniform(&mut r, n - 4, -16.0, 8.0);
    xs.extend([-100.0, 100.0, -2f64.powi(30), 2f64.powi(30)]);
    let (got, bytes, rounds) = porthos(&enc(&[n], &xs, S), &|p, x| math::exp(p, x, S).unwrap());
    check_elementwise("exp", &xs, &got, |x| x.clamp(-16.0, 8.0).exp(), 1e-2, 3.0);
    assert_eq!((bytes, rounds), costs::exp(nn), "exp");
    // reciprocal, both signs
    let xs: Vec<f64> = log_grid(2f64.powi(-8), 2f64.powi(16), n - 1).into_iter().enumerate().map(|(i, v)| if i % 2 == 0 { v } else { -v }).collect();
    let (got, bytes, rounds) = porthos(&enc(&[n], &xs, S), &|p, x| math::reciprocal(p, x, S).unwrap());
    check_elementwise("reciprocal", &xs, &got, |x| 1.0 / x, 1e-2, 3.0);
    assert_eq!((bytes, rounds), costs::reciprocal(nn), "reciprocal");
    // rsqrt, sqrt, log
    let xs = log_grid(2f64.powi(-12), 2f64.powi(16), n - 1);
    let (got, bytes, rounds) = porthos(&enc(&[n], &xs, S), &|p, x| math::rsqrt(p, x, S).unwrap());
    check_elementwise("rsqrt", &xs, &got, |x| 1.0 / x.sqrt(), 1e-2, 3.0);
    assert_eq!((bytes, rounds), costs::rsqrt(nn, S), "rsqrt");
    let (got, bytes, rounds) = porthos(&enc(&[n], &xs, S), &|p, x| math::sqrt(p, x, S).unwrap());
    check_elementwise("sqrt", &xs, &got, f64::sqrt, 1e-2, 3.0);
    assert_eq!((bytes, rounds), costs::sqrt(nn, S), "sqrt");
    let (got, bytes, rounds) = porthos(&enc(&[n], &xs, S), &|p, x| math::log(p, x, S).unwrap());
    check_elementwise("log", &xs, &got, f64::ln, 0.0, 1e-2 * 4096.0);
    assert_eq!((bytes, rounds), costs::log(nn, S), "log");
    // max of two halves, div of two halves
    let xs = uniform(&mut r, 2 * n, -50.0, 50.0);
    let (got, bytes, rounds) = porthos(&enc(&[2, n], &xs, S), &|p, x| {
        let (a, b) = (row(x, 0), row(x, 1));
        math::max(p, &a, &b).unwrap()
    });
    let want: Vec<u64> = (0..n).map(|i| (encode_i(xs[i]).max(encode_i(xs[n + i]))) as u64).collect();
    assert_eq!(got.data(), &want[..]);
    assert_eq!((bytes, rounds), costs::max(nn), "max");
    let ys: Vec<f64> = xs.iter().enumerate().map(|(i, &v)| if i < n { v } else { (v.abs() + 0.5) * v.signum() }).collect();
    let (got, bytes, rounds) = porthos(&enc(&[2, n], &ys, S), &|p, x| math::div(p, &row(x, 0), &row(x, 1), S).unwrap());
    let y = dec(&got, S);
    for i in 0..n {
        let want = q(ys[i], S) / q(ys[n + i], S);
        assert!((y[i] - want).abs() <= 1e-2 * want.abs() + 3.0 / 4096.0, "div {} / {}: {}", ys[i], ys[n + i], y[i]);
    }
    assert_eq!((bytes, rounds), costs::div(nn), "div");
}

fn encode_i(v: f64) -> i64 {
    cryptflow_math::fixed::encode(v, S) as i64
}

fn row(x: &RingTensor, i: usize) -> RingTensor {
    let n = x.shape()[1];
    RingTensor::new(vec![n], x.data()[i * n..(i + 1) * n].to_vec()).unwrap()
}

#[test]
fn rows_under_porthos_cost_their_formulas() {
    let mut r = rng(22);
    for (rows, n) in [(3usize, 10usize), (2, 128), (4, 1)] {
        let vals = uniform(&mut r, rows * n, -8.0, 8.0);
        let x = enc(&[rows, n], &vals, S);
        let (rows_u, n_u) = (rows as u64, n as u64);
        let (got, bytes, rounds) = porthos(&x, &|p, x| math::softmax(p, x, 1, S).unwrap());
        let (got_l, bytes_l, rounds_l) = porthos(&x, &|p, x| math::log_softmax(p, x, 1, S).unwrap());
        let (got_m, bytes_m, rounds_m) = porthos(&x, &|p, x| math::reduce_max(p, x, &[1], false).unwrap());
        let (y, yl) = (dec(&got, S), dec(&got_l, S));
        for i in 0..rows {
            let row: Vec<f64> = vals[i * n..(i + 1) * n].iter().map(|&v| q(v, S)).collect();
            let (want, want_l) = (softmax_ref(&row), log_softmax_ref(&row));
            for j in 0..n {
                assert!((y[i * n + j] - want[j]).abs() < 1e-2, "softmax n {n}");
                assert!((yl[i * n + j] - want_l[j]).abs() < 1e-2, "log_softmax n {n}");
            }
            let m = x.data()[i * n..(i + 1) * n].iter().map(|&v| v as i64).max().unwrap();
            assert_eq!(got_m.data()[i] as i64, m);
        }
        assert_eq!((bytes, rounds), costs::softmax(n_u, rows_u), "softmax n {n}");
        assert_eq!((bytes_l, rounds_l), costs::log_softmax(n_u, rows_u), "log_softmax n {n}");
        assert_eq!((bytes_m, rounds_m), costs::reduce(n_u, rows_u), "reduce_max n {n}");
    }
    // normalize: rows of 768 and a constant row.
    let n = 768usize;
    let mut vals = uniform(&mut r, n, -3.0, 5.0);
    vals.extend(vec![1.5; n]);
    let x = enc(&[2, n], &vals, S);
    let (got, bytes, rounds) = porthos(&x, &|p, x| math::normalize(p, x, &[1], 1e-5, S).unwrap());
    let y = dec(&got, S);
    let want = layer_norm_ref(&vals[..n].iter().map(|&v| q(v, S)).collect::<Vec<_>>(), 1e-5);
    for j in 0..n {
        assert!((y[j] - want[j]).abs() < 1e-2, "normalize");
    }
    assert!(y[n..].iter().all(|&v| v == 0.0), "a constant row normalises to exactly 0");
    assert_eq!((bytes, rounds), costs::normalize(n as u64, 2), "normalize");
}

#[test]
fn functions_under_2pc_match_f64() {
    let mut r = rng(23);
    let xs = uniform(&mut r, 24, -16.0, 8.0);
    let got = twopc(&enc(&[24], &xs, S), &|p, x| math::exp(p, x, S).unwrap());
    check_elementwise("exp", &xs, &got, f64::exp, 1e-2, 3.0);
    let xs: Vec<f64> = log_grid(2f64.powi(-8), 2f64.powi(16), 23).into_iter().enumerate().map(|(i, v)| if i % 2 == 0 { v } else { -v }).collect();
    let got = twopc(&enc(&[24], &xs, S), &|p, x| math::reciprocal(p, x, S).unwrap());
    check_elementwise("reciprocal", &xs, &got, |x| 1.0 / x, 1e-2, 3.0);
    let xs = log_grid(2f64.powi(-12), 2f64.powi(16), 23);
    let got = twopc(&enc(&[24], &xs, S), &|p, x| math::rsqrt(p, x, S).unwrap());
    check_elementwise("rsqrt", &xs, &got, |x| 1.0 / x.sqrt(), 1e-2, 3.0);
    let got = twopc(&enc(&[24], &xs, S), &|p, x| math::log(p, x, S).unwrap());
    check_elementwise("log", &xs, &got, f64::ln, 0.0, 40.0);
    let vals = uniform(&mut r, 30, -6.0, 6.0);
    let x = enc(&[3, 10], &vals, S);
    let y = dec(&twopc(&x, &|p, x| math::softmax(p, x, 1, S).unwrap()), S);
    let yn = dec(&twopc(&x, &|p, x| math::normalize(p, x, &[1], 1e-5, S).unwrap()), S);
    for i in 0..3 {
        let row: Vec<f64> = vals[i * 10..(i + 1) * 10].iter().map(|&v| q(v, S)).collect();
        let (want, want_n) = (softmax_ref(&row), layer_norm_ref(&row, 1e-5));
        for j in 0..10 {
            assert!((y[i * 10 + j] - want[j]).abs() < 1e-2, "2pc softmax");
            assert!((yn[i * 10 + j] - want_n[j]).abs() < 1e-2, "2pc normalize");
        }
    }
}

/// Under the compact variant a comparison costs 192 bytes and 2 rounds (Z_p elements travel
/// in 7 bits: 56 dealt, 16 opening, 112 PrivateCompare, 8 result) and a selection fused into
/// it 24 bytes and no round (`Porthos::compare_compact`); products stay at 40 bytes and a
/// round. The functions give what they give under Porthos, for fewer bytes and rounds.
#[test]
fn functions_under_the_compact_variant_cost_fused_comparisons() {
    use costs::{D, M};
    const C: u64 = 192;
    // A second threshold compared with the same secret shares the first one's opening and
    // dealt bits: PrivateCompare and its result only.
    const C2: u64 = 120;
    const SEL: u64 = 24;
    let compact = |x: &RingTensor, op: &Op<Porthos>| porthos_variant(ProtocolVariant::Compact, x, op);
    let mut r = rng(23);
    let n = 64usize;
    let nn = n as u64;
    // Products with one mask per operand: 2 words per operand and 1 per product.
    const W: u64 = 8;
    // GELU (erf form): 2 thresholds with their 2 selections in one call; the square of u
    // (1 operand, 1 product), then T_2..T_8 of w in 3 doubling steps: {T_1} -> T_2,
    // {T_2, T_1} -> T_3, T_4, {T_4, T_1, T_2, T_3} -> T_5..T_8.
    let gelu_products = W * ((2 + 1) + (2 + 1) + (4 + 2) + (8 + 4));
    let mut xs = uniform(&mut r, n - 4, -6.0, 6.0);
    xs.extend([-4.0, 4.0, -2f64.powi(30), 2f64.powi(30)]);
    let x = enc(&[n], &xs, S);
    let (got, bytes, rounds) = compact(&x, &|p, x| math::gelu(p, x, S, math::GeluForm::Erf).unwrap());
    let (base, base_bytes, base_rounds) = porthos(&x, &|p, x| math::gelu(p, x, S, math::GeluForm::Erf).unwrap());
    let gelu = |v: f64| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2));
    check_elementwise("gelu", &xs, &got, gelu, 0.0, 3.0);
    assert_eq!((bytes, rounds), (nn * (C + C2 + 2 * SEL + gelu_products), 2 + 4), "gelu");
    assert_eq!((base_bytes, base_rounds), (nn * (2 * D + 2 * M + 8 * M), 5 + 4 + 1), "gelu under Porthos");
    let (y, y0) = (dec(&got, S), dec(&base, S));
    assert!(y.iter().zip(&y0).all(|(a, b)| (a - b).abs() <= 2.0 / 4096.0), "compact and Porthos agree");
    // exp: the clamp (2 comparisons, 2 selections), then x^2 ({x}), x^3 and x^4 ({x^2, x})
    // and 5 squarings: 8 products in 7 calls.
    let exp_products = W * ((2 + 1) + (4 + 2) + 5 * (2 + 1));
    let mut xs = uniform(&mut r, n - 2, -16.0, 8.0);
    xs.extend([-100.0, 100.0]);
    let (got, bytes, rounds) = compact(&enc(&[n], &xs, S), &|p, x| math::exp(p, x, S).unwrap());
    check_elementwise("exp", &xs, &got, |x| x.clamp(-16.0, 8.0).exp(), 1e-2, 3.0);
    assert_eq!((bytes, rounds), (nn * (C + C2 + 2 * SEL + exp_products), 2 + 7), "exp");
    // max of two halves: one comparison with its selection.
    let xs = uniform(&mut r, 2 * n, -50.0, 50.0);
    let (got, bytes, rounds) = compact(&enc(&[2, n], &xs, S), &|p, x| math::max(p, &row(x, 0), &row(x, 1)).unwrap());
    let want: Vec<u64> = (0..n).map(|i| (encode_i(xs[i]).max(encode_i(xs[n + i]))) as u64).collect();
    assert_eq!(got.data(), &want[..]);
    assert_eq!((bytes, rounds), (nn * (C + SEL), 2), "max");
    // reduce_max over rows of 128 (attention's): 127 comparisons per row in 7 levels.
    let xs = uniform(&mut r, 3 * 128, -8.0, 8.0);
    let x = enc(&[3, 128], &xs, S);
    let (got, bytes, rounds) = compact(&x, &|p, x| math::reduce_max(p, x, &[1], false).unwrap());
    for i in 0..3 {
        assert_eq!(got.data()[i] as i64, x.data()[i * 128..(i + 1) * 128].iter().map(|&v| v as i64).max().unwrap());
    }
    assert_eq!((bytes, rounds), (3 * 127 * (C + SEL), 2 * 7), "reduce_max");
    // softmax: correct (its cost is the sum of the above and the reciprocal's).
    let (got, _, _) = compact(&x, &|p, x| math::softmax(p, x, 1, S).unwrap());
    let y = dec(&got, S);
    for i in 0..3 {
        let row: Vec<f64> = xs[i * 128..(i + 1) * 128].iter().map(|&v| q(v, S)).collect();
        let want = softmax_ref(&row);
        for j in 0..128 {
            assert!((y[i * 128 + j] - want[j]).abs() < 1e-2, "softmax");
        }
    }
}

/// With the program's comparison domain declared at 33 bits (Athos' default at scale 12) the
/// compact comparisons run on 32 lanes: 108 bytes (28 dealt, 16 opening, 56 PrivateCompare, 8
/// result), 64 per further threshold, in the same rounds; GELU, exp, softmax and layer
/// normalisation (whose internal normalisations compare on all 64 bits) stay as accurate.
#[test]
fn functions_with_narrowed_comparisons_cost_less_and_stay_accurate() {
    const C: u64 = 108;
    const C2: u64 = 64;
    const SEL: u64 = 24;
    const W: u64 = 8;
    fn narrowed(x: &RingTensor, op: &Op<Porthos>) -> (RingTensor, u64, u64) {
        let narrow = |s| {
            let mut p = Porthos::new(s, ProtocolVariant::Compact).unwrap();
            p.set_comparison_bits(33).unwrap();
            p
        };
        let out = testing::run_parties(Session::local(3), narrow, |p| party(p, x, op));
        (out[1].0.clone().unwrap(), out.iter().map(|o| o.1).sum(), out.iter().map(|o| o.2).max().unwrap())
    }
    let mut r = rng(24);
    let n = 64usize;
    let nn = n as u64;
    let mut xs = uniform(&mut r, n - 4, -6.0, 6.0);
    xs.extend([-4.0, 4.0, -1000.0, 1000.0]);
    let (got, bytes, rounds) = narrowed(&enc(&[n], &xs, S), &|p, x| math::gelu(p, x, S, math::GeluForm::Erf).unwrap());
    let gelu = |v: f64| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2));
    check_elementwise("gelu", &xs, &got, gelu, 0.0, 3.0);
    let gelu_products = W * ((2 + 1) + (2 + 1) + (4 + 2) + (8 + 4));
    assert_eq!((bytes, rounds), (nn * (C + C2 + 2 * SEL + gelu_products), 2 + 4), "gelu");
    let mut xs = uniform(&mut r, n - 2, -16.0, 8.0);
    xs.extend([-30000.0, 30000.0]);
    let (got, bytes, _) = narrowed(&enc(&[n], &xs, S), &|p, x| math::exp(p, x, S).unwrap());
    check_elementwise("exp", &xs, &got, |x| x.clamp(-16.0, 8.0).exp(), 1e-2, 3.0);
    let exp_products = W * ((2 + 1) + (4 + 2) + 5 * (2 + 1));
    assert_eq!(bytes, nn * (C + C2 + 2 * SEL + exp_products), "exp");
    // Masked attention rows (-32768 added where masked, as the importer writes masks).
    let mut xs = uniform(&mut r, 3 * 128, -8.0, 8.0);
    for v in xs.iter_mut().skip(100).step_by(3) {
        *v -= 32768.0;
    }
    let x = enc(&[3, 128], &xs, S);
    let (got, _, _) = narrowed(&x, &|p, x| math::softmax(p, x, 1, S).unwrap());
    let y = dec(&got, S);
    for i in 0..3 {
        let row: Vec<f64> = xs[i * 128..(i + 1) * 128].iter().map(|&v| q(v, S)).collect();
        let want = softmax_ref(&row);
        for j in 0..128 {
            assert!((y[i * 128 + j] - want[j]).abs() < 1e-2, "softmax row {i} column {j}: {} vs {}", y[i * 128 + j], want[j]);
        }
    }
    // Layer normalisation of rows with standard deviations near the top of its domain (2^6):
    // the rsqrt's normaliser compares sums of squares near 2^42, far outside 33 bits.
    let xs: Vec<f64> = uniform(&mut r, 4 * 64, -100.0, 100.0);
    let x = enc(&[4, 64], &xs, S);
    let (got, _, _) = narrowed(&x, &|p, x| math::normalize(p, x, &[1], 1e-5, S).unwrap());
    let y = dec(&got, S);
    for i in 0..4 {
        let row: Vec<f64> = xs[i * 64..(i + 1) * 64].iter().map(|&v| q(v, S)).collect();
        let mean = row.iter().sum::<f64>() / 64.0;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 64.0;
        for j in 0..64 {
            let want = (row[j] - mean) / (var + 1e-5).sqrt();
            assert!((y[i * 64 + j] - want).abs() < 2e-2, "normalize row {i} column {j}: {} vs {want}", y[i * 64 + j]);
        }
    }
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

/// Under faithful truncation (exact: `Backend::exact_truncation`) the polynomials' last round
/// of products enters the sum untruncated: GELU keeps its accuracy and makes 6 faithful
/// truncations per element instead of 10 (32 bytes each under Porthos), exp 8 instead of 10.
#[test]
fn exact_truncation_truncates_a_polynomials_last_round_once() {
    const TRUNC: u64 = 32;
    let mut r = rng(24);
    let n = 64usize;
    let nn = n as u64;
    let run = |truncation, x: &RingTensor, op: &Op<Porthos>| {
        let out = testing::run_parties(
            Session::local(3),
            |s| {
                let mut p = Porthos::new(s, ProtocolVariant::Compact).unwrap();
                p.set_truncation(truncation);
                p
            },
            |p| party(p, x, op),
        );
        (out[1].0.clone().unwrap(), out.iter().map(|o| o.1).sum::<u64>(), out.iter().map(|o| o.2).max().unwrap())
    };
    let mut xs = uniform(&mut r, n - 4, -6.0, 6.0);
    xs.extend([-4.0, 4.0, -2f64.powi(30), 2f64.powi(30)]);
    let x = enc(&[n], &xs, S);
    let gelu_op = |p: &mut Porthos, x: &RingTensor| math::gelu(p, x, S, math::GeluForm::Erf).unwrap();
    let (local, local_bytes, _) = run(cryptflow_backend::Truncation::Local, &x, &gelu_op);
    let (exact, exact_bytes, _) = run(cryptflow_backend::Truncation::Faithful, &x, &gelu_op);
    let gelu = |v: f64| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2));
    check_elementwise("gelu (local)", &xs, &local, gelu, 0.0, 3.0);
    check_elementwise("gelu (faithful)", &xs, &exact, gelu, 0.0, 3.0);
    assert_eq!(exact_bytes - local_bytes, nn * 6 * TRUNC, "gelu: faithful truncations");
    let mut xs = uniform(&mut r, n - 2, -16.0, 8.0);
    xs.extend([-100.0, 100.0]);
    let x = enc(&[n], &xs, S);
    let exp_op = |p: &mut Porthos, x: &RingTensor| math::exp(p, x, S).unwrap();
    let (_, local_bytes, _) = run(cryptflow_backend::Truncation::Local, &x, &exp_op);
    let (exact, exact_bytes, _) = run(cryptflow_backend::Truncation::Faithful, &x, &exp_op);
    check_elementwise("exp (faithful)", &xs, &exact, |x| x.clamp(-16.0, 8.0).exp(), 1e-2, 3.0);
    assert_eq!(exact_bytes - local_bytes, nn * 8 * TRUNC, "exp: faithful truncations");
    // The other series (degrees up to 40) keep their accuracy on the exact path.
    let mut xs = uniform(&mut r, n - 2, -14.0, 14.0);
    xs.extend([-2f64.powi(30), 2f64.powi(30)]);
    let x = enc(&[n], &xs, S);
    let cases: [(&str, &Op<Porthos>, fn(f64) -> f64); 4] = [
        ("sigmoid", &|p, x| math::sigmoid(p, x, S).unwrap(), |v| 1.0 / (1.0 + (-v).exp())),
        ("tanh", &|p, x| math::tanh(p, x, S).unwrap(), f64::tanh),
        ("silu", &|p, x| math::silu(p, x, S).unwrap(), |v| v / (1.0 + (-v).exp())),
        ("erf", &|p, x| math::erf(p, x, S).unwrap(), erf),
    ];
    for (name, op, f) in cases {
        let (exact, _, _) = run(cryptflow_backend::Truncation::Faithful, &x, op);
        check_elementwise(name, &xs, &exact, f, 0.0, 3.0);
    }
}
