//! Convolution and transposed convolution against direct loops straight from the ONNX formulas.

mod common;

use common::*;
use cryptflow_tensor::kernels::{conv, conv_transpose};
use cryptflow_tensor::{ConvGeometry, Layout, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// Offset of activation element (b, c, spatial) in either layout.
fn act_offset(layout: Layout, channels: usize, spatial_shape: &[usize], b: usize, c: usize, pos: &[usize]) -> usize {
    let mut sp = 0;
    for (d, &p) in spatial_shape.iter().zip(pos) {
        sp = sp * d + p;
    }
    let ssz: usize = spatial_shape.iter().product();
    match layout {
        Layout::ChannelsFirst => (b * channels + c) * ssz + sp,
        Layout::ChannelsLast => (b * ssz + sp) * channels + c,
    }
}

/// Offset of filter element (a, b, taps) of a `[A, B, K..]` filter.
fn filter_offset(dim1: usize, kernel: &[usize], a: usize, b: usize, tap: &[usize]) -> usize {
    let mut t = 0;
    for (k, &i) in kernel.iter().zip(tap) {
        t = t * k + i;
    }
    (a * dim1 + b) * kernel.iter().product::<usize>() + t
}

fn reference_conv<T: TestElement>(x: &Tensor<T>, w: &Tensor<T>, g: &ConvGeometry) -> Tensor<T> {
    let out_sp = g.conv_output();
    let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let mut y = Tensor::zeros(g.conv_output_shape());
    for b in 0..g.batch {
        for oc in 0..g.out_channels {
            let grp = oc / cout_g;
            for o in indices(&out_sp) {
                let mut acc = T::ZERO;
                for ic in 0..cin_g {
                    for k in indices(&g.kernel) {
                        let mut pos = vec![];
                        for d in 0..o.len() {
                            let i = (o[d] * g.strides[d] + k[d] * g.dilations[d]) as isize - g.pads_begin[d] as isize;
                            pos.push(i);
                        }
                        if pos.iter().zip(&g.input).all(|(&i, &n)| i >= 0 && (i as usize) < n) {
                            let pos: Vec<usize> = pos.iter().map(|&i| i as usize).collect();
                            let xv = x.data()[act_offset(g.layout, g.in_channels, &g.input, b, grp * cin_g + ic, &pos)];
                            let wv = w.data()[filter_offset(cin_g, &g.kernel, oc, ic, &k)];
                            acc = acc.add(xv.mul(wv));
                        }
                    }
                }
                y.data_mut()[act_offset(g.layout, g.out_channels, &out_sp, b, oc, &o)] = acc;
            }
        }
    }
    y
}

fn reference_conv_transpose<T: TestElement>(x: &Tensor<T>, w: &Tensor<T>, g: &ConvGeometry) -> Tensor<T> {
    let out_sp = g.conv_transpose_output();
    let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let mut y: Tensor<T> = Tensor::zeros(g.conv_transpose_output_shape());
    for b in 0..g.batch {
        for ic in 0..g.in_channels {
            let grp = ic / cin_g;
            for i in indices(&g.input) {
                let xv = x.data()[act_offset(g.layout, g.in_channels, &g.input, b, ic, &i)];
                for ocl in 0..cout_g {
                    for k in indices(&g.kernel) {
                        let o: Vec<isize> = (0..i.len())
                            .map(|d| (i[d] * g.strides[d] + k[d] * g.dilations[d]) as isize - g.pads_begin[d] as isize)
                            .collect();
                        if o.iter().zip(&out_sp).all(|(&o, &n)| o >= 0 && (o as usize) < n) {
                            let o: Vec<usize> = o.iter().map(|&v| v as usize).collect();
                            let at = act_offset(g.layout, g.out_channels, &out_sp, b, grp * cout_g + ocl, &o);
                            let wv = w.data()[filter_offset(cout_g, &g.kernel, ic, ocl, &k)];
                            y.data_mut()[at] = y.data()[at].add(xv.mul(wv));
                        }
                    }
                }
            }
        }
    }
    y
}

fn random_geometry(rng: &mut StdRng, transposed: bool) -> ConvGeometry {
    loop {
        let r = rng.random_range(1..=3);
        let groups = *[1usize, 1, 2, 3].get(rng.random_range(0..4)).unwrap();
        let depthwise = rng.random_bool(0.2);
        let (cin_g, cout_g) = if depthwise { (1, rng.random_range(1..=2)) } else { (rng.random_range(1..=3), rng.random_range(1..=3)) };
        let max_in = if r == 3 { 5 } else { 8 };
        let strides: Vec<usize> = (0..r).map(|_| rng.random_range(1..=3)).collect();
        let dilations: Vec<usize> = (0..r).map(|_| rng.random_range(1..=2)).collect();
        let g = ConvGeometry {
            layout: if rng.random_bool(0.5) { Layout::ChannelsFirst } else { Layout::ChannelsLast },
            batch: rng.random_range(1..=2),
            in_channels: groups * cin_g,
            out_channels: groups * cout_g,
            groups,
            input: (0..r).map(|_| rng.random_range(1..=max_in)).collect(),
            kernel: (0..r).map(|_| rng.random_range(1..=3)).collect(),
            pads_begin: (0..r).map(|_| rng.random_range(0..=2)).collect(),
            pads_end: (0..r).map(|_| rng.random_range(0..=2)).collect(),
            output_padding: (0..r).map(|i| rng.random_range(0..strides[i].max(dilations[i]))).collect(),
            strides,
            dilations,
        };
        let ok = (0..r).all(|i| {
            let span = g.dilations[i] * (g.kernel[i] - 1) + 1;
            if transposed {
                g.strides[i] * (g.input[i] - 1) + g.output_padding[i] + span > g.pads_begin[i] + g.pads_end[i]
            } else {
                g.input[i] + g.pads_begin[i] + g.pads_end[i] >= span
            }
        });
        if ok {
            return g;
        }
    }
}

fn check_conv<T: TestElement>(seed: u64, cases: usize) {
    let mut rng = rng(seed);
    let mut seen_depthwise = 0;
    for case in 0..cases {
        let g = random_geometry(&mut rng, false);
        if g.in_channels == g.groups {
            seen_depthwise += 1;
        }
        let x: Tensor<T> = random_tensor(&mut rng, &g.input_shape());
        let w: Tensor<T> = random_tensor(&mut rng, &g.conv_filter_shape());
        let got = conv(&x, &w, &g).unwrap();
        let terms = g.in_channels / g.groups * g.kernel.iter().product::<usize>();
        assert_close(&got, &reference_conv(&x, &w, &g), terms, &format!("case {case}: {g:?}"));
    }
    assert!(seen_depthwise > 0);
}

fn check_conv_transpose<T: TestElement>(seed: u64, cases: usize) {
    let mut rng = rng(seed);
    for case in 0..cases {
        let g = random_geometry(&mut rng, true);
        let x: Tensor<T> = random_tensor(&mut rng, &g.input_shape());
        let w: Tensor<T> = random_tensor(&mut rng, &g.conv_transpose_filter_shape());
        let got = conv_transpose(&x, &w, &g).unwrap();
        let terms = g.in_channels * g.kernel.iter().product::<usize>();
        assert_close(&got, &reference_conv_transpose(&x, &w, &g), terms, &format!("case {case}: {g:?}"));
    }
}

#[test]
fn conv_u64_random_geometries() {
    check_conv::<u64>(100, 400);
}

#[test]
fn conv_f32_random_geometries() {
    check_conv::<f32>(101, 200);
}

#[test]
fn conv_transpose_u64_random_geometries() {
    check_conv_transpose::<u64>(102, 400);
}

#[test]
fn conv_transpose_f32_random_geometries() {
    check_conv_transpose::<f32>(103, 200);
}

/// Shapes big enough that the packed GEMM (not the small-problem path) and the parallel
/// im2col run, in both layouts, with groups.
#[test]
fn conv_larger_shapes() {
    let mut rng = rng(104);
    for (layout, groups, cin, cout, hw, k, s) in [
        (Layout::ChannelsFirst, 1, 32, 40, 13, 3, 1),
        (Layout::ChannelsLast, 1, 32, 40, 13, 3, 2),
        (Layout::ChannelsFirst, 2, 24, 48, 11, 3, 1),
        (Layout::ChannelsLast, 4, 32, 32, 11, 3, 1),
        (Layout::ChannelsFirst, 1, 64, 48, 9, 1, 1),
        (Layout::ChannelsLast, 1, 64, 48, 9, 1, 1),
        (Layout::ChannelsLast, 2, 64, 48, 9, 1, 2),
        (Layout::ChannelsLast, 16, 16, 16, 12, 3, 1),
        (Layout::ChannelsFirst, 16, 16, 32, 12, 3, 2),
        (Layout::ChannelsLast, 1, 32, 64, 3, 3, 1),
        (Layout::ChannelsLast, 2, 32, 64, 3, 3, 1),
    ] {
        let g = ConvGeometry {
            layout,
            batch: 2,
            in_channels: cin,
            out_channels: cout,
            groups,
            input: vec![hw, hw + 1],
            kernel: vec![k, k],
            strides: vec![s, s],
            dilations: vec![1, 1],
            pads_begin: vec![k / 2, 0],
            pads_end: vec![k / 2, k / 2],
            output_padding: vec![0, 0],
        };
        let x: Tensor<u64> = random_tensor(&mut rng, &g.input_shape());
        let w: Tensor<u64> = random_tensor(&mut rng, &g.conv_filter_shape());
        assert_close(&conv(&x, &w, &g).unwrap(), &reference_conv(&x, &w, &g), 0, &format!("{g:?}"));
        let xt: Tensor<u64> = random_tensor(&mut rng, &g.input_shape());
        let mut gt = g.clone();
        gt.output_padding = vec![s - 1, 0];
        let wt: Tensor<u64> = random_tensor(&mut rng, &gt.conv_transpose_filter_shape());
        assert_close(&conv_transpose(&xt, &wt, &gt).unwrap(), &reference_conv_transpose(&xt, &wt, &gt), 0, &format!("T {gt:?}"));
    }
}

fn geom2d(layout: Layout, cin: usize, cout: usize, input: [usize; 2], kernel: [usize; 2]) -> ConvGeometry {
    ConvGeometry {
        layout,
        batch: 1,
        in_channels: cin,
        out_channels: cout,
        groups: 1,
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads_begin: vec![0, 0],
        pads_end: vec![0, 0],
        output_padding: vec![0, 0],
    }
}

#[test]
fn hand_computed_3x3_by_2x2() {
    // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,0],[0,-1]]: y[i][j] = x[i][j] - x[i+1][j+1] = -4.
    let x = Tensor::new(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
    let w = Tensor::new(vec![1, 1, 2, 2], vec![1.0f32, 0.0, 0.0, -1.0]).unwrap();
    let g = geom2d(Layout::ChannelsFirst, 1, 1, [3, 3], [2, 2]);
    let y = conv(&x, &w, &g).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[-4.0, -4.0, -4.0, -4.0]);
    // w = [[1,2],[3,4]]: y[0][0] = 1*1 + 2*2 + 3*4 + 4*5 = 37, then 47, 67, 77.
    let w = Tensor::new(vec![1, 1, 2, 2], vec![1u64, 2, 3, 4]).unwrap();
    let x = x.map(|v| v as u64);
    assert_eq!(conv(&x, &w, &g).unwrap().data(), &[37, 47, 67, 77]);
    // The same in channels-last with two input channels (second channel all ones, filter
    // taps 1 everywhere): adds 4 to every output. Input [1, 3, 3, 2] interleaves channels.
    let gl = geom2d(Layout::ChannelsLast, 2, 1, [3, 3], [2, 2]);
    let xl = Tensor::new(vec![1, 3, 3, 2], (1..=9u64).flat_map(|v| [v, 1]).collect()).unwrap();
    let wl = Tensor::new(vec![1, 2, 2, 2], vec![1u64, 2, 3, 4, 1, 1, 1, 1]).unwrap();
    let y = conv(&xl, &wl, &gl).unwrap();
    assert_eq!(y.shape(), &[1, 2, 2, 1]);
    assert_eq!(y.data(), &[41, 51, 71, 81]);
    // Padding 1 all round, stride 2: outputs at (-1,-1), (-1,1), (1,-1), (1,1) of the 2x2 window.
    let mut gp = geom2d(Layout::ChannelsFirst, 1, 1, [3, 3], [2, 2]);
    gp.pads_begin = vec![1, 1];
    gp.pads_end = vec![1, 1];
    gp.strides = vec![2, 2];
    // windows: {x00}*4 = 4; {x01*3 + x02*4} = 2*3+3*4 = 18; {x10*2 + x20*4} = 4*2+7*4 = 36;
    // {x11*1 + x12*2 + x21*3 + x22*4} = 5 + 12 + 24 + 36 = 77.
    assert_eq!(conv(&x, &w, &gp).unwrap().data(), &[4, 18, 36, 77]);
}

#[test]
fn hand_computed_transpose() {
    // 1D: x = [1, 2], w = [1, 10, 100], stride 2: y = [1, 10, 100+2, 20, 200], then pads 1/0
    // drop the first and output_padding 1 appends a zero.
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        groups: 1,
        input: vec![2],
        kernel: vec![3],
        strides: vec![2],
        dilations: vec![1],
        pads_begin: vec![1],
        pads_end: vec![0],
        output_padding: vec![1],
    };
    let x = Tensor::new(vec![1, 1, 2], vec![1u64, 2]).unwrap();
    let w = Tensor::new(vec![1, 1, 3], vec![1u64, 10, 100]).unwrap();
    let y = conv_transpose(&x, &w, &g).unwrap();
    assert_eq!(y.shape(), &[1, 1, 5]);
    assert_eq!(y.data(), &[10, 102, 20, 200, 0]);
}

