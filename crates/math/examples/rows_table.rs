//! Prints the markdown table of the functions of this crate's rows/division part: method,
//! domain, outside-domain behaviour, the largest error against f64 measured here on the
//! cleartext backend at scale 12, and the Porthos cost per element (from the cost formulas
//! that `tests/secure.rs` asserts against measured traffic) as a multiple of ReLU's 536 bytes.
//!
//! `cargo run --release -p cryptflow-math --example rows_table`

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/costs.rs"]
mod costs;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_math as math;
use cryptflow_math::RingTensor;

const S: u32 = 12;

fn elementwise(f: impl Fn(&mut Cleartext, &RingTensor) -> RingTensor, xs: &[f64], reference: impl Fn(f64) -> f64) -> (f64, f64) {
    let mut b = Cleartext::new();
    let y = dec(&f(&mut b, &enc(&[xs.len()], xs, S)), S);
    errors(xs, &y, reference, S, 2f64.powi(10 - S as i32))
}

fn rows_error(n: usize, range: f64, op: impl Fn(&mut Cleartext, &RingTensor) -> RingTensor, reference: impl Fn(&[f64]) -> Vec<f64>) -> f64 {
    let mut b = Cleartext::new();
    let mut r = rng(n as u64);
    let rows = if n > 100 { 16 } else { 200 };
    let vals = uniform(&mut r, rows * n, -range, range);
    let y = dec(&op(&mut b, &enc(&[rows, n], &vals, S)), S);
    let mut worst = 0.0f64;
    for i in 0..rows {
        let row: Vec<f64> = vals[i * n..(i + 1) * n].iter().map(|&v| q(v, S)).collect();
        let want = reference(&row);
        for j in 0..n {
            worst = worst.max((y[i * n + j] - want[j]).abs());
        }
    }
    worst
}

fn per_elem(c: (u64, u64), elems: u64) -> String {
    format!("{:.1} B = {:.2}x", c.0 as f64 / elems as f64, c.0 as f64 / elems as f64 / costs::RELU as f64)
}

