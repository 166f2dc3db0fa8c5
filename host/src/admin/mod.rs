//! The admin API, on its own listener (loopback by default): deploy, roll back and list
//! class versions, Prometheus metrics, health. Every call but the health checks needs
//! the operator's bearer token, compared in constant time. Uploads are size-limited,
//! and a component is compiled, validated and instantiated once before it can serve.

pub mod api;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::AdminConfig;
use crate::registry::RegistryError;
use crate::runtime::{DeployError, Runtime};
pub use token::{
    HostRecord, TokenError, configured_token, host_record_path, resolve_token, token_file,
    token_for_cli,
};

use crate::server::http::{self, HttpResponse};

struct Admin {
    runtime: Runtime,
    token: String,
    max_upload: usize,
    upload_timeout: std::time::Duration,
    deploys: AtomicU64,
}

/// Serves the admin API on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    config: &AdminConfig,
    token: String,
    stop: watch::Receiver<bool>,
) {
    let admin = Arc::new(Admin {
        runtime,
        token,
        max_upload: config.max_upload_bytes,
        upload_timeout: std::time::Duration::from_millis(config.upload_timeout_ms),
        deploys: AtomicU64::new(0),
    });
    http::accept_loop(listener, stop, http::Upgrades::Refused, None, move |req| {
        let admin = admin.clone();
        async move { handle(&admin, req).await }
    })
    .await
}

/// Whether an admin listener on `addr` may run without an operator-chosen token.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    http::json(
        status,
        &api::ErrorReply {
            error: message.into(),
        },
    )
}

fn ok(body: &impl Serialize) -> HttpResponse {
    http::json(StatusCode::OK, body)
}

fn registry_error(e: &RegistryError) -> HttpResponse {
    let status = match e {
        RegistryError::UnknownClass(_) | RegistryError::UnknownVersion { .. } => {
            StatusCode::NOT_FOUND
        }
        RegistryError::Compile { .. }
        | RegistryError::World { .. }
        | RegistryError::InvalidClassName(_)
        | RegistryError::NothingToRollBack(_) => StatusCode::BAD_REQUEST,
        RegistryError::Configured(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// A query parameter, percent-decoded; `handle` has refused queries that do not decode
/// to UTF-8, so nothing is decoded lossily here.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode_query_value(v))?
    })
}

