// Checks lobby.html in jsdom with a fake WebSocket: the documented DOM hooks, the frames the
// page sends, and its reconnects. Run: npm install && npm test (in this folder).
import { JSDOM } from "jsdom";
import fs from "fs";
import assert from "assert/strict";

const html = fs.readFileSync(new URL("../lobby.html", import.meta.url), "utf8");
const sockets = [];
let navigated = null;
const dom = new JSDOM(html, {
  url: "http://localhost:8787/game/lobby", runScripts: "dangerously", pretendToBeVisual: true,
  beforeParse(window) {
    class FakeWS {
      constructor(u) { this.url = u; this.sent = []; sockets.push(this); }
      send(t) { this.sent.push(JSON.parse(t)); }
      close() {}
      open() { this.onopen && this.onopen({}); }
      recv(o) { this.onmessage && this.onmessage({ data: JSON.stringify(o) }); }
      drop() { this.onclose && this.onclose({}); }
    }
    window.WebSocket = FakeWS;
  },
});
const { document: d, window: w } = dom.window;
const $ = (s) => d.querySelector(s);
let ws = sockets.at(-1);
assert.equal(ws.url, "ws://localhost:8787/game/lobby/ws");
assert.equal($("#status").dataset.state, "connecting");
assert.equal($("#play-button").disabled, true);
ws.open();
assert.equal($("#status").dataset.state, "idle");
ws.recv({ type: "lobby", waiting: 3 });
assert.equal($("#waiting-count").textContent, "3");
$("#play-button").click();
assert.equal(ws.sent.length, 0, "no name, no play");
$("#name-input").value = "ada";
$("#play-button").click();
assert.deepEqual(ws.sent.at(-1), { type: "play", name: "ada" });
assert.equal(w.localStorage.getItem("lodge-game-name"), "ada");
ws.recv({ type: "queued", name: "ada" });
assert.equal($("#status").dataset.state, "waiting");
assert.equal($("#play-button").disabled, true);
assert.equal($("#cancel-button").disabled, false);
// Dropped while waiting: reconnect and queue again.
ws.drop();
assert.equal($("#status").dataset.state, "offline");
await new Promise((r) => setTimeout(r, 900));
ws = sockets.at(-1);
ws.open();
assert.deepEqual(ws.sent.at(-1), { type: "play", name: "ada" });
ws.recv({ type: "queued", name: "ada" });
$("#cancel-button").click();
assert.deepEqual(ws.sent.at(-1), { type: "cancel" });
ws.recv({ type: "cancelled" });
assert.equal($("#status").dataset.state, "idle");
$("#create-button").click();
assert.deepEqual(ws.sent.at(-1), { type: "create" });
ws.recv({ type: "created", room: "0123456789abcdef" });
assert.equal($("#room-box").hidden, false);
assert.equal($("#room-link").href, "http://localhost:8787/game/0123456789abcdef");
$("#play-button").click();
ws.recv({ type: "matched", room: "fedcba9876543210", name: "ada", opponent: "bob" });
assert.equal($("#status").dataset.state, "matched");
assert.equal($("#status").dataset.room, "fedcba9876543210");
assert.equal($("#opponent").textContent, "vs bob");
console.log("lobby page: all checks passed");
process.exit(0);
