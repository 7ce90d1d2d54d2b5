'use strict';
// End to end: a browser's POST through the real `modproxy` binary to examples/node-backend.
// Needs `cargo build -p modproxy` first (`make test-node` does it); fails, never skips, without it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');

const { startStack } = require('../../tests/stack.cjs');

let stack;
let url;

before(async () => {
  stack = await startStack({ modules: { node: 'js' }, server: 'root_path = "html"' });
  url = `${stack.url}/js/`;
});

after(async () => {
  await stack?.close();
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
  const exited = stack.stop('node', 'SIGINT');
  const timeout = AbortSignal.timeout(5000);
  const how = await Promise.race([exited, once(timeout, 'abort').then(() => 'still running after 5 s')]);
  assert.deepEqual(how, { code: 0, signal: null }, stack.output());
});
