//! One game room as a pure state machine: seats, the current game, rematches, the turn
//! clock and the empty-room cleanup timer.
//!
//! Everything the room must remember lives in [`Room`], which is stored whole under one key,
//! so each event reads it, changes it and writes it back atomically. Nothing here calls the
//! host: the caller passes the time, who is connected and fresh token hashes, and does the
//! storage, socket and alarm work (see `lib.rs`). That keeps every rule testable natively.
//!
//! Seats are *slots* (0 = first joiner, 1 = second) that never change for the life of the
//! room; which slot plays red changes on every rematch ([`Room::red_slot`]), so sockets
//! remember their slot, not their color.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::board::{Board, COLS, Cell, Color, DropError};

/// The room's timing settings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long each player has for a move.
    pub turn_ms: u64,
    /// How long an empty room (no sockets) is kept before its storage is deleted.
    pub cleanup_ms: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            turn_ms: 30_000,
            cleanup_ms: 300_000,
        }
    }
}

/// Where a game stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fewer than two seats are taken.
    #[default]
    Waiting,
    /// Both seats are taken and the game is on.
    Playing,
    /// Someone won (`winner` says who, `reason` how).
    Won,
    /// The board filled up without four in a row.
    Draw,
    /// The player to move ran out of time while neither player was connected.
    Abandoned,
}

impl Status {
    /// Whether the game has ended.
    pub fn is_over(self) -> bool {
        matches!(self, Status::Won | Status::Draw | Status::Abandoned)
    }

    fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Playing => "playing",
            Status::Won => "won",
            Status::Draw => "draw",
            Status::Abandoned => "abandoned",
        }
    }
}

/// Why a game ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The winner connected four.
    FourInARow,
    /// The loser resigned.
    Resign,
    /// The loser's turn clock ran out.
    Timeout,
    /// The board is full (a draw).
    BoardFull,
    /// The clock ran out with neither player connected (no winner).
    Abandoned,
}

/// One accepted move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub color: Color,
    pub column: usize,
    pub row: usize,
    /// When it was accepted (ms since the epoch).
    pub at: u64,
}

/// One game of the room (a rematch starts a new one). Fields missing from a stored value
/// (written by an older version) take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Game {
    pub board: Board,
    pub status: Status,
    /// Whose turn it is while playing.
    pub turn: Option<Color>,
    pub moves: Vec<Move>,
    pub winner: Option<Color>,
    pub winning_cells: Vec<Cell>,
    pub reason: Option<Reason>,
    /// When the player to move forfeits (ms since the epoch), while playing.
    pub turn_deadline: Option<u64>,
    /// The move count when `turn_deadline` was set: the deadline only applies to that turn.
    pub deadline_moves: usize,
    /// Host downtime during this turn already added to `turn_deadline` (time the host was
    /// not running is nobody's turn).
    pub paused_ms: u64,
    pub started_at: Option<u64>,
    pub ended_at: Option<u64>,
}

impl Game {
    /// A game that starts now: red to move, the clock running.
    fn started(now: u64, settings: &Settings) -> Game {
        Game {
            status: Status::Playing,
            turn: Some(Color::Red),
            turn_deadline: Some(now.saturating_add(settings.turn_ms)),
            started_at: Some(now),
            ..Game::default()
        }
    }

    fn finish(&mut self, status: Status, winner: Option<Color>, reason: Reason, now: u64) {
        self.status = status;
        self.winner = winner;
        self.reason = Some(reason);
        self.turn = None;
        self.turn_deadline = None;
        self.ended_at = Some(now);
    }
}

/// A player holding a seat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub name: String,
    /// SHA-256 of the seat token, hex. The token itself is only in the client and in its
    /// sockets' attachments.
    pub token_hash: String,
    pub joined_at: u64,
}

/// Everything a room remembers, stored whole under the `room` key. Fields missing from a
/// stored value (written by an older version) take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    /// Slot 0 (first joiner) and slot 1 (second joiner).
    pub seats: [Option<Seat>; 2],
    /// Which slot plays red in the current game; swapped by every rematch.
    pub red_slot: usize,
    /// Games started in this room (0 until the second seat is taken).
    pub game_no: u32,
    pub game: Game,
    /// Which slots asked for a rematch of the finished game.
    pub rematch: [bool; 2],
    /// When the room, empty since then, is deleted (ms since the epoch).
    pub cleanup_at: Option<u64>,
}

