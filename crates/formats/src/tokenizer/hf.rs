//! Hugging Face model directories: `tokenizer.json` and its config files.
//!
//! Encoding is delegated to the `tokenizers` crate, so ids match
//! `transformers`. Two copies are kept: one that matches special added
//! tokens in text and one (`set_encode_special_tokens(true)`) that treats them
//! as plain text; non-special added tokens are matched by both, as in
//! `transformers`. BOS is added by us, not by the post-processor, so
//! [`EncodeOptions::add_bos`] means the same for every backend.
//!
//! Decoding uses our own per-token byte table: GPT-2 byte-level when the
//! decoder is `ByteLevel`, otherwise SentencePiece conventions (`▁` → space,
//! `<0xXX>` → byte); added tokens decode to their text.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value as Json;

use super::vocab::{byte_level_decode, parse_byte_token};
use super::{EncodeOptions, TokenizerError};

const EOG_TEXTS: &[&str] =
    &["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>"];

pub(crate) struct HfTokenizer {
    with_special: tokenizers::Tokenizer,
    literal: tokenizers::Tokenizer,
    pub(crate) tokens: Vec<String>,
    pub(crate) token_to_id: HashMap<String, u32>,
    pub(crate) pieces: Vec<Vec<u8>>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eog: Vec<u32>,
    pub(crate) add_bos: bool,
    pub(crate) strip_space: bool,
    pub(crate) chat_template: Option<String>,
}

fn read_json(path: &Path) -> Result<Option<Json>, TokenizerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TokenizerError::Io { path: path.to_owned(), source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::Parse { path: path.to_owned(), message: e.to_string() })
}

/// `"<s>"` or `{"content": "<s>", ...}`.
fn token_string(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// An id or a list of ids.
fn id_list(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n.as_u64().and_then(|u| u32::try_from(u).ok()).into_iter().collect(),
        Some(Json::Array(a)) => a.iter().filter_map(|x| x.as_u64().and_then(|u| u32::try_from(u).ok())).collect(),
        _ => Vec::new(),
    }
}

/// A template string, or the `"default"` entry of a list of named templates.
fn template(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some(name))
                    .and_then(|t| t.get("template")?.as_str().map(str::to_owned))
            };
            named("default").or_else(|| list.first().and_then(|t| t.get("template")?.as_str().map(str::to_owned)))
        }
        _ => None,
    }
}

/// Every decoder node (the decoder itself or the members of a Sequence).
fn decoder_nodes(tj: &Json) -> Vec<&Json> {
    match tj.get("decoder") {
        Some(d) if d.get("type").and_then(Json::as_str) == Some("Sequence") => {
            d.get("decoders").and_then(Json::as_array).map(|a| a.iter().collect()).unwrap_or_default()
        }
        Some(d) if !d.is_null() => vec![d],
        _ => Vec::new(),
    }
}

impl HfTokenizer {
    pub(crate) fn load(dir: &Path) -> Result<HfTokenizer, TokenizerError> {
        let tj_path = dir.join("tokenizer.json");
        let tj = read_json(&tj_path)?.ok_or_else(|| TokenizerError::Io {
            path: tj_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        })?;
        let parse_err = |e: Box<dyn std::error::Error + Send + Sync>| TokenizerError::Parse {
            path: tj_path.clone(),
            message: e.to_string(),
        };
        let with_special = tokenizers::Tokenizer::from_file(&tj_path).map_err(parse_err)?;
        let mut literal = with_special.clone();
        literal.set_encode_special_tokens(true);

        let token_to_id = with_special.get_vocab(true);
        let n = token_to_id.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        let mut tokens = vec![String::new(); n];
        for (t, &i) in &token_to_id {
            tokens[i as usize] = t.clone();
        }
        let added = with_special.get_added_tokens_decoder();

        let nodes = decoder_nodes(&tj);
        let node_is = |ty: &str| nodes.iter().any(|d| d.get("type").and_then(Json::as_str) == Some(ty));
        let byte_level = node_is("ByteLevel");
        let strip_space = nodes.iter().any(|d| {
            let ty = d.get("type").and_then(Json::as_str);
            (ty == Some("Strip")
                && d.get("content").and_then(Json::as_str) == Some(" ")
                && d.get("start").and_then(Json::as_u64).unwrap_or(0) > 0)
                || (ty == Some("Metaspace")
                    && (matches!(d.get("prepend_scheme").and_then(Json::as_str), Some("first" | "always"))
                        || d.get("add_prefix_space").and_then(Json::as_bool) == Some(true)))
        });
        let pieces = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if added.contains_key(&(i as u32)) {
                    t.as_bytes().to_vec()
                } else if byte_level {
                    byte_level_decode(t)
                } else if let Some(b) = parse_byte_token(t) {
                    vec![b]
                } else {
                    t.replace('\u{2581}', " ").into_bytes()
                }
            })
            .collect();

        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
        let gen = read_json(&dir.join("generation_config.json"))?.unwrap_or(Json::Null);
        let lookup = |t: Option<String>| t.and_then(|t| token_to_id.get(&t).copied());
        let bos =
            id_list(gen.get("bos_token_id")).first().copied().or_else(|| lookup(token_string(config.get("bos_token"))));
        let eos_text_id = lookup(token_string(config.get("eos_token")));
        let gen_eos = id_list(gen.get("eos_token_id"));
        let eos = eos_text_id.or(gen_eos.first().copied());
        let specials: HashSet<u32> = added.iter().filter(|(_, t)| t.special).map(|(&i, _)| i).collect();
        let mut eog: Vec<u32> = gen_eos.into_iter().chain(eos).collect();
        eog.extend(EOG_TEXTS.iter().filter_map(|t| token_to_id.get(*t)).filter(|i| specials.contains(i)));
        eog.retain(|&i| (i as usize) < n);
        eog.sort_unstable();
        eog.dedup();

        let add_bos = match config.get("add_bos_token").and_then(Json::as_bool) {
            Some(b) => b,
            // Ask the post-processor whether it adds BOS.
            None => bos.is_some_and(|b| {
                with_special.encode("a", true).map(|e| e.get_ids().first() == Some(&b)).unwrap_or(false)
            }),
        };
        let chat_template = template(config.get("chat_template"))
            .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        Ok(HfTokenizer {
            with_special,
            literal,
            tokens,
            token_to_id,
            pieces,
            bos,
            eos,
            eog,
            add_bos: add_bos && bos.is_some(),
            strip_space,
            chat_template,
        })
    }

    pub(crate) fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let tok = if opts.parse_special { &self.with_special } else { &self.literal };
        let mut out = Vec::new();
        if opts.add_bos {
            out.extend(self.bos);
        }
        if let Ok(e) = tok.encode(text, false) {
            out.extend_from_slice(e.get_ids());
        }
        out
    }
}
