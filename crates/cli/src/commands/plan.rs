//! `memwall plan`: predict latency, throughput, memory, energy and cost of a
//! model on a chip, and check the predictions against this machine.
//!
//! ```text
//! memwall plan --model llama-2-7b --hardware a10 --weights f16 --prompt 350
//! memwall plan --model mistral-7b --hardware automotive-77tops --weights int8 \
//!              --image 1920x1080 --patch 16 --budget 40ms --plot plan.svg
//! memwall plan --validate
//! memwall plan --list
//! ```
//!
//! The library side is [`memwall_perf::plan`] (roofline, budget, energy,
//! report, plot, validation) and [`memwall_perf::hardware`] (the table);
//! this file parses flags, resolves the hardware (probing this machine when
//! it is chosen) and prints.

use anyhow::{bail, Context, Result};
use memwall_perf::hardware::{Hardware, HardwareTable};
use memwall_perf::plan::budget::{self, Image};
use memwall_perf::plan::{self, report, shapes, subject, validate, PlanRequest, WeightType};
use memwall_perf::probe::Probe;
use memwall_perf::synthetic::SyntheticSpec;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file, a Hugging Face directory, or a named shape: the synthetic
    /// shapes of `memwall bench` (tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b,
    /// llama-2-7b, smollm2-135m) or llama-3-8b, qwen2.5-7b, mistral-7b.
    #[arg(long, short = 'm', value_name = "MODEL_OR_SHAPE", required_unless_present_any = ["validate", "list"])]
    model: Option<String>,
    /// The chip, from the hardware table (see --list). `this-machine` probes
    /// this machine's bandwidth and peak FLOP/s (as `memwall bench --probe`).
    #[arg(long, value_name = "NAME", default_value = "this-machine")]
    hardware: String,
    /// A TOML file of extra hardware entries (same form as the built-in
    /// table; an entry with a built-in name replaces it).
    #[arg(long, value_name = "FILE")]
    hardware_file: Option<PathBuf>,
    /// Weight type: f32, f16, bf16, fp8, int8, int4, q8_0, q5_0, q5_1, q4_0,
    /// q4_1 (default: a file's own type, else q4_0).
    #[arg(long, value_name = "TYPE")]
    weights: Option<String>,
    /// KV cache element type: f32, f16, bf16, fp8, int8, q8_0.
    #[arg(long, value_name = "TYPE", default_value = "f16")]
    kv: String,
    /// Prompt tokens (text; --image adds its patches).
    #[arg(long, value_name = "N", default_value_t = 512)]
    prompt: usize,
    /// Output tokens per request.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    output: u64,
    /// Batch sizes (concurrent sequences), comma-separated.
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_value = "1,8,32")]
    batch: Vec<usize>,
    /// Latency budget per phase (e.g. 40ms for a 25 Hz loop): says whether
    /// TTFT and TPOT fit and what would make them fit.
    #[arg(long, value_name = "DURATION")]
    budget: Option<String>,
    /// An image in the prompt, WIDTHxHEIGHT: one token per patch.
    #[arg(long, value_name = "WxH")]
    image: Option<String>,
    /// Image patch side in pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 16, requires = "image")]
    patch: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Tensor parallelism over N ranks: also predict the all-reduce cost per
    /// step on --link.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    tp: u64,
    /// Pipeline parallelism over N stages: also predict the hand-off cost
    /// per step on --link.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pp: u64,
    /// The link between ranks in Gb/s (25GbE, 100 for 100 Gb/s InfiniBand).
    #[arg(long, value_name = "GBPS", default_value = "25")]
    link: String,
    /// One message's latency on --link, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 10.0)]
    link_latency_us: f64,
    /// Draw the roofline and throughput-vs-batch plot to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// List the hardware table and the named shapes, and exit.
    #[arg(long)]
    list: bool,
    /// Run the offline benchmark on this machine and print predicted
    /// against measured TTFT and TPOT.
    #[arg(long)]
    validate: bool,
    /// With --validate: synthetic models SHAPE:TYPE, comma-separated.
    #[arg(
        long,
        value_name = "SHAPE:TYPE,..",
        value_delimiter = ',',
        default_value = "tinyllama-1.1b:q8_0,qwen2.5-0.5b:q4_0,llama-3.2-1b:q4_0,smollm2-135m:q8_0"
    )]
    validate_models: Vec<String>,
    /// With --validate: prompt tokens of the pp test.
    #[arg(long, value_name = "N", default_value_t = 128)]
    validate_prompt: usize,
    /// With --validate: decode steps of the tg test.
    #[arg(long, value_name = "N", default_value_t = 32)]
    validate_gen: usize,
    /// With --validate: timed repetitions (median reported).
    #[arg(long, short = 'r', default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Threads for this machine (probe and --validate); default: all cores.
    #[arg(long, short = 't', value_name = "N")]
    threads: Option<usize>,
    /// this-machine: read the probe from FILE (`memwall bench --probe
    /// --probe-file FILE`) instead of probing.
    #[arg(long, value_name = "FILE")]
    probe_file: Option<PathBuf>,
    /// this-machine: use the table's recorded numbers instead of probing.
    #[arg(long, conflicts_with = "probe_file")]
    no_probe: bool,
}

