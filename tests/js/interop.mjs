// Interop test of lodge's `doc` class with the real Yjs clients: several `yjs` +
// `y-websocket` clients (WebSocketPolyfill = `ws`) edit one document concurrently at
// random; every wait is on events (doc updates, sync, awareness changes), never on
// sleeps, with a deadline. After each round every client's text must equal the others'
// and `GET /doc/{name}/text`.
//
//   node interop.mjs --url http://127.0.0.1:PORT [--doc NAME] [--clients 4] [--edits 30]
//                    [--rounds 1] [--control] [--seed 1] [--versions]
//
// --control: after each round but the last, print `READY <round>` and wait for a line
// on stdin before the next (the Rust test evicts or restarts the host in between).
// Round 2 starts by dropping a client abruptly (its awareness removal must reach the
// others even though the object may be evicted) and by checking queryAwareness on a raw
// socket; rounds from 3 on also edit while possibly disconnected. Answering `offline`
// instead (the host is down) makes every client edit while disconnected, then print
// `OFFLINE-EDITED` and wait for the next line. --versions adds the
// version phase: save, edit, restore, and every live client sees the restored text.
// The last lines are `FINAL <json text>` and `N passed, N failed`.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as readline from 'node:readline'

import { check, parseArgs, run } from './harness.mjs'

const args = parseArgs(process.argv.slice(2))
const BASE = (args.url || 'http://127.0.0.1:8080').replace(/\/$/, '')
const CLASS = args.class || 'doc'
const DOC = args.doc || `interop-${Date.now()}`
const CLIENTS = Number(args.clients || 4)
const EDITS = Number(args.edits || 30)
const ROUNDS = Number(args.rounds || 1)
const WAIT_MS = Number(args.wait || 60000)
let seed = Number(args.seed || 1) >>> 0 || 1

// xorshift32: the edits are reproducible from --seed.
function rand () {
  seed ^= seed << 13; seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5; seed >>>= 0
  return seed / 4294967296
}
const randInt = (n) => Math.floor(rand() * n)

/** Resolves when `pred()` holds, re-checking whenever one of `sources` ([emitter, event]) fires. */
function waitUntil (what, pred, sources, timeout = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const offs = []
    let timer = null
    const finish = (err) => {
      clearTimeout(timer)
      for (const off of offs) off()
      if (err) reject(err); else resolve()
    }
    const test = () => {
      let ok = false
      try { ok = pred() } catch (e) { return finish(e) }
      if (ok) finish()
    }
    for (const [emitter, event] of sources) {
      emitter.on(event, test)
      offs.push(() => emitter.off(event, test))
    }
    timer = setTimeout(() => finish(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout)
    test()
  })
}

const wsBase = BASE.replace(/^http/, 'ws') + '/' + CLASS
const room = encodeURIComponent(DOC)
const docUrl = `${BASE}/${CLASS}/${room}`

function makeClient (name) {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const provider = new WebsocketProvider(wsBase, room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    maxBackoffTime: 400
  })
  provider.awareness.setLocalStateField('user', { name, color: '#' + (0x100000 + randInt(0xefffff)).toString(16) })
  return { name, doc, text, provider }
}

async function serverText () {
  const res = await fetch(`${docUrl}/text`)
  if (!res.ok) throw new Error(`GET /text: HTTP ${res.status}`)
  return res.text()
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])

function converged (clients) {
  if (!clients.every((c) => c.provider.synced)) return false
  const sv = Y.encodeStateVector(clients[0].doc)
  const text = clients[0].text.toString()
  return clients.every((c) => sameBytes(Y.encodeStateVector(c.doc), sv) && c.text.toString() === text)
}

function sources (clients) {
  return clients.flatMap((c) => [[c.doc, 'update'], [c.provider, 'sync'], [c.provider, 'status']])
}

async function waitConverged (clients, what) {
  await waitUntil(`${what}: all clients converge`, () => converged(clients), sources(clients))
}

async function waitSynced (clients, what) {
  await waitUntil(`${what}: all clients synced`, () => clients.every((c) => c.provider.synced), sources(clients))
}

const WORDS = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'héllo', 'wörld', '😀', '\n', 'yjs', 'lodge', ' ', 'é']

function randomEdit (c) {
  const len = c.text.length
  c.doc.transact(() => {
    if (len > 20 && rand() < 0.35) {
      const at = randInt(len)
      // Never split a surrogate pair: delete whole code points.
      const s = c.text.toString()
      let start = at
      if (start > 0 && /[\udc00-\udfff]/.test(s[start])) start--
      let end = Math.min(len, start + 1 + randInt(6))
      if (end < len && /[\udc00-\udfff]/.test(s[end])) end++
      c.text.delete(start, end - start)
    } else {
      const s = c.text.toString()
      let at = randInt(len + 1)
      if (at > 0 && at < len && /[\udc00-\udfff]/.test(s[at])) at--
      c.text.insert(at, WORDS[randInt(WORDS.length)] + (rand() < 0.5 ? ' ' : ''))
    }
  })
}

