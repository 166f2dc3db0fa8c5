//! Object actors. Each object with anything going on has one entry: a mailbox, an actor
//! task that owns the object's instance (when live) and delivers its events strictly one
//! at a time, an output gate that releases each event's outputs once its writes are
//! durable, and the object's socket table, which outlives the instance (hibernation).
//!
//! Nothing here knows about HTTP: the server hands in requests and socket frames as WIT
//! values and gets WIT values back.

mod actor;
mod commits;
mod deploy;
pub mod engine;
mod event;
mod gate;
mod live;
mod streams;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

pub use crate::sockets::{Frame, Outbound};
use commits::Commits;
pub use deploy::DeployError;
pub use event::{AlarmOutcome, Event, EventError, EventKind};
use live::LiveSet;
use streams::AiStreams;

use crate::ai::AiService;
use crate::bindings::{ConnectOutcome, Message, ObjectShared, Rank, Request, Response, lock};
use crate::config::{AlarmConfig, Limits, RuntimeConfig};
use crate::object::{ObjectId, ObjectRef};
use crate::registry::Registry;
use crate::storage::{AlarmChange, Store};

/// What an actor's mailboxes carry.
pub enum Envelope {
    Event(Event),
    /// Drop the instance if possible (LRU pressure, or an operator's request).
    Evict,
    /// Delete the object: close its sockets, erase its storage and alarm.
    Delete(oneshot::Sender<Result<(), EventError>>),
    /// Nothing to do: the gate finished a commit the actor was waiting for to retire.
    Wake,
    /// Change the alarm, if it is still the one due at `due_ms` (the scheduler's retry
    /// or drop of an alarm). Answers whether it changed it, once that is durable.
    ChangeAlarm {
        due_ms: u64,
        change: AlarmChange,
        done: oneshot::Sender<bool>,
    },
}

/// What the host knows about one object right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStatus {
    /// It has a live instance.
    pub live: bool,
    /// Open sockets (hibernated ones included).
    pub sockets: usize,
}

/// Counters for metrics and tests.
#[derive(Debug)]
pub struct Metrics {
    pub activations: AtomicU64,
    pub evictions: AtomicU64,
    pub events: AtomicU64,
    pub event_failures: AtomicU64,
    /// Events that completed, by kind ([`EventKind::index`]).
    pub events_ok: [AtomicU64; EventKind::COUNT],
    /// Events that trapped or hit a limit, by kind.
    pub events_failed: [AtomicU64; EventKind::COUNT],
    /// Time a guest spent on an event, by kind (seconds).
    pub event_latency: [crate::metrics::Histogram; EventKind::COUNT],
    pub alarms_fired: AtomicU64,
    /// Alarms dropped after their last retry failed.
    pub alarms_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        use crate::metrics::{Histogram, LATENCY_BUCKETS};
        Metrics {
            activations: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            events: AtomicU64::new(0),
            event_failures: AtomicU64::new(0),
            events_ok: Default::default(),
            events_failed: Default::default(),
            event_latency: std::array::from_fn(|_| Histogram::new(LATENCY_BUCKETS)),
            alarms_fired: AtomicU64::new(0),
            alarms_dropped: AtomicU64::new(0),
        }
    }
}

/// Sockets on this host: all open ones, and those whose object is evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounts {
    pub open: usize,
    pub hibernated: usize,
}

/// One object's presence on this host: the ways in (mailbox for events, control for the
/// runtime's own requests), the state its tasks share, and its commit handshake.
pub struct ObjectEntry {
    shared: Arc<ObjectShared>,
    mailbox: mpsc::Sender<Envelope>,
    control: mpsc::UnboundedSender<Envelope>,
    commits: Commits,
}

impl ObjectEntry {
    /// The object.
    pub fn object(&self) -> &ObjectRef {
        &self.shared.object
    }

    /// Queues a close with `code` and `reason` on every socket of the object; returns
    /// how many took it.
    fn close_sockets(&self, code: u16, reason: &str) -> usize {
        let mut sockets = self.shared.sockets();
        sockets
            .ids()
            .into_iter()
            .filter(|&id| {
                sockets
                    .push(id, Outbound::Close(code, reason.into()))
                    .is_ok()
            })
            .count()
    }
}

