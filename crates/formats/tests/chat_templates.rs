//! Chat templates rendered by `memwall_formats::chat_template` must equal what
//! `transformers` renders (`tests/data/chat/expected.json`, made by
//! `tests/data/chat/generate.py` with transformers' `render_jinja_template`),
//! template errors must surface, and hostile templates must stop, not hang.

use std::path::{Path, PathBuf};

use memwall_formats::chat_template::{render, ChatMessage, ChatTemplateError};
use serde_json::Value;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat")
}

fn template(name: &str) -> String {
    std::fs::read_to_string(data().join(format!("{name}.jinja"))).expect("template fixture")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn conversation(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .expect("conversation list")
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn templates_render_like_transformers() {
    let exp = expected();
    let cases = exp["expected"].as_object().expect("expected map");
    assert!(cases.len() >= 28, "fixture has {} cases", cases.len());
    let mut failures = Vec::new();
    for (key, want) in cases {
        let mut parts = key.split('/');
        let (name, conv, agp) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let messages = conversation(&exp["conversations"][conv]);
        let got = render(&template(name), &messages, agp == "True", "<s>", "</s>");
        match (want.as_str(), got) {
            (Some(want), Ok(got)) if got == want => {}
            // transformers raised: we must fail too.
            (None, Err(_)) if want.get("error").is_some() => {}
            (_, other) => failures.push(format!("{key}:\n  want {want}\n  got  {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}/{} pass\n{}", cases.len() - failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn smollm2_template_from_its_gguf() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "missing {}: run scripts/fetch-test-data.sh", path.display());
    let g = memwall_formats::gguf::GgufFile::open(&path).expect("open gguf");
    let tok = memwall_formats::tokenizer::Tokenizer::from_gguf(&g).expect("tokenizer");
    let t = tok.chat_template().expect("SmolLM2 ships a template");
    assert_eq!(t, template("smollm2"));
    let msgs = [ChatMessage::new("user", "Hi")];
    let out = render(t, &msgs, true, tok.bos_text(), tok.eos_text()).unwrap();
    assert!(out.starts_with("<|im_start|>system\n"), "{out}");
    assert!(out.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), "{out}");
}

#[test]
fn raise_exception_message_surfaces() {
    let msgs = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    let err = render(&template("mistral"), &msgs, false, "<s>", "</s>").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Render(_)));
    assert!(err.to_string().contains("Conversation roles must alternate"), "{err}");
    let msgs = [ChatMessage::new("system", "s")];
    let err = render(&template("mistral"), &msgs, false, "<s>", "</s>").unwrap_err();
    assert!(err.to_string().contains("Conversation roles must alternate"), "{err}");
    let msgs = [ChatMessage::new("tool", "x")];
    let t = "{% if messages[0].role not in ['user', 'assistant'] %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}";
    let err = render(t, &msgs, false, "", "").unwrap_err();
    assert!(err.to_string().contains("Only user and assistant roles are supported!"), "{err}");
}

#[test]
fn syntax_errors_are_reported() {
    let err = render("{% for m in messages %}", &[], false, "", "").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Syntax(_)), "{err}");
}

#[test]
fn huge_loop_errors_instead_of_hanging() {
    let err = render("{% for i in range(1000000000) %}x{% endfor %}", &[], false, "", "").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Render(_)), "{err}");
    // Nested loops that each pass range's own limit still run out of fuel,
    // and the error names memwall's limit.
    let t = "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}";
    let err = render(t, &[], false, "", "").unwrap_err().to_string();
    assert!(err.contains("more than 20000000 steps"), "{err}");
}

#[test]
fn infinite_recursion_errors_instead_of_overflowing() {
    let t = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let err = render(t, &[], false, "", "").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Render(_)), "{err}");
    assert!(err.to_string().contains("nests more than 64 calls"), "{err}");
}

#[test]
fn python_string_methods_and_loop_controls() {
    let msgs = [ChatMessage::new("user", "  Hello World  "), ChatMessage::new("assistant", "x")];
    let t = "{% for m in messages %}{% if m.role == 'assistant' %}{% break %}{% endif %}\
             [{{ m.content.strip().upper() }}|{{ m.content.startswith('  H') }}|{{ m['content'].split()|length }}]\
             {% endfor %}{{ strftime_now('%Y')|length }}";
    assert_eq!(render(t, &msgs, false, "", "").unwrap(), "[HELLO WORLD|True|2]4");
}

/// Every chat template of llama.cpp's collection (`models/templates/` of the
/// llama-cpp-python 0.3.36 sdist, fetched into `.cache/templates/` by
/// `scripts/fetch-test-data.sh`) renders a two-turn conversation.
#[test]
fn every_llama_cpp_template_renders_a_two_turn_conversation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-test-data.sh", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "only {} templates in {}", files.len(), dir.display());
    // No system message: some templates (Gemma's) refuse one by design.
    let messages = [
        ChatMessage::new("user", "Hello, who are you?"),
        ChatMessage::new("assistant", "I am an assistant."),
        ChatMessage::new("user", "What is 2+2?"),
    ];
    // Needs the caller to pass `functions` and `datetime` (it adds them to a
    // string); transformers fails the same way without them.
    let needs_extra_variables = ["fireworks-ai-llama-3-firefunction-v2.jinja"];
    let mut failures = Vec::new();
    for file in &files {
        if needs_extra_variables.iter().any(|n| file.ends_with(n)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        match render(&text, &messages, true, "<s>", "</s>") {
            Ok(out) if out.contains("What is 2+2?") => {}
            Ok(out) => failures.push(format!("{}: the last message is missing from {out:?}", file.display())),
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}/{} templates fail:\n{}", failures.len(), files.len(), failures.join("\n"));
}
