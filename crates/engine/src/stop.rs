//! Stop strings over streamed text, and why a generation finished.
//!
//! Detokenized text arrives in pieces that need not align with a stop string:
//! `"</s"` then `">"`. [`StopMatcher`] emits text as soon as it is certain not
//! to belong to a stop string and holds back the rest, so a streaming client
//! never sees part of a stop string it will not get the end of.
//!
//! # Guarantee
//!
//! For any split of a text into pieces, the concatenation of everything
//! emitted (by [`StopMatcher::push`] up to and including the step that
//! reports `stopped`, then [`StopMatcher::finish`] if none did) is the text
//! truncated before the **earliest** occurrence of any stop string, the stop
//! string excluded (OpenAI semantics); the whole text if none occurs. Empty
//! stop strings are ignored.
//!
//! To keep that exact when stop strings overlap (`"ab"` vs `"xabc"` …), a
//! complete match is only acted on once no stop string could still match
//! starting *earlier*; until then the text from that earlier position is held
//! back. Held-back text is always a proper prefix of some stop string, so it
//! is shorter than the longest stop string, and it always starts on a `char`
//! boundary: pieces are `str`, so no emitted chunk splits a character.
//!
//! Cost per piece: O(held × stops × longest stop), held being bounded as above.

use std::fmt;

/// What a [`StopMatcher::push`] lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopStep {
    /// Text that is safe to stream now (possibly empty).
    pub emit: String,
    /// A stop string matched: end the generation; nothing after `emit` will
    /// ever be emitted.
    pub stopped: bool,
}

/// Finds stop strings in a stream of text pieces. See the module docs.
#[derive(Clone, Debug)]
pub struct StopMatcher {
    /// Non-empty stop strings.
    stops: Vec<String>,
    /// Length in bytes of the longest stop string.
    max_len: usize,
    /// Received, not yet emitted: could still be the start of a stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings among them are ignored, and with
    /// none left every piece passes straight through.
    pub fn new(stops: Vec<String>) -> Self {
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        Self { stops, max_len, held: String::new(), stopped: false }
    }

    /// Whether a stop string has matched (by `push` or by `finish`).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next decoded piece; returns what may be emitted now and
    /// whether a stop string matched. After a match every push returns
    /// nothing and `stopped`.
    pub fn push(&mut self, piece: &str) -> StopStep {
        if self.stopped {
            return StopStep { emit: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return StopStep { emit: piece.to_owned(), stopped: false };
        }
        self.held.push_str(piece);
        let complete = self.earliest_complete();
        let partial = self.earliest_partial();
        if let Some(at) = complete {
            // No stop string can start before `at` any more: decided.
            if partial.is_none_or(|p| p >= at) {
                return StopStep { emit: self.stop_at(at), stopped: true };
            }
        }
        let emit = match partial {
            Some(p) => {
                let rest = self.held.split_off(p);
                std::mem::replace(&mut self.held, rest)
            }
            None => std::mem::take(&mut self.held),
        };
        StopStep { emit, stopped: false }
    }

    /// Ends the stream: returns the held-back text, cut before a stop string
    /// if one is complete in it (then [`is_stopped`](Self::is_stopped) turns
    /// true). Returns nothing after a stop.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        match self.earliest_complete() {
            Some(at) => self.stop_at(at),
            None => std::mem::take(&mut self.held),
        }
    }

    /// Marks the stream stopped and returns the held text before byte `at`.
    fn stop_at(&mut self, at: usize) -> String {
        self.stopped = true;
        self.held.truncate(at);
        std::mem::take(&mut self.held)
    }

    /// Byte offset in `held` of the earliest complete stop string.
    fn earliest_complete(&self) -> Option<usize> {
        self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min()
    }

    /// Earliest byte offset `p` in `held` such that `held[p..]` is a proper,
    /// non-empty prefix of some stop string: text from `p` on may still turn
    /// into a match. Such `p` are `char` boundaries within `max_len - 1`
    /// bytes of the end.
    fn earliest_partial(&self) -> Option<usize> {
        let len = self.held.len();
        let start = len.saturating_sub(self.max_len.saturating_sub(1));
        (start..len).filter(|&p| self.held.is_char_boundary(p)).find(|&p| {
            let tail = &self.held[p..];
            self.stops.iter().any(|s| s.len() > tail.len() && s.starts_with(tail))
        })
    }
}

/// Why a generation ended, as reported in the API's `finish_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached or the context is full.
    Length,
    /// The client went away or the request was aborted.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI spelling: `"stop"`, `"length"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
