//! A fake OpenAI-compatible AI provider for the end-to-end tests.
//!
//! It speaks HTTP/1.1 by hand on a raw tokio `TcpListener` bound to `127.0.0.1:0`, so the
//! tests control every byte and every write: the default reply is streamed with deliberately
//! awkward chunking (events split across writes, several events in one write, `\r\n` and `\n`
//! line endings, comment lines, the role-only first chunk, a usage chunk, `[DONE]`), as real
//! providers and proxies do.
//!
//! Its behaviour is chosen by a directive such as `[[429]]` anywhere in the text of the LAST
//! `user` message of the request, so an end-to-end test drives it through the chat itself
//! (see [`Directive`]). Without a directive it answers [`echo_reply`].
//!
//! Every request it receives is recorded ([`FakeAi::requests`]); [`FakeAi::wait_for_requests`]
//! waits for a number of them without sleeping.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The pause between two events of a `[[slow]]` reply.
pub const SLOW_DELAY: Duration = Duration::from_millis(50);
/// How long a `[[stall]]` or `[[idle]]` connection is held open at most.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);
/// The text of the first deltas sent by `[[drop]]`, `[[truncate]]`, `[[idle]]`,
/// `[[malformed]]` and `[[error-chunk]]` before they misbehave.
pub const PARTIAL_DELTAS: [&str; 2] = ["Partial ", "reply"];

/// What the fake does, chosen by `[[name]]` in the last user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// No directive: stream [`echo_reply`] in several deltas with awkward chunking.
    Echo,
    /// `[[slow]]`: the echo reply, one event per write with [`SLOW_DELAY`] between them.
    Slow,
    /// `[[401]]`: 401 with OpenAI's invalid-key JSON error body.
    Unauthorized,
    /// `[[404]]`: 404 with OpenAI's model-not-found JSON error body.
    NotFound,
    /// `[[429]]`: 429 with OpenAI's rate-limit JSON error body and `Retry-After: 1`.
    RateLimited,
    /// `[[500]]`: 500 with OpenAI's server-error JSON error body.
    ServerError,
    /// `[[malformed]]`: a delta, then a `data:` line with invalid JSON (then `[DONE]`).
    Malformed,
    /// `[[drop]]`: [`PARTIAL_DELTAS`], then the connection is closed in the middle of the
    /// chunked body, without `[DONE]`.
    Drop,
    /// `[[truncate]]`: [`PARTIAL_DELTAS`] in a body delimited by the connection's end (no
    /// chunked encoding), then a clean close without `[DONE]`.
    Truncate,
    /// `[[stall]]`: response headers, then nothing (until the client hangs up).
    Stall,
    /// `[[idle]]`: the role chunk and [`PARTIAL_DELTAS`], then nothing.
    Idle,
    /// `[[error-chunk]]`: a delta, then `data: {"error":{...}}`, then the body ends.
    ErrorChunk,
    /// `[[json]]`: ignores `stream` and answers one `application/json` completion holding
    /// [`echo_reply`].
    Json,
    /// `[[html]]`: 200 with an HTML page, as a web UI at a wrong base URL would.
    Html,
}

