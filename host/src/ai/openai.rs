//! The OpenAI-compatible streaming client: `POST {base_url}/chat/completions` with
//! `"stream": true`, read back as Server-Sent Events.
//!
//! The same wire format is spoken by OpenAI, Ollama (`/v1`), the llama.cpp server, vLLM and
//! Gemini's OpenAI-compatible endpoint, so one careful client covers them all. Careful means:
//! every way the exchange can go wrong ends in one message a person can act on (see
//! [`stream_completion`]), and the API key never appears in any message or log line.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::sse::{SseError, SseEvent, SseParser};
use super::{ChatMessage, CompletionRequest, Deltas, Failure, FailureKind};

/// The longest reply kept for the final `Done` event; a longer one is ended with an error.
pub(crate) const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// The most of an error response body that is read to find the provider's message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The longest provider message quoted in an error.
const MAX_QUOTED_CHARS: usize = 400;
/// How long an error response body may take to arrive once its status line is in.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A configured provider, ready for requests. Built once by `AiService::new`.
pub(crate) struct Provider {
    /// `{base_url}/chat/completions`.
    pub(crate) endpoint: reqwest::Url,
    /// The base URL as shown in messages: no user, password or query.
    pub(crate) shown_base: String,
    /// The API key, sent as `Authorization: Bearer` when present. Never displayed.
    pub(crate) key: Option<String>,
    /// Name of the environment variable the key comes from, for messages.
    pub(crate) key_env: String,
    pub(crate) default_model: String,
    /// `None`: no limit.
    pub(crate) first_token_timeout: Option<Duration>,
    /// `None`: no limit.
    pub(crate) idle_timeout: Option<Duration>,
    /// Strings that must never appear in a message: the key, a password in the URL.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("endpoint", &self.shown_base)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("key_env", &self.key_env)
            .field("default_model", &self.default_model)
            .finish()
    }
}

impl Provider {
    /// Checks the configured base URL and key; `Err` is a message for the operator.
    pub(crate) fn new(
        base_url: &str,
        key: Option<String>,
        key_env: &str,
        default_model: &str,
        first_token_timeout_ms: u64,
        idle_timeout_ms: u64,
    ) -> Result<Provider, String> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| {
            format!(
                "`[ai] base_url` = {trimmed:?} is not a valid URL ({e}): use e.g. \
                 \"https://api.openai.com/v1\" or \"http://127.0.0.1:11434/v1\""
            )
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!(
                "`[ai] base_url` must start with http:// or https://, not {}://",
                parsed.scheme()
            ));
        }
        if parsed.cannot_be_a_base() || parsed.host().is_none() {
            return Err(format!("`[ai] base_url` = {trimmed:?} has no host"));
        }
        let mut secrets = Vec::new();
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
        }
        let mut shown = parsed.clone();
        // Setting these on an http(s) URL with a host cannot fail.
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown.set_query(None);
        shown.set_fragment(None);
        let shown_base = shown.as_str().trim_end_matches('/').to_owned();

        let mut endpoint = parsed;
        endpoint.set_fragment(None);
        let path = format!("{}/chat/completions", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);

        let key = key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
        if let Some(k) = &key {
            if !k.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err(format!(
                    "the API key in the environment variable {key_env} contains characters \
                     that cannot go in an HTTP header (spaces, line breaks or non-ASCII): \
                     check its value"
                ));
            }
            secrets.push(k.clone());
        }
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        Ok(Provider {
            endpoint,
            shown_base,
            key,
            key_env: key_env.to_owned(),
            default_model: default_model.trim().to_owned(),
            first_token_timeout: ms(first_token_timeout_ms),
            idle_timeout: ms(idle_timeout_ms),
            secrets,
        })
    }

    /// Removes every secret from `message`.
    pub(crate) fn redact(&self, message: String) -> String {
        let mut message = message;
        for secret in &self.secrets {
            if !secret.is_empty() && message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "[redacted]");
            }
        }
        message
    }

    /// The model a request runs on.
    pub(crate) fn model_for<'a>(&'a self, request: &'a CompletionRequest) -> &'a str {
        match request.model.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => m,
            _ => &self.default_model,
        }
    }
}

