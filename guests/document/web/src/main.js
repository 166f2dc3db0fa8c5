// The lodge `doc` editor: CodeMirror 6 bound to the object's shared Y.Text ("content")
// through y-codemirror.next, synced with y-websocket over the object's own WebSocket,
// with other people's cursors (awareness `user: {name, color, colorLight}`), a
// connection status and the version history panel. Bundled by esbuild into
// dist/app.js, which the guest embeds and serves at /doc/{name}/app.js.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { EditorView, basicSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { keymap } from '@codemirror/view'
import * as decoding from 'lib0/decoding'

const config = JSON.parse(document.getElementById('config').textContent)
const $ = (id) => document.getElementById(id)

// ---- who am I -------------------------------------------------------------------

const NAME_KEY = 'lodge-doc:name'
const COLOR_KEY = 'lodge-doc:color'
const COLORS = ['#d1495b', '#2f6feb', '#1a7f37', '#8250df', '#bf5b04', '#0a7ea4', '#c4358f', '#6e7781']

function storedColor () {
  let color = null
  try { color = localStorage.getItem(COLOR_KEY) } catch (_) {}
  if (!color || !/^#[0-9a-f]{6}$/i.test(color)) {
    color = COLORS[Math.floor(Math.random() * COLORS.length)]
    try { localStorage.setItem(COLOR_KEY, color) } catch (_) {}
  }
  return color
}

function storedName () {
  try { return localStorage.getItem(NAME_KEY) || '' } catch (_) { return '' }
}

const user = { name: storedName(), color: storedColor() }

/** Shows a message above the editor until the next one (`kind` styles it). */
function showNotice (text, kind) {
  const notice = $('notice')
  notice.textContent = text
  notice.dataset.kind = kind || ''
  notice.hidden = false
}

// ---- the shared document ----------------------------------------------------------

const ydoc = new Y.Doc()
const ytext = ydoc.getText(config.text || 'content')
const wsBase = location.origin.replace(/^http/, 'ws') + '/' + encodeURIComponent(config.class)
// y-websocket connects to `${serverUrl}/${room}`: /doc/{name}, which the object accepts.
const provider = new WebsocketProvider(wsBase, config.room, ydoc, { disableBc: true })
const undoManager = new Y.UndoManager(ytext)

function announce () {
  provider.awareness.setLocalStateField('user', {
    name: user.name || 'Anonymous',
    color: user.color,
    colorLight: user.color + '33'
  })
  const button = $('name-button')
  button.querySelector('.name').textContent = user.name || 'Anonymous'
  button.querySelector('.swatch').style.background = user.color
}

