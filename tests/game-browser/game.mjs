// Plays Connect Four in headless Chromium against a running lodge host that serves the
// `game` class (tests/game.rs starts one and runs this; so can you):
//
//   node game.mjs http://127.0.0.1:8787 [screenshot.png]
//
// Two players, each in their own browser context (own localStorage, so own seat token):
//  1. both press Play in the lobby, get matched and land in the same room; they play a
//     whole game by clicking columns, and after every move both pages must show the same
//     board, the move list, whose turn it is and whose clock runs; it ends with a diagonal
//     four for red: one page shows the win, the other the loss, both the winning cells;
//  2. one creates a room in the lobby and both open its link, a third page watches; red
//     resigns with the button, and when yellow's page closes the others see it go.
// Exit code 0 when all of it held; otherwise the failure is printed and the code is 1.
// Prints `room=NAME` for each room it played in.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = (process.argv[2] || "").replace(/\/+$/, "");
const screenshot = process.argv[3] || process.env.GAME_SCREENSHOT || "";
if (!/^https?:\/\//.test(base)) {
  console.error("usage: node game.mjs http://HOST:PORT [screenshot.png]");
  process.exit(2);
}

const ROWS = 6;
const other = (color) => (color === "red" ? "yellow" : "red");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

const pageErrors = [];

/** A page in a fresh context (its own storage), failing the run on script errors. */
async function newPlayer(label) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 820 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  // Failed requests are reported below with their URL; the browser's own favicon probe
  // is the only one allowed to fail (the pages have no icon).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      pageErrors.push(`${label} console: ${m.text()}`);
    }
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== "/favicon.ico") {
      pageErrors.push(`${label}: ${r.status()} for ${r.url()}`);
    }
  });
  page.on("dialog", (d) => d.accept());
  return page;
}

const attr = (page, selector, name) => page.getAttribute(selector, name);

/** Waits until `selector` has attribute `name` equal to `value`; on timeout, says what
 * it had instead. */
async function waitAttr(page, selector, name, value) {
  try {
    await page.waitForFunction(
      ([s, n, v]) => {
        const el = document.querySelector(s);
        return !!el && el.getAttribute(n) === v;
      },
      [selector, name, String(value)],
    );
  } catch (e) {
    const had = await page.getAttribute(selector, name, { timeout: 1000 }).catch(() => "(no element)");
    throw new Error(`${page.url()}: ${selector}[${name}] is ${JSON.stringify(had)}, not ${JSON.stringify(String(value))}: ${e.message.split("\n")[0]}`);
  }
}

/** Every cell's color as rows of 7 ("" for empty), top row first. */
function boardOf(page) {
  return page.evaluate(() => {
    const rows = [];
    for (let r = 0; r < 6; r++) {
      const row = [];
      for (let c = 0; c < 7; c++) {
        row.push(document.querySelector(`.cell[data-row="${r}"][data-col="${c}"]`).dataset.color);
      }
      rows.push(row);
    }
    return rows;
  });
}

async function stateOf(room) {
  const r = await fetch(`${base}/game/${room}/state`);
  assert.equal(r.status, 200);
  return r.json();
}

async function inLobby(page, name) {
  await page.goto(`${base}/game/lobby`);
  await waitAttr(page, "#status", "data-state", "idle");
  await page.fill("#name-input", name);
}

/** Plays `columns` alternately from red, clicking in the page whose turn it is, and
 * checks both pages after every move. Returns the final model board. */
async function playGame(pages, columns) {
  const model = Array.from({ length: ROWS }, () => Array(7).fill(""));
  const heights = Array(7).fill(0);
  for (const [i, col] of columns.entries()) {
    const color = i % 2 === 0 ? "red" : "yellow";
    const mover = pages[color];
    const waiter = pages[other(color)];
    // Whose turn it is shows on both pages, and only the mover's board is live.
    for (const page of [mover, waiter]) {
      await waitAttr(page, "#board", "data-status", "playing");
      await waitAttr(page, "#board", "data-turn", color);
      await waitAttr(page, "#turn", "data-turn", color);
      await page.waitForSelector(`#player-${color}.to-move`);
      assert.equal(await page.$(`#player-${other(color)}.to-move`), null);
      assert.ok(Number(await attr(page, "#clock", "data-remaining")) > 0, "the clock runs");
    }
    await waitAttr(mover, "#board", "data-my-turn", "true");
    await waitAttr(waiter, "#board", "data-my-turn", "false");
    if (i === 1) {
      // A click out of turn is refused and changes nothing.
      await waiter.click(`.column[data-col="${col}"]`);
      await waitAttr(waiter, "#error", "data-code", "not_your_turn");
      assert.deepEqual(await boardOf(waiter), model);
    }
    await mover.click(`.column[data-col="${col}"]`);
    const row = ROWS - 1 - heights[col];
    heights[col] += 1;
    model[row][col] = color;
    for (const page of [mover, waiter]) {
      await page.waitForSelector(
        `.cell[data-row="${row}"][data-col="${col}"][data-color="${color}"][data-last="true"]`,
      );
      await page.waitForFunction((n) => document.querySelectorAll("#moves li").length === n, i + 1);
      assert.deepEqual(await boardOf(page), model, `board after move ${i + 1}`);
      const li = page.locator("#moves li").last();
      assert.equal(await li.getAttribute("data-color"), color);
      assert.equal(await li.getAttribute("data-col"), String(col));
    }
  }
  return model;
}

