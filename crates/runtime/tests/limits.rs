//! A hostile or oversized `program.json` is refused before anything is allocated for it.

use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::llil::{Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo};
use cryptflow_runtime::limits::{self, claim_memory, MAX_TENSOR_ELEMENTS};
use cryptflow_runtime::Runner;
use cryptflow_tensor::{ConvGeometry, Layout, RingTensor, Tensor};

/// x [1, 1, 4, 4] conv w [1, 1, 1, 1] with padding `pad` on both sides, declaring `out` as the
/// output's shape.
fn conv(pad: usize, out: Vec<usize>) -> Program {
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        groups: 1,
        input: vec![4, 4],
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads_begin: vec![pad, pad],
        pads_end: vec![pad, pad],
        output_padding: vec![],
    };
    Program {
        comparison_bits: 64,
        scale: 0,
        slots: vec![SlotInfo { shape: vec![1, 1, 4, 4] }, SlotInfo { shape: vec![1, 1, 1, 1] }, SlotInfo { shape: out.clone() }],
        weights: vec![SecretInput { name: "w".into(), owner: Owner::ModelOwner, slot: 1, shape: vec![1, 1, 1, 1], integer: false, one_hot: false }],
        inputs: vec![SecretInput { name: "x".into(), owner: Owner::Client, slot: 0, shape: vec![1, 1, 4, 4], integer: false, one_hot: false }],
        body: vec![Instr { op: LOp::Conv(g), args: vec![0, 1], out: 2, layer: "conv".into(), free_after: vec![] }],
        outputs: vec![Output { name: "y".into(), slot: 2, shape: out, encoding: Encoding::Fixed { scale: 0 } }],
    }
}

fn refusal(program: &Program) -> String {
    let mut runner = Runner::new(program, Cleartext::new());
    let e1 = runner.share_weights(None).unwrap_err().to_string();
    let x: RingTensor = Tensor::new(vec![1, 1, 4, 4], vec![1; 16]).unwrap();
    let e2 = runner.infer(Some(&[x])).unwrap_err().to_string();
    assert_eq!(e1, e2);
    e1
}

#[test]
fn a_conv_padding_of_2_to_the_40_is_refused_before_allocating() {
    let pad = 1usize << 40;
    // Declared consistently: the output would have (2^41 + 4)^2 elements.
    let err = refusal(&conv(pad, vec![1, 1, 2 * pad + 4, 2 * pad + 4]));
    assert!(err.contains("slot 2 (layer `conv`)") && err.contains("elements"), "{err}");
    // Declared small: the padded input alone is beyond any machine.
    let err = refusal(&conv(pad, vec![1, 1, 4, 4]));
    assert!(err.contains("layer `conv` (Conv, instruction 0): its padded input"), "{err}");
    // An honest padding runs.
    let w: Vec<RingTensor> = vec![Tensor::new(vec![1, 1, 1, 1], vec![3]).unwrap()];
    let program = conv(1, vec![1, 1, 6, 6]);
    limits::check_program(&program).unwrap();
    let mut runner = Runner::new(&program, Cleartext::new());
    runner.share_weights(Some(&w)).unwrap();
    let x: RingTensor = Tensor::new(vec![1, 1, 4, 4], vec![1; 16]).unwrap();
    let (y, _) = runner.infer(Some(&[x])).unwrap();
    assert_eq!(y.unwrap()[0].data().iter().sum::<u64>(), 48);
}

#[test]
fn inconsistent_programs_are_refused_not_panicked_on() {
    let mut p = conv(0, vec![1, 1, 4, 4]);
    p.body[0].args = vec![0, 7];
    assert!(refusal(&p).contains("slot 7 does not exist"));
    let mut p = conv(0, vec![1, 1, 4, 4]);
    p.weights[0].slot = 9;
    assert!(refusal(&p).contains("slot 9, which does not exist"));
    let mut p = conv(0, vec![1, 1, 4, 4]);
    if let LOp::Conv(g) = &mut p.body[0].op {
        g.strides = vec![0];
    }
    assert!(refusal(&p).contains("inconsistent geometry"));
    let mut p = conv(0, vec![1, 1, 4, 4]);
    p.slots[2].shape = vec![usize::MAX, 2, 0];
    assert!(refusal(&p).contains("more than 2^64 elements"));
}

#[test]
fn runs_that_cannot_fit_the_machine_are_refused() {
    // 2^32 elements (32 GiB of shares): within the per-tensor cap, beyond this machine (if it
    // has less; nothing is allocated either way, share_weights(None) allocates nothing).
    let n = MAX_TENSOR_ELEMENTS as usize;
    let program = conv(0, vec![1, 1, 4, 4]);
    let mut big = program.clone();
    big.slots.push(SlotInfo { shape: vec![n] });
    big.body.push(Instr { op: LOp::Reshape, args: vec![2], out: 3, layer: "huge".into(), free_after: vec![] });
    assert!(limits::predicted_bytes(&big) > 8 * MAX_TENSOR_ELEMENTS);
    if limits::machine_memory_bytes().is_some_and(|m| m < limits::predicted_bytes(&big)) {
        let err = Runner::new(&big, Cleartext::new()).share_weights(None).unwrap_err().to_string();
        assert!(err.contains("predicted to need 32.1 GiB") && err.contains("CRYPTFLOW_FORCE_MEMORY"), "{err}");
    }
    // Parties in one process add up, and a claim is released with its runner.
    let gib = 1u64 << 30;
    let a = claim_memory(6 * gib, Some(10 * gib)).unwrap();
    let err = claim_memory(6 * gib, Some(10 * gib)).unwrap_err();
    assert!(err.contains("besides the 6.") && err.contains("GiB of the other parties"), "{err}");
    drop(a);
    claim_memory(6 * gib, Some(10 * gib)).unwrap();
}
