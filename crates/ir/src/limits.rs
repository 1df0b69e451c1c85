//! What a program may ask of the machine before anything is allocated for it: one cap on the
//! elements of any tensor ([`MAX_TENSOR_ELEMENTS`]) and on the work sizes of convolutions and
//! pooling, checked by [`check_program`], which both `Program::validate` (every program loaded
//! from an artifact) and the runtime (every program it runs) call.
//!
//! `program.json` is public and may come from anyone: its shapes decide how much a party
//! allocates. [`check_program`] refuses shapes (and convolution or pooling geometries) whose
//! element counts exceed [`MAX_TENSOR_ELEMENTS`], and slot indices out of range, with an error
//! naming the layer.

use crate::llil::{Instr, LOp, Program};

/// Most elements of one tensor a program may declare (2^32: 32 GiB of ring elements).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

fn elements(shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))
}

fn too_big(what: String, n: Option<u64>) -> String {
    match n {
        Some(n) => format!("{what} has {n} elements, more than the {MAX_TENSOR_ELEMENTS} a tensor may have"),
        None => format!("{what} has more than 2^64 elements"),
    }
}

fn within(n: Option<u64>) -> bool {
    n.is_some_and(|n| n <= MAX_TENSOR_ELEMENTS)
}

/// Element counts a convolution or pooling computes with besides its declared output: the
/// padded input and the patches of every output position.
fn geometry_elements(op: &LOp) -> Vec<(&'static str, Option<u64>)> {
    let padded = |batch: usize, channels: usize, input: &[usize], b: &[usize], e: &[usize]| {
        let mut n = Some(batch as u64).and_then(|x| x.checked_mul(channels as u64));
        for (k, &d) in input.iter().enumerate() {
            let p = (d as u64).checked_add(*b.get(k).unwrap_or(&0) as u64).and_then(|x| x.checked_add(*e.get(k).unwrap_or(&0) as u64));
            n = n.zip(p).and_then(|(a, p)| a.checked_mul(p));
        }
        n
    };
    match op {
        LOp::Conv(g) | LOp::ConvTranspose(g) => {
            let kernel = g.kernel.iter().try_fold(1u64, |a, &k| a.checked_mul(k as u64));
            let per_group = (g.in_channels / g.groups.max(1)) as u64;
            vec![
                ("its padded input", padded(g.batch, g.in_channels, &g.input, &g.pads_begin, &g.pads_end)),
                ("its kernel", kernel.and_then(|k| k.checked_mul(per_group)).and_then(|k| k.checked_mul(g.out_channels as u64))),
                ("its dilated kernel", g.kernel.iter().zip(g.dilations.iter().chain(std::iter::repeat(&1))).try_fold(1u64, |a, (&k, &d)| a.checked_mul((k as u64).checked_mul(d as u64)?))),
            ]
        }
        LOp::MaxPool(g) | LOp::SumPool(g) => vec![
            ("its padded input", padded(g.batch, g.channels, &g.input, &g.pads_begin, &g.pads_end)),
            ("its window", g.window.iter().try_fold(1u64, |a, &k| a.checked_mul(k as u64))),
        ],
        _ => Vec::new(),
    }
}

fn check_instr(program: &Program, k: usize, instr: &Instr) -> Result<(), String> {
    let n = program.slots.len();
    let name = || format!("layer `{}` ({}, instruction {k})", instr.layer, instr.op.name());
    if let Some(&s) = instr.args.iter().chain(&instr.free_after).chain(std::iter::once(&instr.out)).find(|&&s| s >= n) {
        return Err(format!("{}: slot {s} does not exist ({n} slots)", name()));
    }
    let consistent = match &instr.op {
        LOp::Conv(g) | LOp::ConvTranspose(g) => {
            let r = g.input.len();
            [&g.kernel, &g.strides, &g.dilations, &g.pads_begin, &g.pads_end].iter().all(|v| v.len() == r)
                && (g.output_padding.is_empty() || g.output_padding.len() == r)
                && g.strides.iter().chain(&g.dilations).all(|&x| x >= 1)
                && g.groups >= 1
                && g.in_channels % g.groups == 0
                && g.out_channels % g.groups == 0
        }
        LOp::MaxPool(g) | LOp::SumPool(g) => {
            let r = g.input.len();
            [&g.window, &g.strides, &g.pads_begin, &g.pads_end].iter().all(|v| v.len() == r) && g.strides.iter().all(|&x| x >= 1)
        }
        _ => true,
    };
    if !consistent {
        return Err(format!("{}: inconsistent geometry {:?}", name(), instr.op));
    }
    for (what, count) in geometry_elements(&instr.op) {
        if !within(count) {
            return Err(too_big(format!("{}: {what}", name()), count));
        }
    }
    Ok(())
}

/// Checks that every tensor `program` declares, and every convolution or pooling geometry, is
/// within [`MAX_TENSOR_ELEMENTS`], and that every slot index exists, before anything is
/// allocated from them.
pub fn check_program(program: &Program) -> Result<(), String> {
    let n = program.slots.len();
    for (s, info) in program.slots.iter().enumerate() {
        let count = elements(&info.shape);
        if !within(count) {
            let layer = program.body.iter().find(|i| i.out == s).map_or(String::new(), |i| format!(" (layer `{}`)", i.layer));
            return Err(too_big(format!("slot {s}{layer} of shape {:?}", info.shape), count));
        }
    }
    for w in program.weights.iter().chain(&program.inputs) {
        if w.slot >= n {
            return Err(format!("`{}` is in slot {}, which does not exist ({n} slots)", w.name, w.slot));
        }
        let count = elements(&w.shape);
        if !within(count) {
            return Err(too_big(format!("`{}` of shape {:?}", w.name, w.shape), count));
        }
    }
    if let Some(o) = program.outputs.iter().find(|o| o.slot >= n) {
        return Err(format!("an output is in slot {}, which does not exist ({n} slots)", o.slot));
    }
    for (k, instr) in program.body.iter().enumerate() {
        check_instr(program, k, instr)?;
    }
    Ok(())
}
