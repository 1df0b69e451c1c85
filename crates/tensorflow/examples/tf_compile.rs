//! Imports a frozen TensorFlow GraphDef, compiles it with Athos and reports the times; with
//! an input and TensorFlow's expected output (`.npy`), also runs the float executor on the
//! HLIL and reports the largest absolute and relative differences.
//!
//! ```sh
//! cargo run --release -p cryptflow-tensorflow --example tf_compile -- MODEL.pb [INPUT.npy EXPECTED.npy] [--hlil]
//! ```
//! `bench/keras_models.py` writes ResNet50 / DenseNet121 graphs with such files into
//! `bench-out/`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_runtime::float;
use cryptflow_tensor::{FloatTensor, Tensor};
use cryptflow_tensorflow::{import_file, ImportOptions};

fn read_npy(path: &Path) -> FloatTensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    Tensor::new(shape, npy.into_vec::<f32>().unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let print_hlil = args.iter().any(|a| a == "--hlil");
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(model) = files.first() else {
        eprintln!("usage: tf_compile MODEL.pb [INPUT.npy EXPECTED.npy] [--hlil]");
        std::process::exit(2);
    };
    let t = Instant::now();
    let imported = match import_file(Path::new(model), &ImportOptions::default()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let import_s = t.elapsed().as_secs_f64();
    for n in &imported.notices {
        println!("notice: {n}");
    }
    let g = &imported.graph;
    if print_hlil {
        print!("{g}");
    }
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &g.nodes {
        *ops.entry(n.op.name()).or_default() += 1;
    }
    println!("import: {import_s:.3} s, {} HLIL nodes, {} parameters", g.nodes.len(), g.parameter_count());
    println!("ops: {ops:?}");
    let t = Instant::now();
    let compiled = compile(g.clone(), &CompileOptions::default()).expect("compiles");
    let compile_s = t.elapsed().as_secs_f64();
    println!(
        "compile (cryptflow_athos::compile, scale {}): {compile_s:.3} s, {} LLIL instructions, batch norms folded {}, as multiply-add {}",
        compiled.report.scale,
        compiled.report.llil_instructions,
        compiled.report.passes.batch_norms_folded,
        compiled.report.passes.batch_norms_as_multiply_add
    );
    if let (Some(input), Some(expected)) = (files.get(1), files.get(2)) {
        let x = read_npy(Path::new(input));
        let want = read_npy(Path::new(expected));
        let t = Instant::now();
        let y = float::run(g, std::slice::from_ref(&x)).expect("float run").remove(0);
        let run_s = t.elapsed().as_secs_f64();
        assert_eq!(y.shape(), want.shape(), "output shape");
        let mut max_abs = 0f32;
        let mut max_rel = 0f32;
        for (&a, &b) in y.data().iter().zip(want.data()) {
            let d = (a - b).abs();
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(d / b.abs().max(1e-6));
        }
        let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        println!(
            "float executor vs TensorFlow ({run_s:.2} s): max |diff| {max_abs:.3e}, max relative diff {max_rel:.3e} (largest |value| {scale:.3e}, max |diff|/largest {:.3e})",
            max_abs / scale.max(1e-30)
        );
    }
}
