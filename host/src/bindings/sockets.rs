//! `lodge:object/sockets`: frames and closes are queued as event outputs; tags,
//! attachments and the auto-response live in the host's socket table.

use bytes::Bytes;

use super::lodge::object::sockets::{AutoResponse, Host, SocketError};
use super::lodge::object::types::Message;
use super::{Budget, HostState, Output};
use crate::sockets::{self as table, Frame};

type Res<T> = wasmtime::Result<Result<T, SocketError>>;

/// What queueing one frame for one more socket costs the host, besides the shared payload.
const PER_TARGET: usize = 64;

impl HostState {
    fn frame(&mut self, message: Message) -> Result<Frame, SocketError> {
        let max = self.object.limits.max_message_bytes;
        let frame = match message {
            Message::Text(t) => Frame::Text(t.into()),
            Message::Binary(b) => Frame::Binary(Bytes::from(b)),
        };
        if frame.len() > max {
            let detail = format!("message of {} bytes; the limit is {max}", frame.len());
            self.refused("max_message_bytes", &detail);
            return Err(SocketError::TooLarge(detail));
        }
        Ok(frame)
    }

    fn sockets(&self) -> super::Ranked<'_, table::SocketTable> {
        self.object.sockets()
    }
}

impl Host for HostState {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn send(&mut self, socket: u64, message: Message) -> Res<()> {
        let frame = match self.frame(message) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        if self.sockets().live(socket).is_none() {
            return Ok(Err(SocketError::NotFound));
        }
        if let Err(detail) = self.charge(Budget::Send, frame.len() + PER_TARGET) {
            return Ok(Err(SocketError::TooLarge(detail)));
        }
        self.event.outputs.push(Output::Send(socket, frame));
        Ok(Ok(()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn broadcast(
        &mut self,
        message: Message,
        tag: Option<String>,
        except: Vec<u64>,
    ) -> Res<u32> {
        let frame = match self.frame(message) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let mut targets = self.sockets().list(tag.as_deref());
        targets.retain(|id| !except.contains(id));
        // The payload is shared by every copy: it is charged once, each target a little.
        let cost = frame
            .len()
            .saturating_add(PER_TARGET.saturating_mul(targets.len()));
        if let Err(detail) = self.charge(Budget::Send, cost) {
            return Ok(Err(SocketError::TooLarge(detail)));
        }
        let count = targets.len() as u32;
        for id in targets {
            self.event.outputs.push(Output::Send(id, frame.clone()));
        }
        Ok(Ok(count))
    }

    async fn close(&mut self, socket: u64, code: u16, reason: String) -> Res<()> {
        if self.sockets().live(socket).is_none() {
            return Ok(Err(SocketError::NotFound));
        }
        // RFC 6455: only 1000 and 3000-4999 may be sent by an application.
        let code = if code == 1000 || (3000..5000).contains(&code) {
            code
        } else {
            1000
        };
        let mut reason = reason;
        // A close frame's reason must fit in 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        self.event.outputs.push(Output::Close(socket, code, reason));
        Ok(Ok(()))
    }

    async fn list(&mut self, tag: Option<String>) -> wasmtime::Result<Vec<u64>> {
        Ok(self.sockets().list(tag.as_deref()))
    }

    async fn tags(&mut self, socket: u64) -> Res<Vec<String>> {
        Ok(self
            .sockets()
            .get(socket)
            .map(|s| s.tags.clone())
            .ok_or(SocketError::NotFound))
    }

    async fn attachment(&mut self, socket: u64) -> Res<Vec<u8>> {
        Ok(self
            .sockets()
            .get(socket)
            .map(|s| s.attachment.clone())
            .ok_or(SocketError::NotFound))
    }

    async fn set_attachment(&mut self, socket: u64, data: Vec<u8>) -> Res<()> {
        let max = self.object.limits.max_attachment_bytes;
        if data.len() > max {
            let detail = format!("attachment of {} bytes; the limit is {max}", data.len());
            self.refused("max_attachment_bytes", &detail);
            return Ok(Err(SocketError::TooLarge(detail)));
        }
        let mut sockets = self.sockets();
        match sockets.get_mut(socket) {
            Some(s) => {
                s.attachment = data;
                Ok(Ok(()))
            }
            None => Ok(Err(SocketError::NotFound)),
        }
    }

    async fn set_auto_response(&mut self, pair: Option<AutoResponse>) -> wasmtime::Result<()> {
        let max = self.object.limits.max_message_bytes;
        if let Some(p) = &pair
            && p.request.len().max(p.response.len()) > max
        {
            // The interface has no error here: a pair no client frame could match or the
            // host could send is refused (and logged) instead of kept.
            let detail = format!("auto-response text over the message limit of {max} bytes");
            self.refused("max_message_bytes", &detail);
            return Ok(());
        }
        self.sockets().auto_response = pair.map(|p| table::AutoResponse {
            request: p.request,
            response: p.response,
        });
        Ok(())
    }
}
