//! `cryptflow zoo` and `cryptflow bench`: listing, writing a network and compiling it, and a
//! tiny benchmark whose report files hold the documented fields.

mod common;

use common::*;

#[test]
fn zoo_lists_the_networks() {
    let out = cryptflow_ok(&["zoo", "--list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["logistic-regression", "secureml", "minionn-mnist", "minionn-cifar", "lenet", "squeezenet", "resnet50", "resnet200", "densenet121", "unet3d"] {
        assert!(text.contains(name), "--list lacks {name}:\n{text}");
    }
    assert!(text.contains("25557032"), "ResNet-50's parameter count:\n{text}");
}

#[test]
fn zoo_writes_a_model_that_compiles_and_runs() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("lenet.onnx");
    let out = cryptflow_ok(&["zoo", "lenet", "-o", path_str(&model), "--seed", "3"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("431080 parameters"));
    let dir = work.path().join("lenet");
    cryptflow_ok(&["compile", path_str(&model), "-o", path_str(&dir)]);
    let x = work.path().join("x.npy");
    write_npy(&x, &[1, 1, 28, 28], &vec![0.5; 28 * 28]);
    let y = work.path().join("y.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&y)]);
    assert_eq!(read_npy(&y).0, vec![1, 10]);

    // Same seed, same bytes; the 3D-UNet takes a size and a width.
    let again = work.path().join("again.onnx");
    cryptflow_ok(&["zoo", "LeNet", "-o", path_str(&again), "--seed", "3"]);
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(&again).unwrap());
    let unet = work.path().join("unet.onnx");
    let out = cryptflow_ok(&["zoo", "unet3d", "-o", path_str(&unet), "--input-size", "8,8,12", "--width", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("[1, 1, 8, 8, 12]"));

    assert_clean_failure(&cryptflow(&["zoo", "resnet51", "-o", path_str(&model)]), "unknown network");
    assert_clean_failure(&cryptflow(&["zoo", "unet3d", "-o", path_str(&unet), "--input-size", "10"]), "bad size");
}

#[test]
fn bench_writes_the_report() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bench");
    cryptflow_ok(&[
        "bench",
        "--networks",
        "logistic-regression",
        "--backends",
        "cleartext,porthos,securenn",
        "--inferences",
        "2",
        "--bandwidth",
        "377",
        "--latency",
        "0.3",
        "-o",
        path_str(&dir),
    ]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("logistic-regression") && md.contains("Porthos vs SecureNN"), "{md}");
    assert!(!dir.join("figure10.svg").exists(), "no ResNet ran");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    for field in ["cpu", "cores", "memory_bytes", "load_average_start"] {
        assert!(!report["machine"][field].is_null(), "machine lacks `{field}`");
    }
    assert_eq!(report["settings"]["inferences"], 2);
    assert_eq!(report["settings"]["network_emulation"]["bandwidth_mbps"], 377.0);
    let net = &report["networks"][0];
    assert_eq!(net["name"], "logistic-regression");
    assert_eq!(net["parameters"], 7850);
    assert!(net["compile_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(net["paper"]["porthos_seconds"], 0.0027);
    let runs = net["runs"].as_array().unwrap();
    let backends: Vec<&str> = runs.iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["cleartext", "porthos", "securenn"]);
    for run in runs {
        for field in [
            "seconds_per_inference",
            "per_inference_seconds",
            "setup_seconds",
            "bytes_per_inference",
            "bytes_per_inference_per_party",
            "rounds_per_inference",
            "peak_live_bytes",
            "peak_rss_bytes",
            "ops",
            "layers",
        ] {
            assert!(!run[field].is_null(), "{} run lacks `{field}`", run["backend"]);
        }
        assert_eq!(run["per_inference_seconds"].as_array().unwrap().len(), 2);
    }
    let porthos = &runs[1];
    // [1,784] x [784,10]: 8 (2*784 + 2*7840 + 10) bytes over the three parties (Table III),
    // and the 10 logits revealed to the client.
    assert_eq!(porthos["bytes_per_inference"], 8 * (2 * 784 + 2 * 7840 + 10) + 8 * 10);
    assert_eq!(porthos["bytes_per_inference_per_party"].as_array().unwrap().len(), 3);
    assert_eq!(porthos["agreement_with_cleartext"]["agree"], 2);
    let emulated = porthos["emulated_seconds_per_inference"].as_f64().unwrap();
    // At least the transfer time of the largest party's share over 377 MBps, and a latency.
    assert!(emulated >= 0.0003 + 69_000.0 / 377e6, "emulated {emulated}");
    assert!(report["porthos_vs_securenn"][0]["communication"].as_f64().is_some());
}

#[test]
fn bench_measures_memory_per_party_in_separate_processes() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bench");
    cryptflow_ok(&[
        "bench",
        "--networks",
        "logistic-regression",
        "--backends",
        "cleartext,porthos",
        "--inferences",
        "1",
        "--emulation",
        "off",
        "--party-processes",
        "-o",
        path_str(&dir),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["party_processes"], true);
    let runs = report["networks"][0]["runs"].as_array().unwrap();
    assert!(runs[0]["peak_rss_per_party_bytes"].is_null(), "cleartext runs in the bench process");
    let porthos = &runs[1];
    assert_eq!(porthos["backend"], "porthos");
    let rss = porthos["peak_rss_per_party_bytes"].as_array().expect("peak_rss_per_party_bytes");
    assert_eq!(rss.len(), 3, "{rss:?}");
    for (id, bytes) in rss.iter().enumerate() {
        assert!(bytes.as_u64().unwrap() > 1_000_000, "party {id}: {bytes}");
    }
    assert!(porthos["party_processes_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(porthos["party_processes_agreement"]["agree"], 1);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("peak RSS per party (separate processes over TLS)"), "{md}");
    assert!(md.contains("| logistic-regression | porthos |") && md.contains(" MB |"), "{md}");
    // The artifact, keys and inputs for the parties are gone.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| n.to_string_lossy().starts_with("report.")), "{left:?}");
}
