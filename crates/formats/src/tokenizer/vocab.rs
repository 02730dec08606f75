//! A GGUF-embedded vocabulary: the plain key values, and the checked,
//! indexed form the tokenizers run on.
//!
//! Follows llama.cpp's `llama_vocab::impl::load`: token types become
//! attributes, special ids get llama.cpp's per-model defaults and are dropped
//! when out of range, the end-of-generation set is the eos/eot/eom ids plus the
//! tokens whose text llama.cpp recognises (`<|im_end|>`, `<|eot_id|>`, …), and
//! the special-token list used for splitting is sorted longest first.

use std::collections::HashMap;

use super::pretokenize::PreSettings;
use super::unicode;
use super::TokenizerError;

/// `tokenizer.ggml.*` values as stored in a GGUF file, before any checking.
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: "llama" (SentencePiece) or "gpt2" (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer name.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, "left right" per line, rank = index.
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
    /// `general.name`; llama.cpp keys a Phi-3 quirk on it.
    pub name: Option<String>,
}

pub(crate) const ATTR_NORMAL: u16 = 1 << 0;
pub(crate) const ATTR_UNKNOWN: u16 = 1 << 1;
pub(crate) const ATTR_UNUSED: u16 = 1 << 2;
pub(crate) const ATTR_CONTROL: u16 = 1 << 3;
pub(crate) const ATTR_USER_DEFINED: u16 = 1 << 4;
pub(crate) const ATTR_BYTE: u16 = 1 << 5;
pub(crate) const ATTR_UNDEFINED: u16 = 1 << 6;
pub(crate) const ATTR_RSTRIP: u16 = 1 << 7;
pub(crate) const ATTR_LSTRIP: u16 = 1 << 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Spm,
    Bpe,
}

/// Token texts whose presence marks end of generation (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];
/// FIM tokens llama.cpp also treats as end of generation.
const FIM_EOG_TEXTS: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// A checked vocabulary ready for encoding and decoding.
pub(crate) struct Vocab {
    pub(crate) kind: Kind,
    pub(crate) tokens: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u16>,
    pub(crate) token_to_id: HashMap<String, u32>,
    /// "left right" → rank.
    pub(crate) merges: HashMap<String, u32>,
    pub(crate) pre: Option<PreSettings>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) eog: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    pub(crate) specials: Vec<u32>,
    /// Bytes each token contributes to decoded text.
    pub(crate) pieces: Vec<Vec<u8>>,
    pub(crate) chat_template: Option<String>,
}

