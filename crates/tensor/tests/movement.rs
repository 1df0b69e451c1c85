//! Data movement against direct multi-index definitions.

mod common;

use common::*;
use cryptflow_tensor::movement::*;
use cryptflow_tensor::Tensor;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

fn random_shape(rng: &mut rand::rngs::StdRng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=max)).collect()
}

#[test]
fn transpose_matches_definition() {
    let mut rng = rng(1);
    for _ in 0..200 {
        let rank = rng.random_range(0..=5);
        let shape = random_shape(&mut rng, rank, 5);
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.shuffle(&mut rng);
        let y = transpose(&x, &perm).unwrap();
        let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(y.shape(), want_shape.as_slice());
        for idx in indices(y.shape()) {
            let mut src = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = idx[i];
            }
            assert_eq!(get(&y, &idx), get(&x, &src));
        }
    }
}

/// Big enough for several cache tiles per axis.
#[test]
fn transpose_large_matches_definition() {
    let mut rng = rng(7);
    for (shape, perm) in [
        (vec![3, 70, 45], vec![2, 0, 1]),
        (vec![3, 70, 45], vec![1, 2, 0]),
        (vec![2, 33, 65, 3], vec![0, 3, 1, 2]),
        (vec![2, 33, 65, 3], vec![0, 2, 3, 1]),
        (vec![100, 37], vec![1, 0]),
    ] {
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let y = transpose(&x, &perm).unwrap();
        for idx in indices(y.shape()) {
            let mut src = vec![0; shape.len()];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = idx[i];
            }
            assert_eq!(get(&y, &idx), get(&x, &src), "{shape:?} {perm:?}");
        }
    }
}

#[test]
fn transpose_hand_case_and_errors() {
    let x = Tensor::new(vec![2, 3], vec![1u64, 2, 3, 4, 5, 6]).unwrap();
    let y = transpose(&x, &[1, 0]).unwrap();
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(y.data(), &[1, 4, 2, 5, 3, 6]);
    assert!(transpose(&x, &[0]).is_err());
    assert!(transpose(&x, &[0, 0]).is_err());
    assert!(transpose(&x, &[0, 2]).is_err());
    // Zero-sized axes.
    let z = Tensor::<f32>::zeros(vec![0, 3]);
    assert_eq!(transpose(&z, &[1, 0]).unwrap().shape(), &[3, 0]);
}