impl Directive {
    /// Every directive with its `[[...]]` text (`Echo` has none).
    pub const ALL: [(&'static str, Directive); 13] = [
        ("[[slow]]", Directive::Slow),
        ("[[401]]", Directive::Unauthorized),
        ("[[404]]", Directive::NotFound),
        ("[[429]]", Directive::RateLimited),
        ("[[500]]", Directive::ServerError),
        ("[[malformed]]", Directive::Malformed),
        ("[[drop]]", Directive::Drop),
        ("[[truncate]]", Directive::Truncate),
        ("[[stall]]", Directive::Stall),
        ("[[idle]]", Directive::Idle),
        ("[[error-chunk]]", Directive::ErrorChunk),
        ("[[json]]", Directive::Json),
        ("[[html]]", Directive::Html),
    ];

    /// The directive in a message's text (the first one found, in [`Directive::ALL`]
    /// order), `Echo` when none.
    pub fn of(text: &str) -> Directive {
        Directive::ALL
            .iter()
            .find(|(tag, _)| text.contains(tag))
            .map(|(_, d)| *d)
            .unwrap_or(Directive::Echo)
    }
}

/// The reply to a request whose last user message is `last_user` (verbatim, directives
/// included) and which holds `messages` messages in all (system and assistant included).
pub fn echo_reply(last_user: &str, messages: usize) -> String {
    format!("Echo: {last_user}. Context: {messages} messages.")
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when it was empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first header with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's `messages`.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The text of the last message whose role is `user`.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content").and_then(Value::as_str))
    }

    /// The directive this request carried.
    pub fn directive(&self) -> Directive {
        Directive::of(self.last_user_message().unwrap_or(""))
    }
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    count: watch::Sender<usize>,
    required_key: Mutex<Option<String>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The running fake provider; stops (closing every connection) when dropped.
pub struct FakeAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeAi {
    /// Starts a fake provider on `127.0.0.1` with a free port.
    pub async fn start() -> FakeAi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake AI provider: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake AI provider: local address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            required_key: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        lock(&shared.tasks).push(accept.abort_handle());
        FakeAi { addr, shared }
    }

    /// The base URL to configure, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, requests without `Authorization: Bearer KEY` get a 401 (`None`: any
    /// request is accepted, the default).
    pub fn require_key(&self, key: Option<String>) {
        *lock(&self.shared.required_key) = key;
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits (without polling) until at least `n` requests have arrived and returns them all;
    /// fails after 10 s.
    pub async fn wait_for_requests(&self, n: usize) -> anyhow::Result<Vec<RecordedRequest>> {
        self.wait_for_requests_within(n, Duration::from_secs(10))
            .await
    }

    /// [`FakeAi::wait_for_requests`] with another time limit.
    pub async fn wait_for_requests_within(
        &self,
        n: usize,
        limit: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let mut rx = self.shared.count.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|count| *count >= n)).await;
        match waited {
            Ok(Ok(_)) => Ok(self.requests()),
            Ok(Err(_)) => anyhow::bail!("fake AI provider stopped"),
            Err(_) => anyhow::bail!(
                "fake AI provider: waited {limit:?} for {n} requests, got {}",
                lock(&self.shared.requests).len()
            ),
        }
    }
}

impl Drop for FakeAi {
    fn drop(&mut self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens (a port just bound and released), for testing
/// "connection refused".
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = tokio::spawn(handle_connection(stream, Arc::clone(&shared)));
        let mut tasks = lock(&shared.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads one request: method, target, headers, body.
async fn read_request(stream: &mut TcpStream) -> anyhow::Result<Option<RecordedRequest>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        anyhow::ensure!(buf.len() <= MAX_HEAD, "request head too large");
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if !buf[0].is_ascii_uppercase() {
            // Not HTTP (e.g. a TLS ClientHello): answer as a plain HTTP server would.
            let body = "not an HTTP request";
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await?;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    anyhow::ensure!(length <= MAX_BODY, "request body too large");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "request body cut short");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    }))
}

async fn handle_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    // Errors here are the client hanging up, which some tests do on purpose.
    let _ = serve(&mut stream, &shared).await;
}

