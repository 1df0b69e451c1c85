//! The compiled artifact round-trips, and every kind of damage is reported, never run.

use cryptflow_ir::artifact::*;
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::{encode, Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo};
use cryptflow_tensor::{RingTensor, Tensor};

fn sample() -> (PublicProgram, Vec<RingTensor>, Vec<(String, cryptflow_tensor::FloatTensor)>) {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 2]);
    let w = g.weight("w", Tensor::new(vec![2, 3], vec![0.5, -1.0, 2.0, 0.25, 0.0, 1.5]).unwrap());
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    g.outputs = vec![y];
    let program = Program {
        comparison_bits: 64,
        scale: 12,
        slots: vec![SlotInfo { shape: vec![1, 2] }, SlotInfo { shape: vec![2, 3] }, SlotInfo { shape: vec![1, 3] }],
        weights: vec![SecretInput { name: "w".into(), owner: Owner::ModelOwner, slot: 1, shape: vec![2, 3], integer: false, one_hot: false }],
        inputs: vec![SecretInput { name: "x".into(), owner: Owner::Client, slot: 0, shape: vec![1, 2], integer: false, one_hot: false }],
        body: vec![Instr { op: LOp::MatMul, args: vec![0, 1], out: 2, layer: "y".into(), free_after: vec![] }],
        outputs: vec![Output { name: "y".into(), slot: 2, shape: vec![1, 3], encoding: Encoding::Fixed { scale: 24 } }],
    };
    let fixed = vec![g.weight_value(w).unwrap().map(|v| encode(v, 12))];
    let (architecture, float_weights) = strip_weights(&g);
    (PublicProgram::new("m.onnx".into(), program, architecture, serde_json::json!({})), fixed, float_weights)
}

fn written() -> (tempfile::TempDir, PublicProgram, Vec<RingTensor>) {
    let dir = tempfile::tempdir().unwrap();
    let (public, fixed, float_weights) = sample();
    write_artifact(dir.path(), &public, &fixed, &float_weights).unwrap();
    (dir, public, fixed)
}

#[test]
fn round_trip() {
    let (dir, public, fixed) = written();
    let read = read_public(dir.path()).unwrap();
    assert_eq!(read.program, public.program);
    assert_eq!(read_fixed_weights(dir.path(), &read).unwrap(), fixed);
    let graph = read_float_graph(dir.path(), &read).unwrap();
    assert_eq!(graph.weight_value(1).unwrap().data(), &[0.5, -1.0, 2.0, 0.25, 0.0, 1.5]);
}

#[test]
fn weights_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _, _) = written();
    let mode = std::fs::metadata(dir.path().join(OWNER_DIR).join(FIXED_WEIGHTS_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "weights readable by others: {mode:o}");
}

/// Every truncation of the file at `path` is reported as corrupt by `read`, and every flipped
/// byte as an error.
fn assert_damage_detected<T: std::fmt::Debug>(path: &std::path::Path, read: impl Fn() -> Result<T, ArtifactError>) {
    let original = std::fs::read(path).unwrap();
    for cut in 0..original.len() {
        std::fs::write(path, &original[..cut]).unwrap();
        let err = read().unwrap_err();
        assert!(matches!(err, ArtifactError::Corrupt { .. }), "cut at {cut}: {err}");
    }
    for i in 0..original.len() {
        let mut damaged = original.clone();
        damaged[i] ^= 0x40;
        std::fs::write(path, &damaged).unwrap();
        assert!(read().is_err(), "flip at {i} went unnoticed");
    }
}

#[test]
fn every_truncation_and_byte_flip_of_the_weights_is_detected() {
    let (dir, public, _) = written();
    let owner = dir.path().join(OWNER_DIR);
    assert_damage_detected(&owner.join(FIXED_WEIGHTS_FILE), || read_fixed_weights(dir.path(), &public));
    assert_damage_detected(&owner.join(FLOAT_WEIGHTS_FILE), || read_float_graph(dir.path(), &public));
}

#[test]
fn weights_of_another_program_are_rejected() {
    let (dir, _, _) = written();
    let mut other = read_public(dir.path()).unwrap();
    other.program.scale = 13;
    std::fs::write(dir.path().join(PROGRAM_FILE), serde_json::to_vec(&other).unwrap()).unwrap();
    let reread = read_public(dir.path()).unwrap();
    let err = read_fixed_weights(dir.path(), &reread).unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("different compiled program"), "{err}");
}

#[test]
fn damaged_program_files_give_clear_errors() {
    let (dir, _, _) = written();
    let path = dir.path().join(PROGRAM_FILE);
    let original = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"\x00\x01garbage").unwrap();
    assert!(read_public(dir.path()).unwrap_err().to_string().contains("not JSON"));
    std::fs::write(&path, b"{\"format\": \"something-else\"}").unwrap();
    assert!(read_public(dir.path()).unwrap_err().to_string().contains("not a cryptflow program"));
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v["version"] = serde_json::json!(999);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(read_public(dir.path()).unwrap_err(), ArtifactError::Version { found: 999, .. }));
    // A program that reads a slot before writing it is refused before anything runs.
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v["program"]["body"][0]["args"] = serde_json::json!([2, 1]);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(read_public(dir.path()).unwrap_err().to_string().contains("before it is written"));
    for cut in (0..original.len()).step_by(97) {
        std::fs::write(&path, &original[..cut]).unwrap();
        assert!(read_public(dir.path()).is_err());
    }
    std::fs::remove_file(&path).unwrap();
    assert!(read_public(dir.path()).unwrap_err().to_string().contains("program.json"));
}

#[test]
fn streamed_weights_changed_after_the_check_are_refused() {
    let (dir, public, fixed) = written();
    let file = FixedWeightsFile::open(dir.path(), &public).unwrap();
    assert_eq!(file.read(0).unwrap(), fixed[0]);
    // Same length, one element changed: the whole-file checksum was checked at open; the read
    // must still notice.
    let path = dir.path().join(OWNER_DIR).join(FIXED_WEIGHTS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 32 - 8;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = file.read(0).unwrap_err();
    assert!(err.to_string().contains("weight 0 changed since the file was checked"), "{err}");
}

/// A program comparing all 64 bits is written without `comparison_bits` (its JSON and digest
/// are those of programs written before the field existed, which read back as 64 bits); a
/// narrowed domain is written and read back, and changes the digest.
#[test]
fn the_comparison_domain_round_trips_and_keeps_old_digests() {
    let (public, _, _) = sample();
    let json = serde_json::to_value(&public.program).unwrap();
    assert!(json.get("comparison_bits").is_none(), "{json}");
    let old: Program = serde_json::from_value(json).unwrap();
    assert_eq!(old.comparison_bits, 64);
    let mut narrowed = public.clone();
    narrowed.program.comparison_bits = 33;
    let json = serde_json::to_value(&narrowed.program).unwrap();
    assert_eq!(json["comparison_bits"], 33);
    assert_eq!(serde_json::from_value::<Program>(json).unwrap().comparison_bits, 33);
    assert_ne!(narrowed.digest(), public.digest());
    narrowed.program.comparison_bits = 65;
    assert!(narrowed.program.validate().unwrap_err().contains("comparison domain of 65 bits"));
}
