//! An incremental Server-Sent Events parser (the `text/event-stream` format of the WHATWG
//! HTML standard, section "Server-sent events").
//!
//! Bytes arrive from the network in whatever pieces TCP, TLS and HTTP chunking produce: an
//! event may be split anywhere (inside a multi-byte UTF-8 sequence, between the `\r` and `\n`
//! of a line ending), and one read may hold many events. [`SseParser::feed`] keeps the
//! unfinished tail between calls, so the events that come out do not depend on where the
//! stream was cut.
//!
//! Lines are split on raw bytes before any UTF-8 decoding: `\r` and `\n` never occur inside a
//! multi-byte UTF-8 sequence, so a complete line is always a complete run of characters.
//! Invalid UTF-8 is decoded with replacement characters, as the standard requires.
//!
//! The buffered size of one event is bounded ([`SseParser::with_max_event_bytes`]): a peer
//! that never ends a line or an event gets an error, not unbounded memory growth.

use std::fmt;

/// The default bound on one event's buffered bytes (its unfinished line plus its data).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `"message"` when the event had none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream so far (`id:` persists across events).
    pub id: Option<String>,
}

/// Why the parser refused the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event (or one line) grew past the configured bound.
    #[error("a server-sent event exceeded {limit} bytes")]
    EventTooLarge {
        /// The configured bound in bytes.
        limit: usize,
    },
}

/// Incremental parser; see the module documentation.
pub struct SseParser {
    /// Bytes of the line being received (no line ending yet).
    line: Vec<u8>,
    /// The previous byte was a `\r`: a `\n` right after it belongs to the same line ending.
    after_cr: bool,
    /// No line has been completed yet (a leading byte order mark is dropped from it).
    first_line: bool,
    /// The data buffer: `data:` values joined with `\n`.
    data: String,
    /// At least one `data:` field was seen in the current event.
    has_data: bool,
    /// The event type buffer.
    event_type: String,
    /// The last event id buffer.
    last_id: Option<String>,
    /// The reconnection time the stream asked for with `retry:`.
    retry_ms: Option<u64>,
    max_event_bytes: usize,
    /// Set once the bound was exceeded: the stream cannot be resynchronised.
    failed: bool,
}

