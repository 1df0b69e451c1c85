//! The library API without the command line: every backend on LeNet from memory and from a
//! saved folder (secure predictions equal the cleartext executor's, float within 1e-4 of
//! onnxruntime's saved probabilities), progress callbacks, and errors by kind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cryptflow::{Array, BackendName, Error, Program, RunOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A float32 .npy (C order) as an array.
fn read_npy(path: &Path) -> Array {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data = bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Array::f32(shape, data).unwrap()
}

fn argmax_rows(a: &Array) -> Vec<usize> {
    let n = *a.shape().last().unwrap();
    a.as_f32().unwrap().chunks(n).map(|r| (0..n).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap()).collect()
}

fn lenet() -> Program {
    cryptflow::compile(fixtures().join("models/lenet_mnist.onnx"), &Default::default()).unwrap()
}

#[test]
fn every_backend_from_memory_and_from_a_folder() {
    let x = read_npy(&fixtures().join("data/mnist_samples_x.npy"));
    let expected = read_npy(&fixtures().join("models/lenet_mnist.expected_probs.npy"));
    let program = lenet();
    let work = tempfile::tempdir().unwrap();
    program.save(work.path().join("lenet")).unwrap();
    let loaded = Program::load(work.path().join("lenet")).unwrap();
    for p in [&program, &loaded] {
        let run = |backend| p.run(x.clone(), &RunOptions::new(backend)).unwrap();
        let float = run(BackendName::Float);
        let (got, want) = (float.outputs[0].as_f32().unwrap(), expected.as_f32().unwrap());
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-4 * b.abs() + 1e-5, "float {a} vs onnxruntime {b}");
        }
        let clear = run(BackendName::Cleartext);
        assert_eq!(clear.outputs[0].shape(), &[4, 10]);
        for backend in [BackendName::Porthos, BackendName::TwoPc, BackendName::Aramis] {
            let secure = run(backend);
            assert_eq!(argmax_rows(&secure.outputs[0]), argmax_rows(&clear.outputs[0]), "{backend:?}");
            let parties = if backend == BackendName::TwoPc { 2 } else { 3 };
            assert_eq!(secure.metrics.bytes_sent.len(), parties, "{backend:?}");
            assert_eq!(secure.metrics.inferences, 4);
            assert!(secure.metrics.bytes_total > 0 && secure.metrics.rounds > 0);
            assert_eq!(secure.metrics.aramis.is_some(), backend == BackendName::Aramis);
        }
    }
}

#[test]
fn progress_callback_sees_every_step() {
    let program = lenet();
    let x = Array::f32(vec![1, 1, 28, 28], vec![0.25; 784]).unwrap();
    let (steps, last_total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut options = RunOptions::new(BackendName::Porthos);
    let (s, t) = (steps.clone(), last_total.clone());
    options.progress = cryptflow::Progress::Callback(Arc::new(move |done, total, _layer| {
        s.store(done, Ordering::SeqCst);
        t.store(total, Ordering::SeqCst);
    }));
    program.run(x, &options).unwrap();
    let (done, total) = (steps.load(Ordering::SeqCst), last_total.load(Ordering::SeqCst));
    assert!(total > 10 && done == total, "{done}/{total}");
}

#[test]
fn errors_by_kind_with_the_command_messages() {
    let program = lenet();
    let wrong = Array::f32(vec![1, 1, 28, 27], vec![0.0; 28 * 27]).unwrap();
    let e = program.run(wrong, &RunOptions::new(BackendName::Porthos)).unwrap_err();
    assert!(matches!(e, Error::Input(_)) && e.to_string().contains("has shape [1, 1, 28, 27]"), "{e}");
    let e = program.run(Vec::<Array>::new(), &RunOptions::new(BackendName::Cleartext)).unwrap_err();
    assert!(matches!(e, Error::Input(_)) && e.to_string().contains("the model takes 1 input"), "{e}");
    let named = vec![("image".to_string(), Array::f32(vec![1, 1, 28, 28], vec![0.0; 784]).unwrap())];
    let e = program.run(named, &RunOptions::new(BackendName::Cleartext)).unwrap_err();
    assert!(matches!(e, Error::Input(_)) && e.to_string().contains("no input `image`"), "{e}");
    let mut nan = vec![0.0; 784];
    nan[5] = f32::NAN;
    let e = program.run(Array::f32(vec![1, 1, 28, 28], nan).unwrap(), &RunOptions::new(BackendName::Cleartext)).unwrap_err();
    assert!(matches!(e, Error::Input(_)) && e.to_string().contains("is NaN"), "{e}");
    let e = cryptflow::backend("gpu").unwrap_err();
    assert!(matches!(e, Error::Options(_)), "{e}");
    let e = cryptflow::compile("no/such/model.onnx", &Default::default()).err().unwrap();
    assert!(matches!(e, Error::Model(_)) && e.to_string().contains("cannot import"), "{e}");
    let e = cryptflow::compile(cryptflow::ModelSource::OnnxBytes(b"junk".to_vec()), &Default::default()).err().unwrap();
    assert!(matches!(e, Error::Model(_)), "{e}");
    let e = Program::load(fixtures().join("models/lenet_mnist.onnx")).err().unwrap();
    assert!(matches!(e, Error::Program(_)) && e.to_string().contains("is a model file, not a compiled program"), "{e}");
    let mut options = RunOptions::new(BackendName::Porthos);
    options.fault = Some(cryptflow::fault("2:crash").unwrap());
    let e = program.run(Array::f32(vec![1, 1, 28, 28], vec![0.0; 784]).unwrap(), &options).unwrap_err();
    assert!(matches!(e, Error::Run(_)) && e.to_string().contains("the secure computation failed"), "{e}");
}
