//! AI providers: streamed chat completions, as a thin client. The runtime owns everything
//! about a stream's life (its id, the limits, cancellation, delivery to the object); this
//! module only checks a request, talks to the provider and turns its answer into events.
//! Why it is built this way:
//!
//! - **The guest never sees the provider.** The base URL, the model and the API key live in
//!   the host's `[ai]` config ([`AiConfig`]); the key is read once from an environment
//!   variable (never from the config file, so it does not end up in backups or in the admin
//!   API) and is removed from every message before it leaves this module. Nothing here logs it.
//! - **One wire format, many providers.** OpenAI's streamed `/chat/completions` is spoken by
//!   OpenAI, Ollama, the llama.cpp server, vLLM and Gemini's compatible endpoint, so one
//!   client (`openai.rs`) covers them, with its own Server-Sent Events parser ([`sse`]) that
//!   gives the same events whatever the chunk boundaries of the network.
//! - **A completion is a future.** [`AiService::prepare`] checks the request (and that a
//!   provider is configured) without any I/O; [`Completion::run`] then streams: each delta
//!   goes to the caller's [`Deltas`], which may make the stream wait (a full mailbox slows the
//!   provider's connection down instead of buffering) or stop it (nobody listens); the run
//!   returns exactly one final event, `Done` with the full text or `Error`. Dropping the
//!   future drops the HTTP connection, which is how a provider learns to stop generating:
//!   cancelling is aborting the task that runs it.
//! - **Every failure is a message a person can act on.** Refused connections, bad keys, rate
//!   limits, provider errors, malformed or truncated streams and timeouts all end in an
//!   `Error` whose text says what happened and what to change; a guest can show it as is.
//!
//! Trade-off: with limits and ids in the runtime, this module cannot bound streams by
//! itself; anything else that wants completions must go through the runtime too.

mod openai;
pub use lodge_core::sse;

pub use lodge_core::config::AiConfig;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openai::{Outcome, Provider};

/// One message of the conversation: role is `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A streamed chat completion, as a guest asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub messages: Vec<ChatMessage>,
    /// The configured default model when `None` (or blank).
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// What a stream delivers to its sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of the reply (never empty).
    Delta(String),
    /// The reply is complete: the full text (all deltas joined).
    Done(String),
    /// The stream failed.
    Error(Failure),
}

/// Why a stream failed: a kind, for what end users are told, and a message for the
/// operator, which says what to change (it may name the provider's address and the host's
/// config keys, so it belongs in the log) and holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// What kind of failure, in terms an end user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection (refused, DNS, TLS).
    Unreachable,
    /// The provider refused the host's key (401, 403).
    Credentials,
    /// The provider does not know the model or the address (404, redirects).
    Configuration,
    /// 429.
    RateLimited,
    /// The provider failed (5xx, an error mid-stream, an HTML page).
    ProviderError,
    /// No first token, or a pause, longer than the host allows.
    Timeout,
    /// The reply passed the host's size limit.
    TooLong,
    /// The stream broke off or could not be read.
    Broken,
}

impl Failure {
    pub fn new(kind: FailureKind, message: String) -> Failure {
        Failure { kind, message }
    }
}

