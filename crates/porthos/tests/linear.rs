//! MatMul, Conv, ConvTranspose, elementwise products, sharing, ScaleDown and Divide against
//! the cleartext backend, with the communication of Table III asserted byte for byte.

#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, ConvGeometry, Owner, RingTensor};
use cryptflow_porthos::ProtocolVariant;
use cryptflow_tensor::{num_elements, Layout};

const L: u64 = 64; // bits per ring element

#[test]
fn sharing_is_free_and_reveal_sends_one_share() {
    for variant in VARIANTS {
        let mut r = rng(1);
        let x = random_tensor(&mut r, &[3, 5]);
        let y = random_tensor(&mut r, &[2]);
        let out = run(variant, |p| {
            let me = p.party_id();
            let before = p.traffic().bytes_sent;
            let xs = p.share(Owner::ModelOwner, &[3, 5], (me == 0).then_some(&x)).unwrap();
            let ys = p.share(Owner::Client, &[2], (me == 1).then_some(&y)).unwrap();
            let share_bytes = p.traffic().bytes_sent - before;
            if me == 2 {
                assert!(xs.data().iter().all(|&v| v == 0));
            }
            let rx = p.reveal(&xs, Owner::Client).unwrap();
            let ry = p.reveal(&ys, Owner::ModelOwner).unwrap();
            (share_bytes, p.traffic().bytes_sent - before, rx, ry, xs)
        });
        assert!(out.iter().all(|o| o.0 == 0), "sharing costs no communication");
        let total: u64 = out.iter().map(|o| o.1).sum();
        assert_eq!(total, 8 * (15 + 2));
        assert_eq!(out[1].2.as_ref().unwrap(), &x);
        assert_eq!(out[0].3.as_ref().unwrap(), &y);
        assert!(out[0].2.is_none() && out[2].2.is_none() && out[1].3.is_none() && out[2].3.is_none());
        if variant == ProtocolVariant::Compact {
            // The owner's values stay whole in its share; the client's share is zero.
            assert_eq!(out[0].4, x);
            assert!(out[1].4.data().iter().all(|&v| v == 0));
        } else {
            // The shares themselves are not the value.
            assert_ne!(out[0].4, x);
            assert_ne!(out[1].4, x);
        }
    }
}

#[test]
fn matmul_matches_cleartext_and_table_iii() {
    for variant in VARIANTS {
        for (m, k, n) in [(3, 4, 5), (1, 7, 1), (6, 2, 3)] {
            let mut r = rng(2 + m as u64);
            let a = random_tensor(&mut r, &[m, k]);
            let b = signed_tensor(&mut r, &[k, n], 1 << 40);
            let expected = Cleartext.matmul(&a, &b).unwrap();
            let (got, bytes) = secure_eval(variant, &[(Owner::Client, a), (Owner::ModelOwner, b)], |p, s| {
                p.matmul(&s[0], &s[1]).unwrap()
            });
            assert_eq!(got, expected, "{variant:?} matmul {m}x{k}x{n}");
            assert_eq!(bytes * 8, (2 * m * k + 2 * k * n + m * n) as u64 * L, "{variant:?} matmul bytes");
        }
    }
}

#[test]
fn elementwise_mul_matches_cleartext() {
    for variant in VARIANTS {
        let mut r = rng(3);
        let a = random_tensor(&mut r, &[4, 9]);
        let b = random_tensor(&mut r, &[4, 9]);
        let expected = Cleartext.mul(&a, &b).unwrap();
        let (got, bytes) =
            secure_eval(variant, &[(Owner::Client, a), (Owner::ModelOwner, b)], |p, s| p.mul(&s[0], &s[1]).unwrap());
        assert_eq!(got, expected);
        assert_eq!(bytes * 8, 36 * 5 * L);
    }
}