/// Token counts the provider reported in its final usage chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The reply is complete.
    Done { text: String, usage: Option<Usage> },
    /// The stream failed; the message is for the operator and holds no secret.
    Failed(Failure),
    /// The delta callback returned false: nobody listens any more.
    Abandoned,
}

/// Builds the JSON body of a streamed chat completion.
pub(crate) fn request_body(model: &str, request: &CompletionRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::from(model));
    body.insert(
        "messages".into(),
        Value::Array(
            request
                .messages
                .iter()
                .map(|ChatMessage { role, content }| {
                    let mut m = Map::new();
                    m.insert("role".into(), Value::from(role.as_str()));
                    m.insert("content".into(), Value::from(content.as_str()));
                    Value::Object(m)
                })
                .collect(),
        ),
    );
    body.insert("stream".into(), Value::Bool(true));
    if let Some(t) = request.temperature {
        // Through the shortest decimal form, so 0.7f32 is sent as 0.7, not 0.699999988.
        let t = t.to_string().parse::<f64>().unwrap_or(f64::from(t));
        if let Some(n) = serde_json::Number::from_f64(t) {
            body.insert("temperature".into(), Value::Number(n));
        }
    }
    if let Some(n) = request.max_tokens {
        body.insert("max_tokens".into(), Value::from(n));
    }
    let mut options = Map::new();
    options.insert("include_usage".into(), Value::Bool(true));
    body.insert("stream_options".into(), Value::Object(options));
    Value::Object(body)
}

/// Runs one streamed completion to its end. Each non-empty piece of the reply goes to
/// `on_delta` as it arrives; when it returns false the stream stops at once.
///
/// Timeouts: until the first token (the first non-empty `content`, or reasoning text from a
/// model that thinks first) the whole exchange (connect, headers, chunks) must fit in
/// `first_token_timeout`; after it, each data event must follow the previous one within
/// `idle_timeout` (comment lines such as keep-alives do not count).
///
/// Leniency, for the servers that differ from OpenAI: a connection closed cleanly after a
/// `finish_reason` but before `[DONE]` counts as complete; a server that ignores `stream` and
/// answers one `application/json` completion is accepted as a single delta.
pub(crate) async fn stream_completion(
    client: &reqwest::Client,
    provider: &Provider,
    request: &CompletionRequest,
    on_delta: &mut impl Deltas,
) -> Outcome {
    match run(client, provider, request, on_delta).await {
        Ok(outcome) => outcome,
        Err(failure) => Outcome::Failed(Failure {
            message: provider.redact(failure.message),
            ..failure
        }),
    }
}

/// What went wrong while waiting for the provider.
enum Wait {
    FirstToken,
    Idle,
}

fn timeout_message(provider: &Provider, model: &str, wait: Wait) -> String {
    match wait {
        Wait::FirstToken => format!(
            "the AI provider at {} sent no reply within {} (`[ai] first_token_timeout_ms`): \
             it may be overloaded or still loading the model \"{model}\"",
            provider.shown_base,
            show_duration(provider.first_token_timeout.unwrap_or_default()),
        ),
        Wait::Idle => format!(
            "the AI provider stopped sending mid-reply: nothing for {} \
             (`[ai] idle_timeout_ms`)",
            show_duration(provider.idle_timeout.unwrap_or_default()),
        ),
    }
}