impl From<String> for Failure {
    /// A stream that broke off or could not be read.
    fn from(message: String) -> Failure {
        Failure::new(FailureKind::Broken, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FailureKind {
    /// The kind of an HTTP error status.
    pub fn from_status(status: reqwest::StatusCode) -> FailureKind {
        match status.as_u16() {
            401 | 403 => FailureKind::Credentials,
            404 | 300..=399 => FailureKind::Configuration,
            429 => FailureKind::RateLimited,
            _ => FailureKind::ProviderError,
        }
    }

    /// What an end user is told: what happened and what they can do, nothing about the
    /// host's configuration.
    pub fn public_text(self) -> &'static str {
        match self {
            FailureKind::Unreachable => {
                "the AI service cannot be reached right now: try again later"
            }
            FailureKind::Credentials | FailureKind::Configuration => {
                "the AI service is not set up correctly on this server: tell its operator"
            }
            FailureKind::RateLimited => "the AI service is busy: try again in a moment",
            FailureKind::ProviderError => "the AI service failed while answering: try again",
            FailureKind::Timeout => "the AI service took too long to answer: try again",
            FailureKind::TooLong => {
                "the reply grew too long and was stopped: ask for something shorter"
            }
            FailureKind::Broken => "the AI reply broke off: try again",
        }
    }
}

/// Why a stream could not be started (mirrors `ai-error` in `wit/ai.wit`).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// No provider is configured, or AI is switched off; the message says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// Too many streams are running for this object or for the host.
    #[error("{0}")]
    Busy(String),
    /// The request makes no sense (e.g. no messages).
    #[error("{0}")]
    Invalid(String),
}

/// Where a completion's deltas go.
pub trait Deltas: Send {
    /// Takes the next piece of the reply (never empty). May wait (backpressure); false
    /// means nobody listens any more and the stream stops.
    fn deliver(&mut self, text: String) -> impl Future<Output = bool> + Send;
}

/// The configured provider. Cheap to clone: all clones share one HTTP connection pool.
#[derive(Clone)]
pub struct AiService {
    inner: Arc<Inner>,
}

struct Inner {
    config: AiConfig,
    /// `Err`: why AI is unavailable, for `StartError::Unavailable`.
    provider: Result<Arc<Provider>, String>,
    client: Option<reqwest::Client>,
    tokens: Arc<TokenCounts>,
}

/// Tokens the provider reported (in its usage chunk) over all finished streams.
#[derive(Debug, Default)]
pub struct TokenCounts {
    pub prompt: AtomicU64,
    pub completion: AtomicU64,
}

impl fmt::Debug for AiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AiService")
            .field("configured", &self.is_configured())
            .field("model", &self.inner.config.model)
            .finish()
    }
}

fn how_to_configure() -> String {
    "no AI provider is configured on this lodge host: set `base_url` in the `[ai]` section of \
     its config (e.g. \"https://api.openai.com/v1\", or \"http://127.0.0.1:11434/v1\" for a \
     local Ollama), `model` (e.g. \"gpt-4o-mini\"), and put the API key in the environment \
     variable named by `api_key_env` (default LODGE_AI_API_KEY)"
        .to_owned()
}

impl AiService {
    /// A service for `config`, reading the API key once from the environment variable
    /// `config.api_key_env`.
    pub fn new(config: AiConfig) -> AiService {
        let key = std::env::var(&config.api_key_env).ok();
        AiService::with_key(config, key)
    }

    /// A service for `config` with the given key (for tests; the environment is not read).
    pub fn with_key(config: AiConfig, key: Option<String>) -> AiService {
        let provider = match config.base_url.as_deref().map(str::trim) {
            None | Some("") => Err(how_to_configure()),
            Some(base_url) => Provider::new(
                base_url,
                key,
                &config.api_key_env,
                &config.model,
                config.first_token_timeout_ms,
                config.idle_timeout_ms,
            )
            .map(Arc::new),
        };
        let (provider, client) = match provider {
            Ok(provider) => match build_client() {
                Ok(client) => (Ok(provider), Some(client)),
                Err(e) => (
                    Err(format!(
                        "the HTTP client for the AI provider could not start: {e}"
                    )),
                    None,
                ),
            },
            Err(e) => (Err(e), None),
        };
        match &provider {
            Ok(p) => tracing::info!(
                provider = %p.shown_base,
                model = %p.default_model,
                key = if p.key.is_some() { "set" } else { "not set" },
                "AI provider configured"
            ),
            Err(why) if config.base_url.is_some() => {
                tracing::warn!("AI provider unavailable: {why}")
            }
            Err(_) => tracing::debug!("no AI provider configured"),
        }
        AiService {
            inner: Arc::new(Inner {
                config,
                provider,
                client,
                tokens: Arc::default(),
            }),
        }
    }

    /// A provider is configured (and its configuration is valid).
    pub fn is_configured(&self) -> bool {
        self.inner.provider.is_ok()
    }

    /// Streams the host may run at once (`[ai] max_streams`); the runtime enforces it.
    pub fn max_streams(&self) -> usize {
        self.inner.config.max_streams
    }

