//! LLIL analyses (paper III-D): liveness with the memory plan it gives, and scale-down
//! counting.

use cryptflow_ir::llil::{LOp, Program};
use cryptflow_tensor::num_elements;
use serde::{Deserialize, Serialize};

const BYTES_PER_ELEMENT: u64 = 8;

fn slot_bytes(program: &Program, slot: usize) -> u64 {
    num_elements(&program.slots[slot].shape) as u64 * BYTES_PER_ELEMENT
}

/// Liveness analysis: marks, on the instruction of its last use, every slot that nothing
/// later reads. Weights (reused by every inference) and outputs (revealed at the end) stay.
pub fn plan_frees(program: &mut Program) {
    let n = program.slots.len();
    let mut keep = vec![false; n];
    for w in &program.weights {
        keep[w.slot] = true;
    }
    for o in &program.outputs {
        keep[o.slot] = true;
    }
    let mut last_use: Vec<Option<usize>> = vec![None; n];
    for (k, instr) in program.body.iter().enumerate() {
        for &a in &instr.args {
            last_use[a] = Some(k);
        }
        // A value nobody reads dies where it is made.
        last_use[instr.out].get_or_insert(k);
    }
    for i in &program.inputs {
        last_use[i.slot].get_or_insert(0);
    }
    for instr in &mut program.body {
        instr.free_after.clear();
    }
    for slot in 0..n {
        if let (false, Some(k)) = (keep[slot], last_use[slot]) {
            if !program.body.is_empty() {
                program.body[k].free_after.push(slot);
            }
        }
    }
    for instr in &mut program.body {
        instr.free_after.sort_unstable();
        instr.free_after.dedup();
    }
}

/// Bytes of live tensors per party at the worst moment of an inference, following the frees
/// recorded in the program (with no frees, every tensor ever made stays live).
pub fn peak_live_bytes(program: &Program) -> u64 {
    program.peak_live_bytes()
}

/// Bytes held by every slot at once: the footprint without a memory plan.
pub fn total_slot_bytes(program: &Program) -> u64 {
    (0..program.slots.len()).map(|s| slot_bytes(program, s)).sum()
}

/// The result of the scale-down counting analysis (paper III-D2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleDownCount {
    /// ScaleDown calls.
    pub calls: usize,
    /// Elements scaled down, the sum of rho(A) over calls `ScaleDown(A, s)`.
    pub elements: usize,
}

pub fn count_scale_downs(program: &Program) -> ScaleDownCount {
    let mut count = ScaleDownCount::default();
    for instr in &program.body {
        if let LOp::ScaleDown { .. } = instr.op {
            count.calls += 1;
            count.elements += num_elements(&program.slots[instr.out].shape);
        }
    }
    count
}
