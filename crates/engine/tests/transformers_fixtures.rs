//! Every architecture against Hugging Face transformers.
//!
//! `tools/make_fixtures.py` writes a tiny random-weight model per architecture
//! as a Hugging Face directory, the GGUF that llama.cpp's own converter makes
//! of it, and transformers' float32 logits and greedy continuation. memwall
//! loads both files and must reproduce the logits within 1e-3 and the greedy
//! tokens exactly.

use memwall_engine::{Engine, EngineConfig, GenerateParams, Request, SamplingParams};
use memwall_kernels::ThreadPool;
use memwall_model::{load, ContiguousKvCache, KvElem, LogitsWanted, Scratch, SeqInput};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TOLERANCE: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

struct Expected {
    prompt_ids: Vec<u32>,
    /// Per position, transformers' top (id, logit) pairs.
    top_logits: Vec<Vec<(u32, f32)>>,
    /// `[vocab]` after the last prompt token.
    last_logits: Vec<f32>,
    greedy_ids: Vec<u32>,
}

fn expected(arch: &str) -> Expected {
    let path = fixtures().join(arch).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    Expected {
        prompt_ids: ids(&v["prompt_ids"]),
        top_logits: v["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pos| {
                pos.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                    .collect()
            })
            .collect(),
        last_logits: v["last_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
        greedy_ids: ids(&v["greedy_ids"]),
    }
}

fn check(arch: &str, model_path: &Path) {
    let exp = expected(arch);
    let loaded = load(model_path, &mut |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", model_path.display()));
    let model = &loaded.model;
    let pool = ThreadPool::new(2);
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F32);
    let mut scratch = Scratch::default();
    let input = SeqInput { seq: 0, tokens: &exp.prompt_ids, start: 0, logits: LogitsWanted::All };
    let logits = model.forward(&[input], &mut kv, &pool, &mut scratch).unwrap();
    assert_eq!(logits.len(), exp.prompt_ids.len() * c.vocab);
    let what = format!("{arch} from {}", model_path.display());
    let mut worst = 0f32;
    for (pos, (row, top)) in logits.chunks_exact(c.vocab).zip(&exp.top_logits).enumerate() {
        for &(id, want) in top {
            let got = row[id as usize];
            worst = worst.max((got - want).abs());
            assert!((got - want).abs() <= TOLERANCE, "{what}: position {pos} token {id}: {got} vs transformers {want}");
        }
    }
    let last = &logits[(exp.prompt_ids.len() - 1) * c.vocab..];
    assert_eq!(last.len(), exp.last_logits.len(), "{what}: vocabulary size");
    for (id, (&got, &want)) in last.iter().zip(&exp.last_logits).enumerate() {
        worst = worst.max((got - want).abs());
        assert!((got - want).abs() <= TOLERANCE, "{what}: last position token {id}: {got} vs transformers {want}");
    }
    eprintln!("{what}: max |logit difference| {worst:.2e}");

    let params = GenerateParams {
        max_tokens: exp.greedy_ids.len(),
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: true,
        logprobs: None,
    };
    // Greedy continuation through the engine (paged f16 cache).
    let config = EngineConfig { threads: 2, ..EngineConfig::default() };
    let engine = Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap();
    let generation = engine.submit(Request::new(exp.prompt_ids.clone(), params)).unwrap().wait().unwrap().remove(0);
    assert_eq!(generation.ids, exp.greedy_ids, "{what}: greedy continuation");
}

macro_rules! arch_tests {
    ($($arch:ident),*) => {
        mod hf_directory {
            use super::*;
            $(#[test] fn $arch() { check(stringify!($arch), &fixtures().join(stringify!($arch))); })*
        }
        mod gguf_from_llama_cpp_converter {
            use super::*;
            $(#[test] fn $arch() { check(stringify!($arch), &fixtures().join(concat!(stringify!($arch), ".gguf"))); })*
        }
    };
}

arch_tests!(llama, mistral, qwen2, qwen3, phi3, gpt2);

#[test]
fn trace_hook_names_every_layer_tensor() {
    let loaded = load(&fixtures().join("qwen3.gguf"), &mut |_, _| {}).unwrap();
    let model = &loaded.model;
    let c = &model.config;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut scratch = Scratch::default();
    scratch.trace = Some(Box::new(move |name: &str, layer: usize, t: &[f32]| {
        sink.lock().unwrap().push((name.to_string(), layer, t.len()));
    }));
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F32);
    let tokens = [1u32, 2, 3];
    let input = SeqInput { seq: 0, tokens: &tokens, start: 0, logits: LogitsWanted::Last };
    model.forward(&[input], &mut kv, &ThreadPool::new(1), &mut scratch).unwrap();
    let seen = seen.lock().unwrap();
    for layer in 0..c.n_layers {
        for (name, width) in
            [("attn_norm", c.d_model), ("q_rope", c.q_dim()), ("k_rope", c.kv_dim()), ("l_out", c.d_model)]
        {
            assert!(
                seen.iter().any(|(n, l, len)| n == name && *l == layer && *len == tokens.len() * width),
                "no {name} of layer {layer} with {} values in {seen:?}",
                tokens.len() * width
            );
        }
    }
}