// One edit becomes one update, and the server refuses an update above its limit (the
// socket is closed with 4413, or 1009 by the host). An edit that large would be refused
// again at every reconnect, so it is refused here, before it enters the document.
const MAX_EDIT_BYTES = config.maxEditBytes || 512 * 1024
const encoder = new TextEncoder()
const refuseHugeEdits = EditorState.transactionFilter.of((tr) => {
  if (!tr.docChanged || !tr.isUserEvent('input')) return tr
  let chars = 0
  tr.changes.iterChanges((fromA, toA, fromB, toB, text) => { chars += text.length })
  // UTF-16 length bounds the UTF-8 size from below (x3 above): encode only when close.
  if (chars * 3 <= MAX_EDIT_BYTES) return tr
  let bytes = 0
  tr.changes.iterChanges((fromA, toA, fromB, toB, text) => { bytes += encoder.encode(text.toString()).length })
  if (bytes <= MAX_EDIT_BYTES) return tr
  showNotice(`That paste is ${kib(bytes)}; one edit may add at most ${kib(MAX_EDIT_BYTES)}. ` +
    'Paste it in smaller parts. Nothing was changed.', 'refused')
  return []
})
const kib = (n) => n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`

const view = new EditorView({
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [
      refuseHugeEdits,
      keymap.of(yUndoManagerKeymap),
      basicSetup,
      EditorView.lineWrapping,
      yCollab(ytext, provider.awareness, { undoManager })
    ]
  }),
  parent: $('editor')
})

// ---- connection status -------------------------------------------------------------

const status = $('status')
let state = 'connecting'
function showStatus () {
  if (state === 'refused') return
  status.dataset.state = state
  status.dataset.synced = String(provider.synced)
  status.textContent = state === 'connected'
    ? (provider.synced ? 'connected' : 'syncing…')
    : state === 'connecting' ? 'connecting…' : 'offline: edits are kept and sent on reconnect'
}
provider.on('status', (e) => { if (state !== 'refused') { state = e.status; showStatus() } })

// y-websocket notices a dead connection only after 30 s without a message. Every few
// seconds the page sends the text frame "ping", which the host answers with "pong" without
// waking the document; when nothing at all came back for a while the socket is given up,
// so "connected" never lies for long after the network drops, and y-websocket reconnects
// as usual. The answer is taken here: y-websocket only reads binary frames.
const PROBE_MS = 3000
const SILENCE_MS = 8000
provider.on('status', (e) => {
  const ws = provider.ws
  if (e.status !== 'connected' || !ws || ws.lodgeProbe) return
  ws.lodgeProbe = true
  const handle = ws.onmessage
  ws.onmessage = (event) => {
    if (typeof event.data === 'string') {
      if (provider.ws === ws) provider.wsLastMessageReceived = Date.now()
      return
    }
    handle(event)
  }
})
setInterval(() => {
  const ws = provider.ws
  if (!provider.wsconnected || !ws || ws.readyState !== WebSocket.OPEN) return
  if (Date.now() - provider.wsLastMessageReceived > SILENCE_MS) {
    // What y-websocket itself does after its 30 s: its close handler marks the provider
    // disconnected at once and schedules the reconnect (a plain close() would wait for
    // the closing handshake that a dead peer never answers).
    if (ws.onclose) ws.onclose(null)
    else ws.close()
    return
  }
  ws.send('ping')
}, PROBE_MS)
provider.on('sync', () => showStatus())
provider.on('closed', (e) => {
  if (state === 'refused') return
  state = 'disconnected'
  showStatus()
  status.textContent = `closed by the server (${e.code}${e.reason ? ': ' + e.reason : ''})`
})
// A change the server refuses as too large would be sent again at every reconnect, and
// nothing typed after it would reach anyone: stop, and say what to do. Known from the
// update's size before the server answers (the close code often never arrives: the
// server hangs up while the browser is still sending), or from the close code.
function refuseSync () {
  if (state === 'refused') return
  provider.shouldConnect = false
  provider.disconnect()
  state = 'refused'
  status.dataset.state = state
  status.textContent = 'not syncing: a change is too large for the server'
  showNotice('A change in this tab is larger than the server accepts, so your edits are no ' +
    'longer sent. Copy any text you want to keep, then reload the page.', 'refused')
}
const MAX_UPDATE_BYTES = config.maxUpdateBytes || 1024 * 1024
ydoc.on('update', (update, origin) => {
  if (origin !== provider && update.length > MAX_UPDATE_BYTES) refuseSync()
})
provider.on('connection-close', (e) => {
  if (e && (e.code === 1009 || e.code === 4413)) refuseSync()
})
showStatus()

// ---- name dialog --------------------------------------------------------------------

function askName () {
  $('name-input').value = user.name
  $('name-dialog').hidden = false
  $('name-input').focus()
}
$('name-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const name = $('name-input').value.trim().slice(0, 40)
  if (!name) return
  user.name = name
  try { localStorage.setItem(NAME_KEY, name) } catch (_) {}
  $('name-dialog').hidden = true
  announce()
  view.focus()
})
$('name-button').addEventListener('click', askName)
announce()
if (!user.name) askName()

// ---- version history ----------------------------------------------------------------

const base = config.base
const message = $('message')
function fail (what, err) { message.textContent = `${what}: ${err.message || err}` }

async function api (method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const data = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`)
  return data
}

function when (ts) {
  const d = new Date(ts)
  const same = d.toDateString() === new Date().toDateString()
  return same ? d.toLocaleTimeString() : d.toLocaleString()
}

function versionTitle (v) {
  return v.label || (v.auto ? 'Automatic' : `Version ${v.id}`)
}

