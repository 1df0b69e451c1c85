//! What a program may ask of the machine before anything is allocated for it.
//!
//! `program.json` is public and may come from anyone: its shapes decide how much a party
//! allocates. [`check_program`] refuses shapes (and convolution or pooling geometries) whose
//! element counts exceed [`MAX_TENSOR_ELEMENTS`], and slot indices out of range, with an error
//! naming the layer; [`check_memory`] refuses a run whose predicted memory exceeds the machine's
//! (`MemTotal` in `/proc/meminfo`) unless [`FORCE_MEMORY_ENV`] is set.

use std::sync::atomic::{AtomicU64, Ordering};

use cryptflow_ir::llil::{Instr, LOp, Program};

/// Most elements of one tensor a program may declare (2^32: 32 GiB of ring elements).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;
/// Set to `1` to run a program whose predicted memory exceeds the machine's anyway.
pub const FORCE_MEMORY_ENV: &str = "CRYPTFLOW_FORCE_MEMORY";
/// What a party needs besides its live tensors: the protocols' buffer pool (at most 64 MiB),
/// streamed blocks, the weights being loaded.
pub const MEMORY_OVERHEAD_BYTES: u64 = 128 << 20;

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

/// The memory one party running `program` is predicted to need.
pub fn predicted_bytes(program: &Program) -> u64 {
    program.peak_live_bytes().saturating_add(MEMORY_OVERHEAD_BYTES)
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), if known.
pub fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Memory claimed by the runners of this process (parties run as threads of one process add up).
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// A claim on the machine's memory, released when dropped.
#[derive(Debug)]
pub struct MemoryClaim(u64);

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        CLAIMED.fetch_sub(self.0, Ordering::SeqCst);
    }
}

/// Claims `bytes` for a party of this process; refused when the claims of the process would
/// exceed `machine` bytes (`None`: unknown, anything goes), unless [`FORCE_MEMORY_ENV`] is `1`.
pub fn claim_memory(bytes: u64, machine: Option<u64>) -> Result<MemoryClaim, String> {
    let total = CLAIMED.fetch_add(bytes, Ordering::SeqCst).saturating_add(bytes);
    let claim = MemoryClaim(bytes);
    let forced = std::env::var(FORCE_MEMORY_ENV).is_ok_and(|v| v == "1");
    match machine {
        Some(m) if total > m && !forced => {
            let others = total - bytes;
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            Err(format!(
                "this party is predicted to need {:.1} GiB (its peak of live tensors, weights included, plus {} MiB){}, but the machine has {:.1} GiB: refused before allocating (set {FORCE_MEMORY_ENV}=1 to try anyway)",
                gib(bytes),
                MEMORY_OVERHEAD_BYTES >> 20,
                if others > 0 { format!(" besides the {:.1} GiB of the other parties in this process", gib(others)) } else { String::new() },
                gib(m)
            ))
        }
        _ => Ok(claim),
    }
}
