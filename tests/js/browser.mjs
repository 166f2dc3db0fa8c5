// Headless Chromium check of the `doc` editor page: two people (separate browser
// contexts, so separate localStorage) open the same document, give their names, type
// at the same time, and each sees both edits and the other's named cursor; then the
// version panel saves, views and restores a version, and a reload keeps the name.
//
//   node browser.mjs --url http://127.0.0.1:PORT [--doc NAME] [--chromium /usr/bin/chromium]
//
// Chromium is Debian's package, driven by playwright-core (no browser download). The
// last line is `N passed, N failed`.

import { check, launch, parseArgs, run } from './harness.mjs'

const args = parseArgs()
const BASE = (args.url || 'http://127.0.0.1:8080').replace(/\/$/, '')
const DOC = args.doc || `browser-${Date.now()}`
const PAGE = `${BASE}/doc/${encodeURIComponent(DOC)}`
const WAIT = Number(args.wait || 60000)

/** Waits for a condition in the page; records a failure (not a crash) on timeout. */
async function waitIn (page, name, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT })
    return check(name, true)
  } catch (e) {
    return check(name, false, e.message.split('\n')[0])
  }
}

const editorText = (page) => page.evaluate(() => window.lodgeDoc.view.state.doc.toString())

const consoleErrors = []

