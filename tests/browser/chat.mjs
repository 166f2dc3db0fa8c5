// Drives the chat page of a running lodge host in headless Chromium, as two users in two
// browser contexts (separate storage), and checks what each page shows.
//
//   node chat.mjs HOST_URL [ROOM]
//
// HOST_URL is e.g. http://127.0.0.1:8787; the room defaults to "browser-room" and must be
// new. The host's AI must be tests/support/fake_ai.rs (its answer is an echo of the
// question). Set CHAT_SCREENSHOT=/tmp/x.png to save a screenshot of alice's page at the
// end. Prints each check as it passes; exits 1 on the first failure.
//
// tests/chat.rs (`the_page_works_in_headless_chromium`) starts the host and runs this.

import { chromium } from 'playwright-core';

const [base, room = 'browser-room'] = process.argv.slice(2);
if (!base) {
  console.error('usage: node chat.mjs HOST_URL [ROOM]');
  process.exit(2);
}
const roomUrl = `${base.replace(/\/$/, '')}/chat/${encodeURIComponent(room)}`;
const TIMEOUT = 20_000;

// The fake provider's answer (tests/support/fake_ai.rs, echo_reply): the last user message
// as the room sends it ("{name}: {text}") and how many messages the request held.
const echo = (lastUser, messages) => `Echo: ${lastUser}. Context: ${messages} messages.`;