/** Every client makes `n` random edits, interleaved with the others' and with the network. */
async function editConcurrently (clients, n) {
  await Promise.all(clients.map(async (c) => {
    for (let i = 0; i < n; i++) {
      randomEdit(c)
      if (rand() < 0.5) await new Promise((resolve) => setImmediate(resolve))
    }
  }))
}

async function compareWithServer (clients, what) {
  const expected = clients[0].text.toString()
  const got = await serverText()
  check(`${what}: GET /text equals every client's text (${expected.length} UTF-16 units)`, got === expected,
    `server ${JSON.stringify(got.slice(0, 80))} vs client ${JSON.stringify(expected.slice(0, 80))}`)
  return expected
}

function seesUsers (c, names) {
  const seen = new Set([...c.provider.awareness.getStates().values()].map((s) => s.user && s.user.name))
  return names.every((n) => seen.has(n))
}

async function waitAwareness (clients, names, what) {
  await waitUntil(`${what}: every client sees ${names.join(', ')}`,
    () => clients.every((c) => seesUsers(c, names.filter((n) => n !== c.name))),
    clients.map((c) => [c.provider.awareness, 'change']))
}

/** A raw y-websocket socket: the messages it receives, decoded enough to test. */
function rawSocket () {
  const ws = new WebSocket(`${wsBase}/${room}`)
  ws.binaryType = 'arraybuffer'
  const frames = []
  const waiters = []
  ws.on('message', (data) => {
    frames.push(new Uint8Array(data))
    for (const w of waiters.splice(0)) w()
  })
  const next = (pred, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`raw socket: no ${what} within ${WAIT_MS} ms`)), WAIT_MS)
    const look = () => {
      const i = frames.findIndex(pred)
      if (i >= 0) { clearTimeout(timer); resolve(frames.splice(i, 1)[0]) } else waiters.push(look)
    }
    look()
  })
  const opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return { ws, next, opened }
}

/** Decodes the entries of an awareness message (type 1). */
function awarenessEntries (frame) {
  let pos = 0
  const uint = () => {
    let n = 0; let mult = 1
    for (;;) {
      const b = frame[pos++]
      n += (b & 0x7f) * mult
      mult *= 128
      if (b < 0x80) return n
    }
  }
  const type = uint()
  if (type !== 1) return null
  uint() // payload length
  const count = uint()
  const out = []
  for (let i = 0; i < count; i++) {
    const client = uint()
    const clock = uint()
    const len = uint()
    const json = new TextDecoder().decode(frame.subarray(pos, pos + len))
    pos += len
    out.push({ client, clock, state: JSON.parse(json) })
  }
  return out
}

let stdinLines = null
function nextCommand () {
  if (!stdinLines) {
    const rl = readline.createInterface({ input: process.stdin })
    const queue = []
    const waiting = []
    rl.on('line', (line) => { if (waiting.length) waiting.shift()(line); else queue.push(line) })
    rl.on('close', () => { for (const w of waiting.splice(0)) w('') })
    stdinLines = () => queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiting.push(resolve))
  }
  return stdinLines()
}

