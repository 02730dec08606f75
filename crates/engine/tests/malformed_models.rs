//! Model files are untrusted input: a damaged file must give an error or a
//! model that runs, never a panic. Random byte mutations of the fixtures'
//! headers (metadata, tensor table) go through the whole path a user takes:
//! load, tokenize, a forward pass and a sampled token.

use memwall_engine::{Engine, EngineConfig, EngineError, GenerateParams, Request, SamplingParams};
use memwall_formats::tokenizer::EncodeOptions;
use memwall_formats::Blob;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(name)
}

/// A small deterministic generator (xorshift) so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn run_mutants(name: &str, cases: usize) {
    let original = std::fs::read(fixture(name)).unwrap();
    let header = original.len().min(48 * 1024);
    let dir = std::env::temp_dir().join(format!("memwall-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ original.len() as u64);
    let (mut loaded_ok, mut rejected) = (0, 0);
    for case in 0..cases {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % header;
            bytes[at] = match rng.next() % 3 {
                0 => rng.next() as u8,
                1 => 0xff,
                _ => 0,
            };
        }
        std::fs::write(&path, &bytes).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match memwall_model::load(&path, &mut |_, _| {}) {
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    false
                }
                Ok(loaded) => {
                    let ids =
                        loaded.tokenizer.encode("hello world", EncodeOptions { add_bos: true, parse_special: true });
                    let params = GenerateParams {
                        max_tokens: 2,
                        sampling: SamplingParams::greedy(),
                        stop: vec![],
                        ignore_eos: true,
                        logprobs: None,
                    };
                    let prompt = if ids.is_empty() { vec![0] } else { ids };
                    let tokenizer = Arc::new(loaded.tokenizer);
                    let config = EngineConfig { threads: 1, ..EngineConfig::default() };
                    // A damaged file may still be refused here (e.g. a cache it
                    // cannot size); what matters is an error, not a panic.
                    if let Ok(engine) = Engine::new(Arc::new(loaded.model), tokenizer, config) {
                        if let Ok(handle) = engine.submit(Request::new(prompt, params)) {
                            // The step loop runs on its own thread: if it
                            // panicked, the request ends as a shut-down engine.
                            let outcome = handle.wait();
                            assert!(!matches!(outcome, Err(EngineError::ShutDown)), "the engine's step loop died");
                        }
                    }
                    true
                }
            }
        }));
        match result {
            Ok(true) => loaded_ok += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("case {case}: a mutated {name} made memwall panic (file kept at {})", path.display()),
        }
    }
    let _ = std::fs::remove_file(&path);
    eprintln!("{name}: {cases} mutants, {rejected} rejected with an error, {loaded_ok} loaded and ran");
    assert!(rejected > 0, "no mutant was rejected: the mutations do not reach the header");
}

#[test]
fn mutated_gguf_headers_never_panic() {
    for name in ["llama.gguf", "gpt2.gguf", "qwen2.gguf"] {
        run_mutants(name, 150);
    }
}

#[test]
fn blob_slices_of_a_truncated_file_are_refused() {
    let bytes = std::fs::read(fixture("phi3.gguf")).unwrap();
    for cut in [0, 3, 4, 8, 23, 100, bytes.len() / 2, bytes.len() - 1] {
        let blob = Blob::from_vec(bytes[..cut].to_vec());
        assert!(memwall_formats::gguf::GgufFile::from_blob(blob).is_err(), "cut at {cut} accepted");
    }
}
