//! Timing of the main protocols on larger tensors (ignored by default:
//! `cargo test -p cryptflow-porthos --test perf -- --ignored --nocapture`).

mod common;

use std::time::Instant;

use common::*;
use cryptflow_backend::{Backend, ConvGeometry, Owner, PoolGeometry};
use cryptflow_tensor::Layout;

#[test]
#[ignore]
fn timings() {
    for variant in VARIANTS {
        let mut r = rng(9);
        let n = 1 << 18;
        let x = signed_tensor(&mut r, &[n], 1 << 40);
        let t = Instant::now();
        let (_, bytes) = secure_eval(variant, &[(Owner::Client, x)], |p, s| p.relu(&s[0]).unwrap());
        println!("{variant:?} ReLU x{n}: {:?}, {} MB", t.elapsed(), bytes >> 20);

        let g = ConvGeometry {
            layout: Layout::ChannelsLast,
            batch: 1,
            in_channels: 32,
            out_channels: 32,
            groups: 1,
            input: vec![32, 32],
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads_begin: vec![1, 1],
            pads_end: vec![1, 1],
            output_padding: vec![0, 0],
        };
        let x = signed_tensor(&mut r, &g.input_shape(), 1 << 20);
        let w = signed_tensor(&mut r, &g.conv_filter_shape(), 1 << 20);
        let t = Instant::now();
        let (_, bytes) =
            secure_eval(variant, &[(Owner::Client, x), (Owner::ModelOwner, w)], |p, s| p.conv(&s[0], &s[1], &g).unwrap());
        println!("{variant:?} Conv 32x32x32 3x3x32: {:?}, {} KB", t.elapsed(), bytes >> 10);

        let pg = PoolGeometry {
            layout: Layout::ChannelsLast,
            batch: 1,
            channels: 64,
            input: vec![32, 32],
            window: vec![2, 2],
            strides: vec![2, 2],
            pads_begin: vec![0, 0],
            pads_end: vec![0, 0],
            count_include_pad: false,
        };
        let x = signed_tensor(&mut r, &pg.input_shape(), 1 << 40);
        let t = Instant::now();
        let (_, bytes) = secure_eval(variant, &[(Owner::Client, x)], |p, s| p.max_pool(&s[0], &pg).unwrap());
        println!("{variant:?} MaxPool 2x2 on 32x32x64: {:?}, {} MB", t.elapsed(), bytes >> 20);
    }
}
