//! The paged f16 cache against the contiguous f32 one on every fixture
//! architecture, and the per-row determinism batch invariance rests on.

use memwall_engine::paged_kv::{KvDType, KvLayout, PagedKvCache};
use memwall_kernels::{matmul, DType, MatRef, ThreadPool};
use memwall_model::{load, ContiguousKvCache, KvCache, KvElem, LogitsWanted, Model, Scratch, SeqInput};
use std::path::{Path, PathBuf};

/// Largest |logit difference| allowed between f16 and f32 K/V storage. The
/// fixtures' logits are O(1); f16 keeps 11 significant bits of each cached
/// row, which moved them by at most 4.8e-3 (llama) when this was written.
const F16_TOLERANCE: f32 = 1e-2;
/// The same for 8-bit rows with one scale per head row (up to 0.4% of the
/// row's largest element per element); measured at most 8.9e-2 (qwen2, whose
/// 16-wide heads give few elements per scale) when this was written.
const Q8_TOLERANCE: f32 = 0.15;

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(format!("{arch}.gguf"))
}

fn prompt(arch: &str) -> Vec<u32> {
    let path = fixture(arch).with_extension("").join("expected.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn paged(model: &Model, blocks: usize) -> PagedKvCache {
    let c = &model.config;
    PagedKvCache::with_blocks(c.n_layers, c.kv_dim(), 16, blocks)
}

fn paged_q8(model: &Model, blocks: usize) -> PagedKvCache {
    let c = &model.config;
    let layout =
        KvLayout { n_layers: c.n_layers, kv_dim: c.kv_dim(), head_dim: c.head_dim, block_size: 16, dtype: KvDType::Q8 };
    PagedKvCache::new(layout, blocks)
}

/// Logits of every prompt position, `[n, vocab]`, prefilled in chunks of `chunk`.
fn all_logits(model: &Model, kv: &mut dyn KvCache, ids: &[u32], chunk: usize) -> Vec<f32> {
    let pool = ThreadPool::new(2);
    let mut s = Scratch::default();
    let mut out = Vec::new();
    for (i, part) in ids.chunks(chunk).enumerate() {
        let input = SeqInput { seq: 3, tokens: part, start: i * chunk, logits: LogitsWanted::All };
        out.extend_from_slice(model.forward(&[input], kv, &pool, &mut s).unwrap());
    }
    out
}

fn greedy(model: &Model, kv: &mut dyn KvCache, ids: &[u32], n: usize) -> Vec<u32> {
    let pool = ThreadPool::new(2);
    let mut s = Scratch::default();
    let (mut pending, mut start, mut out) = (ids.to_vec(), 0, Vec::new());
    for _ in 0..n {
        let input = SeqInput { seq: 0, tokens: &pending, start, logits: LogitsWanted::Last };
        let logits = model.forward(&[input], kv, &pool, &mut s).unwrap();
        let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a))).unwrap();
        start += pending.len();
        pending = vec![best as u32];
        out.push(best as u32);
    }
    out
}

fn check(arch: &str) {
    let loaded = load(&fixture(arch), &mut |_, _| {}).unwrap();
    let model = &loaded.model;
    let c = &model.config;
    let ids = prompt(arch);
    let mut exact = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F32);
    let want = all_logits(model, &mut exact, &ids, ids.len());
    let got = all_logits(model, &mut paged(model, 16), &ids, ids.len());
    let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{arch}: paged f16 vs contiguous f32, max |logit difference| {worst:.2e}");
    assert!(worst <= F16_TOLERANCE, "{arch}: {worst}");

    // Chunked prefill through the paged cache is bit-identical to one shot.
    let chunked = all_logits(model, &mut paged(model, 16), &ids, 5);
    assert!(chunked == got, "{arch}: chunked prefill changed the logits");

    let q8 = all_logits(model, &mut paged_q8(model, 16), &ids, ids.len());
    let worst_q8 = want.iter().zip(&q8).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{arch}: paged q8 vs contiguous f32, max |logit difference| {worst_q8:.2e}");
    assert!(worst_q8 <= Q8_TOLERANCE, "{arch}: q8 {worst_q8}");
    assert!(
        all_logits(model, &mut paged_q8(model, 16), &ids, 3) == q8,
        "{arch}: chunked q8 prefill changed the logits"
    );

    let mut exact = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F32);
    let n = 20;
    assert_eq!(greedy(model, &mut paged(model, 16), &ids, n), greedy(model, &mut exact, &ids, n), "{arch}: greedy");
}

#[test]
fn llama() {
    check("llama");
}
#[test]
fn mistral() {
    check("mistral");
}
#[test]
fn qwen2() {
    check("qwen2");
}
#[test]
fn qwen3() {
    check("qwen3");
}
#[test]
fn phi3() {
    check("phi3");
}
#[test]
fn gpt2() {
    check("gpt2");
}

/// A sequence's logits are bit-identical alone or batched with others.
#[test]
fn forward_is_batch_invariant() {
    let loaded = load(&fixture("qwen2"), &mut |_, _| {}).unwrap();
    let model = &loaded.model;
    let ids = prompt("qwen2");
    let alone = all_logits(model, &mut paged(model, 32), &ids, ids.len());
    let pool = ThreadPool::new(2);
    let mut s = Scratch::default();
    let mut kv = paged(model, 32);
    let other: Vec<u32> = (0..37).map(|i| (i * 7 + 1) % 50).collect();
    let inputs = [
        SeqInput { seq: 9, tokens: &other, start: 0, logits: LogitsWanted::Last },
        SeqInput { seq: 3, tokens: &ids, start: 0, logits: LogitsWanted::All },
    ];
    let batched = model.forward(&inputs, &mut kv, &pool, &mut s).unwrap();
    assert!(batched[model.config.vocab..] == alone[..], "batching changed a sequence's logits");
}

/// `memwall_kernels::matmul` gives each (row, token) the same bits whatever
/// else is in the batch and however many threads run it.
#[test]
fn matmul_rows_do_not_depend_on_the_batch() {
    let (rows, cols) = (37, 96);
    let mut seed = 7u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let w: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
    let x: Vec<f32> = (0..11 * cols).map(|_| rnd()).collect();
    for dtype in DType::ALL {
        let rb = dtype.row_bytes(cols).unwrap();
        let mut data = vec![0u8; rows * rb];
        for (src, dst) in w.chunks_exact(cols).zip(data.chunks_exact_mut(rb)) {
            memwall_kernels::quant::quantize_row(dtype, src, dst);
        }
        let m = MatRef::new(dtype, rows, cols, &data);
        let mut all = vec![0f32; 11 * rows];
        matmul(&ThreadPool::new(2), &m, &x, &mut all);
        for t in 0..11 {
            let mut one = vec![0f32; rows];
            matmul(&ThreadPool::new(1), &m, &x[t * cols..(t + 1) * cols], &mut one);
            assert!(one[..] == all[t * rows..(t + 1) * rows], "{dtype:?}: token {t} differs alone vs in a batch of 11");
        }
        // A batch of 5 starting at token 3 (different tile alignment).
        let mut five = vec![0f32; 5 * rows];
        matmul(&ThreadPool::new(2), &m, &x[3 * cols..8 * cols], &mut five);
        assert!(five[..] == all[3 * rows..8 * rows], "{dtype:?}: tile alignment changed results");
    }
}
