//! The output gate: releases each event's outputs (frames, closes, replies, AI starts)
//! in event order, and only once that event's batch is durable. A client can therefore
//! never observe state that a crash could lose.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

use super::{Envelope, Event, EventError};
use crate::ai::{StreamEvent, StreamSink};
use crate::bindings::{AiEvent, ObjectContext, Output};
use crate::sockets::{Outbound, SendError};
use crate::storage::CommitTicket;

/// Finishes an event once its fate is known: sends the reply to whoever waits.
pub type Reply = Box<dyn FnOnce(Result<(), EventError>) + Send>;

/// One event's outputs, waiting for its commit.
pub struct Release {
    pub ticket: Option<CommitTicket>,
    /// The overlay sequence number of the event's batch.
    pub seq: Option<u64>,
    pub outputs: Vec<Output>,
    pub reply: Option<Reply>,
    /// The event set an alarm: the scheduler must look again.
    pub alarm_set: bool,
}

/// Runs the gate of one object until its actor goes away.
pub async fn run(
    mut releases: mpsc::UnboundedReceiver<Release>,
    entry: Arc<super::ObjectEntry>,
    object: Arc<ObjectContext>,
    control: mpsc::UnboundedSender<Envelope>,
    commit_failed: Arc<AtomicBool>,
    alarm_wake: Arc<Notify>,
) {
    while let Some(release) = releases.recv().await {
        let committed = match release.ticket {
            Some(ticket) => match ticket.await {
                Ok(result) => result,
                Err(_) => Err(crate::storage::StorageError::WriterGone),
            },
            None => Ok(()),
        };
        match committed {
            Ok(()) => {
                if let Some(seq) = release.seq {
                    object.overlay.lock().expect("overlay lock").committed(seq);
                }
                for output in release.outputs {
                    perform(&object, &control, output);
                }
                if release.alarm_set {
                    alarm_wake.notify_one();
                }
                if let Some(reply) = release.reply {
                    reply(Ok(()));
                }
                // The actor may be idle, waiting only for this commit before it retires.
                if object.overlay.lock().expect("overlay lock").is_empty()
                    && entry.wants_wake.swap(false, Ordering::SeqCst)
                {
                    let _ = control.send(Envelope::Wake);
                }
            }
            Err(e) => {
                tracing::error!(object = %object.object, error = %e, "commit failed: the event's outputs are dropped");
                // The actor sees this before its next event and starts over from what
                // is durable.
                commit_failed.store(true, Ordering::SeqCst);
                object.overlay.lock().expect("overlay lock").reset();
                if let Some(reply) = release.reply {
                    reply(Err(EventError::Storage {
                        object: object.object.to_string(),
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}

fn perform(object: &Arc<ObjectContext>, control: &mpsc::UnboundedSender<Envelope>, output: Output) {
    match output {
        Output::Send(socket, frame) => push(object, socket, Outbound::Frame(frame)),
        Output::Close(socket, code, reason) => push(object, socket, Outbound::Close(code, reason)),
        Output::Fail {
            socket,
            message,
            reason,
        } => push(object, socket, Outbound::Failed { message, reason }),
        Output::StartAi(stream, request) => {
            let sink = ObjectSink {
                stream,
                control: control.clone(),
            };
            let owner = object.object.id.to_hex();
            // Held across start and insert: the actor looks the stream up under this
            // lock when its first event arrives, so it can never miss the handle.
            let mut streams = object.streams.lock().expect("streams lock");
            match object
                .ai
                .start(&owner, object.limits.max_ai_streams, request, sink)
            {
                Ok(handle) => {
                    streams.insert(stream, handle);
                }
                Err(e) => {
                    let event = Event::Ai {
                        stream,
                        event: AiEvent::Error(e.to_string()),
                    };
                    let _ = control.send(Envelope::Event(event));
                }
            }
        }
        Output::CancelAi(stream) => {
            if let Some(handle) = object.streams.lock().expect("streams lock").remove(&stream) {
                handle.cancel();
            }
        }
    }
}

fn push(object: &ObjectContext, socket: u64, out: Outbound) {
    let result = object
        .sockets
        .lock()
        .expect("socket table lock")
        .push(socket, out);
    if result == Err(SendError::Overflow) {
        tracing::warn!(object = %object.object, socket, "socket send queue full: disconnecting the slow reader");
    }
}

/// Delivers a stream's events to its object as `on-ai-event` events.
struct ObjectSink {
    stream: u64,
    control: mpsc::UnboundedSender<Envelope>,
}

impl StreamSink for ObjectSink {
    fn deliver(&mut self, event: StreamEvent) -> bool {
        let event = match event {
            StreamEvent::Delta(d) => AiEvent::Delta(d),
            StreamEvent::Done(text) => AiEvent::Done(text),
            StreamEvent::Error(e) => AiEvent::Error(e),
        };
        self.control
            .send(Envelope::Event(Event::Ai {
                stream: self.stream,
                event,
            }))
            .is_ok()
    }
}
