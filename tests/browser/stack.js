// The whole stack a browser test needs: the real `modproxy` binary in front of the example todo backends
// (the three SDK ones and the Go one written without an SDK), started by tests/stack.py (through
// tests/stack.cjs) as for the end-to-end tests; over plain HTTP, or over HTTPS with the certificate
// `modproxy cert local` makes.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startStack as launch } from '../stack.cjs';

export const LANGUAGES = ['rust', 'python', 'node', 'go'];
/** Those whose backends describe their methods (`_describe`): the SDK ones. */
export const DESCRIBED = ['rust', 'python', 'node'];

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODPROXY =
  process.env.MODPROXY_BIN ??
  path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'debug', 'modproxy');

/** The proxy and the four backends, as tests/stack.cjs hands them over. */
function launchAll() {
  const modules = Object.fromEntries(LANGUAGES.map((lang) => [lang, `todo-${lang}`]));
  return launch({ modules, settings: 'pipeline = 16, fail_timeout = 0.5' });
}

/**
 * Starts the proxy and the four backends. Returns `{ url, home, stopBackend(lang), stop() }`;
 * `stop()` ends everything and removes the temporary HOME.
 */
export async function startStack() {
  const stack = await launchAll();
  return {
    url: stack.url,
    home: stack.home,
    /** Stops one backend, e.g. to see how the page shows a backend that is down. */
    async stopBackend(lang) {
      await stack.stop(lang);
    },
    stop: () => stack.close(),
  };
}

/**
 * The same stack served over HTTPS as a developer sets it up: `modproxy cert local` makes the local CA
 * and a certificate for localhost and adds `[tls]` to the config, and the proxy is started again to
 * serve it ([tls] is taken on a start, not on a reload). `--no-trust` keeps the machine's own trust
 * stores as they are: the caller trusts `caFile` where its browser looks. Resolves to what `startStack`
 * does, `url` being `https://localhost:PORT`, plus `caFile`, the local CA's certificate.
 */
export async function startHttpsStack() {
  const stack = await launchAll();
  let proxy;
  const port = await freePort();
  try {
    await stack.stop('proxy');
    const made = spawnSync(
      MODPROXY,
      ['--home', stack.home, 'cert', 'local', '--no-trust', '--port', String(port)],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`modproxy cert local failed:\n${made.stdout}${made.stderr}`);
    proxy = spawn(MODPROXY, ['--home', stack.home], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitListening(port, proxy);
  } catch (error) {
    proxy?.kill();
    await stack.close();
    throw error;
  }
  return {
    url: `https://localhost:${port}`,
    home: stack.home,
    caFile: path.join(stack.home, 'certs', 'local-ca.pem'),
    async stopBackend(lang) {
      await stack.stop(lang);
    },
    async stop() {
      if (proxy.exitCode === null && proxy.signalCode === null) {
        proxy.kill('SIGTERM');
        await once(proxy, 'exit');
      }
      await stack.close();
    },
  };
}

/** A port nobody listens on right now (the race with another process is harmless in a test). */
async function freePort() {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once 127.0.0.1:`port` accepts a connection; rejects if `proc` exits or 20 s pass first. */
async function waitListening(port, proc) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`modproxy exited (${proc.exitCode})`);
    const connected = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (connected) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`modproxy did not listen on ${port} within 20 s`);
}
