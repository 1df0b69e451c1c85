//! Compile-time checks without calibration data: weights that cannot be held in 64-bit fixed
//! point (NaN, infinities, magnitudes beyond the ring at the chosen scale) and scales at which
//! products cannot fit are refused with a message naming the culprit, never compiled into a
//! program that silently computes garbage.

use cryptflow_athos::{compile, CompileError, CompileOptions, MAX_SCALE};
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_tensor::{ConvGeometry, FloatTensor, Layout, Tensor};

fn dense(w: FloatTensor, b: FloatTensor) -> Graph {
    let mut g = Graph::new();
    let k = w.shape()[0];
    let x = g.input("x", vec![1, k]);
    let w = g.weight("fc.weight", w);
    let b = g.weight("fc.bias", b);
    let y = g.add("fc", Op::MatMul, &[x, w]).unwrap();
    let y = g.add("fc.add", Op::Add, &[y, b]).unwrap();
    g.outputs = vec![y];
    g
}

fn tensor(shape: Vec<usize>, values: Vec<f32>) -> FloatTensor {
    Tensor::new(shape, values).unwrap()
}

fn conv(weight_value: f32) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 1, 4, 4]);
    let geometry = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 1,
        out_channels: 2,
        groups: 1,
        input: vec![4, 4],
        kernel: vec![3, 3],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads_begin: vec![0, 0],
        pads_end: vec![0, 0],
        output_padding: vec![0, 0],
    };
    let mut values = vec![0.1f32; 18];
    values[7] = weight_value;
    let w = g.weight("conv1.weight", tensor(vec![2, 1, 3, 3], values));
    let y = g.add("conv1", Op::Conv(geometry), &[x, w]).unwrap();
    g.outputs = vec![y];
    g
}

fn error(g: Graph, options: &CompileOptions) -> String {
    match compile(g, options) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nan_and_infinite_weights_are_refused_by_name() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let e = error(dense(tensor(vec![2, 2], vec![0.5, bad, 0.1, 0.2]), tensor(vec![2], vec![0.0, 0.1])), &Default::default());
        assert!(e.contains("`fc.weight`") && e.contains("element 1") && e.contains("NaN and infinities"), "{e}");
        let e = error(dense(tensor(vec![2, 2], vec![0.5, 0.3, 0.1, 0.2]), tensor(vec![2], vec![bad, 0.1])), &Default::default());
        assert!(e.contains("`fc.bias`") && e.contains("element 0"), "{e}");
        let e = error(conv(bad), &Default::default());
        assert!(e.contains("`conv1.weight`") && e.contains("element 7"), "{e}");
    }
}

#[test]
fn public_constants_that_are_not_numbers_are_refused() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 3]);
    let y = g.add("shift", Op::AddScalar(f32::NAN), &[x]).unwrap();
    g.outputs = vec![y];
    let e = error(g, &Default::default());
    assert!(e.contains("`shift`") && e.contains("NaN"), "{e}");
}

/// A bias is encoded at 2s under lazy placement: -1e12 at 2s = 24 needs 65 bits.
#[test]
fn a_bias_beyond_the_ring_at_2s_is_an_overflow_error_with_a_suggested_scale() {
    let g = dense(tensor(vec![2, 2], vec![0.5, 0.3, 0.1, 0.2]), tensor(vec![2], vec![-1e12, 0.1]));
    let e = error(g.clone(), &Default::default());
    assert!(e.contains("`fc.bias`") && e.contains("overflows") && e.contains("24 fractional bits"), "{e}");
    // 1e12 < 2^40: at 2s <= 64 - 16 - 41 it keeps 16 spare bits, i.e. s <= 3.
    assert!(e.contains("--scale 3 or less"), "{e}");
    assert!(compile(g, &CompileOptions { scale: 3, ..Default::default() }).is_ok());
}

/// A factor of a product reaches 2s once multiplied: 1e15 * 2^24 does not fit.
#[test]
fn a_huge_conv_weight_is_an_overflow_error() {
    let e = error(conv(1e15), &Default::default());
    assert!(e.contains("`conv1.weight`") && e.contains("overflows"), "{e}");
    // Ordinary weights compile without a word.
    let compiled = compile(conv(0.5), &Default::default()).unwrap();
    assert!(compiled.report.notices.is_empty(), "{:?}", compiled.report.notices);
}

/// Fits, but with less than 16 spare bits: a warning in the report, naming the weight.
#[test]
fn a_large_weight_with_little_headroom_is_a_warning() {
    // 2^30 at 2s = 24: 56 bits, 8 spare.
    let compiled = compile(conv(1.1e9), &Default::default()).unwrap();
    let notices = &compiled.report.notices;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("low headroom") && notices[0].contains("`conv1.weight`") && notices[0].contains("--scale"), "{notices:?}");
}

/// Products of two values at scale 30 hold 60 fractional bits: refused. 29 is the documented
/// maximum; above 21 the compiler warns.
#[test]
fn scales_at_which_products_cannot_fit_are_refused() {
    let g = || dense(tensor(vec![2, 2], vec![0.5, 0.3, 0.1, 0.2]), tensor(vec![2], vec![0.0, 0.1]));
    assert_eq!(MAX_SCALE, 29);
    for scale in [0, 30, 31, 64, 1000] {
        let e = compile(g(), &CompileOptions { scale, ..Default::default() }).err().unwrap();
        assert!(matches!(e, CompileError::BadScale(s) if s == scale), "{e}");
        assert!(e.to_string().contains("choose 1 to 29"), "{e}");
    }
    let at_29 = compile(g(), &CompileOptions { scale: 29, ..Default::default() }).unwrap();
    assert!(at_29.report.notices.iter().any(|n| n.contains("low headroom at scale 29")), "{:?}", at_29.report.notices);
    let at_22 = compile(g(), &CompileOptions { scale: 22, ..Default::default() }).unwrap();
    assert!(at_22.report.notices.iter().any(|n| n.contains("scales up to 21")), "{:?}", at_22.report.notices);
    let at_21 = compile(g(), &CompileOptions { scale: 21, ..Default::default() }).unwrap();
    assert!(at_21.report.notices.is_empty(), "{:?}", at_21.report.notices);
}
