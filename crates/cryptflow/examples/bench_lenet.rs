//! LeNet inference through the Rust API, timed: the reference for the Python package's
//! overhead (`python/bench/bench_lenet.py` runs this and the same calls from Python).
//!
//! `cargo run --release -p cryptflow --example bench_lenet -- [REPEATS]` prints one JSON line:
//! the median seconds of `Program::run` per backend, on one MNIST digit and on a batch of four.

use std::time::Instant;

fn main() -> Result<(), cryptflow::Error> {
    let repeats: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let program = cryptflow::compile(root.join("fixtures/models/lenet_mnist.onnx"), &Default::default())?;
    let x = read_digits(&root.join("fixtures/data/mnist_samples_x.npy"));
    let mut results = Vec::new();
    for backend in ["cleartext", "porthos"] {
        for batch in [1usize, 4] {
            let item = 784;
            let input = cryptflow::Array::f32(vec![batch, 1, 28, 28], x[..batch * item].to_vec())?;
            let options = cryptflow::RunOptions::new(cryptflow::backend(backend)?);
            let mut times = Vec::new();
            for _ in 0..repeats + 2 {
                let input = input.clone();
                let started = Instant::now();
                let result = program.run(input, &options)?;
                times.push(started.elapsed().as_secs_f64());
                assert_eq!(result.outputs[0].shape(), &[batch, 10]);
            }
            times.drain(..2); // warm-up
            times.sort_by(f64::total_cmp);
            results.push(format!("\"{backend}/{batch}\": {}", times[times.len() / 2]));
        }
    }
    println!("{{{}}}", results.join(", "));
    Ok(())
}

/// The four MNIST digits of the fixtures (float32 .npy, [4, 1, 28, 28]).
fn read_digits(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("the MNIST fixture");
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