async fn run(
    client: &reqwest::Client,
    provider: &Provider,
    request: &CompletionRequest,
    on_delta: &mut impl Deltas,
) -> Result<Outcome, Failure> {
    let model = provider.model_for(request);
    let body = request_body(model, request);
    let first_deadline = provider.first_token_timeout.map(|t| Instant::now() + t);
    let timed_out = |wait| timeout_message(provider, model, wait);

    let mut builder = client
        .post(provider.endpoint.clone())
        .header(ACCEPT, "text/event-stream")
        .json(&body);
    if let Some(key) = &provider.key {
        builder = builder.bearer_auth(key);
    }
    let mut response = match until(first_deadline, builder.send()).await {
        None => {
            return Err(Failure::new(
                FailureKind::Timeout,
                timed_out(Wait::FirstToken),
            ));
        }
        Some(Err(e)) => {
            return Err(Failure::new(
                FailureKind::Unreachable,
                send_error_message(provider, &e),
            ));
        }
        Some(Ok(response)) => response,
    };

    let status = response.status();
    if !status.is_success() {
        let retry_after = header_str(&response, RETRY_AFTER);
        let location = header_str(&response, LOCATION);
        let deadline = Instant::now() + ERROR_BODY_TIMEOUT;
        let body = read_limited(&mut response, deadline, MAX_ERROR_BODY_BYTES).await;
        return Err(Failure::new(
            FailureKind::from_status(status),
            status_message(
                provider,
                model,
                status,
                &body,
                retry_after.as_deref(),
                location.as_deref(),
            ),
        ));
    }

    let content_type = header_str(&response, CONTENT_TYPE)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("text/html") {
        return Err(Failure::new(
            FailureKind::ProviderError,
            format!(
                "the AI provider at {} answered with an HTML page instead of an event stream: check \
             `[ai] base_url` (it is the API's base, usually ending in /v1)",
                provider.shown_base
            ),
        ));
    }
    if content_type.starts_with("application/json") {
        return whole_json_reply(&mut response, first_deadline, on_delta, provider, model).await;
    }

    let mut parser = SseParser::new();
    let mut text = String::new();
    let mut usage = None;
    let mut finished = false; // a finish_reason was seen
    let mut first_token = false;
    let mut last_event = Instant::now();
    loop {
        let (deadline, wait) = if first_token {
            (provider.idle_timeout.map(|t| last_event + t), Wait::Idle)
        } else {
            (first_deadline, Wait::FirstToken)
        };
        let events = match until(deadline, response.chunk()).await {
            None => return Err(Failure::new(FailureKind::Timeout, timed_out(wait))),
            Some(Err(e)) => {
                return Err(Failure::from(format!(
                    "the AI provider closed the stream midway ({}), after {} bytes of reply",
                    root_cause(&e),
                    text.len()
                )));
            }
            Some(Ok(Some(bytes))) => parser.feed(&bytes).map_err(|e| match e {
                SseError::EventTooLarge { limit } => format!(
                    "the AI provider sent a stream event larger than {limit} bytes: is \
                     `[ai] base_url` an OpenAI-compatible API?"
                ),
            })?,
            Some(Ok(None)) => {
                // The body ended. A complete last line without its blank line still counts.
                if let Some(event) = parser.finish() {
                    match handle_event(&event, &mut text, &mut usage)? {
                        Step::Done => return Ok(Outcome::Done { text, usage }),
                        Step::Continue {
                            finished: f, delta, ..
                        } => {
                            finished |= f;
                            if let Some(delta) = delta
                                && !on_delta.deliver(delta).await
                            {
                                return Ok(Outcome::Abandoned);
                            }
                        }
                    }
                }
                if finished {
                    return Ok(Outcome::Done { text, usage });
                }
                return Err(Failure::from(format!(
                    "the AI provider closed the stream midway (it ended without [DONE]), after \
                     {} bytes of reply",
                    text.len()
                )));
            }
        };
        for event in &events {
            match handle_event(event, &mut text, &mut usage)? {
                Step::Done => return Ok(Outcome::Done { text, usage }),
                Step::Continue {
                    finished: f,
                    token,
                    data,
                    delta,
                } => {
                    finished |= f;
                    first_token |= token;
                    if let Some(delta) = delta
                        && !on_delta.deliver(delta).await
                    {
                        return Ok(Outcome::Abandoned);
                    }
                    // After the hand-over: time the object made us wait is not the
                    // provider's silence.
                    if data {
                        last_event = Instant::now();
                    }
                }
            }
        }
    }
}

enum Step {
    Continue {
        /// A finish_reason was seen.
        finished: bool,
        /// The event carried reply text (or reasoning text).
        token: bool,
        /// The event carried data (progress for the idle timeout).
        data: bool,
        /// Reply text to hand on.
        delta: Option<String>,
    },
    Done,
}

