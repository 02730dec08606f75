//! What is sent and when: prompts of a controlled token length (or from a
//! JSONL dataset), and Poisson arrival times for the open loop.
//!
//! Random prompts are made the way vLLM's random dataset makes them, but
//! through the server's own tokenizer so that any server can be measured:
//! a long text of random common English words is tokenized once (`POST
//! /tokenize`), each prompt is a window of exactly `prompt_tokens` of those
//! tokens at a random offset, turned back into text by `POST /detokenize`.
//! Re-tokenizing a detokenized window can differ by a token at its edges, so
//! reports use the server's `usage.prompt_tokens` when it sends one. Windows
//! start at random offsets, so prompts share no prefix beyond chance and a
//! prefix cache cannot make one server look faster than another. Without
//! `/tokenize`, a prompt is `prompt_tokens` words (about one token each in
//! English BPE vocabularies) and the length is an estimate.
//!
//! Everything random comes from one seeded generator: the same seed gives
//! the same prompts (for the same tokenizer) and the same arrival times.

use crate::client::{Client, PromptBody, WorkItem};
use crate::LoadgenError;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How the prompt lengths of a workload are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptLength {
    /// Counted by the server's `/tokenize`.
    Tokenized,
    /// One token per word, assumed.
    Estimated,
    /// Taken from a dataset as it is.
    Dataset,
}

/// Common English words: most are one token in BPE and SentencePiece vocabularies.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "it",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "has",
    "had",
    "first",
    "one",
    "their",
    "its",
    "new",
    "after",
    "who",
    "they",
    "two",
    "her",
    "she",
    "been",
    "other",
    "when",
    "there",
    "all",
    "during",
    "into",
    "school",
    "time",
    "may",
    "years",
    "more",
    "most",
    "only",
    "over",
    "city",
    "some",
    "world",
    "would",
    "where",
    "later",
    "up",
    "such",
    "used",
    "many",
    "can",
    "state",
    "about",
    "national",
    "out",
    "known",
    "university",
    "united",
    "then",
    "made",
    "three",
    "while",
    "part",
    "so",
    "between",
    "team",
    "year",
    "film",
    "also",
    "him",
    "both",
    "season",
    "series",
    "under",
    "well",
    "music",
    "people",
    "group",
    "great",
    "water",
    "river",
    "house",
    "light",
    "small",
    "north",
    "south",
    "road",
    "game",
    "book",
    "story",
    "king",
    "life",
    "war",
    "day",
    "night",
    "family",
    "line",
    "power",
    "market",
    "church",
    "party",
    "court",
    "early",
    "long",
    "high",
    "second",
    "large",
    "home",
    "place",
    "form",
    "area",
    "name",
    "work",
    "show",
    "side",
    "back",
    "west",
    "east",
    "open",
    "field",
    "center",
    "age",
    "around",
    "before",
    "public",
    "local",
    "through",
    "old",
    "red",
    "black",
    "white",
    "green",
    "blue",
    "village",
    "island",
    "station",
    "region",
    "system",
    "history",
    "member",
    "award",
    "record",
    "band",
    "album",
];

/// Source of the prompts of a run.
#[derive(Clone, Debug)]
pub enum Prompts {
    /// Random prompts of `prompt_tokens` tokens, each asking for `output_tokens`.
    Random { prompt_tokens: usize, output_tokens: usize },
    /// Lines of a JSONL file, used in order and cycled.
    Dataset(Vec<WorkItem>),
}

/// Reads a JSONL dataset: one object per line with `prompt` (a string) or
/// `messages` (chat messages), and optionally `max_tokens` or
/// `output_tokens`; lines without a length ask for `default_output_tokens`.
/// Blank lines are skipped.
pub fn load_dataset(path: &Path, default_output_tokens: usize) -> Result<Vec<WorkItem>, LoadgenError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadgenError::Dataset(format!("{}: {e}", path.display())))?;
    let items = parse_dataset(&text, default_output_tokens)
        .map_err(|e| LoadgenError::Dataset(format!("{}: {e}", path.display())))?;
    if items.is_empty() {
        return Err(LoadgenError::Dataset(format!("{}: no prompts", path.display())));
    }
    Ok(items)
}

