//! Secure runs through the real binary: Porthos agrees with the cleartext executor up to
//! truncation error and with float on predictions (local and distributed), and a party that
//! dies mid-run makes the others stop with an error naming it, within a bounded time.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn porthos_and_securenn_agree_with_cleartext_and_float() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = fixtures().join("data/mnist_samples_x.npy");
    let run = |backend: &str, extra: &[&str]| {
        let y = work.path().join(format!("{backend}{}.npy", extra.join("")));
        let m = work.path().join(format!("{backend}{}.json", extra.join("")));
        let mut args = vec!["run", path_str(&dir), "--backend", backend, "--input", path_str(&x), "-o", path_str(&y), "--metrics", path_str(&m)];
        args.extend_from_slice(extra);
        cryptflow_ok(&args);
        let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        (read_npy(&y).1, metrics)
    };
    let (float, _) = run("float", &[]);
    let (clear, _) = run("cleartext", &[]);
    let (porthos, pm) = run("porthos", &[]);
    let (securenn, sm) = run("porthos", &["--protocol", "securenn"]);
    assert_near_cleartext(&porthos, &clear);
    assert_near_cleartext(&securenn, &clear);
    for k in 0..4 {
        let row = |v: &[f32]| argmax(&v[k * 10..(k + 1) * 10]);
        assert_eq!(row(&porthos), row(&float), "sample {k}");
        assert_eq!(row(&securenn), row(&float), "sample {k}");
    }
    // Metrics: three parties, real traffic, Porthos cheaper than SecureNN.
    let sent = |m: &serde_json::Value| -> Vec<u64> { m["bytes_sent"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect() };
    assert_eq!(sent(&pm).len(), 3);
    assert!(sent(&pm).iter().all(|&b| b > 0));
    assert_eq!(pm["bytes_total"].as_u64().unwrap(), sent(&pm).iter().sum::<u64>());
    assert!(pm["bytes_total"].as_u64().unwrap() < sm["bytes_total"].as_u64().unwrap());
    assert!(pm["rounds"].as_u64().unwrap() > 0);
    let layer_bytes: u64 = pm["layers"].as_array().unwrap().iter().map(|l| l["bytes_sent"].as_u64().unwrap()).sum();
    assert_eq!(layer_bytes, pm["bytes_total"].as_u64().unwrap(), "per-layer bytes add up to the total");
}

#[test]
fn a_party_crashing_in_a_local_run_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = fixtures().join("data/mnist_samples_x.npy");
    let started = Instant::now();
    let out = cryptflow(&["run", path_str(&dir), "--backend", "porthos", "--input", path_str(&x), "-o", path_str(&work.path().join("y.npy")), "--inject-fault", "2:crash"]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_clean_failure(&out, "crash");
    let err = stderr(&out);
    assert!(err.contains("party 2") && err.contains("disconnected"), "{err}");
    assert!(!work.path().join("y.npy").exists(), "no output after a failure");
}

#[test]
fn distributed_parties_over_tls_match_the_local_run() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    let ports = free_ports(3);
    let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let owner = spawn_party("porthos", 0, &peers, &dir, &keys, &[]);
    let helper = spawn_party("porthos", 2, &peers, &dir, &keys, &[]);
    let client = spawn_party("porthos", 1, &peers, &dir, &keys, &["--input", path_str(&x), "-o", path_str(&y)]);
    for (name, child) in [("client", client), ("owner", owner), ("helper", helper)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert!(status.success(), "{name} failed: {err}");
    }
    let local = work.path().join("local.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "porthos", "--input", path_str(&x), "-o", path_str(&local)]);
    let clear = work.path().join("clear.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&clear)]);
    let (distributed, clear) = (read_npy(&y).1, read_npy(&clear).1);
    assert_near_cleartext(&distributed, &clear);
    let labels = read_labels(&fixtures().join("data/mnist_samples_y.npy"));
    for (k, &label) in labels.iter().enumerate() {
        assert_eq!(argmax(&distributed[k * 10..(k + 1) * 10]) as i64, label);
    }
}

#[test]
fn a_distributed_party_killed_mid_run_stops_the_others_within_ten_seconds() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    let ports = free_ports(3);
    let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let fault = ["--inject-fault", "2:crash"];
    let owner = spawn_party("porthos", 0, &peers, &dir, &keys, &fault);
    let helper = spawn_party("porthos", 2, &peers, &dir, &keys, &fault);
    let client = spawn_party("porthos", 1, &peers, &dir, &keys, &["--input", path_str(&x), "-o", path_str(&work.path().join("y.npy")), "--inject-fault", "2:crash"]);
    let (status, err) = wait_bounded(helper, Duration::from_secs(30));
    assert!(!status.success(), "the crashing helper should exit non-zero: {err}");
    let crashed_at = Instant::now();
    for (name, child) in [("client", client), ("owner", owner)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(30));
        assert!(crashed_at.elapsed() < Duration::from_secs(10), "{name} took {:?} to notice", crashed_at.elapsed());
        assert_eq!(status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("party 2"), "{name} does not name the dead party: {err}");
    }
    assert!(!work.path().join("y.npy").exists());
}

/// `--truncation faithful`, the default, runs every truncation exactly (Porthos:
/// helper-assisted, 2PC: one comparison each): the same predictions as float, and more bytes
/// and rounds than the paper's local truncation, which warns that its expected failures per
/// inference exceed 2^-40.
#[test]
fn faithful_truncation_is_the_default_and_local_warns() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = fixtures().join("data/mnist_samples_x.npy");
    let run = |backend: &str, truncation: Option<&str>| {
        let name = truncation.unwrap_or("default");
        let y = work.path().join(format!("{backend}-{name}.npy"));
        let m = work.path().join(format!("{backend}-{name}.json"));
        let mut args = vec!["run", path_str(&dir), "--backend", backend, "--input", path_str(&x), "-o", path_str(&y), "--metrics", path_str(&m)];
        if let Some(t) = truncation {
            args.extend(["--truncation", t]);
        }
        let out = cryptflow_ok(&args);
        let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        (read_npy(&y).1, metrics["bytes_total"].as_u64().unwrap(), metrics["rounds"].as_u64().unwrap(), stderr(&out))
    };
    let (float, _, _, float_err) = run("float", Some("local"));
    assert!(!float_err.contains("--truncation local:"), "the float executor does not truncate shares: {float_err}");
    for backend in ["porthos", "2pc"] {
        let (local, local_bytes, local_rounds, local_err) = run(backend, Some("local"));
        let (faithful, faithful_bytes, faithful_rounds, faithful_err) = run(backend, Some("faithful"));
        let (default, default_bytes, default_rounds, default_err) = run(backend, None);
        assert_near_cleartext(&faithful, &local);
        for k in 0..4 {
            let row = |v: &[f32]| argmax(&v[k * 10..(k + 1) * 10]);
            assert_eq!(row(&faithful), row(&float), "{backend} sample {k}");
            assert_eq!(row(&default), row(&float), "{backend} sample {k}");
        }
        assert!(faithful_bytes > local_bytes, "{backend}: faithful {faithful_bytes} vs local {local_bytes} bytes");
        assert!(faithful_rounds > local_rounds, "{backend}: faithful {faithful_rounds} vs local {local_rounds} rounds");
        assert_eq!((default_bytes, default_rounds), (faithful_bytes, faithful_rounds), "{backend}: the default is faithful");
        assert!(local_err.contains("warning: --truncation local:") && local_err.contains("threshold of 2^-40"), "{local_err}");
        assert!(!faithful_err.contains("--truncation local:") && !default_err.contains("--truncation local:"), "{default_err}");
    }
}
