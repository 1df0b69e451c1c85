//! Recycled message buffers.
//!
//! The comparisons move about 536 bytes per element through fresh vectors of tens of
//! megabytes; allocations that large are mapped anew by the allocator every time, and the
//! kernel then takes a page fault (and zeroes a page) for every 4 KiB written: on a 2-core
//! machine that was a quarter of the CPU time of a ReLU. Buffers that the protocols are done
//! with (received messages, scratch vectors) are given back here and handed out again for
//! the next messages, by any party thread of the process (in a local 3-party run the helper
//! receives more than it sends and the share-holders the opposite, so the pool is shared).
//!
//! A buffer given back is kept only if the pool handed out one of its size class that has not
//! come back yet: buffers that only ever arrive (messages received by a party that runs alone
//! in its process, in a distributed run) are freed as before, and the pool holds what the
//! protocols reuse. It keeps at most [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes, dropping
//! the buffers given back longest ago beyond that; a buffer handed out holds stale data from
//! its previous use (always initialised `u64`s).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Buffers smaller than this are left to the allocator.
const MIN_WORDS: usize = 1 << 14;
const MAX_BUFFERS: usize = 256;
/// 64 MiB: the buffers of the largest ReLU of ResNet-50 still come round again (a local
/// ResNet-50 run is within a few percent of its time with 1 GiB), and a party alone in its
/// process stays under 250 MB resident on ResNet-50 and 310 MB on DenseNet-121.
const MAX_BYTES: usize = 1 << 26;

struct Pool {
    /// Oldest first.
    buffers: VecDeque<Vec<u64>>,
    /// Per size class, the buffers handed out and not given back.
    out: BTreeMap<usize, usize>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { buffers: VecDeque::new(), out: BTreeMap::new() });

/// The capacity given to buffers of `len` words: the next size of the form `m 2^k` with
/// `8 <= m < 16` (at most an eighth more), so that vectors of nearby lengths share buffers.
fn class(len: usize) -> usize {
    if len <= 16 {
        return len;
    }
    let shift = (usize::BITS - len.leading_zeros()) - 4;
    len.div_ceil(1 << shift) << shift
}

/// A vector of `len` words with unspecified (stale but initialised) contents.
pub(crate) fn take(len: usize) -> Vec<u64> {
    if len < MIN_WORDS {
        return vec![0; len];
    }
    let cap = class(len);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    *pool.out.entry(cap).or_insert(0) += 1;
    // A buffer of this size class (or one given back with a capacity in between).
    let best = pool.buffers.iter().enumerate().filter(|(_, b)| b.capacity() >= len && b.capacity() <= cap).min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
    if let Some(i) = best {
        let mut v = pool.buffers.remove(i).expect("index in range");
        drop(pool);
        // SAFETY: the capacity suffices and `give` initialised the whole capacity.
        unsafe { v.set_len(len) };
        return v;
    }
    drop(pool);
    // Zeroed by the allocator (fresh pages cost nothing until written).
    let mut v = vec![0; cap];
    v.truncate(len);
    v
}

/// A vector of `len` zeros (a recycled buffer, cleared).
pub(crate) fn zeros(len: usize) -> Vec<u64> {
    let mut v = take(len);
    v.fill(0);
    v
}

/// Gives a buffer back for reuse.
pub(crate) fn give(mut v: Vec<u64>) {
    if v.len() < MIN_WORDS {
        return;
    }
    // `take` may hand out the whole capacity: initialise it (vectors built with an exact
    // length have nothing past it).
    let cap = v.capacity();
    {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match pool.out.get_mut(&class(cap)) {
            Some(n) if *n > 0 => *n -= 1,
            // Nobody took one of these: let it go.
            _ => return,
        }
    }
    v.resize(cap, 0);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.buffers.push_back(v);
    let mut held: usize = pool.buffers.iter().map(|b| b.capacity() * 8).sum();
    while pool.buffers.len() > MAX_BUFFERS || held > MAX_BYTES {
        let oldest = pool.buffers.pop_front().expect("not empty");
        held -= oldest.capacity() * 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        for len in (1..5000).chain([200_704, 802_816, 1 << 20, (1 << 20) + 1]) {
            let c = class(len);
            assert!(c >= len && c <= len + len / 8 + 1, "{len} -> {c}");
            assert_eq!(class(c), c);
        }
        let v = take(100_000);
        assert_eq!(v.len(), 100_000);
        assert_eq!(v.capacity(), class(100_000));
        give(v);
        assert_eq!(take(99_000).capacity(), class(100_000));
        // A buffer of a class nobody took is not kept.
        give(vec![7; 3 << 20]);
        assert!(POOL.lock().unwrap().buffers.iter().all(|b| b.capacity() != 3 << 20));
    }
}
