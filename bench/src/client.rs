//! The load generator's side of the chat protocol (shared/protocols/chat.md): join a room,
//! send messages that carry their own schedule, and read frames cheaply.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The instant every timestamp carried in a message text is relative to. All clients of a
/// run live in this process, so one monotonic clock serves senders and receivers.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The instant `us` microseconds after [`epoch`].
pub fn at_us(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

/// The frame's `type`. Names and texts are JSON-escaped inside frames, so the only
/// unescaped `"type":"` is the frame's own key; no full parse is needed to skip the
/// (possibly large) presence and history frames.
pub fn frame_type(text: &str) -> Option<&str> {
    const KEY: &str = "\"type\":\"";
    let start = text.find(KEY)? + KEY.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// How many people a `presence` frame says are in the room, without parsing it: its
/// `count` (a large room lists only some names), else its names (the benchmark's names
/// have no commas).
pub fn presence_count(text: &str) -> usize {
    if let Some(start) = text.find("\"count\":") {
        let digits: String = text[start + 8..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            return n;
        }
    }
    let Some(start) = text.find("\"users\":[") else {
        return 0;
    };
    let list = &text[start + 9..];
    let list = &list[..list.find(']').unwrap_or(list.len())];
    if list.trim().is_empty() {
        0
    } else {
        list.bytes().filter(|&b| b == b',').count() + 1
    }
}

/// What the load generator reads of a `message` frame
/// (`{"type":"message", id, name, role, text, ts}`).
#[derive(Debug, Deserialize)]
pub struct MessageFrame {
    pub id: u64,
    pub text: String,
}

/// A message text the benchmark sends: a sequence number and the scheduled send time.
pub fn bench_text(seq: u64, sched_us: u64) -> String {
    format!("b {seq} {sched_us}")
}

/// Parses [`bench_text`] back.
pub fn parse_bench_text(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.strip_prefix("b ")?.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let sched = parts.next()?.parse().ok()?;
    Some((seq, sched))
}

/// The frame a client sends for a chat message.
pub fn message_out(text: &str) -> Message {
    Message::Text(
        serde_json::json!({ "type": "message", "text": text })
            .to_string()
            .into(),
    )
}

/// Percent-encodes a path segment or query value (unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The WebSocket URL of `room` joined as `name` on a server at `base` (`http://host:port`).
pub fn room_url(base: &str, room: &str, name: &str) -> String {
    let ws = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .unwrap_or_else(|| base.to_string());
    format!("{ws}/chat/{}/ws?name={}", encode(room), encode(name))
}

/// The load generator's WebSocket read buffer per connection.
const CLIENT_READ_BUFFER: usize = 8 * 1024;

/// Opens the socket (no handshake reading yet).
pub async fn open(base: &str, room: &str, name: &str) -> Result<Ws> {
    let url = room_url(base, room, name);
    // A small read buffer: tungstenite zero-fills its whole read buffer (128 KiB by
    // default) before every read, which would make the load generator, not the server,
    // the busiest process with hundreds of clients.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
        .await
        .with_context(|| format!("connecting {url}"))?;
    Ok(ws)
}

/// Reads frames until the joiner's `history` and `presence` arrived (in that order);
/// returns how many names the presence frame lists.
pub async fn read_join(ws: &mut Ws, timeout: Duration) -> Result<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut history = false;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no history/presence within {timeout:?}"))?;
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => bail!("closed while joining: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("socket error while joining: {e}"),
            None => bail!("socket ended while joining"),
        };
        match frame_type(text.as_str()) {
            Some("history") => history = true,
            Some("presence") if history => return Ok(presence_count(text.as_str())),
            _ => {}
        }
    }
}

/// Opens a socket and waits for the join frames.
pub async fn join(base: &str, room: &str, name: &str) -> Result<Ws> {
    Ok(join_counted(base, room, name).await?.0)
}

/// [`join`], also returning how many names the joiner's presence frame listed.
pub async fn join_counted(base: &str, room: &str, name: &str) -> Result<(Ws, usize)> {
    let mut ws = open(base, room, name).await?;
    let present = read_join(&mut ws, Duration::from_secs(30))
        .await
        .with_context(|| format!("joining {room} as {name}"))?;
    Ok((ws, present))
}

/// Sends `text` as a chat message and waits for the room's `message` frame carrying it,
/// skipping everything else. Returns the entry id.
pub async fn send_and_wait(ws: &mut Ws, text: &str, timeout: Duration) -> Result<u64> {
    ws.send(message_out(text)).await?;
    wait_for_echo(ws, text, timeout).await
}

/// Waits for the room's `message` frame carrying `text` (other frames are skipped); its id.
pub async fn wait_for_echo(ws: &mut Ws, text: &str, timeout: Duration) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no echo of {text:?} within {timeout:?}"))?;
        match frame {
            Some(Ok(Message::Text(t))) => {
                if frame_type(t.as_str()) == Some("message") {
                    let m: MessageFrame = serde_json::from_str(t.as_str())?;
                    if m.text == text {
                        return Ok(m.id);
                    }
                } else if frame_type(t.as_str()) == Some("error") {
                    bail!("the room refused the message: {}", t.as_str());
                }
            }
            Some(Ok(Message::Close(c))) => bail!("closed while waiting for an echo: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("socket error while waiting for an echo: {e}"),
            None => bail!("socket ended while waiting for an echo"),
        }
    }
}

/// Runs `f(i)` for `i in 0..n` with at most `parallel` at once; the first error wins.
pub async fn for_each_parallel<T, F, Fut>(n: usize, parallel: usize, f: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        handles.push(tokio::spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::presence_count;

    #[test]
    fn presence_counts_names_or_takes_the_rooms_count() {
        assert_eq!(
            presence_count(r#"{"type":"presence","users":[],"count":0}"#),
            0
        );
        assert_eq!(
            presence_count(r#"{"type":"presence","users":["a","b"]}"#),
            2
        );
        // A large room lists some names and counts everyone.
        assert_eq!(
            presence_count(r#"{"type":"presence","users":["a","b"],"count":500}"#),
            500
        );
    }
}