impl Vocab {
    pub(crate) fn new(v: GgufVocab) -> Result<Vocab, TokenizerError> {
        let kind = match v.model.as_str() {
            "llama" => Kind::Spm,
            "gpt2" => Kind::Bpe,
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };
        let n = v.tokens.len();
        if n == 0 {
            return Err(TokenizerError::MissingKey("tokenizer.ggml.tokens"));
        }
        let check_len = |what: &'static str, len: usize| {
            if len < n {
                Err(TokenizerError::LengthMismatch { what, len, n_tokens: n })
            } else {
                Ok(())
            }
        };
        let scores = match v.scores {
            Some(s) => {
                check_len("tokenizer.ggml.scores", s.len())?;
                s
            }
            None => vec![0.0; n],
        };
        let mut attrs = vec![ATTR_NORMAL; n];
        if let Some(types) = &v.token_types {
            check_len("tokenizer.ggml.token_type", types.len())?;
            for (a, t) in attrs.iter_mut().zip(types) {
                *a = match t {
                    1 => ATTR_NORMAL,
                    2 => ATTR_UNKNOWN,
                    3 => ATTR_CONTROL,
                    4 => ATTR_USER_DEFINED,
                    5 => ATTR_UNUSED,
                    6 => ATTR_BYTE,
                    _ => ATTR_UNDEFINED,
                };
            }
        }
        let mut tokens = v.tokens;
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
            if let Some(prev) = token_to_id.insert(t.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken { text: t.clone(), first: prev, second: i as u32 });
            }
        }

        let mut merges = HashMap::new();
        let mut pre = None;
        let (mut add_bos, mut add_space_prefix) = (true, true);
        let (mut bos, mut eos, mut unk) = (Some(1), Some(2), Some(0));
        if kind == Kind::Bpe {
            let lines = v.merges.ok_or(TokenizerError::MissingKey("tokenizer.ggml.merges"))?;
            merges.reserve(lines.len());
            for (i, line) in lines.iter().enumerate() {
                // Split at the first space after the first byte (llama.cpp).
                let pos = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
                let Some(pos) = pos else {
                    return Err(TokenizerError::BadMerge { line: i + 1, text: line.clone() });
                };
                let key = format!("{} {}", &line[..pos], &line[pos + 1..]);
                merges.entry(key).or_insert(i as u32);
            }
            let settings = PreSettings::from_name(v.pre.as_deref())?;
            add_bos = settings.add_bos;
            add_space_prefix = false;
            pre = Some(settings);
            (bos, eos, unk) = (None, None, None);
        }
        if let Some(b) = v.add_space_prefix {
            add_space_prefix = b;
        }
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let pick = |key: Option<u32>, default: Option<u32>| match key {
            Some(k) if (k as usize) < n => Some(k),
            _ => in_range(default),
        };
        let bos = pick(v.bos_id, bos);
        let eos = pick(v.eos_id, eos);
        let unk = pick(v.unk_id, unk);
        let eot = in_range(v.eot_id);
        let eom = in_range(v.eom_id);
        if let Some(b) = v.add_bos {
            add_bos = b;
        }
        if add_bos && bos.is_none() {
            add_bos = false;
        }

        // End of generation: known texts (forced to control), fim tokens, eos/eot/eom.
        let mut eog = Vec::new();
        for (texts, fim) in [(EOG_TEXTS, false), (FIM_EOG_TEXTS, true)] {
            for t in texts.iter() {
                if let Some(&id) = token_to_id.get(*t) {
                    if !fim {
                        attrs[id as usize] |= ATTR_CONTROL;
                    }
                    eog.push(id);
                }
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0)
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));

        // Phi-3: special tokens swallow the whitespace after them (llama.cpp).
        let name = v.name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &specials {
                attrs[id as usize] |= ATTR_RSTRIP;
            }
            for (t, on) in [("</s>", true), ("<unk>", false), ("<s>", false), ("<|endoftext|>", false)] {
                if let Some(&id) = token_to_id.get(t) {
                    if on {
                        attrs[id as usize] |= ATTR_RSTRIP;
                    } else {
                        attrs[id as usize] &= !ATTR_RSTRIP;
                    }
                }
            }
        }

        let pieces = (0..n).map(|i| piece(kind, &tokens[i], attrs[i])).collect();
        Ok(Vocab {
            kind,
            tokens,
            scores,
            attrs,
            token_to_id,
            merges,
            pre,
            bos,
            eos,
            unk,
            add_bos,
            add_space_prefix,
            eog,
            specials,
            pieces,
            chat_template: v.chat_template,
        })
    }

    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// SentencePiece byte fallback: `<0xXX>`, else the byte itself as a token.
    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        self.id(&format!("<0x{b:02X}>")).or_else(|| std::str::from_utf8(&[b]).ok().and_then(|s| self.id(s)))
    }
}

/// Bytes a token contributes to text (llama.cpp's `token_to_piece` with
/// special tokens rendered).
fn piece(kind: Kind, text: &str, attr: u16) -> Vec<u8> {
    if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if attr & ATTR_NORMAL != 0 {
        return match kind {
            Kind::Spm => text.replace('\u{2581}', " ").into_bytes(),
            Kind::Bpe => byte_level_decode(text),
        };
    }
    if attr & ATTR_BYTE != 0 {
        return parse_byte_token(text).map(|b| vec![b]).unwrap_or_default();
    }
    Vec::new()
}

/// `<0xXX>` → the byte.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2 byte-level text → raw bytes; code points outside the byte map are
/// kept as their own UTF-8.
pub(crate) fn byte_level_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}