#[test]
fn shape_errors_are_errors() {
    let g = geom2d(Layout::ChannelsFirst, 2, 3, [5, 5], [3, 3]);
    let x = Tensor::<u64>::zeros(g.input_shape());
    let w = Tensor::<u64>::zeros(g.conv_filter_shape());
    assert!(conv(&x, &w, &g).is_ok());
    assert!(conv(&Tensor::zeros(vec![1, 2, 5, 4]), &w, &g).is_err());
    assert!(conv(&Tensor::zeros(vec![1, 5, 5, 2]), &w, &g).is_err());
    assert!(conv(&x, &Tensor::zeros(vec![3, 2, 3, 2]), &g).is_err());
    assert!(conv(&x, &Tensor::zeros(vec![3, 1, 3, 3]), &g).is_err());
    let mut bad = g.clone();
    bad.kernel = vec![7, 3]; // larger than the padded input
    assert!(conv(&x, &Tensor::zeros(bad.conv_filter_shape()), &bad).is_err());
    let mut bad = g.clone();
    bad.groups = 2; // 3 output channels are not divisible by 2
    assert!(conv(&x, &w, &bad).is_err());
    let mut bad = g.clone();
    bad.groups = 0;
    assert!(conv(&x, &w, &bad).is_err());
    let mut bad = g.clone();
    bad.strides = vec![0, 1];
    assert!(conv(&x, &w, &bad).is_err());
    let mut bad = g.clone();
    bad.dilations = vec![1];
    assert!(conv(&x, &w, &bad).is_err());
    let mut bad = g.clone();
    bad.pads_end = vec![1, 1, 1];
    assert!(conv(&x, &w, &bad).is_err());
    // Transposed: the filter is [C_in, C_out / groups, K..].
    let wt = Tensor::<u64>::zeros(g.conv_transpose_filter_shape());
    assert!(conv_transpose(&x, &wt, &g).is_ok());
    assert!(conv_transpose(&x, &w, &g).is_err());
    let mut bad = g.clone();
    bad.pads_begin = vec![10, 0];
    assert!(conv_transpose(&x, &wt, &bad).is_err());
    let mut bad = g.clone();
    bad.output_padding = vec![0];
    assert!(conv_transpose(&x, &wt, &bad).is_err());
    let mut bad = g.clone();
    bad.input = vec![0, 5];
    assert!(conv_transpose(&Tensor::zeros(bad.input_shape()), &wt, &bad).is_err());
    // Spatial rank 0 and 4 are not supported.
    let mut bad = g.clone();
    for r in [0usize, 4] {
        bad.input = vec![3; r];
        bad.kernel = vec![1; r];
        bad.strides = vec![1; r];
        bad.dilations = vec![1; r];
        bad.pads_begin = vec![0; r];
        bad.pads_end = vec![0; r];
        bad.output_padding = vec![0; r];
        let x = Tensor::<u64>::zeros(bad.input_shape());
        assert!(conv(&x, &Tensor::zeros(bad.conv_filter_shape()), &bad).is_err());
        assert!(conv_transpose(&x, &Tensor::zeros(bad.conv_transpose_filter_shape()), &bad).is_err());
    }
}

