//! llama.cpp's tokenizer test vectors (`models/ggml-vocab-*.gguf{,.inp,.out}`):
//! each input, encoded without BOS and without special-token parsing, must
//! give exactly the ids Hugging Face `tokenizers` produced for it.
//!
//! Files live in `<workspace>/.cache/vocab/` and `<workspace>/.cache/models/`
//! (override with `MEMWALL_TEST_DATA=<dir containing vocab/ and models/>`);
//! `scripts/fetch-test-data.sh` puts them there. A missing file fails.
//! The Hugging Face fixtures in `tests/data/hf-tiny{,-spm}/` are committed
//! (each folder has the `generate.py` that made it).

use std::path::{Path, PathBuf};

use memwall_formats::gguf::GgufFile;
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};

fn data_dir() -> PathBuf {
    match std::env::var_os("MEMWALL_TEST_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"),
    }
}

fn need(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "missing test data {}: run scripts/fetch-test-data.sh (or set MEMWALL_TEST_DATA)",
        path.display()
    );
    path.to_owned()
}

fn load(path: &Path) -> Tokenizer {
    let g = GgufFile::open(&need(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs one vector file pair; returns failure descriptions.
fn check(tok: &Tokenizer, inp: &Path, out: &Path) -> (usize, Vec<String>) {
    let inp = std::fs::read_to_string(need(inp)).expect("read .inp");
    let out = std::fs::read_to_string(need(out)).expect("read .out");
    let mut cases: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if cases.last() == Some(&"") {
        cases.pop();
    }
    let expected: Vec<&str> = out.split('\n').collect();
    assert!(expected.len() >= cases.len(), "{} inputs but {} outputs", cases.len(), expected.len());
    let opts = EncodeOptions { add_bos: false, parse_special: false };
    let mut failures = Vec::new();
    for (i, (text, want)) in cases.iter().zip(&expected).enumerate() {
        let want: Vec<u32> = want.split_whitespace().map(|s| s.parse().expect("id in .out")).collect();
        let got = tok.encode(text, opts);
        if got != want {
            failures.push(format!("  case {i} {text:?}\n    expected {want:?}\n    got      {got:?}"));
        }
    }
    (cases.len(), failures)
}

/// Vectors for a vocabulary llama.cpp ships: `.cache/vocab/`. Vectors for a
/// model's own vocabulary (`model`) were made with llama.cpp by
/// `tools/smollm_vocab_vectors.py` and are committed in `tests/fixtures/vocab/`.
fn run(name: &str, model: Option<&str>) {
    let root = data_dir();
    let (gguf, vocab) = match model {
        Some(m) => {
            (root.join("models").join(m), Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vocab"))
        }
        None => (root.join("vocab").join(format!("ggml-vocab-{name}.gguf")), root.join("vocab")),
    };
    let tok = load(&gguf);
    let (n, failures) = check(
        &tok,
        &vocab.join(format!("ggml-vocab-{name}.gguf.inp")),
        &vocab.join(format!("ggml-vocab-{name}.gguf.out")),
    );
    assert!(failures.is_empty(), "{name}: {}/{n} cases pass\n{}", n - failures.len(), failures.join("\n"));
}

#[test]
fn llama_spm() {
    run("llama-spm", None);
}

#[test]
fn phi_3() {
    run("phi-3", None);
}

#[test]
fn gpt_2() {
    run("gpt-2", None);
}

#[test]
fn llama_bpe() {
    run("llama-bpe", None);
}

#[test]
fn qwen2() {
    run("qwen2", None);
}

#[test]
fn smollm() {
    run("smollm", Some("SmolLM2-135M-Instruct.Q4_1.gguf"));
}

// ---- behaviour beyond the vectors, on the same real vocabularies ----

const MULTIBYTE: &str = "Hello 🙂 世界 ñandú — 日本語のテキスト 👨‍👩‍👧 done\n\ttabs";

fn vocab_path(name: &str) -> PathBuf {
    data_dir().join("vocab").join(format!("ggml-vocab-{name}.gguf"))
}

fn smollm_tok() -> Tokenizer {
    load(&data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// Streams `ids` and checks every chunk against `decode`.
fn assert_stream_matches(tok: &Tokenizer, ids: &[u32]) {
    let mut dec = memwall_formats::tokenizer::StreamDecoder::new(tok);
    let mut streamed = String::new();
    let mut held_back = false;
    for &id in ids {
        let chunk = dec.push(id);
        held_back |= chunk.is_empty() && !tok.token_bytes(id).is_empty();
        streamed.push_str(&chunk);
    }
    streamed.push_str(&dec.finish());
    assert_eq!(streamed, tok.decode(ids));
    assert!(!streamed.contains('\u{FFFD}'), "valid text decoded with U+FFFD: {streamed:?}");
    assert!(held_back, "expected at least one token ending mid-character");
}

#[test]
fn stream_decoder_matches_decode_on_multibyte_text() {
    for tok in [load(&vocab_path("llama-spm")), load(&vocab_path("gpt-2")), smollm_tok()] {
        let ids = tok.encode(MULTIBYTE, EncodeOptions::default());
        assert_eq!(tok.decode(&ids), MULTIBYTE, "{tok:?}");
        assert_stream_matches(&tok, &ids);
    }
}

#[test]
fn stream_decoder_flushes_dangling_bytes_as_replacement() {
    let tok = load(&vocab_path("llama-spm"));
    let e4 = tok.token_to_id("<0xE4>").expect("byte token");
    let mut dec = memwall_formats::tokenizer::StreamDecoder::continuing(&tok);
    assert_eq!(dec.push(e4), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert_eq!(tok.decode(&[e4]), "\u{FFFD}");
}

#[test]
fn spm_leading_space_and_bos() {
    let tok = load(&vocab_path("llama-spm"));
    assert!(tok.add_bos_by_default());
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!((tok.bos_text(), tok.eos_text()), ("<s>", "</s>"));
    let ids = tok.encode("Hello world", EncodeOptions { add_bos: true, parse_special: false });
    assert_eq!(ids[0], 1);
    assert_eq!(tok.token_text(ids[1]), Some("▁Hello"));
    assert_eq!(tok.token_bytes(ids[1]), b" Hello");
    assert_eq!(tok.decode(&ids[1..]), "Hello world");
    assert_eq!(tok.token_bytes(tok.token_to_id("<0x0A>").unwrap()), b"\n");
    assert!(tok.is_eog(2));
}

#[test]
fn special_tokens_parsed_only_when_asked() {
    let tok = smollm_tok();
    let start = tok.token_to_id("<|im_start|>").expect("<|im_start|>");
    let text = "<|im_start|>user\nHi<|im_end|>";
    let on = tok.encode(text, EncodeOptions { add_bos: false, parse_special: true });
    let off = tok.encode(text, EncodeOptions { add_bos: false, parse_special: false });
    assert_eq!(on[0], start);
    assert_eq!(on.last().copied(), tok.token_to_id("<|im_end|>"));
    assert!(!off.contains(&start), "{off:?}");
    assert_eq!(tok.decode(&on), text);
    assert_eq!(tok.decode(&off), text);

    let spm = load(&vocab_path("llama-spm"));
    let ids = spm.encode("a</s>b", EncodeOptions { add_bos: false, parse_special: true });
    assert!(ids.contains(&2), "{ids:?}");
    let ids = spm.encode("a</s>b", EncodeOptions { add_bos: false, parse_special: false });
    assert!(!ids.contains(&2), "{ids:?}");
}

#[test]
fn smollm_end_of_generation_ids() {
    let tok = smollm_tok();
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    assert!(tok.is_eog(im_end) && tok.is_eog(eot), "{:?}", tok.eos_ids());
    assert!(!tok.add_bos_by_default());
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
    let llama3 = load(&vocab_path("llama-bpe"));
    assert!(llama3.add_bos_by_default());
    assert!(llama3.is_eog(llama3.token_to_id("<|eot_id|>").unwrap()));
}

#[test]
fn out_of_range_ids_are_empty() {
    for tok in [load(&vocab_path("llama-spm")), load(&vocab_path("qwen2"))] {
        assert!(tok.token_bytes(u32::MAX).is_empty());
        assert_eq!(tok.token_text(tok.vocab_size() as u32), None);
        assert_eq!(tok.decode(&[u32::MAX, tok.vocab_size() as u32]), "");
    }
}

#[test]
fn hf_dir_matches_python_tokenizers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf-tiny");
    let tok = Tokenizer::from_hf_dir(&dir).expect("load tests/data/hf-tiny");
    let plain = EncodeOptions { add_bos: false, parse_special: true };
    // Expected ids from Python `tokenizers` 0.2x on the same file.
    assert_eq!(tok.encode("Hello world!", plain), [294, 274, 276, 3]);
    let chat = "<|im_start|>user\nhi 🙂<|im_end|>";
    assert_eq!(tok.encode(chat, plain), [1, 87, 85, 261, 201, 74, 75, 223, 175, 256, 250, 227, 2]);
    let literal = tok.encode(chat, EncodeOptions { add_bos: false, parse_special: false });
    assert_eq!(
        literal,
        [
            30, 94, 75, 79, 65, 85, 86, 67, 84, 86, 94, 32, 87, 85, 261, 201, 74, 75, 223, 175, 256, 250, 227, 30, 94,
            75, 79, 65, 71, 80, 70, 94, 32
        ]
    );
    assert_eq!(tok.encode("日本語 text", plain), [165, 248, 101, 165, 253, 108, 167, 106, 255, 293]);
    assert_eq!(tok.decode(&tok.encode(MULTIBYTE, plain)), MULTIBYTE);
    assert_eq!(tok.bos_id(), Some(0));
    assert!(!tok.add_bos_by_default());
    assert_eq!(tok.encode("Hello", EncodeOptions { add_bos: true, parse_special: false })[0], 0);
    assert_eq!((tok.bos_text(), tok.eos_text()), ("<|endoftext|>", "<|im_end|>"));
    assert_eq!(tok.eos_ids(), [0, 2]);
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
    assert_stream_matches(&tok, &tok.encode(MULTIBYTE, plain));
}

#[test]
fn arbitrary_text_never_panics_and_round_trips() {
    use proptest::prelude::*;
    let toks = [
        load(&vocab_path("llama-spm")),
        load(&vocab_path("gpt-2")),
        load(&vocab_path("llama-bpe")),
        load(&vocab_path("qwen2")),
    ];
    let mut runner =
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 64, ..Default::default() });
    runner
        .run(&any::<String>(), |s| {
            for tok in &toks {
                let opts = EncodeOptions { add_bos: false, parse_special: true };
                let ids = tok.encode(&s, opts);
                prop_assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
                let _ = tok.decode(&ids);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn hf_spm_dir_matches_python_tokenizers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf-tiny-spm");
    let tok = Tokenizer::from_hf_dir(&dir).expect("load tests/data/hf-tiny-spm");
    let special = EncodeOptions { add_bos: false, parse_special: true };
    // Expected ids from Python `tokenizers` (tests/data/hf-tiny-spm/generate.py).
    assert_eq!(tok.encode("Hello world!", special), [274, 279, 267]);
    let text = "Hello 世界 é</s>";
    let ids = tok.encode(text, special);
    assert_eq!(ids, [274, 259, 268, 269, 259, 198, 172, 2]);
    assert_eq!(tok.decode(&ids), text);
    assert_stream_matches(&tok, &ids);
    let literal = tok.encode(text, EncodeOptions { add_bos: false, parse_special: false });
    assert!(!literal.contains(&2), "{literal:?}");
    assert_eq!(tok.decode(&literal), text);
    // The post-processor adds <s>, so BOS is on by default.
    assert_eq!(tok.bos_id(), Some(1));
    assert!(tok.add_bos_by_default());
    assert_eq!(tok.token_bytes(274), b" Hello");
    assert_eq!(tok.token_bytes(tok.token_to_id("<0xE4>").unwrap()), [0xE4]);
    assert_eq!(tok.eos_ids(), [2]);
}
