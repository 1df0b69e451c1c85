//! Loopback throughput of one large message, over TLS and over the insecure plaintext transport.
//!
//! `cargo run --release -p cryptflow-net --example loopback_throughput [MiB] [repetitions]`
//!
//! Reports the median over the repetitions of one party sending `MiB` to the other (one way),
//! and of both sending `MiB` to each other at once (both ways). Sender, receiver and their link
//! threads share the machine's cores, so this measures CPU (copies, AES-GCM) more than a network.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use cryptflow_net::{generate_identity, NetworkConfig, Security, Session, TlsIdentity};

fn connect(security: [Security; 2]) -> (Session, Session) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![listener.local_addr().unwrap().to_string(), "127.0.0.1:9".to_string()];
    let [s0, s1] = security;
    let cfg0 = NetworkConfig::new(0, addrs.clone(), s0);
    let cfg1 = NetworkConfig::new(1, addrs, s1);
    let h = thread::spawn(move || Session::connect(cfg1).unwrap());
    let p0 = Session::connect_with_listener(cfg0, listener).unwrap();
    (p0, h.join().unwrap())
}

fn tls() -> [Security; 2] {
    let p: Vec<_> = (0..2).map(|i| generate_identity(i).unwrap()).collect();
    let certs = [p[0].0.as_str(), p[1].0.as_str()];
    [0, 1].map(|i| Security::Tls(TlsIdentity::from_pem(i, &certs, &p[i].1).unwrap()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(label: &str, security: [Security; 2], mib: usize, reps: usize) {
    let len = mib << 17; // u64 elements
    let (mut p0, mut p1) = connect(security);
    p0.set_timeout(Duration::from_secs(60));
    p1.set_timeout(Duration::from_secs(60));
    let mut one_way = Vec::new();
    let mut both_ways = Vec::new();
    for _ in 0..reps {
        let data = vec![7u64; len];
        let t = Instant::now();
        p1.send(0, data).unwrap();
        let got = p0.recv(1, len).unwrap();
        one_way.push(t.elapsed());
        assert_eq!(got.len(), len);

        let (d0, d1) = (vec![1u64; len], vec![2u64; len]);
        let t = Instant::now();
        thread::scope(|s| {
            s.spawn(|| {
                p1.send(0, d1).unwrap();
                p1.recv(0, len).unwrap();
            });
            p0.send(1, d0).unwrap();
            p0.recv(1, len).unwrap();
        });
        both_ways.push(t.elapsed());
    }
    let mb = (mib << 20) as f64 / 1e6;
    let (a, b) = (median(one_way), median(both_ways));
    println!(
        "{label:>9}: one way {mib} MiB in {:.3} s = {:.0} MB/s; both ways at once {:.3} s = {:.0} MB/s each way",
        a.as_secs_f64(),
        mb / a.as_secs_f64(),
        b.as_secs_f64(),
        mb / b.as_secs_f64()
    );
    let w = p0.wire_traffic();
    let t = p0.traffic();
    println!(
        "{label:>9}: party 0 payload bytes sent/received {}/{}, on the wire {}/{}",
        t.bytes_sent, t.bytes_received, w.bytes_sent, w.bytes_received
    );
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let mib = args.first().copied().unwrap_or(256);
    let reps = args.get(1).copied().unwrap_or(5);
    measure("plaintext", [Security::InsecurePlaintext, Security::InsecurePlaintext], mib, reps);
    measure("TLS", tls(), mib, reps);
}
