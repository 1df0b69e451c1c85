//! Weights are shared as the inferences need them. Beyond `KEPT_WEIGHT_BYTES` they are
//! streamed: a party never holds the shares of all of them at once, and streaming changes no
//! result; within it, the shares stay for the next inferences.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::llil::{Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo, WeightSource};
use cryptflow_runtime::{Runner, KEPT_WEIGHT_BYTES};
use cryptflow_tensor::{kernels, RingTensor, Tensor};

/// Two square weights of this width take more than `KEPT_WEIGHT_BYTES` (32 MiB).
const LARGE: usize = 1500;
const SMALL: usize = 64;

/// x [1, w] -> x W1 -> (x W1) W2, every slot kept to the end of the inference except the weights.
fn two_layers(w: usize) -> Program {
    let square = SlotInfo { shape: vec![w, w] };
    let row = SlotInfo { shape: vec![1, w] };
    let weight = |name: &str, slot| SecretInput { name: name.into(), owner: Owner::ModelOwner, slot, shape: vec![w, w], integer: false, one_hot: false };
    Program {
        comparison_bits: 64,
        scale: 0,
        slots: vec![row.clone(), square.clone(), square, row.clone(), row],
        weights: vec![weight("w1", 1), weight("w2", 2)],
        inputs: vec![SecretInput { name: "x".into(), owner: Owner::Client, slot: 0, shape: vec![1, w], integer: false, one_hot: false }],
        body: vec![
            Instr { op: LOp::MatMul, args: vec![0, 1], out: 3, layer: "l1".into(), free_after: vec![] },
            Instr { op: LOp::MatMul, args: vec![3, 2], out: 4, layer: "l2".into(), free_after: vec![] },
        ],
        outputs: vec![Output { name: "y".into(), slot: 4, shape: vec![1, w], encoding: Encoding::Fixed { scale: 0 } }],
    }
}

fn tensor(shape: &[usize], seed: u64) -> RingTensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n as u64).map(|i| (i * 2654435761 + seed) % 17).collect()).unwrap()
}

/// Counts the loads, to show when weights are read.
struct Counting {
    weights: Vec<RingTensor>,
    loads: AtomicUsize,
}

impl WeightSource for Counting {
    fn count(&self) -> usize {
        self.weights.len()
    }
    fn shape(&self, k: usize) -> &[usize] {
        self.weights[k].shape()
    }
    fn load(&self, k: usize) -> Result<Cow<'_, RingTensor>, String> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        Ok(Cow::Borrowed(&self.weights[k]))
    }
}

/// Two inferences; returns the number of weight loads and the peak live bytes.
fn two_inferences(w: usize) -> (usize, u64) {
    let program = two_layers(w);
    let source = Counting { weights: vec![tensor(&[w, w], 1), tensor(&[w, w], 2)], loads: AtomicUsize::new(0) };
    let mut runner = Runner::new(&program, Cleartext::new());
    runner.share_weights(Some(&source)).unwrap();
    assert_eq!(source.loads.load(Ordering::Relaxed), 0, "nothing is read before an inference needs it");
    let expected = |x: &RingTensor| kernels::matmul(&kernels::matmul(x, &source.weights[0]).unwrap(), &source.weights[1]).unwrap();
    for seed in [3, 4] {
        let x = tensor(&[1, w], seed);
        let (y, _) = runner.infer(Some(std::slice::from_ref(&x))).unwrap();
        assert_eq!(y.unwrap()[0], expected(&x));
    }
    (source.loads.load(Ordering::Relaxed), runner.peak_live_bytes())
}

#[test]
fn large_weights_are_shared_per_use_and_never_all_held_at_once() {
    let weight_bytes = (2 * LARGE * LARGE * 8) as u64;
    assert!(weight_bytes > KEPT_WEIGHT_BYTES);
    let (loads, peak) = two_inferences(LARGE);
    assert_eq!(loads, 4, "each weight is read once per inference");
    // x, both activations and one weight at a time.
    assert_eq!(peak, weight_bytes / 2 + 3 * (LARGE as u64) * 8);
}

#[test]
fn small_weights_are_shared_once_and_kept() {
    let (loads, peak) = two_inferences(SMALL);
    assert_eq!(loads, 2, "each weight is read once per session");
    assert_eq!(peak, (2 * SMALL * SMALL * 8 + 3 * SMALL * 8) as u64);
}

#[test]
fn weights_of_the_wrong_shape_are_refused_up_front() {
    let program = two_layers(SMALL);
    let wrong = vec![tensor(&[SMALL, SMALL], 1), tensor(&[SMALL, 2], 2)];
    let mut runner = Runner::new(&program, Cleartext::new());
    let err = runner.share_weights(Some(&wrong)).unwrap_err().to_string();
    assert!(err.contains("weight `w2` has shape [64, 2], the program expects [64, 64]"), "{err}");
    let too_few = wrong[..1].to_vec();
    let mut runner = Runner::new(&program, Cleartext::new());
    let err = runner.share_weights(Some(&too_few)).unwrap_err().to_string();
    assert!(err.contains("1 weights given, the program has 2"), "{err}");
}
