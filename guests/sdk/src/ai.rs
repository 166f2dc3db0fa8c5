//! Streamed chat completions from the operator's AI provider. Results arrive later as
//! [`crate::Object::on_ai_event`] events.

use crate::bindings::lodge::object::ai as raw;
pub use raw::{AiError, ChatMessage, CompletionRequest};

/// Identifies one stream in `on_ai_event`.
pub type StreamId = u64;

impl ChatMessage {
    /// A message with a role (`system`, `user`, `assistant`).
    pub fn new(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Starts a streamed completion with the provider's default model.
pub fn start_chat(messages: Vec<ChatMessage>) -> Result<StreamId, AiError> {
    raw::start_chat(&CompletionRequest {
        messages,
        model: None,
        temperature: None,
        max_tokens: None,
    })
}

/// Starts a streamed completion with every option.
pub fn start(request: &CompletionRequest) -> Result<StreamId, AiError> {
    raw::start_chat(request)
}

/// Stops a stream; no more events arrive for it.
pub fn cancel(stream: StreamId) {
    raw::cancel(stream)
}