fn decode_query_value(v: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

async fn handle(admin: &Admin, req: hyper::Request<Incoming>) -> HttpResponse {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Health checks reveal nothing and must work for probes without secrets.
    match (method.clone(), path.as_str()) {
        (Method::GET, "/healthz") => {
            return ok(&api::Health {
                status: "ok".into(),
                reason: None,
            });
        }
        (Method::GET, "/readyz") => {
            return match admin.runtime.readiness() {
                Ok(()) => ok(&api::Health {
                    status: "ready".into(),
                    reason: None,
                }),
                Err(why) => http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &api::Health {
                        status: "not ready".into(),
                        reason: Some(why),
                    },
                ),
            };
        }
        _ => {}
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token::matches(presented, &admin.token) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs `Authorization: Bearer <token>` (the operator's LODGE_ADMIN_TOKEN, or <data_dir>/admin.token)",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    if query
        .split('&')
        .any(|pair| decode_query_value(pair.split_once('=').map_or(pair, |(_, v)| v)).is_none())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "the query is not UTF-8 once percent-decoded",
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["metrics"]) => metrics(admin).await,
        (Method::GET, ["classes"]) => {
            let registry = admin.runtime.registry();
            let classes: Vec<api::ClassSummary> = registry
                .names()
                .into_iter()
                .filter_map(|name| {
                    let class = registry.class(&name)?;
                    Some(api::ClassSummary {
                        current: class.current().number,
                        origin: class.origin.into(),
                        class: name,
                    })
                })
                .collect();
            ok(&classes)
        }
        (Method::DELETE, ["classes", class]) => remove_class(admin, class),
        (Method::GET, ["classes", class, "versions"]) => {
            match admin.runtime.registry().versions(class) {
                Some((current, versions)) => ok(&api::Versions {
                    class: class.to_string(),
                    current,
                    versions: versions
                        .iter()
                        .map(|v| api::VersionEntry {
                            version: v.number,
                            hash: v.hash.clone(),
                            deployed_at_ms: v.deployed_at_ms,
                            label: v.label.clone(),
                            source: match v.source {
                                crate::registry::Source::Config => "config",
                                crate::registry::Source::Deploy => "deploy",
                            }
                            .to_string(),
                            current: v.number == current,
                        })
                        .collect(),
                }),
                None => error(StatusCode::NOT_FOUND, format!("no class named '{class}'")),
            }
        }
        (Method::POST, ["classes", class, "versions"]) => {
            let class = class.to_string();
            let label = query_param(&query, "label").filter(|l| !l.is_empty());
            let reading = Limited::new(req.into_body(), admin.max_upload).collect();
            let Ok(collected) = tokio::time::timeout(admin.upload_timeout, reading).await else {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the upload did not arrive within {} ms (admin.upload_timeout_ms)",
                        admin.upload_timeout.as_millis()
                    ),
                );
            };
            let body = match collected {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    crate::metrics::refusals::count("max_upload_bytes");
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the upload is larger than {} bytes (admin.max_upload_bytes)",
                            admin.max_upload
                        ),
                    );
                }
            };
            deploy(admin, class, body, label).await
        }
        (Method::POST, ["classes", class, "rollback"]) => {
            let to = match query_param(&query, "version") {
                Some(v) => match v.parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("version '{v}' is not a number"),
                        );
                    }
                },
                None => None,
            };
            match admin.runtime.rollback(class, to).await {
                Ok(version) => {
                    tracing::info!(class = %class, version, "rolled back");
                    admin.deploys.fetch_add(1, Ordering::Relaxed);
                    ok(&api::RollbackReply {
                        class: class.to_string(),
                        version,
                    })
                }
                Err(e) => deploy_error(class, &e),
            }
        }
        (Method::GET, ["classes", class, "objects"]) => list_objects(admin, class).await,
        (Method::GET, ["classes", class, "objects", name]) => inspect(admin, class, name).await,
        (Method::POST, ["classes", class, "objects", name, "evict"]) => {
            match object_ref(admin, class, name) {
                Ok(object) => ok(&api::EvictReply {
                    evicted: admin.runtime.evict(object.id),
                    object: object.to_string(),
                }),
                Err(resp) => resp,
            }
        }
        (Method::DELETE, ["classes", class, "objects", name]) => {
            let object = match object_ref(admin, class, name) {
                Ok(o) => o,
                Err(resp) => return resp,
            };
            match admin.runtime.delete(&object).await {
                Ok(()) => ok(&api::DeleteReply {
                    object: object.to_string(),
                    deleted: true,
                }),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (Method::POST, ["backup"]) => {
            let Some(dir) = query_param(&query, "dir") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "give an absolute folder: /backup?dir=/path/to/new/folder",
                );
            };
            if let Err(message) = crate::backup::check_backup_dir(std::path::Path::new(&dir)) {
                return error(StatusCode::BAD_REQUEST, message);
            }
            let runtime = admin.runtime.clone();
            let target = std::path::PathBuf::from(&dir);
            let result = tokio::task::spawn_blocking(move || {
                crate::backup::backup(runtime.store(), runtime.registry(), &target)
            })
            .await;
            match result {
                Ok(Ok(summary)) => ok(&api::BackupReply {
                    dir,
                    objects: summary.objects,
                    components: summary.components,
                }),
                Ok(Err(e @ crate::backup::BackupError::Exists(_))) => {
                    error(StatusCode::CONFLICT, e.to_string())
                }
                Ok(Err(
                    e @ crate::backup::BackupError::Storage(
                        crate::storage::StorageError::Unsupported(_),
                    ),
                )) => error(StatusCode::NOT_IMPLEMENTED, e.to_string()),
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        _ => error(StatusCode::NOT_FOUND, format!("no admin route {path}")),
    }
}

