//! `lodge:object/ai`: a stream id is handed out now; the provider is called only once
//! the event's writes are durable (the start is an event output like a sent frame).

use std::sync::atomic::Ordering;

use super::lodge::object::ai::{AiError, CompletionRequest, Host};
use super::{HostState, Output};
use crate::ai;

impl Host for HostState {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn start_chat(
        &mut self,
        request: CompletionRequest,
    ) -> wasmtime::Result<Result<u64, AiError>> {
        let service = &self.object.ai;
        if !service.is_configured() {
            return Ok(Err(AiError::Unavailable(
                "no AI provider is configured: set [ai] base_url (and model, api_key_env) in the lodge config".into(),
            )));
        }
        if request.messages.is_empty() {
            return Ok(Err(AiError::Invalid(
                "a completion needs at least one message".into(),
            )));
        }
        let pending = self
            .event
            .outputs
            .iter()
            .filter(|o| matches!(o, Output::StartAi(..)))
            .count();
        let running = self.object.streams().len();
        let per_object = self.object.limits.max_ai_streams;
        if per_object == 0 {
            return Ok(Err(AiError::Unavailable(
                "this class may not start AI streams (its `max_ai_streams` limit is 0)".into(),
            )));
        }
        if running + pending >= per_object {
            let detail = format!(
                "this object already has {per_object} AI streams running, its maximum \
                 (`max_ai_streams`); wait for one to finish"
            );
            self.refused("max_ai_streams", &detail);
            return Ok(Err(AiError::Busy(detail)));
        }
        let id = self.object.stream_ids.fetch_add(1, Ordering::Relaxed);
        let request = ai::CompletionRequest {
            messages: request
                .messages
                .into_iter()
                .map(|m| ai::ChatMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            model: request.model,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        };
        self.event.outputs.push(Output::StartAi(id, request));
        Ok(Ok(id))
    }

    async fn cancel(&mut self, id: u64) -> wasmtime::Result<()> {
        self.event.outputs.push(Output::CancelAi(id));
        Ok(())
    }
}
