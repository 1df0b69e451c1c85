//! Malformed input never panics: deterministic mutations (truncations, byte flips, byte
//! insertions and deletions, field-tag and length corruption) of valid GraphDefs must give
//! `Ok` or `Err`, never a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use cryptflow_tensorflow::{import_bytes, ImportOptions};

fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutants(bytes: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    // Truncations at evenly spread points, plus the first and last bytes.
    let n = bytes.len();
    for k in 0..64 {
        out.push(bytes[..n * k / 64].to_vec());
    }
    out.push(bytes[..n - 1].to_vec());
    out.push(bytes[1..].to_vec());
    for _ in 0..count {
        let mut m = bytes.to_vec();
        match rng.below(6) {
            0 => {
                // Flip one to four random bits.
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(n);
                    m[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                // Overwrite a byte with a "nasty" value (large varints, negative lengths).
                let i = rng.below(n);
                m[i] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x02][rng.below(6)];
            }
            2 => {
                let i = rng.below(n);
                m.remove(i);
            }
            3 => {
                let i = rng.below(n);
                m.insert(i, rng.next() as u8);
            }
            4 => {
                // Duplicate a random slice (repeated fields, duplicated nodes).
                let i = rng.below(n);
                let len = 1 + rng.below(64.min(n - i));
                let chunk = m[i..i + len].to_vec();
                let at = rng.below(n);
                m.splice(at..at, chunk);
            }
            _ => {
                // Randomise a run of bytes.
                let i = rng.below(n);
                for b in m.iter_mut().skip(i).take(1 + rng.below(8)) {
                    *b = rng.next() as u8;
                }
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn mutated_graphs_never_panic() {
    let sources = [
        ("models/lenet_mnist.pb", 1500),
        ("tensorflow/tf1_graph.pb", 600),
        ("tensorflow/tf_slicing.pb", 600),
        ("tensorflow/keras_merge.pb", 400),
        ("tensorflow/keras_conv_transpose.pb", 400),
        ("tensorflow/tf_shape_arith.pb", 400),
    ];
    let mut total = 0;
    let mut ok = 0;
    let mut panics = Vec::new();
    for (i, (rel, count)) in sources.iter().enumerate() {
        let bytes = fixture(rel);
        assert!(import_bytes(&bytes, &ImportOptions::default()).is_ok() || rel.contains("shape_arith"));
        for (k, m) in mutants(&bytes, 0x9e37_79b9_7f4a_7c15 ^ i as u64, *count).iter().enumerate() {
            total += 1;
            match catch_unwind(AssertUnwindSafe(|| import_bytes(m, &ImportOptions::default()))) {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    // Errors render without panicking too.
                    let _ = e.to_string();
                }
                Err(_) => panics.push(format!("{rel} mutant {k}")),
            }
        }
    }
    eprintln!("{total} mutants: {ok} imported, {} rejected, {} panicked", total - ok - panics.len(), panics.len());
    assert!(panics.is_empty(), "import panicked on: {panics:?}");
    assert!(total > 3000);
}
