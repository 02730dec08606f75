//! The committed fuzz seeds (`fuzz/corpus/`, written by `fuzz/make_corpus.py`)
//! replayed through the same calls as the fuzz targets, so `cargo test` checks
//! that they stay meaningful (the GGUF seeds open and carry working
//! vocabularies; the hostile templates end in errors) and never panic.

use std::path::{Path, PathBuf};

use memwall_formats::chat_template::{render, ChatMessage};
use memwall_formats::gguf::GgufFile;
use memwall_formats::safetensors::SafeTensors;
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use memwall_formats::Blob;

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = corpus(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

fn all_seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds for {target}");
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn gguf_seeds_open_and_carry_working_vocabularies() {
    for bytes in all_seeds("gguf") {
        GgufFile::from_blob(Blob::from_vec(bytes)).expect("every GGUF seed is a valid file");
    }
    let g = GgufFile::from_blob(Blob::from_vec(seed("gguf", "all_value_types"))).unwrap();
    assert_eq!((g.alignment(), g.tensors().len(), g.metadata().len()), (64, 2, 14));
    for (name, vocab) in [("llama_spm", 19), ("qwen2_bpe", 19)] {
        let g = GgufFile::from_blob(Blob::from_vec(seed("gguf", name))).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tok.vocab_size(), vocab, "{name}");
        let ids = tok.encode("hello world abcd", EncodeOptions::default());
        assert!(!ids.is_empty(), "{name}");
    }
}

#[test]
fn safetensors_seeds_open() {
    let tensors = |name| SafeTensors::from_blob(Blob::from_vec(seed("safetensors", name))).unwrap().tensors().len();
    assert_eq!((tensors("empty_header"), tensors("two_tensors"), tensors("odd_dtypes")), (0, 2, 4));
}

/// Splits a chat_template seed the way the fuzz target does.
fn template_input(bytes: &[u8]) -> (String, Vec<ChatMessage>, bool) {
    let (&flags, rest) = bytes.split_first().unwrap();
    let mut parts = rest.split(|&b| b == 0);
    let template = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
    let messages = parts
        .map(|m| {
            let mut rc = m.splitn(2, |&b| b == 1);
            let role = String::from_utf8_lossy(rc.next().unwrap_or_default()).into_owned();
            let content = String::from_utf8_lossy(rc.next().unwrap_or_default()).into_owned();
            ChatMessage::new(role, content)
        })
        .collect();
    (template, messages, flags & 1 == 1)
}

#[test]
fn chat_template_seeds_render_or_stop_at_a_limit() {
    for name in ["llama", "qwen2", "phi3", "gpt2"] {
        let (t, m, gen) = template_input(&seed("chat_template", name));
        let out = render(&t, &m, gen, "<s>", "</s>").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.contains("And now?"), "{name}: {out}");
    }
    for (name, limit) in [("hostile0", "nests more than"), ("hostile1", "steps")] {
        let (t, m, gen) = template_input(&seed("chat_template", name));
        let err = render(&t, &m, gen, "", "").unwrap_err().to_string();
        assert!(err.contains(limit), "{name}: {err}");
    }
}
