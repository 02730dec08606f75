//! `memwall quantize` end to end: a small F32 llama (the tokenizer and
//! metadata of `tests/fixtures/models/llama.gguf`, random weights in shapes
//! whose rows are whole k-quant blocks, except `ffn_down`'s) is quantized,
//! the output is checked against llama.cpp's type rules, against the
//! tensors llama.cpp's own `llama_model_quantize` writes for the same model
//! (`tests/data/llama_quantize.json`, from `tools/kquant_fixtures.py`), and
//! run through `memwall logits` next to the F32 model.

use memwall_formats::gguf::{GgmlType, GgufFile, GgufWriter, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const D_MODEL: u64 = 256;
/// Not a multiple of 256: `ffn_down` rows must fall back to 32-element types.
const D_FF: u64 = 320;
const N_LAYERS: usize = 4;
const VOCAB: u64 = 512;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memwall-quantize-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn memwall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memwall")).args(args).output().expect("run memwall")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "memwall failed: {stderr}");
    stderr
}

/// xorshift64*, uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The F32 test model (written once per test process; tests run in parallel).
fn f32_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(write_f32_model).clone()
}

fn write_f32_model() -> PathBuf {
    let path = tmp("model-f32.gguf");
    let fixture = GgufFile::open(&repo().join("tests/fixtures/models/llama.gguf")).unwrap();
    let mut w = GgufWriter::new();
    let head_dim = D_MODEL / 4;
    for (k, v) in fixture.metadata() {
        let v = match k.as_str() {
            "llama.embedding_length" => Value::U32(D_MODEL as u32),
            "llama.feed_forward_length" => Value::U32(D_FF as u32),
            "llama.block_count" => Value::U32(N_LAYERS as u32),
            "llama.attention.head_count" => Value::U32(4),
            "llama.attention.head_count_kv" => Value::U32(2),
            "llama.attention.key_length" | "llama.attention.value_length" | "llama.rope.dimension_count" => {
                Value::U32(head_dim as u32)
            }
            _ => v.clone(),
        };
        w.add_metadata(k.clone(), v).unwrap();
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut matrix = |w: &mut GgufWriter, name: &str, cols: u64, rows: u64, gain: f32| {
        let scale = gain * (3.0 / cols as f32).sqrt();
        let data: Vec<u8> = (0..cols * rows).flat_map(|_| (rng.next() * scale).to_le_bytes()).collect();
        w.add_tensor_owned(name, &[cols, rows], GgmlType::F32, data).unwrap();
    };
    let ones = |n: u64| -> Vec<u8> { (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect() };
    matrix(&mut w, "token_embd.weight", D_MODEL, VOCAB, 1.0);
    for i in 0..N_LAYERS {
        let b = |n: &str| format!("blk.{i}.{n}");
        w.add_tensor_owned(b("attn_norm.weight"), &[D_MODEL], GgmlType::F32, ones(D_MODEL)).unwrap();
        matrix(&mut w, &b("attn_q.weight"), D_MODEL, D_MODEL, 1.0);
        matrix(&mut w, &b("attn_k.weight"), D_MODEL, D_MODEL / 2, 1.0);
        matrix(&mut w, &b("attn_v.weight"), D_MODEL, D_MODEL / 2, 1.0);
        matrix(&mut w, &b("attn_output.weight"), D_MODEL, D_MODEL, 1.0);
        w.add_tensor_owned(b("ffn_norm.weight"), &[D_MODEL], GgmlType::F32, ones(D_MODEL)).unwrap();
        matrix(&mut w, &b("ffn_gate.weight"), D_MODEL, D_FF, 1.0);
        matrix(&mut w, &b("ffn_up.weight"), D_MODEL, D_FF, 1.0);
        matrix(&mut w, &b("ffn_down.weight"), D_FF, D_MODEL, 1.0);
    }
    w.add_tensor_owned("output_norm.weight", &[D_MODEL], GgmlType::F32, ones(D_MODEL)).unwrap();
    // Gain 4: logits with a standard deviation of about 4, so the next-token
    // distributions are peaked as a trained model's are, not nearly uniform.
    matrix(&mut w, "output.weight", D_MODEL, VOCAB, 4.0);
    w.write_file(&path).unwrap();
    path
}

/// Quantizes the test model to `ty`; `test` keeps parallel tests' files apart.
fn quantize(ty: &str, test: &str) -> PathBuf {
    let out = tmp(&format!("{test}-{ty}.gguf"));
    let model = f32_model();
    ok(&memwall(&["quantize", model.to_str().unwrap(), out.to_str().unwrap(), "--type", ty, "--force"]));
    out
}

fn types(path: &Path) -> Vec<(String, GgmlType)> {
    GgufFile::open(path).unwrap().tensors().iter().map(|t| (t.name.clone(), t.ggml_type)).collect()
}

const PROMPT: &str = "1,15,200,33,7,480,91,3";

/// Softmax of every position's full logit row (`memwall logits --top VOCAB`).
fn next_token_probs(model: &Path) -> Vec<Vec<f64>> {
    let out = memwall(&["logits", "--model", model.to_str().unwrap(), "--tokens", PROMPT, "--top", "512"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pos| {
            let mut row = vec![f64::NEG_INFINITY; VOCAB as usize];
            for e in pos.as_array().unwrap() {
                row[e[0].as_u64().unwrap() as usize] = e[1].as_f64().unwrap();
            }
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|l| (l - max).exp()).sum();
            row.iter().map(|l| (l - max).exp() / sum).collect()
        })
        .collect()
}

/// Mean over positions of KL(p || q), in nats.
fn mean_kl(p: &[Vec<f64>], q: &[Vec<f64>]) -> f64 {
    let kl: f64 = p
        .iter()
        .zip(q)
        .map(|(p, q)| p.iter().zip(q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q).ln()).sum::<f64>())
        .sum();
    kl / p.len() as f64
}

#[test]
fn q4_k_m_types_follow_llama_cpp_rules() {
    let path = quantize("q4_k_m", "types");
    let t = types(&path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get("general.file_type").and_then(Value::as_u64), Some(15));
    assert!(f.get("tokenizer.ggml.tokens").is_some(), "metadata copied");
    for (name, ty) in &t {
        // use_more_bits(i, 4) holds for layers 2 and 3.
        let more = name.starts_with("blk.2.") || name.starts_with("blk.3.");
        let want = if name.ends_with("_norm.weight") {
            GgmlType::F32
        } else if name == "output.weight" {
            GgmlType::Q6_K
        } else if name.ends_with("attn_v.weight") {
            if more {
                GgmlType::Q6_K
            } else {
                GgmlType::Q4_K
            }
        } else if name.ends_with("ffn_down.weight") {
            // Rows of 320: Q6_K falls back to Q8_0, Q4_K to Q5_0.
            if more {
                GgmlType::Q8_0
            } else {
                GgmlType::Q5_0
            }
        } else {
            GgmlType::Q4_K
        };
        assert_eq!(*ty, want, "{name}");
    }
}

#[test]
fn q8_0_quantizes_every_matrix_and_keeps_norms() {
    let t = types(&quantize("q8_0", "types"));
    assert_eq!(t.len(), 3 + 9 * N_LAYERS);
    for (name, ty) in &t {
        let want = if name.ends_with("_norm.weight") { GgmlType::F32 } else { GgmlType::Q8_0 };
        assert_eq!(*ty, want, "{name}");
    }
}

/// The quantized models' next-token distributions stay close to the F32
/// model's, and lose more with fewer bits.
///
/// Bounds: KL ~ var(logit error) / 2 for small errors. The logits here have
/// a spread of about 4 and the residual stream of a random 4-layer model
/// passes weight errors on undamped, so a relative weight error `e` becomes
/// a logit error of roughly `4 * e * few`. Q8_0 (e ~ 0.3%, plus the 8-bit
/// activations memwall's quantized matmuls use) measured 3.3e-3 nats;
/// Q4_K_M (e ~ 3%, ffn_down in Q5_0 / Q8_0) measured 0.20; Q2_K 3.2. The
/// bounds are 3x and 2.5x those. A quantizer with wrong scales or scrambled
/// quants gives KL of several nats and fails.
#[test]
fn logits_stay_close_to_f32() {
    let p = next_token_probs(&f32_model());
    let kl_q8 = mean_kl(&p, &next_token_probs(&quantize("q8_0", "logits")));
    let kl_q4 = mean_kl(&p, &next_token_probs(&quantize("q4_k_m", "logits")));
    let kl_q2 = mean_kl(&p, &next_token_probs(&quantize("q2_k", "logits")));
    eprintln!("KL(f32 || q8_0) = {kl_q8:.2e}, q4_k_m = {kl_q4:.2e}, q2_k = {kl_q2:.2e}");
    assert!(kl_q8 < 0.01, "q8_0: KL {kl_q8}");
    assert!(kl_q4 < 0.5, "q4_k_m: KL {kl_q4}");
    assert!(kl_q8 < kl_q4 && kl_q4 < kl_q2, "fewer bits must cost more: {kl_q8} {kl_q4} {kl_q2}");
}

#[test]
fn requantizing_a_quantized_file_warns() {
    let q8 = quantize("q8_0", "requant");
    let out = tmp("model-q8-q4.gguf");
    let stderr = ok(&memwall(&["quantize", q8.to_str().unwrap(), out.to_str().unwrap(), "--type", "q4_k", "--force"]));
    assert!(stderr.contains("already quantized"), "{stderr}");
    let t = types(&out);
    assert!(t.iter().any(|(n, ty)| n == "blk.0.attn_q.weight" && *ty == GgmlType::Q4_K));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 over the tensors sorted by name: name, 0, u32 ggml type id, data
/// (as `tools/kquant_fixtures.py`'s `tensor_digest`).
fn tensor_digest(path: &Path) -> String {
    let g = GgufFile::open(path).unwrap();
    let mut ts: Vec<_> = g.tensors().iter().collect();
    ts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for t in ts {
        h.update(t.name.as_bytes());
        h.update([0u8]);
        h.update(t.ggml_type.id().to_le_bytes());
        h.update(&*g.tensor_data(t));
    }
    hex(&h.finalize())
}

/// Every `--type` writes exactly the tensors (types and bytes) that
/// llama.cpp's `llama_model_quantize` writes for the same F32 model.
#[test]
fn matches_llama_quantize_tensor_for_tensor() {
    let json =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama_quantize.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&json).unwrap();
    let model = f32_model();
    assert_eq!(
        hex(&Sha256::digest(std::fs::read(&model).unwrap())),
        want["model_sha256"].as_str().unwrap(),
        "the test model changed: regenerate tests/data/llama_quantize.json (tools/kquant_fixtures.py)"
    );
    let types = want["types"].as_object().unwrap();
    assert_eq!(types.len(), 15);
    for (ty, digest) in types {
        let ours = tensor_digest(&quantize(ty, "llama"));
        assert_eq!(ours, digest.as_str().unwrap(), "{ty}: tensors differ from llama.cpp's");
    }
}

fn assert_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error:") && stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let model = f32_model();
    let m = model.to_str().unwrap();
    let out = tmp("never-written.gguf");
    let o = out.to_str().unwrap();
    let bad = memwall(&["quantize", m, o, "--type", "q7_k"]);
    assert_error(&bad, "unknown --type \"q7_k\"; valid types: q4_0, q4_1");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("q4_k_m"));
    assert!(!out.exists());
    assert_error(&memwall(&["quantize", "/nonexistent/in.gguf", o, "--type", "q8_0"]), "/nonexistent/in.gguf");
    let text = tmp("notes.txt");
    std::fs::write(&text, "not a model").unwrap();
    assert_error(&memwall(&["quantize", text.to_str().unwrap(), o, "--type", "q8_0"]), "cannot read");
    assert_error(&memwall(&["quantize", m, m, "--type", "q8_0"]), "exists; pass --force");
    assert_error(&memwall(&["quantize", m, m, "--type", "q8_0", "--force"]), "is the input file");
    assert!(!out.exists());
}
