#![allow(dead_code)]
//! Shared helpers of the CLI tests: run the real binary, read .npy files, find fixtures.

pub mod onnx;

use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixtures() -> PathBuf {
    repo_root().join("fixtures")
}

pub fn cryptflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryptflow")).args(args).output().expect("the cryptflow binary runs")
}

/// Runs the binary and fails the test, with its stderr, unless it succeeds.
pub fn cryptflow_ok(args: &[&str]) -> Output {
    let out = cryptflow(args);
    assert!(out.status.success(), "cryptflow {:?} failed:\n{}", args, String::from_utf8_lossy(&out.stderr));
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure is a clean error exit (1), never a panic (101) or a signal: after any notices
/// and warnings, stderr says `error:`.
pub fn assert_clean_failure(out: &Output, context: &str) {
    assert_eq!(out.status.code(), Some(1), "{context}: expected a clean error exit, got {:?}\n{}", out.status, stderr(out));
    let err = stderr(out);
    let first = err.lines().find(|l| !l.starts_with("notice:") && !l.starts_with("warning:") && !l.starts_with(' ')).unwrap_or("");
    assert!(first.starts_with("error:"), "{context}: stderr should say `error:` after its notices:\n{err}");
    assert!(!err.contains("panicked"), "{context}: panicked:\n{err}");
}

pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    // Class indices (ArgMax outputs) are int64, exact in f32 at the sizes tested.
    let data = if npy.dtype() == npyz::DType::Plain("<i8".parse().unwrap()) {
        npy.into_vec::<i64>().unwrap().into_iter().map(|v| v as f32).collect()
    } else {
        npy.into_vec::<f32>().unwrap()
    };
    (shape, data)
}

pub fn read_labels(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<i64>().unwrap()
}

pub fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[usize], data: &[T]) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(std::fs::File::create(path).unwrap()))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The trained LeNet compiled to its logits (its output Softmax stripped), as the paper's
/// benchmarks and the protocol-level tests measure it.
pub fn compile_lenet(dir: &Path) {
    cryptflow_ok(&["compile", path_str(&fixtures().join("models/lenet_mnist.onnx")), "-o", path_str(dir), "--strip-output-softmax"]);
}

/// Secure backends truncate shares locally (off by at most one unit per ScaleDown, 2^-12 at the
/// default scale), so logits differ from the cleartext executor's by a few units at most.
pub fn assert_near_cleartext(secure: &[f32], clear: &[f32]) {
    assert_eq!(secure.len(), clear.len());
    for (i, (s, c)) in secure.iter().zip(clear).enumerate() {
        assert!((s - c).abs() < 0.05, "element {i}: secure {s} vs cleartext {c}");
    }
}

/// Ports free on the loopback interface right now.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Starts `cryptflow party --backend BACKEND --id ID` with short time-outs.
pub fn spawn_party(backend: &str, id: usize, peers: &str, dir: &Path, keys: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cryptflow"))
        .args(["party", "--backend", backend, "--id", &id.to_string(), "--peers", peers, path_str(dir), "--keys", path_str(keys)])
        .args(["--peer-timeout", "5", "--connect-timeout", "20"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child at most `limit`; kills it and fails the test past that.
pub fn wait_bounded(mut child: std::process::Child, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if started.elapsed() > limit {
            child.kill().ok();
            panic!("party still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
