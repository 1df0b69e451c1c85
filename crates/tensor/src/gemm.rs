//! General matrix product `C = A * B` on strided operands, the engine under `matmul`, `conv`
//! and `conv_transpose`.
//!
//! - `u64` (the ring Z_2^64): a packed, cache-blocked GEMM in the Goto/BLIS style.
//!   - Register tile 8 x 16 on AVX-512F/DQ (`vpmullq`, written with `std::arch` intrinsics:
//!     LLVM vectorised the plain-array version across rows, with gathers), in Winograd's
//!     inner-product form, which halves the 64-bit multiplies for a few extra additions and
//!     per-row / per-column correction terms (exact in the commutative ring Z_2^64). On AVX2
//!     (no 64-bit vector multiply) a 2 x 8 tile in the same Winograd form, each 64-bit product
//!     split into a 32 x 32 -> 64-bit `vpmuludq` and a 32-bit `vpmulld` of the cross terms,
//!     summed in two accumulators (see [`micro_avx2_winograd_split`]); on aarch64 (`neon`,
//!     little-endian) a 6 x 4 NEON tile in the classic form with the same split, multiplying
//!     by A's elements in place (`umlal` and `mla` by lane; see `micro_neon_split`);
//!     otherwise (`scalar`) a portable 4 x 4 tile in the same Winograd form. The plain 4 x 4 tile of wrapping arithmetic stays as a reference
//!     for tests. The level is
//!     [`crate::simd::level`] (CPU, capped by `CRYPTFLOW_SIMD`).
//!   - A is packed once in `KC`-deep blocks; B is packed per part in L2-sized column blocks.
//!     The orientation (`C` or `C^T = B^T A^T`) is the one the tiles pad least.
//!   - C is split into parts (column ranges, or row ranges when there are few columns) that
//!     rayon computes independently: one fork-join per product.
//!   - Products with under 4 rows or columns run as matrix-vector loops.
//! - `f32`: `matrixmultiply::sgemm`, with rows (or columns) split over rayon threads.
//! - any other [`Element`]: a straightforward loop.
//!
//! The element type is dispatched with `TypeId`, casting slices only when the types are equal.

use std::any::TypeId;

use rayon::prelude::*;

use crate::par::for_each_chunk;
use crate::simd::{self, Level};
use crate::Element;

/// A read-only strided matrix view: element `(i, j)` is `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    pub fn new(data: &'a [T], offset: usize, rs: usize, cs: usize) -> Self {
        MatRef { data, offset, rs, cs }
    }

    /// A row-major `[rows, cols]` matrix starting at `offset`.
    pub fn row_major(data: &'a [T], offset: usize, cols: usize) -> Self {
        MatRef { data, offset, rs: cols, cs: 1 }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[self.offset + i * self.rs + j * self.cs]
    }

    /// Whether every element of an `m x n` view lies inside `data`.
    fn fits(&self, m: usize, n: usize) -> bool {
        if m == 0 || n == 0 {
            return true;
        }
        self.offset + (m - 1) * self.rs + (n - 1) * self.cs < self.data.len()
    }

    fn cast<U: 'static>(self) -> MatRef<'a, U>
    where
        T: 'static,
    {
        MatRef { data: cast_slice(self.data).expect("cast of equal types"), offset: self.offset, rs: self.rs, cs: self.cs }
    }
}

/// `&[T]` as `&[U]` when `T` and `U` are the same type.
pub(crate) fn cast_slice<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: T and U are the same type, so layout, alignment and validity agree.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr() as *const U, s.len()) })
    } else {
        None
    }
}

/// `&mut [T]` as `&mut [U]` when `T` and `U` are the same type.
pub(crate) fn cast_slice_mut<T: 'static, U: 'static>(s: &mut [T]) -> Option<&mut [U]> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        // SAFETY: T and U are the same type; the borrow is carried over.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut U, s.len()) })
    } else {
        None
    }
}

/// `C[i * ldc + j] = sum_p A(i, p) * B(p, j)` for `i < m`, `j < n` (overwriting; the other
/// elements of `c` are left alone).
///
/// Panics if a view does not fit its data: callers size their buffers from validated shapes.
pub(crate) fn gemm<T: Element>(m: usize, n: usize, k: usize, a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], ldc: usize) {
    assert!(a.fits(m, k) && b.fits(k, n), "gemm: operand views out of bounds");
    assert!(m == 0 || n == 0 || (m - 1) * ldc + n <= c.len(), "gemm: output view out of bounds");
    assert!(m <= 1 || ldc >= n, "gemm: rows of C overlap");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(T::ZERO);
        }
        return;
    }
    if let Some(c64) = cast_slice_mut::<T, u64>(c) {
        gemm_u64(m, n, k, a.cast(), b.cast(), c64, ldc);
    } else if let Some(c32) = cast_slice_mut::<T, f32>(c) {
        gemm_f32(m, n, k, a.cast(), b.cast(), c32, ldc);
    } else {
        gemm_naive(m, n, k, a, b, c, ldc);
    }
}

/// The reference-quality fallback for element types without a fast kernel.
fn gemm_naive<T: Element>(m: usize, n: usize, k: usize, a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], ldc: usize) {
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        row.fill(T::ZERO);
        for p in 0..k {
            let aip = a.at(i, p);
            for (j, cij) in row.iter_mut().enumerate() {
                *cij = cij.add(aip.mul(b.at(p, j)));
            }
        }
    }
}

/// A raw pointer to C shared by the jobs of one product, each writing its own disjoint block.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: the pointer is only used to write disjoint blocks of C from different threads while
// the exclusive borrow of C is held by the caller of the parallel section.
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}

// ---------------------------------------------------------------------------------------------
// f32
// ---------------------------------------------------------------------------------------------

