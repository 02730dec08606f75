//! BPE pre-tokenizers: split text into words before merges run.
//!
//! Follows llama.cpp's `llm_tokenizer_bpe` constructor and `unicode_regex_split`:
//! a pre-tokenizer is a list of regexes applied in turn, each one splitting every
//! piece left by the previous one into matched and unmatched parts (both kept).
//! The two regexes llama.cpp hand-codes (GPT-2's and Llama 3's) are hand-coded
//! here too, with the same behaviour. Every other regex runs through
//! `fancy-regex` on llama.cpp's "collapsed" text, where each non-ASCII code
//! point is replaced by one character naming its class, and `\p{L}`-style
//! classes in the regex are rewritten to match those characters — so the
//! classes agree with llama.cpp's tables rather than with the regex engine's.
//!
//! Guarantees: the pieces always concatenate back to the input; a regex that
//! exceeds the backtracking limit leaves its piece unsplit instead of failing.

use super::unicode::{flags, to_lower, Flags};
use super::TokenizerError;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values understood, for error messages.
pub(crate) const SUPPORTED: &str = "default, gpt-2 (phi-2, mpt, olmo, jais, exaone4, ...), llama3 (llama-bpe, llama-v3, falcon3, pixtral, ...), dbrx, smaug-bpe, qwen2 (deepseek-r1-qwen, megrez, stablelm2), smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b, falcon, deepseek-llm, deepseek-coder, deepseek-v3, chatglm-bpe (glm4), poro-chat, bloom, gpt3-finnish, viking, tekken, gpt-4o (llama4)";

/// Per-`pre` settings beside the regex list (llama.cpp's vocab fields).
pub(crate) struct PreSettings {
    pub(crate) pre: PreTokenizer,
    /// A whole word found in the vocabulary is one token, merges skipped.
    pub(crate) ignore_merges: bool,
    /// llama.cpp's default for `add_bos` before the GGUF key overrides it.
    pub(crate) add_bos: bool,
}

enum Step {
    Gpt2,
    Llama3,
    Regex { re: fancy_regex::Regex, collapsed: bool },
}

/// An ordered list of splitting steps.
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

