//! Cost of the faithful truncation against the local one on a ResNet-50-sized count:
//! `cargo run -p cryptflow-porthos --example truncation_bench -- [TOTAL] [CHUNK] [securenn]`
//! (default 10^7 elements in chunks of 2^20, as the truncations of one ResNet-50 inference).
//!
//! Runs the three parties in threads over in-memory links (as `cryptflow run --backend porthos`
//! does) and prints, per mode, the wall time (the slowest party), the time per element, and
//! the bytes and rounds every party spent. Shares are of values up to 2^40 (a network's
//! pre-truncation values at scale 2s = 24 leave room to spare).

use std::time::Instant;

use cryptflow_backend::{Backend, Owner, RingTensor, Traffic, Truncation};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let total: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let chunk: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
    let variant = if args.iter().any(|a| a == "securenn") { ProtocolVariant::SecureNN } else { ProtocolVariant::Porthos };
    let shift = 12;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<u64> = (0..chunk)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 23) as i64 - (1 << 40)) as u64
        })
        .collect();
    let input = RingTensor::new(vec![chunk], values).unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    println!("{variant:?}: {total} truncations by {shift} bits in chunks of {chunk}; CPU {cpu}, {} threads", rayon::current_num_threads());
    for mode in [Truncation::Local, Truncation::Faithful] {
        let input = &input;
        let results: Vec<(f64, Traffic)> = std::thread::scope(|sc| {
            let hs: Vec<_> = Session::local(3)
                .into_iter()
                .map(|session| {
                    sc.spawn(move || {
                        let mut p = Porthos::new(session, variant).expect("session");
                        p.set_truncation(mode);
                        let x = p.share(Owner::Client, &[chunk], (p.party_id() == 1).then_some(input)).unwrap();
                        let before = p.traffic();
                        let t0 = Instant::now();
                        let mut done = 0;
                        while done < total {
                            let len = chunk.min(total - done);
                            let xs = if len == chunk { x.clone() } else { RingTensor::new(vec![len], x.data()[..len].to_vec()).unwrap() };
                            std::hint::black_box(p.scale_down(&xs, shift).unwrap());
                            done += len;
                        }
                        (t0.elapsed().as_secs_f64(), p.traffic() - before)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = results.iter().map(|r| r.0).fold(0.0, f64::max);
        let bytes: u64 = results.iter().map(|r| r.1.bytes_sent).sum();
        println!(
            "{mode:?}: {secs:.3} s, {:.1} ns/element; bytes sent {} ({:.2} per element; P0 {}, P1 {}, helper {}); rounds P0 {}, P1 {}, helper {}",
            secs * 1e9 / total as f64,
            bytes,
            bytes as f64 / total as f64,
            results[0].1.bytes_sent,
            results[1].1.bytes_sent,
            results[2].1.bytes_sent,
            results[0].1.rounds,
            results[1].1.rounds,
            results[2].1.rounds,
        );
    }
}
