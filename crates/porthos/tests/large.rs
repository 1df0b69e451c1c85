//! ReLU and MaxPool on tensors large enough for every chunked and parallel path of the
//! comparisons (many chunks of the fused loops, Z_p draws spanning several register batches,
//! rejected Z_p words), against cleartext, in both variants.

mod common;

use common::*;
use cryptflow_backend::{Backend, Owner, PoolGeometry, RingTensor};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_tensor::Layout;

#[test]
fn large_relu_and_max_pool_match_cleartext() {
    for variant in VARIANTS {
        for (n, seed) in [(40_001usize, 60u64), (20_480, 61)] {
            let mut r = rng(seed);
            let x = RingTensor::new(vec![n], comparison_values(&mut r, n, 1 << 62)).unwrap();
            let expected = Cleartext.relu(&x).unwrap();
            let (got, _) = secure_eval(variant, &[(Owner::Client, x)], |p, s| p.relu(&s[0]).unwrap());
            assert_eq!(got, expected, "{variant:?} ReLU of {n}");
        }
        let g = PoolGeometry {
            layout: Layout::ChannelsLast,
            batch: 1,
            channels: 24,
            input: vec![41, 41],
            window: vec![3, 3],
            strides: vec![2, 2],
            pads_begin: vec![0, 0],
            pads_end: vec![0, 0],
            count_include_pad: false,
        };
        let mut r = rng(62);
        let x = RingTensor::new(g.input_shape(), comparison_values(&mut r, g.input_shape().iter().product(), 1 << 61)).unwrap();
        let expected = Cleartext.max_pool(&x, &g).unwrap();
        let (got, _) = secure_eval(variant, &[(Owner::Client, x)], |p, s| p.max_pool(&s[0], &g).unwrap());
        assert_eq!(got, expected, "{variant:?} MaxPool");
    }
}
