//! The default model against llama.cpp: SmolLM2-135M-Instruct (Q4_1 weights,
//! Q8_0 embedding) must tokenize every prompt as llama.cpp does and continue
//! it greedily with llama.cpp's tokens. The references were made once with
//! llama-cpp-python 0.3.36 by `tools/llama_cpp_reference.py`.

use memwall_engine::{Engine, EngineConfig, GenerateParams, Request, SamplingParams};
use memwall_formats::tokenizer::EncodeOptions;
use std::path::Path;
use std::sync::Arc;

/// Tokens that must agree from the start of each continuation…
const MIN_AGREEING: usize = 16;
/// …unless llama.cpp itself was nearly undecided earlier: at a step where its
/// two best logits are closer than this, rounding differences between two
/// correct engines (llama.cpp accumulates attention in f16) may pick either.
const NEAR_TIE: f64 = 0.1;
/// Prompts that must agree for `MIN_AGREEING` tokens regardless.
const MIN_FULL_CASES: usize = 3;

/// The default model behind an engine (paged f16 KV, as llama.cpp's f16 cache).
fn smollm2() -> (Engine, Arc<memwall_formats::tokenizer::Tokenizer>) {
    let model_path = repo().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model_path.exists(), "missing {}: run scripts/fetch-test-data.sh", model_path.display());
    let loaded = memwall_model::load(&model_path, &mut |_, _| {}).unwrap();
    let tokenizer = Arc::new(loaded.tokenizer);
    let config = EngineConfig { threads: 2, ..EngineConfig::default() };
    (Engine::new(Arc::new(loaded.model), tokenizer.clone(), config).unwrap(), tokenizer)
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/llama_cpp_greedy.json")).unwrap())
            .unwrap();
    let (engine, tok) = smollm2();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    let mut full_cases = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let want_prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["greedy_ids"]);
        let prompt_ids = tok.encode(prompt, EncodeOptions { add_bos: tok.add_bos_by_default(), parse_special: true });
        assert_eq!(prompt_ids, want_prompt, "{name}: prompt tokens differ from llama.cpp's");

        let params = GenerateParams {
            max_tokens: want.len(),
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: true,
        };
        let got = engine.submit(Request::new(prompt_ids, params)).unwrap().wait().unwrap().remove(0).ids;
        let agreeing = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let margins: Vec<f64> = case["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let first_tie = margins.iter().position(|&m| m < NEAR_TIE).unwrap_or(margins.len());
        let required = MIN_AGREEING.min(first_tie);
        eprintln!("{name}: {agreeing}/{} greedy tokens equal llama.cpp's (required {required})", want.len());
        full_cases += usize::from(agreeing >= MIN_AGREEING);
        assert!(
            agreeing >= required,
            "{name}: only {agreeing} tokens agree\n  memwall:   {got:?}\n  llama.cpp: {want:?}"
        );
    }
    assert!(full_cases >= MIN_FULL_CASES, "only {full_cases} prompts agree for {MIN_AGREEING} tokens");
}

#[test]
fn the_capital_of_france_is_paris() {
    let (engine, tok) = smollm2();
    let prompt = tok
        .encode("The capital of France is", EncodeOptions { add_bos: tok.add_bos_by_default(), parse_special: true });
    let params = GenerateParams { max_tokens: 4, sampling: SamplingParams::greedy(), stop: vec![], ignore_eos: false };
    let text = engine.submit(Request::new(prompt, params)).unwrap().wait().unwrap().remove(0).text;
    assert!(text.starts_with(" Paris."), "{text:?}");
}
