//! `memwall bench`: the offline benchmark, the analogue of `llama-bench`.
//!
//! ```text
//! memwall bench --model MODEL -p 512 -n 128 -t 1,2 -r 5 [--json]
//! memwall bench --synthetic tinyllama-1.1b:q4_0 [--write-gguf FILE]
//! memwall bench --probe
//! ```
//!
//! For every thread count, runs `pp N` (prefill of N tokens in one step) and
//! `tg N` (N decode steps) `r` times and reports the median tokens/s, TTFT or
//! TPOT, and MBU / MFU against the ceilings the probe measured on this
//! machine at the same thread count, plus the live MBU against the
//! bandwidth sampled while each test ran. The library side is
//! [`memwall_perf::bench`]; this file parses flags and prints.

use crate::default_model;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_formats::gguf::GgufFile;
use memwall_kernels::{DType, ThreadPool};
use memwall_model::cost::{CostModel, WeightBytes};
use memwall_model::{LoadedModel, ModelConfig};
use memwall_perf::bench::{summarize, time_test, BenchResult, Test, LIVE_BYTES};
use memwall_perf::probe::{Probe, StreamRead};
use memwall_perf::synthetic::{write_gguf, SyntheticSpec};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or Hugging Face directory to benchmark (default:
    /// SmolLM2-135M-Instruct, unless --synthetic or --probe is given).
    #[arg(long, short = 'm', value_name = "MODEL", conflicts_with = "synthetic")]
    model: Option<PathBuf>,
    /// Benchmark random weights of a real model's shape instead of a file:
    /// SHAPE[:TYPE], e.g. tinyllama-1.1b:q4_0. Shapes: tinyllama-1.1b,
    /// llama-3.2-1b, qwen2.5-0.5b, llama-2-7b, smollm2-135m; types: f32, f16,
    /// bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K ... q6_K.
    #[arg(long, value_name = "SHAPE[:TYPE]")]
    synthetic: Option<String>,
    /// With --synthetic: write the model to FILE as GGUF (llama.cpp tensor
    /// names, metadata and a synthetic vocab) and exit without benchmarking.
    #[arg(long, value_name = "FILE", requires = "synthetic")]
    write_gguf: Option<PathBuf>,
    /// Measure this machine's memory bandwidth and peak matmul FLOP/s at each
    /// thread count of -t, print them, and exit.
    #[arg(long)]
    probe: bool,
    /// Read the probe's results from FILE (JSON); if it is missing or lacks
    /// a thread count, probe and write it. With --probe: write it.
    #[arg(long, value_name = "FILE")]
    probe_file: Option<PathBuf>,
    /// Skip the probe: no MBU / MFU.
    #[arg(long, conflicts_with_all = ["probe", "probe_file"])]
    no_probe: bool,
    /// Do not sample the memory bandwidth while the tests run (no live MBU).
    /// By default a tg test reads 256 MiB with every thread every 16 steps,
    /// outside its timed steps, and reports its MBU against what the machine
    /// gave at that moment (a shared host's bandwidth moves with its neighbours).
    #[arg(long)]
    no_live: bool,
    /// Prompt lengths to prefill, comma-separated (0: no pp test).
    #[arg(long, short = 'p', value_name = "N,..", value_delimiter = ',', default_value = "512")]
    n_prompt: Vec<usize>,
    /// Decode steps to time, comma-separated (0: no tg test).
    #[arg(long, short = 'n', value_name = "N,..", value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Thread counts, comma-separated (default: all cores).
    #[arg(long, short = 't', value_name = "N,..", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions of each test (after one warm-up); the median is reported.
    #[arg(long, short = 'r', default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Seed of the random prompt tokens and synthetic weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object per test (JSON lines) instead of a table.
    #[arg(long)]
    json: bool,
    /// Print only the cost model's bytes and FLOPs per token of each test of
    /// a GGUF file, without loading or running it (works for files memwall
    /// cannot run yet; the side-by-side script uses it for llama.cpp's MBU).
    #[arg(long)]
    cost_only: bool,
    /// Run the continuous-batching engine with this many concurrent requests
    /// per level, comma-separated (e.g. 1,4,16,64): aggregate decode tokens/s,
    /// TTFT, TPOT and KV waste. Prompt length is the first -p value, new
    /// tokens the first -n value, threads the first -t value.
    #[arg(long, value_name = "N,..", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// With --concurrency: KV cache size (2GiB, 512MiB, or a fraction such as
    /// 0.3 of available memory). Default: room for every request at once.
    #[arg(long, value_name = "SIZE", requires = "concurrency")]
    kv_memory: Option<memwall_engine::KvMemory>,
    /// With --concurrency: tokens computed per engine step (chunked prefill budget).
    #[arg(long, value_name = "N", default_value_t = 512, requires = "concurrency")]
    max_batch_tokens: usize,
    /// Keep quantized weights in the file's layout instead of repacking them
    /// at load into 16-row tiles (to measure what repacking buys).
    #[arg(long)]
    no_repack: bool,
}

