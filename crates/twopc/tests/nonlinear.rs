//! ReLU, MaxPool and ArgMax against the cleartext backend (negative values, ties, the limits of
//! the supported ranges), communication asserted word for word against the crate docs.

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, Owner, PoolGeometry, RingTensor};
use cryptflow_tensor::Layout;

#[test]
fn relu_is_exact_on_the_whole_ring() {
    let mut r = rng(5);
    for n in [1usize, 37, 64, 200] {
        let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1i128 << 63)).unwrap();
        let expected = Cleartext.relu(&x).unwrap();
        let (got, bytes) = secure_eval(&[(Owner::Client, x.clone())], |p, s| p.relu(&s[0]).unwrap());
        assert_eq!(got, expected, "n = {n}");
        assert_eq!(bytes, relu_bytes(n as u64), "n = {n}");
    }
}

#[test]
fn relu_takes_seven_rounds() {
    let out = run(|p| {
        let x = RingTensor::new(vec![10], (0..10u64).collect()).unwrap();
        p.relu(&x).unwrap();
        let before = p.traffic().rounds;
        p.relu(&x).unwrap();
        p.traffic().rounds - before
    });
    assert_eq!(out, vec![7, 7]);
}

#[test]
fn drelu_of_owner_and_client_values() {
    // Values shared by either party, and the values whose shares are most lopsided.
    let vals: Vec<u64> = vec![0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 62, (1u64 << 62).wrapping_neg(), 12345, 12345u64.wrapping_neg()];
    let x = RingTensor::new(vec![vals.len()], vals.clone()).unwrap();
    for owner in [Owner::ModelOwner, Owner::Client] {
        let expected = Cleartext.relu(&x).unwrap();
        let (got, _) = secure_eval(&[(owner, x.clone())], |p, s| p.relu(&s[0]).unwrap());
        assert_eq!(got, expected);
    }
}

fn pool(layout: Layout, batch: usize, channels: usize, input: &[usize], window: &[usize], strides: &[usize], pads: (&[usize], &[usize])) -> PoolGeometry {
    PoolGeometry {
        layout,
        batch,
        channels,
        input: input.to_vec(),
        window: window.to_vec(),
        strides: strides.to_vec(),
        pads_begin: pads.0.to_vec(),
        pads_end: pads.1.to_vec(),
        count_include_pad: false,
    }
}

#[test]
fn max_pool_matches_cleartext() {
    let limit = 1i128 << 62;
    let cases = [
        pool(Layout::ChannelsFirst, 1, 2, &[4, 4], &[2, 2], &[2, 2], (&[0, 0], &[0, 0])),
        // Windows of 9 (an odd tree), padding, channels-last, batch 2.
        pool(Layout::ChannelsLast, 2, 3, &[3, 4], &[3, 3], &[1, 2], (&[1, 1], &[1, 1])),
        pool(Layout::ChannelsFirst, 1, 1, &[7], &[3], &[2], (&[0], &[0])),
    ];
    for (i, g) in cases.iter().enumerate() {
        let mut r = rng(50 + i as u64);
        let n: usize = g.input_shape().iter().product();
        let x = RingTensor::new(g.input_shape(), comparison_values(&mut r, n, limit)).unwrap();
        let expected = Cleartext.max_pool(&x, g).unwrap();
        let (got, bytes) = secure_eval(&[(Owner::Client, x)], |p, s| p.max_pool(&s[0], g).unwrap());
        assert_eq!(got, expected, "{g:?}");
        let k: usize = g.window.iter().product();
        let o: usize = g.output_shape().iter().product();
        assert_eq!(bytes, tournament_bytes(k as u64, o as u64, false), "{g:?}");
    }
}

#[test]
fn argmax_matches_cleartext_with_ties() {
    let mut r = rng(60);
    // Ties: the first index wins, as in the cleartext executor.
    let mut v = comparison_values(&mut r, 3 * 7, 1i128 << 62);
    v[3] = v[5];
    v[2] = v[3].max(v[2]);
    v[7..14].fill(42);
    let x = RingTensor::new(vec![3, 7], v).unwrap();
    for (axis, keep) in [(1usize, false), (0, true)] {
        let expected = Cleartext.argmax(&x, axis, keep).unwrap();
        let (got, bytes) = secure_eval(&[(Owner::ModelOwner, x.clone())], |p, s| p.argmax(&s[0], axis, keep).unwrap());
        assert_eq!(got, expected, "axis {axis}");
        let (k, o) = if axis == 1 { (7, 3) } else { (3, 7) };
        assert_eq!(bytes, tournament_bytes(k, o, true), "axis {axis}");
    }
}

#[test]
fn a_relu_network_layer_end_to_end() {
    // matmul -> scale_down -> relu -> argmax on fixed-point values, against cleartext (the
    // truncation may differ by one unit, which may flip nothing here but the last bit).
    let mut r = rng(70);
    let x = signed_tensor(&mut r, &[1, 16], 1 << 12);
    let w = signed_tensor(&mut r, &[16, 10], 1 << 12);
    let mut clear = Cleartext;
    let y = clear.matmul(&x, &w).unwrap();
    let y = clear.scale_down(&y, 12).unwrap();
    let expected = clear.relu(&y).unwrap();
    let (got, _) = secure_eval(&[(Owner::Client, x), (Owner::ModelOwner, w)], |p, s| {
        let y = p.matmul(&s[0], &s[1]).unwrap();
        let y = p.scale_down(&y, 12).unwrap();
        p.relu(&y).unwrap()
    });
    for (g, e) in got.data().iter().zip(expected.data()) {
        assert!((*g as i64 - *e as i64).abs() <= 1, "{g} vs {e}");
    }
}
