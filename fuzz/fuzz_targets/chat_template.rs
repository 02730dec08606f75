//! Hostile chat templates and hostile messages: a render returns `Ok` or an
//! error, never panics, hangs or blows the stack; recursion and huge loops
//! are cut off by the fuel and recursion limits.
//!
//! Input: `flags template \0 role \x01 content \0 role \x01 content ...`
//! (flags bit 0: `add_generation_prompt`), so real templates make readable
//! seeds (see `make_corpus.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall_formats::chat_template::{render, ChatMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let template = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let messages: Vec<ChatMessage> = parts
        .map(|m| {
            let mut rc = m.splitn(2, |&b| b == 1);
            let role = String::from_utf8_lossy(rc.next().unwrap_or_default());
            let content = String::from_utf8_lossy(rc.next().unwrap_or_default());
            ChatMessage::new(role, content)
        })
        .collect();
    let _ = render(&template, &messages, flags & 1 == 1, "<s>", "</s>");
});
