// The real pages on a real host, in jsdom (whose WebSocket is a real one): two players
// meet in the lobby, play a game by clicking columns, one reloads (token from
// localStorage), both ask for a rematch. Needs `npm install` here (jsdom).
//   node live.test.mjs --lodge ../../../../target/debug/lodge --wasm ../../../target/wasm32-wasip2/release/game.wasm
//   node live.test.mjs http://127.0.0.1:8787      (a running host, default settings)
import { JSDOM, VirtualConsole } from "jsdom";
import assert from "assert/strict";
import { sleep, useHost } from "./host.mjs";

const host = await useHost(process.argv.slice(2), { turn_seconds: 30, cleanup_seconds: 300 });
const base = host.base;
async function open(url, storage = {}) {
  const vc = new VirtualConsole();
  vc.on("jsdomError", (e) => { if (!/navigation/i.test(e.message)) console.error("page error:", e.message); });
  const dom = await JSDOM.fromURL(url, { runScripts: "dangerously", pretendToBeVisual: true, virtualConsole: vc,
    beforeParse(w) { for (const [k, v] of Object.entries(storage)) w.localStorage.setItem(k, v); w.fetch = (u, o) => fetch(new URL(u, url), o); w.confirm = () => true; } });
  return dom;
}
async function until(f, what, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) { try { if (f()) return; } catch (_) {} await sleep(50); }
  throw new Error("timed out: " + what);
}
const l1 = await open(base + "/game/lobby"), l2 = await open(base + "/game/lobby");
const q = (dom, s) => dom.window.document.querySelector(s);
await until(() => !q(l1, "#play-button").disabled && !q(l2, "#play-button").disabled, "lobby open");
q(l1, "#name-input").value = "ann"; q(l1, "#play-button").click();
await until(() => q(l2, "#waiting-count").textContent === "1", "count 1");
q(l2, "#name-input").value = "ben"; q(l2, "#play-button").click();
await until(() => q(l1, "#status").dataset.state === "matched" && q(l2, "#status").dataset.state === "matched", "matched");
assert.equal(q(l1, "#opponent").textContent, "vs ben");
console.log("lobby: matched");
// Both pages try to go to the room (jsdom does not navigate): open it ourselves.
const room = q(l1, "#status").dataset.room;
assert.match(room, /^[0-9a-f]{16}$/);
assert.equal(q(l2, "#status").dataset.room, room);
q(l1, "#create-button").click();
await until(() => !q(l1, "#room-box").hidden, "created");
assert.match(q(l1, "#room-link").href, /\/game\/[0-9a-f]{16}$/);
const roomLink = base + "/game/" + room;
l1.window.close(); l2.window.close();
const r1 = await open(roomLink + "?name=ann"), r2 = await open(roomLink + "?name=ben");
await until(() => q(r1, "#seat").dataset.color === "red" && q(r2, "#seat").dataset.color === "yellow", "seats");
await until(() => q(r1, "#board").dataset.myTurn === "true", "red to move");
assert.match(q(r1, "#clock").textContent, /^(30|29|28)$/);
console.log("room: seats, clock", q(r1, "#clock").textContent);
const click = (dom, col) => q(dom, `.column[data-col="${col}"]`).click();
for (const [dom, col] of [[r1, 0], [r2, 6], [r1, 1], [r2, 6], [r1, 2], [r2, 6]]) {
  const n = q(r1, "#moves").children.length;
  click(dom, col);
  await until(() => q(r1, "#moves").children.length === n + 1 && q(r2, "#moves").children.length === n + 1, "move " + n);
}
click(r2, 0); // not yellow's turn
await until(() => q(r2, "#error").dataset.code === "not_your_turn", "not your turn");
click(r1, 3);
await until(() => !q(r2, "#result").hidden, "result");
assert.equal(q(r2, "#result").dataset.winner, "red");
assert.equal(q(r2, "#result").dataset.reason, "four_in_a_row");
assert.equal(q(r1, '.cell[data-row="5"][data-col="3"]').dataset.win, "true");
console.log("result:", q(r1, "#result").textContent, "|", q(r2, "#result").textContent);
// Reload ann's page: token in localStorage brings the seat back.
const token = r1.window.localStorage.getItem("lodge-game-token:" + new URL(roomLink).pathname);
assert.match(token, /^[0-9a-f]{32}$/);
r1.window.close();
await until(() => q(r2, "#player-red").dataset.connected === "false", "red disconnected");
// A reload: same localStorage (token), no name in the URL: the token must do.
const r1c = await open(roomLink, { ["lodge-game-token:" + new URL(roomLink).pathname]: token });
await until(() => q(r1c, "#seat").dataset.color === "red", "seat back after reload");
await until(() => q(r2, "#player-red").dataset.connected === "true", "red connected again");
console.log("reload: seat back");
q(r1c, "#rematch-button").click(); q(r2, "#rematch-button").click();
await until(() => q(r1c, "#seat").dataset.color === "yellow" && q(r2, "#seat").dataset.color === "red", "swapped");
await until(() => q(r2, "#board").dataset.myTurn === "true", "ben moves first");
console.log("rematch: swapped; spectators", q(r2, "#spectators").textContent);
r1c.window.close(); r2.window.close();
console.log("live pages: all good");
process.exit(0);