/// Interprets one SSE event of the stream.
fn handle_event(
    event: &SseEvent,
    text: &mut String,
    usage: &mut Option<Usage>,
) -> Result<Step, Failure> {
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(Step::Continue {
            finished: false,
            token: false,
            data: false,
            delta: None,
        });
    }
    if data == "[DONE]" {
        return Ok(Step::Done);
    }
    if event.event == "error" {
        let message = serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| provider_message_in(&v))
            .unwrap_or_else(|| quote(data));
        return Err(Failure::new(
            FailureKind::ProviderError,
            format!("the AI provider reported an error mid-stream: {message}"),
        ));
    }
    let chunk = parse_chunk(data).map_err(|message| {
        // An error object in the stream is the provider's failure, not a broken stream.
        if message.starts_with("the AI provider reported an error") {
            Failure::new(FailureKind::ProviderError, message)
        } else {
            Failure::from(message)
        }
    })?;
    if let Some(u) = chunk.usage {
        *usage = Some(u);
    }
    let mut token = chunk.reasoning;
    let delta = chunk.content.filter(|c| !c.is_empty());
    if let Some(content) = &delta {
        token = true;
        if text.len() + content.len() > MAX_REPLY_BYTES {
            return Err(Failure::new(
                FailureKind::TooLong,
                format!(
                    "the reply passed {} MiB and was stopped: ask for fewer tokens (max-tokens)",
                    MAX_REPLY_BYTES / (1024 * 1024)
                ),
            ));
        }
        text.push_str(content);
    }
    Ok(Step::Continue {
        finished: chunk.finished,
        token,
        data: true,
        delta,
    })
}

/// What one `data:` chunk of a chat completion stream says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Chunk {
    pub(crate) content: Option<String>,
    /// Non-empty reasoning text (`reasoning_content` or `reasoning`) from a thinking model.
    pub(crate) reasoning: bool,
    pub(crate) finished: bool,
    pub(crate) usage: Option<Usage>,
}

/// Parses one `data:` chunk. The role-only first chunk and a usage chunk with empty
/// `choices` are normal; `{"error": ...}` and anything that is not a chunk are errors.
pub(crate) fn parse_chunk(data: &str) -> Result<Chunk, String> {
    let value: Value = serde_json::from_str(data).map_err(|e| {
        format!(
            "the AI provider sent a malformed stream chunk ({e}): {}",
            quote(data)
        )
    })?;
    let Value::Object(object) = &value else {
        return Err(format!(
            "the AI provider sent a malformed stream chunk (not a JSON object): {}",
            quote(data)
        ));
    };
    if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
        let message = message_of(error).unwrap_or_else(|| quote(&error.to_string()));
        return Err(format!(
            "the AI provider reported an error mid-stream: {message}"
        ));
    }
    let mut chunk = Chunk {
        usage: object.get("usage").and_then(parse_usage),
        ..Chunk::default()
    };
    let choice = match object.get("choices") {
        None | Some(Value::Null) => None,
        Some(Value::Array(choices)) => choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0),
        Some(_) => {
            return Err(format!(
                "the AI provider sent a malformed stream chunk (`choices` is not a list): {}",
                quote(data)
            ));
        }
    };
    if let Some(choice) = choice {
        if let Some(delta) = choice.get("delta") {
            chunk.content = delta
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_owned);
            chunk.reasoning = ["reasoning_content", "reasoning"].iter().any(|field| {
                delta
                    .get(*field)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
        }
        chunk.finished = choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null());
    }
    Ok(chunk)
}

fn parse_usage(value: &Value) -> Option<Usage> {
    let count = |name| value.get(name).and_then(Value::as_u64);
    let prompt_tokens = count("prompt_tokens");
    let completion_tokens = count("completion_tokens");
    (prompt_tokens.is_some() || completion_tokens.is_some()).then(|| Usage {
        prompt_tokens: prompt_tokens.unwrap_or(0),
        completion_tokens: completion_tokens.unwrap_or(0),
    })
}

