//! Tensor and pipeline parallelism without MPI: the ranks of a split model
//! run as threads of this process ([`ThreadGroup`]), each binding only its
//! share of a committed fixture model, and rank 0's logits must match the
//! unsplit model's over a batch of two ragged sequences, a prefill then a
//! decode step (so the KV cache of each rank's heads is read back too).

use memwall_kernels::ThreadPool;
use memwall_model::collective::ThreadGroup;
use memwall_model::{
    load, load_split, micro_batch_count, micro_batches, Collective, ContiguousKvCache, KvElem, LogitsWanted, Model,
    Scratch, SeqInput, Shard, Split,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(name)
}

/// Two steps of a batch of ragged sequences: `a` wants the logits after
/// every token, `b` the last; then one token each. A pipeline runs the
/// first step as micro-batches (the short one's 9 tokens as 5 + 4, the long
/// one's 63 as 16 + 16 + 16 + 15), which cut `a` and `b` into token ranges,
/// and the second (2 tokens) as one batch.
#[derive(Clone, Copy)]
enum Batch {
    Short,
    Long,
}

/// Logits of rank 0 over the two steps of `batch`.
fn run(model: &Model, batch: Batch) -> Vec<f32> {
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), 64, KvElem::F32);
    let pool = ThreadPool::new(1);
    let mut s = Scratch::default();
    let (a, b): (Vec<u32>, Vec<u32>) = match batch {
        Batch::Short => (vec![1, 7, 42, 3, 99, 5], vec![11, 12, 13]),
        Batch::Long => ((0..40).map(|i| (i * 37 + 5) % 500).collect(), (0..23).map(|i| (i * 11 + 2) % 500).collect()),
    };
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

