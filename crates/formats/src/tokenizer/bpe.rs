//! Byte-level BPE with ranked merges (`tokenizer.ggml.model = "gpt2"`).
//!
//! Follows llama.cpp's `llm_tokenizer_bpe_session`: the pre-tokenizer splits
//! the text into words, each word's bytes are mapped to GPT-2's printable code
//! points, and within a word the adjacent pair with the lowest merge rank
//! merges first (ties: leftmost) until no pair has a rank. A final symbol that
//! is not a vocabulary entry is emitted byte by byte where single bytes are
//! tokens and dropped otherwise — exactly what llama.cpp does.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::unicode::byte_to_char;
use super::vocab::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    start: usize,
    len: usize,
}

struct Bigram {
    left: usize,
    right: usize,
    rank: u32,
    /// Byte range the merged pair covered when queued; stale if it changed.
    start: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order: lowest rank first, then smallest `left`.
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
    }
}

/// Maps raw bytes to GPT-2's byte-level alphabet.
pub(crate) fn byte_encode(word: &str) -> String {
    word.bytes().map(byte_to_char).collect()
}

/// Appends the tokens of `text` to `out`.
pub(crate) fn tokenize(vocab: &Vocab, ignore_merges: bool, text: &str, out: &mut Vec<u32>) {
    let Some(pre) = &vocab.pre else {
        return;
    };
    for word in pre.pre.split(text) {
        let word = byte_encode(word);
        if ignore_merges {
            if let Some(id) = vocab.id(&word) {
                out.push(id);
                continue;
            }
        }
        tokenize_word(vocab, &word, out);
    }
}

fn tokenize_word(vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.chars().count());
    for (i, (start, c)) in word.char_indices().enumerate() {
        let end = start + c.len_utf8();
        symbols.push(Symbol {
            prev: i.checked_sub(1),
            next: (end < word.len()).then_some(i + 1),
            start,
            len: c.len_utf8(),
        });
    }
    let mut queue = BinaryHeap::new();
    let mut key = String::new();
    let mut add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, l: Option<usize>, r: Option<usize>| {
        let (Some(l), Some(r)) = (l, r) else { return };
        let (ls, rs) = (symbols[l], symbols[r]);
        key.clear();
        key.push_str(&word[ls.start..ls.start + ls.len]);
        key.push(' ');
        key.push_str(&word[rs.start..rs.start + rs.len]);
        if let Some(&rank) = vocab.merges.get(key.as_str()) {
            queue.push(Bigram { left: l, right: r, rank, start: ls.start, size: ls.len + rs.len });
        }
    };
    for i in 1..symbols.len() {
        add(&symbols, &mut queue, Some(i - 1), Some(i));
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Symbols only grow to the right and are contiguous, so an unchanged
        // (start, size) means the same text as when the pair was queued.
        if l.len == 0 || r.len == 0 || l.start != b.start || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        add(&symbols, &mut queue, l.prev, Some(b.left));
        add(&symbols, &mut queue, Some(b.left), r.next);
    }
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        let s = symbols[idx];
        let text = &word[s.start..s.start + s.len];
        match vocab.id(text) {
            Some(id) => out.push(id),
            None => {
                for b in text.bytes() {
                    if let Some(id) = std::str::from_utf8(&[b]).ok().and_then(|t| vocab.id(t)) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
