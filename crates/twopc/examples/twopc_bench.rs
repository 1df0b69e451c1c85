//! Micro-benchmarks of the 2PC protocols (both parties in this process, in-memory links):
//! session set-up, the LogisticRegression product `[1, 784] x [784, 10]`, ReLU and a LeNet
//! convolution; with `lookup` as the argument, the token-id lookups of BERT-tiny and BERT-base
//! (128 ids into a 30522-row table of width 128 or 768, `matmul_one_hot`), with the bytes each
//! party sent. Prints the best wall time of several repetitions and the process CPU time
//! (user + system, both parties and all their threads) per repetition: on a shared machine
//! the CPU time is the steadier figure.
//!
//!     cargo run --release -p cryptflow-twopc --example twopc_bench

use std::time::{Duration, Instant};

use cryptflow_backend::{Backend, ConvGeometry, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_tensor::Layout;
use cryptflow_twopc::TwoPc;

/// User + system CPU seconds of this process so far (every thread, live or finished).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

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
    // `bench WORD`: only the benchmarks whose name contains WORD.
    if let Some(only) = std::env::args().nth(1) {
        if !name.contains(&only) {
            return;
        }
    }
    let mut s = Duration::MAX;
    let mut o = Duration::MAX;
    let cpu = cpu_seconds();
    for _ in 0..reps {
        let (a, b) = both(&f);
        s = s.min(a);
        o = o.min(b);
    }
    let cpu = (cpu_seconds() - cpu) / reps as f64;
    println!(
        "{name:<40} setup {:>7.2} ms   op {:>8.2} ms   cpu (setup + op, both parties) {:>8.2} ms",
        s.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        cpu * 1e3
    );
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
    // The lookups take seconds to minutes: only when asked for.
    if std::env::args().nth(1).is_some_and(|a| a.contains("lookup")) {
        let (l, v) = (128usize, 30522usize);
        let mut rows = vec![0u64; l * v];
        for i in 0..l {
            rows[i * v + (i * 7919 + 101) % v] = 1;
        }
        let rows = RingTensor::new(vec![l, v], rows).unwrap();
        for (name, h) in [("lookup 128x30522x128 (BERT-tiny)", 128usize), ("lookup 128x30522x768 (BERT-base)", 768)] {
            let table = RingTensor::new(vec![v, h], (0..(v * h) as u64).map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D)).collect()).unwrap();
            best(name, 1, |p| {
                let me = p.party_id();
                let x = p.share_one_hot(&[l, v], (me == 1).then_some(&rows)).unwrap();
                let t = p.share(Owner::ModelOwner, &[v, h], (me == 0).then_some(&table)).unwrap();
                let before = p.traffic().bytes_sent;
                p.matmul_one_hot(&x, &t, Some(0)).unwrap();
                println!("  party {me} sent {} bytes", p.traffic().bytes_sent - before);
            });
        }
    }
}
