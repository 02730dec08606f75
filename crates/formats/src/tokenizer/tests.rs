//! Unit tests on synthetic vocabularies (the real ones are exercised by
//! `tests/vocab_vectors.rs`).

use super::pretokenize::{PreSettings, SUPPORTED};
use super::*;

fn spm_vocab() -> GgufVocab {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for t in ["▁", "a", "b", "▁a", "ab", "▁ab", "<|user|>"] {
        tokens.push(t.into());
        types.push(if t == "<|user|>" { 4 } else { 1 });
    }
    let n = tokens.len();
    let scores = (0..n).map(|i| i as f32).collect();
    GgufVocab { model: "llama".into(), tokens, scores: Some(scores), token_types: Some(types), ..Default::default() }
}

#[test]
fn spm_merges_by_score_and_falls_back_to_bytes() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let id = |t: &str| tok.token_to_id(t).unwrap();
    let ids = tok.encode("ab a", EncodeOptions::default());
    assert_eq!(ids, [id("▁ab"), id("▁a")]);
    // 'é' is not in the vocabulary: two byte tokens.
    let ids = tok.encode("é", EncodeOptions { add_bos: true, parse_special: false });
    assert_eq!(ids, [1, id("▁"), id("<0xC3>"), id("<0xA9>")]);
    assert_eq!(tok.decode(&ids), "<s> é");
    assert_eq!(tok.decode(&ids[1..]), "é");
}

#[test]
fn user_defined_tokens_always_split_control_only_on_request() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let user = tok.token_to_id("<|user|>").unwrap();
    let ids = tok.encode("a<|user|>b", EncodeOptions::default());
    assert!(ids.contains(&user), "{ids:?}");
    let ids = tok.encode("a</s>", EncodeOptions::default());
    assert!(!ids.contains(&2), "{ids:?}");
    let ids = tok.encode("a</s>", EncodeOptions { add_bos: false, parse_special: true });
    assert_eq!(ids.last(), Some(&2));
    assert!(tok.is_eog(2));
}

#[test]
fn bad_vocabularies_are_errors() {
    let mut v = spm_vocab();
    v.model = "xyz".into();
    let e = Tokenizer::from_vocab(v).unwrap_err().to_string();
    assert!(e.contains("unknown tokenizer model \"xyz\""), "{e}");

    let bpe = |pre: &str, merges: Vec<&str>| GgufVocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens: vec!["a".into(), "b".into(), "ab".into()],
        merges: Some(merges.into_iter().map(String::from).collect()),
        ..Default::default()
    };
    let e = Tokenizer::from_vocab(bpe("abc", vec!["a b"])).unwrap_err().to_string();
    assert!(e.contains("unknown pre-tokenizer \"abc\""), "{e}");
    let e = Tokenizer::from_vocab(bpe("gpt-2", vec!["a b", "ab"])).unwrap_err().to_string();
    assert!(e.contains("bad merges line 2"), "{e}");
    let tok = Tokenizer::from_vocab(bpe("gpt-2", vec!["a b"])).unwrap();
    assert_eq!(tok.encode("ab", EncodeOptions::default()), [2]);
    assert!(!tok.add_bos_by_default());

    let mut v = spm_vocab();
    v.tokens[5] = "a".into();
    assert!(Tokenizer::from_vocab(v).is_err());
    let mut v = spm_vocab();
    v.scores = Some(vec![0.0; 3]);
    assert!(Tokenizer::from_vocab(v).is_err());
}

#[test]
fn every_listed_pre_tokenizer_compiles() {
    let names = SUPPORTED.split([',', '(', ')']).map(str::trim).filter(|n| !n.is_empty() && *n != "...");
    for name in names {
        let p = PreSettings::from_name(Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let words = p.pre.split("Hello, world! 123456 日本語  \n\n x's");
        assert_eq!(words.concat(), "Hello, world! 123456 日本語  \n\n x's", "{name}");
    }
}

#[test]
fn llama3_custom_splitter_agrees_with_its_regex() {
    use proptest::prelude::*;
    // "dbrx" runs the Llama 3 regex through the hand-written splitter;
    // a copy with `\s+` spelled differently forces the regex engine.
    let custom = PreSettings::from_name(Some("dbrx")).unwrap().pre;
    let regex = super::pretokenize::regex_only(
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s{1,}",
    );
    let strategy = proptest::string::string_regex("[a-zA-Z0-9 '\\n\\r\\t.,!é日🙂\u{3000}\u{301}]{0,24}").unwrap();
    proptest!(ProptestConfig::with_cases(256), |(s in strategy)| {
        prop_assert_eq!(custom.split(&s), regex.split(&s));
    });
}