#[test]
fn degenerate_channel_counts() {
    // No input channels: every output is an empty sum.
    let mut g = geom2d(Layout::ChannelsLast, 0, 3, [4, 4], [3, 3]);
    let y = conv(&Tensor::<u64>::zeros(g.input_shape()), &Tensor::zeros(g.conv_filter_shape()), &g).unwrap();
    assert_eq!(y.shape(), &[1, 2, 2, 3]);
    assert!(y.data().iter().all(|&v| v == 0));
    g.layout = Layout::ChannelsFirst;
    let y = conv(&Tensor::<f32>::zeros(g.input_shape()), &Tensor::zeros(g.conv_filter_shape()), &g).unwrap();
    assert_eq!(y.shape(), &[1, 3, 2, 2]);
    // No output channels, or an empty batch: empty outputs.
    let g = geom2d(Layout::ChannelsFirst, 2, 0, [4, 4], [3, 3]);
    let y = conv(&Tensor::<u64>::zeros(g.input_shape()), &Tensor::zeros(g.conv_filter_shape()), &g).unwrap();
    assert_eq!(y.shape(), &[1, 0, 2, 2]);
    let mut g = geom2d(Layout::ChannelsLast, 2, 2, [4, 4], [3, 3]);
    g.batch = 0;
    let y = conv(&Tensor::<u64>::zeros(g.input_shape()), &Tensor::zeros(g.conv_filter_shape()), &g).unwrap();
    assert_eq!(y.shape(), &[0, 2, 2, 2]);
    let y = conv_transpose(&Tensor::<u64>::zeros(g.input_shape()), &Tensor::zeros(g.conv_transpose_filter_shape()), &g).unwrap();
    assert_eq!(y.shape(), &[0, 6, 6, 2]);
}

