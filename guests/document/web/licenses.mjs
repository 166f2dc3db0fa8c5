// Writes dist/THIRD_PARTY_LICENSES.txt: the name, version and license text of every
// package bundled into dist/app.js (everything installed except the build tool).
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('.', import.meta.url).pathname
const modules = join(root, 'node_modules')
const dirs = []
for (const name of readdirSync(modules).sort()) {
  if (name.startsWith('.')) continue
  if (name.startsWith('@')) {
    for (const sub of readdirSync(join(modules, name)).sort()) dirs.push(`${name}/${sub}`)
  } else dirs.push(name)
}
let out = 'Third-party software bundled into app.js (the lodge `doc` editor page).\n'
for (const name of dirs) {
  if (name === 'esbuild' || name.startsWith('@esbuild/')) continue
  const dir = join(modules, name)
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f))
  out += `\n${'='.repeat(72)}\n${pkg.name}@${pkg.version} (${pkg.license || 'see below'})\n${'='.repeat(72)}\n`
  out += file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8').trim() + '\n' : '(no license file shipped)\n'
}
writeFileSync(join(root, 'dist/THIRD_PARTY_LICENSES.txt'), out)