async fn serve(stream: &mut TcpStream, shared: &Shared) -> anyhow::Result<()> {
    let Some(request) = read_request(stream).await? else {
        return Ok(());
    };
    {
        let mut requests = lock(&shared.requests);
        requests.push(request.clone());
        let count = requests.len();
        shared.count.send_replace(count);
    }

    if request.method != "POST" || request.path != "/v1/chat/completions" {
        let message = format!(
            "Invalid URL ({} {})",
            request.method,
            request.path.split('?').next().unwrap_or("")
        );
        return send_error(
            stream,
            404,
            "Not Found",
            &message,
            "invalid_request_error",
            None,
        )
        .await;
    }
    let required = lock(&shared.required_key).clone();
    if let Some(key) = required {
        let given = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if given == key => {}
            Some(given) => {
                // Echoes the wrong key, as some providers do, to check that lodge hides it.
                let message = format!("Incorrect API key provided: {given}.");
                return send_error(
                    stream,
                    401,
                    "Unauthorized",
                    &message,
                    "invalid_request_error",
                    Some("invalid_api_key"),
                )
                .await;
            }
            None => {
                let message = "You didn't provide an API key. You need to provide your API key \
                               in an Authorization header using Bearer auth.";
                return send_error(
                    stream,
                    401,
                    "Unauthorized",
                    message,
                    "invalid_request_error",
                    None,
                )
                .await;
            }
        }
    }
    if !request.body.is_object() {
        return send_error(
            stream,
            400,
            "Bad Request",
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        )
        .await;
    }

    let model = request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned();
    let reply = echo_reply(
        request.last_user_message().unwrap_or(""),
        request.messages().len(),
    );
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let data = |value: &Value| format!("data: {value}\r\n\r\n");
    let role_event = data(&chunk(json!({"role": "assistant", "content": ""}), None));
    let partial_events: String = PARTIAL_DELTAS
        .iter()
        .map(|d| data(&chunk(json!({"content": d}), None)))
        .collect();

    match request.directive() {
        Directive::Echo | Directive::Slow => {
            let mut events = vec![": keep-alive\r\n\r\n".to_owned(), role_event];
            for (i, piece) in split_reply(&reply).iter().enumerate() {
                let json = chunk(json!({"content": piece}), None);
                events.push(match i % 3 {
                    0 => format!("data: {json}\r\n\r\n"),
                    1 => format!("data:{json}\n\n"),
                    _ => format!(": tick\ndata: {json}\r\n\n"),
                });
            }
            events.push(data(&chunk(json!({}), Some("stop"))));
            if include_usage {
                let usage = json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": request.messages().len() * 10,
                        "completion_tokens": reply.split(' ').count(),
                        "total_tokens": request.messages().len() * 10 + reply.split(' ').count(),
                    },
                });
                events.push(data(&usage));
            }
            events.push("data: [DONE]\r\n\r\n".to_owned());
            send_stream_head(stream, true).await?;
            if request.directive() == Directive::Slow {
                for event in &events {
                    send_chunk(stream, event.as_bytes()).await?;
                    tokio::time::sleep(SLOW_DELAY).await;
                }
            } else {
                send_awkwardly(stream, events.concat().as_bytes()).await?;
            }
            end_chunked(stream).await
        }
        Directive::Unauthorized => {
            send_error(
                stream,
                401,
                "Unauthorized",
                "Incorrect API key provided: sk-fake***************key. You can find your API \
                 key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                Some("invalid_api_key"),
            )
            .await
        }
        Directive::NotFound => {
            let message =
                format!("The model `{model}` does not exist or you do not have access to it.");
            send_error(
                stream,
                404,
                "Not Found",
                &message,
                "invalid_request_error",
                Some("model_not_found"),
            )
            .await
        }
        Directive::RateLimited => {
            send_error(
                stream,
                429,
                "Too Many Requests",
                "Rate limit reached for requests per min. Please try again in 1s.",
                "requests",
                Some("rate_limit_exceeded"),
            )
            .await
        }
        Directive::ServerError => {
            send_error(
                stream,
                500,
                "Internal Server Error",
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
            .await
        }
        Directive::Malformed => {
            send_stream_head(stream, true).await?;
            let events = format!(
                "{role_event}{}data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"oops\"\r\n\r\ndata: [DONE]\r\n\r\n",
                data(&chunk(json!({"content": PARTIAL_DELTAS[0]}), None)),
            );
            send_awkwardly(stream, events.as_bytes()).await?;
            end_chunked(stream).await
        }
        Directive::Drop => {
            send_stream_head(stream, true).await?;
            send_awkwardly(stream, format!("{role_event}{partial_events}").as_bytes()).await?;
            // Half an event, then the connection goes away without the last chunk.
            send_chunk(stream, b"data: {\"choi").await?;
            stream.flush().await?;
            Ok(())
        }
        Directive::Truncate => {
            send_stream_head(stream, false).await?;
            let bytes = format!("{role_event}{partial_events}");
            stream.write_all(bytes.as_bytes()).await?;
            stream.flush().await?;
            stream.shutdown().await?;
            Ok(())
        }
        Directive::Stall => {
            send_stream_head(stream, true).await?;
            hold_until_client_leaves(stream).await
        }
        Directive::Idle => {
            send_stream_head(stream, true).await?;
            send_awkwardly(stream, format!("{role_event}{partial_events}").as_bytes()).await?;
            hold_until_client_leaves(stream).await
        }
        Directive::ErrorChunk => {
            send_stream_head(stream, true).await?;
            let error = json!({"error": {
                "message": "The model is overloaded. Please try again later.",
                "type": "server_error",
                "param": null,
                "code": null,
            }});
            let events = format!(
                "{role_event}{}{}",
                data(&chunk(json!({"content": PARTIAL_DELTAS[0]}), None)),
                data(&error)
            );
            send_awkwardly(stream, events.as_bytes()).await?;
            end_chunked(stream).await
        }
        Directive::Json => {
            let body = json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            });
            send_whole(
                stream,
                200,
                "OK",
                "application/json",
                &[],
                body.to_string().as_bytes(),
            )
            .await
        }
        Directive::Html => {
            let page = "<!doctype html><html><head><title>Chat UI</title></head><body>Hello\
                        </body></html>";
            send_whole(
                stream,
                200,
                "OK",
                "text/html; charset=utf-8",
                &[],
                page.as_bytes(),
            )
            .await
        }
    }
}

