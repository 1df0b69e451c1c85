//! A hand-edited or corrupted `program.json` is refused on load with a clear error, never run:
//! every field the runner relies on is checked (each of these programs passed the old checks
//! and then panicked a party or computed wrong values).

use cryptflow_ir::artifact::{read_public, strip_weights, write_artifact, PublicProgram};
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::{encode, Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo};
use cryptflow_tensor::{ConvGeometry, Layout, Tensor};

fn instr(op: LOp, args: Vec<usize>, out: usize) -> Instr {
    Instr { op, args, out, layer: "l".into(), free_after: vec![] }
}

/// x [1, 4] . w [4, 4] + b, ReLU, ScaleDown: a valid program.
fn base() -> Program {
    let shapes = [vec![1, 4], vec![4, 4], vec![4], vec![1, 4], vec![1, 4], vec![1, 4], vec![1, 4], vec![1, 4]];
    Program {
        comparison_bits: 64,
        scale: 12,
        slots: shapes.iter().map(|s| SlotInfo { shape: s.clone() }).collect(),
        weights: vec![
            SecretInput { name: "w".into(), owner: Owner::ModelOwner, slot: 1, shape: vec![4, 4], integer: false, one_hot: false },
            SecretInput { name: "b".into(), owner: Owner::ModelOwner, slot: 2, shape: vec![4], integer: false, one_hot: false },
        ],
        inputs: vec![SecretInput { name: "x".into(), owner: Owner::Client, slot: 0, shape: vec![1, 4], integer: false, one_hot: false }],
        body: vec![
            instr(LOp::MatMul, vec![0, 1], 3),
            instr(LOp::Reshape, vec![2], 4),
            instr(LOp::Add, vec![3, 4], 5),
            instr(LOp::Relu, vec![5], 6),
            instr(LOp::ScaleDown { shift: 12 }, vec![6], 7),
        ],
        outputs: vec![Output { name: "y".into(), slot: 7, shape: vec![1, 4], encoding: Encoding::Fixed { scale: 12 } }],
    }
}

fn refused(edit: impl FnOnce(&mut Program), expected: &str) {
    let mut p = base();
    edit(&mut p);
    let e = p.validate().expect_err(&format!("accepted a program that should fail with `{expected}`"));
    assert!(e.contains(expected), "expected `{expected}` in: {e}");
}

#[test]
fn the_base_program_is_valid() {
    base().validate().unwrap();
}

#[test]
fn scales_and_shifts_out_of_range() {
    refused(|p| p.scale = 0, "scale 0 is out of range");
    refused(|p| p.scale = 1000, "scale 1000 is out of range");
    refused(|p| p.scale = 30, "scale 30 is out of range");
    refused(|p| p.body[4].op = LOp::ScaleDown { shift: 64 }, "shift 64");
    refused(|p| p.body[4].op = LOp::ScaleDown { shift: 0 }, "shift 0");
    refused(|p| p.outputs[0].encoding = Encoding::Fixed { scale: 200 }, "declared at scale 200");
    refused(|p| p.outputs[0].encoding = Encoding::Fixed { scale: 25 }, "declared at scale 25");
}

