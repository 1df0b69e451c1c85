//! The two-party backend through the real binary: LeNet gives float's predictions and logits
//! within truncation error of the cleartext executor, locally and distributed over TLS with two
//! peers; a party that dies mid-run makes the other stop with an error naming it, in bounded
//! time.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn lenet_on_two_parties_agrees_with_cleartext_and_float() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = fixtures().join("data/mnist_samples_x.npy");
    let run = |backend: &str| {
        let y = work.path().join(format!("{backend}.npy"));
        let m = work.path().join(format!("{backend}.json"));
        cryptflow_ok(&["run", path_str(&dir), "--backend", backend, "--input", path_str(&x), "-o", path_str(&y), "--metrics", path_str(&m)]);
        let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        (read_npy(&y).1, metrics)
    };
    let (float, _) = run("float");
    let (clear, _) = run("cleartext");
    let (twopc, m) = run("2pc");
    assert_near_cleartext(&twopc, &clear);
    let labels = read_labels(&fixtures().join("data/mnist_samples_y.npy"));
    for (k, &label) in labels.iter().enumerate() {
        let row = |v: &[f32]| argmax(&v[k * 10..(k + 1) * 10]);
        assert_eq!(row(&twopc), row(&float), "sample {k}");
        assert_eq!(row(&twopc) as i64, label, "sample {k}");
    }
    assert_eq!(m["backend"], "2pc");
    let sent: Vec<u64> = m["bytes_sent"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    assert_eq!(sent.len(), 2, "two parties");
    assert!(sent.iter().all(|&b| b > 0));
    assert_eq!(m["bytes_total"].as_u64().unwrap(), sent.iter().sum::<u64>());
    let layer_bytes: u64 = m["layers"].as_array().unwrap().iter().map(|l| l["bytes_sent"].as_u64().unwrap()).sum();
    assert_eq!(layer_bytes, m["bytes_total"].as_u64().unwrap(), "per-layer bytes add up to the total");
}

#[test]
fn a_party_crashing_in_a_local_two_party_run_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let started = Instant::now();
    let out = cryptflow(&["run", path_str(&dir), "--backend", "2pc", "--input", path_str(&x), "-o", path_str(&y), "--inject-fault", "0:crash"]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_clean_failure(&out, "crash");
    let err = stderr(&out);
    assert!(err.contains("party 0") && err.contains("disconnected"), "{err}");
    assert!(!y.exists(), "no output after a failure");
    let out = cryptflow(&["run", path_str(&dir), "--backend", "2pc", "--input", path_str(&x), "-o", path_str(&y), "--inject-fault", "2:crash"]);
    assert!(stderr(&out).contains("parties 0 (model owner) and 1 (client)"), "{}", stderr(&out));
}

#[test]
fn two_distributed_parties_over_tls_predict_the_labels() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "--parties", "2", "-o", path_str(&keys)]);
    let ports = free_ports(2);
    let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let m = work.path().join("m.json");
    let owner = spawn_party("2pc", 0, &peers, &dir, &keys, &[]);
    let client = spawn_party("2pc", 1, &peers, &dir, &keys, &["--input", path_str(&x), "-o", path_str(&y), "--metrics", path_str(&m)]);
    for (name, child) in [("client", client), ("owner", owner)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert!(status.success(), "{name} failed: {err}");
    }
    let clear = work.path().join("clear.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&clear)]);
    let (distributed, clear) = (read_npy(&y).1, read_npy(&clear).1);
    assert_near_cleartext(&distributed, &clear);
    let labels = read_labels(&fixtures().join("data/mnist_samples_y.npy"));
    for (k, &label) in labels.iter().enumerate() {
        assert_eq!(argmax(&distributed[k * 10..(k + 1) * 10]) as i64, label);
    }
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    assert_eq!(metrics["backend"], "2pc");
    // A two-party run refuses three peers.
    let out = cryptflow(&["party", "--backend", "2pc", "--id", "0", "--peers", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", path_str(&dir), "--keys", path_str(&keys)]);
    assert!(stderr(&out).contains("needs 2 addresses"), "{}", stderr(&out));
}

#[test]
fn a_distributed_party_killed_mid_run_stops_the_other_within_ten_seconds() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "--parties", "2", "-o", path_str(&keys)]);
    for dead in 0..2usize {
        let ports = free_ports(2);
        let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let x = fixtures().join("data/mnist_samples_x.npy");
        let y = work.path().join("y.npy");
        let fault = format!("{dead}:crash");
        let owner = spawn_party("2pc", 0, &peers, &dir, &keys, &["--inject-fault", &fault]);
        let client = spawn_party("2pc", 1, &peers, &dir, &keys, &["--input", path_str(&x), "-o", path_str(&y), "--inject-fault", &fault]);
        let (victim, survivor) = if dead == 0 { (owner, client) } else { (client, owner) };
        let (status, err) = wait_bounded(victim, Duration::from_secs(30));
        assert!(!status.success(), "the crashing party should exit non-zero: {err}");
        let crashed_at = Instant::now();
        let (status, err) = wait_bounded(survivor, Duration::from_secs(30));
        assert!(crashed_at.elapsed() < Duration::from_secs(10), "took {:?} to notice", crashed_at.elapsed());
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("party {dead}")), "does not name the dead party: {err}");
        assert!(!y.exists());
    }
}
