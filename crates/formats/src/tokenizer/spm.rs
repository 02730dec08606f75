//! SentencePiece-style BPE over a scored vocabulary (`tokenizer.ggml.model = "llama"`).
//!
//! Follows llama.cpp's `llm_tokenizer_spm_session` (itself the original
//! llama.cpp SPM port): the text, with spaces already escaped to `▁`, starts as
//! one symbol per code point; the adjacent pair whose concatenation is the
//! highest-scoring vocabulary entry merges first (ties: leftmost), until no
//! pair is in the vocabulary. A final symbol that is not a token is split back
//! along the merges that built it — which only happens to single code points —
//! so it falls back to `<0xXX>` byte tokens (or UNK without byte tokens).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

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
    score: f32,
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
    /// Max-heap order: higher score first, then smaller `left`.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
    }
}

/// Appends the tokens of `text` (spaces already escaped) to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let end = start + c.len_utf8();
        symbols.push(Symbol {
            prev: i.checked_sub(1),
            next: (end < text.len()).then_some(i + 1),
            start,
            len: c.len_utf8(),
        });
    }
    let mut session = Session { vocab, text, symbols, queue: BinaryHeap::new() };
    for i in 1..session.symbols.len() {
        session.try_add_bigram(Some(i - 1), Some(i));
    }
    while let Some(b) = session.queue.pop() {
        let (l, r) = (session.symbols[b.left], session.symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        session.symbols[b.left].len += r.len;
        session.symbols[b.right].len = 0;
        session.symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            session.symbols[n].prev = Some(b.left);
        }
        session.try_add_bigram(l.prev, Some(b.left));
        session.try_add_bigram(Some(b.left), r.next);
    }
    let mut i = if session.symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        session.resegment(idx, out);
        i = session.symbols[idx].next;
    }
}

struct Session<'a> {
    vocab: &'a Vocab,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

impl<'a> Session<'a> {
    fn sym_text(&self, s: &Symbol) -> &'a str {
        self.text.get(s.start..s.start + s.len).unwrap_or("")
    }

    fn try_add_bigram(&mut self, left: Option<usize>, right: Option<usize>) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (self.symbols[left], self.symbols[right]);
        let Some(text) = self.text.get(l.start..l.start + l.len + r.len) else {
            return;
        };
        let Some(id) = self.vocab.id(text) else {
            return;
        };
        self.queue.push(Bigram { left, right, score: self.vocab.scores[id as usize], size: text.len() });
    }

    fn resegment(&self, idx: usize, out: &mut Vec<u32>) {
        let text = self.sym_text(&self.symbols[idx]);
        if let Some(id) = self.vocab.id(text) {
            out.push(id);
            return;
        }
        // Merges only ever form vocabulary entries, so a symbol that is not a
        // token is a single unmerged code point (llama.cpp's `rev_merge`
        // lookup never succeeds for it): fall back to its bytes.
        for &b in text.as_bytes() {
            if let Some(id) = self.vocab.byte_token(b).or(self.vocab.unk) {
                out.push(id);
            }
        }
    }
}
