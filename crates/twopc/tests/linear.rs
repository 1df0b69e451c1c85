//! MatMul, Conv, ConvTranspose, elementwise products, sharing, ScaleDown and Divide against the
//! cleartext backend, with communication asserted word for word against the crate docs.

#![allow(clippy::too_many_arguments)]

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, ConvGeometry, Owner, RingTensor};
use cryptflow_porthos::lower::Lowering;
use cryptflow_tensor::Layout;

#[test]
fn sharing_is_free_and_reveal_sends_one_share() {
    let mut r = rng(1);
    let x = random_tensor(&mut r, &[3, 5]);
    let y = random_tensor(&mut r, &[2]);
    let out = run(|p| {
        let me = p.party_id();
        let before = p.traffic().bytes_sent;
        let xs = p.share(Owner::ModelOwner, &[3, 5], (me == 0).then_some(&x)).unwrap();
        let ys = p.share(Owner::Client, &[2], (me == 1).then_some(&y)).unwrap();
        let share_bytes = p.traffic().bytes_sent - before;
        let rx = p.reveal(&xs, Owner::Client).unwrap();
        let ry = p.reveal(&ys, Owner::ModelOwner).unwrap();
        (share_bytes, p.traffic().bytes_sent - before, rx, ry, xs, p.adds_public_constants())
    });
    assert!(out.iter().all(|o| o.0 == 0), "sharing costs no communication");
    assert_eq!(out[0].1, 8 * 15, "the owner sends its share of x");
    assert_eq!(out[1].1, 8 * 2, "the client sends its share of y");
    assert_eq!(out[1].2.as_ref().unwrap(), &x);
    assert_eq!(out[0].3.as_ref().unwrap(), &y);
    assert!(out[0].2.is_none() && out[1].3.is_none());
    // The model owner's values are shared as (value, 0): the client's share is zero and tells it
    // nothing. The client's input is masked with a uniform r known to both.
    assert_eq!(out[0].4, x);
    assert!(out[1].4.data().iter().all(|&v| v == 0));
    assert!(out[0].5 && !out[1].5, "only the model owner adds public constants");
}

#[test]
fn session_setup_costs_what_the_docs_say() {
    let out = run(|p| p.traffic().bytes_sent);
    assert_eq!(out[0], 8 * (2 + 512));
    assert_eq!(out[1], 8 * (4 + 256));
}

const OWNERS: [(Owner, Owner); 4] = [
    (Owner::Client, Owner::ModelOwner),
    (Owner::Client, Owner::Client),
    (Owner::ModelOwner, Owner::Client),
    (Owner::ModelOwner, Owner::ModelOwner),
];

#[test]
fn matmul_matches_cleartext_and_the_formula() {
    // (m, k, n): bits of A when MK <= KN, of B otherwise (the transposed path); every
    // combination of owners (both cross terms, one, or none).
    for owners in OWNERS {
        for (m, k, n) in [(3, 4, 5), (1, 7, 1), (6, 2, 3), (1, 16, 4), (5, 3, 1)] {
            let mut r = rng(2 + m as u64 * 31 + n as u64);
            let a = random_tensor(&mut r, &[m, k]);
            let b = signed_tensor(&mut r, &[k, n], 1 << 40);
            let expected = Cleartext.matmul(&a, &b).unwrap();
            let (got, sent) = secure_eval(&[(owners.0, a), (owners.1, b)], |p, s| p.matmul(&s[0], &s[1]).unwrap());
            assert_eq!(got, expected, "matmul {m}x{k}x{n} {owners:?}");
            let dec_a = m * k <= k * n;
            let (s, w) = if dec_a { (m * k, n) } else { (k * n, m) };
            assert_eq!(sent, bytes(product_words(owners, s as u64, w as u64, dec_a)), "matmul {m}x{k}x{n} {owners:?} bytes");
        }
    }
}

