//! The AI service and the OpenAI-compatible client against the fake provider of the
//! end-to-end tests (`tests/support/fake_ai.rs`), one test per failure mode.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::fake_ai::{FakeAi, PARTIAL_DELTAS, closed_port_url, echo_reply};

const KEY: &str = "sk-test-0123456789abcdef";

fn config(base_url: &str) -> AiConfig {
    AiConfig {
        base_url: Some(base_url.to_owned()),
        model: "fake-model".to_owned(),
        first_token_timeout_ms: 5_000,
        idle_timeout_ms: 5_000,
        ..AiConfig::default()
    }
}

fn service(base_url: &str) -> AiService {
    AiService::with_key(config(base_url), Some(KEY.to_owned()))
}

fn user(text: &str) -> CompletionRequest {
    CompletionRequest {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You are a test.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: text.into(),
            },
        ],
        model: None,
        temperature: None,
        max_tokens: None,
    }
}

/// Collects deltas, like the runtime's mailbox; stops listening after `limit` of them.
#[derive(Default)]
struct Collect {
    deltas: Vec<String>,
    limit: Option<usize>,
}

impl Deltas for Collect {
    async fn deliver(&mut self, text: String) -> bool {
        assert!(!text.is_empty(), "empty delta");
        self.deltas.push(text);
        self.limit.is_none_or(|l| self.deltas.len() < l)
    }
}

/// Runs one stream to its end.
async fn run(service: &AiService, request: CompletionRequest) -> (Vec<String>, StreamEvent) {
    let completion = service.prepare(request).expect("stream starts");
    let mut collect = Collect::default();
    let last = tokio::time::timeout(Duration::from_secs(20), completion.run(&mut collect))
        .await
        .expect("the stream ended in time")
        .expect("the stream ended with Done or Error");
    (collect.deltas, last)
}

