//! Encoding helpers and f64 references for the math tests.
#![allow(dead_code)]

use cryptflow_math::fixed::{decode, encode};
use cryptflow_math::RingTensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn enc(shape: &[usize], v: &[f64], s: u32) -> RingTensor {
    RingTensor::new(shape.to_vec(), v.iter().map(|&x| encode(x, s)).collect()).unwrap()
}

pub fn dec(t: &RingTensor, s: u32) -> Vec<f64> {
    t.data().iter().map(|&v| decode(v, s)).collect()
}

/// The value the fixed-point input actually holds.
pub fn q(x: f64, s: u32) -> f64 {
    decode(encode(x, s), s)
}

pub fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..=n).map(|i| lo + (hi - lo) * i as f64 / n as f64).collect()
}

pub fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..=n).map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / n as f64).exp()).collect()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn uniform(r: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// Largest `|got - f(q(x))| / |f|` over the points with `|f| >= floor`, and largest
/// absolute error over all points.
pub fn errors(xs: &[f64], got: &[f64], f: impl Fn(f64) -> f64, s: u32, floor: f64) -> (f64, f64) {
    let (mut rel, mut abs) = (0.0f64, 0.0f64);
    for (&x, &y) in xs.iter().zip(got) {
        let t = f(q(x, s));
        let a = (y - t).abs();
        abs = abs.max(a);
        if t.abs() >= floor {
            rel = rel.max(a / t.abs());
        }
    }
    (rel, abs)
}

/// Largest `|got - f| - rel |f|` in units of `2^-s`: how far the result is outside the
/// relative bound.
pub fn excess_ulps(xs: &[f64], got: &[f64], f: impl Fn(f64) -> f64, s: u32, rel: f64) -> f64 {
    xs.iter().zip(got).map(|(&x, &y)| {
        let t = f(q(x, s));
        ((y - t).abs() - rel * t.abs()) * 2f64.powi(s as i32)
    }).fold(f64::MIN, f64::max)
}

pub fn softmax_ref(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

pub fn log_softmax_ref(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::MIN, f64::max);
    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
    row.iter().map(|v| v - m - s.ln()).collect()
}

pub fn layer_norm_ref(row: &[f64], eps: f64) -> Vec<f64> {
    let n = row.len() as f64;
    let mean = row.iter().sum::<f64>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    row.iter().map(|v| (v - mean) / (var + eps).sqrt()).collect()
}