fn gemm_f32(m: usize, n: usize, k: usize, a: MatRef<'_, f32>, b: MatRef<'_, f32>, c: &mut [f32], ldc: usize) {
    let threads = rayon::current_num_threads().max(1);
    let work = m * n * k;
    let parts = if work < 1 << 18 { 1 } else { threads };
    let cptr = SyncPtr(c.as_mut_ptr());
    let run = |i0: usize, i1: usize, j0: usize, j1: usize| {
        let cp = cptr;
        // SAFETY: the views were checked to fit their slices; (i0..i1, j0..j1) blocks of C are
        // disjoint between calls and lie inside `c` (checked by `gemm`).
        unsafe {
            matrixmultiply::sgemm(
                i1 - i0,
                k,
                j1 - j0,
                1.0,
                a.data.as_ptr().add(a.offset + i0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr().add(b.offset + j0 * b.cs),
                b.rs as isize,
                b.cs as isize,
                0.0,
                cp.0.add(i0 * ldc + j0),
                ldc as isize,
                1,
            );
        }
    };
    if parts == 1 {
        run(0, m, 0, n);
    } else if m >= n {
        let chunk = m.div_ceil(parts);
        (0..parts).into_par_iter().for_each(|t| {
            let (i0, i1) = (t * chunk, ((t + 1) * chunk).min(m));
            if i0 < i1 {
                run(i0, i1, 0, n);
            }
        });
    } else {
        let chunk = n.div_ceil(parts);
        (0..parts).into_par_iter().for_each(|t| {
            let (j0, j1) = (t * chunk, ((t + 1) * chunk).min(n));
            if j0 < j1 {
                run(0, m, j0, j1);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// u64
// ---------------------------------------------------------------------------------------------

/// Depth of one packed block (the `k` extent kept hot in cache).
const KC: usize = 256;
/// Rows of C per job (the packed A block a job reuses from L2).
const MC: usize = 128;
/// Bytes of one packed column block of B (kept in L2 while all of A streams past it).
const NC_BYTES: usize = 1 << 20;

/// One job: a block of C computed from packed panels.
struct Job<'a> {
    kc: usize,
    /// Packed A panels of the job's rows: `ceil(m / MR)` panels of `kc * MR`.
    a: &'a [u64],
    /// Packed B panels of the job's columns: `ceil(n / NR)` panels of `kc * NR`.
    b: &'a [u64],
    /// C at the job's first row and column; element (i, j) of the block at `i * rs + j * cs`.
    c: *mut u64,
    c_rs: usize,
    c_cs: usize,
    m: usize,
    n: usize,
    /// Add into C instead of overwriting it.
    accumulate: bool,
    /// Winograd form (see [`micro_avx512_winograd`]): the tile computes
    /// `sum (a_2q + b_2q+1)(a_2q+1 + b_2q)`, from which the job's row terms `rows[i]` and column
    /// terms `cols[j]` are subtracted. Empty in the classic form.
    rows: &'a [u64],
    cols: &'a [u64],
}

/// Runs one job: every (NR panel, MR panel) tile of its block of C, computing each tile with
/// `micro`.
///
/// # Safety
/// `job.c` must point at an `job.m x job.n` block of strides (`job.c_rs`, `job.c_cs`) that
/// nobody else accesses during the call.
#[inline(always)]
unsafe fn run_job<const MR: usize, const NR: usize>(
    job: &Job<'_>,
    micro: impl Fn(usize, &[u64], &[u64], &mut [[u64; NR]; MR]),
) {
    let kc = job.kc;
    let n_panels = job.n.div_ceil(NR);
    let m_panels = job.m.div_ceil(MR);
    for jp in 0..n_panels {
        let bp = &job.b[jp * kc * NR..(jp + 1) * kc * NR];
        let nr = (job.n - jp * NR).min(NR);
        for ip in 0..m_panels {
            let ap = &job.a[ip * kc * MR..(ip + 1) * kc * MR];
            let mr = (job.m - ip * MR).min(MR);
            let mut acc = [[0u64; NR]; MR];
            micro(kc, ap, bp, &mut acc);
            if !job.rows.is_empty() {
                let rows = &job.rows[ip * MR..(ip + 1) * MR];
                let cols = &job.cols[jp * NR..(jp + 1) * NR];
                for (acc_row, &r) in acc.iter_mut().zip(rows) {
                    for (v, &c) in acc_row.iter_mut().zip(cols) {
                        *v = v.wrapping_sub(r).wrapping_sub(c);
                    }
                }
            }
            for (i, acc_row) in acc.iter().enumerate().take(mr) {
                let row_start = (ip * MR + i) * job.c_rs + jp * NR * job.c_cs;
                if job.c_cs == 1 {
                    // SAFETY: row ip*MR+i < job.m and columns jp*NR..jp*NR+nr < job.n lie in
                    // the job's block (caller's contract).
                    let row = unsafe { std::slice::from_raw_parts_mut(job.c.add(row_start), nr) };
                    if job.accumulate {
                        for (c, &v) in row.iter_mut().zip(acc_row) {
                            *c = c.wrapping_add(v);
                        }
                    } else {
                        row.copy_from_slice(&acc_row[..nr]);
                    }
                } else {
                    for (j, &v) in acc_row.iter().enumerate().take(nr) {
                        // SAFETY: as above, element by element.
                        unsafe {
                            let c = job.c.add(row_start + j * job.c_cs);
                            *c = if job.accumulate { (*c).wrapping_add(v) } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// The AVX-512 register tile: 8 rows x 16 columns (two zmm vectors per row, 16 accumulators),
/// one `vpmullq` + `vpaddq` per vector and step.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn micro_avx512(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; 16]; 8]) {
    use std::arch::x86_64::*;
    let a = &a[..kc * 8];
    let b = &b[..kc * 16];
    let mut acc = [[_mm512_setzero_si512(); 2]; 8];
    for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(16)) {
        // SAFETY: bp has 16 elements: two unaligned 8-lane loads.
        let (b0, b1) = unsafe { (_mm512_loadu_si512(bp.as_ptr() as *const _), _mm512_loadu_si512(bp.as_ptr().add(8) as *const _)) };
        for i in 0..8 {
            let ai = _mm512_set1_epi64(ap[i] as i64);
            acc[i][0] = _mm512_add_epi64(acc[i][0], _mm512_mullo_epi64(ai, b0));
            acc[i][1] = _mm512_add_epi64(acc[i][1], _mm512_mullo_epi64(ai, b1));
        }
    }
    for i in 0..8 {
        // SAFETY: each output row has 16 elements.
        unsafe {
            _mm512_storeu_si512(out[i].as_mut_ptr() as *mut _, acc[i][0]);
            _mm512_storeu_si512(out[i].as_mut_ptr().add(8) as *mut _, acc[i][1]);
        }
    }
}

/// The AVX-512 register tile in Winograd's inner-product form (1968), which halves the
/// multiplications (the bottleneck: `vpmullq` is three uops) at the cost of additions:
/// `sum_p a_p b_p = sum_q (a_2q + b_2q+1)(a_2q+1 + b_2q) - sum_q a_2q a_2q+1 - sum_q b_2q b_2q+1`,
/// exact in the commutative ring Z_2^64. This computes the first sum over `kc / 2` pairs of
/// steps (`kc` even); the caller subtracts the row and column terms.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn micro_avx512_winograd(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; 16]; 8]) {
    use std::arch::x86_64::*;
    debug_assert!(kc & 1 == 0);
    let a = &a[..kc * 8];
    let b = &b[..kc * 16];
    let mut acc = [[_mm512_setzero_si512(); 2]; 8];
    for (ap, bp) in a.chunks_exact(16).zip(b.chunks_exact(32)) {
        // SAFETY: bp has 32 elements: B rows 2q (0..16) and 2q+1 (16..32), 8 lanes per load.
        let (b00, b01, b10, b11) = unsafe {
            let p = bp.as_ptr();
            (
                _mm512_loadu_si512(p as *const _),
                _mm512_loadu_si512(p.add(8) as *const _),
                _mm512_loadu_si512(p.add(16) as *const _),
                _mm512_loadu_si512(p.add(24) as *const _),
            )
        };
        for i in 0..8 {
            let x = _mm512_set1_epi64(ap[i] as i64); // a_2q
            let y = _mm512_set1_epi64(ap[8 + i] as i64); // a_2q+1
            let p0 = _mm512_mullo_epi64(_mm512_add_epi64(x, b10), _mm512_add_epi64(y, b00));
            let p1 = _mm512_mullo_epi64(_mm512_add_epi64(x, b11), _mm512_add_epi64(y, b01));
            acc[i][0] = _mm512_add_epi64(acc[i][0], p0);
            acc[i][1] = _mm512_add_epi64(acc[i][1], p1);
        }
    }
    for i in 0..8 {
        // SAFETY: each output row has 16 elements.
        unsafe {
            _mm512_storeu_si512(out[i].as_mut_ptr() as *mut _, acc[i][0]);
            _mm512_storeu_si512(out[i].as_mut_ptr().add(8) as *mut _, acc[i][1]);
        }
    }
}

/// Winograd's row (or column) terms of one packed block: `terms[r] = sum_q x_2q,r x_2q+1,r`
/// for every panel of `R` rows and `kc` (even) steps.
fn pair_terms<const R: usize>(level: Level, packed: &[u64], kc: usize, terms: &mut [u64], parallel: bool) {
    for_each_chunk(terms, R, if parallel { packed.len() } else { 0 }, |i, t| {
        let panel = &packed[i * kc * R..(i + 1) * kc * R];
        simd::run(level, || pair_terms_panel::<R>(panel, t));
    });
}

#[inline(always)]
fn pair_terms_panel<const R: usize>(panel: &[u64], t: &mut [u64]) {
    let mut acc = [0u64; R];
    for pair in panel.chunks_exact(2 * R) {
        let (even, odd) = pair.split_at(R);
        for ((a, &e), &o) in acc.iter_mut().zip(even).zip(odd) {
            *a = a.wrapping_add(e.wrapping_mul(o));
        }
    }
    t.copy_from_slice(&acc);
}

/// The portable register tile: `acc += a_panel * b_panel` over `kc` steps.
#[inline(always)]
fn micro_portable<const MR: usize, const NR: usize>(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR]) {
    let a = &a[..kc * MR];
    let b = &b[..kc * NR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let bp: &[u64; NR] = bp.try_into().unwrap();
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (c, &bj) in row.iter_mut().zip(bp) {
                *c = c.wrapping_add(ai.wrapping_mul(bj));
            }
        }
    }
}

/// The portable register tile in Winograd's form (see [`micro_avx512_winograd`]): over pairs of
/// steps, `acc += (a_2q + b_2q+1)(a_2q+1 + b_2q)`, one multiply per two products.
#[inline(always)]
fn micro_portable_winograd<const MR: usize, const NR: usize>(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR]) {
    debug_assert!(kc & 1 == 0);
    let a = &a[..kc * MR];
    let b = &b[..kc * NR];
    // A local tile (LLVM kept `*acc` in memory, storing it at every step).
    let mut t = *acc;
    for (ap, bp) in a.chunks_exact(2 * MR).zip(b.chunks_exact(2 * NR)) {
        let (a0, a1) = ap.split_at(MR);
        let (b0, b1) = bp.split_at(NR);
        let (b0, b1): ([u64; NR], [u64; NR]) = (b0.try_into().unwrap(), b1.try_into().unwrap());
        for ((row, &x), &y) in t.iter_mut().zip(a0).zip(a1) {
            for ((c, &u), &w) in row.iter_mut().zip(&b1).zip(&b0) {
                *c = c.wrapping_add(x.wrapping_add(u).wrapping_mul(y.wrapping_add(w)));
            }
        }
    }
    *acc = t;
}

unsafe fn run_job_generic_winograd(job: &Job<'_>) {
    // SAFETY: the caller's contract on `job`, forwarded.
    unsafe { run_job::<4, 4>(job, micro_portable_winograd::<4, 4>) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn run_job_avx512(job: &Job<'_>) {
    // SAFETY: the caller checked AVX-512F/DQ, and forwards its contract on `job`.
    unsafe { run_job::<8, 16>(job, |kc, a, b, acc| micro_avx512(kc, a, b, acc)) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn run_job_avx512_winograd(job: &Job<'_>) {
    // SAFETY: the caller checked AVX-512F/DQ, and forwards its contract on `job`.
    unsafe { run_job::<8, 16>(job, |kc, a, b, acc| micro_avx512_winograd(kc, a, b, acc)) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_job_avx2(job: &Job<'_>) {
    unsafe { run_job::<4, 8>(job, micro_portable::<4, 8>) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_job_avx2_winograd(job: &Job<'_>) {
    // SAFETY: the caller checked AVX2, and forwards its contract on `job`.
    unsafe { run_job::<4, 8>(job, |kc, a, b, acc| micro_avx2_winograd(kc, a, b, acc)) }
}

/// The AVX2 register tile in Winograd's form (see [`micro_avx512_winograd`]): 4 rows x 8
/// columns, two ymm vectors of four u64 per row. AVX2 has no 64-bit multiply: each product
/// `x y mod 2^64` is `xl yl + ((xh yl + xl yh) << 32)` from three `vpmuludq` (32 x 32 -> 64
/// bits), so halving the products with Winograd's form matters more here than on AVX-512.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_avx2_winograd(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; 8]; 4]) {
    use std::arch::x86_64::*;
    #[inline(always)]
    fn mul64(x: __m256i, y: __m256i) -> __m256i {
        // SAFETY (of the intrinsics): only called from the AVX2 function below.
        unsafe {
            let lo = _mm256_mul_epu32(x, y);
            let cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64::<32>(x), y), _mm256_mul_epu32(x, _mm256_srli_epi64::<32>(y)));
            _mm256_add_epi64(lo, _mm256_slli_epi64::<32>(cross))
        }
    }
    debug_assert!(kc & 1 == 0);
    let a = &a[..kc * 4];
    let b = &b[..kc * 8];
    let mut acc = [[_mm256_setzero_si256(); 2]; 4];
    for (ap, bp) in a.chunks_exact(8).zip(b.chunks_exact(16)) {
        // SAFETY: bp has 16 elements: B rows 2q (0..8) and 2q+1 (8..16), 4 lanes per load.
        let (b00, b01, b10, b11) = unsafe {
            let p = bp.as_ptr();
            (
                _mm256_loadu_si256(p as *const _),
                _mm256_loadu_si256(p.add(4) as *const _),
                _mm256_loadu_si256(p.add(8) as *const _),
                _mm256_loadu_si256(p.add(12) as *const _),
            )
        };
        for i in 0..4 {
            let x = _mm256_set1_epi64x(ap[i] as i64); // a_2q
            let y = _mm256_set1_epi64x(ap[4 + i] as i64); // a_2q+1
            let p0 = mul64(_mm256_add_epi64(x, b10), _mm256_add_epi64(y, b00));
            let p1 = mul64(_mm256_add_epi64(x, b11), _mm256_add_epi64(y, b01));
            acc[i][0] = _mm256_add_epi64(acc[i][0], p0);
            acc[i][1] = _mm256_add_epi64(acc[i][1], p1);
        }
    }
    for i in 0..4 {
        // SAFETY: each output row has 8 elements.
        unsafe {
            _mm256_storeu_si256(out[i].as_mut_ptr() as *mut _, acc[i][0]);
            _mm256_storeu_si256(out[i].as_mut_ptr().add(4) as *mut _, acc[i][1]);
        }
    }
}

/// Rows and columns of the AVX2 Winograd split tile.
#[cfg(target_arch = "x86_64")]
const AVX2_WMR: usize = 2;
#[cfg(target_arch = "x86_64")]
const AVX2_WNR: usize = 8;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_job_avx2_winograd_split(job: &Job<'_>) {
    // SAFETY: the caller checked AVX2, and forwards its contract on `job`.
    unsafe {
        run_job::<AVX2_WMR, AVX2_WNR>(job, |kc, a, b, acc| {
            micro_avx2_winograd_split::<AVX2_WMR, { AVX2_WNR / 4 }, AVX2_WNR>(kc, a, b, acc)
        })
    }
}

/// The AVX2 register tile (the default at [`Level::Avx2`]): Winograd's form (see
/// [`micro_avx512_winograd`]) with each product split into 32-bit limbs that are summed apart.
/// AVX2 has no 64-bit multiply, but `u w mod 2^64 = ul wl + ((ul wh + uh wl) mod 2^32) 2^32`,
/// and the two parts add up separately over the steps: the full products `ul wl` with one
/// `vpmuludq` into a low accumulator, the cross terms with one `vpmulld` (eight 32-bit
/// products) of `u = (ul, uh)` and `w` with its halves swapped, `(wh, wl)` (one `vpshufd`),
/// into a cross accumulator of 32-bit lanes whose two halves are added (and shifted) once at
/// the end. Per pair of steps and four outputs: two 64-bit additions (`u = a_2q + b_2q+1`,
/// `w = a_2q+1 + b_2q`), one shuffle, two multiplies, two accumulations: 7 µops for 8
/// products, against 11 for [`micro_avx2_winograd`]'s three-`vpmuludq` product with its shifts
/// in the loop. (Tried and slower on the Zen 5 this was written on: the same split without
/// Winograd, `b`'s swapped halves packed next to `b`, 4 µops per 4 products, 6 x 4 tile: about
/// 23 GOPS against 26-30 here.) Two accumulators per output vector: `MR x NR` = 2 x 8 keeps 8
/// accumulators, four B vectors, two broadcasts and three temporaries in the 16 ymm registers
/// (measured best of 1 x 16, 2 x 8, 2 x 12, 3 x 4, 3 x 8, 4 x 4, 5 x 4, 6 x 4).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_avx2_winograd_split<const MR: usize, const NV: usize, const NR: usize>(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
    use std::arch::x86_64::*;
    debug_assert!(NR == 4 * NV && kc & 1 == 0);
    let a = &a[..kc * MR];
    let b = &b[..kc * NR];
    let mut lo = [[_mm256_setzero_si256(); NV]; MR];
    let mut cross = [[_mm256_setzero_si256(); NV]; MR];
    for (ap, bp) in a.chunks_exact(2 * MR).zip(b.chunks_exact(2 * NR)) {
        // SAFETY: bp has 2 NR elements: B rows 2q and 2q+1 of the panel.
        let (b0, b1): ([__m256i; NV], [__m256i; NV]) = unsafe {
            (
                std::array::from_fn(|v| _mm256_loadu_si256(bp.as_ptr().add(4 * v) as *const _)),
                std::array::from_fn(|v| _mm256_loadu_si256(bp.as_ptr().add(NR + 4 * v) as *const _)),
            )
        };
        for i in 0..MR {
            let x = _mm256_set1_epi64x(ap[i] as i64); // a_2q
            let y = _mm256_set1_epi64x(ap[MR + i] as i64); // a_2q+1
            for v in 0..NV {
                let u = _mm256_add_epi64(x, b1[v]);
                let w = _mm256_add_epi64(y, b0[v]);
                lo[i][v] = _mm256_add_epi64(lo[i][v], _mm256_mul_epu32(u, w));
                cross[i][v] = _mm256_add_epi32(cross[i][v], _mm256_mullo_epi32(u, _mm256_shuffle_epi32::<0xB1>(w)));
            }
        }
    }
    let hi = _mm256_set1_epi64x(0xFFFF_FFFF_0000_0000u64 as i64);
    for i in 0..MR {
        for v in 0..NV {
            let c = cross[i][v];
            let r = _mm256_add_epi64(lo[i][v], _mm256_add_epi64(_mm256_slli_epi64::<32>(c), _mm256_and_si256(c, hi)));
            // SAFETY: each output row has NR = 4 NV elements.
            unsafe { _mm256_storeu_si256(out[i].as_mut_ptr().add(4 * v) as *mut _, r) };
        }
    }
}

/// Rows and columns of the NEON Winograd split tile.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const NEON_WMR: usize = 3;
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const NEON_WNR: usize = 4;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
unsafe fn run_job_neon_winograd_split(job: &Job<'_>) {
    // SAFETY: the caller's contract on `job`, forwarded (NEON is the aarch64 baseline).
    unsafe { run_job::<NEON_WMR, NEON_WNR>(job, micro_neon_winograd_split::<NEON_WMR, { NEON_WNR / 4 }, NEON_WNR>) }
}

/// A NEON register tile in Winograd's form (see [`micro_avx512_winograd`]) with each product
/// split into 32-bit limbs summed apart, as in [`micro_avx2_winograd_split`] (NEON has no
/// 64-bit multiply either); kept for tests and comparison: [`micro_neon_split`], the default,
/// takes fewer instructions per product (see there). For four output lanes
/// (two registers of two u64) and a pair of steps: `u = a_2q + b_2q+1` and `w = a_2q+1 + b_2q`
/// (four 64-bit additions), their low and high 32-bit halves gathered four lanes to a register
/// (`uzp1`/`uzp2`, four), the full products `ul wl` accumulated into two registers of u64
/// (`umlal`, `umlal2`) and the cross terms `ul wh + uh wl` into one register of four u32 lanes
/// (two `mla`), shifted into the high halves and added once per tile: 12 instructions, 4 of
/// them multiplies, per 8 products. `MR x NR` = 3 x 4 keeps 9 accumulators,
/// four B registers, the broadcasts and the temporaries of a step in the 32 vector registers
/// (at 4 x 4 LLVM hoisted every broadcast and addition of the step and spilled three
/// accumulators per step).
///
/// Little-endian only: the limbs are taken by reinterpreting u64 lanes as u32 pairs.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
fn micro_neon_winograd_split<const MR: usize, const NG: usize, const NR: usize>(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
    use std::arch::aarch64::*;
    assert!(NR == 4 * NG && kc & 1 == 0);
    let a = &a[..kc * MR];
    let b = &b[..kc * NR];
    // SAFETY: NEON is the aarch64 baseline; the loads read B rows 2q and 2q+1 of the panel
    // (`bp` has 2 NR elements; two per load, at `4 g + 2 h < NR` and NR past it), the stores
    // an output row's NR = 4 NG elements, two at `4 g` and two at `4 g + 2`.
    unsafe {
        let mut lo = [[[vdupq_n_u64(0); 2]; NG]; MR];
        let mut cross = [[vdupq_n_u32(0); NG]; MR];
        for (ap, bp) in a.chunks_exact(2 * MR).zip(b.chunks_exact(2 * NR)) {
            let b0: [[uint64x2_t; 2]; NG] = std::array::from_fn(|g| std::array::from_fn(|h| vld1q_u64(bp.as_ptr().add(4 * g + 2 * h))));
            let b1: [[uint64x2_t; 2]; NG] = std::array::from_fn(|g| std::array::from_fn(|h| vld1q_u64(bp.as_ptr().add(NR + 4 * g + 2 * h))));
            for i in 0..MR {
                let x = vdupq_n_u64(ap[i]); // a_2q
                let y = vdupq_n_u64(ap[MR + i]); // a_2q+1
                for g in 0..NG {
                    let u: [uint32x4_t; 2] = std::array::from_fn(|h| vreinterpretq_u32_u64(vaddq_u64(x, b1[g][h])));
                    let w: [uint32x4_t; 2] = std::array::from_fn(|h| vreinterpretq_u32_u64(vaddq_u64(y, b0[g][h])));
                    let (ul, uh) = (vuzp1q_u32(u[0], u[1]), vuzp2q_u32(u[0], u[1]));
                    let (wl, wh) = (vuzp1q_u32(w[0], w[1]), vuzp2q_u32(w[0], w[1]));
                    lo[i][g][0] = vmlal_u32(lo[i][g][0], vget_low_u32(ul), vget_low_u32(wl));
                    lo[i][g][1] = vmlal_high_u32(lo[i][g][1], ul, wl);
                    cross[i][g] = vmlaq_u32(vmlaq_u32(cross[i][g], ul, wh), uh, wl);
                }
            }
        }
        for i in 0..MR {
            for g in 0..NG {
                let c = cross[i][g];
                let r0 = vaddq_u64(lo[i][g][0], vshll_n_u32::<32>(vget_low_u32(c)));
                let r1 = vaddq_u64(lo[i][g][1], vshll_high_n_u32::<32>(c));
                vst1q_u64(out[i].as_mut_ptr().add(4 * g), r0);
                vst1q_u64(out[i].as_mut_ptr().add(4 * g + 2), r1);
            }
        }
    }
}

/// Rows and columns of the NEON classic split tile.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const NEON_MR: usize = 6;
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const NEON_NR: usize = 4;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
unsafe fn run_job_neon_split(job: &Job<'_>) {
    // SAFETY: the caller's contract on `job`, forwarded (NEON is the aarch64 baseline).
    unsafe { run_job::<NEON_MR, NEON_NR>(job, micro_neon_split::<NEON_MR, { NEON_NR / 4 }, NEON_NR>) }
}

/// The NEON register tile (the default at [`Level::Neon`]): the classic form, each product
/// split into 32-bit limbs:
/// `a b mod 2^64 = al bl + ((al bh + ah bl) mod 2^32) 2^32`, the full products into u64
/// accumulators and the cross terms into u32 lanes, combined once per tile. A's elements are
/// not broadcast: a step's MR elements are loaded as u32 lanes and multiplied by element
/// (`umlal`/`umlal2`/`mla` with a lane index), and B's four columns are split into low and
/// high halves once per step (two `uzp`), so that a step of MR rows and four columns takes
/// 4 MR multiplies and two permutes for 4 MR products: fewer instructions per product than
/// [`micro_neon_winograd_split`] (which needs the sums `a + b` in full 64-bit lanes before
/// splitting them: 12 instructions per 8 products), twice its multiplies. The portable
/// Winograd tile takes 3 scalar instructions, one a `madd`, per 2 products. Which is fastest
/// depends on the core's vector and scalar multiply throughput, and is not measured (no ARM
/// hardware here). llvm-mca 19's scheduling models of the three inner loops (a model, not a
/// measurement) put this tile ahead of the portable one on Neoverse N1 (the Cortex-A76
/// design), Neoverse V1, Cortex-A510, Apple M1 and AmpereOne, about even on Neoverse V2, and
/// behind it on Neoverse N2 and Cortex-X2 (one vector pipe multiplies there, two scalar
/// ones), Cortex-A72, Ampere1B, A64FX and TSV110; the Winograd split tile behind this one on
/// most of them. `MR x NR` = 6 x 4: 18 accumulators, three A and four B registers; the loop
/// is 24 multiplies, two `uzp` and three pair loads per step.
///
/// Little-endian only: the limbs are taken by reinterpreting u64 lanes as u32 pairs.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
fn micro_neon_split<const MR: usize, const NG: usize, const NR: usize>(kc: usize, a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
    use std::arch::aarch64::*;
    /// One row: `lo += al bl` (four lanes in two registers), `cross += al bh + ah bl`, with
    /// `al`, `ah` lanes `L`, `H` of `a`.
    #[inline(always)]
    fn row<const L: i32, const H: i32>(lo: &mut [uint64x2_t; 2], cross: &mut uint32x4_t, bl: uint32x4_t, bh: uint32x4_t, a: uint32x4_t) {
        // SAFETY: register operations only (NEON is the aarch64 baseline).
        unsafe {
            lo[0] = vmlal_laneq_u32::<L>(lo[0], vget_low_u32(bl), a);
            lo[1] = vmlal_high_laneq_u32::<L>(lo[1], bl, a);
            *cross = vmlaq_laneq_u32::<H>(vmlaq_laneq_u32::<L>(*cross, bh, a), bl, a);
        }
    }
    assert!(NR == 4 * NG && MR & 1 == 0);
    let a = &a[..kc * MR];
    let b = &b[..kc * NR];
    // SAFETY: NEON is the aarch64 baseline; the loads read a step's MR elements of A (`ap`,
    // two per load at `2 r < MR`) and NR of B (`bp`, two per load at `4 g + 2 h < NR`), the
    // stores an output row's NR = 4 NG elements, two at `4 g` and two at `4 g + 2`.
    unsafe {
        let mut lo = [[[vdupq_n_u64(0); 2]; NG]; MR];
        let mut cross = [[vdupq_n_u32(0); NG]; MR];
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for g in 0..NG {
                let b0 = vreinterpretq_u32_u64(vld1q_u64(bp.as_ptr().add(4 * g)));
                let b1 = vreinterpretq_u32_u64(vld1q_u64(bp.as_ptr().add(4 * g + 2)));
                let (bl, bh) = (vuzp1q_u32(b0, b1), vuzp2q_u32(b0, b1));
                for r in 0..MR / 2 {
                    // Rows 2r and 2r+1: lanes 0, 1 and 2, 3.
                    let av = vreinterpretq_u32_u64(vld1q_u64(ap.as_ptr().add(2 * r)));
                    row::<0, 1>(&mut lo[2 * r][g], &mut cross[2 * r][g], bl, bh, av);
                    row::<2, 3>(&mut lo[2 * r + 1][g], &mut cross[2 * r + 1][g], bl, bh, av);
                }
            }
        }
        for i in 0..MR {
            for g in 0..NG {
                let c = cross[i][g];
                let r0 = vaddq_u64(lo[i][g][0], vshll_n_u32::<32>(vget_low_u32(c)));
                let r1 = vaddq_u64(lo[i][g][1], vshll_high_n_u32::<32>(c));
                vst1q_u64(out[i].as_mut_ptr().add(4 * g), r0);
                vst1q_u64(out[i].as_mut_ptr().add(4 * g + 2), r1);
            }
        }
    }
}

unsafe fn run_job_generic(job: &Job<'_>) {
    unsafe { run_job::<4, 4>(job, micro_portable::<4, 4>) }
}

/// Which micro-kernel this machine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum U64Kernel {
    /// AVX-512 in Winograd's inner-product form (the default where available).
    Avx512Winograd,
    /// AVX-512, classic form (kept for tests and comparison).
    #[cfg_attr(not(test), allow(dead_code))]
    Avx512,
    /// AVX2 in Winograd's form with 32-bit limb products (the default at [`Level::Avx2`]).
    Avx2WinogradSplit,
    /// AVX2 in Winograd's form (kept for tests and comparison).
    #[cfg_attr(not(test), allow(dead_code))]
    Avx2Winograd,
    /// The portable 4 x 8 tile compiled for AVX2 (kept for tests and comparison).
    #[cfg_attr(not(test), allow(dead_code))]
    Avx2,
    /// The portable 4 x 4 tile, no target features: the reference (kept for tests and
    /// comparison).
    #[cfg_attr(not(test), allow(dead_code))]
    Generic,
    /// The portable 4 x 4 tile in Winograd's form (the default at [`Level::Scalar`], and at
    /// [`Level::Neon`] on big-endian aarch64: half the 64-bit multiplies).
    GenericWinograd,
    /// NEON in the classic form with 32-bit limb products (the default at [`Level::Neon`];
    /// little-endian aarch64 only).
    NeonSplit,
    /// NEON in Winograd's form with 32-bit limb products (kept for tests and comparison;
    /// little-endian aarch64 only).
    #[cfg_attr(not(test), allow(dead_code))]
    NeonWinogradSplit,
}

impl U64Kernel {
    /// The level of the kernel's helper loops (matrix-vector products, Winograd terms).
    fn level(self) -> Level {
        match self {
            U64Kernel::Avx512Winograd | U64Kernel::Avx512 => Level::Avx512,
            U64Kernel::Avx2WinogradSplit | U64Kernel::Avx2Winograd | U64Kernel::Avx2 => Level::Avx2,
            U64Kernel::NeonWinogradSplit | U64Kernel::NeonSplit => Level::Neon,
            U64Kernel::Generic | U64Kernel::GenericWinograd => Level::Scalar,
        }
    }

    /// The default kernel at a level.
    pub(crate) fn at(level: Level) -> U64Kernel {
        match level {
            Level::Avx512 => U64Kernel::Avx512Winograd,
            Level::Avx2 => U64Kernel::Avx2WinogradSplit,
            Level::Neon if cfg!(all(target_arch = "aarch64", target_endian = "little")) => U64Kernel::NeonSplit,
            Level::Neon | Level::Scalar => U64Kernel::GenericWinograd,
        }
    }
}

/// The u64 micro-kernel of the dispatch level ([`simd::level`]: the CPU's best, capped by
/// `CRYPTFLOW_SIMD`).
pub(crate) fn u64_kernel() -> U64Kernel {
    U64Kernel::at(simd::level())
}

fn gemm_u64(m: usize, n: usize, k: usize, a: MatRef<'_, u64>, b: MatRef<'_, u64>, c: &mut [u64], ldc: usize) {
    gemm_u64_with(u64_kernel(), m, n, k, a, b, c, ldc)
}

impl<T> MatRef<'_, T> {
    fn t(self) -> Self {
        MatRef { rs: self.cs, cs: self.rs, ..self }
    }
}

/// The u64 product with a chosen micro-kernel (tests run every kernel the CPU supports).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_u64_with(
    kernel: U64Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, u64>,
    b: MatRef<'_, u64>,
    c: &mut [u64],
    ldc: usize,
) {
    // A product with very few rows or columns is a set of matrix-vector products, which the
    // register tiles would mostly pad.
    let level = kernel.level();
    assert!(level <= simd::detected(), "{kernel:?} on a CPU without it");
    if m < 4 && b.cs == 1 {
        return gemv_rows(m, n, k, a, b, c, ldc, level);
    }
    if n < 4 && a.cs == 1 {
        return gemv_cols(m, n, k, a, b, c, ldc, level);
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        U64Kernel::Avx512 => gemm_u64_oriented::<8, 16>(m, n, k, a, b, c, ldc, run_job_avx512, Form::Classic),
        #[cfg(target_arch = "x86_64")]
        U64Kernel::Avx512Winograd => gemm_u64_oriented::<8, 16>(m, n, k, a, b, c, ldc, run_job_avx512_winograd, Form::Winograd(level)),
        #[cfg(target_arch = "x86_64")]
        U64Kernel::Avx2Winograd => gemm_u64_oriented::<4, 8>(m, n, k, a, b, c, ldc, run_job_avx2_winograd, Form::Winograd(level)),
        #[cfg(target_arch = "x86_64")]
        U64Kernel::Avx2 => gemm_u64_oriented::<4, 8>(m, n, k, a, b, c, ldc, run_job_avx2, Form::Classic),
        #[cfg(target_arch = "x86_64")]
        U64Kernel::Avx2WinogradSplit => {
            gemm_u64_oriented::<AVX2_WMR, AVX2_WNR>(m, n, k, a, b, c, ldc, run_job_avx2_winograd_split, Form::Winograd(level))
        }
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        U64Kernel::NeonWinogradSplit => {
            gemm_u64_oriented::<NEON_WMR, NEON_WNR>(m, n, k, a, b, c, ldc, run_job_neon_winograd_split, Form::Winograd(level))
        }
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        U64Kernel::NeonSplit => gemm_u64_oriented::<NEON_MR, NEON_NR>(m, n, k, a, b, c, ldc, run_job_neon_split, Form::Classic),
        U64Kernel::GenericWinograd => gemm_u64_oriented::<4, 4>(m, n, k, a, b, c, ldc, run_job_generic_winograd, Form::Winograd(level)),
        _ => gemm_u64_oriented::<4, 4>(m, n, k, a, b, c, ldc, run_job_generic, Form::Classic),
    }
}

/// Few rows: `C[i, j0..j1] = sum_p A(i, p) B[p, j0..j1]` (B rows contiguous), column ranges in
/// parallel.
#[allow(clippy::too_many_arguments)]
fn gemv_rows(m: usize, n: usize, k: usize, a: MatRef<'_, u64>, b: MatRef<'_, u64>, c: &mut [u64], ldc: usize, level: Level) {
    let threads = rayon::current_num_threads().max(1);
    let parts = if m * n * k < 1 << 18 { 1 } else { (threads * 4).min(n.div_ceil(64)).max(1) };
    let width = n.div_ceil(parts);
    let cptr = SyncPtr(c.as_mut_ptr());
    let run = |t: usize| {
        let cp = cptr;
        let (j0, j1) = (t * width, ((t + 1) * width).min(n));
        if j0 >= j1 {
            return;
        }
        let mut acc = crate::scratch::take::<u64>(j1 - j0);
        for i in 0..m {
            simd::run(level, || axpy_rows(i, k, j0, a, b, &mut acc));
            // SAFETY: row i, columns j0..j1 of C; column ranges are disjoint between tasks and
            // inside C (checked by `gemm`).
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), cp.0.add(i * ldc + j0), j1 - j0) };
        }
    };
    if parts == 1 {
        run(0);
    } else {
        (0..parts).into_par_iter().for_each(run);
    }
}

/// `acc = sum_p A(i, p) B[p, j0..j0 + acc.len()]`.
#[inline(always)]
fn axpy_rows(i: usize, k: usize, j0: usize, a: MatRef<'_, u64>, b: MatRef<'_, u64>, acc: &mut [u64]) {
    acc.fill(0);
    let len = acc.len();
    for p in 0..k {
        let aip = a.at(i, p);
        let s = b.offset + p * b.rs + j0;
        for (d, &v) in acc.iter_mut().zip(&b.data[s..s + len]) {
            *d = d.wrapping_add(aip.wrapping_mul(v));
        }
    }
}


/// Few columns: `C[i, j] = A[i, :] . B[:, j]` (A rows contiguous), row ranges in parallel.
#[allow(clippy::too_many_arguments)]
fn gemv_cols(m: usize, n: usize, k: usize, a: MatRef<'_, u64>, b: MatRef<'_, u64>, c: &mut [u64], ldc: usize, level: Level) {
    // The columns of B, contiguous.
    let mut cols = crate::scratch::take::<u64>(n * k);
    for j in 0..n {
        for (p, d) in cols[j * k..(j + 1) * k].iter_mut().enumerate() {
            *d = b.at(p, j);
        }
    }
    let cols = &*cols;
    let work = m * n * k;
    // (A single row may come with any ldc.)
    let stride = if m == 1 { ldc.max(n) } else { ldc };
    crate::par::for_each_chunk(&mut c[..(m - 1) * ldc + n], stride, work, |i, crow| {
        let arow = &a.data[a.offset + i * a.rs..][..k];
        simd::run(level, || {
            for (j, d) in crow[..n].iter_mut().enumerate() {
                *d = dot(arow, &cols[j * k..(j + 1) * k]);
            }
        });
    });
}

#[inline(always)]
fn dot(x: &[u64], y: &[u64]) -> u64 {
    // Eight independent partial sums, so the reduction vectorises.
    let mut acc = [0u64; 8];
    let (xc, xr) = x.split_at(x.len() / 8 * 8);
    let (yc, yr) = y.split_at(xc.len());
    for (xs, ys) in xc.chunks_exact(8).zip(yc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] = acc[l].wrapping_add(xs[l].wrapping_mul(ys[l]));
        }
    }
    let mut s = acc.iter().fold(0u64, |s, &v| s.wrapping_add(v));
    for (&u, &v) in xr.iter().zip(yr) {
        s = s.wrapping_add(u.wrapping_mul(v));
    }
    s
}


/// Computes `C` or, when the `MR x NR` tiles cover `C^T = B^T A^T` with less padding (e.g. a
/// few columns and many rows), the transposed product written through transposed strides.
#[allow(clippy::too_many_arguments)]
fn gemm_u64_oriented<const MR: usize, const NR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, u64>,
    b: MatRef<'_, u64>,
    c: &mut [u64],
    ldc: usize,
    job_fn: unsafe fn(&Job<'_>),
    form: Form,
) {
    let padded = |m: usize, n: usize| m.div_ceil(MR) * MR * n.div_ceil(NR) * NR;
    // On a tie, the longer side goes to B's columns: all of A is packed up front, while B is
    // packed in cache-sized blocks.
    let (direct, transposed) = (padded(m, n), padded(n, m));
    if transposed < direct || (transposed == direct && n < m) {
        gemm_u64_packed::<MR, NR>(n, m, k, b.t(), a.t(), c, 1, ldc, job_fn, form)
    } else {
        gemm_u64_packed::<MR, NR>(m, n, k, a, b, c, ldc, 1, job_fn, form)
    }
}

/// Packs `A[:, p0..p0 + kc]` into `MR`-row panels (`kc * MR` each, zero-padded rows).
/// Panels hold `kp >= kc` steps; the steps past `kc` are zero.
fn pack_a<const MR: usize>(a: MatRef<'_, u64>, m: usize, p0: usize, kc: usize, kp: usize, out: &mut [u64]) {
    let work = out.len();
    for_each_chunk(out, kp * MR, work, |ip, panel| {
        let i0 = ip * MR;
        let mr = (m - i0).min(MR);
        pack_panel::<MR>(a, i0, mr, p0, kc, panel);
        panel[kc * MR..].fill(0);
    });
}

/// Packs `B[p0..p0 + kc, :]` into `NR`-column panels (`kc * NR` each, zero-padded columns).
/// Panels hold `kp >= kc` steps; the steps past `kc` are zero.
fn pack_b<const NR: usize>(b: MatRef<'_, u64>, n: usize, p0: usize, kc: usize, kp: usize, out: &mut [u64], parallel: bool) {
    let bt = b.t();
    let work = if parallel { out.len() } else { 0 };
    for_each_chunk(out, kp * NR, work, |jp, panel| {
        let j0 = jp * NR;
        let nr = (n - j0).min(NR);
        pack_panel::<NR>(bt, j0, nr, p0, kc, panel);
        panel[kc * NR..].fill(0);
    });
}

/// `panel[p * R + r] = x(i0 + r, p0 + p)` for `r < rows`, zero for `rows <= r < R`.
fn pack_panel<const R: usize>(x: MatRef<'_, u64>, i0: usize, rows: usize, p0: usize, kc: usize, panel: &mut [u64]) {
    let panel = &mut panel[..kc * R];
    if x.rs == 1 && rows == R {
        // Each step p reads R consecutive elements.
        for (p, dst) in panel.chunks_exact_mut(R).enumerate() {
            let s = x.offset + i0 + (p0 + p) * x.cs;
            dst.copy_from_slice(&x.data[s..s + R]);
        }
        return;
    }
    if rows < R {
        panel.fill(0);
    }
    if x.cs == 1 {
        // Each row r is contiguous in p: transpose blocks of 8 steps, so that the rows read and
        // the panel lines written stay in L1.
        const B: usize = 8;
        for pb in (0..kc).step_by(B) {
            let w = (kc - pb).min(B);
            let dst = &mut panel[pb * R..(pb + w) * R];
            for r in 0..rows {
                let s = x.offset + (i0 + r) * x.rs + p0 + pb;
                for (q, &v) in x.data[s..s + w].iter().enumerate() {
                    dst[q * R + r] = v;
                }
            }
        }
    } else {
        for (p, dst) in panel.chunks_exact_mut(R).enumerate() {
            for (r, d) in dst.iter_mut().enumerate().take(rows) {
                *d = x.at(i0 + r, p0 + p);
            }
        }
    }
}

/// How a register tile computes its products, and what the packing prepares for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `acc += a * b` on the packed panels.
    Classic,
    /// Winograd's inner-product form (see [`micro_avx512_winograd`]); the row and column terms
    /// are computed at the level given.
    Winograd(Level),
}

