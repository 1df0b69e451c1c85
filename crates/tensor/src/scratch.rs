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
/// ...and none larger than this many bytes.
const MAX_BYTES: usize = 256 << 20;

/// A pooled buffer: its element type, its capacity and the `Vec` itself.
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
                .filter(|(_, (id, cap, _))| *id == TypeId::of::<T>() && *cap >= len)
                .min_by_key(|(_, (_, cap, _))| *cap)
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
            pool.push((TypeId::of::<T>(), buf.capacity(), Box::new(buf)));
            if pool.len() > MAX_BUFFERS {
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