/// Rank 0's logits of `path` split as `split(rank)` over `size` threads,
/// with each rank's weight bytes read per step and held.
fn run_split(path: &Path, size: usize, split: fn(usize) -> Split, batch: Batch) -> (Vec<f32>, Vec<(usize, usize)>) {
    let handles: Vec<_> = ThreadGroup::new(size)
        .into_iter()
        .map(|g| {
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let split = split(g.rank());
                let comm: Arc<dyn Collective> = Arc::new(g);
                let m = load_split(&path, split, comm, &mut |_, _| {}).unwrap().model;
                (run(&m, batch), (m.weight_bytes(), m.total_weight_bytes()))
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

fn tp2(rank: usize) -> Split {
    Split::new(2, 1, rank, 2).unwrap()
}

fn pp2(rank: usize) -> Split {
    Split::new(1, 2, rank, 2).unwrap()
}

fn tp2_pp2(rank: usize) -> Split {
    Split::new(2, 2, rank, 4).unwrap()
}

#[test]
fn tensor_parallel_logits_match_the_whole_model() {
    for name in MODELS {
        let whole = load(&fixture(name), &mut |_, _| {}).unwrap().model;
        let want = run(&whole, Batch::Short);
        let (got, bytes) = run_split(&fixture(name), 2, tp2, Batch::Short);
        let d = max_diff(&want, &got);
        assert!(d < 1e-4, "{name}: tensor-parallel logits differ by {d}");
        // Each rank reads half of every layer matrix; rank 0 also the output head.
        let all = whole.weight_bytes();
        let read: Vec<usize> = bytes.iter().map(|b| b.0).collect();
        assert!(read[0] > read[1] && read[0] < all && 2 * read[1] < all, "{name}: {read:?} of {all}");
        // Both embed; only rank 0 holds an untied output head (a tied one
        // is the embedding both hold).
        assert!(bytes[1].1 <= bytes[0].1 && bytes[0].1 < whole.total_weight_bytes(), "{name}: {bytes:?}");
    }
}

#[test]
fn pipeline_logits_match_the_whole_model() {
    for name in MODELS {
        let whole = load(&fixture(name), &mut |_, _| {}).unwrap().model;
        for batch in [Batch::Short, Batch::Long] {
            let want = run(&whole, batch);
            let (got, _) = run_split(&fixture(name), 2, pp2, batch);
            // Each layer runs whole on one rank and sees the same rows in
            // any micro-batch: the same arithmetic, the same bits.
            assert_eq!(max_diff(&want, &got), 0.0, "{name}: pipeline logits differ");
        }
    }
}

#[test]
fn tensor_and_pipeline_combined_match_the_whole_model() {
    for name in MODELS {
        let whole = load(&fixture(name), &mut |_, _| {}).unwrap().model;
        let want = run(&whole, Batch::Long);
        let (got, bytes) = run_split(&fixture(name), 4, tp2_pp2, Batch::Long);
        let d = max_diff(&want, &got);
        assert!(d < 1e-4, "{name}: --tp 2 --pp 2 logits differ by {d}");
        // Each of the 4 ranks reads a quarter of the layers; rank 2 the output head too.
        let all = whole.weight_bytes();
        let read: Vec<usize> = bytes.iter().map(|b| b.0).collect();
        assert!(read[0] == read[1] && read[0] == read[3] && 4 * read[0] < all, "{name}: {read:?} of {all}");
        assert!(read[2] > read[3], "{name}: {read:?}");
        // Rank 3 (second stage, no logits) holds its layers and nothing else;
        // the first stage holds the embedding too.
        assert_eq!(bytes[3].1, bytes[3].0, "{name}: {bytes:?}");
        assert!(bytes[1].1 > bytes[1].0, "{name}: {bytes:?}");
    }
}

#[test]
fn micro_batches_cover_the_step_in_order() {
    let (a, b, c) = ([1u32; 40], [2u32; 23], [3u32; 1]);
    let inputs = [
        SeqInput { seq: 0, tokens: &a, start: 5, logits: LogitsWanted::All },
        SeqInput { seq: 1, tokens: &b, start: 0, logits: LogitsWanted::Last },
        SeqInput { seq: 2, tokens: &c, start: 9, logits: LogitsWanted::Last },
    ];
    assert_eq!(micro_batches(&inputs, 1).len(), 1, "one stage: one batch");
    assert_eq!(micro_batches(&inputs[2..], 2).len(), 1, "a small step stays whole");
    let batches = micro_batches(&inputs, 2);
    assert_eq!(batches.len(), 4); // 64 tokens: 4 of 16
    for n in 0..200 {
        let tokens = vec![1u32; n];
        let one = [SeqInput { seq: 0, tokens: &tokens, start: 0, logits: LogitsWanted::Last }];
        for stages in 1..4 {
            assert_eq!(micro_batch_count(n, stages), micro_batches(&one, stages).len(), "{n} tokens, {stages} stages");
        }
    }
    let pieces: Vec<(u64, usize, usize, LogitsWanted)> =
        batches.iter().flatten().map(|i| (i.seq, i.start, i.tokens.len(), i.logits)).collect();
    use LogitsWanted::{All, Last, None};
    assert_eq!(
        pieces,
        [(0, 5, 16, All), (0, 21, 16, All), (0, 37, 8, All), (1, 0, 8, None), (1, 8, 15, Last), (2, 9, 1, Last)]
    );
    for batch in &batches {
        assert_eq!(batch.iter().map(|i| i.tokens.len()).sum::<usize>(), 16);
    }
    let rows = |inputs: &[SeqInput]| inputs.iter().map(SeqInput::logit_rows).sum::<usize>();
    assert_eq!(batches.iter().map(|b| rows(b)).sum::<usize>(), rows(&inputs));
}

#[test]
fn tensor_split_must_divide_the_kv_heads() {
    // Four ranks of one query head each; the two kv heads do not divide by 4.
    let path = fixture("llama.gguf");
    let comm: Arc<dyn Collective> = Arc::new(ThreadGroup::new(4).remove(0));
    let split = Split::tensor(Shard { rank: 0, size: 4 });
    let err = load_split(&path, split, comm, &mut |_, _| {}).err().unwrap().to_string();
    assert!(err.contains("n_kv_heads (2)"), "{err}");
}
