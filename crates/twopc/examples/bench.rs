//! Micro-benchmarks of the 2PC protocols (both parties in this process, in-memory links):
//! session set-up, the LogisticRegression product `[1, 784] x [784, 10]`, ReLU and a LeNet
//! convolution. Prints the best of several repetitions (the machine is shared).
//!
//!     cargo run --release -p cryptflow-twopc --example bench

use std::time::{Duration, Instant};

use cryptflow_backend::{Backend, ConvGeometry, RingTensor};
use cryptflow_net::Session;
use cryptflow_tensor::Layout;
use cryptflow_twopc::TwoPc;

fn both<T: Send>(f: impl Fn(&mut TwoPc) -> T + Sync) -> (Duration, Duration) {
    let f = &f;
    let times: Vec<(Duration, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = Session::local(2)
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    let t = Instant::now();
                    let mut p = TwoPc::new(session).unwrap();
                    let setup = t.elapsed();
                    let t = Instant::now();
                    f(&mut p);
                    (setup, t.elapsed())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (times.iter().map(|t| t.0).max().unwrap(), times.iter().map(|t| t.1).max().unwrap())
}

fn best(name: &str, reps: usize, f: impl Fn(&mut TwoPc) + Sync) {
    let mut s = Duration::MAX;
    let mut o = Duration::MAX;
    for _ in 0..reps {
        let (a, b) = both(&f);
        s = s.min(a);
        o = o.min(b);
    }
    println!("{name:<40} setup {:>8.2} ms   op {:>8.2} ms", s.as_secs_f64() * 1e3, o.as_secs_f64() * 1e3);
}

fn main() {
    let a = RingTensor::new(vec![1, 784], (0..784u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect()).unwrap();
    let b = RingTensor::new(vec![784, 10], (0..7840u64).map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D)).collect()).unwrap();
    best("matmul 1x784x10 (LogisticRegression)", 7, |p| {
        p.matmul(&a, &b).unwrap();
    });
    let x = RingTensor::new(vec![3456], (0..3456u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect()).unwrap();
    best("relu x3456", 5, |p| {
        p.relu(&x).unwrap();
    });
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 6,
        out_channels: 16,
        groups: 1,
        input: vec![12, 12],
        kernel: vec![5, 5],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads_begin: vec![0, 0],
        pads_end: vec![0, 0],
        output_padding: vec![0, 0],
    };
    let xi = RingTensor::new(g.input_shape(), (0..864u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect()).unwrap();
    let w = RingTensor::new(g.conv_filter_shape(), (0..2400u64).map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D)).collect()).unwrap();
    best("conv 6x12x12 * 16x6x5x5 (LeNet conv2)", 3, |p| {
        p.conv(&xi, &w, &g).unwrap();
    });
}
