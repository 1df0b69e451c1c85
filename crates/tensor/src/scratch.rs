//! Reusable scratch buffers (im2col matrices, packed GEMM panels).
//!
//! Big temporary buffers freshly allocated on every call cost more in page faults than the
//! copies that fill them, so released buffers are kept in a small per-thread pool and handed out
//! again. A buffer's contents on hand-out are unspecified (but valid values of its type):
//! callers overwrite every element they read.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// At most this many buffers are kept per thread...
const MAX_BUFFERS: usize = 6;
/// ...holding at most this many bytes together (the oldest go first).
const MAX_BYTES: usize = 256 << 20;

/// A pooled buffer: its element type, its capacity in bytes and the `Vec` itself.
type Pooled = (TypeId, usize, Box<dyn Any>);

thread_local! {
    static POOL: RefCell<Vec<Pooled>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements borrowed from the pool; returned to it on drop.
pub(crate) struct Scratch<T: Copy + Default + 'static> {
    buf: Vec<T>,
}

/// A buffer of `len` elements with unspecified contents.
pub(crate) fn take<T: Copy + Default + 'static>(len: usize) -> Scratch<T> {
    let reused = POOL
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            // The smallest pooled buffer of this type that is big enough.
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, (id, bytes, _))| *id == TypeId::of::<T>() && *bytes >= len * std::mem::size_of::<T>())
                .min_by_key(|(_, (_, bytes, _))| *bytes)
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i).2)
        })
        .ok()
        .flatten();
    let mut buf = match reused.and_then(|b| b.downcast::<Vec<T>>().ok()) {
        Some(b) => *b,
        None => Vec::with_capacity(len),
    };
    if buf.len() > len {
        buf.truncate(len);
    } else {
        buf.resize(len, T::default());
    }
    Scratch { buf }
}

impl<T: Copy + Default + 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let bytes = buf.capacity() * std::mem::size_of::<T>();
        if bytes == 0 || bytes > MAX_BYTES {
            return;
        }
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push((TypeId::of::<T>(), bytes, Box::new(buf)));
            while pool.len() > MAX_BUFFERS || pool.iter().map(|p| p.1).sum::<usize>() > MAX_BYTES {
                // Drop the oldest.
                pool.remove(0);
            }
        });
    }
}

impl<T: Copy + Default + 'static> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf
    }
}

impl<T: Copy + Default + 'static> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_type_and_size() {
        let ptr = {
            let mut a = take::<u64>(1000);
            a.fill(7);
            a.as_ptr()
        };
        // Same type, smaller: the pooled buffer comes back, resized.
        let b = take::<u64>(10);
        assert_eq!(b.len(), 10);
        assert_eq!(b.as_ptr(), ptr);
        // Another type never gets it.
        let c = take::<f32>(10);
        assert_ne!(c.as_ptr() as *const u8, ptr as *const u8);
        drop(b);
        // Bigger than anything pooled: a fresh buffer of the right length.
        let d = take::<u64>(5000);
        assert_eq!(d.len(), 5000);
    }
}