#[test]
fn shapes_inconsistent_with_an_operation() {
    refused(
        |p| {
            p.slots[1].shape = vec![3, 4];
            p.weights[0].shape = vec![3, 4];
        },
        "MatMul of [1, 4] by [3, 4]",
    );
    refused(|p| p.slots[3].shape = vec![1, 5], "the operation gives [1, 4]");
    refused(|p| p.slots[4].shape = vec![2, 4], "cannot reshape");
    refused(|p| p.outputs[0].shape = vec![4], "disagrees with its slot's shape");
    refused(|p| p.body[3].op = LOp::Transpose { perm: vec![0, 0] }, "not a permutation");
    refused(|p| p.body[3].op = LOp::Gather { axis: 1, indices: vec![0, 1, 2, 7] }, "gather index 7");
    refused(|p| p.body[3].op = LOp::Gather { axis: 2, indices: vec![0] }, "gather axis 2");
    refused(|p| p.body[3].op = LOp::Pad { pads_begin: vec![0], pads_end: vec![0] }, "do not fit rank 2");
    refused(|p| p.body[3].op = LOp::Slice { starts: vec![0, 2], ends: vec![1, 9], steps: vec![1, 1] }, "slice of axis 1");
    refused(|p| p.body[3].op = LOp::Slice { starts: vec![0, 0], ends: vec![1, 4], steps: vec![1, 0] }, "step of axis 1 is zero");
    refused(|p| p.body[3].op = LOp::Concat { axis: 2 }, "concat axis 2");
    refused(|p| p.body[3].op = LOp::Divide { divisors: Tensor::scalar(0) }, "divisor 0");
    refused(|p| p.body[3].op = LOp::Divide { divisors: Tensor::new(vec![3], vec![1, 2, 3]).unwrap() }, "do not broadcast");
    refused(|p| p.body[3].op = LOp::ArgMax { axis: 3, keep_dims: false }, "argmax axis 3");
    refused(|p| p.body[3].op = LOp::Softmax { axis: 5 }, "softmax axis 5");
    refused(|p| p.body[3].op = LOp::ReduceSum { axes: vec![1, 0], keep_dims: true }, "bad reduction axes");
    refused(|p| p.body[3].op = LOp::Normalize { axes: vec![1], epsilon: f32::NAN }, "epsilon");
    let conv = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        groups: 1,
        input: vec![4],
        kernel: vec![9],
        strides: vec![1],
        dilations: vec![1],
        pads_begin: vec![0],
        pads_end: vec![0],
        output_padding: vec![0],
    };
    refused(|p| p.body[0].op = LOp::Conv(conv.clone()), "kernel span 9 exceeds");
    refused(|p| p.body[0].op = LOp::Conv(ConvGeometry { kernel: vec![1, 1], ..conv.clone() }), "does not have 1 entries");
    refused(|p| p.body[0].op = LOp::Conv(ConvGeometry { kernel: vec![3], ..conv.clone() }), "do not match the geometry");
    refused(|p| p.body[0].op = LOp::Conv(ConvGeometry { dilations: vec![1 << 40], ..conv }), "implausibly large");
}

#[test]
fn argument_counts() {
    refused(|p| p.body[3].args = vec![], "takes 1..=1 arguments, not 0");
    refused(|p| p.body[2].args = vec![3], "takes 2..=2 arguments, not 1");
    refused(|p| p.body[3].args = vec![5, 5], "takes 1..=1 arguments, not 2");
}

#[test]
fn freed_slots_and_dead_arguments() {
    refused(|p| p.body[2].free_after = vec![5], "reads %5 after it is freed");
    refused(|p| p.body[1].free_after = vec![3, 0], "reads %3 after it is freed");
    refused(|p| p.body[4].free_after = vec![7], "freed before it is revealed");
    refused(|p| p.body[0].free_after = vec![6], "frees %6, which is not written yet");
    refused(|p| p.body[0].free_after = vec![99], "slot %99 does not exist");
    // Freeing a weight is harmless: it is shared again when read.
    let mut p = base();
    p.body[0].free_after = vec![1, 0];
    p.body[1].free_after = vec![2];
    p.validate().unwrap();
}

#[test]
fn input_and_weight_slots_are_distinct_and_outputs_depend_on_the_input() {
    refused(
        |p| {
            p.weights[1].slot = 0;
            p.weights[1].shape = vec![1, 4];
        },
        "shares slot %0",
    );
    refused(
        |p| {
            let mut x2 = p.inputs[0].clone();
            x2.slot = 3;
            p.inputs.push(x2);
        },
        "two inputs are named `x`",
    );
    refused(|p| p.outputs[0].slot = 1, "does not depend on the client's input");
    refused(
        |p| {
            p.outputs[0].slot = 4;
            p.outputs[0].shape = vec![1, 4];
        },
        "does not depend on the client's input",
    );
}

