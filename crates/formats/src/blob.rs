//! Zero-copy byte ranges of a memory-mapped (or owned) buffer.

use std::fmt;
use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

/// The buffer behind a set of [`Blob`]s.
enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A cheap-to-clone view of a byte range of a file or buffer.
///
/// Cloning shares the underlying mapping; the mapping lives as long as any
/// blob refers to it.
#[derive(Clone)]
pub struct Blob {
    storage: Arc<Storage>,
    range: Range<usize>,
}

impl Blob {
    /// Memory-maps a whole file read-only.
    pub fn map_file(path: &Path) -> std::io::Result<Blob> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only. Like every engine that maps model
        // files (llama.cpp, candle), we accept that another process truncating
        // the file while it is mapped is outside our control.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let len = map.len();
        Ok(Blob { storage: Arc::new(Storage::Mapped(map)), range: 0..len })
    }

    /// Wraps bytes already in memory (tests, fuzzing, generated models).
    pub fn from_vec(bytes: Vec<u8>) -> Blob {
        let len = bytes.len();
        Blob { storage: Arc::new(Storage::Owned(bytes)), range: 0..len }
    }

    /// Tells the OS this process will not read the whole pages inside this
    /// blob again (after a loader copied them elsewhere, e.g. repacked
    /// weights): they leave the process's resident memory and stay in the
    /// page cache. Reading them later still works (they fault back in).
    /// Does nothing for owned bytes.
    pub fn release_pages(&self) {
        let Storage::Mapped(map) = &*self.storage else { return };
        const PAGE: usize = 4096;
        let start = self.range.start.div_ceil(PAGE) * PAGE;
        let end = self.range.end / PAGE * PAGE;
        if start < end {
            // Advice only: a failure changes nothing but memory use.
            // SAFETY: the map is read-only and file-backed, so dropped pages
            // read back the same bytes from the file.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    /// A sub-range of this blob, or `None` if it does not lie inside it.
    pub fn slice(&self, range: Range<usize>) -> Option<Blob> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        let start = self.range.start + range.start;
        Some(Blob { storage: self.storage.clone(), range: start..start + range.len() })
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.range.clone()]
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside() {
        let b = Blob::from_vec((0u8..10).collect());
        let s = b.slice(2..6).unwrap();
        assert_eq!(&*s, &[2, 3, 4, 5]);
        assert_eq!(&*s.slice(1..3).unwrap(), &[3, 4]);
        assert!(s.slice(3..5).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..3;
        assert!(b.slice(reversed).is_none());
    }
}
