//! Incremental Server-Sent Events parsing: bytes arrive in arbitrary pieces
//! (an event may be split across TCP reads, or several may share one), and
//! the parser hands back the `data:` payload of each complete event.
//!
//! Events end with a blank line (`\n\n`, or `\r\n\r\n` from some servers);
//! an event's `data:` lines are joined with `\n` as the SSE specification
//! says; other fields (`event:`, `id:`, comments) are ignored.

/// Buffers bytes until events are complete.
#[derive(Default, Debug)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds `bytes` and returns the payloads of the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_event_end(&self.buf) {
            let event = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + sep);
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

/// The end of the first complete event in `buf` and the length of its separator.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_are_joined() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(p.push(b":1}\n\ndata: [DO"), ["{\"a\":1}"]);
        assert_eq!(p.push(b"NE]\n\n"), ["[DONE]"]);
        assert!(p.push(b"").is_empty());
    }

    #[test]
    fn several_events_in_one_read_crlf_and_comments() {
        let mut p = SseParser::default();
        let got = p.push(b": keep-alive\n\ndata: 1\r\n\r\nevent: x\ndata:2\ndata: 3\n\n");
        assert_eq!(got, ["1", "2\n3"]);
    }
}
