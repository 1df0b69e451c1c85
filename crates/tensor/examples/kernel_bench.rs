//! Kernel throughput: `cargo run --release -p cryptflow-tensor --example kernel_bench [label filter]`.
//! GOPS counts a multiply and an add as two operations.

use std::time::Instant;

use cryptflow_tensor::kernels::{conv, conv_transpose, matmul, max_pool, pool_windows};
use cryptflow_tensor::movement::{pad, transpose};
use cryptflow_tensor::PoolGeometry;
use cryptflow_tensor::{ConvGeometry, Element, Layout, Tensor};

fn random<T: Element>(shape: &[usize], seed: &mut u64, f: impl Fn(u64) -> T) -> Tensor<T> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            f(*seed)
        })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// CPU time of all threads of this process, in seconds (Linux; 0 elsewhere). The machine is
/// shared, so wall-clock figures move with other people's load; CPU time much less.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 * 1e-9
}

/// Prints the best wall-clock time and GOPS, and GOPS per CPU-second (per core actually used).
fn time(label: &str, ops: f64, mut f: impl FnMut()) {
    let filter = std::env::args().nth(1).unwrap_or_default();
    if !label.contains(&filter) {
        return;
    }
    f();
    let mut best = f64::MAX;
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut runs = 0;
    while runs < 3 || (start.elapsed().as_secs_f64() < 2.0 && runs < 50) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    let cpu = (cpu_seconds() - cpu0) / runs as f64;
    println!(
        "{label:<58} {:>9.2} ms {:>8.2} GOPS {:>8.2} GOPS/cpu-s",
        best * 1e3,
        ops / best / 1e9,
        ops / cpu / 1e9
    );
}

fn conv_geom(layout: Layout, c: usize, o: usize, hw: usize, k: usize, s: usize, groups: usize) -> ConvGeometry {
    ConvGeometry {
        layout,
        batch: 1,
        in_channels: c,
        out_channels: o,
        groups,
        input: vec![hw, hw],
        kernel: vec![k, k],
        strides: vec![s, s],
        dilations: vec![1, 1],
        pads_begin: vec![k / 2, k / 2],
        pads_end: vec![k / 2, k / 2],
        output_padding: vec![0, 0],
    }
}

