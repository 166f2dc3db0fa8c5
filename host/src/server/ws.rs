//! One WebSocket connection: frames from the client go to the object's mailbox (or are
//! answered by the auto-response without waking it); frames the object sent come from
//! the socket's outbound queue after the gate released them. The connection belongs to
//! the host, so it keeps running while the object is evicted.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::bindings::Message;
use crate::runtime::{Frame, Outbound, SocketLink};

/// Close code when the connection ended without a close frame (RFC 6455 §7.1.5).
const ABNORMAL: u16 = 1006;
/// A client that takes longer than this to accept one frame is gone: its connection is
/// dropped rather than holding a task and a socket slot forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the host waits for the client's answer to its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The WebSocket settings for a message size limit.
pub fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
        // tungstenite's 128 KiB default read buffer is kept (and zeroed before every
        // read) per socket: measured at ~130 KiB RSS per hibernated socket and a quarter
        // of the host's CPU under load (bench/README.md). Frames here are small.
        .read_buffer_size(4096)
}

/// Runs the connection until it closes, then tells the object. A client silent for `ping`
/// is pinged; silent for `ping` again, it is taken for dead (a peer that vanished without
/// closing, which TCP alone may not notice for hours) and dropped.
pub async fn run(
    upgraded: Upgraded,
    mut link: SocketLink,
    max_message_bytes: usize,
    ping: Duration,
) {
    let io = TokioIo::new(upgraded);
    let mut ws =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config(max_message_bytes))).await;
    let mut close: Option<(u16, String)> = None;
    // Set once the host sent its close frame: the client has until then to answer.
    let mut closing: Option<Instant> = None;
    let mut heard = Instant::now();
    let mut pinged = false;
    loop {
        let deadline = closing.unwrap_or_else(|| Instant::now() + CLOSE_TIMEOUT);
        let silence = heard + if pinged { ping * 2 } else { ping };
        tokio::select! {
            _ = tokio::time::sleep_until(silence), if closing.is_none() => {
                if pinged {
                    tracing::debug!(socket = link.id, "no answer to a ping: dropping the connection");
                    crate::metrics::refusals::count("ping_interval_ms");
                    close.get_or_insert((ABNORMAL, "no answer to a ping".into()));
                    break;
                }
                pinged = true;
                if !send(&mut ws, WsMessage::Ping(Default::default()), &mut close).await {
                    break;
                }
            }
            incoming = ws.next() => {
                heard = Instant::now();
                pinged = false;
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        if closing.is_some() {
                            continue;
                        }
                        if let Some(answer) = link.auto_response(text.as_str()) {
                            if !send(&mut ws, WsMessage::Text(answer.into()), &mut close).await {
                                break;
                            }
                            continue;
                        }
                        if link.deliver(Message::Text(text.as_str().to_owned())).await.is_err() {
                            start_close(&mut ws, &mut close, &mut closing, 1001, "the server is shutting down").await;
                        }
                    }
                    Some(Ok(WsMessage::Binary(data))) => {
                        if closing.is_some() {
                            continue;
                        }
                        if link.deliver(Message::Binary(data.to_vec())).await.is_err() {
                            start_close(&mut ws, &mut close, &mut closing, 1001, "the server is shutting down").await;
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        // tungstenite answers the close; the stream ends next.
                        if close.is_none() {
                            close = Some(frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.as_str().to_owned())
                            }));
                        }
                    }
                    Some(Ok(_)) => {
                        // Ping (answered by tungstenite), pong, raw frames.
                    }
                    Some(Err(e)) => {
                        let (code, reason) = error_close(&e);
                        if let Some(code) = code {
                            // A client that broke a size or encoding rule: its page can say
                            // why only if it reads the close code; the operator sees it here.
                            // (Resets and protocol noise stay at debug.)
                            if code == 1009 || code == 1007 {
                                tracing::info!(code, error = %e, "closing a client socket: {reason}");
                            } else {
                                tracing::debug!(code, error = %e, "closing a client socket: {reason}");
                            }
                            close.get_or_insert((code, reason.to_string()));
                            let _ = tokio::time::timeout(
                                CLOSE_TIMEOUT,
                                ws.close(Some(close_frame(code, reason))),
                            )
                            .await;
                        }
                        break;
                    }
                    None => break,
                }
            }
            out = link.outbound.recv(), if closing.is_none() => {
                let control = match out {
                    Some(Outbound::Frame(frame)) => {
                        match send_queued(&mut ws, frame, &mut link.outbound, &mut close).await {
                            Ok(control) => control,
                            Err(Gone) => break,
                        }
                    }
                    Some(Outbound::Close(code, reason)) => Some(Control::Close(code, reason)),
                    Some(Outbound::Failed { message, reason }) => {
                        if !send(&mut ws, ws_message(error_frame(&message)), &mut close).await {
                            break;
                        }
                        Some(Control::Close(FAILED, reason))
                    }
                    None => Some(Control::CutOff),
                };
                match control {
                    Some(Control::Close(code, reason)) => {
                        start_close(&mut ws, &mut close, &mut closing, code, &reason).await;
                    }
                    Some(Control::CutOff) => {
                        // The host cut this socket off (its send queue overflowed).
                        let reason = "too slow: the send queue is full";
                        crate::metrics::refusals::count("socket_send_queue");
                        start_close(&mut ws, &mut close, &mut closing, 1008, reason).await;
                    }
                    None => {}
                }
            }
            _ = tokio::time::sleep_until(deadline), if closing.is_some() => {
                // The client never answered our close frame.
                break;
            }
        }
    }
    let (code, reason) = close.unwrap_or((ABNORMAL, String::new()));
    link.closed(code, reason).await;
}