#[test]
fn large_products_run_in_batches_with_the_same_communication() {
    let mut r = rng(8);
    let (m, k, n) = (7, 5, 9);
    let a = random_tensor(&mut r, &[m, k]);
    let b = random_tensor(&mut r, &[k, n]);
    let expected = Cleartext.matmul(&a, &b).unwrap();
    for owners in OWNERS {
        let out = run(|p| {
            // About one output row per batch: 7 batches.
            p.set_batch_words(k * 293);
            let me = p.party_id();
            let mine = |o: Owner| (o == Owner::ModelOwner) == (me == 0);
            let xa = p.share(owners.0, &[m, k], mine(owners.0).then_some(&a)).unwrap();
            let xb = p.share(owners.1, &[k, n], mine(owners.1).then_some(&b)).unwrap();
            let before = p.traffic();
            let z = p.matmul(&xa, &xb).unwrap();
            let after = p.traffic();
            (p.reveal(&z, Owner::Client).unwrap(), after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
        });
        assert_eq!(out[1].0.as_ref().unwrap(), &expected, "{owners:?}");
        assert_eq!([out[0].1, out[1].1], bytes(product_words(owners, (m * k) as u64, n as u64, true)), "{owners:?}");
        if owners != (Owner::ModelOwner, Owner::ModelOwner) {
            assert!(out[1].2 >= 7, "{owners:?}: {} rounds", out[1].2);
        }
    }
}

#[test]
fn products_of_protocol_outputs_use_both_cross_terms() {
    // Shares coming out of a protocol are random on both sides: both cross terms run.
    let mut r = rng(9);
    let a = signed_tensor(&mut r, &[2, 3], 1 << 30);
    let b = signed_tensor(&mut r, &[3, 2], 1 << 30);
    let mut clear = Cleartext;
    let (ra, rb) = (clear.relu(&a).unwrap(), clear.relu(&b).unwrap());
    let expected = clear.matmul(&ra, &rb).unwrap();
    let (got, _) = secure_eval(&[(Owner::ModelOwner, a), (Owner::ModelOwner, b)], |p, s| {
        let (x, y) = (p.relu(&s[0]).unwrap(), p.relu(&s[1]).unwrap());
        let before = p.traffic().bytes_sent;
        let z = p.matmul(&x, &y).unwrap();
        let words = product_words((Owner::Client, Owner::Client), 6, 2, true)[p.party_id()];
        assert_eq!(p.traffic().bytes_sent - before, 8 * words);
        z
    });
    assert_eq!(got, expected);
}

#[test]
fn products_are_exact_at_the_limits_of_the_ring() {
    let ext = [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 0x5555_5555_5555_5555, 2];
    let n = ext.len();
    let a = RingTensor::new(vec![n], ext.to_vec()).unwrap();
    let b = RingTensor::new(vec![n], ext.iter().rev().copied().collect()).unwrap();
    let expected = Cleartext.mul(&a, &b).unwrap();
    let (got, sent) = secure_eval(&[(Owner::Client, a), (Owner::ModelOwner, b)], |p, s| p.mul(&s[0], &s[1]).unwrap());
    assert_eq!(got, expected);
    assert_eq!(sent, bytes(product_words((Owner::Client, Owner::ModelOwner), n as u64, 1, true)));
}

#[test]
fn elementwise_mul_matches_cleartext() {
    let mut r = rng(3);
    let a = random_tensor(&mut r, &[4, 9]);
    let b = signed_tensor(&mut r, &[4, 9], 1 << 20);
    let expected = Cleartext.mul(&a, &b).unwrap();
    for owners in OWNERS {
        let (got, sent) = secure_eval(&[(owners.0, a.clone()), (owners.1, b.clone())], |p, s| p.mul(&s[0], &s[1]).unwrap());
        assert_eq!(got, expected, "{owners:?}");
        // Per cross term and element: 128 words of OT extension from the chooser and
        // ceil(2080 / 64) = 33 of corrections from the other party.
        assert_eq!(sent, bytes(product_words(owners, 36, 1, true)), "{owners:?}");
    }
}

fn geom(layout: Layout, batch: usize, i: usize, o: usize, groups: usize, input: &[usize], kernel: &[usize], strides: &[usize], dilations: &[usize], pads: (&[usize], &[usize])) -> ConvGeometry {
    ConvGeometry {
        layout,
        batch,
        in_channels: i,
        out_channels: o,
        groups,
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads_begin: pads.0.to_vec(),
        pads_end: pads.1.to_vec(),
        output_padding: vec![0; input.len()],
    }
}

/// Conv words per party from the lowered shapes (crate docs), input from the client and
/// filter from the model owner.
fn conv_words(g: &ConvGeometry, transpose: bool) -> [u64; 2] {
    let l = Lowering::new(g, transpose);
    let dec_a = l.cout_g > l.rows;
    let (s, w) = if dec_a { (l.groups * l.rows * l.cols, l.cout_g) } else { (l.groups * l.cols * l.cout_g, l.rows) };
    product_words((Owner::Client, Owner::ModelOwner), s as u64, w as u64, dec_a)
}

fn check_conv(g: &ConvGeometry, transpose: bool, seed: u64) {
    let mut r = rng(seed);
    let wshape = if transpose { g.conv_transpose_filter_shape() } else { g.conv_filter_shape() };
    let x = random_tensor(&mut r, &g.input_shape());
    let w = signed_tensor(&mut r, &wshape, 1 << 14);
    let expected = if transpose { Cleartext.conv_transpose(&x, &w, g).unwrap() } else { Cleartext.conv(&x, &w, g).unwrap() };
    let (got, sent) = secure_eval(&[(Owner::Client, x), (Owner::ModelOwner, w)], |p, s| {
        if transpose {
            p.conv_transpose(&s[0], &s[1], g).unwrap()
        } else {
            p.conv(&s[0], &s[1], g).unwrap()
        }
    });
    assert_eq!(got, expected, "{g:?} transpose={transpose}");
    assert_eq!(sent, bytes(conv_words(g, transpose)), "{g:?} transpose={transpose} bytes");
}

#[test]
fn convolutions_match_cleartext_and_the_formula() {
    let cf = Layout::ChannelsFirst;
    let cl = Layout::ChannelsLast;
    let cases = [
        // LeNet-like: 5x5 valid, one input channel.
        geom(cf, 1, 1, 3, 1, &[8, 8], &[5, 5], &[1, 1], &[1, 1], (&[0, 0], &[0, 0])),
        // Stride, asymmetric padding, channels-last, batch 2.
        geom(cl, 2, 2, 4, 1, &[5, 6], &[3, 3], &[2, 1], &[1, 1], (&[1, 0], &[0, 1])),
        // Groups and dilation.
        geom(cf, 1, 4, 4, 2, &[7, 7], &[3, 3], &[1, 1], &[2, 2], (&[1, 1], &[1, 1])),
        // Many output channels over few positions: the lowered input's bits.
        geom(cf, 1, 2, 9, 1, &[2, 2], &[2, 2], &[1, 1], &[1, 1], (&[0, 0], &[0, 0])),
        // 1-D and 3-D.
        geom(cf, 1, 2, 3, 1, &[9], &[3], &[2], &[1], (&[1], &[1])),
        geom(cl, 1, 1, 2, 1, &[3, 4, 3], &[2, 2, 2], &[1, 1, 1], &[1, 1, 1], (&[0, 0, 0], &[0, 0, 0])),
    ];
    for (i, g) in cases.iter().enumerate() {
        check_conv(g, false, 10 + i as u64);
    }
}

#[test]
fn transposed_convolutions_match_cleartext() {
    let mut g = geom(Layout::ChannelsFirst, 1, 3, 2, 1, &[3, 4], &[3, 3], &[2, 2], &[1, 1], (&[1, 1], &[0, 1]));
    g.output_padding = vec![1, 0];
    check_conv(&g, true, 30);
    let g = geom(Layout::ChannelsLast, 2, 2, 4, 2, &[4, 3], &[2, 2], &[1, 2], &[1, 1], (&[0, 0], &[0, 0]));
    check_conv(&g, true, 31);
}

#[test]
fn malformed_products_fail_before_any_message() {
    let out = run(|p| {
        let before = p.traffic();
        let a = RingTensor::zeros(vec![2, 3]);
        let b = RingTensor::zeros(vec![4, 2]);
        let e1 = p.matmul(&a, &b).is_err();
        let e2 = p.mul(&a, &b).is_err();
        let g = geom(Layout::ChannelsFirst, 1, 1, 1, 1, &[2, 2], &[3, 3], &[1, 1], &[1, 1], (&[0, 0], &[0, 0]));
        let e3 = p.conv(&RingTensor::zeros(vec![1, 1, 2, 2]), &RingTensor::zeros(vec![1, 1, 3, 3]), &g).is_err();
        (e1 && e2 && e3, p.traffic() == before)
    });
    assert!(out.iter().all(|&(e, quiet)| e && quiet));
}

#[test]
fn scale_down_and_divide_are_local_and_off_by_at_most_one() {
    let mut r = rng(40);
    let x = signed_tensor(&mut r, &[500], 1 << 45);
    for shift in [0u32, 1, 12, 24] {
        let expected = Cleartext.scale_down(&x, shift).unwrap();
        let (got, bytes) = secure_eval(&[(Owner::Client, x.clone())], |p, s| p.scale_down(&s[0], shift).unwrap());
        assert_eq!(bytes, [0, 0]);
        for (g, e) in got.data().iter().zip(expected.data()) {
            let d = g.wrapping_sub(*e);
            assert!(d == 0 || d == 1, "shift {shift}: got {g} expected {e}");
        }
    }
    let divisors = RingTensor::new(vec![500], (0..500).map(|i| 1 + (i % 9) as u64).collect()).unwrap();
    let expected = Cleartext.divide(&x, &divisors).unwrap();
    let (got, bytes) = secure_eval(&[(Owner::Client, x.clone())], |p, s| p.divide(&s[0], &divisors).unwrap());
    assert_eq!(bytes, [0, 0]);
    for (g, e) in got.data().iter().zip(expected.data()) {
        let d = g.wrapping_sub(*e);
        assert!(d == 0 || d == 1);
    }
}