fn main() {
    let n = 1000u64;
    let mut out = Vec::new();
    let mut row = |f: &str, method: &str, domain: &str, outside: &str, err: String, cost: String, rounds: String| {
        out.push(format!("| {f} | {method} | {domain} | {outside} | {err} | {cost} | {rounds} |"));
    };
    row("max/min", "DReLU(x-y), mux", "all (differences < 2^62)", "-", "exact".into(), per_elem(costs::max(n), n), "6".into());
    row("reduce_max/min", "knock-out tree", "all", "-", "exact".into(), "(n-1)/n x 536 B = <1.00x".into(), "6 ceil(log2 n)".into());

    let mut xs = grid(-16.0, 8.0, 24000);
    xs.extend(grid(-1.0, 1.0, 2000));
    let (rel, abs) = elementwise(|b, x| math::exp(b, x, S).unwrap(), &xs, f64::exp);
    row("exp", "clamp; Chebyshev deg 4 of e^(x/32); 5 squarings", "[-16, 8]", "clamp to e^-16 / e^8", format!("rel {rel:.1e} (e^x >= 1/4), abs {abs:.1e} (at e^8=2981)"), per_elem(costs::exp(n), n), costs::exp(n).1.to_string());

    let mut xs = log_grid(2f64.powi(-8), 2f64.powi(16), 12000);
    xs.extend(xs.clone().iter().map(|v| -v).collect::<Vec<_>>());
    let (rel, abs) = elementwise(|b, x| math::reciprocal(b, x, S).unwrap(), &xs, |x| 1.0 / x);
    row("reciprocal", "sign; 25 powers of 2 in 1 call; 48/17-32/17x start; (1+e)(1+e^2)", "abs(x) in [2^-8, 2^16]", "abs(x)<2^-8 (and 0): +-2^8; >2^16: +-2^-16", format!("rel {rel:.1e} (abs(1/x) >= 1/4), abs {abs:.1e}"), per_elem(costs::reciprocal(n), n), costs::reciprocal(n).1.to_string());

    let ys = log_grid(2f64.powi(-8), 2f64.powi(16), 6000);
    let mut r = rng(5);
    let xs: Vec<f64> = ys.iter().map(|&y| y.min(1000.0) * uniform(&mut r, 1, -1.0, 1.0)[0]).collect();
    let mut b = Cleartext::new();
    let got = dec(&math::div(&mut b, &enc(&[xs.len()], &xs, S), &enc(&[ys.len()], &ys, S), S).unwrap(), S);
    let mut worst = 0.0f64;
    for i in 0..xs.len() {
        let want = q(xs[i], S) / q(ys[i], S);
        worst = worst.max(((got[i] - want).abs() - 1e-3 * want.abs()).max(0.0) * 4096.0);
    }
    row("div", "as reciprocal, numerator carried through the factors", "abs(y) in [2^-8, 2^16], abs(x/y) <= 2^13", "y as reciprocal", format!("<= 1e-3 abs(x/y) + {worst:.1} ulp"), per_elem(costs::div(n), n), costs::div(n).1.to_string());

    let xs = log_grid(2f64.powi(-12), 2f64.powi(16), 12000);
    let (rel, abs) = elementwise(|b, x| math::rsqrt(b, x, S).unwrap(), &xs, |x| 1.0 / x.sqrt());
    row("rsqrt", "15 powers of 4 in 1 call; linear start; 2 Newton steps", "[2^-12, 2^16]", "x<2^-12 (and <=0): 2^6; >2^16: 2^-8", format!("rel {rel:.1e}, abs {abs:.1e}"), per_elem(costs::rsqrt(n, S), n), costs::rsqrt(n, S).1.to_string());
    let (rel, abs) = elementwise(|b, x| math::sqrt(b, x, S).unwrap(), &xs, f64::sqrt);
    row("sqrt", "x * rsqrt(x), x gated by [x >= 2^-12]", "[2^-12, 2^16]", "x<=0: 0; >2^16: x 2^-8", format!("rel {rel:.1e}, abs {abs:.1e}"), per_elem(costs::sqrt(n, S), n), costs::sqrt(n, S).1.to_string());
    let xs = log_grid(2f64.powi(-12), 2f64.powi(16), 12000);
    let (_, abs) = elementwise(|b, x| math::log(b, x, S).unwrap(), &xs, f64::ln);
    row("log", "29 powers of 2 in 1 call; k ln2 + Chebyshev deg 5 on [1/2,1]", "[2^-12, 2^16]", "x<2^-12 (and <=0): -12 ln2; >2^16: 16 ln2", format!("abs {abs:.1e}"), per_elem(costs::log(n, S), n), costs::log(n, S).1.to_string());

    for nn in [10usize, 128] {
        let mut e = 0.0f64;
        for range in [1.0, 8.0, 100.0] {
            e = e.max(rows_error(nn, range, |b, x| math::softmax(b, x, 1, S).unwrap(), softmax_ref));
        }
        let c = costs::softmax(nn as u64, 1);
        row(&format!("softmax n={nn}"), "max tree; e^(x-max) (1 clamp, deg 4, 4 squarings); row-sum reciprocal without comparisons", "all rows", "-", format!("abs {e:.1e}"), per_elem(c, nn as u64), format!("{} = 6 ceil(log2 n) + 14 + m(n), m={}", c.1, costs::recip_factors(nn as u64)));
        let mut e = 0.0f64;
        for range in [1.0, 8.0, 100.0] {
            e = e.max(rows_error(nn, range, |b, x| math::log_softmax(b, x, 1, S).unwrap(), log_softmax_ref));
        }
        let c = costs::log_softmax(nn as u64, 1);
        row(&format!("log_softmax n={nn}"), "x - max - log(row sum), log by ceil(log2 n)+1 powers of 2", "all rows", "-", format!("abs {e:.1e}"), per_elem(c, nn as u64), format!("{} = 6 ceil(log2 n) + 21", c.1));
    }
    let mut e = 0.0f64;
    for (eps, range) in [(1e-5f32, 1.0), (1e-12, 1.0), (1e-5, 20.0), (1e-5, 0.2)] {
        e = e.max(rows_error(768, range, |b, x| math::normalize(b, x, &[1], eps, S).unwrap(), |r| layer_norm_ref(r, eps as f64)));
    }
    let c = costs::normalize(768, 1);
    row("normalize n=768", "D = n x - sum (exact); var from D >> w (exact square sums); 23 powers of 4 per row; 2 Newton steps carrying D", "std <= 2^6 (V < 2^44)", "V >= 2^44: clamped (output too large by sqrt(V/2^44)); constant rows: exactly 0", format!("abs {e:.1e}"), per_elem(c, 768), format!("{}", c.1));

    println!("| function | method | domain (scale 12) | outside the domain | max error vs f64 (cleartext, scale 12) | Porthos bytes per element (x ReLU 536 B) | rounds |");
    println!("|---|---|---|---|---|---|---|");
    for l in out {
        println!("{l}");
    }
}