fn parse_dataset(text: &str, default_output_tokens: usize) -> Result<Vec<WorkItem>, String> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 1;
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let prompt = match (v.get("prompt"), v.get("messages")) {
            (Some(Value::String(p)), _) => PromptBody::Text(p.clone()),
            (_, Some(Value::Array(m))) if !m.is_empty() => PromptBody::Messages(m.clone()),
            _ => return Err(format!("line {n}: needs \"prompt\" (a string) or \"messages\" (a list)")),
        };
        let max_tokens = match v.get("max_tokens").or_else(|| v.get("output_tokens")) {
            None => default_output_tokens,
            Some(m) => {
                m.as_u64().filter(|&m| m > 0).ok_or(format!("line {n}: max_tokens must be a positive integer"))?
                    as usize
            }
        };
        items.push(WorkItem { prompt, prompt_tokens: None, max_tokens });
    }
    Ok(items)
}

fn random_words(rng: &mut StdRng, count: usize) -> String {
    (0..count).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

/// Makes random prompts of `prompt_tokens` tokens for one model of one server.
#[derive(Clone, Debug)]
pub struct PromptMaker {
    /// Tokens of a long random text (`None`: the server cannot tokenize).
    pool: Option<Vec<u32>>,
    prompt_tokens: usize,
    output_tokens: usize,
}

impl PromptMaker {
    /// Tokenizes the pool the prompts are cut from.
    pub async fn new(
        client: &Client,
        model: &str,
        prompt_tokens: usize,
        output_tokens: usize,
        rng: &mut StdRng,
    ) -> Result<PromptMaker, LoadgenError> {
        let text = random_words(rng, (prompt_tokens * 2).max(2048));
        let pool = client.tokenize(model, &text).await?.filter(|t| t.len() > prompt_tokens);
        Ok(PromptMaker { pool, prompt_tokens, output_tokens })
    }

    /// How the prompt lengths are known.
    pub fn length(&self) -> PromptLength {
        if self.pool.is_some() {
            PromptLength::Tokenized
        } else {
            PromptLength::Estimated
        }
    }

    /// `n` prompts, each a window at a random offset of the pool.
    pub async fn items(
        &self,
        client: &Client,
        model: &str,
        n: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<WorkItem>, LoadgenError> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let text = match &self.pool {
                None => random_words(rng, self.prompt_tokens),
                Some(pool) => {
                    let start = rng.gen_range(0..=pool.len() - self.prompt_tokens);
                    let window = &pool[start..start + self.prompt_tokens];
                    client
                        .detokenize(model, window)
                        .await?
                        .ok_or_else(|| LoadgenError::Server("the server has /tokenize but no /detokenize".into()))?
                }
            };
            let prompt_tokens = Some(self.prompt_tokens);
            items.push(WorkItem { prompt: PromptBody::Text(text), prompt_tokens, max_tokens: self.output_tokens });
        }
        Ok(items)
    }
}

/// Exponential gaps between Poisson arrivals at `rate` requests per second.
pub fn poisson_gap(rate: f64, rng: &mut StdRng) -> Duration {
    // 1 − U is in (0, 1], so the logarithm is finite.
    let u: f64 = rng.gen();
    Duration::from_secs_f64(-(1.0 - u).ln() / rate)
}

/// Parses a duration with a unit: `500ms`, `60s`, `1.5s`, `2m`, `100us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration such as 500ms, 60s or 2m"))?;
    let secs = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{s}` needs a unit: ms, s, m or h")),
        u => return Err(format!("`{s}`: unknown unit `{u}` (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("500").unwrap_err().contains("unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn poisson_gaps_are_seeded_and_average_one_over_rate() {
        let gaps = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20_000).map(|_| poisson_gap(4.0, &mut rng).as_secs_f64()).collect::<Vec<_>>()
        };
        assert_eq!(gaps(7), gaps(7));
        assert_ne!(gaps(7), gaps(8));
        let g = gaps(7);
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        assert!((mean - 0.25).abs() < 0.01, "mean gap {mean}");
        assert!(g.iter().all(|x| x.is_finite() && *x >= 0.0));
    }

    #[test]
    fn dataset_lines_take_prompt_or_messages() {
        let text =
            "{\"prompt\": \"a\", \"max_tokens\": 5}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}\n";
        let items = parse_dataset(text, 9).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((&items[0].prompt, items[0].max_tokens), (&PromptBody::Text("a".into()), 5));
        assert!(matches!(&items[1].prompt, PromptBody::Messages(m) if m.len() == 1));
        assert_eq!(items[1].max_tokens, 9);
        assert!(parse_dataset("{\"text\": \"a\"}", 1).unwrap_err().contains("line 1"));
        assert!(parse_dataset("{\"prompt\": \"a\", \"max_tokens\": 0}", 1).is_err());
        assert!(parse_dataset("not json", 1).is_err());
    }
}