/// Splits the reply into deltas of irregular sizes (in characters, so each is valid UTF-8).
fn split_reply(reply: &str) -> Vec<String> {
    const SIZES: [usize; 6] = [3, 1, 7, 2, 5, 11];
    let chars: Vec<char> = reply.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < chars.len() {
        let end = (at + SIZES[i % SIZES.len()]).min(chars.len());
        pieces.push(chars[at..end].iter().collect());
        at = end;
        i += 1;
    }
    pieces
}

/// Writes `bytes` as HTTP chunks of irregular sizes (inside events, between `\r` and `\n`,
/// inside UTF-8 sequences, and several events at once), pausing a moment between writes so
/// the pieces reach the client as separate reads.
async fn send_awkwardly(stream: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    const SIZES: [usize; 8] = [1, 9, 2, 40, 5, 300, 3, 17];
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let end = (at + SIZES[i % SIZES.len()]).min(bytes.len());
        send_chunk(stream, &bytes[at..end]).await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        at = end;
        i += 1;
    }
    Ok(())
}

async fn send_stream_head(stream: &mut TcpStream, chunked: bool) -> anyhow::Result<()> {
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n{framing}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

async fn send_chunk(stream: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

async fn end_chunked(stream: &mut TcpStream) -> anyhow::Result<()> {
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn send_whole(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// An error response shaped like OpenAI's.
async fn send_error(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> anyhow::Result<()> {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let extra: &[(&str, &str)] = if status == 429 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    send_whole(
        stream,
        status,
        reason,
        "application/json",
        extra,
        body.to_string().as_bytes(),
    )
    .await
}

/// Keeps the connection open, sending nothing, until the client closes it (or
/// [`STALL_LIMIT`] passes).
async fn hold_until_client_leaves(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(STALL_LIMIT, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    Ok(())
}
