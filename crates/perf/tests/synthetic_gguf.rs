//! A synthetic model written as GGUF is a well-formed file that memwall
//! loads and runs (the same bytes llama-bench is given).

use memwall_formats::gguf::{GgmlType, GgufFile};
use memwall_kernels::{DType, ThreadPool};
use memwall_model::config::Arch;
use memwall_model::cost::{CostModel, WeightBytes};
use memwall_perf::bench::{summarize, time_test, Test};
use memwall_perf::probe::Ceilings;
use memwall_perf::probe::StreamRead;
use memwall_perf::synthetic::{write_gguf, Shape, SyntheticSpec};
use std::path::PathBuf;

const TINY_LLAMA: Shape = Shape {
    name: "test-llama",
    arch: Arch::Llama,
    vocab: 300,
    d_model: 64,
    n_layers: 2,
    n_heads: 4,
    n_kv_heads: 2,
    head_dim: 16,
    d_ff: 96,
    context_len: 128,
    rope_theta: 10000.0,
    norm_eps: 1e-5,
    tied_embeddings: false,
    qkv_bias: false,
};

const TINY_QWEN: Shape =
    Shape { name: "test-qwen", arch: Arch::Qwen2, tied_embeddings: true, qkv_bias: true, ..TINY_LLAMA };

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("memwall-perf-{}-{name}.gguf", std::process::id()))
}

fn write(shape: &'static Shape, dtype: DType) -> PathBuf {
    let spec = SyntheticSpec { shape, dtype };
    let path = temp_path(&spec.file_stem());
    write_gguf(&spec, &path, 7, &mut |_, _| {}).expect("write synthetic gguf");
    path
}

#[test]
fn written_file_is_well_formed_gguf() {
    let path = write(&TINY_LLAMA, DType::Q8_0);
    let g = GgufFile::open(&path).expect("reads back");
    assert_eq!(g.get("general.architecture").and_then(|v| v.as_str()), Some("llama"));
    assert_eq!(g.get("llama.block_count").and_then(|v| v.as_u64()), Some(2));
    assert_eq!(g.get("general.file_type").and_then(|v| v.as_u64()), Some(7));
    let tokens = g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).expect("vocab");
    assert_eq!(tokens.len(), 300);
    assert_eq!(tokens[3 + 0x0A].as_str(), Some("<0x0A>"));
    assert_eq!(g.tensors().len(), TINY_LLAMA.tensors().len());
    let q = g.tensor("blk.1.attn_k.weight").expect("attn_k");
    assert_eq!((q.dims.as_slice(), q.ggml_type), (&[64u64, 32][..], GgmlType::Q8_0));
    assert_eq!(g.tensor("blk.0.ffn_norm.weight").map(|t| t.ggml_type), Some(GgmlType::F32));
    assert!(g.tensor("output.weight").is_some());
    let spec = SyntheticSpec { shape: &TINY_LLAMA, dtype: DType::Q8_0 };
    let data: u64 = g.tensors().iter().map(|t| t.n_bytes as u64).sum();
    assert_eq!(data, spec.data_bytes());
    // The cost model reads the same sizes from the file as from the shape.
    let c = TINY_LLAMA.config();
    assert_eq!(WeightBytes::from_gguf(&g, &c), WeightBytes::uniform(&c, DType::Q8_0));
    std::fs::remove_file(path).ok();
}

#[test]
fn memwall_loads_and_benchmarks_the_file() {
    for (shape, dtype) in [(&TINY_LLAMA, DType::Q4_0), (&TINY_QWEN, DType::F16)] {
        let path = write(shape, dtype);
        let loaded = memwall_model::load(&path, &mut |_, _| {}).expect("loads");
        assert_eq!(loaded.model.config, shape.config());
        let pool = ThreadPool::new(2);
        let cost = CostModel::new(shape.config(), WeightBytes::uniform(&shape.config(), dtype), 4.0);
        let ceilings =
            Ceilings { threads: 2, bandwidth: 1e10, f32_flops: 1e11, int8_flops: 2e11, ..Default::default() };
        // A small live sampler: this test checks the plumbing, not the numbers.
        let live = StreamRead::new(4 << 20);
        for test in [Test::Prompt(8), Test::Gen(3)] {
            let runs = time_test(&loaded.model, &pool, test, 2, 1, Some(&live), &mut || {}).expect("runs");
            assert_eq!(runs.len(), 2);
            assert!(runs.iter().all(|r| r.bandwidth.is_some_and(|b| b > 0.0)), "{runs:?}");
            let r = summarize(test, 2, &runs, &cost, dtype.is_quantized(), Some(&ceilings));
            assert!(r.tokens_per_s > 0.0 && r.mbu.is_some_and(|m| m > 0.0), "{r:?}");
            assert!(r.mbu_live.is_some_and(|m| m > 0.0) && r.bandwidth_live.is_some(), "{r:?}");
            assert_eq!(r.test, test.name());
            // Without a sampler: no live numbers.
            let runs = time_test(&loaded.model, &pool, test, 1, 1, None, &mut || {}).expect("runs");
            let r = summarize(test, 2, &runs, &cost, dtype.is_quantized(), Some(&ceilings));
            assert!(r.mbu_live.is_none() && r.bandwidth_live.is_none(), "{r:?}");
        }
        std::fs::remove_file(path).ok();
    }
}
