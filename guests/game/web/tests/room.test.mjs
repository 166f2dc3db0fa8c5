// Checks room.html in jsdom with a fake WebSocket: the documented DOM hooks, the frames the
// page sends, and its reconnects. Run: npm install && npm test (in this folder).
import { JSDOM } from "jsdom";
import fs from "fs";
import assert from "assert/strict";

const html = fs.readFileSync(new URL("../room.html", import.meta.url), "utf8");
const sockets = [];
function makeDom(url, storage = {}) {
  return new JSDOM(html, {
    url, runScripts: "dangerously", pretendToBeVisual: true,
    beforeParse(window) {
      for (const [k, v] of Object.entries(storage)) window.localStorage.setItem(k, v);
      class FakeWS {
        constructor(u) { this.url = u; this.sent = []; this.readyState = 0; sockets.push(this); }
        send(t) { this.sent.push(JSON.parse(t)); }
        close() { this.readyState = 3; }
        open() { this.readyState = 1; this.onopen && this.onopen({}); }
        recv(o) { this.onmessage && this.onmessage({ data: JSON.stringify(o) }); }
        drop() { this.readyState = 3; this.onclose && this.onclose({}); }
      }
      FakeWS.CONNECTING = 0;
      window.WebSocket = FakeWS;
      window.fetch = () => Promise.reject(new Error("offline"));
      window.confirm = () => true;
    },
  });
}
const empty = () => Array.from({ length: 6 }, () => Array(7).fill(null));
function state(extra) {
  return Object.assign({
    type: "state", room: "r1", game: 1, status: "playing", board: empty(), turn: "red",
    players: { red: { name: "alice", connected: true, rematch: false }, yellow: { name: "bob", connected: false, rematch: false } },
    spectators: 2, moves: [], winner: null, winning_cells: [], reason: null,
    turn_deadline: Date.now() + 20000, turn_seconds: 30, now: Date.now(),
  }, extra);
}

const dom = makeDom("http://localhost:8787/game/r1?name=alice");
const { document: d, window: w } = dom.window;
const $ = (s) => d.querySelector(s);
assert.equal(d.querySelectorAll(".cell[data-row][data-col]").length, 42);
assert.equal(d.querySelectorAll(".column[data-col]").length, 7);
let ws = sockets.at(-1);
assert.match(ws.url, /^ws:\/\/localhost:8787\/game\/r1\/ws\?name=alice$/);
ws.open();
assert.equal($("#status").dataset.state, "open");
ws.recv({ type: "seat", color: "red", slot: 0, name: "alice", token: "a".repeat(32) });
assert.equal(w.localStorage.getItem("lodge-game-token:/game/r1"), "a".repeat(32));
ws.recv(state());
assert.equal($("#seat").dataset.color, "red");
assert.equal($("#turn").dataset.turn, "red");
assert.equal($("#board").dataset.myTurn, "true");
assert.ok(Number($("#clock").textContent) >= 19 && Number($("#clock").textContent) <= 20, $("#clock").textContent);
assert.equal($("#player-yellow").dataset.connected, "false");
assert.equal($("#player-red").dataset.connected, "true");
assert.equal($("#spectators").textContent, "2");
assert.equal($("#result").hidden, true);
assert.equal($("#resign-button").disabled, false);
assert.equal($("#rematch-button").disabled, true);
// Click column 3 -> move frame.
$('.column[data-col="3"]').click();
assert.deepEqual(ws.sent.at(-1), { type: "move", column: 3 });
// Clicking a cell also works (it bubbles to the column).
$('.cell[data-row="0"][data-col="5"]').dispatchEvent(new w.MouseEvent("click", { bubbles: true }));
assert.deepEqual(ws.sent.at(-1), { type: "move", column: 5 });
// Move applied: yellow's turn; click does not send.
const b = empty(); b[5][3] = "red";
ws.recv(state({ board: b, turn: "yellow", moves: [{ color: "red", column: 3, row: 5, at: 1 }] }));
assert.equal($('.cell[data-row="5"][data-col="3"]').dataset.color, "red");
assert.equal($('.cell[data-row="5"][data-col="3"]').dataset.last, "true");
assert.equal($("#board").dataset.myTurn, "false");
const n = ws.sent.length;
$('.column[data-col="1"]').click();
assert.equal(ws.sent.length, n);
assert.equal($("#error").dataset.code, "not_your_turn");
assert.equal($("#moves").children.length, 1);
// Server error shows with its code.
ws.recv({ type: "error", code: "column_full", error: "column 3 is full" });
assert.equal($("#error").dataset.code, "column_full");
// Game over by timeout.
ws.recv(state({ board: b, status: "won", turn: null, winner: "red", reason: "timeout", turn_deadline: null }));
assert.equal($("#result").hidden, false);
assert.equal($("#result").dataset.reason, "timeout");
assert.equal($("#result").dataset.winner, "red");
assert.match($("#result").textContent, /You win/);
assert.match($("#result").textContent, /ran out of time/);
assert.equal($("#clock").textContent, "");
assert.equal($("#rematch-button").disabled, false);
$("#rematch-button").click();
assert.deepEqual(ws.sent.at(-1), { type: "rematch" });
// Winning cells marked.
ws.recv(state({ board: b, status: "won", turn: null, winner: "red", reason: "four_in_a_row", winning_cells: [[5, 3]], turn_deadline: null,
  players: { red: { name: "alice", connected: true, rematch: true }, yellow: { name: "bob", connected: true, rematch: false } } }));
