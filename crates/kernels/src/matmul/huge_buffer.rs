//! Zeroed byte buffers on 2 MiB pages, for repacked weights.
//!
//! Decode streams every weight once per token. On 4 KiB pages each page
//! costs a TLB miss (a slow page walk under nested paging) and restarts the
//! hardware prefetchers; a weight matrix of a few MB allocated anywhere
//! holds at most one whole aligned 2 MiB range, so advising huge pages on
//! an ordinary allocation left most of a model on small pages. A
//! [`HugeBuffer`] starts on a 2 MiB boundary and asks for huge pages
//! (`madvise(MADV_HUGEPAGE)`, honoured under transparent huge pages in
//! `madvise` or `always` mode) for its whole 2 MiB ranges before the first
//! write; its tail stays on small pages, so a small matrix never pins a
//! mostly empty huge page. Measured (`examples/stream_bench.rs`, one
//! thread, 300 MB of tiled Q4_0): 14.1 GB/s on huge pages, 13.5 on 4 KiB
//! pages (3-5%, with the tile kernels' L2 prefetch; before that prefetch,
//! advising huge pages on ordinary allocations gave ~10%).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// Alignment and huge page size.
const HUGE: usize = 2 << 20;

/// `len` zeroed bytes starting on a 2 MiB boundary (see the module docs).
pub struct HugeBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its bytes; shared access is read-only.
unsafe impl Send for HugeBuffer {}
// SAFETY: as above.
unsafe impl Sync for HugeBuffer {}

impl HugeBuffer {
    pub fn zeroed(len: usize) -> HugeBuffer {
        if len == 0 {
            return HugeBuffer { ptr: NonNull::dangling(), len };
        }
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout));
        #[cfg(target_os = "linux")]
        if len >= HUGE {
            // SAFETY: advice on the start of our own, not yet touched,
            // allocation (page-aligned); it never changes the contents and
            // a refusal is harmless.
            unsafe {
                libc::madvise(ptr.as_ptr().cast(), len / HUGE * HUGE, libc::MADV_HUGEPAGE);
            }
        }
        // SAFETY: the allocation holds `len` bytes.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        HugeBuffer { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, HUGE).expect("a buffer smaller than isize::MAX")
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised bytes (or is dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_aligned_and_writable() {
        for len in [0, 1, 64, 5000, HUGE + 4096] {
            let mut b = HugeBuffer::zeroed(len);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&v| v == 0));
            if len > 0 {
                assert_eq!(b.as_slice().as_ptr() as usize % HUGE, 0);
                b.as_mut_slice()[len - 1] = 7;
                assert_eq!(b.as_slice()[len - 1], 7);
            }
        }
    }
}
