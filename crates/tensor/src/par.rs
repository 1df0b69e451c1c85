//! Parallel loops that stay on the calling thread when the work is too small to pay for
//! handing it to the rayon pool (a round trip costs microseconds).

use rayon::prelude::*;

/// Element operations below which a loop runs sequentially.
const PARALLEL_WORK: usize = 1 << 15;

/// Calls `f(index, chunk)` for every `chunk`-sized piece of `data` (the last may be shorter),
/// in parallel when `work` (an estimate of the loop's element operations) is large enough.
pub(crate) fn for_each_chunk<T: Send>(data: &mut [T], chunk: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if chunk == 0 || data.is_empty() {
        return;
    }
    if work < PARALLEL_WORK || data.len() <= chunk || rayon::current_num_threads() == 1 {
        data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}
