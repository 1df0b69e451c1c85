//! Where the time of the non-linear layers goes, per party:
//! `cargo run --release -p cryptflow-porthos --features profile --example nonlinear_profile -- [relu|maxpool|argmax] [N] [REPEATS] [securenn]`
//!
//! Runs the three parties in threads over in-memory links (as `cryptflow run --backend porthos`
//! does), times the operation, and prints each party's exclusive wall time per protocol step
//! (see `cryptflow_porthos::prof`): the helper's and the share-holders' computation, the
//! randomness, the wire encoding, and the time spent waiting in `recv`.

use std::time::Instant;

use cryptflow_backend::{Backend, Owner, PoolGeometry, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{prof, Porthos, ProtocolVariant};
use cryptflow_tensor::Layout;

/// Per party: the client-side run times, the profile, the bytes sent.
type Report = (Vec<f64>, Vec<(&'static str, f64, u64)>, u64);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = args.first().cloned().unwrap_or_else(|| "relu".into());
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1 << 18);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let variant =
        if args.iter().any(|a| a == "securenn") { ProtocolVariant::SecureNN } else { ProtocolVariant::Porthos };
    // Pseudo-random signed inputs of about 40 bits (xorshift; the values do not matter).
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 23) as i64 - (1 << 40)) as u64
    };
    let (shape, pool) = match op.as_str() {
        "maxpool" => {
            // 3x3 stride 2 over a square 64-channel image with about n outputs (ResNet's stem).
            let side = (((n / 64) as f64).sqrt().round() as usize).max(1) * 2 + 1;
            let g = PoolGeometry {
                layout: Layout::ChannelsLast,
                batch: 1,
                channels: 64,
                input: vec![side, side],
                window: vec![3, 3],
                strides: vec![2, 2],
                pads_begin: vec![0, 0],
                pads_end: vec![0, 0],
                count_include_pad: false,
            };
            (g.input_shape(), Some(g))
        }
        "argmax" => (vec![n / 16, 16], None),
        _ => (vec![n], None),
    };
    let len: usize = shape.iter().product();
    let x = RingTensor::new(shape.clone(), (0..len).map(|_| next()).collect()).unwrap();
    let sessions = Session::local(3);
    let started = Instant::now();
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                let (x, op, pool) = (&x, &op, &pool);
                scope.spawn(move || {
                    let mut p = Porthos::new(session, variant).unwrap();
                    let me = p.party_id();
                    let share = p.share(Owner::Client, x.shape(), (me == 1).then_some(x)).unwrap();
                    let mut times = Vec::new();
                    prof::take();
                    let before = p.traffic().bytes_sent;
                    for _ in 0..repeats {
                        let t = Instant::now();
                        let y = match op.as_str() {
                            "maxpool" => p.max_pool(&share, pool.as_ref().unwrap()).unwrap(),
                            "argmax" => p.argmax(&share, 1, false).unwrap(),
                            _ => p.relu(&share).unwrap(),
                        };
                        times.push(t.elapsed().as_secs_f64());
                        std::hint::black_box(y);
                    }
                    let sent = p.traffic().bytes_sent - before;
                    (times, prof::take(), sent)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = started.elapsed().as_secs_f64();
    let bytes: u64 = reports.iter().map(|r| r.2).sum::<u64>() / repeats as u64;
    let elems = match op.as_str() {
        "maxpool" => pool.as_ref().map(|g| g.output_shape().iter().product::<usize>() * 8).unwrap(),
        "argmax" => len / 16 * 15,
        _ => len,
    };
    let times = &reports[1].0;
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "{variant:?} {op} on {shape:?}: {} comparisons, {:.1} MB per run (all parties); runs (client) {:?}",
        elems,
        bytes as f64 / 1e6,
        times.iter().map(|t| format!("{:.3}s", t)).collect::<Vec<_>>()
    );
    println!("best {:.3} s = {:.3} us per comparison (wall); {:.2} s in all", best, best / elems as f64 * 1e6, total);
    println!(
        "CPU {}; SIMD level {} (best {}; CRYPTFLOW_SIMD caps it)",
        cryptflow_tensor::simd::cpu_model(),
        cryptflow_tensor::simd::level(),
        cryptflow_tensor::simd::detected()
    );
    if !prof::ENABLED {
        return;
    }
    let mut names: Vec<&'static str> = Vec::new();
    for r in &reports {
        for t in &r.1 {
            if !names.contains(&t.0) {
                names.push(t.0);
            }
        }
    }
    names.sort();
    println!("{:<24} {:>12} {:>12} {:>12}   (seconds per run, exclusive)", "step", "P0 owner", "P1 client", "P2 helper");
    for name in names {
        print!("{name:<24}");
        for r in &reports {
            let s = r.1.iter().find(|t| t.0 == name).map(|t| t.1).unwrap_or(0.0);
            print!(" {:>12.4}", s / repeats as f64);
        }
        println!();
    }
    print!("{:<24}", "(sum)");
    for r in &reports {
        print!(" {:>12.4}", r.1.iter().map(|t| t.1).sum::<f64>() / repeats as f64);
    }
    println!();
}