pub(crate) struct Inner {
    registry: Arc<Registry>,
    store: Store,
    config: RuntimeConfig,
    limits: Limits,
    alarm_config: AlarmConfig,
    ai: AiService,
    streams: AiStreams,
    /// Every object with an entry on this host (rank [`Rank::Directory`]).
    directory: Mutex<HashMap<ObjectId, Arc<ObjectEntry>>>,
    live: LiveSet,
    socket_ids: AtomicU64,
    stream_ids: Arc<AtomicU64>,
    alarm_wake: Arc<Notify>,
    /// The host's last outage `(from, to)`, set once at start.
    host_outage: std::sync::OnceLock<(u64, u64)>,
    shutting_down: AtomicBool,
    metrics: Metrics,
}

/// The object runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// The answer to a WebSocket upgrade.
pub enum Connected {
    /// The object accepted: run the connection with this link.
    Accepted(SocketLink),
    /// The object refused with this response.
    Rejected(Response),
}

/// The server's handle on one accepted socket.
pub struct SocketLink {
    pub id: u64,
    /// Frames and closes for the client, in order.
    pub outbound: mpsc::Receiver<Outbound>,
    entry: Arc<ObjectEntry>,
}

impl SocketLink {
    /// The object this socket belongs to.
    pub fn object(&self) -> &ObjectRef {
        self.entry.object()
    }

    /// The host's answer to `text` if it matches the object's auto-response pair.
    pub fn auto_response(&self, text: &str) -> Option<String> {
        let sockets = self.entry.shared.sockets();
        sockets
            .auto_response
            .as_ref()
            .filter(|pair| pair.request == text)
            .map(|pair| pair.response.clone())
    }

    /// Delivers a client frame. Waits while the object's mailbox is full, which slows
    /// this one client down instead of buffering without bound.
    pub async fn deliver(&self, message: Message) -> Result<(), EventError> {
        let event = Event::Message {
            socket: self.id,
            message,
        };
        self.entry
            .mailbox
            .send(Envelope::Event(event))
            .await
            .map_err(|_| EventError::ShuttingDown)
    }

    /// The connection ended: the object gets `on-close` (waking it if evicted).
    pub async fn closed(self, code: u16, reason: String) {
        self.entry.shared.sockets().mark_closed(self.id);
        let event = Event::Close {
            socket: self.id,
            code,
            reason,
        };
        let _ = self.entry.mailbox.send(Envelope::Event(event)).await;
    }
}