/// What a joining socket became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// It holds seat `slot`; `new` when it took the seat now (the token was just issued),
    /// false when its token reclaimed it.
    Player { slot: usize, new: bool },
    /// It watches.
    Spectator,
}

/// Why a client's request was refused. The room does not change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomError {
    NotSeated,
    BadToken,
    NotPlaying(Status),
    NotYourTurn,
    ColumnOutOfRange,
    ColumnFull(usize),
    NotOver,
}

impl RoomError {
    /// A stable machine-readable code for the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::NotSeated => "not_seated",
            RoomError::BadToken => "bad_token",
            RoomError::NotPlaying(_) => "not_playing",
            RoomError::NotYourTurn => "not_your_turn",
            RoomError::ColumnOutOfRange => "bad_column",
            RoomError::ColumnFull(_) => "column_full",
            RoomError::NotOver => "not_over",
        }
    }
}

impl std::fmt::Display for RoomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoomError::NotSeated => write!(f, "you do not hold a seat (spectators cannot play)"),
            RoomError::BadToken => write!(f, "your seat token is no longer valid"),
            RoomError::NotPlaying(s) => {
                write!(f, "the game is not in progress (status {})", s.as_str())
            }
            RoomError::NotYourTurn => write!(f, "it is not your turn"),
            RoomError::ColumnOutOfRange => {
                write!(f, "column must be an integer from 0 to {}", COLS - 1)
            }
            RoomError::ColumnFull(c) => write!(f, "column {c} is full"),
            RoomError::NotOver => write!(f, "a rematch can only be asked for after the game ends"),
        }
    }
}

/// What the alarm did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmOutcome {
    /// Nothing was due (early, or already handled by an earlier attempt).
    Nothing,
    /// The player to move forfeited on time.
    TimedOut,
    /// The clock ran out with nobody seated connected.
    Abandoned,
    /// The empty room's time is up: delete its storage.
    Cleanup,
    /// Cleanup was due but someone is connected again: it was cancelled.
    CleanupCancelled,
}

/// Who is connected right now, as the sockets show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Per slot: whether at least one socket holding that seat is open.
    pub seated: [bool; 2],
    /// Open spectator sockets.
    pub spectators: usize,
}

impl Presence {
    /// Whether any socket is open.
    pub fn anyone(&self) -> bool {
        self.seated[0] || self.seated[1] || self.spectators > 0
    }
}

impl Room {
    /// The color slot `slot` plays in the current game.
    pub fn color_of(&self, slot: usize) -> Color {
        if slot == self.red_slot {
            Color::Red
        } else {
            Color::Yellow
        }
    }

    /// The slot playing `color` in the current game.
    pub fn slot_of(&self, color: Color) -> usize {
        match color {
            Color::Red => self.red_slot,
            Color::Yellow => 1 - self.red_slot,
        }
    }

