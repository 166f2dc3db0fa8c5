// End-to-end check of the game class on a real lodge host, over real WebSockets: lobby
// pairing, seats, refused moves, a win, reconnect by token, rematch, the turn clock, the
// empty-room cleanup and, when it starts the host itself, a move after eviction and a
// host restart (seat back by token, the turn clock still firing).
//
// Either let it start a host (from the repository root, after building both):
//   node --experimental-websocket guests/game/web/tests/e2e.mjs --lodge target/debug/lodge
// or point it at a running one that serves `game` with short clocks:
//   [classes.game]
//   component = "guests/target/wasm32-wasip2/release/game.wasm"
//   settings = { turn_seconds = 2, cleanup_seconds = 3 }
//   node --experimental-websocket e2e.mjs http://127.0.0.1:8787
// (Node 22+ needs no flag.)
import assert from "assert/strict";
import { sleep, useHost } from "./host.mjs";

const host = await useHost(process.argv.slice(2), { turn_seconds: 2, cleanup_seconds: 3 });
const base = host.base;
const wsBase = base.replace(/^http/, "ws");

/** A WebSocket client that queues frames and waits for the one it wants. */
class Client {
  constructor(path) {
    this.frames = [];
    this.waiters = [];
    this.closed = false;
    this.ws = new WebSocket(wsBase + path);
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = (e) => reject(new Error("socket error on " + path + ": " + (e.message || e.type)));
    });
    this.ws.onmessage = (ev) => {
      this.frames.push(JSON.parse(ev.data));
      this.poke();
    };
    this.ws.onclose = () => { this.closed = true; this.poke(); };
  }
  poke() { for (const w of this.waiters.splice(0)) w(); }
  send(obj) { this.ws.send(JSON.stringify(obj)); }
  /** The next frame matching `pred` (frames before it are consumed). */
  async next(pred, what = "a frame", ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(0, i + 1).at(-1);
      if (Date.now() > deadline) throw new Error("timed out waiting for " + what + "; have " + JSON.stringify(this.frames));
      await Promise.race([new Promise((r) => this.waiters.push(r)), sleep(100)]);
    }
  }
  type(t, ms) { return this.next((f) => f.type === t, t, ms); }
  state(pred = () => true, ms) { return this.next((f) => f.type === "state" && pred(f), "state", ms); }
  close() { this.ws.close(); }
}

async function connect(path) {
  const c = new Client(path);
  await c.opened;
  return c;
}

async function getJson(path) {
  const r = await fetch(base + path);
  assert.equal(r.status, 200, path);
  return r.json();
}

let step = 0;
function ok(what) { console.log("ok " + ++step + " - " + what); }

// ---- lobby ----
{
  const page = await fetch(base + "/game/lobby");
  assert.equal(page.status, 200);
  assert.match(await page.text(), /id="play-button"/);
  ok("lobby page");
}
let room;
{
  const watcher = await connect("/game/lobby/ws");
  await watcher.type("lobby");
  const a = await connect("/game/lobby/ws?name=ann");
  await a.type("queued");
  const b = await connect("/game/lobby/ws?name=ben");
  const ma = await a.type("matched");
  const mb = await b.type("matched");
  assert.equal(ma.room, mb.room);
  assert.equal(ma.opponent, "ben");
  assert.match(ma.room, /^[0-9a-f]{16}$/);
  watcher.send({ type: "create" });
  const created = await watcher.type("created");
  assert.match(created.room, /^[0-9a-f]{16}$/);
  room = ma.room;
  watcher.send({ type: "heartbeat" });
  await watcher.type("pong");
  const st = await getJson("/game/lobby/state");
  assert.equal(typeof st.waiting, "number");
  const made = await fetch(base + "/game/lobby/create", { method: "POST" });
  assert.match((await made.json()).room, /^[0-9a-f]{16}$/);
  for (const c of [watcher, a, b]) c.close();
  ok("lobby pairs two players into room " + room + " and creates rooms");
}

// ---- room: seats, moves, win ----
const path = "/game/" + room;
const pageText = await (await fetch(base + path)).text();
assert.match(pageText, /id="board"/);
let a = await connect(path + "/ws?name=ann");
const seatA = await a.type("seat");
assert.equal(seatA.color, "red");
assert.match(seatA.token, /^[0-9a-f]{32}$/);
assert.equal((await a.state()).status, "waiting");
const b = await connect(path + "/ws?name=ben");
const seatB = await b.type("seat");
assert.equal(seatB.color, "yellow");
let s = await b.state();
assert.equal(s.status, "playing");
assert.equal(s.turn, "red");
assert.ok(s.turn_deadline > s.now);
await a.state((f) => f.status === "playing");
const spec = await connect(path + "/ws?name=sam");
await spec.type("spectator");
await spec.state();
await a.state((f) => f.spectators === 1);
ok("two seats, one spectator");

