//! The object actor: one task per object entry, owning the object's instance while it is
//! live. It takes events from the mailbox one at a time and runs each to completion, so
//! a guest never sees two events interleave. After each event it hands the event's
//! writes to the storage writer and its outputs to the gate, and moves on: the next
//! event can run while the previous batch is being fsynced (it reads those writes from
//! the overlay). The idle timer and LRU pressure drop the instance; the entry itself
//! stays while sockets are open, so they survive (hibernation).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::UpdateDeadline;

use super::commits::{Commits, Epoch};
use super::gate::{self, Release, Reply};
use super::{AlarmOutcome, Envelope, Event, EventError, EventKind, Inner, ObjectEntry};
use crate::bindings::{
    AiEvent, ConnectOutcome, EventCtx, HostState, ObjectClass, ObjectSetup, ObjectShared, Output,
    Rank, Response, lock,
};
use crate::object::ObjectRef;
use crate::registry::ClassVersion;
use crate::sockets::Phase;
use crate::storage::{AlarmChange, Batch};

/// A live instance and what it holds.
struct Live {
    store: wasmtime::Store<HostState>,
    bindings: ObjectClass,
    version: Arc<ClassVersion>,
    _permit: OwnedSemaphorePermit,
}

struct Actor {
    rt: Arc<Inner>,
    entry: Arc<ObjectEntry>,
    mailbox: mpsc::Receiver<Envelope>,
    control_rx: mpsc::UnboundedReceiver<Envelope>,
    gate: mpsc::UnboundedSender<Release>,
    /// The epoch of the event being run (see `commits.rs`).
    epoch: Epoch,
    instance: Option<Live>,
    /// The object's alarm `(due ms, retry)` as its committed and pending events left it.
    alarm: Option<(u64, u32)>,
    last_event: Instant,
}

/// Creates the entry of `object` and starts its actor and gate. Runs under the directory
/// lock: no storage I/O here (the actor reads what it needs itself).
pub(super) fn spawn(rt: Arc<Inner>, object: ObjectRef) -> Arc<ObjectEntry> {
    let (mailbox_tx, mailbox) = mpsc::channel(rt.config.mailbox_capacity);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    // A root span: the task that happened to create the entry (a scheduler's, a
    // connection's) is not the object's parent.
    let span = tracing::info_span!(
        parent: None,
        "object",
        class = %object.class,
        id = %object.id,
        name = %object.name
    );
    let entry = Arc::new(ObjectEntry {
        shared: object_shared(&rt, object),
        mailbox: mailbox_tx,
        control: control_tx,
        commits: Commits::default(),
    });
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    tokio::spawn(gate::run(gate_rx, entry.clone(), rt.clone()).instrument(span.clone()));
    let commits = entry.commits.begin();
    let actor = Actor {
        rt,
        entry: entry.clone(),
        mailbox,
        control_rx,
        gate: gate_tx,
        epoch: commits.epoch,
        instance: None,
        alarm: None,
        last_event: Instant::now(),
    };
    tokio::spawn(actor.run().instrument(span));
    entry
}

/// What an instance of `object` shares with its host: settings, limits, storage layers,
/// sockets, AI streams.
pub(super) fn object_shared(rt: &Inner, object: ObjectRef) -> Arc<ObjectShared> {
    let class = rt.registry.class(&object.class);
    let settings = class
        .as_ref()
        .map(|c| c.settings.clone())
        .unwrap_or_default();
    let limits = class
        .map(|c| c.limits.clone())
        .unwrap_or_else(|| rt.limits.clone());
    Arc::new(ObjectShared::new(ObjectSetup {
        object,
        settings,
        limits,
        store: rt.store.clone(),
        ai: rt.ai.clone(),
        stream_ids: rt.stream_ids.clone(),
        host_outage: rt.host_outage.get().copied(),
    }))
}

