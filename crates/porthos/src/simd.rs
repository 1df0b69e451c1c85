//! Runtime dispatch for the element-wise kernels: the level of [`cryptflow_tensor::simd`]
//! (the CPU's best, capped by `CRYPTFLOW_SIMD=scalar|neon|avx2|avx512`), shared with the tensor
//! kernels so that one variable sets both.
//!
//! The element-wise kernels are written as plain loops over bytes and 16-bit lanes (the
//! scalar reference); [`run`] inlines such a loop into a function compiled for the level's
//! target features, so that LLVM vectorises it with 32- or 64-byte registers (the default
//! x86-64 target only allows SSE2; NEON is the aarch64 baseline). The kernels LLVM does not
//! vectorise (PrivateCompare, AES-CTR, the register Z_p sampler) have hand-written versions per
//! level: on aarch64 PrivateCompare (both sides, NEON) and AES-CTR (ARMv8 AES).

pub(crate) use cryptflow_tensor::simd::{detected, level, run, Level};

/// Runs `f` compiled for the dispatch level ([`level`]).
#[inline(always)]
pub(crate) fn run_best<R>(f: impl FnOnce() -> R) -> R {
    run(level(), f)
}

/// Per-level speed of every kernel, in CPU time of the measuring thread (the machine is
/// shared: wall-clock figures move with other people's load, one thread's CPU time much less):
/// `cargo test --release -p cryptflow-porthos --lib -- --ignored --nocapture simd_speed`.
/// Prints one table row per kernel and level; asserts nothing about speed.
#[cfg(test)]
mod bench {
    use super::*;
    use crate::compare::{compare_chunk_at, helper_chunk, subtract_bits};
    use crate::ctr::{Cipher, Engine};
    use crate::prf::{PrfKey, ZpDraw};

    /// CPU nanoseconds of this thread so far (Linux `CLOCK_THREAD_CPUTIME_ID`; wall-clock
    /// elsewhere).
    fn thread_ns() -> f64 {
        #[cfg(target_os = "linux")]
        {
            #[repr(C)]
            struct Timespec {
                sec: i64,
                nsec: i64,
            }
            extern "C" {
                fn clock_gettime(clock: i32, t: *mut Timespec) -> i32;
            }
            let mut t = Timespec { sec: 0, nsec: 0 };
            // SAFETY: a valid clock id (CLOCK_THREAD_CPUTIME_ID = 3) and a valid out pointer
            // of the C layout (64-bit Linux targets: two 64-bit fields).
            if unsafe { clock_gettime(3, &mut t) } == 0 {
                return t.sec as f64 * 1e9 + t.nsec as f64;
            }
        }
        std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as f64
    }

    /// Best of several runs of `f` (which handles `items` items): ns per item.
    fn per_item(items: usize, mut f: impl FnMut()) -> f64 {
        f();
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = thread_ns();
            f();
            best = best.min(thread_ns() - t);
        }
        best / items as f64
    }

    #[test]
    #[ignore]
    fn simd_speed() {
        const N: usize = 128;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let zp = |next: &mut dyn FnMut() -> u64, nonzero: bool| -> Vec<u8> {
            (0..N * 64).map(|_| if nonzero { 1 + (next() % 66) as u8 } else { (next() % 67) as u8 }).collect()
        };
        let (xs, s, z) = (zp(&mut next, false), zp(&mut next, true), zp(&mut next, false));
        let r: Vec<u64> = (0..N).map(|_| next()).collect();
        let beta: Vec<u8> = (0..N).map(|_| (next() & 1) as u8).collect();
        let rot: Vec<u8> = (0..N).map(|_| next() as u8).collect();
        let mut out = vec![0u8; N * 64];
        let mut other = vec![0u8; N * 64];
        compare_chunk_at::<false>(Level::Scalar, 64, &xs, &r, &beta, &s, &z, &rot, &mut other);
        println!("CPU: {}; detected level {}; in use {}", cryptflow_tensor::simd::cpu_model(), detected(), level());
        println!("{:<44} {:>8} {:>12}", "kernel", "level", "ns per item");
        for lv in detected().up_to() {
            let t = per_item(N * 100, || {
                for _ in 0..100 {
                    compare_chunk_at::<true>(lv, 64, &xs, &r, &beta, &s, &z, &rot, &mut out)
                }
            });
            println!("{:<44} {:>8} {:>12.2}", "PrivateCompare, party (per value)", lv, t);
            for lanes in [crate::compare::NARROW, crate::compare::SHORT] {
                let r: Vec<u64> = r.iter().map(|&v| v & (u64::MAX >> (64 - lanes))).collect();
                let t = per_item(N * 100, || {
                    for _ in 0..100 {
                        compare_chunk_at::<true>(lv, lanes, &xs[..N * lanes], &r, &beta, &s[..N * lanes], &z[..N * lanes], &rot, &mut out[..N * lanes])
                    }
                });
                println!("{:<44} {:>8} {:>12.2}", format!("PrivateCompare {lanes} lanes, party (per value)"), lv, t);
            }
            let mut flags = vec![0u8; N];
            let t = per_item(N * 100, || {
                for _ in 0..100 {
                    std::hint::black_box(helper_chunk(lv, 64, &mut flags, &out, &other));
                }
            });
            println!("{:<44} {:>8} {:>12.2}", "PrivateCompare, helper (per value)", lv, t);
            let t = per_item(N * 100, || {
                for _ in 0..100 {
                    run(lv, || subtract_bits(r.iter().copied(), &z, &mut out, 64))
                }
            });
            println!("{:<44} {:>8} {:>12.2}", "bit decomposition - shares (per value)", lv, t);
        }
        let key = PrfKey([5u8; 16]);
        let mut buf = vec![0u8; 1 << 16];
        for engine in crate::ctr::tests::engines() {
            let c = Cipher::with_engine(&key.0, engine);
            let t = per_item(buf.len() * 16, || {
                for i in 0..16 {
                    c.keystream(i << 12, &mut buf)
                }
            });
            println!("{:<44} {:>8} {:>12.3}", format!("AES-CTR keystream, {engine:?} (per byte)"), "", t);
        }
        for engine in [Engine::Vaes512, Engine::Vaes256] {
            if !crate::ctr::tests::engines().contains(&engine) {
                continue;
            }
            let c = Cipher::with_engine(&key.0, engine);
            let mut rejected = [0u64; 64];
            let t = per_item(buf.len() * 16, || {
                for i in 0..16 {
                    for (k, part) in buf.chunks_mut(4096).enumerate() {
                        c.zp_groups(((i << 16) + (k << 12)) as u128 / 8, part, 66, 64, 1, &mut rejected);
                    }
                }
            });
            println!("{:<44} {:>8} {:>12.3}", format!("Z_p groups in registers, {engine:?} (per element)"), "", t);
        }
        // The Z_p sampler's map runs at the process's level: run this test under each
        // CRYPTFLOW_SIMD for every row.
        {
            let lv = level();
            let engine = Engine::at(lv);
            let draw = ZpDraw::with_engine(&key, engine, 0, 1 << 24, true);
            let t = per_item(buf.len() * 16, || run(lv, || {
                for i in 0..16 {
                    draw.fill(i << 16, &mut buf)
                }
            }));
            println!("{:<44} {:>8} {:>12.3}", format!("Z_p sampling, {engine:?} (per element)"), lv, t);
        }
    }
}