async function refreshVersions () {
  let list
  try { list = await api('GET', '/versions') } catch (err) { return fail('Loading versions failed', err) }
  const ul = $('version-list')
  ul.replaceChildren()
  if (list.length === 0) {
    const li = document.createElement('li')
    li.className = 'empty'
    li.textContent = 'No versions yet'
    ul.append(li)
    return
  }
  for (const v of list.slice().reverse()) {
    const li = document.createElement('li')
    li.dataset.id = String(v.id)
    const label = document.createElement('span')
    label.className = 'label' + (v.label ? '' : ' auto')
    label.textContent = `#${v.id} ${versionTitle(v)}`
    label.title = label.textContent
    const meta = document.createElement('span')
    meta.className = 'meta'
    meta.textContent = `${when(v.ts)} · ${v.length} chars`
    const actions = document.createElement('span')
    actions.className = 'actions'
    const viewBtn = document.createElement('button')
    viewBtn.className = 'view'
    viewBtn.type = 'button'
    viewBtn.textContent = 'View'
    viewBtn.addEventListener('click', () => showVersion(v.id))
    const restoreBtn = document.createElement('button')
    restoreBtn.className = 'restore'
    restoreBtn.type = 'button'
    restoreBtn.textContent = 'Restore'
    restoreBtn.addEventListener('click', () => restoreVersion(v.id))
    actions.append(viewBtn, restoreBtn)
    li.append(label, actions, meta)
    ul.append(li)
  }
}

let viewing = null
async function showVersion (id) {
  try {
    const v = await api('GET', `/versions/${id}`)
    viewing = id
    $('version-view-title').textContent = `#${v.id} ${versionTitle(v)} · ${when(v.ts)}`
    $('version-preview').textContent = v.text
    $('version-view').hidden = false
    message.textContent = ''
  } catch (err) { fail('Loading the version failed', err) }
}

async function restoreVersion (id) {
  try {
    await api('POST', `/versions/${id}/restore?by=${encodeURIComponent(user.name || '')}`)
    message.textContent = ''
    await refreshVersions()
  } catch (err) { fail('Restore failed', err) }
}

$('save-version').addEventListener('click', async () => {
  const label = $('version-label').value.trim()
  try {
    await api('POST', '/versions', label ? { label } : {})
    $('version-label').value = ''
    message.textContent = ''
    await refreshVersions()
  } catch (err) { fail('Saving failed', err) }
})
$('version-label').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('save-version').click() })
$('version-view-close').addEventListener('click', () => { $('version-view').hidden = true; viewing = null })
$('version-view-restore').addEventListener('click', () => { if (viewing !== null) restoreVersion(viewing) })

// The server records a version a few seconds after edits settle: look again then.
let settle = null
ydoc.on('update', () => {
  clearTimeout(settle)
  settle = setTimeout(refreshVersions, 7000)
})
setInterval(refreshVersions, 30000)
refreshVersions()

// ---- restores ----------------------------------------------------------------------

// The server sends message type 100 after the update of a restore, and on connect once the
// document was ever restored: `{seq, version, label, by, ts}`. A restore may reuse the
// very characters this editor typed, so undoing across it would cut them out of the
// restored text (and save that for everyone): the undo history ends at every restore.
const MSG_RESTORED = 100
let restoresSeen = null
const notice = $('notice')
provider.messageHandlers[MSG_RESTORED] = (_encoder, decoder) => {
  let restore = {}
  try { restore = JSON.parse(decoding.readVarString(decoder)) } catch (_) {}
  const seq = Number(restore.seq) || 0
  if (restoresSeen !== null && seq <= restoresSeen) return
  undoManager.clear()
  const first = restoresSeen === null
  restoresSeen = seq
  // On connect it is news only if it happened since this page last heard of one.
  if (first && Date.now() - (Number(restore.ts) || 0) > 60000) return
  const what = `version ${restore.version}${restore.label ? ` (${restore.label})` : ''}`
  notice.textContent = `${restore.by || 'Someone'} restored ${what}${restore.ts ? ' at ' + when(restore.ts) : ''}. Undo starts again from here.`
  notice.hidden = false
  refreshVersions()
}

// For tests and debugging in the console.
window.lodgeDoc = { ydoc, ytext, provider, view, undoManager, refreshVersions }
