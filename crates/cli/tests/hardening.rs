//! No hang, no panic, no unbounded allocation: the command line's side of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cryptflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cryptflow"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn no_panic(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn printing_to_a_closed_pipe_ends_quietly() {
    // `cryptflow zoo --list | head -0`: the reader is gone before the first line is printed.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cryptflow().args(["zoo", "--list"]).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let stderr = no_panic(&out);
    assert!(stderr.is_empty(), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.success() || out.status.signal() == Some(13), "{:?}", out.status);
}

#[test]
fn a_program_json_beyond_256_mib_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("program.json")).unwrap();
    f.set_len(257 << 20).unwrap(); // sparse: nothing to read, but too large
    let out = cryptflow().arg("run").arg(dir.path()).args(["--backend", "cleartext", "--input", "x.npy", "-o", "y.npy"]).output().unwrap();
    let stderr = no_panic(&out);
    assert!(!out.status.success() && stderr.contains("more than the 256 MiB a compiled program may have"), "{stderr}");
}

#[test]
fn hostile_npy_headers_are_refused_at_once_for_calibrate_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    // 40 nested braces: npyz alone takes far longer than the age of the universe.
    let mut header = "{".repeat(40).into_bytes();
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend(header);
    let evil = dir.path().join("evil.npy");
    std::fs::write(&evil, &bytes).unwrap();
    let model = fixture("fixtures/models/lenet_mnist.onnx");
    let x = fixture("fixtures/data/mnist_val_x.npy");
    let out_dir = dir.path().join("out");
    for args in [vec!["--calibrate", evil.to_str().unwrap()], vec!["--calibrate", x.to_str().unwrap(), "--labels", evil.to_str().unwrap()]] {
        let start = Instant::now();
        let out = cryptflow().arg("compile").arg(&model).arg("-o").arg(&out_dir).args(&args).output().unwrap();
        let stderr = no_panic(&out);
        assert!(!out.status.success() && stderr.contains("evil.npy is not a valid .npy file"), "{stderr}");
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
    }
}
