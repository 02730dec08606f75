//! Reading `tokenizer.ggml.*` keys from a GGUF file into a [`GgufVocab`].
//!
//! A thin adapter: type mismatches are errors naming the key; absent optional
//! keys stay `None` so the defaults live in one place ([`super::vocab`]).

use super::vocab::GgufVocab;
use super::TokenizerError;
use crate::gguf::{GgufFile, Value};

fn array<'a>(g: &'a GgufFile, key: &'static str) -> Result<Option<&'a [Value]>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_array().map(Some).ok_or(TokenizerError::BadKey { key, expected: "an array" }),
    }
}

fn strings(g: &GgufFile, key: &'static str) -> Result<Option<Vec<String>>, TokenizerError> {
    let Some(a) = array(g, key)? else {
        return Ok(None);
    };
    a.iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or(TokenizerError::BadKey { key, expected: "an array of strings" })
}

fn id(g: &GgufFile, key: &'static str) -> Result<Option<u32>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        // Negative ids (some converters write -1 for "none") mean absent.
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(u), _) => Ok(u32::try_from(u).ok()),
            (None, Some(_)) => Ok(None),
            _ => Err(TokenizerError::BadKey { key, expected: "an integer token id" }),
        },
    }
}

fn flag(g: &GgufFile, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(TokenizerError::BadKey { key, expected: "a bool" }),
    }
}

fn string(g: &GgufFile, key: &'static str) -> Result<Option<String>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or(TokenizerError::BadKey { key, expected: "a string" }),
    }
}

pub(crate) fn read(g: &GgufFile) -> Result<GgufVocab, TokenizerError> {
    let model = string(g, "tokenizer.ggml.model")?.ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
    let tokens = strings(g, "tokenizer.ggml.tokens")?.ok_or(TokenizerError::MissingKey("tokenizer.ggml.tokens"))?;
    let scores = match array(g, "tokenizer.ggml.scores")? {
        None => None,
        Some(a) => Some(
            a.iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenizerError::BadKey { key: "tokenizer.ggml.scores", expected: "an array of numbers" })?,
        ),
    };
    let token_types = match array(g, "tokenizer.ggml.token_type")? {
        None => None,
        Some(a) => Some(
            a.iter()
                .map(|v| v.as_i64().and_then(|i| i32::try_from(i).ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenizerError::BadKey { key: "tokenizer.ggml.token_type", expected: "an array of integers" })?,
        ),
    };
    Ok(GgufVocab {
        model,
        pre: string(g, "tokenizer.ggml.pre")?,
        tokens,
        scores,
        token_types,
        merges: strings(g, "tokenizer.ggml.merges")?,
        bos_id: id(g, "tokenizer.ggml.bos_token_id")?,
        eos_id: id(g, "tokenizer.ggml.eos_token_id")?,
        eot_id: id(g, "tokenizer.ggml.eot_token_id")?,
        eom_id: id(g, "tokenizer.ggml.eom_token_id")?,
        unk_id: id(g, "tokenizer.ggml.unknown_token_id")?,
        pad_id: id(g, "tokenizer.ggml.padding_token_id")?,
        add_bos: flag(g, "tokenizer.ggml.add_bos_token")?,
        add_eos: flag(g, "tokenizer.ggml.add_eos_token")?,
        add_space_prefix: flag(g, "tokenizer.ggml.add_space_prefix")?,
        chat_template: string(g, "tokenizer.chat_template")?,
        name: string(g, "general.name")?,
    })
}
