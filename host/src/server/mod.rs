//! The public listener: HTTP/1.1 (hyper) with WebSocket upgrades on any object route.
//! It turns requests into WIT values for the runtime and the runtime's answers (or
//! errors) into HTTP responses with JSON error bodies. It holds no object state.

pub use lodge_core::routes;
mod admission;
pub mod http;
mod pages;
mod wakes;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ConnectionsConfig;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::bindings::{Header, Request};
use crate::object::ObjectRef;
use crate::runtime::{Connected, EventError, Runtime};
use routes::RouteError;

/// A refused body up to this many times the limit is read and dropped before the 413;
/// a larger one gets its answer at once (and, likely, a reset connection).
const DISCARD_FACTOR: u64 = 4;
/// How long a refused body may take to be read and dropped.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads and drops what is left of `body`, for at most [`DISCARD_TIMEOUT`] (lingering, so
/// the client reads the answer rather than a connection reset mid-upload).
async fn discard(mut body: Incoming) {
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// How long a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub use http::HttpResponse;

struct Shared {
    runtime: Runtime,
    /// Per configured class, the page origins allowed to open its WebSockets (none
    /// listed: any).
    origins: HashMap<String, Vec<String>>,
    /// How long a silent WebSocket goes before it is pinged (and as long again before it
    /// is dropped).
    ping: Duration,
    /// `[connections] max_wakes_per_minute`, when set.
    wakes: Option<wakes::WakeLimit>,
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    connections: ConnectionsConfig,
    origins: HashMap<String, Vec<String>>,
    stop: watch::Receiver<bool>,
) {
    let max_open = admission::within_fd_limit(connections.max_open);
    let admission = admission::Admission::new(max_open, connections.max_per_address);
    let shared = Arc::new(Shared {
        runtime,
        origins,
        ping: Duration::from_millis(connections.ping_interval_ms.max(1)),
        wakes: wakes::WakeLimit::new(connections.max_wakes_per_minute),
    });
    http::accept_loop(
        listener,
        stop,
        http::Upgrades::Allowed,
        Some(admission),
        move |req| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
        },
    )
    .await
}

/// A JSON error response.
fn error(
    status: StatusCode,
    message: impl Into<String>,
    object: Option<&ObjectRef>,
) -> HttpResponse {
    let mut body = json!({ "error": message.into() });
    if let Some(o) = object {
        body["object"] = json!(o.to_string());
    }
    http::json(status, &body)
}

fn event_error(e: &EventError, object: &ObjectRef) -> HttpResponse {
    let status = match e {
        EventError::Trap { .. } | EventError::Activation { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        // Storage failures pass (a full disk, a database being reopened): try again later.
        EventError::Storage { .. } | EventError::Overloaded { .. } | EventError::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    error(status, e.to_string(), Some(object))
}

async fn handle(shared: &Shared, mut req: hyper::Request<Incoming>) -> HttpResponse {
    let path = req.uri().path().to_string();
    if let Some(guide) = path.strip_prefix(pages::DOCS_PREFIX.trim_end_matches('/')) {
        return docs(guide);
    }
    let route = match routes::parse(&path) {
        Ok(r) => r,
        Err(RouteError::Root) => return index(shared, &req),
        Err(RouteError::NoName(class)) => {
            if shared.runtime.registry().class(&class).is_none() {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no class named '{class}'"),
                    None,
                );
            }
            return error(
                StatusCode::NOT_FOUND,
                format!("name an object: /{class}/{{name}}"),
                None,
            );
        }
        Err(RouteError::BadName(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid object name: {e}"),
                None,
            );
        }
    };
    if shared.runtime.registry().class(route.class).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no class named '{}'", route.class),
            None,
        );
    }
    let object = match ObjectRef::new(route.class, &route.name) {
        Ok(o) => o,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid object name: {e}"),
                None,
            );
        }
    };
    if let Some(wakes) = &shared.wakes
        && !shared.runtime.status(object.id).live
        && let Some(http::ClientAddr(address)) = req.extensions().get::<http::ClientAddr>()
        && let Err(why) = wakes.charge(*address, std::time::Instant::now())
    {
        crate::metrics::refusals::count("max_wakes_per_minute");
        let mut refused = error(StatusCode::TOO_MANY_REQUESTS, why, Some(&object));
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return refused;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = convert_headers(req.headers());

    if is_upgrade(&req) {
        return upgrade(shared, &mut req, object, route.rest, query, headers).await;
    }

    let method = req.method().to_string();
    let limits = shared.runtime.class_limits(&object.class);
    let too_large = || {
        crate::metrics::refusals::count("max_body_bytes");
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
            Some(&object),
        )
    };
    // Refuse a declared oversize body before reading any of it.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limits.max_body_bytes as u64) {
        // Refused before any of it is kept; a body of moderate size is still read (and
        // dropped), so a client busy sending it gets the 413 instead of a reset.
        if n <= (limits.max_body_bytes as u64).saturating_mul(DISCARD_FACTOR) {
            discard(req.into_body()).await;
        }
        return too_large();
    }
    let reading = Limited::new(req.into_body(), limits.max_body_bytes).collect();
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, reading).await else {
        return error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
            Some(&object),
        );
    };
    let body = match collected {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                crate::metrics::refusals::count("max_body_bytes");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body is larger than {} bytes",
                        limits.max_body_bytes
                    ),
                    Some(&object),
                );
            }
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
                Some(&object),
            );
        }
    };
    let request = Request {
        method,
        path: route.rest,
        query,
        headers,
        body,
    };
    match shared.runtime.request(&object, request).await {
        Ok(resp) => to_http(resp, &object),
        Err(e) => event_error(&e, &object),
    }
}

