//! The SSE parser: feeding a stream in pieces cut at fuzzer-chosen points gives the same
//! events (and the same size-limit error) as feeding it whole.
//!
//! Input layout (so that plain streams make good seeds: a leading 0 byte, then the stream):
//! - byte 0: bits 0-2 the number of cuts, bit 3 a small event-size limit follows, bit 4
//!   also feed the stream one byte at a time
//! - if bit 3: two bytes, the limit (little endian)
//! - two bytes per cut (little endian, taken modulo the stream length + 1)
//! - the rest: the stream

#![no_main]

use libfuzzer_sys::fuzz_target;
use lodge_core::sse::{SseEvent, SseParser};

struct Outcome {
    events: Vec<SseEvent>,
    failed: bool,
    retry_ms: Option<u64>,
}

fn run(limit: Option<usize>, pieces: &[&[u8]]) -> Outcome {
    let mut parser = match limit {
        Some(max) => SseParser::with_max_event_bytes(max),
        None => SseParser::new(),
    };
    let mut events = Vec::new();
    let mut failed = false;
    for piece in pieces {
        match parser.feed(piece) {
            Ok(more) => events.extend(more),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if failed {
        // A failed parser stays failed.
        assert!(parser.feed(b"data: x\n\n").is_err());
        assert!(parser.finish().is_none());
    } else {
        events.extend(parser.finish());
    }
    for e in &events {
        assert!(!e.event.contains(['\r', '\n']), "{e:?}");
        assert!(!e.data.contains('\r'), "{e:?}");
        if let Some(id) = &e.id {
            assert!(!id.contains(['\r', '\n', '\0']), "{e:?}");
        }
    }
    Outcome {
        events,
        failed,
        retry_ms: parser.retry_ms(),
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Some(head)
}

fn u16_le(bytes: &[u8]) -> usize {
    u16::from_le_bytes([bytes[0], bytes[1]]) as usize
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(&[flags]) = take(&mut data, 1) else {
        return;
    };
    let limit = if flags & 0x08 != 0 {
        let Some(b) = take(&mut data, 2) else { return };
        Some(u16_le(b))
    } else {
        None
    };
    let mut cuts = Vec::new();
    for _ in 0..(flags & 0x07) {
        let Some(b) = take(&mut data, 2) else { return };
        cuts.push(u16_le(b));
    }
    let stream = data;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);

    let whole = run(limit, &[stream]);
    let split = run(limit, &pieces);
    assert_eq!(
        whole.failed,
        split.failed,
        "cut into {} pieces",
        pieces.len()
    );
    if whole.failed {
        // Fed in pieces, what came out before the error is a prefix of the whole stream's
        // events without a limit.
        let unlimited = run(None, &[stream]);
        assert!(unlimited.events.starts_with(&split.events));
    } else {
        assert_eq!(
            whole.events,
            split.events,
            "cut into {} pieces",
            pieces.len()
        );
        assert_eq!(whole.retry_ms, split.retry_ms);
    }
    if flags & 0x10 != 0 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let single = run(limit, &bytes);
        assert_eq!(whole.failed, single.failed, "byte at a time");
        if !whole.failed {
            assert_eq!(whole.events, single.events, "byte at a time");
        }
    }
});
