//! Splitting text on special tokens before the model tokenizer runs.
//!
//! Follows llama.cpp's `tokenizer_st_partition`: special tokens are tried one
//! after another, longest text first; each one cuts every remaining text
//! fragment at all of its occurrences. Control and unknown tokens are only
//! matched with `parse_special`; user-defined tokens are always matched (as
//! Hugging Face `tokenizers` does for non-special added tokens). A token with
//! the RSTRIP / LSTRIP attribute eats the ASCII whitespace after / before it.

use super::vocab::{Vocab, ATTR_CONTROL, ATTR_LSTRIP, ATTR_RSTRIP, ATTR_UNKNOWN};

/// A piece of the input: raw text (byte range) or an already-known token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text { start: 0, end: text.len() });
    let bytes = text.as_bytes();
    for &id in &vocab.specials {
        let attr = vocab.attrs[id as usize];
        if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.tokens[id as usize].as_str();
        if needle.is_empty() {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len());
        for frag in frags {
            let Fragment::Text { mut start, end } = frag else {
                next.push(frag);
                continue;
            };
            while let Some(found) = text[start..end].find(needle) {
                let m = start + found;
                let mut left_end = m;
                if attr & ATTR_LSTRIP != 0 {
                    while left_end > start && bytes[left_end - 1].is_ascii_whitespace_c() {
                        left_end -= 1;
                    }
                }
                if left_end > start {
                    next.push(Fragment::Text { start, end: left_end });
                }
                next.push(Fragment::Token(id));
                start = m + needle.len();
                if attr & ATTR_RSTRIP != 0 {
                    while start < end && bytes[start].is_ascii_whitespace_c() {
                        start += 1;
                    }
                }
            }
            if start < end {
                next.push(Fragment::Text { start, end });
            }
        }
        frags = next;
    }
    frags
}

trait CSpace {
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    /// C's `isspace` in the "C" locale (includes vertical tab, unlike Rust's).
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}