    /// The slot whose token hashes to `token_hash`.
    pub fn slot_by_token(&self, token_hash: &str) -> Option<usize> {
        self.seats
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.token_hash == token_hash))
    }

    /// Checks that a socket's remembered seat (slot and token hash, from its attachment)
    /// is still that seat.
    pub fn check_seat(
        &self,
        slot: Option<usize>,
        token_hash: Option<&str>,
    ) -> Result<usize, RoomError> {
        let slot = slot.filter(|&s| s < 2).ok_or(RoomError::NotSeated)?;
        match (&self.seats[slot], token_hash) {
            (Some(seat), Some(hash)) if seat.token_hash == hash => Ok(slot),
            _ => Err(RoomError::BadToken),
        }
    }

    /// A socket joins. `token_hash` is the hash of the token it presented (if any);
    /// `fresh_hash` is the hash of a new token, used if it takes a free seat. The second
    /// seat taken starts the first game. Any join cancels a pending cleanup.
    pub fn join(
        &mut self,
        name: &str,
        token_hash: Option<&str>,
        spectate: bool,
        fresh_hash: &str,
        now: u64,
        settings: &Settings,
    ) -> Joined {
        self.cleanup_at = None;
        if let Some(slot) = token_hash.and_then(|h| self.slot_by_token(h)) {
            return Joined::Player { slot, new: false };
        }
        if spectate {
            return Joined::Spectator;
        }
        let Some(slot) = self.seats.iter().position(Option::is_none) else {
            return Joined::Spectator;
        };
        self.seats[slot] = Some(Seat {
            name: name.to_string(),
            token_hash: fresh_hash.to_string(),
            joined_at: now,
        });
        if self.seats.iter().all(Option::is_some) && self.game.status == Status::Waiting {
            self.game_no += 1;
            self.game = Game::started(now, settings);
        }
        Joined::Player { slot, new: true }
    }

    /// Seat `slot` drops a piece into `column` (as sent: anything not in 0..=6 is refused).
    pub fn play(
        &mut self,
        slot: usize,
        column: i64,
        now: u64,
        settings: &Settings,
    ) -> Result<(), RoomError> {
        let game = &self.game;
        if game.status != Status::Playing {
            return Err(RoomError::NotPlaying(game.status));
        }
        let color = self.color_of(slot);
        if game.turn != Some(color) {
            return Err(RoomError::NotYourTurn);
        }
        let col = usize::try_from(column)
            .ok()
            .filter(|&c| c < COLS)
            .ok_or(RoomError::ColumnOutOfRange)?;
        let game = &mut self.game;
        let row = game.board.drop_piece(col, color).map_err(|e| match e {
            DropError::OutOfRange => RoomError::ColumnOutOfRange,
            DropError::ColumnFull => RoomError::ColumnFull(col),
        })?;
        game.moves.push(Move {
            color,
            column: col,
            row,
            at: now,
        });
        let line = game.board.winning_cells(row, col);
        if !line.is_empty() {
            game.winning_cells = line;
            game.finish(Status::Won, Some(color), Reason::FourInARow, now);
        } else if game.board.is_full() {
            game.finish(Status::Draw, None, Reason::BoardFull, now);
        } else {
            game.turn = Some(color.other());
            game.turn_deadline = Some(now.saturating_add(settings.turn_ms));
            game.deadline_moves = game.moves.len();
            game.paused_ms = 0;
        }
        Ok(())
    }

    /// Seat `slot` gives up; the other seat wins.
    pub fn resign(&mut self, slot: usize, now: u64) -> Result<(), RoomError> {
        if self.game.status != Status::Playing {
            return Err(RoomError::NotPlaying(self.game.status));
        }
        let winner = self.color_of(slot).other();
        self.game
            .finish(Status::Won, Some(winner), Reason::Resign, now);
        Ok(())
    }

    /// Seat `slot` asks for a rematch; returns true when that started a new game (both
    /// asked), with colors swapped.
    pub fn request_rematch(
        &mut self,
        slot: usize,
        now: u64,
        settings: &Settings,
    ) -> Result<bool, RoomError> {
        if !self.game.status.is_over() {
            return Err(RoomError::NotOver);
        }
        self.rematch[slot] = true;
        if self.rematch == [true, true] {
            self.rematch = [false, false];
            self.red_slot = 1 - self.red_slot;
            self.game_no += 1;
            self.game = Game::started(now, settings);
            return Ok(true);
        }
        Ok(false)
    }

    /// The last socket closed: the room is deleted after the cleanup delay unless someone
    /// joins before.
    pub fn emptied(&mut self, now: u64, settings: &Settings) {
        self.cleanup_at = Some(now.saturating_add(settings.cleanup_ms));
    }

    /// When the running turn started, while a game is on.
    pub fn turn_started(&self, settings: &Settings) -> Option<u64> {
        let game = &self.game;
        if game.status != Status::Playing {
            return None;
        }
        game.turn_deadline.map(|d| {
            d.saturating_sub(settings.turn_ms)
                .saturating_sub(game.paused_ms)
        })
    }

    /// `down` ms of host downtime fell in the running turn (since [`Room::turn_started`]):
    /// the deadline moves by what was not added yet, so the player to move loses nothing to
    /// a host restart. Returns whether it moved.
    pub fn credit_downtime(&mut self, down: u64) -> bool {
        let game = &mut self.game;
        let owed = down.saturating_sub(game.paused_ms);
        match &mut game.turn_deadline {
            Some(deadline) if game.status == Status::Playing && owed > 0 => {
                *deadline = deadline.saturating_add(owed);
                game.paused_ms = down;
                true
            }
            _ => false,
        }
    }

    /// The alarm fired. Idempotent: running it again with the same inputs after it took
    /// effect finds nothing due. After it, [`Room::next_alarm`] is in the future.
    ///
    /// A room found with no socket open and no cleanup scheduled (its sockets vanished
    /// without close events, as in a host restart) gets its cleanup scheduled here.
    pub fn on_alarm(&mut self, now: u64, presence: &Presence, settings: &Settings) -> AlarmOutcome {
        let mut outcome = AlarmOutcome::Nothing;
        let game = &mut self.game;
        if game.status == Status::Playing
            && game.turn_deadline.is_some_and(|d| d <= now)
            && game.moves.len() == game.deadline_moves
        {
            let mover = game.turn.unwrap_or(Color::Red);
            if presence.seated == [false, false] {
                game.finish(Status::Abandoned, None, Reason::Abandoned, now);
                outcome = AlarmOutcome::Abandoned;
            } else {
                game.finish(Status::Won, Some(mover.other()), Reason::Timeout, now);
                outcome = AlarmOutcome::TimedOut;
            }
        }
        if self.cleanup_at.is_some_and(|at| at <= now) {
            if presence.anyone() {
                self.cleanup_at = None;
                if outcome == AlarmOutcome::Nothing {
                    outcome = AlarmOutcome::CleanupCancelled;
                }
            } else {
                return AlarmOutcome::Cleanup;
            }
        }
        if !presence.anyone() && self.cleanup_at.is_none() && *self != Room::default() {
            self.emptied(now, settings);
        }
        outcome
    }

    /// When the alarm should next fire: the earlier of the turn deadline and the cleanup.
    pub fn next_alarm(&self) -> Option<u64> {
        let deadline = match self.game.status {
            Status::Playing => self.game.turn_deadline,
            _ => None,
        };
        match (deadline, self.cleanup_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the alarm should fire after an event at `now`: [`Room::next_alarm`] or, for a
    /// room someone sat in that has nothing due, a check one cleanup period later (at
    /// least a second), re-armed by every event until something is due.
    ///
    /// Sockets can vanish without close events (a host restart drops them all), and then
    /// no close ever schedules the cleanup; the check alarm finds the room empty and
    /// schedules it (see [`Room::on_alarm`]). While a game is on, the turn deadline does
    /// that job.
    pub fn alarm_after(&self, now: u64, settings: &Settings) -> Option<u64> {
        self.next_alarm().or_else(|| {
            (*self != Room::default()).then(|| now.saturating_add(settings.cleanup_ms.max(1_000)))
        })
    }

    /// The `state` frame everyone receives (also `GET /state`).
    pub fn view(&self, room: &str, presence: &Presence, now: u64, settings: &Settings) -> Value {
        let player = |color: Color| -> Value {
            let slot = self.slot_of(color);
            match &self.seats[slot] {
                Some(seat) => json!({
                    "name": seat.name,
                    "connected": presence.seated[slot],
                    "rematch": self.rematch[slot],
                }),
                None => Value::Null,
            }
        };
        let g = &self.game;
        json!({
            "type": "state",
            "room": room,
            "game": self.game_no,
            "status": g.status,
            "board": g.board,
            "turn": g.turn,
            "players": { "red": player(Color::Red), "yellow": player(Color::Yellow) },
            "spectators": presence.spectators,
            "moves": g.moves,
            "winner": g.winner,
            "winning_cells": g.winning_cells,
            "reason": g.reason,
            "turn_deadline": if g.status == Status::Playing { g.turn_deadline } else { None },
            "turn_seconds": settings.turn_ms / 1000,
            "now": now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        turn_ms: 30_000,
        cleanup_ms: 300_000,
    };
    const BOTH: Presence = Presence {
        seated: [true, true],
        spectators: 0,
    };

    /// A room where "a" (slot 0, red) and "b" (slot 1, yellow) sat down at t=1000.
    fn playing() -> Room {
        let mut r = Room::default();
        assert_eq!(
            r.join("a", None, false, "ha", 1000, &S),
            Joined::Player { slot: 0, new: true }
        );
        assert_eq!(r.game.status, Status::Waiting);
        assert_eq!(r.next_alarm(), None);
        assert_eq!(
            r.join("b", None, false, "hb", 1000, &S),
            Joined::Player { slot: 1, new: true }
        );
        r
    }

    #[test]
    fn second_seat_starts_the_game_with_red_to_move() {
        let r = playing();
        assert_eq!(r.game.status, Status::Playing);
        assert_eq!(r.game.turn, Some(Color::Red));
        assert_eq!(r.game.turn_deadline, Some(31_000));
        assert_eq!(r.game_no, 1);
        assert_eq!(r.color_of(0), Color::Red);
        assert_eq!(r.next_alarm(), Some(31_000));
    }

    #[test]
    fn third_joiner_and_spectate_flag_watch() {
        let mut r = playing();
        assert_eq!(r.join("c", None, false, "hc", 2000, &S), Joined::Spectator);
        let mut empty = Room::default();
        assert_eq!(
            empty.join("c", None, true, "hc", 2000, &S),
            Joined::Spectator
        );
        assert_eq!(empty.seats, [None, None]);
    }

    #[test]
    fn token_reclaims_the_seat_and_a_wrong_one_does_not() {
        let mut r = playing();
        let before = r.clone();
        assert_eq!(
            r.join("x", Some("hb"), false, "new", 5000, &S),
            Joined::Player {
                slot: 1,
                new: false
            }
        );
        // Also when asking to spectate: the token wins.
        assert_eq!(
            r.join("x", Some("ha"), true, "new", 5000, &S),
            Joined::Player {
                slot: 0,
                new: false
            }
        );
        assert_eq!(r, before, "reclaiming changes nothing");
        assert_eq!(
            r.join("x", Some("nope"), false, "new", 5000, &S),
            Joined::Spectator
        );
        // Into an empty room a stale token is just a newcomer.
        let mut fresh = Room::default();
        assert_eq!(
            fresh.join("x", Some("nope"), false, "hx", 1, &S),
            Joined::Player { slot: 0, new: true }
        );
    }

    #[test]
    fn check_seat_needs_slot_and_matching_token() {
        let r = playing();
        assert_eq!(r.check_seat(Some(1), Some("hb")), Ok(1));
        assert_eq!(r.check_seat(None, None), Err(RoomError::NotSeated));
        assert_eq!(r.check_seat(Some(5), Some("hb")), Err(RoomError::NotSeated));
        assert_eq!(r.check_seat(Some(1), Some("ha")), Err(RoomError::BadToken));
        assert_eq!(r.check_seat(Some(1), None), Err(RoomError::BadToken));
        assert_eq!(
            Room::default().check_seat(Some(0), Some("ha")),
            Err(RoomError::BadToken)
        );
    }

    #[test]
    fn moves_alternate_and_invalid_ones_change_nothing() {
        let mut r = playing();
        let before = r.clone();
        assert_eq!(r.play(1, 3, 2000, &S), Err(RoomError::NotYourTurn));
        assert_eq!(r.play(0, 7, 2000, &S), Err(RoomError::ColumnOutOfRange));
        assert_eq!(r.play(0, -1, 2000, &S), Err(RoomError::ColumnOutOfRange));
        assert_eq!(r, before);
        r.play(0, 3, 2000, &S).unwrap();
        assert_eq!(r.game.turn, Some(Color::Yellow));
        assert_eq!(r.game.turn_deadline, Some(32_000));
        assert_eq!(r.game.deadline_moves, 1);
        assert_eq!(
            r.game.moves,
            vec![Move {
                color: Color::Red,
                column: 3,
                row: 5,
                at: 2000
            }]
        );
        assert_eq!(r.play(0, 3, 2100, &S), Err(RoomError::NotYourTurn));
        r.play(1, 3, 2200, &S).unwrap();
        assert_eq!(r.game.turn, Some(Color::Red));
    }

    #[test]
    fn full_column_is_refused() {
        let mut r = playing();
        for i in 0..6 {
            r.play(i % 2, 0, 2000 + i as u64, &S).unwrap();
        }
        let before = r.clone();
        assert_eq!(r.play(0, 0, 3000, &S), Err(RoomError::ColumnFull(0)));
        assert_eq!(r, before);
    }

    #[test]
    fn four_in_a_row_wins_and_ends_the_clock() {
        let mut r = playing();
        for (slot, col) in [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)] {
            r.play(slot, col, 2000, &S).unwrap();
        }
        r.play(0, 3, 2500, &S).unwrap();
        assert_eq!(r.game.status, Status::Won);
        assert_eq!(r.game.winner, Some(Color::Red));
        assert_eq!(r.game.reason, Some(Reason::FourInARow));
        assert_eq!(r.game.winning_cells, vec![(5, 0), (5, 1), (5, 2), (5, 3)]);
        assert_eq!(r.game.turn, None);
        assert_eq!(r.game.ended_at, Some(2500));
        assert_eq!(r.next_alarm(), None);
        assert_eq!(
            r.play(1, 4, 2600, &S),
            Err(RoomError::NotPlaying(Status::Won))
        );
        assert_eq!(r.resign(1, 2600), Err(RoomError::NotPlaying(Status::Won)));
    }

    #[test]
    fn full_board_is_a_draw() {
        let mut r = playing();
        // Columns filled in pairs so no four ever lines up: a classic drawn pattern.
        let order = [
            0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 2, 3, 2, 3, 2, 3, 3, 2, 3, 2, 3, 2, 4, 5, 4, 5, 4,
            5, 5, 4, 5, 4, 5, 4, 6, 6, 6, 6, 6, 6,
        ];
        for (i, col) in order.iter().enumerate() {
            let slot = i % 2;
            assert_eq!(r.game.status, Status::Playing, "move {i}");
            r.play(slot, *col, 2000, &S).unwrap();
        }
        assert_eq!(r.game.status, Status::Draw);
        assert_eq!(r.game.reason, Some(Reason::BoardFull));
        assert_eq!(r.game.winner, None);
        assert_eq!(r.game.moves.len(), 42);
    }

    #[test]
    fn resign_hands_the_win_to_the_other_color() {
        let mut r = playing();
        r.resign(0, 3000).unwrap();
        assert_eq!(r.game.status, Status::Won);
        assert_eq!(r.game.winner, Some(Color::Yellow));
        assert_eq!(r.game.reason, Some(Reason::Resign));
        let mut w = Room::default();
        w.join("a", None, false, "ha", 0, &S);
        assert_eq!(w.resign(0, 1), Err(RoomError::NotPlaying(Status::Waiting)));
    }

    #[test]
    fn rematch_needs_both_and_swaps_colors() {
        let mut r = playing();
        assert_eq!(r.request_rematch(0, 2000, &S), Err(RoomError::NotOver));
        r.resign(1, 3000).unwrap();
        assert_eq!(r.request_rematch(0, 4000, &S), Ok(false));
        assert_eq!(
            r.request_rematch(0, 4100, &S),
            Ok(false),
            "asking twice is harmless"
        );
        assert_eq!(r.rematch, [true, false]);
        assert_eq!(r.request_rematch(1, 5000, &S), Ok(true));
        assert_eq!(r.game_no, 2);
        assert_eq!(r.color_of(0), Color::Yellow);
        assert_eq!(r.color_of(1), Color::Red);
        assert_eq!(r.game.status, Status::Playing);
        assert_eq!(r.game.turn, Some(Color::Red));
        assert!(r.game.moves.is_empty());
        assert_eq!(r.rematch, [false, false]);
        // Slot 1 is red now and moves first.
        assert_eq!(r.play(0, 3, 5100, &S), Err(RoomError::NotYourTurn));
        r.play(1, 3, 5100, &S).unwrap();
        assert_eq!(r.game.moves[0].color, Color::Red);
    }

    #[test]
    fn timeout_forfeits_the_player_to_move_once() {
        let mut r = playing();
        r.play(0, 3, 2000, &S).unwrap(); // yellow to move, deadline 32_000
        assert_eq!(
            r.on_alarm(31_999, &BOTH, &S),
            AlarmOutcome::Nothing,
            "early alarm"
        );
        assert_eq!(r.game.status, Status::Playing);
        assert_eq!(r.on_alarm(32_000, &BOTH, &S), AlarmOutcome::TimedOut);
        assert_eq!(r.game.status, Status::Won);
        assert_eq!(r.game.winner, Some(Color::Red));
        assert_eq!(r.game.reason, Some(Reason::Timeout));
        let after = r.clone();
        assert_eq!(
            r.on_alarm(40_000, &BOTH, &S),
            AlarmOutcome::Nothing,
            "a retried alarm is a no-op"
        );
        assert_eq!(r, after);
        assert_eq!(r.next_alarm(), None);
    }

    #[test]
    fn stale_deadline_of_an_earlier_turn_does_not_fire() {
        let mut r = playing();
        r.play(0, 3, 2000, &S).unwrap();
        // Corrupt the bookkeeping as if the deadline belonged to an earlier move count.
        r.game.deadline_moves = 0;
        assert_eq!(r.on_alarm(100_000, &BOTH, &S), AlarmOutcome::Nothing);
        assert_eq!(r.game.status, Status::Playing);
    }

    #[test]
    fn host_downtime_in_a_turn_is_nobodys_time() {
        let mut r = playing(); // red to move since 1_000, deadline 31_000
        assert_eq!(r.turn_started(&S), Some(1_000));
        // The host was down from 10_000 to 60_000: its alarm fires at 60_000, late.
        assert!(r.credit_downtime(50_000));
        assert_eq!(r.game.turn_deadline, Some(81_000));
        assert_eq!(
            r.turn_started(&S),
            Some(1_000),
            "the turn still started then"
        );
        assert_eq!(
            r.on_alarm(60_000, &Presence::default(), &S),
            AlarmOutcome::Nothing
        );
        assert_eq!(
            r.game.status,
            Status::Playing,
            "not abandoned for the outage"
        );
        // Asked again with the same outage: nothing more is owed.
        assert!(!r.credit_downtime(50_000));
        assert_eq!(r.game.turn_deadline, Some(81_000));
        // The next move starts a turn with no credit.
        r.play(0, 3, 62_000, &S).unwrap();
        assert_eq!(r.game.paused_ms, 0);
        assert_eq!(r.game.turn_deadline, Some(92_000));
    }

    #[test]
    fn timeout_with_nobody_seated_connected_abandons() {
        let mut r = playing();
        let watchers = Presence {
            seated: [false, false],
            spectators: 3,
        };
        assert_eq!(r.on_alarm(31_000, &watchers, &S), AlarmOutcome::Abandoned);
        assert_eq!(r.game.status, Status::Abandoned);
        assert_eq!(r.game.winner, None);
        assert_eq!(r.game.reason, Some(Reason::Abandoned));
        // One side connected: the absent mover loses instead.
        let mut r = playing();
        let only_yellow = Presence {
            seated: [false, true],
            spectators: 0,
        };
        assert_eq!(r.on_alarm(31_000, &only_yellow, &S), AlarmOutcome::TimedOut);
        assert_eq!(r.game.winner, Some(Color::Yellow));
    }

    #[test]
    fn cleanup_is_the_earlier_alarm_and_only_runs_when_empty() {
        let mut r = playing();
        r.emptied(10_000, &S);
        assert_eq!(r.cleanup_at, Some(310_000));
        assert_eq!(
            r.next_alarm(),
            Some(31_000),
            "the turn deadline comes first"
        );
        let nobody = Presence::default();
        assert_eq!(r.on_alarm(31_000, &nobody, &S), AlarmOutcome::Abandoned);
        assert_eq!(r.next_alarm(), Some(310_000), "then the cleanup");
        assert_eq!(r.on_alarm(310_000, &nobody, &S), AlarmOutcome::Cleanup);
        // Someone came back before the alarm: cleanup is cancelled.
        let mut r = playing();
        r.resign(0, 2000).unwrap();
        r.emptied(3000, &S);
        let one = Presence {
            seated: [true, false],
            spectators: 0,
        };
        assert_eq!(
            r.on_alarm(303_000, &one, &S),
            AlarmOutcome::CleanupCancelled
        );
        assert_eq!(r.next_alarm(), None);
        // A join clears the timer too.
        r.emptied(4000, &S);
        r.join("c", None, false, "hc", 5000, &S);
        assert_eq!(r.cleanup_at, None);
    }

    #[test]
    fn sockets_lost_without_close_events_still_lead_to_cleanup() {
        // After a host restart nobody is connected, but no close was ever delivered.
        let mut r = playing();
        assert_eq!(r.cleanup_at, None);
        assert_eq!(
            r.on_alarm(31_000, &Presence::default(), &S),
            AlarmOutcome::Abandoned
        );
        assert_eq!(r.cleanup_at, Some(331_000));
        assert_eq!(r.next_alarm(), Some(331_000));
        // An untouched room stays untouched.
        let mut empty = Room::default();
        assert_eq!(
            empty.on_alarm(5, &Presence::default(), &S),
            AlarmOutcome::Nothing
        );
        assert_eq!(empty, Room::default());
    }

    #[test]
    fn a_room_in_use_with_nothing_due_keeps_a_check_alarm() {
        // Nobody ever sat: nothing to check.
        assert_eq!(Room::default().alarm_after(5, &S), None);
        // Waiting for a second player: no clock, but a check.
        let mut r = Room::default();
        r.join("a", None, false, "ha", 1000, &S);
        assert_eq!(r.alarm_after(2000, &S), Some(302_000));
        // Playing: the turn deadline.
        let mut r = playing();
        assert_eq!(r.alarm_after(2000, &S), Some(31_000));
        // Over: a check again, from the time of the event.
        r.resign(0, 3000).unwrap();
        assert_eq!(r.alarm_after(3000, &S), Some(303_000));
        // The check found nobody (the sockets vanished in a restart): cleanup follows.
        assert_eq!(
            r.on_alarm(303_000, &Presence::default(), &S),
            AlarmOutcome::Nothing
        );
        assert_eq!(r.alarm_after(303_000, &S), Some(603_000));
        assert_eq!(
            r.on_alarm(603_000, &Presence::default(), &S),
            AlarmOutcome::Cleanup
        );
        // A zero cleanup delay does not make the check spin.
        let now_settings = Settings {
            turn_ms: 30_000,
            cleanup_ms: 0,
        };
        let mut r = playing();
        r.resign(0, 3000).unwrap();
        assert_eq!(r.alarm_after(3000, &now_settings), Some(4000));
    }

    #[test]
    fn next_alarm_is_always_in_the_future_after_handling() {
        let mut r = playing();
        r.emptied(0, &S);
        for now in [31_000u64, 300_000, 1_000_000] {
            let mut c = r.clone();
            let out = c.on_alarm(now, &Presence::default(), &S);
            if out != AlarmOutcome::Cleanup {
                assert!(
                    c.next_alarm().is_none_or(|t| t > now),
                    "{now}: {:?}",
                    c.next_alarm()
                );
            }
        }
    }

    #[test]
    fn view_shows_players_by_color_and_hides_tokens() {
        let mut r = playing();
        r.play(0, 2, 2000, &S).unwrap();
        let presence = Presence {
            seated: [true, false],
            spectators: 2,
        };
        let v = r.view("room1", &presence, 2500, &S);
        assert_eq!(v["type"], "state");
        assert_eq!(v["room"], "room1");
        assert_eq!(v["status"], "playing");
        assert_eq!(v["turn"], "yellow");
        assert_eq!(v["players"]["red"]["name"], "a");
        assert_eq!(v["players"]["red"]["connected"], true);
        assert_eq!(v["players"]["yellow"]["connected"], false);
        assert_eq!(v["spectators"], 2);
        assert_eq!(v["board"][5][2], "red");
        assert_eq!(v["moves"][0]["column"], 2);
        assert_eq!(v["turn_deadline"], 32_000);
        assert_eq!(v["turn_seconds"], 30);
        assert_eq!(v["winner"], Value::Null);
        assert_eq!(v["now"], 2500);
        let text = v.to_string();
        assert!(!text.contains("ha") && !text.contains("token"), "{text}");
        // After a rematch the colors follow the slots.
        r.resign(0, 3000).unwrap();
        r.request_rematch(0, 3000, &S).unwrap();
        r.request_rematch(1, 3000, &S).unwrap();
        let v = r.view("room1", &presence, 3000, &S);
        assert_eq!(v["players"]["red"]["name"], "b");
        assert_eq!(v["players"]["yellow"]["name"], "a");
        assert_eq!(v["players"]["yellow"]["connected"], true);
        let waiting = Room::default().view("r", &Presence::default(), 0, &S);
        assert_eq!(waiting["status"], "waiting");
        assert_eq!(waiting["players"]["red"], Value::Null);
        assert_eq!(waiting["turn_deadline"], Value::Null);
    }

    #[test]
    fn room_round_trips_through_json() {
        let mut r = playing();
        r.play(0, 2, 2000, &S).unwrap();
        r.emptied(5, &S);
        let text = serde_json::to_string(&r).unwrap();
        let back: Room = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        // Older or partial values still load.
        let partial: Room =
            serde_json::from_str(r#"{"game_no":3,"game":{"status":"draw"}}"#).unwrap();
        assert_eq!(partial.game_no, 3);
        assert_eq!(partial.game.status, Status::Draw);
    }
}
