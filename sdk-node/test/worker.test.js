'use strict';
// A backend whose JavaScript environment goes away (a terminated worker thread) while the native
// runtime lives on: calls in flight get an error reply, and the listener closes.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { once } = require('node:events');
const { Worker } = require('node:worker_threads');

require('..'); // the addon stays loaded in this thread, so its runtime outlives the worker
const { call } = require('./client.js');

test('terminating a worker answers its call in flight and stops its listener', async () => {
  const worker = new Worker(path.join(__dirname, 'fixtures', 'worker.js'));
  const [port] = await once(worker, 'message');
  const reply = call(port, 'slow', null);
  assert.equal((await once(worker, 'message'))[0], 'inside');
  await worker.terminate();

  const { error } = await reply;
  assert.equal(error.code, 'handler_error');
  assert.match(error.message, /'slow' was interrupted: the Node\.js environment is shutting down/);
  await assert.rejects(
    () =>
      new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve();
        });
        socket.once('error', reject);
      }),
    { code: 'ECONNREFUSED' },
  );
});
