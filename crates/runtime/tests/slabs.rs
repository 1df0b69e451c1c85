//! Slab-wise execution (`cryptflow_runtime::slab`, issue #13): every slab path gives exactly the
//! whole call's result on the cleartext backend, over random geometries; under Porthos the
//! bytes are those of Table III for the calls the slab plan lists (exactly), and elementwise
//! calls cost the same bytes in slabs as whole.

use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{testing, Backend, ConvGeometry, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::slab;
use cryptflow_tensor::{kernels, Layout};
use rand::Rng;

/// A random (transposed) convolution geometry of spatial rank 1 to 3, either layout.
fn random_geometry(rng: &mut impl Rng, transpose: bool) -> ConvGeometry {
    let rank = rng.random_range(1..=3);
    let groups = rng.random_range(1..=2);
    let mut g = ConvGeometry {
        layout: if rng.random::<bool>() { Layout::ChannelsFirst } else { Layout::ChannelsLast },
        batch: rng.random_range(1..=2),
        in_channels: groups * rng.random_range(1..=3),
        out_channels: groups * rng.random_range(1..=3),
        groups,
        input: vec![],
        kernel: vec![],
        strides: vec![],
        dilations: vec![],
        pads_begin: vec![],
        pads_end: vec![],
        output_padding: vec![],
    };
    for axis in 0..rank {
        // The first axis (the one cut) long, the others short.
        g.input.push(if axis == 0 { rng.random_range(1..=11) } else { rng.random_range(1..=3) });
        g.kernel.push(rng.random_range(1..=4));
        let stride = rng.random_range(1..=3);
        let dilation = rng.random_range(1..=2);
        g.strides.push(stride);
        g.dilations.push(dilation);
        g.pads_begin.push(rng.random_range(0..=2));
        g.pads_end.push(rng.random_range(0..=2));
        if transpose {
            g.output_padding.push(rng.random_range(0..stride.max(dilation)));
        }
    }
    g
}

#[test]
fn slabbed_convolutions_equal_whole_ones_on_the_cleartext_backend() {
    let mut rng = testing::rng(13);
    let (mut checked, mut slabbed) = (0, 0);
    while checked < 600 {
        let transpose = rng.random::<bool>();
        let g = random_geometry(&mut rng, transpose);
        let filter_shape = if transpose { g.conv_transpose_filter_shape() } else { g.conv_filter_shape() };
        let x = testing::random_tensor(&mut rng, &g.input_shape());
        let w = testing::random_tensor(&mut rng, &filter_shape);
        let whole = if transpose { kernels::conv_transpose(&x, &w, &g) } else { kernels::conv(&x, &w, &g) };
        let Ok(whole) = whole else { continue };
        checked += 1;
        for budget in [1, 2 * x.len(), x.len() + whole.len(), rng.random_range(1..=2 * (x.len() + whole.len()))] {
            let ranges = slab::conv_ranges(&g, transpose, budget);
            slabbed += usize::from(ranges.len() > 1);
            let got = slab::conv(&mut Cleartext::new(), &x, &w, &g, transpose, budget).unwrap();
            assert_eq!(got, whole, "{g:?} transpose {transpose} budget {budget} ranges {ranges:?}");
            // The ranges cover the output planes once, in order.
            assert_eq!(ranges.first().unwrap().0, 0);
            assert!(ranges.windows(2).all(|r| r[0].1 == r[1].0 && r[0].0 < r[0].1));
            // Each slab's sub-geometry is valid and gives exactly its planes.
            for &(o0, o1) in &ranges {
                if let Some((lo, hi, sub)) = slab::conv_slab(&g, transpose, o0, o1) {
                    assert!(lo < hi && hi <= g.input[0]);
                    let planes = if transpose { sub.conv_transpose_output()[0] } else { sub.conv_output()[0] };
                    assert_eq!(planes, o1 - o0, "{g:?} {o0}..{o1} -> {sub:?}");
                }
            }
        }
    }
    assert!(slabbed > 600, "only {slabbed} slabbed cases");
}

#[test]
fn slab_ranges_keep_every_call_within_the_budget() {
    // InnerEye's level-0 convolution at the paper's size: 32 channels of 64 x 256 x 256.
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 32,
        out_channels: 32,
        groups: 1,
        input: vec![64, 256, 256],
        kernel: vec![3, 3, 3],
        strides: vec![1, 1, 1],
        dilations: vec![1, 1, 1],
        pads_begin: vec![1, 1, 1],
        pads_end: vec![1, 1, 1],
        output_padding: vec![],
    };
    let calls = slab::conv_calls(&g, false, slab::DEFAULT_SLAB_ELEMENTS);
    let plane = 32 * 256 * 256;
    assert!(calls.iter().all(|c| c.input_elements + c.output_elements <= slab::DEFAULT_SLAB_ELEMENTS), "{calls:?}");
    assert_eq!(calls.iter().map(|c| c.output_elements).sum::<usize>(), 64 * plane);
    // 2^25 elements hold 16 planes: 7 output planes and their 9 input planes a slab; 64
    // planes in 10 slabs of 7 or 6.
    assert_eq!(calls.len(), 10);
    let halo_planes: usize = calls.iter().map(|c| c.input_elements / plane).sum::<usize>() - 64;
    assert_eq!(halo_planes, 18, "every slab but the two at the ends reads 2 planes twice");
    // A call that fits is not cut.
    assert_eq!(slab::conv_ranges(&g, false, 1 << 30), vec![(0, 64)]);
    assert_eq!(slab::elementwise_ranges(100, 1 << 30), vec![(0, 100)]);
    // Elementwise runs: a quarter of the budget for input and output, so an eighth for each.
    assert_eq!(slab::elementwise_ranges(100, 200), vec![(0, 25), (25, 50), (50, 75), (75, 100)]);
}

