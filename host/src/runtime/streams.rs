//! AI streams as the runtime runs them. A guest's `start-chat` hands out an id at once
//! (bindings) and becomes an output of its event; once the event is durable, the gate
//! calls [`AiStreams::start`], which runs the provider's completion on a task of its own
//! and delivers its events to the object's mailbox as `on-ai-event`s, in order with the
//! object's other events.
//!
//! What the runtime owns here and nobody else does:
//! - **the id**: the one the guest holds names the stream in logs (`ai_stream{stream=..}`)
//!   and in the object's stream table;
//! - **the limits**: per object (the class's `max_ai_streams`, checked when the guest asks)
//!   and per host (`[ai] max_streams`, a semaphore checked here); a refused start reaches
//!   the guest as the stream's `error` event;
//! - **cancellation**: the task is aborted and the stream leaves the table; events it had
//!   already queued are dropped by the actor because the stream is no longer listed.
//!
//! Trade-off: deltas wait for room in the bounded mailbox, which keeps them in order with
//! client frames and bounds memory, at the price of slowing the provider's connection when
//! an object falls behind (the provider's idle timeout does not count that time).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use super::{Envelope, Event};
use crate::ai::{AiService, CompletionRequest, Deltas, StartError, StreamEvent};
use crate::bindings::{AiEvent, ObjectShared};

/// The host's AI streams: the provider and the host-wide limit.
pub(super) struct AiStreams {
    service: AiService,
    slots: Arc<Semaphore>,
    max: usize,
}

