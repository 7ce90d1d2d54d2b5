// The whole stack a browser test needs: the real `modproxy` binary on a temporary HOME (a copy of
// html/ and a config on free ports) in front of the three example todo backends, each on a free port.
// The same arrangement as tests/e2e/conftest.py, in JavaScript so `node --test` can own it.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = path.resolve(REPO, process.env.CARGO_TARGET_DIR ?? 'target', 'debug');
export const LANGUAGES = ['rust', 'python', 'node'];

/** The command line that serves one example backend on `addr`. */
function backendCommand(lang, addr) {
  switch (lang) {
    case 'rust':
      return [path.join(TARGET, 'rust-backend'), [addr]];
    case 'python':
      return [path.join(REPO, '.venv', 'bin', 'python'), [path.join(REPO, 'examples/python-backend/app.py'), addr]];
    default:
      return [process.execPath, [path.join(REPO, 'examples/node-backend/index.js'), addr]];
  }
}

/** A port nobody listens on right now (the usual bind-to-0 trick; the race is harmless in tests). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts `command`, keeping its stderr so a failure can say why. */
function start(name, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  child.label = name;
  child.stderrText = '';
  child.stderr.on('data', (chunk) => {
    child.stderrText = (child.stderrText + chunk).slice(-4000);
  });
  child.exited = once(child, 'exit');
  return child;
}

/** Resolves once `port` accepts connections; rejects if `child` exits first or 20 s pass. */
async function waitListening(port, child) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${child.label} exited (${child.exitCode ?? child.signalCode}) before listening:\n${child.stderrText}`);
    }
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(true));
      socket.on('error', () => resolve(false));
      socket.on('connect', () => socket.destroy());
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`${child.label} did not listen on port ${port}:\n${child.stderrText}`);
}

/** Stops one process: SIGTERM, then SIGKILL if it is still there after 10 s. */
async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await child.exited;
  clearTimeout(timer);
}

/**
 * Starts the proxy and the three backends. Returns `{ url, home, backends, stopBackend(lang), stop() }`;
 * `stop()` ends everything and removes the temporary HOME.
 */
export async function startStack() {
  for (const binary of ['modproxy', 'rust-backend']) {
    if (!fs.existsSync(path.join(TARGET, binary))) {
      throw new Error(`${path.join(TARGET, binary)} is missing: run \`cargo build --workspace\` first (make test-browser does)`);
    }
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'modproxy-browser-'));
  fs.cpSync(path.join(REPO, 'html'), path.join(home, 'html'), { recursive: true });
  fs.mkdirSync(path.join(home, 'conf'));
  const port = await freePort();
  const backendPorts = {};
  for (const lang of LANGUAGES) backendPorts[lang] = await freePort();
  const modules = LANGUAGES.map(
    (lang) => `  { module = "todo-${lang}", forward_pass = "127.0.0.1:${backendPorts[lang]}", pipeline = 16, fail_timeout = 0.5 },`,
  );
  fs.writeFileSync(
    path.join(home, 'conf', 'default.toml'),
    ['[server]', `port = ${port}`, 'listen = "127.0.0.1"', '', '[module]', 'module_socket = [', ...modules, ']', ''].join('\n'),
  );

  const procs = new Map();
  const stop = async () => {
    await Promise.all([...procs.values()].map(stopProcess));
    procs.clear();
    fs.rmSync(home, { recursive: true, force: true });
  };
  try {
    for (const lang of LANGUAGES) {
      const [command, args] = backendCommand(lang, `127.0.0.1:${backendPorts[lang]}`);
      const child = start(`${lang} backend`, command, args);
      procs.set(lang, child);
      await waitListening(backendPorts[lang], child);
    }
    const proxy = start('modproxy', path.join(TARGET, 'modproxy'), ['--home', home]);
    procs.set('proxy', proxy);
    await waitListening(port, proxy);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    home,
    /** Stops one backend, e.g. to see how the page shows a backend that is down. */
    async stopBackend(lang) {
      const child = procs.get(lang);
      procs.delete(lang);
      if (child) await stopProcess(child);
    },
    stop,
  };
}