/// A store for one instance, with its memory limit and CPU budget per event.
pub(super) fn new_store(rt: &Inner, ctx: Arc<ObjectShared>) -> wasmtime::Store<HostState> {
    let cpu_ms = ctx.limits.cpu_ms_per_event;
    let mut store = wasmtime::Store::new(rt.registry.engine(), HostState::new(ctx));
    store.limiter(|s| &mut s.limits);
    let tick = rt.config.epoch_tick_ms.max(1);
    let max_ticks = cpu_ms.div_ceil(tick);
    store.set_epoch_deadline(1);
    // Each tick the guest yields to the executor (so one busy object cannot starve the
    // others on the same thread) and is charged; past its CPU budget it traps.
    store.epoch_deadline_callback(move |mut cx| {
        let state = cx.data_mut();
        state.ticks += 1;
        if state.ticks > max_ticks {
            crate::metrics::refusals::count("cpu_ms_per_event");
            Err(wasmtime::Error::msg(format!(
                "the event exceeded its CPU time limit of {} ms",
                max_ticks * tick
            )))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Tags one socket may carry.
const MAX_TAGS: usize = 32;

/// What a guest call returned, per event kind.
enum Returned {
    Response(Response),
    Connect(ConnectOutcome),
    Unit,
}

impl Actor {
    async fn run(mut self) {
        // Before any event: the alarm as committed (a previous actor of this object
        // retired only once its last commit had landed).
        self.load_alarm().await;
        let idle = Duration::from_millis(self.rt.config.idle_timeout_ms);
        loop {
            if self.instance.is_none() && self.try_retire() {
                return;
            }
            let evictable = self.instance.is_some() && self.streams_in_flight() == 0;
            let deadline = self.last_event + idle;
            let envelope = tokio::select! {
                biased;
                Some(e) = self.control_rx.recv() => e,
                Some(e) = self.mailbox.recv() => e,
                _ = tokio::time::sleep_until(deadline), if evictable => {
                    self.evict("idle");
                    continue;
                }
                else => return,
            };
            match envelope {
                Envelope::Event(event) => {
                    // Debug level: free when off; with RUST_LOG=lodge=debug every line of
                    // the event carries its kind and, once known, its outcome.
                    let span = tracing::debug_span!(
                        "event",
                        kind = %event.kind(),
                        outcome = tracing::field::Empty
                    );
                    self.handle(event).instrument(span).await;
                    self.last_event = Instant::now();
                }
                Envelope::Evict => {
                    if self.streams_in_flight() == 0 {
                        self.evict("requested");
                    }
                }
                Envelope::Delete(done) => self.delete(done).await,
                Envelope::ChangeAlarm {
                    due_ms,
                    change,
                    done,
                } => self.change_alarm(due_ms, change, done).await,
                Envelope::Wake => {}
            }
        }
    }

    /// How long an event or an instantiation may take, host calls included.
    fn wall_limit(&self) -> Duration {
        Duration::from_millis(self.entry.shared.limits.wall_ms_per_event.max(1))
    }

    fn streams_in_flight(&self) -> usize {
        self.entry.shared.streams().len()
    }

    /// Leaves the directory if nothing needs this entry any more. Checked under the
    /// directory lock, which every new sender of events takes, so no event is lost.
    fn try_retire(&mut self) -> bool {
        let mut directory = lock(&self.rt.directory, Rank::Directory);
        let unused = self.mailbox.is_empty()
            && self.control_rx.is_empty()
            && self.entry.shared.sockets().is_empty()
            && self.streams_in_flight() == 0;
        // Only a commit still in flight may stand in the way now: if one is, the gate
        // wakes us when the last one lands.
        let idle = unused && self.entry.commits.idle_or_wake_later();
        if idle {
            let id = self.entry.object().id;
            let ours = directory
                .get(&id)
                .is_some_and(|e| Arc::ptr_eq(e, &self.entry));
            if ours {
                directory.remove(&id);
            }
        }
        idle
    }

    fn evict(&mut self, why: &str) {
        if self.instance.take().is_some() {
            self.rt.live.remove(self.entry.object().id);
            self.rt.metrics.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(why, "evicted");
        }
    }

    fn drop_instance(&mut self) {
        if self.instance.take().is_some() {
            self.rt.live.remove(self.entry.object().id);
        }
        // The cache lives as long as the instance: a hibernated object holds no data.
        self.entry.shared.overlay().forget_cache();
    }

    /// Makes sure a live instance of the class's current version exists.
    async fn ensure_instance(&mut self) -> Result<(), EventError> {
        let object = self.entry.object().clone();
        let Some(class) = self.rt.registry.class(&object.class) else {
            return Err(EventError::Activation {
                object: object.to_string(),
                message: format!("the class {} is not served any more", object.class),
            });
        };
        let version = class.current();
        if let Some(live) = &self.instance {
            if Arc::ptr_eq(&live.version, &version) {
                return Ok(());
            }
            tracing::info!(
                from = live.version.number,
                to = version.number,
                "switching to the new version"
            );
            self.drop_instance();
        }
        let activation_error = |message: String| EventError::Activation {
            object: object.to_string(),
            message,
        };
        let permit =
            self.rt
                .live
                .acquire(object.id)
                .await
                .ok_or_else(|| EventError::Overloaded {
                    object: object.to_string(),
                    message: "every live-object slot is busy".into(),
                })?;
        let mut store = new_store(&self.rt, self.entry.shared.clone());
        // A start function that blocks (a WASI poll) is bounded like an event.
        let wall = self.wall_limit();
        let bindings = tokio::time::timeout(wall, version.pre.instantiate_async(&mut store))
            .await
            .unwrap_or_else(|_| Err(wall_clock_exceeded(wall)))
            .map_err(|e| activation_error(format!("{e:#}")))?;
        self.instance = Some(Live {
            store,
            bindings,
            version,
            _permit: permit,
        });
        self.rt.metrics.activations.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("activated");
        Ok(())
    }

    /// Before anything that commits: the event's epoch, and a fresh start from durable
    /// state if a commit failed since the last one.
    /// The object's alarm as committed.
    async fn load_alarm(&mut self) {
        self.alarm = match self.rt.store.alarm(self.entry.object().id).await {
            Ok(a) => a.map(|a| (a.at_ms, a.retry)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the object's alarm");
                None
            }
        };
    }

    async fn begin(&mut self) {
        let begin = self.entry.commits.begin();
        self.epoch = begin.epoch;
        if begin.restart {
            // Writes this instance built on never became durable: start over.
            tracing::warn!("starting over from durable state after a failed commit");
            self.drop_instance();
            self.entry.shared.overlay().reset();
            *self.entry.shared.usage_bound() = None;
            self.load_alarm().await;
        }
    }

    async fn handle(&mut self, event: Event) {
        self.rt.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.begin().await;
        // An AI event for a stream that was cancelled or already finished is dropped.
        if let Event::Ai { stream, event } = &event {
            let mut streams = self.entry.shared.streams();
            let known = match event {
                AiEvent::Delta(_) => streams.contains(*stream),
                _ => streams.finish(*stream),
            };
            if !known {
                return;
            }
        }
        if let Event::Alarm { due_ms, .. } = &event
            && self.alarm.map(|(at, _)| at) != Some(*due_ms)
        {
            if let Event::Alarm { done, .. } = event {
                let _ = done.send(AlarmOutcome::Stale);
            }
            return;
        }
        // A frame that was queued before its socket closed is not delivered.
        if let Event::Message { socket, .. } = &event
            && !self.socket_is_live(*socket)
        {
            return;
        }
        if let Err(e) = self.ensure_instance().await {
            tracing::Span::current().record("outcome", "failed");
            tracing::error!(error = %e, kind = %event.kind(), "cannot deliver the event");
            self.fail(event, e);
            return;
        }
        let wall = self.wall_limit();
        let live = self.instance.as_mut().expect("instance was just ensured");
        let state = live.store.data_mut();
        state.event = EventCtx {
            alarm: self.alarm.map(|(at, _)| at),
            ..EventCtx::default()
        };
        state.ticks = 0;
        live.store.set_epoch_deadline(1);

        let events = live.bindings.lodge_object_events();
        let store = &mut live.store;
        let started = std::time::Instant::now();
        // The CPU budget (epoch ticks) only counts time in the guest's code; a guest waiting
        // in a host call (a WASI poll) is bounded by the wall clock. Past it the call is
        // dropped, which unwinds the guest, and the instance is replaced like after a trap.
        let call = async {
            match &event {
                Event::Request { request, .. } => events
                    .call_on_request(&mut *store, request)
                    .await
                    .map(Returned::Response),
                Event::Connect {
                    socket, request, ..
                } => {
                    let shared = &self.entry.shared;
                    shared.sockets().connecting = Some(*socket);
                    let result = events.call_on_connect(&mut *store, *socket, request).await;
                    shared.sockets().connecting = None;
                    result.map(Returned::Connect)
                }
                Event::Message { socket, message } => events
                    .call_on_message(&mut *store, *socket, message)
                    .await
                    .map(|()| Returned::Unit),
                Event::Close {
                    socket,
                    code,
                    reason,
                } => events
                    .call_on_close(&mut *store, *socket, *code, reason)
                    .await
                    .map(|()| Returned::Unit),
                Event::Alarm { .. } => {
                    let retry = self.alarm.map_or(0, |(_, r)| r);
                    events
                        .call_on_alarm(&mut *store, retry)
                        .await
                        .map(|()| Returned::Unit)
                }
                Event::Ai { stream, event } => events
                    .call_on_ai_event(&mut *store, *stream, event)
                    .await
                    .map(|()| Returned::Unit),
            }
        };
        let result = tokio::time::timeout(wall, call)
            .await
            .unwrap_or_else(|_| Err(wall_clock_exceeded(wall)));
        if matches!(event, Event::Connect { .. }) {
            // Also when the call was cut short.
            self.entry.shared.sockets().connecting = None;
        }
        self.rt
            .live
            .touch(self.entry.object().id, &self.entry.control);
        let metrics = &self.rt.metrics;
        let kind = event.kind();
        metrics.event_latency[kind.index()].observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            metrics.events_ok[kind.index()].fetch_add(1, Ordering::Relaxed);
            if kind == EventKind::Alarm {
                metrics.alarms_fired.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            metrics.events_failed[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        // The attachment an accept hands over is bounded like `set-attachment`.
        let max_attachment = self.entry.shared.limits.max_attachment_bytes;
        let result = match result {
            Ok(Returned::Connect(ConnectOutcome::Accept(a)))
                if a.attachment.len() > max_attachment =>
            {
                Err(wasmtime::Error::msg(format!(
                    "the socket attachment of {} bytes is over the limit of {max_attachment}",
                    a.attachment.len()
                )))
            }
            // Tags are kept for the socket's life and matched on every tagged broadcast.
            Ok(Returned::Connect(ConnectOutcome::Accept(a)))
                if a.tags.len() > MAX_TAGS
                    || a.tags.iter().map(String::len).sum::<usize>() > max_attachment =>
            {
                Err(wasmtime::Error::msg(format!(
                    "the socket's {} tags are over the limit of {MAX_TAGS} tags or {max_attachment} bytes",
                    a.tags.len()
                )))
            }
            other => other,
        };
        match result {
            Ok(returned) => {
                tracing::Span::current().record("outcome", "ok");
                self.commit(event, returned)
            }
            Err(trap) => {
                tracing::Span::current().record("outcome", "failed");
                self.rt
                    .metrics
                    .event_failures
                    .fetch_add(1, Ordering::Relaxed);
                // The client gets the short reason and a reference; the log has the
                // guest's backtrace under the same reference.
                let reference = format!("{:08x}", rand::random::<u32>());
                let message = format!("{} (ref {reference})", trap_message(&trap));
                tracing::warn!(kind = %event.kind(), reference = %reference, error = ?trap, "event failed; its writes are discarded and the instance replaced");
                // A guest that fails after storage failed it is not the guest's fault:
                // the client hears about storage (a 503 it may retry), not a crash.
                let storage_failure = self
                    .instance
                    .as_mut()
                    .and_then(|live| live.store.data_mut().event.storage_failure.take());
                self.drop_instance();
                let object = self.entry.object().to_string();
                let error = match storage_failure {
                    Some(why) => EventError::Storage {
                        object,
                        message: format!(
                            "{why}; the event failed and nothing of it was kept (ref {reference})"
                        ),
                    },
                    None => EventError::Trap { object, message },
                };
                self.fail(event, error);
            }
        }
    }

    fn socket_is_live(&self, socket: u64) -> bool {
        self.entry
            .shared
            .sockets()
            .get(socket)
            .is_some_and(|s| s.phase != Phase::Closed)
    }

    /// Erases the object: its instance, sockets, AI streams, storage and alarm. The erase
    /// is ordered after every earlier event's commit like any other batch.
    async fn delete(&mut self, done: tokio::sync::oneshot::Sender<Result<(), EventError>>) {
        self.begin().await;
        self.drop_instance();
        self.entry.shared.streams().cancel_all();
        let sockets = self.entry.shared.sockets().ids();
        let outputs = sockets
            .into_iter()
            .map(|id| Output::Close(id, 1000, "the object was deleted".into()))
            .collect();
        self.alarm = None;
        let ctx = EventCtx {
            writes: crate::storage::EventWrites {
                clear: true,
                ..Default::default()
            },
            outputs,
            ..EventCtx::default()
        };
        tracing::info!("deleted by the operator");
        let reply: Reply = Box::new(move |r| {
            let _ = done.send(r);
        });
        self.submit(ctx, Some(AlarmChange::Clear), false, Some(reply), None);
    }

    /// Hands a successful event's writes to the writer and its outputs to the gate.
    fn commit(&mut self, event: Event, returned: Returned) {
        let live = self.instance.as_mut().expect("commit follows a live event");
        let ctx = std::mem::take(&mut live.store.data_mut().event);
        let is_alarm = matches!(event, Event::Alarm { .. });
        // A client whose message's commit fails is told so on its socket.
        let socket = match &event {
            Event::Message { socket, .. } => Some(*socket),
            _ => None,
        };
        let alarm_change = if ctx.alarm_changed {
            Some(match ctx.alarm {
                Some(at) => AlarmChange::Set {
                    at_ms: at,
                    retry: 0,
                },
                None => AlarmChange::Clear,
            })
        } else if is_alarm {
            // At-least-once: the alarm is cleared in the same commit as the handler's
            // writes.
            Some(AlarmChange::Clear)
        } else {
            None
        };
        let mut reply: Option<Reply> = None;
        match (event, returned) {
            (Event::Request { reply: tx, .. }, Returned::Response(response)) => {
                reply = Some(Box::new(move |r| {
                    let _ = tx.send(r.map(|()| response));
                }));
            }
            (
                Event::Connect {
                    socket, reply: tx, ..
                },
                Returned::Connect(outcome),
            ) => {
                let mut sockets = self.entry.shared.sockets();
                match &outcome {
                    ConnectOutcome::Accept(accept) => {
                        if let Some(s) = sockets.get_mut(socket) {
                            s.tags = accept.tags.clone();
                            if s.attachment.is_empty() {
                                s.attachment = accept.attachment.clone();
                            }
                            s.phase = Phase::Open;
                        }
                    }
                    ConnectOutcome::Reject(_) => {
                        sockets.remove(socket);
                    }
                }
                reply = Some(Box::new(move |r| {
                    let _ = tx.send(r.map(|()| outcome));
                }));
            }
            (Event::Close { socket, .. }, _) => {
                self.entry.shared.sockets().remove(socket);
            }
            (Event::Alarm { done, .. }, _) => {
                let retry = self.alarm.map_or(0, |(_, r)| r);
                reply = Some(Box::new(move |r| {
                    let _ = done.send(if r.is_ok() {
                        AlarmOutcome::Handled
                    } else {
                        AlarmOutcome::Failed { retry }
                    });
                }));
            }
            _ => {}
        }
        if let Some(change) = alarm_change {
            self.alarm = match change {
                AlarmChange::Set { at_ms, retry } => Some((at_ms, retry)),
                AlarmChange::Clear => None,
            };
        }
        let alarm_set = matches!(alarm_change, Some(AlarmChange::Set { .. }));
        self.submit(ctx, alarm_change, alarm_set, reply, socket);
    }

    fn submit(
        &mut self,
        ctx: EventCtx,
        alarm: Option<AlarmChange>,
        alarm_set: bool,
        reply: Option<Reply>,
        socket: Option<u64>,
    ) {
        let (ticket, seq) = if ctx.writes.is_empty() && alarm.is_none() {
            (None, None)
        } else {
            let seq = self.entry.shared.overlay().push(&ctx.writes);
            let object = self.entry.object();
            let batch = Batch {
                object: object.id,
                class: object.class.clone(),
                name: object.name.clone(),
                clear: ctx.writes.clear,
                writes: ctx.writes.writes.into_iter().collect(),
                alarm,
                from_durable: self.entry.commits.submitted(),
            };
            (Some(self.rt.store.submit(batch)), Some(seq))
        };
        let _ = self.gate.send(Release {
            epoch: self.epoch,
            ticket,
            seq,
            outputs: ctx.outputs,
            reply,
            socket,
            alarm_set,
        });
    }

    /// An event failed: nothing it wrote or sent survives. Its requester learns why,
    /// in order with the outputs of earlier events.
    fn fail(&mut self, event: Event, error: EventError) {
        let mut outputs = Vec::new();
        let mut reply: Option<Reply> = None;

        match event {
            Event::Request { reply: tx, .. } => {
                let e = error.clone();
                reply = Some(Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }));
            }
            Event::Connect {
                socket, reply: tx, ..
            } => {
                self.entry.shared.sockets().remove(socket);
                let e = error.clone();
                reply = Some(Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }));
            }
            Event::Message { socket, .. } => {
                let reason = match &error {
                    EventError::Overloaded { .. } => "object overloaded",
                    _ => "object failed",
                };
                outputs.push(Output::Fail {
                    socket,
                    message: error.to_string(),
                    reason: reason.into(),
                });
            }
            Event::Close { socket, .. } => {
                self.entry.shared.sockets().remove(socket);
            }
            Event::Alarm { done, .. } => {
                // The scheduler decides about retries (alarms/): the alarm stays as it is
                // until it does.
                let retry = self.alarm.map_or(0, |(_, r)| r);
                reply = Some(Box::new(move |_| {
                    let _ = done.send(AlarmOutcome::Failed { retry });
                }));
            }
            Event::Ai { .. } => {}
        }
        let ctx = EventCtx {
            outputs,
            ..EventCtx::default()
        };
        self.submit(ctx, None, false, reply, None);
    }

    /// The scheduler retries or drops the alarm that was due at `due_ms`, unless an event
    /// changed it meanwhile.
    async fn change_alarm(
        &mut self,
        due_ms: u64,
        change: AlarmChange,
        done: tokio::sync::oneshot::Sender<bool>,
    ) {
        self.begin().await;
        if self.alarm.map(|(at, _)| at) != Some(due_ms) {
            let _ = done.send(false);
            return;
        }
        self.alarm = match change {
            AlarmChange::Set { at_ms, retry } => Some((at_ms, retry)),
            AlarmChange::Clear => None,
        };
        let reply: Reply = Box::new(move |r| {
            let _ = done.send(r.is_ok());
        });
        let set = matches!(change, AlarmChange::Set { .. });
        self.submit(EventCtx::default(), Some(change), set, Some(reply), None);
    }
}

fn wall_clock_exceeded(wall: Duration) -> wasmtime::Error {
    crate::metrics::refusals::count("wall_ms_per_event");
    wasmtime::Error::msg(format!(
        "the event exceeded its wall-clock limit of {} ms",
        wall.as_millis()
    ))
}

/// A short description of why the guest failed, for the client (the logs get all).
pub(crate) fn trap_message(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::UnreachableCodeReached => {
                "the guest trapped (a panic or `unreachable`)".into()
            }
            other => format!("the guest trapped: {other}"),
        };
    }
    // The outermost context is wasmtime's "error while executing at ..." with the
    // backtrace; the cause is what the client can act on.
    let text = error.root_cause().to_string();
    text.lines()
        .next()
        .unwrap_or("the guest failed")
        .to_string()
}
