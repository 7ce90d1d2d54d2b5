'use strict';
// End to end: a browser's POST through the real `modproxy` binary to examples/node-backend.
// Needs `cargo build -p modproxy` first (`make test-node` does it); fails, never skips, without it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const readline = require('node:readline');
const { setTimeout: sleep } = require('node:timers/promises');

const { freePort } = require('./client.js');

const REPO = path.resolve(__dirname, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
const PROXY = process.env.MODPROXY_BIN || path.join(TARGET, 'debug', 'modproxy');
const EXAMPLE = path.join(REPO, 'examples', 'node-backend', 'index.js');

let home;
let proxy;
let backend;
let url;

function spawnLogged(command, args, name) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.output = '';
  const keep = (chunk) => {
    child.output += chunk;
  };
  child.stderr.on('data', keep);
  child.exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
  child.name = name;
  return child;
}

/** Resolves when `port` accepts connections; rejects if `child` exits first or time runs out. */
async function waitForPort(port, child, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${child.name} exited early (${child.exitCode ?? child.signalCode}):\n${child.output}`);
    }
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${child.name} did not listen on ${port} within ${ms} ms:\n${child.output}`);
    await sleep(50);
  }
}

before(async () => {
  assert.ok(
    fs.existsSync(PROXY),
    `the proxy binary ${PROXY} is missing: run \`cargo build -p modproxy\` (make test-node does) or set MODPROXY_BIN`,
  );
  const [httpPort, backendPort] = [await freePort(), await freePort()];
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'modproxy-node-e2e-'));
  fs.mkdirSync(path.join(home, 'conf'));
  const html = path.join(REPO, 'html');
  if (fs.existsSync(html)) fs.cpSync(html, path.join(home, 'html'), { recursive: true });
  else fs.mkdirSync(path.join(home, 'html'));
  fs.writeFileSync(
    path.join(home, 'conf', 'default.toml'),
    [
      '[server]',
      `port = ${httpPort}`,
      'listen = "127.0.0.1"',
      'root_path = "html"',
      '',
      '[module]',
      `module_socket = [{ module = "js", forward_pass = "127.0.0.1:${backendPort}" }]`,
      '',
    ].join('\n'),
  );

  backend = spawnLogged(process.execPath, [EXAMPLE, `127.0.0.1:${backendPort}`], 'examples/node-backend');
  backend.stdout.on('data', (chunk) => {
    backend.output += chunk;
  });
  proxy = spawnLogged(PROXY, ['--home', home], 'modproxy');
  proxy.stdout.on('data', (chunk) => {
    proxy.output += chunk;
  });
  await waitForPort(backendPort, backend);
  await waitForPort(httpPort, proxy);
  url = `http://127.0.0.1:${httpPort}/js/`;
});

after(async () => {
  for (const child of [proxy, backend]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await child.exited;
    }
  }
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

/** POSTs an envelope as a browser would; returns the status and the parsed body. */
async function post(method, data) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ head: { method, token: 'e2e' }, data }),
  });
  return { status: response.status, body: await response.json() };
}

test('the todo methods answer through the proxy', async () => {
  assert.deepEqual(await post('_ping', null), { status: 200, body: { pong: true } });
  assert.deepEqual(await post('add', { title: 'write the Node SDK' }), {
    status: 200,
    body: { id: 1, title: 'write the Node SDK', done: false },
  });
  assert.deepEqual(await post('add', { title: 'test it' }), {
    status: 200,
    body: { id: 2, title: 'test it', done: false },
  });
  assert.deepEqual(await post('done', { id: 1 }), {
    status: 200,
    body: { id: 1, title: 'write the Node SDK', done: true },
  });
  assert.deepEqual(await post('list', null), {
    status: 200,
    body: {
      todos: [
        { id: 1, title: 'write the Node SDK', done: true },
        { id: 2, title: 'test it', done: false },
      ],
    },
  });
});

test('handler errors arrive as the backend replied them, with status 200', async () => {
  for (const [method, data, code] of [
    ['add', { title: '' }, 'invalid'],
    ['add', { title: 'x'.repeat(201) }, 'invalid'],
    ['add', { title: '😀'.repeat(201) }, 'invalid'],
    ['done', { id: 999 }, 'not_found'],
    ['nope', null, 'method_not_found'],
  ]) {
    const { status, body } = await post(method, data);
    assert.equal(status, 200, method);
    assert.equal(body.error?.code, code, `${method}: ${JSON.stringify(body)}`);
  }
});

test('a title is measured in characters, not UTF-16 units', async () => {
  const { status, body } = await post('add', { title: '😀'.repeat(200) });
  assert.equal(status, 200);
  assert.equal(body.title, '😀'.repeat(200));
});

test('many browsers at once', async () => {
  const replies = await Promise.all(Array.from({ length: 50 }, () => post('list', null)));
  for (const { status, body } of replies) {
    assert.equal(status, 200);
    assert.ok(Array.isArray(body.todos));
  }
});

test('the example closes gracefully on SIGINT', async () => {
  backend.kill('SIGINT');
  const timeout = AbortSignal.timeout(5000);
  const how = await Promise.race([backend.exited, once(timeout, 'abort').then(() => 'still running after 5 s')]);
  assert.deepEqual(how, { code: 0, signal: null }, backend.output);
});
