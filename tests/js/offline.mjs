// Headless Chromium check that the `doc` editor notices a dead connection quickly: the page
// connects, the test freezes the host (SIGSTOP: the TCP connection stays open but nothing
// comes back, as when a network drops), and the status must leave "connected" within
// seconds, not y-websocket's 30; once the host runs again the page reconnects.
//
//   node offline.mjs --url http://127.0.0.1:PORT [--doc NAME] [--chromium /usr/bin/chromium]
//
// Driven over stdin/stdout: prints READY, waits for the line "frozen", prints
// DETECTED <ms>, waits for "thawed", prints RECONNECTED, then `N passed, N failed`.

import * as readline from 'node:readline'

import { check, launch, parseArgs, run } from './harness.mjs'

const args = parseArgs()
const BASE = (args.url || 'http://127.0.0.1:8080').replace(/\/$/, '')
const PAGE = `${BASE}/doc/${encodeURIComponent(args.doc || `offline-${Date.now()}`)}`

const input = readline.createInterface({ input: process.stdin })
const lines = input[Symbol.asyncIterator]()
async function expectLine (want) {
  const { value } = await lines.next()
  if (value !== want) throw new Error(`expected ${want}, got ${value}`)
}

async function main () {
  const browser = await launch(args)
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

run(main)
