//! Tokenizers on arbitrary input: encoding any text with real vocabularies
//! (the committed fixture GGUFs: SentencePiece llama, byte-level BPE qwen2
//! and gpt2), decoding arbitrary id lists, and small random vocabularies
//! built from the input. Never panics; the streaming decoder yields exactly
//! what `decode` does; ids are always inside the vocabulary.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memwall_formats::gguf::GgufFile;
use memwall_formats::tokenizer::{EncodeOptions, GgufVocab, StreamDecoder, Tokenizer};
use memwall_formats::Blob;

static FIXTURES: [&[u8]; 3] = [
    include_bytes!("../../tests/fixtures/models/llama.gguf"),
    include_bytes!("../../tests/fixtures/models/qwen2.gguf"),
    include_bytes!("../../tests/fixtures/models/gpt2.gguf"),
];

fn real() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|bytes| {
                let g = GgufFile::from_blob(Blob::from_vec(bytes.to_vec())).expect("fixture GGUF opens");
                Tokenizer::from_gguf(&g).expect("fixture vocabulary loads")
            })
            .collect()
    })
}

#[derive(Arbitrary, Debug)]
struct RandomVocab<'a> {
    bpe: bool,
    pre: Option<u8>,
    tokens: Vec<&'a str>,
    scores: Option<Vec<f32>>,
    token_types: Option<Vec<i8>>,
    merges: Option<Vec<&'a str>>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: Option<bool>,
    add_space_prefix: Option<bool>,
}

const PRE: [&str; 8] = ["default", "llama3", "qwen2", "gpt-2", "deepseek-llm", "falcon", "tekken", "no-such-pre"];

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Encode { vocab: u8, text: &'a str, add_bos: bool, parse_special: bool },
    Decode { vocab: u8, ids: Vec<u32> },
    Random { vocab: RandomVocab<'a>, text: &'a str, parse_special: bool, ids: Vec<u16> },
}

/// Encodes and decodes `text` and checks the invariants every tokenizer keeps.
fn exercise(tok: &Tokenizer, text: &str, opts: EncodeOptions, extra_ids: &[u32]) {
    let ids = tok.encode(text, opts);
    assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()), "id out of the vocabulary");
    check_decode(tok, &ids);
    check_decode(tok, extra_ids);
}

fn check_decode(tok: &Tokenizer, ids: &[u32]) {
    let whole = tok.decode(ids);
    let mut stream = StreamDecoder::new(tok);
    let mut streamed = String::new();
    for &id in ids {
        streamed.push_str(&stream.push(id));
    }
    streamed.push_str(&stream.finish());
    assert_eq!(streamed, whole, "streaming decode differs from decode for {ids:?}");
}

fuzz_target!(|input: Input| match input {
    Input::Encode { vocab, text, add_bos, parse_special } => {
        let tok = &real()[vocab as usize % FIXTURES.len()];
        exercise(tok, text, EncodeOptions { add_bos, parse_special }, &[]);
    }
    Input::Decode { vocab, ids } => check_decode(&real()[vocab as usize % FIXTURES.len()], &ids),
    Input::Random { vocab: v, text, parse_special, ids } => {
        let vocab = GgufVocab {
            model: if v.bpe { "gpt2" } else { "llama" }.to_string(),
            pre: v.pre.map(|p| PRE[p as usize % PRE.len()].to_string()),
            tokens: v.tokens.iter().map(|s| s.to_string()).collect(),
            scores: v.scores,
            token_types: v.token_types.map(|t| t.into_iter().map(i32::from).collect()),
            merges: v.merges.map(|m| m.iter().map(|s| s.to_string()).collect()),
            bos_id: v.bos_id,
            eos_id: v.eos_id,
            unk_id: v.unk_id,
            add_bos: v.add_bos,
            add_space_prefix: v.add_space_prefix,
            ..GgufVocab::default()
        };
        if let Ok(tok) = Tokenizer::from_vocab(vocab) {
            let ids: Vec<u32> = ids.into_iter().map(u32::from).collect();
            exercise(&tok, text, EncodeOptions { add_bos: true, parse_special }, &ids);
        }
    }
});
