//! Tokenizers: text ↔ token ids, for GGUF-embedded vocabularies and Hugging
//! Face `tokenizer.json` directories.
//!
//! GGUF vocabularies are tokenized the way llama.cpp's `src/llama-vocab.cpp`
//! does it, so ids match llama.cpp's test vectors exactly:
//! special tokens are split out first ([`special`], llama.cpp's
//! `tokenizer_st_partition`), then each text fragment goes through
//! SentencePiece-style score merging ([`spm`], `llm_tokenizer_spm`) or
//! byte-level BPE behind a regex pre-tokenizer ([`bpe`], [`pretokenize`],
//! `llm_tokenizer_bpe`). `tokenizer.json` directories are encoded by the
//! Hugging Face `tokenizers` crate ([`hf`]).
//!
//! Guarantees: no input panics — any `&str` encodes, any id decodes (an
//! out-of-range id contributes no bytes); `decode` is the lossy UTF-8 of the
//! concatenated [`Tokenizer::token_bytes`] (minus SentencePiece's one leading
//! space), and [`StreamDecoder`] yields exactly the same text incrementally.

mod bpe;
mod gguf_keys;
mod hf;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod vocab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::gguf::GgufFile;

pub use stream::StreamDecoder;
pub use vocab::GgufVocab;

