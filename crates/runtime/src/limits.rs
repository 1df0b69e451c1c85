//! What a program may ask of the machine before anything is allocated for it.
//!
//! `program.json` is public and may come from anyone: its shapes decide how much a party
//! allocates. [`check_program`] refuses shapes (and convolution or pooling geometries) whose
//! element counts exceed [`MAX_TENSOR_ELEMENTS`], and slot indices out of range, with an error
//! naming the layer; [`check_memory`] refuses a run whose predicted memory exceeds the machine's
//! (`MemTotal` in `/proc/meminfo`) unless [`FORCE_MEMORY_ENV`] is set.

use std::sync::atomic::{AtomicU64, Ordering};

use cryptflow_ir::llil::Program;

/// The size checks live with the program format (`Program::validate` runs them too): one cap,
/// one place.
pub use cryptflow_ir::limits::{check_program, MAX_TENSOR_ELEMENTS};
/// Set to `1` to run a program whose predicted memory exceeds the machine's anyway.
pub const FORCE_MEMORY_ENV: &str = "CRYPTFLOW_FORCE_MEMORY";
/// What a party needs besides its live tensors: the protocols' buffer pool (at most 64 MiB),
/// streamed blocks, the weights being loaded.
pub const MEMORY_OVERHEAD_BYTES: u64 = 128 << 20;

/// The memory one party running `program` is predicted to need: its peak of live tensors, the
/// working memory of its largest backend call run in slabs of the process's budget
/// ([`crate::slab::working_set_bytes`]), [`MEMORY_OVERHEAD_BYTES`], and with kept weight masks
/// 16 bytes per element of a product's weight (what P0 and P1 keep).
pub fn predicted_bytes(program: &Program) -> u64 {
    MemoryPlan::of(program, crate::slab::default_budget()).total()
}

/// The parts of [`predicted_bytes`], for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The compiler's peak of live tensors (weights included, all held).
    pub live_bytes: u64,
    /// The largest slab-wise backend call's working memory.
    pub working_bytes: u64,
    /// Kept weight masks.
    pub mask_bytes: u64,
}

impl MemoryPlan {
    pub fn of(program: &Program, slab_budget: usize) -> MemoryPlan {
        MemoryPlan {
            live_bytes: program.peak_live_bytes(),
            working_bytes: crate::slab::working_set_bytes(program, slab_budget),
            mask_bytes: if program.keeps_weight_masks() { program.product_weight_elements().saturating_mul(16) } else { 0 },
        }
    }

    /// Everything, with [`MEMORY_OVERHEAD_BYTES`].
    pub fn total(&self) -> u64 {
        self.live_bytes.saturating_add(self.working_bytes).saturating_add(MEMORY_OVERHEAD_BYTES).saturating_add(self.mask_bytes)
    }
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
                "this party is predicted to need {:.1} GiB (its peak of live tensors, weights included, the working memory of its largest backend call, plus {} MiB){}, but the machine has {:.1} GiB: refused before allocating (set {FORCE_MEMORY_ENV}=1 to try anyway)",
                gib(bytes),
                MEMORY_OVERHEAD_BYTES >> 20,
                if others > 0 { format!(" besides the {:.1} GiB of the other parties in this process", gib(others)) } else { String::new() },
                gib(m)
            ))
        }
        _ => Ok(claim),
    }
}