pub fn run(args: Args) -> Result<()> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    if args.validate {
        return run_validate(&args, threads);
    }
    let mut table = HardwareTable::builtin();
    if let Some(file) = &args.hardware_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        table.extend(HardwareTable::parse(&text, &file.display().to_string())?);
    }
    if args.list {
        return print_list(&table);
    }
    let model = args.model.as_deref().context("--model is required")?;
    let mut hw = table.get(&args.hardware)?.clone();
    if hw.probe && !args.no_probe {
        hw = probed(&hw, threads, args.probe_file.as_ref())?;
    }
    let (subject, file_type) = subject::resolve(model)?;
    let mut subject = subject;
    let weights = match (&args.weights, file_type) {
        (Some(w), _) => {
            // A named type replaces the file's bytes.
            subject.file_weights = None;
            WeightType::parse(w)?
        }
        (None, Some(w)) => w,
        (None, None) => WeightType::parse("q4_0")?,
    };
    let mut notes = Vec::new();
    let image = match &args.image {
        Some(s) => {
            let (width, height) = plan::parse_image(s)?;
            let img = Image { width, height, patch: args.patch.max(1), text_tokens: args.prompt };
            notes.push(format!(
                "image {width}x{height} in {0}x{0} patches = {1} tokens (+{2} text tokens); the vision encoder is not modelled",
                img.patch,
                img.tokens(),
                args.prompt
            ));
            Some(img)
        }
        None => None,
    };
    let prompt = args.prompt + image.map_or(0, |i| i.tokens());
    if prompt + args.output as usize > subject.config.context_len {
        notes.push(format!(
            "prompt + output = {} tokens exceeds the model's trained context of {}",
            prompt + args.output as usize,
            subject.config.context_len
        ));
    }
    if args.batch.is_empty() {
        bail!("--batch needs at least one size");
    }
    let req = PlanRequest {
        subject,
        weights,
        kv_elem_bytes: plan::kv_elem_bytes(&args.kv)?,
        prompt,
        output: args.output as usize,
        batches: args.batch.iter().map(|&b| b.max(1)).collect(),
    };
    let p = plan::plan(&req, &hw);
    let budget = match &args.budget {
        Some(b) => Some(budget::check(&req, &hw, &table, plan::parse_millis(b)?, image)),
        None => None,
    };
    if let Some(path) = &args.plot {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("svg") => {}
            _ => bail!("--plot writes SVG: name the file *.svg (convert it with e.g. `convert plan.svg plan.png`)"),
        }
        plan::plot::svg(&p, path)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot draw {}", path.display()))?;
        if !args.json {
            notes.push(format!("plot written to {}", path.display()));
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report::json(&p, budget.as_ref()))?)?;
    } else {
        write!(out, "{}", report::text(&p, &hw, budget.as_ref(), &notes))?;
        if args.tp > 1 || args.pp > 1 {
            write!(out, "{}", parallel_text(&args, &req.subject.config)?)?;
        }
    }
    Ok(())
}

/// The link's share of a step under --tp / --pp.
fn parallel_text(args: &Args, c: &memwall_model::ModelConfig) -> Result<String> {
    use memwall_perf::plan::parallel::{pipeline, tensor_parallel, Link, StepComm};
    let link = Link::parse(&args.link, args.link_latency_us).map_err(anyhow::Error::msg)?;
    let (tp, pp) = (args.tp as usize, args.pp as usize);
    let line = |what: String, s: StepComm| {
        format!(
            "  {what}: {} messages, {:.1} KB sent per rank, {:.3} ms latency + {:.3} ms transfer = {:.3} ms per step\n",
            s.messages,
            s.bytes_per_rank / 1e3,
            s.latency_s * 1e3,
            s.transfer_s * 1e3,
            s.seconds() * 1e3
        )
    };
    let mut t = format!(
        "\nOn a {} Gb/s link with {} µs per message (all-reduce as a gather and a rank-ordered sum; no overlap with compute):\n",
        link.bits_per_s / 1e9,
        args.link_latency_us
    );
    if tp > 1 {
        let stages = if pp > 1 { format!(" in each of {pp} pipeline stages") } else { String::new() };
        t += &format!(
            "tensor parallelism over {tp} ranks{stages} (each reads 1/{} of the layer weights per step):\n",
            tp * pp
        );
        for &b in &args.batch {
            t += &line(format!("decode, batch {b}"), tensor_parallel(c, tp, b.max(1), link));
        }
        t += &line(format!("prefill of {} tokens", args.prompt), tensor_parallel(c, tp, args.prompt, link));
    }
    if pp > 1 {
        t += &format!(
            "pipeline over {pp} stages (a step of {} tokens or more runs as micro-batches that overlap; \
             smaller steps as one batch, the stages taking turns):\n",
            2 * memwall_model::MICRO_BATCH_TOKENS
        );
        for &b in &args.batch {
            t += &line(format!("decode, batch {b}"), pipeline(c, pp, b.max(1), b.max(1), link));
        }
        let p = args.prompt;
        let micro = memwall_model::micro_batch_count(p, pp);
        t += &line(format!("prefill of {p} tokens ({micro} micro-batches)"), pipeline(c, pp, p, 1, link));
    }
    Ok(t)
}