/// The object `name` of `class`, or the error response to give.
#[allow(clippy::result_large_err)]
fn object_ref(
    admin: &Admin,
    class: &str,
    name: &str,
) -> Result<crate::object::ObjectRef, HttpResponse> {
    if admin.runtime.registry().class(class).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no class named '{class}'"),
        ));
    }
    // Strictly: a lossy decoding would turn two different names into one.
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid object name: it is not UTF-8 once percent-decoded",
            )
        })?;
    // The same normal form as the public routes, so both address the same object.
    let name = crate::object::normalize_name(&name);
    crate::object::ObjectRef::new(class, &name)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid object name: {e}")))
}

async fn list_objects(admin: &Admin, class: &str) -> HttpResponse {
    if admin.runtime.registry().class(class).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no class named '{class}'"));
    }
    let store = admin.runtime.store();
    let objects = match store.objects().await {
        Ok(o) => o,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut list: Vec<api::ObjectSummary> = Vec::new();
    for (id, meta) in objects.into_iter().filter(|(_, meta)| meta.class == class) {
        let status = admin.runtime.status(id);
        list.push(api::ObjectSummary {
            name: meta.name,
            id: id.to_hex(),
            live: status.live,
            sockets: status.sockets,
            storage_bytes: meta.usage,
            next_alarm_ms: store.alarm(id).await.ok().flatten().map(|a| a.at_ms),
        });
    }
    ok(&list)
}

/// Stops serving a class a deploy created; a configured class is refused (409).
fn remove_class(admin: &Admin, class: &str) -> HttpResponse {
    match admin.runtime.registry().remove(class) {
        Ok(()) => {
            let sockets_closed = admin.runtime.close_class(class);
            tracing::info!(class = %class, sockets_closed, "class removed");
            admin.deploys.fetch_add(1, Ordering::Relaxed);
            ok(&api::RemoveReply {
                class: class.to_string(),
                sockets_closed,
            })
        }
        Err(e) => registry_error(&e),
    }
}

/// The most an inspection reads (keys and values).
const INSPECT_BYTES: usize = 64 << 20;