#[test]
fn sizes_within_limits() {
    refused(
        |p| {
            p.slots.push(SlotInfo { shape: vec![1 << 20, 1 << 15] });
        },
        "more than 2^32 elements",
    );
    refused(|p| p.slots.push(SlotInfo { shape: vec![usize::MAX, 4] }), "more than 2^32 elements");
    refused(
        |p| {
            for _ in 0..40 {
                p.slots.push(SlotInfo { shape: vec![1 << 32] });
            }
        },
        "more than 2^40",
    );
    // One cap for the IR and the runtime: a slot of 2^33 elements (which the IR used to accept
    // up to 2^34 while the runtime refused beyond 2^32) is refused on load, and both checks say
    // the same of a convolution whose padded input exceeds it.
    refused(|p| p.slots.push(SlotInfo { shape: vec![1 << 33] }), "more than 2^32 elements");
    assert_eq!(cryptflow_ir::llil::MAX_SLOT_ELEMENTS, cryptflow_ir::limits::MAX_TENSOR_ELEMENTS);
}

/// Through the artifact loader: a hand edit of `program.json` is a clean error.
#[test]
fn hand_edited_program_files_are_refused_on_load() {
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 4]);
    let w = g.weight("w", Tensor::new(vec![4, 4], vec![0.5; 16]).unwrap());
    let b = g.weight("b", Tensor::new(vec![4], vec![0.25; 4]).unwrap());
    let y = g.add("y", Op::MatMul, &[x, w]).unwrap();
    let y = g.add("z", Op::Add, &[y, b]).unwrap();
    g.outputs = vec![y];
    let (architecture, float_weights) = strip_weights(&g);
    let public = PublicProgram::new("m.onnx".into(), base(), architecture, serde_json::json!({}));
    let fixed = vec![Tensor::new(vec![4, 4], vec![encode(0.5, 12); 16]).unwrap(), Tensor::new(vec![4], vec![encode(0.25, 24); 4]).unwrap()];
    let edits: [(&str, fn(&mut serde_json::Value)); 4] = [
        ("shift 64", |v| v["program"]["body"][4]["op"]["ScaleDown"]["shift"] = 64.into()),
        ("scale 1000", |v| v["program"]["scale"] = 1000.into()),
        ("declared at scale 200", |v| v["program"]["outputs"][0]["encoding"]["Fixed"]["scale"] = 200.into()),
        ("after it is freed", |v| v["program"]["body"][2]["free_after"] = serde_json::json!([5])),
    ];
    for (expected, edit) in edits {
        let dir = tempfile::tempdir().unwrap();
        write_artifact(dir.path(), &public, &fixed, &float_weights).unwrap();
        read_public(dir.path()).unwrap();
        let path = dir.path().join("program.json");
        let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        let e = read_public(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a cryptflow program") && e.contains(expected), "{expected}: {e}");
    }
}

/// `read_public` checks the size of `program.json` before reading it, and stops reading past
/// the limit whatever the file declared: a symbolic link to `/dev/zero` (declared size 0,
/// endless) used to be read until memory ran out.
#[cfg(unix)]
#[test]
fn read_public_never_reads_past_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("program.json")).unwrap();
    let err = read_public(dir.path()).unwrap_err().to_string();
    assert!(err.contains("longer than it declared, more than the 256 MiB a compiled program may have"), "{err}");
    let big = tempfile::tempdir().unwrap();
    std::fs::File::create(big.path().join("program.json")).unwrap().set_len(257 << 20).unwrap();
    let err = read_public(big.path()).unwrap_err().to_string();
    assert!(err.contains("it is 257 MiB, more than the 256 MiB"), "{err}");
}
