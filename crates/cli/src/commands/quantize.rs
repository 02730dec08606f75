//! `memwall quantize IN.gguf OUT.gguf --type TYPE`: re-encode a GGUF model's
//! weight matrices, as llama.cpp's `llama-quantize` does without an
//! importance matrix.
//!
//! Which tensors change, and to what, follows llama.cpp's default rules
//! (`src/llama-quant.cpp`, `llama_tensor_get_type`), kept as data in
//! [`SCHEMES`] and [`fallback`]:
//!
//! - only matrices (2+ dims) whose name ends in `weight` are re-encoded,
//!   except norms and the few small tensors llama.cpp keeps ([`KEEP`]);
//!   everything else (1-D norms, biases) is copied unchanged;
//! - `output.weight`, and `token_embd.weight` when the embedding is tied
//!   (no `output.weight`), get the scheme's output type (Q6_K for every
//!   quantized scheme but q8_0), or Q8_0 when their rows are not whole
//!   blocks of the scheme's type;
//! - the k-quant mixes raise `attn_v` (and fused `attn_qkv`), `ffn_down` and
//!   `attn_output` in some layers ([`Pick`]);
//! - a row length that is not a whole number of blocks falls back to a
//!   32-element type ([`fallback`]), and to F16 if not even that fits.
//!
//! The bare k-quant names are llama.cpp's `_S` mixes (`q3_k` is Q3_K_S,
//! `q4_k` Q4_K_S, `q5_k` Q5_K_S), the mixes closest to "this type
//! everywhere", and `q2_k` is llama.cpp's Q2_K. llama.cpp's rules for Falcon,
//! mixture-of-experts and 70B models, and for the IQ types, are left out:
//! memwall runs none of them.
//!
//! A quantized input is decoded to f32 first (tensors already in their
//! target type are copied byte for byte). The output is built in memory
//! (peak memory: about the output's size, the input being memory-mapped)
//! and written to `OUT.partial`, then renamed, so a failed run leaves no
//! half-written model behind.
//!
//! `tests/quantize.rs` holds every `--type` to the tensors (types and bytes)
//! llama.cpp's `llama_model_quantize` writes for the same model.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_formats::gguf::{GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use memwall_kernels::quant::{dequantize_row, quantize_row};
use memwall_kernels::DType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model to read (F32, F16, BF16 or already quantized).
    input: PathBuf,
    /// The GGUF file to write.
    output: PathBuf,
    /// Target: q4_0, q4_1, q5_0, q5_1, q8_0, f16, bf16, f32, or a k-quant
    /// mix as llama-quantize makes it: q2_k, q3_k (its Q3_K_S), q4_k
    /// (Q4_K_S), q5_k (Q5_K_S), q6_k, q3_k_m, q4_k_m, q5_k_m. Norms and
    /// other 1-D tensors are copied; output.weight gets q6_K (q8_0 for q8_0).
    #[arg(long = "type", value_name = "TYPE")]
    ty: String,
    /// Overwrite OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// Worker threads (default: all available cores).
    #[arg(long, short = 't', value_name = "N")]
    threads: Option<usize>,
}

/// A tensor's role, from its name (llama.cpp's `tensor_get_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    /// `attn_v`, and the fused `attn_qkv` / `attn_kv_b`, which llama.cpp
    /// sends down the same branch.
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

impl Category {
    fn of(name: &str) -> Category {
        match name {
            "output.weight" => Category::Output,
            "token_embd.weight" | "per_layer_token_embd.weight" => Category::TokenEmbd,
            _ if ["attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight"].iter().any(|p| name.contains(p)) => {
                Category::AttnV
            }
            _ if name.contains("attn_output.weight") => Category::AttnOutput,
            _ if name.contains("ffn_down") => Category::FfnDown,
            _ => Category::Other,
        }
    }
}

