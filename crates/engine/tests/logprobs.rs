//! `GenerateParams::logprobs` end to end on the tiny llama fixture: the
//! engine's reported logprobs equal the log-softmax of the model's raw
//! logits, recomputed here independently with a plain forward pass.

use memwall_engine::{
    Engine, EngineConfig, EngineError, GenerateParams, KvCacheConfig, KvDType, Request, SamplingParams,
    SchedulerConfig, MAX_LOGPROBS,
};
use memwall_kernels::ThreadPool;
use memwall_model::{load, ContiguousKvCache, KvElem, LogitsWanted, Model, Scratch, SeqInput};
use std::path::Path;
use std::sync::Arc;

fn model() -> memwall_model::LoadedModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    load(&path, &mut |_, _| {}).unwrap()
}

fn engine(loaded: memwall_model::LoadedModel) -> Engine {
    let config = EngineConfig {
        // f16 like the contiguous cache below, so both see the same K/V.
        kv: KvCacheConfig { block_size: 16, memory_bytes: 64 * 2 * 2 * 16 * 32 * 2, dtype: KvDType::F16 },
        scheduler: SchedulerConfig { max_batch_tokens: 64, max_running: 8, prefix_caching: true },
        threads: 1,
        ..EngineConfig::default()
    };
    Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap()
}

/// `log_softmax(row)` in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row.iter().map(|&l| l as f64 - max - z.ln()).collect()
}

/// The raw logits row after each of `tokens[..]`, `[n_tokens][vocab]`,
/// from one forward pass over a contiguous cache.
fn raw_logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F16);
    let mut scratch = Scratch::default();
    let input = SeqInput { seq: 0, tokens, start: 0, logits: LogitsWanted::All };
    let logits = model.forward(&[input], &mut kv, &ThreadPool::new(1), &mut scratch).unwrap();
    logits.chunks_exact(c.vocab).map(<[f32]>::to_vec).collect()
}

#[test]
fn logprobs_are_the_log_softmax_of_the_raw_logits() {
    let reference = model().model;
    let e = engine(model());
    let prompt: Vec<u32> = (0..21).map(|j| 3 + (j * 37 % 400) as u32).collect();
    // Sampling with a temperature, truncation and a strong penalty: the
    // reported numbers must ignore all of them.
    let sampling = SamplingParams {
        temperature: 1.3,
        top_k: 8,
        presence_penalty: 1.5,
        repetition_penalty: 1.3,
        seed: Some(9),
        ..SamplingParams::default()
    };
    let k = 5;
    let params = GenerateParams { max_tokens: 12, sampling, stop: vec![], ignore_eos: true, logprobs: Some(k) };
    let out = e.submit(Request { n: 2, ..Request::new(prompt.clone(), params) }).unwrap().wait().unwrap();
    for c in &out {
        assert_eq!(c.logprobs.len(), c.ids.len(), "one entry per generated token");
        assert_eq!(c.ids.len(), 12);
        let mut all = prompt.clone();
        all.extend(&c.ids[..c.ids.len() - 1]);
        let rows = raw_logits(&reference, &all);
        for (i, (&id, lp)) in c.ids.iter().zip(&c.logprobs).enumerate() {
            let row = &rows[prompt.len() - 1 + i];
            let want = log_softmax(row);
            let err = (lp.logprob as f64 - want[id as usize]).abs();
            assert!(err < 1e-4, "token {i} (id {id}): logprob {} vs log_softmax {}", lp.logprob, want[id as usize]);
            // The top k: the k largest raw logits, most likely first.
            assert_eq!(lp.top.len(), k);
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            let ids: Vec<u32> = lp.top.iter().map(|&(t, _)| t).collect();
            assert_eq!(ids, order[..k], "token {i}: top ids");
            for &(t, l) in &lp.top {
                assert!((l as f64 - want[t as usize]).abs() < 1e-4, "token {i}: top logprob of {t}");
            }
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
    // Penalties make the sample differ from the raw argmax somewhere.
    let argmax_everywhere = out.iter().all(|c| c.ids.iter().zip(&c.logprobs).all(|(&id, lp)| id == lp.top[0].0));
    assert!(!argmax_everywhere, "the penalised draw never left the raw argmax: the test proves nothing");
}

#[test]
fn no_logprobs_unless_asked_and_at_most_twenty() {
    let e = engine(model());
    let base = GenerateParams {
        max_tokens: 3,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: true,
        logprobs: None,
    };
    let plain = e.submit(Request::new(vec![5, 6, 7], base.clone())).unwrap().wait().unwrap().remove(0);
    assert!(plain.logprobs.is_empty());
    // Greedy without penalties: the chosen token is the top alternative, and
    // asking for logprobs does not change the tokens.
    let with = GenerateParams { logprobs: Some(MAX_LOGPROBS), ..base.clone() };
    let c = e.submit(Request::new(vec![5, 6, 7], with)).unwrap().wait().unwrap().remove(0);
    assert_eq!(c.ids, plain.ids);
    for (&id, lp) in c.ids.iter().zip(&c.logprobs) {
        assert_eq!(lp.top.len(), MAX_LOGPROBS);
        assert_eq!((lp.top[0].0, lp.top[0].1), (id, lp.logprob));
    }
    let chosen_only = GenerateParams { logprobs: Some(0), ..base.clone() };
    let c = e.submit(Request::new(vec![5, 6, 7], chosen_only)).unwrap().wait().unwrap().remove(0);
    assert!(c.logprobs.len() == 3 && c.logprobs.iter().all(|lp| lp.top.is_empty() && lp.logprob <= 0.0));
    let too_many = GenerateParams { logprobs: Some(MAX_LOGPROBS + 1), ..base };
    let r = e.submit(Request::new(vec![5, 6, 7], too_many));
    assert!(matches!(r, Err(EngineError::TooManyLogprobs { asked: 21, max: 20 })), "{:?}", r.err());
}
