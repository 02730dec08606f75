//! Incremental detokenization for streaming output.
//!
//! Tokens often end in the middle of a UTF-8 character (byte-fallback
//! `<0xE4>`, byte-level BPE pieces of an emoji). The decoder keeps such an
//! incomplete tail until the next token completes it, so every string it
//! returns is whole characters. Invalid sequences become U+FFFD exactly where
//! `String::from_utf8_lossy` would put them, so the concatenation of all
//! `push` results and `finish` always equals [`Tokenizer::decode`] of the same
//! ids — including SentencePiece's removal of one leading space, which
//! [`StreamDecoder::new`] applies like `decode` and
//! [`StreamDecoder::continuing`] skips (for text that continues a prompt).

use super::Tokenizer;

/// Push token ids, receive the text they complete.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
    first: bool,
}

impl<'a> StreamDecoder<'a> {
    /// Decodes like [`Tokenizer::decode`] (a SentencePiece leading space on
    /// the first token is dropped).
    pub fn new(tokenizer: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder { tokenizer, pending: Vec::new(), first: tokenizer.strips_leading_space() }
    }

    /// Decodes tokens that continue earlier text: every byte is kept.
    pub fn continuing(tokenizer: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder { tokenizer, pending: Vec::new(), first: false }
    }

    /// Adds one token; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tokenizer.piece(id);
        let piece = if std::mem::take(&mut self.first) { piece.strip_prefix(b" ").unwrap_or(piece) } else { piece };
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: the prefix was just validated.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            // Incomplete character at the end: keep it.
                            self.pending.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Flushes a dangling partial character as U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