#[allow(clippy::too_many_arguments)]
fn gemm_u64_packed<const MR: usize, const NR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, u64>,
    b: MatRef<'_, u64>,
    c: &mut [u64],
    c_rs: usize,
    c_cs: usize,
    job_fn: unsafe fn(&Job<'_>),
    form: Form,
) {
    let (winograd, terms_level) = match form {
        Form::Winograd(level) => (true, level),
        _ => (false, Level::Scalar),
    };
    let m_panels = m.div_ceil(MR);
    let n_panels = n.div_ceil(NR);
    // Depth blocks (p0, kc, kp): the Winograd form pairs steps, so its blocks have an even
    // depth kp (the last one zero-padded).
    let mut blocks = Vec::new();
    let mut a_offsets = Vec::new();
    let mut a_total = 0;
    let mut p0 = 0;
    while p0 < k {
        let kc = (k - p0).min(KC);
        let kp = if winograd { kc.next_multiple_of(2) } else { kc };
        blocks.push((p0, kc, kp));
        a_offsets.push(a_total);
        a_total += m_panels * kp * MR;
        p0 += kc;
    }
    let kp_max = blocks.iter().map(|b| b.2).max().unwrap_or(0);

    // All of A is packed once (it is reused by every column block), with its Winograd row terms.
    let mut apack = crate::scratch::take::<u64>(a_total);
    let mut row_terms = crate::scratch::take::<u64>(if winograd { blocks.len() * m_panels * MR } else { 0 });
    for (bi, &(p0, kc, kp)) in blocks.iter().enumerate() {
        let packed = &mut apack[a_offsets[bi]..a_offsets[bi] + m_panels * kp * MR];
        pack_a::<MR>(a, m, p0, kc, kp, packed);
        if winograd {
            pair_terms::<MR>(terms_level, packed, kp, &mut row_terms[bi * m_panels * MR..(bi + 1) * m_panels * MR], true);
        }
    }
    let (apack, row_terms) = (&*apack, &*row_terms);

    // C is split into parts computed in parallel, each sequentially: column ranges (every part
    // packs its own B panels), or row ranges when there are few column panels (every part then
    // packs all of B, which is small). One fork-join per product.
    let threads = rayon::current_num_threads().max(1);
    let want_parts = if m * n * k < 1 << 21 { 1 } else { 4 * threads };
    let (part_rows, part_cols) = if n_panels >= want_parts || n_panels >= m_panels {
        (m_panels, n_panels.div_ceil(want_parts))
    } else {
        (m_panels.div_ceil(want_parts), n_panels)
    };
    let parts: Vec<(usize, usize)> =
        (0..m_panels.div_ceil(part_rows)).flat_map(|r| (0..n_panels.div_ceil(part_cols)).map(move |c| (r, c))).collect();
    // B is packed one column block at a time, small enough to stay in L2 while the rows of A
    // stream past it, MC rows at a time.
    let block_panels = (NC_BYTES / (kp_max.max(1) * NR * 8)).clamp(1, part_cols);
    let cptr = SyncPtr(c.as_mut_ptr());
    let run_part = |&(r, cb): &(usize, usize)| {
        let cp = cptr;
        let (ip0, ip1) = (r * part_rows, ((r + 1) * part_rows).min(m_panels));
        let (jp0, jp1) = (cb * part_cols, ((cb + 1) * part_cols).min(n_panels));
        let mut bpack = crate::scratch::take::<u64>(block_panels * kp_max * NR);
        let mut col_terms = crate::scratch::take::<u64>(if winograd { block_panels * NR } else { 0 });
        for jc in (jp0..jp1).step_by(block_panels) {
            let jcn = block_panels.min(jp1 - jc);
            let nb = n.min((jc + jcn) * NR) - jc * NR;
            let bview = MatRef { offset: b.offset + jc * NR * b.cs, ..b };
            for (bi, &(p0, kc, kp)) in blocks.iter().enumerate() {
                let bpack = &mut bpack[..jcn * kp * NR];
                pack_b::<NR>(bview, nb, p0, kc, kp, bpack, false);
                if winograd {
                    pair_terms::<NR>(terms_level, bpack, kp, &mut col_terms[..jcn * NR], false);
                }
                let (bpack, col_terms) = (&*bpack, &*col_terms);
                let apack = &apack[a_offsets[bi]..a_offsets[bi] + m_panels * kp * MR];
                let row_terms = if winograd { &row_terms[bi * m_panels * MR..(bi + 1) * m_panels * MR] } else { &[][..] };
                for ic in (ip0..ip1).step_by(MC / MR) {
                    let icn = (MC / MR).min(ip1 - ic);
                    let i0 = ic * MR;
                    let job = Job {
                        kc: kp,
                        a: &apack[ic * kp * MR..(ic + icn) * kp * MR],
                        b: bpack,
                        // SAFETY: (i0, jc * NR) is inside C: i0 < m, jc * NR < n, and gemm
                        // checked C's extent.
                        c: unsafe { cp.0.add(i0 * c_rs + jc * NR * c_cs) },
                        c_rs,
                        c_cs,
                        m: ((ic + icn) * MR).min(m) - i0,
                        n: nb,
                        accumulate: p0 > 0,
                        rows: if winograd { &row_terms[i0..(ic + icn) * MR] } else { &[] },
                        cols: if winograd { &col_terms[..jcn * NR] } else { &[] },
                    };
                    // SAFETY: parts, and the jobs within one, cover disjoint blocks of C, each
                    // inside the m x n view, whose elements are distinct (row stride >= n for a
                    // row-major C, or its transpose); the micro-kernel's target features were
                    // checked by the caller.
                    unsafe { job_fn(&job) };
                }
            }
        }
    };
    if parts.len() == 1 {
        run_part(&parts[0]);
    } else {
        parts.par_iter().for_each(run_part);
    }
}