    /// Checks that `request` can be asked for, without any I/O: a provider is configured,
    /// AI is not switched off, the request makes sense.
    pub fn prepare(&self, request: CompletionRequest) -> Result<Completion, StartError> {
        let inner = &self.inner;
        let provider = match &inner.provider {
            Ok(provider) => Arc::clone(provider),
            Err(why) => return Err(StartError::Unavailable(why.clone())),
        };
        let Some(client) = inner.client.clone() else {
            return Err(StartError::Unavailable(how_to_configure()));
        };
        if inner.config.max_streams == 0 {
            return Err(StartError::Unavailable(
                "AI streams are switched off on this lodge host (`[ai] max_streams` is 0)"
                    .to_owned(),
            ));
        }
        validate(&request)?;
        Ok(Completion {
            client,
            provider,
            request,
            tokens: inner.tokens.clone(),
        })
    }

    /// Prompt and completion tokens reported by the provider so far.
    pub fn tokens(&self) -> (u64, u64) {
        let t = &self.inner.tokens;
        (
            t.prompt.load(Ordering::Relaxed),
            t.completion.load(Ordering::Relaxed),
        )
    }
}

fn build_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("lodge/", env!("CARGO_PKG_VERSION")))
        // A redirected POST would silently turn into a GET: report it instead.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

fn validate(request: &CompletionRequest) -> Result<(), StartError> {
    if request.messages.is_empty() {
        return Err(StartError::Invalid(
            "a completion request needs at least one message".to_owned(),
        ));
    }
    if let Some(i) = request
        .messages
        .iter()
        .position(|m| m.role.trim().is_empty())
    {
        return Err(StartError::Invalid(format!(
            "message {i} has an empty role: use \"system\", \"user\" or \"assistant\""
        )));
    }
    if let Some(t) = request.temperature
        && (!t.is_finite() || t < 0.0)
    {
        return Err(StartError::Invalid(format!(
            "temperature must be a number of at least 0, not {t}"
        )));
    }
    if request.max_tokens == Some(0) {
        return Err(StartError::Invalid(
            "max-tokens must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

/// A checked completion request, ready to run.
pub struct Completion {
    client: reqwest::Client,
    provider: Arc<Provider>,
    request: CompletionRequest,
    tokens: Arc<TokenCounts>,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("model", &self.model())
            .field("messages", &self.request.messages.len())
            .finish()
    }
}

impl Completion {
    /// The model it will ask.
    pub fn model(&self) -> &str {
        self.provider.model_for(&self.request)
    }

    /// Streams the completion: deltas go to `deltas` in order; returns the final event
    /// (`Done` or `Error`), or `None` when `deltas` stopped listening. Dropping the future
    /// drops the provider's connection.
    pub async fn run(self, deltas: &mut impl Deltas) -> Option<StreamEvent> {
        let started = tokio::time::Instant::now();
        tracing::debug!(messages = self.request.messages.len(), "AI stream starting");
        let mut counted = Counted { deltas, count: 0 };
        let outcome =
            openai::stream_completion(&self.client, &self.provider, &self.request, &mut counted)
                .await;
        let deltas = counted.count;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Done { text, usage } => {
                if let Some(u) = usage {
                    let t = &self.tokens;
                    t.prompt.fetch_add(u.prompt_tokens, Ordering::Relaxed);
                    t.completion
                        .fetch_add(u.completion_tokens, Ordering::Relaxed);
                }
                tracing::info!(
                    elapsed_ms,
                    deltas,
                    chars = text.chars().count(),
                    prompt_tokens = usage.map(|u| u.prompt_tokens),
                    completion_tokens = usage.map(|u| u.completion_tokens),
                    "AI stream done"
                );
                Some(StreamEvent::Done(text))
            }
            Outcome::Failed(failure) => {
                // The runtime logs it for the operator, with the reference users are given.
                tracing::debug!(elapsed_ms, deltas, kind = ?failure.kind, "AI stream failed: {failure}");
                Some(StreamEvent::Error(failure))
            }
            Outcome::Abandoned => {
                tracing::debug!(elapsed_ms, deltas, "AI stream stopped: nobody listens");
                None
            }
        }
    }
}

/// Counts the deltas handed on, for the log line at the end.
struct Counted<'a, D> {
    deltas: &'a mut D,
    count: usize,
}

impl<D: Deltas> Deltas for Counted<'_, D> {
    async fn deliver(&mut self, text: String) -> bool {
        self.count += 1;
        self.deltas.deliver(text).await
    }
}

#[cfg(test)]
mod tests;
