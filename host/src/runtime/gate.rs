//! The output gate: releases each event's outputs (frames, closes, replies, AI starts)
//! in event order, and only once that event's batch is durable. A client can therefore
//! never observe state that a crash could lose. After a failed commit it releases nothing
//! the object computed on top of the lost writes (see `commits.rs`).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::commits::Epoch;
use super::{Envelope, EventError, Inner, ObjectEntry};
use crate::bindings::Output;
use crate::sockets::{Outbound, SendError};
use crate::storage::{CommitTicket, StorageError};

/// Finishes an event once its fate is known: sends the reply to whoever waits.
pub type Reply = Box<dyn FnOnce(Result<(), EventError>) + Send>;

/// One event's outputs, waiting for its commit.
pub struct Release {
    /// The epoch the event ran in.
    pub epoch: Epoch,
    pub ticket: Option<CommitTicket>,
    /// The overlay sequence number of the event's batch.
    pub seq: Option<u64>,
    pub outputs: Vec<Output>,
    pub reply: Option<Reply>,
    /// The socket whose message the event handled: if the event's outputs are dropped,
    /// its client gets an error frame and a close instead of silence.
    pub socket: Option<u64>,
    /// The event set an alarm: the scheduler must look again.
    pub alarm_set: bool,
}

/// Outputs released between two yields of the gate (see `run`).
const OUTPUTS_PER_SLICE: usize = 64;

/// Runs the gate of one object until its actor goes away.
pub async fn run(
    mut releases: mpsc::UnboundedReceiver<Release>,
    entry: Arc<ObjectEntry>,
    rt: Arc<Inner>,
) {
    while let Some(release) = releases.recv().await {
        let committed: Option<Result<(), StorageError>> = match release.ticket {
            Some(ticket) => Some(ticket.await.unwrap_or(Err(StorageError::WriterGone))),
            None => None,
        };
        let settled = entry
            .commits
            .settle(release.epoch, committed.as_ref().map(Result::is_ok));
        if settled.release {
            if let Some(seq) = release.seq {
                entry.shared.overlay().committed(seq);
            }
            for (i, output) in release.outputs.into_iter().enumerate() {
                // A broadcast to thousands of sockets wakes as many writer tasks; handing
                // the thread back between slices lets other objects' frames go out in
                // between instead of queueing behind the whole room.
                if i > 0 && i % OUTPUTS_PER_SLICE == 0 {
                    tokio::task::yield_now().await;
                }
                perform(&rt, &entry, output);
            }
            if release.alarm_set {
                rt.alarm_wake.notify_one();
            }
            if let Some(reply) = release.reply {
                reply(Ok(()));
            }
        } else {
            let message = match committed {
                Some(Err(e)) => {
                    tracing::error!(error = %e, "commit failed: the event's outputs are dropped");
                    e.to_string()
                }
                _ => {
                    tracing::debug!("an earlier commit failed: the event's outputs are dropped");
                    StorageError::Fenced.to_string()
                }
            };
            let error = EventError::Storage {
                object: entry.object().to_string(),
                message,
            };
            if let Some(socket) = release.socket {
                let failed = Outbound::Failed {
                    message: error.to_string(),
                    reason: "storage failed".into(),
                };
                push(&entry, socket, failed);
            }
            if let Some(reply) = release.reply {
                reply(Err(error));
            }
        }
        // The actor may be idle, waiting only for this commit before it retires.
        if settled.wake {
            let _ = entry.control.send(Envelope::Wake);
        }
    }
}

fn perform(rt: &Inner, entry: &ObjectEntry, output: Output) {
    match output {
        Output::Send(socket, frame) => push(entry, socket, Outbound::Frame(frame)),
        Output::Close(socket, code, reason) => push(entry, socket, Outbound::Close(code, reason)),
        Output::Fail {
            socket,
            message,
            reason,
        } => push(entry, socket, Outbound::Failed { message, reason }),
        Output::StartAi(stream, request) => {
            rt.streams
                .start(&entry.shared, &entry.mailbox, stream, request)
        }
        Output::CancelAi(stream) => {
            entry.shared.streams().cancel(stream);
        }
    }
}

fn push(entry: &ObjectEntry, socket: u64, out: Outbound) {
    let result = entry.shared.sockets().push(socket, out);
    if result == Err(SendError::Overflow) {
        tracing::warn!(
            socket,
            "socket send queue full: disconnecting the slow reader"
        );
    }
}
