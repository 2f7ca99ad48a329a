//! `ChunkBuf`: a fixed-capacity, page-aligned byte buffer owned by whoever encodes.
//!
//! Chunks are what the encoder fills and the writer hands to the kernel. Page alignment
//! makes them usable for O_DIRECT writes and as io_uring fixed buffers; a fixed capacity
//! means a full chunk is exactly `capacity()` bytes, so chunk offsets in the file stay
//! aligned too.
//!
//! **Invariants**: `len <= cap`; bytes `[0, len)` are initialised; the allocation lives
//! until drop and never moves (a pointer handed to the kernel stays valid while the buffer
//! is alive).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every chunk: one page, as O_DIRECT requires.
pub const CHUNK_ALIGN: usize = 4096;

pub struct ChunkBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    /// Its index in an io_uring's registered-buffer table, set by the ring that
    /// registered it: the buffer carries it, so a buffer that merely lands at a freed
    /// registered buffer's address is never taken for it.
    fixed: Option<u16>,
}

// SAFETY: ChunkBuf owns its allocation exclusively (like Vec<u8>); nothing is shared.
unsafe impl Send for ChunkBuf {}
// SAFETY: &ChunkBuf only gives read access to initialised bytes.
unsafe impl Sync for ChunkBuf {}

impl ChunkBuf {
    /// A buffer of `cap` bytes (rounded up to a whole number of pages, at least one).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1).div_ceil(CHUNK_ALIGN) * CHUNK_ALIGN;
        let layout = Self::layout(cap);
        // SAFETY: `layout` has a non-zero size (cap >= 4096).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        ChunkBuf {
            ptr,
            cap,
            len: 0,
            fixed: None,
        }
    }

    fn layout(cap: usize) -> Layout {
        Layout::from_size_align(cap, CHUNK_ALIGN).expect("chunk size overflows a Layout")
    }

    /// Its registered-buffer index, if a ring registered it.
    pub(crate) fn fixed_index(&self) -> Option<u16> {
        self.fixed
    }

    /// Set by the ring that registers (or unregisters) it.
    pub(crate) fn set_fixed_index(&mut self, i: Option<u16>) {
        self.fixed = i;
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn remaining(&self) -> usize {
        self.cap - self.len
    }

    pub fn is_full(&self) -> bool {
        self.len == self.cap
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends as much of `bytes` as fits; returns how many bytes were taken.
    #[inline]
    pub fn push_some(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.remaining());
        // SAFETY: `len + n <= cap`, so the destination lies inside our allocation, and
        // `bytes` cannot overlap it (we hold `&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Sets the length to `len` (bytes beyond the old length are zero or old data; all
    /// bytes of the allocation were initialised by `alloc_zeroed`).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "ChunkBuf::set_len beyond capacity");
        self.len = len;
    }

    /// The whole allocation, for writers that fill it (decompression, O_DIRECT padding).
    pub fn full_capacity_mut(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is `cap` bytes, all initialised (alloc_zeroed), and
        // exclusively ours for the lifetime of `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: bytes [0, len) are initialised and owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and not freed before.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

impl std::fmt::Debug for ChunkBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkBuf {{ len: {}, cap: {} }}", self.len, self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_bounded() {
        let mut b = ChunkBuf::new(5000);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.as_ptr() as usize % CHUNK_ALIGN, 0);
        assert_eq!(b.push_some(&[7u8; 8000]), 8000);
        assert_eq!(b.push_some(&[9u8; 500]), 192);
        assert!(b.is_full());
        assert_eq!(b.as_slice()[7999], 7);
        assert_eq!(b.as_slice()[8191], 9);
        b.clear();
        assert!(b.is_empty());
    }
}
