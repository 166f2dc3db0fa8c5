//! One WebSocket connection: frames from the client go to the object's mailbox (or are
//! answered by the auto-response without waking it); frames the object sent come from
//! the socket's outbound queue after the gate released them. The connection belongs to
//! the host, so it keeps running while the object is evicted.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::bindings::Message;
use crate::runtime::{Frame, Outbound, SocketLink};

/// Close code when the connection ended without a close frame (RFC 6455 §7.1.5).
const ABNORMAL: u16 = 1006;

/// The WebSocket settings for a message size limit.
pub fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Runs the connection until it closes, then tells the object.
pub async fn run(upgraded: Upgraded, mut link: SocketLink, max_message_bytes: usize) {
    let io = TokioIo::new(upgraded);
    let mut ws =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config(max_message_bytes))).await;
    let mut close: Option<(u16, String)> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Some(answer) = link.auto_response(text.as_str()) {
                            if ws.send(WsMessage::Text(answer.into())).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        if link.deliver(Message::Text(text.as_str().to_owned())).await.is_err() {
                            let _ = ws.close(Some(close_frame(1001, "the server is shutting down"))).await;
                            closing = true;
                        }
                    }
                    Some(Ok(WsMessage::Binary(data))) => {
                        if link.deliver(Message::Binary(data.to_vec())).await.is_err() {
                            let _ = ws.close(Some(close_frame(1001, "the server is shutting down"))).await;
                            closing = true;
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
                            let _ = ws.close(Some(close_frame(code, reason))).await;
                            close.get_or_insert((code, reason.to_string()));
                        }
                        break;
                    }
                    None => break,
                }
            }
            out = link.outbound.recv(), if !closing => {
                match out {
                    Some(Outbound::Frame(frame)) => {
                        let msg = match frame {
                            Frame::Text(t) => WsMessage::Text(Utf8Bytes::from(&*t)),
                            Frame::Binary(b) => WsMessage::Binary(b),
                        };
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        close.get_or_insert((code, reason.clone()));
                        let _ = ws.close(Some(close_frame(code, &reason))).await;
                        closing = true;
                    }
                    None => {
                        // The host cut this socket off (its send queue overflowed).
                        let reason = "too slow: the send queue is full";
                        close.get_or_insert((1008, reason.into()));
                        let _ = ws.close(Some(close_frame(1008, reason))).await;
                        closing = true;
                    }
                }
            }
        }
    }
    let (code, reason) = close.unwrap_or((ABNORMAL, String::new()));
    link.closed(code, reason).await;
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
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => (Some(1009), "message too big"),
        WsError::Capacity(_) => (Some(1009), "frame too big"),
        WsError::Utf8(_) => (Some(1007), "invalid UTF-8 in a text frame"),
        WsError::Protocol(_) => (Some(1002), "WebSocket protocol error"),
        _ => (None, ""),
    }
}