async function main () {
  console.log(`# doc ${docUrl}, ${CLIENTS} clients, ${EDITS} edits each per round, ${ROUNDS} round(s), seed ${args.seed || 1}`)
  const clients = []
  for (let i = 0; i < CLIENTS; i++) clients.push(makeClient(`client-${i}`))
  const names = clients.map((c) => c.name)
  let ghost = null

  for (let round = 1; round <= ROUNDS; round++) {
    const what = `round ${round}`
    if (round === 1) {
      ghost = makeClient('ghost')
      await waitSynced([...clients, ghost], what)
      check(`${what}: ${CLIENTS + 1} clients connected and synced`, true)
      await waitAwareness([...clients, ghost], [...names, 'ghost'], what)
      check(`${what}: awareness reaches every client (names and colors)`, true)
    }
    if (round === 2 && ghost) {
      // The object was (typically) evicted in between; the sockets stayed open. The ghost
      // vanishes without a goodbye: its close reaches the object (re-activated for it),
      // which announces the removal from what the socket's attachment kept.
      const ghostId = ghost.doc.clientID
      ghost.provider.shouldConnect = false
      ghost.provider.ws.terminate()
      await waitUntil(`${what}: the ghost's awareness is removed everywhere`,
        () => clients.every((c) => !c.provider.awareness.getStates().has(ghostId)),
        clients.map((c) => [c.provider.awareness, 'change']))
      check(`${what}: an abruptly closed client's awareness is removed for the others`, true)
      ghost.provider.destroy()
      ghost = null

      // A newcomer and a query get the last-known states from the sockets' attachments.
      const raw = rawSocket()
      await raw.opened
      const userNames = (f) => f[0] === 1 ? awarenessEntries(f).map((e) => e.state && e.state.user && e.state.user.name) : []
      const full = (f) => names.every((n) => userNames(f).includes(n))
      const onConnect = await raw.next(full, 'awareness with every client on connect')
      check(`${what}: a newcomer gets every known awareness state on connect`, !userNames(onConnect).includes('ghost'), JSON.stringify(userNames(onConnect)))
      raw.ws.send(new Uint8Array([3]))
      await raw.next(full, 'an answer to queryAwareness with every client')
      check(`${what}: queryAwareness is answered with the last-known states`, true)
      raw.ws.close()
    }
    if (round >= 3) {
      // Edits made while the connection may be down are kept and sent on reconnect.
      await editConcurrently(clients, Math.max(1, EDITS >> 2))
      await waitSynced(clients, what)
      check(`${what}: every client reconnected and synced`, true)
      await waitAwareness(clients, names, what)
      check(`${what}: awareness is back after reconnecting`, true)
    } else {
      await waitSynced(clients, what)
    }
    await editConcurrently(clients, EDITS)
    await waitConverged(clients, what)
    check(`${what}: ${CLIENTS} clients converged after concurrent edits`, true)
    await compareWithServer(clients, what)
    if (args.control && round < ROUNDS) {
      console.log(`READY ${round}`)
      let line = await nextCommand()
      if (line.trim() === 'offline') {
        // The host is down: every client notices, keeps editing locally, and sends its
        // edits when the host is back (checked by the next round's convergence).
        await waitUntil('every client notices the host is gone', () => clients.every((c) => !c.provider.wsconnected || !c.provider.synced),
          clients.map((c) => [c.provider, 'status']))
        check(`${what}: every client saw the host go away`, true)
        await editConcurrently(clients, 10)
        console.log('OFFLINE-EDITED')
        line = await nextCommand()
      }
      if (line.trim() === 'stop') break
    }
  }

  if (args.versions) {
    const what = 'versions'
    const saved = await (await fetch(`${docUrl}/versions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ label: 'checkpoint' }) })).json()
    const checkpoint = clients[0].text.toString()
    check(`${what}: POST /versions records the current text`, saved.label === 'checkpoint' && saved.length === [...checkpoint].length, JSON.stringify(saved))
    await editConcurrently(clients, 10)
    await waitConverged(clients, `${what} edits`)
    check(`${what}: the text moved on`, clients[0].text.toString() !== checkpoint)
    const res = await fetch(`${docUrl}/versions/${saved.id}/restore`, { method: 'POST' })
    const restored = await res.json()
    check(`${what}: restore answers 200`, res.status === 200 && restored.restored === saved.id, JSON.stringify(restored))
    await waitUntil(`${what}: every client shows the restored text`,
      () => clients.every((c) => c.text.toString() === checkpoint), clients.map((c) => [c.doc, 'update']))
    check(`${what}: every live client received the restore as an edit`, true)
    await waitConverged(clients, `${what} restore`)
    await compareWithServer(clients, `${what} restore`)
    const list = await (await fetch(`${docUrl}/versions`)).json()
    const labels = list.map((v) => v.label)
    check(`${what}: history keeps the work from before the restore`,
      labels.includes('checkpoint') && labels.some((l) => l && l.startsWith('before restoring')) && labels.some((l) => l && l.startsWith('restored version')),
      JSON.stringify(labels))
    const before = list.find((v) => v.label && v.label.startsWith('before restoring'))
    const beforeText = (await (await fetch(`${docUrl}/versions/${before.id}`)).json()).text
    check(`${what}: the pre-restore text is still readable`, beforeText !== checkpoint && beforeText.length > 0)
    // Editing continues normally on top of the restore.
    await editConcurrently(clients, 5)
    await waitConverged(clients, `${what} after restore`)
    await compareWithServer(clients, `${what} after restore`)
  }

  const final = clients[0].text.toString()
  for (const c of clients) c.provider.destroy()
  if (ghost) ghost.provider.destroy()
  console.log(`FINAL ${JSON.stringify(final)}`)
}

run(main)