b.send({ type: "move", column: 0 });
assert.equal((await b.type("error")).code, "not_your_turn");
spec.send({ type: "move", column: 0, token: seatA.token });
assert.equal((await spec.type("error")).code, "not_seated");
a.send({ type: "move", column: 9 });
assert.equal((await a.type("error")).code, "bad_column");
ok("invalid moves refused");

for (const [who, col] of [[a, 0], [b, 6], [a, 1], [b, 6], [a, 2], [b, 6]]) {
  const n = (await getJson(path + "/state")).moves.length;
  who.send({ type: "move", column: col });
  await spec.state((f) => f.moves.length === n + 1);
}
a.send({ type: "move", column: 3 });
s = await spec.state((f) => f.status !== "playing");
assert.equal(s.status, "won");
assert.equal(s.winner, "red");
assert.equal(s.reason, "four_in_a_row");
assert.deepEqual(s.winning_cells, [[5, 0], [5, 1], [5, 2], [5, 3]]);
assert.equal((await getJson(path + "/state")).status, "won");
ok("four in a row wins");

// ---- reconnect ----
a.close();
s = await b.state((f) => f.players.red && f.players.red.connected === false);
a = await connect(path + "/ws?name=whoever&token=" + seatA.token);
const again = await a.type("seat");
assert.equal(again.color, "red");
assert.equal(again.name, "ann");
s = await a.state();
assert.equal(s.status, "won");
await b.state((f) => f.players.red.connected === true);
ok("token gives the seat back; the opponent sees it");

// ---- rematch ----
a.send({ type: "rematch" });
await b.state((f) => f.players.red.rematch === true);
b.send({ type: "rematch" });
assert.equal((await a.type("seat")).color, "yellow");
assert.equal((await b.type("seat")).color, "red");
s = await a.state((f) => f.game === 2);
assert.equal(s.status, "playing");
assert.equal(s.players.red.name, "ben");
ok("rematch swaps colors");

// ---- turn clock (turn_seconds = 2) ----
s = await spec.state((f) => f.status === "won" && f.reason === "timeout", 10000);
assert.equal(s.winner, "yellow", "red (ben) did not move in time");
ok("timeout forfeits the player to move");

// ---- cleanup (cleanup_seconds = 3) ----
for (const c of [a, b, spec]) c.close();
await sleep(500);
s = await getJson(path + "/state");
assert.equal(s.players.red.connected, false);
await sleep(4500);
s = await getJson(path + "/state");
assert.equal(s.status, "waiting");
assert.equal(s.game, 0);
assert.equal(s.players.red, null);
ok("an empty room is deleted after cleanup_seconds");

// A token of the deleted room is refused politely.
const late = await connect(path + "/ws?name=ann&token=" + seatA.token);
assert.equal((await late.type("error")).code, "bad_token");
assert.equal((await late.type("seat")).color, "red");
late.close();
ok("a stale token is refused with bad_token");
// ---- eviction and restart (only with a host of our own) ----
if (host.own) {
  const rpath = "/game/restart-" + Date.now().toString(16);
  const ra = await connect(rpath + "/ws?name=ann");
  const ta = (await ra.type("seat")).token;
  const rb = await connect(rpath + "/ws?name=ben");
  await rb.type("seat");
  await ra.state((f) => f.status === "playing");
  await sleep(1000); // idle_timeout_ms = 300: the instance is evicted, the sockets stay
  ra.send({ type: "move", column: 3 });
  await rb.state((f) => f.moves.length === 1);
  ok("a move after eviction");

  await host.stop();
  await host.start();
  const back = await connect(rpath + "/ws?token=" + ta);
  const seat = await back.type("seat");
  assert.equal(seat.color, "red");
  assert.equal(seat.name, "ann");
  s = await back.state();
  assert.equal(s.moves.length, 1);
  // Ben never comes back: the alarm (missed or not during the restart) forfeits him.
  s = await back.state((f) => f.status !== "playing", 10000);
  assert.equal(s.reason, "timeout");
  assert.equal(s.winner, "red");
  back.close();
  ok("after a host restart: the seat comes back by token and the clock still runs");
}

console.log(step + " passed, 0 failed");
process.exit(0);