/// A page of the host's own (text or HTML).
fn own_page(status: StatusCode, content_type: &'static str, body: String) -> HttpResponse {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `/`: the landing page, or its JSON for clients that ask for JSON.
fn index(shared: &Shared, req: &hyper::Request<Incoming>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the landing page answers GET",
            None,
        );
    }
    let registry = shared.runtime.registry();
    let cards: Vec<pages::ClassCard> = registry
        .names()
        .into_iter()
        .filter_map(|name| {
            let class = registry.class(&name)?;
            Some(pages::ClassCard::new(
                &name,
                class.current().number,
                &class.about,
            ))
        })
        .collect();
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    if wants_json {
        let body = serde_json::to_string(&pages::Index::new(&cards)).expect("the index serializes");
        return own_page(StatusCode::OK, "application/json", body);
    }
    own_page(
        StatusCode::OK,
        "text/html; charset=utf-8",
        pages::index_html(&cards),
    )
}

/// `/_lodge/docs/[guide]`: the bundled guides.
fn docs(rest: &str) -> HttpResponse {
    match rest.trim_matches('/') {
        "" => own_page(
            StatusCode::OK,
            "text/html; charset=utf-8",
            pages::docs_index_html(),
        ),
        name => match pages::guide(name) {
            Some(guide) => own_page(
                StatusCode::OK,
                "text/html; charset=utf-8",
                pages::guide_html(guide),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no guide named '{name}' (see {})", pages::DOCS_PREFIX),
                None,
            ),
        },
    }
}

fn convert_headers(map: &hyper::HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

/// The guest's response, with the head the host allows (`lodge_core::response`: no 1xx,
/// no framing or connection headers, nothing an encoder would refuse).
fn to_http(resp: crate::bindings::Response, object: &ObjectRef) -> HttpResponse {
    let headers = resp.headers.into_iter().map(|h| (h.name, h.value));
    let head = match lodge_core::response::sanitize(resp.status, headers) {
        Ok(head) => head,
        Err(invalid) => {
            tracing::warn!(object = %object, status = resp.status, "the object answered with a status only the host may send; answering 500");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                invalid.to_string(),
                Some(object),
            );
        }
    };
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    let mut dropped = head.dropped;
    for (name, value) in head.headers {
        // Always valid after `sanitize` (the fuzz target `response` checks it).
        match (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                out.headers_mut().append(name, value);
            }
            _ => dropped.push(name),
        }
    }
    if !dropped.is_empty() {
        // Once per response, whatever the number of headers.
        tracing::warn!(object = %object, headers = ?dropped, "dropped response headers the host owns or that are invalid");
    }
    out
}

fn header_has(req: &hyper::Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn is_upgrade(req: &hyper::Request<Incoming>) -> bool {
    header_has(req, header::UPGRADE, "websocket")
}

async fn upgrade(
    shared: &Shared,
    req: &mut hyper::Request<Incoming>,
    object: ObjectRef,
    path: String,
    query: String,
    headers: Vec<Header>,
) -> HttpResponse {
    if req.method() != Method::GET || !header_has(req, header::CONNECTION, "upgrade") {
        return error(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is a GET with Connection: Upgrade",
            Some(&object),
        );
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut resp = error(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
            Some(&object),
        );
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return resp;
    }
    // Cross-site WebSocket hijacking: another site's page opening a socket with its
    // visitor's cookies. Browsers always send the page's origin; others may not.
    if let Some(allowed) = shared.origins.get(&*object.class).filter(|a| !a.is_empty())
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            crate::metrics::refusals::count("allowed_origins");
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "pages from {origin:?} may not open WebSockets of class {} (its `allowed_origins`)",
                    object.class
                ),
                Some(&object),
            );
        }
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the WebSocket upgrade has no Sec-WebSocket-Key",
            Some(&object),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut *req);
    let request = Request {
        method: "GET".into(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    let link = match shared.runtime.connect(&object, request).await {
        Ok(Connected::Accepted(link)) => link,
        Ok(Connected::Rejected(resp)) => return to_http(resp, &object),
        Err(e) => return event_error(&e, &object),
    };
    let max = shared.runtime.class_limits(&object.class).max_message_bytes;
    let ping = shared.ping;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => ws::run(upgraded, link, max, ping).await,
            Err(e) => {
                tracing::debug!(error = %e, "the client left before the upgrade completed");
                link.closed(1006, String::new()).await;
            }
        }
    });
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let accept = derive_accept_key(key.as_bytes());
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}
