//! A synthetic SentencePiece vocabulary of any size, in the
//! `tokenizer.ggml.*` keys llama.cpp and memwall read.
//!
//! Layout (as a real Llama SPM vocab): `<unk>` = 0, `<s>` = 1, `</s>` = 2,
//! the 256 byte tokens `<0x00>`…`<0xFF>` (llama.cpp looks up `<0x0A>` for
//! its newline token when it loads an SPM vocab), then distinct filler
//! pieces `▁t3`, `▁t4`, … up to the vocabulary size. Scores decrease with
//! the id, so every piece is a valid merge candidate.

use memwall_formats::gguf::{GgufError, GgufWriter, Value};

const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_BYTE: i32 = 6;

/// Smallest vocabulary this layout fits in.
pub const MIN_VOCAB: usize = 3 + 256;

/// Adds the tokenizer keys of a `vocab`-token synthetic SPM vocabulary.
pub fn add_spm_vocab(w: &mut GgufWriter, vocab: usize) -> Result<(), GgufError> {
    let vocab = vocab.max(MIN_VOCAB);
    let mut tokens = Vec::with_capacity(vocab);
    let mut types = Vec::with_capacity(vocab);
    tokens.extend(["<unk>", "<s>", "</s>"].map(str::to_string));
    types.extend([TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL]);
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TYPE_BYTE);
    }
    for i in tokens.len()..vocab {
        tokens.push(format!("\u{2581}t{i}"));
        types.push(TYPE_NORMAL);
    }
    let scores = (0..vocab).map(|i| Value::F32(-(i as f32))).collect();
    w.add_metadata("tokenizer.ggml.model", "llama")?;
    w.add_metadata("tokenizer.ggml.tokens", Value::Array(tokens.into_iter().map(Value::String).collect()))?;
    w.add_metadata("tokenizer.ggml.scores", Value::Array(scores))?;
    w.add_metadata("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect()))?;
    w.add_metadata("tokenizer.ggml.unknown_token_id", Value::U32(0))?;
    w.add_metadata("tokenizer.ggml.bos_token_id", Value::U32(1))?;
    w.add_metadata("tokenizer.ggml.eos_token_id", Value::U32(2))?;
    w.add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(true))?;
    w.add_metadata("tokenizer.ggml.add_eos_token", Value::Bool(false))?;
    Ok(())
}
