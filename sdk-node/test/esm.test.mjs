// The package as an ES module: named imports through the package's own name, the same classes as
// CommonJS, and a working backend.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { Backend, MethodError, FrameError, decodeFrames } from 'modproxy-sdk';

const require = createRequire(import.meta.url);
const { call } = require('./client.js');

test('ESM and CommonJS export the same classes', () => {
  const cjs = require('modproxy-sdk');
  assert.equal(Backend, cjs.Backend);
  assert.equal(MethodError, cjs.MethodError);
  assert.equal(FrameError, cjs.FrameError);
  assert.equal(decodeFrames, cjs.decodeFrames);
});

test('an ESM backend serves sync and async methods and MethodErrors', async () => {
  const backend = new Backend()
    .method('add', ({ a, b }) => ({ sum: a + b }))
    .method('user.get', async (data, head) => {
      if (head.token !== 'secret') throw new MethodError('forbidden', 'bad token');
      return { id: data.id, name: 'Ada' };
    });
  const { port } = await backend.listen('127.0.0.1:0');
  try {
    assert.deepEqual(await call(port, 'add', { a: 1, b: 2 }), { sum: 3 });
    assert.deepEqual(await call(port, 'user.get', { id: 7 }, { token: 'secret' }), { id: 7, name: 'Ada' });
    assert.deepEqual(await call(port, 'user.get', { id: 7 }, { token: 'wrong' }), {
      error: { code: 'forbidden', message: 'bad token' },
    });
  } finally {
    await backend.close();
  }
});