/// Runs one stream that must fail; returns its message and the deltas before it.
async fn run_error(service: &AiService, request: CompletionRequest) -> (Vec<String>, String) {
    match run(service, request).await {
        (deltas, StreamEvent::Error(failure)) => {
            let message = failure.message;
            assert!(!message.contains(KEY), "the key leaked: {message}");
            (deltas, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn streams_the_echo_reply() {
    let fake = FakeAi::start().await;
    let service = service(&fake.base_url());
    let (deltas, last) = run(&service, user("Hello, wörld 👋")).await;
    let expected = echo_reply("Hello, wörld 👋", 2);
    assert!(deltas.len() >= 5, "several deltas: {deltas:?}");
    assert_eq!(deltas.concat(), expected);
    assert_eq!(last, StreamEvent::Done(expected));

    let requests = fake.wait_for_requests(1).await.unwrap();
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.body,
        serde_json::json!({
            "model": "fake-model",
            "messages": [
                {"role": "system", "content": "You are a test."},
                {"role": "user", "content": "Hello, wörld 👋"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    );
}

#[tokio::test]
async fn sends_model_temperature_and_max_tokens() {
    let fake = FakeAi::start().await;
    let service = service(&format!("{}/", fake.base_url()));
    let request = CompletionRequest {
        model: Some("other-model".into()),
        temperature: Some(0.2),
        max_tokens: Some(64),
        ..user("hi")
    };
    let (_, last) = run(&service, request).await;
    assert_eq!(last, StreamEvent::Done(echo_reply("hi", 2)));
    let body = &fake.requests()[0].body;
    assert_eq!(body["model"], "other-model");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 64);
}

#[tokio::test]
async fn slow_stream() {
    let fake = FakeAi::start().await;
    let service = service(&fake.base_url());
    let started = tokio::time::Instant::now();
    let (deltas, last) = run(&service, user("[[slow]] take your time")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let expected = echo_reply("[[slow]] take your time", 2);
    assert_eq!(deltas.concat(), expected);
    assert_eq!(last, StreamEvent::Done(expected));
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let fake = FakeAi::start().await;
    let service = AiService::with_key(config(&fake.base_url()), None);
    let (_, last) = run(&service, user("hi")).await;
    assert!(matches!(last, StreamEvent::Done(_)));
    assert_eq!(fake.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn wrong_key_is_rejected_without_showing_it() {
    let fake = FakeAi::start().await;
    fake.require_key(Some("sk-the-right-one".into()));
    // The fake echoes the wrong key in its message, as some providers do.
    let (_, message) = run_error(&service(&fake.base_url()), user("hi")).await;
    assert!(
        message.starts_with("the AI provider rejected the API key (401): set a valid key in the environment variable LODGE_AI_API_KEY"),
        "{message}"
    );
    assert!(message.contains("[redacted]"), "{message}");

    let keyless = AiService::with_key(config(&fake.base_url()), None);
    let (_, message) = run_error(&keyless, user("hi")).await;
    assert!(
        message.contains("(401)") && message.contains("none is configured"),
        "{message}"
    );

    let right = AiService::with_key(config(&fake.base_url()), Some("sk-the-right-one".into()));
    assert!(matches!(
        run(&right, user("hi")).await.1,
        StreamEvent::Done(_)
    ));
}

#[tokio::test]
async fn status_401() {
    let fake = FakeAi::start().await;
    let (deltas, message) = run_error(&service(&fake.base_url()), user("[[401]]")).await;
    assert!(deltas.is_empty());
    assert!(
        message.starts_with("the AI provider rejected the API key (401): set"),
        "{message}"
    );
    assert!(message.contains("Incorrect API key provided"), "{message}");
}

#[tokio::test]
async fn status_404_model() {
    let fake = FakeAi::start().await;
    let (_, message) = run_error(&service(&fake.base_url()), user("[[404]]")).await;
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("\"fake-model\""), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn status_404_wrong_base_url() {
    let fake = FakeAi::start().await;
    let base = fake.base_url().replace("/v1", "/api");
    let (_, message) = run_error(&service(&base), user("hi")).await;
    assert!(
        message.contains("404") && message.contains("base_url"),
        "{message}"
    );
    assert!(
        message.contains("Invalid URL (POST /api/chat/completions)"),
        "{message}"
    );
}

#[tokio::test]
async fn status_429() {
    let fake = FakeAi::start().await;
    let (_, message) = run_error(&service(&fake.base_url()), user("[[429]]")).await;
    assert!(
        message.starts_with("rate limited by the AI provider (429)"),
        "{message}"
    );
    assert!(
        message.contains("wait 1 s") && message.contains("Rate limit reached"),
        "{message}"
    );
}

#[tokio::test]
async fn status_500() {
    let fake = FakeAi::start().await;
    let (_, message) = run_error(&service(&fake.base_url()), user("[[500]]")).await;
    assert_eq!(
        message,
        "the AI provider failed with 500 Internal Server Error; the provider said: The server \
         had an error while processing your request. Sorry about that!"
    );
}

#[tokio::test]
async fn malformed_chunk() {
    let fake = FakeAi::start().await;
    let (deltas, message) = run_error(&service(&fake.base_url()), user("[[malformed]]")).await;
    assert_eq!(deltas, [PARTIAL_DELTAS[0]]);
    assert!(
        message.starts_with("the AI provider sent a malformed stream chunk"),
        "{message}"
    );
}

#[tokio::test]
async fn dropped_connection() {
    let fake = FakeAi::start().await;
    let (deltas, message) = run_error(&service(&fake.base_url()), user("[[drop]]")).await;
    assert_eq!(deltas.concat(), PARTIAL_DELTAS.concat());
    assert!(
        message.starts_with("the AI provider closed the stream midway"),
        "{message}"
    );
}

#[tokio::test]
async fn stream_ends_without_done() {
    let fake = FakeAi::start().await;
    let (deltas, message) = run_error(&service(&fake.base_url()), user("[[truncate]]")).await;
    assert_eq!(deltas.concat(), PARTIAL_DELTAS.concat());
    assert!(
        message.starts_with("the AI provider closed the stream midway (it ended without [DONE])"),
        "{message}"
    );
}

#[tokio::test]
async fn error_chunk() {
    let fake = FakeAi::start().await;
    let (deltas, message) = run_error(&service(&fake.base_url()), user("[[error-chunk]]")).await;
    assert_eq!(deltas, [PARTIAL_DELTAS[0]]);
    assert_eq!(
        message,
        "the AI provider reported an error mid-stream: The model is overloaded. Please try \
         again later."
    );
}

#[tokio::test]
async fn first_token_timeout() {
    let fake = FakeAi::start().await;
    let service = AiService::with_key(
        AiConfig {
            first_token_timeout_ms: 300,
            ..config(&fake.base_url())
        },
        None,
    );
    let started = tokio::time::Instant::now();
    let (deltas, message) = run_error(&service, user("[[stall]]")).await;
    let elapsed = started.elapsed();
    assert!(deltas.is_empty());
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5));
    assert!(
        message.contains("sent no reply within 300 ms (`[ai] first_token_timeout_ms`)"),
        "{message}"
    );
}

#[tokio::test]
async fn idle_timeout() {
    let fake = FakeAi::start().await;
    let service = AiService::with_key(
        AiConfig {
            idle_timeout_ms: 300,
            ..config(&fake.base_url())
        },
        None,
    );
    let (deltas, message) = run_error(&service, user("[[idle]]")).await;
    assert_eq!(deltas.concat(), PARTIAL_DELTAS.concat());
    assert!(
        message.contains("stopped sending mid-reply: nothing for 300 ms"),
        "{message}"
    );
}

#[tokio::test]
async fn connection_refused() {
    let base = closed_port_url();
    let (_, message) = run_error(&service(&base), user("hi")).await;
    assert_eq!(
        message,
        format!(
            "could not connect to the AI provider at {base}: connection refused — is it running?"
        )
    );
}

/// The rustls path: `https://` to a server that speaks plain HTTP fails its handshake.
#[tokio::test]
async fn tls_handshake_failure() {
    let fake = FakeAi::start().await;
    let base = fake.base_url().replace("http://", "https://");
    let (_, message) = run_error(&service(&base), user("hi")).await;
    assert!(
        message.starts_with(&format!("could not connect to the AI provider at {base}: ")),
        "{message}"
    );
    assert!(message.contains("base_url"), "{message}");
}

#[tokio::test]
async fn whole_json_answer_is_accepted() {
    let fake = FakeAi::start().await;
    let (deltas, last) = run(&service(&fake.base_url()), user("[[json]]")).await;
    let expected = echo_reply("[[json]]", 2);
    assert_eq!(deltas, std::slice::from_ref(&expected));
    assert_eq!(last, StreamEvent::Done(expected));
}

#[tokio::test]
async fn html_page_is_explained() {
    let fake = FakeAi::start().await;
    let (_, message) = run_error(&service(&fake.base_url()), user("[[html]]")).await;
    assert!(
        message.contains("HTML page") && message.contains("base_url"),
        "{message}"
    );
}

#[tokio::test]
async fn unconfigured_and_invalid() {
    let service = AiService::with_key(AiConfig::default(), Some(KEY.into()));
    assert!(!service.is_configured());
    let Err(StartError::Unavailable(message)) = service.prepare(user("hi")) else {
        panic!("unconfigured service prepared a stream");
    };
    for needle in ["base_url", "model", "api_key_env", "[ai]"] {
        assert!(message.contains(needle), "{message}");
    }

    let service = AiService::with_key(config("ftp://example/v1"), None);
    assert!(!service.is_configured());
    assert!(matches!(
        service.prepare(user("hi")),
        Err(StartError::Unavailable(m)) if m.contains("http://")
    ));

    let service = AiService::with_key(config(&closed_port_url()), None);
    assert!(service.is_configured());
    let empty = CompletionRequest {
        messages: vec![],
        ..user("hi")
    };
    assert!(matches!(
        service.prepare(empty),
        Err(StartError::Invalid(_))
    ));
    let nan = CompletionRequest {
        temperature: Some(f32::NAN),
        ..user("hi")
    };
    assert!(matches!(service.prepare(nan), Err(StartError::Invalid(_))));

    let off = AiService::with_key(
        AiConfig {
            max_streams: 0,
            ..config(&closed_port_url())
        },
        None,
    );
    assert!(matches!(
        off.prepare(user("hi")),
        Err(StartError::Unavailable(m)) if m.contains("switched off")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_stops_stops_the_stream() {
    let fake = FakeAi::start().await;
    let service = service(&fake.base_url());
    let mut collect = Collect {
        limit: Some(2),
        ..Collect::default()
    };
    let completion = service.prepare(user("[[slow]] hi")).unwrap();
    let last = tokio::time::timeout(Duration::from_secs(10), completion.run(&mut collect))
        .await
        .unwrap();
    assert_eq!(last, None, "no final event once nobody listens");
    assert_eq!(collect.deltas.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_run_concurrently() {
    let fake = FakeAi::start().await;
    let service = service(&fake.base_url());
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move { run(&service, user(&format!("[[slow]] number {i}"))).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (_, last) = task.await.unwrap();
        assert_eq!(
            last,
            StreamEvent::Done(echo_reply(&format!("[[slow]] number {i}"), 2))
        );
    }
    // Eight slow streams of ~1 s each, run side by side.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line, at every level and from every crate (reqwest and hyper included), is
/// free of the key, and the stream's lines carry the owner.
///
/// tracing caches per call site whether anyone listens, which a subscriber installed for one
/// test races with the tests on other threads; so the check runs in a child process that
/// runs only `key_log_child`, with a global subscriber.
#[test]
fn the_key_never_reaches_the_logs() {
    let path = module_path!();
    let test = format!(
        "{}::key_log_child",
        path.split_once("::").map_or(path, |(_, rest)| rest)
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(KEY_LOG_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed:\n{stdout}\n{stderr}"
    );
}

const KEY_LOG_CHILD: &str = "LODGE_AI_KEY_LOG_CHILD";

#[tokio::test]
async fn key_log_child() {
    if std::env::var_os(KEY_LOG_CHILD).is_none() {
        return; // only meaningful alone in its process, see the_key_never_reaches_the_logs
    }
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let fake = FakeAi::start().await;
    fake.require_key(Some("sk-the-right-one".into()));
    let service = service(&fake.base_url());
    let (_, message) = run_error(&service, user("hi")).await;
    assert!(message.contains("(401)"));
    let right = AiService::with_key(config(&fake.base_url()), Some("sk-the-right-one".into()));
    assert!(matches!(
        run(&right, user("hi")).await.1,
        StreamEvent::Done(_)
    ));
    let closed = AiService::with_key(config(&closed_port_url()), Some(KEY.into()));
    run_error(&closed, user("hi")).await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logs.contains("AI stream done"), "{logs}");
    assert!(logs.contains("AI stream failed"), "{logs}");
    assert!(logs.contains("hyper"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!logs.contains("sk-the-right-one"), "{logs}");
}

#[test]
fn config_defaults_and_unknown_keys() {
    let config: AiConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, AiConfig::default());
    assert_eq!(config.base_url, None);
    assert_eq!(config.api_key_env, "LODGE_AI_API_KEY");
    assert_eq!(config.model, "gpt-4o-mini");
    assert_eq!(config.first_token_timeout_ms, 30_000);
    assert_eq!(config.idle_timeout_ms, 60_000);
    assert_eq!(config.max_streams, 64);
    let config: AiConfig =
        serde_json::from_str(r#"{"base_url":"http://127.0.0.1:11434/v1","model":"llama3.2"}"#)
            .unwrap();
    assert_eq!(
        config.base_url.as_deref(),
        Some("http://127.0.0.1:11434/v1")
    );
    assert_eq!(config.max_streams, 64);
    assert!(serde_json::from_str::<AiConfig>(r#"{"api_key":"sk-x"}"#).is_err());
}

#[test]
fn the_key_comes_from_the_named_variable() {
    let config = AiConfig {
        api_key_env: "LODGE_AI_TEST_KEY_THAT_IS_NOT_SET".into(),
        ..config("http://127.0.0.1:9/v1")
    };
    let service = AiService::new(config);
    assert!(service.is_configured());
    assert!(!format!("{service:?}").contains("sk-"));
}

/// The kind of failure a directive of the fake provider ends in.
async fn kind_of(service: &AiService, text: &str) -> FailureKind {
    match run(service, user(text)).await {
        (_, StreamEvent::Error(failure)) => failure.kind,
        other => panic!("{text}: expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn failures_have_a_kind_end_users_can_be_told() {
    let fake = FakeAi::start().await;
    let quick = AiService::with_key(
        AiConfig {
            first_token_timeout_ms: 300,
            ..config(&fake.base_url())
        },
        Some(KEY.into()),
    );
    fake.require_key(Some("sk-the-right-one".into()));
    assert_eq!(kind_of(&quick, "hi").await, FailureKind::Credentials);
    fake.require_key(None);
    for (directive, kind) in [
        ("[[429]]", FailureKind::RateLimited),
        ("[[500]]", FailureKind::ProviderError),
        ("[[404]]", FailureKind::Configuration),
        ("[[stall]]", FailureKind::Timeout),
        ("[[drop]]", FailureKind::Broken),
        ("[[malformed]]", FailureKind::Broken),
        ("[[error-chunk]]", FailureKind::ProviderError),
        ("[[html]]", FailureKind::ProviderError),
    ] {
        assert_eq!(kind_of(&quick, directive).await, kind, "{directive}");
    }
    let closed = AiService::with_key(config(&closed_port_url()), None);
    assert_eq!(kind_of(&closed, "hi").await, FailureKind::Unreachable);
    // What users are told names no address and no config key.
    for kind in [
        FailureKind::Unreachable,
        FailureKind::Credentials,
        FailureKind::Timeout,
    ] {
        let text = kind.public_text();
        assert!(!text.contains("http") && !text.contains('['), "{text}");
    }
}