/// What is being benchmarked, for the report.
struct Subject {
    name: String,
    size_bytes: u64,
    params: u64,
    cost: CostModel,
    quantized: bool,
}

pub fn run(args: Args) -> Result<()> {
    let threads = thread_counts(&args.threads);
    memwall_kernels::matmul::set_repack(!args.no_repack);
    if args.probe {
        let probe = probe_with_bar(&threads);
        if let Some(file) = &args.probe_file {
            save_probe(file, &probe)?;
        }
        return print_probe(&probe, args.json);
    }
    if let (Some(spec), Some(out)) = (&args.synthetic, &args.write_gguf) {
        let spec = SyntheticSpec::parse(spec)?;
        return write_synthetic(&spec, out, args.seed);
    }

    let (path, temporary) = match (&args.synthetic, &args.model) {
        (Some(spec), _) => {
            let spec = SyntheticSpec::parse(spec)?;
            let path =
                std::env::temp_dir().join(format!("memwall-bench-{}-{}.gguf", std::process::id(), spec.file_stem()));
            write_synthetic(&spec, &path, args.seed)?;
            (path, true)
        }
        (None, Some(p)) => (p.clone(), false),
        (None, None) => (default_model::ensure()?, false),
    };
    let result = bench_file(&args, &path, &threads);
    if temporary {
        std::fs::remove_file(&path).ok();
    }
    result
}

fn thread_counts(requested: &[usize]) -> Vec<usize> {
    match requested {
        [] => vec![std::thread::available_parallelism().map_or(1, |n| n.get())],
        t => t.iter().map(|&t| t.max(1)).collect(),
    }
}

fn tests_of(args: &Args) -> Vec<Test> {
    let mut tests: Vec<Test> = args.n_prompt.iter().filter(|&&n| n > 0).map(|&n| Test::Prompt(n)).collect();
    tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| Test::Gen(n)));
    tests
}

fn print_costs(args: &Args, path: &Path) -> Result<()> {
    let g = GgufFile::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let config = ModelConfig::from_gguf(&g)?;
    let subject = describe(path, &g, config);
    let mut stdout = std::io::stdout().lock();
    for test in tests_of(args) {
        let cost = test.cost(&subject.cost);
        let n = test.n_tokens() as f64;
        let v = serde_json::json!({
            "model": subject.name,
            "test": test.name(),
            "n_tokens": test.n_tokens(),
            "size_bytes": subject.size_bytes,
            "params": subject.params,
            "bytes_per_token": cost.bytes / n,
            "flops_per_token": cost.flops / n,
            "quantized": subject.quantized,
        });
        writeln!(stdout, "{v}")?;
    }
    Ok(())
}