/// This machine's entry with probed ceilings (from a probe file if given).
fn probed(base: &Hardware, threads: usize, file: Option<&PathBuf>) -> Result<Hardware> {
    let probe = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            serde_json::from_str::<Probe>(&text).with_context(|| format!("{} is not a probe file", f.display()))?
        }
        None => {
            eprintln!("probing this machine ({threads} thread(s)); --probe-file or --no-probe skip this");
            Probe::measure(&[threads], &mut |_| {})
        }
    };
    let c = probe.at(threads).context("the probe file has no measurements")?;
    Ok(base.with_probe(c, &probe.cpu))
}

fn print_list(table: &HardwareTable) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "| hardware | GB/s | GB | TFLOP/s f32 | f16 | TOP/s int8 | int4 | W | $/h | description |")?;
    writeln!(out, "| -------- | ---: | -: | ----------: | --: | ---------: | ---: | -: | --: | ----------- |")?;
    for h in &table.entries {
        let opt = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v}"));
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            h.name,
            h.bandwidth_gbs,
            h.memory_gb,
            h.tflops_f32,
            h.tflops_f16,
            h.tops_int8,
            opt(h.tops_int4),
            opt(h.power_w),
            opt(h.price_per_hour),
            h.description,
            if h.probe { " (probed at run time)" } else { "" }
        )?;
    }
    writeln!(out, "\nshapes: {}", shapes::names())?;
    Ok(())
}

fn run_validate(args: &Args, threads: usize) -> Result<()> {
    let models = args.validate_models.iter().map(|m| SyntheticSpec::parse(m)).collect::<Result<Vec<_>, _>>()?;
    if models.is_empty() {
        bail!("--validate-models needs at least one SHAPE:TYPE");
    }
    let settings = validate::Settings {
        models,
        prompt: args.validate_prompt.max(1),
        gen: args.validate_gen.max(1),
        threads,
        reps: args.reps as usize,
        seed: 42,
    };
    let rows = validate::run(&settings, &mut |msg| eprintln!("{msg}"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "| model | test | metric | measured ms | predicted ms | error | roofline ms | roofline error | overhead ms | bound | target | GB/s | GFLOP/s |"
    )?;
    writeln!(
        out,
        "| ----- | ---- | ------ | ----------: | -----------: | ----: | ----------: | -------------: | ----------: | ----- | ------ | ---: | ------: |"
    )?;
    for r in &rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:+.1}% | {} | {:+.1}% | {} | {} | {} | {:.1} | {:.1} |",
            r.model,
            r.test,
            r.metric,
            report::ms(r.measured_ms),
            report::ms(r.predicted_ms),
            r.error * 100.0,
            report::ms(r.roofline_ms),
            r.roofline_error * 100.0,
            report::ms(r.overhead_ms),
            r.bound.name(),
            if validate::within_target(r) { "met" } else { "missed" },
            r.bandwidth / 1e9,
            r.peak_flops / 1e9
        )?;
    }
    let this = HardwareTable::builtin().get("this-machine")?.clone();
    writeln!(
        out,
        "\n{} thread(s). targets: TPOT within 15%, TTFT within 25%. Ceilings probed before every run; \
         'predicted' scales them by the efficiencies calibrated once (bandwidth {}, compute {}, see data/hardware.toml); \
         'roofline' uses them as probed; both add 'overhead' (attention, element-wise kernels and barriers at \
         their probed rates).",
        threads,
        this.bandwidth_efficiency.unwrap_or(1.0),
        this.compute_efficiency.unwrap_or(1.0)
    )?;
    Ok(())
}