try {
  // ---- 1. matched in the lobby, a whole game by clicks --------------------------------
  const ann = await newPlayer("ann");
  const bob = await newPlayer("bob");
  await inLobby(ann, "Ann");
  await ann.click("#play-button");
  await waitAttr(ann, "#status", "data-state", "waiting");
  await waitAttr(ann, "#waiting-count", "data-waiting", "1");
  await inLobby(bob, "Bob");
  await bob.click("#play-button");
  const roomUrl = /\/game\/[0-9a-f]{16}$/;
  await Promise.all([ann.waitForURL(roomUrl), bob.waitForURL(roomUrl)]);
  assert.equal(ann.url(), bob.url(), "matched into the same room");
  const room = new URL(ann.url()).pathname.split("/").pop();
  console.log(`room=${room}`);

  for (const page of [ann, bob]) {
    await waitAttr(page, "#status", "data-state", "open");
    await waitAttr(page, "#board", "data-status", "playing");
    await waitAttr(page, "#player-red", "data-connected", "true");
    await waitAttr(page, "#player-yellow", "data-connected", "true");
  }
  const pages = {};
  for (const [page, name] of [[ann, "Ann"], [bob, "Bob"]]) {
    const color = await attr(page, "#seat", "data-color");
    assert.ok(color === "red" || color === "yellow", `seated: ${color}`);
    pages[color] = page;
    for (const p of [ann, bob]) await waitAttr(p, `#player-${color}`, "data-name", name);
  }
  assert.ok(pages.red && pages.yellow, "one red, one yellow");
  assert.equal(await pages.red.textContent("#room-name"), room);

  // Red connects four on the diagonal (5,3) (4,4) (3,5) (2,6).
  await playGame(pages, [3, 4, 4, 5, 5, 6, 5, 6, 6, 0, 6]);
  const winning = ["5:3", "4:4", "3:5", "2:6"];
  for (const [color, page] of Object.entries(pages)) {
    await page.waitForSelector("#result:not([hidden])");
    await waitAttr(page, "#result", "data-status", "won");
    assert.equal(await attr(page, "#result", "data-winner"), "red");
    assert.equal(await attr(page, "#result", "data-reason"), "four_in_a_row");
    assert.equal(await attr(page, "#board", "data-status"), "won");
    assert.equal(await attr(page, "#board", "data-turn"), "");
    assert.equal(await page.textContent("#clock"), "", "the clock stopped");
    const win = await page.$$eval('.cell[data-win="true"]', (els) =>
      els.map((e) => `${e.dataset.row}:${e.dataset.col}`).sort(),
    );
    assert.deepEqual(win, [...winning].sort());
    const text = await page.textContent("#result");
    const cls = (await attr(page, "#result", "class")) || "";
    if (color === "red") {
      assert.match(text, /^You win!/);
      assert.match(cls, /\bwin\b/);
    } else {
      assert.match(text, /^You lose\./);
      assert.match(cls, /\blose\b/);
    }
    assert.equal(await page.isEnabled("#rematch-button"), true);
    assert.equal(await page.isEnabled("#resign-button"), false);
  }
  if (screenshot) await pages.yellow.screenshot({ path: screenshot, fullPage: true });
  const stored = await stateOf(room);
  assert.equal(stored.status, "won");
  assert.equal(stored.winner, "red");
  assert.equal(stored.moves.length, 11);

  // ---- 2. a created room, its link, a spectator, resign, leaving -----------------------
  await inLobby(ann, "Ann");
  await ann.click("#create-button");
  await ann.waitForSelector("#room-link");
  await ann.waitForFunction(() => /\/game\/[0-9a-f]{16}$/.test(document.querySelector("#room-link").href));
  const link = await ann.$eval("#room-link", (a) => a.href);
  assert.ok(link.startsWith(base), link);
  const created = new URL(link).pathname.split("/").pop();
  console.log(`room=${created}`);
  await ann.goto(link);
  await waitAttr(ann, "#seat", "data-color", "red");
  await waitAttr(ann, "#board", "data-status", "waiting");
  await bob.goto(link);
  await waitAttr(bob, "#seat", "data-color", "yellow");
  const sam = await newPlayer("sam");
  await sam.goto(`${link}?spectate=1&name=Sam`);
  await waitAttr(sam, "#seat", "data-color", "spectator");
  for (const page of [ann, bob, sam]) {
    await waitAttr(page, "#board", "data-status", "playing");
    await waitAttr(page, "#spectators", "data-count", "1");
    await waitAttr(page, "#player-red", "data-name", "Ann");
    await waitAttr(page, "#player-yellow", "data-name", "Bob");
  }
  assert.equal(await sam.isEnabled("#resign-button"), false, "spectators cannot resign");
  await ann.click('.column[data-col="2"]');
  for (const page of [ann, bob, sam]) {
    await page.waitForSelector('.cell[data-row="5"][data-col="2"][data-color="red"]');
  }
  await waitAttr(bob, "#board", "data-my-turn", "true");
  await ann.click("#resign-button");
  for (const page of [ann, bob, sam]) {
    await waitAttr(page, "#result", "data-reason", "resign");
    assert.equal(await attr(page, "#result", "data-winner"), "yellow");
  }
  assert.match(await bob.textContent("#result"), /^You win!/);
  assert.match(await ann.textContent("#result"), /^You lose\./);
  await bob.close();
  for (const page of [ann, sam]) {
    await waitAttr(page, "#player-yellow", "data-connected", "false");
    await waitAttr(page, "#player-red", "data-connected", "true");
  }
  const after = await stateOf(created);
  assert.equal(after.reason, "resign");
  assert.equal(after.players.yellow.connected, false);

  assert.deepEqual(pageErrors, [], "no script errors in the pages");
  console.log("ok: lobby match, full game to a diagonal win, created room, spectator, resign");
} catch (e) {
  console.error(e && e.stack ? e.stack : e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