impl Runtime {
    /// A runtime over these parts.
    pub fn new(
        registry: Arc<Registry>,
        store: Store,
        config: &crate::config::Config,
        ai: AiService,
    ) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                registry,
                store,
                config: config.runtime.clone(),
                limits: config.limits.clone(),
                alarm_config: config.alarms.clone(),
                streams: AiStreams::new(ai.clone()),
                ai,
                directory: Mutex::new(HashMap::new()),
                live: LiveSet::new(config.runtime.max_live_objects),
                socket_ids: AtomicU64::new(1),
                stream_ids: Arc::new(AtomicU64::new(1)),
                alarm_wake: Arc::new(Notify::new()),
                host_outage: std::sync::OnceLock::new(),
                shutting_down: AtomicBool::new(false),
                metrics: Metrics::default(),
            }),
        }
    }

    /// The class registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Runtime counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The limits of a class (the host-wide ones for an unknown class).
    pub fn class_limits(&self, class: &str) -> Limits {
        self.inner
            .registry
            .class(class)
            .map(|c| c.limits.clone())
            .unwrap_or_else(|| self.inner.limits.clone())
    }

    /// Open sockets, and how many of them belong to evicted objects.
    pub fn socket_counts(&self) -> SocketCounts {
        let directory = lock(&self.inner.directory, Rank::Directory);
        let mut counts = SocketCounts::default();
        for (id, entry) in directory.iter() {
            let n = entry.shared.sockets().len();
            counts.open += n;
            if n > 0 && !self.inner.live.contains(*id) {
                counts.hibernated += n;
            }
        }
        counts
    }

    /// AI streams running on this host.
    pub fn ai_streams(&self) -> usize {
        self.inner.streams.in_flight()
    }

    /// Prompt and completion tokens the AI provider reported so far.
    pub fn ai_tokens(&self) -> (u64, u64) {
        self.inner.streams.tokens()
    }

    /// `Err(why)` when the host should get no traffic: storage cannot commit, or the host
    /// is shutting down.
    pub fn readiness(&self) -> Result<(), String> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err("the host is shutting down".into());
        }
        self.inner
            .store
            .health()
            .map_err(|why| format!("storage: {why}"))
    }

    /// Records the host's last outage (from its last sign of life to this start), which
    /// guests read with `object.downtime-since`. Set once, before any object runs.
    pub fn record_outage(&self, from_ms: u64, to_ms: u64) {
        let _ = self.inner.host_outage.set((from_ms, to_ms));
    }

    /// The alarms' retry policy.
    pub fn alarm_config(&self) -> &AlarmConfig {
        &self.inner.alarm_config
    }

    /// Live instances now.
    pub fn live_objects(&self) -> usize {
        self.inner.live.len()
    }

    /// Signalled whenever a committed event set an alarm.
    pub fn alarm_wake(&self) -> Arc<Notify> {
        self.inner.alarm_wake.clone()
    }

    /// Runs `f` on the object's entry (created, with its actor, if it has none) while
    /// holding the directory lock. An actor retires only under the same lock after
    /// finding its mailbox empty, so whatever `f` queues is never lost to a retiring
    /// actor. `f` must not block.
    fn with_entry<T>(
        &self,
        object: &ObjectRef,
        f: impl FnOnce(&Arc<ObjectEntry>) -> Result<T, EventError>,
    ) -> Result<T, EventError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(EventError::ShuttingDown);
        }
        let mut directory = lock(&self.inner.directory, Rank::Directory);
        let entry = match directory.get(&object.id) {
            Some(entry) => entry.clone(),
            None => {
                let entry = actor::spawn(self.inner.clone(), object.clone());
                directory.insert(object.id, entry.clone());
                entry
            }
        };
        f(&entry)
    }

    fn overloaded(&self, object: &ObjectRef) -> EventError {
        crate::metrics::refusals::count("mailbox_capacity");
        EventError::Overloaded {
            object: object.to_string(),
            message: format!(
                "{} events are already queued",
                self.inner.config.mailbox_capacity
            ),
        }
    }

    /// Queues an event without waiting; a full mailbox means the object is overloaded.
    fn dispatch(&self, object: &ObjectRef, event: Event) -> Result<(), EventError> {
        self.with_entry(object, |entry| {
            entry
                .mailbox
                .try_send(Envelope::Event(event))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => self.overloaded(object),
                    mpsc::error::TrySendError::Closed(_) => EventError::ShuttingDown,
                })
        })
    }

    /// Queues an internal envelope (alarm, delete), waiting for room in the mailbox
    /// instead of refusing it.
    async fn dispatch_waiting(
        &self,
        object: &ObjectRef,
        mut envelope: Envelope,
    ) -> Result<(), EventError> {
        loop {
            let result =
                self.with_entry(object, |entry| match entry.mailbox.try_send(envelope) {
                    Ok(()) => Ok(None),
                    Err(mpsc::error::TrySendError::Full(back)) => Ok(Some(back)),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(EventError::ShuttingDown),
                })?;
            match result {
                None => return Ok(()),
                Some(back) => {
                    envelope = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Delivers an HTTP request and waits for the object's (committed) response.
    pub async fn request(
        &self,
        object: &ObjectRef,
        request: Request,
    ) -> Result<Response, EventError> {
        let (reply, rx) = oneshot::channel();
        self.dispatch(object, Event::Request { request, reply })?;
        rx.await.unwrap_or(Err(EventError::ShuttingDown))
    }

    /// Offers a WebSocket to the object (`on-connect`).
    pub async fn connect(
        &self,
        object: &ObjectRef,
        request: Request,
    ) -> Result<Connected, EventError> {
        let id = self.inner.socket_ids.fetch_add(1, Ordering::Relaxed);
        let max_sockets = self.class_limits(&object.class).max_sockets;
        let (reply, rx) = oneshot::channel();
        let event = Event::Connect {
            socket: id,
            request,
            reply,
        };
        let (entry, outbound) = self.with_entry(object, |entry| {
            let mut sockets = entry.shared.sockets();
            if sockets.len() >= max_sockets {
                crate::metrics::refusals::count("max_sockets");
                return Err(EventError::Overloaded {
                    object: object.to_string(),
                    message: format!("it already has {max_sockets} sockets, the limit"),
                });
            }
            entry
                .mailbox
                .try_send(Envelope::Event(event))
                .map_err(|_| self.overloaded(object))?;
            let outbound = sockets.insert(id, self.inner.config.socket_send_queue);
            Ok((entry.clone(), outbound))
        })?;
        let result = rx.await.unwrap_or(Err(EventError::ShuttingDown));
        match result {
            Ok(ConnectOutcome::Accept(_)) => Ok(Connected::Accepted(SocketLink {
                id,
                outbound,
                entry,
            })),
            Ok(ConnectOutcome::Reject(response)) => Ok(Connected::Rejected(response)),
            Err(e) => {
                // The actor drops sockets it refused or failed on; make sure of it when
                // the event never ran.
                entry.shared.sockets().remove(id);
                Err(e)
            }
        }
    }

    /// Delivers the object's alarm that was due at `due_ms`.
    pub async fn fire_alarm(
        &self,
        object: &ObjectRef,
        due_ms: u64,
    ) -> Result<AlarmOutcome, EventError> {
        let (done, rx) = oneshot::channel();
        // Alarms are internal: they wait for room rather than being refused.
        self.dispatch_waiting(object, Envelope::Event(Event::Alarm { due_ms, done }))
            .await?;
        rx.await.map_err(|_| EventError::ShuttingDown)
    }

    /// Changes the object's alarm if it is still the one that was due at `due_ms`;
    /// returns whether it did, once the change is durable.
    pub async fn change_alarm(
        &self,
        object: &ObjectRef,
        due_ms: u64,
        change: AlarmChange,
    ) -> Result<bool, EventError> {
        let (done, rx) = oneshot::channel();
        let envelope = Envelope::ChangeAlarm {
            due_ms,
            change,
            done,
        };
        self.dispatch_waiting(object, envelope).await?;
        rx.await.map_err(|_| EventError::ShuttingDown)
    }

    /// Whether the object is live and how many sockets it holds.
    pub fn status(&self, id: ObjectId) -> ObjectStatus {
        let sockets = lock(&self.inner.directory, Rank::Directory)
            .get(&id)
            .map_or(0, |e| e.shared.sockets().len());
        ObjectStatus {
            live: self.inner.live.contains(id),
            sockets,
        }
    }

    /// Asks a live object to drop its instance (its sockets stay open). Returns whether
    /// it had an entry on this host.
    pub fn evict(&self, id: ObjectId) -> bool {
        let directory = lock(&self.inner.directory, Rank::Directory);
        match directory.get(&id) {
            Some(entry) => entry.control.send(Envelope::Evict).is_ok(),
            None => false,
        }
    }

    /// After its class was removed: closes every socket of the class's objects on this
    /// host (1001) and drops their instances. Returns how many sockets were closed.
    pub fn close_class(&self, class: &str) -> usize {
        let mut closed = 0;
        for entry in self.entries_where(|e| &*e.object().class == class) {
            closed += entry.close_sockets(1001, "the class was removed from this host");
            let _ = entry.control.send(Envelope::Evict);
        }
        closed
    }

    /// The entries on this host that `keep` selects, taken out of the directory lock.
    fn entries_where(&self, keep: impl Fn(&ObjectEntry) -> bool) -> Vec<Arc<ObjectEntry>> {
        lock(&self.inner.directory, Rank::Directory)
            .values()
            .filter(|e| keep(e))
            .cloned()
            .collect()
    }

    /// Deletes an object: closes its sockets (1000), erases its storage and alarm.
    pub async fn delete(&self, object: &ObjectRef) -> Result<(), EventError> {
        let (done, rx) = oneshot::channel();
        self.dispatch_waiting(object, Envelope::Delete(done))
            .await?;
        rx.await.unwrap_or(Err(EventError::ShuttingDown))
    }

    /// Stops accepting events, closes every socket with 1001 and waits (bounded) for
    /// queued events and commits to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let entries = self.entries_where(|_| true);
        for entry in &entries {
            entry.close_sockets(1001, "the server is shutting down");
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let busy = entries
                .iter()
                .any(|e| e.mailbox.capacity() < self.inner.config.mailbox_capacity);
            if !busy || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every batch handed to the writer before this point is committed once an empty
        // batch queued after them completes.
        let _ = self.inner.store.flush().await;
    }
}
