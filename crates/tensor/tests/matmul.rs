//! Matrix product against the triple loop.

mod common;

use common::*;
use cryptflow_tensor::kernels::matmul;
use cryptflow_tensor::Tensor;
use rand::Rng;

fn naive<T: TestElement>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let mut c = Tensor::zeros(vec![m, n]);
    for i in 0..m {
        for j in 0..n {
            let mut s = T::ZERO;
            for p in 0..k {
                s = s.add(a.data()[i * k + p].mul(b.data()[p * n + j]));
            }
            c.data_mut()[i * n + j] = s;
        }
    }
    c
}

fn check<T: TestElement>(seed: u64) {
    let mut rng = rng(seed);
    let mut shapes = vec![(1, 1, 1), (2, 3, 4), (0, 3, 2), (3, 0, 2), (3, 2, 0), (64, 64, 64), (65, 300, 129), (513, 40, 37), (7, 1000, 3)];
    for _ in 0..30 {
        shapes.push((rng.random_range(1..80), rng.random_range(1..300), rng.random_range(1..80)));
    }
    for (m, k, n) in shapes {
        let a: Tensor<T> = random_tensor(&mut rng, &[m, k]);
        let b: Tensor<T> = random_tensor(&mut rng, &[k, n]);
        assert_close(&matmul(&a, &b).unwrap(), &naive(&a, &b), k, &format!("{m}x{k}x{n}"));
    }
}

#[test]
fn u64_matches_naive() {
    check::<u64>(10);
}

#[test]
fn f32_matches_naive() {
    check::<f32>(11);
}

#[test]
fn hand_case_and_errors() {
    let a = Tensor::new(vec![2, 2], vec![1u64, 2, 3, 4]).unwrap();
    let b = Tensor::new(vec![2, 1], vec![5u64, u64::MAX]).unwrap();
    // [1*5 + 2*(-1), 3*5 + 4*(-1)] in Z_2^64.
    assert_eq!(matmul(&a, &b).unwrap().data(), &[3, 11]);
    assert!(matmul(&b, &a).is_err());
    assert!(matmul(&a, &Tensor::zeros(vec![2])).is_err());
    assert!(matmul(&Tensor::zeros(vec![2, 2, 1]), &a).is_err());
}
