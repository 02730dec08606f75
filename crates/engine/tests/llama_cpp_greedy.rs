//! The default model against llama.cpp: SmolLM2-135M-Instruct (Q4_1 weights,
//! Q8_0 output head). References: `tests/fixtures/llama_cpp_greedy.json`, made
//! by `tools/llama_cpp_reference.py` with llama-cpp-python 0.3.36 (1 thread).
//!
//! The comparison is teacher-forced, as llama.cpp's own `llama-perplexity
//! --kl-divergence`: memwall runs prompt + llama.cpp's 32 greedy tokens in one
//! forward pass (f16 KV, as llama.cpp's default) and its next-token
//! distribution at every position is compared with llama.cpp's (batched pass,
//! top-20 log-probabilities). Free-running token equality is only required up
//! to llama.cpp's first near-tie: two correct engines sum floats in different
//! orders (llama.cpp itself differs between its batched and decode paths and
//! between CPUs); SmolLM2's massive activations turn a 1e-6 rounding difference
//! into a flipped 8-bit activation quant, and after one flipped token the two
//! continuations are unrelated.
//!
//! Bounds, from measurement (6 cases, 261 positions; worst case over cases):
//!
//! | | memwall default | `MEMWALL_NO_REPACK=1` | llama.cpp batch vs decode | bound |
//! |---|---|---|---|---|
//! | mean KL(llama.cpp ‖ memwall), nats, per case | 4.8e-3 | 4.7e-3 | 2.2e-3 | 1.5e-2 (3.2×) |
//! | the same over all 261 positions | 3.1e-3 | 2.9e-3 | 1.3e-3 | 8e-3 (2.6×) |
//! | max \|Δ logprob\| of llama.cpp's top-1 | 0.365 | 0.298 | 0.108 | 1.0 (2.7×) |
//! | largest llama.cpp margin where argmax differs | 0.275 | 0.334 | 0.070 | M = 1.0 (3×) |
//!
//! (Per-case mean KL 1.5e-3…4.8e-3; argmax differs at 5 positions by default,
//! 5 without repacking, all where llama.cpp's top-2 are within 0.34 nats.)
//! memwall's two kernel layouts differ from each other by as much (full-vocab
//! mean KL up to 5.8e-3, |Δ top-1| up to 0.34): these are float-order effects,
//! not a model difference. With M = 1.0, 164 of 261 positions have their argmax
//! checked, and free-running greedy must agree for 0…4 tokens (the first
//! near-tie comes early in every case); it printed 32/29/13/31/3/32 equal tokens
//! by default and 32/31/24/31/32/22 without repacking.
//!
//! KL uses llama.cpp's top-20 ids plus one bucket for the rest of the
//! vocabulary (see `kl_top_k`): a lower bound of the full KL, ~80% of it here.
//! (The llama.cpp column is its own batched pass against its decode steps, on
//! the 192 continuation positions: `self_check` in the fixture.)
//!
//! Real bugs fail it (checked on scratch copies of the GGUF): every `ffn_down`
//! block scale ×1.01 gives mean KL 1.36e-2 over all positions (> 8e-3, and
//! two cases > 1.5e-2); swapping layers 14 and 15 breaks every bound.

use memwall_engine::{Engine, EngineConfig, GenerateParams, Request, SamplingParams};
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use memwall_kernels::ThreadPool;
use memwall_model::{ContiguousKvCache, KvElem, LogitsWanted, Model, Scratch, SeqInput};
use std::path::Path;
use std::sync::Arc;

/// Where llama.cpp's top-1 log-probability leads its top-2 by at least this
/// much, memwall must pick the same next token (teacher-forced), and the
/// free-running continuation must agree up to the first step below it.
/// Measured: 3× the largest margin at which an argmax differed (0.334).
const MIN_MARGIN: f64 = 1.0;
/// Bound on the mean over positions of KL(llama.cpp ‖ memwall), in nats.
/// Measured: ~3× the worst case (4.8e-3).
const MAX_MEAN_KL: f64 = 1.5e-2;
/// Bound on the same mean over all positions of all cases: averaging 261
/// positions makes it steadier, so it can be tighter. Measured: 2.6× the
/// worst case (3.1e-3).
const MAX_OVERALL_MEAN_KL: f64 = 8e-3;
/// Bound on |Δ log-probability| of llama.cpp's top-1 token at any position.
/// Measured: ~3× the worst case (0.365).
const MAX_TOP1_LOGPROB_DIFF: f64 = 1.0;

struct Case {
    name: String,
    prompt: String,
    prompt_ids: Vec<u32>,
    /// llama.cpp's free-running greedy continuation (decode path).
    greedy_ids: Vec<u32>,
    /// llama.cpp's top1 − top2 logit gap before each greedy token (decode path).
    margins: Vec<f64>,
    /// Per position of prompt + continuation: llama.cpp's top-20 (id, logprob), best first
    /// (batched path).
    teacher_forced: Vec<Vec<(u32, f64)>>,
}

