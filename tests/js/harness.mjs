// What the document's Node scripts share (the browser ones and the Yjs interop one): their
// arguments, the TAP-like `check` lines and final `N passed, N failed` summary the Rust
// tests read, and Chromium started the way this machine allows (Debian's package, no
// background networking).

import { chromium } from 'playwright-core'

/** `--key value` and `--flag` arguments. */
export function parseArgs (argv = process.argv.slice(2)) {
  const args = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) args[a.slice(2)] = argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : true
  }
  return args
}

let passed = 0
let failed = 0

/** Prints one check's outcome; returns it. */
export function check (name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok - ${name}`) } else { failed++; console.log(`not ok - ${name}${detail ? ': ' + detail : ''}`) }
  return ok
}

/** Headless Chromium: `--chromium PATH`, by default Debian's. */
export function launch (args) {
  return chromium.launch({
    executablePath: args.chromium || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run']
  })
}

/** Runs `main`, counts a throw as a failure, prints the summary and exits with it. */
export function run (main) {
  main().catch((e) => {
    failed++
    console.log(`not ok - ${e && e.stack ? e.stack : e}`)
  }).finally(() => {
    console.log(`${passed} passed, ${failed} failed`)
    process.exit(failed === 0 ? 0 : 1)
  })
}
