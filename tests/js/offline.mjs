// Headless Chromium check that the `doc` editor notices a dead connection quickly: the page
// connects, the test freezes the host (SIGSTOP: the TCP connection stays open but nothing
// comes back, as when a network drops), and the status must leave "connected" within
// seconds, not y-websocket's 30; once the host runs again the page reconnects.
//
//   node offline.mjs --url http://127.0.0.1:PORT [--doc NAME] [--chromium /usr/bin/chromium]
//
// Driven over stdin/stdout: prints READY, waits for the line "frozen", prints
// DETECTED <ms>, waits for "thawed", prints RECONNECTED, then `N passed, N failed`.

import { chromium } from 'playwright-core'
import * as readline from 'node:readline'

const args = {}
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i]
  if (a.startsWith('--')) args[a.slice(2)] = process.argv[i + 1] && !process.argv[i + 1].startsWith('--') ? process.argv[++i] : true
}
const BASE = (args.url || 'http://127.0.0.1:8080').replace(/\/$/, '')
const PAGE = `${BASE}/doc/${encodeURIComponent(args.doc || `offline-${Date.now()}`)}`

const input = readline.createInterface({ input: process.stdin })
const lines = input[Symbol.asyncIterator]()
async function expectLine (want) {
  const { value } = await lines.next()
  if (value !== want) throw new Error(`expected ${want}, got ${value}`)
}

let passed = 0
let failed = 0
function check (name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok - ${name}`) } else { failed++; console.log(`not ok - ${name}${detail ? ': ' + detail : ''}`) }
}

async function main () {
  const browser = await chromium.launch({
    executablePath: args.chromium || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run']
  })
  try {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(PAGE)
    await page.waitForFunction(() => {
      const s = document.getElementById('status')
      return s.dataset.state === 'connected' && s.dataset.synced === 'true'
    }, null, { timeout: 60000 })
    console.log('READY')
    await expectLine('frozen')
    const frozenAt = Date.now()
    await page.waitForFunction(() => document.getElementById('status').dataset.state !== 'connected',
      null, { timeout: 60000 })
    const ms = Date.now() - frozenAt
    console.log(`DETECTED ${ms}`)
    check('the page stops saying "connected" once nothing comes back', true)
    await expectLine('thawed')
    await page.waitForFunction(() => {
      const s = document.getElementById('status')
      return s.dataset.state === 'connected' && s.dataset.synced === 'true'
    }, null, { timeout: 60000 })
    console.log('RECONNECTED')
    check('and reconnects once the host answers again', true)
    await context.close()
  } finally {
    await browser.close()
  }
}

main().catch((e) => {
  failed++
  console.log(`not ok - ${e && e.stack ? e.stack : e}`)
}).finally(() => {
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
})