#[test]
fn slabbed_argmax_and_elementwise_calls_equal_whole_ones_on_the_cleartext_backend() {
    let mut rng = testing::rng(7);
    let x = testing::signed_tensor(&mut rng, &[1, 5, 6, 3, 4], 1 << 40);
    for axis in 0..5 {
        for keep_dims in [false, true] {
            let whole = kernels::argmax(&x, axis, keep_dims).unwrap();
            for budget in [1, 50, 200, 1000] {
                assert_eq!(slab::argmax(&mut Cleartext::new(), &x, axis, keep_dims, budget).unwrap(), whole, "axis {axis} keep {keep_dims} budget {budget}");
            }
        }
    }
    let whole = Cleartext::new().relu(&x).unwrap();
    for budget in [1, 7, 100, 10_000] {
        assert_eq!(slab::elementwise(&mut Cleartext::new(), &x, budget, |b, part, _| b.relu(part)).unwrap(), whole);
    }
}

/// Runs `op` on the three Porthos parties with `x` shared by the client and `w` by the model
/// owner; returns the client's revealed result and the bytes and rounds of `op` summed over
/// the parties (rounds: the client's).
fn porthos_eval(x: &RingTensor, w: &RingTensor, op: impl Fn(&mut Porthos, &RingTensor, &RingTensor) -> RingTensor + Sync) -> (RingTensor, u64, u64) {
    let out = testing::run_parties(Session::local(3), |s| Porthos::new(s, ProtocolVariant::Porthos).expect("session"), |p| {
        let me = p.party_id();
        let xs = p.share(Owner::Client, x.shape(), (me == 1).then_some(x)).unwrap();
        let ws = p.share(Owner::ModelOwner, w.shape(), (me == 0).then_some(w)).unwrap();
        let before = p.traffic();
        let z = op(p, &xs, &ws);
        let spent = p.traffic() - before;
        (p.reveal(&z, Owner::Client).unwrap(), spent)
    });
    let bytes = out.iter().map(|o| o.1.bytes_sent).sum();
    (out[1].0.clone().unwrap(), bytes, out[1].1.rounds)
}

