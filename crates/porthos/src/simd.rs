//! Runtime dispatch for the element-wise kernels: the level of [`cryptflow_tensor::simd`]
//! (the CPU's best, capped by `CRYPTFLOW_SIMD=scalar|avx2|avx512`), shared with the tensor
//! kernels so that one variable sets both.
//!
//! The element-wise kernels are written as plain loops over bytes and 16-bit lanes (the
//! scalar reference); [`run`] inlines such a loop into a function compiled for the level's
//! target features, so that LLVM vectorises it with 32- or 64-byte registers (the default
//! x86-64 target only allows SSE2). The kernels LLVM does not vectorise (PrivateCompare,
//! AES-CTR, the register Z_p sampler) have hand-written versions per level.

pub(crate) use cryptflow_tensor::simd::{detected, level, run, Level};

/// Runs `f` compiled for the dispatch level ([`level`]).
#[inline(always)]
pub(crate) fn run_best<R>(f: impl FnOnce() -> R) -> R {
    run(level(), f)
}
