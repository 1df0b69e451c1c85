//! Runtime dispatch to AVX-512 code generation for the element-wise kernels.
//!
//! The kernels are written as plain loops over bytes and 16-bit lanes; [`with_avx512`] runs a
//! closure compiled with the AVX-512 (F, BW, VL, DQ) target features when the CPU has them, so
//! that LLVM vectorises it with 64-byte registers (the default target only allows SSE2).

/// Whether the CPU runs the AVX-512 versions.
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f`, inlined into a function compiled for AVX-512 when the CPU has it.
#[inline(always)]
pub(crate) fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx512(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}