fn bench_file(args: &Args, path: &Path, threads: &[usize]) -> Result<()> {
    if args.cost_only {
        return print_costs(args, path);
    }
    let loaded = load_quietly(path)?;
    if !args.concurrency.is_empty() {
        let levels = super::bench_concurrency::Levels {
            concurrency: args.concurrency.iter().map(|&c| c.max(1)).collect(),
            prompt_tokens: args.n_prompt.first().copied().unwrap_or(512).max(1),
            new_tokens: args.n_gen.first().copied().unwrap_or(128).max(1),
            threads: threads[0],
            kv_memory: args.kv_memory,
            max_batch_tokens: args.max_batch_tokens.max(1),
            json: args.json,
        };
        return super::bench_concurrency::run(loaded, &levels);
    }
    let subject = match GgufFile::open(path) {
        Ok(g) => describe(path, &g, loaded.model.config.clone()),
        Err(_) => describe_dir(path, &loaded),
    };
    let probe = match (&args.probe_file, args.no_probe) {
        (_, true) => None,
        (Some(file), false) => Some(probe_cached(file, threads)?),
        (None, false) => Some(probe_with_bar(threads)),
    };
    let tests = tests_of(args);
    let ctx = loaded.model.config.context_len;
    if let Some(t) = tests.iter().find(|t| t.n_tokens() > ctx) {
        bail!("{} needs {} positions but the model's context is {ctx}", t.name(), t.n_tokens());
    }

    let reps = args.reps as usize;
    let bar = ProgressBar::new((threads.len() * tests.len() * (reps + 1)) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} runs, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let live = (!args.no_live).then(|| StreamRead::new(LIVE_BYTES));
    let mut results = Vec::new();
    let mut stdout = std::io::stdout().lock();
    if !args.json {
        print_header(&mut stdout)?;
    }
    for &t in threads {
        let pool = ThreadPool::new(t);
        for &test in &tests {
            bar.set_message(format!("{} × {t} thread(s)", test.name()));
            let runs = time_test(&loaded.model, &pool, test, reps, args.seed, live.as_ref(), &mut || bar.inc(1))
                .with_context(|| format!("{} failed", test.name()))?;
            let ceilings = probe.as_ref().and_then(|p| p.at(t));
            let r = summarize(test, t, &runs, &subject.cost, subject.quantized, ceilings);
            bar.suspend(|| print_result(&mut stdout, &subject, &r, args.json))?;
            results.push(r);
        }
    }
    bar.finish_and_clear();
    if !args.json {
        if let Some(p) = &probe {
            writeln!(stdout)?;
            for c in &p.by_threads {
                writeln!(
                    stdout,
                    "ceilings at {} thread(s): {:.1} GB/s streaming read, {:.1} GFLOP/s f32, {:.1} GFLOP/s int8",
                    c.threads,
                    c.bandwidth / 1e9,
                    c.f32_flops / 1e9,
                    c.int8_flops / 1e9
                )?;
            }
        }
    }
    Ok(())
}

/// Loads and warms the model with a progress bar.
fn load_quietly(path: &Path) -> Result<LoadedModel> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}").expect("valid template").progress_chars("=> "),
    );
    bar.set_message(format!("loading {}", path.display()));
    let loaded = memwall_model::load(path, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("cannot load {}", path.display()))?;
    bar.set_message("reading weights");
    loaded.model.warm(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(loaded)
}

/// Name, size, parameters and cost model of a GGUF file, from its tensor
/// table.
fn describe(path: &Path, g: &GgufFile, config: ModelConfig) -> Subject {
    let stem = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let name = stem.strip_prefix(&format!("memwall-bench-{}-", std::process::id())).unwrap_or(&stem).to_string();
    let size_bytes = g.tensors().iter().map(|t| t.n_bytes as u64).sum();
    let params = g.tensors().iter().map(|t| t.n_elements()).sum();
    let weights = WeightBytes::from_gguf(g, &config);
    subject(name, size_bytes, params, config, weights)
}

/// A Hugging Face directory: per-role bytes scaled from the loaded weights.
fn describe_dir(path: &Path, loaded: &LoadedModel) -> Subject {
    let config = loaded.model.config.clone();
    let f32_bytes = WeightBytes::uniform(&config, DType::F32);
    let scale = loaded.model.weight_bytes() as f64 / f32_bytes.per_step(config.n_layers);
    let w = WeightBytes {
        attn_per_layer: f32_bytes.attn_per_layer * scale,
        mlp_per_layer: f32_bytes.mlp_per_layer * scale,
        norms_per_layer: f32_bytes.norms_per_layer,
        output: f32_bytes.output * scale,
        embedding_row: f32_bytes.embedding_row * scale,
    };
    let params = CostModel::parameter_count(&config, false);
    subject(path.display().to_string(), loaded.model.total_weight_bytes() as u64, params, config, w)
}

