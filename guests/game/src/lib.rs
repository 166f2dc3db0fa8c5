//! `game`: multiplayer Connect Four with server-authoritative rules.
//!
//! One class, two kinds of object, chosen by name:
//!
//! * `lobby` (`/game/lobby`): pairs waiting players first come, first served and sends each
//!   pair to a fresh room with a random name; also mints shareable room names.
//! * anything else (`/game/{room}`): a game room. The first two distinct joiners take the
//!   seats and get a secret token that gives the seat back on reconnect; everyone else
//!   watches. The room validates every move, detects wins and draws, runs a turn clock on
//!   the object's alarm, and deletes itself some time after its last socket closed.
//!
//! Layout: the rules are pure modules ([`board`], [`room`], [`lobby`], [`protocol`]); the
//! glue ([`app`]) reaches the host only through the [`host::Host`] trait, so both are tested
//! natively (the glue against an in-memory fake host). This file only adapts the SDK's
//! [`Object`] trait to [`app::App`]. The wire protocol is `docs/game-protocol.md`.

mod app;
mod board;
mod host;
mod lobby;
mod protocol;
mod room;

use lodge_sdk::{Connect, Message, Object, Request, Response, Socket};

use app::{App, Outcome};
use host::Sdk;

/// The exported class.
struct ConnectFour(App);

impl Object for ConnectFour {
    fn activate() -> Self {
        ConnectFour(App::activate(&Sdk))
    }

    fn on_request(&mut self, request: Request) -> Response {
        self.0.on_request(&Sdk, &request)
    }

    fn on_connect(&mut self, socket: Socket, request: &Request) -> Connect {
        match self.0.on_connect(&Sdk, socket.id(), request) {
            Outcome::Accept { tags, attachment } => {
                Connect::accept().tags(tags).attachment(&attachment)
            }
            Outcome::Reject(response) => Connect::reject(response),
        }
    }

    fn on_message(&mut self, socket: Socket, message: Message) {
        match message {
            Message::Text(text) => self.0.on_text(&Sdk, socket.id(), &text),
            Message::Binary(_) => self.0.on_binary(&Sdk, socket.id()),
        }
    }

    fn on_close(&mut self, socket: Socket, _code: u16, _reason: String) {
        self.0.on_close(&Sdk, socket.id())
    }

    fn on_alarm(&mut self, _retry: u32) {
        self.0.on_alarm(&Sdk)
    }
}

lodge_sdk::export!(ConnectFour);