impl fmt::Debug for SseParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseParser")
            .field("buffered", &self.buffered())
            .field("max_event_bytes", &self.max_event_bytes)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default event size bound ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> SseParser {
        SseParser::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses any event (or line) whose buffered size passes `max` bytes.
    pub fn with_max_event_bytes(max: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_id: None,
            retry_ms: None,
            max_event_bytes: max,
            failed: false,
        }
    }

    /// The reconnection time (milliseconds) the stream last asked for with `retry:`.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Bytes held for the event being received.
    fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    fn check_size(&mut self) -> Result<(), SseError> {
        if self.buffered() > self.max_event_bytes {
            self.failed = true;
            self.line = Vec::new();
            self.data = String::new();
            self.event_type = String::new();
            return Err(SseError::EventTooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Feeds the next bytes of the stream; returns the events they completed, in order.
    ///
    /// After an error the parser stays failed and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.failed {
            return Err(SseError::EventTooLarge {
                limit: self.max_event_bytes,
            });
        }
        let mut events = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.line.extend_from_slice(&rest[..end]);
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    self.check_size()?;
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.process_line(&line) {
                        events.push(event);
                    }
                    self.line = line;
                    self.line.clear();
                    self.check_size()?;
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                    self.check_size()?;
                }
            }
        }
        Ok(events)
    }

    /// Ends the stream. By the standard an event not closed by a blank line is discarded;
    /// this returns it anyway when its last line was complete (the stream ended right after a
    /// line ending), because some servers close the connection straight after their last
    /// `data:` line. An unfinished line is always discarded: it was cut by the connection.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed {
            return None;
        }
        let cut_line = !self.line.is_empty();
        self.line.clear();
        self.after_cr = false;
        if cut_line {
            self.reset_event();
            return None;
        }
        self.dispatch()
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.reset_event();
            return None;
        }
        let event = SseEvent {
            event: if self.event_type.is_empty() {
                "message".to_owned()
            } else {
                std::mem::take(&mut self.event_type)
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        };
        self.reset_event();
        Some(event)
    }

    /// Interprets one complete line (without its line ending).
    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let mut line = line;
        if self.first_line {
            self.first_line = false;
            if let Some(stripped) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = stripped;
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None; // a comment, e.g. `: keep-alive`
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event_type = String::from_utf8_lossy(value).into_owned();
            }
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits; only an absurdly long number fails to parse.
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {} // unknown fields (and an id holding NUL) are ignored
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        }
    }

    fn msg(data: &str) -> SseEvent {
        ev("message", data, None)
    }

    /// Parses `input` fed as the given pieces, then `finish`.
    fn parse_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(parser.feed(piece).expect("no size error"));
        }
        out.extend(parser.finish());
        out
    }

    fn fixtures() -> Vec<(&'static str, Vec<u8>, Vec<SseEvent>)> {
        vec![
            (
                "lf",
                b"data: one\n\ndata: two\n\n".to_vec(),
                vec![msg("one"), msg("two")],
            ),
            (
                "crlf",
                b"data: one\r\n\r\ndata: two\r\n\r\n".to_vec(),
                vec![msg("one"), msg("two")],
            ),
            (
                "cr",
                b"data: one\r\rdata: two\r\r".to_vec(),
                vec![msg("one"), msg("two")],
            ),
            (
                "mixed line endings",
                b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r\n".to_vec(),
                vec![msg("a\nb\nc"), msg("d")],
            ),
            (
                "comments and keep-alives",
                b": keep-alive\n\n: hello\ndata: x\n: in the middle\ndata: y\n\n:\n\n".to_vec(),
                vec![msg("x\ny")],
            ),
            (
                "data with and without the space",
                b"data:no-space\n\ndata: one-space\n\ndata:  two-spaces\n\ndata:\n\ndata\n\n"
                    .to_vec(),
                vec![
                    msg("no-space"),
                    msg("one-space"),
                    msg(" two-spaces"),
                    msg(""),
                    msg(""),
                ],
            ),
            (
                "multi-line data",
                b"data: first\ndata: second\ndata:\ndata: fourth\n\n".to_vec(),
                vec![msg("first\nsecond\n\nfourth")],
            ),
            (
                "event and id fields",
                b"event: delta\nid: 7\ndata: a\n\ndata: b\n\nid\nevent: end\ndata: c\n\n"
                    .to_vec(),
                vec![
                    ev("delta", "a", Some("7")),
                    ev("message", "b", Some("7")),
                    ev("end", "c", Some("")),
                ],
            ),
            (
                "events without data are not dispatched",
                b"event: ping\n\nid: 1\n\nretry: 100\n\ndata: real\n\n".to_vec(),
                vec![ev("message", "real", Some("1"))],
            ),
            (
                "unknown fields and colons in values",
                b"foo: bar\ndata: a: b: c\nDATA: ignored\n\n".to_vec(),
                vec![msg("a: b: c")],
            ),
            (
                "utf-8",
                "data: h\u{e9}llo \u{1F600} \u{4E16}\u{754C}\n\ndata: \u{2603}\r\n\r\n"
                    .as_bytes()
                    .to_vec(),
                vec![msg("h\u{e9}llo \u{1F600} \u{4E16}\u{754C}"), msg("\u{2603}")],
            ),
            (
                "byte order mark",
                b"\xEF\xBB\xBFdata: bom\n\n".to_vec(),
                vec![msg("bom")],
            ),
            (
                "openai-like stream",
                concat!(
                    ": keep-alive\r\n\r\n",
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \u{e9}\"}}]}\n\n",
                    "data:{\"choices\":[],\"usage\":{\"total_tokens\":3}}\r\n\r\n",
                    "data: [DONE]\r\n\r\n",
                )
                .as_bytes()
                .to_vec(),
                vec![
                    msg("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}"),
                    msg("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \u{e9}\"}}]}"),
                    msg("{\"choices\":[],\"usage\":{\"total_tokens\":3}}"),
                    msg("[DONE]"),
                ],
            ),
            (
                "complete last line without the blank line",
                b"data: a\n\ndata: [DONE]\n".to_vec(),
                vec![msg("a"), msg("[DONE]")],
            ),
            (
                "a cut last line is discarded",
                b"data: a\n\ndata: [DO".to_vec(),
                vec![msg("a")],
            ),
        ]
    }

    #[test]
    fn fixtures_in_one_piece() {
        for (name, input, expected) in fixtures() {
            assert_eq!(parse_pieces(&[&input]), expected, "fixture {name}");
        }
    }

    #[test]
    fn fixtures_split_at_every_position() {
        for (name, input, expected) in fixtures() {
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                assert_eq!(
                    parse_pieces(&[a, b]),
                    expected,
                    "fixture {name} split at {cut}"
                );
            }
        }
    }

    #[test]
    fn fixtures_split_at_every_pair_of_positions() {
        for (name, input, expected) in fixtures() {
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let pieces = [&input[..i], &input[i..j], &input[j..]];
                    assert_eq!(
                        parse_pieces(&pieces),
                        expected,
                        "fixture {name} split at {i} and {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn fixtures_byte_by_byte() {
        for (name, input, expected) in fixtures() {
            let pieces: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(parse_pieces(&pieces), expected, "fixture {name}");
        }
    }

    #[test]
    fn events_come_out_as_soon_as_they_are_complete() {
        let mut parser = SseParser::new();
        assert_eq!(parser.feed(b"data: a\n").unwrap(), vec![]);
        assert_eq!(
            parser.feed(b"\ndata: b\n\ndata: c").unwrap(),
            vec![msg("a"), msg("b")]
        );
        assert_eq!(parser.feed(b"\n\n").unwrap(), vec![msg("c")]);
        // A lone `\r` ends the line at once; the `\n` arriving later is not a second line.
        assert_eq!(parser.feed(b"data: d\r").unwrap(), vec![]);
        assert_eq!(parser.feed(b"\n").unwrap(), vec![]);
        assert_eq!(parser.feed(b"\r").unwrap(), vec![msg("d")]);
        assert_eq!(parser.feed(b"\n").unwrap(), vec![]);
        assert_eq!(parser.feed(b"\n").unwrap(), vec![]);
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn retry_field() {
        let mut parser = SseParser::new();
        parser.feed(b"retry: 1500\n\nretry: 12x\n\n").unwrap();
        assert_eq!(parser.retry_ms(), Some(1500));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            parse_pieces(&[b"data: a\xFFb\n\n"]),
            vec![msg("a\u{FFFD}b")]
        );
    }

    #[test]
    fn a_line_that_never_ends_is_refused() {
        let mut parser = SseParser::with_max_event_bytes(64);
        assert!(parser.feed(&[b'a'; 40]).unwrap().is_empty());
        assert_eq!(
            parser.feed(&[b'a'; 40]),
            Err(SseError::EventTooLarge { limit: 64 })
        );
        // Stays failed.
        assert!(parser.feed(b"\n\ndata: x\n\n").is_err());
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn an_event_that_never_ends_is_refused() {
        let mut parser = SseParser::with_max_event_bytes(100);
        let mut result = Ok(Vec::new());
        for _ in 0..20 {
            result = parser.feed(b"data: 0123456789\n");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge { limit: 100 }));
    }

    #[test]
    fn the_bound_is_per_event() {
        let mut parser = SseParser::with_max_event_bytes(32);
        for _ in 0..100 {
            assert_eq!(
                parser.feed(b"data: 0123456789012345\n\n").unwrap(),
                vec![msg("0123456789012345")]
            );
        }
        // Exactly at the bound is fine.
        let mut parser = SseParser::with_max_event_bytes(10);
        assert_eq!(parser.feed(b"data:12345\n\n").unwrap(), vec![msg("12345")]);
    }
}
