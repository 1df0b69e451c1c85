//! The SIMD level the hot kernels run at, chosen once per process, and the dispatch to code
//! compiled for it.
//!
//! # Design
//! Plain `std::arch` runtime dispatch, no SIMD crate. Every kernel has one portable Rust
//! description (plain loops over bytes and words) that is the scalar reference; [`run`]
//! inlines it into a function compiled with the level's target features, so that LLVM
//! vectorises the same source for SSE2 (the x86-64 baseline), AVX2 or AVX-512 (and NEON,
//! which is baseline on aarch64: [`Level::Neon`] needs no target feature of its own). Only the kernels LLVM cannot vectorise well (PrivateCompare's
//! suffix sums and Z_p products, the u64 GEMM register tile, AES-CTR with VAES) have hand
//! written `std::arch` versions, one per level, next to the portable one and tested against
//! it bit for bit. `pulp` and `multiversion` were considered: `multiversion` gives what
//! [`run`] gives (the portable description compiled per level) with a dependency and a macro,
//! and `pulp`'s portable vector API has no byte permutes, AES rounds or the carry-less
//! 32x32-bit products these kernels are built from, so the hand versions would stay anyway.
//!
//! # Levels
//! [`Level::Scalar`] (no target features beyond the compilation target's, and none of the
//! hand-written kernels), on x86-64 [`Level::Avx2`] (AVX2, plus VAES or AES-NI for the key
//! stream where present) and [`Level::Avx512`] (F, BW, VL, DQ; plus VBMI and VAES where a
//! kernel uses them), on aarch64 [`Level::Neon`] (the hand-written aarch64 kernels:
//! PrivateCompare on both sides and the u64 GEMM tile in NEON, the key stream with the ARMv8
//! AES instructions where present). The level in use is the best the
//! CPU has, capped by the environment variable `CRYPTFLOW_SIMD=scalar|neon|avx2|avx512` (read
//! once; an unknown value or a level the CPU lacks is reported on stderr and ignored).

use std::sync::OnceLock;

/// A dispatch level, ordered: a higher level may use everything a lower one does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Scalar,
    /// aarch64 only (every aarch64 CPU has NEON).
    Neon,
    /// x86-64 only.
    Avx2,
    /// x86-64 only.
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Neon => "neon",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" | "portable" => Some(Level::Scalar),
            "neon" => Some(Level::Neon),
            "avx2" => Some(Level::Avx2),
            "avx512" | "avx-512" => Some(Level::Avx512),
            _ => None,
        }
    }

    /// Every level of this architecture up to this one (for [`detected`]: the levels a test
    /// can run on this CPU).
    pub fn up_to(self) -> Vec<Level> {
        let levels: &[Level] = if cfg!(target_arch = "x86_64") {
            &[Level::Scalar, Level::Avx2, Level::Avx512]
        } else if cfg!(target_arch = "aarch64") {
            &[Level::Scalar, Level::Neon]
        } else {
            &[Level::Scalar]
        };
        levels.iter().copied().filter(|&l| l <= self).collect()
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports (ignoring `CRYPTFLOW_SIMD`).
pub fn detected() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
                return Level::Avx512;
            }
            if has!("avx2") {
                return Level::Avx2;
            }
        }
        if cfg!(target_arch = "aarch64") {
            Level::Neon
        } else {
            Level::Scalar
        }
    })
}

/// The level the kernels run at: [`detected`], capped by `CRYPTFLOW_SIMD` (read once).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        match std::env::var("CRYPTFLOW_SIMD") {
            Err(std::env::VarError::NotPresent) => best,
            Err(std::env::VarError::NotUnicode(_)) => {
                eprintln!("warning: CRYPTFLOW_SIMD is not valid UTF-8; ignored (using {best})");
                best
            }
            Ok(v) if v.trim().is_empty() => best,
            Ok(v) => match Level::parse(&v) {
                Some(cap) if best.up_to().contains(&cap) => cap,
                Some(cap) => {
                    eprintln!("warning: CRYPTFLOW_SIMD={v}: this CPU lacks {cap}; using {best}");
                    best
                }
                None => {
                    eprintln!("warning: CRYPTFLOW_SIMD={v} is not one of scalar, neon, avx2, avx512; ignored (using {best})");
                    best
                }
            },
        }
    })
}

/// The CPU's model name (`/proc/cpuinfo` on Linux), for reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("CPU part"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("unknown ({})", std::env::consts::ARCH))
}

/// The CPU features the kernels look for that this CPU has (for reports), e.g.
/// `["avx2", "aes", "vaes", "avx512f", ...]`.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        macro_rules! push {
            ($($f:tt),*) => {$(if has!($f) { v.push($f); })*};
        }
        push!("avx2", "aes", "vaes", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vbmi");
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        v.push("neon");
        if has!("aes") {
            v.push("aes");
        }
    }
    v
}

/// Runs `f` compiled for `level` (inlined into a function with the level's target features):
/// the portable description of a kernel, vectorised by LLVM for that level. `level` must not
/// exceed [`detected`] (checked). [`Level::Neon`] and [`Level::Scalar`] run `f` as compiled
/// (NEON is the aarch64 baseline).
#[inline(always)]
pub fn run<R>(level: Level, f: impl FnOnce() -> R) -> R {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => {
            assert!(detected() >= Level::Avx512, "AVX-512 code on a CPU without it");
            // SAFETY: the CPU has the features (checked above).
            unsafe { x86::avx512(f) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => {
            assert!(detected() >= Level::Avx2, "AVX2 code on a CPU without it");
            // SAFETY: as above.
            unsafe { x86::avx2(f) }
        }
        _ => f(),
    }
}

/// [`run`] at [`level`].
#[inline(always)]
pub fn run_best<R>(f: impl FnOnce() -> R) -> R {
    run(level(), f)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub(super) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("AVX2"), Some(Level::Avx2));
        assert_eq!(Level::parse(" scalar "), Some(Level::Scalar));
        assert_eq!(Level::parse("avx512"), Some(Level::Avx512));
        assert_eq!(Level::parse("sse9"), None);
        assert!(Level::Scalar < Level::Avx2 && Level::Avx2 < Level::Avx512);
        assert!(level() <= detected());
        assert_eq!(Level::parse("NEON"), Some(Level::Neon));
        assert!(Level::Scalar < Level::Neon);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Level::Avx2.up_to(), vec![Level::Scalar, Level::Avx2]);
        #[cfg(target_arch = "aarch64")]
        {
            assert_eq!(detected(), Level::Neon);
            assert_eq!(Level::Avx512.up_to(), vec![Level::Scalar, Level::Neon]);
        }
        assert_eq!(run(Level::Scalar, || 3), 3);
        for l in detected().up_to() {
            assert_eq!(run(l, || (0..100u64).map(|x| x.wrapping_mul(x)).sum::<u64>()), 328350);
        }
    }
}