/// What went wrong loading a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unknown tokenizer model \"{0}\" (supported: llama, gpt2)")]
    UnknownModel(String),
    #[error("unknown pre-tokenizer \"{name}\" (supported: {supported})")]
    UnknownPreTokenizer { name: String, supported: &'static str },
    #[error("missing key {0}")]
    MissingKey(&'static str),
    #[error("key {key} should be {expected}")]
    BadKey { key: &'static str, expected: &'static str },
    #[error("{what} has {len} entries but the vocabulary has {n_tokens} tokens")]
    LengthMismatch { what: &'static str, len: usize, n_tokens: usize },
    #[error("duplicate token {text:?} in vocabulary (ids {first} and {second})")]
    DuplicateToken { text: String, first: u32, second: u32 },
    #[error("bad merges line {line}: {text:?} (expected \"left right\")")]
    BadMerge { line: usize, text: String },
    #[error("pre-tokenizer regex {regex:?} does not compile: {message}")]
    BadRegex { regex: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// How [`Tokenizer::encode`] treats the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Prepend the BOS token (when the vocabulary has one). Pass
    /// [`Tokenizer::add_bos_by_default`] for the model's own choice.
    pub add_bos: bool,
    /// Match control tokens such as `<|im_start|>` written in the text.
    /// User-defined tokens are matched either way (as llama.cpp does).
    pub parse_special: bool,
}

enum Backend {
    Gguf(Box<vocab::Vocab>),
    Hf(Box<hf::HfTokenizer>),
}

/// A loaded tokenizer. Cheap to share by reference; all methods take `&self`.
pub struct Tokenizer {
    backend: Backend,
}

impl Tokenizer {
    /// The vocabulary embedded in a GGUF file (a vocab-only GGUF is enough).
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Self::from_vocab(gguf_keys::read(g)?)
    }

    /// A tokenizer from already-extracted GGUF vocabulary values.
    pub fn from_vocab(v: GgufVocab) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer { backend: Backend::Gguf(Box::new(vocab::Vocab::new(v)?)) })
    }

    /// A Hugging Face model directory: `tokenizer.json`, plus
    /// `tokenizer_config.json` and `generation_config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer { backend: Backend::Hf(Box::new(hf::HfTokenizer::load(dir)?)) })
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        match &self.backend {
            Backend::Gguf(v) => encode_gguf(v, text, opts),
            Backend::Hf(h) => h.encode(text, opts),
        }
    }

    /// Text of `ids`: lossy UTF-8, special tokens rendered as their text,
    /// SentencePiece's leading space (added by encoding) removed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id);
            if i == 0 && self.strips_leading_space() {
                bytes.extend_from_slice(piece.strip_prefix(b" ").unwrap_or(piece));
            } else {
                bytes.extend_from_slice(piece);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Raw bytes token `id` contributes to text (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.piece(id).to_vec()
    }

    /// The vocabulary entry as stored (e.g. `▁the`, `Ġthe`, `<0x0A>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens().get(id as usize).map(String::as_str)
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.tokens().len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        match &self.backend {
            Backend::Gguf(v) => v.bos,
            Backend::Hf(h) => h.bos,
        }
    }

    /// Whether the model expects a BOS token at the start of a prompt.
    pub fn add_bos_by_default(&self) -> bool {
        match &self.backend {
            Backend::Gguf(v) => v.add_bos,
            Backend::Hf(h) => h.add_bos,
        }
    }

    /// Every id that ends generation (eos, eot, `<|im_end|>`, …), sorted.
    pub fn eos_ids(&self) -> &[u32] {
        match &self.backend {
            Backend::Gguf(v) => &v.eog,
            Backend::Hf(h) => &h.eog,
        }
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eos_ids().binary_search(&id).is_ok()
    }

    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.token_map().get(text).copied()
    }

    /// The Jinja chat template shipped with the model, if any.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.backend {
            Backend::Gguf(v) => v.chat_template.as_deref(),
            Backend::Hf(h) => h.chat_template.as_deref(),
        }
    }

    /// Text of the BOS token ("" if none), for chat templates.
    pub fn bos_text(&self) -> &str {
        self.bos_id().and_then(|i| self.token_text(i)).unwrap_or("")
    }

    /// Text of the EOS token ("" if none), for chat templates.
    pub fn eos_text(&self) -> &str {
        let eos = match &self.backend {
            Backend::Gguf(v) => v.eos,
            Backend::Hf(h) => h.eos,
        };
        eos.and_then(|i| self.token_text(i)).unwrap_or("")
    }

    fn tokens(&self) -> &[String] {
        match &self.backend {
            Backend::Gguf(v) => &v.tokens,
            Backend::Hf(h) => &h.tokens,
        }
    }

    fn token_map(&self) -> &HashMap<String, u32> {
        match &self.backend {
            Backend::Gguf(v) => &v.token_to_id,
            Backend::Hf(h) => &h.token_to_id,
        }
    }

    pub(crate) fn piece(&self, id: u32) -> &[u8] {
        let pieces = match &self.backend {
            Backend::Gguf(v) => &v.pieces,
            Backend::Hf(h) => &h.pieces,
        };
        pieces.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// SentencePiece models drop one space at the start of decoded text.
    pub(crate) fn strips_leading_space(&self) -> bool {
        match &self.backend {
            Backend::Gguf(v) => v.add_space_prefix,
            Backend::Hf(h) => h.strip_space,
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Gguf(v) => match v.kind {
                vocab::Kind::Spm => "gguf/spm",
                vocab::Kind::Bpe => "gguf/bpe",
            },
            Backend::Hf(_) => "tokenizer.json",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos_id())
            .field("eog", &self.eos_ids())
            .finish()
    }
}

/// llama.cpp's `llama_vocab::impl::tokenize` for SPM and BPE vocabularies.
fn encode_gguf(v: &vocab::Vocab, text: &str, opts: EncodeOptions) -> Vec<u32> {
    let mut out = Vec::new();
    if opts.add_bos {
        out.extend(v.bos);
    }
    // SPM prefixes a space to text at the start and after every special token.
    let mut prev_special = true;
    for frag in special::partition(v, text, opts.parse_special) {
        match frag {
            special::Fragment::Token(id) => {
                out.push(id);
                prev_special = true;
            }
            special::Fragment::Text { start, end } => {
                let piece = &text[start..end];
                match v.kind {
                    vocab::Kind::Spm => {
                        let mut s = String::with_capacity(piece.len() + 3);
                        if v.add_space_prefix && prev_special {
                            s.push(' ');
                        }
                        s.push_str(piece);
                        let escaped = s.replace(' ', "\u{2581}");
                        spm::tokenize(v, &escaped, &mut out);
                    }
                    vocab::Kind::Bpe => {
                        let ignore = v.pre.as_ref().is_some_and(|p| p.ignore_merges);
                        bpe::tokenize(v, ignore, piece, &mut out);
                    }
                }
                prev_special = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