/// `d[j] += w * s[j]` (elementwise over the shorter of the two).
#[inline]
pub(crate) fn axpy<T: Element>(d: &mut [T], w: T, s: &[T]) {
    if let (Some(w64), Some(s64)) = (cast_slice::<T, u64>(std::slice::from_ref(&w)), cast_slice::<T, u64>(s)) {
        let d64 = cast_slice_mut::<T, u64>(d).expect("same type as s");
        return axpy_u64(simd::level(), d64, w64[0], s64);
    }
    for (d, &v) in d.iter_mut().zip(s) {
        *d = d.add(w.mul(v));
    }
}

/// The u64 `axpy` at a level (one portable loop; AVX-512DQ has `vpmullq`, AVX2 gets LLVM's
/// three-`vpmuludq` product).
#[inline]
pub(crate) fn axpy_u64(level: Level, d: &mut [u64], w: u64, s: &[u64]) {
    simd::run(level, || {
        for (d, &v) in d.iter_mut().zip(s) {
            *d = d.wrapping_add(w.wrapping_mul(v));
        }
    })
}

/// `d[j] += a[j] * b[j]` (elementwise over the shortest).
#[inline]
pub(crate) fn mul_add<T: Element>(d: &mut [T], a: &[T], b: &[T]) {
    if let (Some(a64), Some(b64)) = (cast_slice::<T, u64>(a), cast_slice::<T, u64>(b)) {
        let d64 = cast_slice_mut::<T, u64>(d).expect("same type as a");
        return mul_add_u64(simd::level(), d64, a64, b64);
    }
    for ((d, &u), &v) in d.iter_mut().zip(a).zip(b) {
        *d = d.add(u.mul(v));
    }
}