#[test]
fn pad_matches_definition() {
    let mut rng = rng(2);
    for _ in 0..200 {
        let rank = rng.random_range(0..=4);
        let shape = random_shape(&mut rng, rank, 4);
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let pb: Vec<usize> = (0..rank).map(|_| rng.random_range(0..3)).collect();
        let pe: Vec<usize> = (0..rank).map(|_| rng.random_range(0..3)).collect();
        let value = 0xabcdu64;
        let y = pad(&x, &pb, &pe, value).unwrap();
        let want_shape: Vec<usize> = (0..rank).map(|i| shape[i] + pb[i] + pe[i]).collect();
        assert_eq!(y.shape(), want_shape.as_slice());
        for idx in indices(y.shape()) {
            let inside = (0..rank).all(|i| idx[i] >= pb[i] && idx[i] < pb[i] + shape[i]);
            let want = if inside {
                let src: Vec<usize> = (0..rank).map(|i| idx[i] - pb[i]).collect();
                get(&x, &src)
            } else {
                value
            };
            assert_eq!(get(&y, &idx), want);
        }
    }
    let x = Tensor::new(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
    let y = pad(&x, &[1, 0], &[0, 1], -1.0).unwrap();
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(y.data(), &[-1.0, -1.0, -1.0, 1.0, 2.0, -1.0]);
    assert!(pad(&x, &[1], &[0, 1], 0.0).is_err());
    assert!(pad(&x, &[1, 0], &[0], 0.0).is_err());
}

#[test]
fn slice_matches_definition() {
    let mut rng = rng(3);
    for _ in 0..500 {
        let rank = rng.random_range(1..=4);
        let shape = random_shape(&mut rng, rank, 6);
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let mut starts = vec![];
        let mut ends = vec![];
        let mut steps = vec![];
        for &d in &shape {
            let d = d as i64;
            let step = *[1i64, 1, 2, 3, -1, -2].choose(&mut rng).unwrap();
            if step > 0 {
                starts.push(rng.random_range(0..=d));
                ends.push(rng.random_range(0..=d));
            } else {
                starts.push(rng.random_range(0..d));
                ends.push(rng.random_range(-1..d));
            }
            steps.push(step);
        }
        let y = slice(&x, &starts, &ends, &steps).unwrap();
        // The selected indices of each axis, by walking.
        let picked: Vec<Vec<usize>> = (0..rank)
            .map(|i| {
                let mut v = vec![];
                let mut p = starts[i];
                while (steps[i] > 0 && p < ends[i]) || (steps[i] < 0 && p > ends[i]) {
                    v.push(p as usize);
                    p += steps[i];
                }
                v
            })
            .collect();
        let want_shape: Vec<usize> = picked.iter().map(|v| v.len()).collect();
        assert_eq!(y.shape(), want_shape.as_slice(), "{shape:?} {starts:?} {ends:?} {steps:?}");
        for idx in indices(y.shape()) {
            let src: Vec<usize> = (0..rank).map(|i| picked[i][idx[i]]).collect();
            assert_eq!(get(&y, &idx), get(&x, &src));
        }
    }
}

#[test]
fn slice_hand_cases_and_errors() {
    let x = Tensor::new(vec![5], vec![0u64, 1, 2, 3, 4]).unwrap();
    assert_eq!(slice(&x, &[4], &[-1], &[-1]).unwrap().data(), &[4, 3, 2, 1, 0]);
    assert_eq!(slice(&x, &[1], &[5], &[2]).unwrap().data(), &[1, 3]);
    assert_eq!(slice(&x, &[3], &[1], &[1]).unwrap().shape(), &[0]);
    assert!(slice(&x, &[0], &[6], &[1]).is_err());
    assert!(slice(&x, &[5], &[0], &[-1]).is_err());
    assert!(slice(&x, &[0], &[5], &[0]).is_err());
    assert_eq!(slice(&x, &[2], &[5], &[i64::MAX]).unwrap().data(), &[2]);
    assert_eq!(slice(&x, &[4], &[-1], &[i64::MIN + 1]).unwrap().data(), &[4]);
    assert!(slice(&x, &[0], &[i64::MAX], &[1]).unwrap_err().0.contains("slice"));
    assert!(slice(&x, &[0, 0], &[5, 5], &[1, 1]).is_err());
}

#[test]
fn concat_matches_definition() {
    let mut rng = rng(4);
    for _ in 0..200 {
        let rank = rng.random_range(1..=4);
        let axis = rng.random_range(0..rank);
        let base = random_shape(&mut rng, rank, 4);
        let count = rng.random_range(1..=4);
        let parts: Vec<Tensor<u64>> = (0..count)
            .map(|_| {
                let mut s = base.clone();
                s[axis] = rng.random_range(0..=3);
                random_tensor(&mut rng, &s)
            })
            .collect();
        let refs: Vec<&Tensor<u64>> = parts.iter().collect();
        let y = concat(&refs, axis).unwrap();
        let mut want_shape = base.clone();
        want_shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
        assert_eq!(y.shape(), want_shape.as_slice());
        for idx in indices(y.shape()) {
            let mut k = idx[axis];
            let mut part = 0;
            while k >= parts[part].shape()[axis] {
                k -= parts[part].shape()[axis];
                part += 1;
            }
            let mut src = idx.clone();
            src[axis] = k;
            assert_eq!(get(&y, &idx), get(&parts[part], &src));
        }
    }
    let a = Tensor::<f32>::zeros(vec![2, 3]);
    let b = Tensor::<f32>::zeros(vec![3, 3]);
    assert!(concat(&[&a, &b], 1).is_err());
    assert_eq!(concat(&[&a, &b], 0).unwrap().shape(), &[5, 3]);
    assert!(concat(&[&a, &b], 2).is_err());
    assert!(concat::<f32>(&[], 0).is_err());
    let c = Tensor::<f32>::zeros(vec![2, 3, 1]);
    assert!(concat(&[&a, &c], 0).is_err());
}

#[test]
fn gather_matches_definition() {
    let mut rng = rng(5);
    for _ in 0..200 {
        let rank = rng.random_range(1..=4);
        let axis = rng.random_range(0..rank);
        let shape = random_shape(&mut rng, rank, 5);
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let ids: Vec<usize> = (0..rng.random_range(0..6)).map(|_| rng.random_range(0..shape[axis])).collect();
        let y = gather(&x, axis, &ids).unwrap();
        let mut want_shape = shape.clone();
        want_shape[axis] = ids.len();
        assert_eq!(y.shape(), want_shape.as_slice());
        for idx in indices(y.shape()) {
            let mut src = idx.clone();
            src[axis] = ids[idx[axis]];
            assert_eq!(get(&y, &idx), get(&x, &src));
        }
    }
    let x = Tensor::new(vec![2, 2], vec![1u64, 2, 3, 4]).unwrap();
    assert_eq!(gather(&x, 1, &[1, 1, 0]).unwrap().data(), &[2, 2, 1, 4, 4, 3]);
    assert!(gather(&x, 1, &[2]).is_err());
    assert!(gather(&x, 2, &[0]).is_err());
}

#[test]
fn broadcast_matches_definition() {
    let mut rng = rng(6);
    for _ in 0..300 {
        let rank = rng.random_range(0..=4);
        let target = random_shape(&mut rng, rank, 4);
        let lead = rng.random_range(0..=rank);
        let shape: Vec<usize> = target[lead..].iter().map(|&d| if rng.random_bool(0.4) { 1 } else { d }).collect();
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let y = broadcast_to(&x, &target).unwrap();
        assert_eq!(y.shape(), target.as_slice());
        for idx in indices(&target) {
            let src: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if d == 1 { 0 } else { idx[lead + i] }).collect();
            assert_eq!(get(&y, &idx), get(&x, &src));
        }
        assert_eq!(broadcast_shapes(&shape, &target).unwrap(), target);
        assert_eq!(broadcast_shapes(&target, &shape).unwrap(), target);
    }
    assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
    assert_eq!(broadcast_shapes(&[], &[3, 1]).unwrap(), vec![3, 1]);
    assert_eq!(broadcast_shapes(&[0], &[1]).unwrap(), vec![0]);
    assert!(broadcast_shapes(&[2, 3], &[3, 2]).is_err());
    let x = Tensor::new(vec![2, 1], vec![1u64, 2]).unwrap();
    assert_eq!(broadcast_to(&x, &[2, 3]).unwrap().data(), &[1, 1, 1, 2, 2, 2]);
    assert_eq!(broadcast_to(&x, &[2, 2, 2]).unwrap().data(), &[1, 1, 2, 2, 1, 1, 2, 2]);
    assert!(broadcast_to(&x, &[3, 3]).is_err());
    assert!(broadcast_to(&x, &[2]).is_err());
    assert_eq!(broadcast_to(&x, &[0, 2, 0]).unwrap().shape(), &[0, 2, 0]);
}
