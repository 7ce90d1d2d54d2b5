'use strict';
// What a backend process does on its own: stays up while listening, exits after close(), dies on SIGINT.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const readline = require('node:readline');
const { setTimeout: sleep } = require('node:timers/promises');

const { call } = require('./client.js');

const FIXTURE = path.join(__dirname, 'fixtures', 'serve.js');

/** Starts the fixture; resolves with the child, its port, and a promise of its exit. */
async function start(mode) {
  const child = spawn(process.execPath, [FIXTURE, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
  const lines = readline.createInterface({ input: child.stdout });
  const messages = [];
  lines.on('line', (line) => messages.push(JSON.parse(line)));
  const [first] = await Promise.race([
    once(lines, 'line'),
    exited.then((how) => assert.fail(`child exited before listening: ${JSON.stringify(how)}`)),
  ]);
  return { child, port: JSON.parse(first).port, exited, messages };
}

/** Fails instead of hanging when the child does not exit. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('a listening backend keeps its process alive and survives a sync throw', async (t) => {
  const { child, port, exited } = await start('stay');
  t.after(() => child.kill('SIGKILL'));
  await sleep(500);
  assert.equal(child.exitCode, null, 'still running');
  assert.equal((await call(port, 'throw', null)).error.code, 'handler_error');
  assert.deepEqual(await call(port, 'add', { a: 1, b: 2 }), { sum: 3 });
  assert.equal(child.exitCode, null, 'still running after the throw');
  child.kill('SIGKILL');
  await exited;
});

test('the process exits on its own after close()', async () => {
  const { port, exited, messages } = await start('close-after-call');
  assert.deepEqual(await call(port, 'add', { a: 2, b: 2 }), { sum: 4 });
  const how = await within(5000, exited, 'the process did not exit on its own');
  assert.deepEqual(how, { code: 0, signal: null });
  assert.deepEqual(messages.at(-1), { exit: 0 }, 'a normal exit, not a crash');
});

test('SIGINT stops a listening backend', async () => {
  const { child, port, exited } = await start('stay');
  assert.deepEqual(await call(port, 'add', { a: 1, b: 1 }), { sum: 2 });
  child.kill('SIGINT');
  const how = await within(5000, exited, 'SIGINT did not stop the process');
  assert.equal(how.signal, 'SIGINT');
});

test('a second stop signal while calls finish stops at once, silently', async () => {
  const child = spawn(process.execPath, [FIXTURE, 'signals'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
  const lines = readline.createInterface({ input: child.stdout });
  const [first] = await once(lines, 'line');
  const { port } = JSON.parse(first);
  // An 8 s call in flight: a graceful stop would wait for it.
  call(port, 'nap', null).catch(() => {});
  await sleep(200);
  const started = Date.now();
  child.kill('SIGINT');
  await sleep(50);
  child.kill('SIGTERM');
  const how = await within(4000, exited, 'the second signal did not stop the process at once');
  assert.deepEqual(how, { code: 0, signal: null });
  assert.ok(Date.now() - started < 4000);
  assert.equal(stderr, '', 'nothing printed');
});