/// The u64 `mul_add` at a level.
#[inline]
pub(crate) fn mul_add_u64(level: Level, d: &mut [u64], a: &[u64], b: &[u64]) {
    simd::run(level, || {
        for ((d, &u), &v) in d.iter_mut().zip(a).zip(b) {
            *d = d.wrapping_add(u.wrapping_mul(v));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive_u64(m: usize, n: usize, k: usize, a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut c = vec![0u64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0u64;
                for p in 0..k {
                    s = s.wrapping_add(a[i * k + p].wrapping_mul(b[p * n + j]));
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_u64_kernel_matches_naive_product() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Every kernel of every level this CPU supports (whatever CRYPTFLOW_SIMD says).
        let mut kernels = vec![U64Kernel::Generic, U64Kernel::GenericWinograd];
        if simd::detected() >= Level::Avx2 {
            kernels.push(U64Kernel::Avx2);
            kernels.push(U64Kernel::Avx2Winograd);
            kernels.push(U64Kernel::Avx2WinogradSplit);
        }
        if simd::detected() >= Level::Avx512 {
            kernels.push(U64Kernel::Avx512);
            kernels.push(U64Kernel::Avx512Winograd);
        }
        if cfg!(all(target_arch = "aarch64", target_endian = "little")) && simd::detected().up_to().contains(&Level::Neon) {
            kernels.extend([U64Kernel::NeonSplit, U64Kernel::NeonWinogradSplit]);
        }
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (8, 16, 256), (9, 17, 257), (130, 70, 300), (33, 600, 513), (200, 3, 40), (2, 700, 300), (500, 2, 600), (4, 4, 9), (5, 9, 3), (12, 24, 1)] {
            let a: Vec<u64> = (0..m * k).map(|_| rng.random()).collect();
            let b: Vec<u64> = (0..k * n).map(|_| rng.random()).collect();
            let want = naive_u64(m, n, k, &a, &b);
            for &kernel in &kernels {
                // C with a wider row stride, whose extra columns must be left alone.
                let ldc = n + 3;
                let mut c = vec![0xdead_beefu64; m * ldc];
                gemm_u64_with(kernel, m, n, k, MatRef::row_major(&a, 0, k), MatRef::row_major(&b, 0, n), &mut c, ldc);
                for i in 0..m {
                    assert_eq!(&c[i * ldc..i * ldc + n], &want[i * n..(i + 1) * n], "{kernel:?} {m}x{n}x{k} row {i}");
                    assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 0xdead_beef));
                }
            }
        }
    }

    /// Every u64 micro-kernel this CPU has, on the benchmark's GEMM shapes, on one thread:
    /// GOPS (a multiply and an add per step) per CPU-second of the process, best of 8 runs
    /// (`cargo test --release -p cryptflow-tensor --lib -- --ignored --nocapture
    /// gemm_kernel_speed`). Prints a table; asserts nothing about speed.
    #[test]
    #[ignore]
    fn gemm_kernel_speed() {
        fn cpu_ns() -> f64 {
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
                // SAFETY: a valid clock id (CLOCK_PROCESS_CPUTIME_ID = 2) and out pointer of
                // the C layout (64-bit Linux targets).
                if unsafe { clock_gettime(2, &mut t) } == 0 {
                    return t.sec as f64 * 1e9 + t.nsec as f64;
                }
            }
            std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as f64
        }
        let mut kernels = vec![U64Kernel::Generic, U64Kernel::GenericWinograd];
        if simd::detected() >= Level::Avx2 {
            kernels.extend([U64Kernel::Avx2Winograd, U64Kernel::Avx2WinogradSplit]);
        }
        if simd::detected() >= Level::Avx512 {
            kernels.push(U64Kernel::Avx512Winograd);
        }
        if cfg!(all(target_arch = "aarch64", target_endian = "little")) && simd::detected().up_to().contains(&Level::Neon) {
            kernels.extend([U64Kernel::NeonSplit, U64Kernel::NeonWinogradSplit]);
        }
        let filter = std::env::var("GEMM_KERNELS").unwrap_or_default();
        kernels.retain(|k| filter.is_empty() || filter.split(',').any(|f| format!("{k:?}") == f));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        println!("CPU: {}; detected level {}", simd::cpu_model(), simd::detected());
        for &(m, k, n) in &[(512usize, 2304usize, 784usize), (256, 2304, 196), (64, 576, 3136)] {
            let a: Vec<u64> = (0..m * k).map(|_| rng.random()).collect();
            let b: Vec<u64> = (0..k * n).map(|_| rng.random()).collect();
            let mut c = vec![0u64; m * n];
            for &kernel in &kernels {
                let run = |c: &mut [u64]| {
                    pool.install(|| gemm_u64_with(kernel, m, n, k, MatRef::row_major(&a, 0, k), MatRef::row_major(&b, 0, n), c, n))
                };
                run(&mut c);
                let mut best = f64::MAX;
                for _ in 0..8 {
                    let t = cpu_ns();
                    run(&mut c);
                    best = best.min(cpu_ns() - t);
                }
                println!("[{m}x{k}]x[{k}x{n}] {:<18} {:>7.1} GOPS per CPU-s", format!("{kernel:?}"), 2.0 * (m * n * k) as f64 / best);
            }
        }
    }

    #[test]
    fn elementwise_u64_kernels_agree_at_every_level() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for len in [0usize, 1, 3, 4, 7, 8, 31, 64, 1000] {
            let a: Vec<u64> = (0..len).map(|_| rng.random()).collect();
            let b: Vec<u64> = (0..len).map(|_| rng.random()).collect();
            let d0: Vec<u64> = (0..len).map(|_| rng.random()).collect();
            let w: u64 = rng.random();
            let want_axpy: Vec<u64> = d0.iter().zip(&b).map(|(&d, &v)| d.wrapping_add(w.wrapping_mul(v))).collect();
            let want_fma: Vec<u64> = d0.iter().zip(&a).zip(&b).map(|((&d, &u), &v)| d.wrapping_add(u.wrapping_mul(v))).collect();
            for level in simd::detected().up_to() {
                let mut d = d0.clone();
                axpy_u64(level, &mut d, w, &b);
                assert_eq!(d, want_axpy, "axpy at {level}, len {len}");
                let mut d = d0.clone();
                mul_add_u64(level, &mut d, &a, &b);
                assert_eq!(d, want_fma, "mul_add at {level}, len {len}");
            }
        }
    }
}