/// A server that ignored `"stream": true` and sent one whole completion.
async fn whole_json_reply(
    response: &mut reqwest::Response,
    first_deadline: Option<Instant>,
    on_delta: &mut impl Deltas,
    provider: &Provider,
    model: &str,
) -> Result<Outcome, Failure> {
    let deadline = first_deadline.unwrap_or_else(|| Instant::now() + ERROR_BODY_TIMEOUT);
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    timeout_message(provider, model, Wait::FirstToken),
                ));
            }
            Ok(Err(e)) => {
                return Err(Failure::from(format!(
                    "the AI provider closed the connection midway ({})",
                    root_cause(&e)
                )));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => {
                if body.len() + bytes.len() > MAX_REPLY_BYTES + MAX_ERROR_BODY_BYTES {
                    return Err(Failure::new(
                        FailureKind::TooLong,
                        format!(
                            "the reply passed {} MiB and was stopped: ask for fewer tokens \
                         (max-tokens)",
                            MAX_REPLY_BYTES / (1024 * 1024)
                        ),
                    ));
                }
                body.extend_from_slice(&bytes);
            }
        }
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        format!("the AI provider answered with malformed JSON instead of an event stream ({e})")
    })?;
    if let Some(message) = value
        .get("error")
        .filter(|e| !e.is_null())
        .map(|e| message_of(e).unwrap_or_else(|| quote(&e.to_string())))
    {
        return Err(Failure::new(
            FailureKind::ProviderError,
            format!("the AI provider reported an error: {message}"),
        ));
    }
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let Some(text) = choice
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
    else {
        return Err(Failure::from(
            "the AI provider answered with JSON that is neither an event stream nor a chat \
             completion: is `[ai] base_url` an OpenAI-compatible API?"
                .to_owned(),
        ));
    };
    let text = text.to_owned();
    if !text.is_empty() && !on_delta.deliver(text.clone()).await {
        return Ok(Outcome::Abandoned);
    }
    Ok(Outcome::Done {
        text,
        usage: value.get("usage").and_then(parse_usage),
    })
}

/// Runs `future`, giving up at `deadline` (`None`: never).
async fn until<F: std::future::Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// Reads at most `limit` bytes of the body, stopping quietly at the deadline or an error.
async fn read_limited(
    response: &mut reqwest::Response,
    deadline: Instant,
    limit: usize,
) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => {
                let take = bytes.len().min(limit - body.len());
                body.extend_from_slice(&bytes[..take]);
            }
            _ => break,
        }
    }
    body
}