fn subject(name: String, size_bytes: u64, params: u64, config: ModelConfig, weights: WeightBytes) -> Subject {
    let attn_params = (config.d_model * (2 * config.q_dim() + 2 * config.kv_dim())) as f64;
    // Below 2 bytes per weight the kernels run integer dot products.
    let quantized = weights.attn_per_layer / attn_params < 1.9;
    // The contiguous cache the benchmark uses stores f32 keys and values.
    let cost = CostModel::new(config, weights, 4.0);
    Subject { name, size_bytes, params, cost, quantized }
}

fn write_synthetic(spec: &SyntheticSpec, out: &Path, seed: u64) -> Result<()> {
    let bar = ProgressBar::new(spec.data_bytes()).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("generating {}", spec.file_stem()));
    write_gguf(spec, out, seed, &mut |done, _| bar.set_position(done))
        .with_context(|| format!("cannot write {}", out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} parameters, {:.2} GB)",
        out.display(),
        spec.shape.parameter_count(),
        std::fs::metadata(out).map_or(0, |m| m.len()) as f64 / 1e9
    );
    Ok(())
}

fn probe_with_bar(threads: &[usize]) -> Probe {
    let bar = ProgressBar::new_spinner();
    let probe = Probe::measure(threads, &mut |msg| bar.set_message(msg.to_string()));
    bar.finish_and_clear();
    probe
}

/// The probe from `file`, measured (and saved) if it lacks a thread count.
fn probe_cached(file: &Path, threads: &[usize]) -> Result<Probe> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let probe: Probe =
            serde_json::from_str(&text).with_context(|| format!("{} is not a probe file", file.display()))?;
        if probe.covers(threads) {
            return Ok(probe);
        }
    }
    let probe = probe_with_bar(threads);
    save_probe(file, &probe)?;
    Ok(probe)
}

fn save_probe(file: &Path, probe: &Probe) -> Result<()> {
    std::fs::write(file, serde_json::to_string_pretty(probe)?)
        .with_context(|| format!("cannot write {}", file.display()))
}

fn print_probe(p: &Probe, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(p)?)?;
        return Ok(());
    }
    writeln!(out, "cpu: {}", p.cpu)?;
    writeln!(out, "| threads | read bandwidth GB/s | f32 matmul GFLOP/s | int8 (Q8_0) matmul GFLOP/s |")?;
    writeln!(out, "| ------: | -----------------: | -----------------: | -------------------------: |")?;
    for c in &p.by_threads {
        writeln!(
            out,
            "| {:>7} | {:>18.2} | {:>18.1} | {:>26.1} |",
            c.threads,
            c.bandwidth / 1e9,
            c.f32_flops / 1e9,
            c.int8_flops / 1e9
        )?;
    }
    Ok(())
}

fn print_header(out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "| model                          |       size |     params | threads |   test |              t/s |  TTFT/TPOT ms |   MBU | live MBU (GB/s) |   MFU |"
    )?;
    writeln!(
        out,
        "| ------------------------------ | ---------: | ---------: | ------: | -----: | ---------------: | ------------: | ----: | --------------: | ----: |"
    )?;
    Ok(())
}

fn print_result(out: &mut impl Write, s: &Subject, r: &BenchResult, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("backend".into(), "memwall".into());
            o.insert("model".into(), s.name.clone().into());
            o.insert("size_bytes".into(), s.size_bytes.into());
            o.insert("params".into(), s.params.into());
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let pct = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0));
    let ms = r.ttft_ms.or(r.tpot_ms).map_or_else(|| "-".to_string(), |m| format!("{m:.2}"));
    let live = match (r.mbu_live, r.bandwidth_live) {
        (Some(m), Some(bw)) => format!("{:.1}% ({:.1})", m * 100.0, bw / 1e9),
        _ => "-".to_string(),
    };
    writeln!(
        out,
        "| {:<30} | {:>6.2} GiB | {:>8.2} B | {:>7} | {:>6} | {:>8.2} ± {:>5.2} | {:>13} | {:>5} | {:>15} | {:>5} |",
        s.name,
        s.size_bytes as f64 / (1u64 << 30) as f64,
        s.params as f64 / 1e9,
        r.threads,
        r.test,
        r.tokens_per_s,
        r.tokens_per_s_stddev,
        ms,
        pct(r.mbu),
        live,
        pct(r.mfu),
    )?;
    Ok(())
}
