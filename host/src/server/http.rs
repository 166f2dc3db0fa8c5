//! What both listeners (the public one and the admin API) share: one accept loop and one
//! way to answer JSON. Keeping them in one place keeps their limits in one place: a header
//! read timeout, a bounded request head, back-off when `accept` fails (out of file
//! descriptors), and `Content-Type` on every JSON reply.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admission::{Admission, Admitted};

/// A response with its whole body.
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted: hyper's read buffer may
/// grow to about twice its limit before it gives up on a head, so it gets half.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Whether a listener hands connections over to WebSockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrades {
    Allowed,
    Refused,
}

/// Serves HTTP/1.1 on `listener` with `handle` until `stop` turns true; with
/// `admission`, only the connections it admits (the others get a short 503).
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    upgrades: Upgrades,
    admission: Option<Arc<Admission>>,
    handle: H,
) where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let slot = match admission.as_ref().map(|a| a.admit(peer.ip())) {
            None => None,
            Some(Ok(slot)) => Some(slot),
            Some(Err(why)) => {
                tracing::debug!(%peer, "connection refused: {why}");
                tokio::spawn(refuse(tcp, why));
                continue;
            }
        };
        let tcp = Admitted::new(tcp, slot);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer.ip()));
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES / 2);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let result = match upgrades {
                Upgrades::Allowed => conn.with_upgrades().await,
                Upgrades::Refused => conn.await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The address of the client a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Answers a connection over the caps with 503 and closes it, without reading a request.
async fn refuse(mut tcp: tokio::net::TcpStream, why: String) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::json!({ "error": why }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

/// `body` as a JSON response.
pub fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).expect("reply bodies serialize");
    let mut resp = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
