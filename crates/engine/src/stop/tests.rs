use proptest::prelude::*;

use super::*;

fn matcher(stops: &[&str]) -> StopMatcher {
    StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
}

/// Pushes `pieces` until a stop, then finishes; returns the emitted text and
/// whether a stop matched.
fn run(m: &mut StopMatcher, pieces: &[&str]) -> (String, bool) {
    let mut out = String::new();
    for piece in pieces {
        let step = m.push(piece);
        out.push_str(&step.emit);
        if step.stopped {
            return (out, true);
        }
    }
    out.push_str(&m.finish());
    (out, m.is_stopped())
}

/// The offline answer: `text` cut before the earliest stop string.
fn truncate_at_stop(text: &str, stops: &[String]) -> (String, bool) {
    let at = stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    match at {
        Some(at) => (text[..at].to_string(), true),
        None => (text.to_string(), false),
    }
}

#[test]
fn stop_split_across_pieces_is_held_then_dropped() {
    let mut m = matcher(&["</s>"]);
    assert_eq!(m.push("Hello </").emit, "Hello ");
    let step = m.push("s> and more");
    assert_eq!(step, StopStep { emit: String::new(), stopped: true });
    assert!(m.push("ignored").stopped);
    assert_eq!(m.finish(), "");
}

#[test]
fn held_text_is_released_when_it_stops_looking_like_a_stop() {
    let mut m = matcher(&["</s>"]);
    assert_eq!(m.push("a <").emit, "a ");
    assert_eq!(m.push("/b").emit, "</b");
    assert_eq!(m.push("<").emit, "");
    assert_eq!(m.finish(), "<");
    assert!(!m.is_stopped());
}

#[test]
fn text_after_the_stop_in_the_same_piece_is_dropped() {
    let mut m = matcher(&["\n\n"]);
    let step = m.push("one\n\ntwo");
    assert_eq!((step.emit.as_str(), step.stopped), ("one", true));
}

#[test]
fn earliest_occurrence_wins_over_list_order() {
    let mut m = matcher(&["world", "lo"]);
    assert_eq!(run(&mut m, &["hello world"]), ("hel".to_string(), true));
}

#[test]
fn a_longer_stop_starting_earlier_is_waited_for() {
    // "c" completes first, but "abcd" starts earlier and may still complete.
    let (out, stopped) = run(&mut matcher(&["abcd", "c"]), &["xab", "c", "d"]);
    assert_eq!((out.as_str(), stopped), ("x", true));
    // …and when it does not, the shorter match stands.
    let (out, stopped) = run(&mut matcher(&["abcd", "c"]), &["xab", "c", "e"]);
    assert_eq!((out.as_str(), stopped), ("xab", true));
    // At the end of the stream the complete match is applied by finish().
    let mut m = matcher(&["abcd", "c"]);
    assert_eq!(m.push("xabc").emit, "x");
    assert_eq!(m.finish(), "ab");
    assert!(m.is_stopped());
}

#[test]
fn multibyte_chars_are_never_split() {
    // The stop starts with the same first byte as "é" (0xC3 0xA9) but is "ã".
    let mut m = matcher(&["ãx"]);
    let step = m.push("caf\u{e9}\u{e3}");
    assert_eq!(step.emit, "café");
    assert_eq!(m.push("y").emit, "ãy");
    let mut m = matcher(&["🦀!"]);
    assert_eq!(m.push("a🦀").emit, "a");
    assert_eq!(m.push("!").emit, "");
}

#[test]
fn no_stops_passes_everything_through() {
    let mut m = StopMatcher::new(vec![String::new()]);
    assert_eq!(m.push("abc").emit, "abc");
    assert_eq!(m.finish(), "");
}

#[test]
fn finish_reason_spellings() {
    assert_eq!(FinishReason::Stop.as_str(), "stop");
    assert_eq!(FinishReason::Length.as_str(), "length");
    assert_eq!(FinishReason::Cancelled.to_string(), "cancelled");
}

/// Strings over a small alphabet of 1- to 4-byte chars, so stops match often.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '世', '🦀']), 0..max_chars)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn streamed_output_equals_offline_truncation(
        text in text(24),
        stops in prop::collection::vec(text(4), 0..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        // Split at random char boundaries.
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let mut at: Vec<usize> = cuts
            .iter()
            .filter(|_| !bounds.is_empty())
            .map(|c| bounds[c.index(bounds.len())])
            .collect();
        at.push(0);
        at.push(text.len());
        at.sort_unstable();
        at.dedup();
        let pieces: Vec<&str> = at.windows(2).map(|w| &text[w[0]..w[1]]).collect();

        let mut m = StopMatcher::new(stops.clone());
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        let (mut out, mut received, mut stopped) = (String::new(), 0, false);
        for piece in &pieces {
            let step = m.push(piece);
            out.push_str(&step.emit);
            received += piece.len();
            if step.stopped {
                stopped = true;
                break;
            }
            // Never more than a stop string's worth held back.
            prop_assert!(out.len() + max_len.saturating_sub(1) >= received);
        }
        if !stopped {
            out.push_str(&m.finish());
        }
        let (expected, expect_stop) = truncate_at_stop(&text, &stops);
        prop_assert_eq!(out, expected);
        prop_assert_eq!(m.is_stopped(), expect_stop);
    }
}
