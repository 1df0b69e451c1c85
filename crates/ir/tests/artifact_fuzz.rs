//! Property tests of the artifact readers (`read_public`, `read_fixed_weights`,
//! `read_float_graph`): mutated program files (bytes, and JSON values replaced by extreme
//! ones) and mutated weight files (with their checksum recomputed, so that the parser behind
//! the checksum is reached) are read or refused, never panicked on. Seeded, under a minute.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use cryptflow_ir::artifact::*;
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::{encode, Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo};
use cryptflow_tensor::Tensor;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn write_sample(dir: &Path) {
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
    let public = PublicProgram::new("m.onnx".into(), program, architecture, serde_json::json!({}));
    write_artifact(dir, &public, &fixed, &float_weights).unwrap();
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Reads the artifact in `dir` every way; `Err` if a reader panicked.
fn read_all(dir: &Path) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| match read_public(dir) {
        Ok(public) => {
            let _ = read_fixed_weights(dir, &public);
            let _ = read_float_graph(dir, &public);
            if let Ok(f) = FixedWeightsFile::open(dir, &public) {
                for k in 0..public.program.weights.len() {
                    let _ = f.read(k);
                }
            }
            true
        }
        Err(_) => false,
    }))
    .map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

const EXTREMES: [u64; 8] = [0, 1, 2, 3, 1 << 31, 1 << 40, u32::MAX as u64, u64::MAX];

/// Replaces one number (or one element of an array, or a field) somewhere in `v`.
fn mutate_json(v: &mut Value, rng: &mut Rng) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if key == "format" || key == "version" {
                return;
            }
            if rng.below(12) == 0 {
                map.remove(key);
            } else {
                mutate_json(map.get_mut(key).unwrap(), rng);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let k = rng.below(items.len());
            match rng.below(10) {
                0 => {
                    items.remove(k);
                }
                1 => {
                    let copy = items[k].clone();
                    items.push(copy);
                }
                _ => mutate_json(&mut items[k], rng),
            }
        }
        Value::Number(_) => *v = Value::from(EXTREMES[rng.below(EXTREMES.len())]),
        Value::Bool(b) => *b = !*b,
        Value::String(s) => s.push('x'),
        _ => {}
    }
}

fn reseal(bytes: &mut Vec<u8>) {
    let n = bytes.len() - 32;
    let check: [u8; 32] = Sha256::digest(&bytes[..n]).into();
    bytes[n..].copy_from_slice(&check);
}

#[test]
fn mutated_artifacts_never_panic_the_readers() {
    let base = tempfile::tempdir().unwrap();
    write_sample(base.path());
    let program = std::fs::read(base.path().join(PROGRAM_FILE)).unwrap();
    let json: Value = serde_json::from_slice(&program).unwrap();
    let owner = base.path().join(OWNER_DIR);
    let fixed = std::fs::read(owner.join(FIXED_WEIGHTS_FILE)).unwrap();
    let float = std::fs::read(owner.join(FLOAT_WEIGHTS_FILE)).unwrap();
    assert_eq!(read_all(base.path()), Ok(true));

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut cases, mut accepted, mut panics) = (0, 0, Vec::new());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(OWNER_DIR)).unwrap();
    let start = std::time::Instant::now();
    for case in 0..4000 {
        let (mut p, mut fx, mut fl) = (program.clone(), fixed.clone(), float.clone());
        match case % 4 {
            // JSON values replaced by extremes (shapes, slots, geometry, scale...).
            0 | 1 => {
                let mut v = json.clone();
                for _ in 0..1 + rng.below(3) {
                    mutate_json(&mut v, &mut rng);
                }
                p = serde_json::to_vec(&v).unwrap();
            }
            // Raw bytes of the program file.
            2 => {
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(p.len());
                    match rng.below(3) {
                        0 => p[i] = rng.below(256) as u8,
                        1 => p.truncate(i),
                        _ => p[i] ^= 1 << rng.below(8),
                    }
                }
            }
            // Weight files behind a valid checksum.
            _ => {
                let w = if rng.below(2) == 0 { &mut fx } else { &mut fl };
                for _ in 0..1 + rng.below(3) {
                    let body = w.len() - 32;
                    let i = rng.below(body);
                    match rng.below(3) {
                        0 => w[i] = 0xff,
                        1 => w[i] ^= 1 << rng.below(8),
                        _ => {
                            let cut = rng.below(body);
                            w.drain(cut..body);
                        }
                    }
                }
                reseal(w);
            }
        }
        std::fs::write(dir.path().join(PROGRAM_FILE), &p).unwrap();
        std::fs::write(dir.path().join(OWNER_DIR).join(FIXED_WEIGHTS_FILE), &fx).unwrap();
        std::fs::write(dir.path().join(OWNER_DIR).join(FLOAT_WEIGHTS_FILE), &fl).unwrap();
        cases += 1;
        match read_all(dir.path()) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(message) => panics.push((case, message)),
        }
    }
    eprintln!(
        "artifact property test: {cases} cases, {accepted} read, {} panics, {:?}",
        panics.len(),
        start.elapsed()
    );
    assert!(panics.is_empty(), "readers panicked: {:?}", &panics[..panics.len().min(5)]);
}