fn geom(
    layout: Layout,
    batch: usize,
    i: usize,
    o: usize,
    groups: usize,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: (&[usize], &[usize]),
) -> ConvGeometry {
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

/// Conv2d_{m,i,f,o} with stride and symmetric padding, channels-first, batch 1.
fn conv2d(m: usize, i: usize, f: usize, o: usize, stride: usize, pad: usize) -> ConvGeometry {
    geom(Layout::ChannelsFirst, 1, i, o, 1, &[m, m], &[f, f], &[stride, stride], &[1, 1], (&[pad, pad], &[pad, pad]))
}

/// Runs a (transposed) convolution under both variants; checks the value against the cleartext
/// backend and the bytes against `2|X| + 2|Y| + |Z|` (Porthos) or `2|X'| + 2|Y| + |Z|`
/// (SecureNN, X' the im2col-reshaped input). Returns the bytes per variant.
fn check_conv(g: &ConvGeometry, transpose: bool, seed: u64) -> [u64; 3] {
    let mut r = rng(seed);
    let (wshape, out) = if transpose {
        (g.conv_transpose_filter_shape(), g.conv_transpose_output_shape())
    } else {
        (g.conv_filter_shape(), g.conv_output_shape())
    };
    let x = signed_tensor(&mut r, &g.input_shape(), 1 << 30);
    let w = random_tensor(&mut r, &wshape);
    let expected = if transpose { Cleartext.conv_transpose(&x, &w, g) } else { Cleartext.conv(&x, &w, g) }.unwrap();
    let (x_len, w_len, z_len) = (x.len() as u64, w.len() as u64, num_elements(&out) as u64);
    let spatial_out: Vec<usize> = if transpose { g.conv_transpose_output() } else { g.conv_output() };
    let lowered_len = (g.batch * num_elements(&spatial_out) * g.in_channels * num_elements(&g.kernel)) as u64;
    let mut bytes = [0; 3];
    for (v, variant) in VARIANTS.into_iter().enumerate() {
        let (got, b) = secure_eval(variant, &[(Owner::Client, x.clone()), (Owner::ModelOwner, w.clone())], |p, s| {
            if transpose {
                p.conv_transpose(&s[0], &s[1], g).unwrap()
            } else {
                p.conv(&s[0], &s[1], g).unwrap()
            }
        });
        assert_eq!(got, expected, "{variant:?} transpose={transpose} {g:?}");
        let words = match variant {
            ProtocolVariant::Porthos | ProtocolVariant::Compact => 2 * x_len + 2 * w_len + z_len,
            ProtocolVariant::SecureNN => 2 * lowered_len + 2 * w_len + z_len,
        };
        assert_eq!(b * 8, words * L, "{variant:?} transpose={transpose} bytes, {g:?}");
        bytes[v] = b;
    }
    bytes
}

#[test]
fn conv2d_matches_cleartext_and_table_iii() {
    // (m, i, f, o, stride, pad)
    for (t, &(m, i, f, o, s, pad)) in
        [(5, 1, 3, 1, 1, 0), (6, 2, 3, 3, 1, 0), (7, 3, 2, 2, 1, 0), (8, 2, 3, 4, 2, 1), (5, 2, 5, 1, 1, 2), (9, 1, 1, 3, 3, 0)]
            .iter()
            .enumerate()
    {
        let g = conv2d(m, i, f, o, s, pad);
        let q = g.conv_output()[0] as u64;
        let (m, i, f, o) = (m as u64, i as u64, f as u64, o as u64);
        let [porthos, securenn, _compact] = check_conv(&g, false, 10 + t as u64);
        // Table III, generalised to strides and padding by q = the output extent.
        assert_eq!(porthos * 8, (2 * m * m * i + 2 * f * f * o * i + q * q * o) * L);
        assert_eq!(securenn * 8, (2 * q * q * f * f * i + 2 * f * f * o * i + q * q * o) * L);
        if f > 1 && s == 1 {
            assert!(porthos < securenn);
        }
    }
}

#[test]
fn conv_general_geometries() {
    let cases = [
        // channels-last, batch 2, dilation 2, asymmetric padding
        geom(Layout::ChannelsLast, 2, 3, 4, 1, &[6, 5], &[2, 3], &[1, 2], &[2, 1], (&[1, 0], &[0, 2])),
        // grouped (2 groups) and depthwise
        geom(Layout::ChannelsFirst, 1, 4, 6, 2, &[5, 5], &[3, 3], &[1, 1], &[1, 1], (&[1, 1], &[1, 1])),
        geom(Layout::ChannelsLast, 1, 3, 3, 3, &[4, 6], &[3, 3], &[2, 1], &[1, 1], (&[1, 1], &[1, 1])),
        // 3D and 1D
        geom(Layout::ChannelsFirst, 1, 2, 2, 1, &[4, 4, 3], &[2, 2, 2], &[1, 1, 1], &[1, 1, 1], (&[0, 1, 0], &[0, 0, 1])),
        geom(Layout::ChannelsLast, 1, 2, 3, 1, &[4, 5, 4], &[3, 2, 2], &[1, 2, 1], &[1, 1, 2], (&[1, 0, 0], &[1, 1, 0])),
        geom(Layout::ChannelsFirst, 2, 3, 2, 1, &[9], &[3], &[2], &[1], (&[1], &[1])),
    ];
    for (t, g) in cases.iter().enumerate() {
        check_conv(g, false, 100 + t as u64);
    }
}

#[test]
fn conv_transpose_matches_cleartext() {
    let mut cases = [
        geom(Layout::ChannelsFirst, 1, 2, 3, 1, &[3, 3], &[3, 3], &[2, 2], &[1, 1], (&[1, 1], &[1, 1])),
        geom(Layout::ChannelsLast, 2, 4, 2, 2, &[3, 4], &[2, 2], &[2, 1], &[1, 1], (&[0, 0], &[0, 1])),
        geom(Layout::ChannelsFirst, 1, 2, 2, 1, &[2, 3, 2], &[2, 2, 2], &[2, 2, 1], &[1, 1, 1], (&[0, 0, 0], &[0, 0, 0])),
        geom(Layout::ChannelsFirst, 1, 1, 2, 1, &[4], &[3], &[1], &[2], (&[1], &[0])),
    ];
    cases[0].output_padding = vec![1, 0];
    for (t, g) in cases.iter().enumerate() {
        check_conv(g, true, 200 + t as u64);
    }
}

#[test]
fn scale_down_and_divide_are_local_and_within_one() {
    for variant in VARIANTS {
        let mut r = rng(4);
        let x = signed_tensor(&mut r, &[200], 1 << 45);
        for shift in [0u32, 1, 12, 30] {
            let expected = Cleartext.scale_down(&x, shift).unwrap();
            let (got, bytes) = secure_eval(variant, &[(Owner::ModelOwner, x.clone())], |p, s| p.scale_down(&s[0], shift).unwrap());
            assert_eq!(bytes, 0);
            for (g, e) in got.data().iter().zip(expected.data()) {
                let d = g.wrapping_sub(*e) as i64;
                assert!(d == 0 || d == 1, "scale_down by {shift}: got {g} expected {e}");
            }
        }
        let divisors = RingTensor::new(vec![200], (0..200).map(|i| 1 + (i * 7 % 50) as u64).collect()).unwrap();
        let expected = Cleartext.divide(&x, &divisors).unwrap();
        let (got, bytes) = secure_eval(variant, &[(Owner::Client, x.clone())], |p, s| p.divide(&s[0], &divisors).unwrap());
        assert_eq!(bytes, 0);
        for (g, e) in got.data().iter().zip(expected.data()) {
            let d = g.wrapping_sub(*e) as i64;
            assert!(d == 0 || d == 1, "divide: got {g} expected {e}");
        }
    }
}

#[test]
fn a_rejected_input_leaves_the_parties_in_step() {
    let x = RingTensor::new(vec![3], vec![5, 6, 7]).unwrap();
    let wrong = RingTensor::new(vec![4], vec![1, 2, 3, 4]).unwrap();
    let out = run(ProtocolVariant::Porthos, |p| {
        let me = p.party_id();
        let bad = p.share(Owner::ModelOwner, &[3], (me == 0).then_some(&wrong));
        assert_eq!(bad.is_err(), me == 0);
        let missing = p.share(Owner::Client, &[3], None);
        assert_eq!(missing.is_err(), me == 1);
        let s = p.share(Owner::ModelOwner, &[3], (me == 0).then_some(&x)).unwrap();
        p.reveal(&s, Owner::Client).unwrap()
    });
    assert_eq!(out[1].as_ref().unwrap(), &x);
}