impl Case {
    fn sequence(&self) -> Vec<u32> {
        self.prompt_ids.iter().chain(&self.greedy_ids).copied().collect()
    }

    /// llama.cpp's top1 − top2 log-probability gap at position `i` (batched path).
    fn margin(&self, i: usize) -> f64 {
        self.teacher_forced[i][0].1 - self.teacher_forced[i][1].1
    }
}

fn reference() -> Vec<Case> {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/llama_cpp_greedy.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(id).collect() };
    let floats =
        |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let cases: Vec<Case> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            prompt: c["prompt"].as_str().unwrap().to_owned(),
            prompt_ids: ids(&c["prompt_ids"]),
            greedy_ids: ids(&c["greedy_ids"]),
            margins: floats(&c["margins"]),
            teacher_forced: c["teacher_forced"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pos| pos.as_array().unwrap().iter().map(|p| (id(&p[0]), p[1].as_f64().unwrap())).collect())
                .collect(),
        })
        .collect();
    assert!(cases.len() >= 4);
    for c in &cases {
        assert_eq!(c.teacher_forced.len(), c.prompt_ids.len() + c.greedy_ids.len(), "{}", c.name);
        assert_eq!(c.margins.len(), c.greedy_ids.len(), "{}", c.name);
    }
    cases
}

fn id(v: &serde_json::Value) -> u32 {
    u32::try_from(v.as_u64().unwrap()).unwrap()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn load_smollm2() -> (Model, Tokenizer) {
    let model_path = repo().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model_path.exists(), "missing {}: run scripts/fetch-test-data.sh", model_path.display());
    let loaded = memwall_model::load(&model_path, &mut |_, _| {}).unwrap();
    (loaded.model, loaded.tokenizer)
}

/// The default model behind an engine (paged f16 KV, as llama.cpp's f16 cache).
fn smollm2_engine() -> (Engine, Arc<Tokenizer>) {
    let (model, tokenizer) = load_smollm2();
    let tokenizer = Arc::new(tokenizer);
    let config = EngineConfig { threads: 2, ..EngineConfig::default() };
    (Engine::new(Arc::new(model), tokenizer.clone(), config).unwrap(), tokenizer)
}

fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, EncodeOptions { add_bos: tok.add_bos_by_default(), parse_special: true })
}

/// memwall's log-softmax after every position of `tokens`, `[n_tokens][vocab]`,
/// from one forward pass (f16 KV cache, as llama.cpp's default).
fn teacher_forced_logprobs(model: &Model, tokens: &[u32]) -> Vec<Vec<f64>> {
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F16);
    let mut scratch = Scratch::default();
    let input = SeqInput { seq: 0, tokens, start: 0, logits: LogitsWanted::All };
    let logits = model.forward(&[input], &mut kv, &ThreadPool::new(2), &mut scratch).unwrap();
    logits.chunks_exact(c.vocab).map(log_softmax).collect()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&x| x as f64 - log_sum).collect()
}

fn argmax(row: &[f64]) -> u32 {
    // Ties: lower id first, as the fixture's top-k order.
    let best = row.iter().enumerate().fold(0, |b, (i, &x)| if x > row[b] { i } else { b });
    u32::try_from(best).unwrap()
}

/// KL(p ‖ q) in nats, with `p` known only on its top-k ids: those ids plus one
/// bucket for the rest of the vocabulary. Coarsening never increases KL (data
/// processing inequality), so this is a lower bound of the full-vocabulary KL;
/// with p's top 20 holding almost all of its mass it is close to it.
fn kl_top_k(p: &[(u32, f64)], q: &[f64]) -> f64 {
    let (mut kl, mut p_top, mut q_top) = (0.0, 0.0, 0.0);
    for &(id, lp) in p {
        let lq = q[id as usize];
        kl += lp.exp() * (lp - lq);
        p_top += lp.exp();
        q_top += lq.exp();
    }
    let (p_rest, q_rest) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-30));
    if p_rest > 0.0 {
        kl += p_rest * (p_rest / q_rest).ln();
    }
    kl
}

/// How memwall's teacher-forced distributions compare with llama.cpp's on one case.
struct Comparison {
    mean_kl: f64,
    max_kl: f64,
    /// Largest |Δ log-probability| of llama.cpp's top-1 token.
    max_top1_diff: f64,
    /// Positions where memwall's argmax is not llama.cpp's, with llama.cpp's margin there.
    disagreements: Vec<(usize, f64)>,
}