function check(condition, what, detail) {
  if (!condition) {
    throw new Error(`FAILED: ${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  }
  console.log(`ok - ${what}`);
}

async function texts(page, selector) {
  return page.locator(selector).allTextContents();
}

// The stored entries a page shows, oldest first: [id, name, role, text].
async function shownEntries(page) {
  return page.$$eval('#messages > .message', (items) =>
    items.map((li) => [
      Number(li.dataset.id),
      li.dataset.name,
      li.dataset.role,
      li.querySelector('.text').textContent,
    ]),
  );
}

async function presence(page) {
  return texts(page, '#presence li.user');
}

async function waitForPresence(page, names) {
  await page.waitForFunction(
    (want) =>
      JSON.stringify([...document.querySelectorAll('#presence li.user')].map((li) => li.textContent)) ===
      JSON.stringify(want),
    names,
    { timeout: TIMEOUT },
  );
}

async function waitForMessage(page, name, text) {
  await page.waitForFunction(
    ([n, t]) =>
      [...document.querySelectorAll('#messages > .message')].some(
        (li) => li.dataset.name === n && li.querySelector('.text').textContent === t,
      ),
    [name, text],
    { timeout: TIMEOUT },
  );
}

async function joinAs(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  const response = await page.goto(roomUrl);
  check(response.ok(), `${name}: GET ${roomUrl} answers ${response.status()}`);
  await page.locator('#join').waitFor({ state: 'visible', timeout: TIMEOUT });
  check(await page.locator('#chat').isHidden(), `${name}: the chat view is hidden before joining`);
  await page.fill('#name-input', name);
  await page.click('#join-button');
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: TIMEOUT });
  check(await page.locator('#join').isHidden(), `${name}: joined, status connected`);
  check(
    (await page.locator('#room-name').textContent()) === room,
    `${name}: the page shows the room name ${JSON.stringify(room)}`,
  );
  return { context, page, problems };
}

// Records every text an AI reply showed while streaming, to check it grew piece by piece.
async function watchStreams(page) {
  await page.evaluate(() => {
    window.__streamTexts = [];
    const messages = document.getElementById('messages');
    new MutationObserver(() => {
      for (const li of messages.querySelectorAll('.ai-stream')) {
        const t = li.querySelector('.text').textContent;
        const seen = window.__streamTexts;
        if (seen[seen.length - 1] !== t) seen.push(t);
      }
    }).observe(messages, { childList: true, subtree: true, characterData: true });
  });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  try {
    const alice = await joinAs(browser, 'alice');
    await waitForPresence(alice.page, ['alice']);
    check(
      (await texts(alice.page, '#presence li.me')).join() === 'alice',
      'alice: presence lists alice, marked as me',
    );
    check(
      (await alice.page.locator('#messages > .message').count()) === 0,
      'alice: a new room shows no messages',
    );

    const bob = await joinAs(browser, 'bob');
    for (const [who, p] of [['alice', alice.page], ['bob', bob.page]]) {
      await waitForPresence(p, ['alice', 'bob']);
      check((await p.locator('#presence-count').textContent()) === '2', `${who}: presence shows alice and bob (2)`);
    }
    check((await texts(bob.page, '#presence li.me')).join() === 'bob', 'bob: bob is marked as me');
    await alice.page.locator('#messages .notice.join', { hasText: 'bob' }).waitFor({ timeout: TIMEOUT });
    check(true, 'alice: a notice says bob joined');

    // alice sends with Enter, bob with the button.
    await alice.page.fill('#message-input', 'hello from alice');
    await alice.page.press('#message-input', 'Enter');
    await bob.page.fill('#message-input', 'hi alice, bob here');
    await bob.page.click('#send-button');
    for (const [who, p] of [['alice', alice.page], ['bob', bob.page]]) {
      await waitForMessage(p, 'alice', 'hello from alice');
      await waitForMessage(p, 'bob', 'hi alice, bob here');
      check(true, `${who}: shows both messages`);
    }
    check(
      (await alice.page.locator('#message-input').inputValue()) === '',
      'alice: the input is cleared after sending',
    );
    check(
      (await alice.page.locator('#messages > .message.mine').count()) === 1 &&
        (await alice.page.locator('#messages > .message.mine').getAttribute('data-name')) === 'alice',
      "alice: only her own message is marked .mine",
    );
    check(
      (await bob.page.locator('#messages > .message.mine').getAttribute('data-name')) === 'bob',
      "bob: his own message is marked .mine",
    );

    // Text is only ever shown as text.
    const markup = '<img src=x onerror="window.__xss=1"><b>not bold</b>';
    await bob.page.fill('#message-input', markup);
    await bob.page.press('#message-input', 'Enter');
    for (const [who, p] of [['alice', alice.page], ['bob', bob.page]]) {
      await waitForMessage(p, 'bob', markup);
      check(
        (await p.locator('#messages img, #messages b').count()) === 0 &&
          (await p.evaluate(() => window.__xss)) === undefined,
        `${who}: markup in a message is shown as text`,
      );
    }

    // @ai, slowly, so both pages show the reply growing before it is final.
    await watchStreams(alice.page);
    await watchStreams(bob.page);
    const question = '@ai [[slow]] what is lodge?';
    // Context: the system prompt and the four entries so far.
    const answer = echo(`alice: ${question}`, 5);
    await alice.page.fill('#message-input', question);
    await alice.page.press('#message-input', 'Enter');
    for (const [who, p] of [['alice', alice.page], ['bob', bob.page]]) {
      await waitForMessage(p, 'alice', question);
      const final = p.locator('#messages > .message.ai[data-role="assistant"]');
      await final.waitFor({ timeout: TIMEOUT });
      check((await final.locator('.text').textContent()) === answer, `${who}: shows the AI's final answer`, answer);
      check((await final.getAttribute('data-name')) === 'AI', `${who}: the answer is by AI`);
      check(Number(await final.getAttribute('data-response-id')) > 0, `${who}: the answer carries its response id`);
      check((await p.locator('#messages .ai-stream').count()) === 0, `${who}: the streaming placeholder was replaced`);
      const grew = await p.evaluate(() => window.__streamTexts);
      check(
        grew.length >= 3 && grew.every((t, i) => answer.startsWith(t) && (i === 0 || t.length > grew[i - 1].length)),
        `${who}: the answer grew piece by piece while streaming (${grew.length} steps)`,
        grew,
      );
      check(grew[0] === '', `${who}: a "thinking…" reply showed before the first words`, grew);
    }
    const aliceView = await shownEntries(alice.page);
    const bobView = await shownEntries(bob.page);
    check(JSON.stringify(aliceView) === JSON.stringify(bobView), 'alice and bob show the same entries', {
      aliceView,
      bobView,
    });
    const ids = aliceView.map((e) => e[0]);
    check(JSON.stringify(ids) === '[1,2,3,4,5]', 'entries 1..5 in id order', ids);
    const history = await (await fetch(`${roomUrl}/history`)).json();
    check(
      JSON.stringify(history.map((e) => [e.id, e.name, e.role, e.text])) === JSON.stringify(aliceView),
      'the pages show exactly the stored history',
      history,
    );

    // A reload rejoins at once with the remembered name (no join screen) and restores the
    // view from the history frame.
    await alice.page.reload();
    await alice.page.locator('#status[data-state="connected"]').waitFor({ timeout: TIMEOUT });
    check(await alice.page.locator('#join').isHidden(), 'alice: a reload rejoins without asking again');
    check((await alice.page.textContent('#my-name')) === 'alice', 'alice: the name is remembered');
    await alice.page.locator('#messages > .message[data-id="5"]').waitFor({ timeout: TIMEOUT });
    check(
      JSON.stringify(await shownEntries(alice.page)) === JSON.stringify(aliceView),
      'alice: after a reload the history is shown once, in order',
    );
    await waitForPresence(bob.page, ['alice', 'bob']);

    if (process.env.CHAT_SCREENSHOT) {
      await alice.page.screenshot({ path: process.env.CHAT_SCREENSHOT, fullPage: true });
      console.log(`screenshot: ${process.env.CHAT_SCREENSHOT}`);
    }

    // A reply can be stopped from the page: what it wrote stays, marked as stopped.
    await alice.page.fill('#message-input', '@ai [[slow]] a long story please');
    await alice.page.press('#message-input', 'Enter');
    const stopButton = bob.page.locator('#messages .ai-stream button.stop');
    await bob.page.locator('#messages .ai-stream:not([data-response-id^="pending"]) .text:not(:empty)').waitFor({ timeout: TIMEOUT });
    await stopButton.click();
    for (const [who, p] of [['alice', alice.page], ['bob', bob.page]]) {
      await p.locator('#messages > .message.ai.stopped').waitFor({ timeout: TIMEOUT });
      check((await p.locator('#messages .ai-stream').count()) === 0, `${who}: the stopped reply replaced its placeholder`);
    }
    check(true, 'a reply stopped from the page shows as stopped for everyone');

    // More than the 50 entries a join brings: scrolling to the top loads the older ones.
    for (let i = 0; i < 50; i++) {
      await alice.page.fill('#message-input', `filler ${i}`);
      await alice.page.press('#message-input', 'Enter');
    }
    await waitForMessage(bob.page, 'alice', 'filler 49');
    await bob.page.reload();
    await bob.page.locator('#status[data-state="connected"]').waitFor({ timeout: TIMEOUT });
    await bob.page.locator('#messages > .message[data-id="57"]').waitFor({ timeout: TIMEOUT });
    const shownIds = () => bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages > .message')].map((li) => Number(li.dataset.id)));
    check((await shownIds())[0] === 8, 'bob: a join shows the last 50 entries', await shownIds());
    await bob.page.evaluate(() => { document.getElementById('messages').scrollTop = 0; });
    await bob.page.locator('#messages > .message[data-id="1"]').waitFor({ timeout: TIMEOUT });
    check(
      JSON.stringify(await shownIds()) === JSON.stringify(Array.from({ length: 57 }, (_, i) => i + 1)),
      'bob: scrolling to the top loads the older entries, in order',
      await shownIds(),
    );

    // bob leaves: alice sees it.
    await bob.page.click('#leave-button');
    await bob.page.locator('#join').waitFor({ state: 'visible', timeout: TIMEOUT });
    // Having left, a reload asks again (with the name filled in).
    await bob.page.reload();
    await bob.page.locator('#join').waitFor({ state: 'visible', timeout: TIMEOUT });
    check((await bob.page.locator('#name-input').inputValue()) === 'bob', 'bob: after leaving, a reload asks again, name filled in');
    await waitForPresence(alice.page, ['alice']);
    // (The first "bob left" was his reload above.)
    await alice.page.locator('#messages .notice.leave', { hasText: 'bob' }).nth(1).waitFor({ timeout: TIMEOUT });
    check(true, 'alice: bob left (presence and notice)');

    for (const [who, s] of [['alice', alice], ['bob', bob]]) {
      check(s.problems.length === 0, `${who}: no script errors`, s.problems);
    }
    console.log('all checks passed');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