assert.equal($('.cell[data-row="5"][data-col="3"]').dataset.win, "true");
assert.equal($("#rematch-button").dataset.requested, "true");
assert.equal($("#rematch-button").disabled, true);
// Rematch: colors swap.
ws.recv({ type: "seat", color: "yellow", slot: 0, name: "alice", token: "a".repeat(32) });
ws.recv(state({ game: 2, players: { red: { name: "bob", connected: true, rematch: false }, yellow: { name: "alice", connected: true, rematch: false } } }));
assert.equal($("#seat").dataset.color, "yellow");
assert.equal($("#result").hidden, true);
assert.equal($('.cell[data-row="5"][data-col="3"]').dataset.color, "");
assert.equal($("#moves").children.length, 0);
// Drop: reconnect with the token after a backoff.
ws.drop();
assert.equal($("#status").dataset.state, "offline");
await new Promise((r) => setTimeout(r, 900));
ws = sockets.at(-1);
assert.match(ws.url, /token=a{32}/);
ws.open();
assert.equal($("#status").dataset.state, "open");
// Keyboard 1..7.
ws.recv({ type: "seat", color: "red", slot: 0, name: "alice", token: "a".repeat(32) });
ws.recv(state());
d.dispatchEvent(new w.KeyboardEvent("keydown", { key: "7", bubbles: true }));
assert.deepEqual(ws.sent.at(-1), { type: "move", column: 6 });
// bad_token forgets the token.
ws.recv({ type: "error", code: "bad_token", error: "x" });
assert.equal(w.localStorage.getItem("lodge-game-token:/game/r1"), null);
w.close();

// Spectator page and the name form.
const dom2 = makeDom("http://localhost:8787/game/r9");
const d2 = dom2.window.document;
assert.equal(d2.getElementById("join-form").hidden, false);
const before = sockets.length;
d2.getElementById("join-name").value = "carol";
d2.getElementById("join-form").dispatchEvent(new dom2.window.Event("submit", { cancelable: true }));
assert.equal(sockets.length, before + 1);
assert.match(sockets.at(-1).url, /\/game\/r9\/ws\?name=carol$/);
sockets.at(-1).open();
sockets.at(-1).recv({ type: "spectator", name: "carol" });
sockets.at(-1).recv(state({ room: "r9" }));
assert.equal(d2.getElementById("seat").dataset.color, "spectator");
assert.equal(d2.getElementById("resign-button").disabled, true);
assert.equal(d2.getElementById("board").dataset.myTurn, "false");
dom2.window.close();

const dom3 = makeDom("http://localhost:8787/game/r9?spectate=1&player=two", { "lodge-game-name": "dan" });
assert.match(sockets.at(-1).url, /name=dan&spectate=1$/);
dom3.window.close();
console.log("room page: all checks passed");
process.exit(0);
