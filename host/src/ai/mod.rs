//! AI providers: streamed chat completions for objects.
//!
//! A guest asks for a completion with `ai.start-chat`; the runtime calls [`AiService::start`]
//! with the object's id and a [`StreamSink`] that turns each [`StreamEvent`] into an
//! `on-ai-event` for that object. Why it is built this way:
//!
//! - **The guest never sees the provider.** The base URL, the model and the API key live in
//!   the host's `[ai]` config ([`AiConfig`]); the key is read once from an environment
//!   variable (never from the config file, so it does not end up in backups or in the admin
//!   API) and is removed from every message before it leaves this module. Nothing here logs it.
//! - **One wire format, many providers.** OpenAI's streamed `/chat/completions` is spoken by
//!   OpenAI, Ollama, the llama.cpp server, vLLM and Gemini's compatible endpoint, so one
//!   client (`openai.rs`) covers them, with its own Server-Sent Events parser ([`sse`]) that
//!   gives the same events whatever the chunk boundaries of the network.
//! - **A stream is a task, not part of an event.** Objects handle one event at a time, so a
//!   completion that takes a minute cannot run inside one. `start` only checks the request and
//!   the limits, then the stream runs on its own tokio task and pushes events to the sink in
//!   order: deltas, then exactly one `Done` (with the full text, so a guest can store it
//!   without reassembling) or `Error`. The sink decides how events reach the object (its
//!   mailbox); when it reports nobody listens any more, the stream stops and the HTTP
//!   connection is dropped, which is how a provider learns to stop generating.
//! - **Every failure is a message a person can act on.** Refused connections, bad keys, rate
//!   limits, provider errors, malformed or truncated streams and timeouts all end in an
//!   `Error` whose text says what happened and what to change; a guest can show it as is.
//! - **Bounded.** Streams are limited for the whole host (`max_streams`) and per object
//!   (the class limit `max_ai_streams`, passed to each `start`); a refused start is `StartError::Busy`, not a queue. A slot is
//!   freed when the stream ends, before its final event is delivered (so a guest that starts
//!   a new stream on `Done` is not refused), or when it is cancelled.
//! - **Cancel means silence.** After [`StreamHandle::cancel`] (or [`AiService::cancel`])
//!   returns, the sink receives nothing more, not even a final event, and is dropped; this is
//!   also true when `cancel` is called from inside the sink's own `deliver` (the sink is then
//!   dropped as soon as that `deliver` returns).

mod openai;
pub use lodge_core::sse;

pub use lodge_core::config::AiConfig;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::Instrument as _;

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
    /// The stream failed: a message a person can act on. Holds no secret.
    Error(String),
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

/// Where a stream's events go; returns false when nobody listens any more (the stream then
/// stops, with no further event).
///
/// `deliver` is called from a tokio worker thread and must not block for long: hand the
/// event to a channel or mailbox.
pub trait StreamSink: Send + 'static {
    fn deliver(&mut self, event: StreamEvent) -> bool;
}

impl<F> StreamSink for F
where
    F: FnMut(StreamEvent) -> bool + Send + 'static,
{
    fn deliver(&mut self, event: StreamEvent) -> bool {
        self(event)
    }
}

/// Stream ids, unique for the process.
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The stream whose sink this thread is calling right now (0: none), so that a `cancel`
    /// from inside `deliver` does not wait for the lock it already holds.
    static DELIVERING: Cell<u64> = const { Cell::new(0) };
}

/// Starts and bounds AI streams. Cheap to clone: all clones share one provider, one HTTP
/// connection pool and one set of limits.
#[derive(Clone)]
pub struct AiService {
    inner: Arc<Inner>,
}

struct Inner {
    config: AiConfig,
    /// `Err`: why AI is unavailable, for `StartError::Unavailable`.
    provider: Result<Arc<Provider>, String>,
    client: Option<reqwest::Client>,
    state: Mutex<State>,
    tokens: Arc<TokenCounts>,
}

/// Tokens the provider reported (in its usage chunk) over all finished streams.
#[derive(Debug, Default)]
pub struct TokenCounts {
    pub prompt: AtomicU64,
    pub completion: AtomicU64,
}

#[derive(Default)]
struct State {
    total: usize,
    per_owner: HashMap<String, usize>,
    running: HashMap<u64, Arc<Shared>>,
}