impl AiStreams {
    pub fn new(service: AiService) -> AiStreams {
        // (A limit above what a semaphore can count is as good as none.)
        let max = service.max_streams().min(Semaphore::MAX_PERMITS);
        AiStreams {
            service,
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Streams running on this host.
    pub fn in_flight(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Prompt and completion tokens the provider reported so far.
    pub fn tokens(&self) -> (u64, u64) {
        self.service.tokens()
    }

    /// Starts stream `id` of `object`, whose events go to `mailbox`. Whatever happens, the
    /// object gets exactly one final event (`done` or `error`) unless it cancels first.
    pub fn start(
        &self,
        object: &ObjectShared,
        mailbox: &mpsc::Sender<Envelope>,
        id: u64,
        request: CompletionRequest,
    ) {
        let started = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => self.service.prepare(request).map(|c| (c, slot)),
            Err(_) => Err(StartError::Busy(format!(
                "the host is already running its maximum of {} AI streams (`[ai] \
                 max_streams`): try again when one has finished",
                self.max
            ))),
        };
        let model = match &started {
            Ok((completion, _)) => completion.model().to_owned(),
            Err(_) => String::new(),
        };
        let mut sink = Mailbox {
            stream: id,
            mailbox: mailbox.clone(),
        };
        let span = tracing::info_span!("ai_stream", stream = id, model = %model);
        // Held while the task is spawned and listed, so the actor, which looks the stream
        // up under this lock, never meets one of its events before the stream is listed.
        let mut streams = object.streams();
        let task = tokio::spawn(
            async move {
                let last = match started {
                    Err(e) => {
                        tracing::warn!(error = %e, "AI stream refused");
                        // The guest may show it: refusals name limits, not addresses.
                        sink.send_error(e.to_string()).await;
                        return;
                    }
                    Ok((completion, slot)) => {
                        let last = completion.run(&mut sink).await;
                        // Free the slot first, so that a guest reacting to the final event
                        // can start another stream.
                        drop(slot);
                        last
                    }
                };
                match last {
                    Some(StreamEvent::Error(failure)) => {
                        // End users get what happened and a reference; the operator gets the
                        // provider's details under the same reference.
                        let reference = format!("{:08x}", rand::random::<u32>());
                        tracing::warn!(
                            reference = %reference,
                            kind = ?failure.kind,
                            "AI stream failed: {failure}"
                        );
                        let text = format!("{} (ref {reference})", failure.kind.public_text());
                        sink.send_error(text).await;
                    }
                    Some(last) => {
                        sink.send(last).await;
                    }
                    None => {}
                }
            }
            .instrument(span),
        );
        streams.insert(id, task.abort_handle());
    }
}

/// Delivers one stream's events to its object's mailbox.
struct Mailbox {
    stream: u64,
    mailbox: mpsc::Sender<Envelope>,
}

impl Mailbox {
    /// Ends the stream with an error the guest may show to its users.
    async fn send_error(&self, text: String) -> bool {
        self.deliver_event(AiEvent::Error(text)).await
    }

    async fn send(&self, event: StreamEvent) -> bool {
        let event = match event {
            StreamEvent::Delta(d) => AiEvent::Delta(d),
            StreamEvent::Done(text) => AiEvent::Done(text),
            StreamEvent::Error(failure) => AiEvent::Error(failure.kind.public_text().into()),
        };
        self.deliver_event(event).await
    }

    async fn deliver_event(&self, event: AiEvent) -> bool {
        let event = Event::Ai {
            stream: self.stream,
            event,
        };
        self.mailbox.send(Envelope::Event(event)).await.is_ok()
    }
}

impl Deltas for Mailbox {
    async fn deliver(&mut self, text: String) -> bool {
        self.send(StreamEvent::Delta(text)).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::ai::{AiConfig, ChatMessage};
    use crate::bindings::ObjectSetup;
    use crate::fake_ai::{FakeAi, echo_reply};
    use crate::object::{ObjectId, ObjectRef};
    use crate::storage::Store;

    struct Fixture {
        streams: AiStreams,
        object: ObjectShared,
        tx: mpsc::Sender<Envelope>,
        rx: mpsc::Receiver<Envelope>,
        _dir: tempfile::TempDir,
    }

    fn fixture(base_url: &str, max_streams: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = AiConfig {
            base_url: Some(base_url.to_owned()),
            model: "fake-model".to_owned(),
            max_streams,
            ..AiConfig::default()
        };
        let service = AiService::with_key(config, None);
        let object = ObjectShared::new(ObjectSetup {
            object: ObjectRef {
                class: "chat".into(),
                name: "room".into(),
                id: ObjectId([7; 16]),
            },
            settings: Arc::new(BTreeMap::new()),
            limits: Default::default(),
            store: Store::open_redb(dir.path(), &Default::default()).unwrap(),
            ai: service.clone(),
            stream_ids: Default::default(),
            host_outage: None,
        });
        let (tx, rx) = mpsc::channel(8);
        Fixture {
            streams: AiStreams::new(service),
            object,
            tx,
            rx,
            _dir: dir,
        }
    }

    fn user(text: &str) -> CompletionRequest {
        CompletionRequest {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: text.into(),
            }],
            model: None,
            temperature: None,
            max_tokens: None,
        }
    }

    /// The next AI event in the mailbox.
    async fn next(rx: &mut mpsc::Receiver<Envelope>) -> (u64, AiEvent) {
        let envelope = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("an event in time")
            .expect("the mailbox is open");
        match envelope {
            Envelope::Event(Event::Ai { stream, event }) => (stream, event),
            _ => panic!("not an AI event"),
        }
    }

    /// Skips stream `id`'s deltas up to its `done`; anything else fails the test.
    async fn until_done(rx: &mut mpsc::Receiver<Envelope>, id: u64) {
        loop {
            match next(rx).await {
                (s, AiEvent::Delta(_)) if s == id => {}
                (s, AiEvent::Done(_)) if s == id => return,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Waits (on the executor, not a clock) until `check` holds.
    async fn until(check: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if check() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the condition never held");
    }

    #[tokio::test]
    async fn deltas_then_one_final_event_in_the_mailbox_under_the_guests_id() {
        let fake = FakeAi::start().await;
        let mut f = fixture(&fake.base_url(), 4);
        f.streams.start(&f.object, &f.tx, 42, user("hello"));
        assert!(f.object.streams().contains(42));
        let mut text = String::new();
        loop {
            match next(&mut f.rx).await {
                (42, AiEvent::Delta(d)) => text.push_str(&d),
                (42, AiEvent::Done(full)) => {
                    assert_eq!(full, text);
                    assert_eq!(full, echo_reply("hello", 1));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        until(|| f.streams.in_flight() == 0).await;
    }

    #[tokio::test]
    async fn the_host_limit_refuses_with_an_error_event_and_cancel_frees_a_slot() {
        let fake = FakeAi::start().await;
        let mut f = fixture(&fake.base_url(), 2);
        f.streams.start(&f.object, &f.tx, 1, user("[[stall]]"));
        f.streams.start(&f.object, &f.tx, 2, user("[[stall]]"));
        f.streams.start(&f.object, &f.tx, 3, user("hi"));
        let (stream, event) = next(&mut f.rx).await;
        assert_eq!(stream, 3);
        let AiEvent::Error(message) = event else {
            panic!("{event:?}")
        };
        assert!(message.contains("`[ai] max_streams`"), "{message}");
        assert_eq!(f.streams.in_flight(), 2);

        // Cancelling aborts the task: its slot is free and the stream is no longer listed.
        assert!(f.object.streams().cancel(1));
        assert!(!f.object.streams().contains(1));
        until(|| f.streams.in_flight() == 1).await;
        f.streams.start(&f.object, &f.tx, 4, user("again"));
        until_done(&mut f.rx, 4).await;
        f.object.streams().cancel_all();
        until(|| f.streams.in_flight() == 0).await;
    }

    #[tokio::test]
    async fn the_slot_is_free_before_the_final_event_is_delivered() {
        let fake = FakeAi::start().await;
        let mut f = fixture(&fake.base_url(), 1);
        f.streams.start(&f.object, &f.tx, 1, user("hi"));
        until_done(&mut f.rx, 1).await;
        // A guest reacting to `done` by starting another stream is not refused.
        assert_eq!(f.streams.in_flight(), 0);
        f.streams.start(&f.object, &f.tx, 2, user("again"));
        until_done(&mut f.rx, 2).await;
    }
}