/// The client is gone, or did not take a frame in time.
struct Gone;

/// What the outbound queue asked for after the frames ahead of it.
enum Control {
    Close(u16, String),
    /// The host cut this socket off (its send queue overflowed).
    CutOff,
}

/// Frames queued behind `first` that go out with it in one write: a commit releases
/// several events' frames at once, and one write per frame cost a syscall each.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// Sends `first` and the frames already queued behind it, flushed once; returns the close
/// that was queued after them, if any.
async fn send_queued<S>(
    ws: &mut WebSocketStream<S>,
    first: Frame,
    outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    close: &mut Option<(u16, String)>,
) -> Result<Option<Control>, Gone>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::sync::mpsc::error::TryRecvError;
    let mut control = None;
    let write = async {
        ws.feed(ws_message(first)).await?;
        for _ in 1..MAX_FRAMES_PER_WRITE {
            match outbound.try_recv() {
                Ok(Outbound::Frame(frame)) => ws.feed(ws_message(frame)).await?,
                Ok(Outbound::Close(code, reason)) => {
                    control = Some(Control::Close(code, reason));
                    break;
                }
                Ok(Outbound::Failed { message, reason }) => {
                    ws.feed(ws_message(error_frame(&message))).await?;
                    control = Some(Control::Close(FAILED, reason));
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    control = Some(Control::CutOff);
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        ws.flush().await
    };
    let sent = tokio::time::timeout(SEND_TIMEOUT, write).await;
    taken(sent, close).then_some(control).ok_or(Gone)
}

/// Sends one frame; false when the client is gone or does not take it in time.
async fn send<S>(
    ws: &mut WebSocketStream<S>,
    msg: WsMessage,
    close: &mut Option<(u16, String)>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    taken(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(msg)).await,
        close,
    )
}

/// Whether a bounded write went through. A client that does not take its frames in time
/// counts as a reader too slow to keep: 1008.
fn taken(
    sent: Result<Result<(), WsError>, tokio::time::error::Elapsed>,
    close: &mut Option<(u16, String)>,
) -> bool {
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            crate::metrics::refusals::count("socket_send_queue");
            close.get_or_insert((1008, "too slow: a frame was not taken in time".into()));
            false
        }
    }
}

/// The WebSocket message for a frame the object sent, sharing its payload: `Text` only
/// holds UTF-8, so the check cannot fail (and costs no copy).
fn ws_message(frame: Frame) -> WsMessage {
    match frame {
        Frame::Text(t) => {
            let bytes = t.into_bytes();
            match Utf8Bytes::try_from(bytes.clone()) {
                Ok(text) => WsMessage::Text(text),
                Err(_) => WsMessage::Binary(bytes),
            }
        }
        Frame::Binary(b) => WsMessage::Binary(b),
    }
}

/// Sends the host's close frame and starts waiting (bounded) for the client's answer.
async fn start_close<S>(
    ws: &mut WebSocketStream<S>,
    close: &mut Option<(u16, String)>,
    closing: &mut Option<Instant>,
    code: u16,
    reason: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    close.get_or_insert((code, reason.to_string()));
    if tokio::time::timeout(SEND_TIMEOUT, ws.close(Some(close_frame(code, reason))))
        .await
        .is_err()
    {
        // The close frame itself is stuck behind unread data: give up right away.
        *closing = Some(Instant::now());
        return;
    }
    *closing = Some(Instant::now() + CLOSE_TIMEOUT);
}

/// The close code after an object failed on a client's message (internal error).
const FAILED: u16 = 1011;

/// The frame that tells a client the object failed on its message:
/// `{"type": "error", "error": "..."}`.
fn error_frame(message: &str) -> Frame {
    let json = serde_json::json!({ "type": "error", "error": message });
    Frame::Text(json.to_string().into())
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    }
}

/// The close code to answer a read error with, if the connection can still carry one.
fn error_close(e: &WsError) -> (Option<u16>, &'static str) {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            crate::metrics::refusals::count("max_message_bytes");
            (Some(1009), "message too big")
        }
        WsError::Capacity(_) => {
            crate::metrics::refusals::count("max_message_bytes");
            (Some(1009), "frame too big")
        }
        WsError::Utf8(_) => (Some(1007), "invalid UTF-8 in a text frame"),
        WsError::Protocol(_) => (Some(1002), "WebSocket protocol error"),
        _ => (None, ""),
    }
}