async fn inspect(admin: &Admin, class: &str, name: &str) -> HttpResponse {
    let object = match object_ref(admin, class, name) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let store = admin.runtime.store();
    let all = crate::storage::KeyRange::new(None, None, None);
    // Committed state only: an inspection never blocks or wakes the object.
    let entries = match store
        .scan(object.id, &all, false, 10_000, INSPECT_BYTES)
        .await
    {
        Ok(e) => e,
        Err(crate::storage::StorageError::ReadBudget(max)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the object's first 10000 entries hold more than {max} bytes: too large to inspect in one answer"
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let status = admin.runtime.status(object.id);
    let alarm = store.alarm(object.id).await.ok().flatten();
    ok(&api::ObjectDetail {
        object: object.to_string(),
        id: object.id.to_hex(),
        live: status.live,
        sockets: status.sockets,
        alarm: alarm.map(|a| api::AlarmInfo {
            at_ms: a.at_ms,
            retry: a.retry,
        }),
        entries: entries
            .iter()
            .map(|(k, v)| api::Entry {
                key: api::Shown::of(k),
                value: api::Shown::of(v),
            })
            .collect(),
    })
}

fn deploy_error(class: &str, e: &DeployError) -> HttpResponse {
    tracing::warn!(class = %class, error = %e, "deploy refused");
    match e {
        DeployError::Registry(e) => registry_error(e),
        DeployError::Starting { .. } => error(StatusCode::BAD_REQUEST, e.to_string()),
        DeployError::Task(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn deploy(admin: &Admin, class: String, body: Bytes, label: Option<String>) -> HttpResponse {
    match admin.runtime.deploy(&class, body, label).await {
        Ok(done) => {
            if !done.unchanged {
                tracing::info!(class = %class, version = done.version, hash = %&done.hash[..12], created = done.created, "deployed");
                admin.deploys.fetch_add(1, Ordering::Relaxed);
            }
            ok(&api::DeployReply {
                class,
                version: done.version,
                hash: done.hash,
                unchanged: done.unchanged,
                created: done.created,
            })
        }
        Err(e) => deploy_error(&class, &e),
    }
}

async fn metrics(admin: &Admin) -> HttpResponse {
    use crate::metrics::header;
    use crate::runtime::EventKind;
    let rt = &admin.runtime;
    let m = rt.metrics();
    let store = rt.store().stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let sockets = rt.socket_counts();
    let mut out = String::new();
    let simple = [
        (
            "lodge_live_objects",
            "gauge",
            "Live object instances.",
            rt.live_objects() as u64,
        ),
        (
            "lodge_activations_total",
            "counter",
            "Instances created.",
            load(&m.activations),
        ),
        (
            "lodge_evictions_total",
            "counter",
            "Instances evicted (idle, LRU or requested).",
            load(&m.evictions),
        ),
        (
            "lodge_sockets_open",
            "gauge",
            "Open WebSockets.",
            sockets.open as u64,
        ),
        (
            "lodge_sockets_hibernated",
            "gauge",
            "Open WebSockets whose object is evicted.",
            sockets.hibernated as u64,
        ),
        (
            "lodge_alarms_pending",
            "gauge",
            "Alarms stored and not yet handled.",
            rt.store().alarm_count().await.unwrap_or(0),
        ),
        (
            "lodge_alarms_fired_total",
            "counter",
            "on-alarm events that succeeded.",
            load(&m.alarms_fired),
        ),
        (
            "lodge_alarms_dropped_total",
            "counter",
            "Alarms dropped after their last failed retry.",
            load(&m.alarms_dropped),
        ),
        (
            "lodge_ai_streams",
            "gauge",
            "AI streams in flight.",
            rt.ai_streams() as u64,
        ),
        (
            "lodge_commits_total",
            "counter",
            "Group commits (fsyncs) of the storage writer.",
            load(&store.commits),
        ),
        (
            "lodge_committed_batches_total",
            "counter",
            "Event batches committed.",
            load(&store.batches),
        ),
        (
            "lodge_deploys_total",
            "counter",
            "Deploys and rollbacks.",
            load(&admin.deploys),
        ),
    ];
    let (prompt_tokens, completion_tokens) = rt.ai_tokens();
    header(
        &mut out,
        "lodge_ai_tokens_total",
        "counter",
        "Tokens the AI provider reported, by kind.",
    );
    out.push_str(&format!(
        "lodge_ai_tokens_total{{kind=\"prompt\"}} {prompt_tokens}\n"
    ));
    out.push_str(&format!(
        "lodge_ai_tokens_total{{kind=\"completion\"}} {completion_tokens}\n"
    ));
    for (name, kind, help, value) in simple {
        header(&mut out, name, kind, help);
        out.push_str(&format!("{name} {value}\n"));
    }
    header(
        &mut out,
        "lodge_events_total",
        "counter",
        "Events delivered, by kind and outcome.",
    );
    for kind in EventKind::ALL {
        out.push_str(&format!(
            "lodge_events_total{{kind=\"{kind}\",outcome=\"ok\"}} {}\n",
            load(&m.events_ok[kind.index()])
        ));
        out.push_str(&format!(
            "lodge_events_total{{kind=\"{kind}\",outcome=\"failed\"}} {}\n",
            load(&m.events_failed[kind.index()])
        ));
    }
    header(
        &mut out,
        "lodge_event_seconds",
        "histogram",
        "Time the guest spent on an event, by kind.",
    );
    for kind in EventKind::ALL {
        m.event_latency[kind.index()].render(
            &mut out,
            "lodge_event_seconds",
            &format!("kind=\"{kind}\""),
        );
    }
    header(
        &mut out,
        "lodge_commit_seconds",
        "histogram",
        "Group commit latency, fsync included.",
    );
    store
        .commit_latency
        .render(&mut out, "lodge_commit_seconds", "");
    header(
        &mut out,
        "lodge_commit_batches",
        "histogram",
        "Event batches per group commit.",
    );
    store
        .batch_size
        .render(&mut out, "lodge_commit_batches", "");
    crate::metrics::refusals::render(&mut out);
    let mut resp = hyper::Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

impl From<crate::registry::Origin> for api::ClassOrigin {
    fn from(o: crate::registry::Origin) -> Self {
        match o {
            crate::registry::Origin::Config => api::ClassOrigin::Config,
            crate::registry::Origin::Deploy => api::ClassOrigin::Deploy,
        }
    }
}