fn compare(case: &Case, memwall: &[Vec<f64>]) -> Comparison {
    let mut c = Comparison { mean_kl: 0.0, max_kl: 0.0, max_top1_diff: 0.0, disagreements: vec![] };
    for (i, (want, got)) in case.teacher_forced.iter().zip(memwall).enumerate() {
        let kl = kl_top_k(want, got);
        c.mean_kl += kl / memwall.len() as f64;
        c.max_kl = c.max_kl.max(kl);
        let (top1, top1_lp) = want[0];
        c.max_top1_diff = c.max_top1_diff.max((got[top1 as usize] - top1_lp).abs());
        if argmax(got) != top1 {
            c.disagreements.push((i, case.margin(i)));
        }
    }
    c
}

#[test]
fn smollm2_next_token_distributions_match_llama_cpp() {
    let cases = reference();
    let (model, tok) = load_smollm2();
    let layout = if std::env::var_os("MEMWALL_NO_REPACK").is_some() { "MEMWALL_NO_REPACK" } else { "default" };
    let mut failures = vec![];
    let (mut kl_sum, mut n_positions) = (0.0, 0);
    for case in &cases {
        assert_eq!(encode(&tok, &case.prompt), case.prompt_ids, "{}: prompt tokens differ from llama.cpp's", case.name);
        let seq = case.sequence();
        let got = teacher_forced_logprobs(&model, &seq);
        assert_eq!(got.len(), seq.len());
        let c = compare(case, &got);
        let min_margin = (0..seq.len()).map(|i| case.margin(i)).fold(f64::INFINITY, f64::min);
        eprintln!(
            "[{layout}] {:12} {} positions: mean KL {:.2e}, max KL {:.2e}, max |Δ top-1 logprob| {:.4}, \
             argmax disagreements (position, llama.cpp margin) {:?}, smallest margin {:.4}",
            case.name,
            seq.len(),
            c.mean_kl,
            c.max_kl,
            c.max_top1_diff,
            c.disagreements,
            min_margin,
        );
        if let Some(&(i, m)) = c.disagreements.iter().find(|&&(_, m)| m >= MIN_MARGIN) {
            failures.push(format!("{}: argmax differs at position {i} where llama.cpp's margin is {m:.4}", case.name));
        }
        kl_sum += c.mean_kl * seq.len() as f64;
        n_positions += seq.len();
        if c.mean_kl > MAX_MEAN_KL {
            failures.push(format!("{}: mean KL {:.3e} > {MAX_MEAN_KL:e}", case.name, c.mean_kl));
        }
        if c.max_top1_diff > MAX_TOP1_LOGPROB_DIFF {
            failures.push(format!("{}: |Δ top-1 logprob| {:.4} > {MAX_TOP1_LOGPROB_DIFF}", case.name, c.max_top1_diff));
        }
    }
    let overall_kl = kl_sum / n_positions as f64;
    eprintln!("[{layout}] all cases, {n_positions} positions: mean KL {overall_kl:.2e}");
    if overall_kl > MAX_OVERALL_MEAN_KL {
        failures.push(format!("all cases: mean KL {overall_kl:.3e} > {MAX_OVERALL_MEAN_KL:e}"));
    }
    assert!(failures.is_empty(), "memwall's distributions differ from llama.cpp's:\n{}", failures.join("\n"));
}

#[test]
fn smollm2_greedy_matches_llama_cpp_until_first_near_tie() {
    let cases = reference();
    let (engine, tok) = smollm2_engine();
    for case in &cases {
        let prompt_ids = encode(&tok, &case.prompt);
        assert_eq!(prompt_ids, case.prompt_ids, "{}: prompt tokens differ from llama.cpp's", case.name);
        let params = GenerateParams {
            max_tokens: case.greedy_ids.len(),
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: true,
            logprobs: None,
        };
        let got = engine.submit(Request::new(prompt_ids, params)).unwrap().wait().unwrap().remove(0).ids;
        let agreeing = got.iter().zip(&case.greedy_ids).take_while(|(a, b)| a == b).count();
        let required = case.margins.iter().position(|&m| m < MIN_MARGIN).unwrap_or(case.margins.len());
        eprintln!(
            "{:12} {agreeing}/{} greedy tokens equal llama.cpp's (required {required}: first llama.cpp margin \
             < {MIN_MARGIN})",
            case.name,
            case.greedy_ids.len(),
        );
        assert!(
            agreeing >= required,
            "{}: only {agreeing} tokens agree\n  memwall:   {got:?}\n  llama.cpp: {:?}",
            case.name,
            case.greedy_ids
        );
    }
}

#[test]
fn the_capital_of_france_is_paris() {
    let (engine, tok) = smollm2_engine();
    let prompt = encode(&tok, "The capital of France is");
    let params = GenerateParams {
        max_tokens: 4,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: false,
        logprobs: None,
    };
    let text = engine.submit(Request::new(prompt, params)).unwrap().wait().unwrap().remove(0).text;
    assert!(text.starts_with(" Paris."), "{text:?}");
}