/// How a mix picks the type of one tensor of a category. `i` counts the
/// tensors of the category in file order (the layer, for one-per-layer
/// tensors), `n` is their number (`attn_v`) or the layer count (`ffn_down`).
#[derive(Clone, Copy, Debug)]
enum Pick {
    Always(DType),
    /// llama.cpp's `use_more_bits(i, n)`: the first and last eighth of the
    /// layers and every third layer between.
    MoreBits(DType),
    /// `then` while `i < n / den`, `otherwise` after (`None`: the base type).
    FirstFraction {
        den: usize,
        then: DType,
        otherwise: Option<DType>,
    },
    /// `then` for the first `count` tensors, `otherwise` after.
    FirstCount {
        count: usize,
        then: DType,
        otherwise: Option<DType>,
    },
    /// `then` when `n_head / n_head_kv >= 4`, else `otherwise`.
    GqaAtLeast4 {
        then: DType,
        otherwise: DType,
    },
}

/// One `--type`: llama.cpp's `llama_ftype` and its rules.
struct Scheme {
    /// The `--type` name.
    name: &'static str,
    /// `general.file_type` (`enum llama_ftype`).
    file_type: u32,
    /// The type of every matrix no rule changes.
    base: DType,
    /// `output.weight` (and a tied `token_embd.weight`).
    output: DType,
    rules: &'static [(Category, Pick)],
}

use DType::{Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};

const fn plain(name: &'static str, file_type: u32, base: DType, output: DType) -> Scheme {
    Scheme { name, file_type, base, output, rules: &[] }
}

/// Every `--type`, in the order `--help` lists them.
const SCHEMES: &[Scheme] = &[
    plain("q4_0", 2, DType::Q4_0, Q6_K),
    plain("q4_1", 3, DType::Q4_1, Q6_K),
    plain("q5_0", 8, DType::Q5_0, Q6_K),
    plain("q5_1", 9, DType::Q5_1, Q6_K),
    plain("q8_0", 7, DType::Q8_0, DType::Q8_0),
    Scheme {
        name: "q2_k",
        file_type: 10,
        base: Q2_K,
        output: Q6_K,
        rules: &[
            (Category::AttnV, Pick::GqaAtLeast4 { then: Q4_K, otherwise: Q3_K }),
            (Category::FfnDown, Pick::Always(Q3_K)),
            (Category::AttnOutput, Pick::Always(Q3_K)),
        ],
    },
    plain("q3_k", 11, Q3_K, Q6_K),
    Scheme {
        name: "q4_k",
        file_type: 14,
        base: Q4_K,
        output: Q6_K,
        rules: &[
            (Category::AttnV, Pick::FirstCount { count: 4, then: Q5_K, otherwise: None }),
            (Category::FfnDown, Pick::FirstFraction { den: 8, then: Q5_K, otherwise: None }),
        ],
    },
    plain("q5_k", 16, Q5_K, Q6_K),
    plain("q6_k", 18, Q6_K, Q6_K),
    Scheme {
        name: "q3_k_m",
        file_type: 12,
        base: Q3_K,
        output: Q6_K,
        rules: &[
            (Category::AttnV, Pick::FirstCount { count: 2, then: Q5_K, otherwise: Some(Q4_K) }),
            (Category::FfnDown, Pick::FirstFraction { den: 16, then: Q5_K, otherwise: Some(Q4_K) }),
            (Category::AttnOutput, Pick::Always(Q4_K)),
        ],
    },
    Scheme {
        name: "q4_k_m",
        file_type: 15,
        base: Q4_K,
        output: Q6_K,
        rules: &[(Category::AttnV, Pick::MoreBits(Q6_K)), (Category::FfnDown, Pick::MoreBits(Q6_K))],
    },
    Scheme {
        name: "q5_k_m",
        file_type: 17,
        base: Q5_K,
        output: Q6_K,
        rules: &[(Category::AttnV, Pick::MoreBits(Q6_K)), (Category::FfnDown, Pick::MoreBits(Q6_K))],
    },
    plain("f16", 1, DType::F16, DType::F16),
    plain("bf16", 32, DType::BF16, DType::BF16),
    plain("f32", 0, DType::F32, DType::F32),
];

/// Name fragments of matrices llama.cpp never quantizes.
const KEEP: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "position_embd.weight",
    "token_types.weight",
    "ssm_conv1d",
    "altup",
    "laurel",
    "per_layer_model_proj",
];

/// Metadata llama.cpp drops from a quantized file (it writes one file).
const DROP_KEYS: &[&str] = &["split.no", "split.count", "split.tensors.count"];

