//! Helpers shared by the kernel tests: multi-index iteration, random tensors, comparisons.
#![allow(dead_code)]

use cryptflow_tensor::{strides_of, Element, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Every multi-index of `shape` in row-major order.
pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut idx = vec![0; shape.len()];
    for _ in 0..total {
        out.push(idx.clone());
        for axis in (0..shape.len()).rev() {
            idx[axis] += 1;
            if idx[axis] < shape[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
    out
}

pub fn offset(shape: &[usize], idx: &[usize]) -> usize {
    assert_eq!(shape.len(), idx.len());
    strides_of(shape).iter().zip(idx).map(|(s, i)| s * i).sum()
}

pub fn get<T: Element>(t: &Tensor<T>, idx: &[usize]) -> T {
    t.data()[offset(t.shape(), idx)]
}

/// Elements for tests: full-range random u64 (so wrapping happens) or small-ish f32.
pub trait TestElement: Element {
    fn random(rng: &mut StdRng) -> Self;
    fn close(a: Self, b: Self, scale: f64) -> bool;
}

impl TestElement for u64 {
    fn random(rng: &mut StdRng) -> Self {
        rng.random()
    }
    fn close(a: Self, b: Self, _scale: f64) -> bool {
        a == b
    }
}

impl TestElement for f32 {
    fn random(rng: &mut StdRng) -> Self {
        rng.random_range(-2.0f32..2.0)
    }
    fn close(a: Self, b: Self, scale: f64) -> bool {
        ((a - b).abs() as f64) <= 1e-4 * scale.max(1.0) + 1e-4 * (b.abs() as f64)
    }
}

pub fn random_tensor<T: TestElement>(rng: &mut StdRng, shape: &[usize]) -> Tensor<T> {
    let n: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|_| T::random(rng)).collect()).unwrap()
}

/// Asserts equal shapes and elementwise closeness (exact for u64); `scale` is the number of
/// terms summed per element, for the float tolerance.
pub fn assert_close<T: TestElement>(got: &Tensor<T>, want: &Tensor<T>, scale: usize, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(T::close(g, w, scale as f64), "{what}: element {i} got {g:?} want {w:?}");
    }
}
