// Starts a lodge host of its own for a test run, or uses one that is already running.
//   --lodge PATH   the lodge binary to start (a fresh data dir on a free loopback port)
//   --wasm PATH    the game component (default guests/target/wasm32-wasip2/release/game.wasm)
//   URL            otherwise: a running host's base URL (default http://127.0.0.1:8787)
import { spawn } from "child_process";
import { mkdtempSync, writeFileSync, rmSync } from "fs";
import { createServer } from "net";
import { tmpdir } from "os";
import { join, resolve } from "path";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/**
 * The host to test against. `settings` are the game class settings (only used for a host
 * of our own). Returns { base, own, start(), stop() }.
 */
export async function useHost(argv, settings) {
  const at = (flag) => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : null; };
  const lodge = at("--lodge") && resolve(at("--lodge"));
  if (!lodge) {
    const base = (argv.find((a) => /^https?:/.test(a)) || "http://127.0.0.1:8787").replace(/\/+$/, "");
    return { base, own: false, start: async () => {}, stop: async () => {} };
  }
  const wasm = resolve(at("--wasm") || "guests/target/wasm32-wasip2/release/game.wasm");
  const dir = mkdtempSync(join(tmpdir(), "lodge-game-test-"));
  const port = await freePort();
  const base = "http://127.0.0.1:" + port;
  const config = join(dir, "lodge.toml");
  const settingsToml = Object.entries(settings).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ");
  writeFileSync(config, [
    `listen = "127.0.0.1:${port}"`,
    `data_dir = ${JSON.stringify(join(dir, "data"))}`,
    "[runtime]", "idle_timeout_ms = 300",
    "[classes.game]", `component = ${JSON.stringify(wasm)}`,
    `settings = { ${settingsToml} }`, "",
  ].join("\n"));
  let child = null, log = "";
  const host = {
    base, own: true,
    async start() {
      child = spawn(lodge, ["serve", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
      // The host's output is shown only if the run fails.
      child.stdout.on("data", (d) => { log += d; });
      child.stderr.on("data", (d) => { log += d; });
      for (let i = 0; i < 100; i++) {
        try { if ((await fetch(base + "/game/lobby/state")).ok) return; } catch (_) { /* not up yet */ }
        await sleep(100);
      }
      throw new Error("lodge did not come up on " + base + "\n" + log);
    },
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
  process.on("exit", (code) => {
    try { child.kill("SIGKILL"); } catch (_) { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
    if (code) console.error("---- lodge output ----\n" + log);
  });
  await host.start();
  return host;
}