/// llama.cpp's `tensor_type_fallback`: the type used when a row of `row_len`
/// elements is not whole blocks of `ty` (F16 when even that does not fit).
fn fallback(ty: DType, row_len: usize) -> DType {
    if row_len.is_multiple_of(ty.block_len()) {
        return ty;
    }
    let next = match ty {
        Q2_K | Q3_K => DType::Q4_0,
        Q4_K => DType::Q5_0,
        Q5_K => DType::Q5_1,
        Q6_K => DType::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(next.block_len()) {
        next
    } else {
        DType::F16
    }
}

fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize) % 3 == 2
}

impl Scheme {
    fn by_name(name: &str) -> Result<&'static Scheme> {
        let lower = name.to_ascii_lowercase();
        let lower = match lower.as_str() {
            "q3_k_s" => "q3_k",
            "q4_k_s" => "q4_k",
            "q5_k_s" => "q5_k",
            l => l,
        };
        match SCHEMES.iter().find(|s| s.name == lower) {
            Some(s) => Ok(s),
            None => bail!(
                "unknown --type {name:?}; valid types: {}",
                SCHEMES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// What the rules need to know about the whole model.
struct ModelFacts {
    /// No `output.weight`: the output projection is `token_embd`.
    tied_embeddings: bool,
    /// `n_head / n_head_kv` (1 when unknown).
    n_gqa: usize,
    /// Number of `attn_v`-like tensors.
    n_attn_v: usize,
    /// Layers (`{arch}.block_count`, else the number of `ffn_down` tensors).
    n_layers: usize,
}

impl ModelFacts {
    fn of(g: &GgufFile) -> ModelFacts {
        let arch = g.get("general.architecture").and_then(Value::as_str).unwrap_or("");
        let key = |k: &str| g.get(&format!("{arch}.{k}")).and_then(Value::as_u64).map(|v| v as usize);
        let count = |c: Category| g.tensors().iter().filter(|t| Category::of(&t.name) == c).count();
        let n_gqa = match (key("attention.head_count"), key("attention.head_count_kv")) {
            (Some(h), Some(kv)) if kv > 0 => h / kv,
            _ => 1,
        };
        ModelFacts {
            tied_embeddings: g.tensor("output.weight").is_none(),
            n_gqa,
            n_attn_v: count(Category::AttnV),
            n_layers: key("block_count").unwrap_or_else(|| count(Category::FfnDown)),
        }
    }
}

/// Per-category counters, as llama.cpp's `i_attention_wv` / `i_ffn_down`.
#[derive(Default)]
struct Counters {
    attn_v: usize,
    ffn_down: usize,
}

/// The type a tensor is written in.
#[derive(Clone, Copy, Debug)]
struct Target {
    ty: DType,
    /// What the rules chose; differs from `ty` when the rows are not whole
    /// blocks of it ([`fallback`]).
    wanted: DType,
}

/// The type `t` gets under `scheme` (`None`: copied unchanged). Call once
/// per tensor, in file order (the rules count tensors per category).
fn target_type(scheme: &Scheme, facts: &ModelFacts, t: &TensorInfo, counters: &mut Counters) -> Option<Target> {
    let name = t.name.as_str();
    if t.dims.len() < 2 || !name.ends_with("weight") || KEEP.iter().any(|k| name.contains(k)) {
        return None;
    }
    let row_len = t.dims[0] as usize;
    if !scheme.base.is_quantized() {
        return Some(Target { ty: scheme.base, wanted: scheme.base });
    }
    let category = Category::of(name);
    let ty = if category == Category::Output || (category == Category::TokenEmbd && facts.tied_embeddings) {
        if row_len.is_multiple_of(scheme.base.block_len()) {
            scheme.output
        } else {
            DType::Q8_0
        }
    } else {
        let (i, n) = match category {
            Category::AttnV => (counters.attn_v, facts.n_attn_v),
            _ => (counters.ffn_down, facts.n_layers),
        };
        match category {
            Category::AttnV => counters.attn_v += 1,
            Category::FfnDown => counters.ffn_down += 1,
            _ => {}
        }
        let pick = scheme.rules.iter().find(|(c, _)| *c == category).map(|(_, p)| *p);
        match pick {
            None => scheme.base,
            Some(Pick::Always(ty)) => ty,
            Some(Pick::MoreBits(ty)) => {
                if use_more_bits(i, n) {
                    ty
                } else {
                    scheme.base
                }
            }
            Some(Pick::FirstFraction { den, then, otherwise }) => {
                if i < n / den {
                    then
                } else {
                    otherwise.unwrap_or(scheme.base)
                }
            }
            Some(Pick::FirstCount { count, then, otherwise }) => {
                if i < count {
                    then
                } else {
                    otherwise.unwrap_or(scheme.base)
                }
            }
            Some(Pick::GqaAtLeast4 { then, otherwise }) => {
                if facts.n_gqa >= 4 {
                    then
                } else {
                    otherwise
                }
            }
        }
    };
    Some(Target { ty: fallback(ty, row_len), wanted: ty })
}

pub fn run(args: Args) -> Result<()> {
    let scheme = Scheme::by_name(&args.ty)?;
    check_paths(&args.input, &args.output, args.force)?;
    let start = Instant::now();
    let g = GgufFile::open(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let facts = ModelFacts::of(&g);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);

    // Decide every tensor's type first, so problems surface before any work.
    let mut counters = Counters::default();
    let plan: Vec<Option<Target>> = g.tensors().iter().map(|t| target_type(scheme, &facts, t, &mut counters)).collect();
    let mut requantized = Vec::new();
    for (t, p) in g.tensors().iter().zip(&plan) {
        let Some(Target { ty, wanted }) = *p else { continue };
        if GgmlType::from_dtype(ty) == t.ggml_type {
            continue;
        }
        let Some(src) = t.dtype() else {
            bail!("tensor {} has type {}, which memwall cannot decode", t.name, t.ggml_type);
        };
        if src.is_quantized() {
            requantized.push(src);
        }
        if ty != wanted {
            eprintln!("memwall: {}: rows of {} are not whole {wanted} blocks, using {ty}", t.name, t.dims[0]);
        }
    }
    if let Some(src) = requantized.first() {
        eprintln!(
            "memwall: warning: {} is already quantized ({src}); quantizing it again loses more quality than \
             quantizing the F16/F32 original",
            args.input.display()
        );
    }

    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if !DROP_KEYS.contains(&k.as_str()) {
            w.add_metadata(k.clone(), v.clone())?;
        }
    }
    w.add_metadata("general.quantization_version", Value::U32(2))?;
    w.add_metadata("general.file_type", Value::U32(scheme.file_type))?;

    let total: u64 = g.tensors().iter().map(|t| t.n_bytes as u64).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:>32} [{bar:30}] {bytes}/{total_bytes} {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut out_types: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (t, p) in g.tensors().iter().zip(&plan) {
        bar.set_message(t.name.clone());
        let src = g.tensor_data(t);
        let (ty, data) = match p {
            Some(Target { ty, .. }) if GgmlType::from_dtype(*ty) != t.ggml_type => {
                let from = t.dtype().expect("checked above");
                (GgmlType::from_dtype(*ty), convert(&src, from, *ty, t.dims[0] as usize, threads))
            }
            _ => (t.ggml_type, src.to_vec()),
        };
        *out_types.entry(ty.name()).or_default() += 1;
        w.add_tensor_owned(t.name.clone(), &t.dims, ty, data)
            .with_context(|| format!("cannot add tensor {}", t.name))?;
        bar.inc(t.n_bytes as u64);
    }
    bar.set_message("writing");
    let partial = partial_path(&args.output);
    let written = w
        .write_file(&partial)
        .map_err(anyhow::Error::from)
        .and_then(|()| std::fs::rename(&partial, &args.output).map_err(anyhow::Error::from));
    bar.finish_and_clear();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", args.output.display()));
    }

    let in_mb = std::fs::metadata(&args.input).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let out_mb = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let types: Vec<String> = out_types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "memwall: {} ({in_mb:.1} MB) -> {} ({out_mb:.1} MB, {}) in {:.1} s; tensors: {}",
        args.input.display(),
        args.output.display(),
        scheme.name,
        start.elapsed().as_secs_f64(),
        types.join(", ")
    );
    Ok(())
}