impl PreSettings {
    /// Settings for a `tokenizer.ggml.pre` value (`None` → llama.cpp's "default").
    pub(crate) fn from_name(pre: Option<&str>) -> Result<PreSettings, TokenizerError> {
        let name = pre.unwrap_or("default");
        let (exprs, ignore_merges, add_bos): (&[&str], bool, bool) = match name {
            "default" => (
                &[
                    r"[\p{P}\$\+<=>\^~\|]+",
                    GPT2,
                    r"\p{N}+",
                    "[0-9][0-9][0-9]",
                ],
                false,
                false,
            ),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (&[LLAMA3], true, true),
            "dbrx" | "smaug-bpe" => (&[LLAMA3], false, false),
            "chatglm-bpe" | "glm4" => (&[LLAMA3], false, false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => (&[QWEN2], false, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "mpt" | "olmo" | "jais" | "exaone4"
            | "trillion" | "granite-docling" | "roberta-bpe" | "jina-v1-en"
            | "jina-v2-code" => (&[GPT2], false, false),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" => (&[r"\p{N}", GPT2], false, false),
            "falcon" => (
                &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
                false,
                false,
            ),
            "deepseek-llm" => (
                &[
                    "[\r\n]",
                    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1F7D}ᾀ-ᾴᾶ-ᾼ\u{1FBE}ῂ-ῄῆ-ῌῐ-\u{1FD3}ῖ-\u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
                    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
                    "\\s+$",
                    "[一-龥ࠀ-一가-퟿]+",
                    r"\p{N}+",
                ],
                false,
                false,
            ),
            "deepseek-coder" => (
                &[
                    "[\r\n]",
                    r"\s?\p{L}+",
                    r"\s?\p{P}+",
                    "[一-龥ࠀ-一가-퟿]+",
                    r"\p{N}",
                ],
                false,
                false,
            ),
            "deepseek-v3" => (
                &[
                    r"\p{N}{1,3}",
                    "[一-龥぀-ゟ゠-ヿ]+",
                    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
                ],
                false,
                false,
            ),
            "poro-chat" | "bloom" | "gpt3-finnish" => {
                (&[r" ?[^(\s|.,!?…。，、।۔،)]+"], false, false)
            }
            "viking" => (&[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"], false, false),
            "tekken" => (&[TEKKEN], true, true),
            "gpt-4o" | "llama4" => (&[GPT4O], false, false),
            other => {
                return Err(TokenizerError::UnknownPreTokenizer {
                    name: other.to_string(),
                    supported: SUPPORTED,
                })
            }
        };
        let steps = exprs.iter().map(|e| Step::new(e)).collect::<Result<Vec<_>, _>>()?;
        Ok(PreSettings { pre: PreTokenizer { steps }, ignore_merges, add_bos })
    }
}

impl Step {
    fn new(expr: &str) -> Result<Step, TokenizerError> {
        if expr == GPT2 {
            return Ok(Step::Gpt2);
        }
        if expr == LLAMA3 {
            return Ok(Step::Llama3);
        }
        let uses_classes = ["\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}"].iter().any(|c| expr.contains(c));
        let pattern = if uses_classes { collapse_regex(expr) } else { expr.to_string() };
        let re = fancy_regex::RegexBuilder::new(&pattern)
            .backtrack_limit(10_000_000)
            .build()
            .map_err(|e| TokenizerError::BadRegex { regex: expr.to_string(), message: e.to_string() })?;
        Ok(Step::Regex { re, collapsed: uses_classes })
    }
}

/// Rewrites `\p{X}` classes to the collapsed class character plus its ASCII
/// members (llama.cpp's `k_ucat_cpt` / `k_ucat_map`).
fn collapse_regex(expr: &str) -> String {
    let classes: [(&str, char, &str); 5] = [
        ("\\p{N}", '\u{D1}', "0-9"),
        ("\\p{L}", '\u{D2}', "A-Za-z"),
        ("\\p{P}", '\u{D3}', r"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        ("\\p{M}", '\u{D4}', ""),
        ("\\p{S}", '\u{D5}', r"\$\+<->\^`\|"),
    ];
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut prev = '\0';
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        if c == '[' && prev != '\\' {
            inside = true;
        } else if c == ']' && inside && prev != '\\' {
            inside = false;
        } else if let Some((pat, cat, ascii)) = classes.iter().find(|(p, _, _)| rest.starts_with(p)) {
            if !inside {
                out.push('[');
            }
            out.push(*cat);
            out.push_str(ascii);
            if !inside {
                out.push(']');
            }
            rest = &rest[pat.len()..];
            prev = '}';
            continue;
        }
        out.push(c);
        prev = c;
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl PreTokenizer {
    /// Splits `text` into words (UTF-8, not yet byte-encoded).
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let cpts: Vec<char> = text.chars().collect();
        let mut lens = vec![cpts.len()];
        for step in &self.steps {
            lens = match step {
                Step::Gpt2 => split_custom(&cpts, &lens, false),
                Step::Llama3 => split_custom(&cpts, &lens, true),
                Step::Regex { re, collapsed } => split_regex(&cpts, &lens, re, *collapsed),
            };
        }
        // Code-point lengths back to byte slices of `text`.
        let mut words = Vec::with_capacity(lens.len());
        let mut byte = 0;
        let mut cpt = 0;
        for len in lens {
            let start = byte;
            for c in &cpts[cpt..cpt + len] {
                byte += c.len_utf8();
            }
            cpt += len;
            if byte > start {
                words.push(&text[start..byte]);
            }
        }
        words
    }
}

fn split_regex(cpts: &[char], lens: &[usize], re: &fancy_regex::Regex, collapsed: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let piece = &cpts[start..start + len];
        start += len;
        // The text the regex sees: one char per code point, non-ASCII
        // whitespace as \x0B, classes collapsed when the regex uses them.
        let mut s = String::with_capacity(len);
        for &c in piece {
            let mapped = if (c as u32) < 128 {
                c
            } else if flags(c).is_whitespace() {
                '\x0B'
            } else if collapsed {
                flags(c).collapsed()
            } else {
                c
            };
            s.push(mapped);
        }
        // Map byte offsets in `s` to code-point offsets in `piece`.
        let mut cpt_of_byte = vec![0usize; s.len() + 1];
        let mut n = 0;
        for (b, _) in s.char_indices() {
            cpt_of_byte[b] = n;
            n += 1;
        }
        cpt_of_byte[s.len()] = n;
        let mut pos = 0;
        for m in re.find_iter(&s) {
            let Ok(m) = m else { break };
            let (ms, me) = (cpt_of_byte[m.start()], cpt_of_byte[m.end()]);
            if me == ms {
                continue;
            }
            if ms > pos {
                out.push(ms - pos);
            }
            out.push(me - ms);
            pos = me;
        }
        if pos < len {
            out.push(len - pos);
        }
    }
    out
}

/// llama.cpp's hand-written GPT-2 (`llama3 == false`) and Llama 3 splitters.
fn split_custom(cpts: &[char], lens: &[usize], llama3: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let (ini, end) = (start, start + len);
        start = end;
        let cpt = |p: usize| (p >= ini && p < end).then(|| cpts[p]);
        let fl = |p: usize| (p >= ini && p < end).then(|| flags(cpts[p]));
        let mut prev_end = ini;
        let mut add = |e: usize, out: &mut Vec<usize>| -> usize {
            let n = e - prev_end;
            if n > 0 {
                out.push(n);
            }
            prev_end = e;
            n
        };
        let mut pos = ini;
        while pos < end {
            let c = cpts[pos];
            let f = flags(c);
            // 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for Llama 3)
            if c == '\'' && pos + 1 < end {
                let low = |p: usize| cpt(p).map(|c| if llama3 { to_lower(c) } else { c });
                let n1 = low(pos + 1);
                if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                    pos += add(pos + 2, &mut out);
                    continue;
                }
                if pos + 2 < end {
                    let n2 = low(pos + 2);
                    if matches!((n1, n2), (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))) {
                        pos += add(pos + 3, &mut out);
                        continue;
                    }
                }
            }
            if llama3 {
                // [^\r\n\p{L}\p{N}]?\p{L}+
                if !(c == '\r' || c == '\n' || f.is_number())
                    && (f.is_letter() || fl(pos + 1).is_some_and(Flags::is_letter))
                {
                    pos += 1;
                    while fl(pos).is_some_and(Flags::is_letter) {
                        pos += 1;
                    }
                    add(pos, &mut out);
                    continue;
                }
                // \p{N}{1,3}
                if f.is_number() {
                    let mut run = pos;
                    while fl(pos).is_some_and(Flags::is_number) {
                        pos += 1;
                        if pos - run >= 3 {
                            add(pos, &mut out);
                            run = pos;
                        }
                    }
                    add(pos, &mut out);
                    continue;
                }
            } else {
                // ' ?\p{L}+' and ' ?\p{N}+'
                let f2 = if c == ' ' { fl(pos + 1) } else { Some(f) };
                let class: Option<fn(Flags) -> bool> = if f2.is_some_and(Flags::is_letter) {
                    Some(Flags::is_letter)
                } else if f2.is_some_and(Flags::is_number) {
                    Some(Flags::is_number)
                } else {
                    None
                };
                if let Some(class) = class {
                    pos += usize::from(c == ' ');
                    while fl(pos).is_some_and(class) {
                        pos += 1;
                    }
                    add(pos, &mut out);
                    continue;
                }
            }
            // ' ?[^\s\p{L}\p{N}]+' (+ '[\r\n]*' for Llama 3)
            let other = |f: Option<Flags>| f.is_some_and(|f| !(f.is_whitespace() || f.is_letter() || f.is_number()));
            let f2 = if c == ' ' { fl(pos + 1) } else { Some(f) };
            if other(f2) {
                pos += usize::from(c == ' ');
                while other(fl(pos)) {
                    pos += 1;
                }
                if llama3 {
                    while matches!(cpt(pos), Some('\r' | '\n')) {
                        pos += 1;
                    }
                }
                add(pos, &mut out);
                continue;
            }
            let mut n_ws = 0;
            let mut last_rn = None;
            while fl(pos + n_ws).is_some_and(Flags::is_whitespace) {
                if llama3 && matches!(cpts[pos + n_ws], '\r' | '\n') {
                    last_rn = Some(pos + n_ws + 1);
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if let Some(e) = last_rn {
                pos = e;
                add(pos, &mut out);
                continue;
            }
            // \s+(?!\S)
            if n_ws > 1 && cpt(pos + n_ws).is_some() {
                pos += n_ws - 1;
                add(pos, &mut out);
                continue;
            }
            // \s+
            if n_ws > 0 {
                pos += n_ws;
                add(pos, &mut out);
                continue;
            }
            pos += 1;
            add(pos, &mut out);
        }
    }
    out
}

/// A pre-tokenizer of one regex run through the regex engine (tests only).
#[cfg(test)]
pub(crate) fn regex_only(expr: &str) -> PreTokenizer {
    PreTokenizer { steps: vec![Step::new(expr).expect("test regex compiles")] }
}
