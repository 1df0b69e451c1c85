//! ReLU and MaxPool on tensors large enough for every chunked and parallel path of the
//! comparisons (many chunks of the fused loops, Z_p draws spanning several register batches,
//! rejected Z_p words, comparisons streamed in several blocks), against cleartext, in both
//! variants.

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

/// PrivateCompare's messages travel in blocks of 16384 values: a ReLU of 40,001 values (three
/// blocks) costs the bytes of Table III and the rounds of a ReLU of one block.
#[test]
fn streamed_comparisons_cost_table_iii_and_no_extra_rounds() {
    let rounds_of_relu = |variant, n: usize| -> (u64, u64) {
        let x = RingTensor::new(vec![n], comparison_values(&mut rng(63), n, 1 << 62)).unwrap();
        let out = run(variant, |p| {
            let me = p.party_id();
            let share = p.share(Owner::Client, &[n], (me == 1).then_some(&x)).unwrap();
            let before = p.traffic();
            p.relu(&share).unwrap();
            let after = p.traffic();
            (after.rounds - before.rounds, after.bytes_sent - before.bytes_sent)
        });
        (out.iter().map(|o| o.0).max().unwrap(), out.iter().map(|o| o.1).sum())
    };
    for variant in VARIANTS {
        let (one_block_rounds, _) = rounds_of_relu(variant, 1000);
        let (rounds, bytes) = rounds_of_relu(variant, 40_001);
        assert_eq!(rounds, one_block_rounds, "{variant:?}");
        assert_eq!(bytes * 8, 40_001 * relu_bits(variant), "{variant:?}");
    }
}