/// What the task, the handle and the service share about one stream.
struct Shared {
    id: u64,
    owner: String,
    cancelled: AtomicBool,
    /// Its limit slot was given back.
    released: AtomicBool,
    /// Nothing more will be delivered.
    finished: AtomicBool,
    sink: Mutex<Option<Box<dyn StreamSink>>>,
    abort: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Locks, ignoring poisoning: every critical section here leaves consistent state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for AiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AiService")
            .field("configured", &self.is_configured())
            .field("model", &self.inner.config.model)
            .field("streams_in_flight", &self.streams_in_flight())
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
                state: Mutex::new(State::default()),
                tokens: Arc::default(),
            }),
        }
    }

    /// A provider is configured (and its configuration is valid).
    pub fn is_configured(&self) -> bool {
        self.inner.provider.is_ok()
    }

    /// Starts a stream owned by `owner` (an object id) on a tokio task. Events go to `sink`
    /// in order and end with exactly one `Done` or `Error`, unless the stream is cancelled
    /// or the sink stops listening first. `owner` may run at most `owner_limit` streams at
    /// once (its class's `max_ai_streams`). Must be called within a tokio runtime.
    pub fn start(
        &self,
        owner: &str,
        owner_limit: usize,
        request: CompletionRequest,
        sink: impl StreamSink,
    ) -> Result<StreamHandle, StartError> {
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
        if owner_limit == 0 {
            return Err(StartError::Unavailable(
                "this class may not start AI streams (its `max_ai_streams` limit is 0)".to_owned(),
            ));
        }
        validate(&request)?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(StartError::Unavailable(
                "internal error: AI streams must be started from within the host's async \
                 runtime"
                    .to_owned(),
            ));
        };

        let shared = {
            let mut state = lock(&inner.state);
            if state.total >= inner.config.max_streams {
                return Err(StartError::Busy(format!(
                    "the host is already running its maximum of {} AI streams (`[ai] \
                     max_streams`): try again when one has finished",
                    inner.config.max_streams
                )));
            }
            let mine = state.per_owner.get(owner).copied().unwrap_or(0);
            if mine >= owner_limit {
                return Err(StartError::Busy(format!(
                    "this object already has {mine} AI streams running, its maximum \
                     (`max_ai_streams`): wait for one to finish or cancel one"
                )));
            }
            let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::new(Shared {
                id,
                owner: owner.to_owned(),
                cancelled: AtomicBool::new(false),
                released: AtomicBool::new(false),
                finished: AtomicBool::new(false),
                sink: Mutex::new(Some(Box::new(sink))),
                abort: Mutex::new(None),
            });
            state.total += 1;
            *state.per_owner.entry(owner.to_owned()).or_insert(0) += 1;
            state.running.insert(id, Arc::clone(&shared));
            shared
        };

        let model = provider.model_for(&request).to_owned();
        let span =
            tracing::info_span!("ai_stream", owner = %owner, stream = shared.id, model = %model);
        let slot = Slot {
            inner: Arc::clone(inner),
            shared: Arc::clone(&shared),
        };
        let task = runtime.spawn(
            run_stream(client, provider, request, slot, self.inner.tokens.clone()).instrument(span),
        );
        *lock(&shared.abort) = Some(task.abort_handle());
        if shared.cancelled.load(Ordering::Acquire) {
            task.abort(); // cancelled (by id) between spawning and storing the abort handle
        }
        Ok(StreamHandle {
            inner: Arc::clone(inner),
            shared,
        })
    }

    /// Streams running on the whole host.
    pub fn streams_in_flight(&self) -> usize {
        lock(&self.inner.state).total
    }

    /// Prompt and completion tokens reported by the provider so far.
    pub fn tokens(&self) -> (u64, u64) {
        let t = &self.inner.tokens;
        (
            t.prompt.load(Ordering::Relaxed),
            t.completion.load(Ordering::Relaxed),
        )
    }

    /// Streams running for one object (while non-zero, the object must stay live).
    pub fn streams_in_flight_for(&self, owner: &str) -> usize {
        lock(&self.inner.state)
            .per_owner
            .get(owner)
            .copied()
            .unwrap_or(0)
    }

    /// Cancels stream `id` if it is running and belongs to `owner` (an object can only
    /// cancel its own streams). Returns whether it was running.
    pub fn cancel(&self, owner: &str, id: u64) -> bool {
        let shared = {
            let state = lock(&self.inner.state);
            match state.running.get(&id) {
                Some(shared) if shared.owner == owner => Arc::clone(shared),
                _ => return false,
            }
        };
        self.inner.cancel(&shared);
        true
    }

    /// Cancels every running stream of `owner` (e.g. when the object is deleted); returns
    /// how many there were.
    pub fn cancel_all(&self, owner: &str) -> usize {
        let streams: Vec<Arc<Shared>> = lock(&self.inner.state)
            .running
            .values()
            .filter(|s| s.owner == owner)
            .cloned()
            .collect();
        for shared in &streams {
            self.inner.cancel(shared);
        }
        streams.len()
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

impl Inner {
    /// Gives back the stream's limit slot (once).
    fn release(&self, shared: &Shared) {
        if shared.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut state = lock(&self.state);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_owner.get_mut(&shared.owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_owner.remove(&shared.owner);
            }
        }
        state.running.remove(&shared.id);
    }

    fn cancel(&self, shared: &Shared) {
        if shared.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(owner = %shared.owner, stream = shared.id, "AI stream cancelled");
        let sink = if DELIVERING.with(Cell::get) != shared.id {
            // Waits for a delivery in progress on another thread; then nothing more is sent.
            let mut sink = lock(&shared.sink);
            self.release(shared);
            shared.finished.store(true, Ordering::Release);
            sink.take()
        } else {
            // Called from this stream's own `deliver`: the task drops the sink after it.
            self.release(shared);
            shared.finished.store(true, Ordering::Release);
            None
        };
        if let Some(abort) = lock(&shared.abort).take() {
            abort.abort();
        }
        // Dropped last and outside the lock, so whoever sees the sink go (e.g. a channel
        // closing) also sees the stream finished and its slot free.
        drop(sink);
    }
}