/// Channels-first problems whose patches (convolution) or columns (transposed convolution)
/// exceed the kernels' chunk of 2^22 elements are computed a range of rows at a time (issue
/// #13: a 3D-UNet over 64 x 256 x 256): the result is the same, exactly in the ring.
#[test]
fn chunked_patches_and_columns_give_the_same_results() {
    let mut rng = rng(113);
    // Patches: 8 channels x 27 taps x (18 x 40 x 41) outputs = 6.4 M elements, two chunks of
    // 473 and 247 of the 720 output rows of 41; 2 batches, 1 and 2 groups.
    for (groups, stride) in [(1, 1), (2, 2)] {
        let g = ConvGeometry {
            layout: Layout::ChannelsFirst,
            batch: 2,
            in_channels: 8 * groups,
            out_channels: 4 * groups,
            groups,
            input: vec![18 * stride, 40 * stride, 41],
            kernel: vec![3, 3, 3],
            strides: vec![stride, stride, 1],
            dilations: vec![1, 1, 1],
            pads_begin: vec![1, 1, 1],
            pads_end: vec![1, 1, 1],
            output_padding: vec![0, 0, 0],
        };
        let x: Tensor<u64> = random_tensor(&mut rng, &g.input_shape());
        let w: Tensor<u64> = random_tensor(&mut rng, &g.conv_filter_shape());
        assert_close(&conv(&x, &w, &g).unwrap(), &reference_conv(&x, &w, &g), 0, &format!("{g:?}"));
    }
    // Columns: 8 output channels x 64 taps x (10 x 33 x 35) inputs = 5.9 M elements, two
    // chunks. Kernel 4, stride 2, padding 1 (the UNet's up-sampling).
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 6,
        out_channels: 8,
        groups: 1,
        input: vec![10, 33, 35],
        kernel: vec![4, 4, 4],
        strides: vec![2, 2, 2],
        dilations: vec![1, 1, 1],
        pads_begin: vec![1, 1, 1],
        pads_end: vec![1, 1, 1],
        output_padding: vec![0, 1, 0],
    };
    let x: Tensor<u64> = random_tensor(&mut rng, &g.input_shape());
    let w: Tensor<u64> = random_tensor(&mut rng, &g.conv_transpose_filter_shape());
    assert_close(&conv_transpose(&x, &w, &g).unwrap(), &reference_conv_transpose(&x, &w, &g), 0, &format!("T {g:?}"));
}