fn main() {
    let mut seed = 0x9e3779b97f4a7c15u64;
    println!("rayon threads: {}", rayon::current_num_threads());
    for &(m, k, n) in &[(512usize, 2304usize, 784usize), (64, 576, 3136), (2048, 512, 49), (256, 2304, 196), (1, 2048, 1000)] {
        let ops = 2.0 * (m * k * n) as f64;
        {
            let a = random(&[m, k], &mut seed, |v| v);
            let b = random(&[k, n], &mut seed, |v| v);
            time(&format!("matmul u64 [{m}x{k}]x[{k}x{n}]"), ops, || {
                std::hint::black_box(matmul(&a, &b).unwrap());
            });
            let a = random(&[m, k], &mut seed, |v| (v % 1000) as f32 / 1000.0);
            let b = random(&[k, n], &mut seed, |v| (v % 1000) as f32 / 1000.0);
            time(&format!("matmul f32 [{m}x{k}]x[{k}x{n}]"), ops, || {
                std::hint::black_box(matmul(&a, &b).unwrap());
            });
        }
    }
    // Data movement on a ResNet50 stem activation (GOPS here: elements moved per ns).
    let x = random(&[1, 64, 112, 112], &mut seed, |v| v);
    let elems = x.len() as f64;
    time("transpose u64 NCHW->NHWC [1,64,112,112]", elems, || {
        std::hint::black_box(transpose(&x, &[0, 2, 3, 1]).unwrap());
    });
    let xl = transpose(&x, &[0, 2, 3, 1]).unwrap();
    time("transpose u64 NHWC->NCHW [1,112,112,64]", elems, || {
        std::hint::black_box(transpose(&xl, &[0, 3, 1, 2]).unwrap());
    });
    time("pad u64 [1,64,112,112] by 1", elems, || {
        std::hint::black_box(pad(&x, &[0, 0, 1, 1], &[0, 0, 1, 1], 0).unwrap());
    });
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        let g = PoolGeometry {
            layout,
            batch: 1,
            channels: 64,
            input: vec![112, 112],
            window: vec![3, 3],
            strides: vec![2, 2],
            pads_begin: vec![1, 1],
            pads_end: vec![1, 1],
            count_include_pad: false,
        };
        let xin = if layout == Layout::ChannelsFirst { &x } else { &xl };
        let work = (g.output_shape().iter().product::<usize>() * 9) as f64;
        time(&format!("max_pool u64 3x3/2 [64,112,112] {layout:?}"), work, || {
            std::hint::black_box(max_pool(xin, &g).unwrap());
        });
        time(&format!("pool_windows u64 3x3/2 [64,112,112] {layout:?}"), work, || {
            std::hint::black_box(pool_windows(xin, &g).unwrap());
        });
    }

    // ResNet50-like convolutions, batch 1.
    let convs = [
        ("conv1 7x7/2 3->64 @224", 3, 64, 224, 7, 2, 1),
        ("3x3 64->64 @56", 64, 64, 56, 3, 1, 1),
        ("1x1 256->64 @56", 256, 64, 56, 1, 1, 1),
        ("3x3 128->128 @28", 128, 128, 28, 3, 1, 1),
        ("3x3 256->256 @14", 256, 256, 14, 3, 1, 1),
        ("3x3 512->512 @7", 512, 512, 7, 3, 1, 1),
        ("1x1 2048->512 @7", 2048, 512, 7, 1, 1, 1),
        ("depthwise 3x3 256 @28", 256, 256, 28, 3, 1, 256),
    ];
    for (name, c, o, hw, k, s, groups) in convs {
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let g = conv_geom(layout, c, o, hw, k, s, groups);
            let out: usize = g.conv_output().iter().product();
            let ops = 2.0 * (o * out * (c / groups) * k * k) as f64;
            let x = random(&g.input_shape(), &mut seed, |v| v);
            let w = random(&g.conv_filter_shape(), &mut seed, |v| v);
            time(&format!("conv u64 {name} {layout:?}"), ops, || {
                std::hint::black_box(conv(&x, &w, &g).unwrap());
            });
            if layout == Layout::ChannelsFirst {
                let x = random(&g.input_shape(), &mut seed, |v| (v % 1000) as f32);
                let w = random(&g.conv_filter_shape(), &mut seed, |v| (v % 1000) as f32);
                time(&format!("conv f32 {name} {layout:?}"), ops, || {
                    std::hint::black_box(conv(&x, &w, &g).unwrap());
                });
            }
        }
    }

    // A decoder-style transposed convolution: 4x4 stride 2 pad 1, 256 -> 128 channels, 14 -> 28.
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        let g = ConvGeometry {
            layout,
            batch: 1,
            in_channels: 256,
            out_channels: 128,
            groups: 1,
            input: vec![14, 14],
            kernel: vec![4, 4],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            pads_begin: vec![1, 1],
            pads_end: vec![1, 1],
            output_padding: vec![0, 0],
        };
        let ops = 2.0 * (256 * 128 * 16 * 14 * 14) as f64;
        let x = random(&g.input_shape(), &mut seed, |v| v);
        let w = random(&g.conv_transpose_filter_shape(), &mut seed, |v| v);
        time(&format!("conv_transpose u64 4x4/2 256->128 @14 {layout:?}"), ops, || {
            std::hint::black_box(conv_transpose(&x, &w, &g).unwrap());
        });
    }

    // Every convolution and the classifier of ResNet50 (v1.5, batch 1), one after the other.
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        let label = format!("resnet50 convs+fc u64 batch 1 {layout:?}");
        let filter = std::env::args().nth(1).unwrap_or_default();
        if !label.contains(&filter) {
            continue;
        }
        let mut layers: Vec<(ConvGeometry, Tensor<u64>, Tensor<u64>)> = Vec::new();
        let mut add = |c: usize, o: usize, hw: usize, k: usize, s: usize, seed: &mut u64| {
            let mut g = conv_geom(layout, c, o, hw, k, s, 1);
            if k == 1 {
                g.pads_begin = vec![0, 0];
                g.pads_end = vec![0, 0];
            }
            let x = random(&g.input_shape(), seed, |v| v);
            let w = random(&g.conv_filter_shape(), seed, |v| v);
            layers.push((g, x, w));
        };
        add(3, 64, 224, 7, 2, &mut seed);
        let (mut ch, mut hw) = (64, 56);
        for (blocks, mid, out, stride) in [(3, 64, 256, 1), (4, 128, 512, 2), (6, 256, 1024, 2), (3, 512, 2048, 2)] {
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                add(ch, mid, hw, 1, 1, &mut seed);
                add(mid, mid, hw, 3, s, &mut seed);
                add(mid, out, hw / s, 1, 1, &mut seed);
                if b == 0 {
                    add(ch, out, hw, 1, s, &mut seed);
                }
                ch = out;
                hw /= s;
            }
        }
        let fc_x = random(&[1, 2048], &mut seed, |v| v);
        let fc_w = random(&[2048, 1000], &mut seed, |v| v);
        let ops: f64 = layers
            .iter()
            .map(|(g, _, _)| 2.0 * (g.out_channels * g.conv_output().iter().product::<usize>() * g.in_channels * g.kernel.iter().product::<usize>()) as f64)
            .sum::<f64>()
            + 2.0 * 2048.0 * 1000.0;
        time(&format!("{label} ({} convs)", layers.len()), ops, || {
            for (g, x, w) in &layers {
                std::hint::black_box(conv(x, w, g).unwrap());
            }
            std::hint::black_box(matmul(&fc_x, &fc_w).unwrap());
        });
    }
}