/// The running task's hold on its limit slot; dropping it (the task ended or was aborted)
/// gives the slot back.
struct Slot {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.release(&self.shared);
        self.shared.finished.store(true, Ordering::Release);
        // The sink is dropped with its stream (unless `deliver` is running on another
        // thread right now, which only happens while this task is alive).
        let sink = match self.shared.sink.try_lock() {
            Ok(mut sink) => sink.take(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        // Dropped outside the lock: a sink's `Drop` may call back into the service.
        drop(sink);
    }
}

/// Clears [`DELIVERING`] even if `deliver` panics.
struct DeliveringGuard;

impl Drop for DeliveringGuard {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.set(0));
    }
}

/// Hands `event` to the sink unless the stream was cancelled; false: stop the stream.
fn deliver(shared: &Shared, event: StreamEvent) -> bool {
    if shared.cancelled.load(Ordering::Acquire) {
        return false;
    }
    let mut sink = lock(&shared.sink);
    if shared.cancelled.load(Ordering::Acquire) {
        return false;
    }
    let Some(target) = sink.as_mut() else {
        return false;
    };
    let listening = {
        DELIVERING.with(|d| d.set(shared.id));
        let _guard = DeliveringGuard;
        target.deliver(event)
    };
    // A sink that stopped listening is dropped when the task ends, after its slot is free.
    drop(sink);
    listening && !shared.cancelled.load(Ordering::Acquire)
}

async fn run_stream(
    client: reqwest::Client,
    provider: Arc<Provider>,
    request: CompletionRequest,
    slot: Slot,
    tokens: Arc<TokenCounts>,
) {
    let shared = Arc::clone(&slot.shared);
    let started = tokio::time::Instant::now();
    tracing::debug!(messages = request.messages.len(), "AI stream starting");
    let mut deltas = 0usize;
    let mut on_delta = |text: String| {
        deltas += 1;
        deliver(&shared, StreamEvent::Delta(text))
    };
    let outcome = openai::stream_completion(&client, &provider, &request, &mut on_delta).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let last = match outcome {
        Outcome::Done { text, usage } => {
            if let Some(u) = usage {
                tokens.prompt.fetch_add(u.prompt_tokens, Ordering::Relaxed);
                tokens
                    .completion
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
        Outcome::Failed(message) => {
            tracing::warn!(elapsed_ms, deltas, "AI stream failed: {message}");
            Some(StreamEvent::Error(message))
        }
        Outcome::Abandoned => {
            tracing::debug!(elapsed_ms, deltas, "AI stream stopped: nobody listens");
            None
        }
    };
    // Free the slot first, so that a guest reacting to the final event can start another.
    slot.inner.release(&slot.shared);
    if let Some(event) = last {
        deliver(&shared, event);
    }
    drop(slot);
}

/// A started stream. Dropping the handle does not stop the stream.
pub struct StreamHandle {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
}

impl fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamHandle")
            .field("id", &self.shared.id)
            .field("owner", &self.shared.owner)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl StreamHandle {
    /// The stream's id, unique for the process (the first is 1).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The object that started it.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Stops the stream: once this returns, the sink gets no more events (not even a final
    /// one) and the stream's limit slot is free. Idempotent; a no-op after the stream ended.
    pub fn cancel(&self) {
        self.inner.cancel(&self.shared);
    }

    /// The stream has delivered its final event, stopped because nobody listened, or was
    /// cancelled.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
