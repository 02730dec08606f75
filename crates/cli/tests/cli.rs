//! The `memwall` binary end to end: outputs in their documented shapes, and
//! a clear one-line error with a non-zero exit for each kind of bad input.

use memwall_formats::gguf::{GgmlType, GgufFile, GgufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    let p = repo().join("tests/fixtures/models").join(name);
    assert!(p.exists(), "missing fixture {}", p.display());
    p
}

fn cached(rel: &str) -> PathBuf {
    let p = repo().join(".cache").join(rel);
    assert!(p.exists(), "missing {}: run scripts/fetch-test-data.sh", p.display());
    p
}

fn memwall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memwall")).args(args).output().expect("run memwall")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memwall-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Asserts a failed run whose stderr is one `error:` line containing `needle`.
fn assert_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("error:") && stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Rewrites a GGUF with `edit` applied to a copy of its metadata and tensors.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit_meta: impl Fn(&str) -> Option<memwall_formats::gguf::Value>,
    retype: Option<(&str, GgmlType)>,
) {
    let g = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if k == "general.alignment" {
            continue;
        }
        w.add_metadata(k.clone(), edit_meta(k).unwrap_or_else(|| v.clone())).unwrap();
    }
    for t in g.tensors() {
        match retype {
            Some((name, ty)) if name == t.name => {
                let bytes = ty.bytes_for(t.n_elements()).unwrap() as usize;
                w.add_tensor_owned(t.name.clone(), &t.dims, ty, vec![0; bytes]).unwrap();
            }
            _ => {
                w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, &g.tensor_data(t)).unwrap();
            }
        }
    }
    w.write_file(dst).unwrap();
}

#[test]
fn missing_file_is_reported() {
    let out = memwall(&["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"]);
    assert_error(&out, "/nonexistent/model.gguf");
}

#[test]
fn a_text_file_is_not_a_model() {
    let path = tmp("notes.txt");
    std::fs::write(&path, "just some notes\n").unwrap();
    let out = memwall(&["generate", "--model", path.to_str().unwrap(), "--prompt", "hi"]);
    assert_error(&out, "neither a GGUF file nor a Hugging Face model directory");
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let path = tmp("mamba.gguf");
    rewrite(&fixture("llama.gguf"), &path, |k| (k == "general.architecture").then(|| "mamba".to_string().into()), None);
    let out = memwall(&["generate", "--model", path.to_str().unwrap(), "--prompt", "hi"]);
    assert_error(&out, "unsupported architecture 'mamba' (supported: llama, mistral, qwen2, qwen3, phi3, gpt2)");
}

#[test]
fn unsupported_tensor_type_names_tensor_and_type() {
    let path = tmp("iq4.gguf");
    rewrite(&fixture("llama.gguf"), &path, |_| None, Some(("blk.1.ffn_down.weight", GgmlType::IQ4_NL)));
    let out = memwall(&["generate", "--model", path.to_str().unwrap(), "--prompt", "hi"]);
    assert_error(&out, "tensor 'blk.1.ffn_down.weight' has type iq4_nl");
}

#[test]
fn truncated_file_is_reported() {
    let bytes = std::fs::read(fixture("llama.gguf")).unwrap();
    let path = tmp("truncated.gguf");
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let out = memwall(&["generate", "--model", path.to_str().unwrap(), "--prompt", "hi"]);
    assert_error(&out, "truncated");
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let model = fixture("llama.gguf");
    let prompt = "a b c d e f g h ".repeat(200);
    let out = memwall(&["generate", "--model", model.to_str().unwrap(), "--prompt", &prompt, "-n", "4"]);
    assert_error(&out, "but the model's context is 256");
}

#[test]
fn generate_json_has_prompt_ids_ids_and_text() {
    let model = fixture("qwen2.gguf");
    let out = memwall(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hello",
        "-n",
        "5",
        "--temperature",
        "0",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["prompt_ids"].as_array().unwrap().is_empty());
    assert!(v["ids"].as_array().unwrap().len() <= 5);
    assert!(v["text"].is_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TTFT") && stderr.contains("TPOT") && stderr.contains("tokens/s"), "{stderr}");
}

#[test]
fn tokenize_works_on_a_vocabulary_only_file() {
    let vocab = cached("vocab/ggml-vocab-llama-spm.gguf");
    let out = memwall(&["tokenize", "--model", vocab.to_str().unwrap(), "--text", "Hello world", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // llama-spm: "Hello world" -> ▁Hello ▁world, no BOS by default.
    assert_eq!(v["ids"], serde_json::json!([15043, 3186]));
    let with_bos =
        memwall(&["tokenize", "--model", vocab.to_str().unwrap(), "--text", "Hello world", "--json", "--bos"]);
    let v: serde_json::Value = serde_json::from_slice(&with_bos.stdout).unwrap();
    assert_eq!(v["ids"], serde_json::json!([1, 15043, 3186]));
}

#[test]
fn logits_prints_top_k_per_position() {
    let model = fixture("gpt2.gguf");
    let out = memwall(&["logits", "--model", model.to_str().unwrap(), "--tokens", "1,2,3", "--top", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let positions = v["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 3);
    for p in positions {
        let top = p.as_array().unwrap();
        assert_eq!(top.len(), 4);
        let logits: Vec<f64> = top.iter().map(|e| e[1].as_f64().unwrap()).collect();
        assert!(logits.windows(2).all(|w| w[0] >= w[1]), "not sorted: {logits:?}");
    }
}

#[test]
fn inspect_describes_the_model() {
    let out = memwall(&["inspect", fixture("qwen3.gguf").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["architecture:   qwen3", "context length:", "parameters:", "tokenizer:", "chat template:"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