fn check_paths(input: &Path, output: &Path, force: bool) -> Result<()> {
    if !input.is_file() {
        bail!("cannot read {}: no such file", input.display());
    }
    if output.exists() {
        if !force {
            bail!("{} exists; pass --force to overwrite it", output.display());
        }
        let same = match (input.canonicalize(), output.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            bail!("the output {} is the input file; write to another path", output.display());
        }
    }
    Ok(())
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

/// Re-encode `src` (whole rows of `row_len` elements of `from`) as `to`,
/// one row at a time on `threads` threads.
///
/// `src`: `[n_rows * from.row_bytes(row_len)]`; returns
/// `[n_rows * to.row_bytes(row_len)]` (the caller checked both fit).
fn convert(src: &[u8], from: DType, to: DType, row_len: usize, threads: usize) -> Vec<u8> {
    let (sb, db) = (from.row_bytes(row_len).expect("valid GGUF rows"), to.row_bytes(row_len).expect("fitted type"));
    if sb == 0 || db == 0 {
        return Vec::new(); // an empty tensor
    }
    let n_rows = src.len() / sb;
    let mut out = vec![0u8; n_rows * db];
    let rows_per = n_rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (src, dst) in src.chunks(rows_per * sb).zip(out.chunks_mut(rows_per * db)) {
            s.spawn(move || {
                let mut row = vec![0f32; row_len];
                for (sr, dr) in src.chunks_exact(sb).zip(dst.chunks_exact_mut(db)) {
                    dequantize_row(from, sr, &mut row);
                    quantize_row(to, &row, dr);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[u64]) -> TensorInfo {
        TensorInfo { name: name.into(), dims: dims.to_vec(), ggml_type: GgmlType::F32, offset: 0, n_bytes: 0 }
    }

    /// Types of a 8-layer llama with `d_model` columns under `scheme`.
    fn plan(scheme: &str, tied: bool, n_gqa: usize, d_model: u64) -> Vec<(String, Option<DType>)> {
        let scheme = Scheme::by_name(scheme).unwrap();
        let mut ts = vec![tensor("token_embd.weight", &[d_model, 1000])];
        for i in 0..8 {
            for (n, dims) in [
                ("attn_norm.weight", vec![d_model]),
                ("attn_q.weight", vec![d_model, d_model]),
                ("attn_v.weight", vec![d_model, d_model / 4]),
                ("attn_output.weight", vec![d_model, d_model]),
                ("ffn_down.weight", vec![3 * d_model, d_model]),
            ] {
                ts.push(tensor(&format!("blk.{i}.{n}"), &dims));
            }
        }
        if !tied {
            ts.push(tensor("output.weight", &[d_model, 1000]));
        }
        let facts = ModelFacts { tied_embeddings: tied, n_gqa, n_attn_v: 8, n_layers: 8 };
        let mut c = Counters::default();
        ts.iter().map(|t| (t.name.clone(), target_type(scheme, &facts, t, &mut c).map(|p| p.ty))).collect()
    }

    fn ty(p: &[(String, Option<DType>)], name: &str) -> Option<DType> {
        p.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
    }

    #[test]
    fn q4_k_m_follows_llama_cpp() {
        let p = plan("q4_k_m", false, 1, 256);
        assert_eq!(ty(&p, "output.weight"), Some(Q6_K));
        assert_eq!(ty(&p, "token_embd.weight"), Some(Q4_K));
        assert_eq!(ty(&p, "blk.0.attn_norm.weight"), None);
        assert_eq!(ty(&p, "blk.0.attn_q.weight"), Some(Q4_K));
        assert_eq!(ty(&p, "blk.0.attn_output.weight"), Some(Q4_K));
        // use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2 -> layers 0, 3, 6, 7.
        for i in 0..8 {
            let want = if [0, 3, 6, 7].contains(&i) { Q6_K } else { Q4_K };
            assert_eq!(ty(&p, &format!("blk.{i}.attn_v.weight")), Some(want), "layer {i}");
            assert_eq!(ty(&p, &format!("blk.{i}.ffn_down.weight")), Some(want), "layer {i}");
        }
    }

    #[test]
    fn tied_embedding_gets_the_output_type() {
        let p = plan("q4_k_m", true, 1, 256);
        assert_eq!(ty(&p, "token_embd.weight"), Some(Q6_K));
        let p = plan("q8_0", true, 1, 256);
        assert_eq!(ty(&p, "token_embd.weight"), Some(DType::Q8_0));
        let p = plan("q4_0", false, 1, 256);
        assert_eq!(ty(&p, "output.weight"), Some(Q6_K));
        assert_eq!(ty(&p, "token_embd.weight"), Some(DType::Q4_0));
    }

    #[test]
    fn q3_k_m_and_q2_k_rules() {
        let p = plan("q3_k_m", false, 1, 256);
        assert_eq!(ty(&p, "blk.0.attn_v.weight"), Some(Q5_K));
        assert_eq!(ty(&p, "blk.1.attn_v.weight"), Some(Q5_K));
        assert_eq!(ty(&p, "blk.2.attn_v.weight"), Some(Q4_K));
        // n_layers / 16 = 0: no ffn_down gets Q5_K in an 8-layer model.
        assert_eq!(ty(&p, "blk.0.ffn_down.weight"), Some(Q4_K));
        assert_eq!(ty(&p, "blk.0.attn_output.weight"), Some(Q4_K));
        assert_eq!(ty(&p, "blk.0.attn_q.weight"), Some(Q3_K));
        assert_eq!(ty(&plan("q2_k", false, 1, 256), "blk.5.attn_v.weight"), Some(Q3_K));
        assert_eq!(ty(&plan("q2_k", false, 4, 256), "blk.5.attn_v.weight"), Some(Q4_K));
        assert_eq!(ty(&plan("q2_k", false, 4, 256), "blk.5.ffn_down.weight"), Some(Q3_K));
    }

    #[test]
    fn rows_that_are_not_whole_blocks_fall_back() {
        // d_model 96: not a multiple of 256 (k-quants) but of 32.
        let p = plan("q4_k_m", false, 1, 96);
        assert_eq!(ty(&p, "blk.1.attn_q.weight"), Some(DType::Q5_0));
        assert_eq!(ty(&p, "blk.0.attn_v.weight"), Some(DType::Q8_0)); // Q6_K -> Q8_0
        assert_eq!(ty(&p, "output.weight"), Some(DType::Q8_0));
        let p = plan("q5_k", false, 1, 96);
        assert_eq!(ty(&p, "blk.1.attn_q.weight"), Some(DType::Q5_1));
        // 40 columns: not even whole 32-blocks.
        let p = plan("q4_0", false, 1, 40);
        assert_eq!(ty(&p, "blk.1.attn_q.weight"), Some(DType::F16));
    }

    #[test]
    fn float_targets_convert_every_matrix() {
        let p = plan("f16", false, 1, 96);
        assert_eq!(ty(&p, "output.weight"), Some(DType::F16));
        assert_eq!(ty(&p, "blk.0.attn_v.weight"), Some(DType::F16));
        assert_eq!(ty(&p, "blk.0.attn_norm.weight"), None);
    }

    #[test]
    fn unknown_type_lists_the_valid_ones() {
        let e = Scheme::by_name("q7_k").err().unwrap().to_string();
        assert!(e.contains("q7_k") && e.contains("q4_k_m") && e.contains("bf16"), "{e}");
        assert_eq!(Scheme::by_name("Q4_K_S").unwrap().name, "q4_k");
    }

    #[test]
    fn convert_handles_empty_and_uneven_row_splits() {
        assert!(convert(&[], DType::F32, DType::Q8_0, 0, 2).is_empty());
        // 3 rows of 32 on 2 threads: the split (2 + 1 rows) must not matter.
        let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin()).collect();
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let one = convert(&src, DType::F32, DType::Q8_0, 32, 1);
        assert_eq!(one.len(), 3 * 34);
        assert_eq!(convert(&src, DType::F32, DType::Q8_0, 32, 2), one);
        assert_eq!(convert(&src, DType::F32, DType::Q8_0, 32, 8), one);
    }

    #[test]
    fn every_scheme_file_type_is_distinct() {
        let mut ids: Vec<u32> = SCHEMES.iter().map(|s| s.file_type).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), SCHEMES.len());
    }
}
