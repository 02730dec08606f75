//! Tensor and pipeline parallelism without MPI: the ranks of a split model
//! run as threads of this process ([`ThreadGroup`]), each binding only its
//! share of a committed fixture model, and rank 0's logits must match the
//! unsplit model's over a batch of two ragged sequences, a prefill then a
//! decode step (so the KV cache of each rank's heads is read back too).

use memwall_kernels::ThreadPool;
use memwall_model::collective::ThreadGroup;
use memwall_model::{
    load, load_split, Collective, ContiguousKvCache, KvElem, LogitsWanted, Model, Scratch, SeqInput, Shard, Split,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(name)
}

/// Logits of rank 0 over two steps: `[a; All] + [b; Last]`, then one token each.
fn run(model: &Model) -> Vec<f32> {
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), 64, KvElem::F32);
    let pool = ThreadPool::new(1);
    let mut s = Scratch::default();
    let (a, b) = ([1u32, 7, 42, 3, 99, 5], [11u32, 12, 13]);
    let step1 = [
        SeqInput { seq: 0, tokens: &a, start: 0, logits: LogitsWanted::All },
        SeqInput { seq: 1, tokens: &b, start: 0, logits: LogitsWanted::Last },
    ];
    let mut out = model.forward(&step1, &mut kv, &pool, &mut s).unwrap().to_vec();
    let step2 = [
        SeqInput { seq: 1, tokens: &[17], start: b.len(), logits: LogitsWanted::Last },
        SeqInput { seq: 0, tokens: &[23], start: a.len(), logits: LogitsWanted::Last },
    ];
    out.extend_from_slice(model.forward(&step2, &mut kv, &pool, &mut s).unwrap());
    out
}

/// Rank 0's logits of `path` split as `make(rank)` over `size` threads,
/// with each rank's weight bytes.
fn run_split(path: &Path, size: usize, make: fn(Shard) -> Split) -> (Vec<f32>, Vec<usize>) {
    let handles: Vec<_> = ThreadGroup::new(size)
        .into_iter()
        .map(|g| {
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let split = make(Shard { rank: g.rank(), size });
                let comm: Arc<dyn Collective> = Arc::new(g);
                let m = load_split(&path, split, comm, &mut |_, _| {}).unwrap().model;
                (run(&m), m.weight_bytes())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let bytes = results.iter().map(|r| r.1).collect();
    (results.into_iter().next().unwrap().0, bytes)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const MODELS: [&str; 8] =
    ["llama.gguf", "mistral.gguf", "phi3.gguf", "qwen2.gguf", "qwen3.gguf", "gpt2.gguf", "gpt2", "qwen2"];

#[test]
fn tensor_parallel_logits_match_the_whole_model() {
    for name in MODELS {
        let whole = load(&fixture(name), &mut |_, _| {}).unwrap().model;
        let want = run(&whole);
        let (got, bytes) = run_split(&fixture(name), 2, Split::Tensor);
        let d = max_diff(&want, &got);
        assert!(d < 1e-4, "{name}: tensor-parallel logits differ by {d}");
        // Each rank holds half of every layer matrix, plus the replicated output head.
        let all = whole.weight_bytes();
        assert!(bytes[0] == bytes[1] && bytes[0] < all && 2 * bytes[0] > all, "{name}: {bytes:?} of {all}");
    }
}

#[test]
fn pipeline_logits_match_the_whole_model() {
    for name in MODELS {
        let want = run(&load(&fixture(name), &mut |_, _| {}).unwrap().model);
        let (got, _) = run_split(&fixture(name), 2, Split::Pipeline);
        let d = max_diff(&want, &got);
        // Each layer runs whole on one rank: the same arithmetic, the same bits.
        assert_eq!(d, 0.0, "{name}: pipeline logits differ by {d}");
    }
}

#[test]
fn tensor_split_must_divide_the_kv_heads() {
    // Four ranks of one query head each; the two kv heads do not divide by 4.
    let path = fixture("llama.gguf");
    let comm: Arc<dyn Collective> = Arc::new(ThreadGroup::new(4).remove(0));
    let split = Split::Tensor(Shard { rank: 0, size: 4 });
    let err = load_split(&path, split, comm, &mut |_, _| {}).err().unwrap().to_string();
    assert!(err.contains("n_kv_heads (2)"), "{err}");
}