fn header_str(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The innermost cause of an error: the part that says what actually happened.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn find_io_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// A failure before any response arrived.
fn send_error_message(provider: &Provider, error: &reqwest::Error) -> String {
    let base = &provider.shown_base;
    let refused =
        find_io_error(error).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    if refused {
        return format!(
            "could not connect to the AI provider at {base}: connection refused — is it running?"
        );
    }
    if error.is_connect() {
        let cause = root_cause(error);
        if cause.contains("certificate") {
            return format!(
                "could not connect to the AI provider at {base}: its TLS certificate was \
                 refused ({cause}); lodge trusts the public web PKI roots only"
            );
        }
        return format!(
            "could not connect to the AI provider at {base}: {cause} — is it running, and \
             is `[ai] base_url` right?"
        );
    }
    format!(
        "the request to the AI provider at {base} failed: {}",
        root_cause(error)
    )
}

/// A non-success HTTP status, with the provider's own message when it sent one.
fn status_message(
    provider: &Provider,
    model: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<&str>,
    location: Option<&str>,
) -> String {
    let code = status.as_u16();
    let mut message = match code {
        401 | 403 if provider.key.is_none() => format!(
            "the AI provider rejected the request ({code}): it needs an API key and none is \
             configured: put the key in the environment variable {} of the lodge host (named \
             by `[ai] api_key_env`)",
            provider.key_env
        ),
        401 | 403 => format!(
            "the AI provider rejected the API key ({code}): set a valid key in the environment \
             variable {} of the lodge host (named by `[ai] api_key_env`)",
            provider.key_env
        ),
        404 => format!(
            "the AI provider answered 404 Not Found for {}/chat/completions: check `[ai] \
             base_url` (usually ending in /v1) and that the model \"{model}\" exists there",
            provider.shown_base
        ),
        429 => {
            let mut m = "rate limited by the AI provider (429): wait and try again".to_owned();
            if let Some(secs) = retry_after.map(str::trim).filter(|s| !s.is_empty()) {
                let _ = write!(m, " (it asked to wait {} s)", quote(secs));
            }
            m
        }
        400 | 413 | 422 => format!("the AI provider refused the request ({code})"),
        500..=599 => format!(
            "the AI provider failed with {code} {}",
            status.canonical_reason().unwrap_or("server error")
        ),
        300..=399 => format!(
            "the AI provider redirected the request ({code}){}: set `[ai] base_url` to the \
             address it points to",
            location
                .map(|l| format!(" to {}", quote(l)))
                .unwrap_or_default()
        ),
        _ => format!("the AI provider answered with unexpected HTTP status {code}"),
    };
    if let Some(said) = provider_message(body) {
        let _ = write!(message, "; the provider said: {said}");
    }
    message
}

/// The provider's own explanation in an error body, in the shapes the compatible servers
/// use: `{"error":{"message":...}}` (OpenAI, vLLM, llama.cpp), `{"error":"..."}` (Ollama),
/// `{"message":...}`, `{"detail":...}`; or a short plain-text body.
fn provider_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return provider_message_in(&value);
    }
    if text.starts_with('<') {
        return None; // an HTML error page says nothing useful in one line
    }
    Some(quote(text))
}

fn provider_message_in(value: &Value) -> Option<String> {
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return message_of(error).or_else(|| Some(quote(&error.to_string())));
    }
    message_of(value)
}

fn message_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(quote(s)),
        Value::Object(o) => ["message", "detail", "msg"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .filter(|s| !s.trim().is_empty())
            .map(quote),
        _ => None,
    }
}

/// Quotes text from the provider on one line, shortened to a readable length.
fn quote(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut short: String = one_line.chars().take(MAX_QUOTED_CHARS).collect();
    if short.len() < one_line.len() {
        short.push('…');
    }
    short
}

fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(key: Option<&str>) -> Provider {
        Provider::new(
            "http://user:hunter2@127.0.0.1:9/v1/",
            key.map(str::to_owned),
            "LODGE_AI_API_KEY",
            "test-model",
            1000,
            1000,
        )
        .unwrap()
    }

    #[test]
    fn endpoint_and_shown_base() {
        let p = provider(Some(" sk-secret \n"));
        assert_eq!(
            p.endpoint.as_str(),
            "http://user:hunter2@127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(p.shown_base, "http://127.0.0.1:9/v1");
        assert_eq!(p.key.as_deref(), Some("sk-secret"));
        assert_eq!(
            p.redact("key sk-secret pw hunter2".into()),
            "key [redacted] pw [redacted]"
        );
        assert!(!format!("{p:?}").contains("sk-secret"));
    }

    #[test]
    fn bad_configuration_is_explained() {
        for (url, needle) in [
            ("not a url", "not a valid URL"),
            ("ftp://x/v1", "http:// or https://"),
            ("", "not a valid URL"),
        ] {
            let err = Provider::new(url, None, "K", "m", 1, 1).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
        }
        let err = Provider::new("http://h/v1", Some("a b".into()), "K", "m", 1, 1).unwrap_err();
        assert!(err.contains("environment variable K"), "{err}");
        assert!(!err.contains("a b"), "{err}");
    }

    #[test]
    fn body_shape() {
        let request = CompletionRequest {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
            model: None,
            temperature: Some(0.7),
            max_tokens: Some(50),
        };
        assert_eq!(
            request_body("m", &request),
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "temperature": 0.7,
                "max_tokens": 50,
                "stream_options": {"include_usage": true},
            })
        );
        let request = CompletionRequest {
            temperature: None,
            max_tokens: None,
            ..request
        };
        let body = request_body("m", &request);
        assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
    }

    #[test]
    fn chunks() {
        let role = r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk(role).unwrap(),
            Chunk {
                content: Some(String::new()),
                ..Chunk::default()
            }
        );
        let delta = r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
        assert_eq!(parse_chunk(delta).unwrap().content.as_deref(), Some("Hel"));
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(parse_chunk(finish).unwrap().finished);
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        assert_eq!(
            parse_chunk(usage).unwrap(),
            Chunk {
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 5
                }),
                ..Chunk::default()
            }
        );
        let thinking = r#"{"choices":[{"delta":{"content":null,"reasoning_content":"hmm"}}]}"#;
        assert!(parse_chunk(thinking).unwrap().reasoning);
        assert_eq!(
            parse_chunk(r#"{"choices":null}"#).unwrap(),
            Chunk::default()
        );

        let err = parse_chunk(r#"{"choices":[{"delta":{"content":"x"#).unwrap_err();
        assert!(
            err.starts_with("the AI provider sent a malformed stream chunk"),
            "{err}"
        );
        let err = parse_chunk("[1,2]").unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
        let err = parse_chunk(r#"{"choices":"no"}"#).unwrap_err();
        assert!(err.contains("not a list"), "{err}");
        let err =
            parse_chunk(r#"{"error":{"message":"overloaded","type":"server_error"}}"#).unwrap_err();
        assert_eq!(
            err,
            "the AI provider reported an error mid-stream: overloaded"
        );
        let err = parse_chunk(r#"{"error":"model not loaded"}"#).unwrap_err();
        assert!(err.ends_with("model not loaded"), "{err}");
    }

    #[test]
    fn status_messages() {
        let keyed = provider(Some("sk-secret"));
        let keyless = provider(None);
        let openai_body = br#"{"error":{"message":"Incorrect API key provided: sk-secret","type":"invalid_request_error"}}"#;
        let m = keyed.redact(status_message(
            &keyed,
            "m",
            StatusCode::UNAUTHORIZED,
            openai_body,
            None,
            None,
        ));
        assert!(
            m.starts_with("the AI provider rejected the API key (401): set"),
            "{m}"
        );
        assert!(
            m.contains("LODGE_AI_API_KEY") && !m.contains("sk-secret"),
            "{m}"
        );
        let m = status_message(&keyless, "m", StatusCode::UNAUTHORIZED, b"", None, None);
        assert!(m.contains("none is configured"), "{m}");
        let m = status_message(
            &keyed,
            "gpt-x",
            StatusCode::NOT_FOUND,
            br#"{"error":"model 'gpt-x' not found"}"#,
            None,
            None,
        );
        assert!(
            m.contains("404") && m.contains("\"gpt-x\"") && m.contains("not found"),
            "{m}"
        );
        let m = status_message(
            &keyed,
            "m",
            StatusCode::TOO_MANY_REQUESTS,
            b"",
            Some("7"),
            None,
        );
        assert!(
            m.starts_with("rate limited by the AI provider (429)") && m.contains("7 s"),
            "{m}"
        );
        let m = status_message(
            &keyed,
            "m",
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"message":"boom"}}"#,
            None,
            None,
        );
        assert_eq!(
            m,
            "the AI provider failed with 500 Internal Server Error; the provider said: boom"
        );
        let m = status_message(
            &keyed,
            "m",
            StatusCode::BAD_GATEWAY,
            b"<html><body>nginx</body></html>",
            None,
            None,
        );
        assert_eq!(m, "the AI provider failed with 502 Bad Gateway");
        let m = status_message(
            &keyed,
            "m",
            StatusCode::MOVED_PERMANENTLY,
            b"",
            None,
            Some("https://x/v1/chat/completions"),
        );
        assert!(
            m.contains("redirected") && m.contains("https://x/v1"),
            "{m}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(" a\nb "), "a b");
        let long = "é".repeat(1000);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(q.ends_with('…'));
        assert_eq!(show_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(show_duration(Duration::from_millis(30_000)), "30 s");
        assert_eq!(show_duration(Duration::from_millis(1_500)), "1.5 s");
    }
}