#[test]
fn slabbed_porthos_convolutions_cost_table_three_per_call() {
    let mut rng = testing::rng(21);
    // A UNet convolution (3x3x3, padding 1) and its up-sampling (kernel 4, stride 2, padding 1).
    let conv = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 3,
        out_channels: 4,
        groups: 1,
        input: vec![10, 5, 6],
        kernel: vec![3, 3, 3],
        strides: vec![1, 1, 1],
        dilations: vec![1, 1, 1],
        pads_begin: vec![1, 1, 1],
        pads_end: vec![1, 1, 1],
        output_padding: vec![],
    };
    let up = ConvGeometry { in_channels: 4, out_channels: 2, input: vec![6, 3, 4], kernel: vec![4, 4, 4], strides: vec![2, 2, 2], output_padding: vec![0, 0, 0], ..conv.clone() };
    for (g, transpose) in [(conv, false), (up, true)] {
        let filter_shape = if transpose { g.conv_transpose_filter_shape() } else { g.conv_filter_shape() };
        let x = testing::signed_tensor(&mut rng, &g.input_shape(), 1 << 20);
        let w = testing::signed_tensor(&mut rng, &filter_shape, 1 << 12);
        let expected = if transpose { kernels::conv_transpose(&x, &w, &g) } else { kernels::conv(&x, &w, &g) }.unwrap();
        let whole_budget = x.len() + expected.len();
        for budget in [whole_budget, whole_budget / 2, whole_budget / 5, 1] {
            let calls = slab::conv_calls(&g, transpose, budget);
            let (z, bytes, rounds) = porthos_eval(&x, &w, |p, xs, ws| slab::conv(p, xs, ws, &g, transpose, budget).unwrap());
            assert_eq!(z, expected, "transpose {transpose} budget {budget}");
            // Table III per call: 8 (2 |X| + 2 |W| + |Z|) bytes, one round.
            let table_three: u64 = calls.iter().map(|c| 8 * (2 * c.input_elements + 2 * w.len() + c.output_elements) as u64).sum();
            assert_eq!(bytes, table_three, "transpose {transpose} budget {budget}: {calls:?}");
            assert_eq!(rounds, calls.len() as u64);
            if budget == whole_budget {
                assert_eq!(calls.len(), 1);
            } else {
                assert!(calls.len() > 1, "budget {budget} cuts nothing");
            }
        }
    }
}

#[test]
fn slabbed_porthos_relus_cost_the_same_bytes_as_whole_ones() {
    let mut rng = testing::rng(5);
    let x = testing::signed_tensor(&mut rng, &[1, 2, 6, 5, 7], 1 << 30);
    let w = RingTensor::zeros(vec![1]);
    let expected = Cleartext::new().relu(&x).unwrap();
    let (z, whole_bytes, whole_rounds) = porthos_eval(&x, &w, |p, xs, _| p.relu(xs).unwrap());
    assert_eq!(z, expected);
    // Table III: (6 l log p + 19 l) / 8 = 536 bytes per element.
    assert_eq!(whole_bytes, 536 * x.len() as u64);
    for budget in [8 * x.len() / 3, 800, 8] {
        let slabs = slab::elementwise_ranges(x.len(), budget).len() as u64;
        assert!(slabs > 1);
        let (z, bytes, rounds) = porthos_eval(&x, &w, |p, xs, _| slab::elementwise(p, xs, budget, |b, part, _| b.relu(part)).unwrap());
        assert_eq!(z, expected, "budget {budget}");
        assert_eq!(bytes, whole_bytes, "budget {budget}");
        assert_eq!(rounds, slabs * whole_rounds, "budget {budget}");
    }
}