async function openAs (browser, name, external) {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('request', (req) => {
    if (!req.url().startsWith(BASE) && !req.url().startsWith('data:')) external.push(req.url())
  })
  page.on('pageerror', (err) => consoleErrors.push(`${name}: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(`${name}: ${msg.text()}`) })
  await page.goto(PAGE)
  await waitIn(page, `${name}: the name dialog asks for a name on the first visit`,
    () => !document.getElementById('name-dialog').hidden)
  await page.fill('#name-input', name)
  await page.click('#name-ok')
  await waitIn(page, `${name}: connected and synced`,
    () => { const s = document.getElementById('status'); return s.dataset.state === 'connected' && s.dataset.synced === 'true' })
  return { context, page }
}

async function main () {
  const browser = await launch(args)
  const external = []
  try {
    const alice = await openAs(browser, 'Alice', external)
    const bob = await openAs(browser, 'Bob', external)
    check('the page has the documented ids', await alice.page.evaluate(() =>
      ['editor', 'status', 'versions', 'save-version', 'name-input'].every((id) => document.getElementById(id)) &&
      !!document.querySelector('#editor .cm-content')))

    // Both type at once, at opposite ends of the document. A first line, seen by both,
    // keeps the two ends apart: in an empty document both would type at position 0, and
    // characters typed concurrently at one position may interleave (that is Yjs merging
    // as designed, not a lost edit).
    await alice.page.click('#editor .cm-content')
    await alice.page.keyboard.type('Notes\n')
    await waitIn(bob.page, 'Bob sees the first line', () => window.lodgeDoc.view.state.doc.toString() === 'Notes\n')
    await alice.page.keyboard.press('Control+Home')
    await bob.page.click('#editor .cm-content')
    await bob.page.keyboard.press('Control+End')
    await Promise.all([
      alice.page.keyboard.type('Hello from Alice. ', { delay: 15 }),
      bob.page.keyboard.type('Bob was here. ', { delay: 15 })
    ])
    for (const [who, p] of [['Alice', alice.page], ['Bob', bob.page]]) {
      const ok = await waitIn(p, `${who} sees both edits`,
        () => { const t = window.lodgeDoc.view.state.doc.toString(); return t.includes('Hello from Alice. ') && t.includes('Bob was here. ') })
      if (!ok) console.log(`# ${who}'s text: ${JSON.stringify(await editorText(p))}`)
    }
    const a = await editorText(alice.page)
    const b = await editorText(bob.page)
    check('both editors show the same text', a === b, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
    const server = await (await fetch(`${PAGE}/text`)).text()
    check('the server has the same text', server === a, `${JSON.stringify(server)} vs ${JSON.stringify(a)}`)

    // Each sees the other's cursor, with the name.
    await waitIn(alice.page, "Alice sees Bob's cursor with his name",
      () => [...document.querySelectorAll('#editor .cm-ySelectionInfo')].some((e) => e.textContent.includes('Bob')))
    await waitIn(bob.page, "Bob sees Alice's cursor with her name",
      () => [...document.querySelectorAll('#editor .cm-ySelectionInfo')].some((e) => e.textContent.includes('Alice')))

    // Version panel: save with a label, view it, edit on, restore it.
    const saved = await editorText(alice.page)
    await alice.page.fill('#version-label', 'from the browser')
    await alice.page.click('#save-version')
    await waitIn(alice.page, 'the saved version is listed',
      () => [...document.querySelectorAll('#version-list li[data-id]')].some((li) => li.textContent.includes('from the browser')))
    await alice.page.click('#version-list li[data-id]:has-text("from the browser") button.view')
    await waitIn(alice.page, 'viewing the version shows its text',
      (t) => !document.getElementById('version-view').hidden && document.getElementById('version-preview').textContent === t, saved)
    await bob.page.click('#editor .cm-content')
    await bob.page.keyboard.press('Control+End')
    await bob.page.keyboard.type('More from Bob.', { delay: 10 })
    await waitIn(alice.page, "Alice sees Bob's later edit",
      () => window.lodgeDoc.view.state.doc.toString().includes('More from Bob.'))
    await alice.page.click('#version-list li[data-id]:has-text("from the browser") button.restore')
    for (const [who, p] of [['Alice', alice.page], ['Bob', bob.page]]) {
      await waitIn(p, `${who}'s editor shows the restored version`, (t) => window.lodgeDoc.view.state.doc.toString() === t, saved)
    }
    await waitIn(alice.page, 'the history lists the restore and keeps the work before it',
      () => {
        const items = [...document.querySelectorAll('#version-list li[data-id]')].map((li) => li.textContent)
        return items.some((t) => t.includes('restored version')) && items.some((t) => t.includes('before restoring'))
      })

    // Undo never removes text a restore brought back. The restored text reuses the
    // characters Alice and Bob typed; their undo history used to reach across the
    // restore and cut those out ("Th quick brown fox jums...") for everyone.
    await waitIn(bob.page, 'Bob is told who restored which version',
      () => { const n = document.getElementById('notice'); return !n.hidden && n.textContent.includes('Alice restored version') })
    await waitIn(bob.page, "Bob's version list shows the restore",
      () => [...document.querySelectorAll('#version-list li[data-id]')].some((li) => li.textContent.includes('restored version')))
    for (const [who, p] of [['Alice', alice.page], ['Bob', bob.page]]) {
      await p.click('#editor .cm-content')
      for (let i = 0; i < 3; i++) await p.keyboard.press('Control+z')
      check(`${who}'s undo leaves the restored text alone`, await editorText(p) === saved,
        JSON.stringify(await editorText(p)))
    }
    // A marker typed after the undos: once it is everywhere, so is anything sent before it.
    await alice.page.keyboard.press('Control+End')
    await alice.page.keyboard.type('!')
    for (const [who, p] of [['Alice', alice.page], ['Bob', bob.page]]) {
      await waitIn(p, `${who} sees the marker`, () => window.lodgeDoc.view.state.doc.toString().endsWith('!'))
      const t = await editorText(p)
      check(`${who} has the restored text intact`, t === saved + '!', JSON.stringify(t))
    }
    const stored = await (await fetch(`${PAGE}/text`)).text()
    check('the server kept the restored text intact', stored === saved + '!', JSON.stringify(stored))
    // Undo still works for what is typed after the restore.
    // (Yjs merges edits made within 500 ms into one undo step: start a new one.)
    await alice.page.evaluate(() => window.lodgeDoc.undoManager.stopCapturing())
    await alice.page.keyboard.type(' again', { delay: 10 })
    await alice.page.keyboard.press('Control+z')
    await waitIn(alice.page, 'undo takes back what was typed after the restore',
      (t) => window.lodgeDoc.view.state.doc.toString() === t, saved + '!')

    // A paste larger than one update may be is refused in the editor, with a message, and
    // the page keeps syncing (it used to reconnect forever, re-sending the paste).
    const before = await editorText(alice.page)
    await alice.page.evaluate(() => {
      const view = window.lodgeDoc.view
      view.dispatch({ changes: { from: 0, insert: 'z'.repeat(1300 * 1024) }, userEvent: 'input.paste' })
    })
    await waitIn(alice.page, 'a 1.3 MB paste is refused with a message saying so',
      () => { const n = document.getElementById('notice'); return !n.hidden && n.textContent.includes('That paste is 1.3 MB') })
    check('the refused paste changed nothing', await editorText(alice.page) === before)
    await alice.page.evaluate(() => window.lodgeDoc.view.dispatch({
      changes: { from: window.lodgeDoc.view.state.doc.length, insert: ' still syncing' }, userEvent: 'input.type'
    }))
    await waitIn(bob.page, 'what is typed after it reaches the others',
      (t) => window.lodgeDoc.view.state.doc.toString() === t, before + ' still syncing')
    await waitIn(alice.page, 'the page stays connected',
      () => document.getElementById('status').dataset.state === 'connected')
    await alice.page.evaluate(() => window.lodgeDoc.view.dispatch({
      changes: { from: window.lodgeDoc.view.state.doc.length - ' still syncing'.length, to: window.lodgeDoc.view.state.doc.length }, userEvent: 'delete'
    }))
    await waitIn(bob.page, 'and so does deleting it again',
      (t) => window.lodgeDoc.view.state.doc.toString() === t, before)

    // The name is remembered: no dialog after a reload.
    await alice.page.reload()
    await waitIn(alice.page, 'after a reload the name is remembered and the page syncs again',
      () => document.getElementById('name-dialog').hidden &&
        document.querySelector('#name-button .name').textContent === 'Alice' &&
        document.getElementById('status').dataset.synced === 'true')
    // A change too large for the server that got into the document anyway (not through
    // the editor's input) stops the page from reconnecting in a loop, and it says why.
    const stable = await (await fetch(`${PAGE}/text`)).text()
    await bob.page.evaluate(() => window.lodgeDoc.ytext.insert(0, 'q'.repeat(1300 * 1024)))
    await waitIn(bob.page, 'a change the server refuses stops the sync with a message',
      () => document.getElementById('status').dataset.state === 'refused' &&
        document.getElementById('notice').textContent.includes('larger than the server accepts'))
    check('and the stored text is untouched', await (await fetch(`${PAGE}/text`)).text() === stable)
    // The refusal is the server's (1009 from the host), so this error in the console is expected.
    for (let i = consoleErrors.length - 1; i >= 0; i--) {
      if (consoleErrors[i].startsWith('Bob: WebSocket connection') || consoleErrors[i].includes('1009')) consoleErrors.splice(i, 1)
    }
    check('the page loaded nothing from elsewhere', external.length === 0, external.join(', '))
    check('no errors in the page (script, CSP, failed loads)', consoleErrors.length === 0, consoleErrors.join(' | '))
    await alice.context.close()
    await bob.context.close()
  } finally {
    await browser.close()
  }
}

run(main)
