//! A bounds-checked little-endian reader over a byte slice: every read is a
//! `take(n)` that fails with [`Problem::Truncated`] instead of indexing past
//! the end.

use super::error::Problem;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], Problem> {
        let truncated = || Problem::Truncated { offset: self.pos as u64, needed: n, file_len: self.buf.len() as u64 };
        let n = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Problem> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Problem> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Problem> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Problem> {
        self.array().map(u64::from_le_bytes)
    }

    /// A `u64` length followed by that many bytes; the length is checked
    /// against the remaining bytes before anything is read.
    pub(crate) fn string_bytes(&mut self) -> Result<&'a [u8], Problem> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(Problem::StringTooLong { len, remaining: self.remaining() });
        }
        self.take(len)
    }

    /// A string that must be valid UTF-8 (keys and tensor names).
    pub(crate) fn strict_string(&mut self) -> Result<String, Problem> {
        let bytes = self.string_bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| Problem::BadUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2]);
        assert_eq!(c.u32(), Ok(1));
        assert!(matches!(c.u16(), Err(Problem::Truncated { offset: 4, needed: 2, file_len: 5 })));
        assert_eq!(c.u8(), Ok(2));
        assert!(c.take(u64::MAX).is_err());
        assert_eq!(c.take(0), Ok(&[][..]));
    }

    #[test]
    fn string_length_is_checked_first() {
        let mut bytes = (1u64 << 62).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let err = Cursor::new(&bytes).string_bytes().unwrap_err();
        assert_eq!(err, Problem::StringTooLong { len: 1 << 62, remaining: 3 });
    }
}
